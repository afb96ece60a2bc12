"""Real-face accuracy of the shipped weights: shape-from-shading error (coarse vs fine) and 68-landmark NME.

``python -m benchmarks.realfaces [--weights DIR] [--set utk|300w|both] [--faces N] [--limit N] [--no-refine]
[--landmark-fit] [--json PATH]``

Held-out real faces (``--set``): ``utk`` the UTKFace held-out split (below), ``300w`` the 554 images of
``<assets>/faces-300w/test`` (300-W common test set, never trained on: training uses ``faces-300w/train``),
detected with YuNet and cropped like the pipeline (``train.realdata.Detector``, ``rtface.crop``).

Three depths per face, side by side: the **coarse** depth, the **FineNet**'s and the reference
**refinement**'s (``rtface.refine.refine_depth`` on the coarse depth; ``--no-refine`` leaves it out). Two
shape-from-shading residuals (normalised: residual RMSE / standard deviation of the intensity; lower is
better; ``fine >= 15 %`` below ``coarse`` is the target), measured over the mask eroded by 2 px inside the
skin region of the predicted landmarks (``benchmarks.detailsets.face_region``), luma in [0, 1]:

* **constant albedo**: for each depth separately, first-order SH lighting and one constant albedo fitted by
  least squares to the intensity at that depth's normals; the residual is what no lighting explains.
* **albedo estimated**: lighting and albedo estimated once from the coarse depth by the refinement's
  method (``rtface.refine.lighting_albedo``: robust lighting from the coarse normals, edge-aware albedo),
  then held fixed for every depth.

``--landmark-fit`` (300-W): the real-face reference surface, the face model fitted to each face's 68 annotated
landmarks (``train.labeled``) and rendered in the same crop (:func:`landmark_fit_depths`), and the FineNet run
on it; its constant-albedo residual beside the others, every row then on the pixels both surfaces cover.

* **SfS photometric error** on the held-out UTKFace crops (``train/realdata.py``: 5 % by file-name hash,
  never trained on), run like the pipeline: CoarseNet (feedback zero) -> 3DMM mesh -> project -> rasterise
  (``rtface.render``, CPU) -> coarse depth -> FineNet -> fine depth. Lighting and albedo are estimated from
  the coarse depth exactly as the phase-2 loss does (``train.losses``: first-order SH, constant-albedo solve,
  one albedo refinement, bilateral-smoothed albedo), inside the face region of the predicted landmarks; the
  error is ``sqrt(mean (rho * l . Y(n(z)) - I)^2)`` per face for ``z`` = coarse and fine depth, intensity in
  0..1 (Rec. 601 luma), then averaged over faces. Lower is better; fine should beat coarse (the albedo is
  smoothed, so the coarse error is the shading detail the 3DMM cannot express).
* **68-landmark NME** on ``<assets>/faces-labeled/image_0010.png`` with its iBUG ``.pts``: YuNet -> crop ->
  CoarseNet -> projected model landmarks mapped back to the image; mean point error / sqrt(w * h) of the
  ground-truth landmarks' box. Also given: the same for the mean face at the template pose ("template"), the
  error of a network that learnt nothing beyond the detector's framing.

Torch is used for the SfS measurement only (``train.losses``); the networks run on ONNX Runtime (CPU).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from .report import machine, write_json


def read_pts(path: str | os.PathLike) -> np.ndarray:
    """iBUG ``.pts`` -> (N, 2) float64 (file coordinates: 1-based pixel indices -> rtface pixel centres)."""
    lines = Path(path).read_text().splitlines()
    start = next(i for i, s in enumerate(lines) if s.strip() == "{")
    end = next(i for i, s in enumerate(lines) if s.strip() == "}")
    pts = np.array([[float(v) for v in s.split()[:2]] for s in lines[start + 1:end]])
    # iBUG/300-W coordinates are 1-based (pixel (1,1) is the top-left pixel's centre); rtface's centre of
    # that pixel is (0.5, 0.5).
    return pts - 0.5


def run_networks(nets, model, crops_bgr: np.ndarray) -> dict[str, np.ndarray]:
    """The pipeline's chain on crops (N, S, S, 3) BGR: coarse outputs, vertices, depth maps, mask and the fit's
    :class:`rtface.render.Raster` (``raster``)."""
    from rtface.networks import preprocess
    from rtface.render.fit import render_fit

    x = preprocess(crops_bgr)
    out = nets.coarse.run(x)
    vpx, r = render_fit(model, out["identity"], out["expression"], out["pose"], nets.size)
    mask = r.mask.astype(np.float32)
    fine = nets.fine.run(x, r.depth.astype(np.float32), mask)
    return {"image": x, "vertices_px": vpx, "landmarks": vpx[:, model.landmarks, :2], "coarse_depth": r.depth,
            "fine_depth": fine, "mask": r.mask, "raster": r, **out}


def sfs_errors(res: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-face SfS RMSE (intensity 0..1) of the coarse and fine depth, and the number of pixels measured."""
    import torch

    from train import losses as L

    img = torch.from_numpy(np.ascontiguousarray(res["image"]))
    z0 = torch.from_numpy(np.ascontiguousarray(res["coarse_depth"], dtype=np.float32))[:, None]
    z = torch.from_numpy(np.ascontiguousarray(res["fine_depth"], dtype=np.float32))[:, None]
    mask = torch.from_numpy(np.ascontiguousarray(res["mask"]))[:, None]
    lm = torch.from_numpy(np.ascontiguousarray(res["landmarks"], dtype=np.float32))
    with torch.no_grad():
        e = L.sfs_errors(L.rgb_to_intensity(img), z, z0, mask, L.LightingConfig(), landmarks68=lm)
    return e["coarse"].sqrt().numpy(), e["fine"].sqrt().numpy(), e["valid"].sum(dim=(1, 2, 3)).numpy()


