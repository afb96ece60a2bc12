"""The detail measure (benchmarks.relief): explained share, correlation, relief RMS."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.relief import ReliefScore, evaluation_mask, face_width, gaussian_highpass


def _face(n: int = 160):
    yy, xx = np.mgrid[0:n, 0:n] + 0.5
    mask = (xx - n / 2) ** 2 + (yy - n / 2) ** 2 < (0.45 * n) ** 2
    grooves = -0.8 * np.exp(-0.5 * ((yy - 60) / 1.5) ** 2) - 0.5 * np.exp(-0.5 * ((xx - 90) / 2.0) ** 2)
    return np.where(mask, grooves, 0.0), mask, xx, yy


def _score(relief, detail, mask, mm=0.4):
    s = ReliefScore()
    s.add(relief, detail, mask, mask, mm)
    return s, s.result()


def test_the_truth_explains_all_and_nothing_explains_nothing():
    d, m, _, _ = _face()
    assert _score(d, d, m)[1]["explained"] == pytest.approx(1.0)
    assert _score(d, d, m)[1]["correlation"] == pytest.approx(1.0)
    zero = _score(np.zeros_like(d), d, m)[1]
    assert zero["explained"] == pytest.approx(0.0) and zero["relief_rms_mm"] == 0.0
    assert _score(-d, d, m)[1]["explained"] == pytest.approx(-3.0)


def test_scales_above_two_mm_do_not_count():
    """A tilt or a broad bulge added to the relief is removed by the 2 mm high-pass; a wrinkle is not."""
    d, m, xx, yy = _face()
    broad = 3.0 * np.exp(-((xx - 80) ** 2 + (yy - 80) ** 2) / (2 * 40.0**2)) + 0.05 * xx
    assert _score(np.where(m, d + broad, 0), d, m)[1]["explained"] > 0.9  # 0.95: the tilt leaks at the border


def test_a_gain_changes_the_error_as_least_squares_says():
    """train.detail_calibrate's gain: sum P D / sum P^2 maximises the explained share, to about the squared
    correlation; its formula for the error at gain g agrees with scoring g P directly."""
    d, m, _, _ = _face()
    rng = np.random.default_rng(0)
    p = np.where(m, 1.7 * d + 0.3 * rng.standard_normal(d.shape), 0)
    s, r = _score(p, d, m)
    g = s.cross / s.pred
    scaled = _score(g * p, d, m)[1]
    predicted = 1 - (s.err - s.pred + g * g * s.pred - 2 * (g - 1) * s.cross) / s.true
    assert scaled["explained"] == pytest.approx(predicted, abs=1e-9)
    assert scaled["explained"] > r["explained"] and scaled["explained"] == pytest.approx(r["correlation"] ** 2,
                                                                                      abs=0.02)


def test_mask_helpers():
    d, m, _, _ = _face()
    assert face_width(m) == pytest.approx(0.9 * 160, abs=2)
    e = evaluation_mask(m, face_width(m))
    assert e.sum() < m.sum() and not (e & ~m).any()
    assert (gaussian_highpass(d, m, 3.0)[~m] == 0).all()
    with pytest.raises(ValueError, match="mm_per_px"):
        ReliefScore().add(d, d, m, m, float("nan"))
