"""``rtface.batch(inputs, out=DIR)``: every video and image of an archive reconstructed, one archive file each.

The driver (this process) expands the inputs (:mod:`.inputs`), skips those the manifest has ``done``
(:mod:`.manifest`), hands one unit per input to the runner (:mod:`.runners`: Ray tasks, or this process), and
writes what comes back: a whole input's archive is written atomically under its name; the segments of a long
video (:mod:`.segments`) go to ``DIR/.rtface-parts/`` until the last one is in, then are joined in order
(:mod:`.join`, on a thread, so the driver keeps feeding the workers) into the archive. Each finished input
appends its manifest line. A stopped job leaves only files under hidden names (``.rtface-parts/``,
``.NAME.*.tmp``), removed by the next run; an archive under its final name is always complete.

Everything that comes back from the workers passes through the driver: that is what lets a job write to a
folder the workers cannot see, and what bounds it (``docs/batch.md``: scaling).
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import InputError, RtfaceError
from .inputs import Item, expand, output_names
from .manifest import Manifest
from .task import REPORT_EVERY, Settings, Unit

PARTS = ".rtface-parts"


@dataclass
class BatchResult:
    """What a job did. ``records``: the manifest lines of this job's inputs (input order)."""

    out: Path
    records: list[dict] = field(default_factory=list)
    skipped_done: int = 0
    duplicates: list[str] = field(default_factory=list)
    seconds: float = 0.0
    runner: str = ""

    @property
    def manifest(self) -> Path:
        return self.out / "manifest.jsonl"

    @property
    def done(self) -> list[dict]:
        return [r for r in self.records if r["status"] == "done"]

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r["status"] == "failed"]

    @property
    def frames(self) -> int:
        return sum(r.get("frames", 0) for r in self.done)

    @property
    def faces(self) -> int:
        return sum(r.get("faces", 0) for r in self.done)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        """A few lines for people: counts, speed, failures and warnings one line each, the manifest."""
        n = len(self.records) + self.skipped_done
        parts = [f"{len(self.done)} done"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        if self.skipped_done:
            parts.append(f"{self.skipped_done} skipped (done before; --force redoes them)")
        if self.duplicates:
            parts.append(f"{len(self.duplicates)} given twice (run once)")
        fps = self.frames / self.seconds if self.seconds > 0 else 0.0
        lines = [f"{n} input{'s' if n != 1 else ''}: {', '.join(parts)}"]
        if self.done:
            lines.append(f"{self.frames} frames, {self.faces} faces in {self.seconds:.1f} s ({fps:.1f} frames/s) on "
                         f"{self.runner}")
        lines += [f"failed: {r['input']}: {r.get('error', '')}" for r in self.failed]
        lines += [f"warning: {r['input']}: {r['warning']}" for r in self.done if r.get("warning")]
        lines.append(f"manifest: {self.manifest}")
        return "\n".join(lines)


def prepare_out(out: str | os.PathLike) -> Path:
    """Create the output folder (parents too) and check that files can be written in it."""
    import tempfile

    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--out {folder} is a file; name a folder (it is created if needed)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".rtface-write-test-"):
            pass
    except OSError as exc:
        raise InputError(f"cannot write to the output folder {folder} ({exc.strerror or exc}); choose a folder "
                         f"you can write to with --out") from exc
    return folder


def _clean(folder: Path) -> None:
    """Remove what a stopped job left under hidden names."""
    shutil.rmtree(folder / PARTS, ignore_errors=True)
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    for tmp in folder.glob("manifest.jsonl.*.tmp"):
        tmp.unlink(missing_ok=True)


def _header_frames(item: Item, max_frames: int | None) -> int | None:
    from ..sources import IMAGE_EXTENSIONS
    from .segments import header

    if item.is_url:
        return None
    if Path(item.source).suffix.lower() in IMAGE_EXTENSIONS:
        return 1
    try:
        n = header(item.source)[0]
    except Exception:
        return None
    return None if n is None else min(n, max_frames or n)


