"""Numba kernels of :mod:`rtface.refine`: the matrix-free conjugate-gradient solve of one linearised update.

The system (one face, ``(H, W)`` maps, unknown ``x`` = the depth change, 0 outside the mask ``m``)::

    (D^T W D + lam_f I + lam_s L^T L) x = D^T W r - lam_f d0 - lam_s L^T L d0

with ``D x = a * Dx x + b * Dy x`` (``Dx``, ``Dy`` the masked central differences given by the per-pixel
stencils ``cx``, ``cy``: ``(Dx x)[i, j] = cx[0] x[i, j-1] + cx[1] x[i, j] + cx[2] x[i, j+1]``), ``W = diag(w)``,
``L`` the 5-point Laplacian on the ``inner`` pixels (all four neighbours in the mask; 0 elsewhere) and ``d0``
the detail so far (so the fidelity and smoothness act on the whole detail, not on the step).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _forward(x, a, b, w, cx, cy, inner, m, u, v):
    """u = w * (a Dx x + b Dy x); v = inner * L x."""
    h, wd = x.shape
    for i in range(h):
        for j in range(wd):
            if not m[i, j]:
                u[i, j] = 0.0
                v[i, j] = 0.0
                continue
            gx = cx[1, i, j] * x[i, j]
            if j > 0:
                gx += cx[0, i, j] * x[i, j - 1]
            if j < wd - 1:
                gx += cx[2, i, j] * x[i, j + 1]
            gy = cy[1, i, j] * x[i, j]
            if i > 0:
                gy += cy[0, i, j] * x[i - 1, j]
            if i < h - 1:
                gy += cy[2, i, j] * x[i + 1, j]
            u[i, j] = w[i, j] * (a[i, j] * gx + b[i, j] * gy)
            if inner[i, j]:
                v[i, j] = x[i - 1, j] + x[i + 1, j] + x[i, j - 1] + x[i, j + 1] - 4.0 * x[i, j]
            else:
                v[i, j] = 0.0


@njit(cache=True, nogil=True)
def _backward(x, u, v, a, b, cx, cy, m, lam_f, lam_s, data_scale, out):
    """out = data_scale * D^T u + lam_f x + lam_s L^T v (u, v from :func:`_forward`)."""
    h, wd = u.shape
    for i in range(h):
        for j in range(wd):
            if not m[i, j]:
                out[i, j] = 0.0
                continue
            val = cx[1, i, j] * a[i, j] * u[i, j] + cy[1, i, j] * b[i, j] * u[i, j]
            if j > 0:
                val += cx[2, i, j - 1] * a[i, j - 1] * u[i, j - 1]
            if j < wd - 1:
                val += cx[0, i, j + 1] * a[i, j + 1] * u[i, j + 1]
            if i > 0:
                val += cy[2, i - 1, j] * b[i - 1, j] * u[i - 1, j]
            if i < h - 1:
                val += cy[0, i + 1, j] * b[i + 1, j] * u[i + 1, j]
            lt = -4.0 * v[i, j]
            if i > 0:
                lt += v[i - 1, j]
            if i < h - 1:
                lt += v[i + 1, j]
            if j > 0:
                lt += v[i, j - 1]
            if j < wd - 1:
                lt += v[i, j + 1]
            out[i, j] = data_scale * val + lam_f * x[i, j] + lam_s * lt


@njit(cache=True, nogil=True)
def cg_solve(a, b, w, r, d0, cx, cy, inner, m, lam_f, lam_s, iters):
    """``iters`` conjugate-gradient steps from 0 on the system of the module docstring -> x (H, W) float64."""
    h, wd = a.shape
    u = np.zeros((h, wd))
    v = np.zeros((h, wd))
    rhs = np.zeros((h, wd))
    tmp = np.zeros((h, wd))
    # rhs = D^T (w r) - (lam_f d0 + lam_s L^T L d0)
    for i in range(h):
        for j in range(wd):
            u[i, j] = w[i, j] * r[i, j] if m[i, j] else 0.0
            v[i, j] = 0.0
    _backward(np.zeros((h, wd)), u, v, a, b, cx, cy, m, 0.0, 0.0, 1.0, rhs)
    _forward(d0, a, b, w, cx, cy, inner, m, u, v)
    _backward(d0, u, v, a, b, cx, cy, m, lam_f, lam_s, 0.0, tmp)
    x = np.zeros((h, wd))
    res = np.zeros((h, wd))
    p = np.zeros((h, wd))
    rr = 0.0
    for i in range(h):
        for j in range(wd):
            res[i, j] = rhs[i, j] - tmp[i, j]
            p[i, j] = res[i, j]
            rr += res[i, j] * res[i, j]
    rr0 = rr
    for _ in range(iters):
        if rr <= 1e-20 * rr0 or rr == 0.0:
            break
        _forward(p, a, b, w, cx, cy, inner, m, u, v)
        _backward(p, u, v, a, b, cx, cy, m, lam_f, lam_s, 1.0, tmp)
        pap = 0.0
        for i in range(h):
            for j in range(wd):
                pap += p[i, j] * tmp[i, j]
        if pap <= 0.0:
            break
        alpha = rr / pap
        rr_new = 0.0
        for i in range(h):
            for j in range(wd):
                x[i, j] += alpha * p[i, j]
                res[i, j] -= alpha * tmp[i, j]
                rr_new += res[i, j] * res[i, j]
        beta = rr_new / rr
        rr = rr_new
        for i in range(h):
            for j in range(wd):
                p[i, j] = res[i, j] + beta * p[i, j]
    return x


@njit(cache=True, nogil=True)
def domain_transform(values, guide, mask, sigma_s, sigma_r, iterations):
    """Edge-aware smoothing of ``values`` (H, W) inside ``mask``: the recursive domain-transform filter
    (Gastal & Oliveira, SIGGRAPH 2011) with the edge distances of the multi-channel ``guide`` (H, W, C).

    Between neighbouring pixels the domain distance is ``1 + sigma_s / sigma_r * sum_c |guide_c difference|``;
    nothing propagates across the mask border. ``sigma_s`` in pixels, ``sigma_r`` in guide units. Pixels outside
    the mask keep their value."""
    h, w = values.shape
    nc = guide.shape[2]
    out = values.copy()
    # domain distances to the left / upper neighbour (inf where the pair is not inside the mask)
    dx = np.full((h, w), np.inf)
    dy = np.full((h, w), np.inf)
    k = sigma_s / sigma_r
    for i in range(h):
        for j in range(w):
            if not mask[i, j]:
                continue
            if j > 0 and mask[i, j - 1]:
                s = 0.0
                for c in range(nc):
                    s += abs(guide[i, j, c] - guide[i, j - 1, c])
                dx[i, j] = 1.0 + k * s
            if i > 0 and mask[i - 1, j]:
                s = 0.0
                for c in range(nc):
                    s += abs(guide[i, j, c] - guide[i - 1, j, c])
                dy[i, j] = 1.0 + k * s
    # feedback coefficients a^d, a = exp(-sqrt(2) / sigma_H); sigma_H halves from one iteration to the next,
    # so the coefficients of the next iteration are the squares of these
    sigma_h0 = sigma_s * np.sqrt(3.0) * 2.0 ** (iterations - 1) / np.sqrt(4.0**iterations - 1.0)
    la = -np.sqrt(2.0) / sigma_h0
    ax = np.exp(la * dx)
    ay = np.exp(la * dy)
    for it in range(iterations):
        if it > 0:
            ax *= ax
            ay *= ay
        for i in range(h):
            for j in range(1, w):
                out[i, j] += ax[i, j] * (out[i, j - 1] - out[i, j])
            for j in range(w - 2, -1, -1):
                out[i, j] += ax[i, j + 1] * (out[i, j + 1] - out[i, j])
        for j in range(w):
            for i in range(1, h):
                out[i, j] += ay[i, j] * (out[i - 1, j] - out[i, j])
            for i in range(h - 2, -1, -1):
                out[i, j] += ay[i + 1, j] * (out[i + 1, j] - out[i, j])
    return out
