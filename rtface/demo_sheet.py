"""A contact sheet of synthetic faces with their ground truth (what ``rtface demo`` writes for now)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import InputError


def render_sheet(n: int = 8, seed: int = 0, size: int = 128, model=None, columns: int | None = None) -> np.ndarray:
    """BGR uint8 sheet: one column per face, rows image | coloured depth | shaded depth (with detail)."""
    from . import synth, viz

    if int(n) < 1:
        raise InputError(f"n must be >= 1, got {n}")
    if model is None:
        from .face_model import FaceModel

        model = FaceModel.load()
    b = synth.batch(model, int(n), seed=seed, size=size, detail=True)
    tiles = []
    for i in range(int(n)):
        img = b["image"][i]
        col = viz.colorize_depth(b["depth"][i], b["mask"][i])
        shd = viz.shade_depth(b["depth"][i], b["mask"][i])
        gap = np.zeros((2, size, 3), np.uint8)
        tiles.append(np.vstack([img, gap, col, gap, shd]))
    return viz.contact_sheet(tiles, columns=columns or int(n))


def write_contact_sheet(path: str | os.PathLike, n: int = 8, seed: int = 0, size: int = 128, model=None) -> Path:
    """Render ``n`` synthetic faces (image | coloured depth | shaded depth per column) into one PNG at ``path``."""
    import cv2

    p = Path(path)
    if p.suffix.lower() != ".png":
        raise InputError(f"the contact sheet is a PNG: give a path ending in .png, got {p}")
    sheet = render_sheet(n=n, seed=seed, size=size, model=model)
    p.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(p), sheet):
        raise InputError(f"could not write {p} (is the folder writable?)")
    return p


__all__ = ["render_sheet", "write_contact_sheet"]
