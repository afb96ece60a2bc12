"""Real-face CoarseNet training: ``python -m train.coarse_real --steps N --out DIR [--init-onnx FILE]``.

Trains the CoarseNet on real photographs with hand-annotated landmarks, their profiled copies and synthetic
faces together (:mod:`train.realdata68`). Loss per crop, all in crop pixels::

    w_lm   * w_landmark_i * mean_k || P(V_pred[id_ik]) - l_ik ||_2          68 landmarks, contour-marched ids
  + w_vert * w_vertex_i   * mean_v || P(V_pred[v]) - P(V_tgt[v]) ||_2        3D, 2,000 fixed vertices
  + w_id   * mean (a - a_tgt)^2 + w_exp * mean (b - b_tgt)^2                 coefficient priors

where ``V_tgt`` is the exact mesh of a synthetic face or the model fit of a real one (a pseudo ground truth: its
pose and landmarks are good, its depth is the prior's, hence the lower ``w_vertex`` of real sources).

Initialisation (``--init-onnx``): the shipped CoarseNet ONNX. Its BatchNorms were folded into the convolutions
at export; :func:`coarse_from_onnx` puts the folded weights back and re-creates BatchNorms whose statistics are
measured on real crops, so the network computes exactly the ONNX function in eval mode and nearly the same in
train mode. The feedback input channels of an older net are dropped (the released net takes the image only).

Weight averaging (``--ema DECAY``): an exponential moving average of the weights and BatchNorm statistics is kept
beside the trained net; the checkpoint's ``coarse`` (what is evaluated and exported) is then the average and
``coarse_raw`` the trained weights (for ``--resume``).

Checkpoints: ``ckpt_last.pt`` (every ``--ckpt-every`` s and at the end; ``torch.load(weights_only=True)``), the
log ``log.jsonl`` with a held-out landmark check (300-W test, ``--eval-faces`` faces) at every checkpoint.
``--resume`` continues a run. Export with ``python -m train.export --checkpoint DIR/ckpt_last.pt --fine-from
rtface/weights``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from .config import CoarseConfig, from_dict, get_variant  # noqa: E402
from .data import to_tensors  # noqa: E402
from .geometry import TorchFaceModel, project  # noqa: E402
from .nets import CoarseNet  # noqa: E402
from .phase1 import (CHECKPOINT_FORMAT, load_checkpoint, loss_vertex_ids, lr_factor, optimise,  # noqa: E402
                     save_checkpoint)
from .profiling import SCENES  # noqa: E402
from .runloop import RunClock, start_run, stop_on_sigterm  # noqa: E402

PHASE = "coarse-real"


def variant_config(name: str = "s", blocks: tuple[int, ...] | None = None):
    """The variant's config with the image-only CoarseNet (and ``blocks`` residual blocks per stage if given)."""
    import dataclasses

    cfg = get_variant(name)
    coarse = dataclasses.replace(cfg.coarse, feedback=False)
    if blocks is not None:
        coarse = dataclasses.replace(coarse, blocks=tuple(int(b) for b in blocks))
    return dataclasses.replace(cfg, coarse=coarse)


def grow(state: dict, old: CoarseConfig, new_net: CoarseNet) -> dict:
    """A state dict for ``new_net`` (more residual blocks per stage than ``old``) that computes the same function:
    every old block keeps its weights as the first blocks of its stage, the added blocks keep their fresh
    initialisation, whose residual branch is exactly zero (``BasicBlock`` zero-initialises its last BatchNorm's
    scale), so they start as identities."""
    new_cfg = new_net.cfg_coarse
    if len(old.blocks) != len(new_cfg.blocks) or any(n < o for o, n in zip(old.blocks, new_cfg.blocks)):
        raise ValueError(f"cannot grow blocks {old.blocks} into {new_cfg.blocks}")
    first = 2 if old.stem_pool else 1  # trunk index of the first residual block

    def index_map(blocks):
        out, k = [], first
        for n in blocks:
            out.append(list(range(k, k + n)))
            k += n
        return out, k

    old_idx, old_head = index_map(old.blocks)
    new_idx, new_head = index_map(new_cfg.blocks)
    mapping = {i: i for i in range(first)}
    mapping[old_head] = new_head
    for o, n in zip(old_idx, new_idx):
        mapping.update(dict(zip(o, n)))
    out = dict(new_net.state_dict())
    for key, value in state.items():
        if key.startswith("trunk."):
            parts = key.split(".")
            parts[1] = str(mapping[int(parts[1])])
            key = ".".join(parts)
        out[key] = value
    return out


