"""FP32 vs INT8 networks: latency and accuracy in one table (the INT8 files of ``python -m train.quantize``).

``python -m benchmarks int8 [--weights DIR] [--limit N] [--faces 64] [--threads N] [--repeats 30] [--json PATH]``

For the FP32 files and the INT8 (QDQ) files named in the manifest of the same weights folder, on ONNX Runtime
(CPU):

* latency: median ``Engine.run`` of each network at batch 1 and 8 (``benchmarks.accuracy.latency``), with
  ``--threads`` intra-op threads (default: physical cores);
* 68-landmark NME on the 300-W test faces (``benchmarks.landmarks``: detector crop, then the tracked second
  pass), % of sqrt(w*h) of the ground-truth box;
* synthetic detail error (``benchmarks.accuracy.evaluate``, held-out synthetic faces with fine detail): depth
  error of the whole chain (``depth_fine_mm``) and of the FineNet fed the true coarse depth, overall and in the
  wrinkles (``oracle_fine_mm``, ``wrinkle_fine_mm``), in mm.

The last column is INT8's change relative to FP32; the issue's bar is accuracy no more than 5 % worse.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .report import machine, write_json

#: (key, label, unit, lower is better)
METRICS = (
    ("nme_tracked", "300-W test NME, tracked (2nd pass)", "%", True),
    ("nme_single", "300-W test NME, single image", "%", True),
    ("depth_fine_mm", "synthetic depth error, whole chain", "mm", True),
    ("oracle_fine_mm", "synthetic detail: FineNet on true coarse", "mm", True),
    ("wrinkle_fine_mm", "  ... in the wrinkles", "mm", True),
)
LATENCY = ("coarse_b1_ms", "coarse_b8_ms", "fine_b1_ms", "fine_b8_ms")
BAR = 0.05


def measure(weights: str | None, precision: str, limit: int | None, faces: int, threads: int | None,
            repeats: int) -> dict[str, Any]:
    from rtface.face_model import FaceModel
    from rtface.networks import load_networks

    from .accuracy import evaluate, latency
    from .landmarks import evaluate_set

    model = FaceModel.load()
    nets = load_networks(weights, backend="cpu", precision=precision, face_model_hash=model.hash, threads=threads)
    try:
        out: dict[str, Any] = {"precision": nets.precision, "files": [os.path.basename(str(nets.coarse.engine.path)),
                                                                      os.path.basename(str(nets.fine.engine.path))],
                               "threads": getattr(nets.coarse.engine, "threads", threads)}
        out.update(latency(nets, repeats))
        lm = evaluate_set(lambda x: nets.coarse.run(x), model, nets.size, limit=limit)
        out["nme_tracked"] = lm["box_nme"]
        out["nme_single"] = lm["pass1"]["box_nme"]
        acc = evaluate(nets, model, faces)
        out.update({k: acc[k] for k in ("depth_fine_mm", "oracle_fine_mm", "wrinkle_fine_mm")})
        return out
    finally:
        nets.close()


def format_table(rows: dict[str, dict]) -> str:
    a, b = rows["fp32"], rows["int8"]
    lines = [f"| {'':46s} | {'FP32':>9s} | {'INT8':>9s} | {'INT8 vs FP32':>12s} |", f"|{'-' * 48}|{'-' * 11}|{'-' * 11}|{'-' * 14}|"]
    for k in LATENCY:
        net, batch = k.split("_")[:2]
        lines.append(f"| {f'{net} latency, batch {batch[1:]} (ms)':46s} | {a[k]:9.2f} | {b[k]:9.2f} | "
                     f"{a[k] / b[k]:11.2f}x |")
    worse = []
    for k, label, unit, lower in METRICS:
        rel = (b[k] - a[k]) / a[k] if a[k] else float("nan")
        if lower and rel > BAR:
            worse.append(label.strip(" ."))
        lines.append(f"| {f'{label} ({unit})':46s} | {a[k]:9.3f} | {b[k]:9.3f} | {rel * 100:+11.1f}% |")
    lines.append("")
    lines.append(f"INT8 accuracy within {BAR * 100:.0f} % of FP32: " + ("yes" if not worse else
                                                                     "NO (" + ", ".join(worse) + ")"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks int8", description=__doc__.split("\n")[0])
    ap.add_argument("--weights", help="weights folder with INT8 entries (default: the package's rtface/weights)")
    ap.add_argument("--limit", type=int, default=None, help="only this many 300-W test faces (evenly spread)")
    ap.add_argument("--faces", type=int, default=64, help="held-out synthetic faces")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: cores)")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    from rtface.errors import AssetError

    rows = {}
    try:
        for precision in ("fp32", "int8"):
            rows[precision] = measure(args.weights, precision, args.limit, args.faces, args.threads, args.repeats)
    except AssetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = machine()
    print(f"machine: {info['cpu']}, {info['physical_cores']} physical cores; ONNX Runtime CPU, "
          f"{rows['fp32']['threads']} threads; files: FP32 {', '.join(rows['fp32']['files'])}, "
          f"INT8 {', '.join(rows['int8']['files'])}\n")
    print(format_table(rows))
    write_json(args.json, {"benchmark": "int8", "machine": info, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
