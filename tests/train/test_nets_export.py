"""Network shapes, pose decoding, ONNX export parity with ONNX Runtime, checkpoint errors."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")


def tiny_variant(size: int = 32):
    from train.config import CoarseConfig, FineConfig, get_variant

    return dataclasses.replace(
        get_variant("s"), name="s", size=size,
        coarse=CoarseConfig(widths=(8, 8, 16, 16), stem_width=8, head_width=16),
        fine=FineConfig(widths=(8, 8, 16), first_stride=2, head=(8, 8, 8, 4)))


def randomise(module):
    """Give every parameter (also the zero-initialised last layers) random values, so parity is meaningful."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)


@pytest.mark.parametrize("variant", ["s", "paper"])
def test_shapes_and_initial_prediction(variant):
    from rtface.crop import frontal_pose
    from train.config import get_variant
    from train.nets import CoarseNet, FineNet

    cfg = get_variant(variant)
    s = cfg.size
    c, f = CoarseNet(cfg).eval(), FineNet(cfg).eval()
    with torch.no_grad():
        idn, exp, pose = c(torch.rand(2, 3, s, s), torch.zeros(2, 6, s, s))
        depth = f(torch.rand(2, 3, s, s), torch.rand(2, 1, s, s) * 50, torch.ones(2, 1, s, s))
    assert idn.shape == (2, 100) and exp.shape == (2, 53) and pose.shape == (2, 6) and depth.shape == (2, 1, s, s)
    assert torch.all((exp > 0) & (exp < 1))
    np.testing.assert_allclose(pose[0].numpy(), frontal_pose(s), rtol=0.05, atol=0.05)


def test_fine_output_is_coarse_outside_mask_and_its_residual_zero_mean():
    from train.nets import FineNet

    cfg = tiny_variant()
    f = FineNet(cfg).eval()
    randomise(f)
    coarse = torch.rand(1, 1, 32, 32) * 10
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    with torch.no_grad():
        d = f(torch.rand(1, 3, 32, 32), coarse, mask)
    assert torch.equal(d[mask == 0], coarse[mask == 0])
    assert not torch.equal(d[mask == 1], coarse[mask == 1])
    assert abs(float((d - coarse)[mask == 1].mean())) < 1e-5  # a shape change, never a depth offset


def test_output_filter_blurs_with_zeros_beyond_the_border():
    """The filter is the 2-D Gaussian blur (radius ceil(3 sigma), weights summing to 1) of its input with zeros
    outside the crop, times the gain."""
    from train.nets import OutputFilter, gaussian_kernel

    sigma, r = 1.4, 5
    k = gaussian_kernel(sigma)
    assert k.numel() == 2 * r + 1 and abs(float(k.sum()) - 1.0) < 1e-6
    t = np.arange(-r, r + 1)
    g = np.exp(-0.5 * (t / sigma) ** 2)
    g /= g.sum()
    x = torch.zeros(1, 1, 32, 32)
    x[0, 0, 10, 20] = 1.0
    x[0, 0, 1, 30] = 2.0  # near two borders: what falls outside is lost
    want = np.zeros((32 + 2 * r, 32 + 2 * r))
    want[10:10 + 2 * r + 1, 20:20 + 2 * r + 1] += np.outer(g, g)
    want[1:1 + 2 * r + 1, 30:30 + 2 * r + 1] += 2.0 * np.outer(g, g)
    with torch.no_grad():
        got = OutputFilter(32, sigma, 1.5)(x)[0, 0].numpy()
    np.testing.assert_allclose(got, 1.5 * want[r:-r, r:-r], atol=1e-7)


