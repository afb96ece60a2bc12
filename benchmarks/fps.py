"""End-to-end speed, decode included: FPS and ms per stage, one face and several faces, beside MediaPipe.

``python -m benchmarks fps [--video PATH ...] [--backends cpu,cuda,tensorrt] [--precision auto|fp32|fp16|int8]
[--settings 1,4] [--size WxH] [--frames N] [--warmup N] [--threads N] [--decode-threads N]
[--detect-every N] [--sync-stages] [--no-mediapipe] [--mediapipe-model FILE] [--json PATH]``

Videos: ``--video`` (any file FFmpeg reads, any size) or every ``*.mp4`` in ``$RTFACE_ASSETS/video``.
Settings, per video and backend:

* ``1``: the clip as it is, ``max_faces=1`` (one face at the clip's own size, e.g. 1080p);
* ``4``: every frame tiled 2 x 2 (each tile at half size: the frame size is unchanged, four faces), written
  once to a temporary H.264 file so that it is decoded like any video; ``max_faces=4``.

``--size WxH`` first re-encodes each clip at that size (H.264, CRF 18), e.g. ``--size 1920x1080`` for the
1080p figure from the 720p example clip; the 4-face setting of the 720p clip is the "4 faces at 720p" case.

Each run is what a user gets: ``Pipeline.stream(path)`` (the reader thread decodes while the pipeline runs,
:mod:`rtface.sources`), and every result's frame depth is read (``frame.depth``, so the paste is included).
A first stream over ``--warmup`` frames warms the pipeline (Numba compilation, ONNX Runtime); then a fresh
stream over up to ``--frames`` frames is timed from before it opens to its last result: FPS = frames / that
wall time. Stage ms are means over the timed frames (:data:`rtface.pipeline.STAGES`: ``wait`` for the
decoder, ``detect`` ... ``fine``, ``other``, ``paste``); they add up to the frame time (the ``sum`` and
``frame`` columns; the benchmark says so when they differ by more than 10 %). ``decode`` is the reader
thread's own time per frame, overlapped with the stages (not in the sum).

MediaPipe Face Mesh (where ``mediapipe`` is installed: ``pip install 'rtface[bench]'``) runs on the same clip
in the same run, decoded by the same threaded reader, BGR -> RGB (what it needs) included, ``max_num_faces``
= the setting's faces; the table prints rtface's FPS over MediaPipe's. MediaPipe gives sparse 3D landmarks
(468 points), no depth map. Versions up to 0.10.21 have the ``solutions.face_mesh`` API used here; for later
versions (Tasks API) pass the ``face_landmarker.task`` model file with ``--mediapipe-model``.

GPU backends queue their stages on one CUDA stream: without ``--sync-stages`` the GPU stage columns measure
kernel launches and the GPU work lands in ``coarse`` and ``fine`` (the stages that read results back; the FPS and
``total`` are right). ``--sync-stages`` (``Pipeline(sync_timings=True)``) waits for the GPU at every stage
boundary, so each column is its stage's own time, at some cost in FPS; ``python -m benchmarks gpu-check`` reports
both (FPS unsynchronised, stages from a synchronised run).

The table names the machine (CPU model, physical cores, ONNX Runtime and decoder threads, GPU).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .report import machine, write_json

#: Columns of the stage table: rtface.pipeline.STAGES (they sum to the frame time).
COLUMNS = ("wait", "detect", "crop", "feedback", "coarse", "mesh", "render", "fine", "other", "paste")


def _default_videos() -> list[Path]:
    from rtface.assets import data_path

    return sorted(data_path("video").glob("*.mp4"))


def probe(path: Path) -> dict[str, Any]:
    """Frame size, rate and count of a video (PyAV)."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        rate = s.average_rate or s.guessed_rate
        return {"width": int(s.codec_context.width), "height": int(s.codec_context.height),
                "fps": float(rate) if rate else 30.0, "frames": int(s.frames or 0)}


