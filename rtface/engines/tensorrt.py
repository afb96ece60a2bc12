"""TensorRT engines, built from the shipped ONNX on the user's own GPU and cached on disk.

A TensorRT engine only runs on the GPU model and TensorRT version it was built with, so rtface builds
it on first use (seconds to minutes) and caches the serialised engine under
``rtface.assets.cache_dir() / "engines"``. The file name is keyed by the ONNX file's sha256, the
TensorRT version, the GPU name and compute capability, the precision and the largest batch; a JSON
sidecar records the same fields plus the sha256 of the engine file. An engine is deserialised only
when its sidecar matches the current key and its bytes match the sidecar's hash (rtface loads only
engines it built); anything else (another GPU or TensorRT version, a changed ONNX file, a truncated
or edited engine) is reported with an :class:`EngineCacheWarning` and rebuilt.

The cache logic (:class:`EngineKey`, :class:`EngineCache`, :func:`check_record`) is plain Python and
works without TensorRT; TensorRT and CuPy are imported only when an engine is built or run.

Supports TensorRT 10 and 11 (``execute_async_v3``, ``set_tensor_address``, explicit batch). What an engine
computes in is decided by :func:`plan_build` from the parsed network (pure Python, tested on the shipped ONNX
graphs without TensorRT), and :attr:`TensorRTEngine.precision` and the cache sidecar report that decision:

* The shipped FP32 files store their weights as FP16 initializers, each followed by a Cast to FP32 (the
  parser turns them into an FP16 constant layer and a cast). That is storage, not arithmetic: the
  activations are FP32, so on TensorRT 10 precision "fp16" builds the network weakly typed with
  ``BuilderFlag.FP16``, and the engine computes in FP16.
* An ONNX file whose activations are FP16 (exported in FP16) is built strongly typed: its own types decide.
* TensorRT 11 builds every network strongly typed (it has no FP16 flag): an FP32 file then gives an FP32
  engine whatever was asked, with a warning when "fp16" was asked for explicitly.

INT8: a QDQ-quantised ONNX file (``python -m train.quantize``: symmetric INT8 QuantizeLinear/DequantizeLinear
pairs, the same file ONNX Runtime runs on the CPU) is always built strongly typed (explicit quantisation: the
Q/DQ nodes decide where INT8 is used, no builder precision flags); the engine reports precision ``"int8"``.
``precision="int8"`` asks for exactly that and is refused for a file without Q/DQ nodes.

Dynamic shapes: the batch (dimension 0, optimisation profile 1 .. ``max_batch``, tuned for 4) and, for NCHW
inputs, height and width (dimensions 2 and 3: :data:`DYNAMIC_SPATIAL`, 128 .. 512 px tuned for 256, for a
FineNet that runs at the face's own resolution). Device addresses are bound only when TensorRT accepts them
(``set_tensor_address`` returns True; 256-byte aligned, :data:`rtface.engines.base.DEVICE_ALIGNMENT`): views
that are not are copied first, and a refusal is an error, never a run with a stale address.

A parser failure (an operator this TensorRT does not support, say) is an :class:`EngineBuildError`, so
``backend="auto"`` falls back to ONNX Runtime.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import cuda_available, require
from ..assets import cache_dir, sha256_file, write_atomic
from ..errors import AssetError, BackendUnavailable, InputError, RtfaceError
from .base import DEVICE_ALIGNMENT, DYNAMIC, Engine, TensorSpec, device_input
from .onnxruntime import onnx_file, onnx_is_quantized

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "fp16", "int8")
#: ``format`` field of every sidecar this module writes; a different value is never loaded.
SIDECAR_FORMAT = "rtface-tensorrt-engine/1"
#: Default builder workspace (the scratch memory TensorRT may use per layer), bytes.
DEFAULT_WORKSPACE = 1 << 30
#: Optimisation profile (min, opt, max) in pixels of the height and width of NCHW inputs whose spatial
#: dimensions are dynamic (a FineNet that runs at the face's own resolution).
DYNAMIC_SPATIAL = (128, 256, 512)
#: Element types that make a layer "reduced precision" when its activations carry them.
REDUCED_TYPES = frozenset({"float16", "bfloat16"})


class EngineCacheWarning(UserWarning):
    """A cached TensorRT engine was ignored (stale, corrupt or unreadable) and is being rebuilt."""


class EngineBuildError(RtfaceError):
    """TensorRT could not build or load an engine for a network."""


# -- pure-Python cache logic (no TensorRT needed) ---------------------------------------------------

def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def has_fast_fp16(compute_capability: str) -> bool:
    """Whether a GPU of this compute capability ("major.minor") has full-rate FP16 arithmetic.

    The same answer as TensorRT 10's ``Builder.platform_has_fast_fp16`` (removed in TensorRT 11):
    sm_53, sm_60, sm_62 and everything from Volta (sm_70) on.
    """
    major, minor = (int(p) for p in compute_capability.split(".")[:2])
    return major >= 7 or (major, minor) in {(5, 3), (6, 0), (6, 2)}


def resolve_precision(precision: str, compute_capability: str) -> str:
    """``"fp32"``, ``"fp16"`` or ``"int8"`` for a requested precision; ``"auto"`` is fp16 where FP16 is fast."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "fp16" if has_fast_fp16(compute_capability) else "fp32"
    return precision


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialised TensorRT engine depends on; equal keys mean interchangeable engines."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "major.minor", e.g. "8.6"
    precision: str  # "fp32", "fp16" or "int8" (asked for; the sidecar's built_precision says what it got)
    max_batch: int
    #: "min-opt-max" px of dynamic heights and widths (:data:`DYNAMIC_SPATIAL`); part of every key, since
    #: whether a network has dynamic spatial dimensions is known only once it is parsed.
    spatial: str = "-".join(map(str, DYNAMIC_SPATIAL))

    @classmethod
    def for_onnx(cls, onnx_path: str | os.PathLike[str], *, tensorrt_version: str, gpu_name: str,
                 compute_capability: str, precision: str, max_batch: int,
                 spatial: Sequence[int] = DYNAMIC_SPATIAL) -> EngineKey:
        """The key of ``onnx_path`` (hashed here) for the given runtime, GPU and build settings."""
        return cls(sha256_file(onnx_path), str(tensorrt_version), str(gpu_name),
                   str(compute_capability), str(precision), int(max_batch),
                   "-".join(map(str, check_spatial(spatial))))

    def digest(self) -> str:
        """sha256 of the key's fields (canonical JSON), hex."""
        return sha256_bytes(json.dumps(asdict(self), sort_keys=True).encode())

    def record(self, engine_sha256: str, **extra: Any) -> dict[str, Any]:
        """The sidecar content for an engine file with this key and hash."""
        return {"format": SIDECAR_FORMAT, **asdict(self), "engine_sha256": engine_sha256, **extra}


