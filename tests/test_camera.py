"""Weak-perspective camera and similarity transforms (rtface.camera) and the crop framing (rtface.crop)."""

from __future__ import annotations

import numpy as np
import pytest

from rtface import camera, crop
from rtface.errors import InputError

RNG = np.random.default_rng(7)


def test_rotation_matrix_is_orthonormal_and_invertible():
    angles = RNG.uniform(-1.2, 1.2, (20, 3))
    r = camera.rotation_matrix(angles)
    np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)
    np.testing.assert_allclose(camera.matrix_to_angles(r), angles, atol=1e-9)


def test_projection_conventions():
    nose = np.array([[0.0, 0.0, 10.0]])  # 10 cm in front of the model origin
    up = np.array([[0.0, 1.0, 0.0]])
    pose = np.array([0.0, 0.0, 0.0, 5.0, 64.0, 70.0])
    # z toward the camera, px, from the reference plane DEPTH_OFFSET_CM behind the origin
    np.testing.assert_allclose(camera.project(nose, pose), [[64.0, 70.0, 5.0 * (10.0 + camera.DEPTH_OFFSET_CM)]])
    assert camera.project(up, pose)[0, 1] < 70.0  # model y up -> image y down
    yawed = pose.copy()
    yawed[1] = 0.5
    assert camera.project(nose, yawed)[0, 0] > 64.0  # positive yaw turns the nose to the viewer's right


def test_projection_batches_and_pose_object():
    v = RNG.standard_normal((3, 50, 3))
    poses = np.stack([np.r_[RNG.uniform(-0.5, 0.5, 3), 4.0, 60.0, 60.0] for _ in range(3)])
    batch = camera.project(v, poses)
    for i in range(3):
        np.testing.assert_allclose(batch[i], camera.Pose.from_vector(poses[i]).project(v[i]), atol=1e-5)


def test_pose_transformed_matches_affine_of_projection():
    v = RNG.standard_normal((100, 3)) * 5
    pose = camera.Pose(np.array([0.2, -0.6, 0.3]), 4.0, np.array([60.0, 70.0]))
    a = camera.box_crop_transform([100, 90], 120, 128, angle=0.4)
    expected = camera.apply_affine(a, pose.project(v))
    np.testing.assert_allclose(pose.transformed(a).project(v), expected, atol=1e-4)


def test_affine_helpers():
    a = camera.box_crop_transform([50, 40], 80, 160, angle=-0.3)
    assert camera.affine_scale(a) == pytest.approx(2.0)
    inv = camera.invert_affine(a)
    np.testing.assert_allclose(camera.compose_affine(inv, a), [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    np.testing.assert_allclose(camera.apply_affine(a, [[50, 40]]), [[80, 80]], atol=1e-5)  # centre -> centre
    pts = RNG.uniform(0, 100, (6, 2))
    np.testing.assert_allclose(camera.similarity_from_points(pts, camera.apply_affine(a, pts)), a, atol=1e-5)
    with pytest.raises(InputError):
        camera.invert_affine(np.eye(3))
    with pytest.raises(InputError):
        camera.project(np.zeros((5, 2)), np.zeros(6))
    with pytest.raises(InputError):
        camera.Pose.from_vector(np.zeros(5))


def test_warp_and_paste_follow_the_pixel_centre_convention():
    frame = np.zeros((60, 80), np.float32)
    frame[20, 30] = 1.0  # pixel centre (30.5, 20.5)
    a = camera.box_crop_transform([30.5, 20.5], 20, 40)  # scale 2, that point -> crop centre (20, 20)
    c = camera.warp_to_crop(frame, a, 40)
    ys, xs = np.unravel_index(np.argmax(c), c.shape)
    assert (ys + 0.5, xs + 0.5) in [(19.5, 19.5), (20.5, 20.5), (19.5, 20.5), (20.5, 19.5)]
    # crop centres 19.5 and 20.5 sample the frame at 30.25 and 30.75: bilinear weight 0.75 * 0.75 each
    np.testing.assert_allclose(c[19:21, 19:21], np.full((2, 2), 0.5625), atol=1e-3)
    back = camera.paste_from_crop(np.ones((40, 40), np.float32), camera.invert_affine(a), 60, 80)
    # the crop spans frame x in [20.5, 40.5], y in [10.5, 30.5]: centres strictly inside are covered,
    # centres on its border (row 10 and 30, column 20 and 40) get half the value
    covered = np.argwhere(back > 0.99)
    assert covered[:, 0].min() == 11 and covered[:, 0].max() == 29
    assert covered[:, 1].min() == 21 and covered[:, 1].max() == 39
    assert back[10, 30] == pytest.approx(0.5, abs=0.01) and back[20, 40] == pytest.approx(0.5, abs=0.01)


def test_crop_template_and_five_points(face_model):
    size = 128
    pose = crop.frontal_pose(size)
    lm = camera.project(face_model.mean[face_model.landmarks], pose)
    five = crop.five_from_68(lm)
    np.testing.assert_allclose(five / size, crop.TEMPLATE_5, atol=2e-3)
    a = crop.crop_from_five(five * 3 + 17, size)  # the same face, bigger and shifted in a frame
    np.testing.assert_allclose(camera.apply_affine(a, five * 3 + 17), crop.TEMPLATE_5 * size, atol=2e-3 * size)
    verts = camera.project(face_model.mean, pose)
    chin, brow = lm[8], lm[19]
    assert 0.8 * size < chin[1] < size and 0 < brow[1] < 0.3 * size  # chin and brows inside the crop
    assert verts[:, 2].max() > 0


def test_crop_bad_points():
    with pytest.raises(InputError):
        crop.crop_from_five(np.zeros((4, 2)), 128)
    with pytest.raises(InputError):
        crop.crop_from_five(np.full((5, 2), np.nan), 128)
    with pytest.raises(InputError):
        crop.five_from_68(np.zeros((67, 2)))
