"""Real network inputs for the GPU checks: faces found by the CPU pipeline in real images, and every input the
shipped networks take, built from them at any size.

:func:`real_faces` runs ``Pipeline(backend="cpu", precision="fp32")`` once on a few real images and video frames
of ``$RTFACE_ASSETS`` (``../shared/assets``) and keeps, per face, the frame, the CoarseNet crop's affine and the
mesh in frame pixels. :func:`network_feeds` then builds the inputs of a network from its input specs, by name,
at the network's own size or, where height and width are dynamic (a FineNet at the face's own resolution), at
any size: ``image`` (the crop, RGB [0, 1]), ``coarse_depth`` / ``depth`` and ``mask`` (the mesh rasterised in
that crop, depth in the crop's pixels) and ``feedback`` (the CoarseNet's rendered estimate). Used by
``python -m benchmarks gpu-check`` and by the tests (float16 ranges on the CPU, engines on the GPU).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rtface.camera import compose_affine, warp_to_crop
from rtface.errors import InputError

#: Images (under ``$RTFACE_ASSETS``) and video frames (path, frame index) the faces come from.
STILLS = ("faces-labeled/grace_hopper_512x512.jpg", "faces-labeled/astronaut.png", "faces-labeled/image_0010.png")
FRAMES = (("video/dafoe_1280x720.mp4", 0), ("video/dafoe_1280x720.mp4", 60), ("video/hamilton_640x360.mp4", 0))


@dataclass
class RealFace:
    """One face the CPU pipeline found: ``image`` (H, W, 3) BGR uint8, ``frame_to_crop`` (2x3) of the face's
    crop-aligned maps of ``crop_size`` px (``face.size``: the CoarseNet crop, or the detail crop, a scaled copy of
    it), ``vertices`` (V, 3) float32 mesh in frame pixels (z toward the camera, frame px)."""

    image: np.ndarray
    frame_to_crop: np.ndarray
    vertices: np.ndarray
    crop_size: int
    source: str

    def to_map(self, size: int) -> np.ndarray:
        """frame -> a ``size`` px map aligned with the face's crop (the crop scaled by ``size / crop_size``)."""
        k = float(size) / float(self.crop_size)
        return compose_affine(np.array([[k, 0.0, 0.0], [0.0, k, 0.0]]), self.frame_to_crop)


def _images() -> list[tuple[str, np.ndarray]]:
    import cv2

    from rtface.assets import data_path
    from rtface.sources import open_source

    out = []
    for rel in STILLS:
        p = data_path(rel)
        if p.exists():
            out.append((rel, cv2.imread(str(p))))
    for rel, index in FRAMES:
        p = data_path(rel)
        if not p.exists():
            continue
        with open_source(p) as src:
            for k, f in enumerate(src):
                if k == index:
                    out.append((f"{rel}#{index}", f.image))
                    break
    return out


def real_faces(limit: int = 8, *, pipeline: Any = None) -> list[RealFace]:
    """Up to ``limit`` faces from :data:`STILLS` and :data:`FRAMES` (the ones present), found and fitted by the CPU
    pipeline at FP32 (one CoarseNet view). Raises :class:`rtface.errors.InputError` when no image is there."""
    from rtface.pipeline import Pipeline

    images = _images()
    if not images:
        raise InputError("no real images: set RTFACE_ASSETS to a folder laid out like ../shared/assets "
                         f"({', '.join(STILLS)})")
    pipe = pipeline or Pipeline(backend="cpu", precision="fp32", smoothing=False, views=1)
    faces = []
    for source, image in images:
        for face in pipe(image).faces:
            faces.append(RealFace(image, np.asarray(face.frame_to_crop, np.float64),
                                  np.asarray(face.vertices, np.float32), int(face.size), source))
            if len(faces) >= limit:
                return faces
    return faces


def crops(faces: Sequence[RealFace], size: int) -> np.ndarray:
    """(N, 3, size, size) float32 RGB [0, 1]: each face's crop at ``size`` px (the CPU pipeline's sampling)."""
    from rtface.networks import preprocess

    return preprocess(np.stack([warp_to_crop(f.image, f.to_map(size), size) for f in faces]))


