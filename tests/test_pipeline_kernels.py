"""The GPU pipeline's crop kernel (``rtface.pipeline._WARP_SRC``) run on the host: its source compiled as C++ with
the CUDA launch emulated by loops, so its sampling conventions (pixel centres, replicated border, RGB order) are
checked against :func:`rtface.camera.warp_to_crop` without a GPU (finding 4: the GPU crop was never compared).
On a GPU, tests/test_pipeline_gpu.py compares the kernel itself."""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

from tests.conftest import shared

_HOST = r"""
#include <algorithm>
#include <cmath>
struct rt_dim3 { long long x; };
static rt_dim3 blockIdx, threadIdx, blockDim;
#define __global__
using std::min;
#include KERNEL
extern "C" void host_warp(const unsigned char* img, int h, int w, const float* inv, int s, int n, float* out) {
    long long total = (long long)n * s * s;
    blockDim.x = 256;
    for (long long b = 0; b < (total + 255) / 256; ++b)
        for (long long t = 0; t < 256; ++t) { blockIdx.x = b; threadIdx.x = t; warp_crops(img, h, w, inv, s, n, out); }
}
"""


@pytest.fixture(scope="module")
def host_warp(tmp_path_factory):
    """``crops(frame (H, W, 3) uint8, affines, size) -> (N, 3, S, S)`` running the kernel's code on the CPU."""
    from rtface.pipeline import _WARP_SRC, crop_sampling

    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler to build the host harness of the crop kernel")
    work = tmp_path_factory.mktemp("warp_on_host")
    (work / "kernel.cu").write_text(_WARP_SRC)
    (work / "harness.cpp").write_text(_HOST)
    lib_path = work / "harness.so"
    subprocess.run([compiler, "-std=c++14", "-O1", "-ffp-contract=off", "-shared", "-fPIC",
                    f'-DKERNEL="{work / "kernel.cu"}"', "-o", str(lib_path), str(work / "harness.cpp")],
                   check=True, capture_output=True, text=True)
    lib = ctypes.CDLL(str(lib_path))

    def crops(frame, affines, size):
        frame = np.ascontiguousarray(frame, np.uint8)
        inv = np.ascontiguousarray(crop_sampling(affines))
        out = np.empty((len(affines), 3, size, size), np.float32)
        ptr = [a.ctypes.data_as(ctypes.c_void_p) for a in (frame, inv, out)]
        lib.host_warp(ptr[0], frame.shape[0], frame.shape[1], ptr[1], size, len(affines), ptr[2])
        return out

    return crops


def test_crop_kernel_samples_like_warp_to_crop(host_warp):
    """On real faces, and on crops over the frame's corner (replicated border) and turned by 0.5 rad."""
    import cv2

    from benchmarks.gpu_check import CROP_TOLERANCES, compare_crops, edge_crops, within

    image = cv2.imread(str(shared("faces-labeled/grace_hopper_512x512.jpg")))
    s = 128
    k = s / 300.0
    face = np.array([[k, 0.0, -k * 106.0], [0.0, k, -k * 60.0]])  # a 300 px square around the face
    affines = [face, np.array([[k * 2, 0.0, -k * 2 * 180.0], [0.0, k * 2, -k * 2 * 150.0]])]  # and a closer one
    m = compare_crops(image, affines + edge_crops(face, image.shape, s), s,
                      lambda frame, a: host_warp(frame, a, s), lambda x: x)
    assert m["crops"] == 4
    assert within(m, CROP_TOLERANCES), m
    # a half-pixel slip of the convention is far outside the tolerance
    shifted = [a + np.array([[0, 0, 0.5], [0, 0, 0.5]]) for a in affines]
    slip = compare_crops(image, affines, s, lambda frame, a: host_warp(frame, shifted, s), lambda x: x)
    assert slip["mean"] > 2 * CROP_TOLERANCES["mean"]


def test_crop_kernel_channel_order_and_range(host_warp):
    """BGR frame in, RGB [0, 1] out: a frame of one colour gives that colour, channels swapped."""
    frame = np.zeros((40, 60, 3), np.uint8)
    frame[...] = (10, 128, 255)  # B, G, R
    out = host_warp(frame, [np.array([[1.0, 0, -5], [0, 1.0, -5]])], 16)
    np.testing.assert_allclose(out[0, :, 8, 8], np.array([255, 128, 10]) / 255, atol=1e-6)
