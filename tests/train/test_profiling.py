"""Profiled re-renders (train/profiling.py): the turned face carries its photo's texture to the right places."""

from __future__ import annotations

import numpy as np
import pytest


def _coordinate_image(h: int, w: int) -> np.ndarray:
    """A BGR image whose blue channel is x and green channel is y (1 level a pixel): colours decode positions."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.arange(w)[None, :]
    img[..., 1] = np.arange(h)[:, None]
    img[..., 2] = 128
    return img


@pytest.mark.parametrize("scene", ["face", "head"])
def test_landmarks_stay_on_the_face(face_model, scene):
    """Every visible landmark of the turned face samples the photo where that landmark's vertex was (< 1 px),
    whether the face alone or the whole head turns."""
    from rtface.camera import project
    from rtface.render import rasterize
    from train.profiling import Profiler

    h = w = 220
    img = _coordinate_image(h, w)
    rng = np.random.default_rng(1)
    identity = rng.normal(0, 0.5, face_model.num_identity).astype(np.float32)
    expression = np.zeros(face_model.num_expression, np.float32)
    pose = np.array([0.05, np.deg2rad(10), 0.0, 6.5, 110.0, 115.0])
    out = Profiler(face_model, scene=scene)(img, identity, expression, pose, np.array([0.05, np.deg2rad(50), 0.0]))
    assert out["image"].shape == img.shape and out["mask"].any()
    verts = face_model.vertices(identity, expression)
    old = project(verts[out["vertex_ids"]], pose)[:, :2]
    new = out["landmarks"]
    assert np.allclose(new, project(verts[out["vertex_ids"]], out["pose"])[:, :2], atol=1e-3)
    new3 = project(verts, out["pose"])
    zbuf = rasterize(new3.astype(np.float32), face_model.triangles, h, w, backend="cpu").depth
    checked = 0
    # brows, nose and mouth (the jaw moves to a new silhouette by design; the eye landmarks border the mesh's eye
    # holes, where the photo's eyeball has no surface point of its own)
    for k in [*range(17, 36), *range(48, 68)]:
        x, y = new[k]
        i, j = int(y), int(x)
        if not out["mask"][i - 1:i + 2, j - 1:j + 2].all() or new3[out["vertex_ids"][k], 2] < zbuf[i, j] - 1.0:
            continue  # hidden in the new view (behind the nose or the brow), or at the blended edge of a hole
        # the pixel shows the photo at the surface point of the landmark: 1 px, plus up to 0.71 px between the
        # landmark and the centre of the pixel it falls in
        src = out["image"][i, j, :2].astype(float) + 0.5
        assert np.linalg.norm(src - old[k]) < 1.0 + 0.71, (k, src, old[k])
        checked += 1
    assert checked > 25
    # the turned pose: yaw changed, scale and translation kept
    assert np.isclose(out["pose"][1], np.deg2rad(50)) and np.allclose(out["pose"][3:], pose[3:])


def test_target_angles_turn_further():
    from train.profiling import target_angles

    rng = np.random.default_rng(0)
    for _ in range(50):
        start = np.array([0.1, rng.uniform(-0.5, 0.5), 0.05])
        a = target_angles(start, rng, (30.0, 60.0))
        assert np.deg2rad(30) - 1e-9 <= abs(a[1]) <= np.deg2rad(60) + 1e-9 or abs(a[1]) >= abs(start[1])
        if abs(start[1]) > np.deg2rad(8):
            assert np.sign(a[1]) == np.sign(start[1])
        assert abs(a[0]) <= np.deg2rad(40) and a[2] == start[2]


def test_head_scene_turns_the_head_and_keeps_the_background(face_model):
    """With ``scene="head"`` a photo pixel on the head proxy beside the face (hair, temple, neck) lands where its
    proxy surface point goes under the new pose; the background far from the head is the photo's own."""
    from rtface.camera import DEPTH_OFFSET_CM, rotation_matrix
    from rtface.render import rasterize
    from train.profiling import Profiler, head_proxy_depth

    h = w = 240
    img = _coordinate_image(h, w)
    identity = np.zeros(face_model.num_identity, np.float32)
    expression = np.zeros(face_model.num_expression, np.float32)
    pose = np.array([0.0, np.deg2rad(5), 0.0, 5.0, 120.0, 110.0])
    new_angles = np.array([0.0, np.deg2rad(45), 0.0])
    out = Profiler(face_model, scene="head")(img, identity, expression, pose, new_angles)
    from rtface.camera import project

    face = rasterize(project(face_model.vertices(identity, expression), pose), face_model.triangles, h, w,
                     backend="cpu")
    depth, head = head_proxy_depth(pose, h, w, face)
    assert head.sum() > 1.2 * face.mask.sum() and (head | ~face.mask).all()
    # the proxy's points off the face, turned by hand
    ys, xs = np.nonzero(head & ~face.mask)
    s, tx, ty = pose[3:]
    u = np.stack([(xs + 0.5 - tx) / s, -(ys + 0.5 - ty) / s, depth[ys, xs] / s - DEPTH_OFFSET_CM], -1)
    new_pose = out["pose"]
    rot = rotation_matrix(new_pose[:3]) @ rotation_matrix(pose[:3]).T
    un = u @ rot.T
    nx, ny = tx + s * un[:, 0], ty - s * un[:, 1]
    i, j = ny.astype(int), nx.astype(int)
    keep = (i > 1) & (i < h - 2) & (j > 1) & (j < w - 2)
    i, j, xs, ys, un = i[keep], j[keep], xs[keep], ys[keep], un[keep]
    # where the face is drawn on top, or the proxy point turned out of view, the pixel shows something else
    turned = rasterize(project(face_model.vertices(identity, expression), new_pose), face_model.triangles, h, w,
                       backend="cpu")
    off_face = ~turned.mask[i, j]
    src = out["image"][i, j, :2].astype(float)
    err = np.hypot(src[:, 0] - xs, src[:, 1] - ys)[off_face]
    assert off_face.sum() > 500
    assert np.median(err) < 1.5 and np.mean(err < 2.5) > 0.6, (np.median(err), np.mean(err < 2.5))
    # the background far from the head is untouched
    far = ~np.asarray(head)
    far[:, 40:] = False
    assert far.sum() > 1000 and np.array_equal(out["image"][far], img[far])


def test_yaw_ranges_option():
    from train.profiling import parse_yaw_ranges

    assert parse_yaw_ranges("30-60,60-90") == ((30.0, 60.0), (60.0, 90.0))
    for bad in ("30", "60-30", "a-b", "40-95"):
        with pytest.raises(ValueError, match="yaw range"):
            parse_yaw_ranges(bad)


def test_unknown_scene_is_refused(face_model):
    from train.profiling import Profiler

    with pytest.raises(ValueError, match="scene"):
        Profiler(face_model, scene="body")
