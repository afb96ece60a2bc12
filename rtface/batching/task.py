"""One unit of a batch job, as a worker runs it: a whole input, or one segment of a long video.

:func:`run_unit` is what a Ray task executes (and what the one-process runner calls directly): it reconstructs
every frame of its unit with a :class:`rtface.Pipeline` (loaded once per worker process and reused by the next
units) and returns the archive's bytes with the counts. It never raises for a problem of the input: a file that
cannot be read becomes ``status: failed`` with the reason, and the job goes on; a warning of the source (a
truncated video: where it ended) is returned with the result. Problems of the worker itself (the face model or
a backend missing on that machine) are ``fatal``: the driver stops the job and says which machine.
"""

from __future__ import annotations

import io
import os
import socket
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable

from ..errors import AssetError, BackendUnavailable, EngineCacheError, RtfaceError
from .segments import Segment

#: Seconds between two progress reports of a running unit (the driver raises it on large clusters, so that the
#: one progress actor gets about a thousand reports a second at most).
REPORT_EVERY = 0.25


@dataclass(frozen=True)
class Settings:
    """What every unit of a job shares: the pipeline's options (as ``rtface stream`` has them), the frames
    limit, and how long videos are split (seconds of video per segment, seconds of warm-up before each)."""

    backend: str = "auto"
    precision: str = "auto"
    max_faces: int = 4
    detect_every: int | None = None
    smoothing: bool = True
    feedback: bool | None = None
    views: int | None = None
    detail_cap: int | None = None
    weights: str | None = None
    threads: int = 1
    max_frames: int | None = None
    segment: float | None = 60.0
    overlap: float = 4.0
    report_every: float = REPORT_EVERY

    def pipeline_kwargs(self) -> dict[str, Any]:
        from ..pipeline import DETECT_EVERY

        return {"weights": self.weights, "backend": self.backend, "precision": self.precision,
                "max_faces": self.max_faces, "detect_every": self.detect_every or DETECT_EVERY,
                "smoothing": self.smoothing, "feedback": self.feedback, "views": self.views, "threads": self.threads,
                "detail_cap": self.detail_cap}

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("report_every")
        return d


@dataclass
class Unit:
    """A whole input (``segment`` None: the task may answer with a plan of segments instead) or one segment."""

    id: str
    input: str
    source: str
    segment: Segment | None = None


_PIPELINES: dict[tuple, Any] = {}


class _SetupError(RtfaceError):
    """The pipeline cannot be built with the job's options: every unit would fail the same way."""


def pipeline(settings: Settings):
    """This process's pipeline for ``settings`` (built once, reused by later units)."""
    from ..pipeline import Pipeline

    kw = settings.pipeline_kwargs()
    key = tuple(sorted(kw.items()))
    if key not in _PIPELINES:
        _PIPELINES[key] = Pipeline(**kw)
    return _PIPELINES[key]


def _node() -> str:
    return f"{socket.gethostname()} (pid {os.getpid()})"


def _base(unit: Unit) -> dict[str, Any]:
    return {"id": unit.id, "input": unit.input, "source": unit.source, "node": _node(),
            "segment": None if unit.segment is None else unit.segment.number}


def run_unit(unit: Unit, settings: Settings, progress: Any = None) -> dict[str, Any]:
    """Process ``unit``; returns ``status`` (``done``, ``failed`` or ``planned``), ``frames``, ``faces``, ``seconds``,
    ``data`` (the archive's bytes), ``warning``, ``error``, ``fatal``, ``segments`` (a plan), ``total``.

    ``progress``: None, a callable ``(unit_id, frames_done, frames_total)``, or a Ray actor handle with a
    ``report`` method of that signature."""
    t0 = time.perf_counter()
    result = _base(unit)
    report = _reporter(unit.id, progress, settings.report_every)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result.update(_process(unit, settings, report))
        except (AssetError, BackendUnavailable, EngineCacheError, _SetupError) as exc:
            result.update(status="failed", fatal=True, error=f"on {_node()}: {exc}")
        except RtfaceError as exc:
            result.update(status="failed", error=str(exc))
        except Exception as exc:  # a decoder or OS error on a bad file, or a bug: the job goes on
            result.update(status="failed", error=_describe(exc, unit))
    from ..sources import SourceWarning

    notes = [str(w.message) for w in caught if issubclass(w.category, SourceWarning)]
    if notes and result.get("status") == "done":
        result["warning"] = " ".join(notes)
    result["seconds"] = time.perf_counter() - t0
    return result


def _describe(exc: Exception, unit: Unit) -> str:
    import av

    if isinstance(exc, (av.error.FFmpegError, OSError, EOFError)):
        return (f"'{unit.input}' could not be decoded ({type(exc).__name__}: {exc}); check that it plays in a "
                f"media player, or re-encode it (ffmpeg -i IN -c:v libx264 OUT.mp4)")
    return f"internal error on {_node()}: {type(exc).__name__}: {exc} (please report it with the input)"


