"""MediaPipe Face Mesh's 68 landmarks on every frame of a video, as a reference for ``benchmarks landmarks``.

``python -m benchmarks.mediapipe_ref VIDEO [VIDEO ...] --out DIR [--max-faces 4]`` writes ``DIR/<video stem>.npz``
(no pickle): ``points`` (F, M, 68, 2) float32 frame pixels (NaN where frame f has fewer than M faces), ``frames``
(F,), ``version``. It needs only ``mediapipe`` (0.10.14, the last release with ``solutions.face_mesh``: ``pip
install 'rtface[bench]'``), ``av`` and NumPy, so it also runs in a separate environment of its own (MediaPipe
brings its own OpenCV, which shares the ``cv2`` module with rtface's): ``python -m venv mp && mp/bin/pip install
mediapipe==0.10.14 av && mp/bin/python -m benchmarks.mediapipe_ref ...`` from the repository root.

The 68 points are the iBUG 300-W scheme taken from the 468 mesh vertices by a fixed vertex map (:data:`MP68`; a
pair is averaged), so their jaw is **3D-consistent**: fixed vertices of the mesh, seen or hidden, like
``face.landmarks3d`` and unlike ``face.landmarks``. Frames are decoded with PyAV (display rotation not applied;
the example clips have none) and run in video mode (``static_image_mode=False``: MediaPipe tracks as it would
on a live stream).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

#: MediaPipe Face Mesh vertex ids of the 68 iBUG points, in iBUG order (0-16 jaw from the subject's right ear,
#: 17-26 brows, 27-35 nose, 36-47 eyes, 48-67 mouth); two ids: their midpoint
MP68: tuple[tuple[int, ...], ...] = (
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,), (400,), (379,), (365,),
    (397, 288), (361,), (323,), (454,), (356,),
    (70,), (63,), (105,), (66,), (107,), (336,), (296,), (334,), (293,), (300,),
    (168, 6), (197, 195), (5,), (4,), (75,), (97,), (2,), (326,), (305,),
    (33,), (160,), (158,), (133,), (153,), (144,), (362,), (385,), (387,), (263,), (373,), (380,),
    (61,), (39,), (37,), (0,), (267,), (269,), (291,), (405,), (314,), (17,), (84,), (181,),
    (78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,),
)


def to_68(mesh_xy: np.ndarray) -> np.ndarray:
    """(468 or 478, 2) MediaPipe mesh points -> (68, 2) iBUG points (:data:`MP68`)."""
    m = np.asarray(mesh_xy, np.float64)
    return np.stack([m[list(ids)].mean(0) for ids in MP68]).astype(np.float32)


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
            pts = np.full((max_faces, 68, 2), np.nan, np.float32)
            res = mesh.process(rgb)
            for k, face in enumerate(res.multi_face_landmarks or []):
                xy = np.array([(p.x * w, p.y * h) for p in face.landmark], np.float64)
                pts[k] = to_68(xy)
            out.append(pts)
    mesh.close()
    return {"points": np.stack(out), "frames": np.arange(len(out)), "version": np.array(mp.__version__)}


def load(path: str | Path) -> dict[str, np.ndarray]:
    """A file written by :func:`main` (no pickle)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.mediapipe_ref", description=__doc__.split("\n\n")[0])
    p.add_argument("videos", nargs="+")
    p.add_argument("--out", required=True, help="folder for <video stem>.npz")
    p.add_argument("--max-faces", type=int, default=4)
    a = p.parse_args(argv)
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
