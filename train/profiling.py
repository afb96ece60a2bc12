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

``scene="head"`` (:data:`SCENES`) turns the whole head, not only the face: the face model covers the face area
alone, so on its own the turned face is pasted over the photo's unturned hair, ears and neck, which a real
profile never shows. With ``"head"`` every photo pixel inside a head proxy (an ellipsoid for the skull and hair,
:data:`HEAD_ELLIPSOID_CM`, and a cylinder for the neck, :data:`NECK_CYLINDER_CM`, both in model cm and posed
with the fit) gets the proxy's depth (the face's own depth where the face is), the photo is meshed on a pixel
grid with that depth, the mesh is turned with the face and rasterised, and the photo is warped along it: hair,
ear and neck turn with the face, the side of the head comes into view (stretched from the photo's grazing
strip, as in 300W-LP), and the background stays where it was. The face itself is warped as above on top.
"""

from __future__ import annotations

import numpy as np

from rtface.camera import project

#: how far (px) a surface point may lie behind the photo's visible surface and still count as visible
VISIBLE_TOL_PX = 1.5
#: what a profiled copy turns: ``"face"`` the face model's surface only, ``"head"`` the whole head (docstring)
SCENES = ("face", "head")
#: head proxy of ``scene="head"``, model cm (x right, y up, z toward the camera; the origin lies inside the
#: head, the nose tip at z = 13): skull and hair as an ellipsoid (centre, semi-axes) ...
HEAD_ELLIPSOID_CM = ((0.0, 2.5, -1.0), (9.5, 12.5, 11.0))
#: ... and the neck as a vertical elliptic cylinder (centre x, z; semi-axes x, z; y from, to)
NECK_CYLINDER_CM = ((0.0, -2.5), (5.5, 5.5), (-28.0, -6.0))
#: pixel-grid step (px) of the head mesh, per 100 px of the face's scale-free size (s * 20 cm)
HEAD_GRID_STEP = 1.5


def _mirror_index(model) -> np.ndarray:
    """For every vertex, the nearest vertex of the mean face mirrored in x (its left/right partner)."""
    from scipy.spatial import cKDTree

    m = np.asarray(model.mean, np.float64)
    tree = cKDTree(m)
    q = m * np.array([-1.0, 1.0, 1.0])
    return tree.query(q)[1].astype(np.int64)


class Profiler:
    """Re-renders fitted photos at new poses (module docstring). Construct once per process."""

    def __init__(self, model, scene: str = "face"):
        from rtface.contour import Contour

        if scene not in SCENES:
            raise ValueError(f"scene must be one of {SCENES}, got {scene!r}")
        self.scene = scene
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
        drawn = np.zeros((h, w), bool)
        drawn[ys[ok], xs[ok]] = True
        drawn = _fill_cracks(mapx, mapy, drawn)
        face = cv2.remap(image, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if self.scene == "head":
            head_depth, head_mask = head_proxy_depth(pose, h, w, r_old)
            region = head_mask
        else:
            region = r_old.mask
        # background: the photo with its own face (head) region inpainted at a quarter of the resolution
        old_region = cv2.dilate(region.astype(np.uint8), np.ones((5, 5), np.uint8))
        small = cv2.resize(image, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
        small_mask = cv2.resize(old_region, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST)
        filled = cv2.inpaint(small, small_mask, 3, cv2.INPAINT_TELEA)
        filled = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)
        out = np.where(old_region[..., None] > 0, filled, image)
        if self.scene == "head":
            head, head_drawn = turn_head(image, head_depth, head_mask, pose, new_pose)
            out = _over(out, head, head_drawn)
        out = _over(out, face, drawn)
        ids = self.contour.select_pose(verts, new_pose)
        lm = new[ids, :2]
        return {"image": out, "pose": new_pose.astype(np.float32), "landmarks": lm.astype(np.float32),
                "vertex_ids": ids, "mask": drawn}


def _over(under: np.ndarray, over: np.ndarray, drawn: np.ndarray) -> np.ndarray:
    """``over`` composited on ``under`` where ``drawn``, its one-pixel rim half blended into ``under`` (uint8
    images; ``over`` is not read outside ``drawn``, where a warp has no source)."""
    import cv2

    alpha = cv2.GaussianBlur(drawn.astype(np.float32), (3, 3), 0.8)[..., None]
    alpha = np.where(drawn[..., None], np.maximum(alpha, 0.5), 0.0)
    return (alpha * over + (1 - alpha) * under).round().clip(0, 255).astype(np.uint8)


def _rotated_frame(pose: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel centre of an (h, w) image, the viewing ray in model cm under ``pose``: origins ``(h, w, 3)`` (the
    point with rotated z = 0) and the shared direction ``(3,)`` (the rotated +z axis); ray parameter t is the
    rotated z in cm."""
    from rtface.camera import rotation_matrix

    r = rotation_matrix(np.asarray(pose[:3], np.float64))
    s, tx, ty = float(pose[3]), float(pose[4]), float(pose[5])
    xs = (np.arange(w) + 0.5 - tx) / s
    ys = -(np.arange(h) + 0.5 - ty) / s
    u = np.zeros((h, w, 3))
    u[..., 0] = xs[None, :]
    u[..., 1] = ys[:, None]
    return u @ r, r[2]  # v = R^T u (row vectors: u @ R); direction R^T e_z


