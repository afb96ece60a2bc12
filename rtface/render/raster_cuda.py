"""CUDA backend of :func:`rtface.render.rasterize`: launches ``kernels/rasterize.cu`` through CuPy.

The kernel source is compiled once per process and device by ``cupy.RawModule`` (NVRTC; CuPy caches the
binary on disk). Semantics and float32 arithmetic are those of the Numba twin ``raster_cpu.py``, so both
backends return bit-identical arrays.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import require
from .raster import Raster, check_index_range, check_triangles, check_vertices

_KERNEL_FILE = "rasterize.cu"
_OPTIONS = ("-std=c++14",)
_BLOCK = 128
_module = None
_lock = threading.Lock()


def _cupy() -> Any:
    return require("cupy", "the CUDA rasteriser")


def kernel_source() -> str:
    """Text of ``rasterize.cu``: the installed package data ``rtface.kernels``, else the repository copy."""
    try:
        return (importlib.resources.files("rtface.kernels") / _KERNEL_FILE).read_text()
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        repo_copy = Path(__file__).resolve().parents[2] / "kernels" / _KERNEL_FILE
        return repo_copy.read_text()


def _kernels() -> Any:
    """The compiled RawModule (compiled lazily, once per process; CuPy compiles per device on first use)."""
    global _module
    with _lock:
        if _module is None:
            cp = _cupy()
            _module = cp.RawModule(code=kernel_source(), options=_OPTIONS)
        return _module


def rasterize_cuda(
    vertices_px: Any,
    triangles: Any,
    height: int,
    width: int,
    *,
    cull_backfaces: bool = False,
    check_indices: bool = True,
    stream: Any = None,
) -> Raster:
    """Rasterise on the GPU. Inputs may be NumPy or CuPy; outputs are CuPy when ``vertices_px`` is.

    Shapes and conventions as :func:`rtface.render.rasterize` (height and width already validated).
    All work is queued on ``stream`` (default: CuPy's current stream); with NumPy inputs the results are
    copied back to the host, which synchronises that stream. A ``stream`` other than the current one is first
    made to wait (an event, no host wait) for the work queued on the current stream, so CuPy inputs made there
    (``cp.asarray`` copies included) are complete before the kernels read them; CuPy outputs are ready on
    ``stream`` (synchronise it, or make your stream wait for it, before reading them elsewhere).
    """
    cp = _cupy()
    return_device = _is_cupy(vertices_px)
    if not return_device:
        vertices_px = np.asarray(vertices_px)
    if not _is_cupy(triangles):
        triangles = np.asarray(triangles)
    check_vertices(vertices_px.shape, vertices_px.dtype)
    check_triangles(triangles.shape, triangles.dtype)
    batched = len(vertices_px.shape) == 3
    batch = int(vertices_px.shape[0]) if batched else 1
    num_vertices = int(vertices_px.shape[-2])
    ctx = stream if stream is not None else contextlib.nullcontext()
    if stream is not None:
        current = cp.cuda.get_current_stream()
        if current.ptr != stream.ptr:
            stream.wait_event(current.record())
    with ctx:
        if triangles.shape[0] and (check_indices or isinstance(triangles, np.ndarray)):
            check_index_range(*_index_span(cp, triangles), num_vertices)
        verts = cp.ascontiguousarray(cp.asarray(vertices_px, dtype=cp.float32))
        verts = verts.reshape((batch, num_vertices, 3))
        tris = cp.ascontiguousarray(cp.asarray(triangles, dtype=cp.int32))
        out = _launch(cp, verts, tris, height, width, bool(cull_backfaces))
        if not batched:
            out = tuple(a[0] for a in out)
        if not return_device:
            out = tuple(cp.asnumpy(a) for a in out)
    depth, tri, bary, mask = out
    return Raster(depth=depth, triangle=tri, barycentric=bary, mask=mask)


def _is_cupy(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "cupy"


def _index_span(cp: Any, triangles: Any) -> tuple[int, int]:
    """(min, max) of the triangle indices; one device-to-host copy for CuPy arrays."""
    if isinstance(triangles, np.ndarray):
        return int(triangles.min()), int(triangles.max())
    lo, hi = cp.asnumpy(cp.stack((triangles.min(), triangles.max())))
    return int(lo), int(hi)


def _launch(cp: Any, verts: Any, tris: Any, height: int, width: int, cull: bool) -> tuple[Any, ...]:
    """Clear, raster and resolve kernels on the current stream. verts (B,V,3) f32, tris (T,3) i32."""
    module = _kernels()
    batch, num_vertices = int(verts.shape[0]), int(verts.shape[1])
    num_tris = int(tris.shape[0])
    pixels = batch * height * width
    keys = cp.empty(pixels, dtype=cp.uint64)
    depth = cp.empty((batch, height, width), dtype=cp.float32)
    tri = cp.empty((batch, height, width), dtype=cp.int32)
    bary = cp.empty((batch, height, width, 3), dtype=cp.float32)
    mask = cp.empty((batch, height, width), dtype=cp.bool_)

    i32 = np.int32
    module.get_function("rt_clear")((_blocks(pixels, cap=4096),), (_BLOCK,), (keys, np.int64(pixels)))
    if num_tris and num_vertices:
        module.get_function("rt_raster")(
            (_blocks(batch * num_tris),),
            (_BLOCK,),
            (verts, tris, i32(batch), i32(num_vertices), i32(num_tris), i32(height), i32(width),
             i32(cull), keys),
        )
    module.get_function("rt_resolve")(
        (_blocks(pixels),),
        (_BLOCK,),
        (verts, tris, keys, i32(batch), i32(num_vertices), i32(height), i32(width), depth, tri, bary, mask),
    )
    return depth, tri, bary, mask


def _blocks(threads: int, cap: int | None = None) -> int:
    n = max(1, -(-threads // _BLOCK))
    return min(n, cap) if cap else n