class _Job:
    """The state of one run of :func:`batch`."""

    def __init__(self, folder: Path, manifest: Manifest, names: dict[str, str], settings: Settings,
                 bar: Any) -> None:
        self.folder, self.manifest, self.names, self.settings, self.bar = folder, manifest, names, settings, bar
        self.items: dict[str, Item] = {}  # unit-id prefix (input number) -> item
        self.totals: dict[str, int | None] = {}  # input number -> frames expected
        self.finished_frames = 0
        self.records: dict[str, dict] = {}  # input number -> manifest line
        self.plans: dict[str, dict] = {}  # input number -> {segments, parts, seconds, faces, frames, warning, fps}
        self.lock = threading.Lock()
        self.joins = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rtface-join")
        self.join_futures: list[concurrent.futures.Future] = []
        self.failed = 0

    # ------------------------------------------------------------------------------------ records
    def record(self, key: str, **fields: Any) -> None:
        item = self.items[key]
        rec = {"input": item.input, "source": item.source, **fields}
        with self.lock:
            self.records[key] = self.manifest.append(rec)
            if rec["status"] == "failed":
                self.failed += 1

    def write_whole(self, key: str, result: dict) -> None:
        from ..archive import atomic_file

        name = self.names[self.items[key].source]
        with atomic_file(self.folder / name) as fh:
            fh.write(result["data"])
        self.record(key, status="done", frames=result["frames"], faces=result["faces"],
                    seconds=round(result["seconds"], 3), output=name, warning=result.get("warning"), segments=1,
                    node=result.get("node"))

    def add_part(self, key: str, number: int, result: dict) -> bool:
        """Store a segment's archive; True when it was the last one missing."""
        from ..archive import atomic_file

        plan = self.plans[key]
        if plan.get("failed"):
            return False
        parts = self.folder / PARTS / self.names[self.items[key].source]
        with atomic_file(parts / f"{number:05d}.npz", tmp_dir=parts) as fh:
            fh.write(result["data"])
        plan["parts"][number] = parts / f"{number:05d}.npz"
        plan["seconds"] += result["seconds"]
        if result.get("warning"):
            plan["warnings"].append(result["warning"])
        return len(plan["parts"]) == len(plan["segments"])

    def join(self, key: str) -> None:
        from ..archive import atomic_file
        from .join import join

        plan = self.plans[key]
        item = self.items[key]
        name = self.names[item.source]
        parts = [plan["parts"][k] for k in sorted(plan["parts"])]
        first = parts[0]
        try:
            from ..archive import read_extras

            meta = read_extras(first)[0]
            for k in ("format", "version", "frames", "faces", "absent", "fields", "segments"):
                meta.pop(k, None)
            meta["video"] = {**meta.get("video", {}), "fps": plan.get("fps"), "frames_listed": plan.get("listed")}
            with atomic_file(self.folder / name, tmp_dir=first.parent) as fh:
                segments = join(parts, fh, meta)
            from ..archive import load

            with load(self.folder / name) as a:
                frames, faces = len(a), a.faces
        except Exception as exc:
            self.record(key, status="failed", error=f"joining the {len(parts)} segments failed: {exc}",
                        seconds=round(plan["seconds"], 3), segments=len(parts))
            return
        finally:
            shutil.rmtree(first.parent, ignore_errors=True)
        joins = [s["join"] for s in segments if s.get("join")]
        worst = max((j["landmarks_px"] for j in joins), default=0.0)
        self.record(key, status="done", frames=frames, faces=faces, seconds=round(plan["seconds"], 3),
                    output=name, warning=" ".join(plan["warnings"]) or None, segments=len(parts),
                    join_landmarks_px=round(worst, 4))

    # ------------------------------------------------------------------------------------ progress
    def frames_done(self, running: dict[str, tuple[int, int | None]]) -> tuple[int, int]:
        done = self.finished_frames + sum(d for d, _ in running.values())
        totals = dict(self.totals)
        for unit_id, (_, total) in running.items():
            key = unit_id.split("/")[0]
            if "/" not in unit_id and total is not None:
                totals[key] = total
        return done, sum(t for t in totals.values() if t)

    def refresh(self, running: dict[str, tuple[int, int | None]], inputs: int) -> None:
        if self.bar is None:
            return
        done, total = self.frames_done(running)
        if total != self.bar.total:
            self.bar.total = max(total, done)
        self.bar.update(done - self.bar.n)
        finished = len(self.records)
        self.bar.set_postfix_str(f"inputs {finished}/{inputs}" + (f", {self.failed} failed" if self.failed else ""),
                                 refresh=False)
        self.bar.refresh()


