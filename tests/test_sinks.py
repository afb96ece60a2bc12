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
                      frame_to_crop=box_crop_transform(np.array([30.0, 30.0]), 40, S), landmark_index=np.arange(68))
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
    assert d["boxes"].shape == (0, 4) and d["face_depth"].shape[0] == 0


def test_preview_without_display_is_a_clear_error(monkeypatch):
    from rtface.errors import InputError
    from rtface.sinks import PreviewWindow

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(InputError, match="display|GUI"):
        PreviewWindow()
