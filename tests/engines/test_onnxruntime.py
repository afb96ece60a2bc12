"""ONNX Runtime CPU engine on small real ONNX models, against NumPy; shared input validation."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="building test networks needs the onnx package")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from rtface.engines import (  # noqa: E402
    DYNAMIC,
    Engine,
    OnnxRuntimeEngine,
    TensorSpec,
    available_backends,
    load_engine,
    physical_cores,
)
from rtface.errors import AssetError, BackendUnavailable, InputError, RtfaceError  # noqa: E402

SIZE = 16  # conv test image side, pixels


def _save(graph, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="rtface-tests")
    model.ir_version = 9  # readable by ONNX Runtime >= 1.17 and TensorRT 10
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def conv_relu_model(path: Path, seed: int = 0) -> tuple[Path, np.ndarray, np.ndarray]:
    """``features = relu(conv3x3(image) + bias)``: image (N, 3, 16, 16) -> features (N, 4, 16, 16)."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(0.0, 0.5, (4, 3, 3, 3)).astype(np.float32)
    bias = rng.normal(0.0, 0.1, (4,)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "W", "B"], ["pre"], kernel_shape=[3, 3],
                          pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["pre"], ["features"])],
        "conv_relu",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 4, SIZE, SIZE])],
        initializer=[numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")])
    return _save(graph, path), weight, bias


def two_output_model(path: Path) -> Path:
    """Inputs params (N, 6) float, offset (N,) int64; outputs doubled = 2 params (N, 6) and
    total = sum(params, axis 1) + offset (N,)."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["params", "two"], ["doubled"]),
         helper.make_node("ReduceSum", ["params", "axes"], ["sum"], keepdims=0),
         helper.make_node("Cast", ["offset"], ["offset_f"], to=TensorProto.FLOAT),
         helper.make_node("Add", ["sum", "offset_f"], ["total"])],
        "two_outputs",
        [helper.make_tensor_value_info("params", TensorProto.FLOAT, ["N", 6]),
         helper.make_tensor_value_info("offset", TensorProto.INT64, ["N"])],
        [helper.make_tensor_value_info("doubled", TensorProto.FLOAT, ["N", 6]),
         helper.make_tensor_value_info("total", TensorProto.FLOAT, ["N"])],
        initializer=[numpy_helper.from_array(np.array(2.0, np.float32), "two"),
                     numpy_helper.from_array(np.array([1], np.int64), "axes")])
    return _save(graph, path)


def qdq_conv_relu_model(path: Path, seed: int = 0) -> tuple[Path, np.ndarray, np.ndarray]:
    """The conv + ReLU of :func:`conv_relu_model` in QDQ form, as ``train/quantize.py`` writes networks:
    INT8 weights symmetric per output channel, input activations INT8 symmetric (zero point 0), float bias.
    Returns the file and the dequantised weight and bias (the float network it computes)."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(0.0, 0.5, (4, 3, 3, 3)).astype(np.float32)
    bias = rng.normal(0.0, 0.1, (4,)).astype(np.float32)
    w_scale = (np.abs(weight).reshape(4, -1).max(1) / 127.0).astype(np.float32)
    w_q = np.clip(np.round(weight / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
    x_scale = np.array(1.0 / 127.0, np.float32)  # inputs in [-1, 1]
    zero = np.array(0, np.int8)
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["image", "x_scale", "x_zero"], ["image_q"]),
         helper.make_node("DequantizeLinear", ["image_q", "x_scale", "x_zero"], ["image_dq"]),
         helper.make_node("DequantizeLinear", ["W_q", "w_scale", "w_zero"], ["W"], axis=0),
         helper.make_node("Conv", ["image_dq", "W", "B"], ["pre"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["pre"], ["features"])],
        "qdq_conv_relu",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 4, SIZE, SIZE])],
        initializer=[numpy_helper.from_array(x_scale, "x_scale"), numpy_helper.from_array(zero, "x_zero"),
                     numpy_helper.from_array(w_q, "W_q"), numpy_helper.from_array(w_scale, "w_scale"),
                     numpy_helper.from_array(np.zeros(4, np.int8), "w_zero"), numpy_helper.from_array(bias, "B")])
    return _save(graph, path), (w_q * w_scale[:, None, None, None]).astype(np.float32), bias


def conv_relu_reference(image: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """NumPy conv (cross-correlation, zero padding 1) + bias + ReLU, in float64."""
    n, _, h, w = image.shape
    padded = np.pad(image.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, weight.shape[0], h, w))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", padded[:, :, i:i + h, j:j + w], weight[:, :, i, j])
    return np.maximum(out + bias[None, :, None, None], 0.0)


