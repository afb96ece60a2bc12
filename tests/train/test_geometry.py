"""Torch geometry == NumPy runtime (face model vertices and camera projection)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rtface.camera import project as np_project  # noqa: E402
from rtface.crop import frontal_pose  # noqa: E402


def test_vertices_and_projection_match_numpy(face_model):
    from train.geometry import TorchFaceModel, project

    rng = np.random.default_rng(0)
    b = 3
    idn = rng.normal(size=(b, 100)).astype(np.float32)
    exp = rng.random((b, 53)).astype(np.float32) * 0.5
    pose = np.tile(frontal_pose(128), (b, 1))
    pose[:, :3] = rng.normal(0, 0.3, (b, 3))
    pose[:, 3] *= rng.uniform(0.8, 1.2, b)
    pose[:, 4:] += rng.normal(0, 5, (b, 2))
    ref_v = face_model.vertices(idn, exp)
    ref_p = np_project(ref_v, pose)

    tm = TorchFaceModel(face_model)
    v = tm.vertices(torch.from_numpy(idn), torch.from_numpy(exp))
    np.testing.assert_allclose(v.numpy(), ref_v, atol=2e-5)
    # float64 through the whole chain: equal to the float64 NumPy computation up to its float32 output
    v64 = tm.vertices(torch.from_numpy(idn).double(), torch.from_numpy(exp).double())
    p = project(v64, torch.from_numpy(pose))
    np.testing.assert_allclose(p.numpy(), ref_p, atol=2e-4)

    ids = np.array([5, 17, 400, 9000])
    sub = TorchFaceModel(face_model, ids)
    np.testing.assert_allclose(sub.vertices(torch.from_numpy(idn), torch.from_numpy(exp)).numpy(), ref_v[:, ids],
                               atol=2e-5)


def test_rotation_matches_numpy():
    from rtface.camera import rotation_matrix as np_rot
    from train.geometry import rotation_matrix

    a = np.random.default_rng(1).normal(size=(10, 3))
    np.testing.assert_allclose(rotation_matrix(torch.from_numpy(a)).numpy(), np_rot(a), atol=1e-12)
