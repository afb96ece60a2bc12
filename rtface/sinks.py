"""Where results go: side-by-side pictures and videos, per-frame NPZ files, meshes, and a live preview window.

* :func:`open_output` picks the writer of ``rtface stream --out PATH`` by the extension: ``.mp4/.mkv/.mov/.avi/
  .webm`` -> :class:`VideoSink`; ``.png/.jpg/.jpeg/.bmp/.webp/.tif/.tiff`` -> :class:`ImageSink` (one picture for
  a single image, a numbered sequence ``NAME_000123.png`` for video, or ``NAME_%04d.png`` as given).
* :class:`VideoSink` (PyAV): every frame as ``input | colour depth | shaded depth`` side by side, scaled to fit
  ``size`` (default no wider than :data:`DEFAULT_OUT_WIDTH` px), H.264 (libx264, preset ``superfast``) or
  MPEG-4 Part 2 where H.264 is missing, yuv420p, even sizes. Drawing and encoding run on their own thread.
* :class:`NpzSink`: ``<dir>/frame_000123.npz`` per frame (``np.savez_compressed``, plain arrays only, so it
  loads with ``allow_pickle=False``): ``index``, ``timestamp``, ``depth`` (H, W) float32 frame px, ``mask``
  (H, W) bool, ``timings_keys``/``timings_ms``, and per face stacked arrays ``boxes`` (F, 4), ``scores``,
  ``track_ids``, ``landmarks`` (F, 68, 2; 300-W convention, the jaw on the silhouette), ``landmarks3d``
  (F, 68, 3; the fixed landmark vertices, 3D-consistent convention, z as the mesh), ``identity`` (F, 100),
  ``expression`` (F, 53), ``pose`` (F, 6) in frame coordinates, ``crop_to_frame`` (F, 2, 3), ``mm_per_pixel``
  (F,), ``face_size`` (F,) each face's detail resolution D, ``face_depth``/``face_coarse_depth`` (F, S, S) px of
  the face's D x D map and ``face_mask`` (F, S, S) (S = the largest D of the frame; face i fills
  ``[:D_i, :D_i]``, zeros beyond). With ``meshes=True
  each face's mesh in frame pixels is written next to it as ``frame_000123_face<track>.ply`` (or ``.obj``).
* :class:`PreviewWindow`: ``cv2.imshow`` of the side-by-side view (``--show``); a headless OpenCV build or no
  display raises :class:`rtface.errors.InputError` with what to do instead.

Sizes are ``(max_width, max_height)`` boxes in output pixels (either may be None: unbounded); the picture is
scaled down to fit, keeping its aspect ratio, never up. :func:`parse_size` reads ``1920``, ``1280x720`` or
``full``.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import InputError, RtfaceError

#: Default maximum width (px) of written side-by-side pictures and videos.
DEFAULT_OUT_WIDTH = 1920
DEFAULT_OUT_SIZE: tuple[int | None, int | None] = (DEFAULT_OUT_WIDTH, None)
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
_GAP = 2  # px between the panels


def parse_size(text: str) -> tuple[int | None, int | None] | None:
    """``"1920"`` -> (1920, None) (maximum width), ``"1280x720"`` -> (1280, 720) (fit inside), ``"full"`` -> None
    (native size). Raises InputError otherwise."""
    t = str(text).strip().lower()
    if t in ("full", "native", "0"):
        return None
    parts = t.split("x")
    try:
        values = [int(v) for v in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values, default=0) < 16:
        raise InputError(f"output size must be WIDTH, WIDTHxHEIGHT (each >= 16 px) or 'full', got {text!r}")
    return (values[0], values[1] if len(values) == 2 else None)


def _fit(w: int, h: int, size: tuple[int | None, int | None] | None) -> float:
    """Scale factor (<= 1) that fits a w x h picture into ``size``."""
    if size is None:
        return 1.0
    f = 1.0
    if size[0]:
        f = min(f, size[0] / float(w))
    if len(size) > 1 and size[1]:
        f = min(f, size[1] / float(h))
    return f


def _scaled(result, width: int, height: int, image: np.ndarray):
    """``result`` as if its frame were ``width`` x ``height`` (``image``): each face's crop -> frame similarity is
    followed by the scaling, so that :attr:`FrameResult.depth` pastes the crops straight at the small size
    (depth in pixels of the small picture) instead of pasting at full size and shrinking."""
    import copy

    from .camera import compose_affine, invert_affine
    from .results import FrameResult

    scale = np.array([[width / float(result.width), 0.0, 0.0], [0.0, height / float(result.height), 0.0]])
    faces = []
    for face in result.faces:
        small = copy.copy(face)  # shares the crop maps; only the transforms change
        small.crop_to_frame = compose_affine(scale, face.crop_to_frame)
        small.frame_to_crop = invert_affine(small.crop_to_frame)
        faces.append(small)
    return FrameResult(result.index, result.timestamp, image, faces, {})


def visualize(result, labels: bool = True, size: tuple[int | None, int | None] | None = None) -> np.ndarray:
    """BGR uint8 ``input | colour depth | shaded depth`` of one :class:`rtface.FrameResult`, scaled down to fit
    ``size`` (None: three panels of the frame's size). The panels are drawn at the output size: the crops'
    depth is pasted at that size directly, so a 1080p frame costs about as much as a 360p one."""
    from . import viz

    img = viz._as_bgr(result.image)
    h, w = img.shape[:2]
    f = 1.0 if size is None else _fit(3 * w, h, (size[0] - 2 * _GAP if size[0] else None, size[1]))
    if f < 1.0:
        pw, ph = max(1, int(w * f)), max(1, int(h * f))  # rounded down: never wider than asked
        img = _shrink(img, pw, ph)
        result = _scaled(result, pw, ph, img)
    depth, mask = result.depth, result.mask
    col = np.zeros(img.shape, np.uint8)
    shd = np.zeros(img.shape, np.uint8)
    ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if len(ys):  # colour and shade only the faces' bounding box (+1 px for the normals); the rest is black
        box = (slice(max(ys[0] - 1, 0), ys[-1] + 2), slice(max(xs[0] - 1, 0), xs[-1] + 2))
        col[box] = viz.colorize_depth(depth[box], mask[box])
        shd[box] = viz.shade_depth(depth[box], mask[box])
    names = ["input", "depth", "shaded depth"] if labels else None
    return viz.side_by_side(img, col, shd, labels=names, gap=_GAP)


def _shrink(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-averaged downscale; by a whole factor first (OpenCV's fast path, e.g. 1920 -> 640), then the small
    remainder bilinearly (a non-integer area resize of a 1080p frame costs several times more)."""
    import cv2

    k = min(img.shape[1] // width, img.shape[0] // height)
    if k >= 2:
        img = cv2.resize(img, (img.shape[1] // k, img.shape[0] // k), interpolation=cv2.INTER_AREA)
    if (img.shape[1], img.shape[0]) == (width, height):
        return img
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if k < 2 else cv2.INTER_LINEAR)


def _even(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    if h % 2 or w % 2:
        img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)))
    return img


def _job(item: Any) -> Any:
    """What the writer thread needs of one item, read on the caller's thread: a checked BGR image, or the result
    with its faces' crop maps already on the host (a GPU result is copied here, where its device lives)."""
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8:
            raise InputError(f"sinks write (H, W, 3) uint8 BGR images, got {item.shape} {item.dtype}")
        return item
    for face in item.faces:
        face.depth, face.mask  # noqa: B018 - host copies, cached on the face
    return item


def _draw(job: Any, labels: bool, size: tuple[int | None, int | None] | None) -> np.ndarray:
    if not isinstance(job, np.ndarray):
        return visualize(job, labels, size)
    f = _fit(job.shape[1], job.shape[0], size)
    if f >= 1.0:
        return job
    return _shrink(job, max(1, int(job.shape[1] * f)), max(1, int(job.shape[0] * f)))


class _Worker:
    """One background thread that runs ``fn(item)`` for each submitted item, in order. A bounded queue makes a
    fast producer wait (nothing is dropped); the first error stops the worker and is raised by the next
    ``submit`` or by ``close``."""

    def __init__(self, fn: Callable[[Any], None], name: str, depth: int = 4) -> None:
        self._fn = fn
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self.error is None:
                try:
                    self._fn(item)
                except BaseException as exc:  # reported to the producer
                    self.error = exc

    def _raise(self) -> None:
        if self.error is not None:
            exc, self.error = self.error, None
            if isinstance(exc, RtfaceError):
                raise exc
            raise RtfaceError(f"writing the output failed: {exc}") from exc

    def submit(self, item: Any) -> None:
        self._raise()
        self._queue.put(item)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()


class VideoSink:
    """Write results (or BGR images) to a video file: ``input | colour depth | shaded depth`` side by side.

    Args:
        path: output file (``.mp4``, ``.mkv``, ``.mov``, ``.avi``, ``.webm``).
        fps: frame rate of the output.
        codec: ``None`` picks ``libx264`` (H.264) and falls back to ``mpeg4``.
        crf: H.264 quality (lower = better, 18..28 sensible).
        labels: panel names in their corners.
        size: ``(max_width, max_height)`` box of the output in px (see :func:`parse_size`); default no wider
            than :data:`DEFAULT_OUT_WIDTH`; None keeps three full-size panels.
        preset: libx264 speed preset.
        threaded: draw and encode on a background thread (``write`` only queues the frame).
    """

    def __init__(self, path: str | os.PathLike, fps: float = 30.0, codec: str | None = None, crf: int = 20,
                 labels: bool = True, size: tuple[int | None, int | None] | None = DEFAULT_OUT_SIZE,
                 preset: str = "superfast", threaded: bool = True) -> None:
        import av

        self.path = Path(path)
        if self.path.suffix == "":
            raise InputError(f"the output video {self.path} needs an extension such as .mp4")
        if not fps or fps <= 0:
            fps = 30.0
        self.fps = float(fps)
        self.labels = labels
        self.size = size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._container = av.open(str(self.path), mode="w")
        except Exception as exc:  # av.error.* (bad folder, unknown format)
            raise InputError(f"cannot write video {self.path}: {exc}") from exc
        if codec is None:
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self.codec = codec
        self._crf = crf
        self._preset = preset
        self._stream = None
        self.frames = 0
        self._worker = _Worker(self._encode, f"rtface-video[{self.path.name}]") if threaded else None

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(width, height) of the written frames, once the first one is written."""
        return None if self._stream is None else (self._stream.width, self._stream.height)

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
            self._stream.options = {"crf": str(self._crf), "preset": self._preset}
        else:
            self._stream.bit_rate = 4_000_000

    def _encode(self, job: Any) -> None:
        import av

        img = _even(_draw(job, self.labels, self.size))
        h, w = img.shape[:2]
        if self._stream is None:
            self._open_stream(w, h)
        elif (w, h) != (self._stream.width, self._stream.height):
            import cv2

            img = cv2.resize(img, (self._stream.width, self._stream.height), interpolation=cv2.INTER_AREA)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def write(self, item: Any) -> None:
        """Append one :class:`rtface.FrameResult` (drawn like :func:`visualize`) or a BGR uint8 image."""
        if self._container is None:
            raise RtfaceError(f"the video {self.path} is already closed")
        job = _job(item)
        if self._worker is not None:
            self._worker.submit(job)
        else:
            self._encode(job)
        self.frames += 1

    def close(self) -> None:
        """Finish the queued frames, flush the encoder and close the file (idempotent)."""
        if self._container is None:
            return
        try:
            if self._worker is not None:
                self._worker.close()
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


class ImageSink:
    """Write results (or BGR images) as side-by-side pictures: one file, or a numbered sequence.

    Args:
        path: ``.png``, ``.jpg``... A name with a printf field (``frames/%05d.png``) is always a sequence, filled
            with the frame index; otherwise ``sequence=True`` writes ``NAME_000123.png`` (frame index) next to it.
        sequence: a picture per frame rather than one picture (a second ``write`` without it is an error).
        labels, size: as for :class:`VideoSink`.
    """

    def __init__(self, path: str | os.PathLike, sequence: bool = False, labels: bool = True,
                 size: tuple[int | None, int | None] | None = DEFAULT_OUT_SIZE, threaded: bool = True) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise InputError(f"{self.path} is not a picture name; use one of {', '.join(IMAGE_EXTENSIONS)}")
        self.pattern = "%" in self.path.name
        if self.pattern:
            try:
                self.path.name % 0
            except (TypeError, ValueError) as exc:
                raise InputError(f"the numbered output name {self.path.name!r} needs one integer field such as "
                                 f"%06d ({exc})") from exc
        self.sequence = bool(sequence) or self.pattern
        self.labels = labels
        self.size = size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.frames = 0
        self.written: list[Path] = []
        self._worker = _Worker(self._save, f"rtface-images[{self.path.name}]") if threaded else None

    def path_of(self, index: int) -> Path:
        """The file written for frame ``index``."""
        if self.pattern:
            return self.path.with_name(self.path.name % index)
        if self.sequence:
            return self.path.with_name(f"{self.path.stem}_{index:06d}{self.path.suffix}")
        return self.path

    def _save(self, task: tuple) -> None:
        import cv2

        target, job = task
        if not cv2.imwrite(str(target), _draw(job, self.labels, self.size)):
            raise InputError(f"OpenCV could not write the picture {target} (is the folder writable?)")

    def write(self, item: Any) -> Path:
        """Write one :class:`rtface.FrameResult` or BGR uint8 image; returns the file it goes to."""
        if self.frames and not self.sequence:
            raise InputError(f"{self.path} holds one picture; for several frames use a sequence (sequence=True) "
                             f"or a video name such as {self.path.with_suffix('.mp4').name}")
        job = _job(item)
        target = self.path_of(self.frames if isinstance(job, np.ndarray) else int(job.index))
        if self._worker is not None:
            self._worker.submit((target, job))
        else:
            self._save((target, job))
        self.frames += 1
        self.written.append(target)
        return target

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()

    def __enter__(self) -> "ImageSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def output_kind(path: str | os.PathLike) -> str:
    """``"video"`` or ``"picture"``: what ``--out PATH`` writes, from the extension; InputError for others."""
    ext = Path(path).suffix.lower()
    if ext in VIDEO_EXTENSIONS:
        return "video"
    if ext in IMAGE_EXTENSIONS:
        return "picture"
    raise InputError(
        f"--out {path}: cannot tell what to write from the extension {ext or '(none)'!r}. Use a video name "
        f"({', '.join(VIDEO_EXTENSIONS)}) or a picture name ({', '.join(IMAGE_EXTENSIONS)}; a numbered "
        f"sequence for video)."
    )


def open_output(path: str | os.PathLike, *, fps: float | None = None, single_image: bool = False,
                size: tuple[int | None, int | None] | None = DEFAULT_OUT_SIZE,
                labels: bool = True) -> "VideoSink | ImageSink":
    """The writer for ``--out PATH``, chosen by its extension (see the module docstring and :func:`output_kind`).

    ``single_image``: the source is one picture, so a picture name gets exactly that picture (a video name
    still gets a one-frame video); otherwise a picture name gets a numbered sequence."""
    if output_kind(path) == "video":
        return VideoSink(path, fps=fps or 30.0, size=size, labels=labels)
    return ImageSink(path, sequence=not single_image, size=size, labels=labels)


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
        self.mesh_files = 0

    def _triangles(self) -> np.ndarray:
        if self.triangles is None:
            from .face_model import FaceModel

            self.triangles = FaceModel.load().triangles
        return self.triangles

    @staticmethod
    def arrays(result) -> dict[str, np.ndarray]:
        """The arrays stored for one frame (see the module docstring)."""
        faces = result.faces
        sizes = np.array([f.depth.shape[-1] for f in faces], np.int32)
        s = int(sizes.max()) if faces else 0

        def maps(name: str, dtype) -> np.ndarray:  # faces of a frame may differ in detail resolution: padded
            out = np.zeros((len(faces), s, s), dtype)
            for i, f in enumerate(faces):
                a = np.asarray(getattr(f, name))
                out[i, :a.shape[0], :a.shape[1]] = a
            return out

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
            "landmarks3d": np.array([f.landmarks3d for f in faces], np.float32).reshape(-1, 68, 3),
            "identity": np.array([f.identity for f in faces], np.float32).reshape(len(faces), -1 if faces else 0),
            "expression": np.array([f.expression for f in faces], np.float32).reshape(len(faces), -1 if faces else 0),
            "pose": np.array([f.pose.to_vector() for f in faces], np.float32).reshape(-1, 6),
            "crop_to_frame": np.array([f.crop_to_frame for f in faces], np.float64).reshape(-1, 2, 3),
            "mm_per_pixel": np.array([f.mm_per_pixel for f in faces], np.float64),
            "face_size": sizes,
            "face_depth": maps("depth", np.float32),
            "face_coarse_depth": maps("coarse_depth", np.float32),
            "face_mask": maps("mask", bool),
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
                self.mesh_files += 1
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
        img = item if isinstance(item, np.ndarray) else visualize(item, size=DEFAULT_OUT_SIZE)
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


__all__ = ["DEFAULT_OUT_SIZE", "DEFAULT_OUT_WIDTH", "IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "ImageSink", "NpzSink",
           "PreviewWindow", "VideoSink", "open_output", "output_kind", "parse_size", "visualize", "write_obj",
           "write_ply"]
