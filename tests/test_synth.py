"""Synthetic faces (rtface.synth): contract shapes, determinism and ground-truth consistency."""

from __future__ import annotations

import numpy as np
import pytest

from rtface import camera, crop
from rtface.errors import InputError
from rtface.render import rasterize

S = 96


@pytest.fixture(scope="module")
def faces(face_model):
    from rtface import synth

    return synth.batch(face_model, 24, seed=11, size=S, detail=True)


def test_batch_shapes_and_dtypes(face_model, faces):
    from rtface import synth

    n, v = 24, face_model.num_vertices
    expected = {
        "image": ((n, S, S, 3), np.uint8), "identity": ((n, 100), np.float32), "expression": ((n, 53), np.float32),
        "pose": ((n, 6), np.float32), "vertices": ((n, v, 3), np.float32), "depth": ((n, S, S), np.float32),
        "coarse_depth": ((n, S, S), np.float32), "detail": ((n, S, S), np.float32), "mask": ((n, S, S), bool),
        "normals": ((n, S, S, 3), np.float32), "landmarks": ((n, 68, 2), np.float32),
        "albedo": ((n, S, S, 3), np.float32), "sh": ((n, 9, 3), np.float32),
    }
    assert set(faces) == set(expected) == set(synth.FIELDS)
    for k, (shape, dtype) in expected.items():
        assert faces[k].shape == shape, k
        assert faces[k].dtype == dtype, k
    assert ((faces["expression"] >= 0) & (faces["expression"] <= 1)).all()
    assert faces["albedo"].min() >= 0 and faces["albedo"].max() <= 1
    assert all(np.isfinite(faces[k]).all() for k in expected if k != "image")


def test_sample_returns_synthface(face_model):
    from rtface import synth

    f = synth.sample(face_model, np.random.default_rng(5), size=64, detail=False)
    assert isinstance(f, synth.SynthFace)
    assert f.image.shape == (64, 64, 3) and f.image.dtype == np.uint8
    assert (f.detail == 0).all()
    np.testing.assert_array_equal(f.depth, f.coarse_depth)


def test_deterministic_by_seed(face_model):
    from rtface import synth

    a = synth.batch(face_model, 3, seed=4, size=64)
    b = synth.batch(face_model, 3, seed=4, size=64)
    c = synth.batch(face_model, 3, seed=5, size=64)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["image"], c["image"])
    f1 = synth.sample(face_model, np.random.default_rng(9), size=64)
    f2 = synth.sample(face_model, np.random.default_rng(9), size=64)
    np.testing.assert_array_equal(f1.image, f2.image)
    np.testing.assert_array_equal(f1.depth, f2.depth)
    # the first faces of a batch do not depend on its length
    d = synth.batch(face_model, 2, seed=4, size=64)
    np.testing.assert_array_equal(d["image"], a["image"][:2])


def test_mask_and_depth_consistency(faces):
    m = faces["mask"]
    np.testing.assert_array_equal(m, faces["coarse_depth"] != 0)
    assert (faces["depth"][~m] == 0).all() and (faces["detail"][~m] == 0).all()
    np.testing.assert_allclose(faces["detail"], faces["depth"] - faces["coarse_depth"], atol=1e-5)
    nrm = np.linalg.norm(faces["normals"], axis=-1)
    np.testing.assert_allclose(nrm[m], 1.0, atol=1e-4)
    assert (nrm[~m] == 0).all()
    assert (faces["albedo"][~m] == 0).all()


def test_pose_projects_model_vertices(face_model, faces):
    for i in range(0, 24, 5):
        v = face_model.vertices(faces["identity"][i], faces["expression"][i])
        proj = camera.project(v, faces["pose"][i])
        np.testing.assert_allclose(proj, faces["vertices"][i], atol=2e-3)
        np.testing.assert_allclose(faces["landmarks"][i], faces["vertices"][i][face_model.landmarks, :2], atol=1e-5)


