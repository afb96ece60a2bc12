"""The job manifest ``DIR/manifest.jsonl``: one JSON object a line, one line per input.

Fields of a line:

* ``input``: the input as given (a file found in a folder, list or pattern: its path as found there);
* ``source``: the absolute path or URL that was read (the key: a later run recognises the input by it);
* ``status``: ``done`` or ``failed``;
* ``frames``, ``faces``: frames written and faces in them; ``seconds``: wall time of the input's work (the sum
  over its segments);
* ``output``: the archive's file name in DIR (``done`` only; read it with ``rtface.load``);
* ``error``: what went wrong and what to do (``failed`` only); ``warning``: something the user should know
  about a ``done`` input (a truncated video: where it ended);
* ``segments``: how many parts the input was processed in; ``join_landmarks_px``: for a video processed in
  segments, the largest landmark difference at a cut between a segment's warm-up and the previous segment
  (frame px; 0 when the cuts are exact, see :mod:`rtface.batching.join`);
* ``node``: the machine and process that wrote a whole input; ``finished``: UTC time, ISO 8601.

While a job runs, lines are appended (and synced) as inputs finish, so a stopped job keeps what it finished;
at the end the file is rewritten (atomically) with one line per input, the latest. A reader that meets the same
``source`` twice takes the later line.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

NAME = "manifest.jsonl"


class Manifest:
    """The manifest of an output folder: ``records`` (source -> latest line), :meth:`append`, :meth:`compact`."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / NAME
        self.records: dict[str, dict[str, Any]] = {}
        self.unreadable = 0  # lines that were not JSON (a job killed while writing one)
        self._lock = threading.Lock()
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    self.unreadable += 1
                    continue
                if isinstance(rec, dict) and isinstance(rec.get("source"), str):
                    self.records[rec["source"]] = rec

    def done(self, source: str) -> dict[str, Any] | None:
        """The line of ``source`` when it is ``done`` and its archive is still in the folder, else None."""
        rec = self.records.get(source)
        if rec and rec.get("status") == "done" and rec.get("output") and (self.folder / rec["output"]).is_file():
            return rec
        return None

    def outputs(self) -> dict[str, str]:
        """source -> archive name of the lines that name one (those names stay theirs)."""
        return {s: r["output"] for s, r in self.records.items() if r.get("output")}

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Add a line (synced to disk) and make it the input's current record."""
        record = {k: v for k, v in record.items() if v is not None}
        record.setdefault("finished", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            self.records[record["source"]] = record
        return record

    def compact(self, order: list[str] | None = None) -> None:
        """Rewrite the file with one line per input (atomic: a reader sees the old file or the new one): the
        sources of ``order`` first, in that order, then the others as they were."""
        from ..assets import write_atomic

        with self._lock:
            first = [s for s in dict.fromkeys(order or []) if s in self.records]
            rest = [s for s in self.records if s not in set(first)]
            text = "".join(json.dumps(self.records[s], ensure_ascii=False) + "\n" for s in first + rest)
            write_atomic(self.path, text.encode("utf-8"))


__all__ = ["NAME", "Manifest"]
