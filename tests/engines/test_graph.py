"""ONNX graphs read on the CPU for the GPU builds: compute types per layer, and float16 ranges on real crops."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rtface.engines.tensorrt import DYNAMIC_SPATIAL, REDUCED_TYPES, plan_build
from rtface.networks import WEIGHTS_DIR
from tests.conftest import shared

onnx = pytest.importorskip("onnx", reason="reading ONNX graphs needs the onnx package (pip install 'rtface[dev]')")

from rtface.engines.graph import (  # noqa: E402  (after the importorskip)
    FLOAT16_MAX,
    float16_ranges,
    float16_spacing,
    onnx_layer_facts,
)

MANIFEST = json.loads((WEIGHTS_DIR / "manifest.json").read_text())
FLOAT_FILES = [MANIFEST["networks"][k]["file"] for k in ("coarse", "fine")]
INT8_FILES = [MANIFEST["networks"][k]["int8"]["file"] for k in ("coarse", "fine") if "int8" in MANIFEST["networks"][k]]


def _fp16_conv_model(path, *, fp16_activations: bool):
    """A 1-conv ONNX file: FP16 weights cast to FP32 (storage only, as the shipped files), or FP16 throughout."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((2, 3, 3, 3), 0.1, np.float16), "w16")
    if fp16_activations:
        nodes = [helper.make_node("Conv", ["x", "w16"], ["y"], pads=[1, 1, 1, 1])]
        io = TensorProto.FLOAT16
    else:
        nodes = [helper.make_node("Cast", ["w16"], ["w"], to=TensorProto.FLOAT),
                 helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])]
        io = TensorProto.FLOAT
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", io, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", io, ["N", 2, 8, 8])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("name", FLOAT_FILES)
def test_shipped_float_files_get_the_fp16_flag(name):
    """Finding 1: the shipped files store FP16 weights (cast to FP32), which the old rule ("any FP16 tensor")
    took for an FP16 network: built strongly typed, no FP16 flag, FP32 arithmetic reported as fp16."""
    facts = onnx_layer_facts(WEIGHTS_DIR / name)
    # what misled the old rule, where a file stores its weights as FP16 (the CoarseNet; the detail FineNet's
    # 37k weights are stored as FP32)
    stored_fp16 = any(REDUCED_TYPES.intersection(f.dtypes) for f in facts)
    assert stored_fp16 or name.startswith("fine_d")
    assert not any(f.kind == "compute" and not f.constant and REDUCED_TYPES.intersection(f.dtypes) for f in facts)
    plan = plan_build("fp16", facts, weak_typing=True, explicit=True, name=name)  # TensorRT 10
    assert (plan.strongly_typed, plan.fp16_flag, plan.precision, plan.warning) == (False, True, "fp16", None)
    plan = plan_build("fp32", facts, weak_typing=True, explicit=True, name=name)
    assert (plan.fp16_flag, plan.precision) == (False, "fp32")
    plan = plan_build("fp16", facts, weak_typing=False, explicit=True, name=name)  # TensorRT 11: no FP16 flag
    assert (plan.strongly_typed, plan.fp16_flag, plan.precision) == (True, False, "fp32")
    assert "engine computes in FP32" in plan.warning
    assert plan_build("fp16", facts, weak_typing=False, explicit=False).warning is None  # "auto": no noise


@pytest.mark.parametrize("name", INT8_FILES)
def test_shipped_int8_files_are_strongly_typed_int8(name):
    facts = onnx_layer_facts(WEIGHTS_DIR / name)
    for weak in (True, False):
        for requested in ("int8", "fp16", "fp32"):
            plan = plan_build(requested, facts, weak_typing=weak)
            assert (plan.strongly_typed, plan.fp16_flag, plan.precision) == (True, False, "int8")


def test_fp16_activations_decide_and_storage_does_not(tmp_path):
    from rtface.engines.tensorrt import EngineBuildError

    stored = onnx_layer_facts(_fp16_conv_model(tmp_path / "stored.onnx", fp16_activations=False))
    typed = onnx_layer_facts(_fp16_conv_model(tmp_path / "typed.onnx", fp16_activations=True))
    assert plan_build("fp16", stored, weak_typing=True).fp16_flag
    for weak in (True, False):
        plan = plan_build("fp16", typed, weak_typing=weak)
        assert (plan.strongly_typed, plan.fp16_flag, plan.precision) == (True, False, "fp16")
    plan = plan_build("fp32", typed, weak_typing=True, explicit=True, name="typed.onnx")
    assert plan.precision == "fp16" and "cannot change that" in plan.warning
    with pytest.raises(EngineBuildError, match="QDQ"):
        plan_build("int8", stored, weak_typing=True)


