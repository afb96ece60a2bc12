"""Does CoarseNet's feedback input pay? Landmark accuracy and jitter with and without it.

``python -m benchmarks feedback [--weights DIR] [--limit N] [--video PATH ...] [--frames N] [--json PATH]``

Only for a CoarseNet with the ``feedback`` input (the paper's input rendering layer: the previous estimate
rendered into the new crop, :mod:`rtface.render.feedback`); the pipeline turns it on by default exactly then.
Rendering it costs about as much as a network pass per face, so it has to earn its keep:

* **accuracy** on the 300-W test faces (``faces-300w/test``, the protocol of ``python -m benchmarks
  landmarks``: detector five points -> crop -> CoarseNet -> 68 landmarks with the jaw contour): ``pass 1`` from
  the detector's crop; ``pass 2`` from the crop made of pass 1's landmarks, as the tracker makes a video's next
  crop, **without** feedback (zeros) and **with** pass 1's mesh rendered into that crop. 68-point NME in % of
  sqrt(w*h) of the ground-truth box.
* **jitter** on real video (default: every clip of ``$RTFACE_ASSETS/video``): the pipeline (CPU, FP32
  networks) with feedback on and off, temporal smoothing off (the raw per-frame estimate) and on (the default);
  jitter = mean over faces, frames and the 68 landmarks of the second difference
  ``|l[t+1] - 2 l[t] + l[t-1]|`` (what steady motion does not explain), in % of sqrt(w*h) of the face's
  landmark box; over consecutive frames of one track. The mean speed ``|l[t+1] - l[t]|`` is printed beside it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .report import machine, write_json


def nme_with_feedback(weights: str | None, limit: int | None = None, chunk: int = 16) -> dict[str, Any]:
    """300-W test NME (box, %) of pass 1, pass 2 without and pass 2 with feedback (module docstring)."""
    from rtface.camera import affine_scale, apply_affine, invert_affine, project, warp_to_crop
    from rtface.contour import Contour
    from rtface.crop import crop_from_five, five_from_68
    from rtface.errors import InputError
    from rtface.face_model import FaceModel
    from rtface.networks import load_networks, preprocess
    from rtface.render.feedback import pncc_code, render_feedback

    from .landmarks import _load_test, _summary, landmarks_from_params

    model = FaceModel.load()
    nets = load_networks(weights, backend="cpu", precision="fp32", face_model_hash=model.hash)
    if not nets.coarse.takes_feedback:
        nets.close()
        raise InputError(f"the CoarseNet of {nets.manifest['_dir']} has no feedback input: nothing to compare "
                         f"(the pipeline runs without it)")
    s = nets.size
    contour = Contour(model)
    pncc = pncc_code(model.mean)
    tri = np.ascontiguousarray(model.triangles, dtype=np.int32)
    lab, idx, images = _load_test("300w-test", limit)
    gts = lab.points[idx].astype(np.float64)
    det = lab.det_five[idx].astype(np.float64)
    missed = ~np.isfinite(det).all(axis=(1, 2))
    fives = np.where(missed[:, None, None], five_from_68(gts), det)
    n = len(images)
    preds = {k: np.zeros((n, 68, 2)) for k in ("pass1", "pass2", "pass2_feedback")}
    for start in range(0, n, chunk):
        ids = list(range(start, min(n, start + chunk)))
        a1 = [crop_from_five(fives[i], s) for i in ids]
        x1 = preprocess(np.stack([warp_to_crop(images[i], a, s) for i, a in zip(ids, a1)]))
        p1 = nets.coarse.run(x1)
        lm1 = landmarks_from_params(contour, p1)
        lm1_img = [apply_affine(invert_affine(a), lm) for a, lm in zip(a1, lm1)]
        verts1 = project(model.vertices(p1["identity"], p1["expression"]), p1["pose"])  # (B, V, 3) crop 1 px
        a2 = [crop_from_five(five_from_68(lm[None])[0], s) for lm in lm1_img]
        x2 = preprocess(np.stack([warp_to_crop(images[i], a, s) for i, a in zip(ids, a2)]))
        v2 = []
        for k, (a, b) in enumerate(zip(a1, a2)):  # crop 1 px -> image px -> crop 2 px (z scales along)
            m = np.asarray(b, np.float64) @ np.vstack([invert_affine(a), [0.0, 0.0, 1.0]])
            v = verts1[k].astype(np.float64)
            xy = v[:, :2] @ m[:, :2].T + m[:, 2]
            v2.append(np.concatenate([xy, v[:, 2:] * affine_scale(m)], 1))
        fb = render_feedback(np.stack(v2).astype(np.float32), tri, s, pncc)
        for key, out in (("pass2", nets.coarse.run(x2)), ("pass2_feedback", nets.coarse.run(x2, fb))):
            lm2 = landmarks_from_params(contour, out)
            for j, (i, a) in enumerate(zip(ids, a2)):
                preds[key][i] = apply_affine(invert_affine(a), lm2[j])
        for j, i in enumerate(ids):
            preds["pass1"][i] = lm1_img[j]
    nets.close()
    names = lab.names[idx]
    return {k: _summary(v, gts, names) for k, v in preds.items()} | {"detector_missed": int(missed.sum())}


def jitter(results: list, min_run: int = 3) -> dict[str, float]:
    """Landmark jitter (second difference) and speed, % of face size, over consecutive frames of each track."""
    tracks: dict[int, list[tuple[int, np.ndarray]]] = {}
    for r in results:
        for f in r.faces:
            tracks.setdefault(f.track_id, []).append((r.index, np.asarray(f.landmarks, np.float64)))
    acc, vel = [], []
    for seq in tracks.values():
        for k in range(1, len(seq) - 1):
            (i0, l0), (i1, l1), (i2, l2) = seq[k - 1], seq[k], seq[k + 1]
            if not (i1 == i0 + 1 and i2 == i1 + 1):
                continue
            wh = np.ptp(l1, axis=0)
            size = float(np.sqrt(max(wh[0], 1e-6) * max(wh[1], 1e-6)))
            acc.append(np.linalg.norm(l2 - 2 * l1 + l0, axis=1).mean() / size)
            vel.append(np.linalg.norm(l2 - l1, axis=1).mean() / size)
    return {"jitter_%": float(np.mean(acc) * 100) if acc else float("nan"),
            "speed_%": float(np.mean(vel) * 100) if vel else float("nan"), "triples": len(acc)}


def video_jitter(weights: str | None, video: Path, frames: int | None) -> dict[str, dict]:
    from rtface.pipeline import Pipeline

    out = {}
    for smoothing in (False, True):
        for fb in (False, True):
            pipe = Pipeline(weights, backend="cpu", precision="fp32", feedback=fb, smoothing=smoothing)
            res = list(pipe.stream(video, max_frames=frames))
            pipe.close()
            out[f"feedback {'on' if fb else 'off'}, smoothing {'on' if smoothing else 'off'}"] = jitter(res)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks feedback", description=__doc__.split("\n")[0])
    ap.add_argument("--weights", help="weights folder (default: the shipped weights)")
    ap.add_argument("--limit", type=int, default=None, help="only this many 300-W test faces (evenly spread)")
    ap.add_argument("--video", action="append", type=Path, help="video for the jitter (repeatable)")
    ap.add_argument("--frames", type=int, default=None, help="frames per video (default: all)")
    ap.add_argument("--no-jitter", action="store_true")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    from rtface.assets import data_path

    from rtface.errors import InputError

    try:
        result: dict[str, Any] = {"machine": machine(), "nme": nme_with_feedback(args.weights, args.limit)}
    except InputError as exc:
        print(f"skipped: {exc}")
        return 0
    r = result["nme"]
    print(f"300-W test, {r['pass1']['faces']} faces, 68-point NME (% of sqrt(w*h) of the GT box):")
    for k, label in (("pass1", "pass 1 (detector crop)"), ("pass2", "pass 2, no feedback"),
                     ("pass2_feedback", "pass 2, with feedback")):
        print(f"  {label:28s} {r[k]['box_nme']:6.3f} %   (inter-ocular {r[k]['io_nme']:.3f} %, "
              f"failures {r[k]['failure_rate']:.1f} %)")
    if not args.no_jitter:
        videos = args.video or sorted(data_path("video").glob("*.mp4"))
        result["jitter"] = {}
        for v in videos:
            result["jitter"][v.name] = j = video_jitter(args.weights, v, args.frames)
            print(f"\n{v.name}: landmark jitter (2nd difference) and speed, % of face size")
            for k, x in j.items():
                print(f"  {k:32s} jitter {x['jitter_%']:6.3f} %   speed {x['speed_%']:6.3f} %   ({x['triples']} triples)")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
