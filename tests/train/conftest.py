"""Fixtures of the training tests (the tiny labelled set is in tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(0)