def check_spatial(spatial: Sequence[int]) -> tuple[int, int, int]:
    """``(min, opt, max)`` px of a dynamic height/width profile, checked: integers, 1 <= min <= opt <= max."""
    try:
        lo, opt, hi = (int(v) for v in spatial)
    except (TypeError, ValueError):
        raise InputError(f"spatial must be three integers (min, opt, max) in pixels, got {spatial!r}") from None
    if not 1 <= lo <= opt <= hi:
        raise InputError(f"spatial must satisfy 1 <= min <= opt <= max, got {(lo, opt, hi)}")
    return lo, opt, hi


def optimisation_profile(name: str, shape: Sequence[int], max_batch: int,
                         spatial: Sequence[int] = DYNAMIC_SPATIAL
                         ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None:
    """The (min, opt, max) shapes TensorRT's optimisation profile gives an input of ``shape`` (-1: dynamic).

    None when every dimension is fixed. A dynamic batch (dimension 0) spans 1 .. ``max_batch``, tuned for
    ``min(4, max_batch)``; dynamic height and width (dimensions 2 and 3 of a rank-4 NCHW input) span
    ``spatial`` (min, opt, max) px. Any other dynamic dimension is an :class:`EngineBuildError`.
    """
    shape = tuple(int(d) for d in shape)
    if all(d >= 0 for d in shape):
        return None
    lo_px, opt_px, hi_px = check_spatial(spatial)
    lo: list[int] = []
    opt: list[int] = []
    hi: list[int] = []
    for axis, d in enumerate(shape):
        if d >= 0:
            dims = (d, d, d)
        elif axis == 0:
            dims = (1, min(4, int(max_batch)), int(max_batch))
        elif len(shape) == 4 and axis in (2, 3):
            dims = (lo_px, opt_px, hi_px)
        else:
            raise EngineBuildError(
                f"input {name!r} has shape {shape} with dimension {axis} dynamic; the TensorRT backend "
                f"supports a dynamic batch (dimension 0) and dynamic height and width (dimensions 2 and 3 of "
                f"an NCHW input, {lo_px}..{hi_px} px) only. Export the network with that dimension fixed, or "
                f"use backend='cuda'.")
        lo.append(dims[0])
        opt.append(dims[1])
        hi.append(dims[2])
    return tuple(lo), tuple(opt), tuple(hi)


@dataclass(frozen=True)
class LayerFacts:
    """What :func:`plan_build` needs to know of one layer of a parsed network (or one ONNX node).

    ``kind``: ``"input"`` (a network input), ``"constant"`` (weights), ``"cast"`` (a type conversion, e.g.
    FP16-stored weights cast to FP32), ``"quantize"`` / ``"dequantize"`` (explicit quantisation) or
    ``"compute"`` (everything else). ``dtypes``: the element types of its outputs (NumPy names: "float32",
    "float16", "bfloat16", "int8", ...). ``constant``: its outputs depend on weights only (a constant, or a
    layer all of whose inputs are constant, such as a cast or a reshape of weights): storage, not arithmetic
    on activations.
    """

    kind: str
    dtypes: tuple[str, ...]
    constant: bool = False


@dataclass(frozen=True)
class BuildPlan:
    """How to build an engine: a strongly typed network or not, the FP16 builder flag, and the precision
    the engine then computes in; ``warning`` when that is not what was asked for explicitly."""

    strongly_typed: bool
    fp16_flag: bool
    precision: str
    warning: str | None = None


def plan_build(requested: str, layers: Iterable[LayerFacts], *, weak_typing: bool, explicit: bool = False,
               name: str = "the network") -> BuildPlan:
    """Decide how TensorRT builds a network, and what the engine computes in.

    Args:
        requested: "fp32", "fp16" or "int8" (``"auto"`` resolved already, :func:`resolve_precision`).
        layers: the parsed network's layers (:func:`_trt_layer_facts`; the same facts of an ONNX file:
            :func:`rtface.engines.graph.onnx_layer_facts`).
        weak_typing: whether this TensorRT builds weakly typed networks (TensorRT 10; 11 has no FP16 flag).
        explicit: the precision was asked for by name (not "auto"): say so when the engine cannot honour it.

    The arithmetic is FP16 when a layer that computes on activations (or a network input) carries FP16/BF16;
    FP16 weights cast to FP32 (how the shipped files store their weights) are storage and do not count.
    A file with Q/DQ layers is INT8, strongly typed. Raises :class:`EngineBuildError` for "int8" without
    Q/DQ layers.
    """
    facts = list(layers)
    quantized = any(f.kind in ("quantize", "dequantize") for f in facts)
    fp16_compute = any(f.kind in ("compute", "input") and not f.constant and REDUCED_TYPES.intersection(f.dtypes)
                       for f in facts)
    if requested == "int8" and not quantized:
        raise EngineBuildError(f"precision 'int8' needs a QDQ-quantised ONNX file, and {name} has no Q/DQ layers; "
                               f"make one with 'python -m train.quantize'")
    if quantized:
        return BuildPlan(True, False, "int8")
    if fp16_compute:
        warning = None
        if requested == "fp32" and explicit:
            warning = (f"{name} computes in FP16 (its activations are FP16 in the ONNX graph): precision 'fp32' "
                       f"cannot change that, the engine computes in FP16. Export the network in FP32 for FP32.")
        return BuildPlan(True, False, "fp16", warning)
    if requested == "fp16":
        if weak_typing:
            return BuildPlan(False, True, "fp16")
        warning = None
        if explicit:
            warning = (f"this TensorRT builds strongly typed networks only, and {name} computes in FP32 (FP16 "
                       f"weights cast to FP32 are storage, not arithmetic): the engine computes in FP32. Export "
                       f"the network with FP16 activations (e.g. ModelOpt AutoCast) for FP16 arithmetic.")
        return BuildPlan(True, False, "fp32", warning)
    return BuildPlan(not weak_typing, False, "fp32")


def parser_error(onnx_path: str | os.PathLike[str], errors: Sequence[str],
                 tensorrt_version: str = "") -> EngineBuildError:
    """The error for an ONNX file TensorRT's parser rejects. An :class:`EngineBuildError`, not an
    :class:`AssetError`: the file may be fine for ONNX Runtime (an operator this TensorRT lacks), so
    ``backend="auto"`` goes on to the next backend."""
    version = f" {tensorrt_version}" if tensorrt_version else ""
    detail = "; ".join(str(e) for e in errors) or "no detail"
    return EngineBuildError(f"TensorRT{version}'s ONNX parser could not read {onnx_path} ({detail}): an operator "
                            f"or attribute this TensorRT does not support, or a corrupt file; ONNX Runtime may "
                            f"still run it (backend='cuda' or 'cpu')")


def check_bound(accepted: bool, name: str, address: int, path: Any = None) -> None:
    """Raise unless TensorRT accepted a tensor address (``set_tensor_address`` returned True).

    A refused address leaves the previous run's address bound, so running anyway would read or write
    memory that may be freed: wrong outputs, silently. TensorRT refuses unknown names and addresses that
    are not :data:`DEVICE_ALIGNMENT`-byte aligned."""
    if not accepted:
        where = f" of {path}" if path is not None else ""
        raise RtfaceError(f"TensorRT refused the device address {int(address):#x} for tensor {name!r}{where} "
                          f"(set_tensor_address returned False: an unknown tensor name, or an address that is "
                          f"not {DEVICE_ALIGNMENT}-byte aligned); nothing was run")


def check_record(record: Any, key: EngineKey, engine_bytes: bytes) -> str | None:
    """Why a sidecar ``record`` does not vouch for ``engine_bytes`` under ``key``; None if it does."""
    if not isinstance(record, dict) or record.get("format") != SIDECAR_FORMAT:
        return "its sidecar is not an rtface engine record"
    want = asdict(key)
    have = {name: record.get(name) for name in want}
    if (have["gpu_name"], have["compute_capability"]) != (key.gpu_name, key.compute_capability):
        return (f"it was built for GPU {have['gpu_name']!r} (compute capability "
                f"{have['compute_capability']}), this is {key.gpu_name!r} "
                f"({key.compute_capability})")
    if have["tensorrt_version"] != key.tensorrt_version:
        return f"it was built with TensorRT {have['tensorrt_version']}, this is {key.tensorrt_version}"
    if have["onnx_sha256"] != key.onnx_sha256:
        return "it was built from a different ONNX file (sha256 differs)"
    if have != want:
        diff = ", ".join(f"{n} {have[n]!r} (wanted {want[n]!r})" for n in want if have[n] != want[n])
        return f"it was built with other settings: {diff}"
    if record.get("engine_sha256") != sha256_bytes(engine_bytes):
        return "the engine file does not match the sha256 in its sidecar (corrupt or modified)"
    return None


def default_cache_dir() -> Path:
    """``rtface.assets.cache_dir() / "engines"`` (env ``RTFACE_CACHE`` moves the cache root)."""
    return cache_dir() / "engines"


class EngineCache:
    """A directory of serialised engines rtface built, each beside a JSON sidecar.

    ``<stem>.<precision>.b<max_batch>.<key digest[:16]>.engine`` and the same name with ``.json``.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory).expanduser() if directory is not None else default_cache_dir()

    def engine_path(self, key: EngineKey, stem: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or "network"
        return self.directory / f"{safe}.{key.precision}.b{key.max_batch}.{key.digest()[:16]}.engine"

    def sidecar_path(self, key: EngineKey, stem: str) -> Path:
        return self.engine_path(key, stem).with_suffix(".json")

    def load(self, key: EngineKey, stem: str) -> bytes | None:
        """The cached engine's bytes when its sidecar matches ``key`` and its hash; else None.

        A plain miss (no files) is silent; anything else is an :class:`EngineCacheWarning`.
        """
        found = self.load_with_record(key, stem)
        return None if found is None else found[0]

    def load_with_record(self, key: EngineKey, stem: str) -> tuple[bytes, dict[str, Any]] | None:
        """Like :meth:`load`, with the sidecar record beside the bytes."""
        engine_path, sidecar_path = self.engine_path(key, stem), self.sidecar_path(key, stem)
        if not engine_path.exists() and not sidecar_path.exists():
            return None
        try:
            data = engine_path.read_bytes()
            record = json.loads(sidecar_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            self._warn(engine_path, f"it cannot be read ({exc})")
            return None
        reason = check_record(record, key, data)
        if reason is not None:
            self._warn(engine_path, reason)
            return None
        return data, record

    def store(self, key: EngineKey, stem: str, engine_bytes: bytes, **extra: Any) -> Path:
        """Write the engine, then its sidecar, each atomically; returns the engine's path."""
        engine_path = self.engine_path(key, stem)
        record = key.record(sha256_bytes(engine_bytes),
                            created=datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra)
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomic(engine_path, engine_bytes, mode=0o600)
        write_atomic(self.sidecar_path(key, stem),
                     (json.dumps(record, indent=2, sort_keys=True) + "\n").encode(), mode=0o600)
        return engine_path

    def discard(self, key: EngineKey, stem: str) -> None:
        """Remove a cached engine and its sidecar (missing files are fine)."""
        for path in (self.sidecar_path(key, stem), self.engine_path(key, stem)):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    @staticmethod
    def _warn(engine_path: Path, reason: str) -> None:
        warnings.warn(f"ignoring cached TensorRT engine {engine_path}: {reason}; rebuilding it",
                      EngineCacheWarning, stacklevel=5)


# -- TensorRT ------------------------------------------------------------------------------------

_PURPOSE = "the TensorRT backend"
_trt_logger = None


def _import_runtime() -> tuple[Any, Any]:
    trt = require("tensorrt", _PURPOSE)
    cp = require("cupy", _PURPOSE)
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise BackendUnavailable(f"{_PURPOSE} needs TensorRT 10 or newer, found {trt.__version__}; "
                                 f"pip install -U 'rtface[tensorrt]'")
    if not cuda_available():
        raise BackendUnavailable(f"{_PURPOSE} needs a CUDA GPU, and CuPy sees none; check the "
                                 f"NVIDIA driver or use backend='cpu'")
    return trt, cp


def _logger(trt: Any) -> Any:
    global _trt_logger
    if _trt_logger is None:  # TensorRT wants one logger per process
        _trt_logger = trt.Logger(trt.Logger.WARNING)
    return _trt_logger


def _gpu(cp: Any) -> tuple[str, str]:
    """Name and compute capability ("major.minor") of CuPy's current device."""
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"]
    name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    return name.strip(), f"{props['major']}.{props['minor']}"


def _numpy_dtype(trt: Any, dtype: Any) -> np.dtype | None:
    table = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32,
             "INT64": np.int64, "BOOL": np.bool_, "UINT8": np.uint8}
    for member, np_type in table.items():
        if getattr(trt.DataType, member, None) == dtype:
            return np.dtype(np_type)
    return None


