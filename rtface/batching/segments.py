"""Long videos in parallel: split a video into segments, and decode one segment from the nearest keyframe.

A video longer than 1.5 segment lengths is split into ``round(frames / length)`` segments of equal length (a
multiple of the detector period, so that each segment's detections fall on the frames a sequential run would
detect on). Each segment is processed by its own task: it decodes from a **warm-up** frame ``overlap`` frames
before its first frame, runs the pipeline over the warm-up frames only to set the tracker's and the smoother's
state (their results are not written), then writes its own frames. The join renumbers track ids across
segments and reports how closely the warm-up agreed with the previous segment at the cut
(:mod:`rtface.batching.join`).

Seeking: :func:`plan` reads the packets of the video once (no decoding: a fast pass over the file) and takes
each frame's presentation timestamp (pts) in order, so frame ``i`` is the ``i``-th smallest pts, exactly as a
sequential decode counts frames. :func:`segment_source` seeks to the keyframe at or before the warm-up frame,
decodes, drops the frames before the warm-up, and checks every frame's pts against the plan. Videos whose
packets do not give one distinct pts per listed frame (damaged, truncated, variable streams FFmpeg cannot
index) are not split: they run as one sequential task, which keeps every frame that decodes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..errors import SourceError


class SegmentError(SourceError):
    """Seeking into a video did not give the frames the plan expected (the task then decodes from the start)."""


@dataclass
class Segment:
    """One part of a video: frames ``first``..``last`` (inclusive) are written; decoding starts at ``warmup``.

    pts: presentation timestamps (stream time base) of frames ``warmup``..``last``, in order.
    """

    number: int
    count: int
    first: int
    last: int
    warmup: int
    pts: np.ndarray

    @property
    def frames(self) -> int:
        """Frames written."""
        return self.last - self.first + 1

    @property
    def processed(self) -> int:
        """Frames processed (warm-up included)."""
        return self.last - self.warmup + 1

    def describe(self) -> dict:
        return {"number": self.number, "first": self.first, "last": self.last, "warmup": self.warmup}


def header(path: str) -> tuple[int | None, float | None]:
    """(frames the container lists or its duration implies, or None; frame rate, or None) from the header only."""
    import av

    with av.open(path) as c:
        if not c.streams.video:
            return None, None
        s = c.streams.video[0]
        rate = s.average_rate or s.guessed_rate
        fps = float(rate) if rate else None
        n = int(s.frames or 0) or None
        if n is None and fps and s.duration is not None and s.time_base is not None:
            n = int(round(float(s.duration * s.time_base) * fps)) or None
        return n, fps


def frames_for(seconds: float, fps: float | None, align: int) -> int:
    """``seconds`` of video in frames (30 fps when unknown), rounded up to a multiple of ``align``, at least one."""
    n = max(1, math.ceil(seconds * (fps or 30.0) / align)) * align
    return int(n)


def plan(path: str, *, segment_frames: int, overlap_frames: int, align: int = 1,
         max_frames: int | None = None) -> tuple[list[Segment] | None, str]:
    """Segments of the video at ``path``, or ``(None, why not)`` when it runs as one task (module docstring)."""
    import av

    pts: list[int] = []
    try:
        with av.open(path) as c:
            stream = c.streams.video[0]
            listed = int(stream.frames or 0)
            for packet in c.demux(stream):
                if packet.size == 0 and packet.pts is None:
                    continue  # the demuxer's flush packet
                if packet.pts is None:
                    return None, "packets without timestamps"
                pts.append(int(packet.pts))
    except Exception as exc:  # damaged file: one sequential task keeps what decodes and warns where it ended
        return None, f"reading its packets failed ({exc})"
    order = np.sort(np.asarray(pts, np.int64))
    if len(order) == 0:
        return None, "no video packets"
    if len(np.unique(order)) != len(order):
        return None, "repeated packet timestamps"
    if listed and listed != len(order):
        return None, f"the container lists {listed} frames and holds {len(order)} packets"
    n = len(order) if max_frames is None else min(len(order), int(max_frames))
    if n <= 1.5 * segment_frames:
        return None, "short enough for one task"
    count = max(2, round(n / segment_frames))
    length = math.ceil(n / count / align) * align
    starts = list(range(0, n, length))
    overlap = math.ceil(overlap_frames / align) * align
    segments = []
    for k, first in enumerate(starts):
        last = min(first + length, n) - 1
        warm = max(0, first - overlap)
        segments.append(Segment(k, len(starts), first, last, warm, order[warm:last + 1].copy()))
    return segments, f"{len(segments)} segments of {length} frames"


def segment_source(path: str, segment: Segment, *, decode_threads: int | None = None):
    """A :class:`rtface.sources.FrameSource` of frames ``segment.warmup``..``segment.last`` (module docstring);
    raises :class:`SegmentError` from the loop when the decoded frames do not match the plan."""
    import av

    from ..sources import Frame, FrameSource, av_frame_bgr, default_decode_threads

    lookup = {int(p): segment.warmup + j for j, p in enumerate(segment.pts)}
    first_pts = int(segment.pts[0])

    def produce(channel) -> Iterator[Frame]:
        container = av.open(path)
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = decode_threads or default_decode_threads()
            start_pts, time_base = stream.start_time, stream.time_base
            container.seek(first_pts, stream=stream, backward=True, any_frame=False)
            due = segment.warmup
            t0 = time.perf_counter()
            for packet in container.demux(stream):
                for vframe in packet.decode():
                    index = lookup.get(vframe.pts) if vframe.pts is not None else None
                    if index is None:
                        if vframe.pts is not None and vframe.pts < first_pts:
                            continue  # decoded from the keyframe before the warm-up
                        raise SegmentError(f"'{path}': after seeking, a frame with pts {vframe.pts} that the plan "
                                           f"does not list came where frame {due} was due")
                    if index != due:
                        raise SegmentError(f"'{path}': after seeking, frame {index} came where frame {due} was due")
                    ts = float((vframe.pts - (start_pts or 0)) * time_base)
                    yield Frame(index, ts, av_frame_bgr(vframe), (time.perf_counter() - t0) * 1e3)
                    t0 = time.perf_counter()
                    due += 1
                    if index == segment.last:
                        return
            raise SegmentError(f"'{path}' ended at frame {due} while decoding segment {segment.number} "
                               f"(frames {segment.first}-{segment.last})")
        finally:
            container.close()

    return FrameSource(produce, name=f"{path}[{segment.warmup}:{segment.last + 1}]", fps=None, live=False,
                       num_frames=segment.processed)


def indexed_source(path: str, segment: Segment, *, decode_threads: int | None = None) -> Iterator:
    """Frames ``segment.warmup``..``segment.last`` decoded from the start of the file (no seeking): the fallback
    of :func:`segment_source`."""
    from ..sources import open_source

    source = open_source(path, decode_threads=decode_threads)
    try:
        for frame in source:
            if frame.index > segment.last:
                break
            if frame.index >= segment.warmup:
                yield frame
    finally:
        source.close()


__all__ = ["Segment", "SegmentError", "frames_for", "header", "indexed_source", "plan", "segment_source"]
