"""What an ONNX graph means for a GPU build, read on the CPU: its compute types and its float16 ranges.

* :func:`onnx_layer_facts`: the :class:`rtface.engines.tensorrt.LayerFacts` of an ONNX file, node by node, as
  TensorRT's ONNX parser turns them into layers (every initializer a constant layer, a ``Cast`` a cast layer),
  so that :func:`rtface.engines.tensorrt.plan_build` can be checked on the shipped files without TensorRT.
* :func:`float16_ranges`: every intermediate tensor of a network run by ONNX Runtime on the CPU (in FP32) on
  given inputs, against the float16 limits. An FP16 engine stores each of them in float16: a value above
  :data:`FLOAT16_MAX` (65504) becomes inf and then NaN downstream (a sum over thousands of pixels of depths of
  60-90 px, say), and the spacing of float16 numbers at a tensor's magnitude (:func:`float16_spacing`) is the
  resolution the engine keeps of it (1/16 px for depths of 64-128 px, 1/4 px for 256-512 px).

Both need the ``onnx`` package (``pip install 'rtface[train]'``; the runtime never imports this module).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import require
from ..errors import InputError
from .onnxruntime import onnx_file
from .tensorrt import LayerFacts

#: Largest finite float16.
FLOAT16_MAX = 65504.0
#: Smallest positive normal float16 (below it float16 has fewer significant bits; below 2**-24 it is 0).
FLOAT16_TINY = 2.0 ** -14
#: ONNX TensorProto element types -> NumPy names (those rtface's networks use).
ONNX_TYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
              10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}
#: ONNX operators that TensorRT's parser turns into the :class:`LayerFacts` kinds other than "compute".
_ONNX_KINDS = {"Constant": "constant", "Cast": "cast", "CastLike": "cast", "Identity": "cast",
               "QuantizeLinear": "quantize", "DequantizeLinear": "dequantize"}
_PURPOSE = "reading ONNX graphs (rtface.engines.graph)"


def _load(path: str | os.PathLike[str]) -> Any:
    onnx = require("onnx", _PURPOSE)
    model = onnx.load(str(onnx_file(path)))
    return onnx.shape_inference.infer_shapes(model)


def _types(model: Any) -> dict[str, str]:
    g = model.graph
    out = {t.name: ONNX_TYPES.get(t.data_type, f"onnx type {t.data_type}") for t in g.initializer}
    for vi in [*g.input, *g.output, *g.value_info]:
        elem = vi.type.tensor_type.elem_type
        if elem:
            out[vi.name] = ONNX_TYPES.get(elem, f"onnx type {elem}")
    return out


def onnx_layer_facts(path: str | os.PathLike[str]) -> list[LayerFacts]:
    """The layers TensorRT's parser makes of an ONNX file, as :class:`LayerFacts` (graph inputs, one constant
    layer per initializer, then one entry per node; element types from ONNX shape inference)."""
    model = _load(path)
    g = model.graph
    types = _types(model)
    initializers = {t.name for t in g.initializer}
    facts = [LayerFacts("input", (types.get(i.name, "unknown"),)) for i in g.input if i.name not in initializers]
    facts += [LayerFacts("constant", (types[t.name],), True) for t in g.initializer]
    constant = set(initializers)
    for node in g.node:
        kind = _ONNX_KINDS.get(node.op_type, "compute")
        inputs = [i for i in node.input if i]
        const = kind == "constant" or (bool(inputs) and all(i in constant for i in inputs))
        if const:
            constant.update(o for o in node.output if o)
        facts.append(LayerFacts(kind, tuple(types.get(o, "unknown") for o in node.output if o), const))
    return facts


def float16_spacing(value: float) -> float:
    """Distance between adjacent float16 numbers at ``|value|`` (the resolution FP16 keeps of it)."""
    v = abs(float(value))
    if v >= FLOAT16_MAX:
        return float("inf")
    return float(np.spacing(np.float16(v)))


@dataclass(frozen=True)
class TensorRange:
    """Range of one tensor over every input: ``max_abs``, ``min_abs_nonzero`` (NaN when all zero), its producer
    (node name and op type; "input" for a network input) and its element count per run."""

    name: str
    op: str
    node: str
    max_abs: float
    min_abs_nonzero: float
    size: int

    @property
    def spacing(self) -> float:
        """float16 spacing at ``max_abs``: the resolution an FP16 engine keeps of this tensor's largest values."""
        return float16_spacing(self.max_abs)


@dataclass
class Float16Report:
    """:func:`float16_ranges`' result: every tensor's range and the limit they were held to."""

    path: Path
    limit: float
    tensors: list[TensorRange] = field(default_factory=list)
    inputs: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def overflows(self) -> list[TensorRange]:
        """Tensors whose largest magnitude exceeds :attr:`limit` (or is not finite even in FP32)."""
        return [t for t in self.tensors if not np.isfinite(t.max_abs) or t.max_abs > self.limit]

    @property
    def ok(self) -> bool:
        return not self.overflows

    def largest(self, n: int = 5) -> list[TensorRange]:
        return sorted(self.tensors, key=lambda t: -t.max_abs if np.isfinite(t.max_abs) else -np.inf)[:n]

    def format(self, n: int = 5) -> str:
        """A few lines: verdict, the largest tensors with their producers and float16 spacing."""
        shapes = ", ".join(f"{k} {v}" for k, v in self.inputs.items())
        head = (f"{self.path.name}: {len(self.tensors)} tensors on inputs {shapes}: "
                + ("within" if self.ok else f"{len(self.overflows)} above") + f" the float16 limit {self.limit:g}")
        rows = [f"  {t.max_abs:12.4g}  (fp16 spacing {t.spacing:.3g})  {t.op:12s} {t.name}"
                for t in (self.overflows or self.largest(n))[:max(n, len(self.overflows))]]
        return "\n".join([head, *rows])

    def to_json(self) -> dict[str, Any]:
        return {"file": self.path.name, "limit": self.limit, "ok": self.ok, "inputs": self.inputs,
                "tensors": len(self.tensors),
                "overflows": [vars(t) for t in self.overflows],
                "largest": [{**vars(t), "fp16_spacing": t.spacing} for t in self.largest(8)]}


