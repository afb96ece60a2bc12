"""``rtface batch`` throughput on a folder of clips, and how close a video in segments is to one sequential run.

``python -m benchmarks batch [--clips DIR] [--count N] [--clip-frames N] [--size WxH] [--runs stream,1,2,cluster]
[--backend cpu] [--cores N] [--measure throughput,joins] [--json PATH]``

**throughput** (frames per second over the whole folder). Each run is a fresh command, timed from its start to
its exit, as a user runs it (starting Ray and loading the networks in every worker included):

* ``stream``: ``rtface stream CLIP`` on each clip, one after another (every run loads the networks; ONNX Runtime
  uses all ``--cores``);
* ``1``: ``rtface batch DIR --workers 1 --cpus-per-task CORES`` (a local Ray, one task at a time);
* ``2``: ``rtface batch DIR --workers 2 --cpus-per-task CORES/2``;
* ``cluster``: a Ray cluster of two nodes started with ``ray start --head`` and ``ray start --address`` on this
  machine (:class:`rtface.batching.localcluster.LocalCluster`, CORES/2 CPUs each), then ``rtface batch DIR
  --address HEAD --cpus-per-task CORES/2``; the cluster's start is not timed (it is set up once, in practice).

The clips: ``--clips DIR`` (every video in it), or ``--count`` clips of ``--clip-frames`` frames cut from
``$RTFACE_ASSETS/video/*.mp4`` (consecutive pieces, round robin over the videos), at ``--size`` when given.

**joins** (no timing; deterministic): every video of ``$RTFACE_ASSETS/video`` processed in segments of
``--join-segment`` seconds with a warm-up of each of ``--overlaps`` seconds (in this process), against one
sequential run: over the frames after the first cut, the share of frames whose faces differ in number, and for
the faces matched by box IoU the landmark difference (frame px: mean, 95th percentile, max), the depth
difference where both masks are set (mm), the share of faces with the sequential run's track id, and the share
of frames that are bit-identical.

The table names the machine (CPU, cores); figures from a machine busy with other work are not valid.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .report import machine, write_json

RUNS = ("stream", "1", "2", "cluster")


def _size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def make_clips(folder: Path, count: int, frames: int, size: tuple[int, int] | None) -> list[Path]:
    """``count`` clips of ``frames`` frames: consecutive pieces of the shared videos, round robin."""
    from rtface.assets import data_path

    from .fps import probe, reencode

    videos = sorted(data_path("video").glob("*.mp4"))
    if not videos:
        raise SystemExit("no videos: set RTFACE_ASSETS to a folder with video/*.mp4, or pass --clips DIR")
    pieces = [(v, s) for v in videos for s in range(0, max(1, probe(v)["frames"] - frames + 1), frames)]
    clips = []
    for k in range(count):
        video, start = pieces[k % len(pieces)]
        clips.append(reencode(video, folder / f"clip{k:03d}_{video.stem}.mp4", size=size, max_frames=frames,
                              start=start))
    return clips


def _frames(clip: Path) -> int:
    from .fps import probe

    return probe(clip)["frames"]


def _run(cmd: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed ({r.returncode}): {r.stderr[-2000:]}")
    return time.perf_counter() - t0


def throughput(clips: list[Path], runs: list[str], backend: str, cores: int, tmp: Path) -> list[dict[str, Any]]:
    """One row per run (module docstring)."""
    from rtface.batching.localcluster import LocalCluster

    exe = [sys.executable, "-m", "rtface.cli"]
    frames = sum(_frames(c) for c in clips)
    folder = clips[0].parent
    half = max(1, cores // 2)
    rows = []
    for run in runs:
        out = tmp / f"out-{run}"
        if run == "stream":
            wall = sum(_run([*exe, "stream", str(c), "--backend", backend]) for c in clips)
            how = f"rtface stream CLIP --backend {backend}, {len(clips)} times"
        elif run in ("1", "2"):
            w = int(run)
            per = cores if w == 1 else half
            cmd = [*exe, "batch", str(folder), "--out", str(out), "--workers", run, "--cpus-per-task", str(per),
                   "--backend", backend, "--quiet", "--segment", "0"]
            wall = _run(cmd)
            how = f"rtface batch DIR --workers {w} --cpus-per-task {per}"
        elif run == "cluster":
            with LocalCluster(nodes=2, cpus_per_node=half) as c:
                cmd = [*exe, "batch", str(folder), "--out", str(out), "--address", c.address, "--cpus-per-task",
                       str(half), "--backend", backend, "--quiet", "--segment", "0"]
                wall = _run(cmd, env=c.env)
            how = f"2-node Ray cluster (ray start x2, {half} CPU each), --cpus-per-task {half}"
        else:
            raise SystemExit(f"unknown run {run!r}; choose from {', '.join(RUNS)}")
        rows.append({"run": run, "how": how, "clips": len(clips), "frames": frames, "wall_s": wall,
                     "fps": frames / wall})
    base = next((r["fps"] for r in rows if r["run"] == "stream"), None)
    for r in rows:
        r["vs_stream"] = r["fps"] / base if base else None
    return rows


def _compare(seq, seg, frames_of: list[int]) -> dict[str, Any]:
    """Closeness of the archive ``seg`` to ``seq`` over the frames ``frames_of`` (module docstring)."""
    from rtface.batching.join import _greedy_pairs

    lm, depth, ids, count_diff, exact, frames = [], [], [], 0, 0, 0
    starts_a, starts_b = seq.table("face_start"), seg.table("face_start")
    for i in frames_of:
        frames += 1
        ra = range(int(starts_a[i]), int(starts_a[i + 1]))
        rb = range(int(starts_b[i]), int(starts_b[i + 1]))
        if len(ra) != len(rb):
            count_diff += 1
        pairs = _greedy_pairs(seq.table("box")[list(ra)], seg.table("box")[list(rb)])
        same = len(ra) == len(rb) == len(pairs)
        for a, b in ((ra[i_], rb[j_]) for i_, j_ in pairs):
            d = float(np.abs(seq.table("landmarks")[a] - seg.table("landmarks")[b]).max())
            lm.append(d)
            ids.append(int(seq.table("track_id")[a]) == int(seg.table("track_id")[b]))
            same = same and d == 0.0
            if seq.table("map_size")[a] == seg.table("map_size")[b]:
                da, ma = seq.maps(a)
                db, mb = seg.maps(b)
                both = ma & mb
                if both.any():
                    depth.append(float(np.abs(da - db)[both].mean() * seq.table("mm_per_pixel")[a]))
        exact += same
    lm_a = np.asarray(lm or [0.0])
    return {"frames": frames, "face_count_differs": count_diff / max(frames, 1),
            "landmarks_px_mean": float(lm_a.mean()), "landmarks_px_p95": float(np.percentile(lm_a, 95)),
            "landmarks_px_max": float(lm_a.max()), "depth_mm_mean": float(np.mean(depth or [0.0])),
            "same_track_id": float(np.mean(ids or [1.0])), "exact_frames": exact / max(frames, 1)}


def joins(videos: list[Path], segment: float, overlaps: list[float], backend: str, tmp: Path) -> list[dict]:
    """One row per video and overlap (module docstring)."""
    import rtface
    from rtface.archive import ArchiveWriter
    from rtface.batching.task import Settings, pipeline

    rows = []
    for video in videos:
        pipe = pipeline(Settings(backend=backend))
        buf = io.BytesIO()
        w = ArchiveWriter(buf)
        for r in pipe.stream(str(video)):
            w.add_frame(r)
        w.close({})
        seq_path = tmp / f"{video.stem}-sequential.npz"
        seq_path.write_bytes(buf.getvalue())
        seq = rtface.load(seq_path)
        for overlap in overlaps:
            out = tmp / f"joins-{video.stem}-{overlap:g}"
            res = rtface.batch([video], out, workers=0, segment=segment, overlap=overlap, backend=backend,
                               progress=False)
            rec = res.done[0]
            seg = rtface.load(out / rec["output"])
            # segments whose warm-up starts after frame 0 (one that reaches back to 0 is a sequential run)
            partial = [s for s in seg.meta["segments"] if s["warmup"] > 0]
            row = {"video": video.name, "frames": len(seq), "segments": rec["segments"], "overlap_s": overlap,
                   "warmup_frames": max((s["first"] - s["warmup"] for s in partial), default=0),
                   "cuts": len(partial)}
            row.update(_compare(seq, seg, [i for s in partial for i in range(s["first"], s["last"] + 1)]))
            rows.append(row)
    return rows


def format_tables(info: dict, tp: list[dict], jn: list[dict]) -> str:
    lines = [f"machine: {info['cpu']}, {info['physical_cores']} physical cores, backends {info['backends']}"]
    if tp:
        lines += ["", f"{'run':8s} {'frames':>7s} {'wall s':>8s} {'frames/s':>9s} {'vs stream':>9s}  how"]
        for r in tp:
            vs = f"{r['vs_stream']:.2f}x" if r["vs_stream"] else "-"
            lines.append(f"{r['run']:8s} {r['frames']:7d} {r['wall_s']:8.1f} {r['fps']:9.2f} {vs:>9s}  {r['how']}")
        lines.append("wall = the whole command (Ray start, network loading, writing the archives); the cluster's own "
                     "start is not timed")
    if jn:
        lines += ["", f"{'video':22s} {'seg':>3s} {'cuts':>4s} {'warm-up':>7s} {'frames':>6s} {'n differs':>9s} "
                      f"{'lm mean':>7s} {'lm p95':>7s} {'lm max':>7s} {'depth mm':>8s} {'same id':>7s} {'exact':>6s}"]
        for r in jn:
            if not r["cuts"]:
                lines.append(f"{r['video'][:22]:22s} {r['segments']:3d} {0:4d}  warm-up {r['overlap_s']:g} s reaches "
                             f"frame 0 at every cut: the sequential run")
                continue
            lines.append(f"{r['video'][:22]:22s} {r['segments']:3d} {r['cuts']:4d} {r['warmup_frames']:7d} "
                         f"{r['frames']:6d} "
                         f"{r['face_count_differs']:9.1%} {r['landmarks_px_mean']:7.3f} {r['landmarks_px_p95']:7.3f} "
                         f"{r['landmarks_px_max']:7.2f} {r['depth_mm_mean']:8.3f} {r['same_track_id']:7.1%} "
                         f"{r['exact_frames']:6.1%}")
        lines.append("over the frames of the segments whose warm-up starts after frame 0 (cuts); frames = those "
                     "frames; lm = landmarks (frame px), faces matched by box IoU; depth = mean |difference| where "
                     "both masks are set")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks batch", description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=Path, help="a folder of videos (default: clips cut from the shared videos)")
    p.add_argument("--count", type=int, default=8, help="clips to cut (default: 8)")
    p.add_argument("--clip-frames", type=int, default=60, help="frames per cut clip (default: 60)")
    p.add_argument("--size", type=_size, default=None, metavar="WxH", help="cut clips at this size")
    p.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated from {', '.join(RUNS)} (default: all)")
    p.add_argument("--backend", default="cpu", help="rtface backend (default: cpu)")
    p.add_argument("--cores", type=int, default=None, help="cores a run may use (default: physical cores)")
    p.add_argument("--measure", default="throughput", help="throughput, joins, or both (comma-separated)")
    p.add_argument("--join-segment", type=float, default=1.0, help="seconds per segment for joins (default: 1)")
    p.add_argument("--overlaps", default="0.3,0.6,1,2,4",
                   help="warm-up seconds for joins (default: 0.3,0.6,1,2,4: 10, 20, 30, 60, 120 frames at 30 fps)")
    p.add_argument("--json", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)
    measure = {m.strip() for m in args.measure.split(",") if m.strip()}
    if not measure <= {"throughput", "joins"}:
        p.error("--measure takes throughput, joins or both")
    from rtface.engines import physical_cores

    info = machine()
    cores = args.cores or physical_cores()
    tp: list[dict] = []
    jn: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="rtface-batch-") as d:
        tmp = Path(d)
        if "throughput" in measure:
            if args.clips:
                from rtface.batching.inputs import VIDEO_EXTENSIONS

                clips = sorted(c for c in args.clips.iterdir() if c.suffix.lower() in VIDEO_EXTENSIONS)
                staged = tmp / "clips"
                staged.mkdir()
                for c in clips:  # the folder as given may hold other things: link the videos into one of ours
                    os.symlink(c.resolve(), staged / c.name)
                clips = sorted(staged.iterdir())
            else:
                (tmp / "clips").mkdir()
                clips = make_clips(tmp / "clips", args.count, args.clip_frames, args.size)
            runs = [r.strip() for r in args.runs.split(",") if r.strip()]
            tp = throughput(clips, runs, args.backend, cores, tmp)
        if "joins" in measure:
            from rtface.assets import data_path

            videos = sorted(data_path("video").glob("*.mp4"))
            overlaps = [float(x) for x in args.overlaps.split(",") if x.strip()]
            jn = joins(videos, args.join_segment, overlaps, args.backend, tmp)
    print(format_tables(info, tp, jn))
    write_json(args.json, {"machine": info, "cores": cores, "throughput": tp, "joins": jn})
    return 0


if __name__ == "__main__":
    sys.exit(main())
