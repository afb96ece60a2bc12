"""Entry point of rtface's benchmarks: ``python -m benchmarks [raster|detail|accuracy|realfaces|landmarks|fps|int8|feedback|refit|batch|gpu-check|all] [options]``.

Each benchmark prints a table, names the machine, and writes JSON with ``--json PATH``. ``all`` runs every
benchmark but ``gpu-check`` (a check of the GPU path that needs an NVIDIA GPU: docs/gpu.md).
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "raster": "rasteriser ms per call (CPU twin and CUDA kernel)",
    "detail": "relief in the frame vs the true detail: single images, streams, refinement, previous release",
    "accuracy": "held-out synthetic accuracy of the shipped weights + network latency",
    "realfaces": "shape-from-shading error on held-out real faces, landmark NME on 300-W",
    "landmarks": "68-landmark NME on 300-W test, profiled copies and real large-pose faces, by yaw, both conventions",
    "largepose": "the real large-pose validation set: what it holds (sources, yaw buckets, held out or not)",
    "fps": "end-to-end FPS (decode included) and ms per stage on any video, beside MediaPipe where installed",
    "int8": "FP32 vs INT8 networks: latency, 300-W landmark NME, synthetic detail error",
    "feedback": "CoarseNet feedback on vs off: 300-W landmark NME and landmark jitter on video",
    "refit": "what the real-face shading residual rewards: the face model's depth refitted to it, and its depth error",
    "batch": "rtface batch frames/s on a folder of clips (1, 2 workers, a 2-node Ray cluster) vs rtface stream",
    "gpu-check": "the GPU path verified and measured on an NVIDIA GPU in < 8 min (--plan lists the steps)",
}
#: Not part of ``all``: it needs a GPU and exits non-zero without one.
NOT_IN_ALL = {"gpu-check"}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(__doc__)
        for name, what in BENCHMARKS.items():
            print(f"  {name:10s} {what}")
        return 0
    name, rest = args[0], args[1:]
    names = [n for n in BENCHMARKS if n not in NOT_IN_ALL] if name == "all" else [name]
    for n in names:
        if n not in BENCHMARKS:
            print(f"unknown benchmark {n!r}; choose from {', '.join(BENCHMARKS)} or 'all'", file=sys.stderr)
            return 2
        module = importlib.import_module(f"benchmarks.{n.replace('-', '_')}")
        code = module.main(rest)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
