"""Reference detail refinement: per-face shape from shading on the crop (NumPy + Numba, no torch).

``refine_depth(crops_bgr, coarse_depth, mask) -> depth`` adds the fine detail that the shading of the crop
shows and the coarse (3DMM) depth lacks. It is the quality reference of the FineNet, a possible teacher for
it, and an optional stage after the pipeline. Conventions are those of :mod:`rtface.camera` and
:mod:`rtface.render.shading`: image x to the right, y down, depth ``z`` in **crop pixels**, larger z nearer
the camera, unit normal ``n = normalize(-dz/dx, -dz/dy, 1)`` from masked central differences (no difference
crosses the mask border), SH irradiance ``E(n) = l . Y(n)`` in the basis of :func:`shading.sh_basis`.

Image model (Lambertian, one grey channel): ``I = rho * (l . Y(n(z)))`` with ``I`` the Rec. 601 luma of the
RGB crop in [0, 1] (display values, like the phase-2 loss; ``gamma`` > 1 linearises them first), ``rho`` the
albedo and ``l`` the lighting. Per face, on the bounding box of its mask:

1. **Lighting in closed form from the coarse normals** ``n0 = n(z0)``: least squares
   (:func:`shading.solve_lighting`, order ``sh_order``) with a constant albedo over the mask eroded by
   ``erode`` px, leaving out nearly black / saturated pixels; then ``robust_rounds`` re-solves without the
   pixels whose log ratio to the fit is more than ``outlier`` from the median (brows, lips, hair, beard,
   shadows must not bend the lighting).
2. **Albedo with its edges kept out of the geometry.** The raw albedo ``I / (l . Y(n(z)))`` holds the true
   albedo, the shading of the detail and the shading error of the model (the coarse surface, SH lighting).
   Its log is smoothed by an edge-aware *domain-transform* filter (Gastal & Oliveira 2011; spatial extent
   ``albedo_sigma`` px) whose edges come from a guide made of the raw log albedo and the chromaticity
   ``(r, g) / (r + g + b)`` times ``chroma_weight``, both blurred by ``guide_blur`` px so pixel noise does not
   stop the smoothing. A guide step of ``albedo_range`` stops it: strong or coloured steps (brows, lips,
   eyeliner, glasses, moles, stubble, make-up; shading changes all channels alike under near-white light)
   stay in the albedo, while weak, colourless variation smaller than ``albedo_sigma`` - the shading of
   wrinkles and folds - is smoothed out of it and left for the geometry. Larger shading differences (the
   model's error) stay in the albedo, so only fine detail can reach the depth. The shading term's weight is
   ``(1 - e / edge_contrast)^2`` with ``e`` the largest step of the kept log albedo to a neighbour (what is
   left of an albedo edge does not become relief either), times a Tukey weight of the residual (``tukey``,
   relative intensity: highlights, cast shadows), and 0 within ``erode`` px of the mask border (silhouette
   and openings mix the face with what lies behind).
3. **A few linearised depth updates** (``iterations``; the albedo is re-estimated at each one from the
   current depth, so the detail explained so far no longer leaks into it). With ``rho`` and ``l`` fixed,
   minimise over ``z`` ::

       sum_p w_p phi((rho_p (l . Y(n_p(z))) - I_p) / mu)                  shading (mu: mean intensity)
       + fidelity   * sum_p (z_p - z0_p)^2                                 stay near the coarse depth
       + smoothness * sum_p (Laplacian(z - z0))_p^2                        smooth detail (5-point stencil)

   with ``phi(r) = max(|r| - tau, 0)^2``: residuals within ``tau = shrink`` robust standard deviations of the
   residual at the coarse depth (1.4826 MAD: image noise, JPEG, what the model cannot explain) cost nothing,
   so they are not integrated into relief. Each update linearises the shading in the two gradients of ``z``
   (``dE/dp``, ``dE/dq`` analytic), solves the normal equations with ``cg_iterations`` conjugate-gradient
   steps (Numba, matrix-free, :mod:`rtface._refine_kernels`) and takes the largest of the steps 1, 1/2,
   1/4, 1/8 that lowers the energy (the linearisation fails for steep, narrow detail); the detail
   ``z - z0`` stays within +- ``max_detail`` crop px. ``fidelity`` sets the largest scale the shading may
   change; the smoothness (the paper's ``||Laplacian(z)||_1`` made quadratic and measured on the *detail*,
   so the coarse curvature is not flattened) removes pixel noise. ``band`` > 0 keeps only the detail finer
   than that Gaussian sigma.

What it can do (``python -m benchmarks accuracy``, held-out sets of ``benchmarks/detailsets.py``): the
defaults were chosen on ``rtface.synth`` faces and a validation seed of those sets (never the test seed) as a
conservative reference: little spurious relief on painted albedo edges, a small part of the wrinkles (most
of them are narrower than a pixel at S = 128, and a single image under an unknown light and albedo
constrains a depth change only along the light's direction), a clear part of a 2-3 px bump.

Radii and ``max_detail`` are given for S = 128 and scale with S / 128 (:meth:`RefineConfig.for_size`).

Speed: ``python -m rtface.refine`` (about 10-20 ms per S = 128 face on one core of the 2-core development
machine while it was busy; faces of a batch run one after the other).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from .errors import InputError
from .render import shading

LUMA = (0.299, 0.587, 0.114)  # Rec. 601, RGB order


@dataclass(frozen=True)
class RefineConfig:
    """Parameters of :func:`refine_depth` (module docstring). Pixel quantities are for S = 128."""

    sh_order: int = 2  # lighting: 1 (4 terms, the paper) or 2 (9 terms)
    robust_rounds: int = 2  # lighting re-solves without outlier pixels
    outlier: float = 0.35  # |log(I / fit) - median| above this is an outlier of the lighting fit
    dark: float = 0.02  # pixels with a channel below / above these are left out of the lighting fit
    bright: float = 0.98
    gamma: float = 1.0  # 1: the crop's values are taken as linear intensities (like the phase-2 loss)
    albedo_sigma: float = 4.0  # spatial extent of the edge-aware albedo smoothing (px)
    albedo_range: float = 0.3  # guide difference (log albedo + weighted chromaticity) that stops the smoothing
    chroma_weight: float = 6.0  # weight of the chromaticity in the guide (chroma units -> log units)
    edge_contrast: float = 0.4  # albedo contrast to a neighbour at which the shading weight reaches 0
    guide_blur: float = 1.0  # Gaussian sigma (px) of the guide of the albedo filter: noise must not stop it
    tukey: float = 0.25  # residual (relative intensity) at which a pixel's shading weight reaches 0
    erode: int = 2  # px of the mask border without a shading term
    iterations: int = 2  # linearised updates
    cg_iterations: int = 12  # conjugate-gradient steps per update
    fidelity: float = 0.01  # weight of (z - z0)^2, per px^2
    smoothness: float = 0.05  # weight of Laplacian(z - z0)^2
    max_detail: float = 3.0  # |z - z0| clipped here (crop px)
    band: float = 0.0  # > 0: keep only the detail finer than this Gaussian sigma (px): z0 + highpass(z - z0)
    shrink: float = 2.0  # residuals are soft-thresholded by this many robust standard deviations (noise floor)

    def for_size(self, size: int) -> "RefineConfig":
        """The same config for an ``size x size`` crop (radii and depth-related terms scaled by size / 128)."""
        f = size / 128.0
        if abs(f - 1.0) < 1e-9:
            return self
        return replace(self, albedo_sigma=self.albedo_sigma * f, guide_blur=self.guide_blur * f, band=self.band * f,
                       erode=max(1, int(round(self.erode * f))),
                       max_detail=self.max_detail * f)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def parse(cls, items: list[str] | tuple[str, ...], size: int = 128) -> "RefineConfig":
        """The defaults for an ``size`` crop with ``name=value`` overrides (command-line form, e.g.
        ``["shrink=1", "fidelity=0.003"]``); values are given for S = 128 and scaled like the defaults."""
        from dataclasses import fields

        types = {f.name: f.type for f in fields(cls)}
        kw: dict = {}
        for item in items:
            name, sep, value = str(item).partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in types:
                raise InputError(f"refinement setting {item!r}: expected name=value with name one of "
                                 f"{', '.join(types)}")
            try:
                kw[name] = int(value) if types[name] in (int, "int") else float(value)
            except ValueError as exc:
                raise InputError(f"refinement setting {item!r}: {value!r} is not a number") from exc
        cfg = replace(cls(), **kw)
        _check_config(cfg)
        return cfg.for_size(size)


# ----------------------------------------------------------------------------------------------- public API


def refine_depth(crops_bgr: np.ndarray, coarse_depth: np.ndarray, mask: np.ndarray,
                 config: RefineConfig | None = None, return_info: bool = False) -> Any:
    """Refined depth of each face from the shading of its crop (module docstring).

    Args:
        crops_bgr: ``(N, S, S, 3)`` (or ``(S, S, 3)``) uint8 BGR crops (the pipeline's crops).
        coarse_depth: ``(N, S, S)`` float depth in crop pixels (e.g. ``face.coarse_depth``), 0 outside the face.
        mask: ``(N, S, S)`` bool, where the face is rendered.
        config: parameters, used as given (default: :class:`RefineConfig` scaled to S with
            :meth:`RefineConfig.for_size`).
        return_info: also return a dict of per-face arrays: ``light`` (N, K), ``albedo`` (N, S, S) (luma,
            same units as the intensity), ``weight`` (N, S, S) shading weights, ``intensity`` (N, S, S).

    Returns:
        ``(N, S, S)`` float32 depth in crop pixels, 0 outside ``mask`` (``(S, S)`` for a single crop); with
        ``return_info`` a ``(depth, info)`` tuple.
    """
    crops, z0, m, single = _check_inputs(crops_bgr, coarse_depth, mask)
    n, s = crops.shape[0], crops.shape[1]
    cfg = RefineConfig().for_size(s) if config is None else config
    _check_config(cfg)
    out = np.zeros((n, s, s), np.float32)
    infos = []
    for i in range(n):
        out[i], info = _refine_one(crops[i], z0[i], m[i], cfg)
        infos.append(info)
    if single:
        out = out[0]
    if not return_info:
        return out
    info = {k: np.stack([d[k] for d in infos]) for k in infos[0]} if infos else {}
    if single:
        info = {k: v[0] for k, v in info.items()}
    return out, info


def lighting_albedo(crops_bgr: np.ndarray, coarse_depth: np.ndarray, mask: np.ndarray,
                    config: RefineConfig | None = None) -> dict[str, np.ndarray]:
    """The refinement's lighting and albedo estimated at the coarse depth (steps 1-2 of the module docstring).

    Returns ``light`` (N, K) SH irradiance (luma), ``albedo`` (N, S, S) (0 outside ``fit``), ``intensity``
    (N, S, S) luma in [0, 1] and ``fit`` (N, S, S) bool, the pixels used (eroded mask with valid normals)."""
    crops, z0, m, _ = _check_inputs(crops_bgr, coarse_depth, mask)
    s = crops.shape[1]
    cfg = RefineConfig().for_size(s) if config is None else config
    _check_config(cfg)
    k = shading.SH_TERMS[cfg.sh_order]
    out = {"light": np.zeros((len(crops), k)), "albedo": np.zeros(z0.shape, np.float32),
           "intensity": np.zeros(z0.shape, np.float32), "fit": np.zeros(z0.shape, bool)}
    for i in range(len(crops)):
        lum, rgb = intensity(crops[i], cfg.gamma)
        est = _estimate(lum.astype(np.float64), rgb, np.where(m[i], z0[i], 0.0), m[i], cfg)
        out["intensity"][i] = lum
        if est is None:
            continue
        out["light"][i] = est["light"]
        out["albedo"][i] = np.where(est["fit"], est["albedo"], 0.0)
        out["fit"][i] = est["fit"]
    return out


def intensity(crops_bgr: np.ndarray, gamma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Luma (Rec. 601) ``(..., S, S)`` and RGB ``(..., S, S, 3)`` in [0, 1] of BGR uint8 crops.

    ``gamma`` != 1 raises the values to that power first (approximate linearisation of sRGB: 2.2).
    """
    rgb = np.asarray(crops_bgr)[..., ::-1].astype(np.float32) * np.float32(1.0 / 255.0)
    if gamma != 1.0:
        rgb = rgb ** np.float32(gamma)
    luma = rgb @ np.asarray(LUMA, np.float32)
    return luma, rgb


# ---------------------------------------------------------------------------------------------- internals


def _check_inputs(crops_bgr, coarse_depth, mask):
    c = np.asarray(crops_bgr)
    single = c.ndim == 3
    if single:
        c = c[None]
    if c.ndim != 4 or c.shape[-1] != 3 or c.shape[1] != c.shape[2]:
        raise InputError(f"crops_bgr must have shape (N, S, S, 3) (BGR crops), got {np.shape(crops_bgr)}")
    if c.dtype != np.uint8:
        raise InputError(f"crops_bgr must be uint8 BGR images, got dtype {c.dtype}; convert with "
                         f"(x * 255).round().astype(np.uint8) from [0, 1] floats")
    n, s = c.shape[0], c.shape[1]
    if s < 16:
        raise InputError(f"crops must be at least 16 x 16 pixels, got {s} x {s}")
    z = np.asarray(coarse_depth)
    m = np.asarray(mask)
    if single:
        z, m = z[None], m[None]
    if z.shape != (n, s, s):
        raise InputError(f"coarse_depth must have shape {(n, s, s) if not single else (s, s)} (crop px, aligned "
                         f"with the crops), got {np.shape(coarse_depth)}")
    if m.shape != (n, s, s):
        raise InputError(f"mask must have shape {(n, s, s) if not single else (s, s)} (bool, where the face is "
                         f"rendered), got {np.shape(mask)}")
    if m.dtype != bool:
        if m.dtype.kind not in "iuf":
            raise InputError(f"mask must be bool (or 0/1 numbers), got dtype {m.dtype}")
        m = m != 0
    z = z.astype(np.float64)
    if not np.isfinite(z[m]).all():
        raise InputError("coarse_depth has non-finite values inside the mask; pass the rasterised coarse depth "
                         "(finite inside the face, 0 outside)")
    return c, z, m, single


def _check_config(cfg: RefineConfig) -> None:
    if not isinstance(cfg, RefineConfig):
        raise InputError(f"config must be a rtface.refine.RefineConfig, got {type(cfg).__name__}")
    if cfg.sh_order not in (1, 2):
        raise InputError(f"RefineConfig.sh_order must be 1 or 2, got {cfg.sh_order}")
    for name in ("fidelity", "albedo_sigma", "albedo_range", "edge_contrast", "tukey", "max_detail", "gamma"):
        if not getattr(cfg, name) > 0:
            raise InputError(f"RefineConfig.{name} must be > 0, got {getattr(cfg, name)}")
    for name in ("smoothness", "chroma_weight"):
        if getattr(cfg, name) < 0:
            raise InputError(f"RefineConfig.{name} must be >= 0, got {getattr(cfg, name)}")
    for name in ("iterations", "cg_iterations", "robust_rounds", "erode"):
        if getattr(cfg, name) < 0 or int(getattr(cfg, name)) != getattr(cfg, name):
            raise InputError(f"RefineConfig.{name} must be a non-negative int, got {getattr(cfg, name)}")


def _erode(mask: np.ndarray, px: int) -> np.ndarray:
    import cv2

    if px <= 0:
        return mask.copy()
    k = np.ones((2 * px + 1, 2 * px + 1), np.uint8)
    return cv2.erode(mask.astype(np.uint8), k, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)


def _lighting(n0: np.ndarray, lum: np.ndarray, rgb: np.ndarray, fit: np.ndarray, cfg: RefineConfig):
    """SH lighting (K,) from the coarse normals, constant albedo, robust to albedo outliers."""
    ok = fit & (rgb > cfg.dark).all(-1) & (rgb < cfg.bright).all(-1)
    if ok.sum() < 16:
        ok = fit
    light = shading.solve_lighting(n0, lum, ok, order=cfg.sh_order, ridge=1e-6)
    for _ in range(cfg.robust_rounds):
        sh = shading.shade(n0, light)
        good = ok & (sh > 1e-4)
        ratio = np.log(np.maximum(lum[good], 1e-4) / sh[good])
        keep = np.zeros_like(ok)
        keep[good] = np.abs(ratio - np.median(ratio)) < cfg.outlier
        if keep.sum() < max(16, 0.2 * ok.sum()):
            break
        light = shading.solve_lighting(n0, lum, keep, order=cfg.sh_order, ridge=1e-6)
    return light.astype(np.float64)


def _albedo(lum: np.ndarray, shade: np.ndarray, floor: float, chroma: np.ndarray, m: np.ndarray,
            cfg: RefineConfig) -> tuple[np.ndarray, np.ndarray]:
    """Albedo ``rho`` (S, S) with its edges kept, and the shading weight of its edges in [0, 1] (1: no edge).

    ``rho = exp(DT(log(I / shade)))`` with ``DT`` the edge-aware domain-transform filter guided by the raw log
    albedo and the weighted chromaticity, both lightly blurred so that pixel noise does not stop the smoothing
    (module docstring)."""
    from ._refine_kernels import domain_transform

    log_raw = np.where(m, np.log(np.maximum(lum, 1e-3) / np.maximum(shade, floor)), 0.0)
    guide = np.concatenate([log_raw[..., None], cfg.chroma_weight * chroma], axis=-1)
    guide = masked_blur(guide, m, cfg.guide_blur)
    log_rho = domain_transform(log_raw, np.ascontiguousarray(guide), m, float(cfg.albedo_sigma),
                               float(cfg.albedo_range), 3)
    # largest difference of the kept log albedo to a 4-neighbour inside m: where an albedo edge is
    e = np.zeros(m.shape)
    dv = np.where(m[1:] & m[:-1], np.abs(np.diff(log_rho, axis=0)), 0.0)
    dh = np.where(m[:, 1:] & m[:, :-1], np.abs(np.diff(log_rho, axis=1)), 0.0)
    e[1:] = np.maximum(e[1:], dv)
    e[:-1] = np.maximum(e[:-1], dv)
    e[:, 1:] = np.maximum(e[:, 1:], dh)
    e[:, :-1] = np.maximum(e[:, :-1], dh)
    w_edge = np.clip(1.0 - e / cfg.edge_contrast, 0.0, 1.0) ** 2
    return np.where(m, np.exp(log_rho), 0.0), w_edge


def masked_blur(x: np.ndarray, m: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (sigma px) of ``x`` (H, W[, C]) averaging over ``m`` only (normalised convolution)."""
    import cv2

    if sigma <= 0:
        return x
    mm = m[..., None] if x.ndim == 3 else m
    num = cv2.GaussianBlur(np.where(mm, x, 0.0), (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
    den = np.maximum(cv2.GaussianBlur(m.astype(np.float64), (0, 0), sigma, borderType=cv2.BORDER_CONSTANT), 1e-9)
    return num / (den[..., None] if x.ndim == 3 else den)


def _stencils(m: np.ndarray):
    """Per-pixel coefficients of the masked central differences (:func:`shading.depth_gradients`).

    ``(Dx z)[i, j] = cx[0] z[i, j-1] + cx[1] z[i, j] + cx[2] z[i, j+1]`` and likewise along y; also the bool
    map of pixels whose four neighbours are inside the mask (where the Laplacian is measured)."""
    s0, s1 = m.shape

    def along(mm):  # mm: (rows, cols), differences along the last axis
        fwd = np.zeros_like(mm)
        fwd[:, :-1] = mm[:, 1:] & mm[:, :-1]
        bwd = np.zeros_like(mm)
        bwd[:, 1:] = fwd[:, :-1]
        c = np.zeros((3,) + mm.shape)
        both = fwd & bwd
        only_f = fwd & ~bwd
        only_b = bwd & ~fwd
        c[0][both], c[2][both] = -0.5, 0.5
        c[1][only_f], c[2][only_f] = -1.0, 1.0
        c[0][only_b], c[1][only_b] = -1.0, 1.0
        return c

    cx = along(m)
    cy = along(m.T).transpose(0, 2, 1)
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]
    inner[:-1, :] &= m[1:, :]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    inner[0, :] = inner[-1, :] = False
    inner[:, 0] = inner[:, -1] = False
    assert cx.shape == (3, s0, s1) and cy.shape == (3, s0, s1)
    return np.ascontiguousarray(cx), np.ascontiguousarray(cy), inner


def _shading_and_slopes(z: np.ndarray, m: np.ndarray, light: np.ndarray, order: int):
    """Shading ``l . Y(n(z))`` and its derivatives with respect to ``p = dz/dx`` and ``q = dz/dy``."""
    p, q, valid = shading.depth_gradients(z, m)
    g = 1.0 / np.sqrt(1.0 + p * p + q * q)
    nx, ny, nz = -p * g, -q * g, g
    n = np.stack([nx, ny, nz], -1)
    sh = shading.sh_basis(n, order) @ light
    c1, c2, c3, c4 = shading.SH_C1, shading.SH_C2, shading.SH_C3, shading.SH_C4
    l = light
    # gradient of the shading with respect to the (unnormalised) components of n
    gx = np.full_like(nx, c1 * l[1])
    gy = np.full_like(nx, c1 * l[2])
    gz = np.full_like(nx, c1 * l[3])
    if order == 2:
        gx = gx + c2 * l[4] * ny + c2 * l[7] * nz + 2 * c4 * l[8] * nx
        gy = gy + c2 * l[4] * nx + c2 * l[5] * nz - 2 * c4 * l[8] * ny
        gz = gz + c2 * l[5] * ny + 6 * c3 * l[6] * nz + c2 * l[7] * nx
    g3 = g**3
    # dn/dp = (-g + p^2 g^3, p q g^3, -p g^3), dn/dq = (p q g^3, -g + q^2 g^3, -q g^3)
    sp = gx * (-g + p * p * g3) + gy * (p * q * g3) + gz * (-p * g3)
    sq = gx * (p * q * g3) + gy * (-g + q * q * g3) + gz * (-q * g3)
    return sh, sp, sq, valid


def _refine_one(crop: np.ndarray, z0: np.ndarray, m: np.ndarray, cfg: RefineConfig):
    """One face; the work is done on the bounding box of its mask (plus a margin) only."""
    s = crop.shape[0]
    lum32, rgb = intensity(crop, cfg.gamma)
    info = {"light": np.zeros(shading.SH_TERMS[cfg.sh_order]), "albedo": np.zeros((s, s), np.float32),
            "weight": np.zeros((s, s), np.float32), "intensity": lum32}
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    out = np.where(m, z0, 0.0).astype(np.float32)
    if len(rows) == 0:
        return out, info
    pad = 2
    box = (slice(max(rows[0] - pad, 0), min(rows[-1] + pad + 1, s)),
           slice(max(cols[0] - pad, 0), min(cols[-1] + pad + 1, s)))
    z, inf = _refine_intensity(lum32[box], rgb[box], z0[box], m[box], cfg)
    out[box] = z
    info["light"] = inf["light"]
    for k in ("albedo", "weight"):
        info[k][box] = inf[k]
    return out, info


def _refine_intensity(lum32: np.ndarray, rgb: np.ndarray, z0: np.ndarray, m: np.ndarray, cfg: RefineConfig):
    """The refinement of one face from its luma (S, S) and RGB (S, S, 3) intensities (floats)."""
    s = lum32.shape[0]
    lum = lum32.astype(np.float64)
    info = {"light": np.zeros(shading.SH_TERMS[cfg.sh_order]), "albedo": np.zeros((s, s), np.float32),
            "weight": np.zeros((s, s), np.float32), "intensity": lum32}
    z = np.where(m, z0, 0.0)
    est = _estimate(lum, rgb, z, m, cfg)
    if est is None:
        return z.astype(np.float32), info  # too small a face to say anything about its shading
    light, fit, mu, floor, chroma = est["light"], est["fit"], est["mu"], est["floor"], est["chroma"]
    cx, cy, inner = _stencils(m)
    zk = z.copy()
    rho = w = None
    tau = None
    for _ in range(cfg.iterations):
        sh, sp, sq, _ = _shading_and_slopes(zk, m, light, cfg.sh_order)
        # albedo from the current depth: the detail explained so far no longer leaks into it
        rho, w_edge = _albedo(lum, sh, floor, chroma, fit, cfg)
        r = np.where(fit, (lum - rho * sh) / mu, 0.0)
        tk = np.clip(1.0 - (r / cfg.tukey) ** 2, 0.0, 1.0) ** 2
        if cfg.shrink > 0:
            if tau is None:  # the residual's spread at the coarse depth: noise and what the model cannot explain
                tau = cfg.shrink * 1.4826 * float(np.median(np.abs(r[fit] - np.median(r[fit]))))
            r = np.sign(r) * np.maximum(np.abs(r) - tau, 0.0)
        w = np.where(fit & (sh > floor), w_edge * tk, 0.0)
        a = np.where(fit, rho * sp / mu, 0.0)
        b = np.where(fit, rho * sq / mu, 0.0)
        step = _cg(a, b, w, r, zk - z, cx, cy, inner, m, cfg.fidelity, cfg.smoothness, cfg.cg_iterations)
        # backtracking on the non-linear energy: the linearisation fails for steep, narrow detail
        e0 = _energy(zk, z, lum, rho, light, w, fit, m, inner, mu, tau or 0.0, cfg)
        for alpha in (1.0, 0.5, 0.25, 0.125):
            zt = np.where(m, z + np.clip(zk + alpha * step - z, -cfg.max_detail, cfg.max_detail), 0.0)
            if _energy(zt, z, lum, rho, light, w, fit, m, inner, mu, tau or 0.0, cfg) < e0:
                zk = zt
                break
        else:
            break
    if cfg.band > 0:
        d = zk - z
        zk = np.where(m, z + d - masked_blur(d, m, cfg.band), 0.0)
    if rho is not None:
        info.update(light=light, albedo=np.where(m, rho, 0.0).astype(np.float32), weight=w.astype(np.float32))
    return zk.astype(np.float32), info


def _estimate(lum: np.ndarray, rgb: np.ndarray, z: np.ndarray, m: np.ndarray, cfg: RefineConfig) -> dict | None:
    """Lighting (from the coarse normals) and albedo at the coarse depth ``z``; None if too few pixels."""
    fit = _erode(m, cfg.erode)
    n0, valid0 = shading.depth_normals(z, m, return_valid=True)
    fit &= valid0
    if fit.sum() < 32:
        return None
    light = _lighting(n0, lum, rgb, fit, cfg)
    sh0 = shading.shade(n0, light).astype(np.float64)
    floor = 0.1 * max(float(np.median(sh0[fit])), 1e-4)
    chroma = (rgb[..., :2] / np.maximum(rgb.sum(-1, keepdims=True), 1e-3)).astype(np.float64)
    rho, _ = _albedo(lum, sh0, floor, chroma, fit, cfg)
    return {"light": light, "fit": fit, "mu": float(lum[fit].mean()), "floor": floor, "chroma": chroma,
            "albedo": rho}


def _energy(zk, z0, lum, rho, light, w, fit, m, inner, mu, tau: float, cfg: RefineConfig) -> float:
    """The energy of the module docstring at depth ``zk`` (albedo, lighting and weights held fixed); residuals
    within +-``tau`` cost nothing (the soft threshold's dead zone)."""
    n = shading.depth_normals(zk, m)
    r = np.where(fit, (lum - rho * shading.shade(n, light)) / mu, 0.0)
    r = np.maximum(np.abs(r) - tau, 0.0)
    d = np.where(m, zk - z0, 0.0)
    lap = np.zeros_like(d)
    lap[1:-1, 1:-1] = d[:-2, 1:-1] + d[2:, 1:-1] + d[1:-1, :-2] + d[1:-1, 2:] - 4.0 * d[1:-1, 1:-1]
    return float((w * r * r).sum() + cfg.fidelity * (d * d).sum() + cfg.smoothness * (lap[inner] ** 2).sum())


def _cg(a, b, w, r, d0, cx, cy, inner, m, lam_f, lam_s, iters):
    from ._refine_kernels import cg_solve

    return cg_solve(a, b, w, r, d0, cx, cy, inner, m, float(lam_f), float(lam_s), int(iters))


# ----------------------------------------------------------------------------------------------- timing


def measure_speed(faces: int = 8, size: int = 128, batches: tuple[int, ...] = (1, 4), repeats: int = 5) -> dict:
    """Median ms per face of :func:`refine_depth` on synthetic faces (:func:`rtface.synth.batch`) at crop size
    ``size``, per batch size: ``{"b1_ms_per_face": ..., "b4_ms_per_face": ...}``."""
    from . import synth
    from .face_model import FaceModel

    model = FaceModel.load()
    b = synth.batch(model, max(faces, max(batches)), seed=12345, size=size, detail=True)
    refine_depth(b["image"][:1], b["coarse_depth"][:1], b["mask"][:1])  # compile / warm up
    res = {}
    for nb in batches:
        t = []
        for rep in range(repeats):
            i0 = (rep * nb) % (len(b["image"]) - nb + 1)
            sl = slice(i0, i0 + nb)
            t0 = time.perf_counter()
            refine_depth(b["image"][sl], b["coarse_depth"][sl], b["mask"][sl])
            t.append((time.perf_counter() - t0) / nb)
        res[f"b{nb}_ms_per_face"] = float(np.median(t) * 1e3)
    return res


__all__ = ["LUMA", "RefineConfig", "intensity", "lighting_albedo", "measure_speed", "refine_depth"]

if __name__ == "__main__":
    import os

    r = measure_speed()
    print(f"refine_depth, S=128, {os.cpu_count()} CPUs (NumPy/OpenCV/Numba, one face after the other): "
          + ", ".join(f"batch {k[1:k.index('_')]}: {v:.2f} ms per face" for k, v in r.items()))
