"""Combine two phase-1 checkpoints: the CoarseNet of one run and the FineNet of another.

Phase 1 may train the two networks in separate runs (``python -m train.phase1 --fine-only --init ...``
trains a FineNet while a CoarseNet run goes on), and phase 2 and the export take one checkpoint.

``python -m train.combine --coarse RUN_A/ckpt_last.pt --fine RUN_B/ckpt_last.pt --out combined.pt``
(``--drop-flow``: the FineNet without the flow it was trained with, ``train.phase1 --fine-flow``; the depth
residual path is kept as it is)

The result has the FineNet run's configuration (its ``fine`` and ``train`` sections) with the CoarseNet run's
``coarse`` section (the architecture its weights have; a ``train.coarse_real`` checkpoint works too); both
runs must use the same variant and face model. Optimiser states are not carried over (a combined checkpoint starts phase 2
or goes to the export, it is not resumed).
"""

from __future__ import annotations

import argparse
import sys

from .phase1 import CheckpointError, load_checkpoint, save_checkpoint


def combine(coarse_ckpt: dict, fine_ckpt: dict) -> dict:
    """A checkpoint dict with the CoarseNet of ``coarse_ckpt`` and the FineNet of ``fine_ckpt``."""
    for key in ("variant", "face_model_hash"):
        if coarse_ckpt.get(key) != fine_ckpt.get(key):
            raise CheckpointError(f"the two checkpoints differ in {key} ({coarse_ckpt.get(key)!r} vs "
                                  f"{fine_ckpt.get(key)!r}); combine checkpoints of one variant and face model")
    config = dict(fine_ckpt["config"], coarse=coarse_ckpt["config"]["coarse"])
    combined = {
        "format": fine_ckpt["format"],
        "variant": fine_ckpt["variant"],
        "config": config,
        "face_model_hash": fine_ckpt["face_model_hash"],
        "step": int(coarse_ckpt["step"]),
        "total_steps": int(coarse_ckpt.get("total_steps", coarse_ckpt["step"])),
        "coarse": coarse_ckpt["coarse"],
        "fine": fine_ckpt["fine"],
        "provenance": {
            "combined": True,
            "coarse": {"step": int(coarse_ckpt["step"]), "total_steps": coarse_ckpt.get("total_steps"),
                       **coarse_ckpt.get("provenance", {})},
            "fine": {"step": int(fine_ckpt["step"]), "total_steps": fine_ckpt.get("total_steps"),
                     **fine_ckpt.get("provenance", {})},
        },
    }
    if "phase" in fine_ckpt:  # a phase-2 FineNet: the combined networks are phase-2 results
        combined["phase"] = fine_ckpt["phase"]
    return combined


def drop_flow(ckpt: dict) -> dict:
    """``ckpt`` with its FineNet's flow (``FineConfig.max_flow_px``) and the flow's loss taken out: the plain
    FineNet of the same blocks and head, the weights they had."""
    from .config import from_dict
    from .nets import FineNet

    config = dict(ckpt["config"], fine=dict(ckpt["config"]["fine"], max_flow_px=0.0, flow_widths=()),
                  train=dict(ckpt["config"]["train"], w_fine_flow=0.0))
    keep = FineNet(from_dict(config)).state_dict().keys()
    return dict(ckpt, config=config, fine={k: v for k, v in ckpt["fine"].items() if k in keep})


def fresh_fine(ckpt: dict, seed: int = 0) -> dict:
    """``ckpt`` with its FineNet replaced by a newly initialised one of the current variant's architecture."""
    import torch

    from .config import get_variant
    from .nets import FineNet

    cfg = get_variant(ckpt["variant"])
    torch.manual_seed(seed)
    config = dict(ckpt["config"], fine=cfg.to_dict()["fine"])
    return dict(ckpt, config=config, fine=FineNet(cfg).state_dict(), step=0,
                provenance={"fine": "freshly initialised", "seed": seed})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.combine", description=__doc__.split("\n")[0])
    ap.add_argument("--coarse", required=True, help="checkpoint whose CoarseNet is kept")
    ap.add_argument("--fine", required=True,
                    help="checkpoint whose FineNet is kept, or 'fresh' for a newly initialised FineNet")
    ap.add_argument("--drop-flow", action="store_true", help="keep the FineNet without its flow (--fine-flow)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        coarse = load_checkpoint(args.coarse)
        fine = fresh_fine(coarse) if args.fine == "fresh" else load_checkpoint(args.fine)
        if args.drop_flow:
            fine = drop_flow(fine)
        combined = combine(coarse, fine)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    save_checkpoint(combined, args.out)
    print(f"wrote {args.out}: CoarseNet of {args.coarse} (step {combined['step']}), FineNet of {args.fine}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
