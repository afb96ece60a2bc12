"""Real faces for phase 2: UTKFace (aligned 200 px JPEGs), detected with YuNet and cropped like the pipeline.

The archive ``<assets>/faces-utk/utkface_aligned_200px.tar`` is read **in place** (``tarfile``, never
extracted). Each image is decoded, run through the YuNet detector (``rtface.detect`` when present, else
``cv2.FaceDetectorYN`` on ``rtface.assets.asset_path("yunet")``), the best-scoring face is framed with
``rtface.crop.crop_from_five`` and resampled with ``rtface.camera.warp_to_crop`` to S x S - exactly the
pipeline's framing - and its five points are kept in crop coordinates for the landmark term. Images with no
detection (also after retrying on a padded copy, for faces touching the border) are skipped and counted.

Cache (no pickle), outside the repository, in ``rtface.assets.cache_dir() / "phase2" / <key>/``:

* ``crops.npy``  (N_alloc, S, S, 3) uint8 **BGR** (like frames and ``rtface.synth`` images), read as a memmap;
  only the first ``count`` rows are used;
* ``meta.npz``   ``names`` (count,) str, ``five`` (count, 5, 2) float32 crop px, ``score`` (count,) float32,
  ``box`` (count, 4) float32 xyxy in the source image, ``heldout`` (count,) bool, ``count``, ``skipped``,
  ``total`` and ``seconds`` (preprocessing time).

``key`` hashes the archive's size and mtime, the detector file, S, ``limit`` and :data:`CACHE_VERSION`, so a
changed input or framing rebuilds the cache. Split: an image is held out when
``sha1(file name) mod 10000 < heldout_frac * 10000`` (5 % by default) - deterministic, independent of the
order, the limit and the detector.

CLI: ``python -m train.realdata --size 128 [--limit N]`` builds (or finds) the cache and prints its stats.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CACHE_VERSION = 1
HELDOUT_FRAC = 0.05
UTK_ARCHIVE = "faces-utk/utkface_aligned_200px.tar"
SCORE_THRESHOLD = 0.6
RETRY_PAD = 0.25  # fraction of the image side added on each side when retrying a missed detection


def archive_path(path: str | os.PathLike | None = None) -> Path:
    """The UTKFace archive: ``path``, else :func:`rtface.assets.data_path` of ``faces-utk/...``."""
    from rtface.assets import data_path

    return Path(path) if path is not None else data_path(UTK_ARCHIVE)


def is_heldout(name: str, frac: float = HELDOUT_FRAC) -> bool:
    """Deterministic split by the hash of the file's base name."""
    h = int.from_bytes(hashlib.sha1(os.path.basename(name).encode()).digest()[:4], "little")
    return (h % 10000) < int(round(frac * 10000))


# ------------------------------------------------------------------------------------------------ detection


class Detector:
    """Best face of an image: ``(box xyxy (4,), score, five points (5, 2))`` in image pixels, or None.

    The pipeline's detector (:class:`rtface.detect.Detector`) at full resolution (the archive's images are
    small); points in rtface's pixel-centre convention (x = column + 0.5).
    """

    def __init__(self, score_threshold: float = SCORE_THRESHOLD):
        from rtface.detect import Detector as _Detector

        self.impl = _Detector(score_threshold=score_threshold, detect_size=None)
        self.name = "rtface.detect.Detector"

    def file(self) -> str:
        from rtface.assets import asset_path

        return str(asset_path("yunet"))

    def _detect_raw(self, image: np.ndarray):
        dets = self.impl(image)
        if len(dets) == 0:
            return None
        return dets.boxes[0].astype(np.float64), float(dets.scores[0]), dets.points[0].astype(np.float64)

    def __call__(self, image: np.ndarray):
        import cv2

        r = self._detect_raw(image)
        if r is not None:
            return r
        pad = int(round(RETRY_PAD * max(image.shape[:2])))
        big = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        r = self._detect_raw(big)
        if r is None:
            return None
        box, score, pts = r
        return box - pad, score, pts - pad


# ------------------------------------------------------------------------------------------------ cache


