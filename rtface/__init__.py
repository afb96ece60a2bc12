"""rtface: per-frame, per-face detailed depth maps from video in real time.

Implements Richardson et al., "Learning Detailed Face Reconstruction from a Single Image" (CVPR 2017):
CoarseNet (3DMM + pose) -> rendering layer (coarse depth) -> FineNet (detail). Use and conventions:
README.md; the interfaces between the parts: docs/CONTRACTS.md.

Public API::

    for frame in rtface.stream("talk.mp4"): ...
    result = rtface.reconstruct(image)
    rtface.batch(["videos/", "more.mp4"], out="results/")   # many inputs, one archive each, on Ray
    clip = rtface.load("results/talk.npz")
    model = rtface.FaceModel.load()
    r = rtface.render.rasterize(vertices_px, triangles, height, width)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "FaceModel": ("rtface.face_model", "FaceModel"),
    "stream": ("rtface.pipeline", "stream"),
    "reconstruct": ("rtface.pipeline", "reconstruct"),
    "Pipeline": ("rtface.pipeline", "Pipeline"),
    "FrameResult": ("rtface.results", "FrameResult"),
    "FaceResult": ("rtface.results", "FaceResult"),
    "render": ("rtface.render", None),
    "batch": ("rtface.batching.driver", "batch"),
    "load": ("rtface.archive", "load"),
}

if TYPE_CHECKING:
    from . import render
    from .archive import load
    from .batching.driver import batch
    from .face_model import FaceModel
    from .pipeline import Pipeline, reconstruct, stream
    from .results import FaceResult, FrameResult


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        mod = importlib.import_module(module)
        value = mod if attr is None else getattr(mod, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rtface' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
