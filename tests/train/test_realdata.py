"""Phase-2 real data (train/realdata.py): reads a few UTKFace images from the shared tar, crops like the pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import shared


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    shared("faces-utk/utkface_aligned_200px.tar")
    shared("yunet/face_detection_yunet_2023mar.onnx")
    from train import realdata

    return realdata.load(size=64, limit=12, cache_root=tmp_path_factory.mktemp("phase2"), progress=False)


def test_crops_and_points(faces):
    assert faces.stats["total"] == 12
    assert len(faces) + faces.stats["skipped"] == 12
    assert len(faces) >= 10  # aligned UTKFace portraits: YuNet finds nearly all
    assert faces.crops.dtype == np.uint8 and faces.crops.shape[1:] == (64, 64, 3)
    assert faces.five.shape == (len(faces), 5, 2)
    assert ((faces.five > 0) & (faces.five < 64)).all()
    # framed on the template: the points land near rtface.crop.TEMPLATE_5
    from rtface.crop import TEMPLATE_5

    assert np.abs(faces.five / 64 - TEMPLATE_5).max() < 0.08
    assert faces.crops[: len(faces)].std() > 10  # real pixels, not zeros


def test_batch_and_flip(faces):
    b = faces.batch(np.array([1, 0]), flip=np.array([False, True]))
    assert b["image"].shape == (2, 3, 64, 64) and b["image"].dtype == np.float32
    assert 0 <= b["image"].min() and b["image"].max() <= 1
    # RGB channel order from the BGR cache
    assert np.allclose(b["image"][0, 0], faces.crops[1][..., 2] / 255.0)
    # flipped: mirrored pixels, mirrored points with left/right swapped (still image-left eye first)
    assert np.allclose(b["image"][1, :, :, ::-1], faces.batch(np.array([0]))["image"][0])
    assert b["five"][1, 0, 0] < b["five"][1, 1, 0] and b["five"][1, 3, 0] < b["five"][1, 4, 0]


def test_split_is_deterministic():
    from train.realdata import is_heldout

    names = [f"{i}_0_0_2017.jpg.chip.jpg" for i in range(4000)]
    held = [is_heldout(n) for n in names]
    assert held == [is_heldout(n) for n in names]
    assert 0.03 < np.mean(held) < 0.07


def test_cache_is_reused(faces, tmp_path_factory):
    from train import realdata

    again = realdata.open_cache(faces.stats["folder"])
    assert np.array_equal(again.five, faces.five) and list(again.names) == list(faces.names)
