"""``python -m benchmarks gpu-check`` without a GPU: the plan, the one-line refusal, and the comparisons it makes,
run here on CPU engines and the Numba rasteriser (on a GPU the same functions compare the GPU path)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import gpu_check
from benchmarks.gpu_check import (
    STEP_FUNCTIONS,
    STEP_NAMES,
    TOLERANCES,
    compare_outputs,
    compare_streams,
    faces_per_second,
    format_table,
    raster_agreement,
    random_meshes,
    within,
)
from tests.conftest import REPO, shared


def _run(*args):
    return subprocess.run([sys.executable, "-m", "benchmarks", "gpu-check", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_plan_lists_every_step():
    out = _run("--plan")
    assert out.returncode == 0, out.stderr
    for name in STEP_NAMES:
        assert f" {name} " in out.stdout
    assert set(STEP_FUNCTIONS) == set(STEP_NAMES)
    assert "pytest -m gpu" in out.stdout and "200 random meshes" in out.stdout and "1080p" in out.stdout


def test_without_a_gpu_it_says_so_in_one_line():
    from rtface.engines import why_unavailable

    if why_unavailable("gpu") is None:
        pytest.skip("this machine has a GPU: gpu-check runs here")
    out = _run()
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-check: no NVIDIA GPU here"), out.stderr
    assert out.stdout == ""


def test_bad_options_are_refused():
    assert _run("--precisions", "fp8").returncode == 2
    assert _run("--skip", "everything").returncode == 2


def test_registered_but_not_in_all():
    from benchmarks.__main__ import BENCHMARKS, NOT_IN_ALL

    assert "gpu-check" in BENCHMARKS and "gpu-check" in NOT_IN_ALL


def test_within():
    assert within({"a": 0.1, "b": (0.2, 0.05)}, {"a": 0.2, "b": (0.25, 0.1)})
    assert not within({"a": 0.3}, {"a": 0.2})
    assert not within({"b": (0.2, 0.2)}, {"b": (0.25, 0.1)})  # the mean too
    assert not within({"a": float("nan")}, {"a": 1.0}) and not within({"a": float("inf")}, {"a": 1.0})
    assert not within({}, {"a": 1.0})
    assert set(TOLERANCES) == {"fp32", "fp16", "int8"}


@pytest.fixture(scope="module")
def faces():
    shared("ict-facekit/FaceXModel.tar.xz")
    shared("yunet/face_detection_yunet_2023mar.onnx")
    from benchmarks.gpu_inputs import real_faces

    return real_faces(3)


@pytest.mark.parametrize("key", ["coarse", "fine"])
def test_compare_outputs_of_two_cpu_engines(key, faces, face_model):
    """The networks step's comparison, FP32 against INT8 on the CPU: the gap the manifest reports (landmarks ~0.2
    px), far above an engine against itself (0), and the depth compared on the mask only."""
    from benchmarks.gpu_inputs import network_feeds
    from rtface.contour import Contour
    from rtface.engines import load_engine

    contour = Contour(face_model)
    with load_engine(gpu_check.onnx_for(key, "fp32"), backend="cpu", threads=1) as fp32, \
            load_engine(gpu_check.onnx_for(key, "int8"), backend="cpu", threads=1) as int8:
        feeds = network_feeds(fp32.inputs, faces, face_model, size=None if key == "coarse" else 192)
        ref = fp32.run(feeds)
        same = compare_outputs(key, ref, fp32.run(feeds), feeds, contour)
        apart = compare_outputs(key, ref, int8.run(feeds), feeds, contour)
    metric = "landmarks_px" if key == "coarse" else "depth_px"
    assert same[metric] == (0.0, 0.0) and within(same, {metric: TOLERANCES["fp32"][metric]})
    assert 0 < apart[metric][1] <= apart[metric][0] < 5
    if key == "fine":
        out = "depth" if "depth" in ref else "relief"
        broken = dict(ref)
        broken[out] = ref[out].copy()
        broken[out][0, 0][feeds["mask"][0, 0] > 0.5] = np.inf  # an FP16 overflow
        assert not within(compare_outputs(key, ref, broken, feeds), {metric: TOLERANCES["fp16"][metric]})


def test_compare_streams_of_two_cpu_runs(face_model):
    """The pipelines step's comparison on two CPU runs of a clip: identical runs give zeros, FP32 against INT8
    gives the small differences it is meant to bound."""
    from rtface.pipeline import Pipeline
    from rtface.sources import open_source

    with open_source(shared("video/dafoe_1280x720.mp4")) as src:
        clip = [f.image for _, f in zip(range(4), src)]
    fp32 = Pipeline(backend="cpu", precision="fp32", smoothing=False, face_model=face_model)
    a, b = list(fp32.stream(clip)), list(fp32.stream(clip))
    same = compare_streams(a, b)
    assert same["frames"] == 4 and same["face_count_mismatch"] == 0
    assert same["landmarks_px"] == 0 and same["depth_rel_p95"] == 0 and same["mask_mismatch"] == 0
    int8 = list(Pipeline(backend="cpu", precision="int8", smoothing=False, face_model=face_model).stream(clip))
    apart = compare_streams(a, int8)
    assert 0 < apart["landmarks_px"] < 3 and 0 < apart["depth_rel_median"] < 0.05


def test_random_meshes_and_raster_agreement(face_model):
    """The raster step's meshes (every kind, subnormal depths among them) and its bitwise comparison, here Numba
    against itself; a changed depth bit is found."""
    from rtface.render import rasterize

    meshes = random_meshes(10, seed=3, face_model=face_model)
    assert {m["kind"] for m in meshes} == {"soup", "edges", "subnormal", "face", "far"}
    cpu = lambda v, t, h, w: rasterize(v, t, h, w, backend="cpu")  # noqa: E731
    assert raster_agreement(meshes, cpu, cpu) == {"meshes": 10, "identical": 10, "mismatches": []}

    def nudged(v, t, h, w):
        r = cpu(v, t, h, w)
        depth = r.depth.copy()
        depth.view(np.uint32)[r.mask] ^= 1  # one ulp
        return type(r)(depth=depth, triangle=r.triangle, barycentric=r.barycentric, mask=r.mask)

    out = raster_agreement(meshes[:5], cpu, nudged)
    assert out["identical"] < 5 and all(m["fields"] == ["depth"] for m in out["mismatches"])


def test_faces_per_second():
    calls = []
    r = faces_per_second(lambda: calls.append(1), 4, lambda: None, seconds=0.01)
    assert r["repeats"] >= 5 and r["faces_per_s"] > 0 and len(calls) == 3 + 1 + r["repeats"]


def test_format_table_of_a_report():
    report = {"machine": {"gpu": "NVIDIA H100", "compute_capability": "9.0"},
              "steps": {"environment": {"ok": True, "summary": "ok", "seconds": 0.1},
                        "engines": {"skipped": "TensorRT is not installed"},
                        "networks": {"ok": False, "seconds": 2.0, "summary": "outside: tensorrt fine fp16 128px",
                                     "rows": [{"backend": "tensorrt", "network": "fine", "precision": "fp16",
                                               "built": "fp16", "size": 128, "depth_px": (float("inf"), 1.0),
                                               "ok": False}]},
                        "throughput": {"ok": True, "rows": [{"backend": "tensorrt", "built": "fp16", "fine_size": 256,
                                                             **{f"batch{b}": {"faces_per_s": 100.0 * b}
                                                                for b in (1, 4, 16)}}]}}}
    text = format_table(report)
    assert "NVIDIA H100" in text and "FAILED" in text and "skipped" in text and "1600" in text
    json.dumps(gpu_check._jsonable(report))


def test_junit_counts(tmp_path):
    """The tests step reads pytest's JUnit XML: a pass, a failure, an error and a skip with its reason."""
    xml = tmp_path / "t.xml"
    xml.write_text('<?xml version="1.0"?><testsuites><testsuite name="pytest">'
                   '<testcase classname="tests.a" name="ok"/>'
                   '<testcase classname="tests.a" name="bad"><failure message="x"/></testcase>'
                   '<testcase classname="tests.a" name="boom"><error message="y"/></testcase>'
                   '<testcase classname="tests.b" name="gpu"><skipped message="needs an NVIDIA GPU: none"/></testcase>'
                   '</testsuite></testsuites>')
    counts, failed, skipped = gpu_check._junit(xml)
    assert counts == {"passed": 1, "failed": 1, "errors": 1, "skipped": 1}
    assert failed == ["tests.a::bad", "tests.a::boom"] and skipped == ["tests.b::gpu: needs an NVIDIA GPU: none"]
    assert gpu_check._junit(tmp_path / "missing.xml")[0]["passed"] == 0
