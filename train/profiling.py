"""Large-pose training faces from real photos, the way 300W-LP was made (Zhu et al., CVPR 2016): the face
model fitted to a photo's landmarks is turned out of plane and re-rendered with the photo itself as its texture.

For a fit (identity, expression, pose in image pixels) and a new pose that differs in yaw and pitch:

1. the fitted mesh is projected into the photo; every pixel of the *new* view that the turned mesh covers takes
   its colour from the photo at the same surface point (barycentric interpolation of the old projection, then
   bilinear sampling: a mesh-guided warp at the photo's full resolution, not a per-vertex colour);
2. surface points that the photo does not show (hidden in its view) have no colour; they are taken from the
   horizontally mirrored surface point when that one is visible (faces are nearly symmetric), else left to the
   background;
3. the background is the photo with its old face region filled in (inpainting, on a 4x smaller image - it
   only has to look like skin and hair, not like a second face), the turned face composited over it;
4. the 68 landmarks of the new view are the model's landmark vertices under the new pose, with the jaw contour
   re-selected on the new silhouette (:class:`rtface.contour.Contour`), so they lie on the rendered face
   exactly.

Rotation is about the model origin (inside the head), scale and translation are kept. All in NumPy/OpenCV plus
rtface's CPU rasteriser; about 10-20 ms for a 300 px photo.
"""

from __future__ import annotations

import numpy as np

from rtface.camera import project

#: how far (px) a surface point may lie behind the photo's visible surface and still count as visible
VISIBLE_TOL_PX = 1.5


def _mirror_index(model) -> np.ndarray:
    """For every vertex, the nearest vertex of the mean face mirrored in x (its left/right partner)."""
    from scipy.spatial import cKDTree

    m = np.asarray(model.mean, np.float64)
    tree = cKDTree(m)
    q = m * np.array([-1.0, 1.0, 1.0])
    return tree.query(q)[1].astype(np.int64)


