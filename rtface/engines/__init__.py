"""Network runtimes behind one interface: :class:`Engine`, chosen with :func:`load_engine`.

Backends (the ``backend`` argument, and :attr:`Engine.name`):

- ``"cpu"``: ONNX Runtime on the CPU; NumPy arrays in and out. Always available.
- ``"cuda"``: ONNX Runtime's CUDA execution provider; CuPy arrays in and out (needs onnxruntime-gpu
  and CuPy).
- ``"tensorrt"``: a TensorRT engine built from the ONNX file on this GPU and cached; CuPy arrays in
  and out (needs tensorrt and CuPy).
- ``"auto"``: the first of those :func:`available_backends` lists (tensorrt, cuda, cpu), falling
  back to the next with a warning if the preferred one fails to start.

Heavy runtimes (TensorRT, CuPy) are imported only when a backend that needs them is used.
"""

from __future__ import annotations

import importlib.util
import os
import warnings

from .._optional import cuda_available
from ..errors import BackendUnavailable, InputError
from .base import DYNAMIC, Engine, TensorSpec
from .onnxruntime import OnnxRuntimeCudaEngine, OnnxRuntimeEngine, onnx_is_quantized, physical_cores
from .tensorrt import (
    PRECISIONS,
    EngineBuildError,
    EngineCache,
    EngineCacheWarning,
    EngineKey,
    TensorRTEngine,
    build_engines,
    default_cache_dir,
)

BACKENDS = ("auto", "cpu", "cuda", "tensorrt")
#: What ``backend="auto"`` treats as "this backend cannot run here, try the next one": a missing package or
#: GPU, and TensorRT failing to parse or build the file (ONNX Runtime may run what TensorRT cannot).
FALLBACK_ERRORS = (BackendUnavailable, EngineBuildError)

__all__ = [
    "BACKENDS", "DYNAMIC", "FALLBACK_ERRORS", "PRECISIONS", "Engine", "EngineBuildError", "EngineCache",
    "EngineCacheWarning", "EngineKey", "OnnxRuntimeCudaEngine", "OnnxRuntimeEngine",
    "TensorRTEngine", "TensorSpec", "available_backends", "build_engines", "default_cache_dir",
    "load_engine", "onnx_is_quantized", "physical_cores", "unavailable_reason", "why_unavailable",
]


def _tensorrt_importable() -> bool:
    if importlib.util.find_spec("tensorrt") is None:
        return False
    try:
        import tensorrt  # noqa: F401
    except Exception:
        return False
    return True


def _ort_cuda_provider() -> bool:
    try:
        import onnxruntime
    except Exception:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def unavailable_reason(backend: str, *, cupy: bool, gpu: bool, ort_cuda: bool, tensorrt: bool,
                       ort: bool = True) -> str | None:
    """Why ``backend`` cannot run on a machine with these facts (None: it can), naming what to install.

    ``cupy``: CuPy imports; ``gpu``: CuPy sees a CUDA device; ``ort_cuda``: ONNX Runtime has its CUDA execution
    provider (the onnxruntime-gpu wheel: it cannot be installed beside the CPU wheel); ``tensorrt``: tensorrt
    imports; ``ort``: onnxruntime imports. ``backend`` "gpu" asks for CuPy and a GPU only (the CUDA rasteriser
    and the GPU stages).
    """
    if backend not in ("cpu", "cuda", "tensorrt", "gpu"):
        raise InputError(f"backend must be 'cpu', 'cuda', 'tensorrt' or 'gpu', got {backend!r}")
    if backend == "cpu":
        return None if ort else "onnxruntime does not import (pip install onnxruntime)"
    if not cupy:
        return "CuPy is not installed (pip install 'rtface[gpu]')"
    if not gpu:
        return "CuPy sees no CUDA GPU (no NVIDIA GPU, or its driver is not loaded)"
    if backend == "cuda" and not ort_cuda:
        return ("ONNX Runtime has no CUDA execution provider: the GPU build replaces the CPU one "
                "(pip uninstall onnxruntime && pip install onnxruntime-gpu)")
    if backend == "tensorrt" and not tensorrt:
        return "TensorRT is not installed (pip install 'rtface[tensorrt]'; on a Jetson it comes with JetPack)"
    return None


