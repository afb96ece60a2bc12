"""The rtface command line, run as a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED_ASSETS, shared

REPO = Path(__file__).resolve().parents[1]


def rtface(*args, timeout=300):
    exe = shutil.which("rtface", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    cmd = [exe, *args] if exe else [sys.executable, "-m", "rtface.cli", *args]
    env = dict(os.environ, RTFACE_ASSETS=str(SHARED_ASSETS), RTFACE_OFFLINE="1")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


def test_assets_table():
    shared("yunet/face_detection_yunet_2023mar.onnx")
    shared("ict-facekit/FaceXModel.tar.xz")
    r = rtface("assets")
    assert r.returncode == 0, r.stderr
    assert "yunet" in r.stdout and "ict-facekit" in r.stdout and "weights" in r.stdout
    assert "stored digest ok" in r.stdout and "ready" in r.stdout


def test_stream_writes_video_and_npz(tmp_path):
    import av

    clip = shared("video/hamilton_640x360.mp4")
    out = tmp_path / "x.mp4"
    r = rtface("stream", str(clip), "--out", str(out), "--save", str(tmp_path / "npz"), "--max-frames", "4",
               "--backend", "cpu")
    assert r.returncode == 0, r.stderr
    assert "4 frames" in r.stdout
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 4
    files = sorted((tmp_path / "npz").glob("*.npz"))
    assert len(files) == 4
    d = np.load(files[0], allow_pickle=False)
    assert d["depth"].shape == (360, 640)


def test_errors_are_one_line_exit_2(tmp_path):
    r = rtface("stream", str(tmp_path / "missing.mp4"), "--backend", "cpu")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0
    assert r.stderr.startswith("rtface: error:")
    clip = shared("video/hamilton_640x360.mp4")
    env_display = os.environ.pop("DISPLAY", None)
    try:
        r = rtface("stream", str(clip), "--show", "--max-frames", "1", "--backend", "cpu")
    finally:
        if env_display is not None:
            os.environ["DISPLAY"] = env_display
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--out" in r.stderr


def test_demo_small(tmp_path):
    shared("ict-facekit/FaceXModel.tar.xz")
    r = rtface("demo", "--out", str(tmp_path), "--frames", "6", "--backend", "cpu")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "demo.mp4").stat().st_size > 1000
    assert "face found in 6" in r.stdout
    if (REPO / "rtface" / "demo_sheet.py").is_file():
        assert (tmp_path / "contact_sheet.png").is_file()


def test_bench_delegates_or_explains():
    r = rtface("bench", "--help")
    assert r.returncode == 0
    assert r.stdout.startswith("usage: rtface bench") and "fps" in r.stdout and "all" in r.stdout


# ------------------------------------------------------------------ in-process: outputs, messages, help


@pytest.fixture
def run(capsys):
    """rtface's main() in this process: (exit code, stdout, stderr)."""
    from rtface.cli import main

    def call(*args):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return call


def test_out_extension_picks_the_writer(run, tmp_path):
    portrait = shared("faces-labeled/grace_hopper_512x512.jpg")
    clip = shared("video/hamilton_640x360.mp4")
    code, out, err = run("stream", portrait, "--out", tmp_path / "photo.png", "--backend", "cpu")
    assert code == 0, err
    assert (tmp_path / "photo.png").read_bytes()[:4] == b"\x89PNG" and f"wrote {tmp_path / 'photo.png'}" in out
    code, out, err = run("stream", portrait, "--out", tmp_path / "photo.jpg", "--backend", "cpu")
    assert code == 0 and (tmp_path / "photo.jpg").read_bytes()[:2] == b"\xff\xd8"
    code, out, err = run("stream", clip, "--out", tmp_path / "f.png", "--max-frames", 2, "--backend", "cpu")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.glob("f_*.png")) == ["f_000000.png", "f_000001.png"]
    assert "wrote 2 pictures f_000000.png .. f_000001.png" in out
    code, out, err = run("stream", clip, "--out", tmp_path / "v.mkv", "--out-size", "640", "--max-frames", 2,
                         "--backend", "cpu")
    assert code == 0, err
    import av

    with av.open(str(tmp_path / "v.mkv")) as c:
        assert "matroska" in c.format.name and c.streams.video[0].width <= 640
    assert "(2 frames, " in out
    code, out, err = run("stream", portrait, "--out", tmp_path / "photo.txt", "--backend", "cpu")
    assert code == 2 and "extension '.txt'" in err and ".png" in err and ".mp4" in err


