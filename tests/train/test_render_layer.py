"""Rendering layer: forward equals rtface.render.rasterize, gradients (to vertex z) equal finite differences."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def grid_mesh(n: int = 4, size: int = 16, seed: int = 0):
    """A bumpy (n x n)-vertex height field covering most of a size x size image: no self-occlusion."""
    rng = np.random.default_rng(seed)
    xs = np.linspace(2.0, size - 2.0, n)
    gx, gy = np.meshgrid(xs, xs)
    z = rng.normal(5.0, 1.0, gx.shape)
    verts = np.stack([gx, gy, z], -1).reshape(-1, 3)
    tris = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
            tris += [(a, b, c), (b, d, c)]
    return verts, np.array(tris, dtype=np.int32)


def test_forward_matches_rasterizer():
    from rtface.render import rasterize
    from train.render_layer import RenderLayer

    verts, tris = grid_mesh(5, 24)
    batch = np.stack([verts, verts + [0.7, -0.3, 1.0]]).astype(np.float32)
    layer = RenderLayer(tris, 24)
    depth, mask = layer.depth(torch.from_numpy(batch))
    r = rasterize(batch, tris, 24, 24, backend="cpu")
    np.testing.assert_array_equal(mask[:, 0].numpy().astype(bool), r.mask)
    np.testing.assert_allclose(depth[:, 0].numpy(), r.depth, atol=1e-4)


def test_gradient_to_vertex_depth_matches_finite_differences():
    from train.render_layer import RenderLayer

    verts, tris = grid_mesh(4, 16)
    layer = RenderLayer(tris, 16)
    v = torch.from_numpy(verts[None]).double()
    raster = layer.rasterize(v)
    xy = v[..., :2]

    def f(z):  # barycentrics fixed (the paper's rendering-layer gradient)
        return layer.depth(torch.cat([xy, z], -1), raster)[0]

    z = v[..., 2:].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (z,), eps=1e-6, atol=1e-6)

    # Finite differences through the *whole* layer (re-rasterised each time): perturbing z moves no pixel, so
    # the rasterising layer's derivative w.r.t. z equals the analytic one.
    w = torch.randn(1, 1, 16, 16, dtype=torch.float64)
    zz = v[..., 2:].clone().requires_grad_(True)
    (layer.depth(torch.cat([xy, zz], -1))[0] * w).sum().backward()
    eps = 1e-3
    for k in [0, 5, 10, 15]:
        vp, vm = v.clone(), v.clone()
        vp[0, k, 2] += eps
        vm[0, k, 2] -= eps
        fd = ((layer.depth(vp)[0] - layer.depth(vm)[0]) * w).sum() / (2 * eps)
        assert abs(float(fd) - float(zz.grad[0, k, 0])) < 1e-3 * max(1.0, abs(float(fd)))
    # and no gradient to x, y (fixed barycentrics, documented)
    vv = v.clone().requires_grad_(True)
    layer.depth(vv)[0].sum().backward()
    assert torch.all(vv.grad[..., :2] == 0)
