"""Depth pictures (rtface.viz) and the demo contact sheet (rtface.demo_sheet)."""

from __future__ import annotations

import numpy as np
import pytest

from rtface import viz
from rtface.errors import InputError


def _sphere(h=64, w=80, r=25.0):
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    d2 = r * r - (xs - w / 2) ** 2 - (ys - h / 2) ** 2
    mask = d2 > 0
    return np.where(mask, np.sqrt(np.maximum(d2, 0)) + 10, 0).astype(np.float32), mask


def test_colorize_depth():
    d, m = _sphere()
    out = viz.colorize_depth(d, m)
    assert out.shape == (64, 80, 3) and out.dtype == np.uint8
    assert (out[~m] == 0).all()
    assert out[m].max() > 0
    # default mask: depth != 0
    np.testing.assert_array_equal(viz.colorize_depth(d), out)
    # near (centre) and far (rim) get different colours
    assert not np.array_equal(out[32, 40], out[32, 18])
    assert (viz.colorize_depth(np.zeros((5, 5))) == 0).all()


def test_shade_depth_is_lit_from_upper_left():
    d, m = _sphere()
    out = viz.shade_depth(d, m)
    assert out.shape == (64, 80, 3) and out.dtype == np.uint8
    assert (out[~m] == 0).all()
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()  # grey
    assert int(out[20, 28, 0]) > int(out[44, 52, 0])  # upper left brighter than lower right


def test_overlay_and_side_by_side():
    d, m = _sphere()
    img = np.full((64, 80, 3), 100, np.uint8)
    sh = viz.shade_depth(d, m)
    ov = viz.overlay(img, sh, m, alpha=0.5)
    assert ov.shape == img.shape and ov.dtype == np.uint8
    np.testing.assert_array_equal(ov[~m], img[~m])
    row = viz.side_by_side(img, sh, viz.colorize_depth(d, m)[:32, :40], labels=["image", "shaded", "depth"])
    assert row.dtype == np.uint8 and row.shape[0] == 64
    assert row.shape[1] == 80 + 80 + 80 + 2 * 2  # the small one is resized to the same height
    assert row[:12, :40].max() > 200  # a white label
    with pytest.raises(InputError):
        viz.side_by_side(img, labels=["a", "b"])
    with pytest.raises(InputError):
        viz.overlay(img, sh[:10], m)


def test_contact_sheet_shapes():
    tiles = [np.full((10, 20, 3), k * 20, np.uint8) for k in range(5)]
    sheet = viz.contact_sheet(tiles, columns=2, gap=1)
    assert sheet.shape == (3 * 10 + 2, 2 * 20 + 1, 3)
    assert sheet[0, 0, 0] == 0 and sheet[0, 21, 0] == 20 and sheet[11, 0, 0] == 40
    with pytest.raises(InputError):
        viz.contact_sheet([])
    with pytest.raises(InputError):
        viz.contact_sheet([tiles[0], np.zeros((11, 20, 3), np.uint8)])


def test_bad_depth():
    with pytest.raises(InputError):
        viz.colorize_depth(np.zeros((2, 3, 4)))
    with pytest.raises(InputError):
        viz.shade_depth(np.zeros((4, 4)), np.zeros((3, 3), bool))


def test_write_contact_sheet(face_model, tmp_path):
    import cv2

    from rtface.demo_sheet import write_contact_sheet

    p = write_contact_sheet(tmp_path / "sheet.png", n=3, seed=0, size=64, model=face_model)
    img = cv2.imread(str(p))
    assert img is not None and img.dtype == np.uint8
    # three faces side by side, each a column of image | coloured depth | shaded depth
    assert img.shape == (3 * 64 + 2 * 2, 3 * 64 + 2 * 2, 3)
    with pytest.raises(InputError):
        write_contact_sheet(tmp_path / "sheet.jpg", n=1, size=64, model=face_model)
