"""Which backends can run here, and why not: the reasons behind ``available_backends`` and the ``gpu`` test
marker (a GPU with CuPy but the CPU onnxruntime wheel skips the ONNX Runtime CUDA tests, never errors)."""

from __future__ import annotations

import pytest

from rtface.engines import available_backends, unavailable_reason, why_unavailable
from rtface.errors import InputError

ALL = dict(cupy=True, gpu=True, ort_cuda=True, tensorrt=True)


def test_everything_present_runs_everything():
    for backend in ("cpu", "cuda", "tensorrt", "gpu"):
        assert unavailable_reason(backend, **ALL) is None


def test_cupy_and_a_gpu_without_onnxruntime_gpu():
    """Finding 3: CuPy and a GPU, and the CPU onnxruntime wheel (the two cannot be installed side by side)."""
    facts = {**ALL, "ort_cuda": False, "tensorrt": False}
    assert unavailable_reason("gpu", **facts) is None
    assert "onnxruntime-gpu" in unavailable_reason("cuda", **facts)
    assert "rtface[tensorrt]" in unavailable_reason("tensorrt", **facts)
    assert unavailable_reason("tensorrt", **{**facts, "tensorrt": True}) is None


def test_no_cupy_or_no_gpu_comes_first():
    assert "CuPy is not installed" in unavailable_reason("tensorrt", **{**ALL, "cupy": False})
    assert "no CUDA GPU" in unavailable_reason("cuda", **{**ALL, "gpu": False})
    assert unavailable_reason("cpu", cupy=False, gpu=False, ort_cuda=False, tensorrt=False) is None
    assert "onnxruntime" in unavailable_reason("cpu", **ALL, ort=False)
    with pytest.raises(InputError, match="backend"):
        unavailable_reason("vulkan", **ALL)


def test_available_backends_agree_with_the_reasons():
    have = available_backends()
    assert have[-1] == "cpu" and why_unavailable("cpu") is None
    for backend in ("tensorrt", "cuda"):
        assert (backend in have) == (why_unavailable(backend) is None)


def test_gpu_marker_reason():
    from tests.conftest import gpu_skip_reason

    reason = gpu_skip_reason(("cuda",))
    if why_unavailable("gpu") is not None:
        assert reason.startswith("needs an NVIDIA GPU: ")
    elif why_unavailable("cuda") is not None:
        assert reason.startswith("needs cuda: ")
    else:
        assert reason is None