def reencode(path: Path, out: Path, *, size: tuple[int, int] | None = None, tile: bool = False,
             max_frames: int | None = None, start: int = 0, faststart: bool = False) -> Path:
    """Write ``path`` to ``out`` (H.264, CRF 18, same rate): resized to ``size`` (w, h) and/or tiled 2 x 2
    (four copies at half size: the frame size stays); ``max_frames`` frames from frame ``start``; ``faststart``:
    the MP4 index before the data (a cut copy still lists every frame)."""
    import av
    import cv2

    from rtface.sources import open_source

    info = probe(path)
    w, h = size or (info["width"], info["height"])
    w, h = w // 4 * 4, h // 4 * 4
    with av.open(str(out), "w", options={"movflags": "faststart"} if faststart else {}) as dst:
        st = dst.add_stream("libx264", rate=int(round(info["fps"])))
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.options = {"crf": "18", "preset": "veryfast"}
        with open_source(path) as src:
            for k, f in enumerate(src):
                if k < start:
                    continue
                if max_frames is not None and k - start >= max_frames:
                    break
                img = f.image
                if tile:
                    small = cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
                    row = np.hstack([small, small])
                    img = np.vstack([row, row])
                elif img.shape[:2] != (h, w):
                    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
                for packet in st.encode(frame):
                    dst.mux(packet)
        for packet in st.encode():
            dst.mux(packet)
    return out


def run_rtface(path: Path, backend: str, max_faces: int, frames: int, warmup: int, *, precision: str = "auto",
               threads: int | None = None, decode_threads: int | None = None, **pipe_kw: Any) -> dict[str, Any]:
    """One timed stream (module docstring): FPS, mean ms per stage, mean frame time."""
    from rtface.pipeline import STAGES, Pipeline

    pipe = Pipeline(backend=backend, max_faces=max_faces, precision=precision, threads=threads, **pipe_kw)
    try:
        for r in pipe.stream(path, max_frames=warmup, decode_threads=decode_threads):
            _ = r.depth
        sums = dict.fromkeys(STAGES + ("decode",), 0.0)
        n = faces = detected = 0
        frame_ms = []
        t0 = last = time.perf_counter()
        for r in pipe.stream(path, max_frames=frames, decode_threads=decode_threads):
            _ = r.depth
            now = time.perf_counter()
            frame_ms.append((now - last) * 1e3)
            last = now
            n += 1
            faces += len(r.faces)
            detected += bool(r.detected)
            for k in sums:
                sums[k] += r.timings.get(k, 0.0)
        wall = time.perf_counter() - t0
        ms = {k: v / max(n, 1) for k, v in sums.items()}
        return {"backend": pipe.backend, "precision": pipe.precision, "feedback": pipe.feedback,
                "max_faces": max_faces, "frames": n, "mean_faces": faces / max(n, 1),
                "detector_frames": detected, "fps": n / wall if wall > 0 else float("nan"),
                "frame_ms": float(np.mean(frame_ms)) if frame_ms else float("nan"), "ms": ms,
                "sum_ms": sum(ms[k] for k in STAGES), "trained": pipe.networks.trained,
                "ort_threads": getattr(pipe.networks.coarse.engine, "threads", None)}
    finally:
        pipe.close()


def _mediapipe_solution(max_faces: int):
    """``process(rgb) -> number of faces`` with the legacy ``solutions.face_mesh`` API, or None."""
    import mediapipe as mp

    face_mesh = getattr(getattr(mp, "solutions", None), "face_mesh", None)
    if face_mesh is None:
        return None
    mesh = face_mesh.FaceMesh(static_image_mode=False, max_num_faces=max_faces, refine_landmarks=False)

    def process(rgb: np.ndarray, ms: int) -> int:
        out = mesh.process(rgb)
        return len(out.multi_face_landmarks or [])

    return process


def _mediapipe_tasks(max_faces: int, model: Path):
    """``process(rgb, timestamp_ms) -> faces`` with the Tasks API (``FaceLandmarker``, VIDEO mode)."""
    import mediapipe as mp

    vision = mp.tasks.vision
    options = vision.FaceLandmarkerOptions(base_options=mp.tasks.BaseOptions(model_asset_path=str(model)),
                                           running_mode=vision.RunningMode.VIDEO, num_faces=max_faces)
    landmarker = vision.FaceLandmarker.create_from_options(options)

    def process(rgb: np.ndarray, ms: int) -> int:
        out = landmarker.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb), ms)
        return len(out.face_landmarks or [])

    return process


