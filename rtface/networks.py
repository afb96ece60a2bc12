"""Runtime wrappers of the shipped networks (no torch): manifest, checksums, CoarseNet and FineNet.

``rtface/weights/manifest.json`` (docs/CONTRACTS.md) names the two ONNX files with their sha256, the crop
size S and the face-model hash. :func:`load_networks` verifies every checksum (:class:`AssetError` on a
missing or altered file) and wraps each file in an engine of :func:`rtface.engines.load_engine`::

    nets = load_networks(backend="cpu")
    x = preprocess(crops_bgr)                       # (N, S, S, 3) uint8 BGR -> (N, 3, S, S) float32 RGB [0, 1]
    out = nets.coarse.run(x)                        # {"identity", "expression", "pose"}
    depth = nets.fine.run(x, coarse_depth, mask)    # (N, S, S) crop px

INT8: a network's manifest entry may carry an ``"int8"`` entry (written by ``python -m train.quantize``)::

    "coarse": {"file": "coarse_s.onnx", "sha256": "...",
               "int8": {"file": "coarse_s.int8.onnx", "sha256": "...", "source_sha256": "<sha256 of coarse_s.onnx>",
                        "calibration": {...}, "agreement": {...}}}

(manifest format 1 still: readers that do not know the key ignore it). ``precision="int8"`` loads those QDQ
files on any backend; ``precision="auto"`` loads them on the CPU backend when both networks have one made
from the current FP32 file, and the FP32 files everywhere else (the GPU path is unchanged). An INT8 entry with
``"auto": false`` is kept for ``precision="int8"`` only: ``"auto"`` runs that network's FP32 file (the detail
FineNet: its INT8 copy is slower on a CPU, its layers too small for the QDQ overhead to pay; the entry's
``"auto_why"`` says what was measured).

CoarseNet comes in two kinds: with a ``feedback`` input (the paper's input rendering layer: the previous
estimate rendered into the crop) or image only; :attr:`CoarseNet.takes_feedback` says which.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .assets import sha256_file
from .errors import AssetError, InputError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
#: Key of a network's INT8 (QDQ) entry in the manifest.
INT8 = "int8"
PRECISIONS = ("auto", "fp32", "fp16", "int8")


def weights_dir(path: str | os.PathLike | None = None) -> Path:
    """The weights folder: ``path``, else ``$RTFACE_WEIGHTS``, else the package's ``rtface/weights``."""
    if path is not None:
        return Path(path)
    env = os.environ.get("RTFACE_WEIGHTS")
    return Path(env) if env else WEIGHTS_DIR


