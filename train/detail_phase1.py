"""Phase 1 of the detail FineNet (:mod:`train.detail_net`): supervised on synthetic faces at their own resolution.

``python -m train.detail_phase1 --data DIR --out CKPT`` trains on random square patches (``--patch`` px) of the
shards :mod:`train.detail_data` writes (it re-reads the folder as it grows). Per patch:

* input: the face's image, its coarse depth (the rasterised 3DMM mesh: faceted, like the pipeline's) moved by a
  few pixels and bent by a smooth random field (a CoarseNet's fit is never exact), and the coarse mask moved
  with it; horizontal flips;
* target: the true relief (detail layer), in px of the map;
* loss (mm^2, per pixel both masks cover): ``HP(P - D)^2 + 0.1 (P - D)^2``, ``HP`` the high-pass of the detail
  measure (:mod:`benchmarks.relief`: minus a Gaussian blur of 2 mm over the mask). The measure's scales get
  the weight; the small plain term keeps the relief from drifting at larger scales. (A plain L2 loss with a
  gradient term was tried first: the relief stayed at 0 for 600 steps, the detail's larger, unpredictable
  scales weighing most.)

Checkpoints (``torch.save`` of plain tensors and numbers, read back with ``weights_only=True``) every
``--ckpt-every`` seconds and at the end (with ``--ema``, the running average's weights); ``--resume`` continues
one. Every ``--val-every`` steps the measure of
:mod:`benchmarks.relief` runs on held-out faces of :mod:`benchmarks.detailsets` (another renderer) at crop
side 384: explained share, correlation, and spurious relief on albedo-only faces.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.detail import STRENGTH
from rtface.networks import preprocess

from .detail_data import load_shard
from .detail_net import FineNet

HIGHPASS_MM = 2.0


def _smooth_field(rng, size: int, amp: float) -> np.ndarray:
    import cv2

    g = rng.standard_normal((6, 6)).astype(np.float32)
    return cv2.resize(g, (size, size), interpolation=cv2.INTER_CUBIC) * np.float32(amp)


class Patches:
    """Random training patches from the shards of a folder (module docstring)."""

    def __init__(self, folder: Path, patch: int, seed: int, max_faces: int = 4000):
        self.folder, self.patch, self.max_faces = Path(folder), int(patch), max_faces
        self.rng = np.random.default_rng(seed)
        self.loaded: set[str] = set()
        self.faces: list[tuple] = []
        self.refresh()

    def refresh(self) -> None:
        for path in sorted(self.folder.glob("shard_*.npz")):
            if path.name in self.loaded:
                continue
            s = load_shard(path)
            for i in range(len(s["image"])):
                self.faces.append((s["image"][i], s["coarse_depth"][i], s["detail"][i], s["mask"][i],
                                   float(s["mm_per_px"][i])))
            self.loaded.add(path.name)
        if len(self.faces) > self.max_faces:
            self.faces = self.faces[-self.max_faces:]
        if not self.faces:
            raise FileNotFoundError(f"no shards in {self.folder}: run python -m train.detail_data --out {self.folder}")

    def sample(self) -> tuple[np.ndarray, ...]:
        rng, p = self.rng, self.patch
        img, coarse, detail, mask, mmpp = self.faces[rng.integers(len(self.faces))]
        d = img.shape[0]
        ys, xs = np.nonzero(mask)
        k = rng.integers(len(ys))
        y0 = int(np.clip(ys[k] - p // 2, 0, d - p)) if d > p else 0
        x0 = int(np.clip(xs[k] - p // 2, 0, d - p)) if d > p else 0
        sl = (slice(y0, y0 + p), slice(x0, x0 + p))
        img, coarse, detail, mask = img[sl], coarse[sl], detail[sl], mask[sl]
        if d < p:  # a face smaller than the patch: padded (mask False)
            pad = ((0, p - d), (0, p - d))
            img = np.pad(img, pad + ((0, 0),), mode="edge")
            coarse, detail, mask = (np.pad(a, pad) for a in (coarse, detail, mask))
        # a CoarseNet's fit: moved by up to 1.5 % of the map and bent by a smooth field
        shift = rng.integers(-int(0.015 * d) - 1, int(0.015 * d) + 2, size=2)
        cm = np.roll(mask, tuple(shift), axis=(0, 1))
        cz = np.roll(coarse, tuple(shift), axis=(0, 1)) + _smooth_field(rng, p, 0.01 * d) * cm
        if rng.random() < 0.5:
            img, cz, cm, detail, mask = (a[:, ::-1] for a in (img, cz, cm, detail, mask))
        return (preprocess(img)[0], np.where(cm, cz, 0)[None].astype(np.float32), cm[None].astype(np.float32),
                detail[None].astype(np.float32), mask[None].astype(np.float32), np.float32(mmpp))

    def batch(self, n: int) -> dict[str, torch.Tensor]:
        items = [self.sample() for _ in range(n)]
        keys = ("image", "coarse", "cmask", "detail", "mask", "mm")
        return {k: torch.from_numpy(np.ascontiguousarray(np.stack([it[j] for it in items])))
                for j, k in enumerate(keys)}


def gaussian_kernels(sigmas: torch.Tensor) -> torch.Tensor:
    """(N, K) normalised 1-D Gaussian kernels of per-sample sigmas (px), K odd, wide enough for the largest."""
    r = int(math.ceil(3.0 * float(sigmas.max())))
    x = torch.arange(-r, r + 1, dtype=torch.float32, device=sigmas.device)
    k = torch.exp(-0.5 * (x[None] / sigmas[:, None]) ** 2)
    return k / k.sum(1, keepdim=True)


def masked_blur(x: torch.Tensor, m: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Per-sample Gaussian blur of ``x`` (N,1,H,W) over the mask ``m`` only (normalised by the blurred mask)."""
    n, _, h, w = x.shape
    r = kernels.shape[1] // 2
    kx = kernels.view(n, 1, 1, -1)
    ky = kernels.view(n, 1, -1, 1)

    def blur(a):
        a = F.conv2d(a.view(1, n, h, w), kx, padding=(0, r), groups=n)
        return F.conv2d(a, ky, padding=(r, 0), groups=n).view(n, 1, h, w)

    return blur(x * m) / blur(m).clamp_min(1e-3)


