"""YuNet detection: boxes, scores, five points in rtface.crop order, downscaling, errors."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import shared


@pytest.fixture(scope="module")
def detector():
    shared("yunet/face_detection_yunet_2023mar.onnx")
    from rtface.detect import Detector

    return Detector()


@pytest.fixture(scope="module")
def portrait():
    import cv2

    img = cv2.imread(str(shared("faces-labeled/grace_hopper_512x512.jpg")))
    assert img is not None
    return img


def test_finds_the_portrait_face(detector, portrait):
    det = detector(portrait)
    assert len(det) == 1
    (x1, y1, x2, y2), p = det.boxes[0], det.points[0]
    assert det.boxes.dtype == np.float32 and det.points.shape == (1, 5, 2)
    assert 0.6 <= det.scores[0] <= 1.0
    assert 0 <= x1 < x2 <= 512 and 0 <= y1 < y2 <= 512
    assert (x2 - x1) > 100  # a large face in this portrait
    # all five points inside the box
    assert ((p[:, 0] > x1) & (p[:, 0] < x2) & (p[:, 1] > y1) & (p[:, 1] < y2)).all()
    # rtface.crop order: image-left eye, image-right eye, nose, image-left mouth corner, image-right mouth corner
    assert p[0, 0] < p[1, 0] and p[3, 0] < p[4, 0]
    assert max(p[0, 1], p[1, 1]) < p[2, 1] < min(p[3, 1], p[4, 1])


def test_downscaled_detection_agrees_with_full_size(detector, portrait):
    from rtface.detect import Detector

    full = Detector(detect_size=None)(portrait)
    small = Detector(detect_size=160)(portrait)
    assert len(full) == len(small) == 1
    side = full.boxes[0, 2] - full.boxes[0, 0]
    assert np.abs(full.points[0] - small.points[0]).max() < 0.06 * side
    assert np.abs(full.boxes[0] - small.boxes[0]).max() < 0.1 * side


def test_input_size_follows_the_frame(detector, portrait):
    import cv2

    big = cv2.resize(portrait, (900, 700))
    a = detector(big)
    b = detector(portrait)  # size changes back: must still work
    assert len(a) == 1 and len(b) == 1
    assert a.boxes[0, 2] > b.boxes[0, 2]


def test_no_face_and_max_faces(detector, portrait):
    from rtface.detect import Detector

    assert len(detector(np.full((240, 320, 3), 127, np.uint8))) == 0
    tiled = np.hstack([portrait, portrait, portrait])
    assert len(detector(tiled)) == 3
    only = Detector(max_faces=2)(tiled)
    assert len(only) == 2 and only.scores[0] >= only.scores[1]


def test_wrong_input(detector):
    from rtface.errors import InputError

    with pytest.raises(InputError):
        detector(np.zeros((10, 10), np.uint8))
    with pytest.raises(InputError):
        detector(np.zeros((10, 10, 3), np.float32))


def test_iou_and_nms():
    from rtface.detect import box_iou, nms

    a = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 110, 110]], np.float32)
    iou = box_iou(a, a)
    assert np.allclose(np.diag(iou), 1) and abs(iou[0, 1] - 50 / 150) < 1e-6 and iou[0, 2] == 0
    keep = nms(a, np.array([0.5, 0.9, 0.7]), 0.4)
    assert list(keep) == [1, 2, 0]
    assert list(nms(a, np.array([0.5, 0.9, 0.7]), 0.3)) == [1, 2]


def test_tiny_images_give_no_face_and_no_warning(detector):
    import warnings

    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # YuNet's inf/nan rows on a few pixels must not leak a RuntimeWarning
        for h, w in ((8, 8), (1, 1), (2, 3)):
            assert len(detector(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))) == 0
