"""CoarseNet's input rendering layer (NumPy, runtime side, no torch): the 6-channel feedback image.

For a batch of posed meshes (crop pixels) :func:`render_feedback` returns ``(B, 6, S, S)`` float32:

* channels 0..2: unit surface normals in the **image frame** (x right, y down, z toward the camera), smooth
  (area-weighted vertex normals, :func:`rtface.render.shading.mesh_normals`, interpolated with the
  barycentrics, renormalised), pointing out of the face: a frontal face has n_z > 0. They agree with the
  normals of the depth map, ``n ~ (-dz/dx, -dz/dy, 1)``.
* channels 3..5: PNCC, the model-frame coordinates of the **mean face** at that pixel (a fixed colour code of
  the mesh's surface) normalised per axis to [0, 1] with :data:`PNCC_MIN` / :data:`PNCC_MAX`.

All channels are 0 where no face is rendered, and all of them are 0 when there is no estimate (first frame,
single image). Used by training (``train/data.py``) and by the pipeline (previous frame's estimate), so both
see exactly the same input.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .raster import Raster, rasterize
from .shading import mesh_normals

FEEDBACK_CHANNELS = 6
#: Bounding box (cm, model frame) of the ICT-FaceKit face-area mean face: PNCC = (mean - MIN) / (MAX - MIN).
PNCC_MIN = np.array([-9.19654, -16.4741, -3.23196], dtype=np.float32)
PNCC_MAX = np.array([9.19654, 12.3721, 13.0882], dtype=np.float32)


def pncc_code(mean_vertices: np.ndarray) -> np.ndarray:
    """Per-vertex PNCC colours ``(V, 3)`` in [0, 1] from the mean face ``(V, 3)`` (cm)."""
    m = np.asarray(mean_vertices, dtype=np.float32)
    return np.clip((m - PNCC_MIN) / (PNCC_MAX - PNCC_MIN), 0.0, 1.0).astype(np.float32)


def _interp(tri, bary, mask, attributes, triangles):
    """Per-vertex ``attributes`` (B, V, C) -> per-pixel (B, C, H, W) with the raster's barycentrics, 0 outside."""
    b, h, w = tri.shape
    c = attributes.shape[2]
    out = np.zeros((b, c, h, w), dtype=np.float32)
    for i in range(b):
        sel = mask[i]
        if not sel.any():
            continue
        ids = triangles[tri[i][sel]]  # (P, 3)
        vals = attributes[i][ids]  # (P, 3, C)
        out[i][:, sel] = np.einsum("pk,pkc->cp", bary[i][sel], vals)
    return out


def render_feedback(vertices_px: np.ndarray, triangles: np.ndarray, size: int, pncc: np.ndarray,
                    raster: Raster | None = None) -> np.ndarray:
    """The feedback image ``(B, 6, size, size)`` float32 of meshes ``(B, V, 3)`` (or ``(V, 3)``) in crop px.

    Args:
        pncc: per-vertex PNCC code ``(V, 3)`` (:func:`pncc_code` of the model's mean face; compute it once).
        raster: the meshes' :func:`rasterize` result when the caller already has it (same size), to skip
            rasterising again.
    """
    v = np.asarray(vertices_px, dtype=np.float32)
    if v.ndim == 2:
        v = v[None]
    if v.ndim != 3 or v.shape[-1] != 3:
        raise InputError(f"vertices_px must have shape (B, V, 3) or (V, 3), got {np.shape(vertices_px)}")
    t = np.ascontiguousarray(triangles, dtype=np.int32)
    code = np.asarray(pncc, dtype=np.float32)
    if code.shape != (v.shape[1], 3):
        raise InputError(f"pncc must have shape (V, 3) = ({v.shape[1]}, 3), got {code.shape}")
    if raster is None:
        raster = rasterize(v, t, size, size, backend="cpu")
    tri = np.asarray(raster.triangle)
    bary = np.asarray(raster.barycentric)
    mask = np.asarray(raster.mask)
    if tri.ndim == 2:
        tri, bary, mask = tri[None], bary[None], mask[None]
    if tri.shape != (v.shape[0], size, size):
        raise InputError(f"raster has shape {tri.shape}, expected {(v.shape[0], size, size)}")
    normals = mesh_normals(v, t, image_frame=True)
    attrs = np.concatenate([normals, np.broadcast_to(code, normals.shape)], axis=-1)
    out = _interp(tri, bary, mask, attrs, t)
    n = out[:, :3]
    norm = np.sqrt((n * n).sum(axis=1, keepdims=True))
    out[:, :3] = np.where(norm > 1e-12, n / np.maximum(norm, 1e-12), 0.0)
    return out


__all__ = ["FEEDBACK_CHANNELS", "PNCC_MAX", "PNCC_MIN", "pncc_code", "render_feedback"]