class Profiler:
    """Re-renders fitted photos at new poses (module docstring). Construct once per process."""

    def __init__(self, model):
        from rtface.contour import Contour

        self.model = model
        self.contour = Contour(model)
        self.mirror = _mirror_index(model)
        self.triangles = np.asarray(model.triangles, np.int32)

    def __call__(self, image: np.ndarray, identity: np.ndarray, expression: np.ndarray, pose: np.ndarray,
                 new_angles: np.ndarray) -> dict[str, np.ndarray]:
        """Render ``image`` (H, W, 3) uint8 with its fit at ``new_angles`` (pitch, yaw, roll) rad.

        Returns ``image`` (H, W, 3) uint8, ``pose`` (6,) the new pose vector, ``landmarks`` (68, 2) image px,
        ``vertex_ids`` (68,) and ``mask`` (H, W) bool (where the turned face was drawn).
        """
        import cv2

        from rtface.render import rasterize

        h, w = image.shape[:2]
        verts = self.model.vertices(identity, expression)
        old = project(verts, pose)
        new_pose = np.array(pose, np.float64, copy=True)
        new_pose[:3] = new_angles
        new = project(verts, new_pose)
        r_old = rasterize(old.astype(np.float32), self.triangles, h, w, backend="cpu")
        r_new = rasterize(new.astype(np.float32), self.triangles, h, w, backend="cpu")
        # visibility of every vertex in the photo: its depth against the z-buffer at its pixel
        xi = np.clip(np.floor(old[:, 0]).astype(np.int64), 0, w - 1)
        yi = np.clip(np.floor(old[:, 1]).astype(np.int64), 0, h - 1)
        inside = (old[:, 0] >= 0) & (old[:, 0] < w) & (old[:, 1] >= 0) & (old[:, 1] < h)
        zbuf = r_old.depth[yi, xi]
        visible = inside & r_old.mask[yi, xi] & (old[:, 2] >= zbuf - VISIBLE_TOL_PX)
        # per new-view pixel: source position in the photo, from the triangle's vertices (or their mirrors)
        m = r_new.mask
        tri = self.triangles[r_new.triangle[m]]  # (P, 3)
        bary = r_new.barycentric[m].astype(np.float64)  # (P, 3)
        vis_tri = visible[tri].all(1)
        mir = self.mirror[tri]
        vis_mir = visible[mir].all(1) & ~vis_tri
        src_ids = np.where(vis_tri[:, None], tri, mir)
        src = (old[src_ids, :2] * bary[..., None]).sum(1)  # (P, 2) photo px (pixel-centre convention)
        ok = vis_tri | vis_mir
        mapx = np.full((h, w), -1.0, np.float32)
        mapy = np.full((h, w), -1.0, np.float32)
        ys, xs = np.nonzero(m)
        mapx[ys[ok], xs[ok]] = src[ok, 0] - 0.5
        mapy[ys[ok], xs[ok]] = src[ok, 1] - 0.5
        face = cv2.remap(image, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        drawn = np.zeros((h, w), bool)
        drawn[ys[ok], xs[ok]] = True
        # background: the photo with its own face region inpainted at a quarter of the resolution
        old_region = cv2.dilate(r_old.mask.astype(np.uint8), np.ones((5, 5), np.uint8))
        small = cv2.resize(image, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
        small_mask = cv2.resize(old_region, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST)
        filled = cv2.inpaint(small, small_mask, 3, cv2.INPAINT_TELEA)
        filled = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)
        out = np.where(old_region[..., None] > 0, filled, image)
        # soft edge between the turned face and the background
        alpha = cv2.GaussianBlur(drawn.astype(np.float32), (3, 3), 0.8)[..., None]
        alpha = np.where(drawn[..., None], np.maximum(alpha, 0.5), alpha)
        out = (alpha * face + (1 - alpha) * out).round().clip(0, 255).astype(np.uint8)
        ids = self.contour.select_pose(verts, new_pose)
        lm = new[ids, :2]
        return {"image": out, "pose": new_pose.astype(np.float32), "landmarks": lm.astype(np.float32),
                "vertex_ids": ids, "mask": drawn}


def target_angles(angles: np.ndarray, rng: np.random.Generator, yaw_range_deg: tuple[float, float] = (25.0, 90.0),
                  max_pitch_deg: float = 40.0) -> np.ndarray:
    """New (pitch, yaw, roll) for a profiled copy: |yaw| drawn uniformly in ``yaw_range_deg``, turned further the
    way the face already looks (either way for a near-frontal face), pitch moved by up to +-20 deg within
    +-``max_pitch_deg``, roll kept."""
    pitch, yaw, roll = (float(v) for v in angles)
    side = np.sign(yaw) if abs(yaw) > np.deg2rad(8) else rng.choice([-1.0, 1.0])
    lo = max(np.deg2rad(yaw_range_deg[0]), abs(yaw) + np.deg2rad(10))
    hi = np.deg2rad(yaw_range_deg[1])
    new_yaw = side * rng.uniform(min(lo, hi), hi)
    lim = np.deg2rad(max_pitch_deg)
    new_pitch = float(np.clip(pitch + rng.uniform(-np.deg2rad(20), np.deg2rad(20)), -lim, lim))
    return np.array([new_pitch, new_yaw, roll])





# ------------------------------------------------------------------------------------------------ cache

_W: dict = {}


def _init_worker() -> None:
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from rtface.face_model import FaceModel

    from .realdata import Detector

    _W["profiler"] = Profiler(FaceModel.load())
    _W["detector"] = Detector()


def _profile_one(args):
    import cv2

    path, identity, expression, pose, seed, yaw_range = args
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        return None
    rng = np.random.default_rng(seed)
    out = _W["profiler"](img, identity, expression, pose, target_angles(pose[:3], rng, yaw_range))
    det = _W["detector"](out["image"])
    five = np.full((5, 2), np.nan, np.float32)
    if det is not None and np.linalg.norm(det[2].mean(0) - out["landmarks"].mean(0)) < 0.35 * np.ptp(
            out["landmarks"], axis=0).max():
        five = det[2].astype(np.float32)
    ok, jpg = cv2.imencode(".jpg", out["image"], [cv2.IMWRITE_JPEG_QUALITY, 95])
    return jpg.tobytes(), out["pose"], out["landmarks"], out["vertex_ids"], five


def build_profiled(lab, copies: int, out, seed: int = 0, workers: int = 2, progress: bool = True,
                   yaw_ranges: tuple[tuple[float, float], ...] = ((25.0, 90.0),)) -> dict:
    """``copies`` profiled versions of every face of a :class:`train.labeled.Labeled` set, written to ``out``
    (copy ``c`` with its |yaw| drawn in ``yaw_ranges[c % len(yaw_ranges)]`` degrees)
    (npz, no pickle): ``jpeg`` (concatenated JPEG bytes) with ``offsets`` (M+1,), ``source`` (M,) index into the
    set, ``pose`` (M, 6), ``landmarks`` (M, 68, 2), ``vertex_ids`` (M, 68), ``det_five`` (M, 5, 2) (NaN: the
    detector missed the turned face)."""
    import multiprocessing as mp
    import os
    import time
    from pathlib import Path

    from tqdm import tqdm

    t0 = time.perf_counter()
    jobs = [(str(lab.paths[i]), lab.identity[i], lab.expression[i], lab.pose[i], [seed, i, c],
             tuple(yaw_ranges[c % len(yaw_ranges)])) for c in range(copies) for i in range(len(lab))]
    src = [i for c in range(copies) for i in range(len(lab))]
    blobs, poses, lms, ids, fives, kept = [], [], [], [], [], []
    with mp.get_context("spawn").Pool(max(1, min(workers, len(jobs))), initializer=_init_worker) as pool:
        for k, r in enumerate(tqdm(pool.imap(_profile_one, jobs, chunksize=8), total=len(jobs),
                                   desc=f"profiling {lab.set}", disable=not progress, mininterval=2.0)):
            if r is None:
                continue
            blobs.append(np.frombuffer(r[0], np.uint8))
            poses.append(r[1]); lms.append(r[2]); ids.append(r[3]); fives.append(r[4]); kept.append(src[k])
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + f".{os.getpid()}.tmp.npz")
    np.savez(tmp, jpeg=np.concatenate(blobs), offsets=offsets, source=np.array(kept, np.int64),
             pose=np.array(poses, np.float32), landmarks=np.array(lms, np.float32),
             vertex_ids=np.array(ids, np.int64), det_five=np.array(fives, np.float32))
    os.replace(tmp, out)
    return {"count": len(kept), "seconds": round(time.perf_counter() - t0, 1)}


