"""Frame sources: video files, network streams, webcams, images and arrays, decoded on a thread.

``open_source(src)`` turns anything rtface accepts as input into a :class:`FrameSource`, an iterable of
:class:`Frame` (index, timestamp in seconds, HxWx3 uint8 BGR C-contiguous image). Decoding runs on a
background thread so that it overlaps with the networks:

* files (and everything else that is not live) go through a bounded blocking queue: no frame is ever
  dropped, the reader waits while the consumer is ``queue_size`` frames behind;
* live sources (URLs, webcams, or any source opened with ``live=True``) keep only the newest frame: the
  reader overwrites a frame the consumer has not taken yet, so the consumer always gets the latest one
  and never falls behind the camera. ``FrameSource.dropped`` counts the overwritten frames.

Timestamps: ``live=False`` -> stream time, ``(pts - stream.start_time) * time_base`` for PyAV sources
(so that the first frame of an ordinary file is at 0 s) and ``index / fps`` for images, folders and
arrays (fps = the ``fps`` argument, 30 when not given); ``live=True`` -> wall clock,
``time.monotonic()`` seconds since the source was opened. Timestamps are made strictly increasing
(a repeated or backward pts becomes the previous timestamp + one frame period).

Errors: a source that cannot be opened raises :class:`rtface.errors.SourceError` from ``open_source``;
a bad element of an iterable raises :class:`rtface.errors.InputError` (naming the frame index) from the
loop that consumes the source. A truncated or corrupt file yields every frame that decodes, then warns
with :class:`SourceWarning` and ends; a live source that disconnects ends with a :class:`SourceWarning`.
Warnings are issued in the consuming thread, after the last frame that was delivered before them.
"""

from __future__ import annotations

import atexit
import collections
import math
import os
import re
import sys
import threading
import time
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .errors import InputError, SourceError

__all__ = ["Frame", "FrameSource", "SourceWarning", "av_frame_bgr", "default_decode_threads", "open_source",
           "to_bgr", "IMAGE_EXTENSIONS"]

#: File name extensions read as still images (cv2.imdecode); everything else goes to PyAV.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".webp", ".tif", ".tiff", ".jp2",
     ".pbm", ".pgm", ".ppm", ".pnm", ".pxm", ".sr", ".ras", ".exr", ".hdr", ".pic", ".avif"}
)
#: URL schemes that are opened with PyAV's network options; live by default.
LIVE_URL_SCHEMES = frozenset(
    {"rtsp", "rtsps", "rtmp", "rtmps", "rtmpt", "http", "https", "udp", "tcp", "srt", "rtp", "mms", "mmsh"}
)
#: Seconds PyAV waits to open a network stream, and for data once it is open.
URL_TIMEOUT = (10.0, 5.0)
#: Seconds ``close()`` waits for the reader thread (a blocked network read ends at the read timeout).
_JOIN_TIMEOUT = 5.0
#: Consecutive undecodable packets after which a file is given up (it never hangs on garbage).
_MAX_CONSECUTIVE_DECODE_ERRORS = 64
#: Frame rate assumed for timestamps of images, folders and arrays when none is given.
DEFAULT_FPS = 30.0

_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


class SourceWarning(RuntimeWarning):
    """A source ended early or skipped input: truncated/corrupt file, lost connection, unreadable image."""


@dataclass(eq=False)
class Frame:
    """One decoded frame.

    index: position in the source (0-based; a live source that dropped stale frames skips indices).
    timestamp: seconds (stream time, or wall clock since opening for live sources; see module doc).
    image: (H, W, 3) uint8 BGR, C-contiguous.
    decode_ms: milliseconds the reader thread spent decoding and converting this frame.
    """

    index: int
    timestamp: float  # seconds
    image: np.ndarray  # HxWx3 uint8 BGR, contiguous
    decode_ms: float = 0.0


# --------------------------------------------------------------------------------------------------
# Array conversion


