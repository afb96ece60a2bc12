"""Where the units of a batch job run: Ray tasks (:class:`RayRunner`) or this process (:class:`LocalRunner`).

Both have the same small interface for the driver: ``submit(unit, settings)``, ``wait(timeout)`` -> finished
``(unit id, result)`` pairs, ``progress()`` -> unit id -> ``(frames done, frames total)`` of running units,
``slots`` (units that run at once), ``description``, ``cancel()`` and ``close()``.

Ray: every unit is one task (``num_cpus`` = the task's threads, ``num_gpus`` as asked) running
:func:`rtface.batching.task.run_unit`. A task whose worker process dies (killed, out of memory, a machine lost)
is retried by Ray (:data:`MAX_RETRIES` times); its result is the one the driver writes, so an input is neither
lost nor written twice. Errors of the input never raise in the task (they come back as ``failed``), so Ray
retries only system failures. Running units report their frames to a small progress actor.
"""

from __future__ import annotations

import collections
import math
import os
import sys
from typing import Any, Callable

from .._optional import require
from .task import Settings, Unit, run_unit

#: Times Ray re-runs a unit whose worker process died.
MAX_RETRIES = 3
#: Environment variables of the driver that a cluster's workers get too (when set): where the assets, weights
#: and cache are, and offline mode. Their paths must be valid on every machine.
PASSED_ENV = ("RTFACE_ASSETS", "RTFACE_WEIGHTS", "RTFACE_CACHE", "RTFACE_OFFLINE")


class LocalRunner:
    """Units one after another in this process (no Ray)."""

    slots = 1

    def __init__(self, on_progress: Callable[[], None] | None = None, reason: str = "") -> None:
        self._queue: collections.deque = collections.deque()
        self._progress: dict[str, tuple[int, int | None]] = {}
        self._on_progress = on_progress
        self.description = "one process" + (f" ({reason})" if reason else "")

    def submit(self, unit: Unit, settings: Settings, first: bool = False) -> None:
        (self._queue.appendleft if first else self._queue.append)((unit, settings))

    def _report(self, unit_id: str, done: int, total: int | None) -> None:
        self._progress[unit_id] = (done, total)
        if self._on_progress is not None:
            self._on_progress()

    def wait(self, timeout: float) -> list[tuple[str, dict]]:
        if not self._queue:
            return []
        unit, settings = self._queue.popleft()
        result = run_unit(unit, settings, self._report)
        self._progress.pop(unit.id, None)
        return [(unit.id, result)]

    def progress(self) -> dict[str, tuple[int, int | None]]:
        return dict(self._progress)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def cancel(self) -> None:
        self._queue.clear()

    def close(self) -> None:
        pass


class ProgressBoard:
    """Ray actor: the frames each running unit has done (units report, the driver reads)."""

    def __init__(self) -> None:
        self.units: dict[str, tuple[int, int | None]] = {}

    def report(self, unit_id: str, done: int, total: int | None) -> None:
        self.units[unit_id] = (done, total)

    def snapshot(self) -> dict[str, tuple[int, int | None]]:
        return dict(self.units)

    def forget(self, unit_id: str) -> None:
        self.units.pop(unit_id, None)


def ray_module() -> Any:
    """Ray, or :class:`rtface.errors.BackendUnavailable` naming the extra."""
    return require("ray", "rtface batch on several processes or machines")


