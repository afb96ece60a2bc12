"""ONNX Runtime engines: the CPU default and the CUDA execution provider.

The CPU engine runs NumPy in, NumPy out. A QDQ-quantised file (``python -m train.quantize``: INT8
weights and activations between QuantizeLinear/DequantizeLinear pairs) runs as is: ONNX Runtime fuses
the pairs into integer kernels, and :attr:`Engine.precision` reads ``"int8"``.

The CUDA engine binds CuPy arrays by device pointer through ONNX Runtime's IOBinding, so inputs and
outputs never leave the GPU; it computes on CuPy's current stream when that stream was current at load
time (``user_compute_stream``), and otherwise orders itself against the caller's stream by synchronising
it before the run. ONNX Runtime's ``run`` returns once the GPU work is done, so outputs are ready on any
stream.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import cuda_available, require
from ..errors import AssetError, BackendUnavailable, InputError
from .base import DYNAMIC, Engine, TensorSpec, device_input

#: ONNX Runtime's type strings -> NumPy dtypes.
_ORT_DTYPES: dict[str, np.dtype] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(bool)": np.dtype(np.bool_),
}

# Error classes ONNX Runtime raises when the model file itself is at fault (by class name, since
# they live in a private module).
_MODEL_ERRORS = {"InvalidProtobuf", "InvalidGraph", "InvalidArgument", "NoSuchFile", "NoModel",
                 "NotImplemented", "Fail", "ModelLoaded"}


def physical_cores() -> int:
    """Number of physical CPU cores this process may use (hyper-threads counted once).

    On Linux: the cores behind the CPUs of the process's affinity mask, capped by a cgroup v2 CPU
    quota. Elsewhere: ``os.cpu_count()``.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
    cores: set[tuple[str, str]] = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(),
                       (topology / "core_id").read_text().strip()))
        except OSError:
            cores = set()
            break
    count = len(cores) if cores else len(cpus)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, count)


def onnx_file(path: str | os.PathLike[str]) -> Path:
    """The ONNX file at ``path``, or :class:`AssetError` saying it is missing."""
    p = Path(path).expanduser()
    if not p.is_file():
        what = "is a directory, not an ONNX file" if p.is_dir() else "does not exist"
        raise AssetError(f"ONNX file {p} {what}; check the path (for the networks shipped with "
                         f"rtface, reinstall the package)")
    return p


#: How ``op_type: "DequantizeLinear"`` is serialised in an ONNX NodeProto (field 4, length 16).
_DQ_OP_TYPE = b'"\x10DequantizeLinear'


def onnx_is_quantized(path: str | os.PathLike[str]) -> bool:
    """Whether an ONNX file holds DequantizeLinear nodes (a QDQ-quantised network, e.g. INT8).

    Reads the file's bytes (no ``onnx`` package needed): node op types are stored verbatim.
    """
    with open(onnx_file(path), "rb") as fh:
        data = fh.read()
    return _DQ_OP_TYPE in data


def corrupt_onnx_error(path: Path, reason: object) -> AssetError:
    return AssetError(f"{path} could not be loaded as an ONNX model ({reason}); the file is corrupt, "
                      f"truncated or not ONNX: download or export it again (or reinstall rtface for "
                      f"the shipped networks)")


def session_options(threads: int | None) -> Any:
    """SessionOptions for latency: all graph optimisations, sequential execution, no spinning threads.

    ``threads`` intra-op threads (default: :func:`physical_cores`), one inter-op thread.
    """
    import onnxruntime as ort

    if threads is not None and int(threads) < 1:
        raise InputError(f"threads must be at least 1 (or None for the physical core count), "
                         f"got {threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads) if threads is not None else physical_cores()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning worker threads keep the cores busy after each run and starve the NumPy/Numba stages
    # between the networks (3x slower end to end on a 2-core machine).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


#: Graph optimisers kept off for QDQ files: common-subexpression elimination merges the dedicated Q/DQ pairs
#: of ``train/quantize.py`` again, and a Q shared by two convolutions keeps both out of ONNX Runtime's integer
#: kernels (measured: 6 of 14 convolutions fused instead of 14, INT8 then only 1.3x faster than FP32).
QDQ_DISABLED_OPTIMIZERS = ("CommonSubexpressionElimination",)


def _create_session(path: Path, providers: Sequence[Any], threads: int | None,
                    quantized: bool = False) -> Any:
    import onnxruntime as ort

    options = session_options(threads)
    extra = {"disabled_optimizers": list(QDQ_DISABLED_OPTIMIZERS)} if quantized else {}
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=list(providers), **extra)
    except Exception as exc:
        if type(exc).__name__ in _MODEL_ERRORS:
            raise corrupt_onnx_error(path, exc) from exc
        if type(exc).__name__ == "EPFail":
            first = providers[0] if isinstance(providers[0], str) else providers[0][0]
            raise BackendUnavailable(f"ONNX Runtime could not start {first} ({exc}); fix the "
                                     f"CUDA install or use backend='cpu'") from exc
        raise


