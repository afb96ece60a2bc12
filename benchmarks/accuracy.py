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

**Detail on held-out sets of another renderer** (``benchmarks/detailsets.py``; ``--detail-faces N`` faces per
set, 0 to skip): the FineNet and the reference refinement (``rtface.refine.refine_depth``) side by side, each
run on the *predicted* coarse depth (CoarseNet -> mesh -> rasteriser, as the pipeline) and on the *true*
coarse depth (the same rasteriser on the true mesh: what a perfect CoarseNet would give). The truth is the
smooth face plus its detail (the sets shade a smooth surface, so the mesh's facets, about a pixel wide at
S = 128, are an error of the coarse depth too). The figure is the high-pass depth error ``E``
(``detailsets.highpass_error``: RMS over the face's skin region of ``HP(z - z*)``, ``z`` minus its local
linear fit under a 5 mm Gaussian, in mm; mean over faces):

* detail set: **detail recovered** ``= 1 - E(fine) / E(coarse)`` (%), with ``coarse`` the depth the method
  started from (predicted or true).
* albedo-edge set (no geometric detail): **spurious relief** ``E(fine) / E(coarse)`` (ratio, target <= 1.5x):
  what a method does where the image shows only albedo edges.
* both sets, predicted coarse: the real-face figure measured where the truth is known, the **constant-albedo
  shape-from-shading residual** of ``benchmarks.realfaces`` (first-order SH and one albedo fitted to the
  luma at each depth's normals; RMSE / std of the luma, over the skin region of the predicted landmarks on
  both masks) of the coarse, fine and refined depths and of the **true surface** (the same smooth face plus its
  detail): how far a depth that is right lowers it. The albedo-estimated residual of ``realfaces`` is not
  given here: it holds the albedo and lighting estimated at the coarse depth, so any other depth, the true
  one included, scores worse.

Latency: median over repeats of ``Engine.run`` at batch 1 and 8 on ONNX Runtime CPU (threads named), and of
``rtface.refine.refine_depth`` per face at batch 1 and 4 (``--no-refine`` leaves it out).
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
    from rtface.render.fit import render_fit

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
        verts, r = render_fit(model, out["identity"], out["expression"], out["pose"], s)
        gt_pose = b["pose"].astype(np.float64)
        gt_verts = project(model.vertices(b["identity"].astype(np.float32), b["expression"].astype(np.float32)),
                           gt_pose)
        mm = 10.0 / gt_pose[:, 3]  # mm per crop px
        per["vertex_mm"] += list(np.linalg.norm(verts - gt_verts, axis=-1).mean(-1) * mm)
        lm_p = verts[:, model.landmarks, :2]
        lm_g = gt_verts[:, model.landmarks, :2]
        wh = lm_g.max(1) - lm_g.min(1)
        per["landmark_nme"] += list(np.linalg.norm(lm_p - lm_g, axis=-1).mean(-1) / np.sqrt(wh[:, 0] * wh[:, 1]))
        fine = nets.fine.run(x, r.depth, r.mask)
        gt_mask = b["mask"].astype(bool)
        gt_depth = b["depth"].astype(np.float32)
        oracle_fine = nets.fine.run(x, b["coarse_depth"].astype(np.float32) * gt_mask, gt_mask)
        for i in range(n):
            m = gt_mask[i] & r.mask[i]
            per["coverage"].append(m.sum() / max(1, gt_mask[i].sum()))
            g = gt_depth[i][m]
            per["depth_coarse_mm"].append(shape_error(r.depth[i][m], g) * mm[i] if m.any() else np.nan)
            per["depth_fine_mm"].append(shape_error(fine[i][m], g) * mm[i] if m.any() else np.nan)
            gm = gt_mask[i]
            per["oracle_coarse_mm"].append(np.abs(b["coarse_depth"][i][gm] - gt_depth[i][gm]).mean() * mm[i])
            per["oracle_fine_mm"].append(np.abs(oracle_fine[i][gm] - gt_depth[i][gm]).mean() * mm[i])
            wm = gm & (np.abs(b["detail"][i]) * mm[i] > 0.1)
            if wm.any():
                per["wrinkle_coarse_mm"].append(np.abs(b["coarse_depth"][i][wm] - gt_depth[i][wm]).mean() * mm[i])
                per["wrinkle_fine_mm"].append(np.abs(oracle_fine[i][wm] - gt_depth[i][wm]).mean() * mm[i])
    return {k: float(np.nanmean(v)) for k, v in per.items()} | {"faces": faces,
                                                               "seeds": f"{EVAL_SEED_OFFSET}..{EVAL_SEED_OFFSET + k - 1}"}


