"""Export trained networks to ONNX + manifest (``python -m train.export --checkpoint CKPT --variant s``).

Writes ``coarse_<variant>.onnx``, ``fine_<variant>.onnx`` and ``manifest.json`` (docs/CONTRACTS.md) into
``--out`` (default ``rtface/weights/``): opset 17, dynamic batch axis ``N``, the contract's tensor names.
Each file is checked against torch with ONNX Runtime (CPU) on a batch of 2; the max abs difference is
printed and the export fails (nothing written) when the difference relative to the output range exceeds
``--tol``. Weights are stored as float16 (``--storage float16``, the default; :mod:`train.onnx_half`: the graph
still computes in float32, the files are half the size); the stored file is checked again against torch with
``--half-tol``. ``--coarse-from DIR`` (``--fine-from DIR``) ships that weights folder's CoarseNet (FineNet) file unchanged
and exports only the checkpoint's other network, e.g. after a FineNet-only run. ``--random-init`` exports
freshly initialised networks instead (manifest
``"training": {"status": "untrained"}``), so the rest of the pipeline can be built against real files.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from rtface.assets import sha256_file, write_atomic

from .config import VariantConfig, get_variant
from .nets import CoarseNet, FineNet
from .phase1 import CheckpointError, config_of, load_checkpoint

OPSET = 17
MANIFEST_FORMAT = 1
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "rtface" / "weights"
COARSE_INPUTS = ["image", "feedback"]
COARSE_OUTPUTS = ["identity", "expression", "pose"]
FINE_INPUTS = ["image", "coarse_depth", "mask"]
FINE_OUTPUTS = ["depth"]


class ExportError(RuntimeError):
    """The export failed (parity check, file system); nothing was shipped."""


def onnx_bytes(module: torch.nn.Module, args: tuple, inputs: list[str], outputs: list[str]) -> bytes:
    module.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buf, dynamo=False, opset_version=OPSET, input_names=inputs,
                          output_names=outputs, dynamic_axes={n: {0: "N"} for n in inputs + outputs},
                          do_constant_folding=True)
    data = buf.getvalue()
    import onnx

    onnx.checker.check_model(onnx.load_from_string(data))
    return data


def example_inputs(size: int, batch: int = 2, seed: int = 0) -> tuple[dict, dict]:
    """Plausible inputs for the parity check: random crops, sparse feedback, a dome-shaped depth in a disc."""
    rng = np.random.default_rng(seed)
    s = size
    image = rng.random((batch, 3, s, s), dtype=np.float32)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    r2 = ((xx - s / 2) ** 2 + (yy - s / 2) ** 2) / (0.4 * s) ** 2
    mask = (r2 < 1).astype(np.float32)
    depth = (0.3 * s * np.sqrt(np.clip(1 - r2, 0, 1)) + 0.1 * s) * mask
    feedback = np.zeros((batch, 6, s, s), dtype=np.float32)
    feedback[:, :, mask > 0] = rng.random((batch, 6, int(mask.sum())), dtype=np.float32)
    coarse = {"image": image, "feedback": feedback}
    fine = {"image": image,
            "coarse_depth": np.broadcast_to(depth, (batch, 1, s, s)).copy() + rng.normal(0, 1, (batch, 1, s, s)).astype(np.float32) * mask,
            "mask": np.broadcast_to(mask, (batch, 1, s, s)).copy()}
    return coarse, fine


def parity(module: torch.nn.Module, data: bytes, feeds: dict[str, np.ndarray], outputs: list[str],
           tol: float, what: str) -> float:
    """Max abs difference torch vs ONNX Runtime; raises :class:`ExportError` when the relative one > tol."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    got = sess.run(outputs, feeds)
    with torch.no_grad():
        ref = module(*[torch.from_numpy(v) for v in feeds.values()])
    if isinstance(ref, torch.Tensor):
        ref = (ref,)
    worst, worst_rel = 0.0, 0.0
    for name, a, b in zip(outputs, got, ref):
        b = b.numpy()
        if a.shape != b.shape:
            raise ExportError(f"{what}: output {name!r} has shape {a.shape} in ONNX Runtime, {b.shape} in torch")
        d = float(np.max(np.abs(a - b)))
        rel = d / max(1.0, float(np.max(np.abs(b))))
        print(f"  {what}.{name}: max abs diff torch vs ONNX Runtime = {d:.3g} (relative {rel:.3g})")
        worst, worst_rel = max(worst, d), max(worst_rel, rel)
    if not np.isfinite(worst_rel) or worst_rel > tol:
        raise ExportError(f"{what}: ONNX Runtime output differs from torch by {worst:.3g} (relative "
                          f"{worst_rel:.3g} > tolerance {tol:g}); not exported")
    return worst


