"""Average the FineNets of several checkpoints of one lineage (a "model soup", Wortsman et al., ICML 2022).

``python -m train.average --out soup.pt RUN_A/ckpt_last.pt:0.35 RUN_B/ckpt_last.pt:0.65``

FineNets fine-tuned from a common ancestor (e.g. phase 2 of two phase-1 FineNets, one trained on from the
other) lie in one basin of the loss, and the weighted mean of their parameters is a network between them; it
often beats both on what they trade (here: detail recovered against spurious relief, README "Detail").

The result is the first checkpoint with its FineNet replaced by the weighted mean of the FineNets' parameters
and batch-norm statistics (integer buffers, such as ``num_batches_tracked``, are the first's); its CoarseNet,
configuration and phase are the first's, its optimiser state is dropped (the result goes to the export, it is
not resumed), and ``provenance`` lists each input with its weight, sha256 and own provenance. All inputs must
share the variant, the face model, the CoarseNet's weights and the FineNet's architecture; the weights must be
positive and sum to 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from rtface.assets import sha256_file

from .config import from_dict
from .phase1 import CheckpointError, load_checkpoint, save_checkpoint

WEIGHT_SUM_TOL = 1e-6


def _fine_architecture(ckpt: dict):
    fine = from_dict(ckpt["config"]).fine
    return dataclasses.replace(fine, flow_widths=()) if fine.max_flow_px == 0 else fine


def average(ckpts: list[dict], weights: list[float], sources: list[dict] | None = None) -> dict:
    """A checkpoint whose FineNet is ``sum_i weights[i] * FineNet_i`` (module docstring); ``sources[i]``
    (e.g. ``{"checkpoint": path, "sha256": ...}``) goes into the provenance entry of input ``i``."""
    sources = sources or [{"checkpoint": f"input {i + 1}"} for i in range(len(ckpts))]
    names = [str(s.get("checkpoint", f"input {i + 1}")) for i, s in enumerate(sources)]
    if len(ckpts) < 2 or len(ckpts) != len(weights):
        raise CheckpointError(f"give two or more checkpoints, each with a weight (got {len(ckpts)} checkpoints and "
                              f"{len(weights)} weights)")
    if min(weights) <= 0 or abs(sum(weights) - 1.0) > WEIGHT_SUM_TOL:
        raise CheckpointError(f"the weights must be positive and sum to 1, got {weights}")
    for name, c in zip(names, ckpts):
        if "fine" not in c:
            raise CheckpointError(f"{name} has no FineNet (a CoarseNet-only checkpoint); give FineNet checkpoints")
    first = ckpts[0]
    for name, c in zip(names[1:], ckpts[1:]):
        for key in ("variant", "face_model_hash"):
            if c.get(key) != first.get(key):
                raise CheckpointError(f"{name} differs from {names[0]} in {key} ({c.get(key)!r} vs {first.get(key)!r})")
        if _fine_architecture(c) != _fine_architecture(first) or c["fine"].keys() != first["fine"].keys():
            raise CheckpointError(f"{name} has another FineNet architecture than {names[0]}; only FineNets of one "
                                  f"configuration can be averaged")
        if c["coarse"].keys() != first["coarse"].keys() or not all(
                torch.equal(c["coarse"][k], first["coarse"][k]) for k in first["coarse"]):
            raise CheckpointError(f"{name} has another CoarseNet than {names[0]}; average FineNets that were trained "
                                  f"on one CoarseNet's fits (train.combine gives them one first)")
    fine = {}
    for key, value in first["fine"].items():
        if value.is_floating_point():
            fine[key] = sum(w * c["fine"][key].to(torch.float64) for c, w in zip(ckpts, weights)).to(value.dtype)
        else:
            fine[key] = value.clone()
    out = {k: v for k, v in first.items() if k not in ("opt", "fine", "provenance")}
    out["fine"] = fine
    out["provenance"] = {"averaged": [{**src, "weight": float(w), "step": int(c.get("step", 0)),
                                       "provenance": c.get("provenance", {})}
                                      for src, c, w in zip(sources, ckpts, weights)]}
    return out


def _parse(item: str) -> tuple[str, float]:
    path, sep, w = item.rpartition(":")
    try:
        if not sep:
            raise ValueError
        return path, float(w)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{item!r}: give PATH:WEIGHT, e.g. runs/a/ckpt_last.pt:0.5") from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.average", description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="+", type=_parse, metavar="PATH:WEIGHT",
                    help="checkpoints and their weights (positive, summing to 1)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        ckpts = [load_checkpoint(path) for path, _ in args.inputs]
        sources = [{"checkpoint": path, "sha256": sha256_file(Path(path))} for path, _ in args.inputs]
        result = average(ckpts, [w for _, w in args.inputs], sources)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    save_checkpoint(result, args.out)
    print(f"wrote {args.out}: the FineNet averaged over " + ", ".join(f"{p} ({w:g})" for p, w in args.inputs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
