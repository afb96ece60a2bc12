"""ONNX Runtime CUDA and TensorRT engines against the ONNX Runtime CPU engine, and the TensorRT cache.

Needs an NVIDIA GPU with CuPy (and onnxruntime-gpu / tensorrt for the respective backends);
skipped with the reason otherwise.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import warnings

import numpy as np
import pytest

from rtface._optional import cuda_available
from rtface.engines import (
    EngineCacheWarning,
    TensorRTEngine,
    available_backends,
    build_engines,
    load_engine,
)
from rtface.errors import InputError

from .test_onnxruntime import conv_relu_model, conv_relu_reference, images, two_output_model

pytestmark = pytest.mark.gpu

# Tolerances: cuDNN and TensorRT use TF32 tensor cores for FP32 convolutions by default.
FP32_TOL = dict(rtol=1e-2, atol=1e-2)
FP16_TOL = dict(rtol=3e-2, atol=3e-2)


@pytest.fixture(scope="module")
def cp():
    if importlib.util.find_spec("cupy") is None:
        pytest.skip("CuPy is not installed (pip install 'rtface[gpu]')")
    if not cuda_available():
        pytest.skip("CuPy sees no CUDA GPU")
    import cupy

    return cupy


@pytest.fixture(scope="module")
def ort_cuda(cp):
    if "cuda" not in available_backends():
        pytest.skip("ONNX Runtime has no CUDA execution provider (pip install onnxruntime-gpu)")


@pytest.fixture(scope="module")
def trt(cp):
    return pytest.importorskip("tensorrt", reason="TensorRT is not installed "
                                                  "(pip install 'rtface[tensorrt]')")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    conv_path, weight, bias = conv_relu_model(root / "conv_relu.onnx")
    return {"conv": conv_path, "weight": weight, "bias": bias,
            "two": two_output_model(root / "two_outputs.onnx")}


@pytest.fixture(scope="module")
def cpu_conv(models):
    with load_engine(models["conv"], backend="cpu", threads=1) as engine:
        yield engine


@pytest.fixture(scope="module")
def trt_cache(trt, models, tmp_path_factory):
    """A cache directory holding the FP32 engine of the conv model, built once for the module."""
    directory = tmp_path_factory.mktemp("engine-cache")
    with load_engine(models["conv"], backend="tensorrt", precision="fp32",
                     cache_dir=directory) as engine:
        assert not engine.from_cache
    return directory


def _two_output_feeds(cp, batch):
    rng = np.random.default_rng(batch)
    params = rng.normal(size=(batch, 6)).astype(np.float32)
    offset = rng.integers(-5, 5, size=batch)
    return params, offset, {"params": cp.asarray(params), "offset": cp.asarray(offset)}


# -- ONNX Runtime, CUDA execution provider ---------------------------------------------------------

@pytest.mark.parametrize("batch", [1, 8])
def test_ort_cuda_matches_cpu(cp, ort_cuda, models, cpu_conv, batch):
    x = images(batch)
    with load_engine(models["conv"], backend="cuda") as engine:
        assert (engine.name, engine.device) == ("cuda", "cuda")
        out = engine.run({"image": cp.asarray(x)})
        y = out["features"]
        assert isinstance(y, cp.ndarray) and y.dtype == np.float32
        np.testing.assert_allclose(cp.asnumpy(y), cpu_conv.run({"image": x})["features"], **FP32_TOL)


def test_ort_cuda_uploads_numpy_and_returns_cupy(cp, ort_cuda, models):
    x = images(2)
    with load_engine(models["conv"], backend="cuda") as engine:
        y = engine.run({"image": x.astype(np.float64)})["features"]
        assert isinstance(y, cp.ndarray)
        np.testing.assert_allclose(cp.asnumpy(y),
                                   conv_relu_reference(x, models["weight"], models["bias"]),
                                   **FP32_TOL)


def test_ort_cuda_two_outputs(cp, ort_cuda, models):
    params, offset, feeds = _two_output_feeds(cp, 5)
    with load_engine(models["two"], backend="cuda") as engine:
        out = engine.run(feeds)
    assert out["total"].shape == (5,) and isinstance(out["doubled"], cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(out["doubled"]), 2 * params, rtol=1e-6)
    np.testing.assert_allclose(cp.asnumpy(out["total"]), params.sum(1) + offset, rtol=1e-5,
                               atol=1e-5)


def test_ort_cuda_on_a_user_stream(cp, ort_cuda, models, cpu_conv):
    x = images(4)
    expected = cpu_conv.run({"image": x})["features"]
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:  # loaded and run on the same stream: ONNX Runtime computes on it
        with load_engine(models["conv"], backend="cuda") as engine:
            y = engine.run({"image": cp.asarray(x)})["features"]
            stream.synchronize()
            np.testing.assert_allclose(cp.asnumpy(y), expected, **FP32_TOL)
    with load_engine(models["conv"], backend="cuda") as engine, stream:  # run on another stream
        y = engine.run({"image": cp.asarray(x)})["features"]
        np.testing.assert_allclose(cp.asnumpy(y), expected, **FP32_TOL)


def test_ort_cuda_rejects_cupy_on_cpu_engine(cp, cpu_conv):
    with pytest.raises(InputError, match="CuPy array"):
        cpu_conv.run({"image": cp.zeros((1, 3, 16, 16), cp.float32)})


# -- TensorRT --------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [1, 8])
def test_tensorrt_fp32_matches_cpu(cp, trt_cache, models, cpu_conv, batch):
    x = images(batch)
    with load_engine(models["conv"], backend="tensorrt", precision="fp32",
                     cache_dir=trt_cache) as engine:
        assert (engine.name, engine.device, engine.precision) == ("tensorrt", "cuda", "fp32")
        assert engine.inputs["image"].shape == (-1, 3, 16, 16)
        y = engine.run({"image": cp.asarray(x)})["features"]
        assert isinstance(y, cp.ndarray) and y.shape == (batch, 4, 16, 16)
        np.testing.assert_allclose(cp.asnumpy(y), cpu_conv.run({"image": x})["features"], **FP32_TOL)


def test_tensorrt_fp16_matches_cpu(cp, trt, models, cpu_conv, tmp_path):
    x = images(8)
    if hasattr(trt.BuilderFlag, "FP16"):  # TensorRT 10: FP32 ONNX built with the FP16 flag
        engine = load_engine(models["conv"], backend="tensorrt", precision="fp16", cache_dir=tmp_path)
        assert engine.precision == "fp16"
    else:  # TensorRT 11: strongly typed only, so an FP32 ONNX file stays FP32, and we say so
        with pytest.warns(RuntimeWarning, match="strongly typed"):
            engine = load_engine(models["conv"], backend="tensorrt", precision="fp16",
                                 cache_dir=tmp_path)
        assert engine.precision == "fp32"
    with engine:
        assert engine.key.precision == "fp16"
        y = engine.run({"image": cp.asarray(x)})["features"]
        assert y.dtype == engine.outputs["features"].dtype
        np.testing.assert_allclose(cp.asnumpy(y).astype(np.float32),
                                   cpu_conv.run({"image": x})["features"], **FP16_TOL)
    with load_engine(models["conv"], backend="tensorrt", precision="fp16",
                     cache_dir=tmp_path) as again:  # the sidecar remembers the built precision
        assert again.from_cache and again.precision == engine.precision


def test_tensorrt_int8_from_a_qdq_model(cp, trt, tmp_path):
    """A QDQ file (what train/quantize.py writes) builds a strongly typed INT8 engine; precision="int8" refuses
    a float file."""
    from .test_onnxruntime import qdq_conv_relu_model

    path, weight, bias = qdq_conv_relu_model(tmp_path / "qdq.onnx")
    x = images(4)
    with load_engine(path, backend="cpu", threads=1) as cpu:
        expected = cpu.run({"image": x})["features"]
    for precision in ("int8", "auto"):
        with load_engine(path, backend="tensorrt", precision=precision, cache_dir=tmp_path) as engine:
            assert engine.precision == "int8"
            y = engine.run({"image": cp.asarray(x)})["features"]
            np.testing.assert_allclose(cp.asnumpy(y).astype(np.float32), expected, atol=0.05)
    float_path, _, _ = conv_relu_model(tmp_path / "float.onnx")
    with pytest.raises(InputError, match="QDQ"):
        load_engine(float_path, backend="tensorrt", precision="int8", cache_dir=tmp_path)


def test_tensorrt_two_outputs_and_numpy_input(cp, trt, models, tmp_path):
    params, offset, _ = _two_output_feeds(cp, 3)
    with load_engine(models["two"], backend="tensorrt", precision="fp32", cache_dir=tmp_path,
                     max_batch=4) as engine:
        out = engine.run({"params": params, "offset": offset})  # NumPy in, CuPy out
        with pytest.raises(InputError, match="max_batch 4"):
            engine.run({"params": np.zeros((5, 6), np.float32),
                        "offset": np.zeros(5, np.int64)})
    assert isinstance(out["total"], cp.ndarray) and out["total"].shape == (3,)
    np.testing.assert_allclose(cp.asnumpy(out["doubled"]), 2 * params, rtol=1e-6)
    np.testing.assert_allclose(cp.asnumpy(out["total"]), params.sum(1) + offset, rtol=1e-5,
                               atol=1e-5)


def test_tensorrt_default_and_user_streams(cp, trt_cache, models, cpu_conv):
    x = images(3)
    expected = cpu_conv.run({"image": x})["features"]
    with load_engine(models["conv"], backend="tensorrt", precision="fp32",
                     cache_dir=trt_cache) as engine:
        y_default = engine.run({"image": cp.asarray(x)})["features"]
        np.testing.assert_allclose(cp.asnumpy(y_default), expected, **FP32_TOL)
        stream = cp.cuda.Stream(non_blocking=True)
        with stream:
            y_user = engine.run({"image": cp.asarray(x)})["features"]
            stream.synchronize()
        np.testing.assert_allclose(cp.asnumpy(y_user), expected, **FP32_TOL)


def test_tensorrt_second_load_reuses_the_cache(cp, trt_cache, models):
    engines = sorted(trt_cache.glob("*.engine"))
    assert len(engines) == 1 and engines[0].with_suffix(".json").exists()
    before = engines[0].stat().st_mtime_ns
    with warnings.catch_warnings():
        warnings.simplefilter("error", EngineCacheWarning)
        with load_engine(models["conv"], backend="tensorrt", precision="fp32",
                         cache_dir=trt_cache) as engine:
            assert engine.from_cache and engine.cache_path == engines[0]
    assert engines[0].stat().st_mtime_ns == before
    record = json.loads(engines[0].with_suffix(".json").read_text())
    assert record["tensorrt_version"] == engine.key.tensorrt_version
    assert record["max_batch"] == 16 and record["precision"] == "fp32"


def test_tensorrt_tampered_engine_is_rebuilt(cp, trt_cache, models, cpu_conv, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(trt_cache, cache)
    engine_file = next(cache.glob("*.engine"))
    data = bytearray(engine_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    engine_file.write_bytes(bytes(data))
    with pytest.warns(EngineCacheWarning, match="sha256"):
        engine = TensorRTEngine(models["conv"], precision="fp32", cache_dir=cache)
    with engine:
        assert not engine.from_cache
        x = images(2)
        np.testing.assert_allclose(cp.asnumpy(engine.run({"image": cp.asarray(x)})["features"]),
                                   cpu_conv.run({"image": x})["features"], **FP32_TOL)
    record = json.loads(engine_file.with_suffix(".json").read_text())
    assert record["engine_sha256"] == hashlib.sha256(engine_file.read_bytes()).hexdigest()


def test_tensorrt_sidecar_from_another_gpu_is_rebuilt(cp, trt_cache, models, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(trt_cache, cache)
    sidecar = next(cache.glob("*.json"))
    record = json.loads(sidecar.read_text())
    real_gpu = record["gpu_name"]
    record["gpu_name"] = "NVIDIA Imaginary GPU"
    sidecar.write_text(json.dumps(record))
    with pytest.warns(EngineCacheWarning, match="built for GPU 'NVIDIA Imaginary GPU'"):
        with load_engine(models["conv"], backend="tensorrt", precision="fp32",
                         cache_dir=cache) as engine:
            assert not engine.from_cache
    assert json.loads(sidecar.read_text())["gpu_name"] == real_gpu


def test_build_engines_uses_and_fills_the_cache(cp, trt_cache, models, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(trt_cache, cache)
    cached = next(cache.glob("*.engine"))
    before = cached.stat().st_mtime_ns
    paths = build_engines([models["conv"], models["two"]], precision="fp32", cache_dir=cache)
    assert paths[0] == cached and cached.stat().st_mtime_ns == before
    assert paths[1].exists() and paths[1].with_suffix(".json").exists()


# -- the shipped networks, built by TensorRT at every precision, against ONNX Runtime on the CPU -----------------

@pytest.fixture(scope="module")
def real_faces():
    from tests.conftest import shared

    shared("ict-facekit/FaceXModel.tar.xz")
    shared("yunet/face_detection_yunet_2023mar.onnx")
    from benchmarks.gpu_inputs import real_faces as find

    return find(6)


def _sizes(inputs):
    from benchmarks.gpu_inputs import input_size
    from rtface.engines.tensorrt import DYNAMIC_SPATIAL
    from rtface.errors import InputError

    try:
        return [input_size(inputs)]
    except InputError:  # a FineNet at the face's own resolution: the ends and the middle of the profile
        return list(DYNAMIC_SPATIAL)


@pytest.mark.gpu("tensorrt")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("key", ["coarse", "fine"])
def test_shipped_network_tensorrt_matches_onnxruntime(cp, key, precision, real_faces, face_model):
    """Findings 1 and 4: each shipped network built by TensorRT (FP16 really FP16 where TensorRT has the flag)
    agrees with ONNX Runtime on the CPU running the same file, on real crops, within the precision's tolerance."""
    import tensorrt

    from benchmarks.gpu_check import TOLERANCES, compare_outputs, onnx_for, within
    from benchmarks.gpu_inputs import network_feeds
    from rtface.contour import Contour

    path = onnx_for(key, precision)
    with load_engine(path, backend="tensorrt", precision=precision) as engine, \
            load_engine(path, backend="cpu") as reference:
        expected = precision if precision != "fp16" or hasattr(tensorrt.BuilderFlag, "FP16") else "fp32"
        assert engine.precision == expected
        for size in _sizes(engine.inputs):
            feeds = network_feeds(engine.inputs, real_faces, face_model, size=size)
            m = compare_outputs(key, reference.run(feeds), engine.run(feeds), feeds, Contour(face_model))
            tol = {k: v for k, v in TOLERANCES[precision].items() if k in m}
            assert within(m, tol), (size, m, tol)