def stored(module: torch.nn.Module, data: bytes, feeds: dict[str, np.ndarray], outputs: list[str], storage: str,
           tol: float, what: str) -> tuple[bytes, float | None]:
    """The bytes to ship (float16 weights unless ``storage`` is ``"float32"``) and their parity with torch."""
    if storage == "float32":
        return data, None
    from .onnx_half import half_storage

    half = half_storage(data)
    return half, parity(module, half, feeds, outputs, tol, f"{what} (float16 storage)")


def export(cfg: VariantConfig, coarse: CoarseNet | None, fine: FineNet | None, out_dir: Path, face_model_hash: str,
           training: dict, tol: float = 1e-4, metrics: dict | None = None, fine_from: Path | None = None,
           storage: str = "float16", half_tol: float = 2e-3, coarse_from: Path | None = None) -> dict:
    """Export both networks with parity checks, then write the files and manifest. Returns the manifest.

    With ``fine`` (``coarse``) None, the FineNet (CoarseNet) ONNX file of the weights folder ``fine_from``
    (``coarse_from``) is shipped unchanged (its manifest entry and training record are carried over, and its INT8
    copy where that is current: ``python -m train.quantize --only`` then quantises the new network alone)."""
    out_dir = Path(out_dir)
    s = cfg.size
    c_feeds, f_feeds = example_inputs(s)
    print(f"exporting variant {cfg.name!r} (S={s}, opset {OPSET}) to {out_dir}")
    data: dict[str, bytes] = {}
    kept_int8: dict[str, tuple[dict, bytes]] = {}
    kept: dict[str, dict] = {}  # manifest entries of networks shipped unchanged (their own file name and fields)
    diffs: dict[str, float | None] = {}
    half_diffs: dict[str, float | None] = {}
    for key, net, names, outputs, source in (("coarse", coarse, COARSE_INPUTS, COARSE_OUTPUTS, coarse_from),
                                             ("fine", fine, FINE_INPUTS, FINE_OUTPUTS, fine_from)):
        if net is None:
            from rtface.networks import int8_status, load_manifest

            prev = load_manifest(source)
            entry = prev["networks"][key]
            kept[key] = {k: v for k, v in entry.items() if k != "int8"}
            data[key] = (Path(prev["_dir"]) / entry["file"]).read_bytes()
            diffs[key] = entry.get("parity_max_abs_diff")
            if int8_status(prev, (key,)) is None:
                q = entry["int8"]
                kept_int8[key] = (q, (Path(prev["_dir"]) / q["file"]).read_bytes())
            record = {k: v for k, v in prev.get("training", {}).items() if k not in ("coarse", "fine")}
            training = {**training, key: {"from": str(source), "sha256": entry["sha256"], "training": record}}
            continue
        net.eval()
        feeds = c_feeds if key == "coarse" else f_feeds
        if key == "coarse":  # image only without the feedback input
            names = names if net.feedback else names[:1]
            feeds = {k: feeds[k] for k in names}
        args = tuple(torch.from_numpy(v[:1]) for v in feeds.values())
        raw = onnx_bytes(net, args, names, outputs)
        diffs[key] = parity(net, raw, feeds, outputs, tol, key)
        data[key], half_diffs[key] = stored(net, raw, feeds, outputs, storage, half_tol, key)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"coarse": f"coarse_{cfg.name}.onnx", "fine": f"fine_{cfg.name}.onnx"}
    files.update({key: entry["file"] for key, entry in kept.items()})
    networks = {}
    for key in ("coarse", "fine"):
        path = out_dir / files[key]
        write_atomic(path, data[key])
        networks[key] = {**kept.get(key, {}), "file": files[key], "sha256": sha256_file(path),
                         "parity_max_abs_diff": diffs[key]}
        if half_diffs.get(key) is not None:
            networks[key]["storage"] = {"weights": "float16", "parity_max_abs_diff": half_diffs[key]}
        if key in kept_int8:  # shipped unchanged from the folder it was quantised in
            q, q_data = kept_int8[key]
            write_atomic(out_dir / q["file"], q_data)
            networks[key]["int8"] = q
    manifest = {
        "format": MANIFEST_FORMAT,
        "variant": cfg.name,
        "input_size": s,
        "face_model_hash": face_model_hash,
        "networks": networks,
        "opset": OPSET,
        "training": training,
        "metrics": metrics or {},
        "exported": {"at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                     "torch": str(torch.__version__)},
    }
    write_atomic(out_dir / "manifest.json", (json.dumps(manifest, indent=1) + "\n").encode())
    print(f"wrote {', '.join(files.values())} and manifest.json (training status: {training.get('status')})")
    return manifest


def nets_from_checkpoint(ckpt: dict, path: str) -> tuple[VariantConfig, CoarseNet, FineNet | None]:
    """The checkpoint's networks; FineNet None for a CoarseNet-only checkpoint (``train.coarse_real``)."""
    cfg = config_of(ckpt)
    coarse, fine = CoarseNet(cfg), (FineNet(cfg) if "fine" in ckpt else None)
    try:
        coarse.load_state_dict(ckpt["coarse"])
        if fine is not None:
            fine.load_state_dict(ckpt["fine"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path} does not fit the {cfg.name!r} networks ({exc})") from exc
    return cfg, coarse, fine


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.export", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", help="phase-1/phase-2 checkpoint (ckpt_last.pt)")
    ap.add_argument("--variant", default="s")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--tol", type=float, default=1e-4, help="max relative torch vs ONNX Runtime difference")
    ap.add_argument("--storage", choices=("float16", "float32"), default="float16",
                    help="how weights are stored in the files (the graph computes in float32 either way)")
    ap.add_argument("--half-tol", type=float, default=2e-3,
                    help="max relative torch vs ONNX Runtime difference of the float16-stored file")
    ap.add_argument("--random-init", action="store_true", help="export untrained, randomly initialised nets")
    ap.add_argument("--seed", type=int, default=0, help="initialisation seed with --random-init")
    ap.add_argument("--metrics", help="JSON file with held-out metrics to put into the manifest")
    ap.add_argument("--fine-from", help="weights folder whose FineNet ONNX is shipped unchanged (needed for a "
                    "CoarseNet-only checkpoint)")
    ap.add_argument("--coarse-from", help="weights folder whose CoarseNet ONNX is shipped unchanged (the "
                    "checkpoint's own CoarseNet is left out, e.g. after a FineNet-only run)")
    args = ap.parse_args(argv)
    from rtface.face_model import FaceModel

    torch.set_num_threads(2)
    model = FaceModel.load()
    try:
        if args.random_init:
            if args.checkpoint:
                ap.error("--random-init and --checkpoint exclude each other")
            torch.manual_seed(args.seed)
            cfg = get_variant(args.variant)
            coarse, fine = CoarseNet(cfg), FineNet(cfg)
            training = {"status": "untrained", "note": "randomly initialised networks for integration work; "
                        "outputs are meaningless", "seed": args.seed, "config": cfg.to_dict()}
        else:
            if not args.checkpoint:
                ap.error("--checkpoint is required (or --random-init)")
            ckpt = load_checkpoint(args.checkpoint, variant=args.variant, face_model_hash=model.hash)
            cfg, coarse, fine = nets_from_checkpoint(ckpt, args.checkpoint)
            if args.coarse_from:
                coarse = None
            if fine is None and not args.fine_from:
                ap.error(f"{args.checkpoint} holds no FineNet: name the weights whose FineNet to ship with --fine-from")
            training = {"status": "trained" if ckpt["step"] >= ckpt.get("total_steps", 0) else "partial",
                        "phase": ckpt.get("phase", 1), "step": int(ckpt["step"]),
                        "total_steps": int(ckpt.get("total_steps", 0)), "checkpoint": str(args.checkpoint),
                        "checkpoint_sha256": sha256_file(Path(args.checkpoint)),
                        "config": ckpt["config"], "provenance": ckpt.get("provenance", {})}
        metrics = json.loads(Path(args.metrics).read_text()) if args.metrics else {}
        export(cfg, coarse, fine, Path(args.out), model.hash, training, tol=args.tol, metrics=metrics,
               fine_from=Path(args.fine_from) if args.fine_from else None,
               coarse_from=Path(args.coarse_from) if args.coarse_from else None, storage=args.storage,
               half_tol=args.half_tol)
    except (CheckpointError, ExportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
