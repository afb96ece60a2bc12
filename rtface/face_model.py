"""The 3D morphable face model: ICT-FaceKit "Face Model Light", face area only.

Units are centimetres. Model frame: x to the right as seen by a viewer facing the subject (the subject's
right eye has negative x), y up, z out of the face toward the viewer; the origin lies inside the head, so
the face surface has mostly positive z. Shape:

    vertices = mean + sum_i identity[i] * id_basis[i] + sum_j expression[j] * exp_basis[j]

with identity coefficients ~ N(0, 1) (each basis vector is one standard deviation of its PCA mode) and
expression weights in [0, 1] (ARKit blendshapes, names in ``expression_names``).

The 155 OBJ/JSON files are read once (an archive in one sequential pass, each file's sha256 computed while it
is read and checked against ``assets_manifest.json``), parsed with vectorised NumPy code and cached as a compact
``.npz`` (no pickle) in :func:`rtface.assets.converted_face_model`. The cache file is named after the pinned
file list and stores the model's array digest (:attr:`FaceModel.hash`), which is re-checked on every load; the
cached file alone is enough to run (no source, no network).
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import re
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from . import assets
from .errors import AssetError, InputError

FACE_AREA_VERTICES = 9409  # ICT-FaceKit vertices 0..9408 are the face area
_NEUTRAL = "generic_neutral_mesh.obj"
_INDICES = "vertex_indices.json"


@dataclass(frozen=True)
class FaceModel:
    """Linear face model. Arrays are float32 in cm unless stated."""

    mean: np.ndarray  # (V, 3)
    id_basis: np.ndarray  # (Ki, V, 3), one sigma per mode
    exp_basis: np.ndarray  # (Ke, V, 3), blendshape offsets at weight 1
    triangles: np.ndarray  # (T, 3) int32, counter-clockwise seen from the front (model frame)
    landmarks: np.ndarray  # (68,) int64 vertex indices, iBUG order
    expression_names: tuple[str, ...]
    hash: str  # sha256 (hex) of the arrays: identifies the model in weight manifests

    @property
    def num_vertices(self) -> int:
        return int(self.mean.shape[0])

    @property
    def num_identity(self) -> int:
        return int(self.id_basis.shape[0])

    @property
    def num_expression(self) -> int:
        return int(self.exp_basis.shape[0])

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, cache: bool = True,
             progress: bool = True) -> "FaceModel":
        """Load the face model: the converted copy in the cache when present, else convert the ICT-FaceKit source.

        ``path`` is the source (``FaceXModel.tar.xz`` or the ``FaceXModel`` folder); None looks it up with
        :func:`rtface.assets.face_model_source` (``RTFACE_ASSETS``, the cache, a download), and only when the
        converted model is not in the cache. A cached model is checked against its stored digest; a damaged one
        is rebuilt. Converting takes a few seconds and shows a progress bar on stderr (``progress=False``
        hides it); a cached load well under a second. ``cache=False`` always converts and writes nothing.
        """
        src = assets.face_model_source(path) if path is not None else None
        cached = assets.converted_face_model()
        if cache and cached.is_file():
            try:
                return _from_npz(cached)
            except Exception:
                cached.unlink(missing_ok=True)  # damaged (fails its digest, truncated): rebuilt from the source
        if src is None:
            src = assets.face_model_source()
        model = _convert(src, progress=progress)
        if cache:
            _to_npz(model, cached)
        return model

    def vertices(self, identity: np.ndarray | None = None, expression: np.ndarray | None = None) -> np.ndarray:
        """Mesh vertices in cm, shape ``(..., V, 3)``.

        ``identity`` has shape ``(..., k)`` with ``k <= num_identity`` (the first k modes are used) and
        ``expression`` ``(..., m)`` with ``m <= num_expression``; leading dimensions broadcast.
        """
        parts = [self.mean]
        for name, coeffs, basis in (("identity", identity, self.id_basis), ("expression", expression, self.exp_basis)):
            if coeffs is None:
                continue
            c = np.asarray(coeffs)
            if c.ndim == 0 or not np.issubdtype(c.dtype, np.number) or c.shape[-1] > basis.shape[0]:
                raise InputError(
                    f"{name} must be an array of shape (..., k) with k <= {basis.shape[0]}, got shape {c.shape} "
                    f"dtype {c.dtype}"
                )
            k = c.shape[-1]
            flat = basis[:k].reshape(k, -1)
            parts.append((c.astype(np.float32) @ flat).reshape(*c.shape[:-1], *self.mean.shape))
        out = parts[0]
        for p in parts[1:]:
            out = out + p
        return np.ascontiguousarray(out, dtype=np.float32)

    def landmark_positions(self, vertices: np.ndarray) -> np.ndarray:
        """The 68 landmark vertices of ``vertices`` (..., V, C) -> (..., 68, C)."""
        return vertices[..., self.landmarks, :]


def _line_spans(data: bytes, tag: bytes, limit: int | None = None) -> list[bytes]:
    """The text after ``tag`` of every line that starts with ``tag`` (at most ``limit`` lines), found with NumPy
    on the raw bytes; a run of consecutive matching lines comes back as one chunk (``tag`` removed, lines
    joined by newlines)."""
    buf = np.frombuffer(data, np.uint8)
    newline = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], newline + 1))
    ends = np.concatenate((newline, [len(buf)]))
    keep = starts + len(tag) <= len(buf)
    starts, ends = starts[keep], ends[keep]
    match = np.ones(len(starts), bool)
    for k, byte in enumerate(tag):
        match &= buf[np.minimum(starts + k, len(buf) - 1)] == byte
    lines = np.flatnonzero(match)
    if limit is not None:
        lines = lines[:limit]
    if len(lines) == 0:
        return []
    # runs of consecutive matching lines are sliced out whole: one bytes copy per run, not one per line
    breaks = np.flatnonzero(np.diff(lines) != 1) + 1
    chunks = []
    for run in np.split(lines, breaks):
        chunk = data[starts[run[0]]:ends[run[-1]]]
        chunks.append(chunk[len(tag):].replace(b"\n" + tag, b"\n"))
    return chunks


def _parse_obj_vertices(data: bytes, what: str, count: int | None = None) -> np.ndarray:
    """The ``v x y z`` vertices of an OBJ as float64 (N, 3); only the first ``count`` when given."""
    chunks = _line_spans(data, b"v ", count)
    try:
        values = np.array(b" ".join(chunks).split(), dtype=np.float64)
        vertices = values.reshape(-1, 3)
    except ValueError as exc:
        raise AssetError(f"{what} is not a valid OBJ vertex list ({exc}); the file is corrupt.") from exc
    if count is not None and len(vertices) < count:
        raise AssetError(f"{what} has {len(vertices)} vertices, fewer than the {count} of the face area; "
                         f"it is not an ICT-FaceKit mesh.")
    return vertices


def _parse_obj_faces(data: bytes) -> np.ndarray:
    """The ``f`` records of an OBJ as 0-based triangles (T, 3) int64, polygons fan-triangulated in file order
    (``a b c d`` -> ``a b c``, ``a c d``); texture and normal indices (``a/t/n``) are dropped."""
    body = b"\n".join(_line_spans(data, b"f "))
    if not body:
        return np.zeros((0, 3), np.int64)
    lines = body.split(b"\n")
    counts = np.fromiter((len(ln.split()) for ln in lines), np.int64, len(lines))
    idx = np.array(re.sub(rb"/\S*", b"", body).split(), dtype=np.int64) - 1
    if (counts < 3).any():
        raise AssetError("an OBJ face record has fewer than 3 vertices; the file is corrupt.")
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))  # index into idx of each polygon's first vertex
    per = counts - 2  # triangles per polygon
    poly = np.repeat(np.arange(len(counts)), per)
    k = np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per) + 1  # 1 .. count-2 within each polygon
    base = first[poly]
    return np.stack([idx[base], idx[base + k], idx[base + k + 1]], axis=1)


_READ_ERRORS = (tarfile.TarError, OSError, EOFError, ValueError, lzma.LZMAError, zlib.error)
_CHUNK = 1 << 20


def _read_verified(fh, name: str, expected: str, src: Path, bar) -> bytes:
    """All bytes of one file, hashed while they are read; AssetError when the sha256 differs from the pin."""
    digest = hashlib.sha256()
    parts = []
    while block := fh.read(_CHUNK):
        digest.update(block)
        parts.append(block)
        if bar is not None:
            bar.update(len(block))
    actual = digest.hexdigest()
    if actual != expected:
        raise AssetError(
            f"Face model file {name} in {src} fails its checksum (sha256 {actual[:16]}..., expected "
            f"{expected[:16]}...). Replace the face model with the pinned ICT-FaceKit release "
            f"(see 'rtface assets')."
        )
    return b"".join(parts)


def read_source(src: Path, on_file: Callable[[str, bytes], None] | None = None, *, progress: bool = False,
                desc: str = "reading the face model") -> None:
    """Read and verify every file rtface uses from an ICT-FaceKit source, in one pass.

    ``src`` is a ``FaceXModel.tar.xz`` (or any tar) archive, read sequentially once (no seeking: a compressed
    archive is decompressed exactly once), or a ``FaceXModel`` folder. Each file's sha256 is computed while it
    is read and checked against ``assets_manifest.json``; ``on_file(name, data)`` then receives its bytes.
    Raises :class:`AssetError` naming the file for a corrupt archive, a failed checksum or missing files.
    """
    files = assets.face_model_files()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(int(f["size"]) for f in files.values()), desc=desc, unit="B", unit_scale=True,
                   unit_divisor=1024, dynamic_ncols=True, mininterval=0.25)
    seen: set[str] = set()
    try:
        if src.is_file():
            try:
                with tarfile.open(src, mode="r|*") as tar:
                    for member in tar:
                        name = Path(member.name).name
                        if not member.isfile() or name not in files or name in seen:
                            continue
                        fh = tar.extractfile(member)
                        data = _read_verified(fh, name, files[name]["sha256"], src, bar)
                        seen.add(name)
                        if on_file is not None:
                            on_file(name, data)
            except _READ_ERRORS as exc:
                raise AssetError(
                    f"Cannot read the face model archive {src} ({type(exc).__name__}: {exc}): it is corrupt or "
                    f"not a tar archive. Replace it with FaceXModel.tar.xz, or point RTFACE_ASSETS at a good copy."
                ) from exc
        else:
            for name in sorted(files):
                p = src / name
                if not p.is_file():
                    continue
                try:
                    with open(p, "rb") as fh:
                        data = _read_verified(fh, name, files[name]["sha256"], src, bar)
                except OSError as exc:
                    raise AssetError(f"Cannot read {p} ({exc}); the face model folder is damaged.") from exc
                seen.add(name)
                if on_file is not None:
                    on_file(name, data)
    finally:
        if bar is not None:
            bar.close()
    missing = sorted(set(files) - seen)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise AssetError(
            f"The face model at {src} lacks {len(missing)} of its {len(files)} files ({shown}); it is incomplete. "
            f"Replace it with the pinned FaceXModel.tar.xz (see 'rtface assets')."
        )


def verify_source(src: Path, progress: bool = False) -> None:
    """Check every file rtface reads from an ICT-FaceKit source against its sha256 (the full walk)."""
    read_source(Path(src), progress=progress, desc="verifying the face model source")


def _convert(src: Path, progress: bool = True) -> FaceModel:
    n = FACE_AREA_VERTICES
    parsed: dict[str, np.ndarray] = {}
    extra: dict[str, object] = {}

    def take(name: str, data: bytes) -> None:
        if name == _INDICES:
            try:
                extra["indices"] = json.loads(data)
            except ValueError as exc:
                raise AssetError(f"{_INDICES} in {src} is not valid JSON ({exc}); the face model is corrupt.") from exc
        elif name.endswith(".obj"):
            parsed[name] = _parse_obj_vertices(data, name, n)
            if name == _NEUTRAL:
                extra["faces"] = _parse_obj_faces(data)

    read_source(Path(src), take, progress=progress, desc="preparing the face model, once")
    indices = extra["indices"]
    try:
        names = tuple(indices["expressions"])
        landmarks = np.asarray(indices["idx_to_landmark_verts"], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as exc:
        raise AssetError(f"{_INDICES} in {src} lacks {exc}; the face model is not ICT-FaceKit.") from exc
    if landmarks.shape != (68,) or landmarks.max() >= n:
        raise AssetError(f"{_INDICES} in {src} has no valid 68-landmark list; the face model is not ICT-FaceKit.")
    absent = [e for e in names if f"{e}.obj" not in parsed]
    if absent:
        raise AssetError(f"{_INDICES} in {src} names expressions without a mesh ({', '.join(absent[:5])}); "
                         f"the face model is not the pinned ICT-FaceKit release.")
    neutral = parsed[_NEUTRAL]
    faces = extra["faces"]
    faces = faces[(faces < n).all(axis=1)]
    face_ids = sorted(k for k in assets.face_model_files() if k.startswith("identity"))
    mean = neutral.astype(np.float32)
    id_basis = np.stack([parsed[k] - neutral for k in face_ids]).astype(np.float32)
    exp_basis = np.stack([parsed[f"{e}.obj"] - neutral for e in names]).astype(np.float32)
    triangles = faces.astype(np.int32)
    return FaceModel(mean, id_basis, exp_basis, triangles, landmarks, names,
                     _digest((mean, id_basis, exp_basis, triangles, landmarks)))


def _digest(arrays: Iterable[np.ndarray]) -> str:
    """sha256 (hex) of the arrays' bytes in order: :attr:`FaceModel.hash`."""
    digest = hashlib.sha256()
    for arr in arrays:
        digest.update(np.ascontiguousarray(arr).tobytes())
    return digest.hexdigest()


