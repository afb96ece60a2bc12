"""The 6-channel feedback image (rtface.render.feedback): ranges, normals vs depth gradients, PNCC bounds."""

from __future__ import annotations

import numpy as np


def test_pncc_bounds_are_the_mean_face_box(face_model):
    from rtface.render.feedback import PNCC_MAX, PNCC_MIN

    np.testing.assert_allclose(face_model.mean.min(0), PNCC_MIN, atol=1e-4)
    np.testing.assert_allclose(face_model.mean.max(0), PNCC_MAX, atol=1e-4)


def test_feedback_channels(face_model):
    import cv2

    from rtface.camera import project
    from rtface.crop import frontal_pose
    from rtface.render import rasterize
    from rtface.render.feedback import pncc_code, render_feedback

    s = 96
    pose = np.tile(frontal_pose(s), (2, 1))
    pose[1, 1] = 0.4
    v = project(face_model.vertices(np.zeros((2, 100), np.float32)), pose)
    r = rasterize(v, face_model.triangles, s, s, backend="cpu")
    fb = render_feedback(v, face_model.triangles, s, pncc_code(face_model.mean), raster=r)
    assert fb.shape == (2, 6, s, s) and fb.dtype == np.float32
    assert np.all(fb[:, :, ~r.mask[0]][0] == 0)
    n = fb[:, :3]
    np.testing.assert_allclose(np.linalg.norm(n, axis=1)[r.mask], 1.0, atol=1e-4)
    assert fb[:, 3:].min() >= 0 and fb[:, 3:].max() <= 1
    # normals agree with the depth map's: n ~ (-dz/dx, -dz/dy, 1)
    d = r.depth[0]
    gy, gx = np.gradient(d)
    nd = np.stack([-gx, -gy, np.ones_like(d)])
    nd /= np.linalg.norm(nd, axis=0)
    inner = cv2.erode(r.mask[0].astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert (nd[:, inner] * n[0][:, inner]).sum(0).mean() > 0.97
