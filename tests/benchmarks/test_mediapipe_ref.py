"""The MediaPipe reference (benchmarks/mediapipe_ref.py): the 468 -> 68 maps, their calibration on labelled
faces, the near-frontal test and the reference files. MediaPipe itself is not needed."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import mediapipe_ref as mr


def test_maps_are_the_ibug_scheme():
    """Both maps name valid mesh vertices, one entry per iBUG point; the calibrated one's weights are convex; a
    mesh whose vertex v sits at (v, 0) gives each point the (weighted) mean of its vertex ids."""
    assert len(mr.MP68_COMMON) == 68 and all(all(0 <= v < 468 for v in g) for g in mr.MP68_COMMON)
    assert len(mr.MP68) == 68
    for ids, w in mr.MP68:
        assert len(ids) == len(w) >= 1 and all(0 <= v < 468 for v in ids)
        assert min(w) > 0 and sum(w) == pytest.approx(1.0, abs=5e-3)  # printed to 3 decimals
    mesh = np.stack([np.arange(468.0), np.zeros(468)], 1)
    assert np.allclose(mr.to_68(mesh, mr.MP68_COMMON)[:, 0], [np.mean(g) for g in mr.MP68_COMMON])
    assert np.allclose(mr.to_68(mesh)[:, 0], [np.dot(w, ids) / sum(w) for ids, w in mr.MP68], atol=1e-3)
    assert mr.to_68(np.zeros((3, 2, 468, 2))).shape == (3, 2, 68, 2)  # any leading axes (frames, faces)


def _faces(n: int, seed: int = 0) -> np.ndarray:
    """n meshes (n, 468, 2): one random face under random similarities, plus a little noise."""
    rng = np.random.default_rng(seed)
    face = rng.uniform(-1, 1, (468, 2))
    out = []
    for _ in range(n):
        a, s, t = rng.normal(0, 0.1), rng.uniform(50, 150), rng.uniform(100, 300, 2)
        r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        out.append(face @ r.T * s + t + rng.normal(0, 0.2, (468, 2)))
    return np.stack(out)


def test_calibrate_recovers_the_vertices_the_labels_sit_on():
    pytest.importorskip("scipy")
    meshes = _faces(60)
    truth = tuple((g[:1], (1.0,)) for g in mr.MP68_COMMON)  # labels exactly on one vertex each
    labels = mr.to_68(meshes, truth).astype(np.float64)
    mapping = mr.calibrate(meshes, labels)
    assert len(mapping) == 68
    from benchmarks.landmarks import _nme

    assert 100 * _nme(mr.to_68(meshes, mapping), labels)[0].mean() < 0.05
    # a point halfway between two vertices is found as their mix
    w = mr._convex_lsq(np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 2.0]]), np.array([0.3, 0.7]))
    assert w == pytest.approx([0.3, 0.7, 0.0], abs=1e-3)


def test_near_frontal():
    frontal = np.zeros((1, 68, 2))
    frontal[0, 0], frontal[0, 16], frontal[0, 30] = (0, 0), (100, 0), (50, 10)
    turned = frontal.copy()
    turned[0, 30] = (25, 10)
    assert mr.near_frontal(np.concatenate([frontal, turned])).tolist() == [True, False]


def test_load_reads_points_from_the_mesh(tmp_path):
    mesh = np.stack([np.arange(468.0), np.ones(468)], 1)[None, None].astype(np.float32)  # (F=1, M=1, 468, 2)
    stale = np.zeros((1, 1, 68, 2), np.float32)
    np.savez(tmp_path / "clip.npz", mesh=mesh, points=stale, frames=np.arange(1), version=np.array("x"))
    ref = mr.load(tmp_path / "clip.npz")
    assert np.allclose(ref["points"], mr.to_68(mesh))
    np.savez(tmp_path / "old.npz", points=stale, frames=np.arange(1), version=np.array("x"))
    assert np.array_equal(mr.load(tmp_path / "old.npz")["points"], stale)  # files without the mesh as written
