"""Test-time views (rtface.views): the mirror and zoom maps, their averaging, and the real CoarseNet through them."""

from __future__ import annotations

import numpy as np
import pytest

from rtface.camera import Pose, project
from tests.conftest import shared


def test_mirror_pose_matches_a_flipped_image(face_model):
    """Projecting the mirrored pose gives the flipped image of the (nearly symmetric) mean face."""
    from rtface.contour import MIRROR_68
    from rtface.views import mirror_pose

    pose = np.array([0.1, 0.5, 0.2, 8.0, 120.0, 130.0])
    width = 300.0
    lm = project(face_model.mean[face_model.landmarks], pose)[:, :2]
    flipped = lm[MIRROR_68].copy()
    flipped[:, 0] = width - flipped[:, 0]
    mirrored = project(face_model.mean[face_model.landmarks], mirror_pose(pose, width))[:, :2]
    assert np.abs(mirrored - flipped).max() < 1.5
    assert np.allclose(mirror_pose(mirror_pose(pose, width), width), pose)


def test_expression_mirror_swaps_sides(face_model):
    from rtface.views import expression_mirror

    m = expression_mirror(face_model.expression_names)
    names = list(face_model.expression_names)
    assert np.array_equal(m[m], np.arange(len(names)))  # an involution
    for i, n in enumerate(names):
        if n.endswith("_L"):
            assert names[m[i]] == n[:-2] + "_R"
    assert names[m[names.index("jawLeft")]] == "jawRight"
    assert names[m[names.index("jawOpen")]] == "jawOpen"


def _view_outputs(pose: np.ndarray, ident: np.ndarray, expr: np.ndarray, size: int, n: int, mirror_idx):
    """What a perfect CoarseNet answers for each view of a face whose crop pose is ``pose``."""
    from rtface.views import VIEWS, mirror_pose, zoom_affine

    outs = []
    for zoom, mirrored in VIEWS[:n]:
        p = Pose.from_vector(pose).transformed(zoom_affine(zoom, size)).to_vector().astype(np.float64)
        e = expr
        if mirrored:
            p = mirror_pose(p, size)
            e = expr[mirror_idx]  # m is an involution: expr[m] is the mirrored face's expression
        outs.append({"identity": ident[None], "expression": e[None], "pose": p[None]})
    return outs


@pytest.mark.parametrize("n", [1, 2, 4, 6])
def test_combine_maps_every_view_back_to_the_crop(face_model, n):
    """Consistent answers in every view's own crop combine into exactly the face's pose and expression."""
    from rtface.views import combine, expression_mirror

    m = expression_mirror(face_model.expression_names)
    rng = np.random.default_rng(0)
    pose = np.array([0.2, -0.6, 0.1, 7.5, 61.0, 70.0])
    ident = rng.normal(size=100).astype(np.float32)
    expr = rng.uniform(0, 1, 53).astype(np.float32)
    out = combine(_view_outputs(pose, ident, expr, 128, n, m), 128, m)
    assert np.allclose(out["pose"][0], pose, atol=1e-4)
    assert np.allclose(out["expression"][0], expr, atol=1e-6)
    assert np.allclose(out["identity"][0], ident)


def test_mean_pose_averages_rotations():
    from rtface.views import mean_pose

    a = np.array([0.1, 0.3, -0.05, 8.0, 60.0, 64.0])
    b = np.array([0.1, -0.3, -0.05, 9.0, 62.0, 66.0])
    m = mean_pose(np.stack([a, b])[:, None])[0]
    assert abs(m[1]) < 1e-9 and abs(m[3] - 8.5) < 1e-9 and np.allclose(m[4:], [61.0, 65.0])
    assert np.allclose(mean_pose(np.stack([a, a])[:, None])[0], a)


def test_check_views():
    from rtface.errors import InputError
    from rtface.views import MAX_VIEWS, check_views

    assert check_views(MAX_VIEWS) == MAX_VIEWS
    for bad in (0, MAX_VIEWS + 1, 2.0, True, "6"):
        with pytest.raises(InputError, match="views"):
            check_views(bad)


@pytest.fixture(scope="module")
def coarse_and_crops(face_model):
    """The shipped CoarseNet (FP32, CPU) and two real face crops framed as the pipeline frames them."""
    import cv2

    from rtface.crop import crop_from_five
    from rtface.detect import Detector
    from rtface.networks import load_networks

    shared("yunet/face_detection_yunet_2023mar.onnx")
    nets = load_networks(backend="cpu", precision="fp32", threads=1)
    crops = {}
    for name in ("grace_hopper_512x512.jpg",):
        img = cv2.imread(str(shared(f"faces-labeled/{name}")))
        five = Detector()(img).points[0]
        a = crop_from_five(five, nets.size)
        crops[name] = (img, a)
    return nets, crops


