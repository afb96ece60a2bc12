"""Normals, SH basis, shading and least-squares lighting (rtface.render.shading)."""

from __future__ import annotations

import numpy as np
import pytest

from rtface.errors import InputError
from rtface.render import shading


def _grid(h, w):
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    return xs, ys


def _sphere(h=96, w=96, r=40.0, c=(48.0, 48.0)):
    xs, ys = _grid(h, w)
    d2 = r * r - (xs - c[0]) ** 2 - (ys - c[1]) ** 2
    mask = d2 > 0
    z = np.where(mask, np.sqrt(np.maximum(d2, 0)), 0.0)
    n = np.stack([(xs - c[0]) / r, (ys - c[1]) / r, z / r], -1)
    return z, mask, n


def _unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_plane_normals_exact():
    xs, ys = _grid(20, 30)
    a, b = 0.3, -0.7
    z = a * xs + b * ys + 5.0
    n = shading.depth_normals(z)
    assert n.shape == (20, 30, 3)
    expected = _unit([-a, -b, 1.0])
    np.testing.assert_allclose(n, np.broadcast_to(expected, n.shape), atol=1e-6)
    gx, gy, valid = shading.depth_gradients(z)
    np.testing.assert_allclose(gx, a, atol=1e-6)
    np.testing.assert_allclose(gy, b, atol=1e-6)
    assert valid.all()


def test_sphere_normals_vs_analytic():
    z, mask, n_true = _sphere()
    n, valid = shading.depth_normals(z, mask, return_valid=True)
    # away from the rim (where the sphere is steep) central differences are accurate
    xs, ys = _grid(*z.shape)
    inner = ((xs - 48) ** 2 + (ys - 48) ** 2 < 30.0**2) & valid
    cos = (n[inner] * n_true[inner]).sum(-1)
    assert cos.min() > 0.999
    # unit length inside the mask, zero outside, all pointing toward the camera
    np.testing.assert_allclose(np.linalg.norm(n[mask], axis=-1), 1.0, atol=1e-5)
    assert (n[~mask] == 0).all()
    assert (n[mask][:, 2] > 0).all()
    # x right / y down: the right half tilts to +x, the lower half to +y
    assert n[48, 80, 0] > 0.5 and n[80, 48, 1] > 0.5


def test_mask_border_uses_one_sided_differences():
    xs, ys = _grid(16, 16)
    z = 0.5 * xs + 100.0
    mask = xs < 8  # columns 0..7 in the mask
    z = np.where(mask, z, 0.0)  # a cliff of 100 px outside
    gx, gy, valid = shading.depth_gradients(z, mask)
    np.testing.assert_allclose(gx[mask], 0.5, atol=1e-6)  # never a difference across the border
    assert (gx[~mask] == 0).all() and (gy[~mask] == 0).all()
    n = shading.depth_normals(z, mask)
    np.testing.assert_allclose(n[mask], np.broadcast_to(_unit([-0.5, 0, 1]), n[mask].shape), atol=1e-6)
    # an isolated pixel has no derivative: flat normal, not valid
    iso = np.zeros((5, 5), bool)
    iso[2, 2] = True
    n1, v1 = shading.depth_normals(np.full((5, 5), 3.0), iso, return_valid=True)
    np.testing.assert_allclose(n1[2, 2], [0, 0, 1])
    assert not v1.any()


def test_batched_depth_normals():
    z, mask, _ = _sphere(32, 32, 12.0, (16.0, 16.0))
    zb = np.stack([z, 2 * z])
    mb = np.stack([mask, mask])
    nb = shading.depth_normals(zb, mb)
    np.testing.assert_allclose(nb[0], shading.depth_normals(z, mask), atol=1e-6)
    np.testing.assert_allclose(nb[1], shading.depth_normals(2 * z, mask), atol=1e-6)


