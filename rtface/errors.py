"""Exceptions of rtface. Every message says what went wrong and what to do about it."""

from __future__ import annotations


class RtfaceError(Exception):
    """Base class of every error rtface raises on purpose."""


class AssetError(RtfaceError):
    """A model file (face model, detector, weights) is missing, corrupt or fails its checksum."""


class InputError(RtfaceError, ValueError):
    """An argument has the wrong type, dtype, shape or value."""


class SourceError(RtfaceError):
    """A video source cannot be opened or stopped delivering frames."""


class BackendUnavailable(RtfaceError, ImportError):
    """An optional runtime (CuPy, TensorRT, CUDA, torch) is not installed or has no device."""


class EngineCacheError(RtfaceError):
    """A cached TensorRT engine does not match this GPU, TensorRT version or ONNX file."""
