"""The archive: everything rtface found in one input (a video or an image), in one file; :func:`load` reads it.

``rtface batch`` writes one archive per input. The format is a **NumPy ``.npz``** (a ZIP of ``.npy`` arrays),
chosen because every Python installation that runs rtface already reads it (``numpy.load``, no extra library,
no pickle: every member is a plain array and loads with ``allow_pickle=False``), ZIP members can be written one
at a time (a long video is streamed to disk, never held in memory) and read one at a time (a face's depth map
without the rest), and a ZIP is readable from any language. HDF5 would need h5py, which rtface does not depend
on; Parquet/Arrow have no natural place for per-face maps whose size varies.

Members (N frames, F faces in all; ``face_start[i]:face_start[i + 1]`` are the faces of frame ``i``):

* ``rtface.json``: the schema and metadata (UTF-8 JSON): format name and version, the input, rtface's version
  and options, frame and face counts, the source's frame rate and size, how the input was split into segments
  and how closely each join agreed, and a description of every member with its unit (:data:`FIELDS`).
* per frame: ``frame_index`` (N,) int64 (position in the source), ``timestamp`` (N,) float64 seconds,
  ``face_start`` (N + 1,) int64.
* per face: ``face_frame`` (F,) int64 (the frame's row), ``box`` (F, 4) float32 xyxy frame px, ``score``,
  ``track_id`` (F,) int64, ``landmarks`` (F, 68, 2) and ``landmarks3d`` (F, 68, 3) float32 frame px, ``pose``
  (F, 6) float32 in frame coordinates (pitch, yaw, roll rad; scale frame px per cm; tx, ty frame px),
  ``expression`` (F, 53), ``identity`` (F, 100) float32, ``frame_to_crop`` (F, 2, 3) float64 (frame px ->
  the face's map px), ``mm_per_pixel`` (F,) float32 (mm per map px), ``map_size`` (F,) int32 (S: the side of
  the face's maps; it varies per face).
* per face ``i``, its crop-aligned maps, each its own member so that sizes can differ: ``mask/i`` the (S, S)
  bool mask packed to bits (``numpy.packbits``, row-major, S * S bits) and ``depth/i`` float16 values of the
  fine depth (map px) at the mask's True pixels in row-major order (0 elsewhere, as ``FaceResult.depth``).
  Maps are stored without ZIP compression (float16 detail compresses poorly; storing only the face's pixels
  saves more), so joining segments copies bytes.

Reading (:func:`load`)::

    clip = rtface.load("out/talk.npz")
    for frame in clip:                        # ArchiveFrame: index, timestamp, faces
        print(frame.timestamp, [(f.track_id, f.depth.shape, f.mm_per_pixel) for f in frame.faces])

Without rtface: ``z = numpy.load(path)``; ``meta = json.loads(z["rtface.json"])``; the mask of face ``i`` is
``numpy.unpackbits(z[f"mask/{i}"], count=S * S).reshape(S, S).astype(bool)``, its depth ``d = numpy.zeros((S, S),
numpy.float32); d[mask] = z[f"depth/{i}"]`` with ``S = z["map_size"][i]``.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

from .errors import InputError

FORMAT = "rtface-archive"
VERSION = 1
META = "rtface.json"
_DATE = (1980, 1, 1, 0, 0, 0)  # fixed member dates: the same results give the same bytes

#: Per-frame arrays.
FRAME_FIELDS = {
    "frame_index": ("int64", (), "position of the frame in the source (0-based)"),
    "timestamp": ("float64", (), "seconds: the source's stream time (images: index / 30)"),
}
#: Per-face arrays: dtype, shape of one face's entry, meaning and unit.
FACE_FIELDS = {
    "face_frame": ("int64", (), "row of the face's frame in the per-frame arrays"),
    "box": ("float32", (4,), "x0, y0, x1, y1 in frame px (detector box, carried along by tracking)"),
    "score": ("float32", (), "detector score of the face's last detection"),
    "track_id": ("int64", (), "the face's id, stable across the frames of the input (segments joined)"),
    "landmarks": ("float32", (68, 2), "iBUG 68 landmarks in frame px, 300-W convention (jaw on the silhouette)"),
    "landmarks3d": ("float32", (68, 3), "the face model's 68 fixed landmark vertices in frame px (x, y, z toward "
                                        "the camera): 3D-consistent convention; NaN where rtface had none"),
    "pose": ("float32", (6,), "frame coordinates: pitch, yaw, roll (rad), scale (frame px per cm), tx, ty (frame px)"),
    "expression": ("float32", (-1,), "ARKit blendshape weights in [0, 1] (53 for the ICT face model)"),
    "identity": ("float32", (-1,), "N(0, 1)-scaled identity coefficients (100 for the ICT face model)"),
    "frame_to_crop": ("float64", (2, 3), "2x3 similarity: frame px -> px of the face's depth and mask maps"),
    "mm_per_pixel": ("float32", (), "millimetres per map px (converts depth and map distances to mm)"),
    "map_size": ("int32", (), "S: side of the face's square depth and mask maps in px (varies per face)"),
}
#: Per-face maps, one member each (``NAME/i`` for face row ``i``).
MAP_FIELDS = {
    "mask": ("uint8", "the (S, S) bool mask, numpy.packbits of its row-major S * S values"),
    "depth": ("float16", "the fine depth in map px (z toward the camera) at the mask's True pixels, row-major; "
                         "0 where the mask is False"),
}
#: Every member, documented in the archive's ``rtface.json`` (``fields``).
FIELDS = {**{k: {"per": "frame", "dtype": d, "shape": ["N", *s], "doc": t} for k, (d, s, t) in FRAME_FIELDS.items()},
          "face_start": {"per": "frame", "dtype": "int64", "shape": ["N+1"],
                         "doc": "faces of frame i are the face rows face_start[i]:face_start[i+1]"},
          **{k: {"per": "face", "dtype": d, "shape": ["F", *s], "doc": t} for k, (d, s, t) in FACE_FIELDS.items()},
          **{f"{k}/i": {"per": "face map", "dtype": d, "doc": t} for k, (d, t) in MAP_FIELDS.items()}}


class ArchiveError(InputError):
    """A file is not an rtface archive, or is damaged."""


# ---------------------------------------------------------------------------------------------- maps

def encode_maps(depth: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A face's (S, S) depth and mask -> (float16 depth at the mask's pixels, packed mask bits)."""
    m = np.asarray(mask, bool)
    d = np.asarray(depth)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or d.shape != m.shape:
        raise InputError(f"a face's depth and mask must be square maps of one size, got {d.shape} and {m.shape}")
    return d[m].astype(np.float16), np.packbits(m.reshape(-1))


