"""The TensorRT backend's decisions that need neither TensorRT nor a GPU: optimisation profiles, address binding
checks, and which errors let ``backend="auto"`` fall back (the build precision: tests/engines/test_graph.py)."""

from __future__ import annotations

import pytest

from rtface.engines import FALLBACK_ERRORS, load_engine
from rtface.engines.base import DEVICE_ALIGNMENT, bindable
from rtface.engines.tensorrt import (
    DYNAMIC_SPATIAL,
    EngineBuildError,
    EngineKey,
    check_bound,
    check_spatial,
    optimisation_profile,
    parser_error,
)
from rtface.errors import AssetError, InputError, RtfaceError


def test_profile_of_a_dynamic_batch():
    assert optimisation_profile("image", (-1, 3, 128, 128), 16) == (
        (1, 3, 128, 128), (4, 3, 128, 128), (16, 3, 128, 128))
    assert optimisation_profile("image", (-1, 3, 128, 128), 2)[1] == (2, 3, 128, 128)  # opt <= max
    assert optimisation_profile("image", (2, 3, 128, 128), 16) is None  # all fixed: no profile


def test_profile_of_dynamic_height_and_width():
    """The FineNet at the face's own resolution: (N, C, H, W) with H, W dynamic, 128 .. 512 tuned for 256."""
    lo, opt, hi = optimisation_profile("coarse_depth", (-1, 1, -1, -1), 16)
    assert (lo, opt, hi) == ((1, 1, 128, 128), (4, 1, 256, 256), (16, 1, 512, 512))
    assert DYNAMIC_SPATIAL == (128, 256, 512)
    assert optimisation_profile("x", (1, 3, -1, -1), 8, (64, 96, 384)) == (
        (1, 3, 64, 64), (1, 3, 96, 96), (1, 3, 384, 384))


@pytest.mark.parametrize("shape", [(-1, -1, 128, 128), (-1, -1), (-1, 3, -1)])
def test_profile_refuses_other_dynamic_dimensions(shape):
    with pytest.raises(EngineBuildError, match="dimension 1|dimension 2"):
        optimisation_profile("x", shape, 16)


def test_spatial_range_is_checked_and_keys_the_cache(tmp_path):
    assert check_spatial([128, 256, 512]) == (128, 256, 512)
    for bad in [(256, 128, 512), (0, 1, 2), (1, 2), "abc"]:
        with pytest.raises(InputError, match="spatial"):
            check_spatial(bad)
    path = tmp_path / "net.onnx"
    path.write_bytes(b"onnx bytes")
    common = dict(tensorrt_version="10.13", gpu_name="NVIDIA Jetson AGX Orin", compute_capability="8.7",
                  precision="fp16", max_batch=16)
    default = EngineKey.for_onnx(path, **common)
    other = EngineKey.for_onnx(path, spatial=(128, 384, 768), **common)
    assert default.spatial == "128-256-512" and other.spatial == "128-384-768"
    assert default.digest() != other.digest()


def test_bindable_addresses():
    """Finding 6: TensorRT needs 256-byte aligned, and rtface C-contiguous, device addresses."""
    assert DEVICE_ALIGNMENT == 256
    assert bindable(0x7F0000000000, True)
    assert bindable(0x7F0000000000 + 512, True)
    assert not bindable(0x7F0000000000 + 24, True)  # params[1:] of a float32 (N, 6) array
    assert not bindable(0x7F0000000000, False)  # a strided view
    assert bindable(0x1000 + 64, True, alignment=64)


def test_a_refused_address_is_an_error():
    """Finding 6: ``set_tensor_address`` returns False for a misaligned address or an unknown name; the previous
    run's address stays bound, so running would be wrong silently: it must raise instead."""
    check_bound(True, "image", 0x7F0000000000)
    with pytest.raises(RtfaceError, match=r"refused the device address 0x7f0000000018 for tensor 'image'.*256"):
        check_bound(False, "image", 0x7F0000000018, "coarse.onnx")


def test_a_parser_failure_lets_auto_fall_back(tmp_path):
    """Finding 8: TensorRT's parser failing on a file (an operator it lacks) is no proof that the file is corrupt,
    so it must not be an AssetError (which stops ``backend="auto"``), but one of the errors auto falls back on."""
    err = parser_error(tmp_path / "fine.onnx", ["In node 12 (parseGraph): UNSUPPORTED_NODE: ReduceSum"], "10.13.0")
    assert isinstance(err, EngineBuildError) and isinstance(err, FALLBACK_ERRORS)
    assert not isinstance(err, AssetError)
    assert "TensorRT 10.13.0" in str(err) and "UNSUPPORTED_NODE" in str(err) and "backend='cuda'" in str(err)
    assert "no detail" in str(parser_error("x.onnx", []))


def test_a_missing_file_still_stops_every_backend(tmp_path):
    with pytest.raises(AssetError, match="does not exist"):
        load_engine(tmp_path / "missing.onnx", backend="auto")
    assert not issubclass(AssetError, FALLBACK_ERRORS)
