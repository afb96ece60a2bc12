"""Held-out detail sets (benchmarks/detailsets.py): fields, detail only where it should be, the metric."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import detailsets as D


@pytest.fixture(scope="module")
def sets(face_model):
    return {k: D.make_set(face_model, k, 2, size=64, seed=0) for k in D.KINDS}


def test_fields_and_units(sets):
    for kind, b in sets.items():
        assert b["image"].shape == (2, 64, 64, 3) and b["image"].dtype == np.uint8
        for key in ("depth", "coarse_depth", "mesh_depth", "detail"):
            assert b[key].shape == (2, 64, 64) and b[key].dtype == np.float32
        m = b["mask"]
        assert m.dtype == bool and m.any(axis=(1, 2)).all()
        assert not b["depth"][~m].any() and not b["detail"][~m].any()
        np.testing.assert_allclose(b["depth"], b["coarse_depth"] + b["detail"], atol=1e-4)
        np.testing.assert_allclose(b["mm_per_px"], 10.0 / b["pose"][:, 3], rtol=1e-5)
        assert b["landmarks"].shape == (2, 68, 2) and b["albedo"].shape == (2, 64, 64, 3)
        # the smooth true surface stays within a fraction of a pixel of the faceted mesh away from edges
        _, e = D.eval_mask(b["coarse_depth"][0], m[0])
        assert np.median(np.abs(b["mesh_depth"][0] - b["coarse_depth"][0])[e]) < 0.2


def test_detail_only_in_the_detail_set(sets):
    assert not sets["albedo"]["detail"].any()
    d = sets["detail"]
    assert np.abs(d["detail"]).max(axis=(1, 2)).min() > 0.0
    # detail within the physical range: grooves up to 2.5 mm deep, folds with a bulge
    assert np.abs(d["detail"] * d["mm_per_px"][:, None, None]).max() < 3.0


def test_faces_depend_only_on_their_index(face_model, sets):
    one = D.make_set(face_model, "detail", 1, size=64, seed=0, start=1)
    np.testing.assert_array_equal(one["image"][0], sets["detail"]["image"][1])
    np.testing.assert_array_equal(one["depth"][0], sets["detail"]["depth"][1])


def test_strength_scales_the_detail_only(face_model, sets):
    strong = D.make_set(face_model, "detail", 1, size=64, seed=0, strength=3.0)
    base = sets["detail"]
    np.testing.assert_array_equal(strong["coarse_depth"][0], base["coarse_depth"][0])
    np.testing.assert_array_equal(strong["mask"][0], base["mask"][0])
    np.testing.assert_allclose(strong["detail"][0], 3.0 * base["detail"][0], rtol=1e-3, atol=1e-4)
    # the image shows the deeper detail: it differs from the base face's where the detail is
    assert np.abs(strong["image"][0].astype(int) - base["image"][0]).max() > 0
    # the albedo set has no detail to scale
    assert not D.make_set(face_model, "albedo", 1, size=64, seed=0, strength=3.0)["detail"].any()


def test_highpass_error():
    ys, xs = np.mgrid[0:64, 0:64].astype(np.float64) + 0.5
    mask = (xs - 32) ** 2 + (ys - 32) ** 2 < 28**2
    gt = np.where(mask, 30 + 0.1 * xs - 0.05 * ys, 0.0)
    # a smooth (plane + constant) difference is not detail: no high-pass error
    assert D.highpass_error(gt + 5 + 0.02 * xs, gt, mask, 1.0) < 1e-3
    # a narrow groove is: its error is about its RMS inside the evaluated region, in mm
    groove = -0.5 * np.exp(-((xs - 32) ** 2) / 2.0) * mask
    e1 = D.highpass_error(gt + groove, gt, mask, 1.0)
    e2 = D.highpass_error(gt + groove, gt, mask, 2.0)
    assert 0.05 < e1 < 0.3 and e2 > e1  # (at 2 mm per px the 5 mm high-pass is narrower in px)
    with_region = D.highpass_error(gt + groove, gt, mask, 1.0, pred_mask=mask & (xs < 50))
    assert np.isfinite(with_region)
