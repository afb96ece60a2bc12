"""Held-out synthetic accuracy of the shipped weights, and ONNX Runtime CPU latency of each network.

``python -m benchmarks.accuracy [--weights DIR] [--faces 64] [--json PATH]``

Test set: ``rtface.synth.batch`` faces **with detail**, seeds ``10**6 + k`` (training uses seeds < 10**6,
see ``train/data.py``), so it is disjoint from every training batch and fixed across runs.

Metrics (per face, then averaged; px -> mm with the ground-truth pose scale: ``mm = px / scale * 10``):

* ``vertex_mm``: mean 3D distance over all face-area vertices between predicted and GT mesh (crop px -> mm);
* ``landmark_nme``: mean 2D error of the 68 landmarks / sqrt(w * h) of the GT landmark box;
* ``depth_coarse_mm`` / ``depth_fine_mm``: mean |depth - GT depth (with detail)| inside the GT mask (where
  the prediction covers it) for the rendered CoarseNet depth and the FineNet output fed with it, each depth
  map first shifted by its mean over those pixels (weak perspective fixes depth only up to a constant, and a
  small scale error moves the whole face by millimetres: this is the shape error, not the offset);
* ``oracle_coarse_mm`` / ``oracle_fine_mm``: the same with the FineNet fed the *GT* coarse depth - isolates
  the detail the FineNet adds (the coarse error here is exactly the missing detail). Fine must beat coarse.
* ``wrinkle_coarse_mm`` / ``wrinkle_fine_mm``: the oracle errors restricted to the wrinkle pixels (GT detail
  deeper than 0.1 mm), where the detail is; the rest of the face has none.

``--detail-mm LO HI`` sets the groove depths of the synthetic detail (default: ``SynthConfig``'s 0.2-1.5 mm).

Latency: median over repeats of ``Engine.run`` at batch 1 and 8 on ONNX Runtime CPU (threads named).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from .report import machine, write_json

EVAL_SEED_OFFSET = 10**6


def evaluate(nets, model, faces: int, chunk: int = 16, detail_mm: tuple[float, float] | None = None) -> dict:
    from rtface import synth
    from rtface.camera import project
    from rtface.networks import preprocess
    from rtface.render import rasterize

    s = nets.size
    per: dict[str, list] = {k: [] for k in ("vertex_mm", "landmark_nme", "depth_coarse_mm", "depth_fine_mm",
                                             "oracle_coarse_mm", "oracle_fine_mm", "wrinkle_coarse_mm",
                                             "wrinkle_fine_mm", "coverage")}
    cfg = synth.SynthConfig() if detail_mm is None else synth.SynthConfig(detail_mm=tuple(detail_mm))
    done = 0
    k = 0
    while done < faces:
        n = min(chunk, faces - done)
        b = synth.batch(model, n, seed=EVAL_SEED_OFFSET + k, size=s, detail=True, config=cfg)
        k += 1
        done += n
        x = preprocess(b["image"])
        out = nets.coarse.run(x)
        verts = project(model.vertices(out["identity"], out["expression"]), out["pose"])
        gt_pose = b["pose"].astype(np.float64)
        gt_verts = project(model.vertices(b["identity"].astype(np.float32), b["expression"].astype(np.float32)),
                           gt_pose)
        mm = 10.0 / gt_pose[:, 3]  # mm per crop px
        per["vertex_mm"] += list(np.linalg.norm(verts - gt_verts, axis=-1).mean(-1) * mm)
        lm_p = verts[:, model.landmarks, :2]
        lm_g = gt_verts[:, model.landmarks, :2]
        wh = lm_g.max(1) - lm_g.min(1)
        per["landmark_nme"] += list(np.linalg.norm(lm_p - lm_g, axis=-1).mean(-1) / np.sqrt(wh[:, 0] * wh[:, 1]))
        r = rasterize(verts, model.triangles, s, s, backend="cpu")
        fine = nets.fine.run(x, r.depth, r.mask)
        gt_mask = b["mask"].astype(bool)
        gt_depth = b["depth"].astype(np.float32)
        oracle_fine = nets.fine.run(x, b["coarse_depth"].astype(np.float32) * gt_mask, gt_mask)
        for i in range(n):
            m = gt_mask[i] & r.mask[i]
            per["coverage"].append(m.sum() / max(1, gt_mask[i].sum()))
            g = gt_depth[i][m]
            per["depth_coarse_mm"].append(_shape_error(r.depth[i][m], g) * mm[i] if m.any() else np.nan)
            per["depth_fine_mm"].append(_shape_error(fine[i][m], g) * mm[i] if m.any() else np.nan)
            gm = gt_mask[i]
            per["oracle_coarse_mm"].append(np.abs(b["coarse_depth"][i][gm] - gt_depth[i][gm]).mean() * mm[i])
            per["oracle_fine_mm"].append(np.abs(oracle_fine[i][gm] - gt_depth[i][gm]).mean() * mm[i])
            wm = gm & (np.abs(b["detail"][i]) * mm[i] > 0.1)
            if wm.any():
                per["wrinkle_coarse_mm"].append(np.abs(b["coarse_depth"][i][wm] - gt_depth[i][wm]).mean() * mm[i])
                per["wrinkle_fine_mm"].append(np.abs(oracle_fine[i][wm] - gt_depth[i][wm]).mean() * mm[i])
    return {k: float(np.nanmean(v)) for k, v in per.items()} | {"faces": faces,
                                                               "seeds": f"{EVAL_SEED_OFFSET}..{EVAL_SEED_OFFSET + k - 1}"}


def _shape_error(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean |pred - gt| after removing each one's mean (depth up to a constant)."""
    return float(np.abs((pred - pred.mean()) - (gt - gt.mean())).mean())


