"""Weights folders for tests, derived from real ONNX files: an image-only CoarseNet from one with feedback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np


def drop_feedback_input(src: Path, dst: Path) -> Path:
    """Copy of a CoarseNet ONNX file without the ``feedback`` input: zeros take its place inside the graph.

    The result is the image-only kind of CoarseNet and computes exactly what ``src`` computes with zero feedback.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    (fb,) = [i for i in graph.input if i.name == "feedback"]
    graph.input.remove(fb)
    graph.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), "feedback_zero"))
    nodes = [helper.make_node("Mul", ["image", "feedback_zero"], ["feedback_half"]),  # (N, 3, S, S) zeros
             helper.make_node("Concat", ["feedback_half", "feedback_half"], ["feedback"], axis=1)]
    for k, node in enumerate(nodes):
        graph.node.insert(k, node)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst


def image_only_weights(src_dir: Path, dst_dir: Path) -> Path:
    """A weights folder like ``src_dir`` whose CoarseNet takes no feedback (manifest sha256 updated)."""
    from rtface.assets import sha256_file
    from rtface.networks import load_manifest

    m = load_manifest(src_dir)
    m.pop("_dir")
    dst_dir.mkdir(parents=True, exist_ok=True)
    for key in ("coarse", "fine"):
        m["networks"][key].pop("int8", None)
    fine = m["networks"]["fine"]["file"]
    shutil.copy2(Path(src_dir) / fine, dst_dir / fine)
    coarse = m["networks"]["coarse"]["file"]
    drop_feedback_input(Path(src_dir) / coarse, dst_dir / coarse)
    m["networks"]["coarse"]["sha256"] = sha256_file(dst_dir / coarse)
    (dst_dir / "manifest.json").write_text(json.dumps(m, indent=1))
    return dst_dir