def _to_npz(model: FaceModel, path: Path) -> None:
    """Write the converted model atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + f".{os.getpid()}.tmp.npz")
    try:
        np.savez(
            tmp,
            mean=model.mean,
            id_basis=model.id_basis,
            exp_basis=model.exp_basis,
            triangles=model.triangles,
            landmarks=model.landmarks,
            expression_names=np.array(model.expression_names),
            hash=np.array(model.hash),
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _from_npz(path: Path) -> FaceModel:
    """Load a converted model and check its arrays against the digest stored with them."""
    with np.load(path, allow_pickle=False) as z:
        model = FaceModel(
            mean=z["mean"],
            id_basis=z["id_basis"],
            exp_basis=z["exp_basis"],
            triangles=z["triangles"],
            landmarks=z["landmarks"],
            expression_names=tuple(str(s) for s in z["expression_names"]),
            hash=str(z["hash"]),
        )
    actual = _digest((model.mean, model.id_basis, model.exp_basis, model.triangles, model.landmarks))
    if actual != model.hash:
        raise AssetError(f"the converted face model {path} fails its stored digest; it is damaged.")
    return model


def verify_converted(path: Path | None = None) -> str:
    """Check the converted model in the cache against its stored digest; returns :attr:`FaceModel.hash`.

    Raises :class:`AssetError` when it is absent or damaged."""
    p = Path(path) if path is not None else assets.converted_face_model()
    if not p.is_file():
        raise AssetError(f"the converted face model {p} is not in the cache.")
    try:
        return _from_npz(p).hash
    except AssetError:
        raise
    except Exception as exc:  # truncated zip, missing array
        raise AssetError(f"the converted face model {p} cannot be read ({exc}); it is damaged.") from exc


__all__ = ["FaceModel", "FACE_AREA_VERTICES", "read_source", "verify_converted", "verify_source"]
