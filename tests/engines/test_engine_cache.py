"""The TensorRT engine cache logic, which is plain Python and needs neither TensorRT nor a GPU."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import subprocess
import sys
import warnings

import pytest

from rtface.engines.tensorrt import (
    SIDECAR_FORMAT,
    EngineCache,
    EngineCacheWarning,
    EngineKey,
    check_record,
    default_cache_dir,
    has_fast_fp16,
    resolve_precision,
)
from rtface.errors import InputError

ENGINE = b"\x00serialized-engine\xff" * 64


@pytest.fixture
def onnx_file(tmp_path):
    path = tmp_path / "coarse net.onnx"  # a space, to check the cache file name is sanitised
    path.write_bytes(b"pretend this is an ONNX protobuf" * 10)
    return path


@pytest.fixture
def key(onnx_file):
    return EngineKey.for_onnx(onnx_file, tensorrt_version="10.9.0.34",
                              gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0",
                              precision="fp16", max_batch=16)


def test_importing_the_module_does_not_import_tensorrt_or_cupy():
    code = ("import sys, rtface.engines, rtface.engines.tensorrt; "
            "print(sorted(m for m in ('tensorrt', 'cupy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_key_hashes_the_onnx_file(onnx_file, key):
    assert key.onnx_sha256 == hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    assert key.max_batch == 16 and key.compute_capability == "9.0"


def test_key_digest_depends_on_every_field(key):
    assert key.digest() == dataclasses.replace(key).digest()  # stable for equal keys
    changes = dict(onnx_sha256="0" * 64, tensorrt_version="11.0.0", gpu_name="NVIDIA L4",
                   compute_capability="8.9", precision="fp32", max_batch=8, spatial="128-384-768")
    digests = {key.digest()}
    for field, value in changes.items():
        digests.add(dataclasses.replace(key, **{field: value}).digest())
    assert len(digests) == 1 + len(changes)


def test_cache_file_names(tmp_path, key):
    cache = EngineCache(tmp_path)
    path = cache.engine_path(key, "coarse net")
    assert path.parent == tmp_path
    assert path.name == f"coarse_net.fp16.b16.{key.digest()[:16]}.engine"
    assert cache.sidecar_path(key, "coarse net") == path.with_suffix(".json")
    other = dataclasses.replace(key, gpu_name="NVIDIA L4")
    assert cache.engine_path(other, "coarse net") != path


def test_precision_resolution():
    assert resolve_precision("auto", "8.6") == "fp16"
    assert resolve_precision("auto", "6.1") == "fp32"  # consumer Pascal: slow FP16
    assert resolve_precision("auto", "5.3") == "fp16"
    assert resolve_precision("fp32", "9.0") == "fp32"
    assert resolve_precision("fp16", "6.1") == "fp16"  # asked for explicitly
    assert has_fast_fp16("12.0") and not has_fast_fp16("5.2")
    assert resolve_precision("int8", "8.6") == "int8"  # a QDQ file, built strongly typed
    with pytest.raises(InputError, match="precision"):
        resolve_precision("int4", "9.0")


# -- sidecar validation ----------------------------------------------------------------------------

def test_matching_record_is_accepted(key):
    record = key.record(hashlib.sha256(ENGINE).hexdigest())
    assert record["format"] == SIDECAR_FORMAT
    assert check_record(record, key, ENGINE) is None
    assert check_record(json.loads(json.dumps(record)), key, ENGINE) is None  # survives JSON


@pytest.mark.parametrize("field, value, message", [
    ("gpu_name", "NVIDIA GeForce RTX 4090", "built for GPU 'NVIDIA GeForce RTX 4090'"),
    ("compute_capability", "8.9", r"compute capability 8\.9"),
    ("tensorrt_version", "10.0.1", "built with TensorRT 10.0.1"),
    ("onnx_sha256", "f" * 64, "different ONNX file"),
    ("precision", "fp32", "precision 'fp32'"),
    ("max_batch", 4, "max_batch 4"),
    ("spatial", "64-128-256", "spatial '64-128-256'"),
])
def test_mismatched_record_is_rejected(key, field, value, message):
    record = dataclasses.replace(key, **{field: value}).record(hashlib.sha256(ENGINE).hexdigest())
    reason = check_record(record, key, ENGINE)
    assert reason is not None
    assert re.search(message, reason), reason


def test_engine_hash_and_format_are_checked(key):
    good = key.record(hashlib.sha256(ENGINE).hexdigest())
    assert "sha256" in check_record(good, key, ENGINE + b"!")
    assert "sha256" in check_record({**good, "engine_sha256": None}, key, ENGINE)
    assert check_record({**good, "format": "someone-else/1"}, key, ENGINE) is not None
    assert check_record(["not", "a", "dict"], key, ENGINE) is not None


# -- the cache directory ---------------------------------------------------------------------------

def test_store_then_load_round_trip(tmp_path, key):
    cache = EngineCache(tmp_path / "engines")
    path = cache.store(key, "coarse", ENGINE, onnx_name="coarse.onnx")
    assert path.read_bytes() == ENGINE
    record = json.loads(cache.sidecar_path(key, "coarse").read_text())
    assert record["engine_sha256"] == hashlib.sha256(ENGINE).hexdigest()
    assert {k: record[k] for k in dataclasses.asdict(key)} == dataclasses.asdict(key)
    assert record["onnx_name"] == "coarse.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.load(key, "coarse") == ENGINE
    assert sorted(p.name for p in cache.directory.iterdir()) == sorted(
        [path.name, path.with_suffix(".json").name])  # no temporary files left behind


def test_miss_is_silent(tmp_path, key):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert EngineCache(tmp_path).load(key, "coarse") is None


def test_tampered_engine_is_rejected_with_a_warning(tmp_path, key):
    cache = EngineCache(tmp_path)
    path = cache.store(key, "coarse", ENGINE)
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.warns(EngineCacheWarning, match="does not match the sha256"):
        assert cache.load(key, "coarse") is None


def test_sidecar_from_another_gpu_is_rejected_with_a_warning(tmp_path, key):
    cache = EngineCache(tmp_path)
    cache.store(key, "coarse", ENGINE)
    sidecar = cache.sidecar_path(key, "coarse")
    record = json.loads(sidecar.read_text())
    record["gpu_name"] = "NVIDIA A100-SXM4-40GB"
    sidecar.write_text(json.dumps(record))
    with pytest.warns(EngineCacheWarning, match="built for GPU 'NVIDIA A100-SXM4-40GB'"):
        assert cache.load(key, "coarse") is None


def test_missing_or_broken_sidecar_is_rejected_with_a_warning(tmp_path, key):
    cache = EngineCache(tmp_path)
    cache.store(key, "coarse", ENGINE)
    sidecar = cache.sidecar_path(key, "coarse")
    sidecar.write_text("{not json")
    with pytest.warns(EngineCacheWarning, match="cannot be read"):
        assert cache.load(key, "coarse") is None
    sidecar.unlink()
    with pytest.warns(EngineCacheWarning, match="cannot be read"):
        assert cache.load(key, "coarse") is None


def test_discard_removes_both_files(tmp_path, key):
    cache = EngineCache(tmp_path / "engines")
    cache.store(key, "coarse", ENGINE)
    cache.discard(key, "coarse")
    cache.discard(key, "coarse")
    assert list(cache.directory.iterdir()) == []


def test_default_cache_dir_follows_rtface_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RTFACE_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "engines"
    assert EngineCache().directory == tmp_path / "engines"
