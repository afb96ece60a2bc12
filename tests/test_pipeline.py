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
    """``size``: the crop size S; the maps are at the face's detail resolution (rtface.detail), S .. the cap."""
    from rtface import detail

    d = face.size
    assert face.depth.shape == face.coarse_depth.shape == face.mask.shape == (d, d)
    assert size <= d <= detail.MAX_CAP and d % detail.MULTIPLE == 0
    assert face.mask.dtype == bool and face.mask.sum() > 50
    assert np.isfinite(face.depth).all() and np.isfinite(face.coarse_depth).all()
    assert (face.depth[~face.mask] == 0).all() and (face.coarse_depth[~face.mask] == 0).all()
    # depth is measured from a plane behind the head (camera.DEPTH_OFFSET_CM): positive on the whole face
    assert (face.coarse_depth[face.mask] > 0).all() and (face.depth[face.mask] > 0).mean() > 0.99
    assert face.landmarks.shape == (68, 2) and face.vertices.shape[1] == 3
    # the two conventions differ only on the jaw (0..16): the inner points are the same vertices at any pose
    assert face.landmarks3d.shape == (68, 3) and face.landmarks3d.dtype == np.float32
    assert np.abs(face.landmarks3d[17:, :2] - face.landmarks[17:]).max() < 1e-2
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


def test_landmarks3d_on_a_frontal_portrait(pipe, portrait):
    """``landmarks3d`` is the face model's fixed landmark vertices of ``face.vertices`` (x, y, z); on a frontal
    face it is ``landmarks`` within a pixel on the inner points and near it on the jaw."""
    f = pipe(portrait).faces[0]
    assert np.array_equal(f.landmarks3d, f.vertices[pipe.model.landmarks])
    assert abs(np.rad2deg(f.pose.angles[1])) < 15  # frontal
    assert np.abs(f.landmarks3d[17:, :2] - f.landmarks[17:]).max() < 1.0
    size = np.sqrt(np.prod(np.ptp(f.landmarks, axis=0)))
    assert np.linalg.norm(f.landmarks3d[:17, :2] - f.landmarks[:17], axis=1).mean() < 0.03 * size


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


def test_large_yaw_pass_behind_its_constant(pipe, portrait, monkeypatch):
    """``LARGE_YAW_PASS`` (off by default): gated on every face, a single image gets one more CoarseNet pass and
    re-crop; the face stays where it was (a frontal face: the extra pass barely moves it)."""
    import rtface.pipeline as pl

    assert pl.LARGE_YAW_PASS is None
    calls = []
    original = pl.Pipeline._recrop

    def counting(self, *args, **kw):
        yaw = original(self, *args, **kw)
        calls.append(yaw)
        return yaw

    monkeypatch.setattr(pl.Pipeline, "_recrop", counting)
    base = pipe(portrait).faces[0]
    assert len(calls) == 1 and calls[0].shape == (1,) and abs(calls[0][0]) < 15  # yaw in degrees
    monkeypatch.setattr(pl, "LARGE_YAW_PASS", (-1.0, 1))
    extra = pipe(portrait).faces[0]
    assert len(calls) == 3
    size = np.sqrt(np.prod(np.ptp(base.landmarks, axis=0)))
    assert np.linalg.norm(extra.landmarks - base.landmarks, axis=1).mean() < 0.02 * size


def test_smoothing_only_for_streams(portrait):
    from rtface.pipeline import Pipeline

    p = Pipeline(backend="cpu", smoothing=True)
    a = p(portrait)
    b = p(portrait)
    assert np.array_equal(a.faces[0].depth, b.faces[0].depth)  # single images are independent


