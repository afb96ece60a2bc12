"""Where rtface's model files live, how they are found, fetched and verified.

Two kinds of assets are not shipped inside the package because of their size or licence:

- ``ict-facekit``: the ICT-FaceKit "Face Model Light" (MIT), 155 OBJ/JSON files from a pinned commit;
- ``yunet``: the YuNet face detector (ONNX, 232 KB).

Lookup order for each asset:

1. an explicit path given by the caller (CLI option or argument);
2. the directory named by the environment variable ``RTFACE_ASSETS``, laid out like
   ``ict-facekit/FaceXModel.tar.xz`` or ``ict-facekit/FaceXModel/``, and ``yunet/<file>.onnx``;
3. the cache directory (``RTFACE_CACHE``, else ``$XDG_CACHE_HOME/rtface``, else ``~/.cache/rtface``);
4. a download from the pinned upstream address into the cache, with a progress bar and a sha256
   check of every file (``RTFACE_OFFLINE=1`` forbids downloads).

Every file is checked against the sha256 recorded in ``assets_manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import AssetError

FACE_MODEL = "ict-facekit"
DETECTOR = "yunet"
_ARCHIVE_NAME = "FaceXModel.tar.xz"
_FOLDER_NAME = "FaceXModel"


@lru_cache(maxsize=1)
def manifest() -> dict:
    """The pinned upstream addresses, sizes and sha256 of every asset file."""
    with open(Path(__file__).with_name("assets_manifest.json"), encoding="utf-8") as fh:
        return json.load(fh)


def cache_dir() -> Path:
    """rtface's writable cache (converted face model, downloads, TensorRT engines); created on demand."""
    env = os.environ.get("RTFACE_CACHE")
    if env:
        root = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "rtface"
    root.mkdir(parents=True, exist_ok=True)
    return root


def assets_root() -> Path | None:
    """The local asset directory named by ``RTFACE_ASSETS``, or None."""
    env = os.environ.get("RTFACE_ASSETS")
    if not env:
        return None
    root = Path(env).expanduser()
    if not root.is_dir():
        raise AssetError(
            f"RTFACE_ASSETS={env!r} is not a directory. Point it at a folder laid out like "
            f"'ict-facekit/{_ARCHIVE_NAME}' and 'yunet/{manifest()[DETECTOR]['file']}', or unset it."
        )
    return root


def data_path(relative: str) -> Path:
    """A data file that rtface never downloads (real faces, videos, labelled portraits: training and
    benchmarks): ``relative`` under ``RTFACE_ASSETS``, else under a development checkout's ``../shared/assets``."""
    root = assets_root()
    if root is None:
        root = Path(__file__).resolve().parents[2] / "shared" / "assets"
    return root / relative


