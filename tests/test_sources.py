"""Frame sources: files, folders, arrays, iterables; bad and truncated input."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from rtface.errors import InputError, SourceError
from rtface.sources import SourceWarning, open_source, to_bgr

from .conftest import shared


def _write_video(path: Path, n: int = 30, size=(96, 64), codec: str = "mpeg4") -> list[np.ndarray]:
    import av

    frames = []
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(n):
            img = np.full((size[1], size[0], 3), (i * 8) % 255, np.uint8)
            cv2.circle(img, (10 + i, 30), 8, (0, 0, 255), -1)
            frames.append(img)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return frames


def test_to_bgr_conversions():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert to_bgr(grey).shape == (3, 4, 3)
    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[..., 2] = 200
    out = to_bgr(rgba)
    assert out.shape == (5, 7, 3) and out[0, 0, 2] == 200
    assert to_bgr(np.ones((2, 2, 3), np.float32)).max() == 255
    assert to_bgr(np.full((2, 2), 65535, np.uint16)).max() == 255


@pytest.mark.parametrize(
    "bad, needle",
    [
        (np.zeros((4, 4, 2), np.uint8), "shape"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        (np.full((4, 4, 3), 7.0), "[0, 1]"),
        (np.zeros((4, 4, 3), np.int64), "dtype"),
        ([[1, 2]], "numpy array"),
    ],
)
def test_to_bgr_rejects_bad_images(bad, needle):
    with pytest.raises(InputError, match=None) as err:
        to_bgr(bad, index=3)
    assert needle in str(err.value) and "frame 3" in str(err.value)


def test_video_file_every_frame_in_order(tmp_path):
    path = tmp_path / "clip.mkv"
    _write_video(path, n=30)
    frames = list(open_source(path))
    assert [f.index for f in frames] == list(range(30))
    ts = [f.timestamp for f in frames]
    assert ts[0] == pytest.approx(0.0) and np.all(np.diff(ts) > 0)
    assert ts[-1] == pytest.approx(29 / 25, abs=1e-3)
    assert frames[0].image.shape == (64, 96, 3) and frames[0].image.dtype == np.uint8


@pytest.mark.parametrize("damage", ["cut", "zeroed"])
def test_damaged_file_yields_what_decodes_then_warns(tmp_path, damage):
    path = tmp_path / "clip.ts"  # MPEG-TS stays readable when cut or damaged
    _write_video(path, n=40)
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    if damage == "cut":
        data = data[:mid]
    else:
        data[mid : mid + 4000] = bytes(4000)
    bad = tmp_path / f"{damage}.ts"
    bad.write_bytes(bytes(data))
    with pytest.warns(SourceWarning, match="truncated or corrupt"):
        frames = list(open_source(bad))
    assert 5 < len(frames) < 40
    assert all(f.image.shape == (64, 96, 3) for f in frames)


def test_truncated_mp4_is_a_clear_error(tmp_path):
    clip = shared("video/hamilton_640x360.mp4")
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match="not a video FFmpeg can read"):
        open_source(cut)


def test_real_clip_decodes_fully():
    clip = shared("video/dafoe_1280x720.mp4")
    src = open_source(clip)
    assert src.fps == pytest.approx(29.97, abs=0.01)
    n = 0
    for frame in src:
        assert frame.image.shape == (720, 1280, 3)
        n += 1
    assert n == 99


def test_missing_and_non_video_files(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        open_source(tmp_path / "nope.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(SourceError, match="not a video"):
        open_source(junk)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG garbage")
    with pytest.raises(SourceError, match="cannot be decoded"):
        open_source(broken)


def test_folder_natural_order_and_skips_unreadable(tmp_path):
    for i in (1, 2, 10):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((8, 8, 3), i, np.uint8))
    (tmp_path / "img5.png").write_bytes(b"broken")
    with pytest.warns(SourceWarning, match="img5"):
        frames = list(open_source(tmp_path))
    assert [int(f.image[0, 0, 0]) for f in frames] == [1, 2, 10]


def test_arrays_and_iterables():
    stack = np.zeros((4, 10, 12), np.uint8)  # 4 grey frames
    frames = list(open_source(stack))
    assert len(frames) == 4 and frames[0].image.shape == (10, 12, 3)
    single = list(open_source(np.zeros((10, 12, 4), np.uint8)))
    assert len(single) == 1

    def gen():
        yield np.zeros((6, 6, 3), np.uint8)
        yield np.zeros((6, 6, 3), np.int32)

    it = iter(open_source(gen()))
    next(it)
    with pytest.raises(InputError, match="frame 1"):
        next(it)


def test_generator_that_fails_mid_stream_raises_its_error():
    def gen():
        yield np.zeros((6, 6, 3), np.uint8)
        raise ConnectionError("camera unplugged")

    got = []
    with pytest.raises(ConnectionError, match="unplugged"):
        for frame in open_source(gen()):
            got.append(frame)
    assert len(got) == 1


def test_live_source_keeps_latest_frame():
    import time

    def gen():
        for i in range(50):
            yield np.full((4, 4, 3), i, np.uint8)
            time.sleep(0.002)

    src = open_source(gen(), live=True)
    seen = []
    for frame in src:
        seen.append(int(frame.image[0, 0, 0]))
        time.sleep(0.02)
    assert seen[-1] == 49 and len(seen) < 50 and src.dropped > 0


def test_bad_source_types():
    with pytest.raises(InputError):
        open_source(True)
    with pytest.raises(InputError):
        open_source(b"bytes")
    with pytest.raises(InputError):
        open_source(3.5)
    with pytest.raises(InputError, match=">= 0"):
        open_source(-1)


def test_missing_webcam_is_one_clean_error(capfd):
    with pytest.raises(SourceError, match="cannot open webcam 63"):
        open_source(63)
    assert "WARN" not in capfd.readouterr().err  # OpenCV's own log lines are silenced


def test_decoder_threads_give_the_same_frames():
    """FFmpeg's frame threading (decode_threads > 1) changes the speed only: same frames, same order."""
    from rtface.sources import default_decode_threads

    clip = shared("video/hamilton_640x360.mp4")
    runs = {}
    for n in (1, 3):
        with open_source(clip, decode_threads=n) as src:
            runs[n] = [(f.index, f.timestamp, f.image) for _, f in zip(range(40), src)]
    assert len(runs[1]) == len(runs[3]) == 40
    for (i1, t1, a), (i3, t3, b) in zip(runs[1], runs[3]):
        assert i1 == i3 and t1 == t3 and np.array_equal(a, b)
    assert default_decode_threads() >= 1
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="decode_threads"):
            open_source(clip, decode_threads=bad)
