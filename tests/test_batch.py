"""rtface batch on a local Ray (num_cpus=2, one session for the module): outputs equal a sequential run's, resume,
a killed worker, a corrupt and a truncated input, long videos in segments."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import rtface
from tests.batch_clips import OPTIONS, assert_same, make_clips, sequential
from tests.conftest import SHARED_ASSETS, shared

ray = pytest.importorskip("ray", reason="rtface batch's Ray tests need Ray: pip install 'rtface[batch]'")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_session():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    shared("ict-facekit/FaceXModel.tar.xz")
    shared("yunet/face_detection_yunet_2023mar.onnx")
    return make_clips(tmp_path_factory.mktemp("clips"))


@pytest.fixture(scope="module")
def refs(clips):
    """Each good clip's archive from one sequential run in this process."""
    return {k: sequential(clips[k]) for k in ("dafoe", "hamilton", "long", "portrait", "truncated")}


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_outputs_equal_a_sequential_run_and_a_rerun_skips_them(ray_session, clips, refs, tmp_path):
    out = tmp_path / "out"
    inputs = [clips["dafoe"], clips["hamilton"], clips["portrait"]]
    r = rtface.batch(inputs, out, progress=False, **OPTIONS)
    assert r.ok and len(r.done) == 3 and r.runner.startswith("Ray (local: 1 node, 2 CPUs")
    for rec, key in zip(_lines(out), ("dafoe", "hamilton", "portrait")):
        assert rec["status"] == "done" and rec["input"] == str(clips[key]) and rec["output"] == f"{key}.npz"
        assert rec["frames"] == len(rtface.load(out / rec["output"])) and rec["seconds"] > 0
        assert_same(out / rec["output"], refs[key])
    assert rtface.load(out / "portrait.npz").faces >= 1
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npz")}

    again = rtface.batch(inputs, out, progress=False, **OPTIONS)
    assert again.skipped_done == 3 and again.records == [] and "3 skipped (done before" in again.summary()
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.npz")} == stamps

    forced = rtface.batch(inputs[:1], out, progress=False, force=True, **OPTIONS)
    assert len(forced.done) == 1 and (out / "dafoe.npz").stat().st_mtime_ns != stamps["dafoe.npz"]
    assert_same(out / "dafoe.npz", refs["dafoe"])
    assert len(_lines(out)) == 3  # one line per input


def test_a_stopped_job_resumes_and_leaves_no_partial_file(ray_session, clips, refs, tmp_path):
    """The driver is killed (SIGKILL) after its first input; the same command again finishes the rest."""
    out = tmp_path / "out"
    keys = ("dafoe", "long", "hamilton", "portrait")  # the longest second: the kill comes while it runs
    args = [str(clips[k]) for k in keys]
    env = dict(os.environ, RTFACE_ASSETS=str(SHARED_ASSETS), RTFACE_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "rtface.cli", "batch", *args, "--out", str(out), "--workers", "0",
                             "--backend", "cpu", "--quiet"], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "manifest.jsonl").is_file() and '"done"' in (out / "manifest.jsonl").read_text():
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    finished = {r["output"] for r in _lines(out) if r["status"] == "done"}
    assert 1 <= len(finished) < len(keys)
    assert {p.name for p in out.glob("*.npz")} == finished  # under its final name, an archive is complete
    for name in finished:
        assert_same(out / name, refs[name[:-4]])

    r = rtface.batch(args, out, progress=False, **OPTIONS)
    assert r.ok and r.skipped_done == len(finished) and len(r.done) == len(keys) - len(finished)
    for k in keys:
        assert_same(out / f"{k}.npz", refs[k])
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{k}.npz" for k in keys] + ["manifest.jsonl"])
    assert len(_lines(out)) == len(keys)


def _descends_from_us(pid: int) -> bool:
    """Whether ``pid`` is a process of this test's own Ray (the raylet that ray.init started here is its parent)."""
    me = os.getpid()
    for _ in range(8):
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid == me:
            return True
        if pid <= 1:
            return False
    return False


def _running_unit() -> int | None:
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                cmd = Path(f"/proc/{d}/cmdline").read_bytes()
            except OSError:
                continue
            if cmd.startswith(b"ray::run_unit") and _descends_from_us(int(d)):
                return int(d)
    return None