#: yaw buckets (degrees) of the profiled 300-W test faces of the large-pose benchmark
TEST_YAW_BUCKETS = ((30.0, 60.0), (60.0, 90.0))


def read_profiled(path) -> dict[str, np.ndarray]:
    """A cache file written by :func:`build_profiled`."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def profiled_path(lab, copies: int, seed: int, yaw_ranges: tuple[tuple[float, float], ...]):
    """Cache file of the profiled copies of a labelled set (keyed by the set's own cache file)."""
    from pathlib import Path

    tag = "_".join(f"{a:g}-{b:g}" for a, b in yaw_ranges)
    return Path(lab.path).with_name(f"profiled_{Path(lab.path).stem}_c{copies}_s{seed}_y{tag}.npz")


def load_profiled(lab="300w-train", copies: int = 2, seed: int = 0, workers: int = 2, rebuild: bool = False,
                  yaw_ranges: tuple[tuple[float, float], ...] = ((25.0, 90.0),)) -> dict[str, np.ndarray]:
    """The profiled copies of a labelled set (a set name or a :class:`train.labeled.Labeled`), built on first
    use, then read from the cache. The result's ``path`` entry names the cache file."""
    from . import labeled

    if isinstance(lab, str):
        lab = labeled.load(lab)
    path = profiled_path(lab, copies, seed, yaw_ranges)
    if rebuild or not path.is_file():
        build_profiled(lab, copies, path, seed=seed, workers=workers, yaw_ranges=yaw_ranges)
    out = read_profiled(path)
    out["path"] = np.array(str(path))
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m train.profiling", description=__doc__.split("\n\n")[0])
    p.add_argument("--set", default="300w-train")
    p.add_argument("--copies", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rebuild", action="store_true")
    a = p.parse_args(argv)
    d = load_profiled(a.set, a.copies, a.seed, a.workers, a.rebuild)
    yaw = np.rad2deg(np.abs(d["pose"][:, 1]))
    print({"count": len(d["source"]), "yaw_deg_quartiles": np.percentile(yaw, [25, 50, 75]).round(1).tolist(),
           "detected_%": round(float(np.isfinite(d["det_five"][:, 0, 0]).mean() * 100), 1)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
__all__ = ["Profiler", "TEST_YAW_BUCKETS", "VISIBLE_TOL_PX", "build_profiled", "load_profiled", "profiled_path",
           "read_profiled", "target_angles"]
