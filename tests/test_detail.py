"""The detail stage at the face's own resolution (rtface.detail): sizes, transforms, bad inputs, and the shipped
FineNet on held-out faces in the frame."""

from __future__ import annotations

import numpy as np
import pytest

from rtface import detail
from rtface.camera import affine_scale, apply_affine, invert_affine
from rtface.errors import InputError
from tests.conftest import shared


def _affine(frame_px_per_crop_px: float, x0: float = 10.0, y0: float = 20.0) -> np.ndarray:
    s = 1.0 / frame_px_per_crop_px
    return np.array([[s, 0.0, -x0 * s], [0.0, s, -y0 * s]])


def test_detail_size_follows_the_face_up_to_the_cap():
    assert detail.detail_size(_affine(1.0), 128, 384) == 128  # as large as the crop
    assert detail.detail_size(_affine(0.5), 128, 384) == 128  # smaller than the crop: never below S
    assert detail.detail_size(_affine(1.3), 128, 384) == 176  # 166.4 rounded up to a multiple of 16
    assert detail.detail_size(_affine(3.4), 128, 384) == 384  # a 1080p talking head: capped
    assert detail.detail_size(_affine(3.4), 128, 256) == 256
    for k in np.linspace(0.2, 5.0, 37):
        d = detail.detail_size(_affine(k), 128, 512)
        assert d % detail.MULTIPLE == 0 and 128 <= d <= 512


def test_degenerate_transforms_give_the_crop_size():
    assert detail.detail_size(np.zeros((2, 3)), 128, 384) == 128
    assert detail.detail_size(np.full((2, 3), np.nan), 128, 384) == 128


def test_scale_affine_keeps_the_square_of_the_frame():
    a = _affine(2.5)
    d = detail.scale_affine(a, 3.0)
    assert np.isclose(affine_scale(d), 3.0 * affine_scale(a))
    # the crop's corners and the detail crop's corners are the same frame points
    corners = np.array([[0.0, 0.0], [128.0, 128.0]])
    assert np.allclose(apply_affine(invert_affine(a), corners), apply_affine(invert_affine(d), corners * 3.0))


@pytest.mark.parametrize("cap", [100, 130, 1024, 384.0, True, "384"])
def test_bad_caps_are_refused(cap):
    with pytest.raises(InputError, match="detail cap"):
        detail.check_cap(cap, 128)


def test_size_groups_batch_equal_sizes():
    assert detail.size_groups([128, 256, 128, 384]) == {128: [0, 2], 256: [1], 384: [3]}


class _Recording:
    """The shipped FineNet, recording the sizes the detail stage runs it at."""

    def __init__(self):
        from rtface.networks import load_networks

        self.fine = load_networks(backend="cpu", threads=1).fine
        self.any_size = self.fine.any_size
        self.sizes = []

    def run(self, images, coarse, mask):
        self.sizes.append(images.shape)
        return self.fine.run(images, coarse, mask)


