"""Phase-2 losses (train/losses.py): normals, SH lighting, albedo, SfS, fidelity, smoothness, landmarks."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from train import losses as L  # noqa: E402

S = 64


def sphere(size: int = S, radius: float = 26.0, offset: float = 10.0, dtype=torch.float64):
    """Depth map of a sphere (crop px, z toward the camera) and its mask, centred in the crop."""
    c = size / 2.0
    ax = torch.arange(size, dtype=dtype) + 0.5
    y, x = torch.meshgrid(ax, ax, indexing="ij")
    r2 = (x - c) ** 2 + (y - c) ** 2
    mask = r2 < radius**2
    z = torch.where(mask, torch.sqrt((radius**2 - r2).clamp_min(0)) + offset, torch.zeros_like(r2))
    return z[None, None], mask[None, None], (x - c, y - c)


def test_normals_plane():
    ax = torch.arange(S, dtype=torch.float64) + 0.5
    y, x = torch.meshgrid(ax, ax, indexing="ij")
    a, b = 0.3, -0.2
    z = (a * x + b * y + 5.0)[None, None]
    mask = torch.zeros_like(z, dtype=torch.bool)
    mask[..., 10:50, 5:60] = True
    z = torch.where(mask, z, torch.full_like(z, 1e3))  # garbage outside must not leak in
    n, valid = L.normals_from_depth(z, mask)
    assert valid.sum() == mask.sum()  # a rectangle: every inside pixel has a neighbour on each axis
    expect = torch.tensor([-a, -b, 1.0], dtype=torch.float64)
    expect = expect / expect.norm()
    got = n[0, :, valid[0, 0]]
    assert torch.allclose(got, expect[:, None].expand_as(got), atol=1e-12)


def test_normals_sphere():
    z, mask, (dx, dy) = sphere()
    n, valid = L.normals_from_depth(z, mask)
    zz = z[0, 0] - 10.0
    expect = torch.stack([dx, dy, zz]) / 26.0
    inner = valid[0, 0] & (dx**2 + dy**2 < 20.0**2)
    err = (n[0][:, inner] - expect[:, inner]).norm(dim=0)
    assert err.max() < 0.01
    # normals point to the camera and outward: right half has nx > 0, lower half (y down) ny > 0
    assert (n[0, 0][inner & (dx > 3)] > 0).all() and (n[0, 1][inner & (dy > 3)] > 0).all()
    assert (n[0, 2][valid[0, 0]] > 0).all()


def test_gradients_do_not_cross_mask_edge():
    z = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    z[..., :, 4:] = 100.0  # a cliff outside the mask
    mask = torch.zeros_like(z, dtype=torch.bool)
    mask[..., :, :4] = True
    gx, gy, valid = L.depth_gradients(z, mask)
    assert gx.abs().max() == 0 and gy.abs().max() == 0
    assert valid[mask].all()
    # an isolated pixel has no derivative
    iso = torch.zeros_like(mask)
    iso[..., 3, 3] = True
    assert not L.depth_gradients(z, iso)[2].any()


def test_sh_basis_constants():
    n = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).view(1, 3, 1, 1)
    y1 = L.sh_basis(n, 1)[0, :, 0, 0]
    assert torch.allclose(y1, torch.tensor([0.282095, 0.0, 0.0, 0.488603], dtype=torch.float64), atol=1e-6)
    y2 = L.sh_basis(n, 2)[0, :, 0, 0]
    assert y2.shape == (9,) and abs(y2[6] - 2 * 0.315392) < 1e-6


def _render(order=1, albedo_fn=None):
    z, mask, (dx, dy) = sphere()
    n, valid = L.normals_from_depth(z, mask)
    basis = L.sh_basis(n, order)
    k = basis.shape[1]
    light = torch.tensor([[[1.6, 0.3, -0.4, 0.9, 0.1, -0.05, 0.08, 0.02, -0.06][:k]]], dtype=torch.float64)
    rho = torch.ones_like(z) * 0.8 if albedo_fn is None else albedo_fn(dx, dy)[None, None]
    image = (rho * L.sh_shading(light, basis)) * valid
    return z, mask, valid, light, rho, image, basis


@pytest.mark.parametrize("order", [1, 2])
def test_lighting_recovers_known_sh(order):
    z, mask, valid, light, rho, image, basis = _render(order, albedo_fn=lambda dx, dy: 0.6 + 0.3 * torch.sin(dx / 5))
    got = L.solve_lighting(basis, image, valid, albedo=rho, ridge=0.0)
    assert torch.allclose(got, light, rtol=1e-8, atol=1e-8)
    # constant albedo: the solve absorbs it into the lighting
    z, mask, valid, light, rho, image, basis = _render(order)
    got = L.solve_lighting(basis, image, valid, ridge=0.0)
    assert torch.allclose(got, 0.8 * light, rtol=1e-8, atol=1e-8)


def test_estimate_lighting_albedo_constant_albedo():
    z, mask, valid, light, rho, image, basis = _render()
    image = image.clamp(0, 1)
    est = L.estimate_lighting_albedo(z, image, mask, L.LightingConfig(erode=0, dark=0.0, bright=1.0))
    shade_true = L.sh_shading(0.8 * light, basis)
    v = est["valid"][0, 0]
    recon = (est["albedo"] * est["shading"])[0, 0][v]
    assert torch.allclose(recon, image[0, 0][v], atol=1e-6)
    # lighting up to the albedo's scale
    s = (est["shading"][0, 0][v] / shade_true[0, 0][v])
    assert s.std() / s.mean() < 1e-4  # exact up to the solve's tiny ridge


def test_sfs_zero_at_truth_positive_when_perturbed():
    z, mask, valid, light, rho, image, basis = _render(albedo_fn=lambda dx, dy: 0.7 + 0.2 * (dx > 0).double())
    loss0 = L.sfs_loss(z, mask, image, light, rho)
    assert loss0.item() < 1e-20
    bump = 0.8 * torch.sin(torch.arange(S, dtype=torch.float64) / 2.0)
    zp = z + bump.view(1, 1, 1, S) * mask
    assert L.sfs_loss(zp, mask, image, light, rho).item() > 1e-4
    # the full loss module with estimated lighting: small at the coarse depth itself, larger when perturbed
    loss = L.Phase2Loss(lighting=L.LightingConfig(dark=0.0, bright=1.0))
    img3 = image.expand(1, 3, S, S).clamp(0, 1)
    a = loss(img3, z, z, mask)
    b = loss(img3, zp, z, mask)
    assert a["sfs"].item() < 2e-4  # not 0: the bilateral filter blurs the albedo step a little
    assert b["sfs"].item() > 10 * a["sfs"].item()


def test_fidelity_zero_at_z0_smooth_zero_on_plane():
    z, mask, _ = sphere()
    assert L.fidelity_loss(z, z, mask).item() == 0.0
    assert L.fidelity_loss(z + 2.0 * mask, z, mask).item() == pytest.approx(4.0)
    ax = torch.arange(S, dtype=torch.float64)
    y, x = torch.meshgrid(ax, ax, indexing="ij")
    plane = (0.4 * x - 0.7 * y + 3.0)[None, None] * mask
    assert L.laplacian_loss(plane, mask).item() < 1e-12
    assert L.laplacian_loss(z, mask).item() > 0.01  # a sphere is curved


def test_landmark_term():
    from rtface.crop import five_from_68 as np_five

    rng = np.random.default_rng(0)
    lm = rng.uniform(0, 128, (2, 68, 2))
    t = torch.tensor(lm)
    five = L.five_from_68(t)
    assert np.allclose(five.numpy(), np_five(lm))
    assert L.landmark_loss(t, five).abs().max().item() < 1e-5
    shifted = L.landmark_loss(t, five + torch.tensor([3.0, 4.0], dtype=torch.float64), size=128)
    assert torch.allclose(shifted, torch.full((2,), 5.0 / 128, dtype=torch.float64), atol=1e-6)


def test_gradients_finite_and_loss_module():
    torch.manual_seed(0)
    z, mask, valid, light, rho, image, basis = _render()
    img = image.expand(2, 3, S, S).float().clamp(0, 1)
    coarse = z.expand(2, 1, S, S).float()
    mask2 = mask.expand(2, 1, S, S)
    resid = (0.3 * torch.randn(2, 1, S, S)).requires_grad_(True)
    fine = coarse + resid * mask2
    lm = torch.rand(2, 68, 2, requires_grad=True) * S
    five = torch.rand(2, 5, 2) * S
    loss = L.Phase2Loss(L.Phase2Weights(temporal=1.0, coarse_sfs=1.0))
    out = loss(img, fine, coarse, mask2, landmarks68=lm, five=five, prev_depth=coarse, prev_mask=mask2)
    assert torch.isfinite(out["total"])
    for k in ("sfs", "fidelity", "smooth", "landmark", "temporal"):
        assert out[k].item() > 0, k
    out["total"].backward()
    assert torch.isfinite(resid.grad).all() and resid.grad.abs().sum() > 0
    assert resid.grad[~mask2].abs().max() == 0  # nothing outside the face
    # a degenerate input (empty mask, flat image) stays finite
    empty = torch.zeros_like(mask2)
    r2 = torch.zeros(2, 1, S, S, requires_grad=True)
    out = loss(torch.zeros_like(img), coarse + r2, coarse, empty)
    out["total"].backward()
    assert torch.isfinite(out["total"]) and torch.isfinite(r2.grad).all()


def test_bilateral_keeps_edges_and_constant():
    x = torch.ones(1, 1, 16, 16) * 0.5
    x[..., 8:] = 1.5
    m = torch.ones(1, 1, 16, 16, dtype=torch.bool)
    y = L.masked_bilateral(x, m)
    assert torch.allclose(y, x, atol=1e-4)
