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
