"""Rendering layer: z-buffer rasterisation of meshes in pixel coordinates (CPU via Numba, GPU via CuPy).

``rasterize(vertices_px, triangles, height, width, backend="auto")`` returns a :class:`Raster` with
``depth``, ``triangle``, ``barycentric`` and ``mask``; conventions in :mod:`rtface.render.raster`.
"""

from __future__ import annotations

from .raster import Raster, rasterize
from . import shading  # noqa: F401  (normals, SH basis, lighting)

__all__ = ["Raster", "rasterize"]
