"""Numba twin of ``kernels/rasterize.cu``: the CPU rasteriser and the oracle of the GPU tests.

Both implementations follow the same three steps with the same arithmetic (see ``raster.py`` for the
conventions):

1. **Coverage** (exact integers). Vertex x and y are snapped to 1/256 pixel
   (``X = rint(x * 256)``, round half to even, computed exactly in float32); pixel centres are at
   ``256 * j + 128``. Edge functions are evaluated in int64, so they are exact, and a pixel centre on an
   edge belongs to the triangle only when that edge is a *top* or *left* edge (Direct3D rule). Pixels on a
   shared edge are therefore covered exactly once, whatever the windings of the two triangles.
2. **Depth test.** For every covered pixel the depth is interpolated in float32 (``interpolate`` below) and
   packed into a 64-bit key ``(~ordered(z)) << 32 | triangle``: larger z gives a smaller key, equal depths
   resolve to the smaller triangle id. The pixel keeps the smallest key (``atomicMin`` on the GPU).
3. **Resolve.** The winning triangle's barycentrics and depth are recomputed with the same float32 formula.

The float32 formula uses only IEEE-754 round-to-nearest ``+ - * /`` in a fixed order and no fused
multiply-add (Numba emits none without ``fastmath``; the CUDA source uses inline PTX ``add.rn.f32`` and
friends, which neither fuse nor flush subnormals whatever ``-ftz`` CuPy compiles with), so the CPU and CUDA results
are **bit-for-bit equal**, subnormal values included.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

SUBPIXEL = 256  # fixed-point steps per pixel (8 bits of sub-pixel precision)
HALF = 128  # pixel centre offset in fixed point
MAX_COORD = 1048576.0  # |x|, |y| above 2**20 px: the triangle is skipped (keeps int64 edge math exact)
EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)  # key of a pixel that no triangle covers

_F256 = np.float32(SUBPIXEL)
_FMAX = np.float32(MAX_COORD)
_FHALF = np.float32(0.5)
_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_SIGN = np.uint32(0x80000000)
_NOSIGN = np.uint32(0x7FFFFFFF)
_ALL = np.uint32(0xFFFFFFFF)
_LOW = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)


@njit(cache=True, nogil=True, inline="always")
def _vertex_ok(x: np.float32, y: np.float32, z: np.float32) -> bool:
    """Finite, and x, y inside +-2**20 px."""
    return (
        np.isfinite(x) and np.isfinite(y) and np.isfinite(z) and abs(x) <= _FMAX and abs(y) <= _FMAX
    )


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def interpolate(x0, y0, z0, x1, y1, z1, x2, y2, z2, area, px, py):
    """Barycentrics (b0, b1, b2) and depth of pixel centre (px, py); all float32, fixed evaluation order.

    ``area`` is ``(x1-x0)*(y2-y0) - (y1-y0)*(x2-x0)`` (twice the signed area, float32, non-zero).
    """
    w0 = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)
    w1 = (x0 - x2) * (py - y2) - (y0 - y2) * (px - x2)
    w2 = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)
    inv = _F1 / area
    b0 = w0 * inv
    b1 = w1 * inv
    b2 = w2 * inv
    z = (b0 * z0 + b1 * z1) + b2 * z2
    return b0, b1, b2, z


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _float_area(x0, y0, x1, y1, x2, y2):
    """Twice the signed area in float32: positive when the triangle is clockwise on screen (y down)."""
    return (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)


@intrinsic
def _float_bits(typingctx, x):
    """Bit pattern of a float32 as uint32 (a bitcast, like CUDA's ``__float_as_uint``)."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


@njit(cache=True, nogil=True, inline="always")
def _depth_key(z, triangle):
    """64-bit key: (~order-preserving bits of z) << 32 | triangle. Larger z -> smaller key.

    ``z + 0`` maps -0.0 to +0.0 so both zeros get the same key; NaN never reaches here.
    """
    u = _float_bits(z + _F0)
    inverted = u if u & _SIGN else (u ^ _NOSIGN)  # == ~order_preserving(u) in 32 bits
    return (np.uint64(inverted) << _SHIFT) | np.uint64(triangle)


@njit(cache=True, nogil=True, inline="always")
def _is_top_left(dx, dy):
    """Top-left test of an edge of a triangle oriented clockwise on screen (positive area, y down)."""
    return dy < 0 or (dy == 0 and dx > 0)


@njit(cache=True, nogil=True, error_model="numpy")
def _snap(verts, fx, fy, ok):
    """Fixed-point x, y of every vertex and whether it is usable."""
    for v in range(verts.shape[0]):
        x = verts[v, 0]
        y = verts[v, 1]
        good = _vertex_ok(x, y, verts[v, 2])
        ok[v] = good
        if good:
            fx[v] = np.int64(np.rint(x * _F256))
            fy[v] = np.int64(np.rint(y * _F256))
        else:
            fx[v] = 0
            fy[v] = 0


@njit(cache=True, nogil=True, error_model="numpy")
def _raster_pass(verts, tris, height, width, cull, keys, fx, fy, ok):
    """Pass 1: keep the smallest depth key per pixel over all triangles (keys: (H*W,) uint64)."""
    nv = verts.shape[0]
    for t in range(tris.shape[0]):
        i0 = tris[t, 0]
        i1 = tris[t, 1]
        i2 = tris[t, 2]
        if i0 < 0 or i1 < 0 or i2 < 0 or i0 >= nv or i1 >= nv or i2 >= nv:
            continue
        if not (ok[i0] and ok[i1] and ok[i2]):
            continue
        ax = fx[i0]
        ay = fy[i0]
        bx = fx[i1]
        by = fy[i1]
        cx = fx[i2]
        cy = fy[i2]
        area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
        if area == 0 or (cull and area > 0):
            continue
        xmin = min(ax, bx, cx)
        xmax = max(ax, bx, cx)
        ymin = min(ay, by, cy)
        ymax = max(ay, by, cy)
        j0 = 0 if xmin <= HALF else (xmin - HALF + SUBPIXEL - 1) >> 8
        j1 = -1 if xmax < HALF else min((xmax - HALF) >> 8, width - 1)
        r0 = 0 if ymin <= HALF else (ymin - HALF + SUBPIXEL - 1) >> 8
        r1 = -1 if ymax < HALF else min((ymax - HALF) >> 8, height - 1)
        if j0 > j1 or r0 > r1:
            continue  # no pixel centre inside the clipped bounding box
        x0 = verts[i0, 0]
        y0 = verts[i0, 1]
        z0 = verts[i0, 2]
        x1 = verts[i1, 0]
        y1 = verts[i1, 1]
        z1 = verts[i1, 2]
        x2 = verts[i2, 0]
        y2 = verts[i2, 1]
        z2 = verts[i2, 2]
        farea = _float_area(x0, y0, x1, y1, x2, y2)
        if farea == _F0 or (farea > _F0) != (area > 0):
            continue  # degenerate, or a sub-pixel sliver whose snapped winding flipped
        if area < 0:  # orient clockwise on screen for the coverage test: swap b and c
            bx, cx = cx, bx
            by, cy = cy, by
        # edge k is opposite vertex k: e0 = b->c, e1 = c->a, e2 = a->b
        dx0 = cx - bx
        dy0 = cy - by
        dx1 = ax - cx
        dy1 = ay - cy
        dx2 = bx - ax
        dy2 = by - ay
        t0 = 1 if _is_top_left(dx0, dy0) else 0
        t1 = 1 if _is_top_left(dx1, dy1) else 0
        t2 = 1 if _is_top_left(dx2, dy2) else 0
        px0 = j0 * SUBPIXEL + HALF
        for r in range(r0, r1 + 1):
            py = r * SUBPIXEL + HALF
            e0 = dx0 * (py - by) - dy0 * (px0 - bx) + t0
            e1 = dx1 * (py - cy) - dy1 * (px0 - cx) + t1
            e2 = dx2 * (py - ay) - dy2 * (px0 - ax) + t2
            fpy = np.float32(r) + _FHALF
            row = r * width
            for j in range(j0, j1 + 1):
                # branch-free on purpose: coverage is unpredictable for small triangles
                fpx = np.float32(j) + _FHALF
                z = interpolate(x0, y0, z0, x1, y1, z1, x2, y2, z2, farea, fpx, fpy)[3]
                key = _depth_key(z, t)
                inside = (e0 > 0) & (e1 > 0) & (e2 > 0) & (z == z)
                key = key if inside else EMPTY
                old = keys[row + j]
                keys[row + j] = key if key < old else old
                e0 -= dy0 * SUBPIXEL
                e1 -= dy1 * SUBPIXEL
                e2 -= dy2 * SUBPIXEL


@njit(cache=True, nogil=True, error_model="numpy")
def _resolve_pass(verts, tris, height, width, keys, depth, triangle, bary, mask):
    """Pass 2: triangle id, barycentrics and depth of the winner of every pixel."""
    for r in range(height):
        fpy = np.float32(r) + _FHALF
        for j in range(width):
            key = keys[r * width + j]
            if key == EMPTY:
                depth[r, j] = _F0
                triangle[r, j] = -1
                bary[r, j, 0] = _F0
                bary[r, j, 1] = _F0
                bary[r, j, 2] = _F0
                mask[r, j] = False
                continue
            t = np.int64(key & _LOW)
            i0 = tris[t, 0]
            i1 = tris[t, 1]
            i2 = tris[t, 2]
            x0 = verts[i0, 0]
            y0 = verts[i0, 1]
            x1 = verts[i1, 0]
            y1 = verts[i1, 1]
            x2 = verts[i2, 0]
            y2 = verts[i2, 1]
            farea = _float_area(x0, y0, x1, y1, x2, y2)
            fpx = np.float32(j) + _FHALF
            b0, b1, b2, z = interpolate(
                x0, y0, verts[i0, 2], x1, y1, verts[i1, 2], x2, y2, verts[i2, 2], farea, fpx, fpy
            )
            depth[r, j] = z
            triangle[r, j] = t
            bary[r, j, 0] = b0
            bary[r, j, 1] = b1
            bary[r, j, 2] = b2
            mask[r, j] = True


@njit(cache=True, nogil=True)
def _render_one(verts, tris, height, width, cull, depth, triangle, bary, mask):
    """Rasterise one image: verts (V,3) float32, tris (T,3) int32 -> the four output arrays (filled)."""
    nv = verts.shape[0]
    keys = np.full(height * width, EMPTY, dtype=np.uint64)
    fx = np.empty(nv, dtype=np.int64)
    fy = np.empty(nv, dtype=np.int64)
    ok = np.empty(nv, dtype=np.bool_)
    _snap(verts, fx, fy, ok)
    _raster_pass(verts, tris, height, width, cull, keys, fx, fy, ok)
    _resolve_pass(verts, tris, height, width, keys, depth, triangle, bary, mask)


@njit(cache=True, nogil=True)
def _render_serial(verts, tris, height, width, cull, depth, triangle, bary, mask):
    for b in range(verts.shape[0]):
        _render_one(verts[b], tris, height, width, cull, depth[b], triangle[b], bary[b], mask[b])


def _render_parallel(verts, tris, height, width, cull, depth, triangle, bary, mask):
    """The batch in contiguous parts, one per core (:mod:`rtface.workers`)."""
    from ..workers import run_ranges

    def part(a: int, b: int) -> None:
        _render_serial(verts[a:b], tris, height, width, cull, depth[a:b], triangle[a:b], bary[a:b], mask[a:b])

    run_ranges(part, verts.shape[0])


def rasterize_cpu(
    vertices: np.ndarray, triangles: np.ndarray, height: int, width: int, cull_backfaces: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rasterise a batch on the CPU.

    ``vertices``: (B, V, 3) C-contiguous float32 pixels; ``triangles``: (T, 3) C-contiguous int32 with
    indices already checked. Returns depth (B,H,W) float32, triangle (B,H,W) int32, barycentric
    (B,H,W,3) float32 and mask (B,H,W) bool. Images of a batch are drawn in parallel, one thread per core.
    """
    batch = vertices.shape[0]
    depth = np.empty((batch, height, width), dtype=np.float32)
    triangle = np.empty((batch, height, width), dtype=np.int32)
    bary = np.empty((batch, height, width, 3), dtype=np.float32)
    mask = np.empty((batch, height, width), dtype=np.bool_)
    render = _render_parallel if batch > 1 else _render_serial
    render(vertices, triangles, height, width, bool(cull_backfaces), depth, triangle, bary, mask)
    return depth, triangle, bary, mask
