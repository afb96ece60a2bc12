"""Choose a trained FineNet's output filter (blur and gain of its change) on the detail sets' validation seed.

``python -m train.calibrate --checkpoint soup.pt --out soup_cal.pt [--weights rtface/weights] [--seed 1]
[--faces 48] [--blur 0,0.7,1,1.4,2] [--gain 1,1.2,1.3,1.4,1.5,1.6,1.8,2] [--max-relief 1.4]``

A FineNet trained with an L2 loss on fits that sit a pixel or two off returns a change of the coarse depth that
is noisy at the pixel scale and timid in amplitude. The output filter (``train/nets.py``, :class:`OutputFilter`)
blurs the change by a fixed Gaussian and scales it; it is part of the network's graph, so every runtime and
the INT8 conversion compute it. This tool tries every pair of ``--blur`` (crop px) and ``--gain`` on the
held-out detail sets of ``benchmarks.detailsets`` (a renderer the training never saw), at a seed other than the
test seed 0 that ``python -m benchmarks accuracy`` reports, and keeps the pair with the most detail recovered
given the predicted coarse surface whose spurious relief (albedo-edge set, true coarse surface) stays at or
below ``--max-relief`` x the coarse's (the target is 1.5x: the default leaves room for INT8 and other faces).

The coarse fits come from the CoarseNet ONNX file of ``--weights`` (FP32), the one the export ships beside the
FineNet (``train.export --coarse-from``); the FineNet runs in torch, its unfiltered change computed once per
face. The result is the checkpoint with ``config.fine.out_blur_px`` / ``out_gain`` set and every tried pair's
figures in ``provenance["calibrated"]``; export it as usual.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rtface.assets import sha256_file

from .config import from_dict
from .phase1 import CheckpointError, load_checkpoint, save_checkpoint

#: The seed of the detail sets that ``python -m benchmarks accuracy`` reports: never calibrated on.
TEST_SEED = 0


class TorchFine:
    """A torch FineNet behind :class:`rtface.networks.FineNet`'s ``run`` (numpy in and out), with the output
    filter set by :meth:`set` and the unfiltered change cached per input."""

    def __init__(self, fine, size: int):
        self.net = fine.eval()
        self.size = size
        self._cache: dict[str, torch.Tensor] = {}

    def set(self, blur_px: float, gain: float) -> None:
        self.net.out_filter.set(blur_px, gain)

    def run(self, images: Any, coarse_depth: Any, mask: Any) -> np.ndarray:
        n, s = images.shape[0], self.size
        x = torch.from_numpy(np.ascontiguousarray(images, np.float32))
        d = torch.from_numpy(np.ascontiguousarray(coarse_depth, np.float32).reshape(n, 1, s, s))
        m = torch.from_numpy(np.ascontiguousarray(mask, np.float32).reshape(n, 1, s, s))
        key = hashlib.sha1(b"".join(np.ascontiguousarray(a).tobytes() for a in (x, d, m))).hexdigest()
        with torch.no_grad():
            if key not in self._cache:
                self._cache[key] = self.net.change(x, d, m)[0]
            return self.net.apply_change(d, m, self._cache[key]).numpy().reshape(n, s, s)


@dataclasses.dataclass
class _Nets:
    coarse: Any
    fine: TorchFine
    size: int


def evaluate(nets: _Nets, model, pairs: list[tuple[float, float]], faces: int, seed: int) -> list[dict]:
    """Detail recovered (predicted / true coarse), spurious relief and SfS of every (blur, gain) pair."""
    from benchmarks.accuracy import detail_evaluation

    rows, sets = [], {}
    for blur, gain in pairs:
        t0 = time.perf_counter()
        nets.fine.set(blur, gain)
        r = detail_evaluation(nets, model, faces, seed=seed, refine=False, sets=sets)
        d, a = r["detail"], r["albedo"]
        rows.append({"blur_px": blur, "gain": gain, "recovered_pred": d["fine_pred_recovered"],
                     "recovered_true": d["fine_true_recovered"], "relief_true": a["fine_true_ratio"],
                     "relief_pred": a["fine_pred_ratio"],
                     "sfs_const_gain": 1.0 - d["sfs_const_fine"] / d["sfs_const_coarse"]})
        row = rows[-1]
        print(f"blur {blur:4.2f} px  gain {gain:4.2f}:  recovered {100 * row['recovered_pred']:6.2f} % "
              f"(true coarse {100 * row['recovered_true']:6.2f} %)  relief {row['relief_true']:.3f}x  "
              f"SfS {-100 * row['sfs_const_gain']:+.2f} %  ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return rows


def choose(rows: list[dict], max_relief: float) -> dict:
    """The row with the most detail recovered among those with ``relief_true <= max_relief``."""
    ok = [r for r in rows if np.isfinite(r["recovered_pred"]) and r["relief_true"] <= max_relief]
    if not ok:
        raise CheckpointError(f"no output filter keeps the spurious relief at or below {max_relief}x (the least: "
                              f"{min(r['relief_true'] for r in rows):.3f}x); add smaller gains or larger blurs")
    return max(ok, key=lambda r: r["recovered_pred"])


def calibrated(ckpt: dict, row: dict, record: dict) -> dict:
    """``ckpt`` with the FineNet's output filter of ``row`` and ``record`` as ``provenance["calibrated"]``."""
    cfg = from_dict(ckpt["config"])
    cfg = dataclasses.replace(cfg, fine=dataclasses.replace(cfg.fine, out_blur_px=float(row["blur_px"]),
                                                            out_gain=float(row["gain"])))
    out = {k: v for k, v in ckpt.items() if k not in ("opt", "provenance")}
    out["config"] = cfg.to_dict()
    out["provenance"] = {"calibrated": record, "provenance": ckpt.get("provenance", {})}
    return out


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give numbers separated by commas, e.g. 1,1.5,2") from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.calibrate", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="checkpoint with a trained FineNet")
    ap.add_argument("--out", required=True, help="the calibrated checkpoint")
    ap.add_argument("--weights", default=str(Path(__file__).resolve().parents[1] / "rtface" / "weights"),
                    help="weights folder whose CoarseNet makes the fits (the one shipped with the FineNet)")
    ap.add_argument("--seed", type=int, default=1, help="validation seed of the detail sets (not 0, the test seed)")
    ap.add_argument("--faces", type=int, default=48, help="faces per detail set")
    ap.add_argument("--blur", type=_floats, default=[0.0, 0.7, 1.0, 1.4, 2.0], help="blurs to try, crop px")
    ap.add_argument("--gain", type=_floats, default=[1.0, 1.2, 1.3, 1.4, 1.5, 1.6, 1.8, 2.0], help="gains to try")
    ap.add_argument("--max-relief", type=float, default=1.4,
                    help="largest spurious relief (x the coarse's) a chosen filter may give")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args(argv)
    if args.seed == TEST_SEED:
        ap.error(f"--seed {TEST_SEED} is the test seed that benchmarks accuracy reports; calibrate on another")
    if min(args.blur) < 0 or min(args.gain) <= 0:
        ap.error("blurs must be >= 0 and gains > 0")
    from rtface.errors import AssetError
    from rtface.face_model import FaceModel
    from rtface.networks import load_networks

    from .export import nets_from_checkpoint

    torch.set_num_threads(args.threads)
    try:
        model = FaceModel.load()
        ckpt = load_checkpoint(args.checkpoint, face_model_hash=model.hash)
        if "fine" not in ckpt:
            raise CheckpointError(f"{args.checkpoint} has no FineNet (a CoarseNet-only checkpoint)")
        cfg, _, fine = nets_from_checkpoint(ckpt, args.checkpoint)
        onnx_nets = load_networks(args.weights, backend="cpu", precision="fp32", face_model_hash=model.hash)
    except (CheckpointError, AssetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if onnx_nets.size != cfg.size:
        print(f"error: {args.weights} is for crops of {onnx_nets.size} px, the checkpoint for {cfg.size} px",
              file=sys.stderr)
        return 2
    nets = _Nets(onnx_nets.coarse, TorchFine(fine, cfg.size), cfg.size)
    pairs = [(b, g) for b in args.blur for g in args.gain]
    print(f"{len(pairs)} output filters on {args.faces} faces per detail set, seed {args.seed} ...", file=sys.stderr)
    rows = evaluate(nets, model, pairs, args.faces, args.seed)
    onnx_nets.close()
    try:
        best = choose(rows, args.max_relief)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    record = {"checkpoint": args.checkpoint, "sha256": sha256_file(Path(args.checkpoint)),
              "coarse_weights": args.weights, "seed": args.seed, "faces": args.faces,
              "max_relief": args.max_relief, "chosen": best, "tried": rows}
    save_checkpoint(calibrated(ckpt, best, record), args.out)
    plain = next((r for r in rows if r["blur_px"] == 0 and r["gain"] == 1), None)
    print(f"wrote {args.out}: blur {best['blur_px']:g} px, gain {best['gain']:g}: recovered "
          f"{100 * best['recovered_pred']:.2f} %, relief {best['relief_true']:.3f}x" +
          (f" (unfiltered {100 * plain['recovered_pred']:.2f} %, {plain['relief_true']:.3f}x)" if plain else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
