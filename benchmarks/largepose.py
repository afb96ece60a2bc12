"""A large-pose validation set of real photographs from ``../shared/assets``: ``python -m benchmarks.largepose``.

The assets hold no real photographs annotated beyond about 60 degrees of yaw (300-W, as used here, annotates
all 68 points, which excludes most profiles), so this set is "as near as we can get": every labelled real face
whose **annotated yaw** is 30 degrees or more, plus a fixed random sample of frontal faces (under 30 degrees) of
each source for the 0-30 bucket. The annotated yaw is that of the face model fitted to the hand annotation
(:mod:`train.landmark_fit`, the same fit as the ``train.labeled`` caches); a cheap rigid pre-screen (the mean
face's 51 inner landmark vertices aligned to the annotated inner points, :func:`prescreen_yaw`) picks which
faces to fit.

Sources (:data:`SOURCES`), each listed with its counts by ``python -m benchmarks.largepose`` (``--list`` names
every face):

* ``300w-test`` (``faces-300w/test``, LFPW test + Helen test): **held out** (never trained on);
* ``300w-train`` (``faces-300w/train``, LFPW train, AFW, Helen train): **trained on** by the shipped CoarseNet;
  its figures say how the network does on faces it has seen, not how it generalises;
* ``ytf`` (``faces-ytf/train``, YouTube Faces video frames): **trained on** as well; coarse labels (integer
  pixels, loose jaw line).

Label conventions. All three sets are annotated in the **300-W convention** (the jaw on the visible outline of
the face, which for a turned head is the silhouette, not the 3D jaw). :func:`labels_3d` derives labels in the
**3D-consistent convention** (MediaPipe, 3DDFA, LS3D-W, AFLW2000-3D: each jaw point where the 3D jaw is, seen or
hidden): the 51 inner points are the annotation itself (they are the same points in both conventions) and the
17 jaw points are the fixed jaw vertices of the face model fitted to the annotation, as AFLW2000-3D's labels
were made from a 3DMM fit. On the hidden side that jaw is the fit's prior, not something the annotator saw.

``HAMILTON_PROFILES``: frames of ``video/hamilton_640x360.mp4`` whose faces are turned (a singer in close-up
profile, an audience seen from the side), picked by eye from a contact sheet; they have no landmark labels and
are used for the detector's hit rate and for looking at the fits (``benchmarks landmarks``).

The selection and fits are cached (``rtface.assets.cache_dir()/largepose/``, plain arrays, no pickle); building
fits a few hundred faces (about two CPU-minutes). Non-commercial research data: read in place, never copied.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train.labeled import Labeled

CACHE_VERSION = 1
#: name -> (labelled set of ``train.labeled``, held out from the shipped CoarseNet's training)
SOURCES = {"300w-test": ("300w-test", True), "300w-train": ("300w-train", False), "ytf": ("ytf", False)}
#: yaw buckets (degrees, |yaw|) of every large-pose table
YAW_BUCKETS = ((0.0, 30.0), (30.0, 60.0), (60.0, 90.0))
#: faces whose rigid pre-screen yaw is at least this many degrees are fitted (the fit's yaw is about 0.9x the
#: pre-screen's on 300-W test, so this keeps every face the fit puts at 30 degrees or more)
PRESCREEN_DEG = 27.0
#: at most this many pre-screened faces of one source are fitted: all above ``KEEP_ALL_DEG``, then a random
#: sample of the rest (keeps the build to a few CPU-minutes)
MAX_CANDIDATES = 200
KEEP_ALL_DEG = 40.0
#: frontal faces (pre-screen under ``FRONTAL_DEG``) drawn at random per source for the 0-30 bucket
FRONTAL_PER_SOURCE = 40
FRONTAL_DEG = 20.0
SEED = 0
#: (first, last) frame ranges of hamilton_640x360.mp4 with turned heads (by eye); every ``HAMILTON_STEP``-th frame
HAMILTON_VIDEO = "video/hamilton_640x360.mp4"
HAMILTON_PROFILES = ((24, 80), (216, 274))
HAMILTON_STEP = 4


def prescreen_yaw(model, points: np.ndarray) -> float:
    """|yaw| in degrees of the mean face's inner landmark vertices (17..67) aligned to annotated points (68, 2)
    by a scaled-orthographic fit: a cheap estimate (about 1.1x the full fit's yaw on 300-W test)."""
    from train.landmark_fit import _pose_from_affine

    pts = np.asarray(points, np.float64)
    if pts.shape != (68, 2) or not np.isfinite(pts).all():
        raise ValueError(f"expected 68 finite points (68, 2), got an array of shape {pts.shape}")
    x3 = np.asarray(model.mean, np.float64)[np.asarray(model.landmarks)[17:]]
    return float(abs(np.rad2deg(_pose_from_affine(x3, pts[17:])[1])))


def yaw_bucket(yaw_deg: np.ndarray) -> np.ndarray:
    """Index into :data:`YAW_BUCKETS` of each |yaw| (degrees; 90 and above go to the last bucket)."""
    a = np.abs(np.asarray(yaw_deg, np.float64))
    return np.clip(np.searchsorted([b[1] for b in YAW_BUCKETS], a, side="right"), 0, len(YAW_BUCKETS) - 1)


def labels_3d(model, identity: np.ndarray, expression: np.ndarray, pose: np.ndarray,
              points: np.ndarray) -> np.ndarray:
    """(N, 68, 2) labels in the 3D-consistent convention from 300-W-convention annotations ``points`` (N, 68, 2)
    and the face-model fits to them: inner points 17..67 as annotated, jaw 0..16 the fit's fixed jaw vertices
    (module docstring)."""
    from rtface.contour import Contour

    out = np.array(points, np.float64, copy=True)
    out[:, :17] = Contour(model).project_landmarks(identity, expression, pose, fixed=True)[:, :17]
    return out


@dataclass
class LargePose:
    """The large-pose set (arrays aligned by face; module docstring)."""

    names: np.ndarray  # (N,) str
    sources: np.ndarray  # (N,) str, a key of SOURCES
    paths: np.ndarray  # (N,) str, image files
    points: np.ndarray  # (N, 68, 2) float32 image px, the 300-W-convention annotation
    det_five: np.ndarray  # (N, 5, 2) float32 image px, NaN where the detector missed the face
    identity: np.ndarray  # (N, Ki) float32, the fit to the annotation
    expression: np.ndarray  # (N, Ke) float32
    pose: np.ndarray  # (N, 6) float32 in image px
    yaw: np.ndarray  # (N,) float32 degrees, the fit's yaw (signed)
    held_out: np.ndarray  # (N,) bool, never trained on by the shipped CoarseNet
    stats: dict
    path: str = ""

    __len__ = Labeled.__len__
    read_image = Labeled.read_image  # (H, W, 3) uint8 BGR of face i

    def labels_3d(self, model) -> np.ndarray:
        """(N, 68, 2) 3D-consistent labels (:func:`labels_3d`)."""
        return labels_3d(model, self.identity, self.expression, self.pose, self.points)

    def describe(self) -> str:
        """What the set uses: faces per source and yaw bucket, held out or trained on, label convention."""
        b = yaw_bucket(self.yaw)
        head = " | ".join(f"{lo:g}-{hi:g} deg" for lo, hi in YAW_BUCKETS)
        lines = [f"| source | {head} | held out | labels |", "|---" * (len(YAW_BUCKETS) + 3) + "|"]
        for s in dict.fromkeys(self.sources):
            m = self.sources == s
            counts = " | ".join(str(int((m & (b == k)).sum())) for k in range(len(YAW_BUCKETS)))
            held = "yes" if self.held_out[m].all() else "no (trained on)"
            folder = self.stats.get("folders", {}).get(s, s)
            lines.append(f"| {s} ({folder}) | {counts} | {held} | 300-W convention (3D-consistent: jaw from the fit) |")
        counts = " | ".join(str(int((b == k).sum())) for k in range(len(YAW_BUCKETS)))
        lines.append(f"| all | {counts} | | |")
        return "\n".join(lines)


def _select(model, files: list[tuple[str, Path, Path]], offset: float, rng: np.random.Generator,
            skipped: dict[str, int]) -> list[tuple[str, Path, Path, float]]:
    """The faces of one source worth fitting: large pre-screen yaw (capped) and a frontal sample."""
    from train.labeled import LabelError, read_pts

    yaws = []
    for name, img, pts in files:
        try:
            yaws.append((name, img, pts, prescreen_yaw(model, read_pts(pts, offset))))
        except (LabelError, OSError, ValueError) as exc:
            skipped["label"] = skipped.get("label", 0) + 1
            warnings.warn(f"skipped {name}: {exc}", stacklevel=2)
    large = [f for f in yaws if f[3] >= PRESCREEN_DEG]
    keep = [f for f in large if f[3] >= KEEP_ALL_DEG]
    rest = [f for f in large if f[3] < KEEP_ALL_DEG]
    n_rest = max(0, MAX_CANDIDATES - len(keep))
    if len(rest) > n_rest:
        rest = [rest[i] for i in sorted(rng.choice(len(rest), n_rest, replace=False))]
    frontal = [f for f in yaws if f[3] < FRONTAL_DEG]
    if len(frontal) > FRONTAL_PER_SOURCE:
        frontal = [frontal[i] for i in sorted(rng.choice(len(frontal), FRONTAL_PER_SOURCE, replace=False))]
    return sorted(keep + rest + frontal)


def _key(folders: dict[str, Path]) -> str:
    from train import labeled

    h = hashlib.sha1(json.dumps([CACHE_VERSION, PRESCREEN_DEG, MAX_CANDIDATES, KEEP_ALL_DEG, FRONTAL_PER_SOURCE,
                                 FRONTAL_DEG, SEED]).encode())
    for s, folder in folders.items():
        h.update(f"{s}:{labeled._key(SOURCES[s][0], labeled.list_set(SOURCES[s][0], folder))}".encode())
    return h.hexdigest()[:16]


def _folders(sources: tuple[str, ...], folders: dict[str, str | os.PathLike] | None) -> dict[str, Path]:
    from train import labeled

    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown large-pose source(s) {', '.join(unknown)}; choose from {', '.join(SOURCES)}")
    if not sources:
        raise ValueError(f"no sources given; choose from {', '.join(SOURCES)}")
    folders = dict(folders or {})
    return {s: Path(folders[s]) if s in folders else labeled.set_folder(SOURCES[s][0]) for s in sources}


def build(out: str | os.PathLike, sources: tuple[str, ...] = tuple(SOURCES),
          folders: dict[str, str | os.PathLike] | None = None, progress: bool = True) -> dict:
    """Select, fit and detect the faces of ``sources`` (files in ``folders[source]``, default the shared
    folders); write ``out`` (npz, atomically). Unusable faces are skipped with a warning and counted."""
    from tqdm import tqdm

    from rtface.face_model import FaceModel
    from train import labeled

    dirs = _folders(tuple(sources), folders)
    model = FaceModel.load()
    rng = np.random.default_rng(SEED)
    labeled._worker_init()  # the fitter and detector of the labelled caches, in this process
    rows, skipped, per_source = [], {}, {}
    for s, folder in dirs.items():
        set_name, held = SOURCES[s]
        offset = labeled.SETS[set_name][1]
        files = labeled.list_set(set_name, folder)
        chosen = _select(model, files, offset, rng, skipped)
        kept = 0
        for name, img, pts, pre in tqdm(chosen, desc=f"fitting {s}", disable=not progress, mininterval=2.0):
            _, why, payload = labeled._process((name, str(img), str(pts), offset))
            if why is not None:
                skipped[why] = skipped.get(why, 0) + 1
                warnings.warn(f"skipped {payload}", stacklevel=2)
                continue
            p, _, five, _, fit = payload
            yaw = float(np.rad2deg(fit.pose[1]))
            if (pre >= PRESCREEN_DEG) != (abs(yaw) >= YAW_BUCKETS[0][1]):
                continue  # a candidate the fit puts under 30 degrees, or a frontal sample it puts above
            rows.append((name, s, str(img), p, five, fit, yaw, held))
            kept += 1
        per_source[s] = {"files": len(files), "fitted": len(chosen), "kept": kept}
    stats = {"version": CACHE_VERSION, "sources": per_source, "skipped": skipped,
             "folders": {s: str(f) for s, f in dirs.items()}}
    arrays = dict(
        names=np.array([r[0] for r in rows], dtype=str), sources=np.array([r[1] for r in rows], dtype=str),
        paths=np.array([r[2] for r in rows], dtype=str),
        points=np.array([r[3] for r in rows], np.float32).reshape(-1, 68, 2),
        det_five=np.array([r[4] for r in rows], np.float32).reshape(-1, 5, 2),
        identity=np.array([r[5].identity for r in rows], np.float32).reshape(len(rows), -1),
        expression=np.array([r[5].expression for r in rows], np.float32).reshape(len(rows), -1),
        pose=np.array([r[5].pose for r in rows], np.float32).reshape(-1, 6),
        yaw=np.array([r[6] for r in rows], np.float32), held_out=np.array([r[7] for r in rows], bool),
        stats=np.array(json.dumps(stats)))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, out)
    return stats


