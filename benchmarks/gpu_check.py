"""GPU check: everything the GPU path promises, verified and measured in one command on an NVIDIA GPU (< 8 min).

``python -m benchmarks gpu-check [--plan] [--out DIR] [--json PATH] [--budget SECONDS] [--precisions fp32,fp16,int8]
[--skip STEP,...] [--reuse-engines] [--video PATH]``

Steps (``--plan`` prints them and exits; every step is timed and reported, a step that would overrun ``--budget``
is skipped and says so):

* ``environment``: GPU, compute capability, driver and CUDA versions, CuPy, TensorRT, ONNX Runtime; which backends
  run here and why the others do not.
* ``fp16-range``: every intermediate tensor of the FP32 CoarseNet and FineNet on real crops (ONNX Runtime, CPU)
  against the float16 limits (:func:`rtface.engines.graph.float16_ranges`), before FP16 engines are trusted.
* ``engines``: the TensorRT engines of both networks per precision, built fresh (timed; ``--reuse-engines`` keeps
  valid cached ones) into rtface's engine cache, then loaded from it (timed); the precision each one computes in.
* ``tests``: ``pytest -m gpu`` (the GPU tests: engines, rasteriser, GPU stages, whole pipelines), reusing the cache.
* ``networks``: each engine against ONNX Runtime on the CPU running the same file, on real crops, at every size
  of its profile: landmark px (CoarseNet) and depth px (FineNet), held to :data:`TOLERANCES` per precision.
* ``stages``: the GPU crop kernel against :func:`rtface.camera.warp_to_crop`, the GPU feedback stage against
  :func:`rtface.render.feedback.render_feedback`.
* ``pipelines``: ``Pipeline(backend="tensorrt")`` and ``backend="cuda"`` on two real clips against the CPU pipeline
  at the same precision (:data:`PIPELINE_TOLERANCES`); FP16 against FP32 is reported beside, looser.
* ``raster``: the CUDA rasteriser against its Numba twin on 200 random meshes (bit for bit), and ms per call.
* ``throughput``: faces per second of the networks (CoarseNet + FineNet), batch 1, 4 and 16, per precision,
  the stream synchronised around the timed loop.
* ``fps``: the 720p example clip re-encoded to 1080p (as ``benchmarks fps --size 1920x1080``): end-to-end FPS per
  backend and precision (no stage synchronisation), then ms per stage from a second run with
  ``Pipeline(sync_timings=True)`` (each stage's own GPU time).

Writes one JSON report (``--json``, default ``OUT/gpu_check.json``) and prints a table. Exit status 0 when every
step that ran passed, 1 otherwise; on a machine without an NVIDIA GPU it prints one line saying so and exits 1.
docs/gpu.md says how to run it on a desktop GPU and on a Jetson, and what the report means.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .report import machine, write_json

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Step:
    name: str
    what: str
    estimate_s: float  # what it usually needs; a step is skipped when fewer seconds than this are left


STEPS = (
    Step("environment", "GPU, driver, CUDA, CuPy, TensorRT, ONNX Runtime; which backends run and why not", 2),
    Step("fp16-range", "FP32 CoarseNet and FineNet on real crops (ONNX Runtime CPU): every tensor against float16", 15),
    Step("engines", "TensorRT engines of both networks per precision: fresh build (timed), load from the cache", 60),
    Step("tests", "pytest -m gpu (the GPU tests), engines from the cache", 60),
    Step("networks", "each engine against ONNX Runtime CPU on the same file, real crops: landmark px, depth px", 15),
    Step("stages", "GPU crop vs rtface.camera.warp_to_crop; GPU feedback vs render_feedback", 10),
    Step("pipelines", "Pipeline(backend=tensorrt/cuda) on two clips against the CPU pipeline, same precision", 40),
    Step("raster", "CUDA rasteriser vs the Numba twin on 200 random meshes (bit equality), ms per call", 20),
    Step("throughput", "faces per second of CoarseNet + FineNet at batch 1, 4, 16 per precision (synchronised)", 25),
    Step("fps", "1080p clip: end-to-end FPS per backend/precision, then ms per stage from a synchronised run", 45),
)
STEP_NAMES = tuple(s.name for s in STEPS)

#: Engine against ONNX Runtime on the CPU running the same ONNX file (FP16: the FP32 file), real crops:
#: (max over faces, mean over faces) of the largest landmark error per face (px of the crop, the 68 fixed
#: landmark vertices of the CoarseNet's fit) and of the largest depth error per face (px of the map, on its mask).
#: FP32 engines use TF32 tensor cores (10-bit mantissa products, FP32 sums); FP16 keeps 11 significant bits,
#: so a depth of 64-128 px is held to 1/16 px; INT8 engines and ONNX Runtime quantise alike but round apart.
TOLERANCES: dict[str, dict[str, tuple[float, float]]] = {
    "fp32": {"landmarks_px": (0.25, 0.05), "depth_px": (0.05, 0.01)},
    "fp16": {"landmarks_px": (1.0, 0.25), "depth_px": (0.25, 0.05)},
    "int8": {"landmarks_px": (0.5, 0.15), "depth_px": (0.3, 0.06)},
}
#: A GPU pipeline against the CPU pipeline at the same precision over a clip. From the second frame each crop comes
#: from the previous frame's landmarks, so FP32-vs-FP32 differences (float crop sampling against OpenCV's 1/32 px
#: fixed point, TF32 convolutions) carry over: landmarks within half a pixel (fixed landmark vertices, frame px),
#: frame depth compared where both have a face, relative to the clip frame's depth relief (p99 - p1).
#: A face found in one run and not the other (a marginal track in a crowded clip) may happen on 1 frame in 10.
PIPELINE_TOLERANCES = {"landmarks_px": 0.5, "depth_rel_median": 0.01, "depth_rel_p95": 0.05, "mask_mismatch": 0.03,
                       "face_count_mismatch_frac": 0.1}
#: FP16 engines against the FP32 CPU pipeline (reported, looser: two precisions apart).
PIPELINE_TOLERANCES_FP16 = {"landmarks_px": 1.5, "depth_rel_median": 0.02, "depth_rel_p95": 0.1, "mask_mismatch": 0.05,
                            "face_count_mismatch_frac": 0.1}
#: GPU crop (float bilinear) against cv2.warpAffine (1/32 px fixed point, uint8 output), RGB in [0, 1].
CROP_TOLERANCES = {"max": 8 / 255, "mean": 1 / 255}
#: GPU feedback against render_feedback: the raster is bit-identical, normals differ by float32 summation order.
FEEDBACK_TOLERANCES = {"normals_max": 2e-3, "pncc_max": 1e-5, "mask_mismatch": 0.0}


# -- comparisons (plain NumPy: the tests use them too, on the CPU and on the GPU) ----------------------------------

def to_numpy(a: Any) -> np.ndarray:
    """A NumPy copy of a NumPy or CuPy array."""
    return a.get() if type(a).__module__.split(".")[0] == "cupy" else np.asarray(a)


def within(metrics: Mapping[str, Any], limits: Mapping[str, Any]) -> bool:
    """Every ``metrics[k]`` is finite and at most ``limits[k]`` (a number, or a (max, mean) pair against the
    metric's (max, mean))."""
    for key, limit in limits.items():
        value = metrics.get(key)
        if value is None:
            return False
        pairs = zip(value, limit) if isinstance(limit, (tuple, list)) else [(value, limit)]
        for v, lim in pairs:
            if not np.isfinite(v) or v > lim:
                return False
    return True


def landmark_error(reference: Mapping[str, Any], outputs: Mapping[str, Any], contour: Any) -> tuple[float, float]:
    """(max, mean) over faces of the largest distance (px) between the fixed landmark vertices that two CoarseNet
    output sets (identity, expression, pose) put in the crop."""
    def project(out: Mapping[str, Any]) -> np.ndarray:
        return contour.project_landmarks(*(to_numpy(out[k]).astype(np.float64)
                                           for k in ("identity", "expression", "pose")), fixed=True)

    per_face = np.linalg.norm(project(reference) - project(outputs), axis=-1).max(axis=1)
    return float(np.max(per_face)), float(np.mean(per_face))


def depth_error(reference: Any, depth: Any, mask: Any) -> tuple[float, float]:
    """(max, mean) over faces of the largest |depth difference| (px of the map) on each face's mask; inf when a
    value is not finite (an FP16 overflow)."""
    ref = to_numpy(reference).astype(np.float64).reshape(len(reference), -1)
    got = to_numpy(depth).astype(np.float64).reshape(len(ref), -1)
    m = to_numpy(mask).reshape(len(ref), -1) > 0.5
    per_face = []
    for r, g, k in zip(ref, got, m):
        d = np.abs(r[k] - g[k]) if k.any() else np.zeros(1)
        per_face.append(float(d.max()) if np.isfinite(d).all() else float("inf"))
    return float(np.max(per_face)), float(np.mean(per_face))


def compare_outputs(kind: str, reference: Mapping[str, Any], outputs: Mapping[str, Any], feeds: Mapping[str, Any],
                    contour: Any = None) -> dict[str, Any]:
    """Agreement of one network's outputs with the reference's on the same feeds: ``landmarks_px`` for a CoarseNet
    (``kind`` "coarse", needs ``contour``), ``depth_px`` for a FineNet (on its ``mask`` input); always
    ``max_abs`` per output."""
    result: dict[str, Any] = {"max_abs": {k: float(np.nanmax(np.abs(to_numpy(outputs[k]).astype(np.float64)
                                                                 - to_numpy(v).astype(np.float64))))
                                          for k, v in reference.items()}}
    if kind == "coarse":
        result["landmarks_px"] = landmark_error(reference, outputs, contour)
    else:
        key = "depth" if "depth" in reference else "relief"  # the detail FineNet returns its relief alone
        mask = feeds.get("mask")
        if mask is None:
            mask = np.ones_like(to_numpy(reference[key]))
        result["depth_px"] = depth_error(reference[key], outputs[key], mask)
    return result


def edge_crops(frame_to_crop: np.ndarray, frame_shape: Sequence[int], size: int) -> list[np.ndarray]:
    """Two more frame -> crop affines at the scale of ``frame_to_crop``: the frame's top-left corner at the crop's
    centre (three quarters of the crop outside the frame: the replicated border), and the frame's centre turned by
    0.5 rad."""
    from rtface.camera import affine_scale

    k, h, w = affine_scale(frame_to_crop), frame_shape[0], frame_shape[1]
    corner = np.array([[k, 0.0, size / 2], [0.0, k, size / 2]])
    c, s = np.cos(0.5), np.sin(0.5)
    rotated = np.array([[k * c, -k * s, 0.0], [k * s, k * c, 0.0]])
    rotated[:, 2] = size / 2 - rotated[:, :2] @ np.array([w / 2, h / 2])
    return [corner, rotated]


def compare_crops(frame: np.ndarray, affines: Sequence[np.ndarray], size: int,
                  gpu_crops: Callable[[Any, list[np.ndarray]], Any], upload: Callable[[np.ndarray], Any]
                  ) -> dict[str, float]:
    """The pipeline's GPU crops (``gpu_crops(frame_on_device, affines)``, (N, 3, S, S) RGB [0, 1]) against
    ``preprocess(warp_to_crop(...))``: max and mean absolute difference (units of [0, 1])."""
    from rtface.camera import warp_to_crop
    from rtface.networks import preprocess

    ref = preprocess(np.stack([warp_to_crop(frame, a, size) for a in affines]))
    got = to_numpy(gpu_crops(upload(frame), list(affines)))
    d = np.abs(ref.astype(np.float64) - got)
    return {"max": float(d.max()), "mean": float(d.mean()), "crops": len(affines)}


def compare_feedback(verts: np.ndarray, triangles: np.ndarray, size: int, pncc: np.ndarray,
                     gpu_feedback: Callable[[Any], Any], upload: Callable[[np.ndarray], Any]) -> dict[str, float]:
    """The GPU feedback stage (``gpu_feedback(verts_on_device)``) against ``render_feedback``: largest normal and
    PNCC differences where both render the face, and the share of pixels covered by one only."""
    from rtface.render.feedback import render_feedback

    ref = render_feedback(verts, triangles, size, pncc)
    got = to_numpy(gpu_feedback(upload(np.ascontiguousarray(verts, np.float32))))
    cov_ref, cov_got = np.abs(ref).sum(1) > 0, np.abs(got).sum(1) > 0
    both = cov_ref & cov_got
    n = np.abs(ref[:, :3] - got[:, :3]).max(1)[both]
    p = np.abs(ref[:, 3:] - got[:, 3:]).max(1)[both]
    return {"normals_max": float(n.max()) if n.size else 0.0, "pncc_max": float(p.max()) if p.size else 0.0,
            "mask_mismatch": float((cov_ref ^ cov_got).sum() / max(1, (cov_ref | cov_got).sum())),
            "faces": int(len(verts))}


def _match(ref_faces: Sequence[Any], faces: Sequence[Any]) -> list[tuple[Any, Any]]:
    """Pairs of faces of two results of one frame: nearest box centres, closer than half the box's size."""
    pairs, free = [], list(faces)
    for f in ref_faces:
        if not free:
            break
        c, size = (f.box[:2] + f.box[2:]) / 2, float(np.max(f.box[2:] - f.box[:2]))
        dist = [float(np.linalg.norm((g.box[:2] + g.box[2:]) / 2 - c)) for g in free]
        j = int(np.argmin(dist))
        if dist[j] < 0.5 * size:
            pairs.append((f, free.pop(j)))
    return pairs


def compare_streams(reference: Sequence[Any], results: Sequence[Any]) -> dict[str, Any]:
    """Two runs of a clip (``FrameResult`` lists, e.g. CPU and GPU pipelines): frames whose face counts differ,
    the largest landmark distance (px, frame: fixed landmark vertices, and the 300-W landmarks), and the frame
    depth where both have a face relative to the reference frame's depth relief (p99 - p1): median and p95 over
    pixels, worst frame; the share of face pixels covered by one run only."""
    count_mismatch, lm3d, lm, rel_med, rel_p95, mismatch = 0, [0.0], [0.0], [0.0], [0.0], [0.0]
    for a, b in zip(reference, results):
        if len(a.faces) != len(b.faces):
            count_mismatch += 1
        for fa, fb in _match(a.faces, b.faces):
            lm3d.append(float(np.linalg.norm(fa.landmarks3d[:, :2] - fb.landmarks3d[:, :2], axis=1).max()))
            lm.append(float(np.linalg.norm(fa.landmarks - fb.landmarks, axis=1).max()))
        da, db = to_numpy(a.depth), to_numpy(b.depth)
        ca, cb = da > 0, db > 0
        if ca.any():
            lo, hi = np.percentile(da[ca], [1, 99])
            relief = max(float(hi - lo), 1e-6)
            both = ca & cb
            if both.any():
                d = np.abs(da[both].astype(np.float64) - db[both]) / relief
                rel_med.append(float(np.median(d)))
                rel_p95.append(float(np.percentile(d, 95)))
            mismatch.append(float((ca ^ cb).sum() / max(1, (ca | cb).sum())))
    frames = min(len(reference), len(results))
    return {"frames": frames, "face_count_mismatch": count_mismatch,
            "face_count_mismatch_frac": count_mismatch / max(frames, 1),
            "landmarks_px": max(lm3d), "landmarks300w_px": max(lm), "depth_rel_median": max(rel_med),
            "depth_rel_p95": max(rel_p95), "mask_mismatch": max(mismatch)}


def random_meshes(n: int = 200, seed: int = 0, face_model: Any = None) -> list[dict[str, Any]]:
    """``n`` meshes that exercise the rasteriser: triangle soups of many sizes (some vertices on pixel centres, some
    NaN, some beyond +-2**20 px), meshes with subnormal depths, and (with ``face_model``) posed face meshes."""
    rng = np.random.default_rng(seed)
    out = []
    kinds = ("soup", "edges", "subnormal", "face", "far") if face_model is not None else ("soup", "edges",
                                                                                            "subnormal", "far")
    for i in range(n):
        kind = kinds[i % len(kinds)]
        h, w = (int(v) for v in rng.integers(8, 160, 2))
        if kind == "face":
            size = int(rng.choice([128, 256, 384, 512]))
            from .raster import face_batch

            verts = face_batch(face_model, size, int(rng.integers(1, 4)), seed=seed + i)
            tris = np.ascontiguousarray(face_model.triangles, np.int32)
            h = w = size
        else:
            batch, nv, nt = int(rng.integers(1, 5)), int(rng.integers(3, 300)), int(rng.integers(1, 500))
            low, high = [-0.2 * w, -0.2 * h, -50], [1.2 * w, 1.2 * h, 50]
            verts = rng.uniform(low, high, (batch, nv, 3)).astype(np.float32)
            tris = rng.integers(0, nv, (nt, 3)).astype(np.int32)
            if kind == "edges":
                verts[0, : nv // 3, :2] = np.round(verts[0, : nv // 3, :2]) + 0.5
                verts[-1, rng.integers(0, nv)] = np.nan
            elif kind == "subnormal":
                verts[..., 2] = (rng.uniform(-1, 1, verts.shape[:2]) * rng.choice([1e-39, 1e-38, 1e-37])).astype(
                    np.float32)
            elif kind == "far":
                verts[0, : nv // 4, :2] *= np.float32(2.0 ** 21 / max(h, w))
        out.append({"kind": kind, "verts": np.ascontiguousarray(verts), "tris": tris, "height": h, "width": w})
    return out


def raster_agreement(meshes: Sequence[Mapping[str, Any]], rasterize_a: Callable[..., Any],
                     rasterize_b: Callable[..., Any]) -> dict[str, Any]:
    """How many meshes two rasterisers (``f(verts, tris, h, w) -> Raster``) render bit for bit alike; the first
    mismatches (mesh index, kind, fields)."""
    identical, mismatches = 0, []
    for i, m in enumerate(meshes):
        a = rasterize_a(m["verts"], m["tris"], m["height"], m["width"])
        b = rasterize_b(m["verts"], m["tris"], m["height"], m["width"])
        bad = [f for f in ("depth", "triangle", "barycentric", "mask")
               if not np.array_equal(to_numpy(getattr(a, f)).view(np.uint8), to_numpy(getattr(b, f)).view(np.uint8))]
        if bad:
            mismatches.append({"mesh": i, "kind": m["kind"], "fields": bad})
        else:
            identical += 1
    return {"meshes": len(meshes), "identical": identical, "mismatches": mismatches[:10]}


def faces_per_second(run_batch: Callable[[], Any], batch: int, synchronize: Callable[[], None],
                     seconds: float = 0.5, warmup: int = 3) -> dict[str, float]:
    """Faces per second of ``run_batch`` (one batch of ``batch`` faces), timed over about ``seconds`` with
    ``synchronize`` before and after the timed loop; ms per batch beside."""
    for _ in range(warmup):
        run_batch()
    synchronize()
    t0 = time.perf_counter()
    run_batch()
    synchronize()
    one = max(time.perf_counter() - t0, 1e-6)
    repeats = max(5, int(seconds / one))
    synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        run_batch()
    synchronize()
    wall = time.perf_counter() - t0
    return {"faces_per_s": batch * repeats / wall, "ms_per_batch": 1e3 * wall / repeats, "repeats": repeats}


# -- the run ---------------------------------------------------------------------------------------------------------

@dataclass
class Context:
    """What the steps share: options, the report, loaded things."""

    args: argparse.Namespace
    out: Path
    t_start: float
    report: dict[str, Any] = field(default_factory=dict)
    model: Any = None
    faces: list[Any] | None = None
    engines: dict[tuple[str, str], Any] = field(default_factory=dict)

    def left(self) -> float:
        return self.args.budget - (time.perf_counter() - self.t_start)


def _manifest() -> tuple[Path, dict[str, Any]]:
    from rtface.networks import load_manifest

    m = load_manifest()
    return Path(m["_dir"]), m


def onnx_for(key: str, precision: str) -> Path:
    """The shipped ONNX file TensorRT builds for a precision: the INT8 (QDQ) file for "int8", else the FP32 file."""
    d, m = _manifest()
    entry = m["networks"][key]
    return d / (entry["int8"]["file"] if precision == "int8" else entry["file"])


def _faces(ctx: Context) -> list[Any]:
    if ctx.faces is None:
        from .gpu_inputs import real_faces

        ctx.faces = real_faces(8)
    return ctx.faces


def _model(ctx: Context) -> Any:
    if ctx.model is None:
        from rtface.face_model import FaceModel

        ctx.model = FaceModel.load()
    return ctx.model


def step_environment(ctx: Context) -> dict[str, Any]:
    import platform

    import cupy as cp

    from rtface.engines import why_unavailable

    info = machine()
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"]
    info.update(gpu=name.decode() if isinstance(name, bytes) else str(name),
                compute_capability=f"{props['major']}.{props['minor']}",
                gpu_memory_gib=round(props["totalGlobalMem"] / 2 ** 30, 1),
                cuda_runtime=cp.cuda.runtime.runtimeGetVersion(), cuda_driver=cp.cuda.runtime.driverGetVersion(),
                cupy=cp.__version__, arch=platform.machine(), jetson=Path("/etc/nv_tegra_release").exists())
    try:
        import tensorrt

        info["tensorrt"] = tensorrt.__version__
    except Exception as exc:  # not installed, or its libraries do not load
        info["tensorrt"] = f"unavailable ({type(exc).__name__}: {exc})"
    import onnxruntime

    info["onnxruntime"] = onnxruntime.__version__
    info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    info["why_not"] = {b: why_unavailable(b) for b in ("tensorrt", "cuda")}
    ctx.report["machine"] = info
    return {"ok": True, "summary": f"{info['gpu']} (compute {info['compute_capability']}), backends "
                                   f"{', '.join(info['backends'])}", **info}


def step_fp16_range(ctx: Context) -> dict[str, Any]:
    from rtface.engines import load_engine
    from rtface.engines.graph import float16_ranges
    from rtface.engines.tensorrt import DYNAMIC_SPATIAL
    from rtface.errors import InputError

    from .gpu_inputs import input_size, network_feeds

    if importlib.util.find_spec("onnx") is None:
        return {"skipped": "needs the onnx package (pip install onnx, or pip install -e '.[dev]')"}
    out: dict[str, Any] = {"ok": True, "networks": {}}
    for key in ("coarse", "fine"):
        path = onnx_for(key, "fp32")
        with load_engine(path, backend="cpu") as engine:
            inputs = engine.inputs
        try:
            sizes = [input_size(inputs)]
        except InputError:
            sizes = [DYNAMIC_SPATIAL[0], DYNAMIC_SPATIAL[-1]]
        faces = _faces(ctx)
        feeds = [network_feeds(inputs, faces if s <= 256 else faces[:3], _model(ctx), size=s) for s in sizes]
        report = float16_ranges(path, feeds)
        out["networks"][key] = report.to_json()
        out["ok"] &= report.ok
        print(report.format(), file=sys.stderr)
    bad = [f"{k}: {', '.join(t['name'] for t in v['overflows'])}" for k, v in out["networks"].items() if not v["ok"]]
    out["summary"] = "every tensor within float16" if not bad else "above float16: " + "; ".join(bad)
    return out


def step_engines(ctx: Context) -> dict[str, Any]:
    from rtface.engines import TensorRTEngine, build_engines, why_unavailable

    reason = why_unavailable("tensorrt")
    if reason:
        return {"skipped": reason}
    rows = []
    for precision in ctx.args.precisions:
        for key in ("coarse", "fine"):
            path = onnx_for(key, precision)
            row: dict[str, Any] = {"network": key, "precision": precision, "file": path.name}
            rows.append(row)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    t0 = time.perf_counter()
                    (engine_file,) = build_engines([path], precision=precision, force=not ctx.args.reuse_engines)
                    row["build_s"] = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    engine = TensorRTEngine(path, precision=precision)
                    row["load_s"] = time.perf_counter() - t0
                except Exception as exc:  # one engine failing is a finding; the others still get built
                    row["error"] = f"{type(exc).__name__}: {exc}"
                    print(f"engine {key} {precision}: {row['error']}", file=sys.stderr)
                    continue
                finally:
                    row["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
            row.update(built=engine.precision, from_cache=engine.from_cache, engine=str(engine_file),
                       engine_mb=round(engine_file.stat().st_size / 2 ** 20, 2))
            ctx.engines[(key, precision)] = engine
            print(f"engine {key} {precision}: built {row['built']} in {row['build_s']:.1f} s, loaded from the cache "
                  f"in {row['load_s']:.2f} s", file=sys.stderr)
    expected = {"fp32": "fp32", "fp16": "fp16", "int8": "int8"}
    import tensorrt as trt

    weak = hasattr(trt.BuilderFlag, "FP16")
    wrong = [r for r in rows if "error" in r or (r["built"] != expected[r["precision"]]
                                                 and (weak or r["precision"] != "fp16"))]
    return {"ok": not wrong and all(r.get("from_cache") for r in rows), "rows": rows,
            "summary": ", ".join(f"{r['network']} {r['precision']}->{r['built']} {r['build_s']:.0f}s" if "error" not in r
                                 else f"{r['network']} {r['precision']}: {r['error'][:60]}" for r in rows)}


#: The GPU tests (``-m gpu`` in these files), and the CUDA sources compiled by NVRTC (no marker: they run on any
#: machine with NVRTC, and every GPU machine has it).
GPU_TEST_PATHS = ("tests/engines", "tests/render", "tests/test_pipeline_gpu.py")
PTX_TEST_PATHS = ("tests/render/test_kernel_ptx.py",)


def _junit(path: Path) -> tuple[dict[str, int], list[str], list[str]]:
    """Counts (passed, failed, errors, skipped), failed test ids and skipped tests with reasons of a JUnit file."""
    import xml.etree.ElementTree as ET

    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failed, skipped = [], []
    if path.exists():
        for case in ET.parse(path).getroot().iter("testcase"):
            name = f"{case.get('classname')}::{case.get('name')}"
            if case.find("failure") is not None:
                counts["failed"] += 1
                failed.append(name)
            elif case.find("error") is not None:
                counts["errors"] += 1
                failed.append(name)
            elif case.find("skipped") is not None:
                counts["skipped"] += 1
                skipped.append(f"{name}: {case.find('skipped').get('message', '')}")
            else:
                counts["passed"] += 1
    return counts, failed, skipped


def step_tests(ctx: Context) -> dict[str, Any]:
    if not (REPO / "tests").is_dir():
        return {"skipped": "no tests/ folder here (run gpu-check from a checkout of rtface)"}
    timeout = max(30.0, min(300.0, ctx.left() - 150.0))
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failed: list[str] = []
    skipped: list[str] = []
    log, codes = [], []
    for label, marker, paths in (("gpu", ["-m", "gpu"], GPU_TEST_PATHS), ("ptx", [], PTX_TEST_PATHS)):
        xml = ctx.out / f"{label}_tests.xml"
        cmd = [sys.executable, "-m", "pytest", *marker, "-q", "-rs", "-p", "no:cacheprovider", f"--junitxml={xml}",
               *paths]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"ok": False, "summary": f"{' '.join(cmd[2:])} did not finish in {timeout:.0f} s"}
        timeout = max(30.0, timeout - (time.perf_counter() - t0))
        log.append(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
        codes.append(proc.returncode)
        c, f, s = _junit(xml)
        counts = {k: counts[k] + c[k] for k in counts}
        failed += f
        skipped += s
    (ctx.out / "gpu_tests.log").write_text("\n".join(log))
    ok = all(code in (0, 5) for code in codes) and not failed and counts["passed"] > 0  # 5: nothing collected
    return {"ok": ok, "returncodes": codes, **counts, "failed_tests": failed, "skipped_tests": skipped,
            "summary": f"{counts['passed']} passed, {counts['failed']} failed, {counts['errors']} errors, "
                       f"{counts['skipped']} skipped", "tail": log[0][-3000:]}


def step_networks(ctx: Context) -> dict[str, Any]:
    from rtface.contour import Contour
    from rtface.engines import OnnxRuntimeEngine, load_engine, why_unavailable
    from rtface.engines.tensorrt import DYNAMIC_SPATIAL
    from rtface.errors import InputError

    from .gpu_inputs import input_size, network_feeds

    contour = Contour(_model(ctx))
    candidates: list[tuple[str, str, str, Any]] = [(k, p, "tensorrt", e) for (k, p), e in ctx.engines.items()]
    if why_unavailable("cuda") is None:
        for key in ("coarse", "fine"):
            candidates.append((key, "fp32", "cuda", load_engine(onnx_for(key, "fp32"), backend="cuda")))
    if not candidates:
        return {"skipped": "no GPU engine to compare (TensorRT and ONNX Runtime CUDA unavailable)"}
    rows, references = [], {}
    for key, precision, backend, engine in candidates:
        ref_file = onnx_for(key, precision)
        if ref_file not in references:
            references[ref_file] = OnnxRuntimeEngine(ref_file)
        ref = references[ref_file]
        try:
            sizes = [input_size(engine.inputs)]
        except InputError:
            sizes = list(DYNAMIC_SPATIAL)
        for size in sizes:
            feeds = network_feeds(engine.inputs, _faces(ctx), _model(ctx), size=size)
            metrics = compare_outputs(key, ref.run(feeds), engine.run(feeds), feeds, contour)
            tol = TOLERANCES[precision]
            metrics.update(network=key, precision=precision, backend=backend, built=engine.precision, size=size,
                           faces=len(_faces(ctx)), ok=within(metrics, {k: v for k, v in tol.items() if k in metrics}),
                           tolerance=tol)
            rows.append(metrics)
    bad = [f"{r['backend']} {r['network']} {r['precision']} {r['size']}px" for r in rows if not r["ok"]]
    return {"ok": not bad, "rows": rows, "summary": "all within tolerance" if not bad else "outside: " + ", ".join(bad)}


def step_stages(ctx: Context) -> dict[str, Any]:
    import cupy as cp

    from rtface.pipeline import Pipeline, _GpuStages
    from rtface.render.feedback import pncc_code

    from .gpu_inputs import mesh_in_map

    pipe = Pipeline(backend="cpu", precision="fp32", face_model=_model(ctx))
    stages = _GpuStages(pipe)  # the GPU stages of the pipeline, on CuPy (no GPU network runtime needed)
    s = pipe.size
    crops: dict[str, Any] = {"max": 0.0, "mean": 0.0, "crops": 0}
    by_frame: dict[int, tuple[np.ndarray, list[np.ndarray]]] = {}
    for f in _faces(ctx):
        by_frame.setdefault(id(f.image), (f.image, []))[1].append(f.to_map(s))
    for image, affines in by_frame.values():
        m = compare_crops(image, affines + edge_crops(affines[0], image.shape, s), s, stages.crops, cp.asarray)
        crops = {"max": max(crops["max"], m["max"]), "mean": max(crops["mean"], m["mean"]),
                 "crops": crops["crops"] + m["crops"]}
    verts = np.stack([mesh_in_map(f, s) for f in _faces(ctx)])
    fb = compare_feedback(verts, np.ascontiguousarray(_model(ctx).triangles, np.int32), s, pncc_code(_model(ctx).mean),
                          stages.feedback, cp.asarray)
    ok_crop, ok_fb = within(crops, CROP_TOLERANCES), within(fb, FEEDBACK_TOLERANCES)
    return {"ok": ok_crop and ok_fb, "crop": {**crops, "ok": ok_crop, "tolerance": CROP_TOLERANCES},
            "feedback": {**fb, "ok": ok_fb, "tolerance": FEEDBACK_TOLERANCES},
            "summary": f"crop max {crops['max'] * 255:.2f}/255 mean {crops['mean'] * 255:.3f}/255; feedback normals "
                       f"{fb['normals_max']:.1e}, pncc {fb['pncc_max']:.1e}, mask {fb['mask_mismatch']:.1%}"}


def _clip(path: Path, n: int) -> list[np.ndarray]:
    from rtface.sources import open_source

    with open_source(path) as src:
        return [f.image for _, f in zip(range(n), src)]


def step_pipelines(ctx: Context) -> dict[str, Any]:
    from rtface.assets import data_path
    from rtface.engines import why_unavailable
    from rtface.pipeline import Pipeline

    clips = {name: _clip(data_path(f"video/{name}"), n) for name, n in
             (("dafoe_1280x720.mp4", 30), ("hamilton_640x360.mp4", 20)) if data_path(f"video/{name}").exists()}
    if not clips:
        return {"skipped": "no clips: set RTFACE_ASSETS to a folder with video/dafoe_1280x720.mp4"}
    runs = [("cuda", "fp32", "fp32"), ("tensorrt", "fp32", "fp32"), ("tensorrt", "int8", "int8"),
            ("tensorrt", "fp16", "fp32")]
    runs = [r for r in runs if r[1] in ctx.args.precisions or r[0] == "cuda"]
    references: dict[tuple[str, str], list[Any]] = {}
    rows = []
    for backend, precision, ref_precision in runs:
        reason = why_unavailable(backend)
        if reason:
            rows.append({"backend": backend, "precision": precision, "skipped": reason})
            continue
        try:
            pipe = Pipeline(backend=backend, precision=precision, smoothing=False, face_model=_model(ctx))
        except Exception as exc:
            rows.append({"backend": backend, "precision": precision, "clip": "-", "ok": False,
                         "error": f"{type(exc).__name__}: {exc}"})
            continue
        for clip, frames in clips.items():
            if (clip, ref_precision) not in references:
                cpu = Pipeline(backend="cpu", precision=ref_precision, smoothing=False, face_model=_model(ctx))
                references[(clip, ref_precision)] = list(cpu.stream(frames))
            try:
                got = list(pipe.stream(frames))
            except Exception as exc:
                rows.append({"backend": backend, "precision": precision, "clip": clip, "ok": False,
                             "error": f"{type(exc).__name__}: {exc}"})
                continue
            metrics = compare_streams(references[(clip, ref_precision)], got)
            tol = PIPELINE_TOLERANCES if precision == ref_precision else PIPELINE_TOLERANCES_FP16
            metrics.update(backend=backend, precision=precision, built=pipe.precision, against=f"cpu {ref_precision}",
                           clip=clip, ok=within(metrics, tol), tolerance=tol)
            rows.append(metrics)
        pipe.close()
    ran = [r for r in rows if "skipped" not in r and "error" not in r]
    bad = [f"{r['backend']} {r['precision']} {r['clip']}" for r in rows if "skipped" not in r and not r["ok"]]
    return {"ok": bool(ran) and not bad, "rows": rows,
            "summary": "; ".join(f"{r['backend']} {r['precision']} {r['clip'][:7]}: lm {r['landmarks_px']:.2f} px, "
                                 f"depth p95 {r['depth_rel_p95']:.1%}" for r in ran) or "no GPU backend ran"}


def step_raster(ctx: Context) -> dict[str, Any]:
    from rtface.render import rasterize

    from .raster import bench_cpu, bench_cuda, face_batch

    meshes = random_meshes(200, seed=1, face_model=_model(ctx))
    agreement = raster_agreement(meshes, lambda v, t, h, w: rasterize(v, t, h, w, backend="cuda"),
                                 lambda v, t, h, w: rasterize(v, t, h, w, backend="cpu"))
    tris = np.ascontiguousarray(_model(ctx).triangles, np.int32)
    timing = []
    for size in (128, 256, 512):
        for batch in (1, 16):
            verts = face_batch(_model(ctx), size, batch)
            timing.append({"size": size, "batch": batch, "cpu_ms": bench_cpu(verts, tris, size, 10),
                           "cuda_ms": bench_cuda(verts, tris, size, 20)})
    ok = agreement["identical"] == agreement["meshes"]
    return {"ok": ok, **agreement, "timing": timing,
            "summary": f"{agreement['identical']}/{agreement['meshes']} identical; face 256 px batch 16: CUDA "
                       f"{timing[3]['cuda_ms']:.2f} ms, Numba {timing[3]['cpu_ms']:.1f} ms"}


def step_throughput(ctx: Context) -> dict[str, Any]:
    import cupy as cp

    from rtface.engines import load_engine, why_unavailable
    from rtface.errors import InputError

    from .gpu_inputs import input_size, network_feeds, tile

    sets: dict[tuple[str, str], tuple[Any, Any]] = {}
    for precision in ctx.args.precisions:
        if ("coarse", precision) in ctx.engines and ("fine", precision) in ctx.engines:
            sets[("tensorrt", precision)] = (ctx.engines[("coarse", precision)], ctx.engines[("fine", precision)])
    if why_unavailable("cuda") is None:
        sets[("cuda", "fp32")] = tuple(load_engine(onnx_for(k, "fp32"), backend="cuda") for k in ("coarse", "fine"))
    if not sets:
        return {"skipped": "no GPU engine (TensorRT and ONNX Runtime CUDA unavailable)"}
    stream = cp.cuda.get_current_stream()
    rows = []
    for (backend, precision), (coarse, fine) in sets.items():
        try:
            fine_size = input_size(fine.inputs)
        except InputError:
            fine_size = 256  # the profile's optimum
        cf = network_feeds(coarse.inputs, _faces(ctx), _model(ctx))
        ff = network_feeds(fine.inputs, _faces(ctx), _model(ctx), size=fine_size)
        row: dict[str, Any] = {"backend": backend, "precision": precision, "built": coarse.precision,
                               "fine_size": fine_size}
        for batch in (1, 4, 16):
            c = {k: cp.asarray(v) for k, v in tile(cf, batch).items()}
            f = {k: cp.asarray(v) for k, v in tile(ff, batch).items()}
            row[f"batch{batch}"] = faces_per_second(lambda: (coarse.run(c), fine.run(f)), batch, stream.synchronize)
        rows.append(row)
    return {"ok": True, "rows": rows,
            "summary": "; ".join(f"{r['backend']} {r['precision']}: {r['batch1']['faces_per_s']:.0f}/"
                                 f"{r['batch4']['faces_per_s']:.0f}/{r['batch16']['faces_per_s']:.0f} faces/s"
                                 for r in rows)}


def step_fps(ctx: Context) -> dict[str, Any]:
    from rtface.assets import data_path
    from rtface.engines import why_unavailable

    from .fps import COLUMNS, reencode, run_rtface

    src = Path(ctx.args.video) if ctx.args.video else data_path("video/dafoe_1280x720.mp4")
    if not src.exists():
        return {"skipped": f"{src} does not exist (pass --video)"}
    clip = reencode(src, ctx.out / f"{src.stem}_1080p.mp4", size=(1920, 1080), max_frames=120)
    rows = []
    runs = [("tensorrt", "auto"), ("tensorrt", "fp32"), ("tensorrt", "int8"), ("cuda", "fp32"), ("cpu", "auto")]
    for backend, precision in runs:
        if precision in ("fp32", "int8") and backend == "tensorrt" and precision not in ctx.args.precisions:
            continue
        reason = why_unavailable(backend)
        if reason:
            rows.append({"backend": backend, "precision": precision, "skipped": reason})
            continue
        try:
            r = run_rtface(clip, backend, 1, frames=110, warmup=10, precision=precision)
            if backend != "cpu":
                synced = run_rtface(clip, backend, 1, frames=60, warmup=5, precision=precision, sync_timings=True)
                r["ms_unsynced"], r["ms"] = r["ms"], synced["ms"]
                r["fps_synced"] = synced["fps"]
        except Exception as exc:
            rows.append({"backend": backend, "precision": precision, "skipped": f"ERROR {type(exc).__name__}: {exc}",
                         "error": True})
            continue
        rows.append(r)
        print(f"fps {backend} {r['precision']}: {r['fps']:.1f}", file=sys.stderr)
    ran = [r for r in rows if "skipped" not in r]
    return {"ok": bool(ran) and not any(r.get("error") for r in rows), "clip": str(clip), "columns": list(COLUMNS),
            "rows": rows,
            "summary": "; ".join(f"{r['backend']} {r['precision']} {r['fps']:.0f} FPS" for r in ran)}


STEP_FUNCTIONS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "environment": step_environment, "fp16-range": step_fp16_range, "engines": step_engines, "tests": step_tests,
    "networks": step_networks, "stages": step_stages, "pipelines": step_pipelines, "raster": step_raster,
    "throughput": step_throughput, "fps": step_fps,
}


def plan_text(budget: float) -> str:
    lines = [f"gpu-check runs these steps in order (time budget {budget:.0f} s; a step that would overrun it is "
             f"skipped and reported):"]
    lines += [f"  {i + 1:2d}. {s.name:12s} {s.what}" for i, s in enumerate(STEPS)]
    lines.append("Writes one JSON report (--json, default OUT/gpu_check.json) and prints a table; exit 1 when a "
                 "step fails or there is no NVIDIA GPU.")
    return "\n".join(lines)


def _fmt_pair(v: Any) -> str:
    return f"{v[0]:.3g}/{v[1]:.2g}" if isinstance(v, (tuple, list)) else f"{v:.3g}"


def format_table(report: Mapping[str, Any]) -> str:
    m = report.get("machine", {})
    lines = [f"rtface gpu-check on {m.get('gpu', '?')} (compute {m.get('compute_capability', '?')}, "
             f"{m.get('gpu_memory_gib', '?')} GiB), CUDA runtime {m.get('cuda_runtime', '?')}, driver "
             f"{m.get('cuda_driver', '?')}; TensorRT {m.get('tensorrt', '?')}, CuPy {m.get('cupy', '?')}, ONNX Runtime "
             f"{m.get('onnxruntime', '?')}; CPU {m.get('cpu', '?')}",
             f"{'step':12s} {'status':8s} {'s':>6s}  summary"]
    for name, r in report["steps"].items():
        status = "skipped" if "skipped" in r else ("ERROR" if "error" in r else ("ok" if r.get("ok") else "FAILED"))
        summary = r.get("skipped") or r.get("error") or r.get("summary", "")
        lines.append(f"{name:12s} {status:8s} {r.get('seconds', 0.0):6.1f}  {str(summary)[:150]}")
    net = report["steps"].get("networks", {}).get("rows")
    if net:
        lines += ["", "networks: engine vs ONNX Runtime CPU on the same file, real crops (max/mean over faces)",
                  f"{'backend':9s} {'network':7s} {'asked':5s} {'built':5s} {'size':>4s} {'landmarks px':>14s} "
                  f"{'depth px':>14s}  ok"]
        for r in net:
            lines.append(f"{r['backend']:9s} {r['network']:7s} {r['precision']:5s} {r['built']:5s} {r['size']:4d} "
                         f"{_fmt_pair(r['landmarks_px']) if 'landmarks_px' in r else '':>14s} "
                         f"{_fmt_pair(r['depth_px']) if 'depth_px' in r else '':>14s}  {'yes' if r['ok'] else 'NO'}")
    pipes = report["steps"].get("pipelines", {}).get("rows")
    if pipes:
        lines += ["", "pipelines against the CPU pipeline (worst frame): landmarks px, depth |diff| / relief "
                      "median and p95, face pixels covered by one only"]
        for r in pipes:
            if "skipped" in r or "error" in r:
                lines.append(f"  {r['backend']:9s} {r['precision']:5s} {r.get('skipped') or 'ERROR ' + r['error']}")
            else:
                lines.append(f"  {r['backend']:9s} {r['precision']:5s} vs {r['against']:9s} {r['clip'][:20]:20s} "
                             f"{r['landmarks_px']:6.3f} px {r['depth_rel_median']:7.2%} {r['depth_rel_p95']:7.2%} "
                             f"{r['mask_mismatch']:6.2%} {'ok' if r['ok'] else 'NO'}")
    thr = report["steps"].get("throughput", {}).get("rows")
    if thr:
        lines += ["", "faces per second, networks only (CoarseNet + FineNet), synchronised",
                  f"{'backend':9s} {'prec':5s} {'fine px':>7s} {'batch 1':>9s} {'batch 4':>9s} {'batch 16':>9s}"]
        for r in thr:
            lines.append(f"{r['backend']:9s} {r['built']:5s} {r['fine_size']:7d} "
                         + " ".join(f"{r[f'batch{b}']['faces_per_s']:9.0f}" for b in (1, 4, 16)))
    fps = report["steps"].get("fps", {})
    if fps.get("rows"):
        cols = fps["columns"]
        lines += ["", "1080p clip, 1 face: FPS (no stage sync); ms per stage from a synchronised run",
                  f"{'backend':9s} {'prec':5s} {'FPS':>6s} " + " ".join(f"{c:>7s}" for c in cols)]
        for r in fps["rows"]:
            if "skipped" in r:
                lines.append(f"{r['backend']:9s} {r['precision']:5s} skipped: {r['skipped']}")
            else:
                lines.append(f"{r['backend']:9s} {r['precision']:5s} {r['fps']:6.1f} "
                             + " ".join(f"{r['ms'].get(c, 0.0):7.2f}" for c in cols))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks gpu-check", description=__doc__.splitlines()[0])
    p.add_argument("--plan", action="store_true", help="print the steps and exit (no GPU needed)")
    p.add_argument("--out", type=Path, default=Path("gpu-check"), help="folder for the report, logs and the clip")
    p.add_argument("--json", type=Path, default=None, help="the JSON report (default OUT/gpu_check.json)")
    p.add_argument("--budget", type=float, default=450.0, help="seconds for the whole check (default 450)")
    p.add_argument("--precisions", default="fp32,fp16,int8", help="TensorRT precisions (default fp32,fp16,int8)")
    p.add_argument("--skip", default="", help=f"steps to leave out, comma-separated ({', '.join(STEP_NAMES)})")
    p.add_argument("--reuse-engines", action="store_true",
                   help="keep valid cached engines instead of timing fresh builds")
    p.add_argument("--video", default=None, help="clip for the FPS step (default the 720p example, re-encoded)")
    args = p.parse_args(argv)
    args.precisions = [s.strip() for s in args.precisions.split(",") if s.strip()]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if set(args.precisions) - {"fp32", "fp16", "int8"} or not args.precisions:
        p.error("--precisions takes fp32, fp16 and/or int8")
    if skip - set(STEP_NAMES):
        p.error(f"--skip takes step names: {', '.join(STEP_NAMES)}")
    if args.plan:
        print(plan_text(args.budget))
        return 0

    from rtface.engines import why_unavailable

    reason = why_unavailable("gpu")
    if reason:
        print(f"gpu-check: no NVIDIA GPU here ({reason}); run it on a machine with one (docs/gpu.md)",
              file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.json or args.out / "gpu_check.json"
    ctx = Context(args=args, out=args.out, t_start=time.perf_counter())
    ctx.report = {"check": "gpu-check", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "budget_s": args.budget,
                  "precisions": args.precisions, "tolerances": {"networks": TOLERANCES, "pipelines": PIPELINE_TOLERANCES,
                                                                "pipelines_fp16": PIPELINE_TOLERANCES_FP16,
                                                                "crop": CROP_TOLERANCES, "feedback": FEEDBACK_TOLERANCES},
                  "steps": {}}
    for step in STEPS:
        if step.name in skip:
            ctx.report["steps"][step.name] = {"skipped": "--skip"}
            continue
        if ctx.left() < step.estimate_s:
            ctx.report["steps"][step.name] = {"skipped": f"time budget: {ctx.left():.0f} s left, needs ~{step.estimate_s:.0f}"}
            continue
        print(f"gpu-check: {step.name} ...", file=sys.stderr)
        t0 = time.perf_counter()
        try:
            result = STEP_FUNCTIONS[step.name](ctx)
        except Exception as exc:
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
        result["seconds"] = time.perf_counter() - t0
        ctx.report["steps"][step.name] = result
        write_json(json_path, _jsonable(ctx.report))  # after every step: a crash keeps what ran
    ctx.report["seconds"] = time.perf_counter() - ctx.t_start
    write_json(json_path, _jsonable(ctx.report))
    print(format_table(ctx.report))
    print(f"report: {json_path} ({ctx.report['seconds']:.0f} s)")
    failed = [n for n, r in ctx.report["steps"].items() if "skipped" not in r and not r.get("ok")]
    return 1 if failed else 0


def _jsonable(value: Any) -> Any:
    """The report with NumPy scalars, tuples and paths made JSON-friendly."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


if __name__ == "__main__":
    sys.exit(main())
