"""Phase 1: supervised training on synthetic faces (``python -m train.phase1 --variant s --steps N --out DIR``).

CoarseNet loss (geometry-aware, all in crop pixels):
    w_vertex   * mean over a fixed subset of face vertices of || v_pred - v_gt ||_2   (3D, x y z in crop px)
  + w_landmark * mean over the 68 landmarks of the 2D error || l_pred - l_gt ||_2
  + w_identity * mean (a_pred - a_gt)^2 + w_expression * mean (b_pred - b_gt)^2       (small regularisers)
  + w_depth    * mean |rendered depth(pred) - GT coarse depth| inside the GT mask     (rendering layer, optional)

FineNet loss (on synthetic faces with detail, see ``train/data.py`` for the input: the true coarse surface
plus noise, or the CoarseNet's own fit): with ``pred`` its output, ``target = coarse_in + detail``,
``e = pred - target``, ``e'`` = ``e`` less its mean per face (depth is known up to a constant), means over
the valid pixels (``fine_valid``) and ``rho`` the square (``fine_loss="l2"``, default) or the absolute value,
    w_fine_l1       * mean rho(e')
  + w_fine_grad     * mean (rho(d/dx e) + rho(d/dy e))                    (keeps detail sharp)
  + w_fine_highpass * mean rho(HP(e))     (:func:`highpass`: e less its local mean, sigma fine_highpass_px)
  + w_fine_flow     * mean Huber(flow - flow*)   (a FineNet with a flow, ``--fine-flow``: ``flow*`` is where the
                                                  fit put each point of the true face, ``train/data.py``; 0 for a
                                                  true coarse input)
(the FineNet's residual is zero-mean over the mask by construction, ``train/nets.py``: it never moves the depth
offset, which no loss here constrains)
The high-pass term weighs the scales the detail benchmark measures (5 mm, 3 px at S = 128) apart from the
smooth part of a fit's shape error, which the image says little about. L2 by default: the synthetic wrinkles
cover a small part of the face and are sub-pixel deep; under L1 the sign gradient of the many detail-free
pixels holds the residual at zero (observed), under L2 the wrinkle pixels drive it. ``fine_l1`` (mean abs
error) is logged either way, next to ``fine_l1_coarse`` (no detail).

Released FineNet (``README``): ``--fine-only --fine-predicted 0.75 --w-fine-data 0.25 --w-fine-grad 4
--w-fine-highpass 4 --fine-first-stride 2``: three faces in four see the CoarseNet's fit, and the first block
runs at half resolution (a receptive field twice as wide for the fit's errors, 2-2.5x cheaper); then more steps
with ``--synth-marks 0.6``: sharp albedo marks without geometry on 60 % of the faces (``rtface.synth``).

Adam, linear warm-up then cosine decay. Checkpoints (``ckpt_last.pt`` every ``ckpt_every_s`` seconds and at
the end, plus ``ckpt_step<N>.pt`` snapshots) hold state dicts, optimiser states and the config, and load
with ``torch.load(weights_only=True)``. The loss log is ``log.jsonl`` (one JSON object per logged step).
Deterministic for a given ``--seed`` (data seeds depend only on the seed and the step).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

# On a small shared CPU, OpenMP threads that spin-wait at barriers while another process holds a core make
# torch 5-10x slower (measured: 3.9 s vs 0.46 s per step with 2 threads vs 1 on the 2-core dev box under
# load). Passive waiting must be set before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from .config import VariantConfig, from_dict, get_variant, with_train  # noqa: E402
from .data import BatchStream, to_tensors  # noqa: E402
from .geometry import TorchFaceModel, project  # noqa: E402
from .nets import CoarseNet, FineNet, gaussian_kernel  # noqa: E402
from .render_layer import RenderLayer  # noqa: E402
from .runloop import RunClock, start_run, stop_on_sigterm  # noqa: E402

CHECKPOINT_FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint is corrupt, of another variant, or of another face model."""