def test_fine_output_filter_blurs_and_scales_the_change():
    """With ``out_blur_px`` / ``out_gain`` the change is ``gain * blur(change)``, masked, made zero-mean; the
    identity filter leaves the FineNet as it was; the filter is no parameter (state dicts stay compatible)."""
    from train.nets import FineNet, OutputFilter

    plain_cfg = tiny_variant()
    cfg = dataclasses.replace(plain_cfg, fine=dataclasses.replace(plain_cfg.fine, out_blur_px=1.0, out_gain=1.7))
    plain, filtered = FineNet(plain_cfg).eval(), FineNet(cfg).eval()
    randomise(plain)
    filtered.load_state_dict(plain.state_dict())
    image, coarse = torch.rand(2, 3, 32, 32), torch.rand(2, 1, 32, 32) * 10
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., 6:26, 8:24] = 1
    with torch.no_grad():
        delta, _ = plain.change(image, coarse, mask)
        base, out = plain(image, coarse, mask), filtered(image, coarse, mask)
    zm = delta - delta.sum(dim=(2, 3), keepdim=True) / mask.sum(dim=(2, 3), keepdim=True) * mask
    assert torch.allclose(base, coarse + zm, atol=1e-5)
    with torch.no_grad():
        want = OutputFilter(32, 1.0, 1.7)(delta) * mask
    want = want - want.sum(dim=(2, 3), keepdim=True) / mask.sum(dim=(2, 3), keepdim=True) * mask
    assert torch.allclose(out, coarse + want, atol=1e-5)
    assert torch.equal(out[mask == 0], coarse[mask == 0])
    # smoother than the unfiltered change inside the mask: smaller second differences per unit of gain
    lap = lambda d: (d[..., 8:24, 11:23] + d[..., 8:24, 9:21] - 2 * d[..., 8:24, 10:22]).abs().mean()
    assert float(lap(out - coarse)) / 1.7 < 0.5 * float(lap(base - coarse))
    with torch.no_grad():
        flat = filtered(torch.full((1, 3, 32, 32), 0.5), torch.full((1, 1, 32, 32), 20.0), mask[:1])
    assert torch.isfinite(flat).all() and abs(float((flat - 20.0)[mask[:1] == 1].mean())) < 1e-5
    filtered.out_filter.set(0.0, 1.0)
    with torch.no_grad():
        assert torch.equal(filtered(image, coarse, mask), base)
    with pytest.raises(ValueError, match="blur_px"):
        filtered.out_filter.set(-1.0, 1.0)


def test_export_parity_with_the_output_filter(tmp_path, face_model):
    """The filter's MatMuls export; ONNX Runtime matches torch, and the INT8 float tail does not count them."""
    from train.export import export
    from train.nets import CoarseNet, FineNet
    from train.quantize import float_nodes

    base = tiny_variant()
    cfg = dataclasses.replace(base, fine=dataclasses.replace(base.fine, out_blur_px=1.4, out_gain=1.5))
    c, f = CoarseNet(cfg), FineNet(cfg)
    randomise(c)
    randomise(f)
    m = export(cfg, c, f, tmp_path, face_model.hash, {"status": "untrained"}, tol=1e-4, storage="float32")
    assert m["networks"]["fine"]["parity_max_abs_diff"] < 1e-3
    tail = float_nodes(str(tmp_path / "fine_s.onnx"), tail=2)
    assert sorted(n for n in tail if "Conv" in n) == ["/head/head.5/Conv", "/head/head.7/Conv"]
    assert sum(n.startswith("/out_filter/MatMul") for n in tail) == 2


def flow_variant(max_flow_px: float = 6.0):
    base = tiny_variant()
    return dataclasses.replace(base, fine=dataclasses.replace(base.fine, max_flow_px=max_flow_px, flow_widths=(4, 8)))


