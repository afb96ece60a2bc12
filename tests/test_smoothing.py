"""One-Euro filter and the per-track smoother."""

from __future__ import annotations

import numpy as np
import pytest

from rtface.errors import InputError
from rtface.smoothing import OneEuroFilter, Smoother, SmoothingConfig


def test_first_sample_passes_and_constant_stays():
    f = OneEuroFilter(1.0, 0.0)
    x = np.array([1.0, -2.0, 3.0])
    assert np.array_equal(f(x, 0.0), x)
    for k in range(1, 20):
        assert np.allclose(f(x, k / 30), x)


def test_reduces_jitter_on_a_still_signal():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(1.0, 0.0)
    raw = 5.0 + 0.1 * rng.standard_normal((300, 4))
    out = np.array([f(r, k / 30) for k, r in enumerate(raw)])
    assert out[50:].std(0).max() < 0.35 * raw[50:].std(0).min()
    assert abs(out[50:].mean() - 5.0) < 0.02


def test_beta_reduces_lag_on_fast_motion():
    t = np.arange(60) / 30
    x = 100 * t  # ramp, 100 units/s
    lag = {}
    for beta in (0.0, 0.5):
        f = OneEuroFilter(1.0, beta)
        y = np.array([f(np.array([v]), tt)[0] for v, tt in zip(x, t)])
        lag[beta] = x[-1] - y[-1]
    assert lag[0.5] < 0.2 * lag[0.0]


def test_repeated_timestamp_uses_fallback_period():
    f = OneEuroFilter(1.0, 0.0)
    f(np.zeros(1), 1.0)
    y = f(np.ones(1), 1.0)  # same time: treated as 1/30 s later, finite and between
    assert 0.0 < y[0] < 1.0


def test_bad_parameters():
    with pytest.raises(InputError):
        OneEuroFilter(0.0)
    with pytest.raises(InputError):
        OneEuroFilter(1.0, -1.0)
    with pytest.raises(InputError):
        SmoothingConfig.coerce("yes")
    with pytest.raises(InputError):
        SmoothingConfig.coerce({"nope": 1})
    assert SmoothingConfig.coerce(False) is None
    assert SmoothingConfig.coerce(True) == SmoothingConfig()
    assert SmoothingConfig.coerce({"pose_min_cutoff": 3.0}).pose_min_cutoff == 3.0


def test_smoother_per_track_and_angle_unwrap():
    s = Smoother()
    ident, expr = np.zeros(100), np.full(53, 0.5)
    pose = np.array([0.0, 0.0, np.pi - 0.01, 10.0, 100.0, 50.0])
    s(1, ident, expr, pose, 0.0)
    p2 = pose.copy()
    p2[2] = -np.pi + 0.01  # the same roll, wrapped
    _, e, p = s(1, ident, expr, p2, 1 / 30)
    assert abs(abs(p[2]) - np.pi) < 0.05  # no swing through 0
    # an independent track starts from its own first sample
    _, _, q = s(2, ident, expr, pose * 0 + [0, 0, 0, 5, 1, 1], 1 / 30)
    assert np.allclose(q, [0, 0, 0, 5, 1, 1])
    assert ((e >= 0) & (e <= 1)).all()
    s.keep_only([2])
    assert list(s._faces) == [2]


def test_face_units_round_trip_and_size_invariance():
    from rtface.smoothing import from_face_units, to_face_units

    pose = np.array([0.1, -0.5, 0.05, 7.5, 320.0, 180.0])
    assert np.allclose(from_face_units(to_face_units(pose)), pose)
    # the same head motion (in cm and radians) seen on a face 10x larger is smoothed alike
    rng = np.random.default_rng(0)
    steps = np.cumsum(rng.normal(0, 1, (30, 6)) * [0.02, 0.02, 0.02, 0.01, 0.5, 0.5], 0)
    out = {}
    for scale in (3.0, 30.0):
        s = Smoother()
        for k, d in enumerate(steps):
            p = np.array([d[0], d[1], d[2], scale * np.exp(d[3]), scale * (10 + d[4]), scale * (8 + d[5])])
            _, _, q = s(0, np.zeros(3), np.zeros(2), p, k / 30)
        out[scale] = to_face_units(q)
    assert np.allclose(out[3.0][[0, 1, 2, 4, 5]], out[30.0][[0, 1, 2, 4, 5]], atol=1e-4)
    assert np.isclose(out[3.0][3] - np.log(3.0), out[30.0][3] - np.log(30.0), atol=1e-4)
