"""Face detection with YuNet (OpenCV's ``cv2.FaceDetectorYN``, the ONNX file from :mod:`rtface.assets`).

``Detector(...)(image_bgr) -> Detections`` with, for N faces sorted by score (best first):

* ``boxes`` (N, 4) float32 ``x1, y1, x2, y2`` in frame pixels (rtface convention: pixel centres at +0.5, so a
  box edge on pixel boundary ``j`` has coordinate ``j``);
* ``scores`` (N,) float32 in [0, 1];
* ``points`` (N, 5, 2) float32 five landmarks in YuNet order = :mod:`rtface.crop` order (eye on the image's
  left, eye on the image's right, nose tip, mouth corner on the image's left, mouth corner on the right),
  frame pixels with centres at +0.5.

Speed: detection is the most expensive CPU stage of the pipeline, so the frame is first downscaled so that
its longest side is at most ``detect_size`` pixels (320 by default: YuNet finds faces down to about 10 px
there, i.e. 20 px in a 640-wide frame). Large frames are first reduced by a bilinear resize to twice the
target size and then area-averaged to it (0.6 ms for 1080p instead of 2.0 ms for one area resize; the same
faces, boxes within IoU 0.9 on the example clips), and the pipeline runs the full detector only on a
schedule or when tracking is lost (:mod:`rtface.track`). The input size of YuNet is set per frame (frames of
a stream may change size). YuNet applies its own non-maximum suppression (``nms_threshold``); the result is
cut to ``max_faces`` by score.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

from .errors import AssetError, InputError

#: Default score threshold (YuNet's own default 0.9 misses small or turned faces; 0.6 keeps few false hits).
SCORE_THRESHOLD = 0.6
NMS_THRESHOLD = 0.3
DETECT_SIZE = 320
#: Side of the crop that :meth:`Detector.crop_face` checks a tracked face in. 64 px decides like 128 px (98 %
#: of tracked faces on the example clips) at half the cost (0.65 ms instead of 1.5 ms on one core).
VERIFY_SIZE = 64


@dataclass
class Detections:
    """Faces found in one frame, best score first (see the module docstring for units)."""

    boxes: np.ndarray  # (N, 4) float32 xyxy
    scores: np.ndarray  # (N,) float32
    points: np.ndarray  # (N, 5, 2) float32

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``(len(a), len(b))`` of two sets of xyxy boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep: list[int] = []
    iou = box_iou(boxes, boxes)
    suppressed = np.zeros(len(order), bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= iou[i] > threshold
    return np.asarray(keep, dtype=np.int64)


class Detector:
    """YuNet face detector.

    Args:
        model: path of the YuNet ONNX file (default: ``rtface.assets.asset_path("yunet")``, verified).
        score_threshold: minimum detector score of a face.
        nms_threshold: IoU above which the lower-scored of two overlapping faces is dropped.
        max_faces: keep at most this many faces (best scores); None keeps all.
        detect_size: the frame is downscaled so its longest side is at most this (None or 0: full size).
        top_k: candidates kept before NMS.
    """

    def __init__(self, model: str | os.PathLike | None = None, *, score_threshold: float = SCORE_THRESHOLD,
                 nms_threshold: float = NMS_THRESHOLD, max_faces: int | None = None,
                 detect_size: int | None = DETECT_SIZE, top_k: int = 5000) -> None:
        import cv2

        if not hasattr(cv2, "FaceDetectorYN"):
            raise AssetError(f"OpenCV {cv2.__version__} has no FaceDetectorYN (needs OpenCV >= 4.8); "
                             "pip install -U opencv-python-headless")
        if not 0.0 <= float(score_threshold) <= 1.0:
            raise InputError(f"score_threshold must be in [0, 1], got {score_threshold}")
        if max_faces is not None and int(max_faces) < 1:
            raise InputError(f"max_faces must be at least 1 or None, got {max_faces}")
        from .assets import asset_path

        self.model_path = str(asset_path("yunet", model))
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_faces = None if max_faces is None else int(max_faces)
        self.detect_size = int(detect_size) if detect_size else 0
        self._cv2 = cv2
        try:
            self._net = cv2.FaceDetectorYN.create(self.model_path, "", (320, 320), self.score_threshold,
                                                  self.nms_threshold, int(top_k))
        except cv2.error as exc:
            raise AssetError(f"OpenCV could not load the YuNet model {self.model_path}: {exc}") from exc
        self._size: tuple[int, int] | None = None
        self._lock = threading.Lock()  # cv2.FaceDetectorYN keeps state (input size): one call at a time
        self._crop_net = None
        self._top_k = int(top_k)

    def crop_face(self, image: np.ndarray, frame_to_crop: np.ndarray,
                  crop_size: int) -> tuple[float, np.ndarray | None]:
        """The best face inside the crop of ``image`` given by ``frame_to_crop`` (frame -> a ``crop_size`` square;
        resampled here to :data:`VERIFY_SIZE`): its detector score and its five points (5, 2) in the crop's pixels
        (``crop_size`` scale, pixel centres at +0.5); ``(0.0, None)`` when YuNet finds none. Under a
        millisecond: the tracker uses it to check that a tracked face is still there, and still where the crop
        puts it."""
        from .camera import warp_to_crop

        k = VERIFY_SIZE / float(crop_size)
        crop = warp_to_crop(image, np.asarray(frame_to_crop, np.float64) * k, VERIFY_SIZE)
        cv2 = self._cv2
        with self._lock:
            if self._crop_net is None:
                net = cv2.FaceDetectorYN.create(self.model_path, "", (VERIFY_SIZE, VERIFY_SIZE), 0.3,
                                                self.nms_threshold, self._top_k)
                self._crop_net = net
            _, faces = self._crop_net.detect(crop)
        if faces is None or len(faces) == 0:
            return 0.0, None
        best = faces[int(np.argmax(faces[:, 14]))]
        return float(best[14]), (best[4:14].reshape(5, 2).astype(np.float64) + 0.5) / k

    def crop_score(self, image: np.ndarray, frame_to_crop: np.ndarray, crop_size: int) -> float:
        """:meth:`crop_face`'s score alone: 0 when YuNet finds no face in the crop."""
        return self.crop_face(image, frame_to_crop, crop_size)[0]

    def __call__(self, image: np.ndarray) -> Detections:
        """Detect faces in an (H, W, 3) uint8 BGR frame."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InputError("Detector takes an (H, W, 3) uint8 BGR image, got "
                             f"{type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}")
        cv2 = self._cv2
        h, w = image.shape[:2]
        f = 1.0
        small = image
        if self.detect_size and max(h, w) > self.detect_size:
            f = self.detect_size / float(max(h, w))
            sw, sh = max(1, int(round(w * f))), max(1, int(round(h * f)))
            if w > 2 * sw and h > 2 * sh:  # bilinear to twice the size, then area-average (see module doc)
                small = cv2.resize(image, (2 * sw, 2 * sh), interpolation=cv2.INTER_LINEAR)
                small = cv2.resize(small, (sw, sh), interpolation=cv2.INTER_AREA)
            else:
                small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
        sh, sw = small.shape[:2]
        fx, fy = sw / float(w), sh / float(h)  # exact per-axis factors after rounding
        with self._lock:
            if self._size != (sw, sh):
                self._net.setInputSize((sw, sh))
                self._size = (sw, sh)
            _, faces = self._net.detect(small)
        if faces is None or len(faces) == 0:
            return Detections.empty()
        faces = np.asarray(faces, dtype=np.float64).reshape(-1, 15)
        faces = faces[np.isfinite(faces).all(axis=1)]  # YuNet returns inf/nan rows on tiny images (a few px)
        if len(faces) == 0:
            return Detections.empty()
        scale = np.array([fx, fy])
        # cv2 coordinates: pixel centres at integers -> rtface: +0.5; then undo the downscale.
        pts = (faces[:, 4:14].reshape(-1, 5, 2) + 0.5) / scale
        x1y1 = faces[:, 0:2] / scale
        x2y2 = (faces[:, 0:2] + faces[:, 2:4]) / scale
        boxes = np.concatenate([x1y1, x2y2], axis=1)
        scores = faces[:, 14]
        ok = np.isfinite(boxes).all(1) & np.isfinite(pts).reshape(len(pts), -1).all(1) & (scores >= self.score_threshold)
        boxes, pts, scores = boxes[ok], pts[ok], scores[ok]
        keep = nms(boxes, scores, self.nms_threshold)  # YuNet suppresses already; this also sorts by score
        if self.max_faces is not None:
            keep = keep[: self.max_faces]
        return Detections(boxes[keep].astype(np.float32), scores[keep].astype(np.float32),
                          pts[keep].astype(np.float32))


__all__ = ["DETECT_SIZE", "Detections", "Detector", "NMS_THRESHOLD", "SCORE_THRESHOLD", "box_iou", "nms"]