def detail_evaluation(nets, model, faces: int, seed: int = 0, refine: bool = True, chunk: int = 16,
                      refine_config=None, sets: dict | None = None) -> dict:
    """Detail recovered / spurious relief of the FineNet (and the refinement, with ``refine_config``: a
    :class:`rtface.refine.RefineConfig`, default its defaults) on the held-out detail sets.

    ``sets``: a dict kept by a caller that evaluates several networks with one face model; the rendered sets
    (most of the time here) are stored in it and reused."""
    from rtface.refine import refine_depth

    from . import detailsets
    from .realfaces import normalised_residuals, run_networks

    out: dict = {"faces": faces, "seed": seed, "highpass_mm": detailsets.HIGHPASS_MM, "size": nets.size}
    methods = ("coarse", "fine") + (("refine",) if refine else ())
    for kind in detailsets.KINDS:
        err = {f"{m}_{c}": [] for m in methods for c in ("pred", "true")}
        sfs: dict[str, list] = {m: [] for m in methods + ("truth",)}
        t_ref = 0.0
        for i0 in range(0, faces, chunk):
            n = min(chunk, faces - i0)
            key = (kind, nets.size, seed, i0, n)
            b = sets.get(key) if sets is not None else None
            if b is None:
                b = detailsets.make_set(model, kind, n, size=nets.size, seed=seed, start=i0)
                if sets is not None:
                    sets[key] = b
            res = run_networks(nets, model, b["image"])
            # "true": the pipeline's rasterisation of the true mesh (a perfect CoarseNet); the truth it is
            # measured against is the smooth face (+ detail), which the mesh's facets miss by a little
            depth = {"coarse_pred": res["coarse_depth"], "fine_pred": res["fine_depth"],
                     "coarse_true": b["mesh_depth"],
                     "fine_true": nets.fine.run(res["image"], b["mesh_depth"], b["mask"].astype(np.float32))}
            if refine:
                t0 = time.perf_counter()
                depth["refine_pred"] = refine_depth(b["image"], res["coarse_depth"], res["mask"], refine_config)
                depth["refine_true"] = refine_depth(b["image"], b["mesh_depth"], b["mask"], refine_config)
                t_ref += time.perf_counter() - t0
            both = dict(res, mask=res["mask"] & b["mask"])
            r = normalised_residuals(b["image"], both,
                                     {m: depth[f"{m}_pred"] for m in methods} | {"truth": b["depth"]}, albedo=False)
            for m in sfs:
                sfs[m].append(r[f"const_{m}"])
            for i in range(n):
                for key, d in depth.items():
                    # on the pixels both masks cover, off the discontinuities of the truth and of the input
                    pred = key.endswith("_pred")
                    err[key].append(detailsets.highpass_error(
                        d[i], b["depth"][i], b["mask"][i], float(b["mm_per_px"][i]), res["mask"][i] if pred else None,
                        b["landmarks"][i], b["coarse_depth"][i],
                        res["coarse_depth"][i] if pred else b["mesh_depth"][i]))
        r = {f"{k}_mm": float(np.nanmean(v)) for k, v in err.items()}
        r |= {f"sfs_const_{m}": float(np.nanmean(np.concatenate(v))) for m, v in sfs.items()}
        for m in methods[1:]:
            for c in ("pred", "true"):
                e, e0 = r[f"{m}_{c}_mm"], r[f"coarse_{c}_mm"]
                if kind == "detail":
                    r[f"{m}_{c}_recovered"] = 1.0 - e / e0 if e0 > 0 else float("nan")
                else:
                    r[f"{m}_{c}_ratio"] = e / e0 if e0 > 0 else float("nan")
        if refine:
            r["refine_ms_per_face"] = t_ref / (2 * faces) * 1e3
        out[kind] = r
    return out


