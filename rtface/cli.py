"""The ``rtface`` command line.

::

    rtface stream SRC [--out depth.mp4|depth.png] [--out-size 1920|WxH|full] [--save DIR [--meshes]]
                      [--backend auto|cpu|cuda|tensorrt] [--show] [--max-faces N] [--max-frames N]
                      [--detect-every N] [--no-smoothing] [--views N] [--assets DIR]
    rtface batch INPUT... --out DIR [--address ADDR] [--workers N] [--cpus-per-task N] [--gpus-per-task F]
                 [--segment SECONDS] [--overlap SECONDS] [--force] [--quiet] [--backend ...] [--max-frames N] ...
    rtface demo [--out DIR] [--frames N] [--backend ...]
    rtface bench [BENCHMARK] [ARGS...]   (python -m benchmarks ..., from a source checkout)
    rtface build-engines [--precision auto|fp16|fp32|int8]
    rtface assets [--verify]

Errors that rtface raises on purpose (:mod:`rtface.errors`) are printed as one line, exit code 2; warnings
(a truncated file, a skipped image) as one line ``rtface: warning: ...``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

from .errors import InputError, RtfaceError

BACKENDS = ("auto", "cpu", "cuda", "tensorrt")


def _integer(minimum: int, what: str):
    """An argparse type: an int of at least ``minimum`` (``what`` names it in the error)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {v}")
        return v

    return parse


_positive = _integer(1, "a positive integer")
_non_negative = _integer(0, "a non-negative integer")


def _source(text: str):
    """A webcam index stays an int; everything else is a path or URL."""
    return int(text) if text.isdigit() and not Path(text).exists() else text


def _out_size(text: str):
    from .sinks import parse_size

    try:
        return parse_size(text)
    except RtfaceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rtface", description="Real-time detailed face depth from video.")
    p.add_argument("--assets", metavar="DIR", help="asset folder (overrides RTFACE_ASSETS)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("stream", help="reconstruct every face of a video, stream, webcam or image")
    s.add_argument("src", help="video file, image, folder, URL (rtsp://...) or webcam index (0)")
    s.add_argument("--out", metavar="FILE",
                   help="write input | depth | shaded depth side by side; the extension picks the writer: "
                        ".mp4/.mkv/.mov/.avi/.webm a video, .png/.jpg/... a picture (a numbered sequence "
                        "NAME_000123.png for video input)")
    s.add_argument("--out-size", metavar="SIZE", type=_out_size, default="1920",
                   help="fit the --out picture into WIDTH or WIDTHxHEIGHT px ('full': three full-size panels); "
                        "default 1920 wide")
    s.add_argument("--save", metavar="DIR", help="write per-frame .npz files (depth, landmarks, pose...) into DIR")
    s.add_argument("--meshes", action="store_true", help="with --save: also a .ply mesh per face and frame")
    s.add_argument("--show", action="store_true", help="live preview window (needs a display)")
    s.add_argument("--live", action="store_true", default=None, help="treat the source as live (drop stale frames)")
    _pipeline_options(s)

    b = sub.add_parser("batch", help="reconstruct many videos and images (folders, patterns, lists) into one "
                                     "archive each, on Ray")
    b.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video or image files, folders (recursively), glob patterns ('clips/**/*.mp4'), URLs, or "
                        "text lists (.txt/.lst/.list: one a line, # comments)")
    b.add_argument("--out", metavar="DIR", required=True,
                   help="output folder: one archive NAME.npz per input (read with rtface.load) and manifest.jsonl")
    b.add_argument("--address", metavar="ADDR",
                   help="join an existing Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: start a local "
                        "Ray on this machine)")
    b.add_argument("--workers", metavar="N", type=_non_negative, default=None,
                   help="tasks at once (default: one per --cpus-per-task CPUs of the cluster); 0: no Ray, one process")
    b.add_argument("--cpus-per-task", metavar="N", type=_positive, default=1,
                   help="CPU threads of each task (default: 1)")
    b.add_argument("--gpus-per-task", metavar="F", type=float, default=0.0,
                   help="GPUs of each task, a fraction shares one (e.g. 0.25; default: 0)")
    b.add_argument("--segment", metavar="SECONDS", type=float, default=60.0,
                   help="videos longer than 1.5x this are split into segments processed side by side (default: 60; "
                        "0: never split)")
    b.add_argument("--overlap", metavar="SECONDS", type=float, default=4.0,
                   help="warm-up before each segment: the tracker and the smoothing start this early (default: 4)")
    b.add_argument("--force", action="store_true", help="redo inputs the manifest has as done (default: skip them)")
    b.add_argument("--quiet", action="store_true", help="no progress bar and no summary (the exit code and the "
                                                        "manifest tell: 0 all done, 1 some failed)")
    _pipeline_options(b)

    d = sub.add_parser("demo", help="run on a built-in synthetic talking face, write demo.mp4")
    d.add_argument("--out", metavar="DIR", default="rtface-demo",
                   help="folder for demo.mp4 and contact_sheet.png (default: rtface-demo)")
    d.add_argument("--frames", metavar="N", type=_positive, default=90,
                   help="length of the demo clip in frames (default: 90)")
    d.add_argument("--backend", choices=BACKENDS, default="auto", help="inference backend (default: auto)")
    d.add_argument("--assets", metavar="DIR", dest="assets_sub", help=argparse.SUPPRESS)

    b = sub.add_parser("bench", help="benchmarks (python -m benchmarks; needs a source checkout)", add_help=False)
    b.add_argument("args", nargs=argparse.REMAINDER)  # plus unknown options, see main()

    e = sub.add_parser("build-engines", help="build the TensorRT engines of the shipped networks")
    e.add_argument("--precision", choices=("auto", "fp16", "fp32", "int8"), default="auto",
                   help="engine precision (default: auto, fp16 where the GPU has fast fp16; int8 builds the "
                        "shipped INT8 QDQ networks)")
    e.add_argument("--weights", metavar="DIR", help="weights folder (default: the shipped weights)")

    a = sub.add_parser("assets", help="get the face model and detector ready (download, convert once) and check them")
    a.add_argument("--verify", action="store_true",
                   help="also re-read the face model's source files and check each sha256 (the full walk)")
    a.add_argument("--no-verify", action="store_true", help=argparse.SUPPRESS)  # old name of the quick default
    a.add_argument("--assets", metavar="DIR", dest="assets_sub", help=argparse.SUPPRESS)
    return p