def load(sources: tuple[str, ...] = tuple(SOURCES), folders: dict[str, str | os.PathLike] | None = None,
         rebuild: bool = False, cache_root: str | os.PathLike | None = None, progress: bool = True) -> LargePose:
    """The large-pose set, built on first use (module docstring), then read from the cache."""
    from rtface.assets import cache_dir

    dirs = _folders(tuple(sources), folders)
    root = Path(cache_root) if cache_root is not None else cache_dir() / "largepose"
    path = root / f"largepose_{'_'.join(dirs)}_{_key(dirs)}.npz"
    if rebuild or not path.is_file():
        build(path, tuple(dirs), {s: str(f) for s, f in dirs.items()}, progress=progress)
    with np.load(path, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    stats = json.loads(str(d.pop("stats")))
    return LargePose(stats=stats, path=str(path), **d)


def hamilton_frames() -> list[tuple[int, np.ndarray]]:
    """``(index, BGR image)`` of the :data:`HAMILTON_PROFILES` frames (every :data:`HAMILTON_STEP`-th)."""
    from rtface.assets import data_path
    from rtface.sources import open_source

    path = data_path(HAMILTON_VIDEO)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: set RTFACE_ASSETS to a folder holding {HAMILTON_VIDEO}")
    wanted = {i for lo, hi in HAMILTON_PROFILES for i in range(lo, hi + 1, HAMILTON_STEP)}
    out = []
    with open_source(path, live=False) as src:
        for f in src:
            if f.index in wanted:
                out.append((f.index, f.image))
            if f.index >= max(wanted):
                break
    return out


def hamilton_faces(weights: str | None = None, frames: set[int] | None = None) -> list[tuple[int, np.ndarray, list]]:
    """``(index, BGR image, faces)`` of the :func:`hamilton_frames` (only those in ``frames`` when given), each
    frame reconstructed as a single image (``rtface.reconstruct``'s two passes and six views; CPU, ``weights``)."""
    from rtface.pipeline import Pipeline

    pipe = Pipeline(weights, backend="cpu", smoothing=False)
    return [(i, img, pipe(img).faces) for i, img in hamilton_frames() if frames is None or i in frames]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.largepose", description=__doc__.split("\n\n")[0])
    p.add_argument("--sources", default=",".join(SOURCES), help=f"comma-separated, of {', '.join(SOURCES)}")
    p.add_argument("--list", action="store_true", help="name every face with its source and yaw")
    p.add_argument("--rebuild", action="store_true")
    a = p.parse_args(argv)
    lp = load(tuple(s for s in a.sources.split(",") if s), rebuild=a.rebuild)
    print(f"large-pose set: {len(lp)} faces ({lp.path})\n")
    print(lp.describe())
    print(f"\nhamilton frames (no labels): {HAMILTON_VIDEO} frames {HAMILTON_PROFILES}, every {HAMILTON_STEP}th")
    if a.list:
        for n, s, y in zip(lp.names, lp.sources, lp.yaw):
            print(f"{s}\t{n}\t{y:+.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