def print_detail(d: dict) -> None:
    """The detail table of :func:`detail_evaluation`."""
    from . import detailsets

    refine = "refine_pred_mm" in d["detail"]
    print(f"\nheld-out detail sets (benchmarks/detailsets.py, another renderer): {d['faces']} faces each, "
          f"seed {d['seed']}, S={d['size']}; high-pass depth error (sigma {d['highpass_mm']:g} mm), mm")
    head = f"  {'':34s} {'coarse':>8s} {'FineNet':>16s}" + (f" {'refinement':>16s}" if refine else "")
    print(head)
    for kind, label in (("detail", "detail recovered"), ("albedo", "spurious relief")):
        r = d[kind]
        for c, cname in (("pred", "predicted coarse"), ("true", "true coarse")):
            row = f"  {kind + ' set, ' + cname:34s} {r[f'coarse_{c}_mm']:8.4f}"
            for m in ("fine",) + (("refine",) if refine else ()):
                e = r[f"{m}_{c}_mm"]
                if kind == "detail":
                    row += f" {e:7.4f} ({r[f'{m}_{c}_recovered'] * 100:+5.1f}%)"
                else:
                    q = r[f"{m}_{c}_ratio"]
                    row += f" {e:7.4f} ({q:5.2f}x) " if np.isfinite(q) else f" {e:7.4f}  (  -  ) "
            print(row)
        print(f"    ({label}: " + ("1 - E(fine)/E(coarse)" if kind == "detail" else
                                    "E(fine)/E(coarse), target <= 1.5x") + "; true coarse = the true mesh rasterised)")
    print("  shape-from-shading residual / std(I), constant albedo, predicted coarse (the real-face figure where "
          "the truth is known)")
    print(head + f" {'true surface':>16s}")
    for kind in detailsets.KINDS:
        r = d[kind]
        c = r["sfs_const_coarse"]
        row = f"  {kind + ' set':34s} {c:8.4f}"
        for m in ("fine",) + (("refine",) if refine else ()) + ("truth",):
            row += f" {r[f'sfs_const_{m}']:7.4f} ({(r[f'sfs_const_{m}'] / c - 1) * 100:+5.1f}%)"
        print(row)
    if refine:
        print(f"  refinement: {d['detail']['refine_ms_per_face']:.1f} ms per face (CPU, while measuring)")


def shape_error(pred: np.ndarray, gt: np.ndarray) -> float:
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
    ap.add_argument("--detail-faces", type=int, default=48,
                    help="faces per held-out detail set (benchmarks/detailsets.py); 0 skips them")
    ap.add_argument("--detail-seed", type=int, default=0, help="seed of the held-out detail sets")
    ap.add_argument("--no-refine", action="store_true", help="leave the reference refinement out")
    ap.add_argument("--refine-set", nargs="+", default=[], metavar="NAME=VALUE",
                    help="refinement settings other than rtface.refine.RefineConfig's defaults (S = 128 units)")
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
    if not args.no_accuracy and args.detail_faces > 0:
        from rtface.refine import RefineConfig

        cfg = RefineConfig.parse(args.refine_set, nets.size)
        result["detail"] = detail_evaluation(nets, model, args.detail_faces, args.detail_seed,
                                             refine=not args.no_refine, refine_config=cfg)
        result["detail"]["refine_config"] = cfg.to_dict()
    if not args.no_latency:
        result["latency"] = latency(nets, args.repeats)
        if not args.no_refine:
            from rtface.refine import measure_speed

            result["latency"] |= {f"refine_{k}": v for k, v in measure_speed(size=nets.size).items()}
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
    if "detail" in result:
        print_detail(result["detail"])
    if "latency" in result:
        lat = result["latency"]
        print(f"\nONNX Runtime CPU latency (median, {threads} threads, {os.cpu_count()} cores):")
        print(f"  {'network':8s} {'batch 1':>10s} {'batch 8':>10s}")
        for name in ("coarse", "fine"):
            print(f"  {name:8s} {lat[name + '_b1_ms']:8.2f} ms {lat[name + '_b8_ms']:8.2f} ms")
        if "refine_b1_ms_per_face" in lat:
            print(f"  reference refinement (rtface.refine, NumPy/Numba, one thread): "
                  f"{lat['refine_b1_ms_per_face']:.1f} ms per face at batch 1, "
                  f"{lat['refine_b4_ms_per_face']:.1f} at batch 4")
    write_json(args.json, result)
    nets.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