def to_bgr(image: Any, *, index: int | None = None) -> np.ndarray:
    """Convert one image array to (H, W, 3) uint8 BGR, C-contiguous.

    Accepted shapes: (H, W) and (H, W, 1) grey -> replicated to 3 channels; (H, W, 3) taken as BGR;
    (H, W, 4) taken as BGRA, alpha dropped. Channel order cannot be detected: RGB(A) data must be
    flipped by the caller (``image[..., ::-1]``). Accepted dtypes: uint8 as is; uint16 scaled by
    255/65535 and rounded; float16/32/64 with values in [0, 1] (values up to 0.002 outside are clipped)
    scaled by 255 and rounded. Any size >= 1x1 works, odd sizes included. The result is the input
    itself when it is already uint8 BGR and C-contiguous (no copy).

    Raises InputError (naming ``index`` when given) for non-arrays, other shapes or dtypes, empty
    images, non-finite floats and floats outside [0, 1].
    """
    import cv2

    where = f"frame {index}: " if index is not None else ""
    if not isinstance(image, np.ndarray):
        raise InputError(
            f"{where}expected a numpy array of shape (H, W, 3) uint8 BGR, got {type(image).__name__}. "
            "Convert images with np.asarray(...) (and [..., ::-1] for RGB data)."
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise InputError(
            f"{where}expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
            f"got shape {image.shape}."
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"{where}the image is empty (shape {image.shape}).")
    image = _to_uint8(image, where)
    if image.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image)


def _to_uint8(image: np.ndarray, where: str) -> np.ndarray:
    import cv2

    dtype = image.dtype
    if dtype == np.uint8:
        return image
    if dtype == np.uint16:
        # Linear rescale 0..65535 -> 0..255 with rounding (65535 -> 255 exactly).
        return cv2.convertScaleAbs(np.ascontiguousarray(image), alpha=255.0 / 65535.0)
    if dtype.kind == "f":
        img = image.astype(np.float32, copy=False)
        if not np.isfinite(img).all():
            raise InputError(f"{where}float image contains NaN or infinity.")
        lo, hi = float(img.min()), float(img.max())
        if lo < -0.002 or hi > 1.002:
            raise InputError(
                f"{where}float images must hold values in [0, 1], got [{lo:g}, {hi:g}]. "
                "For 0..255 data pass uint8 (image.astype(np.uint8)); otherwise divide by the maximum."
            )
        return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise InputError(
        f"{where}unsupported dtype {dtype}; pass uint8 (0..255), uint16 (0..65535) or float in [0, 1]. "
        "Integer arrays that hold 0..255 can be converted with image.astype(np.uint8)."
    )


# --------------------------------------------------------------------------------------------------
# Reader thread <-> consumer channel


