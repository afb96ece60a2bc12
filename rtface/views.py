"""Test-time views of a face for the CoarseNet: the crop, its mirror image and slightly tighter crops.

Each view is a crop of the same face under a known similarity (a zoom about the crop centre, then optionally a
horizontal mirror). The CoarseNet's answer for every view is mapped back into the face's own crop and the
answers are averaged in parameter space:

* pose: a mirrored view's pose is mirrored back (yaw and roll change sign, ``tx -> S - tx``; exact for a
  left-right symmetric face, which the model nearly is); a zoomed view's pose is carried back through the
  inverse zoom (:meth:`rtface.camera.Pose.transformed`). Rotations are averaged as matrices and projected
  back onto SO(3); scale and translation are averaged plainly.
* expression: a mirrored view's ``_L``/``_R`` blendshapes (and jaw/mouth left/right) are swapped back.
* identity: averaged as is (the CoarseNet is trained to give a mirrored face the same identity).

Views come in the fixed order :data:`VIEWS`; ``n`` views means the first ``n``. Measured on 300-W test with
the released CoarseNet (FP32, detector crops): box-NME 2.85 % with one view, 2.81 % with two, 2.77 % with six;
failures (> 8 % inter-ocular) 2.5, 2.2 and 2.0 %. The cost is one CoarseNet run per view (batched with the other
faces), so single images use all views by default and streams one (``Pipeline(views=...)``).

Coordinates: crop pixels, x right, y down, pixel centres at integer + 0.5 (mirroring maps x to ``S - x``).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .camera import Pose, compose_affine, invert_affine, matrix_to_angles, rotation_matrix
from .errors import InputError
from .networks import _xp

#: (zoom, mirrored) of each view, in the order used; zoom > 1 shows the face larger (a tighter crop).
VIEWS: tuple[tuple[float, bool], ...] = ((1.0, False), (1.0, True), (1.08, False), (1.08, True),
                                          (1.15, False), (1.15, True))
MAX_VIEWS = len(VIEWS)

_SIDE_PAIRS = {"jawLeft": "jawRight", "jawRight": "jawLeft", "mouthLeft": "mouthRight", "mouthRight": "mouthLeft"}


def check_views(n: Any) -> int:
    """``n`` as a view count in 1 .. :data:`MAX_VIEWS`, or an :class:`InputError` that says what is allowed."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= int(n) <= MAX_VIEWS:
        raise InputError(f"views must be an integer from 1 to {MAX_VIEWS} (1: the crop only; 2: and its mirror; "
                         f"more: tighter crops too), got {n!r}")
    return int(n)


def zooms(n: int) -> list[float]:
    """The distinct zoom factors of the first ``n`` views, in order (each is cropped once; mirrors are flips)."""
    out: list[float] = []
    for z, _ in VIEWS[:n]:
        if z not in out:
            out.append(z)
    return out


def zoom_affine(zoom: float, size: int) -> np.ndarray:
    """2x3 similarity from a face's crop to the same crop zoomed by ``zoom`` about its centre (crop px)."""
    c = size / 2.0
    return np.array([[zoom, 0.0, c - zoom * c], [0.0, zoom, c - zoom * c]])


def frame_to_view(frame_to_crop: np.ndarray, zoom: float, size: int) -> np.ndarray:
    """Frame -> zoomed-view crop (2x3) for a face whose crop is ``frame_to_crop``."""
    if zoom == 1.0:
        return np.asarray(frame_to_crop, np.float64)
    return compose_affine(zoom_affine(zoom, size), frame_to_crop)


def mirror_pose(pose: np.ndarray, width: float) -> np.ndarray:
    """Pose vector(s) ``(..., 6)`` of the horizontally mirrored face in an image ``width`` px wide: yaw and roll
    change sign, ``tx -> width - tx`` (exact for a left-right symmetric face)."""
    p = np.array(pose, dtype=np.float64, copy=True)
    p[..., 1] *= -1.0
    p[..., 2] *= -1.0
    p[..., 4] = width - p[..., 4]
    return p