def loss_vertex_ids(model, count: int) -> np.ndarray:
    """Fixed (seed-independent) subset of face vertices used by the vertex loss, sorted."""
    rng = np.random.default_rng(20170721)
    n = model.num_vertices
    return np.sort(rng.choice(n, size=min(count, n), replace=False))


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    if step < warmup:
        return (step + 1) / max(1, warmup)
    t = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def optimise(opt: torch.optim.Optimizer, loss: torch.Tensor, clip: float = 10.0) -> float:
    """One step of ``opt`` on ``loss`` with the gradient norm of its parameters clipped; returns that norm."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], clip)
    opt.step()
    return float(norm)


def fine_detail_losses(fine: torch.nn.Module, b: dict[str, torch.Tensor], t) -> dict[str, torch.Tensor]:
    """FineNet loss on synthetic faces with known detail (module docstring); ``t`` the TrainConfig."""
    nf = b["fine_mask"].shape[0]
    coarse_in = b["fine_coarse_in"][:, None]
    mask = b["fine_mask"][:, None]
    valid = b["fine_valid"][:, None] if "fine_valid" in b else mask
    flow_target = b.get("fine_flow") if t.w_fine_flow > 0 else None
    if flow_target is not None:
        pred, flow = fine(b["image"][:nf], coarse_in, mask, return_flow=True)
    else:
        pred = fine(b["image"][:nf], coarse_in, mask)
    err = pred - coarse_in - b["fine_detail"][:, None]
    # Depth is known up to a constant (and a predicted fit sits at its own depth): the data term is on the
    # error less its mean per face.
    per_face = valid.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1.0)
    centred = err - (err * valid).sum(dim=(1, 2, 3), keepdim=True) / per_face
    area = valid.sum().clamp_min(1.0)
    norm = torch.square if t.fine_loss == "l2" else torch.abs
    data = (norm(centred) * valid).sum() / area
    mx = valid[..., :, 1:] * valid[..., :, :-1]
    my = valid[..., 1:, :] * valid[..., :-1, :]
    gx = (norm(err[..., :, 1:] - err[..., :, :-1]) * mx).sum() / mx.sum().clamp_min(1.0)
    gy = (norm(err[..., 1:, :] - err[..., :-1, :]) * my).sum() / my.sum().clamp_min(1.0)
    grad = gx + gy
    total = t.w_fine_l1 * data + t.w_fine_grad * grad
    out = {}
    if t.w_fine_highpass > 0:
        hp = highpass(err, valid, t.fine_highpass_px)
        out["fine_highpass"] = (norm(hp) * valid).sum() / area
        total = total + t.w_fine_highpass * out["fine_highpass"]
    if flow_target is not None:
        huber = torch.nn.functional.huber_loss(flow, flow_target, reduction="none", delta=1.0)
        huber = huber.sum(dim=1, keepdim=True)
        out["fine_flow"] = (huber * valid).sum() / area
        total = total + t.w_fine_flow * out["fine_flow"]
    with torch.no_grad():
        l1 = (centred.abs() * valid).sum() / area  # mean abs depth error, crop px (logged for both losses)
        target = b["fine_detail"][:, None]
        target = target - (target * valid).sum(dim=(1, 2, 3), keepdim=True) / per_face
        base = (target.abs() * valid).sum() / area  # the same for "no detail" (coarse only)
    return {"fine_data": data, "fine_grad": grad, **out, "fine_total": total,
            "fine_l1": l1, "fine_l1_coarse": base}


def highpass(x: torch.Tensor, valid: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """``x`` (B,1,H,W) less its Gaussian-weighted local mean over ``valid`` (sigma in px): the scales below a
    few sigma, where a depth error is detail rather than a smooth shape error (cf. the benchmark's 5 mm
    high-pass, ``benchmarks.detailsets.highpass``, about 3 px at S = 128)."""
    import torch.nn.functional as F

    k = gaussian_kernel(sigma_px).to(x)
    r = k.numel() // 2
    kx, ky = k.view(1, 1, 1, -1), k.view(1, 1, -1, 1)

    def blur(a):
        return F.conv2d(F.conv2d(a, kx, padding=(0, r)), ky, padding=(r, 0))

    local = blur(x * valid) / blur(valid).clamp_min(1e-3)
    return (x - local) * valid


class Phase1:
    """Networks, optimisers and losses of phase 1; ``step(batch)`` does one CoarseNet and one FineNet update."""

    def __init__(self, cfg: VariantConfig, model, total_steps: int, device: str = "cpu"):
        self.cfg = cfg
        self.model = model
        self.device = torch.device(device)
        self.total_steps = int(total_steps)
        t = cfg.train
        self.coarse = CoarseNet(cfg).to(self.device)
        self.fine = FineNet(cfg).to(self.device)
        ids = loss_vertex_ids(model, t.num_loss_vertices)
        self.n_loss_vertices = len(ids)
        self.geom = TorchFaceModel(model, np.concatenate([ids, model.landmarks])).to(self.device)
        self.full = TorchFaceModel(model).to(self.device) if t.w_depth > 0 else None
        self.render = RenderLayer(model.triangles, cfg.size) if t.w_depth > 0 else None
        self.opt_coarse = torch.optim.Adam(self.coarse.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        self.opt_fine = torch.optim.Adam(self.fine.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        self.step_index = 0

    # -- losses ------------------------------------------------------------------------------------
    def coarse_losses(self, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        t = self.cfg.train
        identity, expression, pose = self.coarse(b["image"], b["feedback"])
        vp = project(self.geom.vertices(identity, expression), pose)
        with torch.no_grad():
            vg = project(self.geom.vertices(b["identity"], b["expression"]), b["pose"])
        n = self.n_loss_vertices
        out = {
            "vertex": (vp[:, :n] - vg[:, :n]).norm(dim=-1).mean(),
            "landmark": (vp[:, n:, :2] - vg[:, n:, :2]).norm(dim=-1).mean(),
            "identity": ((identity - b["identity"]) ** 2).mean(),
            "expression": ((expression - b["expression"]) ** 2).mean(),
        }
        total = (t.w_vertex * out["vertex"] + t.w_landmark * out["landmark"] + t.w_identity * out["identity"]
                 + t.w_expression * out["expression"])
        if t.w_depth > 0:
            full = project(self.full.vertices(identity, expression), pose)
            depth, mask = self.render.depth(full)
            m = mask * b["mask"][:, None]
            out["depth"] = ((depth - b["coarse_depth"][:, None]).abs() * m).sum() / m.sum().clamp_min(1.0)
            total = total + t.w_depth * out["depth"]
        out["total"] = total
        return out

    def fine_losses(self, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return fine_detail_losses(self.fine, b, self.cfg.train)


    # -- training ----------------------------------------------------------------------------------
    def set_lr(self) -> float:
        t = self.cfg.train
        lr = t.lr * lr_factor(self.step_index, self.total_steps, t.warmup_steps, t.min_lr_ratio)
        for opt in (self.opt_coarse, self.opt_fine):
            for g in opt.param_groups:
                g["lr"] = lr
        return lr

    def step(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        b = to_tensors(batch, self.device)
        lr = self.set_lr()
        self.fine.train()
        out: dict[str, float] = {}
        if not self.cfg.train.fine_only:
            self.coarse.train()
            lc = self.coarse_losses(b)
            optimise(self.opt_coarse, lc["total"])
            out.update({k: float(v.detach()) for k, v in lc.items()})
        if self.cfg.train.fine_only or self.step_index % self.cfg.train.fine_every == 0:
            lf = self.fine_losses(b)
            optimise(self.opt_fine, lf["fine_total"])
            out.update({k: float(v.detach()) for k, v in lf.items()})
        out["lr"] = lr
        self.step_index += 1
        return out

    # -- checkpoints -------------------------------------------------------------------------------
    def state(self, extra: dict | None = None) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "variant": self.cfg.name,
            "config": self.cfg.to_dict(),
            "face_model_hash": self.model.hash,
            "step": self.step_index,
            "total_steps": self.total_steps,
            "coarse": self.coarse.state_dict(),
            "fine": self.fine.state_dict(),
            "opt_coarse": self.opt_coarse.state_dict(),
            "opt_fine": self.opt_fine.state_dict(),
            "provenance": extra or {},
        }

    def save(self, path: Path, extra: dict | None = None) -> None:
        save_checkpoint(self.state(extra), path)

    def init_from(self, ckpt: dict) -> None:
        """Start from another run: its CoarseNet entirely, its FineNet tensors where the shapes still match."""
        self.coarse.load_state_dict(ckpt["coarse"])
        own = self.fine.state_dict()
        same = {k: v for k, v in ckpt["fine"].items() if k in own and own[k].shape == v.shape}
        own.update(same)
        self.fine.load_state_dict(own)
        self.fine_taken_over = f"{len(same)}/{len(own)}"

    def load_state(self, ckpt: dict, optimisers: bool = True) -> None:
        self.coarse.load_state_dict(ckpt["coarse"])
        self.fine.load_state_dict(ckpt["fine"])
        if optimisers:
            self.opt_coarse.load_state_dict(ckpt["opt_coarse"])
            self.opt_fine.load_state_dict(ckpt["opt_fine"])
        self.step_index = int(ckpt["step"])


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write a checkpoint atomically (a temporary file renamed into place: never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, variant: str | None = None, face_model_hash: str | None = None,
                    map_location: str = "cpu") -> dict:
    """Load and validate a phase-1 checkpoint (``torch.load(weights_only=True)``).

    Raises :class:`CheckpointError` with a clear message for a missing, truncated or corrupt file, a file
    that is not an rtface checkpoint, or one of another variant or face model.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {p} cannot be read ({type(exc).__name__}: {exc}); the file is "
                              f"corrupt or truncated, or not a torch checkpoint - use another one "
                              f"(e.g. the previous ckpt_step*.pt)") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or "coarse" not in ckpt:
        raise CheckpointError(f"{p} is not an rtface phase-1 checkpoint (format {CHECKPOINT_FORMAT})")
    if variant is not None and ckpt.get("variant") != variant:
        raise CheckpointError(f"checkpoint {p} is of variant {ckpt.get('variant')!r}, not {variant!r}: "
                              f"pass --variant {ckpt.get('variant')} or another checkpoint")
    if face_model_hash is not None and ckpt.get("face_model_hash") != face_model_hash:
        raise CheckpointError(f"checkpoint {p} was trained with face model {str(ckpt.get('face_model_hash'))[:12]}..., "
                              f"but the loaded face model is {face_model_hash[:12]}...: its outputs would be "
                              f"meaningless with this model")
    return ckpt