@pytest.mark.gpu("cuda")
@pytest.mark.parametrize("key", ["coarse", "fine"])
def test_shipped_network_onnxruntime_cuda_matches_cpu(cp, key, real_faces, face_model):
    from benchmarks.gpu_check import TOLERANCES, compare_outputs, onnx_for, within
    from benchmarks.gpu_inputs import network_feeds
    from rtface.contour import Contour

    path = onnx_for(key, "fp32")
    with load_engine(path, backend="cuda") as engine, load_engine(path, backend="cpu") as reference:
        for size in _sizes(engine.inputs):
            feeds = network_feeds(engine.inputs, real_faces, face_model, size=size)
            m = compare_outputs(key, reference.run(feeds), engine.run(feeds), feeds, Contour(face_model))
            assert within(m, {k: v for k, v in TOLERANCES["fp32"].items() if k in m}), (size, m)


@pytest.mark.gpu("tensorrt")
def test_tensorrt_binds_offset_views(cp, trt, models, tmp_path):
    """Finding 6: a view that starts inside an allocation (``params[1:]``: 24 bytes in) is not 256-byte aligned;
    the engine copies it instead of handing TensorRT an address it refuses (or a stale one)."""
    params, offset, _ = _two_output_feeds(cp, 5)
    device = cp.asarray(params)
    view = device[1:]
    assert view.data.ptr % 256 != 0
    with load_engine(models["two"], backend="tensorrt", precision="fp32", cache_dir=tmp_path) as engine:
        out = engine.run({"params": view, "offset": cp.asarray(offset[1:])})
    np.testing.assert_allclose(cp.asnumpy(out["doubled"]), 2 * params[1:], rtol=1e-6)
    np.testing.assert_allclose(cp.asnumpy(out["total"]), params[1:].sum(1) + offset[1:], rtol=1e-5, atol=1e-5)