def test_coarse_depth_is_the_rendered_mesh(face_model, faces):
    for i in range(0, 24, 6):
        r = rasterize(faces["vertices"][i], face_model.triangles, S, S)
        np.testing.assert_array_equal(r.mask, faces["mask"][i])
        np.testing.assert_allclose(faces["coarse_depth"][i][r.mask], r.depth[r.mask], atol=1e-5)
        no_detail = faces["mask"][i] & (faces["detail"][i] == 0)
        np.testing.assert_allclose(faces["depth"][i][no_detail], r.depth[no_detail], atol=1e-5)


def test_framing_like_the_pipeline(faces):
    yaw = np.degrees(np.abs(faces["pose"][:, 1]))
    frontal = yaw < 30
    assert frontal.sum() >= 5
    lm = faces["landmarks"][frontal]
    assert ((lm >= 0) & (lm <= S)).all(), "landmarks of near-frontal faces lie inside the crop"
    five = crop.five_from_68(lm)
    err = np.linalg.norm(five - crop.TEMPLATE_5 * S, axis=-1)
    # jitter: scale +-10 %, shift +-5 %, rotation +-10 deg about the centre
    assert err.max() < 0.16 * S
    assert np.median(err) < 0.08 * S
    # the scale is about S / 22 cm (template) within the jitter and identity spread
    sc = faces["pose"][frontal, 3] * crop.CROP_CM / S
    assert (sc > 0.75).all() and (sc < 1.3).all()


def test_pose_distribution_includes_profiles(face_model):
    from rtface import synth

    cfg = synth.SynthConfig()
    rng = np.random.default_rng(0)
    md = synth._data(face_model)
    ang = np.degrees(np.array([synth._draw_shape(md, rng, cfg, 100, 53)[2] for _ in range(400)]))
    yaw, pitch, roll = np.abs(ang[:, 1]), np.abs(ang[:, 0]), np.abs(ang[:, 2])
    assert yaw.max() <= 80 + 1e-9 and pitch.max() <= 30 + 1e-9 and roll.max() <= 25 + 1e-9
    assert (yaw > 60).sum() >= 10, "profile views occur"
    assert np.median(yaw) < 25, "most mass near frontal"
    # and in an actual batch
    b = synth.batch(face_model, 32, seed=3, size=48, detail=False)
    assert (np.degrees(np.abs(b["pose"][:, 1])) > 55).any()


def test_detail_amplitude_and_regions(face_model):
    from rtface import synth

    b = synth.batch(face_model, 16, seed=21, size=128, detail=True)
    scale = b["pose"][:, 3]
    max_mm = synth.SynthConfig().detail_mm[1]
    peak = np.abs(b["detail"]).reshape(16, -1).max(1)
    # documented bound: |detail| <= 2 * max_mm / 10 * scale (n_z clamp), times a small overlap factor
    assert (peak <= 2 * max_mm / 10 * scale * 1.6).all()
    assert (peak > 0).sum() >= 12, "most faces have some wrinkles"
    some = peak[peak > 0] / (scale[peak > 0] / 10)  # in mm
    assert some.max() > 0.3
    # zero outside the wrinkle regions: chin, nose tip, lower cheeks next to the jaw
    lm_ids = face_model.landmarks
    checked = 0
    for i in range(16):
        lm3 = b["vertices"][i][lm_ids]
        for idx in (8, 30, 4, 12):
            x, y = np.floor(lm3[idx, :2]).astype(int)
            # only where that landmark is the visible surface
            if 0 <= x < 128 and 0 <= y < 128 and abs(b["coarse_depth"][i, y, x] - lm3[idx, 2]) < 1.0:
                assert b["detail"][i, y, x] == 0, (i, idx)
                checked += 1
    assert checked >= 30
    # zero-mean cross-sections: the detail's mean is small next to its amplitude
    for i in np.flatnonzero(peak > 0):
        d = b["detail"][i][b["detail"][i] != 0]
        assert abs(d.mean()) < 0.25 * np.abs(d).max()


