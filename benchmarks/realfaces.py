"""Real-face accuracy of the shipped weights: shape-from-shading error (coarse vs fine) and 68-landmark NME.

``python -m benchmarks.realfaces [--weights DIR] [--faces N] [--limit N] [--json PATH]``

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
    """The pipeline's chain on crops (N, S, S, 3) BGR: coarse outputs, vertices, depth maps, mask."""
    from rtface.camera import project
    from rtface.networks import preprocess
    from rtface.render import rasterize

    s = nets.size
    x = preprocess(crops_bgr)
    out = nets.coarse.run(x)
    verts = np.stack([model.vertices(i, e) for i, e in zip(out["identity"], out["expression"])])
    vpx = project(verts, out["pose"])  # (N, V, 3) crop px
    r = rasterize(vpx.astype(np.float32), model.triangles, s, s, backend="cpu")
    mask = r.mask.astype(np.float32)
    fine = nets.fine.run(x, r.depth.astype(np.float32), mask)
    return {"image": x, "vertices_px": vpx, "landmarks": vpx[:, model.landmarks, :2], "coarse_depth": r.depth,
            "fine_depth": fine, "mask": r.mask, **out}


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
    ap.add_argument("--faces", type=int, default=0, help="at most this many held-out faces (0: all)")
    ap.add_argument("--limit", type=int, default=None, help="preprocess only the first N archive images")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    from rtface.assets import data_path
    from rtface.face_model import FaceModel
    from rtface.networks import load_networks

    from train import realdata

    model = FaceModel.load()
    nets = load_networks(args.weights, backend="cpu", face_model_hash=model.hash, threads=args.threads)
    s = nets.size
    result: dict = {"weights": nets.manifest.get("_dir"), "variant": nets.manifest.get("variant"), "size": s,
                    "training": nets.manifest.get("training", {}).get("status"),
                    "machine": machine()}

    faces = realdata.load(s, args.limit, progress=True)
    idx = faces.indices("heldout")
    if args.faces:
        idx = idx[:args.faces]
    t0 = time.perf_counter()
    ec, ef, npx = [], [], []
    for i in range(0, len(idx), args.chunk):
        sel = np.sort(idx[i:i + args.chunk])
        res = run_networks(nets, model, np.asarray(faces.crops[sel]))
        c, f, n = sfs_errors(res)
        ec.append(c)
        ef.append(f)
        npx.append(n)
    ec, ef, npx = (np.concatenate(v) if v else np.zeros(0) for v in (ec, ef, npx))
    ok = npx >= 50  # faces whose predicted face region is (almost) empty are not measured
    result["sfs"] = {"faces": int(ok.sum()), "faces_skipped": int((~ok).sum()), "split": "heldout (5 % by name hash)",
                     "coarse_rmse": float(ec[ok].mean()) if ok.any() else None,
                     "fine_rmse": float(ef[ok].mean()) if ok.any() else None,
                     "fine_better_frac": float((ef[ok] < ec[ok]).mean()) if ok.any() else None,
                     "seconds": round(time.perf_counter() - t0, 1)}

    img = data_path("faces-labeled/image_0010.png")
    pts = img.with_suffix(".pts")
    if img.is_file() and pts.is_file():
        result["landmarks"] = landmark_nme(nets, model, img, pts)
    else:
        result["landmarks"] = {"error": f"{img} / {pts} not found"}

    print(f"weights {result['weights']} (variant {result['variant']}, S={s}, training: {result['training']})")
    r = result["sfs"]
    print(f"\nheld-out real faces (UTKFace): {r['faces']} measured, {r['faces_skipped']} skipped, {r['seconds']} s")
    if r["coarse_rmse"] is not None:
        print(f"  {'SfS photometric RMSE':28s} {'coarse':>8s} {'fine':>8s}")
        print(f"  {'(intensity 0..1)':28s} {r['coarse_rmse']:8.4f} {r['fine_rmse']:8.4f}"
              f"   fine better on {r['fine_better_frac'] * 100:.0f} % of faces")
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
