"""benchmarks/refit.py: the face model's depth refitted to the shading recovers a known shape from an image
shaded by first-order SH, and its prior holds it in place."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.refit import basis_depth_maps, photometric_refit


@pytest.fixture(scope="module")
def scene(face_model):
    """A frontal fit of the mean face, 12 identity modes' depth maps, and the luma of the face those modes
    reshape (first-order SH, constant albedo), measured inside the mask eroded by 3 px."""
    import cv2

    from rtface.crop import frontal_pose
    from rtface.render import shading
    from rtface.render.fit import render_fit

    s = 128
    pose = frontal_pose(s)
    _, r = render_fit(face_model, np.zeros((1, face_model.num_identity)), np.zeros((1, face_model.num_expression)),
                      pose[None], s)
    mask = r.mask[0]
    maps = basis_depth_maps(face_model, pose, r.triangle[0], r.barycentric[0], mask, k_id=12, k_exp=0)
    truth = np.random.default_rng(3).normal(0.0, 1.0, 12)
    z0 = r.depth[0].astype(np.float64)
    z = z0 + np.tensordot(truth, maps, 1)
    light = np.array([0.3, -0.35, 0.85])
    n = shading.depth_normals(z, mask)
    luma = np.where(mask, 0.45 + 0.35 * (n @ (light / np.linalg.norm(light))), 0.0)
    region = cv2.erode(mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    return {"z0": z0, "z": z, "mask": mask, "maps": maps, "truth": truth, "luma": luma, "region": region}


def _residual(luma, depth, mask, region):
    from rtface.render import shading

    n, valid = shading.depth_normals(depth, mask, return_valid=True)
    sel = region & valid
    a = np.concatenate([np.ones((sel.sum(), 1)), n[sel]], 1)
    r = luma[sel] - a @ np.linalg.lstsq(a, luma[sel], rcond=None)[0]
    return float(np.sqrt(np.mean(r ** 2)))


def test_maps_are_the_depth_of_each_mode(face_model, scene):
    # the mode's motion along the view axis alone (its in-plane motion is left out by design), rasterised
    from rtface.camera import project, rotation_matrix
    from rtface.crop import frontal_pose
    from rtface.render import rasterize

    pose = frontal_pose(128)
    v = project(face_model.mean, pose).astype(np.float64)
    v[:, 2] += 0.5 * pose[3] * (face_model.id_basis[2].astype(np.float64) @ rotation_matrix(pose[:3])[2])
    r = rasterize(v.astype(np.float32), face_model.triangles, 128, 128)
    m = scene["mask"] & r.mask
    moved = r.depth[m] - scene["z0"][m]
    assert np.abs(moved).max() > 0.2  # the mode moves the surface by a fraction of a pixel or more
    assert np.allclose(moved, 0.5 * scene["maps"][2][m], atol=1e-3)


def test_refit_recovers_the_shape_that_shaded_the_image(scene):
    before = _residual(scene["luma"], scene["z0"], scene["mask"], scene["region"])
    d = photometric_refit(scene["luma"], scene["z0"], scene["mask"], scene["region"], scene["maps"], prior=1e-6)
    z = scene["z0"] + np.tensordot(d, scene["maps"], 1)
    assert _residual(scene["luma"], z, scene["mask"], scene["region"]) < 0.1 * before
    m = scene["region"]
    err0 = np.abs((scene["z0"] - scene["z"])[m] - (scene["z0"] - scene["z"])[m].mean()).mean()
    err = np.abs((z - scene["z"])[m] - (z - scene["z"])[m].mean()).mean()
    assert err < 0.1 * err0


def test_a_strong_prior_holds_the_coefficients(scene):
    start = np.full(12, 0.5)
    d = photometric_refit(scene["luma"], scene["z0"], scene["mask"], scene["region"], scene["maps"], prior=1e6,
                          start=start)
    assert np.allclose(d, -start, atol=1e-3)  # the prior pulls start + d to zero
    flat = np.zeros_like(scene["region"])
    assert not photometric_refit(scene["luma"], scene["z0"], scene["mask"], flat, scene["maps"], 1e-3).any()
