"""Detail in the frame, as the user gets it: ``python -m benchmarks detail``.

Held-out synthetic faces of :mod:`benchmarks.detailsets` (a renderer the networks never saw) are drawn at two
face sizes and placed in a square frame with a grey margin (so the detector sees a face in a frame, not a
crop): ``small`` (the face about 120-160 px wide) and ``closeup`` (about 300-380 px wide), each as ``detail``
faces (known geometric detail) and ``albedo`` faces (painted marks, no geometric detail). For every method the
relief it adds in the frame, ``frame.depth - frame.coarse_depth``, is scored against the true detail layer
with :mod:`benchmarks.relief` (explained share, correlation, relief RMS; on the albedo faces all of the relief
is spurious, reported as a multiple of the true detail's RMS on the detail faces of the same size).

Methods:

* ``image``: ``rtface.reconstruct(frame)`` (single image: detail cap :data:`rtface.detail.IMAGE_CAP`);
* ``stream``: the frame three times through ``rtface.stream`` (the last frame is tracked, one view, detail cap
  :data:`rtface.detail.STREAM_CAP`);
* ``refine`` (``--refine``): :func:`rtface.refine.refine_depth` on the whole frame at its own resolution, from
  the single image's coarse depth (the probe of issue 23; about a second a face);
* ``baseline`` (``--baseline-tree DIR``): ``rtface.reconstruct`` of another checkout of rtface (e.g. a
  ``git worktree`` of the previous release), run in a subprocess with that tree first on ``sys.path``.

Sets are cached in ``~/.cache/rtface/bench`` (``--no-cache`` renders them again).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .relief import ReliefScore

#: Face sizes: name -> (crop side the set is rendered at, frame side). The sets frame the face like the
#: pipeline's crop (its mask about 0.78 of the side wide).
SIZES = {"small": (176, 288), "closeup": (448, 640)}
#: Depth scale of the sets' detail shapes (``benchmarks.detailsets.make_set(strength=)``). At 3.5 the true detail's
#: RMS after the measure's high-pass is 0.125 mm (small faces) and 0.133 mm (close-ups), as on issue 23's held-out
#: sets (0.138 and 0.126 mm); at 1 (the figures of the first detail release) 0.036 and 0.039 mm.
STRENGTH = 3.5
PROBE = ["shrink=1", "fidelity=0.001", "smoothness=0.01", "iterations=4", "cg_iterations=30", "band=1.3"]


def frame_set(model, kind: str, size: str, n: int, seed: int = 0, cache: bool = True,
              strength: float = STRENGTH) -> dict[str, np.ndarray]:
    """``n`` held-out faces of ``kind`` at face size ``size``, placed in frames: ``frame`` (n, F, F, 3) uint8 BGR,
    ``detail`` (n, F, F) true detail in frame px, ``mask`` (n, F, F), ``mm_per_px`` (n,)."""
    from .detailsets import make_set

    crop, side = SIZES[size]
    tag = "" if strength == 1.0 else f"_x{strength:g}"
    path = Path.home() / ".cache" / "rtface" / "bench" / f"detail_frames_{kind}_{size}_{n}_{seed}{tag}.npz"
    if cache and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    s = make_set(model, kind, n, size=crop, seed=seed, strength=strength)
    o = (side - crop) // 2
    frames = np.full((n, side, side, 3), 118, np.uint8)
    frames[:, o:o + crop, o:o + crop] = s["image"]
    detail = np.zeros((n, side, side), np.float32)
    detail[:, o:o + crop, o:o + crop] = s["detail"]
    mask = np.zeros((n, side, side), bool)
    mask[:, o:o + crop, o:o + crop] = s["mask"]
    out = {"frame": frames, "detail": detail, "mask": mask, "mm_per_px": (10.0 / s["pose"][:, 3]).astype(np.float32)}
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **out)
        os.replace(tmp, path)
    return out


def reliefs(frames: np.ndarray, method: str, **kw) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(relief, mask, seconds) per frame for ``method`` "image", "stream" or "refine" (module docstring)."""
    import rtface
    from rtface.refine import RefineConfig, refine_depth

    out = []
    for f in frames:
        t0 = time.perf_counter()
        if method == "stream":
            r = list(rtface.stream([f, f, f], **kw))[-1]
        else:
            r = rtface.reconstruct(f, **kw)
        coarse, depth, mask = r.coarse_depth, r.depth, r.mask
        if method == "refine" and mask.any():
            cfg = RefineConfig.parse(PROBE, f.shape[0])
            depth = refine_depth(f, coarse, mask, cfg)
        out.append((np.where(mask, depth - coarse, 0.0), mask, time.perf_counter() - t0))
    return out