def test_cpu_mesh_kernel_matches_the_model(pipe):
    """The fused mesh kernel on the int16 basis (``quantise_basis``) gives the float64 chain ``project(mean +
    coeffs @ basis, pose)`` to a few micrometres of the model (crop px = cm * scale), for a batch of faces."""
    from rtface.camera import project
    from rtface.pipeline import quantise_basis

    m = pipe.model
    rng = np.random.default_rng(0)
    n = 3
    ident = rng.normal(0, 1, (n, m.num_identity)).astype(np.float32)
    expr = rng.uniform(0, 1, (n, m.num_expression)).astype(np.float32)
    pose = np.array([[0.1, -0.4, 0.05, 5.0, 64, 60], [-0.2, 0.6, -0.1, 4.0, 70, 66], [0, 0, 0, 6.0, 64, 64]],
                    np.float32)
    got = pipe._mesh_cpu(ident, expr, pose)
    verts = m.mean.astype(np.float64) + np.einsum("nk,kvc->nvc", ident.astype(np.float64), m.id_basis) + \
        np.einsum("nk,kvc->nvc", expr.astype(np.float64), m.exp_basis)
    want = project(verts, pose.astype(np.float64))
    scale = pose[:, 3].max()
    assert np.abs(got - want).max() < 2e-4 * scale  # 2 um in crop px
    q, s = quantise_basis(pipe._basis)
    assert q.dtype == np.int16 and s.dtype == np.float32 and np.abs(q).max() == 32767
    err = np.abs(q * s[:, None].astype(np.float64) - pipe._basis)
    assert (err <= 0.5 * s[:, None] * 1.01).all()  # half a step of each mode's scale (+ float32 rounding)


def _clip_frames(name, n):
    from rtface.sources import open_source

    with open_source(shared(f"video/{name}")) as src:
        return [f.image for _, f in zip(range(n), src)]


def test_timings_add_up_to_the_frame_time(pipe):
    """Per-stage ms add up to ``total`` exactly, and with ``wait`` and ``paste`` to the wall time a consumer
    sees per frame (within 10 %, over a decoded clip, decode thread running)."""
    import time

    from rtface.pipeline import STAGES, _WORK

    walls, sums = [], []
    last = None
    for r in pipe.stream(shared("video/hamilton_640x360.mp4"), max_frames=25):
        _ = r.depth  # the consumer reads the frame depth: paste is part of its frame time
        now = time.perf_counter()
        if last is not None:
            walls.append(now - last)
            sums.append(sum(r.timings[k] for k in STAGES) / 1e3)
        last = now
        assert set(STAGES) <= set(r.timings)
        assert abs(sum(r.timings[k] for k in _WORK) - r.timings["total"]) < 1e-6
        assert r.timings["decode"] >= 0 and r.timings["wait"] >= 0
    wall, total = float(np.sum(walls)), float(np.sum(sums))
    assert abs(total - wall) < 0.1 * wall, (total, wall)


