"""Shared fixtures: the data in ../shared/assets (skipped with a reason when absent) and a private cache."""

from __future__ import annotations

import os
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


def _has_cuda() -> bool:
    from rtface._optional import cuda_available

    return cuda_available()


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU with CuPy (pip install 'rtface[gpu]'); none here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