def _parse(trt: Any, builder: Any, onnx_path: Path, strongly_typed: bool) -> tuple[Any, Any]:
    """A network parsed from ``onnx_path``, and the parser (it owns weights the network refers to: keep both)."""
    typed_flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    flags = (1 << int(typed_flag)) if strongly_typed and typed_flag is not None else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, _logger(trt))
    if not parser.parse_from_file(str(onnx_path)):
        raise parser_error(onnx_path, [str(parser.get_error(i)) for i in range(parser.num_errors)],
                           trt.__version__)
    return network, parser


def _build(trt: Any, onnx_path: Path, key: EngineKey, *, workspace: int,
           explicit: bool) -> tuple[bytes, str]:
    """Build a serialised engine for ``onnx_path`` as ``key`` describes.

    Returns the engine and the precision it computes in (:func:`plan_build`: "int8" for a QDQ file, "fp16"
    with the FP16 flag or for a file with FP16 activations, else "fp32").
    """
    builder = trt.Builder(_logger(trt))
    if builder is None:
        raise EngineBuildError(f"TensorRT {trt.__version__} could not create a builder (see its log above: "
                               f"usually the CUDA driver); use backend='cuda' or backend='cpu'")
    weak = hasattr(trt.BuilderFlag, "FP16")  # gone in TensorRT 11: every network is strongly typed
    network, parser = _parse(trt, builder, onnx_path, strongly_typed=not weak)
    plan = plan_build(key.precision, _trt_layer_facts(trt, network), weak_typing=weak, explicit=explicit,
                      name=onnx_path.name)
    log.info("%s: %s asked, building %s (strongly typed %s, FP16 flag %s)", onnx_path.name, key.precision,
             plan.precision, plan.strongly_typed, plan.fp16_flag)
    if plan.warning:
        warnings.warn(plan.warning, RuntimeWarning, stacklevel=4)
    if plan.strongly_typed and weak:
        network, parser = _parse(trt, builder, onnx_path, strongly_typed=True)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace))
    if plan.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    spatial = tuple(int(v) for v in key.spatial.split("-"))
    profile = None
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shapes = optimisation_profile(tensor.name, tuple(tensor.shape), key.max_batch, spatial)
        if shapes is not None:
            if profile is None:
                profile = builder.create_optimization_profile()
            profile.set_shape(tensor.name, *shapes)
    if profile is not None:
        config.add_optimization_profile(profile)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT {trt.__version__} could not build an engine for "
                               f"{onnx_path} (see TensorRT's log above); use backend='cuda' or "
                               f"backend='cpu'")
    del parser
    return bytes(serialized), plan.precision