def decode_maps(values: np.ndarray, bits: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_maps`: (depth (S, S) float32 map px, 0 outside; mask (S, S) bool)."""
    s = int(size)
    mask = np.unpackbits(np.asarray(bits, np.uint8), count=s * s).reshape(s, s).astype(bool)
    depth = np.zeros((s, s), np.float32)
    depth[mask] = np.asarray(values, np.float32)
    return depth, mask


def _landmarks3d(face: Any) -> np.ndarray | None:
    try:
        v = getattr(face, "landmarks3d", None)
    except ValueError:  # a FaceResult built without the face model's landmark ids
        return None
    return None if v is None else np.asarray(v, np.float32)


def face_row(face: Any) -> dict[str, np.ndarray]:
    """One face's per-face values (:data:`FACE_FIELDS`, less ``face_frame``) from a :class:`rtface.FaceResult`."""
    l3 = _landmarks3d(face)
    return {
        "box": np.asarray(face.box, np.float32).reshape(4),
        "score": np.float32(face.score),
        "track_id": np.int64(face.track_id),
        "landmarks": np.asarray(face.landmarks, np.float32).reshape(68, 2),
        "landmarks3d": np.full((68, 3), np.nan, np.float32) if l3 is None else l3.reshape(68, 3),
        "pose": np.asarray(face.pose.to_vector(), np.float32).reshape(6),
        "expression": np.asarray(face.expression, np.float32).reshape(-1),
        "identity": np.asarray(face.identity, np.float32).reshape(-1),
        "frame_to_crop": np.asarray(face.frame_to_crop, np.float64).reshape(2, 3),
        "mm_per_pixel": np.float32(face.mm_per_pixel),
        "map_size": np.int32(np.asarray(face.depth).shape[-1]),
    }


# ---------------------------------------------------------------------------------------------- writing

def _write_npy(zf: zipfile.ZipFile, name: str, array: np.ndarray, compress: bool) -> None:
    info = zipfile.ZipInfo(name + ".npy", date_time=_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    with zf.open(info, "w", force_zip64=True) as fh:
        np.lib.format.write_array(fh, np.asarray(array), allow_pickle=False)


def _write_bytes(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def _stack(rows: list, name: str) -> np.ndarray:
    dtype, shape, _ = FACE_FIELDS[name]
    if rows:
        return np.stack(rows).astype(dtype, copy=False)
    return np.zeros((0, *[0 if s == -1 else s for s in shape]), dtype)


class ArchiveWriter:
    """Streams an archive into ``fileobj`` (a binary file or ``io.BytesIO``): maps are written as faces arrive,
    the tables when the writer closes. Extra tables (``extras``, e.g. a segment's warm-up frames for the join) go
    under ``extra/NAME``; :func:`join` drops them."""

    def __init__(self, fileobj: IO[bytes]) -> None:
        self._zip = zipfile.ZipFile(fileobj, "w", allowZip64=True)
        self._frames: dict[str, list] = {"frame_index": [], "timestamp": []}
        self._faces: dict[str, list] = {k: [] for k in FACE_FIELDS}
        self._face_start = [0]
        self.frames = 0
        self.faces = 0
        self._closed = False

    def add_frame(self, result: Any) -> None:
        """Append one :class:`rtface.FrameResult` (its faces' maps are written now)."""
        self.begin_frame(int(result.index), float(result.timestamp))
        for f in result.faces:
            self.add_face(face_row(f), maps=encode_maps(f.depth, f.mask))

    def begin_frame(self, index: int, timestamp: float) -> None:
        """Start the next frame; its faces follow with :meth:`add_face`."""
        self._frames["frame_index"].append(int(index))
        self._frames["timestamp"].append(float(timestamp))
        self.frames += 1
        self._face_start.append(self.faces)

    def add_face(self, row: dict, maps: tuple[np.ndarray, np.ndarray] | None = None,
                 copy_from: tuple[zipfile.ZipFile, int] | None = None) -> None:
        """Add a face to the current frame: its values (:func:`face_row`) and either its encoded ``maps``
        (:func:`encode_maps`) or ``copy_from=(zip, row)``, another archive's face whose map members are copied
        byte for byte (the join of segments)."""
        if not self.frames:
            raise InputError("ArchiveWriter.add_face before begin_frame")
        i = self.faces
        if maps is not None:
            values, bits = maps
            _write_npy(self._zip, f"mask/{i}", bits, compress=False)
            _write_npy(self._zip, f"depth/{i}", values, compress=False)
        elif copy_from is not None:
            source, src_row = copy_from
            for name in MAP_FIELDS:
                info = zipfile.ZipInfo(f"{name}/{i}.npy", date_time=_DATE)
                info.compress_type = zipfile.ZIP_STORED
                info.external_attr = 0o644 << 16
                with source.open(f"{name}/{src_row}.npy") as src, self._zip.open(info, "w", force_zip64=True) as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
        else:
            raise InputError("ArchiveWriter.add_face needs the face's maps or copy_from")
        row = dict(row, face_frame=np.int64(self.frames - 1))
        for k in FACE_FIELDS:
            self._faces[k].append(row[k])
        self.faces += 1
        self._face_start[-1] = self.faces

    def close(self, meta: dict, extras: dict[str, np.ndarray] | None = None) -> None:
        """Write the tables and ``rtface.json`` (``meta`` plus the format fields) and finish the ZIP."""
        if self._closed:
            return
        _write_npy(self._zip, "frame_index", np.asarray(self._frames["frame_index"], np.int64), True)
        _write_npy(self._zip, "timestamp", np.asarray(self._frames["timestamp"], np.float64), True)
        _write_npy(self._zip, "face_start", np.asarray(self._face_start, np.int64), True)
        for k in FACE_FIELDS:
            _write_npy(self._zip, k, _stack(self._faces[k], k), True)
        for k, v in (extras or {}).items():
            _write_npy(self._zip, f"extra/{k}", v, True)
        absent = [] if not self._faces["landmarks3d"] or np.isfinite(self._faces["landmarks3d"][0]).all() \
            else ["landmarks3d"]
        full = {"format": FORMAT, "version": VERSION, **meta, "frames": self.frames, "faces": self.faces,
                "absent": absent, "fields": FIELDS}
        _write_bytes(self._zip, META, json.dumps(full, indent=1, default=_json_default).encode())
        self._zip.close()
        self._closed = True


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# ---------------------------------------------------------------------------------------------- reading

@dataclass
class ArchiveFace:
    """One face of an archive: the :data:`FACE_FIELDS` as attributes, the maps decoded on first access."""

    archive: "Archive"
    row: int

    def __getattr__(self, name: str) -> Any:
        if name in FACE_FIELDS:
            return self.archive.table(name)[self.row]
        raise AttributeError(f"an archive face has no field {name!r}; fields: {', '.join(FACE_FIELDS)}, depth, "
                             f"mask, size, pose, crop_to_frame")

    @property
    def size(self) -> int:
        return int(self.archive.table("map_size")[self.row])

    @property
    def pose(self):
        """:class:`rtface.camera.Pose` in frame coordinates (the stored 6-vector: ``archive.table("pose")``)."""
        from .camera import Pose

        return Pose.from_vector(self.archive.table("pose")[self.row])

    @property
    def crop_to_frame(self) -> np.ndarray:
        from .camera import invert_affine

        return invert_affine(self.archive.table("frame_to_crop")[self.row])

    @property
    def depth(self) -> np.ndarray:
        """(S, S) float32 fine depth in map px (float16 precision), 0 outside the mask."""
        return self.archive.maps(self.row)[0]

    @property
    def mask(self) -> np.ndarray:
        """(S, S) bool, True where the face is."""
        return self.archive.maps(self.row)[1]

    def __repr__(self) -> str:
        return f"<ArchiveFace row {self.row} track {int(self.track_id)} map {self.size} px>"


@dataclass
class ArchiveFrame:
    """One frame of an archive."""

    index: int
    timestamp: float
    faces: list[ArchiveFace]

    def __len__(self) -> int:
        return len(self.faces)


class Archive:
    """An archive opened by :func:`load`: ``len(a)`` frames; ``a[i]`` / iteration give :class:`ArchiveFrame`;
    ``a.meta`` the metadata; ``a.table(name)`` a whole per-frame or per-face array (:data:`FIELDS`);
    ``a.face(row)`` one face. Arrays are read from the file on first use; maps one face at a time."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ArchiveError(f"{self.path} does not exist (or is not a file); pass the path of an archive that "
                               f"'rtface batch' wrote (see the 'output' column of its manifest.jsonl)")
        try:
            self._npz = np.load(self.path, allow_pickle=False)
            raw = self._npz[META]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise ArchiveError(f"{self.path} is not an rtface archive or is damaged ({exc}); write it again with "
                               f"'rtface batch ... --force'") from exc
        self.meta: dict = json.loads(raw)
        if self.meta.get("format") != FORMAT:
            raise ArchiveError(f"{self.path} is an .npz but not an rtface archive (no format {FORMAT!r} in {META})")
        if int(self.meta.get("version", 0)) > VERSION:
            raise ArchiveError(f"{self.path} is an rtface archive of version {self.meta['version']}; this rtface "
                               f"reads up to version {VERSION}: upgrade rtface")
        self._tables: dict[str, np.ndarray] = {}

    def table(self, name: str) -> np.ndarray:
        """A whole array: per frame (``frame_index``, ``timestamp``, ``face_start``) or per face
        (:data:`FACE_FIELDS`)."""
        if name not in self._tables:
            if name not in FRAME_FIELDS and name not in FACE_FIELDS and name != "face_start":
                raise KeyError(f"no table {name!r} in an archive; tables: "
                               f"{', '.join([*FRAME_FIELDS, 'face_start', *FACE_FIELDS])}")
            self._tables[name] = self._npz[name]
        return self._tables[name]

    def maps(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(depth (S, S) float32, mask (S, S) bool) of face ``row``."""
        return decode_maps(self._npz[f"depth/{row}"], self._npz[f"mask/{row}"], int(self.table("map_size")[row]))

    def face(self, row: int) -> ArchiveFace:
        if not 0 <= row < self.faces:
            raise IndexError(f"face row {row} out of range: the archive has {self.faces} faces")
        return ArchiveFace(self, int(row))

    @property
    def faces(self) -> int:
        return int(self.meta["faces"])

    def __len__(self) -> int:
        return int(self.meta["frames"])

    def __getitem__(self, i: int) -> ArchiveFrame:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"frame {i} out of range: the archive has {n} frames")
        start = self.table("face_start")
        return ArchiveFrame(int(self.table("frame_index")[i]), float(self.table("timestamp")[i]),
                            [ArchiveFace(self, r) for r in range(int(start[i]), int(start[i + 1]))])

    def __iter__(self) -> Iterator[ArchiveFrame]:
        for i in range(len(self)):
            yield self[i]

    def close(self) -> None:
        self._npz.close()

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Archive {self.path.name}: {len(self)} frames, {self.faces} faces, input {self.meta.get('input')!r}>"


def load(path: str | os.PathLike) -> Archive:
    """Open an archive that ``rtface batch`` wrote (module docstring): ``for frame in rtface.load(p): ...``."""
    return Archive(path)


# ---------------------------------------------------------------------------------------------- files

@contextmanager
def atomic_file(path: str | os.PathLike, tmp_dir: str | os.PathLike | None = None) -> Iterator[IO[bytes]]:
    """Write ``path`` through a synced temporary file (in ``tmp_dir``, default beside it, same file system)
    renamed into place when the block ends without an error: readers never see a partial file."""
    import tempfile

    path = Path(path)
    folder = Path(tmp_dir) if tmp_dir is not None else path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_extras(data: bytes | str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata and ``extra/`` tables of an archive (bytes or a path)."""
    src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    with np.load(src, allow_pickle=False) as z:
        meta = json.loads(z[META])
        extras = {k[len("extra/"):]: z[k] for k in z.files if k.startswith("extra/")}
    return meta, extras


__all__ = ["FACE_FIELDS", "FIELDS", "FORMAT", "FRAME_FIELDS", "MAP_FIELDS", "VERSION", "Archive", "ArchiveError",
           "ArchiveFace", "ArchiveFrame", "ArchiveWriter", "atomic_file", "decode_maps", "encode_maps", "face_row",
           "load", "read_extras"]
