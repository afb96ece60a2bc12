"""Z-buffer rasteriser of triangle meshes given in pixel coordinates: the rendering layer's forward pass.

Conventions (DESIGN.md):

* image x to the right, y down; pixel (i, j) is row i, column j, with its centre at (x=j+0.5, y=i+0.5);
* ``vertices_px[..., :] = [x, y, z]`` in pixels, z toward the camera: the visible surface is the one with the
  **largest** z;
* depth is interpolated linearly in screen space with the barycentric weights (exact for the weak-perspective
  / orthographic projection used throughout rtface);
* coverage follows the top-left rule on 1/256-pixel fixed-point vertices, so a pixel centre on an edge shared
  by two triangles is covered exactly once (no gaps, no double hits), whatever their windings;
* windings: both are drawn by default. With ``cull_backfaces=True`` only **front** faces are drawn, front
  meaning *counter-clockwise as seen on the screen* (y down), i.e. ``(x1-x0)*(y2-y0) - (y1-y0)*(x2-x0) < 0``
  in pixel coordinates. A mesh that is counter-clockwise seen from the front in a y-up frame (the ICT face
  model) stays front-facing after the usual ``y_px = cy - s * y`` projection;
* depth ties resolve to the smaller triangle id; zero-area triangles, triangles with a NaN/inf coordinate or
  with |x| or |y| above 2**20 px are skipped.

The CPU (Numba) and CUDA backends share these semantics and the float32 arithmetic, and agree bit for bit
(see ``raster_cpu.py``).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError

BACKENDS = ("auto", "cpu", "cuda")
MAX_SIZE = 1 << 16  # largest height or width accepted


@dataclass(frozen=True)
class Raster:
    """Result of :func:`rasterize`. A leading batch axis B is present when the vertices had one.

    depth: (H, W) float32, z of the visible surface in pixels, 0 where nothing is covered.
    triangle: (H, W) int32, index of the visible triangle, -1 on background.
    barycentric: (H, W, 3) float32, weights of the triangle's three vertices (0 on background).
    mask: (H, W) bool, True where a triangle covers the pixel centre.

    Arrays are NumPy, or CuPy when the CUDA backend was given CuPy inputs.
    """

    depth: Any
    triangle: Any
    barycentric: Any
    mask: Any


def rasterize(
    vertices_px: Any,
    triangles: Any,
    height: int,
    width: int,
    backend: str = "auto",
    *,
    cull_backfaces: bool = False,
    check_indices: bool = True,
    stream: Any = None,
) -> Raster:
    """Rasterise a mesh (or a batch of meshes sharing ``triangles``) into a depth map.

    Args:
        vertices_px: (V, 3) or (B, V, 3) float32/float64 ``[x, y, z]`` in pixels (NumPy or CuPy).
        triangles: (T, 3) int32/int64 vertex indices, shared by every mesh of the batch.
        height, width: image size in pixels (positive ints).
        backend: ``"auto"`` (CUDA when the inputs are CuPy arrays, else CPU), ``"cpu"`` or ``"cuda"``.
        cull_backfaces: draw only triangles that are counter-clockwise on screen (see module docstring).
        check_indices: CUDA backend: verify that every index lies in [0, V) (one stream synchronisation;
            turn off in a real-time loop with known-good triangles: the kernels skip out-of-range
            triangles either way). NumPy inputs to the CPU backend are always checked.
        stream: CUDA backend only, a ``cupy.cuda.Stream`` to run on (default: the current stream).

    Returns:
        A :class:`Raster`; CuPy arrays when the CUDA backend got CuPy inputs, NumPy arrays otherwise.

    Raises:
        InputError: wrong shape, dtype or value of an argument, or a triangle index out of range.
        BackendUnavailable: ``backend="cuda"`` without CuPy or a GPU.
    """
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    height = _check_size("height", height)
    width = _check_size("width", width)
    on_device = _is_cupy(vertices_px) or _is_cupy(triangles)
    if backend == "cuda" or (backend == "auto" and on_device):
        from .raster_cuda import rasterize_cuda

        return rasterize_cuda(
            vertices_px,
            triangles,
            height,
            width,
            cull_backfaces=cull_backfaces,
            check_indices=check_indices,
            stream=stream,
        )
    if on_device:
        vertices_px = _to_numpy(vertices_px)
        triangles = _to_numpy(triangles)
    return _rasterize_numpy(vertices_px, triangles, height, width, cull_backfaces)


def _rasterize_numpy(vertices_px: Any, triangles: Any, height: int, width: int, cull: bool) -> Raster:
    from .raster_cpu import rasterize_cpu

    verts = np.asarray(vertices_px)
    tris = np.asarray(triangles)
    check_vertices(verts.shape, verts.dtype)
    check_triangles(tris.shape, tris.dtype)
    batched = verts.ndim == 3
    batch = verts.shape[0] if batched else 1
    verts = np.ascontiguousarray(verts.reshape((batch,) + verts.shape[-2:]), dtype=np.float32)
    if tris.size:  # always checked on the host: cheap, and it makes the int32 cast safe
        check_index_range(int(tris.min()), int(tris.max()), verts.shape[1])
    tris = np.ascontiguousarray(tris, dtype=np.int32)
    depth, tri, bary, mask = rasterize_cpu(verts, tris, height, width, cull)
    if not batched:
        depth, tri, bary, mask = depth[0], tri[0], bary[0], mask[0]
    return Raster(depth=depth, triangle=tri, barycentric=bary, mask=mask)


def check_vertices(shape: tuple[int, ...], dtype: Any) -> None:
    """Raise InputError unless ``vertices_px`` is (V, 3) or (B, V, 3) float32/float64."""
    if len(shape) not in (2, 3) or shape[-1] != 3:
        raise InputError(
            f"vertices_px must have shape (V, 3) or (B, V, 3) ([x, y, z] in pixels), got shape {tuple(shape)}"
        )
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise InputError(f"vertices_px must be float32 or float64, got dtype {np.dtype(dtype)}")


def check_triangles(shape: tuple[int, ...], dtype: Any) -> None:
    """Raise InputError unless ``triangles`` is (T, 3) int32/int64."""
    if len(shape) != 2 or shape[1] != 3:
        raise InputError(
            "triangles must have shape (T, 3) (vertex indices, shared by the batch), "
            f"got shape {tuple(shape)}"
        )
    if np.dtype(dtype) not in (np.int32, np.int64):
        raise InputError(f"triangles must be int32 or int64, got dtype {np.dtype(dtype)}")
    if shape[0] >= 2**31 - 1:
        raise InputError(f"triangles: at most 2**31 - 2 triangles are supported, got {shape[0]}")


def check_index_range(lo: int, hi: int, num_vertices: int) -> None:
    """Raise InputError unless every triangle index ``lo..hi`` lies in [0, num_vertices)."""
    if lo < 0 or hi >= num_vertices:
        raise InputError(
            f"triangles index out of range: indices span [{lo}, {hi}] but vertices_px has "
            f"{num_vertices} vertices (valid indices are 0..{num_vertices - 1})"
        )


def _check_size(name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be a positive int, got {value!r} ({type(value).__name__})")
    value = int(value)
    if not 0 < value <= MAX_SIZE:
        raise InputError(f"{name} must be in 1..{MAX_SIZE} pixels, got {value}")
    return value


def _is_cupy(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "cupy"


def _to_numpy(x: Any) -> np.ndarray:
    return x.get() if _is_cupy(x) else np.asarray(x)
