"""How far the real-face shading residual can be lowered by reshaping the face model alone, and what that does to
the depth where the truth is known.

``python -m benchmarks refit [--prior 1e-3 1e-2 1e-1] [--faces 64] [--detail-faces 16] [--detail-seed 1]
[--json PATH]``

The real-face target of the detail work is the **constant-albedo residual** of ``benchmarks.realfaces``
(first-order SH lighting and one albedo fitted to the luma at a depth's normals; RMSE / std of the luma). This
benchmark asks what that residual rewards. It refits the CoarseNet's depth inside the face model's own shape
space: ``z = z0 + B d``, with ``B`` (K, S, S) the depth in the crop of every identity and expression mode
(pose fixed, the modes' in-plane motion left out), and ``d`` minimising the residual (the lighting solved
again at every step) plus ``prior * |c0 + d|^2`` over the identity coefficients ``c0`` and ``prior * |d|^2``
over the expression ones (Gauss-Newton, :func:`photometric_refit`). Every such surface is smooth: the
model's modes hold no wrinkles or albedo edges.

Measured side by side for each ``--prior``: the residual on the first ``--faces`` 300-W test faces, and on
the held-out detail sets (``benchmarks.detailsets``, ``--detail-seed``; the default 1 is the validation seed,
not the test seed 0) the residual, the high-pass depth error of the detail metric and the **depth error**
over the face (mean |z - z*| after removing each one's mean, mm, as ``benchmarks.accuracy``'s
``depth_*_mm``). A residual that falls while the depth error rises rewards a wrong surface.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from .report import machine, write_json


def basis_depth_maps(model, pose: np.ndarray, triangle: np.ndarray, barycentric: np.ndarray, mask: np.ndarray,
                     k_id: int | None = None, k_exp: int | None = None) -> np.ndarray:
    """Depth change (K, S, S) in crop px of a rasterised fit per unit of each identity mode, then each expression
    mode (``k_id`` / ``k_exp`` of them, default all), for ``pose`` (6,) and the fit's raster maps (``triangle``
    (S, S), ``barycentric`` (S, S, 3), ``mask`` (S, S)). Weak perspective: ``z = scale * (R v)_z + const``."""
    from rtface.camera import rotation_matrix

    k_id = model.num_identity if k_id is None else k_id
    k_exp = model.num_expression if k_exp is None else k_exp
    r = rotation_matrix(np.asarray(pose[:3], np.float64))
    basis = np.concatenate([model.id_basis[:k_id], model.exp_basis[:k_exp]], 0).astype(np.float64)
    dz = float(pose[3]) * (basis @ r[2])  # (K, V)
    tri = model.triangles[np.maximum(triangle, 0)]  # (S, S, 3) vertex ids
    return (dz[:, tri] * barycentric.astype(np.float64)[None]).sum(-1) * np.asarray(mask, bool)[None]


def photometric_refit(luma: np.ndarray, depth: np.ndarray, mask: np.ndarray, region: np.ndarray,
                      maps: np.ndarray, prior: float, start: np.ndarray | None = None,
                      iterations: int = 6) -> np.ndarray:
    """Coefficient change ``d`` (K,) that lowers the constant-albedo residual of ``depth + maps . d``.

    ``luma`` (S, S) in [0, 1]; ``depth`` (S, S) crop px with its ``mask``; ``region`` (S, S) bool, the pixels
    measured; ``maps`` (K, S, S) from :func:`basis_depth_maps`; ``prior`` the weight of ``|start + d|^2``
    (``start``: the current coefficients, zeros where a mode has no prior mean, e.g. expressions) against the
    mean squared residual over std(luma)^2. Lighting ``[1, n] . l`` (first-order SH with the albedo folded in)
    is solved in closed form at every Gauss-Newton step."""
    from rtface.render import shading

    k = maps.shape[0]
    gx0, gy0, valid = shading.depth_gradients(depth, mask)
    sel = np.asarray(region, bool) & np.asarray(valid, bool)
    if sel.sum() < 50:
        return np.zeros(k)
    grads = [shading.depth_gradients(m, mask)[:2] for m in maps]
    gx = np.stack([np.asarray(g[0], np.float64)[sel] for g in grads], 1)  # (P, K)
    gy = np.stack([np.asarray(g[1], np.float64)[sel] for g in grads], 1)
    lum = np.asarray(luma, np.float64)[sel]
    gx0, gy0 = np.asarray(gx0, np.float64)[sel], np.asarray(gy0, np.float64)[sel]
    c0 = np.zeros(k) if start is None else np.asarray(start, np.float64)
    norm = len(lum) * max(float(lum.std()), 1e-6) ** 2
    d = np.zeros(k)
    for _ in range(iterations):
        ux, uy = -(gx0 + gx @ d), -(gy0 + gy @ d)
        length = np.sqrt(ux * ux + uy * uy + 1.0)
        n = np.stack([ux, uy, np.ones_like(ux)], 1) / length[:, None]
        a = np.concatenate([np.ones((len(lum), 1)), n], 1)
        light = np.linalg.lstsq(a, lum, rcond=None)[0]
        res = lum - a @ light
        lxyz = light[1:]
        # d res / d u (u = (-gx, -gy, 1) unnormalised), then the chain through u = -(g0 + G d)
        dres_du = -(lxyz[None] - (n @ lxyz)[:, None] * n) / length[:, None]
        jac = -(dres_du[:, 0:1] * gx + dres_du[:, 1:2] * gy)
        h = jac.T @ jac / norm + prior * np.eye(k)
        g = jac.T @ res / norm + prior * (c0 + d)
        d = d - np.linalg.solve(h, g)
    return d


def refit_depths(model, crops_bgr: np.ndarray, res: dict, prior: float) -> np.ndarray:
    """:func:`photometric_refit` of each face's CoarseNet depth (``res``: ``benchmarks.realfaces.run_networks``)
    over the skin region the residual is measured on; (N, S, S) float32 crop px."""
    import cv2

    from rtface.refine import RefineConfig, intensity

    from .detailsets import face_region

    s = crops_bgr.shape[1]
    luma = intensity(crops_bgr, RefineConfig().for_size(s).gamma)[0]
    r = res["raster"]
    out = np.array(res["coarse_depth"], np.float32, copy=True)
    for i in range(len(crops_bgr)):
        m = np.asarray(r.mask[i], bool)
        region = cv2.erode(m.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        region &= face_region(res["landmarks"][i], s)
        maps = basis_depth_maps(model, res["pose"][i], r.triangle[i], r.barycentric[i], m)
        start = np.concatenate([res["identity"][i], np.zeros(maps.shape[0] - res["identity"].shape[1])])
        d = photometric_refit(luma[i], np.asarray(r.depth[i], np.float64), m, region, maps, prior, start)
        out[i] = r.depth[i] + np.tensordot(d, maps, 1).astype(np.float32)
    return out


def measure(nets, model, priors: list[float], faces: int, detail_faces: int, detail_seed: int,
            chunk: int = 16) -> dict:
    """The figures of the module docstring, one entry per prior."""
    from . import detailsets
    from .accuracy import shape_error
    from .realfaces import load_300w_test, normalised_residuals, run_networks

    out: dict = {"priors": priors, "faces_300w": 0, "detail_faces": detail_faces, "detail_seed": detail_seed,
                 "rows": {}}
    crops = load_300w_test(nets.size, faces)[0] if faces else np.zeros((0,))
    out["faces_300w"] = len(crops)
    sets = {kind: [detailsets.make_set(model, kind, min(chunk, detail_faces - i0), size=nets.size, seed=detail_seed,
                                       start=i0) for i0 in range(0, detail_faces, chunk)] for kind in detailsets.KINDS}
    for prior in priors:
        row: dict = {}
        real: dict[str, list] = {"coarse": [], "fine": [], "refit": []}
        for i0 in range(0, len(crops), chunk):
            c = np.ascontiguousarray(crops[i0:i0 + chunk])
            res = run_networks(nets, model, c)
            z = refit_depths(model, c, res, prior)
            r = normalised_residuals(c, res, {"coarse": res["coarse_depth"], "fine": res["fine_depth"], "refit": z},
                                     albedo=False)
            for k in real:
                real[k].append(r[f"const_{k}"])
        if len(crops):
            row["real_const"] = {k: float(np.nanmean(np.concatenate(v))) for k, v in real.items()}
        for kind, parts in sets.items():
            acc: dict[str, list] = {}
            for b in parts:
                res = run_networks(nets, model, b["image"])
                z = refit_depths(model, b["image"], res, prior)
                depths = {"coarse": res["coarse_depth"], "fine": res["fine_depth"], "refit": z}
                both = dict(res, mask=res["mask"] & b["mask"])
                r = normalised_residuals(b["image"], both, depths | {"truth": b["depth"]}, albedo=False)
                for k in ("coarse", "fine", "refit", "truth"):
                    acc.setdefault(f"const_{k}", []).append(r[f"const_{k}"])
                for i in range(len(b["image"])):
                    mm = float(b["mm_per_px"][i])
                    for k, d in depths.items():
                        acc.setdefault(f"depth_{k}_mm", []).append(
                            [shape_error(d[i][both["mask"][i]], b["depth"][i][both["mask"][i]]) * mm])
                        acc.setdefault(f"highpass_{k}_mm", []).append([detailsets.highpass_error(
                            d[i], b["depth"][i], b["mask"][i], mm, res["mask"][i], b["landmarks"][i],
                            b["coarse_depth"][i], res["coarse_depth"][i])])
            row[kind] = {k: float(np.nanmean(np.concatenate(v))) for k, v in acc.items()}
        out["rows"][str(prior)] = row
    return out


def _pct(a: float, b: float) -> str:
    return f"{(a / b - 1) * 100:+6.1f}%"


def print_result(r: dict) -> None:
    print(f"\nphotometric refit of the CoarseNet's depth in the face model's shape space "
          f"(300-W test: {r['faces_300w']} faces; detail sets: {r['detail_faces']} faces each, seed {r['detail_seed']})")
    print("  change from the coarse depth; residual = constant-albedo SfS residual / std(I); depth = mean |z - z*|, "
          "high-pass = the detail metric")
    for prior, row in r["rows"].items():
        print(f"  prior {prior}:")
        if "real_const" in row:
            q = row["real_const"]
            print(f"    300-W residual            FineNet {_pct(q['fine'], q['coarse'])}   refit {_pct(q['refit'], q['coarse'])}")
        for kind in ("detail", "albedo"):
            if kind not in row:
                continue
            q = row[kind]
            print(f"    {kind + ' set':9s} residual      FineNet {_pct(q['const_fine'], q['const_coarse'])}   refit "
                  f"{_pct(q['const_refit'], q['const_coarse'])}   true surface {_pct(q['const_truth'], q['const_coarse'])}")
            print(f"    {'':9s} depth {q['depth_coarse_mm']:.2f} mm  FineNet {_pct(q['depth_fine_mm'], q['depth_coarse_mm'])}"
                  f"   refit {_pct(q['depth_refit_mm'], q['depth_coarse_mm'])}")
            print(f"    {'':9s} high-pass {q['highpass_coarse_mm']:.3f} mm  FineNet "
                  f"{_pct(q['highpass_fine_mm'], q['highpass_coarse_mm'])}   refit "
                  f"{_pct(q['highpass_refit_mm'], q['highpass_coarse_mm'])}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.refit", description=__doc__.split("\n")[0])
    ap.add_argument("--weights", help="weights folder (default: the package's rtface/weights)")
    ap.add_argument("--prior", type=float, nargs="+", default=[1e-3, 1e-2, 1e-1],
                    help="weights of the coefficient prior against the mean squared normalised residual")
    ap.add_argument("--faces", type=int, default=64, help="300-W test faces (0 skips them)")
    ap.add_argument("--detail-faces", type=int, default=16, help="faces per held-out detail set")
    ap.add_argument("--detail-seed", type=int, default=1, help="seed of the detail sets (1: validation, 0: test)")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    from rtface.face_model import FaceModel
    from rtface.networks import load_networks

    model = FaceModel.load()
    nets = load_networks(args.weights, backend="cpu", face_model_hash=model.hash, threads=args.threads)
    t0 = time.perf_counter()
    result = {"weights": nets.manifest.get("_dir"), "machine": machine(),
              **measure(nets, model, args.prior, args.faces, args.detail_faces, args.detail_seed)}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"weights {result['weights']}")
    print_result(result)
    print(f"  ({result['seconds']} s)")
    write_json(args.json, result)
    nets.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
