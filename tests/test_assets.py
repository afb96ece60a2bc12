"""Asset lookup, verification and the offline error."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtface import assets
from rtface.errors import AssetError

from .conftest import shared


def test_manifest_pins_upstream():
    m = assets.manifest()
    fm = m["ict-facekit"]
    assert fm["commit"] == "da5f95a607f5e6b37755b38d3385d7f2853732e5"
    assert fm["base_url"].startswith("https://raw.githubusercontent.com/ICT-VGL/ICT-FaceKit/" + fm["commit"])
    assert len(fm["files"]) > 150 and all(len(f["sha256"]) == 64 for f in fm["files"].values())
    assert m["yunet"]["url"].startswith("https://")


def test_detector_found_and_verified():
    shared("yunet/face_detection_yunet_2023mar.onnx")
    p = assets.asset_path("yunet")
    assert p.is_file() and assets.sha256_file(p) == assets.manifest()["yunet"]["sha256"]


def test_checksum_mismatch_is_a_clear_error(tmp_path):
    bad = tmp_path / "yunet.onnx"
    bad.write_bytes(b"not the detector")
    with pytest.raises(AssetError, match="checksum mismatch"):
        assets.asset_path("yunet", bad)


def test_offline_without_local_copy_names_every_missing_asset_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("RTFACE_ASSETS", raising=False)
    monkeypatch.setenv("RTFACE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RTFACE_OFFLINE", "1")
    for call in (lambda: assets.asset_path("yunet"), assets.face_model_source):
        with pytest.raises(AssetError) as err:
            call()
        msg = str(err.value)
        # both assets, whichever is asked for first; the one variable that fixes it; where upstream copies are
        assert "YuNet face detector" in msg and "ICT-FaceKit face model" in msg and "155 files" in msg
        assert "RTFACE_OFFLINE is set" in msg and "Fix: set RTFACE_ASSETS" in msg
        assert "ict-facekit/FaceXModel.tar.xz" in msg and "yunet/face_detection_yunet_2023mar.onnx" in msg
        assert "opencv_zoo" in msg and str(tmp_path / "cache") in msg


def test_detector_from_rtface_assets_is_kept_in_the_cache(tmp_path, monkeypatch):
    src = shared("yunet/face_detection_yunet_2023mar.onnx")
    monkeypatch.setenv("RTFACE_CACHE", str(tmp_path / "cache"))
    assert assets.asset_path("yunet") == src
    cached = tmp_path / "cache" / "yunet" / src.name
    assert cached.read_bytes() == src.read_bytes()
    monkeypatch.delenv("RTFACE_ASSETS")
    monkeypatch.setenv("RTFACE_OFFLINE", "1")
    assert assets.asset_path("yunet") == cached
    assert [m for m in assets.missing_assets() if "YuNet" in m] == []


def test_assets_env_must_be_a_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("RTFACE_ASSETS", str(tmp_path / "missing"))
    with pytest.raises(AssetError, match="not a directory"):
        assets.asset_path("yunet")


def test_check_all_reports_each_asset():
    shared("ict-facekit/FaceXModel.tar.xz")
    rows = {r.name: r for r in assets.check_all(progress=False)}
    assert rows["yunet"].ok and rows["ict-facekit"].ok
    assert rows["ict-facekit"].location == str(assets.converted_face_model())
    assert "stored digest ok" in rows["ict-facekit"].detail


def test_check_all_verify_walks_the_source(tmp_path, monkeypatch):
    from .facekit_synth import make_facekit

    detector = shared("yunet/face_detection_yunet_2023mar.onnx")
    monkeypatch.setenv("RTFACE_CACHE", str(tmp_path / "cache"))
    kit = make_facekit(tmp_path / "kit", monkeypatch)
    monkeypatch.setenv("RTFACE_ASSETS", str(kit.root))
    (kit.root / "yunet").symlink_to(detector.parent)  # the detector of the shared data, read in place
    quick = {r.name: r for r in assets.check_all(progress=False)}["ict-facekit"]
    assert quick.ok and "source" not in quick.detail  # converted once, then only the stored digest is checked
    full = {r.name: r for r in assets.check_all(verify=True, progress=False)}["ict-facekit"]
    assert full.ok and f"source {kit.archive}: 7 files, sha256 ok" in full.detail
    kit.archive.write_bytes(kit.archive.read_bytes()[:-2000])  # damage the source: only --verify notices
    assert {r.name: r for r in assets.check_all(progress=False)}["ict-facekit"].ok
    bad = {r.name: r for r in assets.check_all(verify=True, progress=False)}["ict-facekit"]
    assert not bad.ok and "corrupt" in bad.detail


def test_data_path_reads_rtface_assets(tmp_path, monkeypatch):
    monkeypatch.setenv("RTFACE_ASSETS", str(tmp_path))
    assert assets.data_path("video/clip.mp4") == tmp_path / "video" / "clip.mp4"
    monkeypatch.delenv("RTFACE_ASSETS")
    repo = Path(assets.__file__).resolve().parents[1]
    assert assets.data_path("faces-utk/x.tar") == repo.parent / "shared" / "assets" / "faces-utk" / "x.tar"


def test_write_atomic_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "manifest.json"
    target.write_bytes(b"old")
    assets.write_atomic(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert (target.stat().st_mode & 0o777) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]
