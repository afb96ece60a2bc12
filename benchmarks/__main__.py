"""Entry point of rtface's benchmarks: ``python -m benchmarks [raster|accuracy|realfaces|landmarks|fps|int8|feedback|refit|all] [options]``.

Each benchmark prints a table, names the machine, and writes JSON with ``--json PATH``.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "raster": "rasteriser ms per call (CPU twin and CUDA kernel)",
    "accuracy": "held-out synthetic accuracy of the shipped weights + network latency",
    "realfaces": "shape-from-shading error on held-out real faces, landmark NME on 300-W",
    "landmarks": "68-landmark NME on the 300-W test faces and on profiled (large-yaw) copies",
    "fps": "end-to-end FPS (decode included) and ms per stage on any video, beside MediaPipe where installed",
    "int8": "FP32 vs INT8 networks: latency, 300-W landmark NME, synthetic detail error",
    "feedback": "CoarseNet feedback on vs off: 300-W landmark NME and landmark jitter on video",
    "refit": "what the real-face shading residual rewards: the face model's depth refitted to it, and its depth error",
}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(__doc__)
        for name, what in BENCHMARKS.items():
            print(f"  {name:10s} {what}")
        return 0
    name, rest = args[0], args[1:]
    names = list(BENCHMARKS) if name == "all" else [name]
    for n in names:
        if n not in BENCHMARKS:
            print(f"unknown benchmark {n!r}; choose from {', '.join(BENCHMARKS)} or 'all'", file=sys.stderr)
            return 2
        module = importlib.import_module(f"benchmarks.{n}")
        code = module.main(rest)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
