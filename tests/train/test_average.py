"""train.average: the weighted mean of FineNets of one lineage, with the inputs checked and recorded."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")


def tiny_cfg():
    from train.config import CoarseConfig, FineConfig, get_variant

    return dataclasses.replace(get_variant("s"), size=32,
                               coarse=CoarseConfig(widths=(8, 8, 16, 16), stem_width=8, head_width=16),
                               fine=FineConfig(widths=(8, 8, 16), first_stride=2, head=(8, 8, 8, 4)))


def checkpoint(seed: int, cfg=None, coarse_seed: int = 0) -> dict:
    """A checkpoint dict of random tiny networks (FineNet drawn with ``seed``, CoarseNet with ``coarse_seed``)."""
    from train.nets import CoarseNet, FineNet
    from train.phase1 import CHECKPOINT_FORMAT

    cfg = cfg or tiny_cfg()
    torch.manual_seed(coarse_seed)
    coarse = CoarseNet(cfg)
    torch.manual_seed(seed)
    fine = FineNet(cfg)
    with torch.no_grad():
        for p in fine.parameters():
            p.normal_(0.0, 0.2)
        for m in fine.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(seed)
    return {"format": CHECKPOINT_FORMAT, "phase": 2, "variant": "s", "config": cfg.to_dict(),
            "face_model_hash": "f" * 64, "step": 100 + seed, "coarse": coarse.state_dict(),
            "fine": fine.state_dict(), "opt": {"state": {}}, "provenance": {"command": f"run {seed}"}}


def test_weighted_mean_of_the_fine_nets():
    from train.average import average

    a, b = checkpoint(1), checkpoint(2)
    out = average([a, b], [0.25, 0.75], [{"checkpoint": "a.pt", "sha256": "1" * 64}, {"checkpoint": "b.pt"}])
    for k, v in out["fine"].items():
        if v.is_floating_point():
            assert torch.allclose(v, 0.25 * a["fine"][k] + 0.75 * b["fine"][k], atol=1e-6), k
        else:  # integer buffers (num_batches_tracked) are the first input's
            assert torch.equal(v, a["fine"][k]), k
    assert out["coarse"] is a["coarse"] and out["config"] == a["config"] and out["phase"] == 2
    assert "opt" not in out  # a result to export, not to resume
    src = out["provenance"]["averaged"]
    assert [s["checkpoint"] for s in src] == ["a.pt", "b.pt"] and [s["weight"] for s in src] == [0.25, 0.75]
    assert src[0]["sha256"] == "1" * 64 and src[1]["provenance"] == {"command": "run 2"}
    # a mean of one network with itself is that network
    same = average([a, checkpoint(1)], [0.5, 0.5])
    assert all(torch.allclose(v.float(), a["fine"][k].float()) for k, v in same["fine"].items())


def test_inputs_that_cannot_be_averaged():
    from train.average import average
    from train.phase1 import CheckpointError

    a = checkpoint(1)
    with pytest.raises(CheckpointError, match="sum to 1"):
        average([a, checkpoint(2)], [0.5, 0.6])
    with pytest.raises(CheckpointError, match="positive"):
        average([a, checkpoint(2)], [1.5, -0.5])
    with pytest.raises(CheckpointError, match="two or more"):
        average([a], [1.0])
    with pytest.raises(CheckpointError, match="no FineNet"):
        average([{k: v for k, v in a.items() if k != "fine"}, checkpoint(2)], [0.5, 0.5])
    with pytest.raises(CheckpointError, match="face_model_hash"):
        average([a, dict(checkpoint(2), face_model_hash="0" * 64)], [0.5, 0.5])
    with pytest.raises(CheckpointError, match="another CoarseNet"):
        average([a, checkpoint(2, coarse_seed=1)], [0.5, 0.5])
    cfg = tiny_cfg()
    wider = dataclasses.replace(cfg, fine=dataclasses.replace(cfg.fine, widths=(8, 8, 32)))
    with pytest.raises(CheckpointError, match="FineNet architecture"):
        average([a, checkpoint(2, wider)], [0.5, 0.5])


def test_cli_writes_a_loadable_checkpoint(tmp_path, capsys):
    from train.average import main
    from train.phase1 import load_checkpoint, save_checkpoint

    for name, seed in (("a.pt", 1), ("b.pt", 2)):
        save_checkpoint(checkpoint(seed), tmp_path / name)
    out = tmp_path / "soup.pt"
    assert main([f"{tmp_path / 'a.pt'}:0.4", f"{tmp_path / 'b.pt'}:0.6", "--out", str(out)]) == 0
    soup = load_checkpoint(out)
    assert [s["weight"] for s in soup["provenance"]["averaged"]] == [0.4, 0.6]
    assert len(soup["provenance"]["averaged"][0]["sha256"]) == 64
    assert main([f"{tmp_path / 'a.pt'}:0.4", f"{tmp_path / 'missing.pt'}:0.6", "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path / "a.pt"), "--out", str(out)])  # no weight given