def _pipeline_options(s: argparse.ArgumentParser) -> None:
    """The pipeline's options, shared by ``stream`` and ``batch``."""
    s.add_argument("--backend", choices=BACKENDS, default="auto", help="inference backend (default: auto)")
    s.add_argument("--precision", choices=("auto", "fp32", "fp16", "int8"), default="auto",
                   help="network precision (default: auto: INT8 on the CPU where shipped, FP16 TensorRT where fast)")
    s.add_argument("--max-faces", metavar="N", type=_positive, default=4, help="faces per frame at most (default: 4)")
    s.add_argument("--max-frames", metavar="N", type=_positive, default=None, help="stop after N frames")
    s.add_argument("--detect-every", metavar="N", type=_positive, default=None, help="detector period in frames")
    s.add_argument("--no-smoothing", action="store_true", help="turn the One-Euro smoothing off")
    s.add_argument("--no-feedback", action="store_true", help="do not feed the previous estimate back")
    s.add_argument("--views", metavar="N", type=_positive, default=None,
                   help="CoarseNet views per face, 1-6 (the crop, its mirror, tighter crops; more is more accurate "
                        "and slower); default: 6 for a single image, 1 for video")
    s.add_argument("--detail-cap", metavar="PX", type=_positive, default=None,
                   help="largest detail resolution, px a side (multiple of 16, 128-512): the FineNet runs at each "
                        "face's own resolution up to this; default: 384 for a single image, 256 for video")
    s.add_argument("--weights", metavar="DIR", help="weights folder (default: the shipped weights)")
    s.add_argument("--assets", metavar="DIR", dest="assets_sub", help=argparse.SUPPRESS)


def _fmt_ms(timings_sum: dict, n: int) -> str:
    keys = [k for k in ("detect", "crop", "feedback", "coarse", "mesh", "render", "fine", "paste", "total")
            if k in timings_sum]
    return "  ".join(f"{k} {timings_sum[k] / max(n, 1):.1f}" for k in keys)


def _suggest_out(src: str, single_image: bool) -> str:
    stem = "webcam" if src.isdigit() else (Path(src.rstrip("/")).stem or "rtface")
    return f"{stem}_depth.png" if single_image else f"{stem}_depth.mp4"


def _report_output(out) -> str:
    from .sinks import VideoSink

    if isinstance(out, VideoSink):
        size = out.frame_size
        dims = f", {size[0]}x{size[1]}" if size else ""
        return f"wrote {out.path} ({out.frames} frames{dims}, {out.codec})"
    if not out.sequence:
        return f"wrote {out.path}"
    if not out.written:
        return f"wrote no pictures ({out.path_of(0).name} would be the first)"
    return (f"wrote {len(out.written)} pictures {out.written[0].name} .. {out.written[-1].name} "
            f"in {out.written[0].parent}")


