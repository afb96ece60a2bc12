"""A small synthetic ICT-FaceKit source for tests of the first-use path (conversion, cache, offline runs).

Same layout and formats as the real ``FaceXModel`` (OBJ with ``v``/``vt``/``f a/t`` records, quads and
triangles, ``vertex_indices.json``), but only a few identity and expression meshes, so that it converts in
well under a second. :func:`make_facekit` pins its files in a patched ``rtface.assets.manifest`` so that rtface
verifies them exactly like the real ones.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtface import assets
from rtface.face_model import FACE_AREA_VERTICES

EXTRA_VERTICES = 40  # beyond the face area: dropped by the conversion, like the real model's head and eyes


@dataclass
class SynthKit:
    archive: Path  # <root>/ict-facekit/FaceXModel.tar.xz
    folder: Path  # <root>/FaceXModel (the same files, unpacked)
    root: Path  # usable as RTFACE_ASSETS (without a detector)
    files: dict[str, bytes]
    mean: np.ndarray
    id_basis: np.ndarray
    exp_basis: np.ndarray
    triangles: np.ndarray
    landmarks: np.ndarray
    expression_names: tuple[str, ...]


def _obj(vertices_text: list[str], faces_text: list[str]) -> bytes:
    lines = ["# synthetic ICT-FaceKit-like mesh", "mtllib ICTFaceModelMaterial.mtl"]
    lines += [f"v {t}" for t in vertices_text]
    lines += ["vt 0.5 0.5", "vt 0.25 0.75", "usemtl skin"]
    lines += faces_text
    return ("\n".join(lines) + "\n").encode()


def _fan(faces: list[list[int]]) -> np.ndarray:
    """Reference triangulation (a Python loop, 0-based): a b c d -> a b c, a c d."""
    tris = [(f[0], f[k], f[k + 1]) for f in faces for k in range(1, len(f) - 1)]
    return np.asarray(tris, np.int64)


def make_facekit(root: Path, monkeypatch, identities: int = 3,
                 expressions: tuple[str, ...] = ("jawOpen", "eyeBlink_L")) -> SynthKit:
    """Write the synthetic source under ``root`` and pin it in ``rtface.assets.manifest`` (monkeypatched)."""
    rng = np.random.default_rng(7)
    n = FACE_AREA_VERTICES + EXTRA_VERTICES

    def mesh_text(offset_scale: float) -> tuple[list[str], np.ndarray]:
        values = np.round(base + rng.normal(0, offset_scale, base.shape) if offset_scale else base, 4)
        text = [f"{x:.4f} {y:.4f} {z:.4f}" for x, y, z in values]
        parsed = np.array([[float(s) for s in t.split()] for t in text])
        return text, parsed

    base = np.round(rng.uniform(-8, 8, (n, 3)), 4)
    faces: list[list[int]] = []
    for k in range(0, n - 4, 3):
        faces.append([k, k + 1, k + 2, k + 3] if k % 2 else [k, k + 1, k + 2])
    faces.append([n - 3, n - 2, n - 1, 0])  # touches non-face vertices: filtered out
    faces_text = [f"f {' '.join(f'{i + 1}/{(i % 2) + 1}' for i in f)}" for f in faces]
    expected_tris = _fan(faces)
    expected_tris = expected_tris[(expected_tris < FACE_AREA_VERTICES).all(1)].astype(np.int32)

    files: dict[str, bytes] = {}
    neutral_text, neutral = mesh_text(0.0)
    files["generic_neutral_mesh.obj"] = _obj(neutral_text, faces_text)
    id_rows, exp_rows = [], []
    for i in range(identities):
        text, parsed = mesh_text(0.2)
        files[f"identity{i:03d}.obj"] = _obj(text, faces_text)
        id_rows.append(parsed[:FACE_AREA_VERTICES] - neutral[:FACE_AREA_VERTICES])
    for e in expressions:
        text, parsed = mesh_text(0.1)
        files[f"{e}.obj"] = _obj(text, faces_text)
        exp_rows.append(parsed[:FACE_AREA_VERTICES] - neutral[:FACE_AREA_VERTICES])
    landmarks = np.arange(0, 68 * 100, 100, dtype=np.int64)
    files["vertex_indices.json"] = json.dumps(
        {"expressions": list(expressions), "idx_to_landmark_verts": landmarks.tolist()}).encode()

    folder = root / "FaceXModel"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    archive = root / "ict-facekit" / "FaceXModel.tar.xz"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:xz", preset=1) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"FaceXModel/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        extra = b"newmtl skin\n"  # a file rtface does not read, as in the real archive
        info = tarfile.TarInfo("FaceXModel/ICTFaceModelMaterial.mtl")
        info.size = len(extra)
        tar.addfile(info, io.BytesIO(extra))

    pinned = copy.deepcopy(assets.manifest())
    pinned["ict-facekit"]["files"] = {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)} for name, data in files.items()}
    monkeypatch.setattr(assets, "manifest", lambda: pinned)
    return SynthKit(archive=archive, folder=folder, root=root, files=files,
                    mean=neutral[:FACE_AREA_VERTICES].astype(np.float32),
                    id_basis=np.stack(id_rows).astype(np.float32), exp_basis=np.stack(exp_rows).astype(np.float32),
                    triangles=expected_tris, landmarks=landmarks, expression_names=tuple(expressions))
