"""What every benchmark reports besides its own figures: the machine it ran on, and the JSON file."""

from __future__ import annotations

import json
import os
import platform
from typing import Any


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what :mod:`platform` knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """CPU model, logical CPUs (``cores``, ``cpus``), physical cores (= ONNX Runtime's default threads), Numba
    threads, Python, the available network backends and, where CuPy sees one, the GPU."""
    from rtface._optional import cuda_available
    from rtface.engines import available_backends, physical_cores

    info: dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count(), "cpus": os.cpu_count(),
                            "physical_cores": physical_cores(), "ort_threads": physical_cores(),
                            "python": platform.python_version(), "backends": available_backends(), "gpu": None}
    try:
        import numba

        info["numba_threads"] = numba.get_num_threads()
        info["numba"] = numba.__version__
    except ImportError:
        pass
    if cuda_available():
        import cupy as cp

        name = cp.cuda.runtime.getDeviceProperties(0)["name"]
        info["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        info["cupy"] = cp.__version__
    return info


def write_json(path: str | os.PathLike | None, result: dict) -> None:
    """Write ``result`` to ``path`` (nothing when ``path`` is None)."""
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)