def batch(inputs: Iterable[str | os.PathLike] | str | os.PathLike, out: str | os.PathLike, *,
          address: str | None = None, workers: int | None = None, cpus_per_task: float = 1,
          gpus_per_task: float = 0.0, force: bool = False, progress: bool = True, max_frames: int | None = None,
          segment: float | None = 60.0, overlap: float = 4.0, backend: str = "auto", precision: str = "auto",
          max_faces: int = 4, detect_every: int | None = None, smoothing: bool = True, feedback: bool | None = None,
          views: int | None = None, detail_cap: int | None = None, weights: str | os.PathLike | None = None,
          note: Callable[[str], None] | None = None) -> BatchResult:
    """Reconstruct every frame of every input into ``out/<name>.npz`` (read with :func:`rtface.load`), on Ray.

    Args:
        inputs: videos, images, folders (recursively), glob patterns, URLs, text lists (:mod:`.inputs`).
        out: the output folder (created); it holds one archive per input and ``manifest.jsonl``.
        address: None: a local Ray on this machine (started and stopped here; a Ray already initialised in this
            process is used as it is); ``"auto"``, ``"HOST:PORT"`` or ``"ray://HOST:PORT"``: an existing cluster.
            Without Ray installed, the job runs in this process and says so.
        workers: tasks at once (a local Ray gets ``workers * cpus_per_task`` CPUs); None: as many as the CPUs
            allow; 0: no Ray, everything in this process.
        cpus_per_task: CPU threads of each task (ONNX Runtime and the decoder); gpus_per_task: GPUs of each task
            (a fraction shares a GPU, e.g. 0.25).
        force: redo inputs the manifest has ``done`` (default: skip them).
        progress: one progress bar over all frames on stderr, notes on stderr.
        max_frames: frames per input at most.
        segment: seconds of video per segment of a long video (None: never split); overlap: seconds of warm-up
            before each segment (:mod:`.segments`).
        backend, precision, max_faces, detect_every, smoothing, feedback, views, detail_cap, weights: as
            ``rtface stream``
            (:class:`rtface.Pipeline`).
        note: where one-line notes go (default: stderr, unless ``progress`` is False).

    Returns a :class:`BatchResult`; inputs that failed are in its ``failed`` and the manifest, never raised.
    Raises :class:`rtface.errors.InputError` before doing anything for bad options, no usable input at all, or
    an output folder that cannot be written.
    """
    t_start = time.perf_counter()
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = list(inputs)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise InputError(f"workers must be a non-negative integer (0: no Ray), got {workers!r}")
    if not cpus_per_task or cpus_per_task <= 0 or gpus_per_task < 0:
        raise InputError(f"cpus_per_task must be > 0 and gpus_per_task >= 0, got {cpus_per_task!r}, "
                         f"{gpus_per_task!r}")
    if segment is not None and not segment > 0:
        raise InputError(f"segment must be a positive number of seconds (or None: never split), got {segment!r}")
    if not overlap >= 0:
        raise InputError(f"overlap must be >= 0 seconds, got {overlap!r}")
    if max_frames is not None and (isinstance(max_frames, bool) or int(max_frames) < 1):
        raise InputError(f"max_frames must be a positive integer, got {max_frames!r}")
    if note is None:
        note = (lambda text: print(f"rtface: note: {text}", file=sys.stderr)) if progress else (lambda text: None)
    if not inputs:
        raise InputError("no inputs: name videos, images, folders, patterns or a text list of them")
    expansion = expand(inputs)
    if not expansion.runnable:
        shown = "; ".join(i.error or "" for i in expansion.items[:3])
        raise InputError(f"nothing to do: {shown}" + (" ..." if len(expansion.items) > 3 else ""))
    folder = prepare_out(out)
    _clean(folder)
    manifest = Manifest(folder)
    items = expansion.items
    names = output_names(items, manifest.outputs())
    settings = Settings(backend=backend, precision=precision, max_faces=max_faces, detect_every=detect_every,
                        smoothing=bool(smoothing), feedback=feedback, views=views, detail_cap=detail_cap,
                        weights=None if weights is None else os.fspath(weights),
                        threads=max(1, int(math.ceil(cpus_per_task))), max_frames=max_frames, segment=segment,
                        overlap=overlap)
    result = BatchResult(folder, duplicates=list(expansion.duplicates))
    todo: list[tuple[str, Item]] = []
    job_items: dict[str, Item] = {}
    for n, item in enumerate(items):
        key = str(n)
        job_items[key] = item
        if item.error is None and not force and manifest.done(item.source):
            result.skipped_done += 1
            continue
        todo.append((key, item))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=0, unit="frame", desc="rtface batch", dynamic_ncols=True, file=sys.stderr)
    job = _Job(folder, manifest, names, settings, bar)
    job.items = job_items
    for key, item in todo:
        if item.error is not None:
            job.record(key, status="failed", error=item.error)
    runnable = [(k, i) for k, i in todo if i.error is None]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for (key, _), n in zip(runnable, pool.map(lambda ki: _header_frames(ki[1], max_frames), runnable)):
            job.totals[key] = n
    runner = None
    result.runner = "nothing to run"
    try:
        if runnable:
            runner = _start_runner(address, workers, cpus_per_task, gpus_per_task, job, len(todo), note)
            result.runner = runner.description
            settings = job.settings = replace(settings, report_every=max(REPORT_EVERY, runner.slots / 1000.0))
            for key, item in runnable:
                runner.submit(Unit(key, item.input, item.source), settings)
            _drive(runner, job, settings, len(todo))
        for future in job.join_futures:
            future.result()
        if bar is not None:
            bar.total = bar.n  # inputs that failed or ended early leave no frames to wait for
            bar.refresh()
    except BaseException:
        if runner is not None:
            runner.cancel()
        raise
    finally:
        job.joins.shutdown(wait=True)
        if runner is not None:
            runner.close()
        if bar is not None:
            bar.close()
        if len(manifest.records):
            manifest.compact([item.source for item in items])
        shutil.rmtree(folder / PARTS, ignore_errors=True)
    result.records = [job.records[k] for k, _ in todo if k in job.records]
    result.seconds = time.perf_counter() - t_start
    return result


