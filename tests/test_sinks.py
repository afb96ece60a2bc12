"""Sinks: side-by-side video, per-frame npz without pickle, meshes, headless preview error."""

from __future__ import annotations

import numpy as np
import pytest

from rtface.camera import Pose, box_crop_transform
from rtface.results import FaceResult, FrameResult

S = 32


def result(index=0, h=61, w=83):
    yy, xx = np.mgrid[0:S, 0:S] + 0.5
    mask = (xx - S / 2) ** 2 + (yy - S / 2) ** 2 < (S / 3) ** 2
    depth = np.where(mask, 10 + 3 * np.cos(xx / 4), 0).astype(np.float32)
    face = FaceResult(box=[10, 10, 40, 40], score=0.8, track_id=7, identity=np.zeros(100), expression=np.zeros(53),
                      crop_pose=Pose(np.zeros(3), 3.0, np.array([S / 2, S / 2])),
                      crop_vertices=np.random.default_rng(0).random((70, 3)).astype(np.float32) * S,
                      depth=depth, coarse_depth=depth, mask=mask,
                      frame_to_crop=box_crop_transform(np.array([30.0, 30.0]), 40, S), landmark_index=np.arange(68),
                      landmark3d_index=np.arange(2, 70))
    img = np.random.default_rng(index).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return FrameResult(index, index / 30, img, [face], {"total": 1.0, "detect": 0.5})


def test_video_sink_writes_a_decodable_even_sized_video(tmp_path):
    import av

    from rtface.sinks import VideoSink

    path = tmp_path / "out.mp4"
    with VideoSink(path, fps=30) as sink:
        for k in range(5):
            sink.write(result(k))
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(s)]
        assert s.codec_context.name in ("h264", "mpeg4")
    assert len(frames) == 5
    h, w = frames[0].shape[:2]
    assert h % 2 == 0 and w % 2 == 0 and w > 3 * 83  # three panels side by side


def test_npz_sink_loads_without_pickle_and_meshes(tmp_path):
    from rtface.sinks import NpzSink

    tris = np.array([[0, 1, 2], [2, 3, 4]], np.int32)
    with NpzSink(tmp_path, meshes=True, triangles=tris) as sink:
        p = sink.write(result(3))
    d = np.load(p, allow_pickle=False)
    assert int(d["index"]) == 3 and d["depth"].shape == (61, 83) and d["mask"].dtype == bool
    assert d["face_depth"].shape == (1, S, S) and d["landmarks"].shape == (1, 68, 2)
    assert d["landmarks3d"].shape == (1, 68, 3) and d["landmarks3d"].dtype == np.float32
    assert np.array_equal(d["landmarks3d"][0], result(3).faces[0].vertices[2:70])
    assert d["pose"].shape == (1, 6) and list(d["track_ids"]) == [7]
    assert dict(zip(d["timings_keys"], d["timings_ms"]))["detect"] == 0.5
    ply = (tmp_path / "frame_000003_face7.ply").read_bytes()
    assert ply.startswith(b"ply\nformat binary_little_endian 1.0") and b"element vertex 70" in ply
    assert len(ply.split(b"end_header\n", 1)[1]) == 70 * 12 + 2 * 13
    with NpzSink(tmp_path / "obj", meshes=True, mesh_format="obj", triangles=tris) as sink:
        sink.write(result(1))
    obj = (tmp_path / "obj" / "frame_000001_face7.obj").read_text().splitlines()
    assert sum(line.startswith("v ") for line in obj) == 70 and "f 1 2 3" in obj


def test_empty_frame_npz(tmp_path):
    from rtface.sinks import NpzSink

    r = FrameResult(0, 0.0, np.zeros((10, 12, 3), np.uint8), [], {})
    d = np.load(NpzSink(tmp_path).write(r), allow_pickle=False)
    assert d["boxes"].shape == (0, 4) and d["face_depth"].shape[0] == 0 and d["landmarks3d"].shape == (0, 68, 3)


