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
detector's framing gives), and ``--baseline`` weights (the previous release, e.g. extracted with
``git archive <release commit> rtface/weights | tar -x -C /tmp/prev``).

**By yaw, both landmark conventions** (``--sets``, default all four): box-NME per yaw bucket (0-30, 30-60,
60-90 degrees of |yaw|, and "balanced", the mean of the three) of ``face.landmarks`` (300-W convention: the jaw
marched to the silhouette) and ``face.landmarks3d`` (3D-consistent: the face model's fixed jaw vertices, seen or
hidden), each against labels in either convention (:data:`CONVENTIONS`), with the previous release beside:

* ``300w-test``: the test faces, yaw of the face-model fit to the hand labels. The hand labels are in the 300-W
  convention, so ``landmarks3d`` against them is only indicative; the 3D-consistent labels keep the hand-labelled
  inner points and take the jaw from the fit (as AFLW2000-3D's labels come from a 3DMM fit);
* ``profiled``: the test faces under 30 degrees, and their copies turned to 30-60 and 60-90 degrees and
  re-rendered from their fits (``train.profiling``, as 300W-LP was made): labels exact in both conventions (the
  re-rendered mesh's marched and fixed landmark vertices); the detector runs on the re-rendered photo;
* ``profiled-head`` (not in the default ``--sets``): the same, the whole head turned (``train.profiling``'s
  ``scene="head"``: hair, ear and neck turn with the face);
* ``largepose``: real photographs at large annotated yaw (:mod:`benchmarks.largepose`: 300-W test held out,
  300-W train and YouTube Faces frames trained on, reported by source as well);
* ``hamilton``: the turned heads of the hamilton clip: faces found, the five template points against the
  detector's by estimated yaw, and ``landmarks3d`` against the hand labels of 11 real profiles among them
  (:mod:`benchmarks.profile_labels`); ``--sheet`` draws every face with both conventions. With ``--baseline``,
  for both weights.

``--large-yaw-pass`` adds two candidates for an extra CoarseNet pass at large yaw (:func:`final_landmarks`).

**Against MediaPipe** (``--mediapipe-refs DIR``, files of :mod:`benchmarks.mediapipe_ref`): the video part also
compares the stream's ``landmarks3d`` and ``landmarks`` with MediaPipe Face Mesh's 68 points on the same frames
(:func:`evaluate_video`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from functools import partial
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

    ``views``: CoarseNet views per face (:mod:`rtface.views`), one count for every pass or one per pass.
    Returns ``pass<k>`` (N, 68, 2) ``face.landmarks`` (jaw marched, 300-W convention), ``pass<k>_3d`` (N, 68, 2)
    the fixed landmark vertices (``face.landmarks3d``'s x, y: 3D-consistent convention) and ``pass<k>_yaw`` (N,)
    the estimated yaw in degrees, for every pass k = 1..passes."""
    from rtface.camera import apply_affine, invert_affine
    from rtface.contour import Contour
    from rtface.crop import crop_from_five, five_from_68

    contour = Contour(model)
    per_pass = (views,) * passes if isinstance(views, int) else tuple(views)
    n = len(images)
    cur = np.asarray(fives, np.float64)
    out = {}
    for p in range(passes):
        preds, preds3d, yaw = np.zeros((n, 68, 2)), np.zeros((n, 68, 2)), np.zeros(n)
        for s in range(0, n, chunk):
            idx = range(s, min(n, s + chunk))
            aff = [crop_from_five(cur[i], size) for i in idx]
            params = predict_crops(predict, model, size, [images[i] for i in idx], aff, per_pass[p], chunk)
            lm = landmarks_from_params(contour, params)
            lm3d = contour.project_landmarks(params["identity"], params["expression"], params["pose"], fixed=True)
            yaw[s:s + len(idx)] = np.rad2deg(np.asarray(params["pose"], np.float64)[:, 1])
            for j, (i, a) in enumerate(zip(idx, aff)):
                back = invert_affine(a)
                preds[i] = apply_affine(back, lm[j])
                preds3d[i] = apply_affine(back, lm3d[j])
        out[f"pass{p + 1}"] = preds
        out[f"pass{p + 1}_3d"] = preds3d
        out[f"pass{p + 1}_yaw"] = yaw
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


#: a yaw bucket with fewer faces than this gets no "balanced" figure (a mean over so few faces says little)
MIN_BUCKET = 10
#: |yaw| (degrees) above which a face gets the large-yaw extra CoarseNet pass (``--large-yaw-pass``)
LARGE_YAW_DEG = 45.0
#: output / labels pairs of the by-yaw tables: (prediction key, label attribute of :class:`PoseSet`)
CONVENTIONS = {
    "landmarks / 300-W labels": ("lm", "labels"),
    "landmarks3d / 3D-consistent labels": ("lm3d", "labels3d"),
    "landmarks / 3D-consistent labels": ("lm", "labels3d"),
    "landmarks3d / 300-W labels (indicative)": ("lm3d", "labels"),
}


@dataclass
class PoseSet:
    """Faces for the by-yaw tables (:func:`test_set`, :func:`profiled_set`, :func:`largepose_set`).

    ``labels`` are in the 300-W convention (jaw on the silhouette), ``labels3d`` in the 3D-consistent one (jaw
    where the 3D jaw is); ``yaw`` degrees; ``fives`` the first pass's framing (the detector's five points, or
    the labels' where it ``missed`` the face); ``groups`` subsets reported on their own; ``note`` says where the
    labels come from."""

    name: str
    images: list
    labels: np.ndarray
    labels3d: np.ndarray
    yaw: np.ndarray
    fives: np.ndarray
    missed: np.ndarray
    note: str
    groups: dict = field(default_factory=dict)


def _spread(n: int, limit: int | None) -> np.ndarray:
    return np.arange(n) if not limit else np.arange(n)[:: max(1, n // limit)][:limit]


def _framing(det: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from rtface.crop import five_from_68

    det = np.asarray(det, np.float64)
    missed = ~np.isfinite(det).all(axis=(1, 2))
    return np.where(missed[:, None, None], five_from_68(labels), det), missed


def test_set(model, limit: int | None = None) -> PoseSet:
    """300-W test (common subset) with its yaw from the face-model fit to the annotation."""
    from benchmarks.largepose import labels_3d

    lab, idx, images = _load_test("300w-test", limit)
    labels = lab.points[idx].astype(np.float64)
    fives, missed = _framing(lab.det_five[idx], labels)
    return PoseSet("300-W test (common subset)", images, labels,
                   labels_3d(model, lab.identity[idx], lab.expression[idx], lab.pose[idx], labels),
                   np.rad2deg(lab.pose[idx, 1].astype(np.float64)), fives, missed,
                   "held out; hand labels in the 300-W convention; 3D-consistent labels: jaw from the fit "
                   "(indicative); yaw of the fit")


#: 300-W test faces under 30 degrees in the profiled set's 0-30 bucket (evenly spread; all of them are in the
#: ``300w-test`` table already)
PROFILED_FRONTAL = 200


def profiled_set(model, limit: int | None = None, scene: str = "face") -> PoseSet:
    """:data:`PROFILED_FRONTAL` 300-W test faces under 30 degrees (the 0-30 bucket) and the profiled copies of all
    test faces turned to 30-60 and 60-90 degrees (``train.profiling``, the face or with ``scene="head"`` the whole
    head turned): labels of the copies exact in both conventions (the re-rendered fit's marched and fixed landmark
    vertices)."""
    import cv2

    from benchmarks.largepose import labels_3d
    from rtface.contour import Contour
    from train import labeled
    from train.profiling import TEST_YAW_BUCKETS, load_profiled

    lab = labeled.load("300w-test", progress=False)
    d = load_profiled(lab, copies=len(TEST_YAW_BUCKETS), seed=1, yaw_ranges=TEST_YAW_BUCKETS, scene=scene)
    front = np.flatnonzero(np.abs(np.rad2deg(lab.pose[:, 1])) < 30.0)
    front = front[_spread(len(front), min(limit // 3, PROFILED_FRONTAL) if limit else PROFILED_FRONTAL)]
    copies = _spread(len(d["source"]), 2 * limit // 3 if limit else None)
    src = d["source"][copies]
    images = [lab.read_image(i) for i in front]
    images += [cv2.imdecode(d["jpeg"][d["offsets"][i]:d["offsets"][i + 1]], cv2.IMREAD_COLOR) for i in copies]
    labels = np.concatenate([lab.points[front], d["landmarks"][copies]]).astype(np.float64)
    fixed = Contour(model).project_landmarks(lab.identity[src], lab.expression[src], d["pose"][copies], fixed=True)
    labels3d = np.concatenate([labels_3d(model, lab.identity[front], lab.expression[front], lab.pose[front],
                                         lab.points[front]), fixed])
    yaw = np.rad2deg(np.concatenate([lab.pose[front, 1], d["pose"][copies, 1]]).astype(np.float64))
    fives, missed = _framing(np.concatenate([lab.det_five[front], d["det_five"][copies]]), labels)
    turned = "the whole head turned" if scene == "head" else "the face turned"
    return PoseSet(f"profiled 300-W test ({turned})", images, labels, labels3d, yaw, fives, missed,
                   f"0-30: {len(front)} of the 300-W test faces (hand labels, as above); 30-90: all of them turned and "
                   f"re-rendered from their fits (train.profiling, as 300W-LP, {turned}), labels exact in both "
                   "conventions")


def largepose_set(model, limit: int | None = None) -> PoseSet:
    """The real large-pose set of :mod:`benchmarks.largepose`, grouped by source (held out / trained on)."""
    from benchmarks import largepose

    lp = largepose.load(progress=False)
    idx = _spread(len(lp), limit)
    labels = lp.points[idx].astype(np.float64)
    fives, missed = _framing(lp.det_five[idx], labels)
    groups = {f"{s} ({'held out' if largepose.SOURCES[s][1] else 'trained on'})": lp.sources[idx] == s
              for s in dict.fromkeys(lp.sources[idx])}
    return PoseSet("large-pose real photographs (benchmarks.largepose)", [lp.read_image(i) for i in idx], labels,
                   largepose.labels_3d(model, lp.identity[idx], lp.expression[idx], lp.pose[idx], labels),
                   lp.yaw[idx].astype(np.float64), fives, missed,
                   "hand labels in the 300-W convention; 3D-consistent labels: jaw from the fit; yaw of the fit; "
                   "300w-train and ytf were trained on", groups)


POSE_SETS = {"300w-test": test_set, "profiled": profiled_set, "profiled-head": partial(profiled_set, scene="head"),
             "largepose": largepose_set}


def final_landmarks(predict: Callable, model, size: int, ps: PoseSet, passes: int = 2,
                    views: int | tuple[int, ...] = 1, large_yaw_pass: str | None = None) -> dict[str, np.ndarray]:
    """``lm`` (N, 68, 2) ``face.landmarks``, ``lm3d`` the fixed landmark vertices and ``yaw`` (N,) degrees after the
    last pass; ``gated`` (N,) the faces that got the large-yaw pass.

    ``large_yaw_pass`` (with the two passes of ``rtface.reconstruct``): ``"recrop"``: faces whose first pass finds
    |yaw| > :data:`LARGE_YAW_DEG` get one more 1-view pass on the re-crop before the final pass (views 1, 1, 6);
    ``"final"``: faces whose final pass finds it get a third pass on the crop that pass gives (views 1, 6, 6)."""
    from rtface.crop import five_from_68
    from rtface.views import MAX_VIEWS

    r = evaluate_images(predict, model, size, ps.images, ps.labels, ps.fives, passes, views=views)
    out = {"lm": r[f"pass{passes}"], "lm3d": r[f"pass{passes}_3d"], "yaw": r[f"pass{passes}_yaw"],
           "gated": np.zeros(len(ps.images), bool)}
    if large_yaw_pass is None:
        return out
    if passes != 2 or large_yaw_pass not in ("recrop", "final"):
        raise ValueError(f"large_yaw_pass must be 'recrop' or 'final' (after 2 passes), got {large_yaw_pass!r} "
                         f"with {passes} passes")
    after, more = ("pass1", (1, MAX_VIEWS)) if large_yaw_pass == "recrop" else ("pass2", (MAX_VIEWS,))
    gated = np.abs(r[f"{after}_yaw"]) > LARGE_YAW_DEG
    idx = np.flatnonzero(gated)
    if len(idx):
        e = evaluate_images(predict, model, size, [ps.images[i] for i in idx], ps.labels[idx],
                            five_from_68(r[after][idx]), len(more), views=more)
        last = f"pass{len(more)}"
        for k, key in (("lm", last), ("lm3d", f"{last}_3d"), ("yaw", f"{last}_yaw")):
            out[k] = out[k].copy()
            out[k][idx] = e[key]
    out["gated"] = gated
    return out


def by_yaw(pred: np.ndarray, labels: np.ndarray, yaw: np.ndarray, missed: np.ndarray) -> dict:
    """Box-NME (%) per yaw bucket (:data:`benchmarks.largepose.YAW_BUCKETS`, by |yaw|), ``balanced`` (the mean of
    the bucket means; None when a bucket holds fewer than :data:`MIN_BUCKET` faces) and ``all``."""
    from benchmarks.largepose import YAW_BUCKETS, yaw_bucket

    box, _ = _nme(pred, labels)
    b = yaw_bucket(yaw)
    out: dict = {}
    for k, (lo, hi) in enumerate(YAW_BUCKETS):
        m = b == k
        out[f"{lo:g}-{hi:g}"] = {"faces": int(m.sum()), "box_nme": float(box[m].mean() * 100) if m.any() else None,
                                 "missed": int(missed[m].sum())}
    full = all(out[f"{lo:g}-{hi:g}"]["faces"] >= MIN_BUCKET for lo, hi in YAW_BUCKETS)
    out["balanced"] = float(np.mean([out[f"{lo:g}-{hi:g}"]["box_nme"] for lo, hi in YAW_BUCKETS])) if full else None
    out["all"] = {"faces": int(len(box)), "box_nme": float(box.mean() * 100) if len(box) else None,
                  "missed": int(missed.sum())}
    return out


def convention_summary(res: dict[str, np.ndarray], ps: PoseSet, mask: np.ndarray | None = None) -> dict:
    """:func:`by_yaw` of every output / labels pair of :data:`CONVENTIONS` (faces ``mask``, default all)."""
    m = np.ones(len(ps.yaw), bool) if mask is None else np.asarray(mask, bool)
    return {name: by_yaw(res[out][m], getattr(ps, lab)[m], ps.yaw[m], ps.missed[m])
            for name, (out, lab) in CONVENTIONS.items()}


def _cell(v: dict | float | None) -> str:
    if isinstance(v, dict):
        v = v["box_nme"]
    return "-" if v is None else f"{v:.2f}"


def print_pose_table(title: str, note: str, rows: dict[str, dict]) -> None:
    """One markdown table: protocol x output / labels (:func:`convention_summary` per row), box-NME % by yaw
    bucket, with the faces of each bucket (and how many of them the detector missed)."""
    from benchmarks.largepose import YAW_BUCKETS

    keys = [f"{lo:g}-{hi:g}" for lo, hi in YAW_BUCKETS]
    print(f"\n{title} ({note})\n")
    print(f"| weights / protocol | output / labels | {' | '.join(k + ' deg' for k in keys)} | balanced | all | "
          f"faces {' / '.join(keys)} (detector missed) |")
    print("|---" * (len(keys) + 5) + "|")
    for label, conv in rows.items():
        if "gated faces" in conv:
            label = f"{label} ({conv['gated faces']} faces got it)"
        for name, r in conv.items():
            if name not in CONVENTIONS:
                continue
            faces = " / ".join(f"{r[k]['faces']}" for k in keys)
            missed = " / ".join(f"{r[k]['missed']}" for k in keys)
            print(f"| {label} | {name} | {' | '.join(_cell(r[k]) for k in keys)} | {_cell(r['balanced'])} | "
                  f"{_cell(r['all'])} | {faces} ({missed}) |")


def evaluate_hamilton(weights: str | None = None, sheet: str | None = None) -> dict:
    """The turned heads of hamilton_640x360.mp4 (:data:`benchmarks.largepose.HAMILTON_PROFILES`; no landmark labels):
    each frame as ``rtface.reconstruct`` does a single image, beside the detector run on its own.

    By the yaw the pipeline estimates: faces, and the error of their landmarks' five template points against
    the detector's five points (over sqrt(w*h) of the landmarks' box; matched by box overlap > 0.3; the five
    points are the same in both conventions, so this is one figure for both). ``detector_faces`` /
    ``faces``: faces the detector alone finds / the pipeline reports, over all frames. ``labelled``: the error
    of ``landmarks3d`` against the hand labels of 11 of these faces (:mod:`benchmarks.profile_labels`; the
    labelled points lie on the profile line, where both conventions agree). ``sheet``: a PNG of every face with
    ``landmarks`` (red) and ``landmarks3d`` (green), for looking at."""
    from benchmarks import profile_labels
    from benchmarks.largepose import YAW_BUCKETS, hamilton_faces, yaw_bucket
    from rtface.crop import five_from_68
    from rtface.detect import Detector, box_iou

    det = Detector()
    frames = hamilton_faces(weights)
    yaws, errs, tiles = [], [], []
    predicted: dict[int, list[np.ndarray]] = {}
    n_det = 0
    for index, img, faces in frames:
        d = det(img)
        n_det += len(d)
        predicted[index] = [f.landmarks3d for f in faces]
        for f in faces:
            lm = np.asarray(f.landmarks, np.float64)
            size = np.sqrt(max(np.ptp(lm[:, 0]), 1e-6) * max(np.ptp(lm[:, 1]), 1e-6))
            box = np.array([*lm.min(0), *lm.max(0)])
            err = np.nan
            if len(d):
                iou = box_iou(box[None], d.boxes)[0]
                j = int(np.argmax(iou))
                if iou[j] > 0.3:
                    err = np.linalg.norm(five_from_68(lm) - d.points[j], axis=1).mean() / size
            yaws.append(float(np.rad2deg(f.pose.angles[1])))
            errs.append(err)
            if sheet:
                tiles.append(_face_tile(img, f, index))
    yaws_a, errs_a = np.array(yaws), np.array(errs)
    b = yaw_bucket(yaws_a)
    out: dict = {"frames": len(frames), "faces": len(yaws), "detector_faces": int(n_det),
                 "labelled": profile_labels.score(profile_labels.load(), predicted)}
    for k, (lo, hi) in enumerate(YAW_BUCKETS):
        m = (b == k) & np.isfinite(errs_a)
        out[f"{lo:g}-{hi:g}"] = {"faces": int((b == k).sum()), "matched": int(m.sum()),
                                 "five_point_nme": float(errs_a[m].mean() * 100) if m.any() else None}
    if sheet and tiles:
        import cv2

        cols = 8
        tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % cols)
        grid = np.vstack([np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)])
        cv2.imwrite(str(sheet), grid)
        out["sheet"] = str(sheet)
    return out


def face_square(landmarks: np.ndarray, side: int) -> np.ndarray:
    """The 2x3 frame -> tile similarity of a ``side`` px square around a face, 1.6x its landmark box."""
    lm = np.asarray(landmarks, np.float64)[:, :2]
    c, half = (lm.min(0) + lm.max(0)) / 2, 0.8 * np.ptp(lm, axis=0).max()
    s = side / (2 * half)
    return np.array([[s, 0, side / 2 - s * c[0]], [0, s, side / 2 - s * c[1]]])


def _face_tile(image: np.ndarray, face, index: int, side: int = 160) -> np.ndarray:
    """A square crop around one face (:func:`face_square`) with ``landmarks`` red, ``landmarks3d`` green."""
    import cv2

    a = face_square(face.landmarks, side)
    s = a[0, 0]
    tile = cv2.warpAffine(image, a, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    for pts, colour in ((face.landmarks3d[:, :2], (0, 255, 0)), (face.landmarks, (0, 0, 255))):
        for x, y in np.asarray(pts, np.float64) * s + a[:, 2]:
            cv2.circle(tile, (int(round(x - 0.5)), int(round(y - 0.5))), 1, colour, -1)
    yaw = np.rad2deg(face.pose.angles[1])
    cv2.putText(tile, f"{index} {yaw:+.0f}", (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 255), 1)
    return tile


VIDEOS = ("video/hamilton_640x360.mp4", "video/dafoe_1280x720.mp4")


def evaluate_video(path: str, weights: str | None = None, mediapipe: dict | None = None) -> dict:
    """Tracking on a video (``rtface.stream``, CPU, defaults): frames with a face, landmark error against the
    detector and landmark jitter, and with ``mediapipe`` (a :func:`benchmarks.mediapipe_ref.load` file of the same
    clip) against MediaPipe Face Mesh.

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
    * ``vs_mediapipe``: ``face.landmarks3d`` (``3d_%``) and ``face.landmarks`` (``300w_%``) against MediaPipe's
      68 points (3D-consistent, :data:`benchmarks.mediapipe_ref.MP68`) on the same frame, faces matched by landmark
      box overlap (IoU > 0.3), mean point error over sqrt(w*h) of MediaPipe's box; ``by_yaw`` the ``3d_%`` by
      rtface's |yaw| (0-30, 30-60, 60-90 degrees); ``faces`` matched, ``mediapipe_faces`` MediaPipe found.
    """
    from rtface.crop import five_from_68
    from rtface.detect import Detector, box_iou
    from rtface.pipeline import stream

    det = Detector()
    frames = with_face = with_det = 0
    errs, jit = [], []
    matched = off = 0
    prev: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    vs_mp: list[tuple[float, float, float]] = []
    for fr in stream(path, backend="cpu", weights=weights):
        frames += 1
        if mediapipe is not None and fr.index < len(mediapipe["points"]):
            vs_mp += _against_mediapipe(fr.faces, mediapipe["points"][fr.index])
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
            "jitter_%": float(np.mean(jit) * 100) if jit else float("nan"),
            **({"vs_mediapipe": _mediapipe_summary(vs_mp, mediapipe)} if mediapipe is not None else {})}


def _against_mediapipe(faces, mp_points: np.ndarray) -> list[tuple[float, float, float]]:
    """(3D-consistent NME, 300-W NME, |yaw| deg) of every face matched to one of MediaPipe's (M, 68, 2)."""
    from rtface.detect import box_iou

    ref = [m for m in mp_points if np.isfinite(m).all()]
    if not ref or not faces:
        return []
    ref_boxes = np.array([[*m.min(0), *m.max(0)] for m in ref])
    out = []
    for f in faces:
        lm3 = np.asarray(f.landmarks3d, np.float64)[:, :2]
        iou = box_iou(np.array([[*lm3.min(0), *lm3.max(0)]]), ref_boxes)[0]
        j = int(np.argmax(iou))
        if iou[j] <= 0.3:
            continue
        m = ref[j].astype(np.float64)[None]
        e3, e2 = (float(_nme(p[None], m)[0][0]) for p in (lm3, np.asarray(f.landmarks, np.float64)))
        out.append((100 * e3, 100 * e2, abs(float(np.rad2deg(f.pose.angles[1])))))
    return out


def _mediapipe_summary(vs_mp: list[tuple[float, float, float]], mediapipe: dict) -> dict:
    from benchmarks.largepose import YAW_BUCKETS, yaw_bucket

    a = np.array(vs_mp, np.float64).reshape(-1, 3)
    bucket = yaw_bucket(a[:, 2])
    by_yaw = {}
    for k, (lo, hi) in enumerate(YAW_BUCKETS):
        sel = bucket == k
        by_yaw[f"{lo:g}-{hi:g}"] = {"faces": int(sel.sum()), "3d_%": float(a[sel, 0].mean()) if sel.any() else None}
    return {"faces": len(a), "mediapipe_faces": int(np.isfinite(mediapipe["points"][:, :, 0, 0]).sum()),
            "mediapipe_version": str(mediapipe.get("version", "")),
            "3d_%": float(a[:, 0].mean()) if len(a) else float("nan"),
            "300w_%": float(a[:, 1].mean()) if len(a) else float("nan"), "by_yaw": by_yaw}


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
    p.add_argument("--no-profiled", action="store_true", help="skip the large-pose sets (profiled, largepose)")
    p.add_argument("--sets", default="300w-test,profiled,largepose,hamilton",
                   help="by-yaw sets, comma-separated, of 300w-test, profiled, profiled-head, largepose, hamilton")
    p.add_argument("--large-yaw-pass", action="store_true",
                   help=f"also measure an extra CoarseNet pass for faces beyond {LARGE_YAW_DEG:g} deg of yaw")
    p.add_argument("--sheet", default=None, help="PNG of the hamilton turned faces with both landmark conventions")
    p.add_argument("--no-videos", action="store_true", help="skip the two example videos")
    p.add_argument("--mediapipe-refs", default=None,
                   help="folder of MediaPipe references of the videos (python -m benchmarks.mediapipe_ref): "
                        "adds the landmarks against MediaPipe's")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    sets = [x for x in a.sets.split(",") if x]
    unknown = set(sets) - set(POSE_SETS) - {"hamilton"}
    if unknown:
        p.error(f"unknown set(s) {', '.join(sorted(unknown))}; choose from {', '.join(POSE_SETS)}, hamilton")
    if a.no_profiled:
        sets = [x for x in sets if x not in ("profiled", "profiled-head", "largepose")]
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
        rows["previous release (as released: 1 pass, 1 view)"] = evaluate_set(bp, model, bs, limit=a.limit, passes=1)
    print(f"machine: {machine()}")
    print("\n300-W test (common subset), 68-point NME in % (box: sqrt(w*h) of the GT box; IO: outer eye corners)\n")
    print("| weights | box NME | IO NME | failures (IO > 8 %) | LFPW box / IO | Helen box / IO |")
    print("| --- | --- | --- | --- | --- | --- |")
    for k, r in rows.items():
        print(_row(k, r))
    result = {"machine": machine(), "test": rows}
    protocols = {"this release (rtface.reconstruct: 2 passes, 6 views)": (predict, size, 2, single, None)}
    if a.large_yaw_pass:
        protocols[f"this release + 1-view re-crop pass where pass 1 finds |yaw| > {LARGE_YAW_DEG:g}"] = (
            predict, size, 2, single, "recrop")
        protocols[f"this release + 6-view third pass where pass 2 finds |yaw| > {LARGE_YAW_DEG:g}"] = (
            predict, size, 2, single, "final")
    if a.baseline:
        protocols["previous release (as released: 1 pass, 1 view)"] = (bp, bs, 1, 1, None)
        protocols["previous release's CoarseNet in this pipeline (2 passes, 6 views)"] = (bp, bs, 2, single, None)
    result["by_yaw"] = {}
    if any(x in POSE_SETS for x in sets):
        print("\nBy yaw: 68-point box-NME % (sqrt(w*h) of the labels' box) of face.landmarks (300-W convention: jaw on "
              "the silhouette) and face.landmarks3d (3D-consistent: the fixed jaw vertices), each against labels in "
              f"either convention; balanced = mean of the three buckets (none under {MIN_BUCKET} faces a bucket)")
    for name in (x for x in sets if x in POSE_SETS):
        ps = POSE_SETS[name](model, a.limit)
        table, res = {}, {}
        for label, (pr, sz, passes, views, extra) in protocols.items():
            res[label] = final_landmarks(pr, model, sz, ps, passes, views, extra)
            table[label] = convention_summary(res[label], ps)
            if extra:
                table[label]["gated faces"] = int(res[label]["gated"].sum())
        main_label = next(iter(protocols))
        print_pose_table(ps.name, ps.note, table)
        if ps.groups:
            sub = {f"{main_label}, {g}": convention_summary(res[main_label], ps, m) for g, m in ps.groups.items()}
            print_pose_table(f"{ps.name}, by source", "the same run", sub)
            table.update(sub)
        result["by_yaw"][name] = {"faces": len(ps.yaw), "note": ps.note, "rows": table}
    if "hamilton" in sets:
        from benchmarks.largepose import YAW_BUCKETS

        result["hamilton_profiles"] = {}
        for label, w in (("this release", a.weights), ("baseline", a.baseline)):
            if label == "baseline" and not a.baseline:
                continue
            h = evaluate_hamilton(w, a.sheet if label == "this release" else None)
            result["hamilton_profiles"][label] = h
            lab = h["labelled"]
            print(f"\nhamilton_640x360.mp4, turned heads, {label} ({h['frames']} frames as single images): the "
                  f"pipeline reports {h['faces']} faces, the detector alone finds {h['detector_faces']}; five template "
                  "points against the detector's, by the pipeline's yaw: " + ", ".join(
                      f"{lo:g}-{hi:g} deg: {_cell(h[f'{lo:g}-{hi:g}']['five_point_nme'])} % "
                      f"({h[f'{lo:g}-{hi:g}']['faces']} faces)" for lo, hi in YAW_BUCKETS)
                  + f"; hand-labelled real profiles (benchmarks.profile_labels, {lab['faces']} faces at about 60-90 "
                  f"deg): landmarks3d box-NME {_cell(lab['nme_%'])} % over {lab['matched']} matched faces")
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
                ref = None
                if a.mediapipe_refs:
                    from benchmarks.mediapipe_ref import load as load_ref

                    ref_path = Path(a.mediapipe_refs) / f"{Path(rel).stem}.npz"
                    if not ref_path.is_file():
                        raise SystemExit(f"no MediaPipe reference {ref_path}: make it with "
                                         f"python -m benchmarks.mediapipe_ref {path} --out {a.mediapipe_refs}")
                    ref = load_ref(ref_path)
                v = evaluate_video(str(path), w, ref)
                result["videos"][f"{rel} ({label})"] = v
                print(f"| {Path(rel).name} | {label} | {v['frames']} | {v['frames_with_face_%']:.1f} "
                      f"({v['detector_frames_%']:.1f}) | {v['five_point_nme_%']:.2f} | {v['off_face_%']:.1f} | "
                      f"{v['jitter_%']:.2f} |")
        mp_rows = {k: v["vs_mediapipe"] for k, v in result["videos"].items() if "vs_mediapipe" in v}
        if mp_rows:
            print("\nAgainst MediaPipe Face Mesh (its 68 points, 3D-consistent; NME over MediaPipe's box, %)\n")
            print("| video (weights) | faces matched (MediaPipe's) | landmarks3d | landmarks | landmarks3d by |yaw| "
                  "0-30 / 30-60 / 60-90 (faces) |")
            print("| --- | --- | --- | --- | --- |")
            for k, m in mp_rows.items():
                yaw = " / ".join("-" if b["3d_%"] is None else f"{b['3d_%']:.2f} ({b['faces']})"
                                 for b in m["by_yaw"].values())
                print(f"| {k} | {m['faces']} ({m['mediapipe_faces']}) | {m['3d_%']:.2f} | {m['300w_%']:.2f} | {yaw} |")
    if a.json:
        write_json(Path(a.json), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
