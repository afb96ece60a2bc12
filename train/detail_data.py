"""Phase-1 data of the detail FineNet: synthetic faces rendered at the detail resolution, written as shards.

``python -m train.detail_data --out DIR --faces N`` renders faces with :mod:`rtface.synth` at random detail
resolutions (the crop side D, :data:`SIZES`: the pipeline's crop framing, so the face's landmarks span about
two thirds of D), with wrinkles, extra grooves and bumps at physical scales, smooth shading and, on some faces,
albedo marks without geometry (and on some no geometric detail at all: whatever relief a network adds there is
wrong). Each shard ``shard_00012.npz`` (no pickle) holds :data:`SHARD` faces of one size: ``image`` (n, D, D, 3)
uint8 BGR, ``coarse_depth`` and ``detail`` (n, D, D) float32 depth px of the map, ``mask`` (n, D, D) bool,
``mm_per_px`` (n,). Shards are written atomically (temporary name, then renamed), so a trainer that reads the
folder while it grows never sees half a shard; a run that is stopped and started again continues numbering.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

#: Detail resolutions rendered (crop side, px): small faces (D 160) to close-ups at the cap (448).
SIZES = (160, 192, 224, 256, 320, 384, 448)
SHARD = 16


def synth_config():
    """The synthetic faces of the detail phase 1 (ranges in :class:`rtface.synth.SynthConfig`)."""
    from rtface.synth import SynthConfig

    return SynthConfig(extra_detail=5.0, smooth_shading=True, marks_prob=0.45, detail_mm=(0.2, 2.0),
                       occluder_prob=0.05, blur_sigma=(0.2, 0.8))


def render_shard(model, seed: int, size: int, n: int = SHARD, no_detail_prob: float = 0.2) -> dict[str, np.ndarray]:
    """``n`` faces at crop side ``size``; face ``i`` from ``default_rng([seed, i])``; a fraction
    ``no_detail_prob`` without geometric detail."""
    from rtface import synth

    cfg = synth_config()
    out: dict[str, list] = {k: [] for k in ("image", "coarse_depth", "detail", "mask", "mm_per_px")}
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        face = synth.sample(model, rng, size=size, detail=bool(rng.random() >= no_detail_prob), config=cfg)
        out["image"].append(face.image)
        out["coarse_depth"].append(face.coarse_depth)
        out["detail"].append(face.detail)
        out["mask"].append(face.mask)
        out["mm_per_px"].append(10.0 / float(face.pose[3]))
    return {k: np.stack(v).astype(np.float32) if k == "mm_per_px" else np.stack(v) for k, v in out.items()}


def write_shard(directory: Path, index: int, arrays: dict[str, np.ndarray]) -> Path:
    path = directory / f"shard_{index:05d}.npz"
    tmp = directory / f".shard_{index:05d}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


def load_shard(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.detail_data", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="folder of shards (created)")
    p.add_argument("--faces", type=int, default=4000, help="faces to render in all")
    p.add_argument("--seed", type=int, default=7, help="seed of the first shard (shard k uses seed + k)")
    a = p.parse_args(argv)
    from tqdm import tqdm

    from rtface import FaceModel

    a.out.mkdir(parents=True, exist_ok=True)
    model = FaceModel.load()  # RTFACE_ASSETS or the cache
    done = sorted(a.out.glob("shard_*.npz"))
    start = int(done[-1].stem.split("_")[1]) + 1 if done else 0
    shards = max(0, -(-a.faces // SHARD) - start)
    for k in tqdm(range(start, start + shards), desc="detail shards", unit="shard"):
        rng = np.random.default_rng([a.seed, k])
        write_shard(a.out, k, render_shard(model, a.seed * 100_003 + k, int(rng.choice(SIZES))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