def expression_mirror(names: Sequence[str]) -> np.ndarray:
    """Index array ``m`` with ``expr_mirrored = expr[m]``: ``*_L`` <-> ``*_R``, jaw/mouth left <-> right."""
    names = list(names)
    out = []
    for n in names:
        partner = n[:-2] + ("_R" if n.endswith("_L") else "_L") if n.endswith(("_L", "_R")) else _SIDE_PAIRS.get(n, n)
        out.append(names.index(partner) if partner in names else names.index(n))
    return np.array(out, dtype=np.int64)


def mean_pose(poses: np.ndarray) -> np.ndarray:
    """Average of pose vectors ``(K, N, 6)`` over K: chordal mean rotation, plain mean scale and translation."""
    p = np.asarray(poses, np.float64)
    r = rotation_matrix(p[..., :3]).mean(0)  # (N, 3, 3)
    u, _, vt = np.linalg.svd(r)
    d = np.sign(np.linalg.det(u @ vt))
    u[..., :, 2] *= d[..., None]
    rot = u @ vt
    out = np.empty(p.shape[1:], np.float64)
    out[:, :3] = np.stack([matrix_to_angles(m) for m in rot])
    out[:, 3:] = p[..., 3:].mean(0)
    return out


def combine(outputs: Sequence[dict[str, np.ndarray]], size: int, exp_mirror: np.ndarray) -> dict[str, np.ndarray]:
    """Average the CoarseNet outputs of the first ``len(outputs)`` views (each a dict of ``(N, ...)`` arrays in
    that view's crop) into the face's own crop: ``identity`` (N,100), ``expression`` (N,53), ``pose`` (N,6)."""
    if not 1 <= len(outputs) <= MAX_VIEWS:
        raise InputError(f"combine takes 1 to {MAX_VIEWS} view outputs, got {len(outputs)}")
    idents, exprs, poses = [], [], []
    for (zoom, mirrored), out in zip(VIEWS, outputs):
        pose = np.asarray(out["pose"], np.float64)
        expr = np.asarray(out["expression"], np.float32)
        if mirrored:
            pose = mirror_pose(pose, size)
            expr = expr[:, exp_mirror]
        if zoom != 1.0:
            back = invert_affine(zoom_affine(zoom, size))
            pose = np.stack([Pose.from_vector(q).transformed(back).to_vector() for q in pose]).astype(np.float64)
        idents.append(np.asarray(out["identity"], np.float32))
        exprs.append(expr)
        poses.append(pose)
    if len(outputs) == 1:
        return {"identity": idents[0], "expression": exprs[0], "pose": poses[0].astype(np.float32)}
    return {"identity": np.mean(idents, 0).astype(np.float32), "expression": np.mean(exprs, 0).astype(np.float32),
            "pose": mean_pose(np.stack(poses)).astype(np.float32)}


def run_views(run: Callable[[Any], dict[str, Any]], crops: dict[float, Any], n_views: int, size: int,
              exp_mirror: np.ndarray, max_batch: int, to_numpy: Callable[[Any], np.ndarray] = np.asarray
              ) -> dict[str, np.ndarray]:
    """CoarseNet parameters of N faces from their first ``n_views`` views.

    ``crops[zoom]``: network input ``(N, 3, S, S)`` (NumPy or CuPy) cropped at each zoom of :func:`zooms`; the
    mirrored views are its flips. All views go through ``run`` as batches of at most ``max_batch``.
    """
    views = [crops[z][..., ::-1] if m else crops[z] for z, m in VIEWS[:n_views]]
    n = views[0].shape[0]
    xp = _xp(views[0])
    batch = xp.ascontiguousarray(xp.concatenate(views, 0)) if n_views > 1 else views[0]
    outs: dict[str, list[np.ndarray]] = {}
    for s in range(0, batch.shape[0], max_batch):
        o = run(batch[s:s + max_batch])
        for k in ("identity", "expression", "pose"):
            outs.setdefault(k, []).append(to_numpy(o[k]))
    full = {k: np.concatenate(v, 0) for k, v in outs.items()}
    return combine([{k: v[i * n:(i + 1) * n] for k, v in full.items()} for i in range(n_views)], size, exp_mirror)


__all__ = ["MAX_VIEWS", "VIEWS", "check_views", "combine", "expression_mirror", "frame_to_view", "mean_pose",
           "mirror_pose", "run_views", "zoom_affine", "zooms"]
