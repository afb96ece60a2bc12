"""Rasteriser speed: ms per call and per face for the ICT face mesh, CPU (Numba) and CUDA (CuPy).

``python -m benchmarks.raster [--sizes 128 200 512] [--batches 1 16] [--repeats 30] [--json PATH]``

The mesh is the model's mean face (plus small random identity offsets per face of a batch), projected
orthographically to fill an S x S crop as in the pipeline. Each row is the median over ``--repeats`` calls
after warm-up (JIT compilation and kernel loading excluded). CUDA rows take CuPy inputs and return CuPy
outputs (no host transfers, indices not re-checked: the pipeline's case) and appear only where CuPy sees a
GPU. Needs the face model (``RTFACE_ASSETS`` or the user cache).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

from rtface.face_model import FaceModel
from rtface.render import rasterize

from .report import machine, write_json


def face_batch(model: FaceModel, size: int, batch: int, seed: int = 0) -> np.ndarray:
    """(batch, V, 3) float32 face meshes in the pixels of a size x size crop, z toward the camera."""
    rng = np.random.default_rng(seed)
    scale = size / 32.0  # px per cm: the 29 cm tall face area fills ~90% of the crop
    out = np.empty((batch, model.num_vertices, 3), np.float32)
    for b in range(batch):
        coeffs = 0.5 * rng.normal(size=model.num_identity)
        shape = model.mean + np.tensordot(coeffs, model.id_basis, 1)
        out[b, :, 0] = size / 2 + scale * shape[:, 0]
        out[b, :, 1] = size / 2 - scale * (shape[:, 1] + 2.0)
        out[b, :, 2] = scale * shape[:, 2]
    return out


def _median_ms(call: Callable[[], Any], repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def bench_cpu(verts: np.ndarray, tris: np.ndarray, size: int, repeats: int) -> float:
    """Median ms per call on the CPU (a batch of 1 is passed as a single (V, 3) mesh)."""
    arg = verts[0] if len(verts) == 1 else verts
    return _median_ms(lambda: rasterize(arg, tris, size, size, backend="cpu"), repeats)


def bench_cuda(verts: np.ndarray, tris: np.ndarray, size: int, repeats: int) -> float:
    """Median ms per call on the GPU, CuPy in and out, synchronised after every call."""
    import cupy as cp

    dv = cp.asarray(verts[0] if len(verts) == 1 else verts)
    dt = cp.asarray(tris)
    stream = cp.cuda.get_current_stream()

    def call() -> None:
        rasterize(dv, dt, size, size, backend="cuda", check_indices=False)
        stream.synchronize()

    return _median_ms(call, repeats, warmup=5)


def run(sizes: list[int], batches: list[int], repeats: int, backends: list[str]) -> list[dict[str, Any]]:
    model = FaceModel.load()
    tris = np.ascontiguousarray(model.triangles, dtype=np.int32)
    rows = []
    for backend in backends:
        bench = bench_cpu if backend == "cpu" else bench_cuda
        for size in sizes:
            for batch in batches:
                verts = face_batch(model, size, batch)
                ms = bench(verts, tris, size, repeats)
                rows.append({"backend": backend, "size": size, "batch": batch,
                             "ms_per_call": ms, "ms_per_face": ms / batch})
    return rows


def format_table(rows: list[dict[str, Any]], info: dict[str, Any], num_vertices: int, num_tris: int) -> str:
    lines = [
        f"rasteriser, ICT face mesh ({num_vertices} vertices, {num_tris} triangles)",
        f"CPU: {info['cpu']} ({info['cores']} cores, {info['numba_threads']} Numba threads); "
        f"GPU: {info['gpu'] or 'none'}",
        f"{'backend':8s} {'size':>5s} {'batch':>5s} {'ms/call':>9s} {'ms/face':>9s}",
    ]
    for r in rows:
        lines.append(f"{r['backend']:8s} {r['size']:5d} {r['batch']:5d} "
                     f"{r['ms_per_call']:9.3f} {r['ms_per_face']:9.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.raster", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 200, 512])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per row (median reported)")
    parser.add_argument("--backends", nargs="+", choices=["cpu", "cuda"], default=None,
                        help="default: cpu, plus cuda where a GPU is present")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)

    info = machine()
    backends = args.backends or (["cpu", "cuda"] if info["gpu"] else ["cpu"])
    if "cuda" in backends and not info["gpu"]:
        print("no CUDA device (CuPy + GPU) here: dropping the cuda rows", file=sys.stderr)
        backends = [b for b in backends if b != "cuda"]
    rows = run(args.sizes, args.batches, args.repeats, backends)
    model = FaceModel.load()
    print(format_table(rows, info, model.num_vertices, len(model.triangles)))
    if args.json:
        write_json(args.json, {"benchmark": "raster", "machine": info, "repeats": args.repeats, "rows": rows,
                               "mesh": {"vertices": model.num_vertices, "triangles": int(len(model.triangles))}})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