def relief_loss(relief: torch.Tensor, b: dict[str, torch.Tensor], w_plain: float = 0.1) -> torch.Tensor:
    """The loss of the module docstring, mean over the pixels both masks cover (mm^2)."""
    m = b["mask"] * b["cmask"]
    mm = b["mm"].view(-1, 1, 1, 1)
    e = (relief - b["detail"]) * mm
    k = gaussian_kernels(HIGHPASS_MM / b["mm"])
    hp = (e - masked_blur(e, m, k)) * m
    area = m.sum().clamp_min(1.0)
    return ((hp * hp).sum() + w_plain * (e * e * m).sum()) / area


def validate(net: FineNet, sets: dict[str, dict]) -> dict[str, float]:
    """The relief measure of :mod:`benchmarks.relief` on held-out crops (coarse = the rasterised true mesh)."""
    from benchmarks.relief import ReliefScore

    out = {}
    dev = next(net.parameters()).device
    net.eval()
    with torch.no_grad():
        for kind, s in sets.items():
            score = ReliefScore()
            for i in range(len(s["image"])):
                rgb = torch.from_numpy(preprocess(s["image"][i]))
                z = torch.from_numpy(s["mesh_depth"][i])[None, None]
                m = torch.from_numpy(s["mask"][i].astype(np.float32))[None, None]
                r = net.relief(rgb.to(dev), z.to(dev), m.to(dev))[0, 0].cpu().numpy()
                score.add(r, s["detail"][i], s["mask"][i], s["mask"][i], 10.0 / float(s["pose"][i][3]))
            out[kind] = score.result()
    net.train()
    return out


