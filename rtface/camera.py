"""Weak-perspective camera: pose, projection, and the similarity transforms between frame and crop.

Conventions (used everywhere in rtface, stated once here):

* **Model frame** (the face model, cm): x to the viewer's right, y up, z out of the face toward the viewer.
* **Image frame** (pixels): x to the right, y down, pixel centres at integer + 0.5, so pixel ``(row i, col j)``
  has centre ``(x, y) = (j + 0.5, i + 0.5)``. z points toward the camera and has the same unit as x and y
  (pixels), so the visible surface is the one with the **largest** z and normals follow from depth gradients.
* **Pose** ``(pitch, yaw, roll, scale, tx, ty)``: rotation angles in radians, applied as
  ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` in the model frame; ``scale`` in pixels per cm; ``(tx, ty)`` the
  pixel position of the model origin. Projection (weak perspective, i.e. scaled orthographic)::

      p = R @ v
      x = tx + scale * p_x,   y = ty - scale * p_y,   z = scale * (p_z + DEPTH_OFFSET_CM)

  Weak perspective fixes depth only up to a constant; rtface measures it from a reference plane
  ``DEPTH_OFFSET_CM`` behind the model origin (which lies inside the head), so every visible point of a face
  has positive depth and 0 can mean "no face".

  All three are right-handed rotations about the model axes x (pitch), y (yaw) and z (roll); a positive yaw
  turns the nose toward the viewer's right.
* **Crop transform**: a 2x3 affine ``A`` (similarity: rotation, uniform scale, translation) mapping *frame*
  pixel coordinates to *crop* pixel coordinates, ``[x_c, y_c] = A @ [x_f, y_f, 1]``. ``cv2.warpAffine(frame,
  A, (S, S))`` produces the crop with the same pixel-centre convention once the 0.5 offsets are applied,
  which :func:`warp_to_crop` does. Depth scales with the transform's scale factor: ``z_c = |A| * z_f``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

POSE_SIZE = 6
#: Distance (cm) from the depth reference plane to the model origin, along the viewing direction.
DEPTH_OFFSET_CM = 10.0


def rotation_matrix(angles: np.ndarray) -> np.ndarray:
    """``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` from ``(..., 3)`` angles (pitch, yaw, roll) in radians -> ``(..., 3, 3)``."""
    a = np.asarray(angles, dtype=np.float64)
    if a.shape[-1:] != (3,):
        raise InputError(f"rotation angles must have shape (..., 3) (pitch, yaw, roll), got {a.shape}")
    cx, cy, cz = np.cos(a[..., 0]), np.cos(a[..., 1]), np.cos(a[..., 2])
    sx, sy, sz = np.sin(a[..., 0]), np.sin(a[..., 1]), np.sin(a[..., 2])
    r = np.empty(a.shape[:-1] + (3, 3))
    r[..., 0, 0] = cz * cy
    r[..., 0, 1] = cz * sy * sx - sz * cx
    r[..., 0, 2] = cz * sy * cx + sz * sx
    r[..., 1, 0] = sz * cy
    r[..., 1, 1] = sz * sy * sx + cz * cx
    r[..., 1, 2] = sz * sy * cx - cz * sx
    r[..., 2, 0] = -sy
    r[..., 2, 1] = cy * sx
    r[..., 2, 2] = cy * cx
    return r


def matrix_to_angles(r: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rotation_matrix`: ``(..., 3, 3)`` -> ``(..., 3)`` (pitch, yaw, roll), yaw in [-pi/2, pi/2]."""
    r = np.asarray(r, dtype=np.float64)
    yaw = np.arcsin(np.clip(-r[..., 2, 0], -1.0, 1.0))
    pitch = np.arctan2(r[..., 2, 1], r[..., 2, 2])
    roll = np.arctan2(r[..., 1, 0], r[..., 0, 0])
    return np.stack([pitch, yaw, roll], axis=-1)


@dataclass
class Pose:
    """Weak-perspective pose of a face in some image (crop or frame); see the module docstring.

    angles: (3,) pitch, yaw, roll in radians. scale: pixels per cm. translation: (2,) pixel position of the
    model origin.
    """

    angles: np.ndarray
    scale: float
    translation: np.ndarray

    @classmethod
    def from_vector(cls, vec: np.ndarray) -> "Pose":
        """From the 6-vector ``(pitch, yaw, roll, scale, tx, ty)`` that CoarseNet outputs."""
        v = np.asarray(vec, dtype=np.float64).reshape(-1)
        if v.shape != (POSE_SIZE,):
            raise InputError(f"a pose vector has {POSE_SIZE} values (pitch, yaw, roll, scale, tx, ty), got {v.shape}")
        return cls(v[:3].copy(), float(v[3]), v[4:6].copy())

    def to_vector(self) -> np.ndarray:
        return np.concatenate([self.angles, [self.scale], self.translation]).astype(np.float32)

    @property
    def rotation(self) -> np.ndarray:
        return rotation_matrix(self.angles)

    def project(self, vertices_cm: np.ndarray) -> np.ndarray:
        """Model-frame vertices ``(..., V, 3)`` in cm -> image pixels ``(..., V, 3)`` float32 (x, y, z)."""
        return project(vertices_cm, self.to_vector())

    def transformed(self, affine: np.ndarray) -> "Pose":
        """The same pose seen in another image related by the similarity ``affine`` (2x3, this image -> other)."""
        a = np.asarray(affine, dtype=np.float64)
        s = affine_scale(a)
        angle = np.arctan2(a[1, 0], a[0, 0])
        # An image rotation by +angle (y down) is a rotation by -angle about the model's z axis (y up).
        c, n = np.cos(angle), np.sin(angle)
        r = np.array([[c, n, 0.0], [-n, c, 0.0], [0.0, 0.0, 1.0]]) @ self.rotation
        t = a[:, :2] @ self.translation + a[:, 2]
        return Pose(matrix_to_angles(r), self.scale * s, t)


def project(vertices_cm: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Project model vertices ``(..., V, 3)`` (cm) with pose vectors ``(..., 6)`` into pixels ``(..., V, 3)``.

    Leading dimensions broadcast (a batch of meshes with a batch of poses).
    """
    v = np.asarray(vertices_cm, dtype=np.float64)
    p = np.asarray(pose, dtype=np.float64)
    if v.shape[-1:] != (3,) or v.ndim < 2:
        raise InputError(f"vertices must have shape (..., V, 3), got {v.shape}")
    if p.shape[-1:] != (POSE_SIZE,):
        raise InputError(f"pose must have shape (..., 6) (pitch, yaw, roll, scale, tx, ty), got {p.shape}")
    r = rotation_matrix(p[..., :3])
    rotated = v @ np.swapaxes(r, -1, -2)
    s = p[..., 3, None]
    out = np.empty(np.broadcast_shapes(rotated.shape, p.shape[:-1] + (1, 3)), dtype=np.float32)
    out[..., 0] = p[..., 4, None] + s * rotated[..., 0]
    out[..., 1] = p[..., 5, None] - s * rotated[..., 1]
    out[..., 2] = s * (rotated[..., 2] + DEPTH_OFFSET_CM)
    return out