def mesh_in_map(face: RealFace, size: int) -> np.ndarray:
    """(V, 3) float32: the face's mesh in the pixels of its ``size`` px map (z scaled with x and y)."""
    from rtface.pipeline import _affine_vertices

    return _affine_vertices(face.to_map(size), face.vertices)


def depth_and_mask(faces: Sequence[RealFace], size: int, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, size, size) coarse depth (map px) and mask (float32 0/1) of each face's mesh in its map."""
    from rtface.render import rasterize

    r = rasterize(np.stack([mesh_in_map(f, size) for f in faces]), triangles, size, size, backend="cpu")
    return np.asarray(r.depth, np.float32), np.asarray(r.mask, np.float32)


def feedback(faces: Sequence[RealFace], size: int, triangles: np.ndarray, pncc: np.ndarray) -> np.ndarray:
    """(N, 6, size, size) feedback images (:func:`rtface.render.feedback.render_feedback`) of the faces' meshes."""
    from rtface.render.feedback import render_feedback

    return render_feedback(np.stack([mesh_in_map(f, size) for f in faces]), triangles, size, pncc)


def input_size(inputs: Mapping[str, Any], size: int | None = None) -> int:
    """The map size to feed a network with these input specs (``Engine.inputs``): its fixed height (every input
    must agree), or ``size`` where height and width are dynamic (an error if ``size`` is None then)."""
    fixed = {int(s.shape[-1]) for s in inputs.values() if len(s.shape) >= 3 and int(s.shape[-1]) > 0}
    if len(fixed) > 1:
        raise InputError(f"the network's inputs have different sizes {sorted(fixed)}; feed them by hand")
    if fixed:
        (have,) = fixed
        if size is not None and size != have:
            raise InputError(f"the network takes {have} px inputs, not {size}")
        return have
    if size is None:
        raise InputError("the network's height and width are dynamic: pass size=")
    return int(size)


def network_feeds(inputs: Mapping[str, Any], faces: Sequence[RealFace], model: Any, *,
                  size: int | None = None, pncc: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Inputs for a network with input specs ``inputs`` (name -> :class:`rtface.engines.TensorSpec`), one item per
    face, at the network's size or ``size`` (dynamic height and width). ``model``: the :class:`rtface.FaceModel`
    (triangles, mean face for the feedback code). Input names: ``image``, ``coarse_depth`` or ``depth``, ``mask``,
    ``feedback``; another name is an :class:`InputError` naming it."""
    s = input_size(inputs, size)
    triangles = np.ascontiguousarray(model.triangles, np.int32)
    feeds: dict[str, np.ndarray] = {}
    cache: dict[str, np.ndarray] = {}
    for name, spec in inputs.items():
        if name == "image":
            value = crops(faces, s)
        elif name in ("coarse_depth", "depth", "mask"):
            if "depth" not in cache:
                cache["depth"], cache["mask"] = depth_and_mask(faces, s, triangles)
            value = cache["mask" if name == "mask" else "depth"]
        elif name == "feedback":
            from rtface.render.feedback import pncc_code

            value = feedback(faces, s, triangles, pncc if pncc is not None else pncc_code(model.mean))
        else:
            raise InputError(f"network input {name!r} is not one the GPU checks know how to build from a real face "
                             f"(image, coarse_depth/depth, mask, feedback): teach benchmarks.gpu_inputs.network_feeds")
        rank = len(spec.shape)
        if value.ndim == 3 and rank == 4:
            value = value[:, None]
        feeds[name] = np.ascontiguousarray(value, dtype=np.float32)
    return feeds


def tile(feeds: Mapping[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """The feeds repeated (cycling through the faces) to exactly ``batch`` items."""
    out = {}
    for name, value in feeds.items():
        idx = np.arange(batch) % len(value)
        out[name] = np.ascontiguousarray(value[idx])
    return out


__all__ = ["FRAMES", "STILLS", "RealFace", "crops", "depth_and_mask", "feedback", "input_size", "mesh_in_map",
           "network_feeds", "real_faces", "tile"]
