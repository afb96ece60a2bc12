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
    r = rtface("assets", "--no-verify")
    assert r.returncode == 0, r.stderr
    assert "yunet" in r.stdout and "ict-facekit" in r.stdout and "weights" in r.stdout


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
    assert "fps" in r.stdout
