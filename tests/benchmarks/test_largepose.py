"""The large-pose validation set (benchmarks/largepose.py): yaw pre-screen, buckets, 3D-consistent labels, the
cached selection on the tiny labelled set, and bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import largepose


def _turned(face_model, yaw_deg: float, fixed: bool = False) -> np.ndarray:
    from rtface.contour import Contour

    pose = np.array([[0.05, np.deg2rad(yaw_deg), 0.02, 4.0, 150.0, 160.0]])
    return Contour(face_model).project_landmarks(np.zeros((1, face_model.num_identity)),
                                                 np.zeros((1, face_model.num_expression)), pose, fixed=fixed)[0]


def test_prescreen_yaw_recovers_the_turn(face_model):
    for yaw in (0.0, 25.0, -50.0, 70.0):
        assert abs(largepose.prescreen_yaw(face_model, _turned(face_model, yaw)) - abs(yaw)) < 3.0
    with pytest.raises(ValueError, match="68 finite points"):
        largepose.prescreen_yaw(face_model, np.zeros((5, 2)))


def test_yaw_buckets():
    assert list(largepose.yaw_bucket([0, 29.9, 30, -59, 60, 95, -70])) == [0, 0, 1, 1, 2, 2, 2]


def test_labels_3d_keep_the_inner_points_and_take_the_fixed_jaw(face_model):
    marched = _turned(face_model, 55.0)
    fixed = _turned(face_model, 55.0, fixed=True)
    pose = np.array([[0.05, np.deg2rad(55.0), 0.02, 4.0, 150.0, 160.0]])
    lab = largepose.labels_3d(face_model, np.zeros((1, face_model.num_identity)),
                              np.zeros((1, face_model.num_expression)), pose, marched[None])[0]
    assert np.allclose(lab[17:], marched[17:]) and np.allclose(lab[:17], fixed[:17])
    assert np.abs(lab[:17] - marched[:17]).max() > 5.0  # turned: the hidden jaw is not the silhouette


def test_build_on_the_tiny_set(tiny_set, face_model, tmp_path):
    folder = Path(str(tiny_set.paths[0])).parent
    with pytest.warns(UserWarning, match="skipped"):
        lp = largepose.load(("300w-test",), {"300w-test": folder}, cache_root=tmp_path, progress=False)
    # the four good faces are frontal: all in the frontal sample; the broken files are skipped and counted
    assert len(lp) == 4 and sorted(lp.names) == sorted(str(n) for n in tiny_set.names)
    assert (np.abs(lp.yaw) < 30).all() and lp.held_out.all() and set(lp.sources) == {"300w-test"}
    assert sum(lp.stats["skipped"].values()) == 4
    order = [list(tiny_set.names).index(n) for n in lp.names]
    assert np.allclose(lp.points, tiny_set.points[order])
    assert np.allclose(lp.pose, tiny_set.pose[order], atol=1e-3)  # the same fit as the labelled cache
    lab3d = lp.labels_3d(face_model)
    assert np.allclose(lab3d[:, 17:], lp.points[:, 17:])
    # frontal: the fit's fixed jaw lies near the annotated jaw line
    assert np.linalg.norm(lab3d[:, :17] - lp.points[:, :17], axis=-1).mean() < 0.05 * np.ptp(lp.points, 1).max()
    text = lp.describe()
    assert "300w-test" in text and "| 4 | 0 | 0 |" in text and "yes" in text
    again = largepose.load(("300w-test",), {"300w-test": folder}, cache_root=tmp_path, progress=False)
    assert again.path == lp.path and np.array_equal(again.names, lp.names)  # read from the cache, no warnings


def test_bad_sources(tmp_path):
    with pytest.raises(ValueError, match="unknown large-pose source"):
        largepose.load(("300w-test", "aflw"), cache_root=tmp_path)
    with pytest.raises(ValueError, match="no sources"):
        largepose.load((), cache_root=tmp_path)
    with pytest.raises(FileNotFoundError, match="RTFACE_ASSETS"):
        largepose.load(("ytf",), {"ytf": tmp_path / "nowhere"}, cache_root=tmp_path)