def score(sets: dict, results: dict) -> dict:
    """Scores per (size, kind) of one method's results (lists aligned with the sets' faces)."""
    table = {}
    for (size, kind), s in sets.items():
        sc = ReliefScore()
        missed = 0
        for i, (relief, mask, _) in enumerate(results[(size, kind)]):
            if not mask.any():
                missed += 1
                continue
            sc.add(relief, s["detail"][i], mask, s["mask"][i], float(s["mm_per_px"][i]))
        r = sc.result()
        r["missed"] = missed
        r["seconds_per_face"] = float(np.mean([t for _, _, t in results[(size, kind)]]))
        table[f"{size}/{kind}"] = r
    return table


def run_methods(n: int, methods: list[str], seed: int, cache: bool, strength: float = STRENGTH) -> dict:
    from rtface import FaceModel

    model = FaceModel.load()
    sets = {(size, kind): frame_set(model, kind, size, n, seed, cache, strength)
            for size in SIZES for kind in ("detail", "albedo")}
    out = {}
    for m in methods:
        res = {key: reliefs(s["frame"], m) for key, s in sets.items()}
        out[m] = score(sets, res)
    return out


def _baseline(tree: Path, n: int, seed: int, strength: float = STRENGTH) -> dict:
    """The ``image`` method run by another checkout of rtface (module docstring)."""
    # the other tree's rtface is imported first, then this tree's benchmarks (the other may have none of them)
    code = ("import sys, json; sys.path.insert(0, sys.argv[1]); import rtface; sys.path.insert(0, sys.argv[2]);"
            "from benchmarks.detail import run_methods;"
            "print('JSON' + json.dumps(run_methods(int(sys.argv[3]), ['image'], int(sys.argv[4]), True,"
            " float(sys.argv[5]))['image']))")
    here = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": str(tree)}
    p = subprocess.run([sys.executable, "-c", code, str(tree), here, str(n), str(seed), str(strength)],
                       capture_output=True, text=True, env=env, cwd=str(tree))
    line = [x for x in p.stdout.splitlines() if x.startswith("JSON")]
    if p.returncode or not line:
        raise RuntimeError(f"baseline run in {tree} failed:\n{p.stderr[-2000:]}")
    return json.loads(line[-1][4:])


def print_table(results: dict) -> None:
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs")
    print("| method | set | explained | correlation | relief RMS mm | true RMS mm | spurious / true | s per face |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for m, table in results.items():
        for size in SIZES:
            d, a = table[f"{size}/detail"], table[f"{size}/albedo"]
            print(f"| {m} | {size} detail | {d['explained'] * 100:.1f} % | {d['correlation']:.2f} | "
                  f"{d['relief_rms_mm']:.3f} | {d['true_rms_mm']:.3f} | | {d['seconds_per_face']:.2f} |")
            print(f"| {m} | {size} albedo marks | | | {a['relief_rms_mm']:.3f} | | "
                  f"{a['relief_rms_mm'] / max(d['true_rms_mm'], 1e-9):.2f}x | {a['seconds_per_face']:.2f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks detail", description=__doc__.split("\n\n")[0])
    p.add_argument("--faces", type=int, default=24, help="faces per set (4 sets)")
    p.add_argument("--seed", type=int, default=0, help="draw of the held-out sets (0: test; 1: validation)")
    p.add_argument("--refine", action="store_true", help="also the refinement at the frame's resolution (slow)")
    p.add_argument("--no-stream", action="store_true", help="single images only")
    p.add_argument("--baseline-tree", type=Path, help="another rtface checkout, measured beside (single image)")
    p.add_argument("--strength", type=float, default=STRENGTH,
                   help=f"depth scale of the sets' detail shapes (default {STRENGTH:g}: issue 23's detail RMS)")
    p.add_argument("--no-cache", action="store_true", help="render the sets again")
    p.add_argument("--json", type=Path, help="write the figures here")
    a = p.parse_args(argv)
    if a.faces < 1:
        p.error("--faces must be at least 1")
    if not a.strength > 0:
        p.error("--strength must be positive")
    methods = ["image"] + ([] if a.no_stream else ["stream"]) + (["refine"] if a.refine else [])
    results = run_methods(a.faces, methods, a.seed, not a.no_cache, a.strength)
    if a.baseline_tree:
        results["baseline"] = _baseline(a.baseline_tree, a.faces, a.seed, a.strength)
    print_table(results)
    if a.json:
        a.json.write_text(json.dumps({"faces": a.faces, "seed": a.seed, "strength": a.strength, "results": results},
                                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
