"""The end-to-end pipeline: frames in, :class:`rtface.results.FrameResult` out.

Per frame (DESIGN.md, "Data flow of one frame")::

    detect (YuNet on the downscaled frame: while nothing is tracked, every ``detect_every`` frames, or when a
      fit is lost) or track (crop from last landmarks, checked by YuNet on a small crop every ``verify_every``)
      -> crop every face to S x S (five-point framing, rtface.crop)
      -> CoarseNet on the whole batch (with a feedback input: the previous frame's estimate rendered in the
         new crop; ``feedback=None`` turns it on exactly for such networks)
      -> smoothing (One-Euro, frame coordinates; video only)
      -> mesh = mean + B_id a + B_exp b, posed into crop pixels -> rasterise (batched): coarse depth + mask
      -> FineNet(crop, coarse depth, mask) -> fine depth
      -> FrameResult (frame depth pasted lazily on first access)

``FrameResult.timings`` holds milliseconds per stage (:data:`STAGES`), measured so that they add up to the
frame time a consumer sees:

* ``wait``: time the pipeline waited for the decoder (the reader thread decodes the next frames while the
  networks run; 0 for single images and :meth:`Pipeline.step`);
* ``detect`` (detector or tracker), ``crop``, ``feedback``, ``coarse``, ``mesh``, ``render``, ``fine``;
* ``other``: the rest of this thread's work on the frame (colour conversion, smoothing, results, tracking
  updates), so that ``total`` = the sum of ``detect`` .. ``other`` = the time from the frame's arrival to its
  result;
* ``paste``: once ``frame.depth`` (or ``mask``) has been read.

``decode`` is the reader thread's time for the frame (overlapped with the pipeline, so not part of the sum).
A stream's frame time (wall time between results) = ``wait`` + ``total`` + ``paste`` + the consumer's own work.

Threads: the reader thread decodes (FFmpeg with ``decode_threads``, default one fewer than the physical cores)
while this thread runs the stages; ONNX Runtime uses ``threads`` intra-op threads (default: the physical
cores) that sleep between runs, so decoding the next frame overlaps the networks of this one.

Backends: ``"cpu"`` runs everything on NumPy/ONNX Runtime/Numba. ``"cuda"`` and ``"tensorrt"`` (and ``"auto"``
when it picks one of them) run the GPU path: the frame is uploaded once, crops are sampled by a small CuPy
kernel straight into the networks' NCHW float input, engines take and return CuPy arrays, the mesh and the
rasteriser run on the device, and the crop maps stay there until a result field is read. Only the small
coefficient vectors and the 68 landmarks come back every frame (for smoothing and tracking). GPU modules are
imported lazily.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import detail
from .camera import DEPTH_OFFSET_CM, Pose, affine_scale, compose_affine, invert_affine, rotation_matrix
from .contour import Contour
from .errors import InputError
from .results import FaceResult, FrameResult
from .smoothing import Smoother, SmoothingConfig
from .sources import open_source, to_bgr
from .track import Tracker

#: Default number of frames between detector runs while every face is tracked well.
DETECT_EVERY = 10
MAX_FACES = 4
#: CoarseNet passes for a single image: the first on the detector's crop (one view), the second (all views) on
#: the crop its landmarks give. Measured on 300-W test, six views, one pass -> two: box-NME 2.77 -> 2.74 %, and
#: 4.72 -> 4.06 % on faces turned 60-90 degrees, whose detector framing is poor (``benchmarks landmarks``).
SINGLE_IMAGE_PASSES = 2
#: An extra CoarseNet pass for the turned heads of a single image, ``(degrees, views)``: faces whose first pass
#: finds |yaw| above ``degrees`` get one more pass of ``views`` views (:mod:`rtface.views`) on the crop those
#: landmarks give and are re-cropped again before the last pass; None: off. Off because it does not pay with the
#: released CoarseNet (``python -m benchmarks landmarks --large-yaw-pass``, docs/landmarks.md): (45, 1) moves the
#: profiled 300-W test faces at 60-90 degrees from 4.05 to 4.02 % box-NME (landmarks3d against 3D-consistent
#: labels 4.29 -> 4.27 %), nothing elsewhere; a 6-view third pass after the second does the same.
LARGE_YAW_PASS: tuple[float, int] | None = None
#: Keys of ``FrameResult.timings`` that add up to a stream's frame time (module docstring).
STAGES = ("wait", "detect", "crop", "feedback", "coarse", "mesh", "render", "fine", "other", "paste")
#: The stages of ``total`` (this thread, from a frame's arrival to its result).
_WORK = ("detect", "crop", "feedback", "coarse", "mesh", "render", "fine", "other")
COLORS = ("bgr", "rgb")


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


class Pipeline:
    """CoarseNet + rendering layer + FineNet over frames.

    Args:
        weights: folder with ``manifest.json`` and the ONNX files (default: the weights inside the package).
        backend: ``"auto"`` (TensorRT, then ONNX Runtime CUDA, then CPU), ``"cpu"``, ``"cuda"`` or ``"tensorrt"``.
        detector: a :class:`rtface.detect.Detector`, a path to a YuNet ONNX file, or None (the verified asset).
        max_faces: at most this many faces per frame (best detector scores).
        detect_every: run the detector at least every this many frames of a stream (1: every frame); between
            detections the tracker carries the faces (see :mod:`rtface.track` for the whole schedule).
        verify_every: check the tracked faces with the detector (a small crop each) every this many frames.
        smoothing: One-Euro smoothing of pose/expression/identity in streams: True (defaults), False, a dict or
            a :class:`rtface.smoothing.SmoothingConfig`. Single images (``__call__``) are never smoothed.
        feedback: feed the previous frame's estimate back into CoarseNet (its input rendering layer). None
            (default): on exactly when the CoarseNet has the ``feedback`` input; True with a CoarseNet without it
            is an error.
        face_model: a loaded :class:`rtface.FaceModel`, or a path to the ICT-FaceKit source; default the asset.
        threads: CPU intra-op threads of ONNX Runtime (default: physical cores).
        detect_size: longest side of the frame given to the detector (it is downscaled to this).
        score_threshold: detector score threshold.
        precision: ``"auto"`` (INT8 networks on the CPU when the weights have them, FP16 TensorRT engines where
            FP16 is fast), ``"fp32"``, ``"fp16"`` or ``"int8"`` (:func:`rtface.networks.load_networks`).
        color: channel order of the images given as arrays: ``"bgr"`` (default, as OpenCV) or ``"rgb"`` (as
            PIL, imageio, matplotlib). RGB arrays are converted once on entry; everything after works in BGR
            (``FrameResult.image`` is BGR). Frames rtface decodes itself (files, URLs, webcams) are BGR already,
            whatever ``color`` says.
        views: test-time views of each face for the CoarseNet (:mod:`rtface.views`: the crop, its mirror, tighter
            crops), 1 to 6; more views are more accurate and cost one CoarseNet run each. None (default): all
            six for single images, one for streams. Views above 1 need a CoarseNet without feedback input.
            Single images also get a first CoarseNet pass that re-crops each face (:data:`SINGLE_IMAGE_PASSES`).
        detail_cap: largest detail resolution (px a side, a multiple of 16 from the crop size to 512): each face's
            coarse depth is rendered and its FineNet run at the face's own resolution up to this
            (:mod:`rtface.detail`); larger is more detail on large faces and costs time. None (default):
            :data:`rtface.detail.IMAGE_CAP` for single images, :data:`rtface.detail.STREAM_CAP` for streams.
        sync_timings: GPU path only: wait for the GPU at every stage boundary, so that ``FrameResult.timings``
            gives each stage its own GPU time. Off (default), the GPU stages are timed as the host queues them
            (``crop``, ``feedback``, ``mesh`` and ``render`` measure kernel launches) and the GPU work lands in the
            next stage that reads results back (``coarse``, ``fine``); ``total`` is right either way. Off by
            default because each wait costs throughput: the host stops queueing while the GPU drains, four more
            times a frame. Benchmarks turn it on for the per-stage table and off for FPS.
    """

    def __init__(self, weights: str | os.PathLike | None = None, backend: str = "auto", detector: Any = None, *,
                 max_faces: int = MAX_FACES, detect_every: int = DETECT_EVERY, verify_every: int | None = None,
                 smoothing: Any = True, feedback: bool | None = None, face_model: Any = None,
                 threads: int | None = None, detect_size: int = 320, score_threshold: float | None = None,
                 precision: str = "auto", color: str = "bgr", views: int | None = None,
                 detail_cap: int | None = None, sync_timings: bool = False) -> None:
        from .detect import SCORE_THRESHOLD, Detector
        from .face_model import FaceModel
        from .networks import load_networks
        from .render.feedback import pncc_code
        from .track import VERIFY_EVERY
        from .views import check_views, expression_mirror

        if isinstance(max_faces, bool) or not isinstance(max_faces, (int, np.integer)) or max_faces < 1:
            raise InputError(f"max_faces must be a positive integer, got {max_faces!r}")
        if isinstance(detect_every, bool) or not isinstance(detect_every, (int, np.integer)) or detect_every < 1:
            raise InputError(f"detect_every must be a positive integer, got {detect_every!r}")
        if verify_every is None:
            verify_every = VERIFY_EVERY
        if isinstance(verify_every, bool) or not isinstance(verify_every, (int, np.integer)) or verify_every < 1:
            raise InputError(f"verify_every must be a positive integer, got {verify_every!r}")
        if color not in COLORS:
            raise InputError(f"color must be 'bgr' or 'rgb' (the channel order of the arrays you pass), got {color!r}")
        if feedback is not None and not isinstance(feedback, (bool, np.bool_)):
            raise InputError(f"feedback must be True, False or None (automatic), got {feedback!r}")
        self.max_faces = int(max_faces)
        self.detect_every = int(detect_every)
        self.verify_every = int(verify_every)
        self.color = color
        self.smoothing = SmoothingConfig.coerce(smoothing)
        if face_model is None or isinstance(face_model, (str, os.PathLike)):
            face_model = FaceModel.load(face_model)
        self.model = face_model
        self.networks = load_networks(weights, backend=backend, face_model_hash=self.model.hash,
                                      threads=threads, max_batch=max(16, self.max_faces), precision=precision)
        takes = self.networks.coarse.takes_feedback
        if feedback and not takes:
            raise InputError(f"feedback=True, but the CoarseNet of {self.networks.manifest.get('_dir')} has no "
                             f"feedback input (image only); use feedback=None or False")
        self.feedback = takes if feedback is None else bool(feedback)
        self.views = None if views is None else check_views(views)
        if not isinstance(sync_timings, (bool, np.bool_)):
            raise InputError(f"sync_timings must be True or False, got {sync_timings!r}")
        self.sync_timings = bool(sync_timings)
        if self.feedback and (self.views or 1) > 1:
            raise InputError(f"views={views} needs a CoarseNet without feedback (its mirrored and zoomed views have "
                             f"no previous estimate); use views=1 or feedback=False")
        self.size = self.networks.size
        self._detail_cap = None if detail_cap is None else detail.check_cap(detail_cap, self.size)
        self.backend = self.networks.coarse.backend
        self.precision = self.networks.precision
        self.device = self.networks.coarse.engine.device
        if isinstance(detector, (str, os.PathLike)) or detector is None:
            detector = Detector(detector, score_threshold=SCORE_THRESHOLD if score_threshold is None
                                else score_threshold, detect_size=detect_size)
        self.detector = detector
        m = self.model
        k_id, k_exp = m.num_identity, m.num_expression
        self._basis = np.ascontiguousarray(
            np.concatenate([m.id_basis, m.exp_basis], 0).reshape(k_id + k_exp, -1), dtype=np.float32)
        self._basis_q, self._basis_scale = quantise_basis(self._basis)
        self._mean = np.ascontiguousarray(m.mean.reshape(-1), dtype=np.float32)
        self._triangles = np.ascontiguousarray(m.triangles, dtype=np.int32)
        self._contour = Contour(m)
        self._exp_mirror = expression_mirror(m.expression_names)
        self._pncc = pncc_code(m.mean)
        self._gpu = _GpuStages(self) if self.device == "cuda" else None
        self._state_lock = threading.Lock()
        self._tracker: Tracker | None = None
        self._smoother: Smoother | None = None
        self.reset()

    # ------------------------------------------------------------------------------------------ public
    def reset(self) -> None:
        """Forget the tracked faces (start of a new stream)."""
        self._tracker = Tracker(self.detector, self.size, detect_every=self.detect_every, max_faces=self.max_faces,
                                verify_every=self.verify_every)
        self._smoother = Smoother(self.smoothing) if self.smoothing is not None else None

    def _entry(self, image: Any, index: int | None, convert: bool) -> np.ndarray:
        """(H, W, 3) uint8 BGR from a caller's array; RGB (``color="rgb"``) converted here, once."""
        bgr = to_bgr(image, index=index)
        if convert and self.color == "rgb" and isinstance(image, np.ndarray) and image.ndim == 3 \
                and image.shape[2] in (3, 4):
            import cv2

            bgr = cv2.cvtColor(bgr, cv2.COLOR_RGB2BGR)  # a new array: the caller's buffer is left alone
        return bgr

    def __call__(self, image: Any, *, index: int = 0, timestamp: float = 0.0) -> FrameResult:
        """Reconstruct every face of one image (H, W[, C], channel order ``color``); independent of any stream
        (no tracking/smoothing)."""
        t_start = time.perf_counter()
        image = self._entry(image, None, True)
        tracker = Tracker(self.detector, self.size, detect_every=1, max_faces=self.max_faces)
        return self._process(image, index, timestamp, 0.0, tracker, None, t_start, single=True)

    def step(self, image: Any, index: int = 0, timestamp: float = 0.0, decode_ms: float = 0.0) -> FrameResult:
        """Process the next frame of a stream (tracking and smoothing carry over from the previous call).

        ``image``: an array (H, W[, C]) in the channel order ``color``."""
        return self._step(image, index, timestamp, decode_ms, True)

    def _step(self, image: Any, index: int, timestamp: float, decode_ms: float, convert: bool,
              wait_ms: float = 0.0, single: bool = False) -> FrameResult:
        t_start = time.perf_counter()
        image = self._entry(image, index, convert)
        with self._state_lock:
            r = self._process(image, index, timestamp, decode_ms, self._tracker, self._smoother, t_start, single)
        r.timings["wait"] = float(wait_ms)
        return r

    def stream(self, src: Any, *, live: bool | None = None, max_frames: int | None = None,
               fps: float | None = None, queue_size: int | None = None,
               decode_threads: int | None = None) -> Iterator[FrameResult]:
        """Generator of :class:`FrameResult`, one per decoded frame of ``src`` (see :func:`rtface.sources.open_source`).

        ``live`` forces live (latest-frame-wins) or file semantics; ``max_frames`` stops after that many frames;
        ``decode_threads``: FFmpeg decoder threads for video files (default: one fewer than the physical cores).
        Arrays and iterables of arrays are in the channel order ``color``; files, URLs and webcams are decoded
        by rtface (BGR). A source of exactly one frame (an image file) is reconstructed as a single image
        (``views``: all of them by default).
        """
        kw: dict[str, Any] = {}
        if live is not None:
            kw["live"] = live
        if fps is not None:
            kw["fps"] = fps
        if queue_size is not None:
            kw["queue_size"] = queue_size
        if decode_threads is not None:
            kw["decode_threads"] = decode_threads
        if max_frames is not None and (isinstance(max_frames, bool) or int(max_frames) < 0):
            raise InputError(f"max_frames must be a non-negative integer, got {max_frames!r}")
        from .sources import FrameSource

        convert = not isinstance(src, (str, os.PathLike, int, np.integer, FrameSource))  # caller's arrays
        source = open_source(src, **kw)
        single = not source.live and source.num_frames == 1
        self.reset()
        n = 0
        frames = iter(source)
        try:
            while max_frames is None or n < max_frames:
                t0 = time.perf_counter()
                frame = next(frames, None)
                if frame is None:
                    break
                yield self._step(frame.image, frame.index, frame.timestamp, frame.decode_ms, convert, _ms(t0),
                                 single)
                n += 1
        finally:
            source.close()

    def close(self) -> None:
        self.networks.close()

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ stages
    def detail_cap(self, single: bool) -> int:
        """Cap of the detail resolution (px, :mod:`rtface.detail`) for a single image or a stream frame: the
        ``detail_cap`` option, else :data:`rtface.detail.IMAGE_CAP` / :data:`~rtface.detail.STREAM_CAP`; the
        crop size for a FineNet that runs at one size only."""
        if not self.networks.fine.any_size:
            return self.size
        if self._detail_cap is not None:
            return self._detail_cap
        return detail.IMAGE_CAP if single else detail.STREAM_CAP

    def n_views(self, single: bool) -> int:
        """CoarseNet views per face (:mod:`rtface.views`) for a single image or a stream frame."""
        from .views import MAX_VIEWS

        if self.views is not None:
            return self.views
        return MAX_VIEWS if single and not self.feedback else 1

    def _process(self, image: np.ndarray, index: int, timestamp: float, decode_ms: float, tracker: Tracker,
                 smoother: Smoother | None, t_start: float | None = None, single: bool = False) -> FrameResult:
        if t_start is None:
            t_start = time.perf_counter()
        timings: dict[str, float] = {"decode": float(decode_ms), "wait": 0.0}
        t0 = time.perf_counter()
        tracks = tracker.step(image)
        timings["detect"] = _ms(t0)
        if tracks and single and SINGLE_IMAGE_PASSES > 1:
            yaw = self._recrop(image, tracks, timings, tracker)
            if LARGE_YAW_PASS is not None:
                turned = [t for t, y in zip(tracks, yaw) if abs(y) > LARGE_YAW_PASS[0]]
                if turned:
                    self._recrop(image, turned, timings, tracker, LARGE_YAW_PASS[1])
        if smoother is not None:
            smoother.keep_only(t.id for t in tracks)
        if not tracks:
            faces: list[FaceResult] = []
            for k in ("crop", "feedback", "coarse", "mesh", "render", "fine"):
                timings[k] = 0.0
        elif self._gpu is not None:
            faces = self._gpu.run(image, tracks, timings, timestamp, tracker, smoother, self.n_views(single),
                                  single)
        else:
            faces = self._run_cpu(image, tracks, timings, timestamp, tracker, smoother, self.n_views(single),
                                  single)
        result = FrameResult(index, timestamp, image, faces, timings, tracker.detected)
        total = _ms(t_start)
        timings["other"] = max(0.0, total - sum(timings[k] for k in _WORK if k != "other"))
        timings["total"] = total
        return result

    def _feedback_faces(self, tracks) -> list[int]:
        """Indices of the tracks whose previous estimate is fed back (tracked, not re-seeded by a detection)."""
        if not self.feedback:
            return []
        return [i for i, t in enumerate(tracks) if t.vertices is not None and not t.reseeded]

    def _smooth(self, tracks, ident, expr, pose, timestamp, smoother):
        """Smooth in frame coordinates; returns the smoothed identity, expression and crop-frame pose vectors
        (float32) and ``raw``, the parameters as given (None when nothing is smoothed), for the tracker."""
        if smoother is None:
            return ident, expr, pose, None
        raw = (ident, expr, pose)
        ident, expr, pose = ident.copy(), expr.copy(), pose.copy()
        for i, t in enumerate(tracks):
            c2f = invert_affine(t.frame_to_crop)
            pf = Pose.from_vector(pose[i]).transformed(c2f).to_vector()
            ident[i], expr[i], pf = smoother(t.id, ident[i], expr[i], pf, timestamp)
            pose[i] = Pose.from_vector(pf).transformed(t.frame_to_crop).to_vector()
        return ident, expr, pose, raw

    def _mesh_cpu(self, ident: np.ndarray, expr: np.ndarray, pose: np.ndarray) -> np.ndarray:
        """Posed meshes (N, V, 3) float32 in crop pixels (one fused Numba pass; no multi-threaded BLAS)."""
        coeffs = np.ascontiguousarray(np.concatenate([ident, expr], 1), dtype=np.float32)
        r = rotation_matrix(pose[:, :3]).astype(np.float32)  # (N, 3, 3)
        out = np.empty((len(coeffs), self._mean.shape[0] // 3, 3), np.float32)
        _posed_mesh(coeffs, self._basis_q, self._basis_scale, self._mean, r,
                    np.ascontiguousarray(pose, dtype=np.float32), out)
        return out

    def _view_crops(self, frame: Any, tracks, n_views: int) -> dict[float, Any]:
        """Network input (N, 3, S, S) of every face at each zoom of its first ``n_views`` views (:mod:`rtface.views`;
        zoom 1.0 is the face's own crop). ``frame``: the image, or on the GPU path the frame on the device."""
        from .networks import crop_inputs
        from .views import frame_to_view, zooms

        def crop(affines: list[np.ndarray]) -> Any:
            if self._gpu is not None:
                return self._gpu.crops(frame, affines)
            return crop_inputs(frame, affines, self.size)

        return {z: crop([frame_to_view(t.frame_to_crop, z, self.size) for t in tracks]) for z in zooms(n_views)}

    def _recrop(self, image: np.ndarray, tracks, timings: dict, tracker: Tracker, n_views: int = 1) -> np.ndarray:
        """A single image's first pass: CoarseNet (``n_views`` views, default one) on the faces' crops, then every
        face re-cropped from its landmarks, as a tracker crops the next frame (:meth:`rtface.track.Tracker.recrop`).
        Returns the yaw each face was found at, degrees (N,)."""
        t0 = time.perf_counter()
        frame = self._gpu.cp.asarray(image) if self._gpu is not None else image
        crops = self._view_crops(frame, tracks, n_views)
        if self._gpu is not None:
            self._gpu.sync()
        timings["crop"] = timings.get("crop", 0.0) + _ms(t0)
        t0 = time.perf_counter()
        out = self._coarse(crops, n_views, None)
        params = [self._to_numpy(out[k]) for k in ("identity", "expression", "pose")]
        lm = self._contour.project_landmarks(*params)
        timings["coarse"] = timings.get("coarse", 0.0) + _ms(t0)
        for t, p in zip(tracks, lm):
            tracker.recrop(t, _affine_points(invert_affine(t.frame_to_crop), p), image.shape)
        return np.rad2deg(np.asarray(params[2], np.float64)[:, 1])

    def _to_numpy(self, a: Any) -> np.ndarray:
        return self._gpu.cp.asnumpy(a) if self._gpu is not None else np.asarray(a)

    def _coarse(self, crops: dict[float, Any], n_views: int, feedback: Any) -> dict:
        """CoarseNet parameters of the faces: one run on their crops, or the average of ``n_views`` views."""
        from .views import run_views

        coarse = self.networks.coarse
        if n_views == 1:
            return coarse.run(crops[1.0], feedback)
        return run_views(coarse.run, crops, n_views, self.size, self._exp_mirror, coarse.engine.max_batch,
                         self._to_numpy)

    def _run_cpu(self, image, tracks, timings, timestamp, tracker, smoother, n_views: int = 1,
                 single: bool = False) -> list[FaceResult]:
        from .render.feedback import render_feedback

        s, n = self.size, len(tracks)
        t0 = time.perf_counter()
        crops = self._view_crops(image, tracks, n_views)
        timings["crop"] = timings.get("crop", 0.0) + _ms(t0)

        t0 = time.perf_counter()
        fb = None
        prev = self._feedback_faces(tracks)
        if prev:
            fb = np.zeros((n, 6, s, s), np.float32)
            verts_prev = np.stack([_affine_vertices(tracks[i].frame_to_crop, tracks[i].vertices) for i in prev])
            fb[prev] = render_feedback(verts_prev, self._triangles, s, self._pncc)
        timings["feedback"] = _ms(t0)

        t0 = time.perf_counter()
        out = self._coarse(crops, n_views, fb)
        timings["coarse"] = timings.get("coarse", 0.0) + _ms(t0)

        t0 = time.perf_counter()
        ident = np.asarray(out["identity"], np.float32)
        expr = np.asarray(out["expression"], np.float32)
        pose = np.asarray(out["pose"], np.float32)
        ident, expr, pose, raw = self._smooth(tracks, ident, expr, pose, timestamp, smoother)
        verts = self._mesh_cpu(ident, expr, pose)
        timings["mesh"] = _ms(t0)

        maps = detail.run(image, [t.frame_to_crop for t in tracks], verts, s, self.detail_cap(single),
                          self._triangles, self.networks.fine, timings, mirror=single and detail.MIRROR_IMAGES)
        return self._faces(tracks, ident, expr, pose, verts, maps, image.shape, tracker, raw=raw)

    def landmark_ids(self, contour_x: np.ndarray) -> np.ndarray:
        """(N, 68) landmark vertex ids, jaw marched to the silhouette (:mod:`rtface.contour`), from the crop x of
        the contour candidates ``verts[:, contour.vertex_set, 0]`` (N, n)."""
        return self._contour.select_batch(np.asarray(contour_x))

    def _faces(self, tracks, ident, expr, pose, verts, maps, shape, tracker,
               landmarks_crop=None, landmark_ids=None, raw: tuple | None = None) -> list[FaceResult]:
        """Face results; ``maps`` (:class:`rtface.detail.DetailMaps` per face) set the resolution of each face's
        crop-aligned fields (maps, ``crop_pose``, ``crop_vertices``, ``frame_to_crop``: the detail crop).
        ``raw``: the parameters before smoothing (:meth:`_smooth`). The tracker crops the next frame from their
        landmarks, so the crop follows the face without the smoothing's lag (the fixed landmark vertices: cheap,
        and the crop's five points are inner points, the same in both conventions); unsmoothed, from the
        output's."""
        faces = []
        raw_crop = None if raw is None else self._contour.project_landmarks(*raw, fixed=True)
        if landmarks_crop is None:
            landmark_ids = self.landmark_ids(verts[:, self._contour.vertex_set, 0])
            lm_crop = np.take_along_axis(verts[..., :2], landmark_ids[..., None], axis=1)
        else:
            lm_crop = landmarks_crop
        for i, t in enumerate(tracks):
            c2f = invert_affine(t.frame_to_crop)
            lm = _affine_points(c2f, lm_crop[i]).astype(np.float32)
            m = maps[i]
            face = FaceResult(box=t.box, score=t.score, track_id=t.id, identity=ident[i], expression=expr[i],
                              crop_pose=Pose.from_vector(pose[i]).transformed(detail.crop_to_detail(m.ratio)),
                              crop_vertices=verts[i] * np.float32(m.ratio), depth=m.depth, coarse_depth=m.coarse,
                              mask=m.mask, frame_to_crop=detail.scale_affine(t.frame_to_crop, m.ratio),
                              landmark_index=landmark_ids[i], landmarks=lm, landmark3d_index=self.model.landmarks)
            faces.append(face)
            prev_vertices = None
            if self.feedback:
                prev_vertices = _affine_vertices(c2f, verts[i])
            tracked = lm if raw_crop is None else _affine_points(c2f, raw_crop[i])
            tracker.update(t, tracked, prev_vertices, shape)
        return faces


def _affine_vertices(affine: np.ndarray, verts: Any) -> Any:
    """Map (V, 3) vertices (NumPy or CuPy) through a 2x3 similarity; z scales with it."""
    a = np.asarray(affine, np.float64)
    s = affine_scale(a)
    if isinstance(verts, np.ndarray):  # elementwise: a (V,2)@(2,2) matmul would go to threaded BLAS
        v = np.asarray(verts, np.float32)
        out = np.empty_like(v)
        x, y = v[:, 0], v[:, 1]
        out[:, 0] = np.float32(a[0, 0]) * x + np.float32(a[0, 1]) * y + np.float32(a[0, 2])
        out[:, 1] = np.float32(a[1, 0]) * x + np.float32(a[1, 1]) * y + np.float32(a[1, 2])
        out[:, 2] = v[:, 2] * np.float32(s)
        return out
    import cupy as cp

    out = cp.empty_like(verts)
    out[:, :2] = verts[:, :2] @ cp.asarray(a[:, :2].T, dtype=verts.dtype) + cp.asarray(a[:, 2], dtype=verts.dtype)
    out[:, 2] = verts[:, 2] * s
    return out


def _affine_points(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(P, 2) points through a 2x3 affine, float64, elementwise (no BLAS)."""
    a = np.asarray(affine, np.float64)
    p = np.asarray(points, np.float64)
    out = np.empty_like(p)
    out[:, 0] = a[0, 0] * p[:, 0] + a[0, 1] * p[:, 1] + a[0, 2]
    out[:, 1] = a[1, 0] * p[:, 0] + a[1, 1] * p[:, 1] + a[1, 2]
    return out


def quantise_basis(basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 3DMM basis (K, 3V) float as int16 with one float32 scale per mode: ``basis ~ q * scale[:, None]``.

    The CPU mesh kernel reads the whole basis for every frame, and the other stages evict it from the cache in
    between, so its time is the memory traffic: int16 halves it (measured in a stream at 1080p: 1.15 ms with a
    float32 basis, 0.96 ms with this one). The rounding error is at most half a step, ``max|basis[k]| / 65534`` (3.8 cm / 65534 = 0.6 um for
    the ICT face model's largest mode), summed over the modes a face uses: about a micrometre."""
    b = np.asarray(basis, np.float32)
    scale = np.abs(b).max(axis=1) / np.float32(32767.0)
    scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
    q = np.ascontiguousarray(np.round(b / scale[:, None]), dtype=np.int16)
    return q, scale


def _numba_posed_mesh():
    from numba import njit

    # no fastmath: the loops are element-wise and vectorise without it (measured: the same time)
    @njit(cache=True, nogil=True)
    def posed_mesh(coeffs, basis_q, basis_scale, mean, rot, pose, depth_offset, out):
        """out[n] = project(mean + coeffs[n] @ basis, pose[n]); basis = basis_q (K, 3V) int16 * basis_scale (K,)
        (:func:`quantise_basis`), rot (N, 3, 3), out (N, V, 3).

        The basis (8.6 MB for the ICT face area as int16) is the memory traffic: each row is read once for all
        faces of the batch (mode-major loop), so N faces cost little more than one."""
        n_faces, k_modes = coeffs.shape
        m = mean.shape[0]
        flat = np.empty((n_faces, m), np.float32)
        for n in range(n_faces):
            for j in range(m):
                flat[n, j] = mean[j]
        for k in range(k_modes):
            row = basis_q[k]
            for n in range(n_faces):
                c = coeffs[n, k] * basis_scale[k]
                if c != 0.0:
                    acc = flat[n]
                    for j in range(m):
                        acc[j] += c * np.float32(row[j])
        for n in range(n_faces):
            s = pose[n, 3]
            tx = pose[n, 4]
            ty = pose[n, 5]
            r = rot[n]
            f = flat[n]
            for v in range(m // 3):
                x = f[3 * v]
                y = f[3 * v + 1]
                z = f[3 * v + 2]
                out[n, v, 0] = tx + s * (r[0, 0] * x + r[0, 1] * y + r[0, 2] * z)
                out[n, v, 1] = ty - s * (r[1, 0] * x + r[1, 1] * y + r[1, 2] * z)
                out[n, v, 2] = s * (r[2, 0] * x + r[2, 1] * y + r[2, 2] * z + depth_offset)

    return posed_mesh


_POSED_MESH = None


def _posed_mesh(coeffs, basis_q, basis_scale, mean, rot, pose, out) -> None:
    global _POSED_MESH
    if _POSED_MESH is None:
        _POSED_MESH = _numba_posed_mesh()
    _POSED_MESH(coeffs, basis_q, basis_scale, mean, rot, pose, np.float32(DEPTH_OFFSET_CM), out)


# ---------------------------------------------------------------------------------------------- GPU path

_WARP_SRC = r"""
extern "C" __global__ void warp_crops(const unsigned char* img, const int H, const int W,
                                      const float* inv, const int S, const int N, float* out) {
    // inv: (N, 6) crop (cv2 integer-centre px) -> frame (cv2 integer-centre px). out: (N, 3, S, S) RGB / 255.
    long long idx = (long long)blockDim.x * blockIdx.x + threadIdx.x;
    long long total = (long long)N * S * S;
    if (idx >= total) return;
    int n = (int)(idx / ((long long)S * S));
    int p = (int)(idx % ((long long)S * S));
    int i = p / S, j = p % S;
    const float* m = inv + 6 * n;
    float x = m[0] * j + m[1] * i + m[2];
    float y = m[3] * j + m[4] * i + m[5];
    x = fminf(fmaxf(x, 0.0f), (float)(W - 1));   // replicate border
    y = fminf(fmaxf(y, 0.0f), (float)(H - 1));
    int x0 = (int)floorf(x), y0 = (int)floorf(y);
    int x1 = min(x0 + 1, W - 1), y1 = min(y0 + 1, H - 1);
    float fx = x - x0, fy = y - y0;
    for (int c = 0; c < 3; ++c) {
        float v00 = img[((long long)y0 * W + x0) * 3 + c], v01 = img[((long long)y0 * W + x1) * 3 + c];
        float v10 = img[((long long)y1 * W + x0) * 3 + c], v11 = img[((long long)y1 * W + x1) * 3 + c];
        float v = (v00 * (1.0f - fx) + v01 * fx) * (1.0f - fy) + (v10 * (1.0f - fx) + v11 * fx) * fy;
        out[(((long long)n * 3 + (2 - c)) * S + i) * S + j] = v * (1.0f / 255.0f);
    }
}
"""


def crop_sampling(frame_to_crops: list[np.ndarray]) -> np.ndarray:
    """(N, 6) float32 argument ``inv`` of the ``warp_crops`` kernel: each crop's pixel (integer-centre, cv2's
    convention) -> frame pixel (the same convention), from rtface's frame -> crop affines (centres at +0.5)."""
    to_cv = np.array([[1.0, 0, -0.5], [0, 1.0, -0.5]])
    from_cv = np.array([[1.0, 0, 0.5], [0, 1.0, 0.5]])
    return np.stack([compose_affine(compose_affine(to_cv, invert_affine(a)), from_cv)
                     for a in frame_to_crops]).reshape(len(frame_to_crops), 6).astype(np.float32)


class _GpuStages:
    """The pipeline's stages on the GPU (CuPy); built only when the engines run on CUDA."""

    def __init__(self, pipe: Pipeline) -> None:
        from ._optional import require

        cp = require("cupy", "The GPU pipeline")
        self.cp = cp
        self.pipe = pipe
        self.kernel = cp.RawKernel(_WARP_SRC, "warp_crops")
        self.basis = cp.asarray(pipe._basis)
        self.mean = cp.asarray(pipe._mean)
        self.triangles = cp.asarray(pipe._triangles)
        self.contour_set = cp.asarray(pipe._contour.vertex_set)
        self.pncc = cp.asarray(pipe._pncc)

    def crops(self, frame_dev, frame_to_crops: list[np.ndarray], size: int | None = None) -> Any:
        """Network input (N, 3, size, size) float32 RGB [0, 1] sampled from the frame under each 2x3
        frame->crop (``size`` default: the crop size S)."""
        cp, s, n = self.cp, self.pipe.size if size is None else int(size), len(frame_to_crops)
        h, w = frame_dev.shape[:2]
        inv = crop_sampling(frame_to_crops)
        out = cp.empty((n, 3, s, s), dtype=cp.float32)
        total = n * s * s
        self.kernel(((total + 255) // 256,), (256,),
                    (frame_dev, np.int32(h), np.int32(w), cp.asarray(inv), np.int32(s), np.int32(n), out))
        return out

    def feedback(self, verts) -> Any:
        """CuPy twin of :func:`rtface.render.feedback.render_feedback` for (B, V, 3) crop-px meshes."""
        import cupyx

        from .render import rasterize

        cp, s, t = self.cp, self.pipe.size, self.triangles
        b, nv = verts.shape[:2]
        r = rasterize(verts, t, s, s, backend="cuda", check_indices=False)
        wv = verts * cp.asarray([1.0, -1.0, 1.0], dtype=verts.dtype)
        e1 = wv[:, t[:, 1]] - wv[:, t[:, 0]]
        e2 = wv[:, t[:, 2]] - wv[:, t[:, 0]]
        fn = cp.cross(e1, e2)  # (B, T, 3)
        vn = cp.zeros((b, nv, 3), dtype=cp.float32)
        for k in range(3):
            for bi in range(b):
                cupyx.scatter_add(vn[bi], t[:, k], fn[bi].astype(cp.float32))
        vn[..., 1] *= -1.0
        vn /= cp.maximum(cp.linalg.norm(vn, axis=-1, keepdims=True), 1e-12)
        attrs = cp.concatenate([vn, cp.broadcast_to(self.pncc, vn.shape)], axis=-1)  # (B, V, 6)
        tri = r.triangle
        ok = tri >= 0
        ids = t[cp.maximum(tri, 0)]  # (B, S, S, 3)
        bidx = cp.arange(b).reshape(b, 1, 1, 1)
        vals = attrs[bidx, ids]  # (B, S, S, 3, 6)
        out = (r.barycentric[..., None] * vals).sum(-2)  # (B, S, S, 6)
        out = cp.where(ok[..., None], out, 0.0)
        n = out[..., :3]
        norm = cp.linalg.norm(n, axis=-1, keepdims=True)
        out[..., :3] = cp.where(norm > 1e-12, n / cp.maximum(norm, 1e-12), 0.0)
        return cp.ascontiguousarray(out.transpose(0, 3, 1, 2).astype(cp.float32))

    def mesh(self, ident, expr, pose) -> Any:
        cp = self.cp
        coeffs = cp.asarray(np.concatenate([ident, expr], 1).astype(np.float32))
        verts = (coeffs @ self.basis + self.mean).reshape(len(ident), -1, 3)
        r = cp.asarray(rotation_matrix(pose[:, :3]).astype(np.float32))
        p = verts @ cp.swapaxes(r, 1, 2)
        pd = cp.asarray(pose.astype(np.float32))
        p[..., 2] += DEPTH_OFFSET_CM
        p *= pd[:, 3, None, None]
        p[..., 0] += pd[:, 4, None]
        p[..., 1] *= -1.0
        p[..., 1] += pd[:, 5, None]
        return p

    def sync(self) -> None:
        """Wait for the GPU work queued so far, when ``Pipeline.sync_timings`` asks for per-stage GPU times."""
        if self.pipe.sync_timings:
            self.cp.cuda.get_current_stream().synchronize()

    def run(self, image, tracks, timings, timestamp, tracker, smoother, n_views: int = 1,
            single: bool = False) -> list[FaceResult]:
        cp, pipe, s, n = self.cp, self.pipe, self.pipe.size, len(tracks)
        self.sync()
        t0 = time.perf_counter()
        frame = cp.asarray(image)  # the frame uploaded once
        crops = pipe._view_crops(frame, tracks, n_views)
        self.sync()
        timings["crop"] = timings.get("crop", 0.0) + _ms(t0)

        t0 = time.perf_counter()
        fb = None
        prev = pipe._feedback_faces(tracks)
        if prev:
            fb = cp.zeros((n, 6, s, s), cp.float32)
            vp = cp.stack([_affine_vertices(tracks[i].frame_to_crop, tracks[i].vertices) for i in prev])
            fb[cp.asarray(prev)] = self.feedback(vp)
        self.sync()
        timings["feedback"] = _ms(t0)

        t0 = time.perf_counter()
        out = pipe._coarse(crops, n_views, fb)
        ident = cp.asnumpy(out["identity"]).astype(np.float32)
        expr = cp.asnumpy(out["expression"]).astype(np.float32)
        pose = cp.asnumpy(out["pose"]).astype(np.float32)
        timings["coarse"] = timings.get("coarse", 0.0) + _ms(t0)

        t0 = time.perf_counter()
        ident, expr, pose, raw = pipe._smooth(tracks, ident, expr, pose, timestamp, smoother)
        verts = self.mesh(ident, expr, pose)
        self.sync()
        timings["mesh"] = _ms(t0)

        maps = detail.run(frame, [t.frame_to_crop for t in tracks], verts, s, pipe.detail_cap(single),
                          self.triangles, pipe.networks.fine, timings, crops=self.crops, backend="cuda",
                          sync=self.sync, mirror=single and detail.MIRROR_IMAGES)
        t0 = time.perf_counter()
        ids = pipe.landmark_ids(cp.asnumpy(verts[:, self.contour_set, 0]))  # synchronises the stream
        lm_crop = cp.asnumpy(verts[cp.arange(len(ids))[:, None], cp.asarray(ids), :2])
        timings["fine"] += _ms(t0)
        return pipe._faces(tracks, ident, expr, pose, verts, maps, image.shape, tracker,
                           landmarks_crop=lm_crop, landmark_ids=ids, raw=raw)


# ---------------------------------------------------------------------------------------------- module API

_PIPELINE_KEYS = {"weights", "backend", "detector", "max_faces", "detect_every", "verify_every", "smoothing",
                  "feedback", "face_model", "threads", "detect_size", "score_threshold", "precision", "color",
                  "views", "detail_cap", "sync_timings"}
_SOURCE_KEYS = ("live", "max_frames", "fps", "queue_size", "decode_threads")
_CACHE: dict[tuple, Pipeline] = {}
_CACHE_LOCK = threading.Lock()


def _cache_key(kw: dict) -> tuple | None:
    items = []
    for k, v in sorted(kw.items()):
        if isinstance(v, os.PathLike):
            v = os.fspath(v)
        if isinstance(v, dict):
            v = tuple(sorted(v.items()))
        try:
            hash(v)
        except TypeError:
            return None
        items.append((k, v))
    return tuple(items)


def _pipeline(kw: dict) -> Pipeline:
    unknown = set(kw) - _PIPELINE_KEYS
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(sorted(unknown))}; Pipeline takes "
                         f"{', '.join(sorted(_PIPELINE_KEYS))}")
    key = _cache_key(kw)
    if key is None:
        return Pipeline(**kw)
    with _CACHE_LOCK:
        pipe = _CACHE.get(key)
        if pipe is None:
            pipe = _CACHE[key] = Pipeline(**kw)
        return pipe


def stream(src: Any, **kw: Any) -> Iterator[FrameResult]:
    """``for frame in rtface.stream(src): ...`` — see :meth:`Pipeline.stream`; other options go to :class:`Pipeline`.

    Source options: ``live``, ``max_frames``, ``fps``, ``queue_size``, ``decode_threads``. ``color="rgb"`` when
    ``src`` is an array or an iterable of RGB arrays (default ``"bgr"``, as OpenCV; files are decoded by rtface
    and need nothing). A new pipeline is built per call (streams hold tracking state); build a
    :class:`Pipeline` once and call its ``stream`` to reuse loaded networks.
    """
    src_kw = {k: kw.pop(k) for k in _SOURCE_KEYS if k in kw}
    unknown = set(kw) - _PIPELINE_KEYS
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(sorted(unknown))} for rtface.stream")
    pipe = Pipeline(**kw)
    return pipe.stream(src, **src_kw)


def reconstruct(image: Any, **kw: Any) -> FrameResult:
    """One image (array (H, W[, C]) or a path to an image file) -> :class:`FrameResult` (no smoothing).

    ``color``: channel order of an array, ``"bgr"`` (default, as OpenCV) or ``"rgb"``; image files are decoded
    by rtface and need nothing. Other options go to :class:`Pipeline`. Pipelines are cached per option set, so
    repeated calls do not reload the networks.
    """
    if isinstance(image, (str, os.PathLike)):
        from .errors import SourceError

        p = Path(image)
        with open_source(p) as source:
            frame = next(iter(source), None)
        if frame is None:
            raise SourceError(f"{p} holds no decodable image")
        image = frame.image
        kw["color"] = "bgr"  # decoded by rtface
    kw.setdefault("smoothing", False)
    return _pipeline(kw)(image)


__all__ = ["COLORS", "DETECT_EVERY", "MAX_FACES", "STAGES", "Pipeline", "reconstruct", "stream"]