def cmd_stream(args) -> int:
    from .pipeline import DETECT_EVERY, Pipeline
    from .sinks import NpzSink, PreviewWindow, open_output, output_kind
    from .sources import open_source

    if args.out:
        output_kind(args.out)  # a name without a known extension fails before anything loads
    if args.meshes and not args.save:
        raise InputError("--meshes writes the meshes next to the --save files; add --save DIR")
    if args.out and Path(str(args.src)).exists() and Path(args.out).resolve() == Path(str(args.src)).resolve():
        raise InputError(f"--out {args.out} is the input itself; choose another name")
    preview = PreviewWindow() if args.show else None  # fails early and clearly when headless
    pipe = Pipeline(args.weights, backend=args.backend, max_faces=args.max_faces,
                    detect_every=args.detect_every or DETECT_EVERY, smoothing=not args.no_smoothing,
                    feedback=False if args.no_feedback else None, precision=args.precision, views=args.views,
                    detail_cap=args.detail_cap)
    src_kw = {} if args.live is None else {"live": True}
    source = open_source(_source(args.src), **src_kw)
    single_image = not source.live and source.num_frames == 1
    total = source.num_frames if not source.live else None
    if args.max_frames is not None and total is not None:
        total = min(total, args.max_frames)
    try:
        out = open_output(args.out, fps=source.fps or 30.0, single_image=single_image,
                          size=args.out_size) if args.out else None
    except BaseException:
        source.close()
        raise
    npz = NpzSink(args.save, meshes=args.meshes, triangles=pipe.model.triangles) if args.save else None
    if out is None and npz is None and preview is None:
        print(f"note: no --out, --save or --show: the results are computed and summarised, nothing is written. "
              f"Add --out {_suggest_out(str(args.src), single_image)} for input | depth | shaded depth, or "
              f"--save DIR for the arrays (.npz; --meshes adds .ply meshes).", file=sys.stderr)
    bar = None
    if not source.live:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="frame", desc=Path(str(args.src)).name, dynamic_ncols=True)
    n = faces = 0
    sums: dict[str, float] = {}
    t_start = time.perf_counter()
    last_print = t_start
    fps_ema = None
    t_prev = t_start
    finished = False
    try:
        for frame in source:
            if args.max_frames is not None and n >= args.max_frames:
                break
            result = pipe.step(frame.image, frame.index, frame.timestamp, frame.decode_ms)
            if out is not None:
                out.write(result)
            if npz is not None:
                npz.write(result)
            now = time.perf_counter()
            inst = 1.0 / max(now - t_prev, 1e-6)
            fps_ema = inst if fps_ema is None else 0.9 * fps_ema + 0.1 * inst
            t_prev = now
            if preview is not None and not preview.show(result, f"{fps_ema:.1f} FPS"):
                break
            n += 1
            faces += len(result.faces)
            for k, v in result.timings.items():
                sums[k] = sums.get(k, 0.0) + v
            if bar is not None:
                bar.update(1)
                bar.set_postfix(faces=len(result.faces), fps=f"{fps_ema:.1f}", refresh=False)
            elif now - last_print >= 1.0:
                dropped = source.dropped
                print(f"\rframe {frame.index}  {fps_ema:5.1f} FPS  faces {len(result.faces)}  dropped {dropped}",
                      end="", file=sys.stderr, flush=True)
                last_print = now
        else:
            finished = True
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
        if bar is not None:
            if finished and bar.total is not None and bar.n != bar.total:
                bar.total = bar.n  # the source ended before its announced length (truncated, estimate)
                bar.refresh()
            bar.close()
        elif n:
            print(file=sys.stderr)
        if out is not None:
            out.close()
        if preview is not None:
            preview.close()
    wall = time.perf_counter() - t_start
    print(f"{n} frames, {faces} faces, {n / wall if wall > 0 else 0:.1f} FPS end to end "
          f"(backend {pipe.backend}); mean ms: {_fmt_ms(sums, n)}")
    if out is not None:
        print(_report_output(out))
    if npz is not None:
        meshes = f" and {npz.mesh_files} .{npz.mesh_format} meshes" if npz.meshes else ""
        print(f"wrote {npz.frames} .npz files{meshes} to {args.save}")
    if not pipe.networks.trained:
        print("note: the shipped weights are untrained placeholders; the depth is not meaningful yet",
              file=sys.stderr)
    return 0


def cmd_batch(args) -> int:
    from .batching.driver import batch

    result = batch(args.inputs, args.out, address=args.address, workers=args.workers,
                   cpus_per_task=args.cpus_per_task, gpus_per_task=args.gpus_per_task, force=args.force,
                   progress=not args.quiet, max_frames=args.max_frames, segment=args.segment or None,
                   overlap=args.overlap, backend=args.backend, precision=args.precision, max_faces=args.max_faces,
                   detect_every=args.detect_every, smoothing=not args.no_smoothing,
                   feedback=False if args.no_feedback else None, views=args.views, detail_cap=args.detail_cap,
                   weights=args.weights)
    if not args.quiet:
        print(result.summary())
    return 0 if result.ok else 1


