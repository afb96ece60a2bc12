"""``rtface batch``: whole archives of videos and images, one output file each, on Ray (or in one process).

Modules, one job each: :mod:`.inputs` (INPUTS -> items), :mod:`.manifest` (``DIR/manifest.jsonl``, resume),
:mod:`.segments` (long videos split, seeking), :mod:`.task` (one unit, as a worker runs it), :mod:`.runners`
(Ray tasks or this process), :mod:`.join` (segments -> one archive), :mod:`.driver` (:func:`batch`). The output
format is :mod:`rtface.archive` (read with :func:`rtface.load`). Documentation: ``docs/batch.md``.
"""

from __future__ import annotations

__all__: list[str] = []