# ---------------------------------------------------------------------------------------------- similarities


def affine_scale(affine: np.ndarray) -> float:
    """Uniform scale factor of a 2x3 similarity (sqrt of the determinant of its linear part)."""
    a = np.asarray(affine, dtype=np.float64)
    return float(np.sqrt(abs(np.linalg.det(a[:, :2]))))


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine transform."""
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (2, 3):
        raise InputError(f"an affine transform is a 2x3 matrix, got {a.shape}")
    lin = np.linalg.inv(a[:, :2])
    return np.concatenate([lin, -lin @ a[:, 2:]], axis=1)


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """``outer ∘ inner`` of two 2x3 affines (apply ``inner`` first)."""
    o = np.vstack([np.asarray(outer, np.float64), [0, 0, 1]])
    i = np.vstack([np.asarray(inner, np.float64), [0, 0, 1]])
    return (o @ i)[:2]


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map points ``(..., 2)`` (or ``(..., 3)`` with z, scaled by the transform's scale) through a 2x3 affine."""
    a = np.asarray(affine, dtype=np.float64)
    p = np.asarray(points, dtype=np.float64)
    xy = p[..., :2] @ a[:, :2].T + a[:, 2]
    if p.shape[-1] == 3:
        return np.concatenate([xy, p[..., 2:3] * affine_scale(a)], axis=-1).astype(np.float32)
    return xy.astype(np.float32)


