"""Phase 2 (train/phase2.py): a few steps of a tiny randomly initialised model on real crops lower the loss."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.conftest import shared  # noqa: E402

S = 64


def tiny_config():
    from train.config import CoarseConfig, FineConfig, VariantConfig

    return VariantConfig(name="s", size=S,
                         coarse=CoarseConfig(widths=(8, 8, 16, 16), stem_width=8, head_width=16),
                         fine=FineConfig(widths=(8, 8, 16), head=(16, 8, 8, 4)))


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    shared("faces-utk/utkface_aligned_200px.tar")
    shared("yunet/face_detection_yunet_2023mar.onnx")
    from train import realdata

    return realdata.load(size=S, limit=8, cache_root=tmp_path_factory.mktemp("phase2"), progress=False)


@pytest.mark.parametrize("freeze", [True, False])
def test_steps_lower_the_loss(face_model, faces, freeze, tmp_path):
    from train.phase2 import Phase2

    torch.manual_seed(0)
    tr = Phase2(tiny_config(), face_model, total_steps=5, freeze_coarse=freeze, lr=3e-3, warmup_steps=0)
    batch = faces.batch(np.arange(4))
    before = {k: v.clone() for k, v in tr.coarse.state_dict().items()}
    losses = [tr.step(batch) for _ in range(5)]
    totals = [r["total"] for r in losses]
    assert all(np.isfinite(totals))
    changed = any(not torch.equal(before[k], v) for k, v in tr.coarse.state_dict().items())
    assert changed != freeze
    if freeze:  # the default; un-frozen, the loss need not fall monotonically (see train/phase2.py)
        assert totals[-1] < totals[0], totals
    assert losses[-1]["residual_px"] > 0  # the FineNet has started to add detail
    # checkpoint round trip with weights_only=True
    path = tmp_path / "ckpt_last.pt"
    tr.save(path)
    ck = torch.load(path, weights_only=True)
    assert ck["phase"] == 2 and ck["step"] == 5 and ck["phase2"]["freeze_coarse"] == freeze
    tr2 = Phase2(tiny_config(), face_model, total_steps=5, freeze_coarse=freeze)
    tr2.load_state(ck)
    for a, b in zip(tr.fine.state_dict().values(), tr2.fine.state_dict().values()):
        assert torch.equal(a, b)
    held = tr2.evaluate(faces.batch(np.arange(4, 6)))
    assert all(np.isfinite(v) for v in held.values())
    tr2.picture(faces.batch(np.arange(2)), tmp_path / "p.png", rows=2)
    assert (tmp_path / "p.png").stat().st_size > 0


def test_synthetic_detail_term_trains_the_fine_net_on_known_detail(face_model, faces):

    from train.config import with_train
    from train.data import make_batch
    from train.phase2 import Phase2

    cfg = with_train(tiny_config(), fine_only=True, fine_batch_size=2, batch_size=2)
    synthetic = make_batch(cfg, seed=0, index=0)
    torch.manual_seed(0)
    tr = Phase2(tiny_config(), face_model, total_steps=4, lr=3e-3, warmup_steps=0, w_synth_detail=100.0)
    recs = [tr.step(faces.batch(np.arange(4)), synthetic) for _ in range(4)]
    assert all(np.isfinite(r["synth_fine_total"]) for r in recs)
    assert recs[-1]["synth_fine_total"] < recs[0]["synth_fine_total"]
    assert tr.state()["phase2"]["w_synth_detail"] == 100.0
    plain = Phase2(tiny_config(), face_model, total_steps=1, w_synth_detail=0.0)
    assert "synth_fine_total" not in plain.step(faces.batch(np.arange(4)), synthetic)


def test_compare_freeze_runs_both_settings_on_the_same_batches(face_model, faces, tmp_path):
    import argparse
    import json

    from train.phase2 import Phase2, compare_freeze

    torch.manual_seed(0)
    init = Phase2(tiny_config(), face_model, total_steps=1).state()
    args = argparse.Namespace(steps=2, batch_size=2, seed=0, lr=1e-3, coarse_lr_ratio=0.1, device="cpu",
                              w_sfs=None, w_fidelity=None, w_smooth=None, w_landmark=None, sh_order=None,
                              albedo_sigma_space=None, albedo_radius=None, w_synth_detail=10.0)
    result = compare_freeze(args, tiny_config(), face_model, init, faces, tmp_path)
    saved = json.loads((tmp_path / "compare_freeze.json").read_text())
    assert saved["w_synth_detail"] == 10.0 and saved["steps"] == 2
    for key in ("frozen", "trained"):
        r = result[key]
        # both start from the same weights, so the "before" figures agree exactly
        assert r["before"] == result["frozen"]["before"]
        assert np.isfinite(r["last_train"]["synth_fine_total"])
        assert (tmp_path / f"compare_{key}.png").stat().st_size > 0
    # frozen: the coarse depth, hence its SfS error, does not move; trained: it does
    assert result["frozen"]["after"]["heldout_sfs_coarse"] == result["frozen"]["before"]["heldout_sfs_coarse"]
    assert result["trained"]["after"]["heldout_sfs_coarse"] != result["trained"]["before"]["heldout_sfs_coarse"]


def test_synth_predicted_replaces_the_init_share_and_a_resumed_run_keeps_its_own(face_model):
    """``--synth-predicted`` replaces the init checkpoint's share of fitted coarse inputs in the run's config (what
    its synthetic batches use, saved with its checkpoints); a resumed run keeps the share it was started with."""
    from train.phase2 import Phase2, run_config

    torch.manual_seed(0)
    init = Phase2(tiny_config(), face_model, total_steps=1).state()
    assert run_config(None, init).train.fine_predicted_prob == tiny_config().train.fine_predicted_prob
    cfg = run_config(None, init, 0.25)
    assert cfg.train.fine_predicted_prob == 0.25 and cfg.fine == tiny_config().fine
    resumed = Phase2(cfg, face_model, total_steps=1).state()
    assert run_config(resumed, None, 0.9).train.fine_predicted_prob == 0.25


def test_albedo_smoothing_options_reach_the_lighting_config():
    """``--albedo-sigma-space`` / ``--albedo-radius`` set the albedo's bilateral filter; unset, the defaults stay."""
    from train.losses import LightingConfig
    from train.phase2 import _weights, parse_args

    base = ["--steps", "10", "--out", "x", "--init", "y.pt"]
    _, lc = _weights(parse_args(base))
    assert lc == LightingConfig()
    w, lc = _weights(parse_args(base + ["--albedo-sigma-space", "6", "--albedo-radius", "9", "--w-fidelity", "0.01",
                                        "--sh-order", "2"]))
    assert (lc.bilateral_sigma_space, lc.bilateral_radius, lc.sh_order) == (6.0, 9, 2) and w.fidelity == 0.01
    assert lc.bilateral_sigma_range == LightingConfig().bilateral_sigma_range
