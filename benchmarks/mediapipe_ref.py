"""MediaPipe Face Mesh's 68 landmarks on every frame of a video, as a reference for ``benchmarks landmarks``.

``python -m benchmarks.mediapipe_ref VIDEO [VIDEO ...] --out DIR [--max-faces 4]`` writes ``DIR/<video stem>.npz``
(no pickle): ``mesh`` (F, M, 468, 2) and ``points`` (F, M, 68, 2) float32 frame pixels (NaN where frame f has
fewer than M faces), ``frames`` (F,), ``version``. It needs only ``mediapipe`` (0.10.14, the last release with
``solutions.face_mesh``: ``pip install 'rtface[bench]'``), ``av`` and NumPy, so it also runs in a separate
environment of its own (MediaPipe brings its own OpenCV, which shares the ``cv2`` module with rtface's): ``python
-m venv mp && mp/bin/pip install mediapipe==0.10.14 av scipy && mp/bin/python -m benchmarks.mediapipe_ref ...``
from the repository root.

The 68 points are the iBUG 300-W scheme read from the 468 mesh vertices by a fixed map (:data:`MP68`: each point a
weighted mean of a few neighbouring vertices, a fixed point of the mesh's surface), so their jaw is
**3D-consistent**: seen or hidden, like ``face.landmarks3d`` and unlike ``face.landmarks``. The map is fitted to
the hand labels of near-frontal 300-W training faces, where the two conventions coincide (``--calibrate DIR
[--check DIR]``, :func:`calibrate`): the vertex map in common use (:data:`MP68_COMMON`) puts MediaPipe's jaw up to
7 % of the face above the 300-W jaw on frontal faces, an offset of the map, not of MediaPipe's fit. Frames are
decoded with PyAV (display rotation not applied; the example clips have none) and run in video mode
(``static_image_mode=False``: MediaPipe tracks as it would on a live stream). :func:`load` re-reads ``points``
from ``mesh`` with the current map.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

#: MediaPipe Face Mesh vertex ids of the 68 iBUG points, in iBUG order (0-16 jaw from the subject's right ear,
#: 17-26 brows, 27-35 nose, 36-47 eyes, 48-67 mouth), as commonly used (two ids: their midpoint). Kept as the
#: starting point of :func:`calibrate`; :data:`MP68` is what the benchmark uses.
MP68_COMMON: tuple[tuple[int, ...], ...] = (
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,), (400,), (379,), (365,),
    (397, 288), (361,), (323,), (454,), (356,),
    (70,), (63,), (105,), (66,), (107,), (336,), (296,), (334,), (293,), (300,),
    (168, 6), (197, 195), (5,), (4,), (75,), (97,), (2,), (326,), (305,),
    (33,), (160,), (158,), (133,), (153,), (144,), (362,), (385,), (387,), (263,), (373,), (380,),
    (61,), (39,), (37,), (0,), (267,), (269,), (291,), (405,), (314,), (17,), (84,), (181,),
    (78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,),
)


#: The map the benchmark uses: per iBUG point, MediaPipe mesh vertex ids and weights (a fixed point of the mesh's
#: surface, so 3D-consistent). Made by :func:`calibrate` from :data:`MP68_COMMON` on the near-frontal faces of
#: ``faces-300w/train`` (``python -m benchmarks.mediapipe_ref --calibrate``), where the 300-W jaw and the 3D jaw
#: coincide. Held out (300-W test, MediaPipe 0.10.14, static images, box-NME % against the hand labels),
#: common map -> this one: near-frontal faces (:func:`near_frontal`, 155) 2.94 -> 2.31, all 554 faces 3.33 -> 2.71.
MP68: tuple[tuple[tuple[int, ...], tuple[float, ...]], ...] = (
    ((127, 162, 227), (0.788, 0.146, 0.066)),
    ((137, 127, 93), (0.517, 0.355, 0.128)),
    ((137, 93, 215, 213), (0.356, 0.303, 0.291, 0.05)),
    ((215, 58), (0.857, 0.143)),
    ((172, 138, 136), (0.774, 0.196, 0.03)),
    ((136, 150), (0.604, 0.396)),
    ((149, 176), (0.97, 0.03)),
    ((148, 176), (0.741, 0.259)),
    ((152, 377), (0.96, 0.04)),
    ((377, 400), (0.593, 0.407)),
    ((378, 379), (0.895, 0.105)),
    ((365, 379), (0.709, 0.291)),
    ((397, 367, 288), (0.745, 0.203, 0.052)),
    ((435, 361), (0.921, 0.079)),
    ((366, 401, 361), (0.441, 0.359, 0.199)),
    ((366, 356, 323), (0.54, 0.377, 0.083)),
    ((356, 389), (0.896, 0.104)),
    ((70, 156), (0.664, 0.336)),
    ((63, 105, 53), (0.737, 0.181, 0.082)),
    ((105, 66), (0.587, 0.413)),
    ((66, 107, 65), (0.47, 0.372, 0.157)),
    ((107, 55, 8), (0.511, 0.324, 0.165)),
    ((336, 285, 9), (0.497, 0.426, 0.077)),
    ((296, 336, 282), (0.596, 0.322, 0.082)),
    ((334, 296), (0.711, 0.289)),
    ((293, 334), (0.906, 0.094)),
    ((300, 383, 368), (0.706, 0.149, 0.145)),
    ((351, 8, 193, 189, 413), (0.359, 0.284, 0.125, 0.117, 0.113)),
    ((351, 3, 122, 188), (0.584, 0.339, 0.041, 0.036)),
    ((248, 4, 3, 236, 195), (0.489, 0.231, 0.212, 0.034, 0.033)),
    ((4, 274, 275), (0.779, 0.189, 0.032)),
    ((60, 98, 75), (0.451, 0.446, 0.103)),
    ((97, 141, 60), (0.713, 0.235, 0.051)),
    ((164, 370, 2, 462), (0.468, 0.309, 0.193, 0.03)),
    ((326, 290, 393), (0.728, 0.24, 0.033)),
    ((305, 327), (0.581, 0.419)),
    ((30, 7, 110, 130), (0.309, 0.309, 0.295, 0.087)),
    ((159, 144, 223, 160), (0.412, 0.234, 0.191, 0.163)),
    ((157, 158, 222, 145), (0.436, 0.269, 0.166, 0.129)),
    ((26, 133, 190), (0.417, 0.309, 0.274)),
    ((145, 173, 231), (0.54, 0.283, 0.176)),
    ((144, 23, 24, 161, 145), (0.784, 0.111, 0.054, 0.026, 0.025)),
    ((256, 398, 414, 381, 362), (0.391, 0.28, 0.158, 0.14, 0.031)),
    ((385, 384, 374, 442), (0.509, 0.175, 0.158, 0.158)),
    ((386, 387, 259, 373), (0.364, 0.262, 0.22, 0.154)),
    ((249, 263, 359, 342, 260), (0.671, 0.135, 0.108, 0.051, 0.035)),
    ((373, 390, 254), (0.64, 0.215, 0.145)),
    ((374, 398, 451), (0.717, 0.172, 0.112)),
    ((61, 146, 57), (0.747, 0.181, 0.072)),
    ((39, 74, 81, 73, 183), (0.523, 0.258, 0.1, 0.075, 0.044)),
    ((37, 0, 39, 81), (0.435, 0.369, 0.123, 0.073)),
    ((72, 267, 302, 82), (0.377, 0.282, 0.231, 0.11)),
    ((269, 0), (0.51, 0.49)),
    ((270, 310), (0.519, 0.481)),
    ((291, 287, 375), (0.621, 0.209, 0.17)),
    ((321, 406, 405), (0.524, 0.258, 0.219)),
    ((314, 313, 406), (0.872, 0.1, 0.028)),
    ((17, 18, 314), (0.839, 0.127, 0.034)),
    ((84, 17, 83), (0.762, 0.134, 0.104)),
    ((181, 91, 182), (0.535, 0.325, 0.139)),
    ((77, 183, 76), (0.481, 0.283, 0.235)),
    ((82, 87, 41), (0.904, 0.065, 0.031)),
    ((13, 15, 312), (0.852, 0.094, 0.053)),
    ((271, 13, 317), (0.597, 0.346, 0.058)),
    ((375, 407, 306), (0.414, 0.298, 0.288)),
    ((317, 316, 402), (0.404, 0.364, 0.232)),
    ((14, 15, 316), (0.571, 0.393, 0.036)),
    ((87, 86), (0.679, 0.321)),
)

#: near-frontal for :func:`calibrate`: the labelled nose tip (point 30) is this nearly as far from one end of
#: the jaw (point 0) as from the other (point 16): |d0 - d16| / (d0 + d16)
FRONTAL_ASYMMETRY = 0.08


def to_68(mesh_xy: np.ndarray, mapping=None) -> np.ndarray:
    """(..., 468 or 478, 2) MediaPipe mesh points -> (..., 68, 2) iBUG points by ``mapping`` (default
    :data:`MP68`; entries either vertex ids, averaged, or (ids, weights))."""
    m = np.asarray(mesh_xy, np.float64)
    out = []
    for entry in mapping or MP68:
        ids, w = entry if len(entry) == 2 and isinstance(entry[0], tuple) else (entry, (1.0 / len(entry),) * len(entry))
        w = np.asarray(w, np.float64)
        out.append(np.tensordot(w / w.sum(), m[..., list(ids), :], axes=([0], [-2])))  # weights rounded
    return np.stack(out, -2).astype(np.float32)


def near_frontal(labels: np.ndarray, max_asymmetry: float = FRONTAL_ASYMMETRY) -> np.ndarray:
    """(N,) bool: faces whose 68 labels (N, 68, 2) are near-frontal (:data:`FRONTAL_ASYMMETRY`)."""
    lab = np.asarray(labels, np.float64)
    d0 = np.linalg.norm(lab[:, 30] - lab[:, 0], axis=1)
    d16 = np.linalg.norm(lab[:, 30] - lab[:, 16], axis=1)
    return np.abs(d0 - d16) / np.maximum(d0 + d16, 1e-9) < max_asymmetry


def _convex_lsq(a: np.ndarray, y: np.ndarray, sum_weight: float = 100.0) -> np.ndarray:
    """argmin |a w - y|^2 over w >= 0 with sum(w) = 1 (held by a heavily weighted extra row; SciPy's NNLS)."""
    from scipy.optimize import nnls

    w, _ = nnls(np.vstack([a, np.full((1, a.shape[1]), sum_weight)]), np.append(y, sum_weight))
    return w / max(w.sum(), 1e-12)


def calibrate(meshes: np.ndarray, labels: np.ndarray, neighbours: int = 10, min_weight: float = 0.02) -> tuple:
    """A 468 -> 68 map fitted to hand labels: ``meshes`` (N, 468, 2) MediaPipe points and ``labels`` (N, 68, 2)
    of the same faces, near-frontal ones only (:func:`near_frontal`; there the 300-W jaw is the 3D jaw). Each
    point starts at the vertex of :data:`MP68_COMMON` or whichever single vertex is nearer the labels on average,
    and becomes the convex combination of its ``neighbours`` nearest vertices (on the mean face) that fits the
    labels best in the least-squares sense (errors over sqrt(w*h) of each face's label box); weights under
    ``min_weight`` are dropped. Returns :data:`MP68`'s form."""
    m = np.asarray(meshes, np.float64)[:, :468, :2]
    lab = np.asarray(labels, np.float64)
    box = np.sqrt(np.ptp(lab[:, :, 0], 1) * np.ptp(lab[:, :, 1], 1))[:, None]
    c = m.mean(1, keepdims=True)
    mean_face = ((m - c) / np.sqrt(((m - c) ** 2).sum((1, 2)) / 468)[:, None, None]).mean(0)
    out = []
    for k in range(68):
        err = np.linalg.norm(m - lab[:, k, None], axis=2).mean(0)
        common = list(MP68_COMMON[k])
        start = common[0] if len(common) == 1 and err[common[0]] <= err.min() * 1.05 else int(np.argmin(err))
        near = np.argsort(np.linalg.norm(mean_face - mean_face[start], axis=1))[:neighbours]
        a = np.concatenate([m[:, near, 0] / box, m[:, near, 1] / box])
        y = np.concatenate([lab[:, k, 0] / box[:, 0], lab[:, k, 1] / box[:, 0]])
        w = _convex_lsq(a, y)
        keep = w >= min_weight
        w = w[keep] / w[keep].sum()
        order = np.argsort(-w)
        out.append((tuple(int(v) for v in near[keep][order]), tuple(round(float(x), 3) for x in w[order])))
    return tuple(out)


def image_meshes(paths: list) -> np.ndarray:
    """(N, 468, 2) MediaPipe Face Mesh points (static images, the first face; NaN where none is found)."""
    import cv2
    import mediapipe as mp

    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False)
    out = np.full((len(paths), 468, 2), np.nan, np.float32)
    for i, path in enumerate(paths):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"cannot read {path}")
        res = mesh.process(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        if res.multi_face_landmarks:
            h, w = img.shape[:2]
            out[i] = [(p.x * w, p.y * h) for p in res.multi_face_landmarks[0].landmark[:468]]
    mesh.close()
    return out


def labelled_folder(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe meshes (N, 468, 2) and the 68 labels (N, 68, 2) of every image of a ``faces-300w`` folder that
    has a ``.pts`` and in which MediaPipe finds a face."""
    from train.labeled import read_pts

    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".png")
                   and p.with_suffix(".pts").is_file())
    if not paths:
        raise FileNotFoundError(f"no labelled images (.jpg/.png with a .pts) in {folder}")
    meshes = image_meshes(paths)
    labels = np.stack([read_pts(p.with_suffix(".pts")) for p in paths])
    found = np.isfinite(meshes).all((1, 2))
    return meshes[found], labels[found]


def reference(video: str | Path, max_faces: int = 4) -> dict[str, np.ndarray]:
    """MediaPipe's 68 points on every frame of ``video`` (module docstring)."""
    import av
    import mediapipe as mp

    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=max_faces,
                                           refine_landmarks=False)
    out = []
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24")
            h, w = rgb.shape[:2]
            pts = np.full((max_faces, 468, 2), np.nan, np.float32)
            res = mesh.process(rgb)
            for k, face in enumerate(res.multi_face_landmarks or []):
                pts[k] = [(p.x * w, p.y * h) for p in face.landmark[:468]]
            out.append(pts)
    mesh.close()
    meshes = np.stack(out)
    return {"points": to_68(meshes), "mesh": meshes, "frames": np.arange(len(out)),
            "version": np.array(mp.__version__)}


def load(path: str | Path) -> dict[str, np.ndarray]:
    """A file written by :func:`main` (no pickle); ``points`` re-made from ``mesh`` with :data:`MP68` where the
    file holds the mesh (files from before the calibrated map hold only the common map's points)."""
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    if "mesh" in out:
        out["points"] = to_68(out["mesh"])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.mediapipe_ref", description=__doc__.split("\n\n")[0])
    p.add_argument("videos", nargs="*")
    p.add_argument("--out", help="folder for <video stem>.npz")
    p.add_argument("--max-faces", type=int, default=4)
    p.add_argument("--calibrate", metavar="DIR", help="fit the 68-point map to the near-frontal faces of a "
                   "faces-300w folder (e.g. ../shared/assets/faces-300w/train) and print it")
    p.add_argument("--check", metavar="DIR", help="with --calibrate: box-NME of both maps on this folder's faces")
    a = p.parse_args(argv)
    if a.calibrate:
        from .landmarks import _nme

        meshes, labels = labelled_folder(a.calibrate)
        front = near_frontal(labels)
        mapping = calibrate(meshes[front], labels[front])
        print(f"# {front.sum()} near-frontal faces of {len(labels)} in {a.calibrate}\nMP68 = (")
        for ids, w in mapping:
            print(f"    ({ids}, {w}),")
        print(")")
        if a.check:
            meshes, labels = labelled_folder(a.check)
            front = near_frontal(labels)
            for name, mp68 in (("common map", MP68_COMMON), ("calibrated map", mapping)):
                e = 100 * _nme(to_68(meshes, mp68), labels)[0]
                print(f"{a.check}, {name}: box-NME {e[front].mean():.2f} % near-frontal ({front.sum()} faces), "
                      f"{e.mean():.2f} % all ({len(e)})")
        return 0
    if not a.videos or not a.out:
        p.error("give the videos and --out, or --calibrate")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for v in a.videos:
        ref = reference(v, a.max_faces)
        np.savez(out / f"{Path(v).stem}.npz", **ref)
        faces = int(np.isfinite(ref["points"][:, :, 0, 0]).sum())
        print(f"{v}: {len(ref['frames'])} frames, {faces} faces -> {out / (Path(v).stem + '.npz')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