def test_preview_without_display_is_a_clear_error(monkeypatch):
    from rtface.errors import InputError
    from rtface.sinks import PreviewWindow

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(InputError, match="display|GUI"):
        PreviewWindow()


def test_output_writer_follows_the_extension(tmp_path):
    from rtface.errors import InputError
    from rtface.sinks import ImageSink, VideoSink, open_output

    assert isinstance(open_output(tmp_path / "a.mkv", fps=25), VideoSink)
    single = open_output(tmp_path / "one.PNG", single_image=True)
    assert isinstance(single, ImageSink) and not single.sequence
    seq = open_output(tmp_path / "seq.jpg")
    assert isinstance(seq, ImageSink) and seq.sequence
    for bad in ("x.txt", "noext"):
        with pytest.raises(InputError, match=r"\.mp4.*\.png"):
            open_output(tmp_path / bad)


def test_image_sink_single_picture_sequence_and_pattern(tmp_path):
    import cv2

    from rtface.errors import InputError
    from rtface.sinks import ImageSink

    with ImageSink(tmp_path / "one.png") as sink:
        sink.write(result(5))
        with pytest.raises(InputError, match="one picture"):
            sink.write(result(6))
    img = cv2.imread(str(tmp_path / "one.png"))
    assert img.shape == (61, 3 * 83 + 4, 3)  # three panels and two 2-px gaps
    assert (tmp_path / "one.png").read_bytes()[:4] == b"\x89PNG"
    with ImageSink(tmp_path / "seq.jpg", sequence=True) as sink:
        for k in (3, 4):
            sink.write(result(k))
    assert [p.name for p in sorted(tmp_path.glob("seq_*.jpg"))] == ["seq_000003.jpg", "seq_000004.jpg"]
    assert (tmp_path / "seq_000003.jpg").read_bytes()[:2] == b"\xff\xd8"  # JPEG, as named
    with ImageSink(tmp_path / "f%03d.png") as sink:
        sink.write(result(7))
    assert (tmp_path / "f007.png").is_file()


def test_side_by_side_is_scaled_to_the_output_size(tmp_path):
    import av

    from rtface.sinks import VideoSink, parse_size, visualize

    big = result(0, h=1080, w=1920)
    assert visualize(big, size=None).shape == (1080, 3 * 1920 + 4, 3)
    small = visualize(big, size=(1920, None))
    assert small.shape[1] <= 1920 and small.shape[0] == 359
    assert visualize(big, size=(1280, 200)).shape[0] <= 200
    # the face's depth is pasted straight at the small size: it matches pasting at full size and shrinking
    import cv2

    from rtface.sinks import _scaled

    direct = _scaled(big, 638, 359, np.zeros((359, 638, 3), np.uint8))
    shrunk = cv2.resize(big.mask.astype(np.uint8), (638, 359), interpolation=cv2.INTER_AREA) > 0
    assert (direct.mask & shrunk).sum() / (direct.mask | shrunk).sum() > 0.8
    ratio = direct.depth[direct.mask].max() / big.depth[big.mask].max()
    assert ratio == pytest.approx(638 / 1920, rel=0.05)  # depth in pixels of the small picture
    path = tmp_path / "big.mp4"
    with VideoSink(path, fps=30) as sink:  # default: no wider than 1920
        sink.write(big)
        sink.write(result(1, h=1080, w=1920))
    assert sink.frame_size[0] <= 1920
    with av.open(str(path)) as c:
        assert c.streams.video[0].width <= 1920 and sum(1 for _ in c.decode(video=0)) == 2
    assert parse_size("1280x720") == (1280, 720) and parse_size("800") == (800, None) and parse_size("full") is None
    with pytest.raises(Exception, match="WIDTH"):
        parse_size("wide")


def test_writer_thread_errors_reach_the_caller(tmp_path):
    from rtface.errors import RtfaceError
    from rtface.sinks import ImageSink

    sink = ImageSink(tmp_path / "missing" / "x_%04d.png")
    (tmp_path / "missing").rmdir()  # the writer thread cannot save there any more
    sink.write(result(0))
    with pytest.raises(RtfaceError, match="could not write"):
        sink.close()
