"""Torch twins of the face model's shape (``FaceModel.vertices``) and of ``rtface.camera.project``.

Same formulas as the NumPy runtime (tested for equality in tests/train/test_geometry.py):

    vertices = mean + identity @ id_basis + expression @ exp_basis          (cm, model frame)
    p = R(pitch, yaw, roll) @ v,  R = Rz(roll) @ Ry(yaw) @ Rx(pitch)
    x = tx + scale * p_x,  y = ty - scale * p_y,  z = scale * (p_z + DEPTH_OFFSET_CM)   (pixels)

Everything is differentiable with respect to the coefficients and the pose. A model can be restricted to a
subset of vertices (``vertex_ids``), which is what the training losses use (subsampled face vertices plus the
68 landmarks) - the full mesh is only needed for rendering.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rtface.camera import DEPTH_OFFSET_CM
from rtface.face_model import FaceModel


class TorchFaceModel(nn.Module):
    """Linear face model as torch buffers, optionally restricted to ``vertex_ids`` (in that order)."""

    def __init__(self, model: FaceModel, vertex_ids: np.ndarray | None = None):
        super().__init__()
        ids = np.arange(model.num_vertices) if vertex_ids is None else np.asarray(vertex_ids, dtype=np.int64)
        self.vertex_ids = ids
        v = len(ids)
        self.register_buffer("mean", torch.from_numpy(np.ascontiguousarray(model.mean[ids])))
        self.register_buffer("id_basis", torch.from_numpy(
            np.ascontiguousarray(model.id_basis[:, ids].reshape(model.num_identity, v * 3))))
        self.register_buffer("exp_basis", torch.from_numpy(
            np.ascontiguousarray(model.exp_basis[:, ids].reshape(model.num_expression, v * 3))))

    @property
    def num_vertices(self) -> int:
        return int(self.mean.shape[0])

    def vertices(self, identity: torch.Tensor | None = None, expression: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """``(B, Ki)`` identity and ``(B, Ke)`` expression (the first k modes) -> ``(B, V, 3)`` cm."""
        ref = identity if identity is not None else expression
        dtype = ref.dtype if ref is not None else self.mean.dtype
        out = self.mean.to(dtype)
        flat = None
        for c, basis in ((identity, self.id_basis), (expression, self.exp_basis)):
            if c is None:
                continue
            k = c.shape[-1]
            term = c @ basis[:k].to(dtype)
            flat = term if flat is None else flat + term
        if flat is None:
            return out.unsqueeze(0)
        return out + flat.reshape(*flat.shape[:-1], self.num_vertices, 3)


def rotation_matrix(angles: torch.Tensor) -> torch.Tensor:
    """``(..., 3)`` pitch, yaw, roll (rad) -> ``(..., 3, 3)``, ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``."""
    cx, cy, cz = torch.cos(angles[..., 0]), torch.cos(angles[..., 1]), torch.cos(angles[..., 2])
    sx, sy, sz = torch.sin(angles[..., 0]), torch.sin(angles[..., 1]), torch.sin(angles[..., 2])
    rows = [
        torch.stack([cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx], dim=-1),
        torch.stack([sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx], dim=-1),
        torch.stack([-sy, cy * sx, cy * cx], dim=-1),
    ]
    return torch.stack(rows, dim=-2)


def project(vertices: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """Model vertices ``(B, V, 3)`` cm with poses ``(B, 6)`` -> image pixels ``(B, V, 3)`` (x, y, z)."""
    r = rotation_matrix(pose[..., :3])
    p = vertices @ r.transpose(-1, -2)
    s = pose[..., 3, None]
    x = pose[..., 4, None] + s * p[..., 0]
    y = pose[..., 5, None] - s * p[..., 1]
    z = s * (p[..., 2] + DEPTH_OFFSET_CM)
    return torch.stack([x, y, z], dim=-1)