@dataclass
class RealFaces:
    """A preprocessed set of real face crops (memmap) with their five points and split."""

    crops: np.ndarray  # (N, S, S, 3) uint8 BGR (memmap)
    five: np.ndarray  # (N, 5, 2) float32 crop px
    names: np.ndarray  # (N,) str
    score: np.ndarray  # (N,) float32
    heldout: np.ndarray  # (N,) bool
    stats: dict

    @property
    def size(self) -> int:
        return int(self.crops.shape[1])

    def __len__(self) -> int:
        return int(len(self.names))

    def indices(self, split: str = "train") -> np.ndarray:
        """Indices of ``"train"``, ``"heldout"`` or ``"all"`` faces."""
        if split == "all":
            return np.arange(len(self))
        if split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train', 'heldout' or 'all', got {split!r}")
        return np.flatnonzero(self.heldout if split == "heldout" else ~self.heldout)

    def batch(self, idx: np.ndarray, flip: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``image`` (B, 3, S, S) float32 RGB [0, 1] (the networks' input), ``five`` (B, 5, 2) crop px.

        ``flip`` (B,) bool mirrors faces horizontally (the five points are mirrored and their left/right
        order swapped, so the framing stays canonical).
        """
        from rtface.networks import preprocess

        idx = np.asarray(idx)
        order = np.argsort(idx)  # sorted reads are kinder to the memmap
        crops = np.empty((len(idx),) + self.crops.shape[1:], np.uint8)
        crops[order] = self.crops[idx[order]]
        five = self.five[idx].astype(np.float32).copy()
        if flip is not None and np.any(flip):
            s = self.size
            f = np.asarray(flip, bool)
            crops[f] = crops[f][:, :, ::-1]
            five[f, :, 0] = s - five[f, :, 0]
            five[f] = five[f][:, [1, 0, 2, 4, 3]]
        return {"image": preprocess(crops), "five": five, "index": idx}


def _cache_key(archive: Path, detector_file: str, size: int, limit: int | None, frac: float) -> str:
    st = archive.stat()
    try:
        dst = os.stat(detector_file)
        det = f"{dst.st_size}:{int(dst.st_mtime)}"
    except OSError:
        det = detector_file
    blob = json.dumps([CACHE_VERSION, archive.name, st.st_size, int(st.st_mtime), det, size, limit, frac])
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def default_cache_root() -> Path:
    from rtface.assets import cache_dir

    return cache_dir() / "phase2"


def load(size: int = 128, limit: int | None = None, archive: str | os.PathLike | None = None,
         cache_root: str | os.PathLike | None = None, heldout_frac: float = HELDOUT_FRAC,
         progress: bool = True, rebuild: bool = False) -> RealFaces:
    """The preprocessed real faces at crop size ``size`` (built on first use, then read from the cache)."""
    arch = archive_path(archive)
    if not arch.is_file():
        raise FileNotFoundError(
            f"UTKFace archive {arch} not found: set RTFACE_ASSETS to a folder with {UTK_ARCHIVE} or pass archive=")
    det = Detector()
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    out = root / f"utk_s{size}_{_cache_key(arch, det.file(), size, limit, heldout_frac)}"
    if rebuild or not (out / "meta.npz").is_file():
        build(arch, out, size, det, limit=limit, heldout_frac=heldout_frac, progress=progress)
    return open_cache(out)


def open_cache(folder: str | os.PathLike) -> RealFaces:
    folder = Path(folder)
    with np.load(folder / "meta.npz", allow_pickle=False) as m:
        meta = {k: m[k] for k in m.files}
    n = int(meta["count"])
    crops = np.load(folder / "crops.npy", mmap_mode="r")[:n]
    stats = {k: (meta[k].item() if meta[k].ndim == 0 else None) for k in ("count", "skipped", "total", "seconds")}
    stats["folder"] = str(folder)
    stats["detector"] = str(meta["detector"]) if "detector" in meta else ""
    return RealFaces(crops, meta["five"], meta["names"], meta["score"], meta["heldout"], stats)


def build(archive: Path, out: Path, size: int, detector: Detector | None = None, limit: int | None = None,
          heldout_frac: float = HELDOUT_FRAC, progress: bool = True) -> dict:
    """Decode, detect, crop and write the cache folder ``out`` (atomically: a temp folder renamed at the end)."""
    import cv2
    from tqdm import tqdm

    from rtface.camera import apply_affine, warp_to_crop
    from rtface.crop import crop_from_five

    det = detector or Detector()
    t0 = time.perf_counter()
    tf = tarfile.open(archive, "r")
    members = sorted((m for m in tf.getmembers() if m.isfile() and m.name.lower().endswith((".jpg", ".png"))),
                     key=lambda m: m.name)
    if limit is not None:
        members = members[:limit]
    n = len(members)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    crops = np.lib.format.open_memmap(tmp / "crops.npy", mode="w+", dtype=np.uint8, shape=(max(n, 1), size, size, 3))
    five = np.zeros((n, 5, 2), np.float32)
    boxes = np.zeros((n, 4), np.float32)
    scores = np.zeros(n, np.float32)
    names: list[str] = []
    k = 0
    skipped = 0
    bar = tqdm(members, desc=f"phase-2 crops S={size}", unit="img", disable=not progress, mininterval=1.0)
    for m in bar:
        data = tf.extractfile(m).read()
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        r = det(img) if img is not None else None
        if r is None:
            skipped += 1
            bar.set_postfix(skipped=skipped, refresh=False)
            continue
        box, score, pts = r
        a = crop_from_five(pts, size)
        crops[k] = warp_to_crop(img, a, size)
        five[k] = apply_affine(a, pts)
        boxes[k] = box
        scores[k] = score
        names.append(os.path.basename(m.name))
        k += 1
    bar.close()
    tf.close()
    crops.flush()
    del crops
    seconds = time.perf_counter() - t0
    heldout = np.array([is_heldout(s, heldout_frac) for s in names], bool)
    np.savez(tmp / "meta.npz", names=np.array(names, dtype=str), five=five[:k], box=boxes[:k], score=scores[:k],
             heldout=heldout, count=np.int64(k), skipped=np.int64(skipped), total=np.int64(n),
             seconds=np.float64(seconds), detector=np.array(det.name))
    if out.exists():  # a concurrent build finished first, or a rebuild: replace
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)
    return {"count": k, "skipped": skipped, "total": n, "seconds": seconds, "folder": str(out)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.realdata", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=None, help="crop side S (default: the variant's)")
    p.add_argument("--variant", default="s")
    p.add_argument("--limit", type=int, default=None, help="only the first N images of the archive")
    p.add_argument("--archive", default=None)
    p.add_argument("--cache", default=None, help="cache root (default: rtface cache / phase2)")
    p.add_argument("--rebuild", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    size = a.size
    if size is None:
        from .config import get_variant

        size = get_variant(a.variant).size
    faces = load(size, a.limit, a.archive, a.cache, rebuild=a.rebuild, progress=not a.no_progress)
    st = dict(faces.stats)
    st["train"] = int((~faces.heldout).sum())
    st["heldout"] = int(faces.heldout.sum())
    if st.get("seconds"):
        st["ms_per_image"] = round(1000 * st["seconds"] / max(st["total"], 1), 2)
    print(json.dumps(st, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