def _icosphere(subdiv=2):
    t = (1 + 5**0.5) / 2
    v = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t),
         (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    f = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
         (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5), (2, 4, 11),
         (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    verts = [np.array(p, float) / np.linalg.norm(p) for p in v]
    faces = f
    for _ in range(subdiv):
        cache = {}
        new = []

        def mid(a, b):
            key = (min(a, b), max(a, b))
            if key not in cache:
                m = verts[a] + verts[b]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]

        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    return np.array(verts), np.array(faces, np.int32)


def test_mesh_normals_of_sphere_point_outward():
    v, f = _icosphere(2)
    # the icosphere is counter-clockwise seen from outside
    v = v * 3.0 + np.array([1.0, -2.0, 0.5])
    n = shading.mesh_normals(v, f)
    radial = _unit(v - np.array([1.0, -2.0, 0.5]))
    cos = (n * radial).sum(-1)
    assert n.shape == v.shape
    assert cos.min() > 0.99
    # batch axis, float32 preserved
    nb = shading.mesh_normals(np.stack([v, v]).astype(np.float32), f)
    assert nb.shape == (2,) + v.shape and nb.dtype == np.float32
    np.testing.assert_allclose(nb[1], n, atol=1e-5)
    # image frame (y flipped): the same surface, normals flipped in y, still outward
    vi = v * np.array([1.0, -1.0, 1.0])
    ni = shading.mesh_normals(vi, f, image_frame=True)
    np.testing.assert_allclose(ni, n * np.array([1.0, -1.0, 1.0]), atol=1e-6)


def test_sh_basis_constants_and_orthonormality():
    b = shading.sh_basis(np.array([0.0, 0.0, 1.0]), order=2)
    np.testing.assert_allclose(b, [0.282095, 0, 0, 0.488603, 0, 0, 2 * 0.315392, 0, 0], atol=1e-6)
    assert shading.sh_basis(np.zeros((5, 7, 3)), order=1).shape == (5, 7, 4)
    # Monte-Carlo orthonormality over the sphere
    rng = np.random.default_rng(0)
    n = _unit(rng.standard_normal((200000, 3)))
    y = shading.sh_basis(n, 2).astype(np.float64)
    gram = 4 * np.pi * y.T @ y / len(n)
    np.testing.assert_allclose(gram, np.eye(9), atol=0.02)


def test_directional_light_irradiance():
    d = _unit([0.3, -0.4, 1.0])
    sh = shading.directional_light(d, intensity=1.0, ambient=0.25, order=2)
    # peak of the order-2 clamped cosine: 1.0625 * intensity, plus the ambient
    np.testing.assert_allclose(shading.shade(d, sh), 1.0625 + 0.25, rtol=1e-5)
    sh3 = shading.directional_light(d, intensity=[1.0, 0.5, 0.2], ambient=0.1)
    assert sh3.shape == (9, 3)
    np.testing.assert_allclose(shading.shade(d, sh3), [1.1625, 0.63125, 0.3125], rtol=1e-5)


@pytest.mark.parametrize("order", [1, 2])
def test_solve_lighting_recovers_coefficients(order):
    z, mask, _ = _sphere()
    n = shading.depth_normals(z, mask)
    k = shading.SH_TERMS[order]
    rng = np.random.default_rng(order)
    sh = rng.normal(0, 0.3, (k, 3)).astype(np.float32)
    sh[0] += 2.0
    img = shading.shade(n, sh)
    got = shading.solve_lighting(n, img, mask, order=order)
    assert got.shape == (k, 3)
    np.testing.assert_allclose(got, sh, atol=1e-4)
    # one channel
    got1 = shading.solve_lighting(n, img[..., 1], mask, order=order)
    assert got1.shape == (k,)
    np.testing.assert_allclose(got1, sh[:, 1], atol=1e-4)
    # with a known albedo
    albedo = rng.uniform(0.3, 0.9, img.shape).astype(np.float32)
    got_a = shading.solve_lighting(n, img * albedo, mask, order=order, albedo=albedo)
    np.testing.assert_allclose(got_a, sh, atol=1e-4)
    # robust to pixel noise
    noisy = img + rng.normal(0, 0.02, img.shape)
    got_n = shading.solve_lighting(n, noisy, mask, order=order)
    np.testing.assert_allclose(got_n, sh, atol=0.05)


def test_solve_lighting_ignores_pixels_outside_mask():
    z, mask, _ = _sphere()
    n = shading.depth_normals(z, mask)
    sh = np.array([2.0, 0.3, -0.2, 0.5], np.float32)
    img = shading.shade(n, sh)
    img[~mask] = 1e6  # garbage outside the mask must not matter
    half = mask.copy()
    half[:, :48] = False
    half_img = img.copy()
    half_img[mask & ~half] = -50.0  # nor inside the mask but outside the given mask
    np.testing.assert_allclose(shading.solve_lighting(n, half_img, half, order=1), sh, atol=1e-4)


def test_shade_with_albedo_and_shapes():
    n = np.broadcast_to(np.array([0.0, 0.0, 1.0], np.float32), (4, 5, 3))
    sh = np.zeros((9, 3), np.float32)
    sh[0] = 1.0 / shading.SH_C0
    out = shading.shade(n, sh, albedo=np.full((4, 5, 3), 0.5, np.float32))
    assert out.shape == (4, 5, 3)
    np.testing.assert_allclose(out, 0.5, atol=1e-6)


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError):
        shading.depth_normals(np.zeros(5))
    with pytest.raises(InputError):
        shading.depth_normals(np.zeros((4, 4)), np.zeros((4, 5), bool))
    with pytest.raises(InputError):
        shading.sh_basis(np.zeros((4, 2)))
    with pytest.raises(InputError):
        shading.sh_basis(np.zeros((4, 3)), order=3)
    with pytest.raises(InputError):
        shading.shade(np.zeros((4, 3)), np.zeros(5))
    with pytest.raises(InputError):
        shading.solve_lighting(np.zeros((4, 4, 3)), np.zeros((4, 5)))
    with pytest.raises(InputError):
        shading.solve_lighting(np.zeros((4, 4, 3)), np.zeros((4, 4)), np.ones((3, 3), bool))
    with pytest.raises(InputError):
        shading.solve_lighting(np.zeros((4, 4, 3)), np.zeros((4, 4)))  # no normal at all
    with pytest.raises(InputError):
        shading.mesh_normals(np.zeros((5, 2)), np.zeros((1, 3), np.int32))
    with pytest.raises(InputError):
        shading.mesh_normals(np.zeros((5, 3)), np.array([[0, 1, 7]]))
    with pytest.raises(InputError):
        shading.mesh_normals(np.zeros((5, 3)), np.zeros((2, 3), np.float32))


