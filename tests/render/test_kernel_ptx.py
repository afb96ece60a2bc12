"""rtface's CUDA sources compiled by NVRTC on the CPU (no GPU needed: only the NVRTC library, e.g. from the
``nvidia-cuda-nvrtc-cu12`` wheel or a CUDA toolkit), with the options CuPy uses.

Finding 9: CuPy appends ``-ftz=true`` after a RawModule's own options, so float instructions flush subnormal
operands and results to zero on the GPU while the Numba twin keeps them. ``rasterize.cu`` therefore does its
float arithmetic in inline PTX without ``.ftz`` and its float tests on the bits: its PTX, compiled with
``-ftz=true``, must hold no ``.ftz`` instruction (a control kernel with ``__fadd_rn`` shows that it would).
The subnormal case itself, GPU against Numba: tests/render/test_raster_gpu.py.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import re
import sys
from pathlib import Path

import pytest

from rtface.render.raster_cuda import kernel_source

#: The options CuPy passes NVRTC for rtface's RawModule: ours, then the architecture, then its ``-ftz=true``.
CUPY_LIKE = ("-std=c++14", "-arch=compute_70", "-ftz=true")


def _nvrtc_candidates() -> list[str]:
    names = []
    for entry in sys.path:  # the nvidia-cuda-nvrtc-cu* wheels
        names += sorted(glob.glob(os.path.join(entry, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*")))
        names += sorted(glob.glob(os.path.join(entry, "nvidia", "cu*", "lib", "libnvrtc.so*")))
    for root in filter(None, [os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME"), "/usr/local/cuda"]):
        names += sorted(glob.glob(os.path.join(root, "lib64", "libnvrtc.so*")))
    found = ctypes.util.find_library("nvrtc")
    return names + ([found] if found else [])


def _load_nvrtc():
    for name in _nvrtc_candidates():
        if "builtins" in name or ".alt." in name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


_NVRTC = _load_nvrtc()
needs_nvrtc = pytest.mark.skipif(_NVRTC is None, reason="no NVRTC library here (pip install nvidia-cuda-nvrtc-cu12, "
                                                         "or a CUDA toolkit); the PTX checks need no GPU")


def compile_ptx(source: str, options: tuple[str, ...] = CUPY_LIKE) -> str:
    """PTX of ``source`` from NVRTC with ``options``; AssertionError with NVRTC's log when it does not compile."""
    lib = _NVRTC
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"rtface.cu", 0, None, None) == 0
    try:
        opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        status = lib.nvrtcCompileProgram(prog, len(options), opts)
        if status != 0:
            size = ctypes.c_size_t()
            lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetProgramLog(prog, log)
            raise AssertionError(f"NVRTC error {status}:\n{log.value.decode(errors='replace')}")
        size = ctypes.c_size_t()
        assert lib.nvrtcGetPTXSize(prog, ctypes.byref(size)) == 0
        ptx = ctypes.create_string_buffer(size.value)
        assert lib.nvrtcGetPTX(prog, ptx) == 0
        return ptx.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


@needs_nvrtc
def test_rasterize_cu_keeps_subnormals_under_cupys_ftz_flag():
    ptx = compile_ptx(kernel_source())
    for kernel in ("rt_clear", "rt_raster", "rt_resolve"):
        assert f".entry {kernel}" in ptx
    float_ops = re.findall(r"^\s*(?:@%p\d+\s+)?((?:add|sub|mul|div|fma|cvt|setp|abs|min|max)\.[\w.]*f32[\w.]*)",
                           ptx, re.M)
    assert float_ops, "no float instruction found: the check would pass vacuously"
    assert {"add.rn.f32", "sub.rn.f32", "mul.rn.f32", "div.rn.f32"} <= set(float_ops)
    flushed = sorted({op for op in float_ops if ".ftz" in op})
    assert not flushed, f"instructions that flush subnormals under -ftz=true: {flushed}"


@needs_nvrtc
def test_the_intrinsics_would_flush():
    """The control: CuPy's flag does reach ``__fadd_rn`` (what rasterize.cu used before)."""
    src = 'extern "C" __global__ void k(float* x) { x[0] = __fadd_rn(x[1], x[2]); }'
    assert "add.rn.ftz.f32" in compile_ptx(src)
    assert "add.rn.ftz.f32" not in compile_ptx(src, CUPY_LIKE[:-1] + ("-ftz=false",))


@needs_nvrtc
def test_every_cuda_source_compiles():
    """The GPU crop kernel of the pipeline compiles too (syntax checked without a GPU)."""
    from rtface.pipeline import _WARP_SRC

    assert ".entry warp_crops" in compile_ptx(_WARP_SRC)


def subnormal_mesh():
    """Two triangles over a 16 x 16 image whose depths are subnormal (z ~ 1e-39) or sums of subnormal products
    (z ~ 1e-37, barycentrics < 0.1): where flushing to zero changes the result."""
    import numpy as np

    verts = np.array([[[0.3, 0.2, 3e-39], [15.7, 0.9, 1e-38], [1.1, 15.6, -2e-39],
                       [15.9, 15.8, 1e-37], [15.8, 1.3, 1e-37], [1.2, 15.9, 1e-37]]], np.float32)
    tris = np.array([[0, 1, 2], [3, 4, 5]], np.int32)
    return verts, tris


def test_numba_twin_keeps_subnormals():
    """The premise of the GPU comparison: the CPU twin computes IEEE float32 with subnormals (no flush, no
    denormals-are-zero set in this process), so a flushing GPU kernel would differ from it."""
    import numpy as np

    from rtface.render import rasterize

    verts, tris = subnormal_mesh()
    r = rasterize(verts, tris, 16, 16, backend="cpu")
    d = np.abs(r.depth[r.mask])
    tiny = np.finfo(np.float32).tiny
    assert ((d > 0) & (d < tiny)).sum() > 20  # subnormal depths kept
    assert r.mask.sum() > 100 and (r.triangle == 1).any()


def test_kernel_source_is_the_repository_file():
    here = Path(__file__).resolve().parents[2] / "kernels" / "rasterize.cu"
    assert kernel_source() == here.read_text()
    assert "__fadd_rn" not in kernel_source() and "__fmul_rn" not in kernel_source()