#: TensorRT ``DataType`` member -> the NumPy name :class:`LayerFacts` uses.
_TRT_TYPE_NAMES = (("FLOAT", "float32"), ("HALF", "float16"), ("BF16", "bfloat16"), ("INT8", "int8"),
                   ("UINT8", "uint8"), ("INT32", "int32"), ("INT64", "int64"), ("BOOL", "bool"),
                   ("FP8", "float8"), ("INT4", "int4"))
#: TensorRT ``LayerType`` member -> :class:`LayerFacts` kind (every other layer type: "compute").
_TRT_LAYER_KINDS = (("CONSTANT", "constant"), ("CAST", "cast"), ("IDENTITY", "cast"),
                    ("QUANTIZE", "quantize"), ("DEQUANTIZE", "dequantize"))


def _trt_layer_facts(trt: Any, network: Any) -> list[LayerFacts]:
    """:class:`LayerFacts` of a parsed TensorRT network: its inputs, then every layer in order."""
    names = {getattr(trt.DataType, m): n for m, n in _TRT_TYPE_NAMES if hasattr(trt.DataType, m)}
    kinds = {getattr(trt.LayerType, m): k for m, k in _TRT_LAYER_KINDS if hasattr(trt.LayerType, m)}

    def dtype(tensor: Any) -> str:
        return names.get(tensor.dtype, str(tensor.dtype))

    facts = [LayerFacts("input", (dtype(network.get_input(i)),)) for i in range(network.num_inputs)]
    constant: set[str] = set()
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        kind = kinds.get(layer.type, "compute")
        inputs = [t for t in (layer.get_input(j) for j in range(layer.num_inputs)) if t is not None]
        outputs = [t for t in (layer.get_output(j) for j in range(layer.num_outputs)) if t is not None]
        const = kind == "constant" or (bool(inputs) and all(t.name in constant for t in inputs))
        if const:
            constant.update(t.name for t in outputs)
        facts.append(LayerFacts(kind, tuple(dtype(t) for t in outputs), const))
    return facts


