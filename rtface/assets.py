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

The cache alone is enough to run: the face model is needed only as its converted array file
(:func:`converted_face_model`, checked against the digest stored in it), which is used before any source is
looked up, and a detector found under ``RTFACE_ASSETS`` is copied into the cache. Every source file is checked
against the sha256 recorded in ``assets_manifest.json`` when it is read; ``rtface assets --verify`` re-reads them
all. When an asset is missing, the error names every asset that is missing and the one variable that fixes it.
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
#: Layout version of the converted face model file (bump when its arrays change).
_CONVERTED_FORMAT = 2


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
        raise missing_error("RTFACE_OFFLINE is set, so nothing is downloaded.")
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
        raise missing_error(f"Downloading {what} from {url} failed ({exc}).") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def asset_path(name: str, path: str | os.PathLike | None = None) -> Path:
    """Path of a single-file asset (``"yunet"``), found or downloaded and verified.

    ``path`` overrides the lookup (a CLI option); it is checked against the manifest too. A copy found under
    ``RTFACE_ASSETS`` is also put into the cache (232 KB), so that the cache alone suffices later.
    """
    if name != DETECTOR:
        raise AssetError(f"unknown single-file asset {name!r}; known: {DETECTOR!r}")
    entry = manifest()[DETECTOR]
    what = "the YuNet face detector"
    if path is not None:
        p = Path(path).expanduser()
        verify_file(p, entry["sha256"], what)
        return p
    cached = cache_dir() / DETECTOR / entry["file"]
    root = assets_root()
    if root is not None and (root / DETECTOR / entry["file"]).is_file():
        p = root / DETECTOR / entry["file"]
        verify_file(p, entry["sha256"], what)
        if not cached.is_file():
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(cached, p.read_bytes())
            except OSError:
                pass  # a read-only cache only costs the offline fallback
        return p
    if cached.is_file():
        verify_file(cached, entry["sha256"], what)
        return cached
    return download(entry["url"], cached, entry["sha256"], entry.get("size"), what)


def face_model_files() -> dict[str, dict]:
    """File name -> {sha256, size} of the ICT-FaceKit files rtface reads."""
    return manifest()[FACE_MODEL]["files"]


def converted_face_model() -> Path:
    """Where the converted face model (``.npz``, see :meth:`rtface.FaceModel.load`) lives in the cache.

    The name holds a digest of the pinned file list: every source that passes the sha256 checks converts to
    the same arrays, so one converted file serves any copy of the source."""
    digest = hashlib.sha256()
    for name, info in sorted(face_model_files().items()):
        digest.update(f"{name}:{info['sha256']};".encode())
    return cache_dir() / "face_model" / f"ict_face_v{_CONVERTED_FORMAT}_{digest.hexdigest()[:16]}.npz"


def _local_face_model_source() -> Path | None:
    """The face model source under ``RTFACE_ASSETS`` or complete in the cache, without downloading."""
    root = assets_root()
    if root is not None:
        for p in (root / FACE_MODEL / _ARCHIVE_NAME, root / FACE_MODEL / _FOLDER_NAME):
            if p.exists():
                return p
    folder = cache_dir() / FACE_MODEL / _FOLDER_NAME
    if folder.is_dir() and all((folder / n).is_file() for n in face_model_files()):
        return folder
    return None


def face_model_source(path: str | os.PathLike | None = None) -> Path:
    """The ICT-FaceKit source: a ``FaceXModel.tar.xz`` archive or a ``FaceXModel/`` directory.

    Files inside are verified when they are read (see :mod:`rtface.face_model`). Only needed to convert the
    model: :meth:`rtface.FaceModel.load` uses :func:`converted_face_model` first.
    """
    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir() and (p / _FOLDER_NAME).is_dir():
            p = p / _FOLDER_NAME
        if not p.exists():
            raise AssetError(f"face model path {p} does not exist; give the FaceXModel folder or {_ARCHIVE_NAME}.")
        return p
    local = _local_face_model_source()
    if local is not None:
        return local
    folder = cache_dir() / FACE_MODEL / _FOLDER_NAME
    _download_face_model(folder, [n for n in face_model_files() if not (folder / n).is_file()])
    return folder


