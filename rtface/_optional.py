"""Lazy imports of optional packages with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import BackendUnavailable

_EXTRA_OF = {
    "cupy": "gpu",
    "tensorrt": "tensorrt",
    "torch": "train",
    "onnx": "train",
    "ray": "batch",
}


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`BackendUnavailable` naming the pip extra that provides it."""
    try:
        return importlib.import_module(module)
    except Exception as exc:  # ImportError, or a CUDA library that fails to load
        top = module.split(".")[0]
        extra = _EXTRA_OF.get(top)
        hint = f"pip install 'rtface[{extra}]'" if extra else f"pip install {top}"
        raise BackendUnavailable(
            f"{purpose} needs the optional package '{top}', which could not be imported ({exc}). "
            f"Install it with: {hint}"
        ) from exc


def cuda_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False
