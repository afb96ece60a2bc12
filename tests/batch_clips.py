"""Short clips cut from ../shared/assets/video for the batch tests, and the sequential run they are compared with."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from tests.conftest import shared

#: What every batch test runs with: the CPU backend, one thread per task (so the in-process reference uses the
#: same ONNX Runtime threading as the Ray tasks and the stored arrays compare bit for bit).
OPTIONS = {"backend": "cpu"}


def cut(src: str, dst: Path, start: int, frames: int, size: tuple[int, int], faststart: bool = False) -> Path:
    """Frames ``start`` .. ``start + frames - 1`` of the shared clip ``src`` resized to ``size`` (H.264)."""
    from benchmarks.fps import reencode

    return reencode(shared(src), dst, size=size, max_frames=frames, start=start, faststart=faststart)


def make_clips(folder: Path) -> dict[str, Path]:
    """Two good clips, a still image, a 40-frame clip (split in the segment tests), a truncated clip, a corrupt one."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    clips = {
        "dafoe": cut("video/dafoe_1280x720.mp4", folder / "dafoe.mp4", 0, 24, (320, 180)),
        "hamilton": cut("video/hamilton_640x360.mp4", folder / "hamilton.mp4", 0, 20, (320, 180)),
        "long": cut("video/dafoe_1280x720.mp4", folder / "long.mp4", 30, 40, (256, 144)),
    }
    portrait = cv2.imread(str(shared("faces-labeled/grace_hopper_512x512.jpg")))
    clips["portrait"] = folder / "portrait.jpg"
    cv2.imwrite(str(clips["portrait"]), cv2.resize(portrait, (256, 256), interpolation=cv2.INTER_AREA))
    whole = cut("video/dafoe_1280x720.mp4", folder / "whole.mp4", 60, 24, (256, 144), faststart=True)
    data = whole.read_bytes()
    clips["truncated"] = folder / "truncated.mp4"  # index first: the cut copy still lists all 24 frames
    clips["truncated"].write_bytes(data[: len(data) * 3 // 5])
    whole.unlink()
    clips["corrupt"] = folder / "corrupt.mp4"
    clips["corrupt"].write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    return clips


def sequential(path: Path, **options) -> bytes:
    """The archive of one sequential run over ``path`` in this process (``rtface stream``'s loop), as bytes."""
    import warnings

    from rtface.archive import ArchiveWriter
    from rtface.batching.task import Settings, pipeline

    settings = Settings(**{**OPTIONS, **options})
    pipe = pipeline(settings)
    buf = io.BytesIO()
    writer = ArchiveWriter(buf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in pipe.stream(str(path), max_frames=settings.max_frames):
            writer.add_frame(r)
    writer.close({})
    return buf.getvalue()


def assert_same(archive: Path, reference: bytes) -> None:
    """Every stored array of ``archive`` equals the reference's, bit for bit (maps included)."""
    with np.load(archive, allow_pickle=False) as a, np.load(io.BytesIO(reference), allow_pickle=False) as b:
        names = sorted(k for k in b.files if k != "rtface.json")
        assert sorted(k for k in a.files if k != "rtface.json") == names, archive
        for k in names:
            x, y = a[k], b[k]
            assert x.dtype == y.dtype and x.shape == y.shape, (archive, k)
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), (archive, k)
