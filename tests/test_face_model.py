"""The ICT-FaceKit face model: shapes, landmarks, caching, and bad sources."""

from __future__ import annotations

import io
import tarfile
import time

import numpy as np
import pytest

from rtface.errors import AssetError, InputError
from rtface.face_model import FACE_AREA_VERTICES, FaceModel

from .conftest import shared


def test_shapes_and_dtypes(face_model):
    m = face_model
    v = FACE_AREA_VERTICES
    assert m.mean.shape == (v, 3) and m.mean.dtype == np.float32
    assert m.id_basis.shape == (100, v, 3)
    assert m.exp_basis.shape == (53, v, 3)
    assert m.triangles.dtype == np.int32 and m.triangles.shape[1] == 3
    assert 18000 < len(m.triangles) < 19000
    assert m.triangles.min() >= 0 and m.triangles.max() < v
    assert m.landmarks.shape == (68,)
    assert len(m.expression_names) == 53 and "jawOpen" in m.expression_names
    assert len(m.hash) == 64


def test_landmarks_are_anatomically_sane(face_model):
    lm = face_model.mean[face_model.landmarks]
    right_eye, left_eye = lm[36:42].mean(0), lm[42:48].mean(0)
    mouth = lm[48:68].mean(0)
    nose_tip, chin = lm[30], lm[8]
    assert right_eye[1] > mouth[1] and left_eye[1] > mouth[1]  # eyes above the mouth (y up)
    assert nose_tip[1] > mouth[1] > chin[1]
    assert right_eye[0] < 0 < left_eye[0]  # subject's right eye on the viewer's left
    assert abs(right_eye[0] + left_eye[0]) < 0.05 and abs(right_eye[1] - left_eye[1]) < 0.05  # symmetric
    assert nose_tip[2] == pytest.approx(lm[:, 2].max())  # the nose tip points toward the viewer
    assert 5.5 < left_eye[0] - right_eye[0] < 7.5  # interocular distance in cm


def test_triangles_face_the_viewer(face_model):
    v = face_model.mean
    t = face_model.triangles
    n = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    # Area-weighted: the eye sockets and lip interior face other ways, the skin faces out of the head.
    area = np.linalg.norm(n, axis=1)
    outward = v[t].mean(1) - np.array([0.0, 0.0, 2.0])  # from a point inside the head
    assert area[(n * outward).sum(1) > 0].sum() / area.sum() > 0.9  # counter-clockwise seen from outside
    assert n[:, 2].sum() > 0.8 * np.abs(n[:, 2]).sum()  # and seen from +z (the viewer)


def test_vertices_linear_and_batched(face_model):
    m = face_model
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 100)).astype(np.float32)
    b = rng.uniform(0, 1, (4, 53)).astype(np.float32)
    batch = m.vertices(a, b)
    assert batch.shape == (4, FACE_AREA_VERTICES, 3)
    one = m.vertices(a[2], b[2])
    np.testing.assert_allclose(batch[2], one, atol=1e-5)
    manual = m.mean + np.tensordot(a[2], m.id_basis, 1) + np.tensordot(b[2], m.exp_basis, 1)
    np.testing.assert_allclose(one, manual, atol=1e-4)
    np.testing.assert_array_equal(m.vertices(), m.mean)
    np.testing.assert_allclose(m.vertices(a[0, :10]), m.mean + np.tensordot(a[0, :10], m.id_basis[:10], 1), atol=1e-4)
    jaw = m.expression_names.index("jawOpen")
    w = np.zeros(53, np.float32)
    w[jaw] = 1
    assert m.landmark_positions(m.vertices(expression=w))[8, 1] < m.mean[m.landmarks[8], 1] - 0.5  # chin drops


def test_vertices_bad_input(face_model):
    with pytest.raises(InputError, match="identity"):
        face_model.vertices(np.zeros(101))
    with pytest.raises(InputError, match="expression"):
        face_model.vertices(expression=np.array(["a"]))


def test_cached_reload_is_fast_and_identical(face_model):
    t0 = time.perf_counter()
    again = FaceModel.load()
    assert time.perf_counter() - t0 < 1.0
    assert again.hash == face_model.hash
    np.testing.assert_array_equal(again.triangles, face_model.triangles)


def test_corrupt_archive(tmp_path):
    bad = tmp_path / "FaceXModel.tar.xz"
    bad.write_bytes(b"\xfd7zXZ\x00 definitely not xz data")
    with pytest.raises(AssetError, match="corrupt"):
        FaceModel.load(bad, cache=False)


def test_checksum_mismatch_in_archive(tmp_path):
    shared("ict-facekit/FaceXModel.tar.xz")
    bad = tmp_path / "FaceXModel.tar"
    with tarfile.open(bad, "w") as tar:
        data = b"v 0 0 0\n"
        info = tarfile.TarInfo("FaceXModel/generic_neutral_mesh.obj")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(AssetError, match="checksum"):
        FaceModel.load(bad, cache=False)


def test_missing_path(tmp_path):
    with pytest.raises(AssetError, match="does not exist"):
        FaceModel.load(tmp_path / "nowhere.tar.xz")


# ------------------------------------------------------------------ conversion, cache, first use (synthetic source)


