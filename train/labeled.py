"""Real faces with 68 hand-annotated landmarks (300-W, YouTube Faces), their model fits and detections.

Sets (read in place under ``rtface.assets.data_path``, never copied; non-commercial research use only):

* ``300w-train`` - ``faces-300w/train`` (LFPW train, AFW, Helen train; 2,012 faces),
* ``300w-test``  - ``faces-300w/test`` (the 300-W "common" subset: LFPW test + Helen test; 554 faces; only for
  evaluation, never for training),
* ``ytf``        - ``faces-ytf/train`` (4,222 video frames; coarser labels, weighted below 300-W in training).

Each ``<name>.jpg`` has a ``<name>.pts`` with 68 lines ``x y`` in rtface's pixel convention (centres at +0.5;
the YTF labels are integer pixel indices and get +0.5). A face is **skipped with a counted warning** - never a
crash - when its ``.pts`` does not hold 68 finite points, or its image cannot be read.

``python -m train.labeled [--sets 300w-train,ytf,300w-test]`` builds the cache (per set, in
``rtface.assets.cache_dir()/labeled/<set>_<key>.npz``, plain arrays, no pickle): for every face the landmarks,
the image size, the pipeline detector's best face (five points and score; NaN when it finds none) and the fit
of the face model (:mod:`train.landmark_fit`: identity, expression, pose in image pixels, the 68 vertex ids
after contour marching, residual). It prints the fit residual (box-NME) per set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CACHE_VERSION = 1
SETS = {
    "300w-train": ("faces-300w/train", 0.0),
    "300w-test": ("faces-300w/test", 0.0),
    "ytf": ("faces-ytf/train", 0.5),
}


class LabelError(ValueError):
    """A landmark file that cannot be used (wrong count, not numbers, not finite)."""


def read_pts(path: str | os.PathLike, offset: float = 0.0) -> np.ndarray:
    """68 landmarks ``(68, 2)`` float64 from a ``.pts`` file: plain ``x y`` lines, or the iBUG format with a
    ``{ ... }`` block (whose 1-based coordinates get -0.5). ``offset`` is added to plain files' points."""
    text = Path(path).read_text(errors="replace").splitlines()
    lines = [s.strip() for s in text if s.strip()]
    shift = offset
    if "{" in lines:
        lines = lines[lines.index("{") + 1: lines.index("}") if "}" in lines else len(lines)]
        shift = -0.5
    try:
        pts = np.array([[float(v) for v in s.split()[:2]] for s in lines], dtype=np.float64)
    except ValueError as exc:
        raise LabelError(f"{path}: not a landmark file ({exc})") from None
    if pts.shape != (68, 2):
        raise LabelError(f"{path}: expected 68 points 'x y', found {len(lines)} lines")
    if not np.isfinite(pts).all():
        raise LabelError(f"{path}: landmarks are not all finite")
    return pts + shift


def set_folder(name: str) -> Path:
    from rtface.assets import data_path

    if name not in SETS:
        raise ValueError(f"unknown labelled set {name!r}; choose from {', '.join(SETS)}")
    return data_path(SETS[name][0])


def list_set(name: str, folder: str | os.PathLike | None = None) -> list[tuple[str, Path, Path]]:
    """``(name, image, pts)`` of every face of a set that has a ``.pts`` and an image, sorted by name (a ``.pts``
    without an image is listed with a missing image path, and skipped later with a counted warning)."""
    folder = Path(folder) if folder is not None else set_folder(name)
    if not folder.is_dir():
        raise FileNotFoundError(f"labelled set {name!r} not found at {folder}: set RTFACE_ASSETS to a folder "
                                f"holding {SETS[name][0]}")
    out = []
    for pts in sorted(folder.glob("*.pts")):
        imgs = [pts.with_suffix(e) for e in (".jpg", ".png", ".jpeg") if pts.with_suffix(e).is_file()]
        out.append((pts.stem, imgs[0] if imgs else pts.with_suffix(".jpg"), pts))
    return out


@dataclass
class Labeled:
    """One labelled set with fits (arrays aligned by face; see the module docstring)."""

    set: str
    names: np.ndarray  # (N,) str
    paths: np.ndarray  # (N,) str, image files
    points: np.ndarray  # (N, 68, 2) float32 image px
    hw: np.ndarray  # (N, 2) int32 image height, width
    det_five: np.ndarray  # (N, 5, 2) float32 image px, NaN when the detector found no face
    det_score: np.ndarray  # (N,) float32, 0 when none
    identity: np.ndarray  # (N, Ki) float32
    expression: np.ndarray  # (N, Ke) float32
    pose: np.ndarray  # (N, 6) float32 in image px
    vertex_ids: np.ndarray  # (N, 68) int64
    fit_nme: np.ndarray  # (N,) fit residual / sqrt(w*h) of the landmark box
    stats: dict
    path: str = ""  # the cache file

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Labeled":
        """Read a cache file written by :func:`build`."""
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        stats = json.loads(str(d.pop("stats")))
        return cls(set=stats["set"], stats=stats, path=str(path), **d)

    def __len__(self) -> int:
        return len(self.names)

    def read_image(self, i: int) -> np.ndarray:
        import cv2

        img = cv2.imread(str(self.paths[i]), cv2.IMREAD_COLOR)
        if img is None:
            raise OSError(f"cannot read {self.paths[i]}")
        return img