def test_no_output_option_says_where_results_would_go(run):
    portrait = shared("faces-labeled/grace_hopper_512x512.jpg")
    code, out, err = run("stream", portrait, "--backend", "cpu")
    assert code == 0, err
    assert "nothing is written" in err and "--out grace_hopper_512x512_depth.png" in err and "--save DIR" in err
    assert "1 frames, 1 faces" in out


def test_meshes_are_reported_and_need_save(run, tmp_path):
    clip = shared("video/hamilton_640x360.mp4")
    code, out, err = run("stream", clip, "--save", tmp_path, "--meshes", "--max-frames", 2, "--backend", "cpu")
    assert code == 0, err
    plys = list(tmp_path.glob("*.ply"))
    assert len(plys) >= 2 and f"wrote 2 .npz files and {len(plys)} .ply meshes to {tmp_path}" in out
    code, out, err = run("stream", clip, "--meshes", "--backend", "cpu")
    assert code == 2 and "--save" in err


def test_truncated_file_warns_in_one_line_and_the_bar_ends_at_100(run, tmp_path):
    import av
    import cv2

    full = tmp_path / "clip.mp4"  # index first (faststart): a cut copy still lists all 40 frames
    with av.open(str(full), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(40):
            img = np.full((64, 96, 3), (i * 8) % 255, np.uint8)
            cv2.circle(img, (10 + i, 30), 8, (0, 0, 255), -1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    code, out, err = run("stream", cut, "--backend", "cpu")
    assert code == 0, err
    lines = err.replace("\r", "\n").splitlines()
    warning = [line for line in lines if "warning" in line]
    assert len(warning) == 1 and warning[0].startswith(f"rtface: warning: '{cut}' is truncated or corrupt")
    assert "of the 40 frames the file lists" in warning[0]
    assert "SourceWarning" not in err and "warnings.warn" not in err and "for frame in" not in err
    bars = [line for line in lines if line.startswith("cut.mp4:")]
    assert bars[-1].startswith("cut.mp4: 100%")  # the bar ends where the file ends, not at 11/40


def test_help_texts(run, capsys):
    from rtface.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--help"])
    text = capsys.readouterr().out
    assert exit_.value.code == 0
    for option, words in (("--out", "demo.mp4"), ("--frames", "frames"), ("--backend", "backend")):
        line = text[text.index(option, text.index("options:")):]
        assert words in line.split("\n  -")[0]  # each option has its own help text
    code, out, err = run("bench", "--help")
    assert code == 0 and out.startswith("usage: rtface bench [BENCHMARK]")


def test_cache_only_run_offline(tmp_path, face_model):
    """After one run with RTFACE_ASSETS, the cache alone is enough: no assets folder, no network."""
    from rtface import assets

    portrait = shared("faces-labeled/grace_hopper_512x512.jpg")
    shared("yunet/face_detection_yunet_2023mar.onnx")
    cache = tmp_path / "cache"
    converted = assets.converted_face_model()  # the session's cache, filled by the face_model fixture
    env = {k: v for k, v in os.environ.items() if k != "RTFACE_ASSETS"}
    env.update(RTFACE_OFFLINE="1", RTFACE_CACHE=str(cache), HOME=str(tmp_path))
    exe = shutil.which("rtface", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    cmd = [exe] if exe else [sys.executable, "-m", "rtface.cli"]

    empty = subprocess.run([*cmd, "stream", str(portrait), "--backend", "cpu"], capture_output=True, text=True,
                           timeout=300, env=env, cwd=tmp_path)
    assert empty.returncode == 2
    assert "YuNet face detector" in empty.stderr and "ICT-FaceKit face model" in empty.stderr
    assert "Fix: set RTFACE_ASSETS" in empty.stderr

    # what one run with RTFACE_ASSETS leaves in the cache: the converted model and the detector
    (cache / "face_model").mkdir(parents=True)
    shutil.copy(converted, cache / "face_model" / converted.name)
    (cache / "yunet").mkdir()
    shutil.copy(assets.asset_path("yunet"), cache / "yunet")
    r = subprocess.run([*cmd, "stream", str(portrait), "--out", str(tmp_path / "p.png"), "--backend", "cpu"],
                       capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "1 frames, 1 faces" in r.stdout and (tmp_path / "p.png").is_file()
    a = subprocess.run([*cmd, "assets"], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert a.returncode == 0, a.stdout + a.stderr
    assert str(cache / "face_model" / converted.name) in a.stdout
