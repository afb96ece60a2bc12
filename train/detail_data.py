"""Phase-1 data of the detail FineNet: synthetic faces rendered at the detail resolution, written as shards.

``python -m train.detail_data --out DIR --faces N`` renders faces with :mod:`rtface.synth` at random detail
resolutions (the crop side D, :data:`SIZES`: the pipeline's crop framing, so the face's landmarks span about
two thirds of D), with wrinkles, extra grooves and bumps at physical scales (by default their depth times a per-face
factor), smooth shading, a key light from a wide range of directions shaded exactly on 60 % of the
faces (a clamped cosine: hard terminators and shadowed grooves) and a fill light on 40 %, and, on some faces,
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
#: The data sets of the released FineNet's training runs, in order (``--preset``; docs/training.md), as
#: :class:`rtface.synth.SynthConfig` fields on top of :data:`BASE`:
#:
#: * ``first``: the first detail release's faces: the detail's RMS after the measure's 2 mm high-pass 0.03-0.13 mm
#:   (mean 0.07), lit like ``rtface.synth``'s other faces (ambient and one soft, mostly frontal light);
#: * ``strong``: the detail's depth times a per-face factor, log-uniform in 0.7-4 (``detail_gain``): RMS 0.02-0.30
#:   mm (5-95 %, mean 0.12, as on issue 23's held-out sets);
#: * ``lit``: also a key light from a wider range of directions, stronger, shaded exactly on 60 % of the faces (a
#:   clamped cosine: hard terminators and shadowed grooves, ``hard_light_prob``);
#: * ``fill``: also a fill light from the other side on 40 % of the faces (the default).
BASE = dict(extra_detail=5.0, smooth_shading=True, marks_prob=0.45, detail_mm=(0.2, 2.0), occluder_prob=0.05,
            blur_sigma=(0.2, 0.8))
PRESETS = {"first": {}, "strong": {"detail_gain": (0.7, 4.0)}}
PRESETS["lit"] = {**PRESETS["strong"], "light_intensity": (0.2, 1.0), "light_spread": (1.0, 0.7),
                  "hard_light_prob": 0.6}
PRESETS["fill"] = {**PRESETS["lit"], "fill_light_prob": 0.4}
DEFAULT_PRESET = "fill"


def synth_config(preset: str = DEFAULT_PRESET):
    """The synthetic faces of a detail data set (:data:`PRESETS`; ranges in :class:`rtface.synth.SynthConfig`)."""
    from rtface.synth import SynthConfig

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    return SynthConfig(**BASE, **PRESETS[preset])


def render_shard(model, seed: int, size: int, n: int = SHARD, no_detail_prob: float = 0.2,
                 preset: str = DEFAULT_PRESET) -> dict[str, np.ndarray]:
    """``n`` faces at crop side ``size``; face ``i`` from ``default_rng([seed, i])``; a fraction
    ``no_detail_prob`` without geometric detail."""
    from rtface import synth

    cfg = synth_config(preset)
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
    p.add_argument("--preset", choices=list(PRESETS), default=DEFAULT_PRESET,
                   help=f"the faces' detail and lighting (default {DEFAULT_PRESET}; see PRESETS)")
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
        write_shard(a.out, k, render_shard(model, a.seed * 100_003 + k, int(rng.choice(SIZES)), preset=a.preset))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
