"""Pictures of depth maps for people: colour-mapped depth, clay-like shaded depth, overlays and contact sheets.

Every function returns BGR uint8 images (OpenCV's order, like frames). Depth maps follow rtface's
conventions (pixels of their image, z toward the camera, 0 / mask False where there is no face).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import InputError
from .render import shading

#: Key light of :func:`shade_depth`, image frame (x right, y down, z toward the camera): upper left, front.
KEY_LIGHT = np.array([-0.45, -0.55, 0.70])


def _cv2():
    import cv2

    return cv2


def _depth_and_mask(depth, mask) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(depth.get() if hasattr(depth, "get") else depth)
    if d.ndim != 2:
        raise InputError(f"depth must be a 2-D (H, W) map, got shape {d.shape}")
    if not np.issubdtype(d.dtype, np.number):
        raise InputError(f"depth must be numeric, got dtype {d.dtype}")
    d = d.astype(np.float32)
    if mask is None:
        m = (d != 0) & np.isfinite(d)
    else:
        m = np.asarray(mask.get() if hasattr(mask, "get") else mask)
        if m.shape != d.shape:
            raise InputError(f"mask must have the depth's shape {d.shape}, got {m.shape}")
        m = m.astype(bool) & np.isfinite(d)
    return d, m


def colorize_depth(depth, mask=None, colormap: int | None = None, percentiles: tuple[float, float] = (1.0, 99.0),
                   value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Colour-mapped depth ``(H, W, 3)`` BGR uint8: near (large z) is warm, far is cool; background black.

    The range is the ``percentiles`` of the depth inside the mask (robust to a few stray pixels) unless
    ``value_range=(far, near)`` is given. ``mask`` defaults to ``depth != 0``. ``colormap`` is an OpenCV
    colour map (default TURBO).
    """
    cv2 = _cv2()
    d, m = _depth_and_mask(depth, mask)
    out = np.zeros(d.shape + (3,), np.uint8)
    if not m.any():
        return out
    if value_range is None:
        lo, hi = np.percentile(d[m], percentiles)
    else:
        lo, hi = value_range
    t = np.clip((d - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)
    cm = cv2.COLORMAP_TURBO if colormap is None else colormap
    col = cv2.applyColorMap((t * 255.0 + 0.5).astype(np.uint8), cm)
    out[m] = col[m]
    return out


def shade_depth(depth, mask=None, light=KEY_LIGHT, ambient: float = 0.18, albedo: float = 0.85,
                specular: float = 0.12) -> np.ndarray:
    """Clay render of a depth map ``(H, W, 3)`` BGR uint8 (grey): Lambert with a key light from the upper left
    front plus a little ambient and specular, normals from masked central differences of the depth
    (:func:`rtface.render.shading.depth_normals`); background black. ``mask`` defaults to ``depth != 0``."""
    d, m = _depth_and_mask(depth, mask)
    n = shading.depth_normals(d, m)
    lv = np.asarray(light, np.float64)
    lv = (lv / np.linalg.norm(lv)).astype(np.float32)
    ndl = np.clip(n @ lv, 0.0, 1.0)
    h = lv + np.array([0, 0, 1], np.float32)
    h /= np.linalg.norm(h)
    spec = specular * np.clip(n @ h, 0.0, 1.0) ** 24
    v = albedo * (ambient + (1.0 - ambient) * ndl) + spec
    g = np.where(m, np.clip(v, 0, 1) ** (1 / 1.4) * 255.0 + 0.5, 0).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def _as_bgr(image) -> np.ndarray:
    a = np.asarray(image.get() if hasattr(image, "get") else image)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise InputError(f"an image must be (H, W), (H, W, 3) or (H, W, 4), got shape {a.shape}")
    a = a[..., :3]
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating):
            a = np.clip(a * 255.0 + 0.5 if a.max(initial=0) <= 1.0 else a, 0, 255)
        a = a.astype(np.uint8)
    return np.ascontiguousarray(a)


def overlay(image, shaded, mask, alpha: float = 0.6) -> np.ndarray:
    """``image`` with ``shaded`` blended in (weight ``alpha``) where ``mask`` is True; BGR uint8."""
    img = _as_bgr(image)
    sh = _as_bgr(shaded)
    m = np.asarray(mask.get() if hasattr(mask, "get") else mask).astype(bool)
    if img.shape != sh.shape or m.shape != img.shape[:2]:
        raise InputError(f"overlay needs equal sizes, got image {img.shape}, shaded {sh.shape}, mask {m.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1], got {alpha}")
    out = img.copy()
    blend = img.astype(np.float32) * (1 - alpha) + sh.astype(np.float32) * alpha
    out[m] = (blend[m] + 0.5).astype(np.uint8)
    return out


def _label(img: np.ndarray, text: str) -> None:
    cv2 = _cv2()
    h = img.shape[0]
    scale = max(0.3, min(1.0, h / 300.0))
    th = max(1, int(round(scale * 1.5)))
    (w_, h_), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, th)
    cv2.rectangle(img, (0, 0), (min(img.shape[1] - 1, w_ + 6), h_ + base + 4), (0, 0, 0), -1)
    cv2.putText(img, text, (3, h_ + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), th, cv2.LINE_AA)


def side_by_side(*images, labels: Sequence[str] | None = None, gap: int = 2) -> np.ndarray:
    """Images next to each other (all resized to the first one's height), optional labels in their corner."""
    cv2 = _cv2()
    if not images:
        raise InputError("side_by_side needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise InputError(f"got {len(labels)} labels for {len(images)} images")
    ims = [_as_bgr(im) for im in images]
    h = ims[0].shape[0]
    row = []
    for k, im in enumerate(ims):
        if im.shape[0] != h:
            im = cv2.resize(im, (max(1, round(im.shape[1] * h / im.shape[0])), h), interpolation=cv2.INTER_AREA)
        else:
            im = im.copy()
        if labels is not None and labels[k]:
            _label(im, str(labels[k]))
        row.append(im)
        if gap and k < len(ims) - 1:
            row.append(np.zeros((h, gap, 3), np.uint8))
    return np.hstack(row)


def contact_sheet(faces: Sequence, columns: int = 4, gap: int = 2) -> np.ndarray:
    """Tiles (BGR images, all the same size, e.g. :func:`side_by_side` rows) on a grid of ``columns``."""
    if len(faces) == 0:
        raise InputError("contact_sheet needs at least one image")
    if columns < 1:
        raise InputError(f"columns must be >= 1, got {columns}")
    tiles = [_as_bgr(f) for f in faces]
    h, w = tiles[0].shape[:2]
    if any(t.shape[:2] != (h, w) for t in tiles):
        raise InputError("contact_sheet tiles must all have the same size")
    cols = min(columns, len(tiles))
    rows = -(-len(tiles) // cols)
    sheet = np.zeros((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        sheet[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = t
    return sheet


__all__ = ["KEY_LIGHT", "colorize_depth", "contact_sheet", "overlay", "shade_depth", "side_by_side"]