def _specs(node_args: Sequence[Any], path: Path) -> tuple[dict[str, TensorSpec], dict[str, list]]:
    """TensorSpecs of ONNX Runtime NodeArgs, and their raw dims (ints, symbolic names or None)."""
    specs, raw = {}, {}
    for arg in node_args:
        dtype = _ORT_DTYPES.get(arg.type)
        if dtype is None:
            raise AssetError(f"{path}: tensor {arg.name!r} has type {arg.type}, which rtface engines "
                             f"do not exchange; re-export the network with float or integer I/O")
        dims = list(arg.shape) if arg.shape is not None else []
        shape = tuple(d if isinstance(d, int) and d >= 0 else DYNAMIC for d in dims)
        specs[arg.name] = TensorSpec(shape, dtype)
        raw[arg.name] = dims
    return specs, raw


class OnnxRuntimeEngine(Engine):
    """ONNX Runtime on the CPU: NumPy arrays in and out.

    ``threads`` intra-op threads (default: physical cores). ``max_batch`` bounds the dynamic batch
    dimension, as on every backend, so that a pipeline behaves the same whichever engine it got.
    """

    name = "cpu"
    device = "cpu"

    def __init__(self, onnx_path: str | os.PathLike[str], *, threads: int | None = None,
                 max_batch: int = 16) -> None:
        require("onnxruntime", "the ONNX Runtime CPU backend")
        path = onnx_file(onnx_path)
        quantized = onnx_is_quantized(path)
        self._session = _create_session(path, ["CPUExecutionProvider"], threads, quantized)
        inputs, _ = _specs(self._session.get_inputs(), path)
        outputs, _ = _specs(self._session.get_outputs(), path)
        super().__init__(inputs=inputs, outputs=outputs, max_batch=max_batch,
                         precision="int8" if quantized else "fp32", path=path)
        self.threads = self._session.get_session_options().intra_op_num_threads
        self._output_names = list(outputs)

    def _run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        arrays = {n: np.ascontiguousarray(a) for n, a in feeds.items()}
        results = self._session.run(self._output_names, arrays)
        return dict(zip(self._output_names, results))

    def _release(self) -> None:
        self._session = None


