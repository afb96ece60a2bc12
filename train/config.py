"""Configurations of the trainable variants (dataclasses, JSON-serialisable via :func:`asdict`).

``s``     the fast default: crop S=128, real time on a 2-core CPU with ONNX Runtime (targets CoarseNet <= 8 ms,
          FineNet <= 15 ms at batch 1; measured on the 2-core dev box, 2 ORT threads: about 1.0 ms and 4 ms).
          Same structure as the paper: the paper's trunk widths with one residual block per stage; FineNet
          with VGG blocks 24/48/96, block 1 at full resolution (at S=128 a wrinkle is 1-2 px wide: a first
          block at half resolution, tried first, could not see it) and a thin full-resolution 1x1 head
          (32-32-16-8-1; with 64 channels batch 8 became memory-bound, 5x slower). Sized to leave headroom
          for the rest of the pipeline and to train in under an hour on a CPU.
``paper`` paper-sized (Richardson et al. CVPR 2017, Fig. 3): S=200, ResNet trunk 32-64-128-256 and a
          hypercolumn FineNet with VGG blocks 64/128/256 and a 1x1 head 450-50-50-10-1.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

NUM_IDENTITY = 100  # CoarseNet's outputs (docs/CONTRACTS.md)
NUM_EXPRESSION = 53


@dataclass(frozen=True)
class CoarseConfig:
    widths: tuple[int, ...] = (32, 64, 128, 256)  # residual stages, each stride 2 (paper widths)
    blocks: tuple[int, ...] = (1, 1, 1, 1)  # basic residual blocks per stage (paper variant: 2)
    stem_width: int = 32  # 7x7/2 stem
    stem_pool: bool = False  # an extra early stride (3x3/2 max pool after the stem, as in ResNet)
    head_width: int = 256  # the 3x3 conv after the trunk
    fc_hidden: int = 0  # 0: the pooled features go straight to the output layer
    # Input rendering layer (the paper's iterative feedback: 6 extra input channels). Off for the released nets:
    # it costs ~3 ms a face at run time to render, and the tracker's landmark-based crop already carries the
    # previous frame's estimate (measurement in the README).
    feedback: bool = True


@dataclass(frozen=True)
class FineConfig:
    widths: tuple[int, ...] = (32, 64, 128)  # VGG-like conv blocks (2 convs 3x3 each); 64/128/256 in the paper
    convs_per_block: tuple[int, ...] = (2, 2, 2)
    first_stride: int = 2  # resolution of block 1 relative to the input (1 in the paper)
    head: tuple[int, ...] = (32, 32, 16, 8)  # 1x1 convs on the hypercolumn, then 1 output (paper: 450-50-50-10)
    # > 0: the FineNet also moves the coarse surface in the image plane, by a predicted flow of at most this many
    # crop px (train/nets.py, FineNet): a fit whose features sit a pixel or two off is corrected by a smooth shift
    # rather than by a steep residual. 0: the paper's FineNet, a depth residual only.
    max_flow_px: float = 0.0
    flow_widths: tuple[int, ...] = (16, 32, 64)  # blocks of the flow's own branch (with max_flow_px > 0)
    # The output filter (train/nets.py, OutputFilter): the residual is blurred by a Gaussian of this standard
    # deviation (crop px; 0: no blur) and multiplied by ``out_gain``. Neither is learnt: ``python -m
    # train.calibrate`` chooses them on the detail sets' validation seed for a trained FineNet.
    out_blur_px: float = 0.0
    out_gain: float = 1.0


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 16
    lr: float = 1e-3
    min_lr_ratio: float = 0.02  # cosine decay to lr * min_lr_ratio
    weight_decay: float = 1e-5
    warmup_steps: int = 100
    fine_batch_size: int = 8
    fine_every: int = 1  # a FineNet step every k CoarseNet steps
    feedback_prob: float = 0.5  # probability that a sample carries the feedback of a perturbed estimate
    num_loss_vertices: int = 2000  # vertices subsampled (fixed, seeded) for the vertex loss
    w_vertex: float = 1.0  # mean |v_pred - v_gt| (L2 per vertex) in crop px
    w_landmark: float = 1.0  # mean 68-landmark 2D error in crop px
    w_identity: float = 0.02  # small coefficient regularisers (squared error vs ground truth)
    w_expression: float = 0.2
    w_depth: float = 0.0  # rendering-layer depth loss (crop px) inside the GT mask; 0 = off (cost)
    fine_loss: str = "l2"  # "l2" or "l1" for both FineNet terms. Wrinkles are sparse and sub-pixel: with L1 the
    #                        sign gradient of the many detail-free pixels pins the residual at 0 (measured: no
    #                        learning in 400 steps); L2 lets the few wrinkle pixels drive the gradient.
    w_fine_l1: float = 1.0  # data term on (residual - detail) inside the mask, crop px (L1 or L2, see fine_loss)
    w_fine_grad: float = 1.0  # same on grad(pred depth) - grad(gt depth) inside the mask, crop px / px
    w_fine_highpass: float = 0.0  # data term on the error's high-pass (phase1.highpass, fine_highpass_px)
    w_fine_flow: float = 0.0  # FineNet flow (FineConfig.max_flow_px) against the fit's true displacement, Huber, px
    fine_highpass_px: float = 3.0
    coarse_noise_px: float = 1.0  # std of the smooth noise added to the GT coarse depth fed to FineNet
    detail_prob: float = 1.0  # fraction of synthetic faces with fine detail in FineNet batches
    # Groove depths of the synthetic detail (mm). Wider than synth's default (0.2-1.5): at S=128 one pixel is
    # 1.7 mm of face, so only the deeper folds leave a trace in the image a FineNet can learn from.
    detail_mm: tuple[float, float] = (0.3, 3.0)
    # Narrowest wrinkle cross-section (px) in the training faces: synth's default 0.7 px leaves most wrinkles
    # invisible after blur and JPEG at S=128, and a FineNet trained on them learnt a zero residual (measured).
    detail_min_width_px: float = 2.0
    # Fraction of FineNet faces whose coarse input is the CoarseNet's own fit of the synthetic image (the
    # weights folder ``fine_coarse_weights``, "" = the package's), as in the pipeline, instead of the true coarse
    # depth plus smooth noise. The target is then the true surface: the FineNet learns to correct the coarse
    # fit's errors at the scale of a few mm (nose ridge, lids, lips) where the image's shading shows them.
    fine_predicted_prob: float = 0.0
    fine_coarse_weights: str = ""
    # Pixels of a predicted-input face whose true depth lies further than this from the fit (after the two
    # surfaces' offset is removed, crop px) carry no loss: a fit that missed the face teaches nothing.
    fine_predicted_max_px: float = 6.0
    # Share of synthetic faces with sharp albedo marks and no geometry to them (rtface.synth ``marks_prob``:
    # moles, freckles, painted strokes and rings, stubble dots, blotches): the FineNet must not turn them into
    # relief (glasses frames, brows, stubble on real faces). 0 in the runs before it existed.
    synth_marks_prob: float = 0.0
    fine_only: bool = False  # train only FineNet (CoarseNet frozen, e.g. taken over from an earlier run)
    coarse_detail: bool = True  # CoarseNet batches also show faces with detail (more realistic images)
    data_workers: int = 1
    prefetch: int = 4
    log_every: int = 10
    ckpt_every_s: float = 240.0  # wall-clock seconds between checkpoints
    seed: int = 0


@dataclass(frozen=True)
class VariantConfig:
    name: str
    size: int
    coarse: CoarseConfig = field(default_factory=CoarseConfig)
    fine: FineConfig = field(default_factory=FineConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


VARIANTS: dict[str, VariantConfig] = {
    "s": VariantConfig(name="s", size=128, fine=FineConfig(widths=(24, 48, 96), first_stride=1)),
    "paper": VariantConfig(
        name="paper",
        size=200,
        coarse=CoarseConfig(widths=(32, 64, 128, 256), blocks=(2, 2, 2, 2), stem_width=32, stem_pool=False,
                            head_width=256, fc_hidden=0),
        fine=FineConfig(widths=(64, 128, 256), convs_per_block=(2, 2, 3), first_stride=1,
                        head=(450, 50, 50, 10)),
        train=TrainConfig(batch_size=32, fine_batch_size=8),
    ),
}


def get_variant(name: str) -> VariantConfig:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}") from None


def from_dict(d: dict[str, Any]) -> VariantConfig:
    """Inverse of ``VariantConfig.to_dict`` (tuples restored)."""

    def build(cls, values):
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in values:
                continue
            v = values[f.name]
            kwargs[f.name] = tuple(v) if isinstance(v, list) else v
        return cls(**kwargs)

    return VariantConfig(
        name=d["name"], size=int(d["size"]),
        coarse=build(CoarseConfig, d.get("coarse", {})),
        fine=build(FineConfig, d.get("fine", {})),
        train=build(TrainConfig, d.get("train", {})),
    )


def with_train(cfg: VariantConfig, **overrides: Any) -> VariantConfig:
    """A copy of ``cfg`` with some training options replaced (``None`` values are ignored)."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **overrides))
