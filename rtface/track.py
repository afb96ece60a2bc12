"""Face tracking between detections.

Per frame, :meth:`Tracker.step` returns the faces to reconstruct, each a :class:`Track` with a stable id and
the frame -> crop similarity ``frame_to_crop`` (always from the five-point framing of :mod:`rtface.crop`):

* on a **detection frame** (the first frame, every ``detect_every`` frames, or when a track's fit was lost)
  YuNet runs; detections are associated with existing tracks by box IoU (greedy, best first). A matched track
  keeps its landmark-based crop when it agrees with the detection (centre within ``max_shift`` of the crop
  side, scale within ``max_scale_jump``), else it is re-seeded from the detection's five points. New
  detections start new tracks (new ids); tracks that no detection matches end.
* on a **tracking frame** each face's crop comes from its last 68 landmarks
  (:func:`rtface.crop.five_from_68` -> :func:`rtface.crop.crop_from_five`) — no full-frame detector run. With
  ``verify`` (default) YuNet checks each tracked crop on every ``verify_every``-th tracking frame, at
  :data:`rtface.detect.VERIFY_SIZE` px (under a millisecond, :meth:`rtface.detect.Detector.crop_face`); when a
  face scores below ``verify_threshold`` (it left, was occluded, or the crop drifted off it), or the face YuNet
  finds there frames a square more than :data:`VERIFY_MAX_SHIFT` of the crop side away (the fit stayed behind
  on a fast head turn), the full detector runs on this same frame. The crop score becomes the face's
  ``score``.

Detection schedule: the full detector (on the frame downscaled to ``Detector.detect_size``) runs while nothing
is tracked (every frame, so a face that appears is found on its first frame), every ``detect_every`` frames
while faces are tracked (so a face entering beside tracked ones is found within ``detect_every`` frames), and
on the frame after a fit was lost or a verification failed. Everything else is tracking.

After the networks ran, :meth:`Tracker.update` stores each face's new landmarks and checks the fit: it is
**lost** (and the next frame re-detects) when the landmarks are not finite, fall mostly outside the frame, or
the crop they give jumps in scale or position against the current crop. A face's ``box`` on tracking frames
is the last detector box carried along with the crop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .camera import apply_affine, affine_scale, invert_affine
from .crop import crop_from_five, five_from_68
from .detect import Detections, box_iou
from .errors import InputError

#: A tracked crop that moved more than this fraction of the crop side in one frame is treated as lost.
MAX_SHIFT = 0.25
#: ... or whose scale changed by more than this factor (either way).
MAX_SCALE_JUMP = 1.3
#: Detector score a tracked crop must keep (checked on tracking frames with ``Detector.crop_face``).
VERIFY_THRESHOLD = 0.5
#: Fraction of the 68 landmarks that must lie inside the frame.
MIN_INSIDE = 0.6
#: A verified face whose own five points frame a square this far (fraction of the crop side) from the tracked
#: crop is lost. Measured on the example clips, tracked crop vs the detector's on the same frame: 95 % of frames
#: within 0.11 of the side; a fit left behind by a fast turn (dafoe frames 55-59) 0.24-0.57.
VERIFY_MAX_SHIFT = 0.2
#: Tracked crops are verified by the detector on every this many tracking frames.
VERIFY_EVERY = 2


@dataclass
class Track:
    """One tracked face."""

    id: int
    frame_to_crop: np.ndarray  # (2, 3) frame -> crop
    box: np.ndarray  # (4,) xyxy frame px (last detector box, moved with the crop)
    score: float  # last detector score
    box_in_crop: np.ndarray = field(repr=False, default=None)  # (4, 2) detector box corners in crop px
    landmarks: np.ndarray | None = field(repr=False, default=None)  # (68, 2) frame px, last estimate
    vertices: np.ndarray | None = field(repr=False, default=None)  # (V, 3) frame px, last estimate (feedback)
    age: int = 0  # frames since the track started
    since_detect: int = 0  # frames since the detector last confirmed it
    lost: bool = False
    reseeded: bool = True  # crop came from the detector on this frame (no previous estimate applies)

    @property
    def crop_to_frame(self) -> np.ndarray:
        return invert_affine(self.frame_to_crop)


def _box_corners(box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = np.asarray(box, np.float64)
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])


def _bounds(points: np.ndarray) -> np.ndarray:
    p = np.asarray(points, np.float64)
    return np.array([p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()], np.float32)


def crop_agrees(a: np.ndarray, b: np.ndarray, size: int, max_shift: float = MAX_SHIFT,
                max_scale_jump: float = MAX_SCALE_JUMP) -> bool:
    """Whether two frame -> crop similarities frame about the same square (centre and scale)."""
    sa, sb = affine_scale(a), affine_scale(b)
    if not (sa > 0 and sb > 0) or max(sa / sb, sb / sa) > max_scale_jump:
        return False
    c = np.array([size / 2.0, size / 2.0])
    ca = apply_affine(invert_affine(a), c)
    cb = apply_affine(invert_affine(b), c)
    side = size / sa  # crop side in frame px
    return float(np.linalg.norm(ca - cb)) <= max_shift * side


class Tracker:
    """Detect-then-track state machine over a stream (one per stream; not thread-safe).

    Args:
        detector: a callable image -> :class:`rtface.detect.Detections` (``rtface.detect.Detector``).
        size: crop side S in pixels.
        detect_every: run the detector at least every this many frames (1: every frame).
        max_faces: at most this many tracks (best detector scores).
        iou_threshold: minimum box IoU to associate a detection with a track.
        verify, verify_every, verify_threshold: check tracked crops with the detector on every
            ``verify_every``-th tracking frame; a face scoring below ``verify_threshold`` is lost.
    """

    def __init__(self, detector, size: int, *, detect_every: int = 10, max_faces: int = 4,
                 iou_threshold: float = 0.3, max_shift: float = MAX_SHIFT,
                 max_scale_jump: float = MAX_SCALE_JUMP, verify: bool = True,
                 verify_threshold: float = VERIFY_THRESHOLD, verify_every: int = VERIFY_EVERY) -> None:
        if int(detect_every) < 1:
            raise InputError(f"detect_every must be at least 1, got {detect_every}")
        if int(max_faces) < 1:
            raise InputError(f"max_faces must be at least 1, got {max_faces}")
        if int(verify_every) < 1:
            raise InputError(f"verify_every must be at least 1, got {verify_every}")
        self.detector = detector
        self.size = int(size)
        self.detect_every = int(detect_every)
        self.max_faces = int(max_faces)
        self.iou_threshold = float(iou_threshold)
        self.max_shift = float(max_shift)
        self.max_scale_jump = float(max_scale_jump)
        self.verify = bool(verify)
        self.verify_threshold = float(verify_threshold)
        self.verify_every = int(verify_every)
        self._since_verify = 0  # tracking frames since the last verification
        self.tracks: list[Track] = []
        self._next_id = 0
        self._since_detect = None  # frames since the last detector run
        self.detected = False  # whether the last step ran the detector

    def reset(self) -> None:
        self.tracks = []
        self._since_detect = None

    def needs_detection(self) -> bool:
        return (self._since_detect is None or not self.tracks or self._since_detect + 1 >= self.detect_every
                or any(t.lost for t in self.tracks))

    def step(self, image: np.ndarray, detections: Detections | None = None) -> list[Track]:
        """Advance one frame: detect (or use ``detections`` when given) or track; returns the active tracks."""
        h, w = image.shape[:2]
        self.detected = detections is not None or self.needs_detection()
        if self.detected:
            if detections is None:
                detections = self.detector(image)
            self._associate(detections)
            self._since_detect = 0
            self._since_verify = 0
        else:
            self._since_detect += 1
            self._since_verify += 1
            for t in self.tracks:
                t.reseeded = False
                t.since_detect += 1
                self._retrack(t, h, w)
            if self.verify and self._since_verify >= self.verify_every:
                self._since_verify = 0
                if not self._verify(image):
                    self.detected = True  # a tracked face is gone or lost: detect again on this frame
                    self._associate(self.detector(image))
                    self._since_detect = 0
        for t in self.tracks:
            t.age += 1
        return list(self.tracks)

    def _verify(self, image: np.ndarray) -> bool:
        """Check every tracked crop with the detector (cheap, crop-sized); False when a face is missing or
        elsewhere than the crop puts it. Detectors with only ``crop_score`` are checked for presence."""
        face_fn = getattr(self.detector, "crop_face", None)
        score_fn = getattr(self.detector, "crop_score", None)
        if face_fn is None and score_fn is None:
            return True
        ok = True
        for t in self.tracks:
            if face_fn is not None:
                s, pts = face_fn(image, t.frame_to_crop, self.size)
            else:
                s, pts = score_fn(image, t.frame_to_crop, self.size), None
            if s < self.verify_threshold or (pts is not None and not self._framed_alike(t, pts)):
                t.lost = True
                ok = False
            else:
                t.score = float(s)
        return ok

    def _framed_alike(self, t: Track, points_in_crop: np.ndarray) -> bool:
        """Whether the five points the detector found in ``t``'s crop frame about the same square as the crop."""
        try:
            seen = crop_from_five(apply_affine(invert_affine(t.frame_to_crop), points_in_crop), self.size)
        except InputError:
            return False
        return crop_agrees(t.frame_to_crop, seen, self.size, VERIFY_MAX_SHIFT, self.max_scale_jump)

    def _retrack(self, t: Track, h: int, w: int) -> None:
        if t.landmarks is None:
            return
        a = crop_from_five(five_from_68(t.landmarks), self.size)
        t.frame_to_crop = a
        t.box = _bounds(apply_affine(invert_affine(a), t.box_in_crop))

    def _seed(self, t: Track, box: np.ndarray, points: np.ndarray, score: float) -> None:
        a = crop_from_five(np.asarray(points, np.float64), self.size)
        t.frame_to_crop = a
        t.box = np.asarray(box, np.float32)
        t.score = float(score)
        t.box_in_crop = apply_affine(a, _box_corners(box))
        t.landmarks = None
        t.vertices = None
        t.lost = False
        t.reseeded = True
        t.since_detect = 0

    def _associate(self, det: Detections) -> None:
        order = np.argsort(-det.scores, kind="stable")[: self.max_faces * 2]
        boxes, scores, points = det.boxes[order], det.scores[order], det.points[order]
        tracks = self.tracks
        used_t: set[int] = set()
        used_d: set[int] = set()
        kept: list[Track] = []
        if tracks and len(boxes):
            iou = box_iou(np.stack([t.box for t in tracks]), boxes)
            pairs = sorted(((iou[i, j], i, j) for i in range(len(tracks)) for j in range(len(boxes))
                            if iou[i, j] >= self.iou_threshold), reverse=True)
            for _, i, j in pairs:
                if i in used_t or j in used_d:
                    continue
                used_t.add(i)
                used_d.add(j)
                t = tracks[i]
                det_crop = crop_from_five(points[j].astype(np.float64), self.size)
                if t.lost or t.landmarks is None or not crop_agrees(t.frame_to_crop, det_crop, self.size,
                                                                   self.max_shift, self.max_scale_jump):
                    self._seed(t, boxes[j], points[j], scores[j])
                else:  # keep the smoother landmark-based crop; refresh the box and score
                    t.box = boxes[j].astype(np.float32)
                    t.score = float(scores[j])
                    t.box_in_crop = apply_affine(t.frame_to_crop, _box_corners(boxes[j]))
                    t.reseeded = False
                    t.since_detect = 0
                kept.append(t)
        for j in range(len(boxes)):
            if j in used_d or len(kept) >= self.max_faces:
                continue
            t = Track(self._next_id, np.zeros((2, 3)), boxes[j], float(scores[j]))
            self._next_id += 1
            self._seed(t, boxes[j], points[j], scores[j])
            kept.append(t)
        kept.sort(key=lambda t: -t.score)
        self.tracks = kept[: self.max_faces]

    def recrop(self, track: Track, landmarks: np.ndarray, frame_shape: tuple[int, int]) -> bool:
        """Move ``track``'s crop to the one its landmarks give (as for the next frame), on the same frame: a
        single image's second pass. False (crop unchanged) when the estimate fails :meth:`update`'s checks."""
        self.update(track, landmarks, None, frame_shape)
        if track.lost:
            track.lost = False
            return False
        self._retrack(track, *frame_shape[:2])
        return True

    def update(self, track: Track, landmarks: np.ndarray, vertices: np.ndarray | None,
               frame_shape: tuple[int, int]) -> None:
        """Store a face's new estimate (68 landmarks in frame px) and check whether its fit is lost."""
        h, w = frame_shape[:2]
        lm = np.asarray(landmarks, np.float64)
        track.landmarks = None
        track.vertices = None
        track.lost = True
        if lm.shape != (68, 2) or not np.isfinite(lm).all():
            return
        inside = ((lm[:, 0] >= 0) & (lm[:, 0] <= w) & (lm[:, 1] >= 0) & (lm[:, 1] <= h)).mean()
        if inside < MIN_INSIDE:
            return
        try:
            nxt = crop_from_five(five_from_68(lm), self.size)
        except InputError:
            return
        if not crop_agrees(track.frame_to_crop, nxt, self.size, self.max_shift, self.max_scale_jump):
            return
        track.landmarks = lm.astype(np.float32)
        track.vertices = vertices
        track.lost = False


__all__ = ["MAX_SCALE_JUMP", "MAX_SHIFT", "MIN_INSIDE", "VERIFY_EVERY", "VERIFY_MAX_SHIFT", "Track", "Tracker",
           "crop_agrees"]
