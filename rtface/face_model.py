"""The 3D morphable face model: ICT-FaceKit "Face Model Light", face area only.

Units are centimetres. Model frame: x to the right as seen by a viewer facing the subject (the subject's
right eye has negative x), y up, z out of the face toward the viewer; the origin lies inside the head, so
the face surface has mostly positive z. Shape:

    vertices = mean + sum_i identity[i] * id_basis[i] + sum_j expression[j] * exp_basis[j]

with identity coefficients ~ N(0, 1) (each basis vector is one standard deviation of its PCA mode) and
expression weights in [0, 1] (ARKit blendshapes, names in ``expression_names``).

The OBJ files are parsed once and cached as a compact ``.npz`` (no pickle) keyed by the source's hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import assets
from .errors import AssetError, InputError

FACE_AREA_VERTICES = 9409  # ICT-FaceKit vertices 0..9408 are the face area
_FORMAT = 1
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
    def load(cls, path: str | os.PathLike | None = None, *, cache: bool = True) -> "FaceModel":
        """Load the face model from ``path`` (archive or folder) or from :func:`rtface.assets.face_model_source`.

        The first load parses and verifies every OBJ (tens of seconds); later loads read the cached array
        file (well under a second).
        """
        src = assets.face_model_source(path)
        key = _source_key(src)
        cached = assets.cache_dir() / "face_model" / f"ict_face_v{_FORMAT}_{key[:20]}.npz"
        if cache and cached.is_file():
            try:
                return _from_npz(cached)
            except Exception:
                cached.unlink(missing_ok=True)  # a damaged cache is rebuilt from the source
        model = _convert(src)
        if cache:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(cached.stem + f".{os.getpid()}.tmp.npz")
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
            os.replace(tmp, cached)
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


def _parse_obj_vertices(data: bytes, what: str) -> np.ndarray:
    lines = [ln[2:] for ln in data.split(b"\n") if ln.startswith(b"v ")]
    try:
        values = np.array(b" ".join(lines).split(), dtype=np.float64)
        return values.reshape(-1, 3)
    except ValueError as exc:
        raise AssetError(f"{what} is not a valid OBJ vertex list ({exc}); the file is corrupt.") from exc


def _parse_obj_faces(data: bytes) -> np.ndarray:
    tris = []
    for ln in data.split(b"\n"):
        if not ln.startswith(b"f "):
            continue
        idx = [int(tok.split(b"/")[0]) - 1 for tok in ln.split()[1:]]
        for k in range(1, len(idx) - 1):  # fan triangulation of quads (and any convex polygon)
            tris.append((idx[0], idx[k], idx[k + 1]))
    return np.asarray(tris, dtype=np.int64)


class _Reader:
    """Reads (and verifies) the model's files from an archive or a folder."""

    def __init__(self, src: Path):
        self.src = src
        self.files = assets.face_model_files()
        self._tar = None
        self._members: dict[str, tarfile.TarInfo] = {}
        if src.is_file():
            try:
                self._tar = tarfile.open(src, "r:*")
                for m in self._tar.getmembers():
                    self._members[Path(m.name).name] = m
            except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
                raise AssetError(
                    f"Cannot read the face model archive {src} ({exc}): it is corrupt or not a tar archive. "
                    f"Replace it with FaceXModel.tar.xz, or point RTFACE_ASSETS at a good copy."
                ) from exc

    def read(self, name: str) -> bytes:
        expected = self.files[name]["sha256"]
        try:
            if self._tar is not None:
                member = self._members.get(name)
                if member is None:
                    raise AssetError(f"The face model archive {self.src} lacks {name}; it is incomplete.")
                fh = self._tar.extractfile(member)
                data = fh.read() if fh is not None else b""
            else:
                data = (self.src / name).read_bytes()
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            raise AssetError(f"Cannot read {name} from the face model at {self.src} ({exc}); it is corrupt.") from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise AssetError(
                f"Face model file {name} in {self.src} fails its checksum (sha256 {actual[:16]}..., expected "
                f"{expected[:16]}...). Replace the face model with the pinned ICT-FaceKit release "
                f"(see 'rtface assets')."
            )
        return data

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()


def verify_source(src: Path) -> None:
    """Check every file rtface reads from an ICT-FaceKit source against its sha256."""
    reader = _Reader(src)
    try:
        for name in reader.files:
            reader.read(name)
    finally:
        reader.close()


def _convert(src: Path) -> FaceModel:
    reader = _Reader(src)
    try:
        neutral_bytes = reader.read(_NEUTRAL)
        indices = json.loads(reader.read(_INDICES))
        names = tuple(indices["expressions"])
        n = FACE_AREA_VERTICES
        neutral = _parse_obj_vertices(neutral_bytes, _NEUTRAL)
        faces = _parse_obj_faces(neutral_bytes)
        faces = faces[(faces < n).all(axis=1)]
        face_ids = sorted(k for k in reader.files if k.startswith("identity"))
        id_basis = np.stack([_parse_obj_vertices(reader.read(k), k)[:n] - neutral[:n] for k in face_ids])
        exp_basis = np.stack([_parse_obj_vertices(reader.read(f"{e}.obj"), e)[:n] - neutral[:n] for e in names])
    finally:
        reader.close()
    landmarks = np.asarray(indices["idx_to_landmark_verts"], dtype=np.int64)
    if landmarks.shape != (68,) or landmarks.max() >= n:
        raise AssetError(f"{_INDICES} in {src} has no valid 68-landmark list; the face model is not ICT-FaceKit.")
    mean = neutral[:n].astype(np.float32)
    id_basis = id_basis.astype(np.float32)
    exp_basis = exp_basis.astype(np.float32)
    triangles = faces.astype(np.int32)
    digest = hashlib.sha256()
    for arr in (mean, id_basis, exp_basis, triangles, landmarks):
        digest.update(np.ascontiguousarray(arr).tobytes())
    return FaceModel(mean, id_basis, exp_basis, triangles, landmarks, names, digest.hexdigest())


def _from_npz(path: Path) -> FaceModel:
    with np.load(path, allow_pickle=False) as z:
        return FaceModel(
            mean=z["mean"],
            id_basis=z["id_basis"],
            exp_basis=z["exp_basis"],
            triangles=z["triangles"],
            landmarks=z["landmarks"],
            expression_names=tuple(str(s) for s in z["expression_names"]),
            hash=str(z["hash"]),
        )


def _source_key(src: Path) -> str:
    """Hash identifying a source: the archive's bytes, or a folder's file names, sizes and times."""
    if src.is_file():
        return assets.sha256_file(src)
    digest = hashlib.sha256()
    for name in sorted(assets.face_model_files()):
        p = src / name
        if not p.is_file():
            raise AssetError(f"The face model folder {src} lacks {name}; it is incomplete (see 'rtface assets').")
        st = p.stat()
        digest.update(f"{name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return digest.hexdigest()


__all__ = ["FaceModel", "FACE_AREA_VERTICES", "verify_source"]
