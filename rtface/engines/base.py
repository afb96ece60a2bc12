"""The one interface every network runtime implements, and the input checks they share.

An :class:`Engine` runs one ONNX network: ``run({"input": array, ...}) -> {"output": array, ...}``.
CPU engines take and return NumPy arrays. CUDA engines return CuPy arrays on the current CuPy
device and stream; they take CuPy arrays (used in place, by pointer) or NumPy arrays (uploaded).
Tensor layouts and units are whatever the network defines; engines only move and check arrays.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError, RtfaceError

#: Size of a dimension that is only known when the network runs (the batch, usually).
DYNAMIC = -1


@dataclass(frozen=True)
class TensorSpec:
    """Shape and element type of one network input or output.

    ``shape`` holds ``-1`` (:data:`DYNAMIC`) for every dimension that is not fixed by the network.
    """

    shape: tuple[int, ...]
    dtype: np.dtype

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype))

    @property
    def rank(self) -> int:
        return len(self.shape)

    def describe(self) -> str:
        """Human-readable form such as ``(N, 3, 200, 200) float32`` (N: the dynamic batch)."""
        dims = ["N" if i == 0 and d == DYNAMIC else ("?" if d == DYNAMIC else str(d))
                for i, d in enumerate(self.shape)]
        inner = ", ".join(dims) + ("," if len(dims) == 1 else "")
        return f"({inner}) {self.dtype.name}"


def is_cupy_array(array: Any) -> bool:
    """True for a CuPy ndarray, checked without importing CuPy."""
    return type(array).__module__.split(".")[0] == "cupy"


#: Alignment, in bytes, of every device address a GPU engine binds: TensorRT requires "at least 256-byte
#: alignment" of the pointers given to ``IExecutionContext::setTensorAddress``, and vectorised CUDA kernels
#: (ONNX Runtime's too) may fault on less. CuPy's allocations are 512-byte aligned; views are not
#: (``params[1:]`` of a float32 (N, 6) array starts 24 bytes in).
DEVICE_ALIGNMENT = 256


def bindable(address: int, c_contiguous: bool, alignment: int = DEVICE_ALIGNMENT) -> bool:
    """Whether a device array at ``address`` (bytes) can be bound by pointer as it is: C-contiguous and
    ``alignment``-byte aligned. Anything else must be copied into a fresh allocation first."""
    return bool(c_contiguous) and int(address) % int(alignment) == 0


def device_input(cp: Any, array: Any) -> Any:
    """``array`` (NumPy or CuPy) as a CuPy array that can be bound by pointer (:func:`bindable`): used in
    place when it already is one, else copied into a fresh (aligned, C-order) allocation on the current
    stream."""
    d = cp.asarray(array)
    if not bindable(d.data.ptr, d.flags.c_contiguous):
        d = cp.array(d, order="C", copy=True)
    return d


class Engine(abc.ABC):
    """A loaded network, ready to run.

    Attributes:
        name: the backend, as ``load_engine`` spells it: ``"cpu"``, ``"cuda"`` or ``"tensorrt"``.
        device: where ``run`` takes and returns arrays: ``"cpu"`` (NumPy) or ``"cuda"`` (CuPy).
        inputs, outputs: name -> :class:`TensorSpec`, in the network's order.
        max_batch: largest batch (size of a dynamic first dimension) ``run`` accepts.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``: the arithmetic the engine was built for
            (``"int8"``: a QDQ-quantised ONNX file, see ``train/quantize.py``).
        path: the ONNX file the engine was loaded from.

    Engines are not thread-safe: use one engine per thread. ``close()`` releases the runtime's
    resources; an engine is also a context manager.
    """

    name: str
    device: str

    def __init__(self, *, inputs: Mapping[str, TensorSpec], outputs: Mapping[str, TensorSpec],
                 max_batch: int, precision: str, path: Any) -> None:
        if int(max_batch) < 1:
            raise InputError(f"max_batch must be at least 1, got {max_batch}")
        self.inputs: dict[str, TensorSpec] = dict(inputs)
        self.outputs: dict[str, TensorSpec] = dict(outputs)
        self.max_batch = int(max_batch)
        self.precision = precision
        self.path = path
        self._closed = False

    # -- public ----------------------------------------------------------------------------------
    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Run the network once on a batch.

        ``feeds`` maps every input name to an array of the input's rank, static dimensions and
        element kind (floating inputs accept any float array, converted to the network's float type;
        integer inputs accept integers that convert without loss). Raises :class:`InputError`
        otherwise. Returns output name -> array (NumPy on CPU engines, CuPy on CUDA engines).
        """
        if self._closed:
            raise RtfaceError(f"{self!r} is closed; load the engine again to run it")
        return self._run(self.check_feeds(feeds))

    def close(self) -> None:
        """Release the runtime's resources. Calling it again does nothing."""
        if not self._closed:
            self._closed = True
            self._release()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        path = getattr(self, "path", None)
        return f"<{type(self).__name__} {getattr(self, 'name', '?')} {path}>"

    # -- for subclasses ----------------------------------------------------------------------------
    @abc.abstractmethod
    def _run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """Run on feeds that :meth:`check_feeds` accepted (names, ranks, dims and dtypes correct)."""

    @abc.abstractmethod
    def _release(self) -> None:
        """Free the runtime objects; called once by :meth:`close`."""

    def check_feeds(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``feeds`` against :attr:`inputs`; return them converted to the input dtypes.

        Arrays keep their library (NumPy stays NumPy, CuPy stays CuPy); only the dtype changes.
        """
        if not isinstance(feeds, Mapping):
            raise InputError(
                f"Engine.run takes a dict mapping input names to arrays, got {type(feeds).__name__}; "
                f"inputs are {self._signature(self.inputs)}")
        missing = [n for n in self.inputs if n not in feeds]
        extra = [str(n) for n in feeds if n not in self.inputs]
        if missing or extra:
            parts = []
            if missing:
                parts.append("missing " + ", ".join(repr(n) for n in missing))
            if extra:
                parts.append("unknown " + ", ".join(repr(n) for n in extra))
            raise InputError(f"wrong input names ({'; '.join(parts)}): the network "
                             f"{self.path} takes {self._signature(self.inputs)}")
        return {name: self._check_one(name, spec, feeds[name]) for name, spec in self.inputs.items()}

    # -- checks ------------------------------------------------------------------------------------
    def _check_one(self, name: str, spec: TensorSpec, value: Any) -> Any:
        if is_cupy_array(value):
            if self.device != "cuda":
                raise InputError(
                    f"input {name!r} is a CuPy array but the {self.name} engine runs on the CPU; "
                    f"pass a NumPy array (cupy.asnumpy) or load the engine with a CUDA backend")
            array = value
        elif isinstance(value, np.ndarray):
            array = value
        else:
            array = np.asarray(value)
        self._check_shape(name, spec, tuple(array.shape))
        return self._convert_dtype(name, spec, array)

    def _check_shape(self, name: str, spec: TensorSpec, shape: tuple[int, ...]) -> None:
        expected = spec.describe()
        if len(shape) != spec.rank:
            raise InputError(f"input {name!r} has {len(shape)} dimensions {shape}, the network "
                             f"expects {spec.rank}: {expected}")
        for axis, (want, got) in enumerate(zip(spec.shape, shape)):
            if want != DYNAMIC and got != want:
                raise InputError(f"input {name!r} has shape {shape}, the network expects "
                                 f"{expected} (dimension {axis} must be {want})")
        if spec.rank and spec.shape[0] == DYNAMIC:
            batch = shape[0]
            if batch < 1:
                raise InputError(f"input {name!r} has an empty batch {shape}; skip the call when "
                                 f"there is nothing to run")
            if batch > self.max_batch:
                raise InputError(
                    f"input {name!r} has batch {batch}, above this engine's max_batch "
                    f"{self.max_batch}; split the batch or load the engine with a larger max_batch")

    def _convert_dtype(self, name: str, spec: TensorSpec, array: Any) -> Any:
        have, want = np.dtype(array.dtype), spec.dtype
        if have == want:
            return array
        if want.kind == "f" and have.kind == "f":
            return array.astype(want)
        if want.kind in "iu" and have.kind in "iu" and np.can_cast(have, want, casting="safe"):
            return array.astype(want)
        hint = ""
        if want.kind == "f" and have.kind in "iub":
            hint = (f"; integer and boolean arrays are not converted (an image must be scaled as the "
                    f"network expects): convert it yourself, e.g. x.astype(np.{want.name})")
        raise InputError(f"input {name!r} has dtype {have.name}, the network expects "
                         f"{want.name}{hint}")

    @staticmethod
    def _signature(specs: Mapping[str, TensorSpec]) -> str:
        return ", ".join(f"{n!r} {s.describe()}" for n, s in specs.items()) or "no inputs"
