"""How a face is framed in its S x S crop: one canonical five-point template shared by detection, tracking,
synthetic training data and phase-2 data, so the networks always see faces framed the same way.

The five points are, in this order: the eye on the image's left (the subject's right eye), the eye on the
image's right, the nose tip, the mouth corner on the image's left, the mouth corner on the image's right.
This is YuNet's landmark order. The template comes from the ICT-FaceKit mean face seen frontally: the crop
spans 22 cm of face centred 0.5 cm above the model origin, enough for chin and forehead at any expression.
"""

from __future__ import annotations

import numpy as np

from .camera import similarity_from_points
from .errors import InputError

#: Five-point template in units of the crop side (x right, y down, pixel-centre coordinates / S).
TEMPLATE_5 = np.array(
    [
        [0.3520, 0.3663],
        [0.6480, 0.3663],
        [0.5000, 0.5043],
        [0.3848, 0.6827],
        [0.6152, 0.6827],
    ]
)
#: Face-model extent covered by the crop side, cm (so a frontal aligned face has scale S / CROP_CM px per cm).
CROP_CM = 22.0
#: Model-frame point (cm) at the crop centre for a frontal aligned face.
CROP_CENTER_CM = np.array([0.0, 0.5])

#: iBUG-68 indices that define the five points (eyes: the mean of their six landmarks).
RIGHT_EYE = slice(36, 42)
LEFT_EYE = slice(42, 48)
NOSE_TIP = 30
MOUTH_RIGHT = 48
MOUTH_LEFT = 54


def five_from_68(landmarks: np.ndarray) -> np.ndarray:
    """The five template points from 68 iBUG landmarks ``(..., 68, 2+)`` -> ``(..., 5, 2)``."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape[-2] != 68:
        raise InputError(f"expected 68 landmarks in the second-to-last axis, got shape {lm.shape}")
    return np.stack(
        [
            lm[..., RIGHT_EYE, :2].mean(-2),
            lm[..., LEFT_EYE, :2].mean(-2),
            lm[..., NOSE_TIP, :2],
            lm[..., MOUTH_RIGHT, :2],
            lm[..., MOUTH_LEFT, :2],
        ],
        axis=-2,
    )


def crop_from_five(points: np.ndarray, size: int) -> np.ndarray:
    """Frame -> crop similarity (2x3) that puts five points ``(5, 2)`` (frame pixels) onto the template."""
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (5, 2) or not np.isfinite(p).all():
        raise InputError(f"five landmark points must be a finite (5, 2) array, got {p.shape}")
    return similarity_from_points(p, TEMPLATE_5 * size)


def frontal_pose(size: int) -> np.ndarray:
    """Pose vector (pitch, yaw, roll, scale, tx, ty) of the mean face aligned to the template in an S-crop."""
    s = size / CROP_CM
    return np.array([0.0, 0.0, 0.0, s, size / 2 - s * CROP_CENTER_CM[0], size / 2 + s * CROP_CENTER_CM[1]])


__all__ = ["TEMPLATE_5", "CROP_CM", "CROP_CENTER_CM", "five_from_68", "crop_from_five", "frontal_pose"]