def _key(name: str, files: list[tuple[str, Path, Path]]) -> str:
    from rtface.assets import asset_path

    h = hashlib.sha1(json.dumps([CACHE_VERSION, name, len(files)]).encode())
    for n, img, pts in files:
        size = img.stat().st_size if img.is_file() else -1
        h.update(f"{n}:{size}:{pts.stat().st_size}".encode())
    try:
        h.update(str(os.path.getsize(asset_path("yunet"))).encode())
    except Exception:
        pass
    return h.hexdigest()[:16]


_WORKER: dict = {}


def _worker_init() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from rtface.face_model import FaceModel

    from .landmark_fit import LandmarkFitter
    from .realdata import Detector

    _WORKER["fitter"] = LandmarkFitter(FaceModel.load())
    _WORKER["detector"] = Detector()


def _process(item: tuple[str, str, str, float]):
    import cv2

    name, img_path, pts_path, offset = item
    try:
        pts = read_pts(pts_path, offset)
    except (LabelError, OSError) as exc:
        return name, "label", str(exc)
    img = cv2.imread(img_path, cv2.IMREAD_COLOR)
    if img is None:
        return name, "image", f"{img_path}: cannot be decoded"
    det = _WORKER["detector"](img)
    if det is None:
        five, score = np.full((5, 2), np.nan), 0.0
    else:
        five, score = det[2], det[1]
        # the best face may be another person in the crop: keep it only if it covers the labelled face
        lm_c = pts.mean(0)
        if np.linalg.norm(five.mean(0) - lm_c) > 0.35 * np.ptp(pts, axis=0).max():
            five, score = np.full((5, 2), np.nan), 0.0
    try:
        fit = _WORKER["fitter"].fit(pts)
    except (ValueError, np.linalg.LinAlgError) as exc:
        return name, "fit", f"{name}: fit failed ({exc})"
    return name, None, (pts, img.shape[:2], five, score, fit)


def build(name: str, out: Path, workers: int = 2, progress: bool = True,
          folder: str | os.PathLike | None = None) -> dict:
    """Fit and detect every face of set ``name`` (its files in ``folder``, default the set's shared folder);
    write ``out`` (npz, atomically). Unusable faces are skipped with a warning and counted per reason."""
    import multiprocessing as mp

    from tqdm import tqdm

    files = list_set(name, folder)
    offset = SETS.get(name, ("", 0.0))[1]
    items = [(n, str(i), str(p), offset) for n, i, p in files]
    t0 = time.perf_counter()
    results: dict[str, tuple] = {}
    skipped: dict[str, int] = {}
    ctx = mp.get_context("spawn")
    with ctx.Pool(max(1, min(workers, len(items))), initializer=_worker_init) as pool:
        for n, why, payload in tqdm(pool.imap(_process, items, chunksize=8), total=len(items),
                                    desc=f"fitting {name}", disable=not progress, mininterval=2.0):
            if why is None:
                results[n] = payload
            else:
                skipped[why] = skipped.get(why, 0) + 1
                warnings.warn(f"skipped {payload}", stacklevel=1)
    kept = [(n, i) for n, i, _ in files if n in results]
    r = [results[n] for n, _ in kept]
    stats = {"set": name, "count": len(kept), "total": len(files), "skipped": skipped,
             "seconds": round(time.perf_counter() - t0, 1)}
    arrays = dict(
        names=np.array([n for n, _ in kept], dtype=str), paths=np.array([str(i) for _, i in kept], dtype=str),
        points=np.array([x[0] for x in r], np.float32).reshape(-1, 68, 2),
        hw=np.array([x[1] for x in r], np.int32).reshape(-1, 2),
        det_five=np.array([x[2] for x in r], np.float32).reshape(-1, 5, 2),
        det_score=np.array([x[3] for x in r], np.float32),
        identity=np.array([x[4].identity for x in r], np.float32),
        expression=np.array([x[4].expression for x in r], np.float32),
        pose=np.array([x[4].pose for x in r], np.float32).reshape(-1, 6),
        vertex_ids=np.array([x[4].vertex_ids for x in r], np.int64).reshape(-1, 68),
        fit_nme=np.array([x[4].nme for x in r], np.float32),
        stats=np.array(json.dumps(stats)),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, out)
    return stats


def load(name: str, workers: int = 2, progress: bool = True, rebuild: bool = False,
         cache_root: str | os.PathLike | None = None, folder: str | os.PathLike | None = None) -> Labeled:
    """Set ``name`` with fits, built on first use (about a minute per 2,000 faces on 2 cores), then read from the
    cache. ``folder`` reads the set's files from another folder (same layout)."""
    from rtface.assets import cache_dir

    files = list_set(name, folder)
    root = Path(cache_root) if cache_root is not None else cache_dir() / "labeled"
    path = root / f"{name}_{_key(name, files)}.npz"
    if rebuild or not path.is_file():
        build(name, path, workers=workers, progress=progress, folder=folder)
    return Labeled.from_file(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.labeled", description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default="300w-train,ytf,300w-test")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rebuild", action="store_true")
    a = p.parse_args(argv)
    for name in a.sets.split(","):
        lab = load(name, workers=a.workers, rebuild=a.rebuild)
        nme = lab.fit_nme * 100
        det = np.isfinite(lab.det_five[:, 0, 0]).mean() * 100
        print(json.dumps({**lab.stats, "fit_box_nme_mean_%": round(float(nme.mean()), 3),
                          "fit_box_nme_median_%": round(float(np.median(nme)), 3), "detected_%": round(float(det), 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