def test_fine_flow_moves_the_coarse_surface_in_the_image_plane():
    """A FineNet with a flow samples the coarse depth at ``p + flow(p)``: a constant 1 px flow to the right on
    a bowl ``z = (x - c)^2 / 10`` changes it by ``(2 (x - c) + 1) / 10``, less its mean; the background and the
    depth offset stay as they were."""
    from train.nets import FineNet

    f = FineNet(flow_variant()).eval()
    torch.nn.init.zeros_(f.flow_out.weight)
    f.flow_out.bias.data = torch.tensor([1.0, 0.0])
    x = torch.arange(32.0).view(1, 1, 1, 32).expand(1, 1, 32, 32)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 4:28, 4:28] = 1
    coarse = ((x - 15.5) ** 2 / 10.0 + 20.0) * mask
    with torch.no_grad():
        d, flow = f(torch.rand(1, 3, 32, 32), coarse, mask, return_flow=True)
    shift = 6.0 * np.tanh(1.0 / 6.0)
    assert torch.allclose(flow[:, 0], torch.full((1, 32, 32), shift)) and not flow[:, 1].any()
    assert torch.equal(d[mask == 0], coarse[mask == 0])
    assert abs(float((d - coarse)[mask == 1].mean())) < 1e-4
    delta = (d - coarse)[0, 0, 16, 6:26]
    expected = (2 * (x[0, 0, 16, 6:26] - 15.5) * shift + shift ** 2) / 10.0
    np.testing.assert_allclose((delta - delta.mean()).numpy(), (expected - expected.mean()).numpy(), atol=1e-4)


def test_export_parity_with_a_flow(tmp_path, face_model):
    """The flow's GridSample exports (opset 17) and ONNX Runtime matches torch."""
    from train.export import export
    from train.nets import CoarseNet, FineNet

    cfg = flow_variant(max_flow_px=4.0)
    c, f = CoarseNet(cfg), FineNet(cfg)
    randomise(c)
    randomise(f)
    m = export(cfg, c, f, tmp_path, face_model.hash, {"status": "untrained"}, tol=1e-4, storage="float32")
    assert m["networks"]["fine"]["parity_max_abs_diff"] < 1e-3
    import onnx

    assert "GridSample" in {n.op_type for n in onnx.load(str(tmp_path / "fine_s.onnx")).graph.node}


