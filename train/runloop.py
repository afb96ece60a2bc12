"""Bookkeeping shared by the training loops of phase 1 and phase 2: CPU set-up, running means of the losses,
periodic checkpoints, the time limit and a clean stop on SIGTERM."""

from __future__ import annotations

import signal
import time
from typing import Callable


def configure_cpu(threads: int) -> None:
    """Torch and Numba thread counts for a training process, and no denormal floats.

    Zero-initialised residual branches and the near-zero FineNet residual produce denormal floats, which made
    CPU steps 4-5x slower after a few hundred steps (measured 1.95 s vs 0.40 s per step). Numba's parallel
    rasteriser (in-process data, rendering layer) must not spin against torch's threads.
    """
    import torch

    torch.set_num_threads(max(1, threads))
    torch.set_flush_denormal(True)
    try:
        import numba

        numba.set_num_threads(max(1, min(threads, numba.get_num_threads())))
    except ImportError:
        pass


def start_run(out: str, threads: int, seed: int):
    """Common start of a training command: CPU set-up, torch seed, the run folder, the face model and the path of
    the run's ``ckpt_last.pt``. Returns ``(out, model, last)``."""
    from pathlib import Path

    import torch

    from rtface.face_model import FaceModel

    configure_cpu(threads)
    torch.manual_seed(seed)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    return folder, FaceModel.load(), folder / "ckpt_last.pt"


def stop_on_sigterm() -> None:
    """``kill PID`` raises KeyboardInterrupt in the main thread, so the loop's ``finally`` writes its checkpoint."""

    def _stop(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _stop)


class RunClock:
    """Running means of the logged losses, a checkpoint every ``ckpt_every_s`` seconds and a time limit.

    ``save`` writes the run's ``ckpt_last.pt``; call :meth:`after_step` once per step, and stop the loop when it
    returns True (``max_minutes`` reached; 0 = no limit).
    """

    def __init__(self, save: Callable[[], None], ckpt_every_s: float, max_minutes: float = 0.0):
        self.save = save
        self.ckpt_every_s = float(ckpt_every_s)
        self.max_minutes = float(max_minutes or 0.0)
        self.start = self.last_ckpt = time.time()
        self.avg: dict[str, float] = {}

    @property
    def elapsed(self) -> float:
        """Seconds since the clock started."""
        return time.time() - self.start

    def update(self, losses: dict[str, float]) -> None:
        """Exponential running means (factor 0.9) of the step's losses, for the progress bar."""
        for k, v in losses.items():
            self.avg[k] = v if k not in self.avg else 0.9 * self.avg[k] + 0.1 * v

    def after_step(self, step: int) -> bool:
        """Checkpoint when one is due; True when the time limit is reached (after saying so)."""
        if time.time() - self.last_ckpt >= self.ckpt_every_s:
            self.save()
            self.last_ckpt = time.time()
        if self.max_minutes and self.elapsed > self.max_minutes * 60:
            print(f"\nstopping after {self.max_minutes:g} min at step {step}", flush=True)
            return True
        return False