def write_atomic(path: str | os.PathLike, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a synced temporary file renamed into place: readers see the old file
    or the whole new one, never a partial write."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, expected_sha256: str, what: str) -> None:
    """Raise :class:`AssetError` unless ``path`` exists and has the expected sha256."""
    if not path.is_file():
        raise AssetError(f"{what}: file {path} does not exist.")
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise AssetError(
            f"{what}: checksum mismatch for {path} (sha256 {actual[:16]}..., expected "
            f"{expected_sha256[:16]}...). The file is corrupt or a different version: delete it and "
            f"run 'rtface assets' again, or replace it with the pinned upstream file."
        )


def _offline() -> bool:
    return os.environ.get("RTFACE_OFFLINE", "").lower() in {"1", "true", "yes"}


def download(url: str, dest: Path, sha256: str, size: int | None = None, what: str = "asset") -> Path:
    """Download ``url`` to ``dest`` with a progress bar, verify its sha256, then move it in place."""
    if _offline():
        raise AssetError(
            f"{what} is not available locally and RTFACE_OFFLINE is set. Download {url} "
            f"(sha256 {sha256}) to {dest}, or set RTFACE_ASSETS to a local asset directory."
        )
    from tqdm import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            total = size or int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False) as bar:
                while block := resp.read(1 << 16):
                    out.write(block)
                    bar.update(len(block))
        verify_file(tmp, sha256, what)
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise AssetError(
            f"Could not download {what} from {url} ({exc}). If this machine is offline, fetch the file "
            f"elsewhere and put it at {dest}, or set RTFACE_ASSETS to a directory that holds the assets."
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def asset_path(name: str, path: str | os.PathLike | None = None) -> Path:
    """Path of a single-file asset (``"yunet"``), found or downloaded and verified.

    ``path`` overrides the lookup (a CLI option); it is checked against the manifest too.
    """
    if name != DETECTOR:
        raise AssetError(f"unknown single-file asset {name!r}; known: {DETECTOR!r}")
    entry = manifest()[DETECTOR]
    what = "the YuNet face detector"
    if path is not None:
        p = Path(path).expanduser()
        verify_file(p, entry["sha256"], what)
        return p
    candidates = []
    root = assets_root()
    if root is not None:
        candidates.append(root / DETECTOR / entry["file"])
    cached = cache_dir() / DETECTOR / entry["file"]
    candidates.append(cached)
    for p in candidates:
        if p.is_file():
            verify_file(p, entry["sha256"], what)
            return p
    return download(entry["url"], cached, entry["sha256"], entry.get("size"), what)


def face_model_files() -> dict[str, dict]:
    """File name -> {sha256, size} of the ICT-FaceKit files rtface reads."""
    return manifest()[FACE_MODEL]["files"]


def face_model_source(path: str | os.PathLike | None = None) -> Path:
    """The ICT-FaceKit source: a ``FaceXModel.tar.xz`` archive or a ``FaceXModel/`` directory.

    Files inside are verified when they are read (see :mod:`rtface.face_model`).
    """
    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir() and (p / _FOLDER_NAME).is_dir():
            p = p / _FOLDER_NAME
        if not p.exists():
            raise AssetError(f"face model path {p} does not exist; give the FaceXModel folder or {_ARCHIVE_NAME}.")
        return p
    root = assets_root()
    if root is not None:
        for p in (root / FACE_MODEL / _ARCHIVE_NAME, root / FACE_MODEL / _FOLDER_NAME):
            if p.exists():
                return p
    folder = cache_dir() / FACE_MODEL / _FOLDER_NAME
    missing = [n for n in face_model_files() if not (folder / n).is_file()]
    if missing:
        _download_face_model(folder, missing)
    return folder


def _download_face_model(folder: Path, names: list[str]) -> None:
    entry = manifest()[FACE_MODEL]
    if _offline():
        raise AssetError(
            f"The ICT-FaceKit face model is not available locally ({len(names)} files missing in {folder}). "
            f"Download the folder FaceXModel of github.com/ICT-VGL/ICT-FaceKit at commit {entry['commit']} "
            f"into {folder}, or set RTFACE_ASSETS to a directory holding ict-facekit/{_ARCHIVE_NAME}."
        )
    from tqdm import tqdm

    for name in tqdm(names, desc="ICT-FaceKit face model", unit="file"):
        info = entry["files"][name]
        download(entry["base_url"] + name, folder / name, info["sha256"], info["size"], f"face model file {name}")


@dataclass
class AssetStatus:
    """One line of ``rtface assets``."""

    name: str
    location: str
    ok: bool
    detail: str


def check_all(verify: bool = True) -> list[AssetStatus]:
    """Locate every asset (downloading what is missing) and report where it is and whether it verifies."""
    out = []
    try:
        p = asset_path(DETECTOR)
        out.append(AssetStatus(DETECTOR, str(p), True, "sha256 ok"))
    except AssetError as exc:
        out.append(AssetStatus(DETECTOR, "-", False, str(exc)))
    try:
        src = face_model_source()
        detail = "present"
        if verify:
            from .face_model import verify_source

            verify_source(src)
            detail = f"{len(face_model_files())} files, sha256 ok"
        out.append(AssetStatus(FACE_MODEL, str(src), True, detail))
    except AssetError as exc:
        out.append(AssetStatus(FACE_MODEL, "-", False, str(exc)))
    return out


def clear_cache(subdir: str) -> None:
    """Remove one subdirectory of the cache (e.g. ``engines``)."""
    shutil.rmtree(cache_dir() / subdir, ignore_errors=True)