@dataclass
class _Obtained:
    data: bytes
    path: Path | None  # None when the cache could not be written
    key: EngineKey
    from_cache: bool
    built_precision: str


def _obtain(trt: Any, cp: Any, onnx_path: str | os.PathLike[str], *, precision: str,
            cache_dir: str | os.PathLike[str] | None, max_batch: int, workspace: int,
            force: bool, spatial: Sequence[int] = DYNAMIC_SPATIAL) -> _Obtained:
    """Engine bytes for ``onnx_path`` on the current GPU, from the cache or freshly built."""
    path = onnx_file(onnx_path)
    if int(max_batch) < 1:
        raise InputError(f"max_batch must be at least 1, got {max_batch}")
    if precision == "int8" and not onnx_is_quantized(path):
        raise InputError(f"precision 'int8' needs a QDQ-quantised ONNX file, and {path} has no "
                         f"DequantizeLinear nodes; make one with 'python -m train.quantize' (or load the "
                         f"weights with precision='int8', which picks the manifest's INT8 files)")
    gpu_name, capability = _gpu(cp)
    key = EngineKey.for_onnx(path, tensorrt_version=trt.__version__, gpu_name=gpu_name,
                             compute_capability=capability,
                             precision=resolve_precision(precision, capability), max_batch=max_batch,
                             spatial=spatial)
    cache = EngineCache(cache_dir)
    if not force:
        found = cache.load_with_record(key, path.stem)
        if found is not None:
            data, record = found
            built = record.get("built_precision")
            return _Obtained(data, cache.engine_path(key, path.stem), key, True,
                             built if built in ("fp16", "fp32", "int8") else key.precision)
    log.warning("building a TensorRT engine for %s (%s, batch up to %d) on %s: this takes a while "
                "once; the engine is cached in %s", path.name, key.precision, key.max_batch,
                gpu_name, cache.directory)
    data, built = _build(trt, path, key, workspace=workspace, explicit=precision != "auto")
    try:
        engine_path: Path | None = cache.store(key, path.stem, data, onnx_name=path.name,
                                               built_precision=built)
    except OSError as exc:
        warnings.warn(f"could not write the TensorRT engine cache in {cache.directory} ({exc}); the "
                      f"engine will be rebuilt next time. Set RTFACE_CACHE to a writable "
                      f"directory.", EngineCacheWarning, stacklevel=3)
        engine_path = None
    return _Obtained(data, engine_path, key, False, built)


