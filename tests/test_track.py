"""Tracker: detection schedule, IoU association, stable ids, fit loss, crops from landmarks."""

from __future__ import annotations

import numpy as np
import pytest

from rtface.crop import TEMPLATE_5, crop_from_five
from rtface.detect import Detections
from rtface.errors import InputError
from rtface.track import Tracker, crop_agrees

S = 128


def face(cx, cy, side=80.0, score=0.9):
    """A detection whose five points sit on the template scaled to a square of `side` at (cx, cy)."""
    pts = (TEMPLATE_5 - 0.5) * side * 0.9 + [cx, cy]
    box = [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]
    return box, pts, score


class FakeDetector:
    def __init__(self, *faces_per_call):
        self.calls = 0
        self.script = list(faces_per_call)

    def __call__(self, image):
        faces = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if not faces:
            return Detections.empty()
        b, p, s = zip(*faces)
        return Detections(np.array(b, np.float32), np.array(s, np.float32), np.array(p, np.float32))


def landmarks_for(track):
    """68 landmarks whose five points map exactly onto the template in the track's crop."""
    from rtface.camera import apply_affine, invert_affine

    lm = np.zeros((68, 2))
    five = apply_affine(invert_affine(track.frame_to_crop), TEMPLATE_5 * S)
    lm[36:42] = five[0]
    lm[42:48] = five[1]
    lm[30] = five[2]
    lm[48] = five[3]
    lm[54] = five[4]
    lm[~np.isin(np.arange(68), [30, 48, 54, *range(36, 48)])] = five.mean(0)
    return lm


IMG = np.zeros((360, 640, 3), np.uint8)


def test_detection_schedule_and_stable_ids():
    det = FakeDetector([face(200, 150)])
    tr = Tracker(det, S, detect_every=3)
    ids = []
    for k in range(7):
        tracks = tr.step(IMG)
        assert len(tracks) == 1
        ids.append(tracks[0].id)
        for t in tracks:
            tr.update(t, landmarks_for(t), None, IMG.shape)
    assert len(set(ids)) == 1
    assert det.calls == 3  # frames 0, 3, 6


def test_crop_follows_landmarks_between_detections():
    det = FakeDetector([face(200, 150)])
    tr = Tracker(det, S, detect_every=100)
    (t,) = tr.step(IMG)
    moved = landmarks_for(t) + [5.0, 3.0]
    tr.update(t, moved, None, IMG.shape)
    (t2,) = tr.step(IMG)
    assert not tr.detected
    expected = crop_from_five(np.array([moved[36:42].mean(0), moved[42:48].mean(0), moved[30], moved[48],
                                        moved[54]]), S)
    assert np.allclose(t2.frame_to_crop, expected)
    assert np.allclose(t2.box, np.array([160, 110, 240, 190]) + [5, 3, 5, 3], atol=1e-3)


def test_lost_fit_triggers_redetection():
    det = FakeDetector([face(200, 150)])
    tr = Tracker(det, S, detect_every=100)
    (t,) = tr.step(IMG)
    tr.update(t, landmarks_for(t) + 1000.0, None, IMG.shape)  # landmarks leave the frame
    assert t.lost
    tr.step(IMG)
    assert tr.detected and det.calls == 2
    (t,) = tr.tracks
    assert not t.lost and t.reseeded and t.id == 0  # same face, same id, crop re-seeded
    lm = landmarks_for(t)
    c = lm.mean(0)
    tr.update(t, (lm - c) * 2.0 + c, None, IMG.shape)  # scale jump
    assert t.lost
    tr.update(t, np.full((68, 2), np.nan), None, IMG.shape)
    assert t.lost


def test_association_new_faces_and_ended_tracks():
    det = FakeDetector([face(200, 150)], [face(205, 152), face(450, 200, score=0.95)], [face(452, 201)], [])
    tr = Tracker(det, S, detect_every=1, max_faces=4)
    (a,) = tr.step(IMG)
    tracks = tr.step(IMG)
    assert sorted(t.id for t in tracks) == [0, 1]
    assert tracks[0].id == 1  # sorted by score
    tracks = tr.step(IMG)
    assert [t.id for t in tracks] == [1]
    assert tr.step(IMG) == []  # the face is gone: its track ends