def _reporter(unit_id: str, progress: Any, every: float) -> Callable[[int, int | None, bool], None]:
    """``report(done, total, final)``, throttled to one call per ``every`` seconds."""
    if progress is None:
        return lambda done, total, final=False: None
    send = progress.report.remote if hasattr(progress, "report") else progress
    last = [0.0]

    def report(done: int, total: int | None, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - last[0] >= every:
            last[0] = now
            try:
                send(unit_id, int(done), None if total is None else int(total))
            except Exception:  # progress is cosmetic; never let it fail a unit
                pass

    return report


def _process(unit: Unit, settings: Settings, report) -> dict[str, Any]:
    from ..sources import IMAGE_EXTENSIONS
    from .segments import frames_for, header, plan

    is_url = "://" in unit.source
    if unit.segment is None and settings.segment and not is_url \
            and os.path.splitext(unit.source)[1].lower() not in IMAGE_EXTENSIONS and os.path.isfile(unit.source):
        try:
            listed, fps = header(unit.source)
        except Exception:  # not a video PyAV opens: the whole-input path reports it
            listed, fps = None, None
        align = settings.pipeline_kwargs()["detect_every"]
        seg_frames = frames_for(settings.segment, fps, align)
        if listed is not None and min(listed, settings.max_frames or listed) > 1.5 * seg_frames:
            segments, _why = plan(unit.source, segment_frames=seg_frames,
                                  overlap_frames=frames_for(settings.overlap, fps, align) if settings.overlap else 0,
                                  align=align, max_frames=settings.max_frames)
            if segments:
                return {"status": "planned", "segments": segments, "fps": fps, "listed": listed,
                        "total": sum(s.frames for s in segments)}
    try:
        pipe = pipeline(settings)
    except (AssetError, BackendUnavailable, EngineCacheError):
        raise
    except RtfaceError as exc:
        raise _SetupError(f"the options do not work: {exc}") from exc
    if unit.segment is None:
        return _whole(unit, settings, pipe, report)
    return _segment(unit, settings, pipe, report)


def _meta(unit: Unit, settings: Settings, pipe, source_info: dict) -> dict[str, Any]:
    from .. import __version__

    return {"input": unit.input, "source": unit.source, "rtface": __version__, "options": settings.describe(),
            "backend": pipe.backend, "precision": pipe.precision, "video": source_info}


def _whole(unit: Unit, settings: Settings, pipe, report) -> dict[str, Any]:
    from ..archive import ArchiveWriter
    from ..sources import open_source

    # live=False: a URL is read like a file (every frame, stream time), not as a camera that drops stale frames
    source = open_source(unit.source, live=False, decode_threads=max(1, settings.threads))
    total = source.num_frames
    if settings.max_frames is not None and total is not None:
        total = min(total, settings.max_frames)
    buf = io.BytesIO()
    writer = ArchiveWriter(buf)
    size = None
    for r in pipe.stream(source, max_frames=settings.max_frames):
        writer.add_frame(r)
        size = size or [r.width, r.height]
        report(writer.frames, total)
    report(writer.frames, writer.frames, True)
    info = {"fps": source.fps, "size": size, "frames_listed": source.num_frames}
    writer.close({**_meta(unit, settings, pipe, info), "segments": [{"number": 0, "first": 0,
                                                                    "last": writer.frames - 1, "warmup": 0}]})
    return {"status": "done", "frames": writer.frames, "faces": writer.faces, "data": buf.getvalue(),
            "total": writer.frames}


def _segment(unit: Unit, settings: Settings, pipe, report) -> dict[str, Any]:
    from .segments import SegmentError, indexed_source, segment_source

    seg = unit.segment
    try:
        return _run_segment(unit, settings, pipe, report, segment_source(unit.source, seg,
                                                                         decode_threads=settings.threads))
    except SegmentError as exc:
        out = _run_segment(unit, settings, pipe, report, indexed_source(unit.source, seg,
                                                                        decode_threads=settings.threads))
        out["note"] = f"decoded from the start of the file: {exc}"
        return out


def _run_segment(unit: Unit, settings: Settings, pipe, report, frames) -> dict[str, Any]:
    """Warm up on frames ``warmup``..``first - 1`` (state only), write ``first``..``last``."""
    import numpy as np

    from ..archive import ArchiveWriter, face_row

    seg = unit.segment
    buf = io.BytesIO()
    writer = ArchiveWriter(buf)
    warm: dict[str, Any] = {}
    size = None
    pipe.reset()
    for frame in frames:
        r = pipe.step(frame.image, frame.index, frame.timestamp, frame.decode_ms)
        size = size or [r.width, r.height]
        if frame.index < seg.first:
            if frame.index == seg.first - 1:  # the state at the cut, compared with the previous segment's
                rows = [face_row(f) for f in r.faces]
                warm = {"warmup_frame": np.int64(frame.index)}
                for k in ("box", "track_id", "landmarks", "pose", "identity", "expression"):
                    warm[f"warmup_{k}"] = np.asarray([row[k] for row in rows]) if rows else np.zeros((0,))
        else:
            writer.add_frame(r)
        report(max(0, frame.index - seg.first + 1), seg.frames)
    if writer.frames != seg.frames:
        from .segments import SegmentError

        raise SegmentError(f"'{unit.source}' gave {writer.frames} of the {seg.frames} frames of segment "
                           f"{seg.number} (frames {seg.first}-{seg.last})")
    report(seg.frames, seg.frames, True)
    info = {"fps": None, "size": size, "frames_listed": None}
    writer.close({**_meta(unit, settings, pipe, info), "segments": [seg.describe()]}, extras=warm)
    return {"status": "done", "frames": writer.frames, "faces": writer.faces, "data": buf.getvalue(),
            "total": seg.frames, "processed": seg.processed}


__all__ = ["Settings", "Unit", "pipeline", "run_unit"]
