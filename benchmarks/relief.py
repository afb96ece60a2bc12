"""The detail measure: the relief a method adds to the coarse surface against the true detail layer.

Predicted relief ``P`` = fine depth - coarse depth (what the method adds), true detail ``D`` = true depth - true
smooth depth; both are high-passed by a Gaussian of :data:`HIGHPASS_MM` mm (``x`` minus its Gaussian blur
normalised over the mask, :func:`gaussian_highpass`) and compared over the pixels both masks cover, eroded by
:data:`ERODE_FRACTION` of the face's width. Over a set of faces (sums over all their pixels):

* ``explained`` = 1 - sum (P - D)^2 / sum D^2 (1: all of the detail, 0: as good as adding nothing, below 0:
  the relief adds more error than it explains);
* ``correlation`` of P and D;
* ``relief_rms_mm`` of P and ``true_rms_mm`` of D (on faces with albedo marks only, D = 0 and all of P is
  spurious).

Maps are compared in the frame they are given in (crop or frame pixels); the units are converted with
``mm_per_px`` per face, so faces of every size weigh by their area in mm^2.
"""

from __future__ import annotations

import math

import numpy as np

HIGHPASS_MM = 2.0
ERODE_FRACTION = 0.03


def gaussian_highpass(x: np.ndarray, mask: np.ndarray, sigma_px: float) -> np.ndarray:
    """``x`` minus its Gaussian blur (sigma px) over the mask's pixels only; 0 outside the mask."""
    import cv2

    m = mask.astype(np.float64)
    z = np.where(mask, x, 0.0).astype(np.float64)
    k = 2 * int(math.ceil(3.0 * sigma_px)) + 1
    num = cv2.GaussianBlur(z, (k, k), sigma_px, borderType=cv2.BORDER_CONSTANT)
    den = cv2.GaussianBlur(m, (k, k), sigma_px, borderType=cv2.BORDER_CONSTANT)
    low = np.divide(num, den, out=np.zeros_like(num), where=den > 1e-6)
    return np.where(mask, z - low, 0.0)


def evaluation_mask(mask: np.ndarray, width_px: float) -> np.ndarray:
    """``mask`` eroded by :data:`ERODE_FRACTION` of the face's width (px, at least 1 px)."""
    import cv2

    r = max(1, int(round(ERODE_FRACTION * width_px)))
    k = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
    return cv2.erode(mask.astype(np.uint8), k, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)


def face_width(mask: np.ndarray) -> float:
    """Width in px of a face's mask (its horizontal extent)."""
    cols = np.flatnonzero(np.asarray(mask).any(0))
    return float(cols[-1] - cols[0] + 1) if len(cols) else 0.0


class ReliefScore:
    """Accumulates the measure (module docstring) over faces; :meth:`result` gives the figures."""

    def __init__(self) -> None:
        self.err = self.true = self.pred = self.cross = self.sum_p = self.sum_d = 0.0
        self.pixels = 0
        self.area = 0.0
        self.faces = 0

    def add(self, relief: np.ndarray, detail: np.ndarray, pred_mask: np.ndarray, true_mask: np.ndarray,
            mm_per_px: float, width_px: float | None = None) -> None:
        """One face: ``relief`` P and ``detail`` D (H, W) in depth px of the same map, their masks, the map's mm per
        px, and the face's width in px (default: the true mask's width)."""
        if not np.isfinite(mm_per_px) or mm_per_px <= 0:
            raise ValueError(f"mm_per_px must be positive, got {mm_per_px}")
        both = np.asarray(pred_mask, bool) & np.asarray(true_mask, bool)
        e = evaluation_mask(both, face_width(true_mask) if width_px is None else width_px)
        if not e.any():
            return
        sigma = HIGHPASS_MM / mm_per_px
        p = gaussian_highpass(np.nan_to_num(relief.astype(np.float64)), both, sigma)[e] * mm_per_px
        d = gaussian_highpass(detail.astype(np.float64), both, sigma)[e] * mm_per_px
        w = mm_per_px**2  # each pixel weighs by its area in mm^2
        self.err += w * float(((p - d) ** 2).sum())
        self.true += w * float((d * d).sum())
        self.pred += w * float((p * p).sum())
        self.cross += w * float((p * d).sum())
        self.sum_p += w * float(p.sum())
        self.sum_d += w * float(d.sum())
        self.area += w * e.sum()
        self.pixels += int(e.sum())
        self.faces += 1

    def result(self) -> dict:
        a = max(self.area, 1e-12)
        mp, md = self.sum_p / a, self.sum_d / a
        vp, vd = self.pred / a - mp * mp, self.true / a - md * md
        cov = self.cross / a - mp * md
        return {
            "faces": self.faces,
            "explained": 1.0 - self.err / self.true if self.true > 0 else float("nan"),
            "correlation": cov / math.sqrt(vp * vd) if vp > 0 and vd > 0 else 0.0,
            "relief_rms_mm": math.sqrt(self.pred / a),
            "true_rms_mm": math.sqrt(self.true / a),
        }
