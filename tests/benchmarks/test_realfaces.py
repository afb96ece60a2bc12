"""Real-face shape-from-shading figures of benchmarks/realfaces.py: the landmark-fit reference surface and
the columns it adds."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.realfaces import landmark_fit_depths, measure_set, run_networks


@pytest.fixture(scope="module")
def tiny_crops(tiny_set, nets):
    """The tiny set's detected faces cropped like the pipeline: crops, names, transforms image -> crop."""
    from rtface.camera import warp_to_crop
    from rtface.crop import crop_from_five

    idx = np.where(np.isfinite(tiny_set.det_five).all(axis=(1, 2)))[0]
    affines = np.stack([crop_from_five(tiny_set.det_five[i], nets.size) for i in idx])
    crops = np.stack([warp_to_crop(tiny_set.read_image(i), a, nets.size) for i, a in zip(idx, affines)])
    return crops, [str(tiny_set.names[i]) for i in idx], affines, idx


def test_landmark_fit_lies_on_the_annotated_face(tiny_set, tiny_crops, face_model, nets):
    import cv2

    from rtface.camera import apply_affine

    crops, names, affines, idx = tiny_crops
    depth, mask = landmark_fit_depths(face_model, tiny_set, names, affines, nets.size)
    assert depth.shape == mask.shape == (len(names), nets.size, nets.size)
    for k, i in enumerate(idx):
        assert 0.2 < mask[k].mean() < 0.95
        assert np.isfinite(depth[k][mask[k]]).all()
        # the annotated points, seen in the crop, lie on the rendered fit (the jaw line on its edge)
        pts = apply_affine(affines[k], tiny_set.points[i].astype(np.float64))
        grown = cv2.dilate(mask[k].astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        ij = np.clip(np.floor(pts).astype(int), 0, nets.size - 1)
        assert grown[ij[:, 1], ij[:, 0]].mean() > 0.95


def test_landmark_fit_needs_the_names(tiny_set, tiny_crops, face_model, nets):
    _, names, affines, _ = tiny_crops
    with pytest.raises(KeyError):
        landmark_fit_depths(face_model, tiny_set, ["not_in_the_set"], affines[:1], nets.size)


def test_reference_columns_match_the_coarse_columns_when_given_the_coarse_surface(tiny_crops, face_model, nets):
    crops = tiny_crops[0]
    res = run_networks(nets, face_model, crops)
    r = measure_set(nets, face_model, crops, chunk=4, refine=False, reference=(res["coarse_depth"], res["mask"]))
    assert r["faces"] == len(crops)
    assert r["const_fit"] == pytest.approx(r["const_coarse"], rel=1e-9)
    assert r["const_fit_fine"] == pytest.approx(r["const_fine"], rel=1e-6)
    assert 0.0 < r["const_coarse"] < 1.0