def images(batch: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (batch, 3, SIZE, SIZE)).astype(np.float32)


@pytest.fixture(scope="module")
def conv(tmp_path_factory):
    return conv_relu_model(tmp_path_factory.mktemp("models") / "conv_relu.onnx")


@pytest.fixture(scope="module")
def two_out(tmp_path_factory):
    return two_output_model(tmp_path_factory.mktemp("models") / "two_outputs.onnx")


@pytest.fixture(scope="module")
def conv_engine(conv):
    engine = load_engine(conv[0], backend="cpu", threads=1, max_batch=8)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def two_engine(two_out):
    engine = load_engine(two_out, backend="cpu", threads=1, max_batch=8)
    yield engine
    engine.close()


# -- results ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [1, 8])
def test_conv_relu_matches_numpy(conv, conv_engine, batch):
    _, weight, bias = conv
    x = images(batch)
    out = conv_engine.run({"image": x})
    assert list(out) == ["features"]
    y = out["features"]
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == (batch, 4, SIZE, SIZE)
    np.testing.assert_allclose(y, conv_relu_reference(x, weight, bias), rtol=1e-5, atol=1e-5)
    assert (y == 0).any() and (y > 0).any()  # the ReLU is active on this input


@pytest.mark.parametrize("batch", [1, 8])
def test_two_outputs_match_numpy(two_engine, batch):
    rng = np.random.default_rng(batch)
    params = rng.normal(size=(batch, 6)).astype(np.float32)
    offset = rng.integers(-5, 5, size=batch)
    out = two_engine.run({"params": params, "offset": offset})
    assert list(out) == ["doubled", "total"]
    np.testing.assert_allclose(out["doubled"], 2 * params, rtol=1e-6)
    np.testing.assert_allclose(out["total"], params.sum(axis=1) + offset, rtol=1e-5, atol=1e-5)
    assert out["total"].shape == (batch,)


def test_specs_describe_the_network(conv_engine, two_engine):
    assert conv_engine.inputs == {"image": TensorSpec((DYNAMIC, 3, SIZE, SIZE), np.float32)}
    assert conv_engine.outputs == {"features": TensorSpec((DYNAMIC, 4, SIZE, SIZE), np.float32)}
    assert two_engine.inputs["offset"] == TensorSpec((DYNAMIC,), np.int64)
    assert list(two_engine.outputs) == ["doubled", "total"]
    assert conv_engine.inputs["image"].describe() == "(N, 3, 16, 16) float32"
    assert isinstance(conv_engine, Engine)
    assert (conv_engine.name, conv_engine.device, conv_engine.precision) == ("cpu", "cpu", "fp32")
    assert conv_engine.max_batch == 8 and conv_engine.threads == 1