def save(path: Path, net: FineNet, opt, step: int, extra: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "step": step, "widths": list(net.widths),
                "context": list(net.context), **extra}, tmp)
    tmp.replace(path)


def load(path: str | Path) -> tuple[FineNet, dict]:
    """A checkpoint's network and the checkpoint (``weights_only=True``: nothing but tensors and numbers)."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    net = FineNet(tuple(ck["widths"]), tuple(ck["context"]))
    net.load_state_dict(ck["net"])
    return net, ck


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.detail_phase1", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, type=Path, help="shard folder (python -m train.detail_data)")
    p.add_argument("--out", required=True, type=Path, help="checkpoint to write (.pt)")
    p.add_argument("--resume", action="store_true", help="continue --out")
    p.add_argument("--init", type=Path, help="start from this checkpoint's weights (new optimiser)")
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--patch", type=int, default=160)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--widths", type=int, nargs=2, default=(16, 32))
    p.add_argument("--minutes", type=float, default=0.0, help="stop after this many minutes (0: no limit)")
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--val-faces", type=int, default=12)
    p.add_argument("--val-strength", type=float, default=STRENGTH,
                   help=f"depth scale of the validation faces' detail (default {STRENGTH:g}, the benchmark's)")
    p.add_argument("--ckpt-every", type=float, default=180.0, help="seconds between checkpoints")
    p.add_argument("--ema", type=float, default=0.0,
                   help="keep a running average of the weights with this decay (e.g. 0.999); validated and saved")
    p.add_argument("--max-faces", type=int, default=8000, help="faces kept in memory (the newest shards)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)

    net, ck, step = FineNet(tuple(a.widths)), None, 0
    if a.resume and a.out.is_file():
        net, ck = load(a.out)
        step = int(ck["step"])
    elif a.init:
        net.load_state_dict(load(a.init)[0].state_dict())
    net.to(a.device)
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=1e-5)
    if ck is not None:
        opt.load_state_dict(ck["opt"])
    data = Patches(a.data, a.patch, a.seed + step, a.max_faces)
    ema = torch.optim.swa_utils.AveragedModel(
        net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(a.ema), use_buffers=True) if a.ema else None

    from benchmarks.detailsets import make_set
    from rtface import FaceModel

    model = FaceModel.load()
    sets = {k: make_set(model, k, a.val_faces, size=384, seed=1, strength=a.val_strength)
            for k in ("detail", "albedo")}
    t_start = last_ck = time.time()
    run = 0.0
    while step < a.steps:
        lr = a.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * step / a.steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        b = {k: v.to(a.device) for k, v in data.batch(a.batch).items()}
        loss = relief_loss(net.relief(b["image"], b["coarse"], b["cmask"]), b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        if ema is not None:
            ema.update_parameters(net)
        step += 1
        run = 0.98 * run + 0.02 * loss.item() if step > 1 else loss.item()
        if step % 50 == 0:
            print(f"step {step} loss {run:.5f} lr {lr:.2e} faces {len(data.faces)} "
                  f"{(time.time() - t_start) / 60:.1f} min", flush=True)
        if step % 200 == 0:
            data.refresh()
        if step % a.val_every == 0 or step == a.steps:
            v = validate(net if ema is None else ema.module, sets)
            d, al = v["detail"], v["albedo"]
            print(f"VAL step {step}: detail explained {d['explained']:.3f} corr {d['correlation']:.3f} "
                  f"relief {d['relief_rms_mm']:.3f} mm (true {d['true_rms_mm']:.3f}); albedo relief "
                  f"{al['relief_rms_mm']:.3f} mm = {al['relief_rms_mm'] / max(d['true_rms_mm'], 1e-9):.2f}x", flush=True)
        if time.time() - last_ck > a.ckpt_every:
            save(a.out, net if ema is None else ema.module, opt, step, {})
            last_ck = time.time()
        if a.minutes and time.time() - t_start > a.minutes * 60:
            break
    save(a.out, net if ema is None else ema.module, opt, step, {})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
