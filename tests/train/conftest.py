"""Fixtures of the real-face training tests: a tiny labelled set (a few 300-W test faces plus broken files)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.conftest import shared

GOOD = ["helen_296814969_3", "lfpw_image_0001", "lfpw_image_0002", "helen_2968560214_1"]


@pytest.fixture(scope="session")
def tiny_set(tmp_path_factory):
    """A folder laid out like faces-300w/test with 4 good faces, then the cached fits of it.

    Broken on purpose: a .pts with 67 points, one with a NaN, an image that is not an image, a .pts with no image.
    """
    src = shared("faces-300w/test")
    shared("yunet/face_detection_yunet_2023mar.onnx")
    folder = tmp_path_factory.mktemp("tiny300w")
    for n in GOOD:
        shutil.copy(src / f"{n}.jpg", folder / f"{n}.jpg")
        shutil.copy(src / f"{n}.pts", folder / f"{n}.pts")
    pts = (src / f"{GOOD[0]}.pts").read_text().splitlines()
    (folder / "bad_67.pts").write_text("\n".join(pts[:67]) + "\n")
    shutil.copy(src / f"{GOOD[0]}.jpg", folder / "bad_67.jpg")
    (folder / "bad_nan.pts").write_text("\n".join(["nan 1.0"] + pts[1:]) + "\n")
    shutil.copy(src / f"{GOOD[0]}.jpg", folder / "bad_nan.jpg")
    (folder / "bad_image.pts").write_text("\n".join(pts) + "\n")
    (folder / "bad_image.jpg").write_bytes(b"this is not a jpeg" * 10)
    (folder / "no_image.pts").write_text("\n".join(pts) + "\n")
    from train import labeled

    with pytest.warns(UserWarning, match="skipped"):
        lab = labeled.load("300w-test", workers=1, progress=False, cache_root=folder / "cache", folder=folder)
    return lab


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(0)