class _Note:
    """A warning travelling through the channel, issued by the consumer in order with the frames."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


_END = object()


class _Channel:
    """Bounded FIFO (files) or latest-frame slot (live) between the reader thread and the consumer."""

    def __init__(self, maxsize: int, latest_only: bool) -> None:
        self._cond = threading.Condition()
        self._items: collections.deque = collections.deque()
        self._frames = 0  # Frame items currently in _items
        self._maxsize = max(1, int(maxsize))
        self._latest_only = latest_only
        self.closed = threading.Event()  # set by the consumer side: stop reading
        self.finished = False  # set by the reader: no more items
        self.error: BaseException | None = None
        self.dropped = 0

    def put(self, frame: Frame) -> bool:
        """Hand a frame to the consumer. Returns False once the consumer has closed the source."""
        with self._cond:
            if self._latest_only:
                if self._frames:
                    self.dropped += self._frames
                    self._items = collections.deque(x for x in self._items if isinstance(x, _Note))
                    self._frames = 0
            else:
                while self._frames >= self._maxsize and not self.closed.is_set():
                    self._cond.wait()
            if self.closed.is_set():
                return False
            self._items.append(frame)
            self._frames += 1
            self._cond.notify_all()
            return True

    def note(self, message: str) -> None:
        with self._cond:
            if not self.closed.is_set():
                self._items.append(_Note(message))
                self._cond.notify_all()

    def finish(self, error: BaseException | None = None) -> None:
        with self._cond:
            if not self.finished:
                self.finished = True
                self.error = error
            self._cond.notify_all()

    def get(self) -> Any:
        """Next Frame or _Note; _END when the reader finished (or the source was closed) and all is taken."""
        with self._cond:
            while not self._items and not self.finished and not self.closed.is_set():
                self._cond.wait()
            if self._items and not self.closed.is_set():
                item = self._items.popleft()
                if isinstance(item, Frame):
                    self._frames -= 1
                self._cond.notify_all()
                return item
            return _END

    def close(self) -> None:
        with self._cond:
            self.closed.set()
            self._items.clear()
            self._frames = 0
            self._cond.notify_all()


# Reader threads still running, closed and joined at interpreter exit: a daemon thread that is inside
# FFmpeg or OpenCV while the interpreter tears down can abort the process.
_ACTIVE_READERS: set[tuple[_Channel, threading.Thread]] = set()
_ACTIVE_LOCK = threading.Lock()


@atexit.register
def _stop_readers() -> None:
    with _ACTIVE_LOCK:
        readers = list(_ACTIVE_READERS)
    for channel, _ in readers:
        channel.close()
    for _, thread in readers:
        thread.join(_JOIN_TIMEOUT)


def _read(produce: Callable[[_Channel], Iterator[Frame]], channel: _Channel) -> None:
    """Body of the reader thread. It holds no reference to the FrameSource, so that an abandoned
    source can be garbage collected (its finalizer closes the channel and this loop ends)."""
    gen = None
    error: BaseException | None = None
    try:
        gen = produce(channel)
        for frame in gen:
            if not channel.put(frame):
                break
    except BaseException as exc:  # forwarded to the consumer, raised there
        error = exc
    finally:
        if gen is not None:
            try:
                gen.close()  # runs the producer's cleanup (closes the container / capture) on this thread
            except BaseException as exc:  # pragma: no cover - cleanup failure
                error = error or exc
        channel.finish(error)
        with _ACTIVE_LOCK:
            _ACTIVE_READERS.discard((channel, threading.current_thread()))


# --------------------------------------------------------------------------------------------------
# FrameSource


class FrameSource:
    """An iterable of :class:`Frame`, decoded on a background thread; a context manager.

    Attributes: ``name`` (str, for messages), ``fps`` (float or None when unknown), ``live`` (bool:
    latest-frame-wins and wall-clock timestamps), ``num_frames`` (int or None; for progress bars, may be
    an estimate for files whose container does not store a count), ``dropped`` (frames a live source
    overwrote before they were consumed).

    Iterate once. Leaving the loop early (``break``), ``close()`` or leaving the ``with`` block stops the
    reader thread promptly and releases the file, stream or camera.
    """

    def __init__(
        self,
        produce: Callable[[_Channel], Iterator[Frame]],
        *,
        name: str,
        fps: float | None,
        live: bool,
        num_frames: int | None,
        queue_size: int = 8,
    ) -> None:
        """Internal: sources are made by :func:`open_source`. ``produce(channel)`` is a generator run on
        the reader thread; it yields Frames and may post warnings with ``channel.note``."""
        self.name = name
        self.fps = fps
        self.live = live
        self.num_frames = num_frames
        self._channel = _Channel(queue_size, latest_only=live)
        self._thread = threading.Thread(
            target=_read, args=(produce, self._channel), name=f"rtface-source[{name}]", daemon=True
        )
        self._finalizer = weakref.finalize(self, self._channel.close)
        with _ACTIVE_LOCK:
            _ACTIVE_READERS.add((self._channel, self._thread))
        self._thread.start()

    @property
    def dropped(self) -> int:
        return self._channel.dropped

    def __iter__(self) -> Iterator[Frame]:
        channel = self._channel
        try:
            while True:
                item = channel.get()
                if item is _END:
                    break
                if isinstance(item, _Note):
                    warnings.warn(item.message, SourceWarning, stacklevel=2)
                    continue
                yield item
            if channel.error is not None and not channel.closed.is_set():
                raise channel.error
        finally:
            self.close()

    def close(self) -> None:
        """Stop the reader thread and release the source. Idempotent."""
        self._channel.close()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(_JOIN_TIMEOUT)

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"FrameSource(name={self.name!r}, fps={self.fps}, live={self.live}, "
            f"num_frames={self.num_frames})"
        )


# --------------------------------------------------------------------------------------------------
# open_source


def open_source(
    src: Any,
    *,
    live: bool | None = None,
    queue_size: int = 8,
    fps: float | None = None,
    decode_threads: int | None = None,
) -> FrameSource:
    """Open anything rtface takes as input as a :class:`FrameSource`.

    src:
      * a video file path (str or Path): decoded with PyAV (any format FFmpeg reads);
      * an image file (jpg, png, bmp, webp, tiff, ...) -> one frame; a folder -> its images in natural
        sort order (``img2`` before ``img10``); files with other extensions are ignored;
      * a URL (``rtsp://``, ``rtmp://``, ``http(s)://``, ``udp://``, ``tcp://``, ``srt://`` ...): PyAV with
        low-delay options; live by default;
      * an int webcam index (or a str of digits that is not an existing file, or ``/dev/videoN``): PyAV
        v4l2 on Linux, avfoundation on macOS, falling back to cv2.VideoCapture (always on Windows); live;
      * a numpy array: (H, W[, C]) is one image, (N, H, W[, C]) a stack of frames;
      * any other iterable of image arrays (see :func:`to_bgr` for the accepted shapes and dtypes);
      * a FrameSource, returned as is.
    live: None picks live for URLs and webcams, not live for the rest. live=True on a file plays it at its
      own frame rate (like a camera); live=True on an iterable runs the iterable as fast as it yields and
      keeps the newest frame.
    queue_size: frames decoded ahead of the consumer (non-live sources).
    fps: frame rate for the timestamps of images, folders and arrays (default 30); ignored for video.
    decode_threads: FFmpeg decoder threads for video files (frame and slice threading), on top of the reader
      thread they run in. None: :func:`default_decode_threads` (one fewer than the physical cores, at least
      1), so that decoding and the networks of the pipeline share the cores without oversubscribing them.

    Raises SourceError when the source cannot be opened (missing path, not a video, no camera),
    InputError for an unusable ``src`` type.
    """
    if isinstance(src, FrameSource):
        return src
    if fps is not None and not (fps > 0 and math.isfinite(fps)):
        raise InputError(f"fps must be a positive number, got {fps!r}.")
    if decode_threads is not None and (isinstance(decode_threads, bool) or not isinstance(decode_threads, int)
                                       or decode_threads < 1):
        raise InputError(f"decode_threads must be a positive integer or None, got {decode_threads!r}.")
    if isinstance(src, (bool, np.bool_)):
        raise InputError("src must be a path, URL, webcam index or iterable of images, got a bool.")
    if isinstance(src, (int, np.integer)):
        return _open_webcam(int(src), live=True if live is None else live, queue_size=queue_size)
    if isinstance(src, (bytes, bytearray)):
        raise InputError("src is bytes; pass a file path, a URL or an iterable of image arrays.")
    if isinstance(src, np.ndarray):
        return _open_array(src, live=bool(live), queue_size=queue_size, fps=fps)
    if isinstance(src, (str, os.PathLike)):
        text = os.fspath(src)
        if isinstance(text, bytes):
            text = os.fsdecode(text)
        if isinstance(src, str) and _URL_RE.match(text):
            scheme = text.split(":", 1)[0].lower()
            if scheme == "file":
                return _open_path(Path(text[len("file://"):]), live=bool(live), queue_size=queue_size, fps=fps,
                                  decode_threads=decode_threads)
            return _open_url(text, live=True if live is None else live, queue_size=queue_size)
        path = Path(text)
        if not path.exists():
            if isinstance(src, str) and text.isdigit():
                return _open_webcam(int(text), live=True if live is None else live, queue_size=queue_size)
        m = re.fullmatch(r"/dev/video(\d+)", text)
        if m and sys.platform.startswith("linux"):
            return _open_webcam(int(m.group(1)), live=True if live is None else live, queue_size=queue_size)
        return _open_path(path, live=bool(live), queue_size=queue_size, fps=fps, decode_threads=decode_threads)
    if isinstance(src, Iterable):
        return _open_iterable(src, live=bool(live), queue_size=queue_size, fps=fps)
    raise InputError(
        f"cannot read frames from a {type(src).__name__}: pass a video/image path, a folder, a URL, "
        "a webcam index or an iterable of HxWx3 uint8 BGR arrays."
    )


# --- paths ----------------------------------------------------------------------------------------


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _read_image(path: Path) -> np.ndarray | None:
    """Decode an image file to BGR uint8 (EXIF orientation applied, alpha dropped), None if undecodable."""
    import cv2

    try:
        data = np.fromfile(str(path), dtype=np.uint8)  # np.fromfile + imdecode: non-ASCII paths work
    except OSError:
        return None
    if data.size == 0:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return None if image is None else np.ascontiguousarray(image)


def _open_path(path: Path, *, live: bool, queue_size: int, fps: float | None,
               decode_threads: int | None = None) -> FrameSource:
    what_to_do = (
        "Pass a video file, an image, a folder of images, a URL (rtsp://, http://, ...), "
        "a webcam index or an iterable of image arrays."
    )
    if not path.exists():
        raise SourceError(f"'{path}' does not exist. {what_to_do}")
    if path.is_dir():
        files = sorted(
            (p for p in path.iterdir()
             if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()),
            key=_natural_key,
        )
        if not files:
            raise SourceError(
                f"folder '{path}' contains no images ({', '.join(sorted(IMAGE_EXTENSIONS)[:8])}, ...). "
                f"{what_to_do}"
            )
        return _folder_source(path, files, live=live, queue_size=queue_size, fps=fps)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        image = _read_image(path)
        if image is None:
            raise SourceError(
                f"'{path}' cannot be decoded as an image (corrupt, empty or an unsupported format). "
                "Check that it opens in an image viewer, or convert it to PNG or JPEG."
            )
        return _images_source(f"{path}", [image], live=live, queue_size=queue_size, fps=fps, single=True)
    try:
        return _open_av(str(path), name=str(path), live=live, queue_size=queue_size, realtime=False,
                        decode_threads=decode_threads)
    except SourceError:
        image = _read_image(path)  # an image with an unusual extension
        if image is not None:
            return _images_source(str(path), [image], live=live, queue_size=queue_size, fps=fps, single=True)
        raise


def _folder_source(folder: Path, files: list[Path], *, live: bool, queue_size: int,
                   fps: float | None) -> FrameSource:
    rate = fps or DEFAULT_FPS

    def produce(channel: _Channel) -> Iterator[Frame]:
        t0 = time.monotonic()
        for i, file in enumerate(files):
            start = time.perf_counter()
            image = _read_image(file)
            if image is None:
                channel.note(f"skipped '{file}' (frame {i} of folder '{folder}'): it cannot be decoded "
                                    "as an image.")
                continue
            ts = time.monotonic() - t0 if live else i / rate
            yield Frame(i, ts, image, (time.perf_counter() - start) * 1e3)

    return FrameSource(produce, name=str(folder), fps=None if live else rate, live=live,
                       num_frames=len(files), queue_size=queue_size)


def _images_source(name: str, images: list[np.ndarray], *, live: bool, queue_size: int,
                   fps: float | None, single: bool) -> FrameSource:
    rate = fps or DEFAULT_FPS

    def produce(channel: _Channel) -> Iterator[Frame]:
        t0 = time.monotonic()
        for i, image in enumerate(images):
            yield Frame(i, time.monotonic() - t0 if live else i / rate, image)

    return FrameSource(produce, name=name, fps=None if single else rate, live=live,
                       num_frames=len(images), queue_size=queue_size)


# --- arrays and iterables -------------------------------------------------------------------------


def _open_array(array: np.ndarray, *, live: bool, queue_size: int, fps: float | None) -> FrameSource:
    single = array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4))
    if single:
        image = to_bgr(array, index=0)
        if image is array or np.may_share_memory(image, array):
            image = image.copy()
        return _images_source("<array>", [image], live=live, queue_size=queue_size, fps=fps, single=True)
    if array.ndim not in (3, 4):
        raise InputError(
            f"an array source must be one image (H, W[, C]) or a stack (N, H, W[, C]), got shape {array.shape}."
        )
    return _open_iterable(array, live=live, queue_size=queue_size, fps=fps, name="<array>",
                          num_frames=int(array.shape[0]))


def _open_iterable(items: Iterable, *, live: bool, queue_size: int, fps: float | None,
                   name: str | None = None, num_frames: int | None = None) -> FrameSource:
    rate = fps or DEFAULT_FPS
    if num_frames is None:
        try:
            num_frames = len(items)  # type: ignore[arg-type]
        except TypeError:
            num_frames = None

    def produce(channel: _Channel) -> Iterator[Frame]:
        t0 = time.monotonic()
        iterator = iter(items)
        try:
            for i, item in enumerate(iterator):
                start = time.perf_counter()
                image = to_bgr(item, index=i)
                if image is item or np.may_share_memory(image, item):
                    image = image.copy()  # the producer may reuse its buffer for the next frame
                ts = time.monotonic() - t0 if live else i / rate
                yield Frame(i, ts, image, (time.perf_counter() - start) * 1e3)
        finally:
            close = getattr(iterator, "close", None)
            if callable(close):
                close()

    return FrameSource(produce, name=name or f"<{type(items).__name__}>", fps=None if live else rate,
                       live=live, num_frames=num_frames, queue_size=queue_size)


# --- PyAV: files, URLs, webcams -------------------------------------------------------------------


def _redact(url: str) -> str:
    """URL without the password (names end up in logs and warnings)."""
    return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", url)


def _open_url(url: str, *, live: bool, queue_size: int) -> FrameSource:
    scheme = url.split(":", 1)[0].lower()
    options = {"fflags": "nobuffer", "flags": "low_delay"}
    if scheme in ("rtsp", "rtsps"):
        options["rtsp_transport"] = "tcp"  # UDP loses packets on busy networks: broken frames
    if scheme not in LIVE_URL_SCHEMES:
        options = {}
    return _open_av(url, name=_redact(url), live=live, queue_size=queue_size, realtime=True,
                    options=options, timeout=URL_TIMEOUT)


def _open_webcam(index: int, *, live: bool, queue_size: int) -> FrameSource:
    name = f"webcam:{index}"
    if index < 0:
        raise InputError(f"webcam index must be >= 0, got {index}.")
    pyav_error: Exception | None = None
    if sys.platform.startswith("linux"):
        target, fmt, options = f"/dev/video{index}", "v4l2", {}
    elif sys.platform == "darwin":
        # avfoundation rejects its default rate (29.97) on most cameras; "N:none" = video N, no audio.
        target, fmt, options = f"{index}:none", "avfoundation", {"framerate": "30"}
    else:
        # dshow needs the device's friendly name ("video=Integrated Camera"), which PyAV cannot list;
        # OpenCV's DirectShow/MSMF backends take the index directly.
        target = fmt = None
        options = {}
    if target is not None:
        try:
            return _open_av(target, name=name, live=live, queue_size=queue_size, realtime=True,
                            format=fmt, options=options, timeout=URL_TIMEOUT)
        except SourceError as exc:
            pyav_error = exc
    return _open_cv2_capture(index, name=name, live=live, queue_size=queue_size, pyav_error=pyav_error)


def _open_cv2_capture(index: int, *, name: str, live: bool, queue_size: int,
                      pyav_error: Exception | None) -> FrameSource:
    import cv2

    # OpenCV logs "[ WARN ] ... can't open camera by index" itself; the SourceError below says it cleanly
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    previous = log.getLogLevel() if log is not None else None
    if log is not None:
        log.setLogLevel(log.LOG_LEVEL_ERROR)
    try:
        cap = cv2.VideoCapture(index)
    finally:
        if log is not None:
            log.setLogLevel(previous)
    if not cap.isOpened():
        cap.release()
        detail = f" (PyAV: {pyav_error})" if pyav_error else ""
        raise SourceError(
            f"cannot open webcam {index}{detail}. Check that a camera is connected, that no other program "
            "uses it and that this user may access it (Linux: membership of the 'video' group)."
        )
    cam_fps = cap.get(cv2.CAP_PROP_FPS)

    def produce(channel: _Channel) -> Iterator[Frame]:
        t0 = time.monotonic()
        i = 0
        try:
            while not channel.closed.is_set():
                start = time.perf_counter()
                ok, image = cap.read()
                if not ok or image is None:
                    channel.note(f"{name} stopped delivering frames after {i} frames (disconnected?); "
                                        "the stream ends here.")
                    return
                image = to_bgr(image, index=i)
                yield Frame(i, time.monotonic() - t0, image, (time.perf_counter() - start) * 1e3)
                i += 1
        finally:
            cap.release()

    return FrameSource(produce, name=name, fps=float(cam_fps) if cam_fps and cam_fps > 0 else None,
                       live=live, num_frames=None, queue_size=queue_size)


def av_frame_bgr(vframe: Any) -> np.ndarray:
    """A decoded PyAV video frame as (H, W, 3) uint8 BGR, C-contiguous, upright (its display rotation applied)."""
    image = vframe.to_ndarray(format="bgr24")  # honours the frame's colour matrix/range
    rotation = getattr(vframe, "rotation", 0) or 0
    if rotation:
        # Display matrix: rotate counter-clockwise by `rotation` degrees to display upright.
        image = np.rot90(image, k=int(round(rotation / 90.0)) % 4)
    return np.ascontiguousarray(image)


def default_decode_threads() -> int:
    """FFmpeg decoder threads for files: one fewer than the physical cores, at least 1.

    The reader thread decodes while the pipeline runs the networks (ONNX Runtime uses every physical core by
    default, its threads sleep between runs): on 2 cores one decoder thread overlaps the networks without
    two threads competing for the core the networks need next.
    """
    from .engines.onnxruntime import physical_cores

    return max(1, physical_cores() - 1)


def _open_av(target: str, *, name: str, live: bool, queue_size: int, realtime: bool,
             format: str | None = None, options: dict | None = None,
             timeout: Any = None, decode_threads: int | None = None) -> FrameSource:
    """Open ``target`` with PyAV. ``realtime``: a network stream or camera, whose end is a disconnect."""
    import av

    kwargs: dict[str, Any] = {}
    if format:
        kwargs["format"] = format
    if options:
        kwargs["options"] = dict(options)
    if timeout is not None:
        kwargs["timeout"] = timeout
    try:
        container = av.open(target, "r", **kwargs)
    except FileNotFoundError as exc:  # av.error.FileNotFoundError subclasses it
        raise SourceError(f"'{name}' does not exist ({exc}). Check the path.") from exc
    except PermissionError as exc:
        raise SourceError(f"'{name}' cannot be read: permission denied ({exc}).") from exc
    except Exception as exc:  # av.error.FFmpegError, OSError, TimeoutError ...
        if realtime:
            raise SourceError(
                f"cannot open the live source '{name}': {exc}. Check the address (and credentials), that the "
                "stream is running and reachable from this machine, and the firewall."
            ) from exc
        raise SourceError(
            f"'{name}' is not a video FFmpeg can read ({exc}). If it is a partial download or a copy that "
            "was cut short (an MP4 whose index is at the end cannot be read at all), get the file again; "
            "check that it plays in a media player; or convert it, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4."
        ) from exc
    try:
        if not container.streams.video:
            raise SourceError(f"'{name}' has no video stream (audio only?). Pass a video file.")
        stream = container.streams.video[0]
        # Frame threading decodes several frames at once (fast, but adds latency); live sources use
        # slice threading only.
        stream.thread_type = "SLICE" if (realtime or live) else "AUTO"
        if not (realtime or live):
            stream.codec_context.thread_count = decode_threads or default_decode_threads()
        rate = stream.average_rate or stream.guessed_rate
        stream_fps = float(rate) if rate else None
        num_frames: int | None = None
        if not live:
            num_frames = int(stream.frames) or None
            if num_frames is None and stream_fps:
                if stream.duration is not None and stream.time_base is not None:
                    num_frames = int(round(float(stream.duration * stream.time_base) * stream_fps)) or None
                elif container.duration:
                    num_frames = int(round(container.duration / 1e6 * stream_fps)) or None
    except BaseException:
        container.close()
        raise

    expected = int(stream.frames) or None
    start_pts = stream.start_time
    time_base = stream.time_base
    period = 1.0 / stream_fps if stream_fps else 1.0 / DEFAULT_FPS

    def produce(channel: _Channel) -> Iterator[Frame]:
        t0 = time.monotonic()
        index = 0
        last_ts = -math.inf
        first_stream_ts: float | None = None
        decode_errors = consecutive = 0
        first_error_at: int | None = None
        first_error: Exception | None = None
        demux_error: Exception | None = None
        corrupt = 0  # packets the demuxer flagged and frames the decoder had to conceal
        try:
            packets = container.demux(stream)
            while True:
                start = time.perf_counter()
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except Exception as exc:  # read error: truncated file, lost connection, timeout
                    demux_error = exc
                    break
                try:
                    decoded = packet.decode()
                except Exception as exc:  # av.error.InvalidDataError & co: skip the packet
                    decode_errors += 1
                    consecutive += 1
                    if first_error is None:
                        first_error, first_error_at = exc, index
                    if consecutive > _MAX_CONSECUTIVE_DECODE_ERRORS:
                        break
                    continue
                consecutive = 0
                corrupt += bool(packet.is_corrupt)
                for vframe in decoded:
                    if vframe.is_corrupt:
                        corrupt += 1
                        if first_error_at is None:
                            first_error_at = index
                    image = av_frame_bgr(vframe)
                    if vframe.pts is not None and time_base is not None:
                        stream_ts = float((vframe.pts - (start_pts or 0)) * time_base)
                    else:
                        stream_ts = last_ts + period if index else 0.0
                    if live:
                        if not realtime:  # a file played as if live: keep its own pace
                            if first_stream_ts is None:
                                first_stream_ts = stream_ts
                            wait = t0 + (stream_ts - first_stream_ts) - time.monotonic()
                            if wait > 0 and channel.closed.wait(min(wait, 1.0)):
                                return
                        ts = time.monotonic() - t0
                    else:
                        ts = stream_ts
                    if ts <= last_ts:
                        ts = last_ts + (1e-6 if live else period)
                    last_ts = ts
                    yield Frame(index, ts, image, (time.perf_counter() - start) * 1e3)
                    index += 1
                    start = time.perf_counter()
        finally:
            container.close()
        if channel.closed.is_set():
            return
        if realtime:
            reason = f": {demux_error}" if demux_error else ""
            channel.note(f"live source '{name}' disconnected after {index} frames{reason}; the stream ends here.")
            return
        if demux_error is not None or decode_errors or corrupt or (expected and index < expected):
            at = first_error_at if first_error_at is not None else index
            details = []
            if expected:
                details.append(f"decoded {index} of the {expected} frames the file lists")
            if decode_errors:
                details.append(f"{decode_errors} packet(s) failed to decode, first: {first_error}")
            if demux_error is not None:
                details.append(f"read error: {demux_error}")
            if corrupt:
                details.append(f"{corrupt} damaged packet(s) or frame(s)")
            channel.note(
                f"'{name}' is truncated or corrupt at frame {at} ({'; '.join(details)}); the stream ends after "
                f"frame {index - 1}. Get a complete copy of the file, or re-encode it "
                "(ffmpeg -i IN -c:v libx264 OUT.mp4) to keep what decodes."
            )

    return FrameSource(produce, name=name, fps=stream_fps, live=live, num_frames=num_frames,
                       queue_size=queue_size)