@pytest.mark.gpu
def test_cupy_arrays_stay_on_device():
    cupy = pytest.importorskip("cupy")
    from rtface._optional import cuda_available

    if not cuda_available():
        pytest.skip("needs an NVIDIA GPU with CuPy (pip install 'rtface[gpu]'); none here")
    z, mask, _ = _sphere()
    n_cpu = shading.depth_normals(z.astype(np.float32), mask)
    n_gpu = shading.depth_normals(cupy.asarray(z, dtype=cupy.float32), cupy.asarray(mask))
    assert isinstance(n_gpu, cupy.ndarray)
    np.testing.assert_allclose(n_gpu.get(), n_cpu, atol=1e-5)
    sh = np.array([2.0, 0.3, -0.2, 0.5], np.float32)
    img = shading.shade(n_gpu, cupy.asarray(sh))
    got = shading.solve_lighting(n_gpu, img, cupy.asarray(mask), order=1)
    assert isinstance(got, cupy.ndarray)
    np.testing.assert_allclose(got.get(), sh, atol=1e-4)
    v, f = _icosphere(1)
    nm = shading.mesh_normals(cupy.asarray(v), cupy.asarray(f))
    np.testing.assert_allclose(nm.get(), shading.mesh_normals(v, f), atol=1e-6)