def config_of(ckpt: dict) -> VariantConfig:
    return from_dict(ckpt["config"])


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m train.phase1", description=__doc__.split("\n")[0])
    ap.add_argument("--variant", default="s")
    ap.add_argument("--steps", type=int, required=True, help="total optimisation steps (sets the LR schedule)")
    ap.add_argument("--out", required=True, help="run directory (checkpoints, log.jsonl, config.json)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--resume", action="store_true", help="continue from OUT/ckpt_last.pt if it exists")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--fine-batch-size", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--workers", type=int, help="data worker processes (0: in the training process)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: the data worker takes the other core of a 2-core box)")
    ap.add_argument("--ckpt-every", type=float, help="seconds between checkpoints")
    ap.add_argument("--snapshot-every", type=int, default=0, help="also keep ckpt_step<N>.pt every N steps")
    ap.add_argument("--log-every", type=int)
    ap.add_argument("--w-depth", type=float, help="weight of the rendering-layer depth loss")
    ap.add_argument("--max-minutes", type=float, default=0.0, help="stop (with a checkpoint) after this long")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--fine-only", action="store_true",
                    help="train FineNet alone; CoarseNet is taken from --init and kept as it is")
    ap.add_argument("--init", help="checkpoint whose CoarseNet (and FineNet, where shapes match) start this run")
    ap.add_argument("--fine-predicted", type=float, metavar="P",
                    help="fraction of FineNet faces fed the CoarseNet's own fit (train/data.py), not the truth")
    ap.add_argument("--fine-coarse-weights", metavar="DIR",
                    help="weights folder of the CoarseNet that makes those fits (default: the package's)")
    ap.add_argument("--w-fine-grad", type=float, help="weight of the FineNet's depth-gradient term")
    ap.add_argument("--w-fine-data", type=float, help="weight of the FineNet's depth term")
    ap.add_argument("--w-fine-highpass", type=float, help="weight of the FineNet's high-passed depth term")
    ap.add_argument("--fine-highpass-px", type=float,
                    help="Gaussian sigma (crop px) of that term's local mean: the scales below a few sigma count")
    ap.add_argument("--synth-marks", type=float, metavar="P",
                    help="share of synthetic faces with sharp albedo marks and no geometry (rtface.synth marks_prob)")
    ap.add_argument("--fine-first-stride", type=int, choices=(1, 2),
                    help="resolution of the FineNet's first block relative to its input (the variant's by default)")
    ap.add_argument("--fine-widths", type=int, nargs="+", metavar="C",
                    help="channels of the FineNet's blocks (a new FineNet: layers whose shapes differ start afresh)")
    ap.add_argument("--fine-convs", type=int, nargs="+", metavar="N", help="3x3 convolutions per FineNet block")
    ap.add_argument("--fine-flow", type=float, metavar="PX",
                    help="the FineNet also shifts the coarse surface in the image plane, by at most PX crop px")
    ap.add_argument("--w-fine-flow", type=float, help="weight of the FineNet flow's supervision (with --fine-flow)")
    ap.add_argument("--fine-flow-widths", type=int, nargs="+", metavar="C",
                    help="block widths of the flow's branch (default: the variant's, 16 32 64)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out, model, last = start_run(args.out, args.threads, args.seed)
    np.random.seed(args.seed)
    cfg = with_train(get_variant(args.variant), batch_size=args.batch_size, fine_batch_size=args.fine_batch_size,
                     lr=args.lr, data_workers=args.workers, ckpt_every_s=args.ckpt_every,
                     log_every=args.log_every, w_depth=args.w_depth, seed=args.seed,
                     fine_only=True if args.fine_only else None, fine_predicted_prob=args.fine_predicted,
                     fine_coarse_weights=args.fine_coarse_weights, w_fine_grad=args.w_fine_grad,
                     w_fine_l1=args.w_fine_data, w_fine_highpass=args.w_fine_highpass,
                     fine_highpass_px=args.fine_highpass_px, w_fine_flow=args.w_fine_flow,
                     synth_marks_prob=args.synth_marks)
    fine = {"first_stride": args.fine_first_stride, "widths": tuple(args.fine_widths or ()) or None,
            "convs_per_block": tuple(args.fine_convs or ()) or None, "max_flow_px": args.fine_flow,
            "flow_widths": tuple(args.fine_flow_widths or ()) or None}
    fine = {k: v for k, v in fine.items() if v is not None}
    if fine:
        cfg = dataclasses.replace(cfg, fine=dataclasses.replace(cfg.fine, **fine))
    if len(cfg.fine.widths) != len(cfg.fine.convs_per_block):
        raise SystemExit(f"error: {len(cfg.fine.widths)} FineNet widths but {len(cfg.fine.convs_per_block)} "
                         "block lengths; give --fine-convs with one count per block")
    resume = None
    if args.resume and last.is_file():
        resume = load_checkpoint(last, variant=cfg.name, face_model_hash=model.hash)
        cfg = config_of(resume)
    trainer = Phase1(cfg, model, args.steps, device=args.device)
    if args.init and resume is None:
        init = load_checkpoint(args.init, variant=cfg.name, face_model_hash=model.hash)
        trainer.init_from(init)
        print(f"CoarseNet from {args.init}; FineNet layers taken over: {trainer.fine_taken_over}", flush=True)
    if resume is not None:
        trainer.load_state(resume)
        print(f"resumed from {last} at step {trainer.step_index}", flush=True)
    (out / "config.json").write_text(json.dumps({"config": cfg.to_dict(), "argv": sys.argv, "steps": args.steps,
                                                 "face_model_hash": model.hash}, indent=1))
    provenance = {"command": " ".join(sys.argv), "seed": args.seed, "steps": args.steps,
                  "torch": str(torch.__version__), "data": "rtface.synth on the fly, seeds < 10**6"}
    t = cfg.train
    stream = BatchStream(cfg, args.seed, start=trainer.step_index)
    log = open(out / "log.jsonl", "a")
    from tqdm import tqdm

    bar = tqdm(total=args.steps, initial=trainer.step_index, disable=args.no_progress, mininterval=5.0,
               dynamic_ncols=True)
    stop_on_sigterm()
    clock = RunClock(lambda: trainer.save(last, provenance), t.ckpt_every_s, args.max_minutes)
    t_data = 0.0
    t_step = 0.0
    try:
        while trainer.step_index < args.steps:
            t0 = time.perf_counter()
            batch = next(stream)
            t1 = time.perf_counter()
            losses = trainer.step(batch)
            t2 = time.perf_counter()
            t_data += t1 - t0
            t_step += t2 - t1
            clock.update(losses)
            bar.update(1)
            s = trainer.step_index
            if s % t.log_every == 0 or s == args.steps:
                rec = {"step": s, "time_s": round(clock.elapsed, 1),
                       "data_s": round(t_data, 1), "compute_s": round(t_step, 1),
                       **{k: round(v, 5) for k, v in losses.items()}}
                log.write(json.dumps(rec) + "\n")
                log.flush()
                avg = clock.avg
                bar.set_postfix(v=f"{avg.get('vertex', float('nan')):.2f}", lm=f"{avg.get('landmark', float('nan')):.2f}",
                                fine=f"{avg.get('fine_l1', float('nan')):.3f}", refresh=False)
            if args.snapshot_every and s % args.snapshot_every == 0:
                trainer.save(out / f"ckpt_step{s}.pt", provenance)
            if clock.after_step(s):
                break
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted ({exc}) at step {trainer.step_index}", flush=True)
    finally:
        trainer.save(last, provenance)
        stream.close()
        log.close()
        bar.close()
    print(f"saved {last} at step {trainer.step_index}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