def coarse_from_onnx(path: str | os.PathLike, cfg, calibration: np.ndarray) -> CoarseNet:
    """A :class:`CoarseNet` holding the weights of an exported CoarseNet ONNX (module docstring).

    ``calibration`` (N, 3, S, S) RGB [0, 1] crops on which the BatchNorm statistics are measured.
    """
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    for node in m.graph.node:  # weights stored as float16 (train.onnx_half) reach the layers through a Cast
        if node.op_type == "Cast" and node.input[0] in init:
            init[node.output[0]] = init[node.input[0]].astype(np.float32)
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    net = CoarseNet(cfg)
    pairs = []
    mods = list(net.modules())
    for k, mod in enumerate(mods):
        if isinstance(mod, torch.nn.Conv2d):
            bn = mods[k + 1] if k + 1 < len(mods) and isinstance(mods[k + 1], torch.nn.BatchNorm2d) else None
            pairs.append((mod, bn))
    if len(pairs) != len(convs):
        raise ValueError(f"{path}: {len(convs)} convolutions, the {cfg.name!r} CoarseNet has {len(pairs)}")
    biases = []
    with torch.no_grad():
        for (conv, bn), node in zip(pairs, convs):
            w = init[node.input[1]]
            b = np.array(init[node.input[2]] if len(node.input) > 2 else np.zeros(w.shape[0]), np.float32)
            if w.shape[1] != conv.weight.shape[1]:  # drop the feedback channels of an older net's stem
                w = w[:, : conv.weight.shape[1]]
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(b))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
            biases.append(b)
        gemm = [n for n in m.graph.node if n.op_type == "Gemm"]
        if len(gemm) != 1 or len(net.fc) != 1:
            raise ValueError(f"{path}: expected one fully connected layer, found {len(gemm)}")
        net.fc[0].weight.copy_(torch.from_numpy(np.array(init[gemm[0].input[1]], np.float32)))
        net.fc[0].bias.copy_(torch.from_numpy(np.array(init[gemm[0].input[2]], np.float32)))
    # measure the (pre-BN) conv statistics in eval mode, where the net is exactly the ONNX function
    stats = {}
    hooks = [bn.register_forward_hook(lambda mod, inp, out, key=i: stats.__setitem__(
        key, (inp[0].mean((0, 2, 3)), inp[0].var((0, 2, 3))))) for i, (_, bn) in enumerate(pairs)]
    net.eval()
    with torch.no_grad():
        net(torch.from_numpy(calibration))
    for h in hooks:
        h.remove()
    with torch.no_grad():
        for i, (_, bn) in enumerate(pairs):
            mean, var = stats[i]
            bn.weight.copy_(torch.sqrt(var + bn.eps))
            bn.bias.copy_(mean + torch.from_numpy(biases[i]))
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
    return net