class RayRunner:
    """Units as Ray tasks: a local Ray started here (``address`` None; ``workers`` tasks at once, default one per
    ``cpus_per_task`` CPUs), or an existing cluster (``address``: ``auto``, ``HOST:PORT``, ``ray://HOST:PORT``).
    A Ray already initialised in this process is used as it is (and left running)."""

    def __init__(self, address: str | None = None, workers: int | None = None, cpus_per_task: float = 1,
                 gpus_per_task: float = 0.0) -> None:
        ray = ray_module()
        self.ray = ray
        self.owns = not ray.is_initialized()
        if self.owns:
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "error"}
            if address:
                env = {k: os.environ[k] for k in PASSED_ENV if os.environ.get(k)}
                if env:
                    kw["runtime_env"] = {"env_vars": env}
                ray.init(address=address, **kw)
            else:
                if workers:
                    kw["num_cpus"] = int(math.ceil(workers * cpus_per_task))
                ray.init(**kw)
        res = ray.cluster_resources()
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        cpus = float(res.get("CPU", 0))
        gpus = float(res.get("GPU", 0))
        slots = int(cpus // cpus_per_task) if cpus_per_task else 1
        if gpus_per_task:
            slots = min(slots, int(gpus // gpus_per_task))
        if slots < 1:
            self.close()
            from ..errors import InputError

            need = f"{cpus_per_task:g} CPUs" + (f" and {gpus_per_task:g} GPUs" if gpus_per_task else "")
            raise InputError(f"the Ray cluster has {cpus:g} CPUs and {gpus:g} GPUs, a task needs {need}: lower "
                             f"--cpus-per-task/--gpus-per-task or add machines")
        self.slots = min(slots, workers) if workers else slots
        where = address or "local"
        self.description = (f"Ray ({where}: {nodes} node{'s' if nodes != 1 else ''}, {cpus:g} CPUs"
                            f"{f', {gpus:g} GPUs' if gpus else ''}; {self.slots} task{'s' if self.slots != 1 else ''}"
                            f" at a time)")
        self._task = ray.remote(run_unit).options(num_cpus=cpus_per_task, num_gpus=gpus_per_task or 0,
                                                  max_retries=MAX_RETRIES, retry_exceptions=False)
        self._board = ray.remote(num_cpus=0)(ProgressBoard).remote()
        self._pending: dict[Any, str] = {}
        self._queue: collections.deque = collections.deque()

    def submit(self, unit: Unit, settings: Settings, first: bool = False) -> None:
        (self._queue.appendleft if first else self._queue.append)((unit, settings))
        self._launch()

    def _launch(self) -> None:
        while self._queue and len(self._pending) < 2 * self.slots:  # a queued task behind each running one
            unit, settings = self._queue.popleft()
            self._pending[self._task.remote(unit, settings, self._board)] = unit.id

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._queue)

    def wait(self, timeout: float) -> list[tuple[str, dict]]:
        ray = self.ray
        if not self._pending:
            return []
        ready, _ = ray.wait(list(self._pending), num_returns=len(self._pending), timeout=timeout)
        done = []
        for ref in ready:
            unit_id = self._pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exc:  # the task's worker died more than MAX_RETRIES times
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                result = {"id": unit_id, "status": "failed",
                          "error": f"the worker process running it died {MAX_RETRIES + 1} times ({first}); if the "
                                   f"machines run out of memory, run fewer tasks per machine (--cpus-per-task)"}
            self._board.forget.remote(unit_id)
            done.append((unit_id, result))
        self._launch()
        return done

    def progress(self) -> dict[str, tuple[int, int | None]]:
        try:
            snap = self.ray.get(self._board.snapshot.remote(), timeout=5)
        except Exception:
            return {}
        return {k: v for k, v in snap.items() if k in self._pending.values()}

    def cancel(self) -> None:
        self._queue.clear()
        for ref in list(self._pending):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:
                pass
        self._pending.clear()

    def close(self) -> None:
        if self.owns and self.ray.is_initialized():
            self.ray.shutdown()


def make_runner(address: str | None, workers: int | None, cpus_per_task: float, gpus_per_task: float,
                on_progress: Callable[[], None], note: Callable[[str], None]) -> Any:
    """The runner of a job: in this process when ``workers == 0`` or Ray is missing (and it says so), else Ray."""
    if workers == 0:
        return LocalRunner(on_progress, "--workers 0")
    try:
        ray_module()
    except ImportError:
        if address:
            raise
        note(f"Ray is not installed (pip install 'rtface[batch]'): the inputs run one after another in this "
             f"process ({sys.executable})")
        return LocalRunner(on_progress, "Ray not installed")
    return RayRunner(address, workers, cpus_per_task, gpus_per_task)


__all__ = ["MAX_RETRIES", "PASSED_ENV", "LocalRunner", "ProgressBoard", "RayRunner", "make_runner"]
