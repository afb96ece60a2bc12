"""CoarseNet and FineNet (Richardson et al., CVPR 2017, Fig. 3), sized per variant (``train/config.py``).

Both networks take the contract's inputs (docs/CONTRACTS.md) and do every normalisation inside, so the
exported ONNX files see raw crops (RGB in [0, 1]) and depth in crop pixels.

CoarseNet
    ResNet-style trunk: 7x7/2 stem conv, optional 3x3/2 max pool (an extra early stride), residual stages
    of basic blocks (first block of each stage stride 2), a 3x3 conv, global average pool, and one fully
    connected layer to identity (100), expression (53, sigmoid) and pose (6). Input: the image
    (normalised with ImageNet mean/std) concatenated with the 6-channel feedback of the input rendering
    layer (normals in [-1, 1] and PNCC in [0, 1], zeros outside the face / without an estimate).

    Pose decoding (our choice; the paper is silent). The network predicts normalised values ``r`` and the
    module decodes them into the contract's physical units::

        pitch, yaw, roll = r[0:3]                       (rad, plain regression)
        scale            = s0 * exp(r[3])               (s0 = crop.frontal_pose(S) scale, px per cm)
        tx, ty           = (tx0, ty0) + r[4:6] * S / 8  ((tx0, ty0) = crop.frontal_pose(S) translation,
                                                          i.e. the crop centre shifted by the template's
                                                          0.5 cm vertical offset)

    Angles are regressed *without* a tanh bound: the loss is geometric (vertex and landmark error), whose
    gradient with respect to an angle never vanishes the way a saturated tanh's does, and synthetic poses
    stay well inside (-pi/2, pi/2) anyway. ``exp`` keeps the scale positive and makes its error relative.
    The output layer starts near zero, so an untrained net predicts the mean face, frontal, template-aligned.

FineNet
    Hypercolumn network: VGG-like blocks (2-3 3x3 convs each, max pool between blocks), every block's
    output upsampled to the input resolution and concatenated with the inputs, then 1x1 convs
    (paper: 450-50-50-10-1) predict a depth residual in crop pixels. ``depth = coarse + residual * mask``.
    Implementation detail: the first 1x1 conv of the head is applied to each block *before* upsampling
    and the results summed. Bilinear upsampling is linear per channel with weights summing to one, so
    ``conv1x1(concat(up(f1), up(f2), ...)) == sum_k up(conv1x1_k(f_k))`` exactly - the paper's
    hypercolumn, at a fraction of the cost (no wide full-resolution tensor). ``FineConfig.first_stride``
    sets the resolution of block 1 (both shipped variants: 1, full resolution, as in the paper).

    Depth input is centred and scaled inside: ``(coarse - masked mean) * mask * 4 / S`` (about [-1, 1] for a
    face filling the crop), plus the mask itself as a channel.

    Flow (ours, ``FineConfig.max_flow_px`` > 0): a CoarseNet fit is mostly *misplaced* - its eyes, mouth,
    nose and jaw line a pixel or two from the image's (measured on held-out faces: moving the fit's vertices to
    their true image positions, depths unchanged, removes half of its high-pass depth error; fixing the depths
    in place, 15 %). A depth residual can only undo that with steep, localised corrections; a shift is smooth.
    So a branch of its own (``FineConfig.flow_widths``: VGG-like blocks on the input at half resolution, two
    dilated convolutions for the whole face's context, a 1x1 readout upsampled) predicts a 2-channel flow ``f``
    (crop px, x right, y down; bounded by ``max_flow_px * tanh(. / max_flow_px)``), the coarse depth is
    resampled at ``p + f(p)`` (bilinear, normalised by the resampled mask so that the background's zeros never
    leak in; where less than half of the footprint is face the coarse depth stays), and the residual is added
    on top. The total change is zero-mean over the mask like the residual alone.

    Output filter (ours, :class:`OutputFilter`, ``FineConfig.out_blur_px`` / ``out_gain``): the change is
    blurred by a fixed Gaussian and scaled, then masked and made zero-mean again. Trained with an L2 loss on
    fits that sit a pixel or two off, the residual comes out both noisy at the pixel scale and timid
    (measured on the held-out detail sets, INT8: a blur of 1.4 px and a gain of 1.5 raise the detail recovered
    from 7.3 % to 9.1 %, with less spurious relief, 1.33x against 1.39x). Not learnt: chosen by ``python -m
    train.calibrate``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rtface.camera import POSE_SIZE
from rtface.crop import frontal_pose
from rtface.render.feedback import FEEDBACK_CHANNELS

from .config import NUM_EXPRESSION, NUM_IDENTITY, VariantConfig

IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
EXPRESSION_INIT_BIAS = -2.0  # sigmoid(-2) ~ 0.12: a mostly neutral face before training


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, dilation * (k // 2), dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        nn.init.zeros_(self.bn2.weight)  # residual branch starts at zero: an identity block
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        s = x if self.short is None else self.short(x)
        return F.relu(y + s, inplace=True)


def _register_image_norm(module: nn.Module) -> None:
    """Image mean/std buffers (the networks normalise their RGB [0, 1] input themselves, see CONTRACTS)."""
    module.register_buffer("image_mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1), persistent=False)
    module.register_buffer("image_std", torch.tensor(IMAGE_STD).view(1, 3, 1, 1), persistent=False)


class CoarseNet(nn.Module):
    """(image (N,3,S,S) RGB [0,1][, feedback (N,6,S,S)]) -> identity (N,100), expression (N,53), pose (N,6).

    Without ``CoarseConfig.feedback`` the net takes the image alone (a ``feedback`` argument is ignored)."""

    def __init__(self, cfg: VariantConfig):
        super().__init__()
        self.size = cfg.size
        c = cfg.coarse
        self.cfg_coarse = c
        _register_image_norm(self)
        fp = frontal_pose(cfg.size)
        self.register_buffer("pose_ref", torch.tensor(fp, dtype=torch.float32), persistent=False)
        self.translation_unit = cfg.size / 8.0
        self.feedback = bool(c.feedback)
        layers: list[nn.Module] = [_conv_bn(3 + (FEEDBACK_CHANNELS if self.feedback else 0), c.stem_width, 7, 2)]
        if c.stem_pool:
            layers.append(nn.MaxPool2d(3, 2, 1))
        cin = c.stem_width
        for width, n in zip(c.widths, c.blocks):
            for i in range(n):
                layers.append(BasicBlock(cin, width, 2 if i == 0 else 1))
                cin = width
        layers.append(_conv_bn(cin, c.head_width, 3))
        self.trunk = nn.Sequential(*layers)
        head: list[nn.Module] = []
        feat = c.head_width
        if c.fc_hidden:
            head += [nn.Linear(feat, c.fc_hidden), nn.ReLU(inplace=True)]
            feat = c.fc_hidden
        out = nn.Linear(feat, NUM_IDENTITY + NUM_EXPRESSION + POSE_SIZE)
        nn.init.normal_(out.weight, std=1e-3)
        nn.init.zeros_(out.bias)
        with torch.no_grad():
            out.bias[NUM_IDENTITY:NUM_IDENTITY + NUM_EXPRESSION] = EXPRESSION_INIT_BIAS
        head.append(out)
        self.fc = nn.Sequential(*head)

    def forward(self, image: torch.Tensor, feedback: torch.Tensor | None = None):
        x = (image - self.image_mean) / self.image_std
        if self.feedback:
            if feedback is None:
                feedback = torch.zeros_like(x[:, :1]).expand(-1, FEEDBACK_CHANNELS, -1, -1)
            x = torch.cat([x, feedback], dim=1)
        f = self.trunk(x).mean(dim=(2, 3))
        raw = self.fc(f)
        identity = raw[:, :NUM_IDENTITY]
        expression = torch.sigmoid(raw[:, NUM_IDENTITY:NUM_IDENTITY + NUM_EXPRESSION])
        return identity, expression, self.decode_pose(raw[:, NUM_IDENTITY + NUM_EXPRESSION:])

    def decode_pose(self, r: torch.Tensor) -> torch.Tensor:
        ref = self.pose_ref
        angles = r[:, 0:3]
        scale = ref[3] * torch.exp(r[:, 3:4])
        txy = ref[4:6] + r[:, 4:6] * self.translation_unit
        return torch.cat([angles, scale, txy], dim=1)


HEAD_SLOPE = 0.1  # negative slope of the FineNet head's leaky ReLUs
FLOW_INIT_STD = 0.01  # initial weights of the FineNet's flow readout (a flow of a few hundredths of a pixel)


def gaussian_kernel(sigma_px: float) -> torch.Tensor:
    """1-D Gaussian of ``sigma_px`` crop px, truncated at ``ceil(3 sigma)`` and normalised to sum 1 (float32)."""
    r = max(1, int(-(-3.0 * sigma_px // 1)))
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (t / sigma_px) ** 2)
    return (g / g.sum()).float()


def band_matrix(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """(S, S) matrix ``K`` with ``K[i, j] = kernel[j - i + r]`` (``r`` its radius) and zeros off the band: ``K @ X``
    filters the columns of an (S, S) map with zeros beyond its border, ``X @ K.T`` its rows."""
    r = kernel.numel() // 2
    i = torch.arange(size)
    off = i[None, :] - i[:, None]
    return torch.where(off.abs() <= r, kernel[(off + r).clamp(0, 2 * r)], torch.zeros((), dtype=kernel.dtype))


class OutputFilter(nn.Module):
    """``delta -> gain * blur(delta)``: a fixed separable Gaussian (:func:`gaussian_kernel`, zeros beyond the
    crop's border) and a gain; the identity for ``blur_px = 0, gain = 1``. The blur is two MatMuls with
    :func:`band_matrix`, part of the network's graph for every runtime: in ONNX Runtime a third of the time of two
    one-channel convolutions (measured: 42 against 130 us a 128 px map)."""

    def __init__(self, size: int, blur_px: float = 0.0, gain: float = 1.0):
        super().__init__()
        self.size = size
        self.register_buffer("band", torch.zeros(size, size), persistent=False)
        self.set(blur_px, gain)

    def set(self, blur_px: float, gain: float) -> None:
        """Change the filter (``python -m train.calibrate`` tries several on one trained network)."""
        if blur_px < 0 or gain <= 0:
            raise ValueError(f"output filter: blur_px must be >= 0 and gain > 0, got {blur_px} and {gain}")
        self.blur_px, self.gain = float(blur_px), float(gain)
        if self.blur_px > 0:
            self.band = band_matrix(gaussian_kernel(self.blur_px), self.size).to(self.band.device)

    @property
    def identity(self) -> bool:
        return self.blur_px == 0 and self.gain == 1.0

    def forward(self, delta: torch.Tensor) -> torch.Tensor:
        if self.blur_px > 0:
            delta = torch.matmul(torch.matmul(self.band, delta), self.band.T)
        return delta * self.gain if self.gain != 1.0 else delta


class FineNet(nn.Module):
    """(image (N,3,S,S), coarse_depth (N,1,S,S) crop px, mask (N,1,S,S)) -> depth (N,1,S,S) crop px: the
    coarse depth plus a residual that is zero outside the mask and zero-mean inside it."""

    def __init__(self, cfg: VariantConfig):
        super().__init__()
        self.size = cfg.size
        f = cfg.fine
        _register_image_norm(self)
        self.depth_scale = 4.0 / cfg.size
        cin = 5
        self.blocks = nn.ModuleList()
        self.strides: list[int] = []
        stride = 1
        for i, (width, n) in enumerate(zip(f.widths, f.convs_per_block)):
            layers: list[nn.Module] = []
            if i == 0:
                layers.append(_conv_bn(cin, width, 3, f.first_stride))
                stride = f.first_stride
            else:
                layers += [nn.MaxPool2d(2, 2), _conv_bn(cin, width, 3)]
                stride *= 2
            layers += [_conv_bn(width, width, 3) for _ in range(n - 1)]
            self.blocks.append(nn.Sequential(*layers))
            self.strides.append(stride)
            cin = width
        h0 = f.head[0]
        # First 1x1 layer of the head, split per hypercolumn member (see the module docstring).
        self.proj_input = nn.Conv2d(5, h0, 1)
        self.proj_blocks = nn.ModuleList(nn.Conv2d(w, h0, 1, bias=False) for w in f.widths)
        # Leaky units in the head: with plain ReLUs the head died (every unit negative, zero residual and zero
        # gradient) within a few hundred steps on synthetic detail, since "no detail" is a strong local optimum.
        head: list[nn.Module] = [nn.LeakyReLU(HEAD_SLOPE, inplace=True)]
        for a, b in zip(f.head[:-1], f.head[1:]):
            head += [nn.Conv2d(a, b, 1), nn.LeakyReLU(HEAD_SLOPE, inplace=True)]
        last = nn.Conv2d(f.head[-1], 1, 1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        head.append(last)
        self.head = nn.Sequential(*head)
        self.max_flow_px = float(f.max_flow_px)
        if self.max_flow_px > 0:
            if not f.flow_widths:
                raise ValueError("a FineNet with a flow (max_flow_px > 0) needs flow_widths for its flow branch")
            layers: list[nn.Module] = [nn.AvgPool2d(2)]  # the flow is smooth: its own net at half resolution
            c = 5
            for i, w in enumerate(f.flow_widths):
                layers += ([nn.MaxPool2d(2)] if i else []) + [_conv_bn(c, w, 3), _conv_bn(w, w, 3)]
                c = w
            layers += [_conv_bn(c, c, 3, dilation=2), _conv_bn(c, c, 3, dilation=4)]  # context of the whole face
            self.flow_net = nn.Sequential(*layers)
            self.flow_out = nn.Conv2d(c, 2, 1)
            # small, not zero: a zero readout passes no gradient to the features the flow has to learn
            nn.init.normal_(self.flow_out.weight, std=FLOW_INIT_STD)
            nn.init.zeros_(self.flow_out.bias)
            self.flow_stride = 2 ** len(f.flow_widths)
            s = cfg.size
            c = (torch.arange(s, dtype=torch.float32) + 0.5) * (2.0 / s) - 1.0  # pixel centres, align_corners=False
            gy, gx = torch.meshgrid(c, c, indexing="ij")
            self.register_buffer("base_grid", torch.stack([gx, gy], dim=-1)[None], persistent=False)
        # its name is train/quantize.py's _FIXED_SCOPE: the INT8 conversion keeps it float without counting it
        self.out_filter = OutputFilter(cfg.size, f.out_blur_px, f.out_gain)

    def forward(self, image: torch.Tensor, coarse_depth: torch.Tensor, mask: torch.Tensor,
                return_flow: bool = False):
        """Fine depth (N,1,S,S) crop px; with ``return_flow`` also the flow (N,2,S,S) crop px (zeros without one)."""
        delta, flow = self.change(image, coarse_depth, mask)
        out = self.apply_change(coarse_depth, mask, delta)
        if return_flow:
            return out, torch.zeros_like(image[:, :2]) if flow is None else flow
        return out

    def change(self, image: torch.Tensor, coarse_depth: torch.Tensor, mask: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The unfiltered change of the coarse depth (N,1,S,S) crop px, zero outside the mask, and the flow
        (N,2,S,S) crop px or None; :meth:`apply_change` turns it into the fine depth."""
        m = mask
        area = m.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
        mean = (coarse_depth * m).sum(dim=(2, 3), keepdim=True) / area
        d = (coarse_depth - mean) * m * self.depth_scale
        x = torch.cat([(image - self.image_mean) / self.image_std, d, m], dim=1)
        h = self.proj_input(x)
        y = x
        for block, proj, stride in zip(self.blocks, self.proj_blocks, self.strides):
            y = block(y)
            p = proj(y)
            if stride > 1:
                p = F.interpolate(p, scale_factor=float(stride), mode="bilinear", align_corners=False)
            h = h + p
        flow = None
        if self.max_flow_px > 0:
            flow = F.interpolate(self.flow_out(self.flow_net(x)), scale_factor=float(self.flow_stride),
                                 mode="bilinear", align_corners=False)
        delta = self.head(h) * m
        if flow is not None:
            flow = self.max_flow_px * torch.tanh(flow / self.max_flow_px)
            delta = delta + (self._resample(coarse_depth, m, flow) - coarse_depth) * m
        return delta, flow

    def apply_change(self, coarse_depth: torch.Tensor, mask: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """``coarse + delta`` after the output filter, masked and zero-mean over the mask."""
        m = mask
        area = m.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
        if not self.out_filter.identity:
            delta = self.out_filter(delta) * m
        # Depth is known up to a constant: the change is made zero-mean over the mask, so the FineNet changes
        # the shape, never the offset (its loss ignores the offset, train/phase1.py).
        delta = delta - (delta.sum(dim=(2, 3), keepdim=True) / area) * m
        return coarse_depth + delta

    def _resample(self, depth: torch.Tensor, m: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """``depth`` sampled at ``p + flow(p)`` over the mask's pixels only (the module docstring)."""
        s = depth.shape[-1]
        grid = self.base_grid + flow.permute(0, 2, 3, 1) * (2.0 / s)
        both = F.grid_sample(torch.cat([depth * m, m], dim=1), grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)
        z, w = both[:, :1], both[:, 1:]
        return torch.where(w > 0.5, z / w.clamp_min(0.5), depth)


def build(cfg: VariantConfig) -> tuple[CoarseNet, FineNet]:
    return CoarseNet(cfg), FineNet(cfg)
