"""What ``rtface batch`` works on: its INPUTS expanded into one :class:`Item` per video, image or URL.

An input is a video or image file, a folder (its videos and images, recursively, hidden names skipped), a glob
pattern (``clips/**/*.mp4``, expanded here as well as by a shell), a URL (``rtsp://``, ``https://`` ...), or a
text list (``.txt``, ``.lst``, ``.list``) with one of these a line: blank lines and lines starting with ``#``
are skipped, relative paths are relative to the list's folder.

Problems are per input, never a crash: a path that does not exist, a pattern that matches nothing, a folder
without videos or images, or a list that cannot be read becomes an item with an ``error`` (recorded as failed
in the manifest, the other inputs run); an input given twice (the same file by two names, or twice in a list)
runs once and is counted in :attr:`Expansion.duplicates`.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..sources import IMAGE_EXTENSIONS

#: File name extensions taken as video when a folder or pattern is expanded (a file named explicitly is tried
#: whatever its extension).
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".mts",
                              ".m2ts", ".wmv", ".flv", ".3gp", ".ogv", ".mxf", ".y4m"})
#: Text lists of inputs.
LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_MAGIC = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Item:
    """One unit of input.

    input: the input as given (for a file found in a folder, list or pattern: its path as found there).
    source: what is opened and the manifest's key: an absolute path, or a URL.
    error: why the item cannot run (recorded as failed without running), or None.
    """

    input: str
    source: str
    error: str | None = None

    @property
    def is_url(self) -> bool:
        return bool(_URL_RE.match(self.source))


@dataclass
class Expansion:
    """The items of a job in input order, and the inputs skipped because they were given twice."""

    items: list[Item] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)

    @property
    def runnable(self) -> list[Item]:
        return [i for i in self.items if i.error is None]

    @property
    def broken(self) -> list[Item]:
        return [i for i in self.items if i.error is not None]


def is_media(path: Path) -> bool:
    """Whether a folder or pattern expansion takes ``path`` (a video or image extension, not hidden)."""
    suffix = path.suffix.lower()
    return not path.name.startswith(".") and (suffix in VIDEO_EXTENSIONS or suffix in IMAGE_EXTENSIONS)


def _natural(text: str) -> list:
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", text)]


def _walk(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted((d for d in dirs if not d.startswith(".")), key=_natural)
        found += [Path(root) / f for f in sorted(files, key=_natural) if is_media(Path(f))]
    return found


def expand(inputs: Iterable[str | os.PathLike]) -> Expansion:
    """Expand INPUTS (module docstring) into items, in order, each source once."""
    out = Expansion()
    seen: set[str] = set()

    def add(item: Item) -> None:
        if item.source in seen:
            out.duplicates.append(item.input)
            return
        seen.add(item.source)
        out.items.append(item)

    def visit(text: str, base: Path | None, lists: tuple[str, ...]) -> None:
        if _URL_RE.match(text) and not text.lower().startswith("file://"):
            add(Item(text, text))
            return
        if text.lower().startswith("file://"):
            text = text[len("file://"):]
        raw = Path(text).expanduser()
        path = raw if raw.is_absolute() or base is None else base / raw
        shown = str(path) if base is not None and not raw.is_absolute() else text
        if path.is_dir():
            files = _walk(path)
            if not files:
                add(Item(shown, str(path.resolve()), f"folder '{shown}' holds no videos or images (extensions "
                                                     f"{', '.join(sorted(VIDEO_EXTENSIONS)[:5])}, .jpg, .png, ...)"))
            for f in files:
                add(Item(os.path.join(shown, os.path.relpath(f, path)), str(f.resolve())))
            return
        if path.is_file():
            if path.suffix.lower() in LIST_EXTENSIONS:
                read_list(path, shown, lists)
            else:
                add(Item(shown, str(path.resolve())))
            return
        if _MAGIC.search(text):
            pattern = str(path)
            matches = sorted(glob.glob(pattern, recursive=True), key=_natural)
            matches = [m for m in matches if Path(m).is_dir() or is_media(Path(m))
                       or Path(m).suffix.lower() in LIST_EXTENSIONS]
            if not matches:
                add(Item(shown, f"pattern:{os.path.abspath(pattern)}",
                         f"the pattern '{shown}' matches no videos, images or folders; check the path (quote it so "
                         f"that rtface expands it, e.g. 'clips/**/*.mp4')"))
            for m in matches:
                visit(m, None, lists)
            return
        where = f" (line of {lists[-1]})" if lists else ""
        add(Item(shown, str(path.absolute()), f"'{shown}'{where} does not exist; check the path"))

    def read_list(path: Path, shown: str, lists: tuple[str, ...]) -> None:
        key = str(path.resolve())
        if key in lists:
            return  # a list that names itself (directly or through another list)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            add(Item(shown, key, f"cannot read the list '{shown}' ({exc}); a list is a UTF-8 text file with one "
                                 f"path or URL a line"))
            return
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                visit(line, path.parent, lists + (key,))

    for entry in inputs:
        visit(os.fspath(entry), None, ())
    return out


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def output_names(items: list[Item], taken: dict[str, str] | None = None) -> dict[str, str]:
    """File name (in the output folder) of each item's archive, by source: ``<stem>.npz``; a stem that two sources
    share gets the first 8 hex digits of the source's SHA-1 (``clip-1a2b3c4d.npz``). ``taken``: source -> name of
    archives already in the folder (the manifest), kept and never given to another source."""
    taken = dict(taken or {})
    used = {name: src for src, name in taken.items()}
    stems: dict[str, int] = {}
    for item in items:
        if item.source not in taken:
            s = _stem(item)
            stems[s] = stems.get(s, 0) + 1
    names: dict[str, str] = {}
    for item in items:
        if item.source in taken:
            names[item.source] = taken[item.source]
            continue
        s = _stem(item)
        name = f"{s}.npz"
        if stems[s] > 1 or used.get(name, item.source) != item.source:
            name = f"{s}-{hashlib.sha1(item.source.encode()).hexdigest()[:8]}.npz"
        used[name] = item.source
        names[item.source] = name
    return names


def _stem(item: Item) -> str:
    text = item.source.split("?", 1)[0].rstrip("/")
    stem = Path(text).stem if not item.is_url else Path(text.split("://", 1)[1]).stem
    return _SAFE.sub("_", stem).strip("._") or "input"


__all__ = ["LIST_EXTENSIONS", "VIDEO_EXTENSIONS", "Expansion", "Item", "expand", "is_media", "output_names"]