def test_float16_spacing():
    assert float16_spacing(1.0) == 2.0 ** -10
    assert float16_spacing(100.0) == 2.0 ** -4  # depths of 64-128 px keep 1/16 px
    assert float16_spacing(300.0) == 0.25
    assert float16_spacing(-300.0) == 0.25
    assert float16_spacing(1e6) == float("inf")


def _sum_model(path):
    """y = ReduceSum(x * m, axes HW) / ReduceSum(m): a masked mean, the FineNet's old normalisation."""
    from onnx import TensorProto, helper, numpy_helper

    axes = numpy_helper.from_array(np.array([2, 3], np.int64), "axes")
    nodes = [helper.make_node("Mul", ["x", "m"], ["xm"]),
             helper.make_node("ReduceSum", ["xm", "axes"], ["s"], keepdims=1),
             helper.make_node("ReduceSum", ["m", "axes"], ["n"], keepdims=1),
             helper.make_node("Div", ["s", "n"], ["y"])]
    spec = ["N", 1, "H", "W"]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, spec),
                                           helper.make_tensor_value_info("m", TensorProto.FLOAT, spec)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, 1, 1])], [axes])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_float16_ranges_finds_a_large_reduction(tmp_path):
    """The check itself, on a graph built for it: a masked mean over 128 x 128 depths of 80 px sums to 1.3e6."""
    path = _sum_model(tmp_path / "mean.onnx")
    x = np.full((2, 1, 128, 128), 80.0, np.float32)
    m = np.ones_like(x)
    report = float16_ranges(path, {"x": x, "m": m})
    by_name = {t.name: t for t in report.tensors}
    assert set(by_name) == {"x", "m", "xm", "s", "n", "y"}  # inputs, intermediates and output
    assert by_name["s"].max_abs == pytest.approx(80.0 * 128 * 128)
    assert [t.name for t in report.overflows] == ["s"] and not report.ok
    assert by_name["y"].max_abs == pytest.approx(80.0) and by_name["y"].spacing == 2.0 ** -4
    assert "above the float16 limit" in report.format() and report.to_json()["overflows"][0]["name"] == "s"
    small = float16_ranges(path, [{"x": x[:, :, :8, :8], "m": m[:, :, :8, :8]}], max_outputs_per_run=1)
    assert small.ok and small.limit == FLOAT16_MAX / 2


@pytest.fixture(scope="module")
def faces():
    shared("ict-facekit/FaceXModel.tar.xz")
    shared("yunet/face_detection_yunet_2023mar.onnx")
    shared("faces-labeled/grace_hopper_512x512.jpg")
    from benchmarks.gpu_inputs import real_faces

    return real_faces(6)


@pytest.mark.parametrize("key", ["coarse", "fine"])
def test_shipped_networks_stay_within_float16_on_real_crops(key, faces, face_model):
    """Finding 5: every intermediate tensor of the FP32 network (ONNX Runtime, CPU) on real crops, against the
    float16 maximum with a factor of two to spare. A FineNet with dynamic height and width is run at the ends of
    its TensorRT profile (a sum over pixels grows with the area). The FineNet that normalised its coarse depth
    with a masked ReduceSum (1.3e6 on these faces) fails here until it is replaced."""
    from benchmarks.gpu_inputs import input_size, network_feeds
    from rtface.engines import load_engine

    path = WEIGHTS_DIR / MANIFEST["networks"][key]["file"]
    with load_engine(path, backend="cpu", threads=1) as engine:
        inputs = engine.inputs
    from rtface.errors import InputError

    try:
        sizes = [input_size(inputs)]
    except InputError:  # dynamic height and width
        sizes = [DYNAMIC_SPATIAL[0], DYNAMIC_SPATIAL[-1]]
    feeds = [network_feeds(inputs, faces if s <= 256 else faces[:2], face_model, size=s) for s in sizes]
    report = float16_ranges(path, feeds)
    assert len(report.tensors) > 10
    assert report.ok, report.format()
