"""Normals, spherical-harmonics (SH) lighting and Lambertian shading (NumPy; CuPy arrays work too).

Conventions (``rtface/camera.py``): image frame x to the right, y down, z toward the camera; depth maps are in
**pixels** of the image they are aligned with, so the unit normal of a depth map ``z(x, y)`` is

    n = normalize(-dz/dx, -dz/dy, 1)          (n_z > 0: it points toward the camera)

with ``x`` the column and ``y`` the row direction. A sphere of radius R bulging toward the camera gives
``n = (x - cx, y - cy, z) / R``.

Spherical harmonics. Real, orthonormal SH (Ramamoorthi & Hanrahan 2001) evaluated at unit normals, in the
term order that ``train/losses.py`` uses (``1, x, y, z, ...``)::

    order 1 (4 terms): c0, c1*nx, c1*ny, c1*nz          c0 = 1/(2 sqrt(pi))      = 0.282095
                                                         c1 = sqrt(3/(4 pi))      = 0.488603
    order 2 (+5):      c2*nx*ny, c2*ny*nz, c3*(3nz^2-1), c2*nx*nz, c4*(nx^2-ny^2)
                                                         c2 = sqrt(15/pi)/2       = 1.092548
                                                         c3 = sqrt(5/pi)/4        = 0.315392
                                                         c4 = sqrt(15/pi)/4       = 0.546274

The Lambertian (clamped-cosine) convolution constants ``A_0 = pi, A_1 = 2 pi / 3, A_2 = pi / 4`` are **not**
folded into the basis: the coefficients ``sh`` used by :func:`shade` and returned by :func:`solve_lighting` are
*irradiance* coefficients, ``E(n) = sum_k sh[k] * Y_k(n)``. To turn the SH coefficients ``L`` of a distant
radiance into irradiance coefficients multiply them by :data:`LAMBERT_BAND` per band
(:func:`radiance_to_irradiance`); :func:`directional_light` does that for a distant point light.

Every function accepts NumPy or CuPy arrays and returns arrays of the same kind (CuPy is only imported when a
CuPy array is passed in).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InputError

SH_C0 = 0.5 / math.sqrt(math.pi)  # 0.282095
SH_C1 = math.sqrt(3.0 / (4.0 * math.pi))  # 0.488603
SH_C2 = 0.5 * math.sqrt(15.0 / math.pi)  # 1.092548
SH_C3 = 0.25 * math.sqrt(5.0 / math.pi)  # 0.315392
SH_C4 = 0.25 * math.sqrt(15.0 / math.pi)  # 0.546274
#: Lambertian convolution constants per SH band (l = 0, 1, 2), Ramamoorthi & Hanrahan 2001.
LAMBERT_BAND = (math.pi, 2.0 * math.pi / 3.0, math.pi / 4.0)
#: The band of each of the 9 terms in our order.
TERM_BAND = (0, 1, 1, 1, 2, 2, 2, 2, 2)
SH_TERMS = {1: 4, 2: 9}


def get_xp(*arrays: Any):
    """``cupy`` when any argument is a CuPy array, else ``numpy`` (CuPy is never imported otherwise)."""
    for a in arrays:
        if a is not None and type(a).__module__.split(".")[0] == "cupy":
            import cupy

            return cupy
    return np


def _order(order: int) -> int:
    if order not in SH_TERMS:
        raise InputError(f"SH order must be 1 (4 terms) or 2 (9 terms), got {order!r}")
    return int(order)


def _float(xp, a):
    a = xp.asarray(a)
    if a.dtype not in (xp.float32, xp.float64):
        a = a.astype(xp.float32)
    return a


# --------------------------------------------------------------------------------------------------- normals


def mesh_normals(vertices: Any, triangles: Any, image_frame: bool = False) -> Any:
    """Area-weighted unit per-vertex normals of a triangle mesh, ``(..., V, 3)`` -> ``(..., V, 3)``.

    The normal of a triangle ``(a, b, c)`` is ``(b - a) x (c - a)`` (weighted by its area), i.e. it points to
    the side from which the triangle is seen counter-clockwise, in a right-handed frame such as the face
    model's (x right, y up, z toward the viewer).

    Args:
        vertices: ``(..., V, 3)`` float vertex positions (leading axes: a batch sharing ``triangles``).
        triangles: ``(T, 3)`` integer vertex indices.
        image_frame: the vertices are in the image frame (x right, **y down**, z toward the camera), a
            left-handed frame, while the triangles are counter-clockwise seen from the front in the y-up
            model frame (as ICT-FaceKit's are): the cross product is negated so the normals still point out
            of the surface (a frontal face gets n_z > 0), expressed in the image frame.

    Vertices that belong to no (non-degenerate) triangle get a zero normal.
    """
    xp = get_xp(vertices, triangles)
    v = _float(xp, vertices)
    t = xp.asarray(triangles)
    if v.ndim < 2 or v.shape[-1] != 3:
        raise InputError(f"vertices must have shape (..., V, 3), got {tuple(v.shape)}")
    if t.ndim != 2 or t.shape[1] != 3 or not (t.dtype.kind in "iu"):
        raise InputError(f"triangles must be an integer array of shape (T, 3), got {tuple(t.shape)} {t.dtype}")
    nv = v.shape[-2]
    if t.size and (int(t.min()) < 0 or int(t.max()) >= nv):
        raise InputError(f"triangle indices must lie in [0, {nv}), got [{int(t.min())}, {int(t.max())}]")
    lead = v.shape[:-2]
    vb = v.reshape((-1, nv, 3))
    b = vb.shape[0]
    a0, a1, a2 = vb[:, t[:, 0]], vb[:, t[:, 1]], vb[:, t[:, 2]]
    fn = xp.cross(a1 - a0, a2 - a0).astype(xp.float64)  # (B, T, 3), length = 2 * area
    if image_frame:
        fn = -fn
    idx = (xp.arange(b)[:, None] * nv + t.reshape(1, -1)).reshape(-1)  # (B*T*3,)
    fn3 = xp.repeat(fn, 3, axis=1).reshape(-1, 3)
    out = xp.stack([xp.bincount(idx, weights=fn3[:, c], minlength=b * nv) for c in range(3)], axis=-1)
    norm = xp.sqrt((out * out).sum(-1, keepdims=True))
    out = xp.where(norm > 0, out / xp.maximum(norm, 1e-300), 0.0)
    return out.reshape(lead + (nv, 3)).astype(v.dtype)


def depth_gradients(depth: Any, mask: Any = None) -> tuple[Any, Any, Any]:
    """Masked central differences of a depth map ``(..., H, W)``: ``(dz/dx, dz/dy, valid)``.

    x is the column direction, y the row direction (down). A difference never crosses the mask border:
    central where both neighbours are inside the mask, one-sided where only one is, 0 where neither is (and
    at the image border likewise). ``valid`` is True inside the mask where both derivatives exist. Outside
    the mask both derivatives are 0. ``mask=None`` means every pixel is valid.
    """
    xp = get_xp(depth, mask)
    z = _float(xp, depth)
    if z.ndim < 2:
        raise InputError(f"depth must have shape (..., H, W), got {tuple(z.shape)}")
    if mask is None:
        m = xp.ones(z.shape, dtype=bool)
    else:
        m = xp.asarray(mask)
        if m.shape != z.shape:
            raise InputError(f"mask must have the depth's shape {tuple(z.shape)}, got {tuple(m.shape)}")
        m = m.astype(bool)
    gx, vx = _diff(xp, z, m, axis=-1)
    gy, vy = _diff(xp, z, m, axis=-2)
    return gx, gy, vx & vy & m


def _diff(xp, z, m, axis):
    """Masked derivative along ``axis`` (see :func:`depth_gradients`) and where it exists."""
    zs = xp.moveaxis(xp.where(m, z, 0), axis, -1)
    ms = xp.moveaxis(m, axis, -1)
    fwd = xp.zeros_like(zs)  # z[k+1] - z[k] where both are inside
    fwd[..., :-1] = zs[..., 1:] - zs[..., :-1]
    mf = xp.zeros_like(ms)
    mf[..., :-1] = ms[..., 1:] & ms[..., :-1]
    fwd *= mf
    bwd = xp.zeros_like(zs)  # z[k] - z[k-1]
    bwd[..., 1:] = fwd[..., :-1]
    mb = xp.zeros_like(ms)
    mb[..., 1:] = mf[..., :-1]
    cnt = mf.astype(zs.dtype) + mb.astype(zs.dtype)
    g = (fwd + bwd) / xp.maximum(cnt, 1)
    return xp.moveaxis(g, -1, axis), xp.moveaxis(mf | mb, -1, axis)


def depth_normals(depth: Any, mask: Any = None, return_valid: bool = False) -> Any:
    """Unit normals ``(..., H, W, 3)`` of a depth map ``(..., H, W)`` in pixels (image frame, n_z > 0).

    ``n = normalize(-dz/dx, -dz/dy, 1)`` with the masked differences of :func:`depth_gradients` (no
    difference crosses the mask border). Pixels outside the mask get the zero vector. With
    ``return_valid=True`` also returns the bool map of pixels where both derivatives exist.
    """
    xp = get_xp(depth, mask)
    gx, gy, valid = depth_gradients(depth, mask)
    n = xp.stack([-gx, -gy, xp.ones_like(gx)], axis=-1)
    n = n / xp.sqrt((n * n).sum(-1, keepdims=True))
    if mask is not None:
        n = n * xp.asarray(mask).astype(bool)[..., None]
    n = n.astype(gx.dtype)
    return (n, valid) if return_valid else n


# --------------------------------------------------------------------------------------- spherical harmonics


def sh_basis(normals: Any, order: int = 2) -> Any:
    """SH basis of unit normals ``(..., 3)`` -> ``(..., K)``, K = 4 (order 1) or 9 (order 2).

    Term order and constants in the module docstring (orthonormal real SH, irradiance constants not folded in).
    """
    order = _order(order)
    xp = get_xp(normals)
    n = _float(xp, normals)
    if n.shape[-1:] != (3,):
        raise InputError(f"normals must have shape (..., 3), got {tuple(n.shape)}")
    nx, ny, nz = n[..., 0], n[..., 1], n[..., 2]
    terms = [xp.full_like(nx, SH_C0), SH_C1 * nx, SH_C1 * ny, SH_C1 * nz]
    if order == 2:
        terms += [SH_C2 * nx * ny, SH_C2 * ny * nz, SH_C3 * (3.0 * nz * nz - 1.0), SH_C2 * nx * nz,
                  SH_C4 * (nx * nx - ny * ny)]
    return xp.stack(terms, axis=-1)


def radiance_to_irradiance(sh_radiance: Any) -> Any:
    """Multiply SH radiance coefficients ``(K, ...)`` by the Lambertian band constants -> irradiance ``(K, ...)``."""
    xp = get_xp(sh_radiance)
    c = _float(xp, sh_radiance)
    k = c.shape[0]
    if k not in (4, 9):
        raise InputError(f"SH coefficients must have 4 or 9 rows, got {k}")
    a = xp.asarray([LAMBERT_BAND[TERM_BAND[i]] for i in range(k)], dtype=c.dtype)
    return c * a.reshape((k,) + (1,) * (c.ndim - 1))


def directional_light(direction: Any, intensity: Any = 1.0, ambient: Any = 0.0, order: int = 2) -> np.ndarray:
    """Irradiance coefficients ``(K,)`` (or ``(K, C)`` for per-channel ``intensity``/``ambient`` of length C) of a
    distant point light toward unit ``direction`` (image frame, from the surface toward the light) plus a
    constant ambient irradiance: ``E(n) ~ ambient + intensity * max(n . d, 0)`` (the clamped cosine as band
    limited by the SH order: at order 2 the peak is 1.0625 x intensity)."""
    order = _order(order)
    d = np.asarray(direction, dtype=np.float64)
    if d.shape != (3,):
        raise InputError(f"direction must be a 3-vector, got {d.shape}")
    d = d / np.linalg.norm(d)
    inten = np.asarray(intensity, dtype=np.float64)
    amb = np.asarray(ambient, dtype=np.float64)
    y = sh_basis(d, order).astype(np.float64)  # radiance coefficients of a unit delta light
    e = radiance_to_irradiance(y)
    chan = np.broadcast_shapes(inten.shape, amb.shape)
    out = np.multiply.outer(e, np.broadcast_to(inten, chan)).reshape((len(e),) + chan)
    out[0] = out[0] + amb / SH_C0
    return out.astype(np.float32)


def shade(normals: Any, sh_coeffs: Any, albedo: Any = None) -> Any:
    """Lambertian shading ``albedo * (Y(n) . sh)``.

    Args:
        normals: ``(..., 3)`` unit normals (zero vectors give the ambient term only; mask the result).
        sh_coeffs: ``(K,)`` or ``(K, C)`` irradiance coefficients, K = 4 or 9 (the order follows from K).
        albedo: optional, broadcastable to ``(...)`` (for ``(K,)`` coefficients) or ``(..., C)``.

    Returns:
        ``(...)`` for ``(K,)`` coefficients, ``(..., C)`` for ``(K, C)``.
    """
    xp = get_xp(normals, sh_coeffs, albedo)
    c = _float(xp, sh_coeffs)
    if c.ndim not in (1, 2) or c.shape[0] not in (4, 9):
        raise InputError(f"sh_coeffs must have shape (K,) or (K, C) with K = 4 or 9, got {tuple(c.shape)}")
    basis = sh_basis(normals, 1 if c.shape[0] == 4 else 2)
    out = basis @ c.astype(basis.dtype)
    if albedo is not None:
        out = out * _float(xp, albedo)
    return out


def solve_lighting(normals: Any, intensities: Any, mask: Any = None, order: int = 1, albedo: Any = None,
                   ridge: float = 1e-9) -> Any:
    """Least-squares SH irradiance coefficients, per channel: ``argmin_l sum_mask (albedo * Y(n) . l - I)^2``.

    Args:
        normals: ``(..., 3)`` unit normals (image frame), e.g. ``(H, W, 3)``.
        intensities: ``(...)`` (one channel) or ``(..., C)``.
        mask: ``(...)`` bool, pixels that take part (default: all; pixels with a zero normal are always
            excluded).
        order: 1 (4 terms) or 2 (9 terms).
        albedo: optional, broadcastable to ``intensities``: solves for the lighting under a known albedo.
        ridge: Tikhonov weight on the *normalised* normal equations ``(A^T A / P + ridge I) l = A^T I / P``
            (P = number of pixels used): a tiny value only keeps degenerate normal sets (e.g. a plane) solvable.

    Returns:
        ``(K,)`` for one channel, ``(K, C)`` otherwise.
    """
    order = _order(order)
    xp = get_xp(normals, intensities, mask, albedo)
    n = _float(xp, normals).astype(xp.float64)
    if n.shape[-1:] != (3,):
        raise InputError(f"normals must have shape (..., 3), got {tuple(n.shape)}")
    lead = n.shape[:-1]
    img = _float(xp, intensities).astype(xp.float64)
    single = img.shape == lead
    if single:
        img = img[..., None]
    if img.shape[:-1] != lead:
        raise InputError(f"intensities must have shape {tuple(lead)} or {tuple(lead)} + (C,), got "
                         f"{tuple(_float(xp, intensities).shape)}")
    c = img.shape[-1]
    sel = (n * n).sum(-1) > 0
    if mask is not None:
        m = xp.asarray(mask)
        if m.shape != lead:
            raise InputError(f"mask must have shape {tuple(lead)}, got {tuple(m.shape)}")
        sel = sel & m.astype(bool)
    if ridge < 0:
        raise InputError(f"ridge must be >= 0, got {ridge}")
    y = sh_basis(n[sel], order)  # (P, K)
    i = img[sel]  # (P, C)
    p = y.shape[0]
    k = y.shape[1]
    if p == 0:
        raise InputError("solve_lighting: no pixel inside the mask has a normal")
    if albedo is not None:
        a = xp.broadcast_to(_float(xp, albedo).astype(xp.float64)[..., None] if single else
                            _float(xp, albedo).astype(xp.float64), img.shape)[sel]  # (P, C)
    eye = xp.eye(k)
    out = xp.empty((k, c))
    if albedo is None:
        lhs = y.T @ y / p + ridge * eye
        out[...] = xp.linalg.solve(lhs, y.T @ i / p)
    else:
        for ch in range(c):
            ay = y * a[:, ch:ch + 1]
            out[:, ch] = xp.linalg.solve(ay.T @ ay / p + ridge * eye, ay.T @ i[:, ch] / p)
    out = out.astype(xp.float32)
    return out[:, 0] if single else out


__all__ = [
    "LAMBERT_BAND",
    "SH_C0",
    "SH_C1",
    "SH_C2",
    "SH_C3",
    "SH_C4",
    "depth_gradients",
    "depth_normals",
    "directional_light",
    "get_xp",
    "mesh_normals",
    "radiance_to_irradiance",
    "sh_basis",
    "shade",
    "solve_lighting",
]