def test_non_contiguous_input(conv, conv_engine):
    _, weight, bias = conv
    x = np.ascontiguousarray(images(2).transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    assert not x.flags.c_contiguous
    np.testing.assert_allclose(conv_engine.run({"image": x})["features"],
                               conv_relu_reference(x, weight, bias), rtol=1e-5, atol=1e-5)


# -- input validation ------------------------------------------------------------------------------

def test_float64_is_converted(conv_engine):
    x = images(2)
    y64 = conv_engine.run({"image": x.astype(np.float64)})["features"]
    assert y64.dtype == np.float32
    np.testing.assert_array_equal(y64, conv_engine.run({"image": x})["features"])


def test_integers_for_a_float_input_raise(conv_engine):
    with pytest.raises(InputError, match=r"'image' has dtype uint8.*float32"):
        conv_engine.run({"image": np.zeros((1, 3, SIZE, SIZE), np.uint8)})


def test_integer_input_dtypes(two_engine):
    params = np.ones((2, 6), np.float32)
    out = two_engine.run({"params": params, "offset": np.array([1, 2], np.int32)})
    np.testing.assert_allclose(out["total"], [7.0, 8.0])
    with pytest.raises(InputError, match="'offset' has dtype float32"):
        two_engine.run({"params": params, "offset": np.array([1, 2], np.float32)})
    with pytest.raises(InputError, match="'offset' has dtype uint64"):  # may not fit in int64
        two_engine.run({"params": params, "offset": np.array([1, 2], np.uint64)})


def test_missing_and_extra_names(two_engine):
    params = np.ones((1, 6), np.float32)
    with pytest.raises(InputError, match="missing 'offset'"):
        two_engine.run({"params": params})
    with pytest.raises(InputError, match="unknown 'bogus'"):
        two_engine.run({"params": params, "offset": np.zeros(1, np.int64), "bogus": params})


def test_wrong_rank_and_static_dims(conv_engine):
    with pytest.raises(InputError, match="3 dimensions"):
        conv_engine.run({"image": np.zeros((3, SIZE, SIZE), np.float32)})
    with pytest.raises(InputError, match="dimension 1 must be 3"):
        conv_engine.run({"image": np.zeros((1, 4, SIZE, SIZE), np.float32)})
    with pytest.raises(InputError, match="dimension 3 must be 16"):
        conv_engine.run({"image": np.zeros((1, 3, SIZE, SIZE + 1), np.float32)})


def test_batch_limits(conv_engine):
    with pytest.raises(InputError, match="batch 9, above this engine's max_batch 8"):
        conv_engine.run({"image": images(9)})
    with pytest.raises(InputError, match="empty batch"):
        conv_engine.run({"image": np.zeros((0, 3, SIZE, SIZE), np.float32)})


def test_feeds_must_be_a_mapping(conv_engine):
    with pytest.raises(InputError, match="dict"):
        conv_engine.run([images(1)])


def test_input_error_is_a_value_error(conv_engine):
    with pytest.raises(ValueError):
        conv_engine.run({"image": np.zeros((1, 3, 2, 2), np.float32)})


# -- loading ---------------------------------------------------------------------------------------

def test_corrupt_onnx_raises_asset_error(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(os.urandom(2048))
    with pytest.raises(AssetError, match="junk.onnx could not be loaded as an ONNX model"):
        load_engine(junk, backend="cpu")


def test_truncated_onnx_raises_asset_error(conv, tmp_path):
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(Path(conv[0]).read_bytes()[:200])
    with pytest.raises(AssetError, match="cut.onnx"):
        load_engine(cut, backend="cpu")


def test_missing_onnx_raises_asset_error(tmp_path):
    with pytest.raises(AssetError, match="nowhere.onnx does not exist"):
        load_engine(tmp_path / "nowhere.onnx", backend="cpu")
    with pytest.raises(AssetError, match="is a directory"):
        OnnxRuntimeEngine(tmp_path)


def test_load_engine_rejects_bad_arguments(conv):
    path = conv[0]
    with pytest.raises(InputError, match="backend must be one of"):
        load_engine(path, backend="gpu")
    with pytest.raises(InputError, match="precision"):
        load_engine(path, backend="cpu", precision="int4")
    with pytest.raises(InputError, match="QDQ"):
        load_engine(path, backend="cpu", precision="int8")  # a float file
    with pytest.raises(InputError, match="max_batch"):
        load_engine(path, backend="cpu", max_batch=0)
    with pytest.raises(InputError, match="threads"):
        load_engine(path, backend="cpu", threads=0)


def test_default_threads_are_physical_cores(conv):
    with load_engine(conv[0], backend="cpu") as engine:
        assert engine.threads == physical_cores()
    assert 1 <= physical_cores() <= (os.cpu_count() or 1)


def test_available_backends_and_auto(conv):
    backends = available_backends()
    assert backends[-1] == "cpu"
    assert set(backends) <= {"tensorrt", "cuda", "cpu"}
    with load_engine(conv[0], max_batch=2) as engine:
        assert engine.name in backends
        assert engine.device == ("cpu" if engine.name == "cpu" else "cuda")


def test_unavailable_gpu_backends_say_what_to_install(conv):
    backends = available_backends()
    if "cuda" not in backends:
        with pytest.raises(BackendUnavailable, match="pip install|GPU|CUDA"):
            load_engine(conv[0], backend="cuda")
    if "tensorrt" not in backends:
        with pytest.raises(BackendUnavailable, match="pip install|GPU|CUDA"):
            load_engine(conv[0], backend="tensorrt")


def test_close_and_context_manager(conv):
    with load_engine(conv[0], backend="cpu", threads=1) as engine:
        engine.run({"image": images(1)})
    assert engine.closed
    engine.close()  # a second close is harmless
    with pytest.raises(RtfaceError, match="closed"):
        engine.run({"image": images(1)})


def test_qdq_model_runs_as_int8(tmp_path, conv):
    from rtface.engines.onnxruntime import onnx_is_quantized

    path, weight, bias = qdq_conv_relu_model(tmp_path / "qdq.onnx")
    assert onnx_is_quantized(path) and not onnx_is_quantized(conv[0])
    with load_engine(path, backend="cpu", threads=1) as engine:
        assert engine.precision == "int8"
        x = images(2)
        y = engine.run({"image": x})["features"]
    # input rounded to 1/127 steps, then exact dequantised weights: within a few input steps of float
    np.testing.assert_allclose(y, conv_relu_reference(x, weight, bias), atol=0.05)
    with load_engine(conv[0], backend="cpu", threads=1) as engine:
        assert engine.precision == "fp32"
