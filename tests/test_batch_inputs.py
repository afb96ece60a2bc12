"""rtface batch without Ray: inputs, names, the manifest, bad input on the command line, the one-process fallback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rtface.batching.inputs import expand, output_names
from rtface.batching.manifest import Manifest
from tests.conftest import SHARED_ASSETS, shared

REPO = Path(__file__).resolve().parents[1]


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folders_patterns_lists_and_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _touch(tmp_path / "v" / "a.mp4")
    _touch(tmp_path / "v" / "sub" / "b10.MOV")
    _touch(tmp_path / "v" / "sub" / "b2.jpg")
    _touch(tmp_path / "v" / ".hidden.mp4")
    _touch(tmp_path / "v" / ".cache" / "c.mp4")
    _touch(tmp_path / "v" / "notes.md")
    _touch(tmp_path / "lists" / "d.mkv")
    (tmp_path / "lists" / "more.txt").write_text(
        "# my clips\n\n  d.mkv  \n   # indented comment\n../v/a.mp4\nrtsp://cam.local/stream1\nnope.mp4\n")
    e = expand(["v", "lists/more.txt", "v/*.mp4", "none/*.mp4"])
    assert [i.input for i in e.items if i.error is None] == [
        "v/a.mp4", "v/sub/b2.jpg", "v/sub/b10.MOV", "lists/d.mkv", "rtsp://cam.local/stream1"]
    assert e.items[1].source == str((tmp_path / "v/sub/b2.jpg").resolve())
    assert e.duplicates == ["lists/../v/a.mp4", "v/a.mp4"]  # by the list and by the pattern
    broken = {i.input: i.error for i in e.broken}
    assert "does not exist" in broken["lists/nope.mp4"] and "lists/more.txt" in broken["lists/nope.mp4"]
    assert "matches no videos" in broken["none/*.mp4"]
    assert e.items[4].is_url and e.items[4].source == "rtsp://cam.local/stream1"


def test_a_list_that_names_itself_and_an_empty_folder(tmp_path):
    (tmp_path / "l.txt").write_text(f"{tmp_path / 'l.txt'}\n{tmp_path / 'x.mp4'}\n")
    _touch(tmp_path / "x.mp4")
    (tmp_path / "empty").mkdir()
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00garbage")
    e = expand([tmp_path / "l.txt", tmp_path / "empty", tmp_path / "bin.txt"])
    assert [Path(i.source).name for i in e.runnable] == ["x.mp4"]
    errors = [i.error for i in e.broken]
    assert any("holds no videos or images" in m for m in errors) and any("cannot read the list" in m for m in errors)


def test_output_names_are_unique_and_stable(tmp_path):
    a, b, c = _touch(tmp_path / "1" / "clip.mp4"), _touch(tmp_path / "2" / "clip.mp4"), _touch(tmp_path / "x.mp4")
    items = expand([a, b, c]).items
    names = output_names(items)
    assert names[str(c)] == "x.npz"
    assert names[str(a)] != names[str(b)] and names[str(a)].startswith("clip-") and names[str(a)].endswith(".npz")
    assert output_names(items) == names
    # a name already taken in the folder stays its source's, and a new source with the same stem gets a hash
    again = output_names(expand([c, _touch(tmp_path / "3" / "x.mp4")]).items, taken={str(c): "x.npz"})
    assert again[str(c)] == "x.npz" and again[str(tmp_path / "3" / "x.mp4")].startswith("x-")


def test_manifest_keeps_the_latest_line_and_survives_a_torn_one(tmp_path):
    m = Manifest(tmp_path)
    m.append({"input": "a.mp4", "source": "/a.mp4", "status": "failed", "error": "boom"})
    m.append({"input": "b.mp4", "source": "/b.mp4", "status": "done", "frames": 3, "faces": 3, "output": "b.npz"})
    m.append({"input": "a.mp4", "source": "/a.mp4", "status": "done", "frames": 5, "faces": 4, "output": "a.npz"})
    with open(m.path, "a") as fh:
        fh.write('{"input": "c.mp4", "sour')  # the driver died while writing
    again = Manifest(tmp_path)
    assert again.unreadable == 1 and again.records["/a.mp4"]["frames"] == 5
    assert again.done("/a.mp4") is None  # its archive is not there
    _touch(tmp_path / "a.npz")
    assert again.done("/a.mp4")["output"] == "a.npz"
    again.compact(["/b.mp4", "/a.mp4"])
    lines = [json.loads(line) for line in m.path.read_text().splitlines()]
    assert [r["source"] for r in lines] == ["/b.mp4", "/a.mp4"] and all("finished" in r for r in lines)


def _cli(*args, env=None, cwd=None):
    full = dict(os.environ, RTFACE_ASSETS=str(SHARED_ASSETS), RTFACE_OFFLINE="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "rtface.cli", "batch", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=full, cwd=cwd or REPO)


def test_nothing_usable_is_one_clear_line_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    r = _cli(tmp_path / "missing.mp4", str(tmp_path / "none" / "*.mp4"), "--out", out, "--workers", "0")
    assert r.returncode == 2 and r.stderr.startswith("rtface: error: nothing to do:")
    assert r.stderr.count("\n") == 1 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()
    (tmp_path / "afile").write_text("x")
    clip = shared("video/dafoe_1280x720.mp4")
    r = _cli(clip, "--out", tmp_path / "afile" / "out", "--workers", "0")
    assert r.returncode == 2 and "cannot write to the output folder" in r.stderr and r.stderr.count("\n") == 1
    r = _cli(clip, "--out", tmp_path / "afile", "--workers", "0")
    assert r.returncode == 2 and "is a file" in r.stderr
    r = _cli(clip, "--out", out, "--segment", "-1", "--workers", "0")
    assert r.returncode == 2 and "segment must be a positive number" in r.stderr and not out.exists()


def test_without_ray_it_runs_in_one_process_and_says_so(tmp_path):
    """Ray hidden (a 'ray' package that fails to import first on the path): the job runs here, one note line;
    a missing input and a list with blank and commented lines are handled on the way."""
    from tests.batch_clips import cut

    fake = tmp_path / "noray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named ray (hidden by the test)')\n")
    clip = cut("video/dafoe_1280x720.mp4", tmp_path / "c.mp4", 0, 8, (256, 144))
    (tmp_path / "list.txt").write_text("# clips\n\nc.mp4\n   \n# c2.mp4\nmissing.mp4\n")
    out = tmp_path / "out"
    r = _cli(tmp_path / "list.txt", clip, "--out", out, "--backend", "cpu",
             env={"PYTHONPATH": f"{tmp_path / 'noray'}{os.pathsep}{REPO}"})
    assert r.returncode == 1, r.stderr  # one input failed (missing.mp4)
    notes = [line for line in r.stderr.replace("\r", "\n").splitlines() if "note" in line]
    assert len(notes) == 1 and "Ray is not installed (pip install 'rtface[batch]')" in notes[0]
    assert "one process (Ray not installed)" in r.stdout
    assert "2 inputs: 1 done, 1 failed, 1 given twice (run once)" in r.stdout
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [(x["input"], x["status"]) for x in lines] == [(str(tmp_path / "c.mp4"), "done"),
                                                           (str(tmp_path / "missing.mp4"), "failed")]
    assert lines[0]["frames"] == 8 and lines[0]["output"] == "c.npz" and (out / "c.npz").is_file()
    assert "does not exist" in lines[1]["error"]
    assert sorted(p.name for p in out.iterdir()) == ["c.npz", "manifest.jsonl"]  # nothing half-written


def test_help_lists_batch():
    r = subprocess.run([sys.executable, "-m", "rtface.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert "batch" in r.stdout
    r = subprocess.run([sys.executable, "-m", "rtface.cli", "batch", "--help"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "--address" in r.stdout and "--segment" in r.stdout and "--force" in r.stdout


def test_segments_seek_to_the_frames_a_sequential_decode_gives(tmp_path):
    """Each segment decoded from its keyframe gives the same frames (index, timestamp, pixels) as decoding the
    whole file; a file whose packets do not add up is not split."""
    import numpy as np

    from rtface.batching.segments import plan, segment_source
    from rtface.sources import open_source

    video = str(shared("video/hamilton_640x360.mp4"))  # keyframes at shot changes, not at segment starts
    segments, why = plan(video, segment_frames=40, overlap_frames=10, align=10)
    assert why == "7 segments of 40 frames"
    assert [(s.first, s.last, s.warmup) for s in segments][:3] == [(0, 39, 0), (40, 79, 30), (80, 119, 70)]
    assert segments[-1].last == 274
    frames = [(f.index, f.timestamp, f.image) for f in open_source(video)]
    for s in segments[::3]:
        got = [(f.index, f.timestamp, f.image) for f in segment_source(video, s)]
        want = frames[s.warmup:s.last + 1]
        assert [g[:2] for g in got] == [w[:2] for w in want]
        assert all(np.array_equal(g[2], w[2]) for g, w in zip(got, want))
    data = Path(video).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    assert plan(str(cut), segment_frames=40, overlap_frames=10, align=10)[0] is None
    assert plan(video, segment_frames=200, overlap_frames=10, align=10) == (None, "short enough for one task")