def _start_runner(address, workers, cpus_per_task, gpus_per_task, job: _Job, inputs: int, note) -> Any:
    from .runners import make_runner

    holder: dict[str, Any] = {}

    def on_progress() -> None:
        if "runner" in holder:
            job.refresh(holder["runner"].progress(), inputs)

    runner = make_runner(address, workers, cpus_per_task, gpus_per_task, on_progress, note)
    holder["runner"] = runner
    return runner


def _drive(runner: Any, job: _Job, settings: Settings, inputs: int) -> None:
    """Collect results until every unit is in, submitting segments as plans come back."""
    while runner.pending:
        finished = runner.wait(0.5)
        for unit_id, result in finished:
            key, _, seg = unit_id.partition("/")
            if result.get("fatal"):
                raise RtfaceError(f"{result['error']} (stopped the job; fix this machine's setup and run the same "
                                  f"command again: finished inputs are kept)")
            if not seg:
                _whole_result(runner, job, settings, key, result)
            else:
                _segment_result(job, key, int(seg), result)
        job.refresh(runner.progress(), inputs)


def _whole_result(runner: Any, job: _Job, settings: Settings, key: str, result: dict) -> None:
    item = job.items[key]
    if result["status"] == "planned":
        segments = result["segments"]
        job.totals[key] = result["total"]
        job.plans[key] = {"segments": segments, "parts": {}, "seconds": result["seconds"], "warnings": [],
                          "fps": result.get("fps"), "listed": result.get("listed")}
        for seg in reversed(segments):  # ahead of the inputs not started yet: a long video finishes early
            runner.submit(Unit(f"{key}/{seg.number}", item.input, item.source, seg), settings, first=True)
        return
    if result["status"] == "done":
        job.finished_frames += result["frames"]
        job.totals[key] = result["frames"]
        job.write_whole(key, result)
    else:
        job.totals[key] = 0
        job.record(key, status="failed", error=result.get("error"), seconds=round(result.get("seconds", 0), 3))


def _segment_result(job: _Job, key: str, number: int, result: dict) -> None:
    plan = job.plans[key]
    if result["status"] != "done":
        if not plan.get("failed"):
            plan["failed"] = True
            seg = plan["segments"][number]
            job.record(key, status="failed", segments=len(plan["segments"]),
                       error=f"segment {number} (frames {seg.first}-{seg.last}): {result.get('error')}")
            shutil.rmtree(job.folder / PARTS / job.names[job.items[key].source], ignore_errors=True)
        return
    job.finished_frames += result["frames"]
    if job.add_part(key, number, result):
        job.join_futures.append(job.joins.submit(job.join, key))


__all__ = ["BatchResult", "batch", "prepare_out"]