def test_detail_gain_scales_each_face_within_its_range(face_model):
    from rtface import synth

    base, gained = synth.SynthConfig(), synth.SynthConfig(detail_gain=(2.0, 3.0))
    ratios = []
    for seed in range(6):
        f0 = synth.sample(face_model, np.random.default_rng(seed), size=96, detail=True, config=base)
        f1 = synth.sample(face_model, np.random.default_rng(seed), size=96, detail=True, config=gained)
        np.testing.assert_array_equal(f0.coarse_depth, f1.coarse_depth)
        on = np.abs(f0.detail) > 1e-3
        if on.sum() > 20:
            ratios.append(np.median(f1.detail[on] / f0.detail[on]))
    assert len(ratios) >= 3
    assert all(1.99 < r < 3.01 for r in ratios) and np.ptp(ratios) > 0.01  # one factor per face, drawn per face


def test_hard_light_is_the_exact_clamped_cosine(face_model):
    from rtface import synth
    from rtface.render import shading

    d = np.array([0.6, -0.3, 1.0])
    d /= np.linalg.norm(d)
    amb, inten = np.array([0.4, 0.35, 0.3]), np.array([0.7, 0.6, 0.5])
    side = np.cross(d, [0.0, 1.0, 0.0])
    side /= np.linalg.norm(side)
    n = np.stack([d, side, -d, np.cos(1.0) * d + np.sin(1.0) * side])
    e = synth._hard_light(n, amb, [(d, inten)])
    np.testing.assert_allclose(e[0], amb + inten, rtol=1e-6)  # facing the light
    np.testing.assert_allclose(e[1], amb, rtol=1e-6)  # at the terminator
    np.testing.assert_allclose(e[2], amb, rtol=1e-6)  # behind: no light, no negative lobe
    np.testing.assert_allclose(e[3], amb + np.cos(1.0) * inten, rtol=1e-6)
    # its band limit is the face's sh: the two agree on average, not at the terminator
    sh = shading.directional_light(d, inten, amb, order=2)
    assert np.abs(shading.shade(n[:1], sh) - e[:1]).max() < 0.1 * inten.max()
    assert np.abs(shading.shade(n[2:3], sh) - e[2:3]).max() > 1e-3
    # two lights add
    e2 = synth._hard_light(n, amb, [(d, inten), (-d, 0.5 * inten)])
    np.testing.assert_allclose(e2[2], amb + 0.5 * inten, rtol=1e-6)
    np.testing.assert_allclose(e2[0], e[0], rtol=1e-6)
    # a face shaded this way keeps its geometry and its sh (the band limit) and differs in the image only
    cfg = synth.SynthConfig(hard_light_prob=1.0, specular_prob=0.0)
    hard = synth.sample(face_model, np.random.default_rng(3), size=96, detail=True, config=cfg)
    soft = synth.sample(face_model, np.random.default_rng(3), size=96, detail=True,
                        config=synth.SynthConfig(hard_light_prob=1e-12, specular_prob=0.0))
    np.testing.assert_array_equal(hard.depth, soft.depth)
    np.testing.assert_array_equal(hard.sh, soft.sh)
    assert np.abs(hard.image.astype(int) - soft.image).max() > 0


def test_detail_visible_in_normals(face_model):
    from rtface import synth
    from rtface.render import shading

    f = synth.sample(face_model, np.random.default_rng(2), size=128, detail=True)
    coarse_n = shading.depth_normals(f.coarse_depth, f.mask)
    np.testing.assert_allclose(f.normals, shading.depth_normals(f.depth, f.mask), atol=1e-5)
    if np.abs(f.detail).max() > 0:
        diff = np.linalg.norm(f.normals - coarse_n, axis=-1)
        assert diff[f.detail != 0].max() > 0.05


