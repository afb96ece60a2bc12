"""train.calibrate: the FineNet's output filter chosen on the detail sets' validation seed."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.train.test_average import checkpoint  # noqa: E402


def row(blur, gain, recovered, relief):
    return {"blur_px": blur, "gain": gain, "recovered_pred": recovered, "relief_true": relief}


def test_choose_takes_the_most_detail_within_the_relief_cap():
    from train.calibrate import choose
    from train.phase1 import CheckpointError

    rows = [row(0, 1, 0.08, 1.36), row(0, 1.6, 0.11, 1.74), row(1.4, 1.6, 0.10, 1.38), row(1.4, 1.8, 0.105, 1.41),
            row(2, 2, float("nan"), 1.0)]
    assert choose(rows, 1.4) == rows[2]
    assert choose(rows, 1.5) == rows[3]
    with pytest.raises(CheckpointError, match="1.2x"):
        choose(rows[:4], 1.2)


def test_calibrated_checkpoint_carries_the_filter_and_its_record(tmp_path):
    from train.calibrate import calibrated
    from train.export import nets_from_checkpoint
    from train.phase1 import load_checkpoint, save_checkpoint

    ckpt = checkpoint(1)
    out = calibrated(ckpt, row(1.4, 1.7, 0.1, 1.3), {"seed": 1, "tried": []})
    assert "opt" not in out and out["provenance"]["calibrated"]["seed"] == 1
    assert out["provenance"]["provenance"] == ckpt["provenance"]
    save_checkpoint(out, tmp_path / "cal.pt")
    cfg, _, fine = nets_from_checkpoint(load_checkpoint(tmp_path / "cal.pt"), "cal.pt")
    assert (cfg.fine.out_blur_px, cfg.fine.out_gain) == (1.4, 1.7)
    assert (fine.out_filter.blur_px, fine.out_filter.gain) == (1.4, 1.7)
    for key, value in ckpt["fine"].items():  # the weights are the input's
        assert torch.equal(fine.state_dict()[key], value)


def test_torch_fine_runs_like_the_network_and_computes_the_change_once():
    from train.calibrate import TorchFine
    from train.export import nets_from_checkpoint

    _, _, fine = nets_from_checkpoint(checkpoint(2), "tiny")
    calls = []
    change = fine.change
    fine.change = lambda *a: calls.append(1) or change(*a)
    runner = TorchFine(fine, 32)
    rng = np.random.default_rng(0)
    images = rng.random((2, 3, 32, 32), dtype=np.float32)
    depth = (rng.random((2, 32, 32)) * 10).astype(np.float32)
    mask = np.zeros((2, 32, 32), np.float32)
    mask[:, 6:26, 8:24] = 1
    runs = []
    for blur, gain in ((0.0, 1.0), (1.4, 1.7), (0.7, 1.2)):
        runner.set(blur, gain)
        before = len(calls)
        got = runner.run(images, depth, mask)
        runs.append(len(calls) - before)
        with torch.no_grad():
            want = fine(torch.from_numpy(images), torch.from_numpy(depth)[:, None], torch.from_numpy(mask)[:, None])
        assert got.shape == (2, 32, 32)
        np.testing.assert_allclose(got, want.numpy()[:, 0], atol=1e-5)
    assert runs == [1, 0, 0]


def test_cli_refuses_the_test_seed_and_a_checkpoint_without_a_finenet(tmp_path, capsys, face_model):
    from train.calibrate import main
    from train.phase1 import save_checkpoint

    with pytest.raises(SystemExit) as exc:
        main(["--checkpoint", "x.pt", "--out", "y.pt", "--seed", "0"])
    assert exc.value.code == 2 and "test seed" in capsys.readouterr().err
    ckpt = checkpoint(1)
    ckpt["face_model_hash"] = face_model.hash
    del ckpt["fine"]
    save_checkpoint(ckpt, tmp_path / "coarse_only.pt")
    assert main(["--checkpoint", str(tmp_path / "coarse_only.pt"), "--out", str(tmp_path / "y.pt")]) == 2
    assert "no FineNet" in capsys.readouterr().err
    assert not (tmp_path / "y.pt").exists()


def test_evaluate_on_the_detail_sets(face_model):
    """The plumbing on real detail-set faces: an untrained FineNet (zero change) recovers nothing and adds no
    relief, whatever the filter."""
    import dataclasses

    from rtface.networks import load_networks
    from train.calibrate import TorchFine, _Nets, evaluate
    from train.config import get_variant
    from train.nets import FineNet

    cfg = get_variant("s")
    onnx_nets = load_networks(None, backend="cpu", precision="fp32", face_model_hash=face_model.hash, threads=1)
    nets = _Nets(onnx_nets.coarse, TorchFine(FineNet(dataclasses.replace(cfg)), cfg.size), cfg.size)
    rows = evaluate(nets, face_model, [(0.0, 1.0), (1.4, 1.7)], faces=2, seed=1)
    onnx_nets.close()
    for r in rows:
        assert abs(r["recovered_pred"]) < 1e-6 and abs(r["relief_true"] - 1.0) < 1e-6
        assert abs(r["sfs_const_gain"]) < 1e-6