def similarity_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama, no reflection) mapping 2D points ``src`` (N,2) onto ``dst`` (N,2): 2x3."""
    s = np.asarray(src, dtype=np.float64)
    d = np.asarray(dst, dtype=np.float64)
    if s.shape != d.shape or s.ndim != 2 or s.shape[1] != 2 or s.shape[0] < 2:
        raise InputError(f"similarity_from_points needs two (N, 2) arrays with N >= 2, got {s.shape} and {d.shape}")
    ms, md = s.mean(0), d.mean(0)
    sc, dc = s - ms, d - md
    cov = dc.T @ sc / len(s)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    r = u @ sign @ vt
    var = (sc**2).sum() / len(s)
    scale = (sig * np.diag(sign)).sum() / var if var > 0 else 1.0
    t = md - scale * r @ ms
    return np.concatenate([scale * r, t[:, None]], axis=1)


def box_crop_transform(center: np.ndarray, side: float, size: int, angle: float = 0.0) -> np.ndarray:
    """Frame -> crop similarity that maps a square of ``side`` frame pixels centred at ``center`` (x, y),
    rotated by ``angle`` radians (counter-clockwise in the image as displayed), onto an ``size x size`` crop."""
    if side <= 0 or size <= 0:
        raise InputError(f"crop side and size must be positive, got side={side}, size={size}")
    s = size / float(side)
    c, n = np.cos(angle), np.sin(angle)
    lin = s * np.array([[c, -n], [n, c]])
    cx, cy = np.asarray(center, dtype=np.float64)
    t = np.array([size / 2.0, size / 2.0]) - lin @ np.array([cx, cy])
    return np.concatenate([lin, t[:, None]], axis=1)


def warp_to_crop(image: np.ndarray, frame_to_crop: np.ndarray, size: int) -> np.ndarray:
    """Resample ``image`` (H, W[, C]) into the ``size x size`` crop given by a frame -> crop affine.

    cv2 samples at integer coordinates while rtface's pixel centres are at +0.5; the shift is folded in here.
    """
    import cv2

    half = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]])
    a = compose_affine(compose_affine(np.array([[1.0, 0, -0.5], [0, 1.0, -0.5]]), frame_to_crop), half)
    return cv2.warpAffine(image, a, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def paste_from_crop(crop_map: np.ndarray, crop_to_frame: np.ndarray, height: int, width: int,
                    interpolation: int | None = None) -> np.ndarray:
    """Resample a crop-aligned map into frame coordinates (H, W); outside the crop the result is 0."""
    import cv2

    frame_to_crop = invert_affine(crop_to_frame)
    half = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]])
    a = compose_affine(compose_affine(np.array([[1.0, 0, -0.5], [0, 1.0, -0.5]]), frame_to_crop), half)
    flags = (cv2.INTER_LINEAR if interpolation is None else interpolation) | cv2.WARP_INVERSE_MAP
    # WARP_INVERSE_MAP: ``a`` maps destination (frame) pixels to source (crop) pixels.
    return cv2.warpAffine(crop_map, a, (width, height), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


__all__ = [
    "DEPTH_OFFSET_CM",
    "POSE_SIZE",
    "Pose",
    "affine_scale",
    "apply_affine",
    "box_crop_transform",
    "compose_affine",
    "invert_affine",
    "matrix_to_angles",
    "paste_from_crop",
    "project",
    "rotation_matrix",
    "similarity_from_points",
    "warp_to_crop",
]