def why_unavailable(backend: str) -> str | None:
    """Why ``backend`` ("cpu", "cuda", "tensorrt", or "gpu": CuPy and a GPU) cannot run here; None when it can."""
    cupy = importlib.util.find_spec("cupy") is not None
    gpu = cupy and cuda_available()
    needs_ort = backend in ("cpu", "cuda")
    return unavailable_reason(backend, cupy=cupy, gpu=gpu,
                              ort_cuda=gpu and backend == "cuda" and _ort_cuda_provider(),
                              tensorrt=gpu and backend == "tensorrt" and _tensorrt_importable(),
                              ort=not needs_ort or importlib.util.find_spec("onnxruntime") is not None)


def available_backends() -> list[str]:
    """Backends that can run here, best first: ``"tensorrt"``, ``"cuda"``, then always ``"cpu"``.

    ``"tensorrt"`` needs an importable tensorrt and a CUDA GPU seen by CuPy; ``"cuda"`` needs
    ONNX Runtime's CUDA execution provider and a CUDA GPU seen by CuPy (:func:`why_unavailable` says why not).
    """
    return [b for b in ("tensorrt", "cuda") if why_unavailable(b) is None] + ["cpu"]


def load_engine(onnx_path: str | os.PathLike[str], backend: str = "auto", *,
                precision: str = "auto", threads: int | None = None,
                cache_dir: str | os.PathLike[str] | None = None, max_batch: int = 16) -> Engine:
    """Load the network in ``onnx_path`` on a backend (see the module docstring).

    Args:
        precision: "auto", "fp32", "fp16" or "int8"; used by TensorRT only ("auto": fp16 on GPUs with
            fast FP16; "int8": the file must be QDQ-quantised). ONNX Runtime runs the network in the types
            of the ONNX file (a QDQ file in INT8). Which file to load for a precision is decided by
            :func:`rtface.networks.load_networks`.
        threads: CPU intra-op threads for ONNX Runtime (default: physical cores).
        cache_dir: TensorRT engine cache (default ``rtface.assets.cache_dir() / "engines"``).
        max_batch: largest batch ``run`` accepts (and TensorRT's optimisation profile maximum).

    Raises:
        InputError: unknown backend or precision, bad threads or max_batch, precision "int8" for a file
            without Q/DQ nodes.
        BackendUnavailable: the backend named cannot run here (the message says what to install).
        AssetError: the ONNX file is missing or corrupt.
    """
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise InputError(f"max_batch must be an integer of at least 1, got {max_batch!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise InputError(f"threads must be a positive integer or None, got {threads!r}")

    if precision == "int8" and not onnx_is_quantized(onnx_path):
        raise InputError(f"precision 'int8' needs a QDQ-quantised ONNX file, and {onnx_path} has no "
                         f"DequantizeLinear nodes; make one with 'python -m train.quantize' (load_networks picks "
                         f"the manifest's INT8 files for precision='int8')")
    if backend != "auto":
        return _load(onnx_path, backend, precision, threads, cache_dir, max_batch)
    candidates = available_backends()
    for name in candidates[:-1]:
        try:
            return _load(onnx_path, name, precision, threads, cache_dir, max_batch)
        except FALLBACK_ERRORS as exc:
            warnings.warn(f"backend {name!r} could not start ({exc}); trying the next one",
                          RuntimeWarning, stacklevel=2)
    return _load(onnx_path, candidates[-1], precision, threads, cache_dir, max_batch)


def _load(onnx_path: str | os.PathLike[str], backend: str, precision: str, threads: int | None,
          cache_dir: str | os.PathLike[str] | None, max_batch: int) -> Engine:
    if backend == "cpu":
        return OnnxRuntimeEngine(onnx_path, threads=threads, max_batch=max_batch)
    if backend == "cuda":
        return OnnxRuntimeCudaEngine(onnx_path, threads=threads, max_batch=max_batch)
    return TensorRTEngine(onnx_path, precision=precision, cache_dir=cache_dir, max_batch=max_batch)