def build_engines(onnx_paths: Iterable[str | os.PathLike[str]], *, precision: str = "auto",
                  cache_dir: str | os.PathLike[str] | None = None, max_batch: int = 16,
                  force: bool = False, workspace: int = DEFAULT_WORKSPACE,
                  spatial: Sequence[int] = DYNAMIC_SPATIAL) -> list[Path]:
    """Build (or find valid in the cache) the TensorRT engine of each ONNX file, for this GPU.

    ``force`` rebuilds even when a valid cached engine exists; ``spatial``: the (min, opt, max) px of
    dynamic heights and widths. Returns the engine files, in order. Raises :class:`BackendUnavailable`
    without TensorRT/CuPy/GPU, :class:`AssetError` for a missing ONNX file, :class:`EngineBuildError`
    when TensorRT cannot parse or build it.
    """
    trt, cp = _import_runtime()
    paths = []
    for onnx_path in onnx_paths:
        got = _obtain(trt, cp, onnx_path, precision=precision, cache_dir=cache_dir,
                      max_batch=max_batch, workspace=workspace, force=force, spatial=spatial)
        if got.path is None:
            raise EngineBuildError(f"the engine for {onnx_path} was built but could not be saved "
                                   f"in {EngineCache(cache_dir).directory}")
        log.info("%s: %s %s", onnx_path, "cached" if got.from_cache else "built", got.path)
        paths.append(got.path)
    return paths


