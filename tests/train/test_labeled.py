"""Labelled real faces (train/labeled.py): reading, skipping bad files with a count, fits and detections."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import GOOD


def test_bad_inputs_are_skipped_and_counted(tiny_set):
    assert tiny_set.stats["total"] == len(GOOD) + 4
    assert tiny_set.stats["count"] == len(GOOD)
    assert tiny_set.stats["skipped"] == {"label": 2, "image": 2}
    assert sorted(tiny_set.names) == sorted(GOOD)


def test_fits_follow_the_labels(tiny_set):
    # the prior-regularised fit of this face model leaves about 1.5 % box-NME on 300-W
    assert tiny_set.fit_nme.max() < 0.03
    assert np.isfinite(tiny_set.identity).all() and np.isfinite(tiny_set.pose).all()
    assert (tiny_set.expression >= 0).all() and (tiny_set.expression <= 1).all()
    assert tiny_set.vertex_ids.shape == (len(GOOD), 68)


def test_detections_cover_the_labelled_face(tiny_set):
    found = np.isfinite(tiny_set.det_five).all(axis=(1, 2))
    assert found.all()
    centre = tiny_set.points.mean(1)
    assert np.linalg.norm(tiny_set.det_five.mean(1) - centre, axis=1).max() < 0.2 * np.ptp(tiny_set.points, 1).max()


def test_read_pts_formats(tmp_path):
    from train.labeled import LabelError, read_pts

    plain = tmp_path / "a.pts"
    plain.write_text("\n".join(f"{i} {2 * i}" for i in range(68)))
    assert np.allclose(read_pts(plain, 0.5)[3], [3.5, 6.5])
    ibug = tmp_path / "b.pts"
    ibug.write_text("version: 1\nn_points: 68\n{\n" + "\n".join(f"{i} {i}" for i in range(1, 69)) + "\n}\n")
    assert np.allclose(read_pts(ibug)[0], [0.5, 0.5])  # 1-based file coordinates -> pixel centres
    short = tmp_path / "c.pts"
    short.write_text("\n".join(f"{i} {i}" for i in range(67)))
    with pytest.raises(LabelError, match="68 points"):
        read_pts(short)
    text = tmp_path / "d.pts"
    text.write_text("x y\n" * 68)
    with pytest.raises(LabelError, match="not a landmark file"):
        read_pts(text)