def _front_hit(p0: np.ndarray, d: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Largest ray parameter t where ``p0 + t d`` meets the quadric ``sum((p / axes)^2) = 1`` (over the axes
    given; NaN where the ray misses). ``p0`` (..., k), ``d`` (k,), ``axes`` (k,)."""
    a = float(((d / axes) ** 2).sum())
    b = 2.0 * ((p0 / axes) * (d / axes)).sum(-1)
    c = ((p0 / axes) ** 2).sum(-1) - 1.0
    disc = b * b - 4.0 * a * c
    with np.errstate(invalid="ignore"):
        return np.where(disc >= 0, (-b + np.sqrt(np.maximum(disc, 0.0))) / (2.0 * a), np.nan)


def head_proxy_depth(pose: np.ndarray, h: int, w: int, face_raster) -> tuple[np.ndarray, np.ndarray]:
    """Depth (image px, as :func:`rtface.camera.project`'s z) of the head proxy seen with ``pose`` in an (h, w)
    photo, the face's own depth in front of it where ``face_raster`` covers, and the mask of all three."""
    from rtface.camera import DEPTH_OFFSET_CM

    origin, d = _rotated_frame(pose, h, w)
    (cx, cy, cz), axes = HEAD_ELLIPSOID_CM
    t_head = _front_hit(origin - np.array([cx, cy, cz]), d, np.array(axes, np.float64))
    (nx, nz), (ax, az), (y0, y1) = NECK_CYLINDER_CM
    xz = origin[..., [0, 2]] - np.array([nx, nz])
    t_neck = _front_hit(xz, d[[0, 2]], np.array([ax, az], np.float64))
    with np.errstate(invalid="ignore"):
        y_at = origin[..., 1] + t_neck * d[1]
        t_neck = np.where((y_at >= y0) & (y_at <= y1), t_neck, np.nan)
    t = np.fmax(t_head, t_neck)
    s = float(pose[3])
    depth = np.where(np.isfinite(t), s * (t + DEPTH_OFFSET_CM), -np.inf)
    face = np.asarray(face_raster.mask)
    depth = np.where(face, np.maximum(depth, np.asarray(face_raster.depth, np.float64)), depth)
    mask = np.isfinite(depth)
    return np.where(mask, depth, 0.0).astype(np.float32), mask


def turn_head(image: np.ndarray, depth: np.ndarray, mask: np.ndarray, pose: np.ndarray,
              new_pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Warp the photo's pixels under ``mask`` (with their ``depth``, image px) from ``pose`` to ``new_pose`` (same
    scale and translation): the pixel grid is meshed, turned about the model origin and rasterised. Returns the
    warped image and where it was drawn."""
    import cv2

    from rtface.camera import DEPTH_OFFSET_CM, rotation_matrix
    from rtface.render import rasterize

    h, w = mask.shape
    s, tx, ty = float(pose[3]), float(pose[4]), float(pose[5])
    step = max(1, int(round(HEAD_GRID_STEP * s * 20.0 / 100.0)))
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return image.copy(), np.zeros((h, w), bool)
    gx = np.arange(xs.min(), xs.max() + step, step).clip(0, w - 1)
    gy = np.arange(ys.min(), ys.max() + step, step).clip(0, h - 1)
    nx, ny = len(gx), len(gy)
    px = np.repeat(gx[None, :], ny, 0).astype(np.float64) + 0.5
    py = np.repeat(gy[:, None], nx, 1).astype(np.float64) + 0.5
    inside = mask[np.ix_(gy, gx)]
    z = depth[np.ix_(gy, gx)].astype(np.float64)
    # image px -> rotated model cm -> model cm -> turned -> image px
    u = np.stack([(px - tx) / s, -(py - ty) / s, z / s - DEPTH_OFFSET_CM], -1).reshape(-1, 3)
    rot = rotation_matrix(np.asarray(new_pose[:3], np.float64)) @ rotation_matrix(np.asarray(pose[:3], np.float64)).T
    un = u @ rot.T
    verts = np.stack([tx + s * un[:, 0], ty - s * un[:, 1], s * (un[:, 2] + DEPTH_OFFSET_CM)], -1).astype(np.float32)
    k = np.arange(ny * nx).reshape(ny, nx)
    a, b, c, e = k[:-1, :-1].ravel(), k[:-1, 1:].ravel(), k[1:, :-1].ravel(), k[1:, 1:].ravel()
    tris = np.concatenate([np.stack([a, b, c], 1), np.stack([b, e, c], 1)])
    ok = inside.ravel()
    tris = tris[ok[tris].all(1)].astype(np.int32)
    if len(tris) == 0:
        return image.copy(), np.zeros((h, w), bool)
    r = rasterize(verts, tris, h, w, backend="cpu")
    m = r.mask
    src_xy = np.stack([px.ravel(), py.ravel()], -1)
    tri = tris[r.triangle[m]]
    src = (src_xy[tri] * r.barycentric[m][..., None].astype(np.float64)).sum(1)
    mapx = np.full((h, w), -1.0, np.float32)
    mapy = np.full((h, w), -1.0, np.float32)
    mapx[m] = src[:, 0] - 0.5
    mapy[m] = src[:, 1] - 0.5
    drawn = _fill_cracks(mapx, mapy, np.asarray(m, bool))
    return cv2.remap(image, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), drawn


def _fill_cracks(mapx: np.ndarray, mapy: np.ndarray, drawn: np.ndarray) -> np.ndarray:
    """Close one- and two-pixel cracks of a warp (pixels between drawn ones whose triangle had no source): they
    take a drawn neighbour's source position (maps modified in place). Returns the drawn mask with them."""
    import cv2

    kernel = np.ones((3, 3), np.uint8)
    cracks = cv2.morphologyEx(drawn.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool) & ~drawn
    if cracks.any():
        for mp in (mapx, mapy):
            grown = cv2.dilate(np.where(drawn, mp, -1e6).astype(np.float32), kernel)
            mp[cracks] = grown[cracks]
    return drawn | cracks


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


def _init_worker(scene: str = "face") -> None:
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from rtface.face_model import FaceModel

    from .realdata import Detector

    _W["profiler"] = Profiler(FaceModel.load(), scene=scene)
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
                   yaw_ranges: tuple[tuple[float, float], ...] = ((25.0, 90.0),), scene: str = "face") -> dict:
    """``copies`` profiled versions of every face of a :class:`train.labeled.Labeled` set, written to ``out``
    (copy ``c`` with its |yaw| drawn in ``yaw_ranges[c % len(yaw_ranges)]`` degrees; ``scene``: what turns,
    :data:`SCENES`)
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
    with mp.get_context("spawn").Pool(max(1, min(workers, len(jobs))), initializer=_init_worker,
                                  initargs=(scene,)) as pool:
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


def profiled_path(lab, copies: int, seed: int, yaw_ranges: tuple[tuple[float, float], ...], scene: str = "face"):
    """Cache file of the profiled copies of a labelled set (keyed by the set's own cache file)."""
    from pathlib import Path

    tag = "_".join(f"{a:g}-{b:g}" for a, b in yaw_ranges)
    head = "" if scene == "face" else f"_{scene}"
    return Path(lab.path).with_name(f"profiled_{Path(lab.path).stem}_c{copies}_s{seed}_y{tag}{head}.npz")


def load_profiled(lab="300w-train", copies: int = 2, seed: int = 0, workers: int = 2, rebuild: bool = False,
                  yaw_ranges: tuple[tuple[float, float], ...] = ((25.0, 90.0),),
                  scene: str = "face") -> dict[str, np.ndarray]:
    """The profiled copies of a labelled set (a set name or a :class:`train.labeled.Labeled`), built on first
    use, then read from the cache. The result's ``path`` entry names the cache file."""
    from . import labeled

    if isinstance(lab, str):
        lab = labeled.load(lab)
    path = profiled_path(lab, copies, seed, yaw_ranges, scene)
    if rebuild or not path.is_file():
        build_profiled(lab, copies, path, seed=seed, workers=workers, yaw_ranges=yaw_ranges, scene=scene)
    out = read_profiled(path)
    out["path"] = np.array(str(path))
    return out


def parse_yaw_ranges(text: str) -> tuple[tuple[float, float], ...]:
    """``"30-60,60-90"`` -> ``((30.0, 60.0), (60.0, 90.0))`` (|yaw| ranges in degrees of the profiled copies)."""
    try:
        ranges = tuple((float(lo), float(hi)) for lo, hi in (r.split("-") for r in text.split(",")))
    except ValueError:
        raise ValueError(f"yaw ranges are 'LO-HI' in degrees, comma-separated (e.g. 30-60,60-90), got {text!r}")
    if any(not 0 <= lo < hi <= 90 for lo, hi in ranges):
        raise ValueError(f"every yaw range needs 0 <= LO < HI <= 90 degrees, got {text!r}")
    return ranges


def write_sheet(lab="300w-test", out="profiled.png", count: int = 4, seed: int = 0, tile: int = 200) -> None:
    """A picture of what the two scenes make: ``count`` faces of a labelled set (evenly spread, near-frontal ones),
    each as photo | the face turned | the whole head turned, to 60-85 degrees of yaw, the turned copies with their
    68 landmarks (green)."""
    import cv2

    from rtface.face_model import FaceModel

    from . import labeled

    if isinstance(lab, str):
        lab = labeled.load(lab, progress=False)
    model = FaceModel.load()
    profilers = [Profiler(model, scene=s) for s in SCENES]
    frontal = np.flatnonzero(np.abs(np.rad2deg(lab.pose[:, 1])) < 20)
    rng = np.random.default_rng(seed)
    rows = []
    for i in frontal[np.linspace(0, len(frontal) - 1, count).round().astype(int)]:
        img = lab.read_image(i)
        angles = np.array(lab.pose[i][:3], np.float64)
        angles[1] = rng.choice([-1, 1]) * np.deg2rad(rng.uniform(60, 85))
        tiles = [cv2.resize(img, (tile, tile))]
        for prof in profilers:
            o = prof(img, lab.identity[i], lab.expression[i], lab.pose[i], angles)
            im = o["image"].copy()
            for x, y in o["landmarks"]:
                cv2.circle(im, (int(x), int(y)), 1, (0, 255, 0), -1)
            tiles.append(cv2.resize(im, (tile, tile), interpolation=cv2.INTER_AREA))
        rows.append(np.hstack(tiles))
    cv2.imwrite(str(out), np.vstack(rows))


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m train.profiling", description=__doc__.split("\n\n")[0])
    p.add_argument("--set", default="300w-train")
    p.add_argument("--copies", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rebuild", action="store_true")
    p.add_argument("--scene", choices=SCENES, default="face", help="turn the face only, or the whole head")
    p.add_argument("--yaw-ranges", default="25-90",
                   help="|yaw| ranges in degrees, copy c drawn in range c mod their count, e.g. 25-60,45-90,60-90")
    p.add_argument("--sheet", help="instead: a PNG of a few faces of the set, photo | face turned | head turned")
    a = p.parse_args(argv)
    if a.sheet:
        write_sheet(a.set, a.sheet, seed=a.seed)
        print(f"wrote {a.sheet}")
        return 0
    d = load_profiled(a.set, a.copies, a.seed, a.workers, a.rebuild, yaw_ranges=parse_yaw_ranges(a.yaw_ranges),
                      scene=a.scene)
    yaw = np.rad2deg(np.abs(d["pose"][:, 1]))
    print({"count": len(d["source"]), "yaw_deg_quartiles": np.percentile(yaw, [25, 50, 75]).round(1).tolist(),
           "detected_%": round(float(np.isfinite(d["det_five"][:, 0, 0]).mean() * 100), 1)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
__all__ = ["HEAD_ELLIPSOID_CM", "NECK_CYLINDER_CM", "Profiler", "SCENES", "TEST_YAW_BUCKETS", "VISIBLE_TOL_PX",
           "build_profiled", "head_proxy_depth", "load_profiled", "profiled_path", "read_profiled", "target_angles",
           "parse_yaw_ranges", "turn_head", "write_sheet"]