def test_a_face_entering_mid_clip_is_found():
    """Blank frames, then a face: found on its first frame (nothing tracked: the detector runs every frame).
    A second face entering beside a tracked one: found within ``detect_every`` frames, without the detector
    running on every frame in between."""
    import cv2

    from rtface.pipeline import Pipeline

    real = _clip_frames("dafoe_1280x720.mp4", 24)
    grey = np.full_like(real[0], 110)
    p = Pipeline(backend="cpu", max_faces=2, detect_every=5, smoothing=False, threads=1)
    res = list(p.stream([grey] * 4 + real[:6]))
    assert [len(r.faces) for r in res[:4]] == [0] * 4 and len(res[4].faces) == 1
    assert all(len(r.faces) == 1 for r in res[4:]) and not all(r.detected for r in res[5:])

    h, w = 360, 640
    tile = [cv2.resize(f, (w // 2, h // 2), interpolation=cv2.INTER_AREA) for f in real]
    enter = 7
    frames = []
    for k, t in enumerate(tile):
        canvas = np.full((h, w, 3), 110, np.uint8)
        canvas[h // 4:h // 4 + h // 2, :w // 2] = t
        if k >= enter:
            canvas[h // 4:h // 4 + h // 2, w // 2:] = t[:, ::-1]  # a second face appears on the right
        frames.append(canvas)
    res = list(p.stream(frames))
    assert all(len(r.faces) >= 1 for r in res)
    found = next(k for k, r in enumerate(res) if len(r.faces) == 2)
    assert enter <= found < enter + p.detect_every
    assert sum(r.detected for r in res[1:found]) < found - 1  # tracked in between, not detected every frame
    assert len(res[-1].faces) == 2 and len({f.track_id for f in res[-1].faces}) == 2


def test_rgb_input(pipe, portrait, tmp_path):
    """``color="rgb"`` converts caller arrays once on entry: the same result as the BGR image."""
    import cv2

    from rtface.errors import InputError
    from rtface.pipeline import Pipeline

    rgb = np.ascontiguousarray(portrait[..., ::-1])
    before = rgb.copy()
    p = Pipeline(backend="cpu", max_faces=4, detect_every=5, color="rgb")
    a, b = pipe(portrait), p(rgb)
    assert np.array_equal(rgb, before)  # the caller's array is not touched
    assert np.array_equal(b.image, portrait)  # results hold the frame in BGR
    assert len(a.faces) == len(b.faces) == 1 and np.array_equal(a.faces[0].depth, b.faces[0].depth)
    rgba = cv2.cvtColor(portrait, cv2.COLOR_BGR2RGBA)
    assert np.array_equal(p(rgba).faces[0].depth, a.faces[0].depth)
    s_rgb = [r.faces[0].depth for r in p.stream([rgb, rgb])]
    s_bgr = [r.faces[0].depth for r in pipe.stream([portrait, portrait])]
    assert all(np.allclose(x, y) for x, y in zip(s_rgb, s_bgr))
    path = tmp_path / "p.png"
    cv2.imwrite(str(path), portrait)  # files are decoded by rtface (BGR), whatever color says
    assert np.allclose(next(iter(p.stream(path))).faces[0].depth, a.faces[0].depth, atol=1e-3)  # one frame: an image
    import rtface

    assert np.array_equal(rtface.reconstruct(rgb, backend="cpu", color="rgb").faces[0].depth, a.faces[0].depth)
    with pytest.raises(InputError, match="color"):
        Pipeline(backend="cpu", color="RGBA")


def test_feedback_follows_the_network(portrait, tmp_path):
    """feedback=None: off for the shipped image-only CoarseNet, on for one with the feedback input (here one that
    ignores it, so both give the same fit); feedback=True with an image-only net is an error."""
    pytest.importorskip("onnx")
    from rtface.errors import InputError
    from rtface.networks import load_manifest
    from rtface.pipeline import Pipeline
    from tests.weights_edit import feedback_weights

    shipped = Pipeline(backend="cpu", smoothing=False, threads=1, precision="fp32")
    assert shipped.feedback == shipped.networks.coarse.takes_feedback
    assert not shipped.feedback  # the released CoarseNet takes the image alone
    d = feedback_weights(load_manifest()["_dir"], tmp_path / "w")
    fb = Pipeline(d, backend="cpu", smoothing=False, threads=1)
    assert fb.feedback and fb.networks.coarse.takes_feedback
    assert fb.n_views(single=True) == 1  # mirrored and zoomed views have no previous estimate to feed back
    with pytest.raises(InputError, match="views"):
        Pipeline(d, backend="cpu", views=2)
    results = list(zip(fb.stream([portrait] * 3), shipped.stream([portrait] * 3)))
    for rf, rs in results:
        assert np.allclose(rf.faces[0].landmarks, rs.faces[0].landmarks, atol=1e-3)
        assert rs.timings["feedback"] < 1.0  # nothing rendered for the image-only net
    assert results[-1][0].timings["feedback"] > 0  # the feedback net's previous estimate was rendered
    with pytest.raises(InputError, match="feedback"):
        Pipeline(backend="cpu", feedback=True)


def test_pipeline_option_errors():
    from rtface.errors import InputError
    from rtface.pipeline import Pipeline

    for kw in ({"verify_every": 0}, {"feedback": "yes"}, {"precision": "int4"}, {"sync_timings": "yes"}):
        with pytest.raises(InputError):
            Pipeline(backend="cpu", **kw)


def test_tracker_crops_from_the_unsmoothed_estimate(portrait):
    """On a stream the output is smoothed, the tracker is not: after a sudden jump of the face the next crop
    comes from the networks' own estimate, the output lags behind it."""
    from rtface.pipeline import Pipeline

    img = np.asarray(portrait)
    shift = img.shape[1] // 8
    moved = np.roll(img, shift, axis=1)
    p = Pipeline(backend="cpu", smoothing=True, detect_every=100, threads=1)
    p.step(img, 0, 0.0)
    out = p.step(moved, 1, 1 / 30).faces[0].landmarks3d[:, :2]
    tracked = p._tracker.tracks[0].landmarks
    raw = Pipeline(backend="cpu", smoothing=False, detect_every=100, threads=1)
    raw.step(img, 0, 0.0)
    unsmoothed = raw.step(moved, 1, 1 / 30).faces[0].landmarks3d[:, :2]  # the tracker keeps the fixed vertices
    size = np.sqrt(np.prod(np.ptp(unsmoothed, axis=0)))
    assert np.linalg.norm(tracked - unsmoothed, axis=1).mean() < 0.01 * size
    assert np.linalg.norm(out - unsmoothed, axis=1).mean() > 0.02 * size  # the smoothed output lags
