"""Threads for Numba kernels that release the GIL: one per core, sleeping when idle (the CPU rasteriser's batches).

Numba's own parallel layer is not used: its OpenMP workers spin after every parallel region and take the cores
from ONNX Runtime's next network (measured on 2 cores, 4 faces at 720p, same run: FineNet 19.0-21.7 ms after an
OpenMP-parallel rasteriser, 15.5-17.3 ms after these threads). Work is split into contiguous ranges, one per
core; the calling thread runs the first. Only work that is split into whole images gains: the posed-mesh kernel
split by vertices waited on the decoder thread for the second core and ran 2-3x slower end to end.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np

_POOL: Any = None
_LOCK = threading.Lock()


def cores() -> int:
    """Physical cores this process may use (:func:`rtface.engines.onnxruntime.physical_cores`)."""
    from .engines.onnxruntime import physical_cores

    return physical_cores()


def _pool() -> Any:
    global _POOL
    with _LOCK:
        if _POOL is None:
            from concurrent.futures import ThreadPoolExecutor

            _POOL = ThreadPoolExecutor(max_workers=max(1, cores() - 1), thread_name_prefix="rtface-worker")
        return _POOL


def split_range(n: int, parts: int) -> list[tuple[int, int]]:
    """``[0, n)`` as at most ``parts`` contiguous, non-empty, nearly equal ranges."""
    k = max(1, min(int(parts), int(n)))
    b = np.linspace(0, n, k + 1).round().astype(int)
    return [(int(lo), int(hi)) for lo, hi in zip(b[:-1], b[1:]) if hi > lo]


def run_ranges(fn: Callable[[int, int], None], n: int, min_size: int = 1) -> None:
    """``fn(lo, hi)`` over ``[0, n)`` split into one range per core (fewer if a range would hold fewer than
    ``min_size`` items); ``fn`` must release the GIL to run in parallel. Exceptions propagate."""
    parts = split_range(n, min(cores(), max(1, n // max(1, min_size))))
    if len(parts) <= 1:
        fn(0, n)
        return
    futures = [_pool().submit(fn, lo, hi) for lo, hi in parts[1:]]
    try:
        fn(*parts[0])
    finally:
        for f in futures:
            f.result()


__all__ = ["cores", "run_ranges", "split_range"]
