"""FaceResult / FrameResult: lazy frame depth (units, region, overlaps), vertices, landmarks, pose."""

from __future__ import annotations

import numpy as np

from rtface.camera import Pose, apply_affine, box_crop_transform, invert_affine
from rtface.results import FaceResult, FrameResult

S = 64


def make_face(center, side, z, track_id=0, angle=0.0):
    a = box_crop_transform(np.array(center, float), side, S, angle)  # frame -> crop
    yy, xx = np.mgrid[0:S, 0:S] + 0.5
    mask = (xx - S / 2) ** 2 + (yy - S / 2) ** 2 < (S / 3) ** 2
    depth = np.where(mask, np.float32(z), 0).astype(np.float32)
    verts = np.array([[S / 2, S / 2, z], [10.0, 20.0, 1.0]] * 40, np.float32)
    return FaceResult(box=[0, 0, 1, 1], score=0.9, track_id=track_id, identity=np.zeros(100),
                      expression=np.zeros(53), crop_pose=Pose(np.zeros(3), 6.0, np.array([S / 2, S / 2])),
                      crop_vertices=verts, depth=depth, coarse_depth=depth * 0.5, mask=mask, frame_to_crop=a,
                      landmark_index=np.arange(68), landmark3d_index=np.arange(1, 69))


def test_frame_depth_units_region_and_background():
    f = make_face((100, 80), 128, 20.0)  # crop px are 2 frame px: z_frame = 40
    img = np.zeros((200, 300, 3), np.uint8)
    r = FrameResult(3, 0.1, img, [f], {"total": 1.0})
    d, m = r.depth, r.mask
    assert d.shape == (200, 300) and d.dtype == np.float32 and m.dtype == bool
    assert np.allclose(d[m], 40.0, atol=1e-3)
    assert (d[~m] == 0).all()
    # the disc has radius S/3 crop px = 42.7 frame px around (100, 80)
    yy, xx = np.mgrid[0:200, 0:300] + 0.5
    rr = np.hypot(xx - 100, yy - 80)
    assert m[rr < 40].all() and not m[rr > 45].any()
    assert "paste" in r.timings
    assert np.allclose(r.coarse_depth[m], 20.0, atol=1e-3)


def test_large_face_pastes_through_the_grid_like_the_direct_warp(monkeypatch):
    """A face drawn at 8 frame px per crop px (a 1080p close-up) goes through the grid and cv2.resize; it gives
    the direct warp's mask and, on a smooth rotated dome, its depth to a small fraction of a crop px."""
    import rtface.results as results

    a = box_crop_transform(np.array([400.0, 300.0]), 8.0 * S, S, 0.2)
    yy, xx = np.mgrid[0:S, 0:S] + 0.5
    r2 = ((xx - S / 2) ** 2 + (yy - S / 2) ** 2) / (S / 2.5) ** 2
    mask = r2 < 1
    depth = np.where(mask, 10.0 + 12.0 * np.sqrt(np.clip(1.0 - r2, 0.0, 1.0)), 0.0).astype(np.float32)
    face = FaceResult(box=[0, 0, 1, 1], score=0.9, track_id=0, identity=np.zeros(100), expression=np.zeros(53),
                      crop_pose=Pose(np.zeros(3), 6.0, np.array([S / 2, S / 2])), crop_vertices=None,
                      depth=depth, coarse_depth=depth, mask=mask, frame_to_crop=a)
    grid = face.paste(600, 800)
    monkeypatch.setattr(results, "PASTE_GRID_MIN", np.inf)
    direct = face.paste(600, 800)
    assert grid[0] == direct[0]
    (_, dg, mg), (_, dd, md) = grid, direct
    assert (mg != md).sum() < 0.002 * md.sum()
    both = mg & md
    inner = both & (np.abs(dd - 8.0 * 10.0) > 8.0 * 2.0)  # away from the dome's steep rim
    assert np.abs(dg - dd)[inner].mean() < 8.0 * 0.02 and np.abs(dg - dd)[inner].max() < 8.0 * 0.3
    assert (dg[~mg] == 0).all()


def test_nearest_face_wins_where_faces_overlap():
    near = make_face((100, 100), 128, 30.0, 1)
    far = make_face((130, 100), 128, 10.0, 2)
    r = FrameResult(0, 0.0, np.zeros((200, 300, 3), np.uint8), [far, near], {})
    assert np.isclose(r.depth[100, 115], 60.0)  # inside both: the larger depth
    assert np.isclose(r.depth[100, 165], 20.0)  # only the far one


def test_face_outside_the_frame_and_no_faces():
    out = make_face((-500, -500), 64, 5.0)
    r = FrameResult(0, 0.0, np.zeros((50, 60, 3), np.uint8), [out], {})
    assert not r.mask.any() and (r.depth == 0).all()
    r = FrameResult(0, 0.0, np.zeros((50, 60, 3), np.uint8), [], {})
    assert r.depth.shape == (50, 60) and not r.mask.any() and len(r) == 0


def test_vertices_landmarks_pose_in_frame_coordinates():
    f = make_face((100, 80), 128, 20.0, angle=0.3)
    c2f = invert_affine(f.frame_to_crop)
    assert np.allclose(f.crop_to_frame, c2f)
    v = f.vertices
    assert np.allclose(v, apply_affine(c2f, f.crop_vertices), atol=1e-3)
    assert np.allclose(v[0, :2], [100, 80], atol=1e-3) and np.isclose(v[0, 2], 40.0)
    assert f.landmarks.shape == (68, 2) and np.allclose(f.landmarks, v[:68, :2], atol=1e-3)
    p = f.pose
    assert np.isclose(p.scale, 12.0) and np.allclose(p.translation, [100, 80])
    assert np.isclose(f.mm_per_pixel, 10 / 6.0)
    assert "track 0" in repr(f)


def test_landmarks3d_are_the_fixed_vertices_in_frame_pixels():
    """``landmarks3d`` = ``vertices[landmark3d_index]`` exactly (x, y and z), read before or after the mesh."""
    f = make_face((100, 80), 128, 20.0, angle=0.3)
    first = f.landmarks3d  # computed from the 68 crop vertices alone
    assert first.shape == (68, 3) and first.dtype == np.float32
    assert np.array_equal(first, f.vertices[1:69])
    g = make_face((100, 80), 128, 20.0, angle=0.3)
    g.vertices  # noqa: B018 - the full mesh first: landmarks3d is taken from it
    assert np.array_equal(g.landmarks3d, first)


def test_landmarks3d_without_the_index_names_the_fix():
    import pytest

    f = make_face((100, 80), 128, 20.0)
    f._landmark3d_index = None
    with pytest.raises(ValueError, match="landmark3d_index"):
        f.landmarks3d  # noqa: B018