def run_mediapipe(path: Path, max_faces: int, frames: int, warmup: int, model: Path | None = None,
                  decode_threads: int | None = None) -> dict[str, Any]:
    """MediaPipe Face Mesh on the same clip, decode and BGR -> RGB included; ``{"error": ...}`` if unavailable."""
    import cv2

    from rtface.sources import open_source

    try:
        import mediapipe as mp
    except ImportError:
        return {"error": "mediapipe is not installed (pip install 'rtface[bench]')"}
    try:
        process = _mediapipe_solution(max_faces) if model is None else _mediapipe_tasks(max_faces, model)
    except Exception as exc:  # a version whose API or model file does not fit
        return {"error": f"mediapipe {mp.__version__} could not start ({type(exc).__name__}: {exc})"}
    if process is None:
        return {"error": f"mediapipe {mp.__version__} has no solutions.face_mesh; pass --mediapipe-model "
                         f"face_landmarker.task for its Tasks API"}

    def one_pass(limit: int, stamp0: int) -> tuple[int, int, float]:
        n = faces = 0
        t0 = time.perf_counter()
        with open_source(path, decode_threads=decode_threads) as src:
            for f in src:
                if n >= limit:
                    break
                faces += process(cv2.cvtColor(f.image, cv2.COLOR_BGR2RGB), stamp0 + int(round(f.timestamp * 1e3)))
                n += 1
        return n, faces, time.perf_counter() - t0

    _, _, _ = one_pass(warmup, 0)
    n, faces, wall = one_pass(frames, 10**7)  # timestamps must keep increasing in VIDEO mode
    return {"version": mp.__version__, "api": "solutions.face_mesh" if model is None else "tasks.FaceLandmarker",
            "frames": n, "mean_faces": faces / max(n, 1), "fps": n / wall if wall > 0 else float("nan")}


