"""The detail FineNet's output gain, chosen in the frame on a validation seed of the held-out detail sets.

``python -m train.detail_calibrate CKPT --out CKPT2`` runs ``rtface.reconstruct`` with the checkpoint's FineNet
(exported to a temporary weights folder beside the shipped CoarseNet) on the validation draw (``--seed 1``; the
benchmark's test draw is seed 0) of :mod:`benchmarks.detail`'s sets (their detail at the benchmark's strength,
``--strength``), both face sizes, and finds the gain ``g`` of
the relief that minimises the detail measure's error, ``g = sum P D / sum P^2`` over the high-passed reliefs P
and true detail D (the least-squares scale: the explained share becomes about the squared correlation). The gain
is folded into the output layer's weights and bias (``--out``); the spurious relief on the albedo faces scales by
the same ``g`` and is reported.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch

from benchmarks.detail import SIZES, STRENGTH

from .detail_phase1 import load, save


def measure(weights: Path, faces: int, seed: int, strength: float) -> dict:
    """Relief scores (``benchmarks.relief.ReliefScore``) per set of single images with the FineNet in ``weights``."""
    from benchmarks.detail import frame_set, reliefs
    from benchmarks.relief import ReliefScore
    from rtface import FaceModel

    model = FaceModel.load()
    out = {}
    for size in SIZES:
        for kind in ("detail", "albedo"):
            s = frame_set(model, kind, size, faces, seed, strength=strength)
            sc = ReliefScore()
            for i, (relief, mask, _) in enumerate(reliefs(s["frame"], "image", weights=str(weights))):
                if mask.any():
                    sc.add(relief, s["detail"][i], mask, s["mask"][i], float(s["mm_per_px"][i]))
            out[f"{size}/{kind}"] = sc
    return out


def main(argv: list[str] | None = None) -> int:
    from .detail_export import main as export

    p = argparse.ArgumentParser(prog="python -m train.detail_calibrate", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", required=True, type=Path, help="the checkpoint with the gain folded in")
    p.add_argument("--faces", type=int, default=12, help="faces per set of the validation draw")
    p.add_argument("--seed", type=int, default=1, help="draw of the sets (not 0: the benchmark's test draw)")
    p.add_argument("--fit-sizes", nargs="+", choices=list(SIZES), default=list(SIZES),
                   help="the face sizes whose detail sets the gain is fitted on (default: both)")
    p.add_argument("--strength", type=float, default=STRENGTH,
                   help=f"depth scale of the sets' detail (default {STRENGTH:g}, the benchmark's)")
    a = p.parse_args(argv)
    if a.seed == 0:
        p.error("--seed 0 is the benchmark's test draw; calibrate on another")
    from rtface.networks import WEIGHTS_DIR

    with tempfile.TemporaryDirectory(prefix="rtface-calibrate-") as tmp:
        w = Path(tmp) / "weights"
        shutil.copytree(WEIGHTS_DIR, w, ignore=shutil.ignore_patterns("__pycache__", "*.py", "fine*"))
        man = json.loads((w / "manifest.json").read_text())
        man["networks"]["fine"] = {}
        (w / "manifest.json").write_text(json.dumps(man))
        export([str(a.checkpoint), "--weights", str(w)])
        scores = measure(w, a.faces, a.seed, a.strength)
    for k, v in scores.items():
        if k.endswith("/detail") and v.pred > 0:
            print(f"{k}: its own least-squares gain {v.cross / v.pred:.3f}")
    detail = [v for k, v in scores.items() if k.endswith("/detail") and k.split("/")[0] in a.fit_sizes]
    cross, pred = sum(s.cross for s in detail), sum(s.pred for s in detail)
    g = cross / pred if pred > 0 else 1.0
    for k, s in scores.items():
        r = s.result()
        print(f"{k}: explained {r['explained'] * 100:.1f} % corr {r['correlation']:.3f} relief {r['relief_rms_mm']:.4f} mm "
              f"(true {r['true_rms_mm']:.4f}); with the gain: explained "
              f"{(1 - (s.err - s.pred + g * g * s.pred - 2 * (g - 1) * s.cross) / s.true) * 100 if s.true else 0:.1f} %")
    print(f"gain {g:.3f} (least squares over the {' and '.join(a.fit_sizes)} detail sets of the validation draw "
          f"{a.seed}, {a.faces} faces each)")
    net, ck = load(a.checkpoint)
    with torch.no_grad():
        net.out.weight.mul_(g)
        net.out.bias.mul_(g)
    opt = torch.optim.AdamW(net.parameters())
    opt.load_state_dict(ck["opt"])
    save(a.out, net, opt, int(ck["step"]), {"gain": float(g)})
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
