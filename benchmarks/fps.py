"""End-to-end speed of the pipeline: ms per stage and FPS, per backend, one face and several faces.

``python -m benchmarks.fps [--video PATH ...] [--backends cpu,cuda,tensorrt] [--frames N] [--json PATH]``

Videos: ``--video`` or every ``*.mp4`` in ``$RTFACE_ASSETS/video`` (``../shared/assets/video`` in a checkout).
For each video and backend two settings run:

* ``1 face``: the clip as it is with ``max_faces=1`` (batch 1);
* ``4 faces``: every frame tiled 2 x 2 (each tile at half size, so the frame size is unchanged) with
  ``max_faces=4`` (batch 4 when the clip shows a face).

Frames are decoded into memory first (decode ms is reported from the decoder, apart), the pipeline's
``stream`` runs over them, and every result's frame depth is read (so the paste is included). FPS is frames
over wall time after ``--warmup`` frames; stage ms are means over the same frames. The table names the
machine (CPU model, cores, ONNX Runtime threads, GPU).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .report import machine, write_json

STAGES = ("detect", "crop", "feedback", "coarse", "mesh", "render", "fine", "paste", "total")


def _default_videos() -> list[Path]:
    from rtface.assets import data_path

    return sorted(data_path("video").glob("*.mp4"))


def load_frames(path: Path, n: int) -> tuple[list[np.ndarray], float, float]:
    """First ``n`` frames (BGR), mean decode ms, and the clip's fps."""
    from rtface.sources import open_source

    frames, dec = [], []
    with open_source(path) as src:
        fps = src.fps or 30.0
        for f in src:
            frames.append(f.image)
            dec.append(f.decode_ms)
            if len(frames) >= n:
                break
    return frames, float(np.mean(dec)) if dec else 0.0, float(fps)


def tile4(frames: list[np.ndarray]) -> list[np.ndarray]:
    import cv2

    out = []
    for f in frames:
        h, w = f.shape[:2]
        small = cv2.resize(f, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        row = np.hstack([small, small])
        out.append(np.ascontiguousarray(np.vstack([row, row])))
    return out


def run_one(frames: list[np.ndarray], backend: str, max_faces: int, warmup: int, fps: float,
            **pipe_kw: Any) -> dict[str, Any]:
    from rtface.pipeline import Pipeline

    pipe = Pipeline(backend=backend, max_faces=max_faces, **pipe_kw)
    try:
        for r in pipe.stream(frames[:warmup], fps=fps):  # JIT, engine warm-up
            _ = r.depth
        sums = {k: 0.0 for k in STAGES}
        n = nf = 0
        batch = []
        t0 = time.perf_counter()
        for r in pipe.stream(frames[warmup:], fps=fps):
            _ = r.depth
            n += 1
            nf += len(r.faces)
            batch.append(len(r.faces))
            for k in STAGES:
                sums[k] += r.timings.get(k, 0.0)
        wall = time.perf_counter() - t0
        det = sum(1 for _ in ())
        del det
        return {"backend": pipe.backend, "max_faces": max_faces, "frames": n,
                "mean_faces": nf / max(n, 1), "fps": n / wall if wall > 0 else float("nan"),
                "ms": {k: sums[k] / max(n, 1) for k in STAGES}, "trained": pipe.networks.trained}
    finally:
        pipe.close()


def format_table(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    lines = [f"machine: {info['cpu']}, {info['physical_cores']} physical cores ({info['cpus']} CPUs), "
             f"ONNX Runtime threads {info['ort_threads']}, GPU {info['gpu'] or 'none'}"]
    head = f"{'video':24s} {'backend':9s} {'setting':8s} {'faces':>5s} {'FPS':>6s} " + \
        " ".join(f"{k:>8s}" for k in ("decode",) + STAGES)
    lines += [head, "-" * len(head)]
    for r in rows:
        ms = r["ms"]
        lines.append(f"{r['video'][:24]:24s} {r['backend']:9s} {r['setting']:8s} {r['mean_faces']:5.2f} "
                     f"{r['fps']:6.1f} " + " ".join(f"{v:8.1f}" for v in [r["decode_ms"]] + [ms[k] for k in STAGES]))
    if rows and not rows[0].get("trained", True):
        lines.append("note: untrained placeholder weights (tracking may re-detect more often than with trained ones)")
    lines.append("ms per frame (means); total = this thread's work per frame without decode and paste; "
                 "FPS = frames / wall time, paste included, decode excluded (frames preloaded)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fps", description=__doc__.splitlines()[0])
    p.add_argument("--video", action="append", type=Path, help="video file (repeatable)")
    p.add_argument("--backends", default=None, help="comma-separated (default: every available backend)")
    p.add_argument("--frames", type=int, default=150, help="frames per run (after warm-up)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--settings", default="1,4", help="'1' (one face), '4' (2x2 tiled), or both")
    p.add_argument("--detect-every", type=int, default=None)
    p.add_argument("--json", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)

    from rtface.engines import available_backends

    videos = args.video or _default_videos()
    if not videos:
        print("no videos: pass --video PATH or set RTFACE_ASSETS to a folder with video/*.mp4", file=sys.stderr)
        return 2
    backends = args.backends.split(",") if args.backends else available_backends()
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    info = machine()
    kw = {} if args.detect_every is None else {"detect_every": args.detect_every}
    rows = []
    for v in videos:
        frames, dec_ms, fps = load_frames(v, args.frames + args.warmup)
        for b in backends:
            for s in settings:
                fr, mf = (frames, 1) if s == "1" else (tile4(frames), 4)
                r = run_one(fr, b, mf, args.warmup, fps, **kw)
                r.update(video=v.name, setting=f"{mf} face" + ("s" if mf > 1 else ""), decode_ms=dec_ms,
                         frame_size=list(fr[0].shape[:2]))
                rows.append(r)
                print(f"{v.name} {b} {r['setting']}: {r['fps']:.1f} FPS", file=sys.stderr)
    print(format_table(rows, info))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, {"benchmark": "fps", "machine": info, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