def test_views_make_the_real_coarsenet_mirror_equivariant(face_model, coarse_and_crops):
    """With the mirror view, the answer for a mirrored crop is exactly the mirrored answer (the same two crops
    go through the net, in the other order)."""
    from rtface.camera import warp_to_crop
    from rtface.networks import preprocess
    from rtface.views import expression_mirror, mirror_pose, run_views

    nets, crops = coarse_and_crops
    s = nets.size
    m = expression_mirror(face_model.expression_names)
    img, a = crops["grace_hopper_512x512.jpg"]
    x = preprocess(warp_to_crop(img, a, s)[None])
    run = nets.coarse.run
    fwd = run_views(run, {1.0: x}, 2, s, m, 16)
    back = run_views(run, {1.0: np.ascontiguousarray(x[..., ::-1])}, 2, s, m, 16)
    assert np.allclose(back["pose"], mirror_pose(fwd["pose"], s), atol=1e-3)
    assert np.allclose(back["expression"], fwd["expression"][:, m], atol=1e-5)
    assert np.allclose(back["identity"], fwd["identity"], atol=1e-5)
    one = run_views(run, {1.0: x}, 1, s, m, 16)
    plain = run(x)
    assert np.allclose(one["pose"], plain["pose"]) and np.allclose(one["expression"], plain["expression"])


def test_views_batch_in_chunks(face_model, coarse_and_crops):
    """Six views of three faces (18 crops) through an engine limited to batch 4 equal one big batch."""
    from rtface.camera import warp_to_crop
    from rtface.networks import preprocess
    from rtface.views import expression_mirror, frame_to_view, run_views, zooms

    nets, crops = coarse_and_crops
    s = nets.size
    m = expression_mirror(face_model.expression_names)
    img, a = crops["grace_hopper_512x512.jpg"]
    shifts = [np.array([[1, 0, dx], [0, 1, dy]]) for dx, dy in ((0, 0), (3, -2), (-4, 1))]
    affs = [np.vstack([sh, [0, 0, 1]])[:2] @ np.vstack([a, [0, 0, 1]]) for sh in shifts]
    views = {z: preprocess(np.stack([warp_to_crop(img, frame_to_view(f, z, s), s) for f in affs])) for z in zooms(6)}
    big = run_views(nets.coarse.run, views, 6, s, m, 16)
    small = run_views(nets.coarse.run, views, 6, s, m, 4)
    for k in big:
        assert big[k].shape[0] == 3 and np.allclose(big[k], small[k], atol=1e-4)


def test_pipeline_views(coarse_and_crops):
    """Single images: two passes (the second re-cropped from the first's landmarks) with six views; streams: one
    pass, one view; a one-frame source is a single image; all of them stay on the face; errors."""
    from rtface.errors import InputError
    from rtface.pipeline import Pipeline
    from rtface.views import MAX_VIEWS

    _, crops = coarse_and_crops
    img, _ = crops["grace_hopper_512x512.jpg"]
    p = Pipeline(backend="cpu", threads=1, smoothing=False)
    assert p.n_views(single=True) == MAX_VIEWS and p.n_views(single=False) == 1
    r = p(img)
    six = r.faces[0]
    assert r.timings["coarse"] > 0 and abs(sum(r.timings[k] for k in ("detect", "crop", "feedback", "coarse", "mesh",
                                                                         "render", "fine", "other")) - r.timings["total"]) < 1e-6
    one = Pipeline(backend="cpu", threads=1, smoothing=False, views=1)(img).faces[0]
    streamed = next(iter(p.stream([img, img]))).faces[0]  # a video's first frame: one pass, one view
    still = next(iter(p.stream([img]))).faces[0]
    assert np.allclose(still.landmarks, six.landmarks, atol=1e-3)
    box = np.sqrt(np.ptp(one.landmarks, axis=0).prod())
    for other in (one, streamed):
        gap = np.linalg.norm(six.landmarks - other.landmarks, axis=1).mean() / box
        assert 0 < gap < 0.03  # the passes and views move the fit a little, not off the face
    with pytest.raises(InputError, match="views"):
        Pipeline(backend="cpu", views=7)
