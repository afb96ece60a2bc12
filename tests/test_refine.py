"""The reference refinement (rtface.refine): a known bump comes back, albedo edges make no relief."""

from __future__ import annotations

import numpy as np
import pytest

from rtface import refine
from rtface._refine_kernels import cg_solve, domain_transform
from rtface.errors import InputError
from rtface.render import shading

S = 128
LIGHT = shading.directional_light([0.5, -0.4, 0.77], 0.7, 0.3, order=2)  # key light from the upper left


def _dome():
    """An ellipsoidal dome (crop px) filling most of an S x S crop, and its mask."""
    ys, xs = np.mgrid[0:S, 0:S].astype(np.float64) + 0.5
    mask = (xs - 64) ** 2 / 50**2 + (ys - 64) ** 2 / 60**2 < 1
    z0 = np.where(mask, 40 * np.sqrt(np.clip(1 - (xs - 64) ** 2 / 60**2 - (ys - 64) ** 2 / 70**2, 0, 1)), 0.0)
    return xs, ys, z0.astype(np.float32), mask


def _render(depth, mask, albedo_rgb):
    """uint8 BGR crop of a Lambertian surface under LIGHT with an RGB albedo map (S, S, 3)."""
    shade = shading.shade(shading.depth_normals(depth, mask), LIGHT)
    rgb = np.clip(albedo_rgb * shade[..., None], 0, 1) * mask[..., None]
    return (rgb[..., ::-1] * 255 + 0.5).astype(np.uint8)


def _inner(mask, px=4):
    import cv2

    return cv2.erode(mask.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)).astype(bool)


def test_recovers_a_known_bump_under_known_light():
    xs, ys, z0, mask = _dome()
    bump = 1.0 * np.exp(-((xs - 52) ** 2 + (ys - 58) ** 2) / (2 * 2.5**2))  # 1 px high, sigma 2.5 px
    image = _render(z0 + bump, mask, np.full((S, S, 3), 0.7))
    out = refine.refine_depth(image, z0, mask)
    assert out.shape == (S, S) and out.dtype == np.float32 and np.isfinite(out).all()
    assert (out[~mask] == 0).all()
    e = _inner(mask)
    detail = (out - z0)[e]
    err_coarse = np.sqrt(np.mean(bump[e] ** 2))
    err_fine = np.sqrt(np.mean((out - z0 - bump)[e] ** 2))
    assert np.corrcoef(detail, bump[e])[0, 1] > 0.6  # the relief is the bump's
    assert err_fine < 0.85 * err_coarse  # and it is closer to the truth than the coarse depth
    assert (out - z0)[58, 52] > 0.25  # the bump rises (toward the camera)
    far = e & (bump < 1e-3)
    assert np.abs((out - z0)[far]).max() < 0.1  # and nothing much happens elsewhere


def test_albedo_edges_without_geometry_give_no_relief():
    import cv2

    xs, ys, z0, mask = _dome()
    skin = np.array([0.75, 0.55, 0.45])
    alb = np.ones((S, S, 3)) * skin
    # painted brows (dark bands), eyeliner-like lines, moles and a coloured face-paint stroke: no geometry
    paint = np.zeros((S, S), np.uint8)
    cv2.ellipse(paint, (45, 45), (14, 4), 0, 0, 360, 1, -1)
    cv2.ellipse(paint, (83, 45), (14, 4), 0, 0, 360, 1, -1)
    cv2.line(paint, (35, 58), (55, 56), 1, 1)
    cv2.line(paint, (73, 56), (93, 58), 1, 1)
    for c in ((40, 90), (88, 80), (64, 100)):
        cv2.circle(paint, c, 2, 1, -1)
    alb[paint > 0] = [0.05, 0.04, 0.035]
    stroke = np.zeros((S, S), np.uint8)
    cv2.line(stroke, (30, 70), (60, 110), 1, 2)
    alb[stroke > 0] = [0.2, 0.3, 0.8]
    image = _render(z0, mask, alb)
    out = refine.refine_depth(image, z0, mask)
    e = _inner(mask)
    relief = (out - z0)[e]
    assert np.sqrt(np.mean(relief**2)) < 0.01  # crop px (RMS)
    assert np.abs(relief).max() < 0.08
    # the same marks made of geometry (grooves of the brows' shape, 0.5 px deep) are found: the refinement
    # tells them apart by their albedo, not by doing nothing
    z_geo = z0 - 0.5 * cv2.GaussianBlur((paint > 0).astype(np.float32), (0, 0), 1.0)
    geo = refine.refine_depth(_render(z_geo, mask, np.ones((S, S, 3)) * skin), z0, mask)
    assert np.sqrt(np.mean((geo - z0)[e] ** 2)) > 3 * np.sqrt(np.mean(relief**2))


def test_flat_face_flat_light_stays_put_and_batches_agree():
    xs, ys, z0, mask = _dome()
    image = _render(z0, mask, np.full((S, S, 3), 0.6))
    batch = refine.refine_depth(np.stack([image, image]), np.stack([z0, z0]), np.stack([mask, mask]))
    assert batch.shape == (2, S, S)
    np.testing.assert_array_equal(batch[0], batch[1])
    np.testing.assert_array_equal(batch[0], refine.refine_depth(image, z0, mask))
    assert np.abs(batch[0] - z0)[_inner(mask)].max() < 0.05


