"""INT8 (QDQ) networks: train.quantize on the shipped weights, loading by precision, agreement with FP32.

The shipped weights are quantised once per session with a small real calibration set (8 faces of 300-W train,
two pipeline passes each), which takes a few seconds; the agreement is measured on 6 further faces.
Tolerances (crop side 128 px): INT8 landmarks within 1 px of FP32 on average (measured 0.2 px), FineNet depth
within 0.15 px (measured 0.122 px: the Percentile ranges at 99.5 % clip the rarest activations, which costs
some agreement with FP32 and keeps more of the detail against the ground truth, ``python -m benchmarks int8``;
and the FineNet's output gain of 1.5 scales its trunk's rounding with its change: 0.088 px without it),
both from the same recorded inputs.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.conftest import shared

pytest.importorskip("onnx", reason="quantisation needs the onnx package (the train or dev extra)")

LANDMARK_TOL_PX = 1.0
DEPTH_TOL_PX = 0.15


@pytest.fixture(scope="module")
def int8_weights(tmp_path_factory):
    shared("faces-300w/train")
    shared("yunet/face_detection_yunet_2023mar.onnx")
    shared("ict-facekit/FaceXModel.tar.xz")
    from train.quantize import quantize_weights, train_images

    out = tmp_path_factory.mktemp("int8")
    calib = train_images(8, seed=1)
    check = train_images(6, seed=1, skip=8)
    manifest = quantize_weights(None, out, calibration_images=calib, check_images=check)  # method "auto"
    return out, manifest


def test_manifest_entries(int8_weights):
    from rtface.assets import sha256_file
    from rtface.networks import int8_status, load_manifest
    from train.quantize import AUTO_METHOD

    out, manifest = int8_weights
    m = load_manifest(out)  # verifies the INT8 checksums too
    assert int8_status(m) is None
    for key in ("coarse", "fine"):
        entry = m["networks"][key]
        q = entry["int8"]
        assert q["file"] == entry["file"].replace(".onnx", ".int8.onnx")
        assert q["sha256"] == sha256_file(out / q["file"]) and q["source_sha256"] == entry["sha256"]
        assert q["calibration"]["faces"] == 8 and q["calibration"]["inputs"] >= 8
        assert q["calibration"]["method"] == AUTO_METHOD[key]
    assert m["format"] == 1  # readers that do not know "int8" still read it


def test_precision_picks_the_files(int8_weights):
    from rtface.networks import load_networks

    out, _ = int8_weights
    for precision, want in (("auto", "int8"), ("int8", "int8"), ("fp32", "fp32")):
        nets = load_networks(out, backend="cpu", precision=precision, threads=1)
        assert nets.precision == want and nets.fine.engine.precision == want
        assert str(nets.coarse.engine.path).endswith(".int8.onnx") == (want == "int8")
        nets.close()


def test_int8_agrees_with_fp32(int8_weights):
    """The agreement the command measured on held-out real crops is within the stated tolerance."""
    _, manifest = int8_weights
    a = manifest["networks"]["coarse"]["int8"]["agreement"]
    assert a["inputs"] >= 6 and a["fine_inputs"] >= 6
    assert a["landmark_mean_px"] < LANDMARK_TOL_PX and a["landmark_p95_px"] < 2 * LANDMARK_TOL_PX
    assert a["depth_mean_px"] < DEPTH_TOL_PX and a["depth_p95_px"] < 2 * DEPTH_TOL_PX


def test_pipeline_with_int8_matches_fp32_on_a_photo(int8_weights):
    import cv2

    from rtface.pipeline import Pipeline

    out, _ = int8_weights
    img = cv2.imread(str(shared("faces-labeled/grace_hopper_512x512.jpg")))
    r8 = Pipeline(out, backend="cpu", threads=1)(img)
    r32 = Pipeline(out, backend="cpu", precision="fp32", threads=1)(img)
    assert len(r8.faces) == len(r32.faces) == 1
    f8, f32 = r8.faces[0], r32.faces[0]
    side = float(np.sqrt(np.prod(np.ptp(f32.landmarks, axis=0))))
    assert np.linalg.norm(f8.landmarks - f32.landmarks, axis=1).mean() < 0.02 * side
    # in the frame: each face's own maps may differ by a resolution step (the detail crop follows the fit's scale)
    both = r8.mask & r32.mask
    assert both.sum() > 0.9 * r32.mask.sum()
    assert np.abs(r8.depth[both] - r32.depth[both]).mean() < 0.02 * np.ptp(r32.depth[both])


def test_every_convolution_runs_as_an_integer_kernel(int8_weights, tmp_path):
    """ONNX Runtime fuses every quantised Conv into QLinearConv (the dedicated Q/DQ pairs and the engine's
    disabled common-subexpression elimination); only the float ends (train.quantize.FLOAT_TAIL Convs) remain."""
    import onnx
    import onnxruntime as ort

    from rtface.engines.onnxruntime import QDQ_DISABLED_OPTIMIZERS, session_options
    from train.quantize import FLOAT_TAIL

    out, m = int8_weights
    for key in ("coarse", "fine"):
        opts = session_options(1)
        opts.optimized_model_filepath = str(tmp_path / f"{key}.opt.onnx")
        ort.InferenceSession(str(out / m["networks"][key]["int8"]["file"]), opts, providers=["CPUExecutionProvider"],
                             disabled_optimizers=list(QDQ_DISABLED_OPTIMIZERS))
        ops = [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]
        # the detail FineNet: 8 learnt convolutions in INT8, its 4 fixed slope convolutions float (depth in px)
        fixed = 4 if m["networks"][key].get("resolution") == "any" else 0
        assert ops.count("QLinearConv") >= (8 if fixed else 10) and ops.count("Conv") <= FLOAT_TAIL[key] + fixed, key


def test_quantize_one_network_keeps_the_other_int8_copy(int8_weights, tmp_path):
    """``networks=("fine",)``: the CoarseNet's current INT8 file and entry stay; without a current one, refused."""
    from rtface.assets import sha256_file
    from train.quantize import QuantizeError, quantize_weights, train_images

    out, first = int8_weights
    second = quantize_weights(out, tmp_path / "fine_only", calibration_images=train_images(4, seed=2),
                              check_images=train_images(3, seed=2, skip=4), networks=("fine",))
    kept, new = second["networks"]["coarse"]["int8"], second["networks"]["fine"]["int8"]
    assert {k: v for k, v in kept.items() if k != "agreement"} == \
        {k: v for k, v in first["networks"]["coarse"]["int8"].items() if k != "agreement"}
    assert sha256_file(tmp_path / "fine_only" / kept["file"]) == kept["sha256"]
    assert new["calibration"]["faces"] == 4 and kept["agreement"] == new["agreement"]
    assert new["agreement"]["fine_inputs"] >= 3
    plain = tmp_path / "plain"
    shutil.copytree(out, plain)
    m = json.loads((plain / "manifest.json").read_text())
    m["networks"]["coarse"]["int8"]["source_sha256"] = "0" * 64
    (plain / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(QuantizeError, match="no current INT8 copy"):
        quantize_weights(plain, calibration_images=train_images(2, seed=2), check_images=[], networks=("fine",))


def test_stale_or_missing_int8(int8_weights, tmp_path):
    from rtface.errors import AssetError
    from rtface.networks import load_networks

    out, _ = int8_weights
    stale = tmp_path / "stale"
    shutil.copytree(out, stale)
    m = json.loads((stale / "manifest.json").read_text())
    m["networks"]["fine"]["int8"]["source_sha256"] = "0" * 64  # made from another FP32 file
    (stale / "manifest.json").write_text(json.dumps(m))
    nets = load_networks(stale, backend="cpu", threads=1)  # auto: falls back to FP32
    assert nets.precision == "fp32"
    nets.close()
    with pytest.raises(AssetError, match="stale"):
        load_networks(stale, backend="cpu", precision="int8")
    (stale / m["networks"]["coarse"]["int8"]["file"]).write_bytes(b"broken")
    with pytest.raises(AssetError, match="INT8 coarse"):
        load_networks(stale, backend="cpu")
    plain = tmp_path / "plain"
    shutil.copytree(out, plain)
    for key in ("coarse", "fine"):
        m["networks"][key].pop("int8")
    (plain / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(AssetError, match="train.quantize"):
        load_networks(plain, backend="cpu", precision="int8")


def test_float_ends():
    """The nodes kept float: the input normalisation and the last linear layer with what follows it."""
    from rtface.networks import load_manifest
    from train.quantize import float_nodes

    m = load_manifest()
    d = m["_dir"]
    coarse = float_nodes(f"{d}/{m['networks']['coarse']['file']}")
    fine = float_nodes(f"{d}/{m['networks']['fine']['file']}")
    assert any("Gemm" in n or "fc" in n for n in coarse)
    slopes = ["/slopes/Conv", "/slopes/Conv_1", "/slopes/Conv_2", "/slopes/Conv_3"]  # fixed, on depth in px
    assert sorted(n for n in fine if "Conv" in n) == ["/out/Conv"] + slopes  # and the last 1x1 convolution
    # with a longer float tail, the last linear layers on every path to the output (the full-resolution tail)
    tail = float_nodes(f"{d}/{m['networks']['fine']['file']}", tail=2)
    assert sorted(n for n in tail if "Conv" in n) == ["/out/Conv"] + slopes + ["/tail/tail.0/Conv"]
    assert set(fine) < set(tail)
    assert not any("trunk" in n and "Conv" in n for n in coarse)
