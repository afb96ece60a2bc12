"""68-landmark accuracy on real faces: ``python -m benchmarks landmarks [--weights DIR] [--baseline DIR] [--json P]``.

Protocol (300-W "common" test subset, ``faces-300w/test``: LFPW test + Helen test, 554 faces never trained on):

* the pipeline's detector (YuNet, ``rtface.detect``; its result is cached with the fits by ``train.labeled``)
  gives five points, the face is cropped to S x S with the pipeline's framing (``rtface.crop``), the CoarseNet
  (ONNX Runtime, CPU) regresses the face model and pose, and the 68 landmarks are the model's landmark vertices
  with the jaw contour marched to the silhouette (``rtface.contour``), mapped back to the photo;
* single images as ``rtface.reconstruct`` does them (``rtface.pipeline.SINGLE_IMAGE_PASSES``): a first pass on
  the detector's crop (one view), then a second on the crop the first pass's landmarks give, with six views of
  each face (``rtface.views``: the crop, its mirror, two tighter crops and their mirrors; the answers averaged).
  Also reported: the network alone, one pass and one view on the detector's crop ("1 pass, 1 view");
* ``tracked``: one more pass with the crop made from those landmarks, as the tracker makes the next frame's crop
  in a video (what a stream reports from its second frame on; one view, as streams run by default);
* errors: mean point-to-point error over the 68 points, divided by sqrt(w*h) of the ground-truth landmarks' box
  ("box", the 3DDFA protocol) or by the outer-eye-corner distance (points 36 and 45, "inter-ocular"); failure
  rate = share of faces with an inter-ocular NME above 8 %. Faces the detector misses (0.4 %) are framed from the
  ground-truth five points and counted in ``detector_missed``.

Videos (``--no-videos`` skips them): on the two example clips, the share of frames in which the stream reports a
face, the landmark error against the detector's five points and the landmark jitter (:func:`evaluate_video`).

Baselines in the same table: the mean face at the template pose (what a net that learnt nothing beyond the
detector's framing gives), and ``--baseline`` weights (the previous release). Large poses: the test faces turned
to 30-60 and 60-90 degrees of yaw and re-rendered from their fits (``train.profiling``, as 300W-LP was made),
ground truth their re-rendered landmarks; the detector runs on the re-rendered photo.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import numpy as np

from .report import machine, write_json

FAIL_IOD = 0.08


def _nme(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    err = np.linalg.norm(pred - gt, axis=-1).mean(-1)
    wh = np.ptp(gt, axis=1)
    box = err / np.sqrt(np.maximum(wh[:, 0], 1e-6) * np.maximum(wh[:, 1], 1e-6))
    iod = err / np.maximum(np.linalg.norm(gt[:, 36] - gt[:, 45], axis=-1), 1e-6)
    return box, iod


def landmarks_from_params(contour, params: dict[str, np.ndarray]) -> np.ndarray:
    """(N, 68, 2) crop-pixel landmarks of predicted parameters, jaw marched (:meth:`Contour.project_landmarks`)."""
    return contour.project_landmarks(params["identity"], params["expression"], params["pose"])


def predict_crops(predict: Callable[[np.ndarray], dict], model, size: int, images: list[np.ndarray],
                  affines: list[np.ndarray], views: int = 1, chunk: int = 16) -> dict[str, np.ndarray]:
    """CoarseNet parameters (crop of each ``affines[i]``) of ``images[i]`` from ``views`` views (:mod:`rtface.views`:
    zoomed views are cropped from the image, as the pipeline crops them)."""
    from rtface.camera import warp_to_crop
    from rtface.networks import preprocess
    from rtface.views import expression_mirror, frame_to_view, run_views, zooms

    crops = {z: preprocess(np.stack([warp_to_crop(im, frame_to_view(a, z, size), size)
                                     for im, a in zip(images, affines)])) for z in zooms(views)}
    return run_views(predict, crops, views, size, expression_mirror(model.expression_names), chunk)


def evaluate_images(predict: Callable[[np.ndarray], dict], model, size: int, images: list[np.ndarray],
                    gts: np.ndarray, fives: np.ndarray, passes: int = 2, chunk: int = 16,
                    views: int | tuple[int, ...] = 1) -> dict[str, np.ndarray]:
    """Landmarks (image px) after each pass for every image; ``fives`` (N,5,2) first-pass framing points.

    ``views``: CoarseNet views per face (:mod:`rtface.views`), one count for every pass or one per pass."""
    from rtface.camera import apply_affine, invert_affine
    from rtface.contour import Contour
    from rtface.crop import crop_from_five, five_from_68

    contour = Contour(model)
    per_pass = (views,) * passes if isinstance(views, int) else tuple(views)
    n = len(images)
    cur = np.asarray(fives, np.float64)
    out = {}
    for p in range(passes):
        preds = np.zeros((n, 68, 2))
        for s in range(0, n, chunk):
            idx = range(s, min(n, s + chunk))
            aff = [crop_from_five(cur[i], size) for i in idx]
            params = predict_crops(predict, model, size, [images[i] for i in idx], aff, per_pass[p], chunk)
            lm = landmarks_from_params(contour, params)
            for j, (i, a) in enumerate(zip(idx, aff)):
                preds[i] = apply_affine(invert_affine(a), lm[j])
        out[f"pass{p + 1}"] = preds
        cur = five_from_68(preds)
    return out


def _summary(pred: np.ndarray, gt: np.ndarray, names: np.ndarray) -> dict:
    box, iod = _nme(pred, gt)
    r = {"faces": int(len(gt)), "box_nme": float(box.mean() * 100), "io_nme": float(iod.mean() * 100),
         "failure_rate": float((iod > FAIL_IOD).mean() * 100)}
    for sub in ("lfpw", "helen", "afw"):
        m = np.array([str(s).startswith(sub + "_") for s in names])
        if m.any():
            b, i = box[m], iod[m]
            r[sub] = {"faces": int(m.sum()), "box_nme": float(b.mean() * 100), "io_nme": float(i.mean() * 100),
                      "failure_rate": float((i > FAIL_IOD).mean() * 100)}
    return r


def _load_test(set_name: str, limit: int | None):
    from train import labeled

    lab = labeled.load(set_name, progress=False)
    idx = np.arange(len(lab))
    if limit:
        idx = idx[:: max(1, len(idx) // limit)][:limit]
    images = [lab.read_image(i) for i in idx]
    return lab, idx, images


def evaluate_set(predict: Callable, model, size: int, set_name: str = "300w-test", limit: int | None = None,
                 passes: int = 2, views: int | tuple[int, ...] = 1) -> dict:
    """NME summary of the last pass (and ``pass1`` when ``passes`` > 1) on a labelled set; ``views`` as
    :func:`evaluate_images`."""
    from rtface.crop import five_from_68

    lab, idx, images = _load_test(set_name, limit)
    gts = lab.points[idx].astype(np.float64)
    det = lab.det_five[idx].astype(np.float64)
    missed = ~np.isfinite(det).all(axis=(1, 2))
    fives = np.where(missed[:, None, None], five_from_68(gts), det)
    preds = evaluate_images(predict, model, size, images, gts, fives, passes, views=views)
    r = _summary(preds[f"pass{passes}"], gts, lab.names[idx])
    if passes > 1:
        r["pass1"] = _summary(preds["pass1"], gts, lab.names[idx])
    r["detector_missed"] = int(missed.sum())
    return r


def evaluate_profiled(predict: Callable, model, size: int, passes: int = 2, limit: int | None = None,
                      views: int | tuple[int, ...] = 1) -> dict:
    """NME by yaw bucket on the profiled 300-W test faces (module docstring), after the last pass."""
    import cv2

    from rtface.crop import five_from_68
    from train.profiling import TEST_YAW_BUCKETS, load_profiled

    d = load_profiled("300w-test", copies=len(TEST_YAW_BUCKETS), seed=1, yaw_ranges=TEST_YAW_BUCKETS)
    n = len(d["source"])
    idx = np.arange(n) if not limit else np.arange(n)[:: max(1, n // limit)][:limit]
    images = [cv2.imdecode(d["jpeg"][d["offsets"][i]:d["offsets"][i + 1]], cv2.IMREAD_COLOR) for i in idx]
    gts = d["landmarks"][idx].astype(np.float64)
    det = d["det_five"][idx].astype(np.float64)
    missed = ~np.isfinite(det).all(axis=(1, 2))
    fives = np.where(missed[:, None, None], five_from_68(gts), det)
    preds = evaluate_images(predict, model, size, images, gts, fives, passes, views=views)[f"pass{passes}"]
    box, iod = _nme(preds, gts)
    yaw = np.rad2deg(np.abs(d["pose"][idx, 1]))
    out = {}
    for lo, hi in TEST_YAW_BUCKETS:
        m = (yaw >= lo) & (yaw <= hi)
        out[f"{lo:g}-{hi:g}"] = {"faces": int(m.sum()), "box_nme": float(box[m].mean() * 100),
                                 "detector_missed_%": float(missed[m].mean() * 100)}
    return out


VIDEOS = ("video/hamilton_640x360.mp4", "video/dafoe_1280x720.mp4")


def evaluate_video(path: str, weights: str | None = None) -> dict:
    """Tracking on a video (``rtface.stream``, CPU, defaults): frames with a face, landmark error against the
    detector and landmark jitter.

    * ``frames_with_face_%``: frames where the stream reports at least one face; ``detector_frames_%``: frames
      where the detector alone (run on every frame, for this measurement only) finds one.
    * ``five_point_nme_%``: the stream's landmarks, reduced to the five template points, against the detector's
      five points on the same frame (matched by box overlap), over sqrt(w*h) of the landmarks' box: the only
      reference the clips have; the detector's own points are not exact either (a few %).
    * ``off_face_%``: share of the stream's faces, on frames where the detector finds a face, whose landmark box
      overlaps none of the detector's boxes (IoU <= 0.3): fits that left the face (the 5-point error above
      cannot include them, having no detection to compare with).
    * ``jitter_%``: frame-to-frame motion of the 68 landmarks after removing the face's mean motion (a rigid
      translation), RMS over points, over sqrt(w*h) of the box, averaged over consecutive frames of one track;
      shot cuts (box overlap < 0.3) are left out.
    """
    from rtface.crop import five_from_68
    from rtface.detect import Detector, box_iou
    from rtface.pipeline import stream

    det = Detector()
    frames = with_face = with_det = 0
    errs, jit = [], []
    matched = off = 0
    prev: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for fr in stream(path, backend="cpu", weights=weights):
        frames += 1
        d = det(fr.image)
        with_det += len(d) > 0
        with_face += len(fr.faces) > 0
        cur = {}
        for f in fr.faces:
            lm = np.asarray(f.landmarks, np.float64)
            size = np.sqrt(max(np.ptp(lm[:, 0]), 1e-6) * max(np.ptp(lm[:, 1]), 1e-6))
            box = np.array([*lm.min(0), *lm.max(0)])
            cur[f.track_id] = (lm, box)
            if len(d):
                iou = box_iou(box[None], d.boxes)[0]
                j = int(np.argmax(iou))
                if iou[j] > 0.3:
                    errs.append(np.linalg.norm(five_from_68(lm) - d.points[j], axis=1).mean() / size)
                    matched += 1
                else:
                    off += 1
            if f.track_id in prev:
                plm, pbox = prev[f.track_id]
                if box_iou(box[None], pbox[None])[0, 0] > 0.3:
                    motion = lm - plm
                    jit.append(np.sqrt(((motion - motion.mean(0)) ** 2).sum(1).mean()) / size)
        prev = cur
    return {"frames": frames, "frames_with_face_%": 100.0 * with_face / max(frames, 1),
            "detector_frames_%": 100.0 * with_det / max(frames, 1),
            "five_point_nme_%": float(np.mean(errs) * 100) if errs else float("nan"),
            "off_face_%": 100.0 * off / max(matched + off, 1),
            "jitter_%": float(np.mean(jit) * 100) if jit else float("nan")}


def onnx_predictor(weights: str | None):
    from rtface.networks import load_networks

    nets = load_networks(weights, backend="cpu")
    return (lambda x: nets.coarse.run(x)), nets.size


def template_predictor(size: int):
    from rtface.crop import frontal_pose

    def predict(x: np.ndarray) -> dict:
        n = len(x)
        return {"identity": np.zeros((n, 100), np.float32), "expression": np.zeros((n, 53), np.float32),
                "pose": np.tile(frontal_pose(size), (n, 1)).astype(np.float32)}

    return predict


def _row(name: str, r: dict) -> str:
    sub = lambda k: f"{r[k]['box_nme']:.2f} / {r[k]['io_nme']:.2f}" if k in r else "-"  # noqa: E731
    return (f"| {name} | {r['box_nme']:.2f} | {r['io_nme']:.2f} | {r['failure_rate']:.1f} | {sub('lfpw')} | "
            f"{sub('helen')} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks landmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=None, help="weights folder (default: the shipped weights)")
    p.add_argument("--baseline", default=None, help="weights folder of a previous release, for comparison")
    p.add_argument("--limit", type=int, default=None, help="only this many test faces (evenly spread)")
    p.add_argument("--no-profiled", action="store_true", help="skip the large-pose buckets")
    p.add_argument("--no-videos", action="store_true", help="skip the two example videos")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    from rtface.face_model import FaceModel

    model = FaceModel.load()
    from rtface.views import MAX_VIEWS

    predict, size = onnx_predictor(a.weights)
    single = (1, MAX_VIEWS)  # views of the two passes of rtface.reconstruct
    rows = {"this release (single image: rtface.reconstruct, 2 passes, 6 views)":
            evaluate_set(predict, model, size, limit=a.limit, views=single)}
    rows["this release (single image: rtface.reconstruct, 2 passes, 6 views)"].pop("pass1")
    rows["this release (tracked: 2nd pass, 1 view, as streams)"] = evaluate_set(predict, model, size, limit=a.limit)
    tracked = rows["this release (tracked: 2nd pass, 1 view, as streams)"]
    rows["this release (network alone: 1 pass, 1 view)"] = tracked.pop("pass1")
    rows["mean face at the template (detector framing)"] = evaluate_set(template_predictor(size), model, size,
                                                                        limit=a.limit, passes=1)
    if a.baseline:
        bp, bs = onnx_predictor(a.baseline)
        rows["baseline (single image, 1 view)"] = evaluate_set(bp, model, bs, limit=a.limit, passes=1)
    print(f"machine: {machine()}")
    print("\n300-W test (common subset), 68-point NME in % (box: sqrt(w*h) of the GT box; IO: outer eye corners)\n")
    print("| weights | box NME | IO NME | failures (IO > 8 %) | LFPW box / IO | Helen box / IO |")
    print("| --- | --- | --- | --- | --- | --- |")
    for k, r in rows.items():
        print(_row(k, r))
    result = {"machine": machine(), "test": rows}
    if not a.no_profiled:
        result["profiled"] = {
            "this release (single image: 2 passes, 6 views)": evaluate_profiled(predict, model, size, limit=a.limit,
                                                                                views=single),
            "this release (tracked, 1 view)": evaluate_profiled(predict, model, size, limit=a.limit)}
        if a.baseline:
            result["profiled"]["baseline (tracked, 1 view)"] = evaluate_profiled(bp, model, bs, limit=a.limit)
        print("\nProfiled 300-W test faces (re-rendered at a new yaw), box NME %\n")
        for k, r in result["profiled"].items():
            print(f"- {k}: " + ", ".join(f"{b} deg: {v['box_nme']:.2f} ({v['faces']} faces, detector missed "
                                         f"{v['detector_missed_%']:.0f} %)" for b, v in r.items()))
    if not a.no_videos:
        from rtface.assets import data_path

        print("\nVideos (rtface.stream, CPU): tracking, landmark error against the detector, jitter\n")
        print("| video | weights | frames | with a face % (detector %) | 5-point NME vs detector % | fits off the "
              "face % | jitter % |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        result["videos"] = {}
        for rel in VIDEOS:
            path = data_path(rel)
            if not path.is_file():
                print(f"| {rel} | missing | | | | |")
                continue
            for label, w in (("this release", a.weights), ("baseline", a.baseline)):
                if label == "baseline" and not a.baseline:
                    continue
                v = evaluate_video(str(path), w)
                result["videos"][f"{rel} ({label})"] = v
                print(f"| {Path(rel).name} | {label} | {v['frames']} | {v['frames_with_face_%']:.1f} "
                      f"({v['detector_frames_%']:.1f}) | {v['five_point_nme_%']:.2f} | {v['off_face_%']:.1f} | "
                      f"{v['jitter_%']:.2f} |")
    if a.json:
        write_json(Path(a.json), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
