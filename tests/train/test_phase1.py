"""Phase 1: a short training run lowers the loss, is deterministic, checkpoints and resumes (needs rtface.synth)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def synth():
    mod = pytest.importorskip("rtface.synth", reason="rtface.synth (synthetic faces) is not available yet")
    import numba

    threads, nb = torch.get_num_threads(), numba.get_num_threads()
    # One thread each: tiny nets run fastest on one, and numba's parallel rasteriser leaves OpenMP threads
    # that spin against torch's on a small shared CPU (100x slower steps measured).
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    yield mod
    torch.set_num_threads(threads)
    numba.set_num_threads(nb)


def tiny_cfg(size: int = 64):
    from train.config import CoarseConfig, FineConfig, get_variant, with_train

    cfg = dataclasses.replace(
        get_variant("s"), size=size,
        coarse=CoarseConfig(widths=(8, 16, 16, 32), stem_width=8, head_width=32),
        fine=FineConfig(widths=(8, 16, 16), first_stride=2, head=(16, 8, 8, 4)))
    return with_train(cfg, batch_size=4, fine_batch_size=2, lr=3e-3, warmup_steps=1, num_loss_vertices=300,
                      data_workers=0)


def test_batch_contents_and_determinism(synth, face_model):
    from train.data import batch_seed, make_batch

    cfg = tiny_cfg()
    a = make_batch(cfg, seed=3, index=5)
    b = make_batch(cfg, seed=3, index=5)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert a["image"].shape == (4, 3, 64, 64) and a["image"].dtype == np.float32
    assert 0 <= a["image"].min() and a["image"].max() <= 1
    assert a["feedback"].shape == (4, 6, 64, 64)
    assert a["fine_coarse_in"].shape == (2, 64, 64) and a["fine_detail"].shape == (2, 64, 64)
    assert 0 <= batch_seed(10**9, 10**9) < 10**6


def test_albedo_marks_change_the_images_not_the_targets(synth, face_model):
    """``synth_marks_prob`` reaches rtface.synth: the same faces with marks painted on, the same geometry."""
    from train.config import with_train
    from train.data import make_batch

    plain = make_batch(tiny_cfg(), seed=3, index=5)
    marked = make_batch(with_train(tiny_cfg(), synth_marks_prob=1.0), seed=3, index=5)
    for k in ("coarse_depth", "mask", "fine_coarse_in", "fine_detail", "fine_mask", "identity", "pose"):
        np.testing.assert_array_equal(plain[k], marked[k], err_msg=k)
    assert not np.array_equal(plain["image"], marked["image"])


def test_training_lowers_the_loss_and_is_deterministic(synth, face_model):
    from train.data import make_batch
    from train.phase1 import Phase1

    cfg = tiny_cfg()
    batch = make_batch(cfg, seed=0, index=0)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        trainer = Phase1(cfg, face_model, total_steps=40)
        # Real wrinkles are sparse and sub-pixel, so the zero-initialised FineNet residual starts near the
        # optimum; start it from a random last layer instead so that 25 steps show the FineNet learning.
        with torch.no_grad():
            trainer.fine.head[-1].weight.normal_(0.0, 0.3)
        runs.append([trainer.step(batch) for _ in range(25)])
    first, last = runs[0][0], runs[0][-1]
    assert [r["total"] for r in runs[0]] == [r["total"] for r in runs[1]]
    assert last["total"] < 0.8 * first["total"], (first, last)
    assert last["fine_total"] < first["fine_total"], (first, last)


def test_cli_checkpoint_and_resume(synth, face_model, tmp_path, monkeypatch):
    import train.phase1 as p1

    monkeypatch.setattr(p1, "get_variant", lambda name: tiny_cfg())
    out = tmp_path / "run"
    common = ["--variant", "s", "--out", str(out), "--workers", "0", "--no-progress", "--log-every", "1",
              "--threads", "1"]
    assert p1.main(["--steps", "2", *common]) == 0
    ck = torch.load(out / "ckpt_last.pt", weights_only=True)
    assert ck["step"] == 2 and ck["variant"] == "s" and ck["face_model_hash"] == face_model.hash
    assert p1.main(["--steps", "3", "--resume", *common]) == 0
    ck = p1.load_checkpoint(out / "ckpt_last.pt", variant="s")
    assert ck["step"] == 3
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_fine_only_run_keeps_the_coarse_net_and_combines(synth, face_model, tmp_path, monkeypatch):
    import train.phase1 as p1
    from train.combine import combine

    monkeypatch.setattr(p1, "get_variant", lambda name: tiny_cfg())
    common = ["--variant", "s", "--workers", "0", "--no-progress", "--log-every", "1", "--threads", "1"]
    coarse_run, fine_run = tmp_path / "coarse", tmp_path / "fine"
    assert p1.main(["--steps", "2", "--out", str(coarse_run), *common]) == 0
    a = p1.load_checkpoint(coarse_run / "ckpt_last.pt")
    assert p1.main(["--steps", "2", "--out", str(fine_run), "--fine-only", "--init",
                    str(coarse_run / "ckpt_last.pt"), *common]) == 0
    b = p1.load_checkpoint(fine_run / "ckpt_last.pt")
    for k, v in a["coarse"].items():  # CoarseNet untouched by a fine-only run
        assert torch.equal(v, b["coarse"][k]), k
    assert any(not torch.equal(v, b["fine"][k]) for k, v in a["fine"].items())  # FineNet trained
    logged = [json.loads(line) for line in (fine_run / "log.jsonl").read_text().splitlines()]
    assert all("fine_total" in r and "vertex" not in r for r in logged)
    c = combine(a, b)
    assert c["coarse"] is a["coarse"] and c["fine"] is b["fine"] and c["config"] == b["config"]
    other = dict(b, face_model_hash="0" * 64)
    with pytest.raises(p1.CheckpointError, match="face_model_hash"):
        combine(a, other)


def test_drop_flow_keeps_the_plain_fine_net(synth, face_model, tmp_path, monkeypatch):
    """A FineNet trained with a flow, its flow dropped: the plain FineNet with the same blocks and head, which
    builds, loads strictly and gives the flow FineNet's output less the resampling."""
    import train.phase1 as p1
    from train.combine import drop_flow
    from train.nets import FineNet

    monkeypatch.setattr(p1, "get_variant", lambda name: tiny_cfg())
    run = tmp_path / "flow"
    assert p1.main(["--steps", "2", "--out", str(run), "--variant", "s", "--workers", "0", "--no-progress",
                    "--threads", "1", "--fine-only", "--fine-flow", "4", "--w-fine-flow", "1",
                    "--fine-flow-widths", "4", "8"]) == 0
    ck = p1.load_checkpoint(run / "ckpt_last.pt")
    assert any(k.startswith("flow_net.") for k in ck["fine"])
    plain = drop_flow(ck)
    cfg = p1.config_of(plain)
    assert cfg.fine.max_flow_px == 0 and cfg.fine.flow_widths == () and cfg.train.w_fine_flow == 0
    with_flow, without = FineNet(p1.config_of(ck)).eval(), FineNet(cfg).eval()
    with_flow.load_state_dict(ck["fine"])
    without.load_state_dict(plain["fine"])  # strict: exactly the plain FineNet's parameters
    torch.nn.init.zeros_(with_flow.flow_out.weight)  # no flow: both give the same depth
    torch.nn.init.zeros_(with_flow.flow_out.bias)
    x, z, m = torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64) * 10, torch.ones(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(with_flow(x, z, m), without(x, z, m), atol=1e-5)


def test_predicted_coarse_input_is_the_fit_and_the_target_the_truth(synth, face_model):
    """With ``fine_predicted_prob`` the FineNet gets the released CoarseNet's fit, and its target is the true
    surface: fit + target = true coarse surface + detail on the valid pixels, up to the fit's depth offset."""
    from train.config import with_train
    from train.data import make_batch

    cfg = with_train(dataclasses.replace(tiny_cfg(), size=128), fine_predicted_prob=1.0)
    b = make_batch(cfg, seed=1, index=0)
    fit, mask, target, valid = (b[k] > 0 if k in ("fine_mask", "fine_valid") else b[k]
                                for k in ("fine_coarse_in", "fine_mask", "fine_detail", "fine_valid"))
    truth_mask = b["mask"][:2] > 0
    assert valid.any(axis=(1, 2)).all()
    assert not (valid & ~(mask & truth_mask)).any() and not target[~valid].any()
    assert (mask != truth_mask).any()  # the fit's own silhouette, not the truth's
    for i in range(2):
        v = valid[i]
        off = fit[i][v] - b["coarse_depth"][i][v]  # the fit's shape error (and depth offset)
        rebuilt = fit[i][v] + target[i][v] - b["coarse_depth"][i][v]  # = the true detail
        assert np.abs(rebuilt).max() < 3.0 < np.abs(off - np.median(off)).max()


def test_flow_target_is_where_the_fit_put_each_point(synth, face_model):
    """``fine_flow`` at a true landmark's pixel is the fit's landmark minus the true one (the shift of that
    point of the surface), zero off the true face and for faces given the true surface."""
    from rtface.camera import project
    from train.config import with_train
    from train.data import _coarse_net, make_batch

    cfg = with_train(dataclasses.replace(tiny_cfg(), size=128), fine_predicted_prob=1.0, w_fine_flow=1.0)
    b = make_batch(cfg, seed=1, index=0)
    fit = _coarse_net("").run(b["image"][:2])
    lm = face_model.landmarks
    lm_fit = project(face_model.vertices(fit["identity"], fit["expression"]), fit["pose"])[:, lm, :2]
    lm_true = project(face_model.vertices(b["identity"][:2], b["expression"][:2]), b["pose"][:2])[:, lm, :2]
    flow, truth_mask = b["fine_flow"], b["mask"][:2] > 0
    assert not flow[np.broadcast_to(~truth_mask[:, None], flow.shape)].any()
    errors = []
    for i in range(2):
        for k in range(17, 68):  # brows, nose, eyes, mouth: inside the face, visible in these poses
            x, y = np.floor(lm_true[i, k]).astype(int)
            if truth_mask[i, y, x]:
                errors.append(np.abs(flow[i, :, y, x] - (lm_fit[i, k] - lm_true[i, k])).max())
    assert len(errors) > 60 and np.median(errors) < 0.3
    assert np.abs(lm_fit - lm_true).mean() > 0.5  # the fit is off: the flow carries something
    truth_fed = make_batch(with_train(cfg, fine_predicted_prob=0.0), seed=1, index=0)
    assert truth_fed["fine_flow"].shape == (2, 2, 128, 128) and not truth_fed["fine_flow"].any()


def test_fine_loss_ignores_a_depth_offset_and_highpass_ignores_tilts():
    from train.config import get_variant
    from train.nets import FineNet
    from train.phase1 import fine_detail_losses, highpass

    cfg = dataclasses.replace(tiny_cfg(), size=32)
    fine = FineNet(cfg)
    mask = torch.zeros(2, 32, 32)
    mask[:, 4:28, 6:26] = 1
    b = {"image": torch.rand(2, 3, 32, 32), "fine_coarse_in": 10.0 * mask, "fine_mask": mask,
         "fine_valid": mask, "fine_detail": 3.0 * mask}  # the truth lies 3 px behind the fit everywhere
    losses = fine_detail_losses(fine, b, get_variant("s").train)  # zero residual: only the offset is off
    assert float(losses["fine_data"].detach()) == pytest.approx(0.0, abs=1e-10)
    assert float(losses["fine_grad"].detach()) == pytest.approx(0.0, abs=1e-10)
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    plane = (0.5 * y + 0.2 * x)[None, None] * mask[:1, None]
    inner = torch.zeros_like(mask[:1, None])
    inner[..., 13:19, 15:17] = 1  # three sigma from the mask's edge
    assert float((highpass(plane, mask[:1, None], 3.0) * inner).abs().max()) < 1e-3
    spike = torch.zeros_like(plane)
    spike[..., 16, 16] = 1.0
    assert float(highpass(spike, mask[:1, None], 3.0)[..., 16, 16]) > 0.95
