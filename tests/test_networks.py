"""rtface.networks against a just-exported small model: shapes, preprocess, checksum errors."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def weights(tmp_path_factory, face_model):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from train.config import CoarseConfig, FineConfig, get_variant
    from train.export import export
    from train.nets import CoarseNet, FineNet

    cfg = dataclasses.replace(
        get_variant("s"), size=32,
        coarse=CoarseConfig(widths=(8, 8, 16, 16), stem_width=8, head_width=16),
        fine=FineConfig(widths=(8, 8, 16), first_stride=2, head=(8, 8, 8, 4)))
    torch.manual_seed(0)
    c, f = CoarseNet(cfg), FineNet(cfg)
    with torch.no_grad():
        f.head[-1].weight.normal_(0, 0.5)  # non-trivial residual
    d = tmp_path_factory.mktemp("weights")
    export(cfg, c, f, d, face_model.hash, {"status": "untrained"})
    return d, (c.eval(), f.eval())


def test_preprocess():
    from rtface.errors import InputError
    from rtface.networks import preprocess

    crops = np.zeros((2, 4, 4, 3), np.uint8)
    crops[..., 0] = 255  # blue in BGR
    x = preprocess(crops)
    assert x.shape == (2, 3, 4, 4) and x.dtype == np.float32
    assert np.all(x[:, 2] == 1.0) and np.all(x[:, :2] == 0.0)
    with pytest.raises(InputError):
        preprocess(crops.astype(np.float32))


def test_run_matches_torch(weights, face_model):
    import torch

    from rtface.networks import load_networks, preprocess

    d, (c, f) = weights
    nets = load_networks(d, backend="cpu", face_model_hash=face_model.hash, threads=1)
    assert nets.size == 32 and not nets.trained
    x = preprocess(np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8))
    out = nets.coarse.run(x)
    assert out["identity"].shape == (3, 100) and out["expression"].shape == (3, 53) and out["pose"].shape == (3, 6)
    with torch.no_grad():
        ref = c(torch.from_numpy(x), torch.zeros(3, 6, 32, 32))
    np.testing.assert_allclose(out["pose"], ref[2].numpy(), atol=1e-3)
    coarse = np.full((3, 32, 32), 20.0, np.float32)
    mask = np.zeros((3, 32, 32), bool)
    mask[:, 8:24, 8:24] = True
    depth = nets.fine.run(x, coarse, mask)
    assert depth.shape == (3, 32, 32)
    assert np.all(depth[~mask] == 20.0) and not np.allclose(depth[mask], 20.0)
    nets.close()


def test_checksum_mismatch_is_asset_error(weights, tmp_path):
    import shutil

    from rtface.errors import AssetError
    from rtface.networks import load_networks

    d, _ = weights
    bad = tmp_path / "w"
    shutil.copytree(d, bad)
    with open(bad / "fine_s.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(AssetError, match="checksum"):
        load_networks(bad, backend="cpu")
    (bad / "fine_s.onnx").unlink()
    with pytest.raises(AssetError, match="missing"):
        load_networks(bad, backend="cpu")
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(AssetError, match="corrupt"):
        load_networks(bad, backend="cpu")


def test_wrong_face_model_is_asset_error(weights):
    from rtface.errors import AssetError
    from rtface.networks import load_networks

    d, _ = weights
    with pytest.raises(AssetError, match="face model"):
        load_networks(d, backend="cpu", face_model_hash="f" * 64)
    m = json.loads((d / "manifest.json").read_text())
    assert m["training"]["status"] == "untrained"


def test_coarse_net_with_and_without_feedback_input(weights, face_model, tmp_path):
    from rtface.errors import InputError
    from rtface.networks import load_networks, preprocess
    from tests.weights_edit import image_only_weights

    d, _ = weights
    x = preprocess(np.random.default_rng(1).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8))
    with_fb = load_networks(d, backend="cpu", face_model_hash=face_model.hash, threads=1)
    only = load_networks(image_only_weights(d, tmp_path / "image_only"), backend="cpu", threads=1)
    assert with_fb.coarse.takes_feedback and not only.coarse.takes_feedback
    assert list(only.coarse.engine.inputs) == ["image"]
    a, b = with_fb.coarse.run(x), only.coarse.run(x)  # no feedback = zeros
    for k in ("identity", "expression", "pose"):
        np.testing.assert_allclose(a[k], b[k], atol=1e-5)
    with pytest.raises(InputError, match="no feedback input"):
        only.coarse.run(x, np.zeros((2, 6, 32, 32), np.float32))
    with pytest.raises(InputError, match="precision"):
        load_networks(d, backend="cpu", precision="int4")
    assert with_fb.precision == "fp32"
    with_fb.close()
    only.close()


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_shipped_fine_net_adds_nothing_to_a_flat_input(precision):
    """The released FineNet on a flat grey crop over a flat coarse depth: finite output and a zero-mean
    residual (depth is known up to a constant; the net must not shift it), no relief to speak of."""
    from rtface.networks import int8_status, load_manifest, load_networks

    why = int8_status(load_manifest())
    if precision == "int8" and why is not None:
        pytest.skip(f"no INT8 FineNet: {why}")
    nets = load_networks(backend="cpu", precision=precision, threads=1)
    s = nets.size
    yy, xx = np.mgrid[0:s, 0:s] + 0.5
    mask = (((xx - s / 2) ** 2 + (yy - s / 2) ** 2) < (0.4 * s) ** 2).astype(np.float32)[None]
    image = np.full((1, 3, s, s), 0.5, np.float32)
    coarse = 40.0 * mask
    out = np.asarray(nets.fine.run(image, coarse, mask))
    nets.close()
    assert out.shape == (1, s, s) and np.isfinite(out).all()
    residual = (out - coarse)[mask > 0]
    assert abs(float(residual.mean())) < 0.1  # crop px (0.17 mm at S = 128)
    assert float(np.abs(residual).mean()) < 0.5


def test_auto_precision_skips_an_int8_copy_marked_not_auto():
    """The detail FineNet's INT8 copy is slower than FP32 on a CPU ("auto": false in its manifest entry): auto runs
    the INT8 CoarseNet beside the FP32 FineNet; precision="int8" runs both INT8 files."""
    from rtface.networks import INT8, load_manifest, load_networks

    man = load_manifest()
    fine = man["networks"]["fine"]
    if INT8 not in fine or fine[INT8].get("auto", True):
        pytest.skip("the shipped FineNet's INT8 copy is used by precision='auto'")
    assert fine[INT8]["auto_why"]
    auto = load_networks(backend="cpu", threads=1)
    both = load_networks(backend="cpu", threads=1, precision="int8")
    try:
        assert auto.coarse.engine.path.name == man["networks"]["coarse"][INT8]["file"]
        assert auto.fine.engine.path.name == fine["file"]
        assert both.fine.engine.path.name == fine[INT8]["file"]
    finally:
        auto.close()
        both.close()