def float16_ranges(path: str | os.PathLike[str], feeds: Mapping[str, np.ndarray] | Iterable[Mapping[str, np.ndarray]],
                   *, margin: float = 2.0, max_outputs_per_run: int = 32) -> Float16Report:
    """Run an ONNX network on the CPU (ONNX Runtime, FP32, no graph optimisation) with **every** intermediate
    float tensor exposed as an output, and hold each tensor's largest magnitude against float16.

    Args:
        path: any ONNX file.
        feeds: one dict of inputs (name -> array, batch first), or several (e.g. one per face or size); each is
            run one item of the batch at a time, so memory holds one face's tensors at most.
        margin: a tensor fails when its largest magnitude exceeds ``FLOAT16_MAX / margin`` (inputs other than the
            ones given reach further: 2 leaves a factor of two).
        max_outputs_per_run: tensors exposed per ONNX Runtime session (memory bound for large inputs).

    Returns a :class:`Float16Report` (``ok``, ``overflows``, ``format()``). Network outputs are included.
    """
    onnx = require("onnx", _PURPOSE)
    import onnxruntime as ort

    if margin < 1:
        raise InputError(f"margin must be at least 1, got {margin}")
    batches = [feeds] if isinstance(feeds, Mapping) else list(feeds)
    if not batches:
        raise InputError("float16_ranges needs at least one dict of inputs")
    model = _load(path)
    g = model.graph
    types = _types(model)
    initializers = {t.name for t in g.initializer}
    input_names = [i.name for i in g.input if i.name not in initializers]
    producers: dict[str, tuple[str, str]] = {n: ("input", "input") for n in input_names}
    constant = set(initializers)
    for node in g.node:
        inputs = [i for i in node.input if i]
        if node.op_type == "Constant" or (inputs and all(i in constant for i in inputs)):
            constant.update(node.output)  # weights, not activations (an FP16 engine keeps FP16 weights as stored)
            continue
        for o in node.output:
            if o and types.get(o) in ("float32", "float16", "float64", "bfloat16"):
                producers[o] = (node.op_type, node.name)
    names = [n for n in producers if n not in input_names]
    graph_outputs = {o.name for o in g.output}
    stats: dict[str, list[float]] = {n: [0.0, np.inf, 0] for n in producers}
    shapes: dict[str, tuple[int, ...]] = {}
    arrays_per_feed = []
    for feed in batches:
        missing = set(input_names) - set(feed)
        if missing:
            raise InputError(f"float16_ranges: {Path(path).name} needs inputs {input_names}, missing "
                             f"{sorted(missing)}")
        arrays = {k: np.asarray(feed[k]) for k in input_names}
        sizes = {len(v) for v in arrays.values()}
        if len(sizes) != 1:
            raise InputError(f"float16_ranges: the inputs of one feed must share their batch size, got "
                             f"{ {k: v.shape for k, v in arrays.items()} }")
        for k, v in arrays.items():
            shapes[k] = tuple(int(d) for d in v.shape[1:])
            if types.get(k) in ("float32", "float16", "float64", "bfloat16"):
                _update(stats[k], v)
        arrays_per_feed.append(arrays)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for start in range(0, len(names), int(max_outputs_per_run)):
        chunk = names[start:start + int(max_outputs_per_run)]
        m = onnx.ModelProto()
        m.CopyFrom(model)
        del m.graph.output[:]
        for n in chunk:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
        session = ort.InferenceSession(m.SerializeToString(), sess_options=options,
                                       providers=["CPUExecutionProvider"])
        for arrays in arrays_per_feed:
            for item in range(len(next(iter(arrays.values())))):
                one = {k: np.ascontiguousarray(v[item:item + 1]) for k, v in arrays.items()}
                for n, value in zip(chunk, session.run(chunk, one)):
                    _update(stats[n], value)
        del session
    tensors = [TensorRange(n, producers[n][0] if n not in graph_outputs else f"{producers[n][0]} (output)",
                           producers[n][1], float(st[0]), float(st[1]) if np.isfinite(st[1]) else float("nan"),
                           int(st[2])) for n, st in stats.items() if st[2]]
    return Float16Report(Path(path), FLOAT16_MAX / float(margin), tensors, shapes)


def _update(stat: list[float], value: np.ndarray) -> None:
    a = np.abs(np.asarray(value, dtype=np.float64))
    if a.size == 0:
        return
    finite = np.isfinite(a)
    stat[0] = max(stat[0], float(a.max()) if finite.all() else float("inf"))
    nonzero = a[finite & (a > 0)]
    if nonzero.size:
        stat[1] = min(stat[1], float(nonzero.min()))
    stat[2] = max(stat[2], int(a.size))


__all__ = ["FLOAT16_MAX", "FLOAT16_TINY", "Float16Report", "ONNX_TYPES", "TensorRange", "float16_ranges",
           "float16_spacing", "onnx_layer_facts"]