def cmd_demo(args) -> int:
    from .demo import run_demo

    summary = run_demo(args.out, frames=args.frames, backend=args.backend)
    print(f"wrote {summary['video']} ({summary['frames']} frames, face found in {summary['frames_with_face']}, "
          f"pipeline {summary['pipeline_fps']:.1f} FPS on {summary['backend']})")
    if "contact_sheet" in summary:
        print(f"wrote {summary['contact_sheet']}")
    return 0


_BENCH_HELP = """usage: rtface bench [BENCHMARK] [ARGS...]

Runs rtface's benchmarks (python -m benchmarks BENCHMARK ARGS, from a source checkout). Each prints a
table that names the machine, and writes JSON with --json PATH. 'rtface bench BENCHMARK --help' lists a
benchmark's own options. Without BENCHMARK: fps.

benchmarks:
"""


def cmd_bench(args) -> int:
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    rest = list(args.args)
    if rest and rest[0] == "--":
        rest = rest[1:]
    if importlib.util.find_spec("benchmarks") is None and not (root / "benchmarks" / "__main__.py").is_file():
        print("rtface bench: the benchmarks live in rtface's source checkout (benchmarks/), which is not "
              "available here. Clone the repository and run 'python -m benchmarks' from its root.",
              file=sys.stderr)
        return 0 if rest[:1] in (["-h"], ["--help"]) else 2
    if str(root) not in sys.path and (root / "benchmarks").is_dir():
        sys.path.insert(0, str(root))
    import benchmarks.__main__ as bench

    if rest[:1] in (["-h"], ["--help"]):
        names = getattr(bench, "BENCHMARKS", {})
        print(_BENCH_HELP + "".join(f"  {name:10s} {what}\n" for name, what in names.items())
              + f"  {'all':10s} every benchmark above, in turn")
        return 0
    return int(bench.main(rest or ["fps"]) or 0)


def cmd_build_engines(args) -> int:
    from .engines.tensorrt import build_engines
    from .networks import load_manifest

    m = load_manifest(args.weights)
    d = Path(m["_dir"])
    if args.precision == "int8":
        from .networks import int8_status

        why = int8_status(m)
        if why is not None:
            raise InputError(f"--precision int8: {why}. Quantise the weights with 'python -m train.quantize'.")
        onnx = [d / m["networks"][k]["int8"]["file"] for k in ("coarse", "fine")]
    else:
        onnx = [d / m["networks"][k]["file"] for k in ("coarse", "fine")]
    for src, engine in zip(onnx, build_engines(onnx, precision=args.precision)):
        print(f"{src.name}: {engine}")
    return 0


def cmd_assets(args) -> int:
    from .assets import check_all

    t0 = time.perf_counter()
    rows = check_all(verify=args.verify)
    w = max(len(r.name) for r in rows)
    print(f"{'asset':{w}}  ok   location / detail")
    for r in rows:
        print(f"{r.name:{w}}  {'yes' if r.ok else 'NO '}  {r.location if r.ok else ''}")
        print(f"{'':{w}}       {r.detail}")
    code = 0 if all(r.ok for r in rows) else 2
    try:
        from .networks import load_manifest

        m = load_manifest()
        status = m.get("training", {}).get("status", "trained")
        print(f"{'weights':{w}}  yes  {m['_dir']}")
        print(f"{'':{w}}       variant {m.get('variant')}, input {m.get('input_size')} px, {status}")
    except RtfaceError as exc:
        print(f"{'weights':{w}}  NO   {exc}")
        code = 2
    if code == 0:
        hint = "" if args.verify else "; 'rtface assets --verify' re-checks every source file"
        print(f"ready ({time.perf_counter() - t0:.1f} s){hint}")
    return code


COMMANDS = {"stream": cmd_stream, "batch": cmd_batch, "demo": cmd_demo, "bench": cmd_bench,
            "build-engines": cmd_build_engines, "assets": cmd_assets}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command != "bench":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.args = list(extra) + list(args.args)
    assets = getattr(args, "assets_sub", None) or args.assets
    if assets:
        if not Path(assets).expanduser().is_dir():
            print(f"rtface: error: --assets {assets} is not a directory", file=sys.stderr)
            return 2
        os.environ["RTFACE_ASSETS"] = str(Path(assets).expanduser())
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return COMMANDS[args.command](args)
        except RtfaceError as exc:
            print(f"rtface: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line (no source line), above any progress bar."""
    kind = "" if category.__module__.startswith("rtface") else f" ({category.__name__})"
    text = f"rtface: warning{kind}: {message}"
    try:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)
    except ImportError:
        print(text, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