def test_info_and_lighting_albedo():
    xs, ys, z0, mask = _dome()
    image = _render(z0, mask, np.full((S, S, 3), 0.6))
    out, info = refine.refine_depth(image, z0, mask, return_info=True)
    assert set(info) == {"light", "albedo", "weight", "intensity"}
    assert info["light"].shape == (9,) and info["albedo"].shape == (S, S)
    est = refine.lighting_albedo(image[None], z0[None], mask[None])
    fit = est["fit"][0]
    # constant albedo 0.6 under LIGHT: the estimate's shading times albedo gives back the intensity
    n0 = shading.depth_normals(z0, mask)
    pred = est["albedo"][0] * shading.shade(n0, est["light"][0])
    np.testing.assert_allclose(pred[fit], est["intensity"][0][fit], atol=0.02)


def test_bad_input_is_named():
    xs, ys, z0, mask = _dome()
    img = np.zeros((S, S, 3), np.uint8)
    with pytest.raises(InputError, match="uint8"):
        refine.refine_depth(img.astype(np.float32), z0, mask)
    with pytest.raises(InputError, match="coarse_depth must have shape"):
        refine.refine_depth(img, z0[:64], mask)
    with pytest.raises(InputError, match="mask must have shape"):
        refine.refine_depth(img, z0, mask[:, :64])
    with pytest.raises(InputError, match="non-finite"):
        refine.refine_depth(img, np.where(mask, np.nan, 0).astype(np.float32), mask)
    with pytest.raises(InputError, match="sh_order"):
        refine.refine_depth(img, z0, mask, refine.RefineConfig(sh_order=3))


def test_empty_mask_returns_zeros():
    out = refine.refine_depth(np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32)), np.zeros((32, 32), bool))
    assert out.shape == (32, 32) and not out.any()


def test_conjugate_gradient_solves_the_normal_equations():
    rng = np.random.default_rng(0)
    h = 10
    m = np.zeros((h, h), bool)
    m[2:9, 1:9] = True
    m[5, 5] = False
    cx, cy, inner = refine._stencils(m)
    a, b = rng.normal(size=(h, h)) * m, rng.normal(size=(h, h)) * m
    w, r = rng.random((h, h)) * m, rng.normal(size=(h, h)) * m
    d0 = rng.normal(size=(h, h)) * m * 0.1
    x = cg_solve(a, b, w, r, d0, cx, cy, inner, m, 0.1, 0.3, 400)
    # the same system written out densely: D = a Dx + b Dy with the masked central differences
    idx = np.flatnonzero(m)

    def apply(v, data=True, reg=True):
        v = v.reshape(h, h) * m
        gx, gy, _ = shading.depth_gradients(v, m)
        out = np.zeros((h, h))
        if data:
            u = w * (a * gx + b * gy)
            out += _dt(u * a, cx, m, axis=1) + _dt(u * b, cy, m, axis=0)
        if reg:
            lap = np.zeros((h, h))
            lap[1:-1, 1:-1] = v[:-2, 1:-1] + v[2:, 1:-1] + v[1:-1, :-2] + v[1:-1, 2:] - 4 * v[1:-1, 1:-1]
            lap *= inner
            lt = -4 * lap
            lt[1:] += lap[:-1]
            lt[:-1] += lap[1:]
            lt[:, 1:] += lap[:, :-1]
            lt[:, :-1] += lap[:, 1:]
            out += 0.1 * v + 0.3 * lt
        return (out * m).reshape(-1)

    mat = np.stack([apply(e) for e in np.eye(h * h)], 1)[np.ix_(idx, idx)]
    rhs = (_dt(w * r * a, cx, m, 1) + _dt(w * r * b, cy, m, 0)).reshape(-1) - apply(d0.reshape(-1), data=False)
    np.testing.assert_allclose(x.reshape(-1)[idx], np.linalg.solve(mat, rhs[idx]), atol=1e-6)


def _dt(u, c, m, axis):
    """Transpose of the stencil difference ``c`` along ``axis`` applied to ``u`` (dense reference)."""
    out = c[1] * u
    if axis == 1:
        out[:, 1:] += c[2][:, :-1] * u[:, :-1]
        out[:, :-1] += c[0][:, 1:] * u[:, 1:]
    else:
        out[1:] += c[2][:-1] * u[:-1]
        out[:-1] += c[0][1:] * u[1:]
    return out * m


def test_domain_transform_keeps_edges_and_smooths_the_rest():
    rng = np.random.default_rng(1)
    v = np.zeros((40, 40))
    v[:, 20:] = 1.0  # a strong edge
    noisy = v + 0.02 * rng.standard_normal(v.shape)
    m = np.ones((40, 40), bool)
    out = domain_transform(noisy, noisy[..., None].copy(), m, 6.0, 0.3, 3)
    assert np.abs(out[:, :18] - 0).max() < 0.05 and np.abs(out[:, 22:] - 1).max() < 0.05  # the edge stays
    assert out[:, 5:15].std() < 0.5 * noisy[:, 5:15].std()  # the noise goes


def test_config_from_the_command_line():
    cfg = refine.RefineConfig.parse(["shrink=1", "cg-iterations=5"], size=256)
    assert cfg.shrink == 1.0 and cfg.cg_iterations == 5 and isinstance(cfg.cg_iterations, int)
    assert cfg.albedo_sigma == 2 * refine.RefineConfig().albedo_sigma  # pixel sizes follow the crop
    with pytest.raises(InputError, match="name=value"):
        refine.RefineConfig.parse(["nonsense=1"])
    with pytest.raises(InputError, match="not a number"):
        refine.RefineConfig.parse(["shrink=abc"])
    with pytest.raises(InputError, match="fidelity"):
        refine.RefineConfig.parse(["fidelity=0"])
