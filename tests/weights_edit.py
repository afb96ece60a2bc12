"""Weights folders for tests, derived from real ONNX files: a CoarseNet with or without the feedback input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def drop_feedback_input(src: Path, dst: Path) -> Path:
    """Copy of a CoarseNet ONNX file without the ``feedback`` input: zeros take its place inside the graph.

    The result is the image-only kind of CoarseNet and computes exactly what ``src`` computes with zero feedback.
    """
    import numpy as np
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


def add_feedback_input(src: Path, dst: Path) -> Path:
    """Copy of an image-only CoarseNet ONNX file with a ``feedback`` input (N, 6, S, S) that the graph reads and
    multiplies by zero: the feedback kind of CoarseNet, computing exactly what ``src`` computes."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    if any(i.name == "feedback" for i in graph.input):
        raise ValueError(f"{src} already takes feedback")
    (image,) = [i for i in graph.input if i.name == "image"]
    size = image.type.tensor_type.shape.dim[2].dim_value
    graph.input.append(helper.make_tensor_value_info("feedback", TensorProto.FLOAT, ["N", 6, size, size]))
    graph.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), "feedback_zero"))
    # image + 0 * sum(feedback): the input is consumed (so runtimes keep it) and changes nothing
    nodes = [helper.make_node("ReduceSum", ["feedback"], ["feedback_sum"], keepdims=1, axes=[1])
             if model.opset_import[0].version < 13 else
             helper.make_node("ReduceSum", ["feedback", "feedback_axes"], ["feedback_sum"], keepdims=1),
             helper.make_node("Mul", ["feedback_sum", "feedback_zero"], ["feedback_nil"]),
             helper.make_node("Add", ["image", "feedback_nil"], ["image_fb"])]
    if model.opset_import[0].version >= 13:
        graph.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "feedback_axes"))
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name == "image":
                node.input[k] = "image_fb"
    for k, node in enumerate(nodes):
        graph.node.insert(k, node)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst


def _derived_weights(src_dir: Path, dst_dir: Path, edit) -> Path:
    """A weights folder like ``src_dir`` with its CoarseNet file passed through ``edit`` (manifest sha256
    updated, INT8 entries dropped)."""
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
    edit(Path(src_dir) / coarse, dst_dir / coarse)
    m["networks"]["coarse"]["sha256"] = sha256_file(dst_dir / coarse)
    (dst_dir / "manifest.json").write_text(json.dumps(m, indent=1))
    return dst_dir


def image_only_weights(src_dir: Path, dst_dir: Path) -> Path:
    """A weights folder like ``src_dir`` whose CoarseNet takes no feedback."""
    return _derived_weights(src_dir, dst_dir, drop_feedback_input)


def feedback_weights(src_dir: Path, dst_dir: Path) -> Path:
    """A weights folder like ``src_dir`` (image-only CoarseNet) whose CoarseNet takes the feedback input."""
    return _derived_weights(src_dir, dst_dir, add_feedback_input)
