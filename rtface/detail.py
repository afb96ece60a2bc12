"""The detail stage: the coarse depth rendered and the FineNet run at the face's own resolution.

The CoarseNet sees every face in an S x S crop (S = 128: the face's layout is all it needs). Detail exists only
at the resolution the face has in the image: a 1080p talking head's landmarks span about 300 frame px, 3.4x the
crop's. So every face also gets a **detail crop**: the same square of the frame as its crop, sampled at
``D = detail_size(...)`` px a side, the face's own resolution (frame px per crop px x S, rounded up to a
multiple of :data:`MULTIPLE`) between S and a cap. The posed mesh is rasterised there (the coarse depth at D,
not an upscaled S map), the FineNet (fully convolutional) runs there, and the face's maps (``face.depth``,
``face.coarse_depth``, ``face.mask``) are D x D, so the frame depth carries the face's own resolution.

Coordinates: the detail crop is the crop scaled by ``r = D / S`` about the origin (pixel centres at +0.5 on
both sides): ``detail_to_frame = crop_to_frame o diag(1 / r)``; depth in pixels of the map it is aligned with.

The cap trades detail for speed (``benchmarks detail``): streams default to :data:`STREAM_CAP`, single images to
:data:`IMAGE_CAP`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .camera import affine_scale, compose_affine
from .errors import InputError

#: Detail resolutions are multiples of this (the FineNet's two stride-2 stages need a multiple of 4; 16 keeps
#: the number of distinct sizes, and so of ONNX Runtime / TensorRT shapes, small).
MULTIPLE = 16
#: Default cap of the detail resolution (px) for streams: holds the speed floor on a 2-core CPU. Measured on a
#: 1080p talking head (``python -m benchmarks fps --size 1920x1080 --settings 1 --detail-cap N``, 2-core dev CPU,
#: 2026-12-07): 192 -> 70.6 FPS, 224 -> 64.3, 256 -> 57.7; the release before (FineNet on the 128 px crop) 79.8.
STREAM_CAP = 192
#: Default cap for single images (``rtface.reconstruct``), where accuracy matters more than a few ms.
IMAGE_CAP = 384
#: Single images run the FineNet on the detail crop and on its mirror image and average the reliefs.
MIRROR_IMAGES = True
#: Largest cap accepted (the FineNet was trained on crops up to 448 px; TensorRT profiles go to this).
MAX_CAP = 512


def check_cap(cap: Any, crop_size: int) -> int:
    """A valid detail cap: an int multiple of :data:`MULTIPLE` between the crop size and :data:`MAX_CAP`."""
    if isinstance(cap, bool) or not isinstance(cap, (int, np.integer)):
        raise InputError(f"detail cap must be an int number of pixels, got {cap!r}")
    cap = int(cap)
    if not crop_size <= cap <= MAX_CAP or cap % MULTIPLE:
        raise InputError(f"detail cap must be a multiple of {MULTIPLE} between the crop size {crop_size} and "
                         f"{MAX_CAP} px, got {cap}")
    return cap


def detail_size(frame_to_crop: np.ndarray, crop_size: int, cap: int) -> int:
    """The detail resolution D (px) of a face whose crop is ``frame_to_crop``: its frame px per crop px times the
    crop size, rounded up to a multiple of :data:`MULTIPLE`, clipped to ``[crop_size, cap]``. A degenerate
    transform (zero or non-finite scale) gives ``crop_size``."""
    a = np.asarray(frame_to_crop, np.float64)
    if not np.isfinite(a).all():
        return int(crop_size)
    s = affine_scale(a)
    if not math.isfinite(s) or s <= 0:
        return int(crop_size)
    d = math.ceil(crop_size / s / MULTIPLE - 1e-6) * MULTIPLE
    return int(min(max(d, crop_size), cap))


def crop_to_detail(ratio: float) -> np.ndarray:
    """2x3 crop -> detail crop: a scale of ``ratio`` (= D / S) about the origin."""
    return np.array([[ratio, 0.0, 0.0], [0.0, ratio, 0.0]])


def scale_affine(frame_to_crop: np.ndarray, ratio: float) -> np.ndarray:
    """frame -> detail crop: ``frame_to_crop`` followed by :func:`crop_to_detail`."""
    return compose_affine(crop_to_detail(ratio), frame_to_crop)


@dataclass
class DetailMaps:
    """One face's detail-resolution maps (D x D): fine ``depth`` and ``coarse`` depth in px of the map, ``mask``;
    ``ratio`` = D / S."""

    depth: Any
    coarse: Any
    mask: Any
    ratio: float


def size_groups(sizes: list[int]) -> dict[int, list[int]]:
    """Face indices grouped by detail resolution (one FineNet batch per group), in first-seen order."""
    groups: dict[int, list[int]] = {}
    for i, d in enumerate(sizes):
        groups.setdefault(int(d), []).append(i)
    return groups


def run(frame: Any, frame_to_crops: list[np.ndarray], verts: Any, crop_size: int, cap: int, triangles: Any, fine,
        timings: dict[str, float], crops: Callable | None = None, backend: str = "cpu",
        sync: Callable[[], None] | None = None, mirror: bool = False) -> list[DetailMaps]:
    """The detail stage for N faces: ``verts`` (N, V, 3) posed meshes in crop px (NumPy, or CuPy with
    ``backend="cuda"``), ``fine`` a :class:`rtface.networks.FineNet`, ``crops(frame, affines, D)`` the detail
    crops' network input (default :func:`rtface.networks.crop_inputs`; the GPU stage passes its sampler). Adds its time to ``timings`` ("crop":
    the detail crops, "render": the rasteriser, "fine": the FineNet; ``sync`` is called before each reading, for
    GPU timings). ``mirror``: also run the FineNet on the mirror image of each detail crop (and of its coarse
    depth) and average the two reliefs (:data:`MIRROR_IMAGES`; twice the FineNet's time). Faces whose mesh is not
    finite get empty maps (mask all False, depth 0)."""
    import time

    from .networks import crop_inputs
    from .render import rasterize

    crops = crops or crop_inputs
    xp = np if backend == "cpu" else _cupy()
    wait = sync or (lambda: None)
    out: list[DetailMaps | None] = [None] * len(frame_to_crops)
    sizes = [detail_size(a, crop_size, cap) for a in frame_to_crops]
    for d, idx in size_groups(sizes).items():
        ratio = d / crop_size
        t0 = time.perf_counter()
        images = crops(frame, [scale_affine(frame_to_crops[i], ratio) for i in idx], d)
        wait()
        t1 = time.perf_counter()
        v = xp.ascontiguousarray(verts[xp.asarray(idx)] * xp.float32(ratio))
        v[~xp.isfinite(v).all(axis=(1, 2))] = 0.0  # an all-zero mesh covers no pixel
        r = rasterize(v, triangles, d, d, backend=backend, check_indices=backend == "cpu")
        coarse, mask = r.depth, r.mask
        wait()
        t2 = time.perf_counter()
        m = mask.astype(xp.float32)
        if mirror:
            n = len(idx)
            both = fine.run(xp.concatenate([images, images[..., ::-1]]), xp.concatenate([coarse, coarse[..., ::-1]]),
                            xp.concatenate([m, m[..., ::-1]]))
            relief = 0.5 * ((both[:n] - coarse) + (both[n:] - coarse[..., ::-1])[..., ::-1])
            depth = (coarse + relief).astype(xp.float32)
        else:
            depth = fine.run(images, coarse, m)  # 0 outside the mask, like the coarse depth
        if not fine.any_size:  # an older FineNet's output may leak out of the mask
            depth = xp.where(mask, depth, 0.0).astype(xp.float32)
        wait()
        t3 = time.perf_counter()
        timings["crop"] = timings.get("crop", 0.0) + (t1 - t0) * 1e3
        timings["render"] = timings.get("render", 0.0) + (t2 - t1) * 1e3
        timings["fine"] = timings.get("fine", 0.0) + (t3 - t2) * 1e3
        for j, i in enumerate(idx):
            out[i] = DetailMaps(depth[j], coarse[j], mask[j], ratio)
    return out  # type: ignore[return-value]


def _cupy():
    from ._optional import require

    return require("cupy", "The GPU detail stage")


__all__ = ["DetailMaps", "IMAGE_CAP", "MAX_CAP", "MULTIPLE", "STREAM_CAP", "check_cap", "crop_to_detail", "detail_size", "run",
           "scale_affine", "size_groups"]
