"""The detail FineNet's training: the network, its data, loss, export and INT8 scope (train.detail_*)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from train.detail_net import FineNet, Slopes  # noqa: E402
from train.detail_phase1 import Patches, relief_loss  # noqa: E402


def _disc(d: int, n: int = 1):
    yy, xx = torch.meshgrid(torch.arange(d), torch.arange(d), indexing="ij")
    r2 = ((xx - d / 2) ** 2 + (yy - d / 2) ** 2).float()
    m = (r2 < (0.42 * d) ** 2).float()[None, None].repeat(n, 1, 1, 1)
    z = torch.sqrt(torch.clamp((0.5 * d) ** 2 - r2, min=0))[None, None].repeat(n, 1, 1, 1) * m
    return z, m


def test_slopes_of_a_plane_and_at_the_mask_border():
    d = 32
    yy, xx = torch.meshgrid(torch.arange(d).float(), torch.arange(d).float(), indexing="ij")
    z = (0.5 * xx - 0.25 * yy + 100)[None, None]
    m = torch.zeros(1, 1, d, d)
    m[..., 4:28, 4:28] = 1
    s = Slopes()(z, m)
    assert torch.allclose(s[0, 0, 5:27, 5:27], torch.tensor(0.5)) and torch.allclose(s[0, 1, 5:27, 5:27],
                                                                                         torch.tensor(-0.25))
    assert (s[0, :, 4, :] [1] == 0).all() and (s[..., 0:4, :] == 0).all()  # border row: no dz/dy; outside: 0


def test_finenet_is_fully_convolutional_and_local():
    """Any size (a multiple of 16), zero outside the mask, and no global operation: changing the image in one
    corner leaves the relief in the far corner untouched (the receptive field is about 70 px)."""
    torch.manual_seed(0)
    net = FineNet().eval()
    for d in (64, 160):
        z, m = _disc(d)
        img = torch.rand(1, 3, d, d)
        with torch.no_grad():
            r = net.relief(img, z, m)
        assert r.shape == (1, 1, d, d) and (r[m == 0] == 0).all() and torch.isfinite(r).all()
    d = 256
    z, m = torch.full((1, 1, d, d), 50.0), torch.ones(1, 1, d, d)
    img = torch.rand(1, 3, d, d)
    img2 = img.clone()
    img2[..., :40, :40] = 1.0 - img2[..., :40, :40]
    with torch.no_grad():
        a, b = net.relief(img, z, m), net.relief(img2, z, m)
    assert not torch.equal(a[..., :40, :40], b[..., :40, :40])
    assert torch.equal(a[..., -100:, -100:], b[..., -100:, -100:])


def test_relief_loss_is_zero_for_the_truth_and_ignores_scales_above_the_measure():
    d = 64
    z, m = _disc(d, 2)
    yy, xx = torch.meshgrid(torch.arange(d).float(), torch.arange(d).float(), indexing="ij")
    detail = (-torch.exp(-0.5 * ((xx - 32) / 1.5) ** 2))[None, None].repeat(2, 1, 1, 1) * m
    b = {"mask": m, "cmask": m, "detail": detail, "mm": torch.tensor([0.4, 0.8])}
    assert float(relief_loss(detail, b)) == 0.0
    wrong = float(relief_loss(torch.zeros_like(detail), b))
    tilted = float(relief_loss(detail + 0.01 * xx * m, b, w_plain=0.0))  # a smooth tilt: outside the high-pass
    assert wrong > 0 and tilted < 0.01 * wrong


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from tests.conftest import shared

    shared("ict-facekit/FaceXModel.tar.xz")
    from rtface import FaceModel
    from train.detail_data import load_shard, render_shard, write_shard

    folder = tmp_path_factory.mktemp("shards")
    arrays = render_shard(FaceModel.load(), seed=3, size=176, n=2)
    write_shard(folder, 0, arrays)
    assert [p.name for p in folder.iterdir()] == ["shard_00000.npz"]  # no temporary file left
    back = load_shard(folder / "shard_00000.npz")
    assert set(back) == {"image", "coarse_depth", "detail", "mask", "mm_per_px"}
    return folder, back


def test_shards_hold_faces_at_their_resolution(shards):
    _, s = shards
    assert s["image"].shape == (2, 176, 176, 3) and s["image"].dtype == np.uint8
    assert s["detail"].shape == s["coarse_depth"].shape == s["mask"].shape == (2, 176, 176)
    assert np.all((s["mm_per_px"] > 0.1) & (s["mm_per_px"] < 2.0))
    assert (s["detail"][~s["mask"]] == 0).all()


def test_presets_build_on_each_other():
    from rtface.synth import SynthConfig
    from train.detail_data import BASE, DEFAULT_PRESET, PRESETS, synth_config

    assert synth_config("first") == SynthConfig(**BASE)  # the first release's faces: nothing new drawn
    assert synth_config("strong").detail_gain[1] > 1 and synth_config("strong").hard_light_prob == 0
    assert synth_config("lit").hard_light_prob > 0 and synth_config("lit").fill_light_prob == 0
    assert synth_config() == synth_config(DEFAULT_PRESET) == synth_config("fill")
    assert synth_config("fill").fill_light_prob > 0 and synth_config("fill").detail_gain == PRESETS["strong"]["detail_gain"]
    with pytest.raises(ValueError, match="unknown preset"):
        synth_config("sunny")


def test_patches_move_the_coarse_input_but_not_the_target(shards):
    folder, s = shards
    p = Patches(folder, 96, seed=0)
    b = p.batch(4)
    assert b["image"].shape == (4, 3, 96, 96) and b["coarse"].shape == b["detail"].shape == (4, 1, 96, 96)
    assert float(b["image"].max()) <= 1.0 and (b["coarse"][b["cmask"] == 0] == 0).all()
    with pytest.raises(FileNotFoundError, match="detail_data"):
        Patches(folder / "missing", 96, 0)


def test_export_matches_pytorch_and_enters_the_manifest(tmp_path):
    pytest.importorskip("onnx")
    from train.detail_export import FILE, export_onnx, main
    from train.detail_phase1 import save

    torch.manual_seed(1)
    net = FineNet()
    assert export_onnx(net, tmp_path / "f.onnx") < 1e-4
    # a weights folder: the shipped one with this FineNet entered in its manifest
    from rtface.networks import WEIGHTS_DIR, load_manifest

    w = tmp_path / "weights"
    shutil.copytree(WEIGHTS_DIR, w, ignore=shutil.ignore_patterns("__pycache__", "*.py", "fine*"))
    man = json.loads((w / "manifest.json").read_text())
    man["networks"]["fine"] = {"file": "gone.onnx", "sha256": "0"}
    (w / "manifest.json").write_text(json.dumps(man))
    ck = tmp_path / "c.pt"
    save(ck, net, torch.optim.AdamW(net.parameters()), 5, {})
    assert main([str(ck), "--weights", str(w)]) == 0
    entry = load_manifest(w)["networks"]["fine"]
    assert entry["file"] == FILE and entry["resolution"] == "any" and entry["training"]["steps"] == 5


def test_int8_keeps_the_slopes_float(tmp_path):
    pytest.importorskip("onnx")
    from train.detail_export import export_onnx
    from train.quantize import float_nodes

    export_onnx(FineNet(), tmp_path / "f.onnx")
    import onnx

    names = [n.name for n in onnx.load(str(tmp_path / "f.onnx")).graph.node]
    kept = set(float_nodes(tmp_path / "f.onnx", 2))
    slopes = [n for n in names if "/slopes/" in n]
    assert slopes and set(slopes) <= kept
    assert any(n.endswith("/out/Conv") for n in kept)  # the output end stays float
    assert not any("/enc2/" in n for n in kept)  # the body is quantised


def test_patches_larger_than_a_face_are_padded(shards):
    folder, s = shards
    b = Patches(folder, 208, seed=1).batch(2)  # the faces are 176 px
    assert b["image"].shape == (2, 3, 208, 208) and (b["mask"][..., 176:, :] == 0).all()