def test_a_killed_worker_loses_and_duplicates_nothing(ray_session, clips, refs, tmp_path):
    out = tmp_path / "out"
    keys = ("long", "dafoe", "hamilton")
    box: dict = {}
    job = threading.Thread(target=lambda: box.setdefault("r", rtface.batch([clips[k] for k in keys], out,
                                                                            progress=False, **OPTIONS)))
    job.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and job.is_alive() and time.monotonic() < deadline:
        pid = _running_unit()
        if pid is not None:
            time.sleep(0.1)  # into its frames
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::run_unit"):
                os.kill(pid, signal.SIGKILL)
                killed = pid
        time.sleep(0.02)
    job.join(180)
    assert killed is not None, "no task was seen running"
    r = box["r"]
    assert r.ok and len(r.done) == 3
    lines = _lines(out)
    assert sorted(x["input"] for x in lines) == sorted(str(clips[k]) for k in keys)  # each input once
    assert all(f"pid {killed})" not in x["node"] for x in lines)  # the killed attempt wrote nothing
    for k in keys:
        assert_same(out / f"{k}.npz", refs[k])


def test_corrupt_truncated_and_missing_inputs(ray_session, clips, refs, tmp_path):
    out = tmp_path / "out"
    inputs = [clips["corrupt"], clips["dafoe"], clips["truncated"], tmp_path / "missing.mp4"]
    r = rtface.batch(inputs, out, progress=False, **OPTIONS)
    assert not r.ok and len(r.done) == 2 and len(r.failed) == 2
    by = {Path(x["input"]).name: x for x in _lines(out)}
    assert by["corrupt.mp4"]["status"] == "failed" and "is not a video FFmpeg can read" in by["corrupt.mp4"]["error"]
    assert "output" not in by["corrupt.mp4"]
    assert by["missing.mp4"]["status"] == "failed" and "does not exist" in by["missing.mp4"]["error"]
    t = by["truncated.mp4"]
    assert t["status"] == "done" and "is truncated or corrupt at frame" in t["warning"]
    assert f"the stream ends after frame {t['frames'] - 1}" in t["warning"] and 0 < t["frames"] < 24
    assert_same(out / "truncated.npz", refs["truncated"])
    assert_same(out / "dafoe.npz", refs["dafoe"])
    assert "failed: " in r.summary() and "warning: " in r.summary()


def test_a_long_video_in_segments_joins_in_order(ray_session, clips, refs, tmp_path):
    # 40 frames, segments of 20: with a warm-up back to frame 0 the join is exactly the sequential run
    out = tmp_path / "exact"
    r = rtface.batch([clips["long"]], out, segment=0.6, overlap=0.7, progress=False, **OPTIONS)
    assert r.ok and r.done[0]["segments"] == 2 and r.done[0]["join_landmarks_px"] == 0.0
    assert_same(out / "long.npz", refs["long"])
    with rtface.load(out / "long.npz") as a:
        segs = a.meta["segments"]
        assert [(s["first"], s["last"], s["warmup"]) for s in segs] == [(0, 19, 0), (20, 39, 0)]
        assert segs[1]["join"]["exact"] and segs[1]["join"]["matched"] == 1

    # a 10-frame warm-up: the same frames, faces and track ids; the values close to the sequential run's
    out = tmp_path / "overlap"
    r = rtface.batch([clips["long"]], out, segment=0.6, overlap=0.3, progress=False, **OPTIONS)
    assert r.ok and r.done[0]["segments"] == 2
    with rtface.load(out / "long.npz") as a, np.load(__import__("io").BytesIO(refs["long"])) as b:
        assert a.meta["segments"][1]["warmup"] == 10 and a.meta["segments"][1]["join"]["frame"] == 19
        for k in ("frame_index", "timestamp", "face_start", "track_id"):
            assert np.array_equal(a.table(k), b[k]), k
        # the detail resolution follows the crop's scale (rtface.detail): at most one step of 16 px apart
        assert np.abs(a.table("map_size").astype(int) - b["map_size"]).max() <= 16
        first = int(b["face_start"][20])
        assert np.array_equal(a.table("landmarks")[:first], b["landmarks"][:first])  # segment 0 is exact
        diff = np.abs(a.table("landmarks")[first:] - b["landmarks"][first:]).max(axis=(1, 2))
        assert np.median(diff) < 3.0, diff  # frame px; docs/batch.md has the measured figures
