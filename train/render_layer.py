"""Differentiable rendering layer (paper: "rendering layer"): rasterise, then interpolate in torch.

Forward: the posed mesh (crop pixels) is rasterised with :func:`rtface.render.rasterize` on a *detached*
NumPy copy, giving per pixel the visible triangle and its barycentric weights. Any per-vertex attribute
(depth z, normals, PNCC, ...) is then interpolated in torch with a gather::

    value(pixel) = sum_k  b_k(pixel) * attr[triangle(pixel)[k]]

Gradient (the paper's choice, Richardson et al. 2017 Sec. 3): triangle ids and barycentrics are treated as
constants, so ``d depth(pixel) / d z_k = b_k`` for the three vertices of the visible triangle and the
gradient with respect to the vertices' x and y (which move the triangle over the pixel grid) is zero.
Coverage and visibility are piecewise constant anyway; the image-plane position is supervised by the
vertex / landmark losses instead. This makes the layer cheap (one rasterisation, no autograd through it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rtface.render import rasterize


@dataclass
class TorchRaster:
    triangle: torch.Tensor  # (B, H, W) int64, -1 = background
    barycentric: torch.Tensor  # (B, H, W, 3)
    mask: torch.Tensor  # (B, H, W) bool
    vertex_index: torch.Tensor  # (B, H, W, 3) int64 vertex ids of the visible triangle (0 on background)


class RenderLayer:
    """Rasterise batches of meshes into ``height x width`` maps and interpolate vertex attributes."""

    def __init__(self, triangles: np.ndarray, height: int, width: int | None = None):
        self.triangles_np = np.ascontiguousarray(triangles, dtype=np.int32)
        self.triangles = torch.from_numpy(self.triangles_np.astype(np.int64))
        self.height = int(height)
        self.width = int(width if width is not None else height)

    def rasterize(self, vertices_px: torch.Tensor) -> TorchRaster:
        """``(B, V, 3)`` pixel-space vertices -> :class:`TorchRaster` (no gradient)."""
        v = vertices_px.detach().to("cpu", torch.float32).numpy()
        r = rasterize(v, self.triangles_np, self.height, self.width, backend="cpu")
        dev = vertices_px.device
        tri = torch.from_numpy(r.triangle.astype(np.int64)).to(dev)
        bary = torch.from_numpy(r.barycentric).to(dev, vertices_px.dtype)
        mask = torch.from_numpy(r.mask).to(dev)
        vidx = self.triangles.to(dev)[tri.clamp_min(0)]  # (B, H, W, 3)
        vidx = torch.where(mask[..., None], vidx, torch.zeros_like(vidx))
        return TorchRaster(tri, bary, mask, vidx)

    @staticmethod
    def interpolate(raster: TorchRaster, attributes: torch.Tensor) -> torch.Tensor:
        """Per-vertex ``(B, V, C)`` -> per-pixel ``(B, C, H, W)``, 0 on background; differentiable in the attributes."""
        b, h, w, _ = raster.vertex_index.shape
        c = attributes.shape[-1]
        idx = raster.vertex_index.reshape(b, h * w * 3, 1).expand(b, h * w * 3, c)
        vals = torch.gather(attributes, 1, idx).reshape(b, h, w, 3, c)
        bary = raster.barycentric.to(attributes.dtype)
        out = (vals * bary[..., None]).sum(dim=3)
        out = out * raster.mask[..., None].to(attributes.dtype)
        return out.permute(0, 3, 1, 2)

    def depth(self, vertices_px: torch.Tensor, raster: TorchRaster | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rendered depth ``(B, 1, H, W)`` (crop px, 0 outside; gradient to vertex z) and mask ``(B, 1, H, W)``."""
        if raster is None:
            raster = self.rasterize(vertices_px)
        d = self.interpolate(raster, vertices_px[..., 2:3])
        return d, raster.mask[:, None].to(vertices_px.dtype)
