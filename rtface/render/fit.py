"""A 3DMM fit rendered as the pipeline renders it: the coarse depth and mask the FineNet is given.

``render_fit(model, identity, expression, pose, size)`` -> ``(vertices_px, Raster)``: the model's vertices for
the coefficients, posed by :func:`rtface.camera.project` (weak perspective, crop px: x right, y down, z
toward the camera) and rasterised at ``size`` x ``size`` (:func:`rtface.render.rasterize`, depth in crop px).
The offline tools (benchmarks, training data) use it; the pipeline fuses the same steps into one kernel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .raster import Raster, rasterize


def render_fit(model: Any, identity: np.ndarray, expression: np.ndarray, pose: np.ndarray, size: int,
               backend: str = "cpu") -> tuple[np.ndarray, Raster]:
    """Posed meshes (N, V, 3) float32 in crop px and their rasterisation (N, size, size) of N fits
    (``identity`` (N, K_id), ``expression`` (N, K_exp), ``pose`` (N, 6): pitch, yaw, roll, scale, tx, ty)."""
    from ..camera import project

    verts = project(model.vertices(np.asarray(identity, np.float32), np.asarray(expression, np.float32)),
                    np.asarray(pose))
    verts = np.ascontiguousarray(verts, dtype=np.float32)
    return verts, rasterize(verts, model.triangles, size, size, backend=backend)