def load_manifest(directory: str | os.PathLike | None = None, *, verify: bool = True) -> dict:
    """Read ``manifest.json`` of a weights folder and (by default) verify every network's sha256."""
    d = weights_dir(directory)
    mpath = d / MANIFEST
    if not mpath.is_file():
        raise AssetError(f"No network weights: {mpath} does not exist. Reinstall rtface, or export weights "
                         f"with 'python -m train.export' (or set RTFACE_WEIGHTS to a folder with a manifest).")
    try:
        manifest = json.loads(mpath.read_text())
        str(manifest["variant"])
        size = int(manifest["input_size"])
        networks = manifest["networks"]
        for key in ("coarse", "fine"):
            str(networks[key]["file"]), str(networks[key]["sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AssetError(f"The weights manifest {mpath} is corrupt or incomplete ({type(exc).__name__}: {exc}); "
                         f"reinstall rtface or re-export the weights.") from exc
    if manifest.get("format") != MANIFEST_FORMAT:
        raise AssetError(f"The weights manifest {mpath} has format {manifest.get('format')!r}; this rtface "
                         f"reads format {MANIFEST_FORMAT}. Use weights exported for this version.")
    if verify:
        for key in ("coarse", "fine"):
            entry = networks[key]
            p = d / entry["file"]
            if not p.is_file():
                raise AssetError(f"The {key} network {p} named in {mpath} is missing; reinstall rtface or "
                                 f"re-export the weights.")
            actual = sha256_file(p)
            if actual != entry["sha256"]:
                raise AssetError(f"The {key} network {p} fails its checksum (sha256 {actual[:16]}..., manifest "
                                 f"says {entry['sha256'][:16]}...): the file is corrupt or was replaced. "
                                 f"Reinstall rtface or re-export the weights with 'python -m train.export'.")
        for key in ("coarse", "fine"):
            q = networks[key].get(INT8)
            if q is None:
                continue
            if not isinstance(q, dict):
                raise AssetError(f"The weights manifest {mpath} has a corrupt \"int8\" entry for {key}; run "
                                 f"'python -m train.quantize --weights {d}' again or remove the entry.")
            p = d / str(q.get("file", ""))
            if not q.get("file") or not p.is_file():
                raise AssetError(f"The INT8 {key} network {p} named in {mpath} is missing; run "
                                 f"'python -m train.quantize --weights {d}' again or remove its \"int8\" entry.")
            actual = sha256_file(p)
            if actual != q.get("sha256"):
                raise AssetError(f"The INT8 {key} network {p} fails its checksum (sha256 {actual[:16]}..., manifest "
                                 f"says {str(q.get('sha256'))[:16]}...): run 'python -m train.quantize --weights {d}' "
                                 f"again.")
    manifest["_dir"] = str(d)
    manifest["input_size"] = size
    return manifest


def int8_status(manifest: dict, networks: tuple[str, ...] = ("coarse", "fine")) -> str | None:
    """None when the ``networks`` of a loaded manifest (default both) have a usable INT8 file; else why not (for
    messages). :func:`load_manifest` has already checked that the files listed exist and match their checksums."""
    for key in networks:
        entry = manifest["networks"][key]
        q = entry.get(INT8)
        if q is None:
            return f"the manifest in {manifest.get('_dir')} lists no INT8 {key} network"
        if q.get("source_sha256") != entry["sha256"]:
            return (f"the INT8 {key} network {q.get('file')} was quantised from another FP32 file than "
                    f"{entry['file']} (stale: the weights changed since)")
    return None


def _use_int8(manifest: dict, backend: str, precision: str) -> bool:
    """Whether :func:`load_networks` loads the INT8 files (see the module docstring)."""
    if precision == "int8":
        why = int8_status(manifest)
        if why is not None:
            raise AssetError(f"precision='int8': {why}. Quantise the weights with 'python -m train.quantize "
                             f"--weights {manifest.get('_dir')}', or use precision='auto'/'fp32'.")
        return True
    if precision != "auto":
        return False
    if backend == "auto":
        from .engines import available_backends

        backend = available_backends()[0]
    return backend == "cpu" and int8_status(manifest) is None


def preprocess(crops_bgr: np.ndarray) -> np.ndarray:
    """Crops ``(N, S, S, 3)`` (or ``(S, S, 3)``) uint8 BGR -> ``(N, 3, S, S)`` float32 RGB in [0, 1]."""
    a = np.asarray(crops_bgr)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3:
        raise InputError(f"crops must have shape (N, S, S, 3) BGR, got {np.shape(crops_bgr)}")
    if a.dtype != np.uint8:
        raise InputError(f"crops must be uint8 BGR images, got dtype {a.dtype}")
    out = np.ascontiguousarray(a[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)  # C order: engines take it as is
    out *= np.float32(1.0 / 255.0)
    return out


def crop_inputs(image: np.ndarray, frame_to_crops: list[np.ndarray], size: int) -> np.ndarray:
    """Network input ``(N, 3, size, size)`` float32 RGB [0, 1] of a BGR frame under each 2x3 frame -> crop
    affine (:func:`rtface.camera.warp_to_crop`, then :func:`preprocess`): the CoarseNet's crops and the FineNet's
    detail crops on the CPU."""
    from .camera import warp_to_crop

    return preprocess(np.stack([warp_to_crop(image, a, size) for a in frame_to_crops]))


def _check_images(images: Any, size: int, what: str) -> Any:
    shape = tuple(images.shape)
    if len(shape) != 4 or shape[1:] != (3, size, size):
        raise InputError(f"{what}: images must have shape (N, 3, {size}, {size}) RGB float32 in [0, 1] "
                         f"(use rtface.networks.preprocess on BGR crops), got {shape}")
    return images


def _as_map(x: Any, n: int, size: int, name: str, xp) -> Any:
    shape = tuple(x.shape)
    if shape == (n, size, size):
        x = x.reshape(n, 1, size, size)
    elif shape != (n, 1, size, size):
        raise InputError(f"{name} must have shape ({n}, {size}, {size}) or ({n}, 1, {size}, {size}), got {shape}")
    if x.dtype != xp.float32:
        x = x.astype(xp.float32)
    return x


def _xp(array: Any):
    if type(array).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    return np


class _Network:
    def __init__(self, engine, size: int, variant: str):
        self.engine = engine
        self.size = int(size)
        self.variant = variant

    @property
    def backend(self) -> str:
        return self.engine.name

    def close(self) -> None:
        self.engine.close()


class CoarseNet(_Network):
    """3DMM + pose regressor: ``run(images (N,3,S,S), feedback=None) -> {"identity", "expression", "pose"}``.

    Works with both kinds of CoarseNet ONNX: with a ``feedback`` input and image only
    (:attr:`takes_feedback`, read from the engine's input names).
    """

    @property
    def takes_feedback(self) -> bool:
        """Whether the network has the ``feedback`` input (the rendered previous estimate)."""
        return "feedback" in self.engine.inputs

    def run(self, images: Any, feedback: Any = None) -> dict[str, Any]:
        """Images RGB [0, 1] ``(N, 3, S, S)``; ``feedback`` ``(N, 6, S, S)`` (``rtface.render.feedback``) or
        None for zeros (no previous estimate; the only choice for a network without the input). Returns
        identity (N,100), expression (N,53), pose (N,6)."""
        s = self.size
        _check_images(images, s, "CoarseNet")
        if not self.takes_feedback:
            if feedback is not None:
                raise InputError(f"CoarseNet: {self.engine.path} takes no feedback input (image only); pass "
                                 f"feedback=None (Pipeline(feedback=None) picks this automatically)")
            return self.engine.run({"image": images})
        xp = _xp(images)
        n = images.shape[0]
        if feedback is None:
            feedback = xp.zeros((n, 6, s, s), dtype=xp.float32)
        elif tuple(feedback.shape) != (n, 6, s, s):
            raise InputError(f"CoarseNet: feedback must have shape ({n}, 6, {s}, {s}), got {tuple(feedback.shape)}")
        return self.engine.run({"image": images, "feedback": feedback})


class FineNet(_Network):
    """Detail network: ``run(images (N,3,D,D), coarse_depth (N,D,D), mask (N,D,D)) -> depth (N, D, D)``, depth in
    pixels of the maps. A fully convolutional FineNet (:attr:`any_size`, the manifest's ``"resolution": "any"``)
    takes any D that is a multiple of ``multiple`` (:mod:`rtface.detail`); an older one only the crop size S."""

    def __init__(self, engine, size: int, variant: str, any_size: bool = False, multiple: int = 1):
        super().__init__(engine, size, variant)
        self.any_size = bool(any_size)
        self.multiple = int(multiple)

    def run(self, images: Any, coarse_depth: Any, mask: Any) -> Any:
        s = self.size
        if self.any_size:
            s = int(images.shape[-1]) if len(images.shape) == 4 else -1
            if s < 32 or s % self.multiple:
                raise InputError(f"FineNet: images must have shape (N, 3, D, D) with D a multiple of "
                                 f"{self.multiple} (at least 32), got {tuple(images.shape)}")
        _check_images(images, s, "FineNet")
        xp = _xp(images)
        n = images.shape[0]
        d = _as_map(coarse_depth, n, s, "coarse_depth", xp)
        m = _as_map(mask, n, s, "mask", xp)
        if not bool(xp.isfinite(d).all()):
            raise InputError("FineNet: the coarse depth holds NaN or infinite values (a broken fit); the pipeline "
                             "renders such a face as empty, callers should do the same")
        out = self.engine.run({"image": images, "coarse_depth": d, "mask": m})
        if "relief" in out:  # the relief is added here, in float32 whatever the engine computes in
            return (d + out["relief"]).reshape(n, s, s)
        return out["depth"].reshape(n, s, s)


@dataclass
class Networks:
    coarse: CoarseNet
    fine: FineNet
    manifest: dict

    @property
    def size(self) -> int:
        return int(self.manifest["input_size"])

    @property
    def precision(self) -> str:
        """What the networks compute in: ``"int8"`` (QDQ files), ``"fp16"`` or ``"fp32"`` (the coarse engine's)."""
        return self.coarse.engine.precision

    @property
    def trained(self) -> bool:
        return self.manifest.get("training", {}).get("status") != "untrained"

    def close(self) -> None:
        self.coarse.close()
        self.fine.close()


def load_networks(directory: str | os.PathLike | None = None, backend: str = "auto", *,
                  face_model_hash: str | None = None, threads: int | None = None, max_batch: int = 16,
                  precision: str = "auto", cache_dir: str | os.PathLike | None = None) -> Networks:
    """Verify the manifest of a weights folder and load both networks on ``backend``.

    ``precision``: ``"auto"`` (INT8 files on the CPU backend when the manifest has current ones, else FP32;
    TensorRT builds FP16 where it is fast), ``"fp32"``, ``"fp16"`` (TensorRT only) or ``"int8"`` (the
    manifest's QDQ files on every backend).

    Raises:
        AssetError: missing/corrupt manifest or file, checksum mismatch, weights trained for another face
            model than ``face_model_hash`` (when given), or ``precision="int8"`` without current INT8 files.
        InputError: unknown precision.
    """
    from .engines import load_engine

    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    manifest = load_manifest(directory)
    if face_model_hash is not None and manifest.get("face_model_hash") != face_model_hash:
        raise AssetError(f"The network weights in {manifest['_dir']} were trained for face model "
                         f"{str(manifest.get('face_model_hash'))[:12]}..., but the loaded face model is "
                         f"{face_model_hash[:12]}...; use weights exported for this face model.")
    d = Path(manifest["_dir"])
    size = manifest["input_size"]
    int8 = _use_int8(manifest, backend, precision)
    engines = {}
    for key in ("coarse", "fine"):
        entry = manifest["networks"][key]
        q = int8 and (precision == "int8" or entry[INT8].get("auto", True))
        file = entry[INT8]["file"] if q else entry["file"]
        engines[key] = load_engine(d / file, backend=backend, precision="int8" if q else precision,
                                   threads=threads, cache_dir=cache_dir, max_batch=max_batch)
    return Networks(CoarseNet(engines["coarse"], size, manifest["variant"]),
                    FineNet(engines["fine"], size, manifest["variant"],
                            any_size=manifest["networks"]["fine"].get("resolution") == "any",
                            multiple=int(manifest["networks"]["fine"].get("multiple", 1))), manifest)


__all__ = ["CoarseNet", "FineNet", "INT8", "Networks", "PRECISIONS", "WEIGHTS_DIR", "int8_status", "load_manifest",
           "load_networks", "crop_inputs", "preprocess", "weights_dir"]