def synth_default_detail() -> tuple[float, float]:
    from rtface.synth import SynthConfig

    return SynthConfig().detail_mm


def latency(nets, repeats: int = 30) -> dict:
    s = nets.size
    rng = np.random.default_rng(0)
    res = {}
    for batch in (1, 8):
        x = rng.random((batch, 3, s, s), dtype=np.float32)
        d = np.full((batch, s, s), 40.0, np.float32)
        m = np.ones((batch, s, s), np.float32)
        for name, fn in (("coarse", lambda: nets.coarse.run(x)), ("fine", lambda: nets.fine.run(x, d, m))):
            for _ in range(3):
                fn()
            t = []
            reps = repeats if batch == 1 else max(5, repeats // 3)
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                t.append(time.perf_counter() - t0)
            res[f"{name}_b{batch}_ms"] = float(np.median(t) * 1e3)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__.split("\n")[0])
    ap.add_argument("--weights", help="weights folder (default: the package's rtface/weights)")
    ap.add_argument("--faces", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: cores)")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--no-accuracy", action="store_true")
    ap.add_argument("--detail-mm", type=float, nargs=2, metavar=("LO", "HI"),
                    help="groove depth range of the synthetic detail (default: rtface.synth's)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    from rtface.face_model import FaceModel
    from rtface.networks import load_networks

    model = FaceModel.load()
    nets = load_networks(args.weights, backend="cpu", face_model_hash=model.hash, threads=args.threads)
    threads = getattr(nets.coarse.engine, "threads", args.threads)
    result = {"weights": nets.manifest["_dir"], "variant": nets.manifest["variant"], "input_size": nets.size,
              "training_status": nets.manifest.get("training", {}).get("status"),
              "machine": {**machine(), "ort_threads": threads}}
    if not args.no_accuracy:
        result["accuracy"] = evaluate(nets, model, args.faces, detail_mm=args.detail_mm)
        result["accuracy"]["detail_mm"] = list(args.detail_mm or synth_default_detail())
    if not args.no_latency:
        result["latency"] = latency(nets, args.repeats)
    print(f"weights {result['weights']} (variant {result['variant']}, S={nets.size}, "
          f"training: {result['training_status']})")
    if "accuracy" in result:
        a = result["accuracy"]
        print(f"\nheld-out synthetic faces: {a['faces']} (seeds {a['seeds']})")
        print(f"  {'vertex error':28s} {a['vertex_mm']:8.2f} mm")
        print(f"  {'68-landmark NME':28s} {a['landmark_nme'] * 100:8.2f} %")
        print(f"  {'depth error coarse / fine':28s} {a['depth_coarse_mm']:8.3f} / {a['depth_fine_mm']:.3f} mm")
        print(f"  {'GT-coarse oracle coarse/fine':28s} {a['oracle_coarse_mm']:8.3f} / {a['oracle_fine_mm']:.3f} mm")
        print(f"  {'  in wrinkles coarse/fine':28s} {a['wrinkle_coarse_mm']:8.3f} / {a['wrinkle_fine_mm']:.3f} mm")
        print(f"  {'mask coverage':28s} {a['coverage'] * 100:8.1f} %")
    if "latency" in result:
        lat = result["latency"]
        print(f"\nONNX Runtime CPU latency (median, {threads} threads, {os.cpu_count()} cores):")
        print(f"  {'network':8s} {'batch 1':>10s} {'batch 8':>10s}")
        for name in ("coarse", "fine"):
            print(f"  {name:8s} {lat[name + '_b1_ms']:8.2f} ms {lat[name + '_b8_ms']:8.2f} ms")
    write_json(args.json, result)
    nets.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