def test_image_follows_the_lighting_model(face_model):
    """Without degradations the face pixels are albedo * (Y(n) . sh) (up to quantisation)."""
    from rtface import synth
    from rtface.render import shading

    cfg = synth.SynthConfig(blur_prob=0.0, noise_sigma=(0.0, 0.0), jpeg_prob=0.0, occluder_prob=0.0,
                            specular_prob=0.0)
    f = synth.sample(face_model, np.random.default_rng(8), size=96, config=cfg)
    rgb = f.image[..., ::-1].astype(np.float32) / 255.0
    pred = np.clip(shading.shade(f.normals, f.sh, f.albedo), 0, 1)
    m = f.mask
    assert np.abs(rgb[m] - pred[m]).max() <= 1.0 / 255 + 1e-4
    # and the lighting is recoverable from the ground truth
    ok = m & (pred.max(-1) < 0.99)
    got = shading.solve_lighting(f.normals, rgb, ok, order=2, albedo=f.albedo)
    assert np.abs(got - f.sh).max() < 0.1


def test_occluders_do_not_change_the_mask(face_model):
    from rtface import synth

    cfg = synth.SynthConfig(occluder_prob=1.0)
    a = synth.batch(face_model, 2, seed=1, size=64, config=cfg)
    b = synth.batch(face_model, 2, seed=1, size=64)
    np.testing.assert_array_equal(a["mask"], b["mask"])
    np.testing.assert_array_equal(a["depth"], b["depth"])


def test_albedo_marks_change_colour_not_geometry(face_model):
    """Marks paint sharp edges into the albedo (and the image that follows it) and leave every geometric field
    as it was; with marks_prob = 0 (the default) the faces are exactly those of earlier releases."""
    from rtface import synth
    from rtface.render import shading

    clean = dict(blur_prob=0.0, noise_sigma=(0.0, 0.0), jpeg_prob=0.0, occluder_prob=0.0, specular_prob=0.0)
    plain = synth.batch(face_model, 6, seed=4, size=S, config=synth.SynthConfig(**clean))
    marked = synth.batch(face_model, 6, seed=4, size=S, config=synth.SynthConfig(marks_prob=1.0, **clean))
    for k in ("depth", "coarse_depth", "detail", "mask", "normals", "vertices", "landmarks", "pose"):
        np.testing.assert_array_equal(plain[k], marked[k], err_msg=k)
    m = plain["mask"]
    changed = np.abs(marked["albedo"] - plain["albedo"]).max(-1) > 0.05
    assert changed[m].mean() > 0.003  # every face carries some marks (6 faces: at least one kind each, mostly)
    assert (np.abs(marked["albedo"] - plain["albedo"]).max(-1)[~m] == 0).all()
    # sharp: many more large steps between neighbouring pixels than the per-vertex albedo has
    both = m[:, :, 1:] & m[:, :, :-1]
    step = np.abs(np.diff(marked["albedo"].mean(-1), axis=2))[both]
    step0 = np.abs(np.diff(plain["albedo"].mean(-1), axis=2))[both]
    assert (step > 0.2).mean() > 2.5 * (step0 > 0.2).mean()
    # the image still follows albedo * shading, marks included
    for i in range(6):
        rgb = marked["image"][i][..., ::-1].astype(np.float32) / 255.0
        pred = np.clip(shading.shade(marked["normals"][i], marked["sh"][i], marked["albedo"][i]), 0, 1)
        assert np.abs(rgb[m[i]] - pred[m[i]]).max() <= 1.0 / 255 + 1e-4
    # off by default: the same faces as before marks existed (no random draw is spent on them)
    again = synth.batch(face_model, 6, seed=4, size=S, config=synth.SynthConfig(marks_prob=0.0, **clean))
    np.testing.assert_array_equal(again["image"], plain["image"])


def test_bad_arguments(face_model):
    from rtface import synth

    with pytest.raises(InputError):
        synth.sample(face_model, np.random.default_rng(0), size=4)
    with pytest.raises(InputError):
        synth.sample(face_model, 3, size=64)
    with pytest.raises(InputError):
        synth.batch(face_model, 0, seed=0)
