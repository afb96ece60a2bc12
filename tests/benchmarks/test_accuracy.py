"""Detail evaluation of benchmarks/accuracy.py on the shipped weights: its figures, and that the real-face
shape-from-shading residual ranks the true surface first where the truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.accuracy import detail_evaluation


@pytest.fixture(scope="module")
def detail(face_model):
    from rtface.networks import load_networks

    nets = load_networks(None, backend="cpu", face_model_hash=face_model.hash, threads=1)
    try:
        yield detail_evaluation(nets, face_model, faces=3, refine=False)
    finally:
        nets.close()


def test_figures_are_finite(detail):
    for kind in ("detail", "albedo"):
        r = detail[kind]
        for key in ("coarse_pred_mm", "fine_pred_mm", "coarse_true_mm", "fine_true_mm",
                    "sfs_const_coarse", "sfs_const_fine", "sfs_const_truth"):
            assert np.isfinite(r[key]) and r[key] >= 0.0, (kind, key)
    assert np.isfinite(detail["detail"]["fine_pred_recovered"]) and np.isfinite(detail["albedo"]["fine_true_ratio"])


def test_sfs_residual_ranks_the_true_surface_first(detail):
    # the measure behind the real-face target is only worth having if the truth beats the CoarseNet's fit
    for kind in ("detail", "albedo"):
        r = detail[kind]
        assert r["sfs_const_truth"] < 0.95 * r["sfs_const_coarse"], kind