def _download_face_model(folder: Path, names: list[str]) -> None:
    entry = manifest()[FACE_MODEL]
    if _offline():
        raise missing_error("RTFACE_OFFLINE is set, so nothing is downloaded.")
    from tqdm import tqdm

    for name in tqdm(names, desc="downloading the ICT-FaceKit face model", unit="file"):
        info = entry["files"][name]
        download(entry["base_url"] + name, folder / name, info["sha256"], info["size"], f"face model file {name}")


def missing_assets() -> list[str]:
    """The assets that are neither under ``RTFACE_ASSETS`` nor in the cache (each as a short description).

    Existence only, no checksums and no downloads: what a run on this machine without network would lack."""
    out = []
    entry = manifest()[DETECTOR]
    root = assets_root()
    if not ((root is not None and (root / DETECTOR / entry["file"]).is_file())
            or (cache_dir() / DETECTOR / entry["file"]).is_file()):
        out.append(f"the YuNet face detector ({DETECTOR}/{entry['file']})")
    if not converted_face_model().is_file() and _local_face_model_source() is None:
        out.append(f"the ICT-FaceKit face model ({FACE_MODEL}/{_ARCHIVE_NAME}, "
                   f"{len(face_model_files())} files)")
    return out


def missing_error(reason: str) -> AssetError:
    """The one error for missing assets: every missing asset, why it was not fetched, and the fix."""
    missing = missing_assets() or ["an asset file"]
    listed = missing[0] if len(missing) == 1 else ", ".join(missing[:-1]) + " and " + missing[-1]
    fm = manifest()[FACE_MODEL]
    return AssetError(
        f"Missing: {listed}. {reason} Fix: set RTFACE_ASSETS to a folder that holds "
        f"{FACE_MODEL}/{_ARCHIVE_NAME} and {DETECTOR}/{manifest()[DETECTOR]['file']} (once is enough: "
        f"rtface then keeps what it needs in its cache {cache_dir()}). Upstream copies: github.com/ICT-VGL/"
        f"ICT-FaceKit at {fm['commit'][:7]}, folder {_FOLDER_NAME}; {manifest()[DETECTOR]['url']}."
    )


@dataclass
class AssetStatus:
    """One line of ``rtface assets``."""

    name: str
    location: str
    ok: bool
    detail: str


def check_all(verify: bool = False, progress: bool = True) -> list[AssetStatus]:
    """Make every asset ready (download what is missing, convert the face model once) and report each.

    Quick by default: the detector's sha256 (232 KB) and the converted face model's stored digest. With
    ``verify=True`` the face model's source files are re-read and checked against their sha256 too (the full
    walk, a few seconds for the archive); without a source that is reported, not an error.
    """
    out = []
    try:
        p = asset_path(DETECTOR)
        out.append(AssetStatus(DETECTOR, str(p), True, "sha256 ok"))
    except AssetError as exc:
        out.append(AssetStatus(DETECTOR, "-", False, str(exc)))
    try:
        from .face_model import FaceModel, verify_converted, verify_source

        converted = converted_face_model()
        if converted.is_file():
            try:
                model_hash = verify_converted(converted)
            except AssetError:
                converted.unlink(missing_ok=True)
        if not converted.is_file():
            FaceModel.load(progress=progress)  # converts once from RTFACE_ASSETS, the cache or a download
        model_hash = verify_converted(converted)
        detail = f"converted face model, stored digest ok (model hash {model_hash[:12]}...)"
        if verify:
            src = _local_face_model_source()
            if src is None:
                detail += "; no source on this machine to verify (not needed to run)"
            else:
                verify_source(src, progress=progress)
                detail += f"; source {src}: {len(face_model_files())} files, sha256 ok"
        out.append(AssetStatus(FACE_MODEL, str(converted), True, detail))
    except AssetError as exc:
        out.append(AssetStatus(FACE_MODEL, "-", False, str(exc)))
    return out


def clear_cache(subdir: str) -> None:
    """Remove one subdirectory of the cache (e.g. ``engines``)."""
    shutil.rmtree(cache_dir() / subdir, ignore_errors=True)