def normalised_residuals(crops_bgr: np.ndarray, res: dict[str, np.ndarray], depths: dict[str, np.ndarray],
                         refine_config=None, albedo: bool = True) -> dict[str, np.ndarray]:
    """Per face, the two SfS residuals of the module docstring for each depth in ``depths`` (name -> (N, S, S)).

    Returns ``{"const_<name>": (N,), "albedo_<name>": (N,), "pixels": (N,)}``; NaN where fewer than 50 pixels.
    ``albedo=False``: the constant-albedo residual only (no albedo estimate, no ``albedo_<name>`` keys)."""
    import cv2

    from rtface.refine import RefineConfig, intensity, lighting_albedo
    from rtface.render import shading

    from .detailsets import face_region

    n, s = res["mask"].shape[:2]
    kinds = ("const", "albedo") if albedo else ("const",)
    if albedo:
        est = lighting_albedo(crops_bgr, res["coarse_depth"], res["mask"], refine_config)
        lums = est["intensity"]
    else:
        lums = intensity(crops_bgr, (refine_config or RefineConfig().for_size(s)).gamma)[0]
    out = {f"{k}_{name}": np.full(n, np.nan) for k in kinds for name in depths}
    out["pixels"] = np.zeros(n, int)
    for i in range(n):
        m = res["mask"][i]
        region = cv2.erode(m.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        region &= face_region(res["landmarks"][i], s)
        normals = {}
        for name, d in depths.items():
            normals[name], valid = shading.depth_normals(d[i], m, return_valid=True)
            region &= valid
        out["pixels"][i] = int(region.sum())
        if region.sum() < 50:
            continue
        lum = lums[i].astype(np.float64)
        sd = float(lum[region].std()) or 1.0
        for name, nrm in normals.items():
            light = shading.solve_lighting(nrm, lum, region, order=1)
            r = lum - shading.shade(nrm, light)
            out[f"const_{name}"][i] = np.sqrt(np.mean(r[region] ** 2)) / sd
            if albedo:
                r = lum - est["albedo"][i] * shading.shade(nrm, est["light"][i])
                out[f"albedo_{name}"][i] = np.sqrt(np.mean(r[region] ** 2)) / sd
    return out


def load_300w_test(size: int, limit: int | None = None
                   ) -> tuple[np.ndarray, list[str], int, np.ndarray]:
    """The 300-W test images (``<assets>/faces-300w/test``) detected and cropped like the pipeline.

    Returns crops (N, S, S, 3) uint8 BGR, their names, the number of images without a detection and the
    crops' transforms (N, 2, 3) image px -> crop px."""
    import cv2

    from rtface.assets import data_path
    from rtface.camera import warp_to_crop
    from rtface.crop import crop_from_five
    from train.realdata import Detector

    folder = data_path("faces-300w/test")
    files = sorted(folder.glob("*.jpg"))[:limit]
    if not files:
        raise FileNotFoundError(f"no test images in {folder}: set RTFACE_ASSETS to a folder with faces-300w/test")
    det = Detector()
    crops, names, affines, missed = [], [], [], 0
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        d = det(img) if img is not None else None
        if d is None:
            missed += 1
            continue
        affines.append(crop_from_five(d[2], size))
        crops.append(warp_to_crop(img, affines[-1], size))
        names.append(f.stem)
    if not crops:
        return np.zeros((0, size, size, 3), np.uint8), names, missed, np.zeros((0, 2, 3))
    return np.stack(crops), names, missed, np.stack(affines)


def landmark_fit_depths(model, lab, names: list[str], affines: np.ndarray, size: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Depth (N, S, S) crop px and mask (N, S, S) bool of the face model fitted to each face's 68 annotated
    landmarks (``lab``: a :class:`train.labeled.Labeled` set holding ``names``; its fits are in image px),
    seen in the crops ``affines`` (N, 2, 3) image px -> crop px and rasterised like the pipeline's fit.

    The real-face reference of the detail benchmarks' "true surface": a coarse surface placed where the
    annotators put the face (the fit's box-NME is about 1.5 % on 300-W, the CoarseNet's about 2.8 %), with
    the shape the model gives those points. A name missing from ``lab`` raises ``KeyError``."""
    from rtface.camera import Pose
    from rtface.render.fit import render_fit

    where = {str(n): i for i, n in enumerate(lab.names)}
    idx = np.array([where[n] for n in names], dtype=np.int64)
    poses = np.stack([Pose.from_vector(lab.pose[i].astype(np.float64)).transformed(a).to_vector()
                      for i, a in zip(idx, affines)]) if len(idx) else np.zeros((0, 6))
    _, r = render_fit(model, lab.identity[idx], lab.expression[idx], poses, size)
    return np.asarray(r.depth, np.float32), np.asarray(r.mask, bool)


def measure_set(nets, model, crops: np.ndarray, chunk: int, refine: bool, refine_config=None,
                reference: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """All real-face SfS figures of one set of crops (N, S, S, 3) BGR (``refine_config``: a
    :class:`rtface.refine.RefineConfig` for the refinement and the albedo-estimated residual).

    ``reference``: (depth, mask) (N, S, S) of another coarse surface of the same crops (the landmark fit,
    :func:`landmark_fit_depths`). It adds the constant-albedo residual of that surface (``const_fit``) and of
    the FineNet run on it (``const_fit_fine``), and every residual is then measured where both surfaces
    cover the face."""
    from rtface.refine import refine_depth

    t0 = time.perf_counter()
    cols: dict[str, list] = {}
    t_ref = 0.0
    for i in range(0, len(crops), chunk):
        c = np.ascontiguousarray(crops[i:i + chunk])
        res = run_networks(nets, model, c)
        depths = {"coarse": res["coarse_depth"], "fine": res["fine_depth"]}
        if refine:
            t1 = time.perf_counter()
            depths["refine"] = refine_depth(c, res["coarse_depth"], res["mask"], refine_config)
            t_ref += time.perf_counter() - t1
        both = res
        if reference is not None:
            z, m = reference[0][i:i + chunk], reference[1][i:i + chunk]
            both = dict(res, mask=res["mask"] & m)
            depths |= {"fit": z, "fit_fine": nets.fine.run(res["image"], z.astype(np.float32), m.astype(np.float32))}
        per = normalised_residuals(c, both, depths, refine_config)
        co, fi, npx = sfs_errors(both)
        per |= {"loss_coarse": co, "loss_fine": fi, "loss_pixels": npx}
        if refine:
            per["loss_refine"] = sfs_errors({**both, "fine_depth": depths["refine"]})[1]
        for k, v in per.items():
            cols.setdefault(k, []).append(np.asarray(v, np.float64))
    col = {k: np.concatenate(v) for k, v in cols.items()}
    ok = (col["pixels"] >= 50) & (col["loss_pixels"] >= 50)
    if reference is not None:
        ok &= np.isfinite(col["const_fit"]) & np.isfinite(col["const_fit_fine"])
    out: dict = {"faces": int(ok.sum()), "faces_skipped": int((~ok).sum()),
                 "seconds": round(time.perf_counter() - t0, 1)}
    names = ("coarse", "fine") + (("refine",) if refine else ())
    rows = [(kind, names) for kind in ("const", "albedo", "loss")]
    if reference is not None:
        rows[0] = ("const", names + ("fit", "fit_fine"))
    for kind, kind_names in rows:
        for name in kind_names:
            out[f"{kind}_{name}"] = float(np.mean(col[f"{kind}_{name}"][ok])) if ok.any() else None
        for name in kind_names[1:]:
            c, f = out[f"{kind}_coarse"], out[f"{kind}_{name}"]
            out[f"{kind}_{name}_gain"] = (1.0 - f / c) if c else None
            out[f"{kind}_{name}_better_frac"] = float((col[f"{kind}_{name}"][ok] < col[f"{kind}_coarse"][ok]).mean()) \
                if ok.any() else None
    if refine:
        out["refine_ms_per_face"] = t_ref / max(1, len(crops)) * 1e3
    return out


def print_set(title: str, r: dict) -> None:
    refine = "const_refine" in r
    print(f"\n{title}: {r['faces']} measured, {r['faces_skipped']} skipped, {r['seconds']} s")
    if r["const_coarse"] is None:
        return
    names = ("fine",) + (("refine",) if refine else ())
    print(f"  {'SfS residual':36s} {'coarse':>8s} {'FineNet':>18s}" + (f" {'refinement':>18s}" if refine else ""))
    for kind, label in (("const", "constant albedo, RMSE / std(I)"), ("albedo", "albedo estimated, RMSE / std(I)"),
                        ("loss", "phase-2 loss RMSE (intensity 0..1)")):
        row = f"  {label:36s} {r[f'{kind}_coarse']:8.4f}"
        for nm in names:
            row += f" {r[f'{kind}_{nm}']:8.4f} ({-r[f'{kind}_{nm}_gain'] * 100:+6.1f}%)"
        print(row)
    if "const_fit" in r:
        for nm, label in (("fit", "landmark fit, constant albedo"), ("fit_fine", "... with the FineNet on it")):
            print(f"  {label:36s} {'':8s} {r[f'const_{nm}']:8.4f} ({-r[f'const_{nm}_gain'] * 100:+6.1f}%)")
        print("  (landmark fit: the face model fitted to the 68 annotated points, rendered in the same crop; all rows "
              "on the pixels both surfaces cover)")
    print("  (in brackets: change from the coarse depth; negative = lower residual; target fine <= -15 %)")
    if refine:
        print(f"  refinement: {r['refine_ms_per_face']:.1f} ms per face (CPU, while measuring)")


def landmark_nme(nets, model, image_path: Path, pts_path: Path) -> dict:
    import cv2

    from rtface.camera import apply_affine, invert_affine, project, warp_to_crop
    from rtface.crop import crop_from_five, frontal_pose
    from train.realdata import Detector

    img = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    gt = read_pts(pts_path)
    det = Detector()(img)
    if det is None:
        return {"image": image_path.name, "error": "no face detected"}
    _, score, five = det
    s = nets.size
    a = crop_from_five(five, s)
    crop = warp_to_crop(img, a, s)
    res = run_networks(nets, model, crop[None])
    back = invert_affine(a)
    pred = apply_affine(back, res["landmarks"][0])
    tmpl = apply_affine(back, project(model.mean, frontal_pose(s))[model.landmarks, :2])
    w, h = gt.max(0) - gt.min(0)
    norm = float(np.sqrt(w * h))
    return {"image": image_path.name, "detector_score": float(score), "norm_px": norm,
            "nme": float(np.linalg.norm(pred - gt, axis=1).mean() / norm),
            "nme_template": float(np.linalg.norm(tmpl - gt, axis=1).mean() / norm)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.realfaces", description=__doc__.split("\n")[0])
    ap.add_argument("--weights", help="weights folder (default: the package's rtface/weights)")
    ap.add_argument("--set", choices=("utk", "300w", "both"), default="utk",
                    help="held-out real faces: UTKFace held-out split, 300-W test, or both")
    ap.add_argument("--faces", type=int, default=0, help="at most this many held-out faces per set (0: all)")
    ap.add_argument("--no-refine", action="store_true", help="leave the reference refinement out")
    ap.add_argument("--refine-set", nargs="+", default=[], metavar="NAME=VALUE",
                    help="refinement settings other than rtface.refine.RefineConfig's defaults (S = 128 units)")
    ap.add_argument("--limit", type=int, default=None,
                    help="preprocess only the first N images (UTK archive / 300-W test folder)")
    ap.add_argument("--landmark-fit", action="store_true",
                    help="300-W: also the face model fitted to the annotated landmarks (train.labeled, its cache built "
                         "on first use, about a minute) and the FineNet run on it")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    from rtface.assets import data_path
    from rtface.face_model import FaceModel
    from rtface.networks import load_networks
    from rtface.refine import RefineConfig

    from train import realdata

    model = FaceModel.load()
    nets = load_networks(args.weights, backend="cpu", face_model_hash=model.hash, threads=args.threads)
    s = nets.size
    result: dict = {"weights": nets.manifest.get("_dir"), "variant": nets.manifest.get("variant"), "size": s,
                    "training": nets.manifest.get("training", {}).get("status"),
                    "machine": machine()}
    cfg = RefineConfig.parse(args.refine_set, s)
    result["refine_config"] = cfg.to_dict()

    if args.set in ("utk", "both"):
        faces = realdata.load(s, args.limit, progress=True)
        idx = np.sort(faces.indices("heldout"))
        if args.faces:
            idx = idx[:args.faces]
        result["sfs"] = measure_set(nets, model, np.asarray(faces.crops[idx]), args.chunk, not args.no_refine, cfg)
        result["sfs"]["split"] = "UTKFace heldout (5 % by name hash)"
    if args.set in ("300w", "both"):
        crops, names, missed, affines = load_300w_test(s, args.limit)
        if args.faces:
            crops, names, affines = crops[:args.faces], names[:args.faces], affines[:args.faces]
        reference = None
        if args.landmark_fit:
            from train import labeled

            reference = landmark_fit_depths(model, labeled.load("300w-test"), names, affines, s)
        result["sfs_300w"] = measure_set(nets, model, crops, args.chunk, not args.no_refine, cfg, reference)
        result["sfs_300w"] |= {"split": "faces-300w/test", "no_detection": missed}

    img = data_path("faces-labeled/image_0010.png")
    pts = img.with_suffix(".pts")
    if img.is_file() and pts.is_file():
        result["landmarks"] = landmark_nme(nets, model, img, pts)
    else:
        result["landmarks"] = {"error": f"{img} / {pts} not found"}

    print(f"weights {result['weights']} (variant {result['variant']}, S={s}, training: {result['training']})")
    if "sfs" in result:
        print_set("held-out real faces (UTKFace held-out split)", result["sfs"])
    if "sfs_300w" in result:
        print_set("held-out real faces (300-W test, faces-300w/test)", result["sfs_300w"])
    lmk = result["landmarks"]
    if "nme" in lmk:
        print(f"\n68-landmark NME on {lmk['image']} (norm sqrt(w*h) = {lmk['norm_px']:.1f} px):")
        print(f"  {'CoarseNet':28s} {lmk['nme'] * 100:8.2f} %")
        print(f"  {'mean face, template pose':28s} {lmk['nme_template'] * 100:8.2f} %")
    else:
        print(f"\nlandmark NME: {lmk.get('error')}")
    write_json(args.json, result)
    nets.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