class TensorRTEngine(Engine):
    """A TensorRT engine on CuPy's current device; CuPy arrays in and out, by pointer.

    Runs on CuPy's current stream (when that is the legacy default stream, on a private stream
    ordered after and before it with events, since TensorRT must synchronise on the default stream).
    ``precision`` "auto" is fp16 on GPUs with fast FP16, else fp32 ("int8": a QDQ ONNX file); ``max_batch`` is the top of the
    optimisation profile of the dynamic batch dimension (1 .. max_batch, tuned for min(4, max_batch));
    ``spatial`` the (min, opt, max) px of dynamic heights and widths (:data:`DYNAMIC_SPATIAL`).
    :attr:`precision` tells what the engine computes in (:func:`plan_build`): on TensorRT 11 an FP32 ONNX
    file gives an FP32 engine whatever was asked (``key.precision`` keeps the request).

    Attributes beyond :class:`Engine`'s: ``key`` (:class:`EngineKey`), ``cache_path`` (the engine
    file, or None when the cache was not writable) and ``from_cache`` (False when this load built it).
    """

    name = "tensorrt"
    device = "cuda"

    def __init__(self, onnx_path: str | os.PathLike[str], *, precision: str = "auto",
                 cache_dir: str | os.PathLike[str] | None = None, max_batch: int = 16,
                 workspace: int = DEFAULT_WORKSPACE, spatial: Sequence[int] = DYNAMIC_SPATIAL) -> None:
        trt, cp = _import_runtime()
        self._cp = cp
        self._device_id = cp.cuda.Device().id
        path = onnx_file(onnx_path)
        options = dict(precision=precision, cache_dir=cache_dir, max_batch=max_batch,
                       workspace=workspace, spatial=spatial)
        got = _obtain(trt, cp, path, force=False, **options)
        self._runtime = trt.Runtime(_logger(trt))
        self._engine = self._runtime.deserialize_cuda_engine(got.data)
        if self._engine is None and got.from_cache:
            warnings.warn(f"TensorRT could not deserialise the cached engine {got.path}; "
                          f"rebuilding it", EngineCacheWarning, stacklevel=2)
            got = _obtain(trt, cp, path, force=True, **options)
            self._engine = self._runtime.deserialize_cuda_engine(got.data)
        self.key, self.cache_path, self.from_cache = got.key, got.path, got.from_cache
        if self._engine is None:
            raise EngineBuildError(f"TensorRT could not deserialise the engine it built for {path}")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineBuildError(f"TensorRT could not create an execution context for {path} "
                                   f"(out of GPU memory?)")
        inputs, outputs = {}, {}
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            trt_dtype = self._engine.get_tensor_dtype(name)
            dtype = _numpy_dtype(trt, trt_dtype)
            if dtype is None:
                raise AssetError(f"{path}: tensor {name!r} has TensorRT type {trt_dtype}, which "
                                 f"rtface engines do not exchange; export the network with FP32, "
                                 f"FP16 or integer I/O")
            spec = TensorSpec(tuple(self._engine.get_tensor_shape(name)), dtype)
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (inputs if is_input else outputs)[name] = spec
        super().__init__(inputs=inputs, outputs=outputs, max_batch=self.key.max_batch,
                         precision=got.built_precision, path=path)
        self._side_stream = None

    def _run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        cp = self._cp
        context = self._context
        with cp.cuda.Device(self._device_id):
            caller = cp.cuda.get_current_stream()
            stream = caller
            if caller.ptr == 0:
                if self._side_stream is None:
                    self._side_stream = cp.cuda.Stream(non_blocking=True)
                stream = self._side_stream
            device_inputs = []  # freed on the caller's stream after it waits for the run
            for name, array in feeds.items():
                if not isinstance(array, np.ndarray) and array.device.id != self._device_id:
                    raise InputError(f"input {name!r} is on GPU {array.device.id}, this engine runs "
                                     f"on GPU {self._device_id}")
                d = device_input(cp, array)  # a copy only when not C-contiguous or not 256-byte aligned
                device_inputs.append(d)
                if not context.set_input_shape(name, tuple(d.shape)):
                    lo, _, hi = self.key.spatial.split("-")
                    raise InputError(f"TensorRT rejected shape {tuple(d.shape)} for input {name!r} "
                                     f"(engine built for {self.inputs[name].describe()}, batch up to "
                                     f"{self.max_batch}, dynamic height and width {lo}..{hi} px)")
                check_bound(context.set_tensor_address(name, d.data.ptr), name, d.data.ptr, self.path)
            outputs = {}
            for name, spec in self.outputs.items():
                shape = tuple(context.get_tensor_shape(name))
                if any(s < 0 for s in shape):
                    raise EngineBuildError(f"output {name!r} of {self.path} has a data-dependent "
                                           f"shape {shape}, which the TensorRT backend does not "
                                           f"support; use backend='cuda'")
                out = cp.empty(shape, dtype=spec.dtype)
                check_bound(context.set_tensor_address(name, out.data.ptr), name, out.data.ptr, self.path)
                outputs[name] = out
            if stream is not caller:
                stream.wait_event(caller.record())
            if not context.execute_async_v3(stream.ptr):
                raise EngineBuildError(f"TensorRT failed to run {self.path} (see TensorRT's log)")
            if stream is not caller:
                caller.wait_event(stream.record())
            del device_inputs
        return outputs

    def _release(self) -> None:
        # The context needs its engine and the engine its runtime: release in that order.
        for attr in ("_context", "_engine", "_runtime", "_side_stream"):
            if hasattr(self, attr):
                setattr(self, attr, None)


__all__ = [
    "DEFAULT_WORKSPACE", "DYNAMIC", "DYNAMIC_SPATIAL", "BuildPlan", "EngineBuildError", "EngineCache",
    "EngineCacheWarning", "EngineKey", "LayerFacts", "PRECISIONS", "REDUCED_TYPES", "SIDECAR_FORMAT",
    "TensorRTEngine", "build_engines", "check_bound", "check_record", "check_spatial", "default_cache_dir",
    "has_fast_fp16", "optimisation_profile", "parser_error", "plan_build", "resolve_precision", "sha256_bytes",
    "sha256_file",
]
