"""The FineNet that runs at the face's own resolution (the detail stage, DESIGN.md "Resolution").

``FineNet(image (N,3,H,W), coarse_depth (N,1,H,W), mask (N,1,H,W)) -> depth (N,1,H,W)``, all maps crop-aligned
at the **detail resolution** H = W (any multiple of :data:`MULTIPLE`, 128 to 512 px in use), depth in pixels of
that map. The network is fully convolutional and sees nothing that depends on the map's size or on the depth's
offset: the coarse surface enters as its slopes (dz/dx, dz/dy: unit-free, so a face's relief looks the same at
every resolution), the image as RGB in [0, 1]. It predicts the **relief** (depth px, into the skin negative)
that the coarse surface lacks; ``depth = coarse + relief * mask``.

Why this shape (speed on a 2-core CPU was the constraint, see ``python -m benchmarks detail``):

* the image enters as RGB and as the log of its luma (shading multiplies the albedo: its log adds, the same
  for every skin tone and exposure);
* an encoder to 1/4 resolution with dilated 3x3 convolutions there (receptive field about 70 px: enough to see
  how the coarse shape is lit around a wrinkle, which says where the light comes from), a decoder back to 1/2
  with a skip connection, and a thin full-resolution tail (bilinear upsampling, then one 3x3 convolution on the
  upsampled features and the log luma) so that wrinkles one or two pixels wide keep their position;
* no global reduction anywhere (no masked mean): every intermediate value stays far below the float16 maximum
  for any map size (issue 26, finding 5), and the relief needs no zero-mean constraint because the coarse
  surface carries the offset.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

#: The detail resolution is a multiple of this (two stride-2 stages, then a factor 2 of head room).
MULTIPLE = 16
#: Slopes of the coarse surface are clipped to this (near the silhouette the surface turns away).
MAX_SLOPE = 4.0
IMAGE_MEAN = (0.5, 0.45, 0.4)
IMAGE_STD = 0.25
LUMA_FLOOR = 0.02  # keeps the log finite and damps the noise of black pixels
LOG_LUMA_MEAN = -1.0


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1, norm: bool = True) -> nn.Sequential:
    """3x3 convolution (+ batch norm, folded into the convolution by the ONNX export) + ReLU."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    return nn.Sequential(*layers, nn.ReLU(inplace=True))


class Slopes(nn.Module):
    """(N,2,H,W) central-difference slopes dz/dx, dz/dy of the coarse depth, clipped to :data:`MAX_SLOPE`, 0 where
    a neighbour is outside the mask. Fixed weights; a module of its own so that its nodes have a name scope
    (``/slopes/``) that the INT8 conversion keeps float (depth values of hundreds of px)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("diff", torch.tensor([[[[-0.5, 0.0, 0.5]]]]), persistent=False)
        self.register_buffer("both", torch.tensor([[[[0.5, 0.0, 0.5]]]]), persistent=False)

    def forward(self, coarse_depth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        z = coarse_depth * mask
        kx, ax = self.diff, self.both
        gx = F.conv2d(z, kx, padding=(0, 1))
        gy = F.conv2d(z, kx.transpose(2, 3), padding=(1, 0))
        # both neighbours inside: (m[x-1] + m[x+1]) / 2 == 1 -> 1, one inside -> 0
        vx = torch.clamp(2.0 * F.conv2d(mask, ax, padding=(0, 1)) - 1.0, 0.0, 1.0) * mask
        vy = torch.clamp(2.0 * F.conv2d(mask, ax.transpose(2, 3), padding=(1, 0)) - 1.0, 0.0, 1.0) * mask
        return torch.cat([torch.clamp(gx, -MAX_SLOPE, MAX_SLOPE) * vx, torch.clamp(gy, -MAX_SLOPE, MAX_SLOPE) * vy],
                         1)


def log_luma(image: torch.Tensor) -> torch.Tensor:
    """(N,1,H,W) log of the luma of RGB [0, 1], centred: shading is a factor of the image, so in the log it is a
    term, the same for dark and light skin and any exposure (a ReLU network does not learn a division)."""
    y = image[:, :1] * 0.299 + image[:, 1:2] * 0.587 + image[:, 2:3] * 0.114
    return torch.log(y + LUMA_FLOOR) - LOG_LUMA_MEAN


class FineNet(nn.Module):
    """Fully convolutional detail network (module docstring). ``widths = (w1, w2)``: channels at 1/2 and 1/4."""

    def __init__(self, widths: tuple[int, int] = (16, 32), context: tuple[int, ...] = (1, 2, 4)):
        super().__init__()
        w1, w2 = widths
        self.widths, self.context = tuple(widths), tuple(context)
        self.register_buffer("image_mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.slopes = Slopes()
        cin = 7  # RGB, log luma, two slopes, mask
        self.enc1 = _conv(cin, w1, 2)
        self.enc2 = _conv(w1, w2, 2)
        self.ctx = nn.ModuleList(_conv(w2, w2, 1, d) for d in context)
        self.up = nn.Conv2d(w2, w1, 1)
        self.dec1 = _conv(w1, w1)
        self.to_full = nn.Conv2d(w1, 4, 1)
        # leaky: with plain ReLUs the full-resolution tail died (under 1 % of its units active after 200 steps,
        # the relief stuck at 0), since "no relief" is a strong local optimum of the detail loss
        self.tail = nn.Sequential(nn.Conv2d(4 + 1, 8, 3, padding=1), nn.LeakyReLU(0.1, inplace=True))
        self.out = nn.Conv2d(8, 1, 1)
        # small, not zero: a zero readout passes no gradient to the features it has to learn (measured: with a
        # zero-initialised readout the relief stayed 0 for 500 steps)
        nn.init.normal_(self.out.weight, std=0.05)
        nn.init.zeros_(self.out.bias)

    def relief(self, image: torch.Tensor, coarse_depth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(N,1,H,W) relief in depth px of the map (0 outside the mask)."""
        luma = log_luma(image)
        x = torch.cat([(image - self.image_mean) / IMAGE_STD, luma, self.slopes(coarse_depth, mask), mask], 1)
        e1 = self.enc1(x)
        y = self.enc2(e1)
        for layer in self.ctx:
            y = y + layer(y)
        y = F.interpolate(self.up(y), scale_factor=2.0, mode="bilinear", align_corners=False)
        y = self.dec1(F.relu(y + e1))
        y = F.interpolate(self.to_full(y), scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.out(self.tail(torch.cat([y, luma], 1))) * mask

    def forward(self, image: torch.Tensor, coarse_depth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return coarse_depth + self.relief(image, coarse_depth, mask)
