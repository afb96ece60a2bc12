"""Where results go: a side-by-side depth video, per-frame NPZ files, meshes, and a live preview window.

* :class:`VideoSink` (PyAV): every frame as ``input | colour depth | shaded depth`` side by side, H.264
  (libx264) or MPEG-4 Part 2 where H.264 is missing, yuv420p, sizes padded to even numbers.
* :class:`NpzSink`: ``<dir>/frame_000123.npz`` per frame (``np.savez_compressed``, plain arrays only, so it
  loads with ``allow_pickle=False``): ``index``, ``timestamp``, ``depth`` (H, W) float32 frame px, ``mask``
  (H, W) bool, ``timings_keys``/``timings_ms``, and per face stacked arrays ``boxes`` (F, 4), ``scores``,
  ``track_ids``, ``landmarks`` (F, 68, 2), ``identity`` (F, 100), ``expression`` (F, 53), ``pose`` (F, 6) in
  frame coordinates, ``crop_to_frame`` (F, 2, 3), ``mm_per_pixel`` (F,), ``face_depth``/``face_coarse_depth``
  (F, S, S) crop px and ``face_mask`` (F, S, S). With ``meshes=True`` each face's mesh in frame pixels is
  written next to it as ``frame_000123_face<track>.ply`` (or ``.obj``).
* :class:`PreviewWindow`: ``cv2.imshow`` of the side-by-side view (``--show``); a headless OpenCV build or no
  display raises :class:`rtface.errors.InputError` with what to do instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, RtfaceError


def visualize(result, labels: bool = True) -> np.ndarray:
    """BGR uint8 ``input | colour depth | shaded depth`` of one :class:`rtface.FrameResult`."""
    from . import viz

    depth, mask = result.depth, result.mask
    col = viz.colorize_depth(depth, mask)
    shd = viz.shade_depth(depth, mask)
    img = result.image
    if labels:
        return viz.side_by_side(img, col, shd, labels=["input", "depth", "shaded depth"])
    return viz.side_by_side(img, col, shd)


def _even(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    if h % 2 or w % 2:
        img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)))
    return img


class VideoSink:
    """Write results (or BGR images) to a video file, side by side with their depth.

    Args:
        path: output file (``.mp4``, ``.mkv``, ``.mov``...).
        fps: frame rate of the output.
        codec: ``None`` picks ``libx264`` (H.264) and falls back to ``mpeg4``.
        crf: H.264 quality (lower = better, 18..28 sensible).
    """

    def __init__(self, path: str | os.PathLike, fps: float = 30.0, codec: str | None = None, crf: int = 20,
                 labels: bool = True) -> None:
        import av

        self.path = Path(path)
        if self.path.suffix == "":
            raise InputError(f"the output video {self.path} needs an extension such as .mp4")
        if not fps or fps <= 0:
            fps = 30.0
        self.fps = float(fps)
        self.labels = labels
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._container = av.open(str(self.path), mode="w")
        except Exception as exc:  # av.error.* (bad folder, unknown format)
            raise InputError(f"cannot write video {self.path}: {exc}") from exc
        if codec is None:
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self.codec = codec
        self._crf = crf
        self._stream = None
        self.frames = 0

    def _open_stream(self, w: int, h: int) -> None:
        from fractions import Fraction

        rate = Fraction(self.fps).limit_denominator(1001)
        try:
            self._stream = self._container.add_stream(self.codec, rate=rate)
        except Exception:
            self.codec = "mpeg4"
            self._stream = self._container.add_stream(self.codec, rate=rate)
        self._stream.width, self._stream.height = w, h
        self._stream.pix_fmt = "yuv420p"
        if self.codec == "libx264":
            self._stream.options = {"crf": str(self._crf), "preset": "veryfast"}
        else:
            self._stream.bit_rate = 4_000_000

    def write(self, item: Any) -> None:
        """Append one :class:`rtface.FrameResult` (drawn with :func:`visualize`) or a BGR uint8 image."""
        import av

        img = item if isinstance(item, np.ndarray) else visualize(item, self.labels)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise InputError(f"VideoSink writes (H, W, 3) uint8 BGR images, got {img.shape} {img.dtype}")
        img = _even(img)
        h, w = img.shape[:2]
        if self._stream is None:
            self._open_stream(w, h)
        elif (w, h) != (self._stream.width, self._stream.height):
            import cv2

            img = cv2.resize(img, (self._stream.width, self._stream.height), interpolation=cv2.INTER_AREA)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        try:
            if self._stream is not None:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> "VideoSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_ply(path: str | os.PathLike, vertices: np.ndarray, triangles: np.ndarray) -> Path:
    """Binary little-endian PLY of a triangle mesh (vertices float32 x, y, z; faces as uchar + 3 int32)."""
    p = Path(path)
    v = np.ascontiguousarray(vertices, dtype="<f4")
    t = np.asarray(triangles, dtype="<i4")
    header = (f"ply\nformat binary_little_endian 1.0\ncomment rtface mesh, frame pixels, y down, z toward camera\n"
              f"element vertex {len(v)}\nproperty float x\nproperty float y\nproperty float z\n"
              f"element face {len(t)}\nproperty list uchar int vertex_indices\nend_header\n").encode("ascii")
    faces = np.empty(len(t), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    faces["n"] = 3
    faces["i"] = t
    with open(p, "wb") as fh:
        fh.write(header)
        fh.write(v.tobytes())
        fh.write(faces.tobytes())
    return p


def write_obj(path: str | os.PathLike, vertices: np.ndarray, triangles: np.ndarray) -> Path:
    """Wavefront OBJ of a triangle mesh (1-based indices)."""
    p = Path(path)
    v = np.asarray(vertices, np.float32)
    t = np.asarray(triangles, np.int64) + 1
    with open(p, "w", encoding="ascii") as fh:
        fh.write("# rtface mesh, frame pixels, y down, z toward camera\n")
        np.savetxt(fh, v, fmt="v %.4f %.4f %.4f")
        np.savetxt(fh, t, fmt="f %d %d %d")
    return p


class NpzSink:
    """Per-frame ``.npz`` files (no pickled objects) and optional per-face meshes in a folder."""

    def __init__(self, directory: str | os.PathLike, meshes: bool = False, mesh_format: str = "ply",
                 triangles: np.ndarray | None = None) -> None:
        if mesh_format not in ("ply", "obj"):
            raise InputError(f"mesh_format must be 'ply' or 'obj', got {mesh_format!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.meshes = bool(meshes)
        self.mesh_format = mesh_format
        self.triangles = triangles
        self.frames = 0

    def _triangles(self) -> np.ndarray:
        if self.triangles is None:
            from .face_model import FaceModel

            self.triangles = FaceModel.load().triangles
        return self.triangles

    @staticmethod
    def arrays(result) -> dict[str, np.ndarray]:
        """The arrays stored for one frame (see the module docstring)."""
        faces = result.faces
        s = faces[0].depth.shape[-1] if faces else 0
        keys = sorted(result.timings)
        out = {
            "index": np.int64(result.index), "timestamp": np.float64(result.timestamp),
            "depth": result.depth, "mask": result.mask,
            "timings_keys": np.array(keys, dtype="U16"),
            "timings_ms": np.array([result.timings[k] for k in keys], np.float64),
            "boxes": np.array([f.box for f in faces], np.float32).reshape(-1, 4),
            "scores": np.array([f.score for f in faces], np.float32),
            "track_ids": np.array([f.track_id for f in faces], np.int64),
            "landmarks": np.array([f.landmarks for f in faces], np.float32).reshape(-1, 68, 2),
            "identity": np.array([f.identity for f in faces], np.float32).reshape(len(faces), -1 if faces else 0),
            "expression": np.array([f.expression for f in faces], np.float32).reshape(len(faces), -1 if faces else 0),
            "pose": np.array([f.pose.to_vector() for f in faces], np.float32).reshape(-1, 6),
            "crop_to_frame": np.array([f.crop_to_frame for f in faces], np.float64).reshape(-1, 2, 3),
            "mm_per_pixel": np.array([f.mm_per_pixel for f in faces], np.float64),
            "face_depth": np.array([f.depth for f in faces], np.float32).reshape(len(faces), s, s),
            "face_coarse_depth": np.array([f.coarse_depth for f in faces], np.float32).reshape(len(faces), s, s),
            "face_mask": np.array([f.mask for f in faces], bool).reshape(len(faces), s, s),
        }
        return out

    def write(self, result) -> Path:
        stem = f"frame_{result.index:06d}"
        path = self.directory / f"{stem}.npz"
        np.savez_compressed(path, **self.arrays(result))
        if self.meshes:
            tris = self._triangles()
            for f in result.faces:
                mp = self.directory / f"{stem}_face{f.track_id}.{self.mesh_format}"
                (write_ply if self.mesh_format == "ply" else write_obj)(mp, f.vertices, tris)
        self.frames += 1
        return path

    def close(self) -> None:
        pass

    def __enter__(self) -> "NpzSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PreviewWindow:
    """Live preview with ``cv2.imshow`` (``rtface stream --show``). ``show(result)`` returns False once the user
    pressed q or Esc or closed the window."""

    def __init__(self, title: str = "rtface") -> None:
        import cv2

        self.title = title
        self._cv2 = cv2
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY") and os.name != "nt" \
                and not _is_macos():
            raise InputError("--show needs a display, and none is available here (DISPLAY is not set); "
                             "write a video with --out depth.mp4 instead.")
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise InputError("--show needs an OpenCV build with GUI support; this one is headless "
                             "(opencv-python-headless). pip install opencv-python, or use --out depth.mp4 "
                             f"instead. ({str(exc).strip().splitlines()[-1]})") from exc

    def show(self, item: Any, text: str | None = None) -> bool:
        cv2 = self._cv2
        img = item if isinstance(item, np.ndarray) else visualize(item)
        if text:
            img = img.copy()
            cv2.putText(img, text, (8, img.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 0), 1,
                        cv2.LINE_AA)
        try:
            cv2.imshow(self.title, img)
            key = cv2.waitKey(1) & 0xFF
            visible = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error as exc:
            raise RtfaceError(f"the preview window failed: {exc}") from exc
        return key not in (ord("q"), 27) and visible

    def close(self) -> None:
        try:
            self._cv2.destroyWindow(self.title)
        except Exception:
            pass


def _is_macos() -> bool:
    import sys

    return sys.platform == "darwin"


__all__ = ["NpzSink", "PreviewWindow", "VideoSink", "visualize", "write_obj", "write_ply"]
