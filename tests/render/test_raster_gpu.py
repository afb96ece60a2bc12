"""CUDA rasteriser against its Numba twin: identical triangle ids, bit-identical depth and barycentrics."""

from __future__ import annotations

import numpy as np
import pytest

from rtface.render import Raster, rasterize

pytestmark = pytest.mark.gpu

FIELDS = ("depth", "triangle", "barycentric", "mask")


def assert_same(gpu, cpu) -> None:
    """Both backends promise bit-identical results (see rtface/render/raster_cpu.py)."""
    for name in FIELDS:
        a, b = getattr(gpu, name), getattr(cpu, name)
        assert isinstance(a, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_array_equal(a, b, err_msg=name)


def to_host(r: Raster) -> Raster:
    """A copy of a CuPy-backed Raster with NumPy arrays."""
    return Raster(**{name: getattr(r, name).get() for name in FIELDS})


def random_mesh(rng, batch, num_vertices, num_tris, height, width):
    low, high = [-0.2 * width, -0.2 * height, -50], [1.2 * width, 1.2 * height, 50]
    verts = rng.uniform(low, high, (batch, num_vertices, 3)).astype(np.float32)
    tris = rng.integers(0, num_vertices, (num_tris, 3)).astype(np.int32)
    return verts, tris


@pytest.mark.parametrize("seed,batch,size", [(0, 1, (64, 64)), (1, 4, (48, 80)), (2, 16, (33, 17))])
def test_cuda_equals_cpu_on_random_meshes(seed, batch, size):
    rng = np.random.default_rng(seed)
    verts, tris = random_mesh(rng, batch, 300, 500, *size)
    verts[0, :5] = np.round(verts[0, :5]) + 0.5  # vertices on pixel centres: edges through centres
    verts[-1, 7, 0] = np.nan
    gpu = rasterize(verts, tris, *size, backend="cuda")
    cpu = rasterize(verts, tris, *size, backend="cpu")
    assert_same(gpu, cpu)
    assert cpu.mask.any()


def test_cuda_equals_cpu_with_depth_ties_and_culling():
    base = np.array([[2, 2, 3.0], [30, 4, 1.0], [5, 28, 2.0], [30, 30, 2.0]], np.float32)
    verts = np.concatenate([base, base])
    tris = np.array([[4, 5, 6], [0, 1, 2], [1, 3, 2], [5, 7, 6], [2, 1, 0]])
    for cull in (False, True):
        gpu = rasterize(verts, tris, 32, 32, backend="cuda", cull_backfaces=cull)
        cpu = rasterize(verts, tris, 32, 32, backend="cpu", cull_backfaces=cull)
        assert_same(gpu, cpu)


@pytest.mark.parametrize("size", [128, 200, 512])
def test_cuda_equals_cpu_on_the_face_mesh(face_model, size):
    rng = np.random.default_rng(size)
    mean = face_model.mean.astype(np.float64)
    scale = size / 25.0
    frames = []
    for _ in range(3):
        shape = mean + np.tensordot(rng.normal(size=face_model.num_identity), face_model.id_basis, 1)
        angle = rng.uniform(-0.5, 0.5)
        c, s = np.cos(angle), np.sin(angle)
        x, y, z = shape[:, 0] * c + shape[:, 2] * s, shape[:, 1], -shape[:, 0] * s + shape[:, 2] * c
        frames.append(np.stack([size / 2 + scale * x, size / 2 - scale * y, scale * z], 1))
    verts = np.asarray(frames, np.float32)
    gpu = rasterize(verts, face_model.triangles, size, size, backend="cuda")
    cpu = rasterize(verts, face_model.triangles, size, size, backend="cpu")
    assert_same(gpu, cpu)
    assert cpu.mask.mean() > 0.2


def test_cupy_in_cupy_out_on_a_stream():
    """Finding 10: the inputs are copied on the current (legacy default) stream and the kernels run on a
    non-blocking stream, which is not ordered after it by CUDA; ``rasterize`` orders it (an event) itself."""
    cp = pytest.importorskip("cupy")
    rng = np.random.default_rng(9)
    verts, tris = random_mesh(rng, 2, 100, 150, 40, 40)
    stream = cp.cuda.Stream(non_blocking=True)
    r = rasterize(cp.asarray(verts), cp.asarray(tris), 40, 40, stream=stream)  # auto -> cuda
    stream.synchronize()
    for name in FIELDS:
        assert isinstance(getattr(r, name), cp.ndarray), name
    assert r.depth.shape == (2, 40, 40) and r.barycentric.shape == (2, 40, 40, 3)
    cpu = rasterize(verts, tris, 40, 40, backend="cpu")
    assert_same(to_host(r), cpu)
    single = rasterize(cp.asarray(verts[1]), cp.asarray(tris), 40, 40, check_indices=False)
    np.testing.assert_array_equal(single.triangle.get(), cpu.triangle[1])


def test_cuda_rejects_out_of_range_indices_and_handles_empty_meshes():
    cp = pytest.importorskip("cupy")
    from rtface.errors import InputError

    with pytest.raises(InputError, match="index out of range"):
        rasterize(cp.zeros((4, 3), cp.float32), cp.asarray([[0, 1, 4]], cp.int32), 8, 8)
    r = rasterize(cp.zeros((0, 3), cp.float32), cp.zeros((0, 3), cp.int32), 8, 8)
    assert not r.mask.any().item() and (r.triangle == -1).all().item()


def test_cuda_equals_cpu_with_subnormal_depths():
    """Finding 9: CuPy compiles with -ftz=true; the kernel's float arithmetic is inline PTX that keeps subnormals,
    so depths and barycentrics of subnormal size agree with the Numba twin bit for bit too."""
    from tests.render.test_kernel_ptx import subnormal_mesh

    verts, tris = subnormal_mesh()
    gpu = rasterize(verts, tris, 16, 16, backend="cuda")
    cpu = rasterize(verts, tris, 16, 16, backend="cpu")
    tiny = np.finfo(np.float32).tiny
    assert ((np.abs(cpu.depth) > 0) & (np.abs(cpu.depth) < tiny)).any()
    assert_same(gpu, cpu)
