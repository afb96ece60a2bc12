"""End to end on real clips (first frames only), single images, odd inputs, errors."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import shared

STAGES = {"decode", "detect", "crop", "feedback", "coarse", "mesh", "render", "fine", "total"}


@pytest.fixture(scope="module")
def pipe():
    shared("ict-facekit/FaceXModel.tar.xz")
    shared("yunet/face_detection_yunet_2023mar.onnx")
    from rtface.pipeline import Pipeline

    return Pipeline(backend="cpu", max_faces=4, detect_every=5)


@pytest.fixture(scope="module")
def hamilton(pipe):
    return list(pipe.stream(shared("video/hamilton_640x360.mp4"), max_frames=30))


@pytest.fixture(scope="module")
def portrait():
    import cv2

    return cv2.imread(str(shared("faces-labeled/grace_hopper_512x512.jpg")))


def check_face(face, frame, size):
    assert face.depth.shape == face.coarse_depth.shape == face.mask.shape == (size, size)
    assert face.mask.dtype == bool and face.mask.sum() > 50
    assert np.isfinite(face.depth).all() and np.isfinite(face.coarse_depth).all()
    assert (face.depth[~face.mask] == 0).all() and (face.coarse_depth[~face.mask] == 0).all()
    # depth is measured from a plane behind the head (camera.DEPTH_OFFSET_CM): positive on the whole face
    assert (face.coarse_depth[face.mask] > 0).all() and (face.depth[face.mask] > 0).mean() > 0.99
    assert face.landmarks.shape == (68, 2) and face.vertices.shape[1] == 3
    assert face.identity.shape == (100,) and face.expression.shape == (53,)
    assert face.crop_to_frame.shape == (2, 3) and face.mm_per_pixel > 0
    x1, y1, x2, y2 = face.box
    w, h = x2 - x1, y2 - y1
    lm = face.landmarks
    inside = ((lm[:, 0] > x1 - 0.3 * w) & (lm[:, 0] < x2 + 0.3 * w)
              & (lm[:, 1] > y1 - 0.3 * h) & (lm[:, 1] < y2 + 0.3 * h))
    assert inside.mean() > 0.9


def test_every_frame_has_a_result_with_faces(pipe, hamilton):
    assert [r.index for r in hamilton] == list(range(30))
    ts = [r.timestamp for r in hamilton]
    assert all(b > a for a, b in zip(ts, ts[1:]))
    assert sum(bool(r.faces) for r in hamilton) >= 27
    assert hamilton[0].detected and not all(r.detected for r in hamilton)  # tracking in between
    for r in hamilton:
        assert STAGES <= set(r.timings) and all(v >= 0 for v in r.timings.values())
        assert r.image.shape == (360, 640, 3) and r.image.dtype == np.uint8
        assert len({f.track_id for f in r.faces}) == len(r.faces) <= 4
        for f in r.faces:
            check_face(f, r, pipe.size)


def test_frame_depth(hamilton):
    for r in hamilton[::7]:
        d, m = r.depth, r.mask
        assert d.shape == (360, 640) and d.dtype == np.float32
        assert np.isfinite(d).all() and (d[~m] == 0).all()
        if r.faces:
            assert m.sum() > 100


def test_tracked_faces_keep_ids_and_use_feedback(hamilton):
    ids = [{f.track_id for f in r.faces} for r in hamilton]
    assert ids[1] & ids[2]  # the same face keeps its id
    tracked = [r for r in hamilton if not r.detected and r.faces]
    assert tracked and any(r.timings["feedback"] > 0 for r in tracked)


def test_single_face_clip():
    from rtface.pipeline import Pipeline

    p = Pipeline(backend="cpu", max_faces=1)
    res = list(p.stream(shared("video/dafoe_1280x720.mp4"), max_frames=8))
    assert len(res) == 8 and all(len(r.faces) == 1 for r in res)
    assert len({r.faces[0].track_id for r in res}) == 1
    for r in res:
        check_face(r.faces[0], r, p.size)


def test_frame_without_face(pipe):
    r = pipe(np.full((240, 320, 3), 90, np.uint8))
    assert r.faces == [] and not r.mask.any() and (r.depth == 0).all()
    assert r.timings["coarse"] == 0


def test_grey_and_rgba_input(pipe, portrait):
    import cv2

    grey = cv2.cvtColor(portrait, cv2.COLOR_BGR2GRAY)
    rgba = cv2.cvtColor(portrait, cv2.COLOR_BGR2BGRA)
    for img in (portrait, grey, grey[..., None], rgba, portrait.astype(np.float32) / 255):
        r = pipe(img)
        assert r.image.shape == (512, 512, 3) and len(r.faces) == 1
        check_face(r.faces[0], r, pipe.size)


def test_wrong_inputs(pipe):
    from rtface.errors import InputError

    for bad in (np.zeros((20, 20, 3), np.int32), np.full((20, 20, 3), 3.0, np.float32),
                np.zeros((20, 20, 2), np.uint8), "not an image array".encode(), [[1, 2], [3, 4]]):
        with pytest.raises(InputError):
            pipe(bad)


def test_module_functions(portrait, tmp_path):
    import cv2

    import rtface

    r = rtface.reconstruct(portrait, backend="cpu")
    assert isinstance(r, rtface.FrameResult) and len(r.faces) == 1
    p = tmp_path / "face.png"
    cv2.imwrite(str(p), portrait)
    r2 = rtface.reconstruct(p, backend="cpu")
    assert np.allclose(r2.faces[0].depth, r.faces[0].depth, atol=1e-4)  # same pipeline (cached), same image
    frames = list(rtface.stream([portrait, portrait, np.zeros_like(portrait)], backend="cpu", max_faces=2))
    assert [len(f.faces) for f in frames] == [1, 1, 0]


def test_smoothing_only_for_streams(portrait):
    from rtface.pipeline import Pipeline

    p = Pipeline(backend="cpu", smoothing=True)
    a = p(portrait)
    b = p(portrait)
    assert np.array_equal(a.faces[0].depth, b.faces[0].depth)  # single images are independent


@pytest.mark.gpu
def test_gpu_pipeline_matches_cpu(portrait):
    from rtface.pipeline import Pipeline

    cpu = Pipeline(backend="cpu", smoothing=False)
    gpu = Pipeline(backend="cuda", smoothing=False)
    frames = [portrait] * 3
    for rc, rg in zip(cpu.stream(frames), gpu.stream(frames)):
        assert len(rc.faces) == len(rg.faces) == 1
        fc, fg = rc.faces[0], rg.faces[0]
        assert np.allclose(fc.crop_to_frame, fg.crop_to_frame, atol=1e-3)
        assert (fc.mask != fg.mask).mean() < 0.01
        both = fc.mask & fg.mask
        assert np.abs(fc.depth[both] - fg.depth[both]).max() < 0.05 * np.abs(fc.depth[both]).max() + 0.05
        assert np.allclose(fc.landmarks, fg.landmarks, atol=0.5)
        assert rg.depth.shape == rc.depth.shape
