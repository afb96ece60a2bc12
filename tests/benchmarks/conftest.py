"""Fixtures of the benchmark tests (the face model and the tiny labelled set are in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def nets(face_model):
    """The shipped networks on ONNX Runtime's CPU backend, one thread."""
    from rtface.networks import load_networks

    n = load_networks(None, backend="cpu", face_model_hash=face_model.hash, threads=1)
    yield n
    n.close()
