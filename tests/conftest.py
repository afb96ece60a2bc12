"""Shared fixtures: the data in ../shared/assets (skipped with a reason when absent) and a private cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_ASSETS = Path(os.environ.get("RTFACE_ASSETS") or (REPO.parent / "shared" / "assets"))

if SHARED_ASSETS.is_dir():
    os.environ["RTFACE_ASSETS"] = str(SHARED_ASSETS)
os.environ.setdefault("RTFACE_OFFLINE", "1")  # tests never reach the network


def shared(rel: str) -> Path:
    """Path of a file under ../shared/assets, or skip the test with the reason."""
    p = SHARED_ASSETS / rel
    if not p.exists():
        pytest.skip(f"shared asset {p} is not present (tests use ../shared/assets or RTFACE_ASSETS)")
    return p


@pytest.fixture(scope="session")
def face_model():
    """The real ICT-FaceKit model (converted once into the user cache)."""
    shared("ict-facekit/FaceXModel.tar.xz")
    from rtface.face_model import FaceModel

    return FaceModel.load()


_GPU_REASONS: dict[str, str | None] = {}


def gpu_skip_reason(needs=()) -> str | None:
    """Why a test marked ``gpu`` (``gpu("cuda")``: also ONNX Runtime's CUDA provider, ``gpu("tensorrt")``: also
    TensorRT) cannot run here; None when it can. CuPy with a GPU but the CPU onnxruntime wheel is a skip too."""
    from rtface.engines import why_unavailable

    for need in ("gpu", *needs):
        if need not in _GPU_REASONS:
            _GPU_REASONS[need] = why_unavailable(need)
        if _GPU_REASONS[need]:
            return f"needs {'an NVIDIA GPU' if need == 'gpu' else need}: {_GPU_REASONS[need]}"
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        markers = list(item.iter_markers("gpu"))
        if not markers:
            continue
        needs = sorted({str(a) for m in markers for a in m.args})
        unknown = set(needs) - {"cuda", "tensorrt"}
        if unknown:
            raise pytest.UsageError(f"{item.nodeid}: gpu marker arguments are 'cuda' and 'tensorrt', got {unknown}")
        reason = gpu_skip_reason(needs)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


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