@pytest.mark.parametrize("storage", ["float16", "float32"])
def test_export_parity_and_manifest(tmp_path, face_model, storage):
    from train.export import export, sha256_file
    from train.nets import CoarseNet, FineNet

    cfg = tiny_variant()
    c, f = CoarseNet(cfg), FineNet(cfg)
    randomise(c)
    randomise(f)
    m = export(cfg, c, f, tmp_path, face_model.hash, {"status": "untrained"}, tol=1e-4, storage=storage)
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man == m and man["input_size"] == 32 and man["face_model_hash"] == face_model.hash
    for key in ("coarse", "fine"):
        assert man["networks"][key]["sha256"] == sha256_file(tmp_path / man["networks"][key]["file"])
        assert man["networks"][key]["parity_max_abs_diff"] < 1e-3
        assert ("storage" in man["networks"][key]) == (storage == "float16")

    import onnx
    import onnxruntime as ort

    model = onnx.load(str(tmp_path / "coarse_s.onnx"))
    assert model.opset_import[0].version >= 17
    assert [i.name for i in model.graph.input] == ["image", "feedback"]
    assert [o.name for o in model.graph.output] == ["identity", "expression", "pose"]
    # dynamic batch: batch 3 runs and matches torch
    sess = ort.InferenceSession(str(tmp_path / "fine_s.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32)
    d = np.random.default_rng(1).random((3, 1, 32, 32), dtype=np.float32) * 20
    mk = np.ones((3, 1, 32, 32), np.float32)
    got = sess.run(["depth"], {"image": x, "coarse_depth": d, "mask": mk})[0]
    with torch.no_grad():
        ref = f.eval()(torch.from_numpy(x), torch.from_numpy(d), torch.from_numpy(mk)).numpy()
    if storage == "float32":
        np.testing.assert_allclose(got, ref, atol=1e-4)
    else:  # float16 weights, float32 arithmetic
        assert np.abs(got - ref).max() < 2e-3 * max(1.0, np.abs(ref).max())
        stored = {i.name: i.data_type for i in model.graph.initializer}
        assert onnx.TensorProto.FLOAT16 in stored.values()
        assert all(n.op_type != "Cast" or n.attribute[0].i == onnx.TensorProto.FLOAT for n in model.graph.node)


def test_export_fails_on_parity_violation(tmp_path, face_model, monkeypatch):
    import train.export as ex
    from train.nets import CoarseNet, FineNet

    cfg = tiny_variant()
    c, f = CoarseNet(cfg), FineNet(cfg)
    randomise(f)
    real = ex.onnx_bytes

    def broken(module, args, inputs, outputs):  # export a *different* FineNet: parity must catch it
        if module is f:
            other = FineNet(cfg)
            randomise(other)
            with torch.no_grad():
                for p in other.parameters():
                    p.mul_(1.5)
            return real(other, args, inputs, outputs)
        return real(module, args, inputs, outputs)

    monkeypatch.setattr(ex, "onnx_bytes", broken)
    with pytest.raises(ex.ExportError, match="differs from torch"):
        ex.export(cfg, c, f, tmp_path, face_model.hash, {"status": "untrained"})
    assert not (tmp_path / "manifest.json").exists()


def _save_ckpt(path, cfg, face_model):
    from train.phase1 import Phase1

    trainer = Phase1(cfg, face_model, total_steps=1)
    trainer.save(path)


def test_checkpoint_errors(tmp_path, face_model):
    from train.phase1 import CheckpointError, load_checkpoint

    cfg = tiny_variant()
    good = tmp_path / "ckpt.pt"
    _save_ckpt(good, cfg, face_model)
    ck = load_checkpoint(good, variant="s", face_model_hash=face_model.hash)
    assert ck["variant"] == "s" and ck["step"] == 0
    with pytest.raises(CheckpointError, match="variant 's', not 'paper'"):
        load_checkpoint(good, variant="paper")
    with pytest.raises(CheckpointError, match="face model"):
        load_checkpoint(good, variant="s", face_model_hash="0" * 64)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)
    junk = tmp_path / "junk.pt"
    torch.save({"hello": torch.zeros(1)}, junk)
    with pytest.raises(CheckpointError, match="not an rtface"):
        load_checkpoint(junk)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_export_cli_rejects_wrong_variant(tmp_path, face_model, capsys):
    from train.export import main

    cfg = tiny_variant()
    ck = tmp_path / "ckpt.pt"
    _save_ckpt(ck, cfg, face_model)
    assert main(["--checkpoint", str(ck), "--variant", "paper", "--out", str(tmp_path / "w")]) == 2
    assert "variant 's', not 'paper'" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_half_storage_round_trip(tmp_path):
    """float16 storage halves the file and keeps the function; float_storage gives float32 initializers back."""
    import onnx
    import onnxruntime as ort

    from train.export import COARSE_OUTPUTS, onnx_bytes
    from train.nets import CoarseNet
    from train.onnx_half import float_storage, half_storage

    cfg = tiny_variant()
    c = CoarseNet(cfg)
    randomise(c)
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    fb = np.zeros((2, 6, 32, 32), np.float32)
    data = onnx_bytes(c, (torch.from_numpy(x[:1]), torch.from_numpy(fb[:1])), ["image", "feedback"], COARSE_OUTPUTS)
    half = half_storage(data, min_elements=16)  # the tiny test net has small tensors only
    assert len(half) < 0.6 * len(data)
    back = float_storage(onnx.load_from_string(half))
    assert all(i.data_type == onnx.TensorProto.FLOAT for i in back.graph.initializer)
    assert not any(n.op_type == "Cast" and n.input[0].endswith("__fp16") for n in back.graph.node)
    outs = [ort.InferenceSession(d, providers=["CPUExecutionProvider"]).run(None, {"image": x, "feedback": fb})
            for d in (data, half, back.SerializeToString())]
    for a, b, r in zip(*outs):
        assert np.abs(a - b).max() < 2e-3 * max(1.0, np.abs(a).max())
        assert np.array_equal(b, r)  # the restored file holds exactly the float16-rounded weights
    assert float_storage(onnx.load_from_string(data)).SerializeToString() == onnx.load_from_string(data).SerializeToString()


def test_export_ships_the_other_network_unchanged(tmp_path, face_model):
    """A FineNet-only (CoarseNet-only) export keeps the other network's file and records where it came from."""
    from train.export import export
    from train.nets import CoarseNet, FineNet

    cfg = tiny_variant()
    c, f = CoarseNet(cfg), FineNet(cfg)
    randomise(c)
    randomise(f)
    first = export(cfg, c, f, tmp_path / "a", face_model.hash, {"status": "trained", "step": 1}, storage="float32")
    randomise(f.head)
    with torch.no_grad():
        f.head[-1].bias.fill_(0.5)
    second = export(cfg, None, f, tmp_path / "b", face_model.hash, {"status": "trained", "step": 2},
                    coarse_from=tmp_path / "a", storage="float32")
    assert (tmp_path / "b" / "coarse_s.onnx").read_bytes() == (tmp_path / "a" / "coarse_s.onnx").read_bytes()
    assert second["networks"]["coarse"]["sha256"] == first["networks"]["coarse"]["sha256"]
    assert second["networks"]["fine"]["sha256"] != first["networks"]["fine"]["sha256"]
    assert second["training"]["coarse"] == {"from": str(tmp_path / "a"), "sha256": first["networks"]["coarse"]["sha256"],
                                            "training": {"status": "trained", "step": 1}}
    assert "int8" not in second["networks"]["coarse"]



def test_export_keeps_the_shipped_detail_finenet_under_its_own_name(tmp_path, face_model):
    """A CoarseNet-only export beside the shipped weights keeps their detail FineNet as ``fine_d.onnx`` with its
    manifest fields (resolution, output, training record), so the exported folder loads as the release does."""
    from rtface.networks import load_manifest, weights_dir
    from train.export import export
    from train.nets import CoarseNet

    cfg = tiny_variant()
    c = CoarseNet(cfg)
    randomise(c)
    shipped = load_manifest(weights_dir())["networks"]["fine"]
    m = export(cfg, c, None, tmp_path, face_model.hash, {"status": "trained", "step": 1}, storage="float32",
               fine_from=weights_dir())
    fine = m["networks"]["fine"]
    assert fine["file"] == shipped["file"] == "fine_d.onnx" and not (tmp_path / "fine_s.onnx").exists()
    assert (tmp_path / "fine_d.onnx").read_bytes() == (weights_dir() / "fine_d.onnx").read_bytes()
    assert {k: v for k, v in fine.items() if k != "int8"} == {k: v for k, v in shipped.items() if k != "int8"}

def test_export_carries_the_current_int8_copy_of_the_kept_network(tmp_path, face_model):
    """With ``coarse_from``, a current INT8 copy of that CoarseNet ships beside it (a stale one does not)."""
    from rtface.assets import sha256_file
    from train.export import export
    from train.nets import CoarseNet, FineNet

    cfg = tiny_variant()
    c, f = CoarseNet(cfg), FineNet(cfg)
    randomise(c)
    first = export(cfg, c, f, tmp_path / "a", face_model.hash, {"status": "trained"}, storage="float32")
    (tmp_path / "a" / "coarse_s.int8.onnx").write_bytes(b"int8 stand-in")  # only copied, never loaded here
    q = {"file": "coarse_s.int8.onnx", "sha256": sha256_file(tmp_path / "a" / "coarse_s.int8.onnx"),
         "source_sha256": first["networks"]["coarse"]["sha256"], "calibration": {"method": "minmax"}}
    first["networks"]["coarse"]["int8"] = q
    (tmp_path / "a" / "manifest.json").write_text(json.dumps(first))
    second = export(cfg, None, f, tmp_path / "b", face_model.hash, {"status": "trained"},
                    coarse_from=tmp_path / "a", storage="float32")
    assert second["networks"]["coarse"]["int8"] == q and "int8" not in second["networks"]["fine"]
    assert (tmp_path / "b" / "coarse_s.int8.onnx").read_bytes() == b"int8 stand-in"
    first["networks"]["coarse"]["int8"]["source_sha256"] = "0" * 64
    (tmp_path / "a" / "manifest.json").write_text(json.dumps(first))
    third = export(cfg, None, f, tmp_path / "c", face_model.hash, {"status": "trained"},
                   coarse_from=tmp_path / "a", storage="float32")
    assert "int8" not in third["networks"]["coarse"] and not (tmp_path / "c" / "coarse_s.int8.onnx").exists()
