"""The archive format (rtface.archive): written from real results, read back with rtface.load and numpy alone."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

import rtface
from rtface.archive import ArchiveError, ArchiveWriter, FACE_FIELDS, decode_maps, encode_maps, face_row
from rtface.camera import Pose
from rtface.results import FaceResult, FrameResult


def _face(rng, size: int, track: int) -> FaceResult:
    """A FaceResult with maps of side ``size`` (the detail stage's per-face resolution varies: 128 .. ~512)."""
    verts = rng.normal(size=(100, 3)).astype(np.float32) * 20 + size / 2
    yy, xx = np.mgrid[:size, :size]
    mask = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.4) ** 2
    depth = np.where(mask, rng.uniform(20, 80, (size, size)), 0).astype(np.float32)
    a = np.array([[size / 200.0, 0.0, -10.0], [0.0, size / 200.0, -5.0]])
    return FaceResult(box=rng.uniform(0, 300, 4), score=rng.uniform(), track_id=track,
                      identity=rng.normal(size=100), expression=rng.uniform(size=53),
                      crop_pose=Pose.from_vector([0.1, -0.2, 0.05, 4.0, size / 2, size / 2]), crop_vertices=verts,
                      depth=depth, coarse_depth=depth * 0.9, mask=mask, frame_to_crop=a,
                      landmark_index=np.arange(68), landmark3d_index=np.arange(10, 78))


def _frames(sizes_per_frame: list[list[int]]) -> list[FrameResult]:
    rng = np.random.default_rng(1)
    image = np.zeros((8, 8, 3), np.uint8)
    return [FrameResult(i, i / 30.0, image, [_face(rng, s, k) for k, s in enumerate(sizes)], {})
            for i, sizes in enumerate(sizes_per_frame)]


def _write(frames: list[FrameResult], path) -> None:
    with open(path, "wb") as fh:
        w = ArchiveWriter(fh)
        for f in frames:
            w.add_frame(f)
        w.close({"input": "synthetic"})


def test_faces_with_maps_of_different_sizes_round_trip(tmp_path):
    frames = _frames([[128, 384], [], [200], [512, 128, 256]])
    path = tmp_path / "a.npz"
    _write(frames, path)
    with rtface.load(path) as a:
        assert len(a) == 4 and a.faces == 6 and a.meta["input"] == "synthetic" and a.meta["absent"] == []
        for src, got in zip(frames, a):
            assert got.index == src.index and got.timestamp == src.timestamp and len(got) == len(src.faces)
            for f, g in zip(src.faces, got.faces):
                assert g.size == f.size == f.depth.shape[0]
                assert np.array_equal(g.mask, f.mask)
                assert g.depth.dtype == np.float32 and g.depth.shape == f.depth.shape
                assert np.array_equal(g.depth, f.depth.astype(np.float16).astype(np.float32))
                assert np.array_equal(g.landmarks, f.landmarks) and np.array_equal(g.landmarks3d, f.landmarks3d)
                assert np.array_equal(g.box, f.box) and g.track_id == f.track_id
                assert np.array_equal(g.identity, f.identity) and np.array_equal(g.expression, f.expression)
                assert np.array_equal(g.frame_to_crop, f.frame_to_crop)
                assert np.allclose(g.pose.to_vector(), f.pose.to_vector())
                assert g.mm_per_pixel == np.float32(f.mm_per_pixel)
        assert list(a.table("face_start")) == [0, 2, 2, 3, 6]
        assert list(a.table("map_size")) == [128, 384, 200, 512, 128, 256]


def test_numpy_alone_reads_it_without_pickle(tmp_path):
    """The recipe of the module docstring: numpy.load, the JSON member, unpackbits."""
    frames = _frames([[300]])
    path = tmp_path / "a.npz"
    _write(frames, path)
    z = np.load(path, allow_pickle=False)
    meta = json.loads(z["rtface.json"])
    assert meta["format"] == "rtface-archive" and meta["frames"] == 1 and "depth/i" in meta["fields"]
    assert set(FACE_FIELDS) <= set(meta["fields"]) and meta["fields"]["timestamp"]["doc"].startswith("seconds")
    s = int(z["map_size"][0])
    mask = np.unpackbits(z["mask/0"], count=s * s).reshape(s, s).astype(bool)
    depth = np.zeros((s, s), np.float32)
    depth[mask] = z["depth/0"]
    assert np.array_equal(mask, frames[0].faces[0].mask)
    assert np.allclose(depth, frames[0].faces[0].depth, atol=0.05)
    with zipfile.ZipFile(path) as zf:  # maps are stored (copied byte for byte by a join), tables deflated
        assert zf.getinfo("depth/0.npy").compress_type == zipfile.ZIP_STORED
        assert zf.getinfo("landmarks.npy").compress_type == zipfile.ZIP_DEFLATED


def test_an_empty_input_gives_an_empty_archive(tmp_path):
    _write([], tmp_path / "e.npz")
    with rtface.load(tmp_path / "e.npz") as a:
        assert len(a) == 0 and a.faces == 0 and list(a) == []
        assert a.table("landmarks").shape == (0, 68, 2) and a.table("face_start").tolist() == [0]


def test_maps_encode_and_decode():
    rng = np.random.default_rng(0)
    mask = rng.uniform(size=(37, 37)) > 0.3
    depth = np.where(mask, rng.uniform(0, 100, mask.shape), 0).astype(np.float32)
    values, bits = encode_maps(depth, mask)
    assert values.dtype == np.float16 and values.size == mask.sum() and bits.size == (37 * 37 + 7) // 8
    d, m = decode_maps(values, bits, 37)
    assert np.array_equal(m, mask) and np.array_equal(d, depth.astype(np.float16).astype(np.float32))
    with pytest.raises(rtface.errors.InputError, match="square"):
        encode_maps(np.zeros((4, 5)), np.zeros((4, 5), bool))


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(ArchiveError, match="does not exist"):
        rtface.load(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ArchiveError, match="not an rtface archive or is damaged"):
        rtface.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ArchiveError, match="not an rtface archive"):
        rtface.load(tmp_path / "other.npz")
    _write(_frames([[128]]), tmp_path / "good.npz")
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])  # a partial copy
    with pytest.raises(ArchiveError, match="damaged"):
        rtface.load(tmp_path / "cut.npz")


def test_real_results_are_stored_as_the_pipeline_gave_them(face_model):
    """A sequential run over a short clip: every stored value is the FrameResult's (depth at float16)."""
    from tests.batch_clips import OPTIONS, cut
    from rtface.batching.task import Settings, pipeline

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        clip = cut("video/hamilton_640x360.mp4", Path(d) / "h.mp4", 0, 6, (320, 180))
        results = list(pipeline(Settings(**OPTIONS)).stream(str(clip)))
    buf = io.BytesIO()
    w = ArchiveWriter(buf)
    for r in results:
        w.add_frame(r)
    w.close({})
    buf.seek(0)
    z = np.load(buf, allow_pickle=False)
    assert sum(len(r.faces) for r in results) == len(z["track_id"]) > 0
    rows = [face_row(f) for r in results for f in r.faces]
    for k in FACE_FIELDS:
        if k != "face_frame":
            assert np.array_equal(z[k], np.stack([row[k] for row in rows])), k
    assert np.isfinite(z["landmarks3d"]).all()
    faces = [f for r in results for f in r.faces]
    for i, f in enumerate(faces):
        d, m = decode_maps(z[f"depth/{i}"], z[f"mask/{i}"], int(z["map_size"][i]))
        assert np.array_equal(m, f.mask) and np.array_equal(d, f.depth.astype(np.float16).astype(np.float32))
