"""Landmark marching (rtface/contour.py): the jaw landmarks of a turned face sit on its silhouette."""

from __future__ import annotations

import numpy as np


def test_mirror_map_is_an_involution_that_swaps_sides():
    from rtface.contour import MIRROR_68

    assert sorted(MIRROR_68) == list(range(68))
    assert (MIRROR_68[MIRROR_68] == np.arange(68)).all()
    assert MIRROR_68[36] == 45 and MIRROR_68[0] == 16 and MIRROR_68[48] == 54 and MIRROR_68[30] == 30


def test_frontal_face_keeps_the_fixed_jaw(face_model):
    from rtface.contour import Contour

    c = Contour(face_model)
    ids = c.select_pose(face_model.mean, np.array([0, 0, 0, 5.0, 100, 100]))
    assert (ids[17:] == face_model.landmarks[17:]).all()
    assert (ids[:17] == face_model.landmarks[:17]).mean() > 0.8


def test_turned_face_jaw_lies_on_the_silhouette(face_model):
    from rtface.camera import project
    from rtface.contour import Contour
    from rtface.render import rasterize

    c = Contour(face_model)
    size = 256
    pose = np.array([0.0, np.deg2rad(55), 0.0, 9.0, size / 2, size / 2])
    verts = face_model.mean
    ids = c.select_pose(verts, pose)
    px = project(verts, pose)
    mask = rasterize(px.astype(np.float32), face_model.triangles, size, size, backend="cpu").mask
    # the far side (image right for a positive yaw: the nose turns right) moved off the fixed jaw vertices...
    far = [k for k in range(17) if c.sides[k] > 0 and k != 8]
    assert (ids[far] != face_model.landmarks[far]).sum() >= 5
    # ...onto the outline: the rendered face ends within 2 px to the right of each of them
    for k in far:
        x, y = px[ids[k], :2]
        row = mask[int(y)]
        right_edge = np.flatnonzero(row).max() + 1
        assert abs(right_edge - x) < 2.0, (k, x, right_edge)
    # batch selection agrees with the single one
    sub = project(verts[c.vertex_set], pose)[:, 0]
    assert (c.select_batch(sub[None])[0] == ids).all()


def test_project_landmarks_both_conventions(face_model):
    """``fixed=True`` projects the fixed landmark vertices (3D-consistent); the default marches the jaw. They agree
    on the inner points at any pose and on the jaw of a frontal face; turned, the far jaw differs."""
    from rtface.camera import project
    from rtface.contour import Contour

    c = Contour(face_model)
    rng = np.random.default_rng(0)
    ident = rng.normal(size=(2, face_model.num_identity)) * 0.5
    expr = np.zeros((2, face_model.num_expression))
    poses = np.array([[0, 0, 0, 5.0, 100, 100], [0.1, np.deg2rad(60), 0.05, 5.0, 100, 100]])
    fixed = c.project_landmarks(ident, expr, poses, fixed=True)
    marched = c.project_landmarks(ident, expr, poses)
    for i in range(2):
        verts = face_model.vertices(ident[i], expr[i])
        assert np.allclose(fixed[i], project(verts, poses[i])[face_model.landmarks, :2], atol=1e-6)
    assert np.allclose(fixed[:, 17:], marched[:, 17:])
    assert np.abs(fixed[0, :17] - marched[0, :17]).max() < 1.0
    assert np.abs(fixed[1, :17] - marched[1, :17]).max() > 5.0
