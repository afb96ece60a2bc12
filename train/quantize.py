"""INT8 (QDQ) versions of the shipped networks: ONNX Runtime static quantisation calibrated on real crops.

``python -m train.quantize [--weights DIR] [--out DIR] [--faces 256] [--check 64] [--method auto] [--seed 0]
[--only coarse|fine]``

For each network of the weights folder (``coarse_<v>.onnx``, ``fine_<v>.onnx``; ``--only``: one of them, the
other keeping its current INT8 copy) this writes ``coarse_<v>.int8.onnx`` / ``fine_<v>.int8.onnx`` beside it
and adds an ``"int8"`` entry to the network's manifest entry (file, sha256, ``source_sha256`` = the FP32 file it
was made from, calibration settings, agreement with FP32); see :mod:`rtface.networks`. Everything else in the
manifest stays as it was (format 1).

Calibration data (real crops, the inputs the networks see in a video): ``--faces`` images of
``$RTFACE_ASSETS/faces-300w/train`` (never the test split, which the accuracy tables use), drawn with
``--seed``, each run through the FP32 pipeline as a two-frame stream ``[image, image]`` with smoothing off:
frame 1 is cropped from YuNet's five points, frame 2 from the predicted landmarks with the previous
estimate fed back when the CoarseNet takes feedback. The engines' inputs are recorded as they are fed
(:class:`Recorder`), so crops, feedback, coarse depth and mask are exactly the pipeline's.

Quantisation (one file for ONNX Runtime on the CPU and for TensorRT's strongly typed INT8 engines):

* weights INT8, symmetric, per output channel; activations INT8, symmetric (zero point 0: the only scheme
  TensorRT accepts), ranges from ``--method`` (ONNX Runtime's MinMax, Percentile or Entropy calibrators;
  ``auto``, the default: MinMax for the CoarseNet, Percentile at :data:`PERCENTILE` for the FineNet, see
  :data:`AUTO_METHOD`);
* biases stay float (TensorRT dequantises 8-bit tensors only; ONNX Runtime quantises float biases itself
  when it fuses a Conv);
* both ends stay float (:func:`float_nodes`): the input normalisation up to the first convolution, and the
  last Conv/Gemm before each output with the element-wise operations after it (the outputs mix ranges one
  INT8 scale cannot hold); ``--fine-float-tail N`` keeps the FineNet's last N layers float (:data:`FLOAT_TAIL`:
  more of its sub-millimetre residual survives, at a cost in speed);
* a dedicated Q/DQ pair for every consumer of a tensor: ONNX Runtime fuses ``DQ -> Conv -> Q`` into an
  integer convolution only when the DQ is that Conv's own (:mod:`rtface.engines.onnxruntime` also keeps its
  common-subexpression elimination from merging the pairs again). Measured on the ``s`` networks: all 14
  convolutions of each network run as integer kernels, about 2x faster than FP32 on one core.

Check: INT8 against FP32 on ``--check`` further 300-W train images that calibration did not use (their
recorded inputs): mean and 95th-percentile landmark difference (crop px; landmarks of the 3DMM from each
CoarseNet's outputs) and FineNet depth difference inside the mask (crop px). They go into the manifest entry
as ``agreement``; accuracy against ground truth is ``python -m benchmarks int8``.

Needs ``onnx`` (the ``train`` or ``dev`` extra) and ONNX Runtime's quantisation tools; no torch.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from rtface.assets import sha256_file, write_atomic

#: Activation range calibrators. MinMax keeps only per-tensor minima and maxima; Percentile and Entropy keep
#: every activation of every calibration input in memory (about 20 MB per FineNet input at S = 128).
METHODS = ("minmax", "percentile", "entropy")
#: ``--method auto``: the calibrator of each network. Measured on the previous release's FineNet
#: (``benchmarks.accuracy``, held-out detail sets, FineNet on the predicted coarse depth: the part of the fit's
#: high-pass error it removes, FP32 6.2 %): Percentile 5.2 %, Entropy 4.6 %, MinMax 4.2 % (FineNet on the true
#: coarse surface: spurious relief 2.40x, 2.50x, 2.65x; FP32 2.10x). On a FineNet of this release's recipe
#: (phase 2 at W = 32, ``train/phase2.py``; validation seed, the last three layers float): Percentile at
#: 99.999 % 6.3 % and 1.49x, Entropy 6.2 % and 1.55x, MinMax 6.0 % and 1.61x. The CoarseNet's 300-W NME is
#: unchanged by INT8 with MinMax.
AUTO_METHOD = {"coarse": "minmax", "fine": "percentile"}
#: Percentile of the activations' absolute values that the Percentile calibrator keeps as the INT8 range
#: (ONNX Runtime's default is 99.999). Measured on the W = 32 FineNet (validation seed of the detail sets; its
#: error on the true coarse surface against FP32, ``benchmarks int8``): 99.999: 5.8 % recovered, 1.68x, +12.4 %;
#: 99.99: 6.2 %, 1.58x, +8.2 %; 99.9: 6.4 %, 1.52x, +4.4 %; 99.5: 6.1 %, 1.43x, +1.4 %; 99.0: 5.6 %, 1.43x
#: (FP32 6.9 %, 1.36x): clipping the rare large activations keeps the resolution that the sub-millimetre
#: residual needs, until the clipping itself costs detail.
PERCENTILE = 99.5
#: Linear layers before each output that stay float (:func:`float_nodes`), per network (``--fine-float-tail``).
#: The FineNet's head (four 1x1 convolutions at the crop's full resolution) carries its sub-millimetre residual.
#: Measured on the W = 32 FineNet at 99.999 % (FP32: 6.9 % recovered, 1.36x on the validation seed; FineNet
#: alone at batch 1 / 4, ONNX Runtime, 2 threads): INT8 up to the last layer 5.8 %, 1.68x, 2.33 / 8.69 ms; the
#: last two float 6.1 %, 1.62x, 2.43 / 9.02 ms; the last three 6.3 %, 1.49x, 2.53 / 9.61 ms; the whole head
#: 6.8 %, 1.40x, 3.39 / 13.5 ms (slower than FP32: 2.86 / 12.5 ms). In the pipeline three float layers made it
#: 4-6 % slower at 1080p (fine stage +0.4 ms, five interleaved ``benchmarks fps`` runs). With the ranges at
#: :data:`PERCENTILE` the last two float pay (validation seed; INT8 up to the last layer -> the last two float):
#: the released weight-averaged FineNet (FP32 8.5 %, 1.36x) 7.4 % and 1.50x -> 7.5 % and 1.36x; the W = 32
#: FineNet 6.1 % and 1.43x -> 6.1 % and 1.37x; FineNet alone 4.68 -> 4.88 ms at batch 1 and 12.45 -> 12.98 ms at
#: batch 4 (same run, ONNX Runtime, 2 threads): about 0.2 ms a face, which the pipeline's mesh kernel gave back
#: (README, Speed).
FLOAT_TAIL = {"coarse": 1, "fine": 2}
#: Percentile and Entropy keep every activation in memory: they calibrate on the first this many inputs.
HISTOGRAM_INPUTS = 64


class QuantizeError(RuntimeError):
    """Quantisation failed (no calibration data, a tool error); nothing was written."""


class Recorder:
    """Wraps an :class:`rtface.engines.Engine` and keeps a copy of every feed it runs (for calibration)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.feeds: list[dict[str, np.ndarray]] = []

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        self.feeds.append({k: np.array(v, dtype=np.float32, copy=True) for k, v in feeds.items()})
        return self.engine.run(feeds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


def train_images(n: int, seed: int = 0, skip: int = 0, folder: str = "faces-300w/train") -> list[Path]:
    """``n`` images of ``folder`` (an assets folder, default ``faces-300w/train``) in a fixed random order
    (``seed``), after the first ``skip`` of it."""
    from rtface.assets import data_path

    folder = data_path(folder)
    files = sorted(folder.glob("*.jpg"))
    if not files:
        raise QuantizeError(f"no calibration images: {folder} holds no *.jpg (set RTFACE_ASSETS to the shared "
                            f"assets folder with faces-300w/)")
    order = np.random.default_rng(seed).permutation(len(files))
    return [files[i] for i in order[skip:skip + n]]


def record_feeds(weights: str | Path | None, images: Iterable[Any], *,
                 threads: int | None = 1) -> tuple[list[dict], list[dict]]:
    """The FP32 pipeline's network inputs on each image, run as a two-frame stream (see the module doc).

    ``images``: paths or (H, W, 3) uint8 BGR arrays. Returns (coarse feeds, fine feeds), one dict per run.
    """
    import cv2

    from rtface.pipeline import Pipeline

    pipe = Pipeline(weights, backend="cpu", precision="fp32", max_faces=1, smoothing=False, threads=threads)
    try:
        coarse, fine = Recorder(pipe.networks.coarse.engine), Recorder(pipe.networks.fine.engine)
        pipe.networks.coarse.engine, pipe.networks.fine.engine = coarse, fine
        for item in images:
            image = cv2.imread(str(item), cv2.IMREAD_COLOR) if isinstance(item, (str, Path)) else item
            if image is None:
                raise QuantizeError(f"cannot read the calibration image {item}")
            for _ in pipe.stream([image, image]):
                pass
    finally:
        pipe.close()
    return coarse.feeds, fine.feeds


class _Reader:
    """ONNX Runtime CalibrationDataReader over recorded feeds."""

    def __init__(self, feeds: Sequence[dict]) -> None:
        self._it = iter(feeds)

    def get_next(self) -> dict | None:
        return next(self._it, None)

    def rewind(self) -> None:  # pragma: no cover - not used by the static calibrators
        raise NotImplementedError


def quantize_file(src: str | Path, dst: str | Path, feeds: Sequence[dict], method: str = "minmax",
                  float_tail: int = 1) -> None:
    """Write the TensorRT-compatible INT8 QDQ version of the ONNX file ``src`` to ``dst`` (see the module doc;
    ``float_tail``: how many linear layers before each output stay float, :func:`float_nodes`)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in METHODS:
        raise QuantizeError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not feeds:
        raise QuantizeError(f"no calibration data for {src}: no face was found in the calibration images")
    calib = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
             "entropy": CalibrationMethod.Entropy}[method]

    class Reader(_Reader, CalibrationDataReader):
        pass

    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
             "DedicatedQDQPair": True, "CalibPercentile": PERCENTILE}
    with tempfile.TemporaryDirectory(prefix="rtface-quantize-") as tmp:
        import onnx

        from .onnx_half import float_storage

        full = Path(tmp) / "float32.onnx"  # float16-stored weights back as float32 initializers
        onnx.save(float_storage(onnx.load(str(src))), str(full))
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(full), str(pre), skip_symbolic_shape=True)  # shape inference + graph clean-up
        out = Path(tmp) / "int8.onnx"
        quantize_static(str(pre), str(out), Reader(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=calib,
                        nodes_to_exclude=float_nodes(pre, float_tail), extra_options=extra)
        write_atomic(Path(dst), out.read_bytes())


_LINEAR = ("Conv", "Gemm", "MatMul", "ConvTranspose")
#: Node-name prefix of the FineNet's output filter (train/nets.py, ``FineNet.out_filter``): fixed MatMuls, not
#: layers with learnt weights, kept float without counting toward the float tail.
_FIXED_SCOPE = "/out_filter/"
#: Name scope of the detail FineNet's slopes of the coarse depth (train/detail_net.py, ``Slopes``): fixed
#: convolutions of depth values in the hundreds of px, kept float wholly.
_FLOAT_SCOPE = "/slopes/"


def float_nodes(path: str | Path, tail: int = 1) -> list[str]:
    """Names of the nodes that stay float: the network's input and output ends.

    * output end: the last ``tail`` Conv/Gemm layers on every path to each output and everything after them
      (the FineNet's output filter, fixed MatMuls, stays float without counting).
      The outputs mix quantities of very different ranges in one tensor (CoarseNet: angles in radians beside translations in pixels;
      FineNet: the coarse depth plus a sub-pixel residual), which one INT8 scale per tensor cannot hold
      (measured: pose angles rounded to 0, depth in 0.7 px steps);
    * input end: everything between the graph inputs and the first Conv/Gemm (the normalisation of image and
      depth). Otherwise the raw inputs get a Q/DQ pair that every consumer shares, the float output end too
      (measured: FineNet's depth off by 0.29 px on average, the rounding of the 0..100 px coarse depth input).
      The first convolution still takes INT8: its normalised input is quantised.

    Both ends are a fully connected layer or a 1x1 convolution and element-wise operations: negligible time.
    """
    import onnx

    graph = onnx.load(str(path)).graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    keep: dict[int, str] = {}
    reached: dict[int, int] = {}  # node -> the most linear layers still to keep float when it was reached
    stack = [(o.name, tail) for o in graph.output]
    while stack:  # backwards from the outputs to the tail-th linear layer
        name, left = stack.pop()
        node = producer.get(name)
        if node is None or reached.get(id(node), 0) >= left:
            continue
        reached[id(node)] = left
        keep[id(node)] = node.name
        if node.op_type in _LINEAR and not node.name.startswith(_FIXED_SCOPE):
            left -= 1
        if left > 0:
            stack.extend((i, left) for i in node.input)
    for node in graph.node:
        if _FLOAT_SCOPE in node.name:
            keep[id(node)] = node.name
    seen: set[int] = set()
    stack = [i.name for i in graph.input]
    while stack:  # forwards from the inputs to the first linear layers (excluded: they take INT8)
        for node in consumers.get(stack.pop(), []):
            if node.op_type in _LINEAR or id(node) in seen:
                continue
            seen.add(id(node))
            keep[id(node)] = node.name
            stack.extend(node.output)
    return list(keep.values())


def _session(path: Path) -> Any:
    from rtface.engines import load_engine

    return load_engine(path, backend="cpu", threads=1, max_batch=64)


def agreement(fp32: dict[str, Path], int8: dict[str, Path], coarse_feeds: Sequence[dict],
              fine_feeds: Sequence[dict], model: Any) -> dict[str, float]:
    """INT8 vs FP32 on the same recorded inputs: landmark (crop px) and depth (crop px, in the mask) differences."""
    from rtface.camera import project

    out: dict[str, float] = {"inputs": float(len(coarse_feeds)), "fine_inputs": float(len(fine_feeds))}
    lm = {}
    for tag, paths in (("fp32", fp32), ("int8", int8)):
        engine = _session(paths["coarse"])
        pts = []
        for f in coarse_feeds:
            r = engine.run(f)
            v = project(model.vertices(r["identity"], r["expression"]), r["pose"])
            pts.append(v[:, model.landmarks, :2])
        engine.close()
        lm[tag] = np.concatenate(pts)
    d = np.linalg.norm(lm["fp32"] - lm["int8"], axis=-1).mean(-1)  # per face, mean over the 68 points
    out["landmark_mean_px"] = float(d.mean())
    out["landmark_p95_px"] = float(np.percentile(d, 95))
    depth = {}
    for tag, paths in (("fp32", fp32), ("int8", int8)):
        engine = _session(paths["fine"])
        depth[tag] = [fine_depth(engine.run(f), f) for f in fine_feeds]
        engine.close()
    per = [float(np.abs(a - b)[f["mask"] > 0].mean()) for a, b, f in zip(depth["fp32"], depth["int8"], fine_feeds)
           if (f["mask"] > 0).any()]
    out["depth_mean_px"] = float(np.mean(per)) if per else float("nan")
    out["depth_p95_px"] = float(np.percentile(per, 95)) if per else float("nan")
    return out


def common_size(feeds: Sequence[dict]) -> list[dict]:
    """Feeds of one spatial size: each map centre-cropped to the smallest height and width among them. ONNX
    Runtime's histogram calibrators stack every run's activations, so a FineNet that runs at each face's own
    resolution needs this; the centre of a detail crop is the face, whose activations set the ranges."""
    h = min(f["image"].shape[-2] for f in feeds) if feeds else 0
    w = min(f["image"].shape[-1] for f in feeds) if feeds else 0

    def crop(a: np.ndarray) -> np.ndarray:
        if a.ndim < 3 or a.shape[-2:] == (h, w):
            return a
        y0, x0 = (a.shape[-2] - h) // 2, (a.shape[-1] - w) // 2
        return np.ascontiguousarray(a[..., y0:y0 + h, x0:x0 + w])

    return [{k: crop(v) for k, v in f.items()} for f in feeds]


def fine_depth(out: dict[str, np.ndarray], feed: dict[str, np.ndarray]) -> np.ndarray:
    """A FineNet run's depth: its ``depth`` output, or the coarse depth plus its ``relief`` output."""
    return out["depth"] if "depth" in out else feed["coarse_depth"] + out["relief"]


def int8_name(file: str) -> str:
    """``coarse_s.onnx`` -> ``coarse_s.int8.onnx``."""
    p = Path(file)
    return f"{p.stem}.int8{p.suffix}"


def quantize_weights(weights: str | Path | None = None, out: str | Path | None = None, *, faces: int = 256,
                     check: int = 64, method: str = "auto", seed: int = 0, calibration_images: Sequence | None = None,
                     check_images: Sequence | None = None, command: str | None = None,
                     float_tail: dict[str, int] | None = None, networks: Sequence[str] = ("coarse", "fine"),
                     hires: int = 0, not_auto: dict[str, str] | None = None) -> dict:
    """Quantise both networks of a weights folder and record them in its manifest. Returns the new manifest.

    ``networks``: the ones to quantise; the other keeps its INT8 copy, which must be current (its source is the
    FP32 file of the manifest), e.g. when only the FineNet changed. The agreement is measured on the pair.

    ``out`` (default: the weights folder itself) receives the FP32 files and manifest too when it differs.
    ``calibration_images`` / ``check_images`` override the 300-W train draw (paths or BGR arrays);
    ``float_tail`` the float output end of a network (default :data:`FLOAT_TAIL`); ``hires``: that many
    ``faces-300w-hires/train`` images added to the calibration draw (large faces, detail crops up to the cap);
    ``not_auto``: network -> why its INT8 copy is for ``precision="int8"`` only (``"auto": false`` in its entry:
    ``precision="auto"`` keeps running its FP32 file, e.g. where the INT8 copy was measured slower).
    """
    from rtface.face_model import FaceModel
    from rtface.networks import INT8, int8_status, load_manifest

    manifest = load_manifest(weights)
    src_dir = Path(manifest.pop("_dir"))
    out_dir = Path(out) if out is not None else src_dir
    if not networks or set(networks) - {"coarse", "fine"}:
        raise QuantizeError(f"networks must be 'coarse', 'fine' or both, got {list(networks)}")
    kept = tuple(k for k in ("coarse", "fine") if k not in networks)
    why = int8_status(manifest, kept) if kept else None
    if why is not None:
        raise QuantizeError(f"no current INT8 copy to keep ({why}); quantise both networks")
    out_dir.mkdir(parents=True, exist_ok=True)
    if out_dir.resolve() != src_dir.resolve():
        for key in ("coarse", "fine"):
            shutil.copy2(src_dir / manifest["networks"][key]["file"], out_dir / manifest["networks"][key]["file"])
            if key in kept:
                q_file = manifest["networks"][key][INT8]["file"]
                shutil.copy2(src_dir / q_file, out_dir / q_file)
        shutil.copy2(src_dir / "manifest.json", out_dir / "manifest.json")
    if calibration_images is None:
        calibration_images = train_images(faces, seed)
        if hires:  # large faces: the FineNet at the face's own resolution sees them at up to its cap
            calibration_images = calibration_images + train_images(hires, seed, folder="faces-300w-hires/train")
    if check_images is None:
        check_images = train_images(check, seed, skip=len(calibration_images)) if check else []
    print(f"recording calibration inputs on {len(calibration_images)} real faces ...", file=sys.stderr)
    c_feeds, f_feeds = record_feeds(src_dir, calibration_images)
    k_feeds, kf_feeds = record_feeds(src_dir, check_images) if len(check_images) else ([], [])

    fp32, int8, used = {}, {}, {}
    how = AUTO_METHOD if method == "auto" else dict.fromkeys(AUTO_METHOD, method)
    tail = {**FLOAT_TAIL, **(float_tail or {})}
    for key, feeds in (("coarse", c_feeds), ("fine", f_feeds)):
        entry = manifest["networks"][key]
        fp32[key] = out_dir / entry["file"]
        int8[key] = out_dir / (entry[INT8]["file"] if key in kept else int8_name(entry["file"]))
        if key in kept:
            continue
        used[key] = feeds if how[key] == "minmax" else common_size(feeds[:HISTOGRAM_INPUTS])
        print(f"quantising {entry['file']} ({how[key]}, {len(used[key])} calibration inputs) ...", file=sys.stderr)
        quantize_file(fp32[key], int8[key], used[key], how[key], tail[key])
    agree = agreement(fp32, int8, k_feeds, kf_feeds, FaceModel.load()) if k_feeds else {}
    import onnxruntime

    calibration = {"faces": len(calibration_images), "seed": seed,
                   "data": ("faces-300w/train" + (f" + {hires} faces-300w-hires/train" if hires else "")
                            + ", two-frame streams through the FP32 pipeline (YuNet crop, then "
                              "tracked crop with feedback when the CoarseNet takes it)"),
                   "scheme": "QDQ int8 symmetric, per-channel weights, float bias, dedicated Q/DQ pairs",
                   "onnxruntime": onnxruntime.__version__,
                   "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if command:
        calibration["command"] = command
    for key in ("coarse", "fine"):
        entry = manifest["networks"][key]
        if key in kept:
            entry[INT8]["agreement"] = agree
            continue
        entry[INT8] = {"file": int8[key].name, "sha256": sha256_file(int8[key]), "source_sha256": entry["sha256"],
                       "calibration": {**calibration, "method": how[key], "inputs": len(used[key]),
                                       "float_tail": tail[key],
                                       **({"percentile": PERCENTILE} if how[key] == "percentile" else {})},
                       "agreement": agree}
        if not_auto and key in not_auto:
            entry[INT8].update({"auto": False, "auto_why": not_auto[key]})
    write_atomic(out_dir / "manifest.json", (json.dumps(manifest, indent=1) + "\n").encode())
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.quantize", description=__doc__.split("\n")[0])
    ap.add_argument("--weights", help="weights folder (default: the package's rtface/weights)")
    ap.add_argument("--out", help="write here instead of into the weights folder (FP32 files are copied)")
    ap.add_argument("--faces", type=int, default=256, help="300-W train images for calibration")
    ap.add_argument("--hires", type=int, default=0,
                    help="faces-300w-hires train images added to the calibration (large faces for the FineNet)")
    ap.add_argument("--not-auto", metavar="WHY", default=None,
                    help="with --only: the new INT8 copy is for precision='int8' only (precision='auto' keeps the "
                         "FP32 file); WHY records the measurement, e.g. 'INT8 1.4x slower on this CPU'")
    ap.add_argument("--check", type=int, default=64, help="further 300-W train images for the INT8/FP32 check")
    ap.add_argument("--method", choices=("auto",) + METHODS, default="auto",
                    help="activation range calibrator (auto: minmax for the CoarseNet, percentile for the FineNet)")
    ap.add_argument("--seed", type=int, default=0, help="draw of the calibration images")
    ap.add_argument("--only", choices=("coarse", "fine"),
                    help="quantise this network alone; the other keeps its current INT8 copy")
    ap.add_argument("--fine-float-tail", type=int, default=FLOAT_TAIL["fine"],
                    help="linear layers before the FineNet's output that stay float (its head has 4)")
    args = ap.parse_args(argv)
    if args.fine_float_tail < 1:
        ap.error("--fine-float-tail must be at least 1 (the output layer stays float)")
    if args.faces < 1:
        ap.error("--faces must be at least 1")
    if args.not_auto and not args.only:
        ap.error("--not-auto needs --only (which network's INT8 copy)")
    try:
        m = quantize_weights(args.weights, args.out, faces=args.faces, check=args.check, method=args.method,
                             seed=args.seed, command="python -m train.quantize " + " ".join(argv or sys.argv[1:]),
                             float_tail={"fine": args.fine_float_tail},
                             networks=(args.only,) if args.only else ("coarse", "fine"), hires=args.hires,
                             not_auto={args.only: args.not_auto} if args.only and args.not_auto else None)
    except QuantizeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for key in (args.only,) if args.only else ("coarse", "fine"):
        q = m["networks"][key]["int8"]
        print(f"{key}: wrote {q['file']} (sha256 {q['sha256'][:16]}..., {q['calibration']['inputs']} calibration inputs)")
    a = m["networks"]["coarse"]["int8"]["agreement"]
    if a:
        print(f"INT8 vs FP32 on {int(a['inputs'])} held-out CoarseNet inputs: landmarks {a['landmark_mean_px']:.2f} px mean "
              f"({a['landmark_p95_px']:.2f} p95), depth {a['depth_mean_px']:.3f} px mean ({a['depth_p95_px']:.3f} p95), "
              f"crop side {m['input_size']} px")
    print("accuracy vs ground truth and latency: python -m benchmarks int8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
