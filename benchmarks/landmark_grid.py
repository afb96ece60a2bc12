"""The README's real-face picture: 300-W test faces at several poses and expressions with the fit overlaid.

``python -m benchmarks.landmark_grid [--weights DIR] --out docs/landmarks_300w.png [--tile 200]``

Five rows of four tiles: near-frontal faces, turned faces (15-45 deg of yaw by their fits), open mouths and
smiles, test faces profiled to 60-90 deg (re-rendered, ``train.profiling``), and real profiles. Each tile of the
first four rows is the face crop the CoarseNet sees (two passes and six views, as ``rtface.reconstruct`` does)
with the coarse mesh rendered and shaded over it, the predicted 68 landmarks (green) and the hand-annotated ones
(red; the re-rendered ones for profiled faces), and the face's box-NME in %. Faces are chosen by their fits only,
never by the error. The last row: the turned heads of the hamilton clip that ``rtface.reconstruct`` finds at 50
degrees of yaw or more (four, evenly spread over them; no labels exist): the shaded mesh, ``face.landmarks3d``
(green, 3D-consistent) and ``face.landmarks`` (red, 300-W), and the estimated yaw.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def _pick(lab, rng_seed: int = 0) -> dict[str, np.ndarray]:
    yaw = np.rad2deg(np.abs(lab.pose[:, 1]))
    names = list(_expression_names())
    e = lab.expression
    mouth = e[:, names.index("jawOpen")] + 0.5 * (e[:, names.index("mouthSmile_L")] + e[:, names.index("mouthSmile_R")])
    rng = np.random.default_rng(rng_seed)
    frontal = np.flatnonzero((yaw < 8) & (mouth < 0.3))
    turned = np.flatnonzero((yaw > 15) & (yaw < 45))
    expressive = np.flatnonzero(mouth > np.percentile(mouth, 90))
    return {"frontal": rng.choice(frontal, 4, replace=False), "turned": rng.choice(turned, 4, replace=False),
            "expression": rng.choice(expressive, 4, replace=False)}


def _expression_names():
    from rtface.face_model import FaceModel

    return FaceModel.load().expression_names


def tile(image: np.ndarray, gt: np.ndarray, five: np.ndarray, predict, model, contour, size: int, out_px: int):
    import cv2

    from rtface.camera import apply_affine, invert_affine, warp_to_crop
    from rtface.crop import crop_from_five, five_from_68
    from rtface.render.fit import render_fit
    from rtface.views import MAX_VIEWS
    from rtface.viz import overlay, shade_depth

    from .landmarks import _nme, landmarks_from_params, predict_crops

    a = crop_from_five(five, size)  # as rtface.reconstruct: one view on the detector's crop, then six views on
    first = landmarks_from_params(contour, predict_crops(predict, model, size, [image], [a], 1))[0]
    a = crop_from_five(five_from_68(apply_affine(invert_affine(a), first)), size)  # the crop it gives
    crop = warp_to_crop(image, a, size)
    params = predict_crops(predict, model, size, [image], [a], MAX_VIEWS)
    lm = landmarks_from_params(contour, params)[0]
    _, r = render_fit(model, params["identity"][:1], params["expression"][:1], params["pose"][:1], size)
    k = out_px / size
    big = cv2.resize(crop, (out_px, out_px), interpolation=cv2.INTER_LINEAR)
    shaded = cv2.resize(shade_depth(r.depth[0], r.mask[0]), (out_px, out_px), interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(r.mask[0].astype(np.uint8), (out_px, out_px), interpolation=cv2.INTER_NEAREST) > 0
    img = overlay(big, shaded, mask, alpha=0.45)
    gt_c = apply_affine(a, gt) * k
    for x, y in gt_c:
        cv2.circle(img, (int(x), int(y)), 2, (0, 0, 255), -1, cv2.LINE_AA)
    for x, y in lm * k:
        cv2.circle(img, (int(x), int(y)), 2, (0, 255, 0), -1, cv2.LINE_AA)
    pred_img = apply_affine(invert_affine(a), lm)
    box, _ = _nme(pred_img[None], gt[None])
    cv2.putText(img, f"{box[0] * 100:.1f}%", (4, out_px - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                cv2.LINE_AA)
    return img


def profile_tile(image: np.ndarray, face, triangles: np.ndarray, out_px: int) -> np.ndarray:
    """A square around one face of ``rtface.reconstruct`` (1.6x its landmark box) with its mesh shaded over it,
    ``landmarks3d`` (green), ``landmarks`` (red) and its yaw."""
    import cv2

    from rtface.render import rasterize
    from rtface.viz import overlay, shade_depth

    from .landmarks import face_square

    a = face_square(face.landmarks, out_px)
    k, t = a[0, 0], a[:, 2]
    img = cv2.warpAffine(image, a, (out_px, out_px), flags=cv2.INTER_LINEAR)
    v = np.asarray(face.vertices, np.float64).copy()
    v[:, :2] = v[:, :2] * k + t
    v[:, 2] *= k
    r = rasterize(v.astype(np.float32), triangles, out_px, out_px, backend="cpu")
    img = overlay(img, shade_depth(r.depth, r.mask), r.mask, alpha=0.3)
    for pts, colour in ((face.landmarks, (0, 0, 255)), (np.asarray(face.landmarks3d)[:, :2], (0, 255, 0))):
        for x, y in np.asarray(pts, np.float64) * k + t:
            cv2.circle(img, (int(x), int(y)), 2, colour, -1, cv2.LINE_AA)
    cv2.putText(img, f"yaw {np.rad2deg(face.pose.angles[1]):+.0f}", (4, out_px - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (255, 255, 255), 1, cv2.LINE_AA)
    return img


def real_profiles(weights: str | None, out_px: int, count: int = 4, min_yaw_deg: float = 50.0) -> list[np.ndarray]:
    """Tiles (:func:`profile_tile`) of ``count`` hamilton faces at ``min_yaw_deg`` of estimated yaw or more."""
    from benchmarks.largepose import HAMILTON_PROFILES, hamilton_faces
    from rtface.face_model import FaceModel

    triangles = FaceModel.load().triangles
    found = [(index, img, f) for index, img, faces in hamilton_faces(weights) for f in faces
             if abs(np.rad2deg(f.pose.angles[1])) >= min_yaw_deg]
    # as many from each shot of turned heads (HAMILTON_PROFILES), evenly spread within it
    shots = [[x for x in found if lo <= x[0] <= hi] for lo, hi in HAMILTON_PROFILES]
    shots = [sh for sh in shots if sh]
    tiles = []
    for k, sh in enumerate(shots):
        n = count // len(shots) + (k < count % len(shots))
        for i in np.linspace(0, len(sh) - 1, min(n, len(sh))).round().astype(int):
            tiles.append(profile_tile(sh[i][1], sh[i][2], triangles, out_px))
    return tiles


def main(argv: list[str] | None = None) -> int:
    import cv2

    from rtface.contour import Contour
    from rtface.crop import five_from_68
    from rtface.face_model import FaceModel
    from train import labeled
    from train.profiling import TEST_YAW_BUCKETS, load_profiled

    from .landmarks import onnx_predictor

    ap = argparse.ArgumentParser(prog="python -m benchmarks.landmark_grid", description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default=None)
    ap.add_argument("--out", default="docs/landmarks_300w.png")
    ap.add_argument("--tile", type=int, default=200)
    a = ap.parse_args(argv)
    model = FaceModel.load()
    contour = Contour(model)
    predict, size = onnx_predictor(a.weights)
    lab = labeled.load("300w-test", progress=False)
    rows = []
    for key, idx in _pick(lab).items():
        tiles = []
        for i in idx:
            five = lab.det_five[i] if np.isfinite(lab.det_five[i]).all() else five_from_68(lab.points[i])
            tiles.append(tile(lab.read_image(i), lab.points[i].astype(np.float64), five.astype(np.float64), predict,
                              model, contour, size, a.tile))
        rows.append(np.hstack(tiles))
    prof = load_profiled("300w-test", copies=len(TEST_YAW_BUCKETS), seed=1, yaw_ranges=TEST_YAW_BUCKETS)
    yaw = np.rad2deg(np.abs(prof["pose"][:, 1]))
    cand = np.flatnonzero((yaw > 60) & np.isfinite(prof["det_five"]).all(axis=(1, 2)))
    tiles = []
    for i in np.random.default_rng(1).choice(cand, 4, replace=False):
        img = cv2.imdecode(prof["jpeg"][prof["offsets"][i]:prof["offsets"][i + 1]], cv2.IMREAD_COLOR)
        tiles.append(tile(img, prof["landmarks"][i].astype(np.float64), prof["det_five"][i].astype(np.float64),
                          predict, model, contour, size, a.tile))
    rows.append(np.hstack(tiles))
    real = real_profiles(a.weights, a.tile)
    if real:
        rows.append(np.hstack(real + [np.zeros_like(real[0])] * (4 - len(real))))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.vstack(rows))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
