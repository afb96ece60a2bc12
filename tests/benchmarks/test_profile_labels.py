"""The hand labels of real profiles (benchmarks/profile_labels.py): the label file, the error, matching, scoring."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import largepose, profile_labels as pl


def _landmarks_at(label: pl.ProfileLabel, shift=(0.0, 0.0)) -> np.ndarray:
    """68 points that put every labelled point (and the near eye's six) on the label, moved by ``shift``."""
    lm = np.full((68, 3), 1e4)
    for k, p in label.points.items():
        lm[k, :2] = p
    lm[list(pl.NEAR_EYE), :2] = label.near_eye
    lm[:, :2] += shift
    return lm


def test_label_file():
    labels = pl.load()
    frames = {i for lo, hi in largepose.HAMILTON_PROFILES for i in range(lo, hi + 1, largepose.HAMILTON_STEP)}
    assert len(labels) == 11 and {lab.frame for lab in labels} <= frames
    for lab in labels:
        assert {27, 30, 51} <= set(lab.points) and set(lab.points) <= set(range(68))
        assert 640 > lab.near_eye[0] > 0 and 360 > lab.near_eye[1] > 0
        assert 40 < lab.scale < 300  # px: audience faces to the singer's close-up
        # every face looks towards the image's left: the nose tip is left of the nasion and the visible eye
        assert lab.points[30][0] < lab.points[27][0] < lab.near_eye[0]


def test_error_is_the_mean_distance_over_the_normaliser():
    lab = pl.load()[0]
    assert pl.ProfileLabel.error(lab, _landmarks_at(lab)) == 0.0
    assert lab.error(_landmarks_at(lab, (3.0, 4.0))) == pytest.approx(5.0 / lab.scale)
    with pytest.raises(ValueError, match="68 landmarks"):
        lab.error(np.zeros((5, 2)))


def test_match_and_score():
    labels = pl.load()
    lab = labels[0]
    near, far = _landmarks_at(lab, (2.0, 0.0)), _landmarks_at(lab, (2 * lab.scale, 0.0))
    assert pl.match(lab, [far, near]) == 1 and pl.match(lab, [far]) is None and pl.match(lab, []) is None
    s = pl.score(labels, {lab.frame: [far, near]})
    assert s["faces"] == 11 and s["matched"] >= 1 and s["per_face"][0][2] == pytest.approx(200 / lab.scale)
    assert pl.score(labels, {})["nme_%"] is None


def test_a_label_without_the_normaliser_points_is_refused(tmp_path):
    data = json.loads(pl.LABELS.read_text())
    del data["faces"][0]["points"]["51"]
    bad = tmp_path / "labels.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="point 27 or 51"):
        pl.load(bad)