def _disc_mesh(n: int = 24, radius: float = 40.0, centre: float = 64.0, z: float = 30.0):
    """A flat disc of triangles (crop px) and its triangles."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    v = np.concatenate([[[centre, centre, z]], np.stack([centre + radius * np.cos(t), centre + radius * np.sin(t),
                                                          np.full(n, z)], 1)]).astype(np.float32)
    tri = np.array([[0, 1 + i, 1 + (i + 1) % n] for i in range(n)], np.int32)
    return v, tri


def test_run_renders_at_each_faces_resolution_and_empties_a_non_finite_mesh():
    v, tri = _disc_mesh()
    verts = np.stack([v, v, v])
    verts[2, 5, 0] = np.nan  # a broken fit: no crash, an empty face
    image = np.full((600, 800, 3), 90, np.uint8)
    affines = [_affine(1.0), _affine(2.9), _affine(2.9)]
    fine, timings = _Recording(), {}
    maps = detail.run(image, affines, verts, 128, 384, tri, fine, timings)
    assert [m.depth.shape for m in maps] == [(128, 128), (384, 384), (384, 384)]
    assert sorted(s[-1] for s in fine.sizes) == [128, 384]  # one FineNet batch per size
    assert maps[0].mask.sum() > 0.8 * np.pi * 40**2 and not maps[2].mask.any() and (maps[2].depth == 0).all()
    # the same disc at 3x the resolution: 9x the pixels, depth (px of the map) 3x
    assert np.isclose(maps[1].mask.sum() / maps[0].mask.sum(), 9.0, rtol=0.03)
    assert np.allclose(maps[1].coarse[maps[1].mask], 90.0, rtol=1e-5)
    assert maps[1].ratio == 3.0 and {"crop", "render", "fine"} <= set(timings)


def test_mirror_averages_the_relief_of_the_crop_and_of_its_mirror_image():
    from rtface.render import rasterize

    v, tri = _disc_mesh()
    image = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    fine = _Recording()
    a = _affine(1.5)
    both = detail.run(image, [a], v[None], 128, 384, tri, fine, {}, mirror=True)[0]
    assert fine.sizes[-1][0] == 2  # one batch: the crop and its mirror
    d = both.depth.shape[0]
    from rtface.networks import crop_inputs

    crop = crop_inputs(image, [detail.scale_affine(a, d / 128)], d)
    r = rasterize(v[None] * np.float32(d / 128), tri, d, d, backend="cpu")
    z, m = np.asarray(r.depth), np.asarray(r.mask).astype(np.float32)
    relief = fine.run(crop, z, m) - z
    mirrored = fine.run(np.ascontiguousarray(crop[..., ::-1]), np.ascontiguousarray(z[..., ::-1]),
                        np.ascontiguousarray(m[..., ::-1])) - z[..., ::-1]
    assert np.allclose(both.depth, (z + 0.5 * (relief + mirrored[..., ::-1]))[0], atol=1e-4)
    assert not np.allclose(relief, mirrored[..., ::-1], atol=1e-4)  # the two runs differ: the mirror is a real view


# ------------------------------------------------------------------ the shipped FineNet, end to end (assets needed)


@pytest.fixture(scope="module")
def model():
    shared("ict-facekit/FaceXModel.tar.xz")
    from rtface import FaceModel

    return FaceModel.load()


@pytest.fixture(scope="module")
def pipe(model):
    shared("yunet/face_detection_yunet_2023mar.onnx")
    from rtface.pipeline import Pipeline

    p = Pipeline(backend="cpu", face_model=model, max_faces=1)
    if not p.networks.fine.any_size:
        pytest.skip("the weights' FineNet runs at the crop size only")
    return p


@pytest.fixture(scope="module")
def closeups(model):
    """One held-out close-up of each kind (benchmarks.detailsets: a renderer the networks never saw), in a frame."""
    from benchmarks.detail import frame_set

    return {kind: frame_set(model, kind, "closeup", 1, seed=0, cache=False) for kind in ("detail", "albedo")}


def _relief_score(pipe, s):
    from benchmarks.relief import ReliefScore

    r = pipe(s["frame"][0])
    assert len(r.faces) == 1 and r.faces[0].size > pipe.size  # the close-up's detail runs above the crop size
    sc = ReliefScore()
    sc.add(np.where(r.mask, r.depth - r.coarse_depth, 0), s["detail"][0], r.mask, s["mask"][0],
           float(s["mm_per_px"][0]))
    return sc.result()


def test_known_detail_is_recovered_in_the_frame_depth(pipe, closeups):
    d = _relief_score(pipe, closeups["detail"])
    assert d["correlation"] > 0.3 and d["explained"] > 0.05, d


def test_painted_albedo_gives_little_relief(pipe, closeups):
    d = _relief_score(pipe, closeups["detail"])
    a = _relief_score(pipe, closeups["albedo"])
    assert a["relief_rms_mm"] < 0.5 * d["true_rms_mm"], (a, d)


def test_frame_depth_of_a_large_face_is_rendered_at_the_frames_resolution(pipe, model):
    """No crop-pixel steps: the frame's coarse depth of a large face is the mesh as rasterised in the frame itself
    (up to interpolation), against a 128 px map scaled up, which is off by whole facets."""
    import cv2

    from rtface.pipeline import Pipeline
    from rtface.render import rasterize

    img = cv2.imread(str(shared("faces-labeled/grace_hopper_512x512.jpg")))
    img = cv2.resize(img, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    errors = {}
    for p in (pipe, Pipeline(backend="cpu", face_model=model, max_faces=1, detail_cap=128)):
        r = p(img)
        face = r.faces[0]
        direct = rasterize(face.vertices, model.triangles, r.height, r.width, backend="cpu")
        inner = cv2.erode(direct.mask.astype(np.uint8) & r.mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        errors[face.size] = np.percentile(np.abs(r.coarse_depth - np.asarray(direct.depth))[inner], [50, 90])
    big = max(errors)
    assert big == detail.IMAGE_CAP and 128 in errors
    assert errors[big][0] < 0.05 and errors[big][1] < 0.2  # frame px (measured 0.014, 0.074)
    assert errors[128][1] > 3 * errors[big][1]  # (measured 0.53)


def test_finenet_agrees_with_itself_at_two_resolutions(pipe, closeups):
    """The relief of one face at D and at D / 2, compared at D / 2 after a blur both resolve."""
    import cv2

    from rtface.networks import crop_inputs
    from rtface.render import rasterize

    frame = closeups["detail"]["frame"][0]
    face = pipe(frame).faces[0]
    reliefs = {}
    for d in (face.size, face.size // 2):
        ratio = d / face.size
        a = detail.scale_affine(face.frame_to_crop, ratio)
        crop = crop_inputs(frame, [a], d)
        ras = rasterize(face.crop_vertices[None] * np.float32(ratio), pipe.model.triangles, d, d, backend="cpu")
        depth = pipe.networks.fine.run(crop, ras.depth, ras.mask.astype(np.float32))[0]
        rel = np.where(ras.mask[0], depth - ras.depth[0], 0.0) / ratio  # px of the D map
        reliefs[d] = (rel, ras.mask[0])
    (hi, m_hi), (lo, m_lo) = reliefs[face.size], reliefs[face.size // 2]
    hi = cv2.resize(hi, lo.shape[::-1], interpolation=cv2.INTER_AREA)
    m = m_lo & (cv2.resize(m_hi.astype(np.float32), lo.shape[::-1], interpolation=cv2.INTER_AREA) > 0.99)
    a, b = (cv2.GaussianBlur(x, (0, 0), 1.5)[m] for x in (hi, lo))
    assert np.corrcoef(a, b)[0, 1] > 0.5
    assert 0.4 < np.std(b) / np.std(a) < 2.5


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 5, 3), (40, 40, 4), (64, 64)])
def test_tiny_and_odd_frames_give_an_empty_or_full_result(pipe, shape):
    r = pipe(np.full(shape, 128, np.uint8))
    assert r.depth.shape == shape[:2] and np.isfinite(r.depth).all()


def test_a_face_larger_than_the_frame_gives_finite_maps(pipe):
    import cv2

    img = cv2.imread(str(shared("faces-labeled/grace_hopper_512x512.jpg")))
    zoom = cv2.resize(img[60:360, 120:420], (720, 720))  # the face overflows the frame
    r = pipe(zoom)
    for f in r.faces:
        assert f.size <= detail.IMAGE_CAP and np.isfinite(f.depth).all() and np.isfinite(r.depth).all()


def test_finenet_refuses_a_nan_coarse_depth(pipe):
    d = 128
    depth = np.full((1, d, d), 50.0, np.float32)
    depth[0, 10, 10] = np.nan
    with pytest.raises(InputError, match="NaN"):
        pipe.networks.fine.run(np.zeros((1, 3, d, d), np.float32), depth, np.ones((1, d, d), np.float32))
