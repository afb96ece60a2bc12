"""CPU rasteriser: analytic depths, the fill rule, the depth test, batching, robustness and input errors."""

from __future__ import annotations

import numpy as np
import pytest

from rtface.errors import InputError
from rtface.render import Raster, rasterize


def pixel_centres(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """x, y of every pixel centre, (H, W) float64 each."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    return x + 0.5, y + 0.5


def coverage_count(verts: np.ndarray, tris: np.ndarray, height: int, width: int) -> np.ndarray:
    """How many triangles cover each pixel, counted by rasterising every triangle alone."""
    count = np.zeros((height, width), dtype=np.int64)
    for tri in tris:
        count += rasterize(verts, tri[None], height, width).mask
    return count


def brute_force(verts: np.ndarray, tris: np.ndarray, height: int, width: int):
    """Float64 z-buffer oracle: (depth, triangle, margin) where margin is how unambiguous the pixel is."""
    px, py = pixel_centres(height, width)
    depth = np.full((height, width), -1e30)
    second = np.full((height, width), -1e30)
    winner = np.full((height, width), -1)
    edge_gap = np.full((height, width), np.inf)
    v = verts.astype(np.float64)
    for t, (i0, i1, i2) in enumerate(tris):
        (x0, y0, z0), (x1, y1, z1), (x2, y2, z2) = v[i0], v[i1], v[i2]
        area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
        if area == 0:
            continue
        b0 = ((x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)) / area
        b1 = ((x0 - x2) * (py - y2) - (y0 - y2) * (px - x2)) / area
        b2 = 1.0 - b0 - b1
        bmin = np.minimum(np.minimum(b0, b1), b2)
        edge_gap = np.minimum(edge_gap, np.abs(bmin))
        z = b0 * z0 + b1 * z1 + b2 * z2
        inside = bmin > 0
        better = inside & (z > depth)
        second = np.where(better, depth, np.where(inside, np.maximum(second, z), second))
        depth = np.where(better, z, depth)
        winner = np.where(better, t, winner)
    margin = np.minimum(edge_gap, depth - second)
    return np.where(winner >= 0, depth, 0.0), winner, margin


def grid_mesh(x0, x1, y0, y1, nx, ny, jitter, rng, snap_some=False):
    """Rectangle [x0,x1]x[y0,y1] split into 2*nx*ny triangles; interior vertices jittered, windings mixed."""
    xs, ys = np.linspace(x0, x1, nx + 1), np.linspace(y0, y1, ny + 1)
    gx, gy = np.meshgrid(xs, ys)
    interior = np.zeros_like(gx, dtype=bool)
    interior[1:-1, 1:-1] = True
    cell = min((x1 - x0) / nx, (y1 - y0) / ny)
    gx = gx + interior * rng.uniform(-jitter, jitter, gx.shape) * cell
    gy = gy + interior * rng.uniform(-jitter, jitter, gy.shape) * cell
    if snap_some:  # put some interior vertices exactly on pixel centres
        pick = interior & (rng.random(gx.shape) < 0.5)
        gx = np.where(pick, np.floor(gx) + 0.5, gx)
        gy = np.where(pick, np.floor(gy) + 0.5, gy)
    verts = np.stack([gx.ravel(), gy.ravel(), rng.uniform(0, 5, gx.size)], axis=1).astype(np.float32)
    tris = []
    for r in range(ny):
        for c in range(nx):
            a, b = r * (nx + 1) + c, r * (nx + 1) + c + 1
            d, e = a + nx + 1, b + nx + 1
            tris += [[a, b, e], [a, e, d]] if (r + c) % 2 else [[a, b, d], [b, e, d]]
    tris = np.array(tris, dtype=np.int32)
    flip = rng.random(len(tris)) < 0.5
    tris[flip] = tris[flip][:, ::-1]
    return verts, tris


# --- analytic depth ------------------------------------------------------------------------------------


@pytest.mark.parametrize("height,width", [(48, 48), (37, 53)])
def test_plane_depth_is_exact_at_every_pixel_centre(height, width):
    a, b, c = 0.3, -0.2, 5.0
    corners = np.array([[-3, -3], [width + 3, -3], [width + 3, height + 3], [-3, height + 3]], np.float64)
    z = a * corners[:, 0] + b * corners[:, 1] + c
    verts = np.column_stack([corners, z]).astype(np.float32)
    r = rasterize(verts, np.array([[0, 1, 2], [0, 2, 3]]), height, width)
    px, py = pixel_centres(height, width)
    assert r.mask.all()
    assert r.depth.dtype == np.float32 and r.depth.shape == (height, width)
    assert np.abs(r.depth - (a * px + b * py + c)).max() < 1e-4
    assert np.abs(r.barycentric.sum(-1) - 1).max() < 1e-5
    assert set(np.unique(r.triangle)) == {0, 1}


def test_depth_is_the_documented_float32_formula_of_the_barycentrics():
    rng = np.random.default_rng(1)
    verts = rng.uniform([0, 0, -20], [40, 30, 20], (30, 3)).astype(np.float32)
    tris = rng.integers(0, 30, (40, 3))
    r = rasterize(verts, tris, 30, 40)
    ids = r.triangle[r.mask]
    z = verts[tris[ids], 2]  # (N, 3) float32
    b = r.barycentric[r.mask]
    expected = (b[:, 0] * z[:, 0] + b[:, 1] * z[:, 1]) + b[:, 2] * z[:, 2]  # float32, no FMA
    np.testing.assert_array_equal(r.depth[r.mask], expected)
    assert r.mask.sum() > 100


def uv_sphere(cx, cy, radius, n_lon=64, n_lat=32):
    """Closed sphere mesh centred at (cx, cy, 0), pixel units."""
    lat = np.linspace(0, np.pi, n_lat + 1)
    lon = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    pts = np.stack([np.sin(la) * np.cos(lo), np.sin(la) * np.sin(lo), np.cos(la)], -1).reshape(-1, 3)
    verts = (pts * radius + [cx, cy, 0]).astype(np.float32)
    tris = []
    for i in range(n_lat):
        for j in range(n_lon):
            a, b = i * n_lon + j, i * n_lon + (j + 1) % n_lon
            c, d = a + n_lon, b + n_lon
            tris += [[a, b, d], [a, d, c]]
    tris = np.array(tris)
    area2 = np.cross(verts[tris[:, 1]] - verts[tris[:, 0]], verts[tris[:, 2]] - verts[tris[:, 0]])
    return verts, tris[np.linalg.norm(area2, axis=1) > 1e-6]  # drop the pole slivers


def test_sphere_depth_matches_the_visible_facet_planes():
    radius, size = 20.0, 64
    verts, tris = uv_sphere(32.0, 32.0, radius)
    r = rasterize(verts, tris, size, size)
    px, py = pixel_centres(size, size)
    rho2 = (px - 32) ** 2 + (py - 32) ** 2
    inner = rho2 < (radius - 1.5) ** 2
    assert r.mask[inner].all() and not r.mask[rho2 > (radius + 0.5) ** 2].any()
    # the depth is the plane of the winning facet, evaluated at the pixel centre
    v = verts.astype(np.float64)[tris[r.triangle[r.mask]]]
    normal = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    outward = np.sign(np.einsum("ij,ij->i", normal, v.mean(1) - [32.0, 32.0, 0.0]))
    assert (outward * normal[:, 2] > 0).all()  # only facets facing the camera are visible
    plane_z = v[:, 0, 2] - (
        normal[:, 0] * (px[r.mask] - v[:, 0, 0]) + normal[:, 1] * (py[r.mask] - v[:, 0, 1])
    ) / normal[:, 2]
    np.testing.assert_allclose(r.depth[r.mask], plane_z, atol=2e-4)
    # visible = front hemisphere; an inscribed polyhedron lies below the sphere by at most the sag
    exact = np.sqrt(np.clip(radius**2 - rho2, 0, None))
    err = exact[inner] - r.depth[inner]
    assert err.min() > -1e-3 and err.max() < radius * (1 - np.cos(np.pi / 32)) * 2


def test_random_overlapping_triangles_match_a_float64_z_buffer():
    rng = np.random.default_rng(7)
    verts = rng.uniform([-5, -5, -10], [45, 35, 10], (60, 3)).astype(np.float32)
    tris = rng.integers(0, 60, (50, 3))
    r = rasterize(verts, tris, 30, 40)
    depth, winner, margin = brute_force(verts, tris, 30, 40)
    clear = margin > 1e-3
    assert clear.sum() > 600
    np.testing.assert_array_equal(r.triangle[clear], winner[clear])
    np.testing.assert_allclose(r.depth[clear], depth[clear], atol=1e-4, rtol=1e-5)
    assert ((r.triangle >= 0) == r.mask).all()


# --- fill rule ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("snap_some", [False, True])
def test_shared_edges_cover_every_pixel_exactly_once(snap_some):
    rng = np.random.default_rng(3 + snap_some)
    x0, x1, y0, y1 = 10.3, 50.7, 8.6, 44.2
    verts, tris = grid_mesh(x0, x1, y0, y1, 8, 7, 0.35, rng, snap_some)
    count = coverage_count(verts, tris, 52, 60)
    px, py = pixel_centres(52, 60)
    inside = (px > x0) & (px < x1) & (py > y0) & (py < y1)
    np.testing.assert_array_equal(count, inside.astype(np.int64))
    np.testing.assert_array_equal(rasterize(verts, tris, 52, 60).mask, inside)


def test_grid_with_vertices_on_pixel_centres_follows_the_top_left_rule():
    rng = np.random.default_rng(5)
    verts, tris = grid_mesh(4.5, 20.5, 3.5, 15.5, 8, 6, 0.0, rng)  # every edge runs through pixel centres
    count = coverage_count(verts, tris, 20, 24)
    expected = np.zeros((20, 24), np.int64)
    expected[3:15, 4:20] = 1  # top and left boundary rows/columns in, bottom and right out
    np.testing.assert_array_equal(count, expected)


def test_fan_around_a_pixel_centre_covers_it_once():
    centre = np.array([20.5, 20.5])
    angles = np.linspace(0, 2 * np.pi, 13)[:-1] + 0.1
    ring = centre + 9.0 * np.stack([np.cos(angles), np.sin(angles)], 1)
    verts = np.column_stack([np.vstack([centre, ring]), np.ones(13)]).astype(np.float32)
    tris = np.array([[0, 1 + k, 1 + (k + 1) % 12] for k in range(12)])
    count = coverage_count(verts, tris, 40, 40)
    assert count.max() == 1 and count[20, 20] == 1
    assert count[16:25, 16:25].all()


@pytest.mark.parametrize("reverse", [False, True])
def test_top_left_rule_for_a_pixel_centre_on_an_edge(reverse):
    def covered(points, row, col):
        verts = np.column_stack([np.array(points, np.float32), np.zeros(3, np.float32)])
        tri = np.array([[2, 1, 0]] if reverse else [[0, 1, 2]])
        return bool(rasterize(verts, tri, 12, 12).mask[row, col])

    # pixel (2, 5) has its centre at (5.5, 2.5)
    assert covered([(1.0, 2.5), (10.0, 2.5), (5.0, 9.0)], 2, 5)  # on a top edge: in
    assert not covered([(1.0, 2.5), (10.0, 2.5), (5.0, -4.0)], 2, 5)  # on a bottom edge: out
    assert covered([(5.5, 0.0), (5.5, 9.0), (9.0, 4.0)], 2, 5)  # on a left edge: in
    assert not covered([(5.5, 0.0), (5.5, 9.0), (1.0, 4.0)], 2, 5)  # on a right edge: out


# --- depth test -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "z_first,z_second,winner", [(1.0, 2.0, 1), (2.0, 1.0, 0), (-2.0, -1.0, 1), (0.5, -0.5, 0)]
)
def test_largest_z_wins(z_first, z_second, winner):
    square = [(2, 2), (18, 2), (2, 18)]
    verts = np.array([(*p, z_first) for p in square] + [(*p, z_second) for p in square], np.float32)
    r = rasterize(verts, np.array([[0, 1, 2], [3, 4, 5]]), 20, 20)
    assert (r.triangle[r.mask] == winner).all() and r.mask.sum() > 50
    np.testing.assert_allclose(r.depth[r.mask], max(z_first, z_second), atol=1e-6)


def test_depth_tie_resolves_to_the_smaller_triangle_id():
    base = np.array([[2, 2, 3.0], [18, 3, 1.0], [4, 17, 2.0]], np.float32)
    verts = np.concatenate([base, base, base])
    tris = np.array([[6, 7, 8], [3, 4, 5], [0, 1, 2]])  # same triangle three times, drawn in this order
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        r = rasterize(verts, tris[order], 20, 20)
        assert r.mask.sum() > 50
        assert (r.triangle[r.mask] == 0).all()


def test_cull_backfaces_keeps_counter_clockwise_on_screen():
    ccw = [(2, 2), (2, 18), (18, 2)]  # counter-clockwise as seen on screen (y down): front
    cw = [(22, 2), (38, 2), (22, 18)]
    verts = np.array([(*p, 1.0) for p in ccw + cw], np.float32)
    tris = np.array([[0, 1, 2], [3, 4, 5]])
    both = rasterize(verts, tris, 20, 40)
    front = rasterize(verts, tris, 20, 40, cull_backfaces=True)
    assert set(np.unique(both.triangle)) == {-1, 0, 1}
    assert set(np.unique(front.triangle)) == {-1, 0}
    np.testing.assert_array_equal(front.mask, both.triangle == 0)


def test_both_windings_give_the_same_coverage_and_weights():
    rng = np.random.default_rng(11)
    verts = rng.uniform([0, 0, 0], [30, 30, 5], (3, 3)).astype(np.float32)
    a = rasterize(verts, np.array([[0, 1, 2]]), 30, 30)
    b = rasterize(verts, np.array([[0, 2, 1]]), 30, 30)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_allclose(a.barycentric, b.barycentric[..., [0, 2, 1]], atol=1e-6)
    np.testing.assert_allclose(a.depth, b.depth, atol=1e-5)


# --- batching, dtypes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [3, 16])
def test_batch_equals_one_call_per_image(batch):
    rng = np.random.default_rng(batch)
    verts = rng.uniform([-4, -4, -5], [36, 28, 5], (batch, 40, 3)).astype(np.float32)
    tris = rng.integers(0, 40, (60, 3))
    r = rasterize(verts, tris, 24, 32)
    assert r.depth.shape == (batch, 24, 32) and r.barycentric.shape == (batch, 24, 32, 3)
    for b in range(batch):
        one = rasterize(verts[b], tris, 24, 32)
        for name in ("depth", "triangle", "barycentric", "mask"):
            np.testing.assert_array_equal(getattr(r, name)[b], getattr(one, name))


def test_float64_int64_inputs_equal_float32_int32():
    rng = np.random.default_rng(2)
    verts = rng.uniform([0, 0, 0], [20, 20, 5], (20, 3))
    tris = rng.integers(0, 20, (30, 3))
    a = rasterize(verts, tris.astype(np.int64), 20, 20)
    b = rasterize(verts.astype(np.float32), tris.astype(np.int32), 20, 20)
    for name in ("depth", "triangle", "barycentric", "mask"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.triangle.dtype == np.int32 and a.mask.dtype == np.bool_ and a.barycentric.dtype == np.float32


# --- robustness -----------------------------------------------------------------------------------------


def assert_background(r: Raster) -> None:
    assert not r.mask.any() and (r.triangle == -1).all()
    assert not r.depth.any() and not r.barycentric.any()


@pytest.mark.parametrize(
    "verts,tris",
    [
        (np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32)),
        (np.ones((5, 3), np.float32), np.zeros((0, 3), np.int64)),
        (np.zeros((2, 0, 3)), np.zeros((0, 3), np.int32)),
        (np.zeros((2, 4, 3)), np.zeros((0, 3), np.int32)),
    ],
)
def test_empty_meshes_give_background(verts, tris):
    r = rasterize(verts, tris, 7, 9)
    assert r.depth.shape == verts.shape[:-2] + (7, 9)
    assert_background(r)


def test_bad_triangles_are_skipped_and_good_ones_drawn():
    nan, inf = np.nan, np.inf
    verts = np.array(
        [
            [2, 2, 1], [14, 3, 1], [3, 14, 1],  # 0-2 good
            [30, 30, 9], [40, 30, 9], [30, 40, 9],  # 3-5 fully off the 20x20 image
            [-10, -10, 2], [12, -10, 2], [-10, 12, 2],  # 6-8 partly off: covers the top-left corner
            [1, 1, 5], [10, 10, 5], [19, 19, 5],  # 9-11 collinear (zero area)
            [nan, 5, 7], [inf, 5, 7], [5, 5, -inf],  # 12-14 not finite
            [1e7, 0, 8], [0, 1e7, 8], [0, 0, 8],  # 15-17 beyond 2**20 px
        ],
        np.float32,
    )
    bad = [[3, 4, 5], [9, 10, 11], [0, 0, 1], [12, 1, 2], [0, 13, 2], [0, 1, 14], [15, 16, 17]]
    tris = np.array([[0, 1, 2], [6, 7, 8]] + bad)
    r = rasterize(verts, tris, 20, 20)
    reference = rasterize(verts, tris[:2], 20, 20)
    for name in ("depth", "triangle", "barycentric", "mask"):
        np.testing.assert_array_equal(getattr(r, name), getattr(reference, name))
    depth, winner, margin = brute_force(verts, tris[:2], 20, 20)
    clear = margin > 1e-3
    np.testing.assert_array_equal(r.triangle[clear], winner[clear])
    assert r.triangle[0, 0] == 1 and r.mask.sum() > 50


def test_all_invalid_vertices_give_background():
    verts = np.full((3, 3), np.nan, np.float32)
    assert_background(rasterize(verts, np.array([[0, 1, 2]]), 5, 5))


# --- input errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "verts,tris,match",
    [
        (np.zeros((4, 3)), np.array([[0, 1, 4]]), r"triangles index out of range.*\[0, 4\].*4 vertices"),
        (np.zeros((4, 3)), np.array([[0, -1, 2]]), r"triangles index out of range"),
        (np.zeros((0, 3)), np.array([[0, 1, 2]]), r"triangles index out of range"),
        (np.zeros((4, 2)), np.array([[0, 1, 2]]), r"vertices_px must have shape \(V, 3\).*got \S+ \(4, 2\)"),
        (np.zeros((1, 2, 4, 3)), np.array([[0, 1, 2]]), r"vertices_px.*got shape \(1, 2, 4, 3\)"),
        (np.zeros((4, 3), np.int32), np.array([[0, 1, 2]]), r"vertices_px must be float32 or float64.*int32"),
        (np.zeros((4, 3)), np.array([0, 1, 2]), r"triangles must have shape \(T, 3\).*got shape \(3,\)"),
        (np.zeros((4, 3)), np.array([[0, 1, 2, 3]]), r"triangles.*got shape \(1, 4\)"),
        (np.zeros((4, 3)), np.array([[0.0, 1.0, 2.0]]), r"triangles must be int32 or int64.*float64"),
    ],
)
def test_bad_mesh_raises_input_error(verts, tris, match):
    with pytest.raises(InputError, match=match):
        rasterize(verts, tris, 8, 8)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"height": 0}, r"height must be in 1\.\."),
        ({"width": -3}, r"width must be in 1\.\."),
        ({"height": 8.0}, r"height must be a positive int"),
        ({"width": True}, r"width must be a positive int"),
        ({"backend": "opengl"}, r"backend must be one of"),
    ],
)
def test_bad_arguments_raise_input_error(kwargs, match):
    args = {"height": 8, "width": 8, **kwargs}
    with pytest.raises(InputError, match=match):
        rasterize(np.zeros((3, 3)), np.array([[0, 1, 2]]), **args)


def test_input_error_is_a_value_error():
    with pytest.raises(ValueError):
        rasterize(np.zeros((3, 3)), np.array([[0, 1, 3]]), 4, 4)


# --- the real face ---------------------------------------------------------------------------------------


def project_face(vertices_cm: np.ndarray) -> np.ndarray:
    """Orthographic projection into a 200x200 image: 8 px per cm, y flipped, z scaled alike."""
    x, y, z = vertices_cm.T.astype(np.float64)
    return np.stack([100 + 8 * x, 100 - 8 * y, 8 * z], axis=1).astype(np.float32)


def test_mean_face_renders_as_one_blob_with_the_nose_in_front(face_model):
    cv2 = pytest.importorskip("cv2")
    verts = project_face(face_model.mean)
    r = rasterize(verts, face_model.triangles, 200, 200)
    count, _ = cv2.connectedComponents(r.mask.astype(np.uint8), connectivity=8)
    assert count == 2  # background + one face
    assert 12_000 < r.mask.sum() < 36_000
    row, col = np.unravel_index(np.argmax(np.where(r.mask, r.depth, -np.inf)), r.depth.shape)
    tip = verts[np.argmax(verts[:, 2])]
    assert abs(col + 0.5 - tip[0]) < 3 and abs(row + 0.5 - tip[1]) < 3
    assert abs(r.depth[row, col] - tip[2]) < 1.0
    # the visible surface is front-facing: culling back faces changes (almost) nothing
    front = rasterize(verts, face_model.triangles, 200, 200, cull_backfaces=True)
    assert (front.triangle == r.triangle).mean() > 0.99


# --- the CUDA source, run on the host -------------------------------------------------------------------
# No GPU is needed to check the logic of kernels/rasterize.cu: compiled as C++ with the CUDA intrinsics
# mapped to plain IEEE float32 operations (no contraction), it must reproduce the Numba twin bit for bit.

_HOST_SHIM = r"""
#include <cmath>
#include <cstring>
struct rt_dim3 { long long x; };
static rt_dim3 blockIdx, threadIdx, blockDim, gridDim;
#define __device__
#define __global__
#define __forceinline__ inline
#define __restrict__
static inline unsigned int __float_as_uint(float f) { unsigned int u; std::memcpy(&u, &f, 4); return u; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline long long __float2ll_rn(float v) { return llrintf(v); }
static inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
    unsigned long long old = *p; if (v < old) *p = v; return old;
}
#include KERNEL
template <class F> static void launch(long long threads, F f) {
    blockDim.x = 128; gridDim.x = threads > 0 ? (threads + 127) / 128 : 1;
    for (long long b = 0; b < gridDim.x; ++b)
        for (long long t = 0; t < 128; ++t) { blockIdx.x = b; threadIdx.x = t; f(); }
}
extern "C" void host_render(const float* verts, const int* tris, int batch, int nv, int nt, int h, int w,
                            int cull, unsigned long long* keys, float* depth, int* tri, float* bary,
                            unsigned char* mask) {
    long long n = (long long)batch * h * w;
    launch(n, [&] { rt_clear(keys, n); });
    if (nt && nv)
        launch((long long)batch * nt, [&] { rt_raster(verts, tris, batch, nv, nt, h, w, cull, keys); });
    launch(n, [&] { rt_resolve(verts, tris, keys, batch, nv, h, w, depth, tri, bary, mask); });
}
"""


@pytest.fixture(scope="module")
def cuda_source_on_host(tmp_path_factory):
    """``render(verts (B,V,3), tris, H, W, cull)`` running kernels/rasterize.cu's code on the CPU."""
    import ctypes
    import shutil
    import subprocess
    from pathlib import Path

    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler to build the host harness of kernels/rasterize.cu")
    kernel = Path(__file__).resolve().parents[2] / "kernels" / "rasterize.cu"
    work = tmp_path_factory.mktemp("cuda_on_host")
    (work / "harness.cpp").write_text(_HOST_SHIM)
    lib_path = work / "harness.so"
    cmd = [compiler, "-std=c++14", "-O1", "-ffp-contract=off", "-shared", "-fPIC",
           f'-DKERNEL="{kernel}"', "-o", str(lib_path), str(work / "harness.cpp")]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    lib = ctypes.CDLL(str(lib_path))

    def render(verts, tris, height, width, cull=False):
        verts = np.ascontiguousarray(verts, np.float32)
        tris = np.ascontiguousarray(tris, np.int32)
        batch, nv = verts.shape[:2]
        out = (np.empty((batch, height, width), np.float32), np.empty((batch, height, width), np.int32),
               np.empty((batch, height, width, 3), np.float32), np.empty((batch, height, width), np.uint8))
        keys = np.empty(batch * height * width, np.uint64)
        ptr = [a.ctypes.data_as(ctypes.c_void_p) for a in (verts, tris, keys, *out)]
        lib.host_render(ptr[0], ptr[1], batch, nv, len(tris), height, width, int(cull), *ptr[2:])
        return Raster(out[0], out[1], out[2], out[3].astype(bool))

    return render


def assert_identical(a: Raster, b: Raster) -> None:
    for name in ("depth", "triangle", "barycentric", "mask"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("seed", range(4))
def test_cuda_source_matches_the_numba_twin_bit_for_bit(cuda_source_on_host, seed):
    rng = np.random.default_rng(seed)
    height, width, batch = 30 + 7 * seed, 50 - 5 * seed, 1 + seed
    verts = rng.uniform([-0.2 * width, -0.2 * height, -50], [1.2 * width, 1.2 * height, 50], (batch, 200, 3))
    verts[0, :30, :2] = np.round(verts[0, :30, :2]) + 0.5  # edges through pixel centres
    verts[-1, 3, 1] = np.nan
    verts = verts.astype(np.float32)
    tris = rng.integers(0, 200, (300, 3))
    tris[:5] = tris[5:10]  # exact depth ties
    for cull in (False, True):
        cpu = rasterize(verts, tris, height, width, cull_backfaces=cull)
        assert_identical(cuda_source_on_host(verts, tris, height, width, cull), cpu)


def test_cuda_source_matches_the_numba_twin_on_the_face(cuda_source_on_host, face_model):
    verts = project_face(face_model.mean)[None]
    cpu = rasterize(verts, face_model.triangles, 200, 200)
    assert_identical(cuda_source_on_host(verts, face_model.triangles, 200, 200), cpu)
