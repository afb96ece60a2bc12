"""Profiled re-renders (train/profiling.py): the turned face carries its photo's texture to the right places."""

from __future__ import annotations

import numpy as np


def _coordinate_image(h: int, w: int) -> np.ndarray:
    """A BGR image whose blue channel is x and green channel is y (1 level a pixel): colours decode positions."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.arange(w)[None, :]
    img[..., 1] = np.arange(h)[:, None]
    img[..., 2] = 128
    return img


def test_landmarks_stay_on_the_face(face_model):
    """Every visible landmark of the turned face samples the photo where that landmark's vertex was (< 1 px)."""
    from rtface.camera import project
    from rtface.render import rasterize
    from train.profiling import Profiler

    h = w = 220
    img = _coordinate_image(h, w)
    rng = np.random.default_rng(1)
    identity = rng.normal(0, 0.5, face_model.num_identity).astype(np.float32)
    expression = np.zeros(face_model.num_expression, np.float32)
    pose = np.array([0.05, np.deg2rad(10), 0.0, 6.5, 110.0, 115.0])
    out = Profiler(face_model)(img, identity, expression, pose, np.array([0.05, np.deg2rad(50), 0.0]))
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