class _StampedStream(io.StringIO):
    """stderr stand-in that remembers when it was first written to."""

    def __init__(self) -> None:
        super().__init__()
        self.first_write: float | None = None

    def write(self, s: str) -> int:
        if s and self.first_write is None:
            self.first_write = time.perf_counter()
        return super().write(s)


@pytest.fixture
def kit(tmp_path, monkeypatch):
    from .facekit_synth import make_facekit

    monkeypatch.setenv("RTFACE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RTFACE_ASSETS", str(tmp_path / "assets"))
    return make_facekit(tmp_path / "assets", monkeypatch)


def _assert_model_is(model, kit):
    np.testing.assert_array_equal(model.mean, kit.mean)
    np.testing.assert_array_equal(model.id_basis, kit.id_basis)
    np.testing.assert_array_equal(model.exp_basis, kit.exp_basis)
    np.testing.assert_array_equal(model.triangles, kit.triangles)
    np.testing.assert_array_equal(model.landmarks, kit.landmarks)
    assert model.expression_names == kit.expression_names
    assert model.triangles.dtype == np.int32 and model.mean.dtype == np.float32


def test_first_use_converts_with_progress_within_3s(kit, monkeypatch):
    import sys

    from rtface import assets

    stderr = _StampedStream()
    monkeypatch.setattr(sys, "stderr", stderr)
    assert not assets.converted_face_model().exists()  # a fresh cache
    t0 = time.perf_counter()
    model = FaceModel.load()
    done = time.perf_counter()
    assert stderr.first_write is not None and stderr.first_write - t0 < 3.0
    text = stderr.getvalue()
    assert "preparing the face model, once" in text and "100%" in text
    assert done - t0 < 10.0
    _assert_model_is(model, kit)
    assert assets.converted_face_model().is_file()
    stderr.truncate(0)
    stderr.seek(0)
    again = FaceModel.load()  # from the cache: silent and identical
    assert stderr.getvalue() == "" and again.hash == model.hash


def test_folder_and_archive_convert_to_the_same_model(kit):
    a = FaceModel.load(kit.archive, cache=False, progress=False)
    b = FaceModel.load(kit.folder, cache=False, progress=False)
    _assert_model_is(a, kit)
    assert a.hash == b.hash


def test_converted_model_alone_runs_offline(kit, monkeypatch):
    from rtface import assets

    first = FaceModel.load(progress=False)
    monkeypatch.delenv("RTFACE_ASSETS")
    monkeypatch.setenv("RTFACE_OFFLINE", "1")
    kit.archive.unlink()  # no source anywhere: the cache is enough
    assert [m for m in assets.missing_assets() if "face model" in m] == []
    assert FaceModel.load().hash == first.hash


def test_damaged_cache_is_rebuilt_and_reported(kit):
    from rtface import assets
    from rtface.face_model import verify_converted

    model = FaceModel.load(progress=False)
    path = assets.converted_face_model()
    assert verify_converted(path) == model.hash
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["mean"] = arrays["mean"] + 1.0  # readable, but not what the stored digest says
    np.savez(path, **arrays)
    with pytest.raises(AssetError, match="digest"):
        verify_converted(path)
    assert FaceModel.load(progress=False).hash == model.hash  # rebuilt from the source
    assert verify_converted(path) == model.hash


def test_incomplete_archive_names_the_missing_files(kit, tmp_path):
    short = tmp_path / "short.tar"
    with tarfile.open(short, "w") as tar:
        for name, data in kit.files.items():
            if name.startswith("identity"):
                continue
            info = tarfile.TarInfo(f"FaceXModel/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(AssetError, match=r"lacks 3 of its 7 files \(identity000.obj, identity001.obj"):
        FaceModel.load(short, cache=False, progress=False)


def test_obj_parsing_matches_a_line_by_line_reading():
    from rtface.face_model import _parse_obj_faces, _parse_obj_vertices

    text = (b"# c\nv 1 2 3\nv 4.5 -5 6e-1\nvt 0 1\nv 7 8 9\nvn 0 0 1\n"
            b"f 1/1/1 2/1/1 3/1/1\nf 1 2 3 4 5\ns off\nf 3//1 2//1 1//1\r\n")
    np.testing.assert_array_equal(_parse_obj_vertices(text, "t"), [[1, 2, 3], [4.5, -5, 0.6], [7, 8, 9]])
    np.testing.assert_array_equal(_parse_obj_vertices(text, "t", 2), [[1, 2, 3], [4.5, -5, 0.6]])
    np.testing.assert_array_equal(_parse_obj_faces(text), [[0, 1, 2], [0, 1, 2], [0, 2, 3], [0, 3, 4], [2, 1, 0]])
    with pytest.raises(AssetError, match="fewer than the 4"):
        _parse_obj_vertices(text, "t", 4)


def test_real_archive_converts_to_the_pinned_hash(tmp_path, monkeypatch):
    """The released weights pin the face model's hash: the conversion must reproduce it exactly."""
    import json
    from pathlib import Path

    archive = shared("ict-facekit/FaceXModel.tar.xz")
    pinned = json.loads((Path(__file__).resolve().parents[1] / "rtface" / "weights" / "manifest.json").read_text())
    t0 = time.perf_counter()
    model = FaceModel.load(archive, cache=False, progress=False)
    assert model.hash == pinned["face_model_hash"]
    assert time.perf_counter() - t0 < 60.0  # about 4 s on one free core
