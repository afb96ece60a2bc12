"""Joining the segments of a long video into one archive, in order.

Frames and faces are concatenated; each face's depth and mask members are copied byte for byte. Track ids are
made consistent: the first segment keeps its ids (they are a sequential run's); in each later segment, the
tracks present on its last warm-up frame are matched (greedy, box IoU >= :data:`MATCH_IOU`) with the faces the
previous segment wrote on that same frame and take their ids; every other track of the segment gets the next
unused id, in the order its tracker created them.

The same comparison says how close the cut is to a sequential run: on the last warm-up frame, the previous
segment carries the whole history of the video and the warm-up only ``overlap`` frames of it. The archive's
``rtface.json`` keeps, per joined segment (``segments[k].join``), the faces on both sides, how many matched, and
the largest differences of the matched faces: landmarks (frame px), pose angles (rad), identity and expression
coefficients; ``exact`` when they are all zero.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import IO

import numpy as np

from ..archive import FACE_FIELDS, META, ArchiveWriter

#: Box IoU at which a warm-up track takes the id of the previous segment's face.
MATCH_IOU = 0.5


def _greedy_pairs(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int]]:
    from ..detect import box_iou

    if len(a) == 0 or len(b) == 0:
        return []
    iou = box_iou(np.asarray(a, np.float32).reshape(-1, 4), np.asarray(b, np.float32).reshape(-1, 4))
    pairs, used_a, used_b = [], set(), set()
    for value, i, j in sorted(((iou[i, j], i, j) for i in range(len(a)) for j in range(len(b))), reverse=True):
        if value < MATCH_IOU:
            break
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j))
    return pairs


def _compare(prev: dict[str, np.ndarray], warm: dict[str, np.ndarray], frame: int) -> tuple[dict[int, int], dict]:
    """Warm-up track id -> previous id, and the closeness figures of the cut (module docstring)."""
    pairs = _greedy_pairs(prev["box"], warm["box"])
    mapping = {int(warm["track_id"][j]): int(prev["track_id"][i]) for i, j in pairs}
    info: dict = {"frame": frame, "faces": [len(prev["box"]), len(warm["box"])], "matched": len(pairs)}
    for key, name in (("landmarks", "landmarks_px"), ("identity", "identity"), ("expression", "expression")):
        diffs = [float(np.abs(np.asarray(prev[key][i], np.float64) - np.asarray(warm[key][j], np.float64)).max())
                 for i, j in pairs]
        info[name] = max(diffs, default=0.0)
    info["pose_angles_rad"] = max((float(np.abs(np.asarray(prev["pose"][i][:3], np.float64)
                                                - np.asarray(warm["pose"][j][:3], np.float64)).max())
                                   for i, j in pairs), default=0.0)
    info["exact"] = bool(len(pairs) == len(prev["box"]) == len(warm["box"])
                         and all(info[k] == 0.0 for k in ("landmarks_px", "identity", "expression",
                                                            "pose_angles_rad")))
    return mapping, info


def join(parts: list[str | os.PathLike], fileobj: IO[bytes], meta: dict) -> list[dict]:
    """Write the archive of the segment archives ``parts`` (in order) to ``fileobj``; returns the segments'
    descriptions (with their ``join`` figures), which also go into its ``rtface.json`` with ``meta``."""
    writer = ArchiveWriter(fileobj)
    segments: list[dict] = []
    prev: dict[str, np.ndarray] | None = None
    prev_frame = -1
    next_id = 0
    for part in parts:
        with zipfile.ZipFile(Path(part)) as zf, np.load(Path(part), allow_pickle=False) as z:
            seg = dict(json.loads(z[META])["segments"][0])
            tables = {name: z[name] for name in FACE_FIELDS}
            index, stamps, start = z["frame_index"], z["timestamp"], z["face_start"]
            ids = tables["track_id"]
            mapping: dict[int, int] = {}
            if prev is None:
                mapping = {int(t): int(t) for t in np.unique(ids)}
            elif "extra/warmup_frame" in z.files and int(z["extra/warmup_frame"]) == prev_frame:
                warm = {k: z[f"extra/warmup_{k}"] for k in ("box", "track_id", "landmarks", "pose", "identity",
                                                           "expression")}
                mapping, seg["join"] = _compare(prev, warm, prev_frame)
            for t in np.unique(ids):  # new tracks, in their creation order
                if int(t) not in mapping:
                    mapping[int(t)] = next_id
                    next_id += 1
            final = np.array([mapping[int(t)] for t in ids], np.int64)
            if len(final):
                next_id = max(next_id, int(final.max()) + 1)
            for i in range(len(index)):
                writer.begin_frame(int(index[i]), float(stamps[i]))
                for r in range(int(start[i]), int(start[i + 1])):
                    row = {name: tables[name][r] for name in FACE_FIELDS}
                    row["track_id"] = final[r]
                    writer.add_face(row, copy_from=(zf, r))
            if len(index):
                last = slice(int(start[-2]), int(start[-1]))
                prev = {k: tables[k][last] for k in ("box", "landmarks", "pose", "identity", "expression")}
                prev["track_id"] = final[last]
                prev_frame = int(index[-1])
            segments.append(seg)
    writer.close({**meta, "segments": segments})
    return segments


__all__ = ["MATCH_IOU", "join"]
