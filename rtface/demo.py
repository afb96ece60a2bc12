"""``rtface demo``: the pipeline on an embedded default input, no file needed.

The input is rendered on the fly: a synthetic talking face (:mod:`rtface.synth`'s renderer: ICT-FaceKit
identity, skin albedo, SH lighting, painted eyes and mouth) whose expression (jaw, smile, blinks, brows) and
head pose vary smoothly over ``frames`` frames, composited onto a fixed background and swaying across a
640 x 360 frame. The full pipeline runs on it (detection, tracking, CoarseNet, rendering layer, FineNet) and
the demo writes

* ``demo.mp4``: input | colour depth | shaded depth, side by side (:class:`rtface.sinks.VideoSink`);
* ``contact_sheet.png``: synthetic faces with their ground-truth depth (:mod:`rtface.demo_sheet`), when present.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import InputError

FRAMES = 90
WIDTH, HEIGHT = 640, 360
FACE_PX = 300  # side of the rendered face crop (the face fills about 70 % of it)
FPS = 30.0


def _expression(model, t: float) -> np.ndarray:
    """Smoothly varying ARKit weights at phase t (seconds): talking jaw, smile, blinks, brow raises."""
    names = list(model.expression_names)
    e = np.zeros(model.num_expression, np.float32)

    def put(name: str, value: float) -> None:
        for i, n in enumerate(names):
            if n.lower().startswith(name.lower()):
                e[i] = np.clip(value, 0.0, 1.0)

    put("jawOpen", 0.35 * (0.5 + 0.5 * math.sin(2 * math.pi * 1.7 * t)) ** 2 + 0.05)
    put("mouthSmile", 0.5 * (0.5 + 0.5 * math.sin(2 * math.pi * 0.25 * t)))
    blink = max(0.0, math.cos(2 * math.pi * 0.33 * t)) ** 30
    put("eyeBlink", blink)
    put("browInnerUp", 0.4 * max(0.0, math.sin(2 * math.pi * 0.4 * t)))
    return e


def synthetic_frames(frames: int = FRAMES, seed: int = 0, width: int = WIDTH, height: int = HEIGHT,
                     model: Any = None) -> Iterator[np.ndarray]:
    """The demo's input video: ``frames`` BGR uint8 frames (H, W, 3) of a synthetic talking face."""
    import cv2

    from . import synth

    if int(frames) < 1:
        raise InputError(f"frames must be at least 1, got {frames}")
    if model is None:
        from .face_model import FaceModel

        model = FaceModel.load()
    cfg = synth.SynthConfig(occluder_prob=0.0, blur_prob=0.0, jpeg_prob=0.0, noise_sigma=(0.0, 0.0),
                            pore_noise=(0.0, 0.0), specular_prob=0.0, hair_prob=1.0, stubble_prob=0.0)
    id_rng = np.random.default_rng(seed)
    identity = np.clip(id_rng.standard_normal(model.num_identity) * 0.8, -2, 2).astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    background = np.stack([90 + 40 * xx / width, 80 + 30 * yy / height, 60 + 20 * (xx + yy) / (width + height)],
                          -1).astype(np.uint8)
    s = FACE_PX
    for k in range(int(frames)):
        t = k / FPS
        expression = _expression(model, t)
        angles = np.radians([6 * math.sin(2 * math.pi * 0.3 * t), 22 * math.sin(2 * math.pi * 0.2 * t),
                             6 * math.sin(2 * math.pi * 0.15 * t + 1.0)])
        rng = np.random.default_rng(seed)  # same skin, hair and light every frame
        jitter = np.array([-0.3, 0.0, 0.0, 0.0])  # shrink the face in its crop: nothing is cut at the edges
        face = synth.render_face(model, identity, expression, angles, rng, size=s, config=cfg, jitter=jitter)
        # keep the face (silhouette with its eye/mouth openings filled), drop the synthetic background
        outside = np.pad((~face.mask).astype(np.uint8), 1, constant_values=1)
        ff = np.zeros((s + 4, s + 4), np.uint8)
        cv2.floodFill(outside, ff, (0, 0), 2)
        keep = outside[1:-1, 1:-1] != 2
        keep = cv2.erode(keep.astype(np.uint8), np.ones((2, 2), np.uint8)).astype(bool)
        frame = background.copy()
        cx = int(width / 2 + 0.25 * width * math.sin(2 * math.pi * 0.12 * t) - s / 2)
        cy = int(height / 2 + 0.08 * height * math.sin(2 * math.pi * 0.21 * t) - s / 2)
        x0, y0 = max(cx, 0), max(cy, 0)
        x1, y1 = min(cx + s, width), min(cy + s, height)
        sub = frame[y0:y1, x0:x1]
        fsub = face.image[y0 - cy:y1 - cy, x0 - cx:x1 - cx]
        m = keep[y0 - cy:y1 - cy, x0 - cx:x1 - cx]
        sub[m] = fsub[m]
        yield frame


def run_demo(out_dir: str | os.PathLike = "rtface-demo", *, frames: int = FRAMES, backend: str = "auto",
             progress: bool = True, pipeline: Any = None) -> dict[str, Any]:
    """Render the synthetic talking face, run the pipeline on it, write ``demo.mp4`` and the contact sheet.

    Returns a summary dict: paths written, frames, frames with a face, mean ms per stage, FPS of the pipeline.
    """
    from .face_model import FaceModel
    from .pipeline import Pipeline
    from .sinks import VideoSink

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = FaceModel.load(progress=progress)  # first use: converts the face model (a few seconds, with a bar)
    rendered = synthetic_frames(frames, model=model)
    if progress:
        from tqdm import tqdm

        rendered = tqdm(rendered, total=int(frames), desc="rendering the demo input", unit="frame")
    frames_in = list(rendered)  # rendered first, so that the pipeline's timings are its own
    bar = None
    if progress:
        bar = tqdm(total=len(frames_in), desc="rtface demo", unit="frame")  # shown while the networks load
    pipe = pipeline or Pipeline(backend=backend, face_model=model)
    video = out / "demo.mp4"
    n_face = 0
    stage_sum: dict[str, float] = {}
    t0 = time.perf_counter()
    busy = 0.0
    # three full 640 x 360 panels; encoded in this thread, so that the pipeline's timings are its own
    with VideoSink(video, fps=FPS, size=None, threaded=False) as sink:
        for result in pipe.stream(frames_in, fps=FPS):
            _ = result.depth
            busy += result.timings.get("total", 0.0) + result.timings.get("paste", 0.0)
            n_face += bool(result.faces)
            for k, v in result.timings.items():
                stage_sum[k] = stage_sum.get(k, 0.0) + v
            sink.write(result)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - t0
    summary: dict[str, Any] = {
        "video": str(video), "frames": len(frames_in), "frames_with_face": n_face,
        "ms_per_stage": {k: v / max(1, len(frames_in)) for k, v in stage_sum.items()},
        "pipeline_fps": len(frames_in) / (busy / 1e3) if busy > 0 else float("nan"),
        "wall_s": wall, "backend": pipe.backend, "weights_trained": pipe.networks.trained,
    }
    try:
        from .demo_sheet import write_contact_sheet
    except ImportError:
        write_contact_sheet = None
    if write_contact_sheet is not None:
        summary["contact_sheet"] = str(write_contact_sheet(out / "contact_sheet.png", model=model))
    return summary


__all__ = ["FRAMES", "run_demo", "synthetic_frames"]