class Trainer:
    """CoarseNet, optimiser and loss of the real-face phase (module docstring)."""

    def __init__(self, cfg, model, total_steps: int, lr: float, weights: dict[str, float], ema: float = 0.0):
        from rtface.contour import Contour

        self.cfg = cfg
        self.model = model
        self.total_steps = int(total_steps)
        self.lr = float(lr)
        self.w = weights
        self.coarse = CoarseNet(cfg)
        loss_ids = loss_vertex_ids(model, cfg.train.num_loss_vertices)
        contour = Contour(model)
        ids = np.unique(np.concatenate([loss_ids, contour.vertex_set]))
        self.geom = TorchFaceModel(model, ids)
        lookup = np.full(model.num_vertices, -1, np.int64)
        lookup[ids] = np.arange(len(ids))
        self.lookup = torch.from_numpy(lookup)
        self.loss_local = torch.from_numpy(lookup[loss_ids])
        self.opt = torch.optim.Adam(self.coarse.parameters(), lr=self.lr, weight_decay=1e-5)
        self.step_index = 0
        self.ema = None
        if ema > 0:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.coarse, multi_avg_fn=get_ema_multi_avg_fn(ema), use_buffers=True)

    @property
    def released(self) -> CoarseNet:
        """The net that is evaluated and exported: the weight average when one is kept."""
        return self.ema.module if self.ema is not None else self.coarse

    def load(self, state: dict) -> None:
        """Trained (and averaged) weights from a checkpoint of this phase."""
        self.coarse.load_state_dict(state.get("coarse_raw", state["coarse"]))
        if self.ema is not None:
            self.ema.module.load_state_dict(state["coarse"])
            self.ema.n_averaged.fill_(max(int(state.get("step", 1)), 1))

    def losses(self, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        identity, expression, pose = self.coarse(b["image"])
        vp = project(self.geom.vertices(identity, expression), pose)
        with torch.no_grad():
            vt = project(self.geom.vertices(b["identity"], b["expression"]), b["pose"])
        local = self.lookup[b["vertex_ids"]]  # (B, 68)
        lm = torch.gather(vp[..., :2], 1, local[..., None].expand(-1, -1, 2))
        lm_err = (lm - b["landmarks"]).norm(dim=-1).mean(1)  # (B,) crop px
        v_err = (vp[:, self.loss_local] - vt[:, self.loss_local]).norm(dim=-1).mean(1)
        wl, wv = b["w_landmark"], b["w_vertex"]
        out = {
            "landmark": (wl * lm_err).sum() / wl.sum().clamp_min(1e-6),
            "vertex": (wv * v_err).sum() / wv.sum().clamp_min(1e-6),
            "identity": ((identity - b["identity"]) ** 2).mean(),
            "expression": ((expression - b["expression"]) ** 2).mean(),
        }
        real = 1.0 - b["is_synth"]
        with torch.no_grad():  # logged: plain landmark error of the real faces
            out["lm_real"] = (lm_err * real).sum() / real.sum().clamp_min(1.0)
        out["total"] = (self.w["landmark"] * out["landmark"] + self.w["vertex"] * out["vertex"]
                        + self.w["identity"] * out["identity"] + self.w["expression"] * out["expression"])
        return out

    def step(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        b = to_tensors(batch, "cpu")
        lr = self.lr * lr_factor(self.step_index, self.total_steps, 100, 0.02)
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.coarse.train()
        out = self.losses(b)
        gnorm = optimise(self.opt, out["total"])
        if self.ema is not None:
            self.ema.update_parameters(self.coarse)
        self.step_index += 1
        return {**{k: float(v.detach()) for k, v in out.items()}, "lr": lr, "grad_norm": gnorm}

    def state(self, provenance: dict) -> dict:
        return {"format": CHECKPOINT_FORMAT, "phase": PHASE, "variant": self.cfg.name, "config": self.cfg.to_dict(),
                "face_model_hash": self.model.hash, "step": self.step_index, "total_steps": self.total_steps,
                "coarse": self.released.state_dict(), "opt_coarse": self.opt.state_dict(), "provenance": provenance,
                **({"coarse_raw": self.coarse.state_dict()} if self.ema is not None else {})}


def calibration_crops(size: int, n: int = 64) -> np.ndarray:
    """``n`` real training crops (300-W train, landmark framing, no augmentation) for BatchNorm statistics."""
    from rtface.camera import warp_to_crop
    from rtface.crop import crop_from_five, five_from_68
    from rtface.networks import preprocess

    from . import labeled

    lab = labeled.load("300w-train", progress=False)
    idx = np.linspace(0, len(lab) - 1, n).astype(int)
    crops = [warp_to_crop(lab.read_image(i), crop_from_five(five_from_68(lab.points[i]), size), size) for i in idx]
    return preprocess(np.stack(crops))


def eval_landmarks(coarse: CoarseNet, model, faces: int = 128) -> dict[str, float]:
    """Quick held-out check on 300-W test (every ``len/faces``-th face, detector framing): box-NME (%)."""
    from benchmarks.landmarks import evaluate_set

    def predict(x: np.ndarray) -> dict[str, np.ndarray]:
        coarse.eval()
        with torch.no_grad():
            i, e, p = coarse(torch.from_numpy(x))
        return {"identity": i.numpy(), "expression": e.numpy(), "pose": p.numpy()}

    r = evaluate_set(predict, model, coarse.size, "300w-test", limit=faces, passes=1)
    return {"eval_box_nme": r["box_nme"], "eval_io_nme": r["io_nme"]}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m train.coarse_real", description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, required=True, help="total steps (sets the LR schedule)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--variant", default="s")
    ap.add_argument("--init-onnx", help="start from this CoarseNet ONNX (e.g. rtface/weights/coarse_s.onnx)")
    ap.add_argument("--init", help="start from this checkpoint's CoarseNet (grown to --blocks if those are deeper)")
    ap.add_argument("--blocks", help="residual blocks per stage, e.g. 2,2,2,2 (default: the variant's)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--w-landmark", type=float, default=1.0)
    ap.add_argument("--w-vertex", type=float, default=1.0)
    ap.add_argument("--w-identity", type=float, default=0.02)
    ap.add_argument("--w-expression", type=float, default=0.2)
    ap.add_argument("--ema", type=float, default=0.0, help="weight-average decay, e.g. 0.999 (0: off)")
    ap.add_argument("--ckpt-every", type=float, default=600.0)
    ap.add_argument("--eval-faces", type=int, default=128)
    ap.add_argument("--max-minutes", type=float, default=0.0)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--profiled-scene", choices=SCENES, default="face",
                    help="profiled copies that turn the face only or the whole head (train.profiling; the released "
                    "net's last run: head, 3 copies, yaw 30-60,60-90,45-90)")
    ap.add_argument("--profiled-copies", type=int, default=2)
    ap.add_argument("--profiled-yaw", default="25-90",
                    help="|yaw| ranges (deg) of the profiled copies, copy c in range c mod their count: 25-60,45-90")
    ap.add_argument("--mix", help="source fractions of a batch, e.g. 300w=0.35,profiled=0.3,ytf=0.15,synth=0.2 "
                    "(default train.realdata68.MIX)")
    ap.add_argument("--vertex-weights", help="vertex-term weights per source, e.g. profiled=1.0 (default "
                    "train.realdata68.VERTEX_WEIGHT; a profiled copy is rendered from its fit, so its mesh is exact)")
    return ap.parse_args(argv)


def data_spec(args) -> dict:
    """The training data named by the options (:func:`train.realdata68.default_spec`)."""
    from .profiling import parse_yaw_ranges
    from .realdata68 import default_spec

    def pairs(text):
        return {k: float(v) for k, v in (kv.split("=") for kv in text.split(","))} if text else None

    return default_spec(args.profiled_scene, args.profiled_copies, parse_yaw_ranges(args.profiled_yaw), pairs(args.mix),
                        pairs(args.vertex_weights))


def main(argv=None) -> int:
    from tqdm import tqdm

    from .realdata68 import MIX, VERTEX_WEIGHT, Stream

    args = parse_args(argv)
    out, model, last = start_run(args.out, args.threads, args.seed)
    resume = load_checkpoint(last, face_model_hash=model.hash) if args.resume and last.is_file() else None
    blocks = tuple(int(b) for b in args.blocks.split(",")) if args.blocks else None
    cfg = from_dict(resume["config"]) if resume else variant_config(args.variant, blocks)
    weights = {"landmark": args.w_landmark, "vertex": args.w_vertex, "identity": args.w_identity,
               "expression": args.w_expression}
    trainer = Trainer(cfg, model, args.steps, args.lr, weights, ema=args.ema)
    if resume is not None:
        trainer.load(resume)
        trainer.opt.load_state_dict(resume["opt_coarse"])
        trainer.step_index = int(resume["step"])
        print(f"resumed from {last} at step {trainer.step_index}", flush=True)
    elif args.init:
        init = load_checkpoint(args.init, face_model_hash=model.hash)
        trainer.coarse.load_state_dict(grow(init["coarse"], from_dict(init["config"]).coarse, trainer.coarse))
        if trainer.ema is not None:
            trainer.ema.module.load_state_dict(trainer.coarse.state_dict())
        print(f"CoarseNet initialised from {args.init}", flush=True)
    elif args.init_onnx:
        trainer.coarse.load_state_dict(coarse_from_onnx(args.init_onnx, cfg, calibration_crops(cfg.size)).state_dict())
        print(f"CoarseNet initialised from {args.init_onnx}", flush=True)
    spec = data_spec(args)
    provenance = {"command": " ".join(sys.argv), "seed": args.seed, "steps": args.steps, "torch": str(torch.__version__),
                  "data": {"mix": spec.get("mix", MIX), "profiled": spec["profiled"],
                           "vertex_weight": spec.get("vertex_weight", VERTEX_WEIGHT),
                           "real": "300-W train (LFPW, AFW, Helen) + profiled copies, YouTube Faces (faces-ytf); "
                           "non-commercial research use", "synthetic": "rtface.synth"},
                  "weights": weights, "init": args.init_onnx or args.init, "ema": args.ema}
    (out / "config.json").write_text(json.dumps({"config": cfg.to_dict(), "argv": sys.argv}, indent=1))
    stream = Stream(cfg.size, args.batch_size, args.seed, start=trainer.step_index, workers=args.workers, spec=spec)
    log = open(out / "log.jsonl", "a")

    def save() -> None:
        save_checkpoint(trainer.state(provenance), last)
        try:
            ev = eval_landmarks(trainer.released, model, args.eval_faces)
        except Exception as exc:  # the check must never stop a run
            ev = {"eval_error": str(exc)}
        log.write(json.dumps({"step": trainer.step_index, "time_s": round(clock.elapsed, 1), **ev}) + "\n")
        log.flush()
        print(f"\nstep {trainer.step_index}: {ev}", flush=True)

    clock = RunClock(save, args.ckpt_every, args.max_minutes)
    bar = tqdm(total=args.steps, initial=trainer.step_index, disable=args.no_progress, mininterval=10.0)
    stop_on_sigterm()
    t_data = t_step = 0.0
    try:
        while trainer.step_index < args.steps:
            t0 = time.perf_counter()
            batch = next(stream)
            t1 = time.perf_counter()
            losses = trainer.step(batch)
            t_data += t1 - t0
            t_step += time.perf_counter() - t1
            clock.update(losses)
            bar.update(1)
            s = trainer.step_index
            if s % args.log_every == 0:
                log.write(json.dumps({"step": s, "time_s": round(clock.elapsed, 1), "data_s": round(t_data, 1),
                                      "compute_s": round(t_step, 1), **{k: round(v, 5) for k, v in losses.items()}})
                          + "\n")
                log.flush()
                bar.set_postfix(lm=f"{clock.avg['lm_real']:.2f}", v=f"{clock.avg['vertex']:.2f}", refresh=False)
            if clock.after_step(s):
                break
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted ({exc}) at step {trainer.step_index}", flush=True)
    finally:
        save()
        stream.close()
        log.close()
        bar.close()
    print(f"saved {last} at step {trainer.step_index}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
