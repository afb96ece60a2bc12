"""The GPU path of the pipeline against the CPU path: the GPU crop and feedback stages, and whole streams with
``backend="cuda"`` and ``backend="tensorrt"`` at the same precision as the CPU pipeline (tolerances: what
FP32-vs-FP32 differences allow, benchmarks/gpu_check.py). Skipped with the reason without a GPU (and without
onnxruntime-gpu / TensorRT for the backends that need them)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import shared

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cpu_pipe(face_model):
    shared("yunet/face_detection_yunet_2023mar.onnx")
    from rtface.pipeline import Pipeline

    return Pipeline(backend="cpu", precision="fp32", smoothing=False, face_model=face_model)


@pytest.fixture(scope="module")
def real_faces(cpu_pipe):
    from benchmarks.gpu_inputs import real_faces as find

    return find(6, pipeline=cpu_pipe)


@pytest.fixture(scope="module")
def stages(cpu_pipe):
    """The pipeline's GPU stages (CuPy only: no GPU network runtime needed)."""
    from rtface.pipeline import _GpuStages

    return _GpuStages(cpu_pipe)


def _frames(name, n):
    from rtface.sources import open_source

    with open_source(shared(f"video/{name}")) as src:
        return [f.image for _, f in zip(range(n), src)]


def test_gpu_crop_matches_warp_to_crop(stages, real_faces, cpu_pipe):
    """Finding 4: the CuPy crop kernel (float bilinear, replicated border) against cv2 (1/32 px fixed point, uint8),
    on real faces, plus a crop over the frame's corner and a rotated one."""
    import cupy as cp

    from benchmarks.gpu_check import CROP_TOLERANCES, compare_crops, edge_crops, within

    s = cpu_pipe.size
    image = real_faces[0].image
    affines = [f.to_map(s) for f in real_faces if f.image is image]
    m = compare_crops(image, affines + edge_crops(affines[0], image.shape, s), s, stages.crops, cp.asarray)
    assert within(m, CROP_TOLERANCES), m


def test_gpu_feedback_matches_render_feedback(stages, real_faces, cpu_pipe, face_model):
    """Finding 4: the CuPy feedback stage (normals and PNCC rendered on the device) against render_feedback."""
    import cupy as cp

    from benchmarks.gpu_check import FEEDBACK_TOLERANCES, compare_feedback, within
    from benchmarks.gpu_inputs import mesh_in_map

    s = cpu_pipe.size
    verts = np.stack([mesh_in_map(f, s) for f in real_faces])
    m = compare_feedback(verts, np.ascontiguousarray(face_model.triangles, np.int32), s, cpu_pipe._pncc,
                         stages.feedback, cp.asarray)
    assert within(m, FEEDBACK_TOLERANCES), m


RUNS = [pytest.param("cuda", "fp32", marks=pytest.mark.gpu("cuda"), id="cuda-fp32"),
        pytest.param("tensorrt", "fp32", marks=pytest.mark.gpu("tensorrt"), id="tensorrt-fp32"),
        pytest.param("tensorrt", "int8", marks=pytest.mark.gpu("tensorrt"), id="tensorrt-int8")]


@pytest.fixture(scope="module")
def clip():
    return _frames("dafoe_1280x720.mp4", 20)


@pytest.fixture(scope="module")
def cpu_runs(face_model, clip):
    """The CPU pipeline over the clip, per precision (computed when first asked for)."""
    from rtface.pipeline import Pipeline

    cache = {}

    def run(precision):
        if precision not in cache:
            pipe = Pipeline(backend="cpu", precision=precision, smoothing=False, face_model=face_model)
            cache[precision] = list(pipe.stream(clip))
        return cache[precision]

    return run


@pytest.mark.parametrize("backend, precision", RUNS)
def test_gpu_pipeline_matches_cpu_on_a_clip(backend, precision, face_model, clip, cpu_runs):
    """Findings 2 and 4: a whole GPU pipeline over a clip against the CPU pipeline at the same precision (not
    INT8 against FP32), within what FP32-vs-FP32 differences allow from the second frame on, where each crop
    comes from the previous frame's landmarks: half a pixel, depth within a few % of its relief."""
    from benchmarks.gpu_check import PIPELINE_TOLERANCES, compare_streams, within
    from rtface.pipeline import Pipeline

    with Pipeline(backend=backend, precision=precision, smoothing=False, face_model=face_model) as gpu:
        assert gpu.device == "cuda" and gpu.precision == precision
        got = list(gpu.stream(clip))
    m = compare_streams(cpu_runs(precision), got)
    assert m["frames"] == len(clip) and m["face_count_mismatch"] == 0, m
    assert within(m, PIPELINE_TOLERANCES), m


@pytest.mark.gpu("tensorrt")
def test_tensorrt_single_image_matches_cpu(face_model):
    """Single images: six CoarseNet views per face, cropped on the device, and the re-crop pass."""
    import cv2

    from benchmarks.gpu_check import PIPELINE_TOLERANCES
    from rtface.pipeline import Pipeline

    image = cv2.imread(str(shared("faces-labeled/grace_hopper_512x512.jpg")))
    cpu = Pipeline(backend="cpu", precision="fp32", smoothing=False, face_model=face_model)(image).faces[0]
    with Pipeline(backend="tensorrt", precision="fp32", smoothing=False, face_model=face_model) as gpu:
        face = gpu(image).faces[0]
    d = np.linalg.norm(cpu.landmarks3d[:, :2] - face.landmarks3d[:, :2], axis=1).max()
    assert d < PIPELINE_TOLERANCES["landmarks_px"]


@pytest.mark.gpu("tensorrt")
def test_synchronised_stage_timings_hold_the_gpu_work(face_model, clip):
    """Finding 7: with ``sync_timings`` the ``render`` stage holds the rasteriser's GPU time (at least what CUDA
    events measure for the same kernels), and the stages still add up to ``total``."""
    import cupy as cp

    from rtface.pipeline import _WORK, Pipeline
    from rtface.render import rasterize

    with Pipeline(backend="tensorrt", precision="fp32", smoothing=False, face_model=face_model,
                  sync_timings=True) as pipe:
        frames = list(pipe.stream(clip[:8]))
        verts = frames[-1].faces[0].crop_vertices
        s = frames[-1].faces[0].size
        tris = cp.asarray(np.ascontiguousarray(face_model.triangles, np.int32))
        v = cp.asarray(verts)[None]
        start, end = cp.cuda.Event(), cp.cuda.Event()
        rasterize(v, tris, s, s, backend="cuda", check_indices=False)  # warm
        start.record()
        rasterize(v, tris, s, s, backend="cuda", check_indices=False)
        end.record()
        end.synchronize()
        kernel_ms = cp.cuda.get_elapsed_time(start, end)
    last = frames[-1].timings
    assert last["render"] >= 0.8 * kernel_ms, (last["render"], kernel_ms)
    assert sum(last[k] for k in _WORK) == pytest.approx(last["total"], rel=1e-6, abs=1e-6)