def test_max_faces_and_arguments():
    det = FakeDetector([face(100, 100, score=0.7), face(300, 100, score=0.9), face(500, 100, score=0.8)])
    tr = Tracker(det, S, max_faces=2)
    tracks = tr.step(IMG)
    assert [round(t.score, 2) for t in tracks] == [0.9, 0.8]
    with pytest.raises(InputError):
        Tracker(det, S, detect_every=0)
    with pytest.raises(InputError):
        Tracker(det, S, max_faces=0)


def test_crop_agrees():
    a = crop_from_five(face(200, 150)[1], S)
    assert crop_agrees(a, a, S)
    assert not crop_agrees(a, crop_from_five(face(260, 150)[1], S), S)
    assert not crop_agrees(a, crop_from_five(face(200, 150, side=130)[1], S), S)


def test_verification_redetects_when_a_tracked_face_vanishes():
    class Verifying(FakeDetector):
        crop_scores = [0.9, 0.1]

        def crop_score(self, image, frame_to_crop, size):
            assert size == S
            return self.crop_scores.pop(0) if self.crop_scores else 0.9

    det = Verifying([face(200, 150)], [])
    tr = Tracker(det, S, detect_every=100, verify_every=1)
    (t,) = tr.step(IMG)
    tr.update(t, landmarks_for(t), None, IMG.shape)
    (t,) = tr.step(IMG)  # verified (0.9): tracked
    assert not tr.detected and t.score == pytest.approx(0.9)
    tr.update(t, landmarks_for(t), None, IMG.shape)
    assert tr.step(IMG) == [] and tr.detected  # verification failed: detector ran, the face is gone


def test_verification_schedule():
    class Counting(FakeDetector):
        verified = 0

        def crop_score(self, image, frame_to_crop, size):
            self.verified += 1
            return 0.9

    det = Counting([face(200, 150)])
    tr = Tracker(det, S, detect_every=6, verify_every=2)
    for _ in range(12):
        for t in tr.step(IMG):
            tr.update(t, landmarks_for(t), None, IMG.shape)
    # detector on frames 0 and 6; verification on the 2nd and 4th tracking frame after each (2, 4, 8, 10)
    assert det.calls == 2 and det.verified == 4
    with pytest.raises(InputError):
        Tracker(det, S, verify_every=0)


def test_recrop_moves_the_crop_on_the_same_frame():
    """A single image's second pass: the crop moves to the one the landmarks give, without a new frame; an
    estimate that fails the checks leaves the detector's crop (and the track usable)."""
    det = FakeDetector([face(200, 150)])
    tr = Tracker(det, S, detect_every=1)
    (t,) = tr.step(IMG)
    start = t.frame_to_crop.copy()
    moved = landmarks_for(t) + [4.0, -2.0]
    assert tr.recrop(t, moved, IMG.shape)
    expected = crop_from_five(np.array([moved[36:42].mean(0), moved[42:48].mean(0), moved[30], moved[48],
                                        moved[54]]), S)
    assert np.allclose(t.frame_to_crop, expected) and not t.lost
    assert det.calls == 1
    (u,) = Tracker(FakeDetector([face(200, 150)]), S).step(IMG)
    assert not tr.recrop(u, landmarks_for(u) + 1000.0, IMG.shape)
    assert np.allclose(u.frame_to_crop, start) and not u.lost


def test_verification_redetects_a_fit_left_behind():
    """A face still in the tracked crop but framed elsewhere (the fit stayed behind on a fast turn) is lost and
    re-detected on the same frame; one where the crop puts it stays tracked."""
    from rtface.track import VERIFY_MAX_SHIFT

    class Verifying(FakeDetector):
        offsets = [0.0, 0.4 * S]

        def crop_face(self, image, frame_to_crop, size):
            return 0.9, TEMPLATE_5 * size + [self.offsets.pop(0), 0.0]

    det = Verifying([face(200, 150)], [face(260, 150)])
    tr = Tracker(det, S, detect_every=100, verify_every=1)
    (t,) = tr.step(IMG)
    tr.update(t, landmarks_for(t), None, IMG.shape)
    (t,) = tr.step(IMG)  # the face is where the crop puts it
    assert not tr.detected and det.calls == 1
    tr.update(t, landmarks_for(t), None, IMG.shape)
    (t,) = tr.step(IMG)  # 0.4 of the crop side away: re-detected, re-seeded there
    assert 0.4 > VERIFY_MAX_SHIFT and tr.detected and det.calls == 2 and t.reseeded
    assert np.allclose(t.frame_to_crop, crop_from_five(face(260, 150)[1], S))