class OnnxRuntimeCudaEngine(Engine):
    """ONNX Runtime with the CUDA execution provider; CuPy arrays in and out, bound by pointer.

    Runs on the CuPy device that is current at load time. NumPy inputs are uploaded first.
    """

    name = "cuda"
    device = "cuda"

    def __init__(self, onnx_path: str | os.PathLike[str], *, threads: int | None = None,
                 max_batch: int = 16) -> None:
        ort = require("onnxruntime", "the ONNX Runtime CUDA backend")
        cp = require("cupy", "the ONNX Runtime CUDA backend")
        path = onnx_file(onnx_path)
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendUnavailable(
                "the installed onnxruntime has no CUDA execution provider; install the GPU build "
                "(pip uninstall onnxruntime && pip install onnxruntime-gpu) or use backend='cpu'")
        if not cuda_available():
            raise BackendUnavailable("the ONNX Runtime CUDA backend needs a CUDA GPU, and CuPy sees "
                                     "none; check the NVIDIA driver or use backend='cpu'")
        self._cp = cp
        self._device_id = cp.cuda.Device().id
        stream = cp.cuda.get_current_stream()
        provider_options = {"device_id": str(self._device_id)}
        # ONNX Runtime treats stream 0 (CuPy's default, the legacy null stream) as "no user stream".
        self._stream = stream if stream.ptr else None
        if self._stream is not None:
            provider_options["user_compute_stream"] = str(stream.ptr)
        quantized = onnx_is_quantized(path)
        self._session = _create_session(
            path, [("CUDAExecutionProvider", provider_options), "CPUExecutionProvider"], threads, quantized)
        if "CUDAExecutionProvider" not in self._session.get_providers():
            raise BackendUnavailable(
                "ONNX Runtime could not start its CUDA execution provider (see its log above: "
                "usually a CUDA or cuDNN library that does not load); fix the CUDA install or use "
                "backend='cpu'")
        inputs, self._input_dims = _specs(self._session.get_inputs(), path)
        outputs, self._output_dims = _specs(self._session.get_outputs(), path)
        super().__init__(inputs=inputs, outputs=outputs, max_batch=max_batch,
                         precision="int8" if quantized else "fp32", path=path)

    def _output_shape(self, name: str, symbols: dict[str, int]) -> tuple[int, ...] | None:
        """The output's shape from its static dims and the input dims it shares a name with."""
        shape = []
        for dim in self._output_dims[name]:
            if isinstance(dim, int) and dim >= 0:
                shape.append(dim)
            elif isinstance(dim, str) and dim in symbols:
                shape.append(symbols[dim])
            else:
                return None
        return tuple(shape)

    def _run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        cp = self._cp
        with cp.cuda.Device(self._device_id):
            current = cp.cuda.get_current_stream()
            binding = self._session.io_binding()
            symbols: dict[str, int] = {}
            device_inputs = []  # keeps the uploaded arrays alive until the run is done
            for name, array in feeds.items():
                if not isinstance(array, np.ndarray) and array.device.id != self._device_id:
                    raise InputError(f"input {name!r} is on GPU {array.device.id}, this engine runs "
                                     f"on GPU {self._device_id}")
                d = device_input(cp, array)  # a copy only when not C-contiguous or not 256-byte aligned
                device_inputs.append(d)
                for dim, size in zip(self._input_dims[name], d.shape):
                    if isinstance(dim, str):
                        symbols[dim] = size
                binding.bind_input(name, "cuda", self._device_id, d.dtype.type, list(d.shape),
                                   d.data.ptr)
            outputs: dict[str, Any] = {}
            for name, spec in self.outputs.items():
                shape = self._output_shape(name, symbols)
                if shape is None:  # size known only after the run: ONNX Runtime allocates it
                    binding.bind_output(name, "cuda", self._device_id)
                    outputs[name] = None
                else:
                    out = cp.empty(shape, dtype=spec.dtype)
                    binding.bind_output(name, "cuda", self._device_id, spec.dtype.type,
                                        list(shape), out.data.ptr)
                    outputs[name] = out
            shared_stream = self._stream is not None and current.ptr == self._stream.ptr
            if not shared_stream:
                current.synchronize()  # ONNX Runtime computes on another stream: inputs must be ready
            self._session.run_with_iobinding(binding)
            if not shared_stream:
                binding.synchronize_outputs()  # ... and outputs ready before the caller's stream reads
            if any(v is None for v in outputs.values()):
                values = binding.get_outputs()
                for index, name in enumerate(self.outputs):
                    if outputs[name] is None:
                        outputs[name] = self._wrap(values[index], self.outputs[name].dtype,
                                                   binding)
            del device_inputs
        return outputs

    def _wrap(self, value: Any, dtype: np.dtype, binding: Any) -> Any:
        """A CuPy view of an ONNX Runtime-owned device buffer.

        The view keeps the buffer's OrtValue and the binding (hence the session and its allocator)
        alive for as long as it lives.
        """
        cp = self._cp
        shape = tuple(value.shape())
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        memory = cp.cuda.UnownedMemory(value.data_ptr(), nbytes, (value, binding), self._device_id)
        return cp.ndarray(shape, dtype=dtype, memptr=cp.cuda.MemoryPointer(memory, 0))

    def _release(self) -> None:
        self._session = None
        self._stream = None