def format_table(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    lines = [f"machine: {info['cpu']}, {info['physical_cores']} physical cores ({info['cpus']} CPUs), GPU "
             f"{info['gpu'] or 'none'}; ONNX Runtime threads {rows[0].get('ort_threads') if rows else '?'}, "
             f"decoder threads {info.get('decode_threads')}"]
    head = (f"{'video':22s} {'size':>9s} {'backend':8s} {'prec':4s} {'faces':>5s} {'FPS':>6s} {'frame':>6s} "
            + " ".join(f"{k:>7s}" for k in COLUMNS) + f" {'sum':>6s} {'decode':>7s}")
    lines += [head, "-" * len(head)]
    for r in rows:
        ms = r["ms"]
        lines.append(f"{r['video'][:22]:22s} {r['size']:>9s} {r['backend']:8s} {r['precision']:4s} "
                     f"{r['mean_faces']:5.2f} {r['fps']:6.1f} {r['frame_ms']:6.1f} "
                     + " ".join(f"{ms[k]:7.2f}" for k in COLUMNS) + f" {r['sum_ms']:6.1f} {ms['decode']:7.2f}"
                     + (f"  {r['weights']}" if r.get("weights", "shipped") != "shipped" else ""))
    lines.append("ms per frame (means over the timed frames). FPS = frames / wall time of the whole stream, decode "
                 "and depth read included; frame = mean wall time between results; sum = the stage columns, which "
                 "add up to the frame time; decode = the reader thread's time per frame, overlapped (not in the sum).")
    if any(r["backend"] != "cpu" and not r.get("sync_stages") for r in rows):
        lines.append("note: GPU rows without --sync-stages: their crop/feedback/mesh/render columns are launch times, "
                     "the GPU work shows in coarse and fine")
    odd = [r for r in rows if abs(r["sum_ms"] - r["frame_ms"]) > 0.1 * r["frame_ms"]]
    if odd:
        lines.append(f"note: stage sum and frame time differ by more than 10 % in {len(odd)} row(s)")
    if rows and not rows[0].get("trained", True):
        lines.append("note: untrained placeholder weights (tracking may re-detect more often than with trained ones)")
    mp_rows = [r for r in rows if r.get("mediapipe")]
    if mp_rows:
        lines.append("")
        lines.append("MediaPipe Face Mesh on the same clips, same run (sparse 3D landmarks, no depth):")
        for r in mp_rows:
            m = r["mediapipe"]
            if "error" in m:
                lines.append(f"  {r['video'][:22]:22s} {r['setting']:8s} {m['error']}")
            else:
                lines.append(f"  {r['video'][:22]:22s} {r['setting']:8s} MediaPipe {m['version']} ({m['api']}): "
                             f"{m['fps']:6.1f} FPS, {m['mean_faces']:.2f} faces; rtface {r['backend']} "
                             f"{r['precision']}: {r['fps']:.1f} FPS = {r['fps'] / m['fps']:.2f}x MediaPipe")
    return "\n".join(lines)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, e.g. 1920x1080, got {text!r}") from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f"size {text!r} is too small")
    return w, h


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks fps", description=__doc__.splitlines()[0])
    p.add_argument("--video", action="append", type=Path, help="video file, any size (repeatable)")
    p.add_argument("--backends", default=None, help="comma-separated (default: every available backend)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "int8"),
                   help="network precision (auto: INT8 on the CPU when the weights have it, FP16 TensorRT)")
    p.add_argument("--frames", type=int, default=300, help="frames timed per run (at most the clip's)")
    p.add_argument("--warmup", type=int, default=10, help="frames of the warm-up stream")
    p.add_argument("--settings", default="1,4", help="'1' (one face), '4' (2x2 tiled), or both")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: physical cores)")
    p.add_argument("--decode-threads", type=int, default=None, help="FFmpeg decoder threads (default: cores - 1)")
    p.add_argument("--detect-every", type=int, default=None, help="detector period in frames")
    p.add_argument("--size", type=_size, default=None, metavar="WxH",
                   help="re-encode each video at this frame size first (e.g. 1920x1080 from a 720p clip)")
    p.add_argument("--sync-stages", action="store_true",
                   help="GPU backends: wait for the GPU at each stage boundary (per-stage GPU time; lowers FPS)")
    p.add_argument("--no-mediapipe", action="store_true", help="skip the MediaPipe comparison")
    p.add_argument("--mediapipe-model", type=Path, help="face_landmarker.task for MediaPipe's Tasks API")
    p.add_argument("--weights", action="append", default=None, metavar="DIR",
                   help="weights folder (repeatable: each runs on the same clips, side by side; default: shipped)")
    p.add_argument("--detail-cap", type=int, default=None, metavar="PX",
                   help="the pipeline's detail cap (rtface.detail; default: the stream default)")
    p.add_argument("--json", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)

    from rtface.engines import available_backends
    from rtface.sources import default_decode_threads

    videos = args.video or _default_videos()
    if not videos:
        print("no videos: pass --video PATH or set RTFACE_ASSETS to a folder with video/*.mp4", file=sys.stderr)
        return 2
    for v in videos:
        if not Path(v).is_file():
            print(f"{v} does not exist", file=sys.stderr)
            return 2
    backends = args.backends.split(",") if args.backends else available_backends()
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    if any(s not in ("1", "4") for s in settings):
        p.error("--settings takes 1, 4 or 1,4")
    info = machine()
    info["decode_threads"] = args.decode_threads or default_decode_threads()
    kw = {} if args.detect_every is None else {"detect_every": args.detect_every}
    if args.detail_cap is not None:
        kw["detail_cap"] = args.detail_cap
    if args.sync_stages:
        kw["sync_timings"] = True
    rows = []
    with tempfile.TemporaryDirectory(prefix="rtface-fps-") as tmp:
        for v in videos:
            v = Path(v)
            for s in settings:
                faces = 1 if s == "1" else 4
                clip = v
                if s == "4" or args.size:
                    clip = reencode(v, Path(tmp) / f"{v.stem}_{s}.mp4", size=args.size, tile=s == "4",
                                    max_frames=args.frames + args.warmup)
                size = probe(clip)
                mp_result = None
                if not args.no_mediapipe:
                    mp_result = run_mediapipe(clip, faces, args.frames, args.warmup, args.mediapipe_model,
                                              args.decode_threads)
                for b, w in [(b, w) for b in backends for w in (args.weights or [None])]:
                    r = run_rtface(clip, b, faces, args.frames, args.warmup, precision=args.precision,
                                   threads=args.threads, decode_threads=args.decode_threads, weights=w, **kw)
                    r.update(sync_stages=bool(args.sync_stages), video=v.name,
                             setting=f"{faces} face" + ("s" if faces > 1 else ""),
                             size=f"{size['width']}x{size['height']}", mediapipe=mp_result, weights=w or "shipped")
                    rows.append(r)
                    extra = ""
                    if mp_result and "fps" in mp_result:
                        extra = f" ({r['fps'] / mp_result['fps']:.2f}x MediaPipe's {mp_result['fps']:.1f})"
                    print(f"{v.name} {r['setting']} {b} {r['precision']} ({r['weights']}): {r['fps']:.1f} FPS{extra}",
                          file=sys.stderr)
    print(format_table(rows, info))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, {"benchmark": "fps", "machine": info, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
