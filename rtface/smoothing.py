"""Temporal smoothing of per-face parameters: the One-Euro filter (Casiez, Roussel & Vogel, CHI 2012).

A One-Euro filter is a first-order low-pass filter whose cut-off frequency rises with the speed of the
signal: slow motion (a steady head, where jitter shows) is smoothed strongly, fast motion follows with
little lag. For a sample ``x`` at time ``t`` (seconds, period ``dt`` since the previous sample)::

    dx      = lowpass((x - x_prev_filtered) / dt, cutoff=d_cutoff)        # smoothed speed
    cutoff  = min_cutoff + beta * |dx|                                    # Hz
    x_filt  = lowpass(x, cutoff)        with alpha = 1 / (1 + tau / dt),  tau = 1 / (2 pi cutoff)

Parameters (all per channel group, see :class:`SmoothingConfig`):

* ``min_cutoff`` (Hz): cut-off at rest. Lower = less jitter on a still face, more lag when it starts moving.
* ``beta`` (1/unit): how fast the cut-off grows with speed. Higher = less lag on fast motion.
* ``d_cutoff`` (Hz): cut-off of the speed estimate (1 Hz is the paper's recommendation).

rtface filters, per tracked face, the **pose in frame coordinates** (the crop moves between frames, so
crop-frame poses are not comparable), in the face's own units (angles in rad, the log of the scale, the
translation in cm: :func:`to_face_units`), and the **expression** weights; identity is filtered too, with a low
cut-off (it should not change within a track). It is on by default for video (:func:`rtface.stream`) and off
for single images (:func:`rtface.reconstruct`). ``beta`` is given per unit of the channel, so pose channels
have their own. Only the output is smoothed: the tracker crops the next frame from the networks' own estimate
(:meth:`rtface.pipeline.Pipeline._faces`), so the smoothing's lag never moves the crop off a
fast-moving face.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError


class OneEuroFilter:
    """One-Euro filter of a fixed-size float vector.

    ``min_cutoff``, ``beta`` and ``d_cutoff`` are scalars or arrays broadcastable to the vector's shape.
    ``__call__(x, t)`` takes the raw sample and its timestamp in seconds and returns the filtered sample.
    The first sample passes unchanged. A timestamp that does not increase is treated as one ``fallback_dt``
    later (default 1/30 s).
    """

    def __init__(self, min_cutoff=1.0, beta=0.0, d_cutoff=1.0, fallback_dt: float = 1.0 / 30.0) -> None:
        self.min_cutoff = np.asarray(min_cutoff, dtype=np.float64)
        self.beta = np.asarray(beta, dtype=np.float64)
        self.d_cutoff = float(d_cutoff)
        if (self.min_cutoff <= 0).any() or self.d_cutoff <= 0 or (self.beta < 0).any():
            raise InputError(f"One-Euro cut-offs must be > 0 and beta >= 0, got min_cutoff={min_cutoff}, "
                             f"beta={beta}, d_cutoff={d_cutoff}")
        self.fallback_dt = float(fallback_dt)
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    @staticmethod
    def _alpha(cutoff, dt: float):
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x, t: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._x.shape != x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        dt = float(t) - self._t
        if not dt > 0:
            dt = self.fallback_dt
        self._t = self._t + dt
        dx = (x - self._x) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self._dx = self._dx + a_d * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        a = self._alpha(cutoff, dt)
        self._x = self._x + a * (x - self._x)
        return self._x.copy()


@dataclass
class SmoothingConfig:
    """Filter parameters per parameter group (see the module docstring for their meaning).

    Pose channels are filtered in the face's own units (:func:`to_face_units`): pitch, yaw, roll [rad], log
    scale, and the translation over the scale [cm]; ``pose_beta`` has one value per channel (per rad/s, per 1/s,
    per cm/s), so a face 40 px wide and one 400 px wide are smoothed alike. The defaults suit 25-60 fps video of
    a talking head; how they were chosen is in docs/results.md (videos).
    """

    pose_min_cutoff: float = 3.0
    pose_beta: tuple = (2.0, 2.0, 2.0, 2.5, 1.0, 1.0)
    expression_min_cutoff: float = 2.0
    expression_beta: float = 1.0
    identity_min_cutoff: float = 0.2
    identity_beta: float = 0.0
    d_cutoff: float = 1.0

    @classmethod
    def coerce(cls, value) -> "SmoothingConfig | None":
        """``True``/``None`` -> defaults, ``False`` -> None (off), a dict -> fields, a config -> itself."""
        if value is False:
            return None
        if value is True or value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            try:
                return cls(**value)
            except TypeError as exc:
                raise InputError(f"unknown smoothing option: {exc}") from exc
        raise InputError(f"smoothing must be True, False, a dict or a SmoothingConfig, got {value!r}")


@dataclass
class FaceSmoother:
    """The three filters of one tracked face."""

    config: SmoothingConfig
    pose: OneEuroFilter = field(init=False)
    expression: OneEuroFilter = field(init=False)
    identity: OneEuroFilter = field(init=False)

    def __post_init__(self) -> None:
        c = self.config
        self.pose = OneEuroFilter(c.pose_min_cutoff, np.asarray(c.pose_beta, np.float64), c.d_cutoff)
        self.expression = OneEuroFilter(c.expression_min_cutoff, c.expression_beta, c.d_cutoff)
        self.identity = OneEuroFilter(c.identity_min_cutoff, c.identity_beta, c.d_cutoff)

    def __call__(self, identity, expression, pose_frame, t: float):
        """Filter one sample; returns (identity, expression, pose) float32 (expression clipped to [0, 1])."""
        p = to_face_units(pose_frame)
        if self.pose._x is not None:  # unwrap angles next to the filtered ones (no 2 pi jumps)
            p[:3] = self.pose._x[:3] + (p[:3] - self.pose._x[:3] + np.pi) % (2 * np.pi) - np.pi
        return (self.identity(identity, t).astype(np.float32),
                np.clip(self.expression(expression, t), 0.0, 1.0).astype(np.float32),
                from_face_units(self.pose(p, t)).astype(np.float32))


def to_face_units(pose_frame) -> np.ndarray:
    """A frame pose vector (pitch, yaw, roll rad, scale px/cm, tx, ty px) in the units it is filtered in:
    (pitch, yaw, roll, log scale, tx / scale, ty / scale), so the filter treats a small face as a large one."""
    p = np.asarray(pose_frame, np.float64).copy()
    s = max(abs(p[3]), 1e-6)
    p[3], p[4], p[5] = np.log(s), p[4] / s, p[5] / s
    return p


def from_face_units(p) -> np.ndarray:
    """The inverse of :func:`to_face_units`."""
    out = np.asarray(p, np.float64).copy()
    s = np.exp(out[3])
    out[3], out[4], out[5] = s, out[4] * s, out[5] * s
    return out


class Smoother:
    """Per-track smoothing: ``smoother(track_id, identity, expression, pose_frame, t)``; ``forget`` ids."""

    def __init__(self, config: SmoothingConfig | None = None) -> None:
        self.config = config or SmoothingConfig()
        self._faces: dict[int, FaceSmoother] = {}

    def __call__(self, track_id: int, identity, expression, pose_frame, t: float):
        f = self._faces.get(track_id)
        if f is None:
            f = self._faces[track_id] = FaceSmoother(self.config)
        return f(identity, expression, pose_frame, t)

    def keep_only(self, track_ids) -> None:
        ids = set(track_ids)
        for k in [k for k in self._faces if k not in ids]:
            del self._faces[k]

    def reset(self) -> None:
        self._faces.clear()


__all__ = ["FaceSmoother", "OneEuroFilter", "Smoother", "SmoothingConfig"]
