"""Held-out synthetic faces for the detail benchmarks, drawn by a renderer that is **not** ``rtface.synth``.

``make_set(model, kind, n, size=128, seed=0) -> dict`` of stacked arrays; ``kind``:

* ``"detail"``: faces with known geometric fine detail (wrinkles, folds, bumps) and an ordinary albedo
  (skin, lips, brows, a few moles);
* ``"albedo"``: faces with strong painted albedo edges - dark brows, eyeliner, a glasses frame printed on the
  skin, moles, freckles, stubble, face-paint lines, lipstick - and **no** geometric detail at all
  (``detail == 0``): whatever relief a method adds there is spurious.

Fields (S = ``size``): ``image`` (n, S, S, 3) uint8 BGR; ``depth`` (n, S, S) float32 crop px, the true
surface incl. detail (0 outside the mask); ``coarse_depth`` the true surface without the detail: the 3DMM mesh
made smooth (Phong tessellation, below), area-averaged like the image; ``mesh_depth`` the pipeline's
rasteriser on the true mesh (faceted: what a perfect CoarseNet gives); ``detail = depth - coarse_depth``;
``albedo`` (n, S, S, 3) the linear RGB albedo (exposure folded in); ``mask`` bool (pixels fully covered by the
face); ``pose`` (n, 6), ``identity``, ``expression``, ``landmarks`` (n, 68, 2) crop px; ``mm_per_px`` (n,) =
10 / pose scale. Seeds: face ``i`` of a set is drawn from
``np.random.default_rng([SEED, KINDS.index(kind), seed, i])``; nothing else in rtface draws from the
:data:`SEED` namespace, and the networks never see this renderer, so the sets are held out by construction.

How this renderer differs from ``rtface.synth`` (the training faces):

* **Image formation**: rendered at ``SUPERSAMPLE`` x the crop resolution and area-averaged down to S (what a
  sensor integrates), then a little blur, noise and JPEG; ``rtface.synth`` point-samples at S.
* **A smooth face**: the mesh's facets (about 2 mm, a pixel at S = 128) are smoothed by Phong tessellation
  (Boubekeur & Alexa 2008) before shading, so the image shows no facets - like a real face - and the truth is
  that smooth surface; ``rtface.synth`` shades the faceted depth.
* **Lighting**: exact clamped-cosine Lambertian shading of one key light from anywhere within 70 deg of the
  view axis, an optional fill light and a hemispherical sky term (not band-limited SH), exposure-normalised;
  sometimes a weak Blinn-Phong highlight.
* **Albedo**: a two-chromophore skin model (melanin / haemoglobin absorption per channel) with smooth
  blotches, drawn as a texture on the mean face's (x, y) coordinates (``TEX_RES`` cm per texel) and sampled
  with bilinear interpolation; brows are drawn as individual hair strokes.
* **Detail shapes**: one-sided Gaussian grooves (``rtface.synth`` uses zero-mean Mexican hats), asymmetric
  nasolabial folds with a cheek bulge, tear troughs, a mentolabial groove, glabella lines, crow's feet and
  round bumps (moles, scars), with physical widths (Gaussian sigma 0.4 - 3 mm) and depths (0.15 - 2.5 mm);
  displaced along the surface normal (depth change ``d / n_z``).

Detail metric (:func:`highpass_error`): the **high-pass depth error** of a depth ``z`` against the truth
``z*`` is ``sqrt(mean_E (HP(z - z*))^2)`` in mm, with ``HP(x)`` = ``x`` minus its local linear fit under
Gaussian weights inside the mask (:func:`highpass`; ``sigma = HIGHPASS_MM`` mm in crop px: ``HIGHPASS_MM / 10 *
scale``; a tilt of the whole face has no high-pass)
over ``m`` = the true mask and the predicted one, and ``E`` = ``m`` eroded by ``EVAL_ERODE`` px (silhouette
and openings left out), within the skin region of the true landmarks, without the pixels next to a depth
discontinuity of the true or the predicted coarse surface (:func:`eval_mask`). Depth is known only up to a
constant and a coarse shape error is smooth, so the high-pass keeps what detail is about: the error at scales
below a few mm.
"""

from __future__ import annotations

import math

import numpy as np

SEED = 20_250_611
KINDS = ("detail", "albedo")
SUPERSAMPLE = 3
TEX_RES = 0.04  # cm per texel of the canonical texture
TEX_X = (-8.0, 8.0)  # mean-face x range of the texture (cm)
TEX_Y = (-9.0, 11.5)  # mean-face y range (cm, y up)
HIGHPASS_MM = 5.0
EVAL_ERODE = 2
DISCONTINUITY_PX = 0.5


# ------------------------------------------------------------------------------------------------ metric


def highpass(x: np.ndarray, mask: np.ndarray, sigma_px: float) -> np.ndarray:
    """High-pass of a map (H, W) inside ``mask``: ``x`` minus its local *linear* fit (Gaussian weights of sigma
    ``sigma_px`` over the mask's pixels), so a plane - a tilt of the whole face - has no high-pass even at the
    mask's border; 0 outside."""
    import cv2

    h, w = x.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    xs -= w / 2.0
    ys -= h / 2.0
    m = mask.astype(np.float64)
    z = np.where(mask, x, 0.0).astype(np.float64)
    k = 2 * int(math.ceil(3.0 * sigma_px)) + 1

    def g(a):
        return cv2.GaussianBlur(a, (k, k), sigma_px, borderType=cv2.BORDER_CONSTANT)

    m0, mx, my = g(m), g(m * xs), g(m * ys)
    mxx, mxy, myy = g(m * xs * xs), g(m * xs * ys), g(m * ys * ys)
    z0, zx, zy = g(z), g(z * xs), g(z * ys)
    # moments about each pixel (u = x' - x, v = y' - y)
    a10, a01 = mx - xs * m0, my - ys * m0
    a20 = mxx - 2 * xs * mx + xs * xs * m0
    a11 = mxy - xs * my - ys * mx + xs * ys * m0
    a02 = myy - 2 * ys * my + ys * ys * m0
    bu, bv = zx - xs * z0, zy - ys * z0
    ridge = 1e-6 * np.maximum(m0, 1e-12)
    a20, a02 = a20 + ridge, a02 + ridge
    # intercept of the weighted plane fit (Cramer's rule on the 3x3 normal equations)
    det = m0 * (a20 * a02 - a11 * a11) - a10 * (a10 * a02 - a11 * a01) + a01 * (a10 * a11 - a20 * a01)
    num = z0 * (a20 * a02 - a11 * a11) - a10 * (bu * a02 - a11 * bv) + a01 * (bu * a11 - a20 * bv)
    fit = num / np.where(np.abs(det) > 1e-300, det, 1e-300)
    return np.where(mask, x - fit, 0.0)


def face_region(landmarks: np.ndarray, size: int, forehead: float = 0.3) -> np.ndarray:
    """Skin region (S, S) bool of 68 landmarks (crop px): the polygon of the jaw line and the brows moved up by
    ``forehead`` x the chin-to-brow distance (the region of ``train.losses.face_region``)."""
    import cv2

    p = np.asarray(landmarks, np.float64)[:, :2]
    brows = p[26:16:-1]
    poly = np.concatenate([p[0:17], brows + forehead * (brows.mean(0) - p[8])])
    out = np.zeros((size, size), np.uint8)
    if np.isfinite(poly).all():
        cv2.fillPoly(out, [np.round((poly - 0.5) * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    return out > 0


def eval_mask(gt_coarse: np.ndarray, gt_mask: np.ndarray, pred_mask: np.ndarray | None = None,
              landmarks: np.ndarray | None = None, pred_coarse: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """(filter mask, evaluation mask) of one face.

    Filter mask: the true mask (and the predicted one). Evaluation mask: that, eroded by ``EVAL_ERODE`` px
    (silhouette, eye / mouth / nostril openings), without the pixels within 1 px of a depth discontinuity of
    the truth (a second difference above ``DISCONTINUITY_PX``: the nose over the cheek at an angle, where a
    pixel's depth is not defined) and, with ``landmarks``, inside :func:`face_region`."""
    import cv2

    m = gt_mask.astype(bool) if pred_mask is None else gt_mask.astype(bool) & pred_mask.astype(bool)
    k = 2 * EVAL_ERODE + 1
    e = cv2.erode(m.astype(np.uint8), np.ones((k, k), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    jump = np.zeros(m.shape, bool)
    for c in (gt_coarse,) if pred_coarse is None else (gt_coarse, pred_coarse):
        z = np.where(m, c, 0.0).astype(np.float64)
        jump[1:-1, :] |= np.abs(z[2:, :] + z[:-2, :] - 2 * z[1:-1, :]) > DISCONTINUITY_PX
        jump[:, 1:-1] |= np.abs(z[:, 2:] + z[:, :-2] - 2 * z[:, 1:-1]) > DISCONTINUITY_PX
    jump = cv2.dilate(jump.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    e = e.astype(bool) & ~jump
    if landmarks is not None:
        e &= face_region(landmarks, m.shape[0])
    return m, e


def highpass_error(pred: np.ndarray, gt: np.ndarray, gt_mask: np.ndarray, mm_per_px: float,
                   pred_mask: np.ndarray | None = None, landmarks: np.ndarray | None = None,
                   gt_coarse: np.ndarray | None = None, pred_coarse: np.ndarray | None = None) -> float:
    """High-pass depth error in mm (module docstring) of ``pred`` against ``gt`` (crop px) over
    :func:`eval_mask` (``gt_coarse``: the true coarse surface, for the discontinuities, default ``gt``;
    ``pred_coarse``: the coarse depth ``pred`` was made from, whose discontinuities are left out too);
    NaN if no pixel is left."""
    m, e = eval_mask(gt if gt_coarse is None else gt_coarse, gt_mask, pred_mask, landmarks, pred_coarse)
    if not e.any():
        return float("nan")
    sigma = HIGHPASS_MM / mm_per_px
    d = highpass(pred.astype(np.float64) - gt.astype(np.float64), m, sigma)
    return float(np.sqrt(np.mean(d[e] ** 2)) * mm_per_px)


# ------------------------------------------------------------------------------------------------ canvas


class _Canvas:
    """Texture over the mean face's (x, y) in cm: texel (row, col) <-> x = X0 + col * res, y = Y1 - row * res."""

    def __init__(self):
        self.w = int(round((TEX_X[1] - TEX_X[0]) / TEX_RES)) + 1
        self.h = int(round((TEX_Y[1] - TEX_Y[0]) / TEX_RES)) + 1

    def zeros(self, channels: int = 0) -> np.ndarray:
        return np.zeros((self.h, self.w) + ((channels,) if channels else ()), np.float32)

    def px(self, pts_cm: np.ndarray) -> np.ndarray:
        """cm (..., 2) -> fixed-point texel coordinates for cv2 drawing (shift 4)."""
        p = np.asarray(pts_cm, np.float64)
        col = (p[..., 0] - TEX_X[0]) / TEX_RES
        row = (TEX_Y[1] - p[..., 1]) / TEX_RES
        return np.round(np.stack([col, row], -1) * 16).astype(np.int32)

    def line(self, layer, pts_cm, values, thickness_cm: float = 0.0) -> None:
        """Polyline with a value per vertex (segments take the mean of their ends), anti-aliased."""
        import cv2

        q = self.px(pts_cm)
        t = max(1, int(round(thickness_cm / TEX_RES)))
        for k in range(len(q) - 1):
            v = float(0.5 * (values[k] + values[k + 1]))
            if v != 0.0:
                cv2.line(layer, tuple(int(c) for c in q[k]), tuple(int(c) for c in q[k + 1]), v, t, cv2.LINE_AA, 4)

    def disk(self, layer, c_cm, r_cm: float, value) -> None:
        import cv2

        q = self.px(np.asarray(c_cm)[None])[0]
        cv2.circle(layer, (int(q[0]), int(q[1])), max(1, int(round(r_cm / TEX_RES * 16))), value, -1, cv2.LINE_AA,
                   4)

    def blur(self, layer, sigma_cm: float) -> np.ndarray:
        import cv2

        s = max(sigma_cm / TEX_RES, 0.3)
        return cv2.GaussianBlur(layer, (0, 0), s)

    def sample(self, tex: np.ndarray, xy_cm: np.ndarray) -> np.ndarray:
        """Bilinear lookup of ``tex`` (H, W[, C]) at points (P, 2) cm -> (P[, C])."""
        import cv2

        p = np.asarray(xy_cm, np.float32)
        n = len(p)
        cols = 1024  # cv2.remap maps must stay below 32767 rows: lay the points out in rows of 1024
        rows = -(-n // cols)
        mx = np.full(rows * cols, -1.0, np.float32)
        my = np.full(rows * cols, -1.0, np.float32)
        mx[:n] = (p[:, 0] - TEX_X[0]) / TEX_RES
        my[:n] = (TEX_Y[1] - p[:, 1]) / TEX_RES
        out = cv2.remap(tex, mx.reshape(rows, cols), my.reshape(rows, cols), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return out.reshape((rows * cols,) + tex.shape[2:])[:n]


def _curve(p0, p1, p2, n: int = 32) -> np.ndarray:
    """Quadratic Bezier (n, 2)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * np.asarray(p0) + 2 * (1 - t) * t * np.asarray(p1) + t**2 * np.asarray(p2)


def _window(n: int, rng, soft: float = 0.25) -> np.ndarray:
    """Amplitude along a line: rises and falls smoothly over ``soft`` of its length at each end."""
    t = np.linspace(0.0, 1.0, n)
    a = np.clip(np.minimum(t, 1 - t) / max(soft, 1e-3), 0, 1)
    return (a * a * (3 - 2 * a)) * rng.uniform(0.7, 1.0)


# ------------------------------------------------------------------------------------------- geometry detail


def _groove(cv: _Canvas, lines: list[tuple[np.ndarray, np.ndarray]], sigma_cm: float, depth_mm: float
            ) -> np.ndarray:
    """One-sided Gaussian grooves (negative, mm) along lines with per-vertex amplitude (0..1)."""
    layer = cv.zeros()
    for pts, amp in lines:
        cv.line(layer, pts, amp)
    s = max(sigma_cm / TEX_RES, 0.3)
    return -cv.blur(layer, sigma_cm) * float(depth_mm * math.sqrt(2 * math.pi) * s)


def _detail_texture(cv: _Canvas, lm: np.ndarray, rng) -> np.ndarray:
    """Displacement texture (mm along the normal, negative into the skin) of this set's detail shapes."""
    out = cv.zeros()
    age = rng.uniform(0.3, 1.0)
    brow_y = float(lm[17:27, 1].max())
    # forehead: 2-6 wavy horizontal grooves
    if rng.random() < 0.85:
        k = int(rng.integers(2, 7))
        y0 = brow_y + rng.uniform(0.8, 1.4)
        sp = rng.uniform(0.5, 0.9)
        sig = rng.uniform(0.06, 0.14)
        lines = []
        for i in range(k):
            half = rng.uniform(2.0, 4.5)
            x = np.linspace(-half, half, 40) + rng.uniform(-0.8, 0.8)
            y = y0 + i * sp + rng.uniform(-0.06, 0.04) * x**2 / 4 + 0.12 * np.sin(x * rng.uniform(0.6, 1.5)
                                                                                 + rng.uniform(0, 6.3))
            lines.append((np.stack([x, y], 1), _window(40, rng)))
        out += _groove(cv, lines, sig, rng.uniform(0.25, 1.0) * age)
    # glabella: 1-2 vertical grooves between the brows
    if rng.random() < 0.6:
        lines = []
        for side in rng.choice([-1.0, 1.0], size=int(rng.integers(1, 3)), replace=False):
            xc = side * rng.uniform(0.25, 0.7)
            y = np.linspace(lm[21, 1] - 0.5, lm[21, 1] + rng.uniform(0.8, 1.6), 20)
            x = xc + side * rng.uniform(0.0, 0.25) * (y - y[0])
            lines.append((np.stack([x, y], 1), _window(20, rng, 0.3)))
        out += _groove(cv, lines, rng.uniform(0.05, 0.12), rng.uniform(0.3, 1.0) * age)
    # crow's feet: 3-5 radial grooves at the outer eye corners (36: subject's right, 45: left)
    if rng.random() < 0.7:
        lines = []
        for side, idx in ((-1.0, 36), (1.0, 45)):
            c = lm[idx, :2] + np.array([side * 0.3, 0.0])
            for ang in np.linspace(-0.7, 0.6, int(rng.integers(3, 6))) + rng.normal(0, 0.1):
                r = np.linspace(0.2, rng.uniform(1.0, 1.8), 16)
                pts = c + np.stack([side * r * np.cos(ang), r * np.sin(ang)], 1)
                lines.append((pts, _window(16, rng, 0.35)))
        out += _groove(cv, lines, rng.uniform(0.04, 0.09), rng.uniform(0.15, 0.6) * age)
    # tear troughs: arcs under the eyes
    if rng.random() < 0.5:
        lines = []
        for idx in ((36, 41, 40, 39), (42, 47, 46, 45)):
            e = lm[list(idx), :2]
            p0, p2 = e[0] + [0.0, -0.6], e[3] + [0.0, -0.5]
            p1 = 0.5 * (p0 + p2) + [0.0, -rng.uniform(0.4, 0.8)]
            lines.append((_curve(p0, p1, p2, 24), _window(24, rng, 0.3)))
        out += _groove(cv, lines, rng.uniform(0.1, 0.2), rng.uniform(0.3, 1.0) * age)
    # nasolabial folds: a groove from the nose wing past the mouth corner, with a bulge on the cheek side
    if rng.random() < 0.85:
        grooves, bulges = [], []
        for side, i_nose, i_mouth in ((-1.0, 31, 48), (1.0, 35, 54)):
            p0 = lm[i_nose, :2] + [side * 0.6, 0.2]
            p2 = lm[i_mouth, :2] + [side * rng.uniform(0.3, 0.8), -rng.uniform(0.3, 1.2)]
            p1 = 0.5 * (p0 + p2) + [side * rng.uniform(0.3, 0.9), 0.0]
            c = _curve(p0, p1, p2, 32)
            win = _window(32, rng, 0.3)
            grooves.append((c, win))
            bulges.append((c + [side * 0.35, 0.0], win))
        sig = rng.uniform(0.12, 0.3)
        d = rng.uniform(0.8, 2.5) * age
        out += _groove(cv, grooves, sig, d)
        out -= _groove(cv, bulges, 2.5 * sig, 0.35 * d)  # minus a groove: the cheek bulges out
    # mentolabial groove under the lower lip
    if rng.random() < 0.4:
        p0, p2 = lm[59, :2] + [-0.2, -0.8], lm[55, :2] + [0.2, -0.8]
        p1 = 0.5 * (p0 + p2) + [0.0, -rng.uniform(0.2, 0.5)]
        out += _groove(cv, [(_curve(p0, p1, p2, 24), _window(24, rng, 0.35))], rng.uniform(0.1, 0.2),
                       rng.uniform(0.3, 1.0) * age)
    # bumps: moles, scars, acne
    if rng.random() < 0.6:
        layer = cv.zeros()
        sig = rng.uniform(0.08, 0.2)
        s = max(sig / TEX_RES, 0.3)
        for _ in range(int(rng.integers(1, 7))):
            c = np.array([rng.uniform(-5.0, 5.0), rng.uniform(-6.0, 9.0)])
            cv.disk(layer, c, TEX_RES * 0.5, float(rng.uniform(0.2, 0.8) * 2 * math.pi * s * s))
        out += cv.blur(layer, sig)
    return out


# ------------------------------------------------------------------------------------------------ albedo


def _skin(rng) -> np.ndarray:
    """Two-chromophore skin colour (RGB, linear): melanin and haemoglobin absorb per channel."""
    mel = rng.uniform(0.0, 1.0) ** 1.3
    hem = rng.uniform(0.0, 0.5)
    absorb_m = np.array([1.3, 1.75, 2.2])
    absorb_h = np.array([0.05, 0.55, 0.35])
    return np.array([0.86, 0.74, 0.66]) * np.exp(-mel * absorb_m - hem * absorb_h)


def _albedo_texture(cv: _Canvas, lm: np.ndarray, rng, painted: bool) -> np.ndarray:
    """RGB albedo texture: skin with blotches, lips, brows (hair strokes); ``painted`` adds the edge set."""
    import cv2

    skin = _skin(rng)
    tex = np.empty((cv.h, cv.w, 3), np.float32)
    tex[:] = skin.astype(np.float32)
    # smooth melanin / haemoglobin fields
    g = rng.normal(0, 1, (int(rng.integers(4, 9)), int(rng.integers(4, 9)), 2)).astype(np.float32)
    g = cv2.resize(g, (cv.w, cv.h), interpolation=cv2.INTER_CUBIC)
    amp = rng.uniform(0.02, 0.07)
    tex *= np.exp(-amp * (g[..., :1] * np.array([1.3, 1.75, 2.2], np.float32)
                          + 0.6 * g[..., 1:] * np.array([0.05, 0.55, 0.35], np.float32)))
    red = cv.zeros()
    for c in ([-3.8, -0.5], [3.8, -0.5], [0.0, 0.6]):
        cv.disk(red, np.array(c) + rng.normal(0, 0.3, 2), rng.uniform(0.8, 1.6), 1.0)
    red = cv.blur(red, 0.8) * rng.uniform(0.0, 0.3)
    tex *= np.exp(-red[..., None] * np.array([0.0, 0.5, 0.3], np.float32))
    # lips
    lips = cv.zeros()
    cv2.fillPoly(lips, [cv.px(lm[48:60, :2])], 1.0, cv2.LINE_AA, 4)
    lips = cv.blur(lips, 0.04)
    lip_col = skin * np.array([0.95, 0.55, 0.6]) * rng.uniform(0.6, 0.95)
    if painted and rng.random() < 0.6:  # lipstick
        lip_col = np.array([rng.uniform(0.3, 0.8), rng.uniform(0.02, 0.15), rng.uniform(0.05, 0.3)])
    tex = tex * (1 - lips[..., None]) + lips[..., None] * lip_col.astype(np.float32)
    hair = np.array([0.05, 0.035, 0.03]) * rng.uniform(0.5, 3.0) * np.exp(rng.normal(0, 0.15, 3))
    hair = np.minimum(hair, skin * 0.5)
    # brows: hair strokes along the brow landmarks
    strokes = cv.zeros()
    density = rng.uniform(0.6, 1.0) if painted else rng.uniform(0.3, 0.8)
    for a, b in ((17, 22), (22, 27)):
        brow = lm[a:b, :2] + [0.0, 0.1]
        inner = 4 if a == 17 else 0
        for _ in range(int(400 * density)):
            t = rng.uniform(0, len(brow) - 1)
            i = min(int(t), len(brow) - 2)
            p = brow[i] + (t - i) * (brow[i + 1] - brow[i]) + rng.normal(0, [0.12, 0.2])
            d = brow[i + 1] - brow[i]
            d = d / (np.linalg.norm(d) + 1e-9) * (1 if a == 22 else -1)
            up = 0.6 if abs(i - inner) <= 1 else 0.15
            v = d + [0.0, up] + rng.normal(0, 0.15, 2)
            v = v / np.linalg.norm(v) * rng.uniform(0.25, 0.6)
            cv.line(strokes, np.stack([p, p + v]), [1.0, 1.0])
    strokes = np.clip(cv.blur(strokes, 0.012) * rng.uniform(1.2, 2.5), 0, 1)
    tex = tex * (1 - strokes[..., None]) + strokes[..., None] * hair.astype(np.float32)
    spots = cv.zeros()
    n_moles = int(rng.integers(2, 11)) if painted else int(rng.integers(0, 3))
    for _ in range(n_moles):
        cv.disk(spots, [rng.uniform(-5.5, 5.5), rng.uniform(-6.5, 9.0)], rng.uniform(0.05, 0.2), 1.0)
    mole_col = skin * np.array([0.45, 0.32, 0.25]) * rng.uniform(0.5, 1.0)
    tex = _blend(tex, cv.blur(spots, 0.015), mole_col)
    if not painted:
        return np.clip(tex, 0.01, 1.0)
    # --- the albedo-edge set only
    if rng.random() < 0.6:  # eyeliner along the upper lids
        layer = cv.zeros()
        for idx in ((36, 37, 38, 39), (42, 43, 44, 45)):
            pts = lm[list(idx), :2] + [0.0, 0.08]
            cv.line(layer, pts, np.ones(len(pts)), rng.uniform(0.08, 0.15))
        tex = _blend(tex, cv.blur(layer, 0.01), np.array([0.03, 0.025, 0.03]))
    if rng.random() < 0.5:  # a glasses frame printed on the skin
        layer = cv.zeros()
        th = rng.uniform(0.1, 0.25)
        rx, ry = rng.uniform(1.7, 2.3), rng.uniform(1.2, 1.7)
        for idx in (range(36, 42), range(42, 48)):
            c = lm[list(idx), :2].mean(0) + [0.0, rng.uniform(-0.3, 0.1)]
            ang = np.linspace(0, 2 * np.pi, 60)
            cv.line(layer, c + np.stack([rx * np.cos(ang), ry * np.sin(ang)], 1), np.ones(60), th)
        cy = lm[27, 1] + rng.uniform(-0.3, 0.3)
        cv.line(layer, np.array([[-1.0, cy], [0.0, cy + 0.2], [1.0, cy]]), np.ones(3), th)
        col = rng.choice([np.array([0.03, 0.03, 0.03]), rng.uniform(0.05, 0.8, 3)])
        tex = _blend(tex, cv.blur(layer, 0.01), col)
    if rng.random() < 0.5:  # freckles on the cheeks and nose
        layer = cv.zeros()
        for _ in range(int(rng.integers(30, 150))):
            c = np.array([rng.normal(0, 2.5), rng.normal(0.5, 1.2)])
            cv.disk(layer, c, rng.uniform(0.03, 0.08), rng.uniform(0.3, 0.8))
        tex = _blend(tex, cv.blur(layer, 0.01), skin * np.array([0.7, 0.5, 0.38]))
    if rng.random() < 0.4:  # stubble: dots in the beard region
        layer = cv.zeros()
        xs = rng.uniform(-6.0, 6.0, 2500)
        ys = rng.uniform(-7.5, -1.2, 2500)
        keep = (np.abs(xs) < np.interp(ys, [-7.5, -1.2], [2.5, 6.5])) & ~((np.abs(xs) < 2.3) & (ys > -4.6))
        for x, y in zip(xs[keep], ys[keep]):
            cv.disk(layer, [x, y], 0.025, 1.0)
        tex = _blend(tex, np.clip(cv.blur(layer, 0.01) * rng.uniform(0.5, 1.0), 0, 1), hair)
    if rng.random() < 0.4:  # face-paint lines
        layer = cv.zeros()
        for _ in range(int(rng.integers(1, 4))):
            p = [np.array([rng.uniform(-5, 5), rng.uniform(-6, 9)]) for _ in range(3)]
            cv.line(layer, _curve(*p, 24), np.ones(24), rng.uniform(0.1, 0.3))
        tex = _blend(tex, cv.blur(layer, 0.015), rng.uniform(0.05, 0.9, 3))
    return np.clip(tex, 0.01, 1.0)


def _blend(tex: np.ndarray, weight: np.ndarray, colour: np.ndarray) -> np.ndarray:
    w = np.clip(weight, 0, 1)[..., None]
    return tex * (1 - w) + w * np.asarray(colour, np.float32)


# --------------------------------------------------------------------------------------------- rendering


def _lights(rng):
    """(ambient rgb, up vector, list of (direction, rgb)), image frame (y down, z toward the camera)."""
    def direction(max_deg: float):
        az = math.radians(rng.uniform(-max_deg, max_deg))
        el = math.radians(rng.uniform(-10.0, 50.0))
        return np.array([math.sin(az) * math.cos(el), -math.sin(el), math.cos(az) * math.cos(el)])

    tint = lambda s: np.exp(rng.normal(0, s, 3))  # noqa: E731
    lights = [(direction(70.0), rng.uniform(0.5, 1.0) * tint(0.05))]
    if rng.random() < 0.5:
        lights.append((direction(80.0), rng.uniform(0.1, 0.35) * tint(0.08)))
    ambient = rng.uniform(0.15, 0.5) * tint(0.05)
    return ambient, np.array([0.0, -1.0, 0.0]), lights


def _shade(n: np.ndarray, ambient, up, lights, rng) -> tuple[np.ndarray, np.ndarray]:
    """Irradiance (P, 3) of unit normals (P, 3): hemispherical sky + clamped-cosine lights; and a highlight."""
    sky = 0.6 + 0.4 * (n @ up)
    e = ambient[None, :] * sky[:, None]
    for d, c in lights:
        e = e + np.clip(n @ d, 0, None)[:, None] * c[None, :]
    spec = np.zeros(len(n))
    if rng.random() < 0.3:
        h = lights[0][0] + np.array([0.0, 0.0, 1.0])
        h /= np.linalg.norm(h)
        spec = rng.uniform(0.02, 0.08) * np.clip(n @ h, 0, 1) ** rng.uniform(10, 40)
    return e, spec


def _render_one(model, kind: str, rng, size: int, degrade: bool = True, strength: float = 1.0) -> dict:
    import cv2

    from rtface import synth
    from rtface.render import rasterize, shading

    ss = SUPERSAMPLE
    identity = np.clip(rng.normal(0, 0.8, model.num_identity), -2.5, 2.5)
    expression = np.zeros(model.num_expression)
    for j in rng.choice(model.num_expression, size=int(rng.integers(0, 4)), replace=False):
        expression[j] = rng.uniform(0.0, 0.6)
    angles = np.radians([np.clip(rng.normal(0, 8), -20, 20), np.clip(rng.normal(0, 18), -45, 45),
                         np.clip(rng.normal(0, 6), -15, 15)])
    jitter = np.array([rng.uniform(-0.06, 0.06), rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03),
                       math.radians(rng.uniform(-5, 5))])
    # the geometry (mesh, framing, the pipeline rasteriser's coarse depth) of rtface.synth's public renderer;
    # its image is not used
    g = synth.render_face(model, identity, expression, angles, np.random.default_rng(rng.integers(1 << 62)),
                          size=size, detail=False, jitter=jitter)
    scale = float(g.pose[3])
    hs = size * ss
    r = rasterize(g.vertices * np.float32(ss), model.triangles, hs, hs, backend="cpu")
    m_hi = np.asarray(r.mask)
    sel = np.flatnonzero(m_hi)
    tri = np.asarray(model.triangles)[np.asarray(r.triangle).reshape(-1)[sel]]
    bary = np.asarray(r.barycentric).reshape(-1, 3)[sel]
    canon = np.einsum("pk,pkc->pc", bary, np.asarray(model.mean, np.float32)[tri])  # (P, 3) mean-face cm
    lm = np.asarray(model.mean, np.float64)[np.asarray(model.landmarks)]
    front = np.clip((canon[:, 2] - 3.0) / 1.5, 0, 1)  # textures only on the front of the head

    cv = _Canvas()
    # The face is smooth: its surface is the mesh made smooth by Phong tessellation (Boubekeur & Alexa 2008,
    # alpha = 3/4: each pixel's point of a triangle pulled toward the tangent planes of its corners), so the
    # image shows none of the facets of the mesh (about 2 mm, a pixel at S = 128); the truth is this smooth
    # surface, while the pipeline's coarse depth (``mesh_depth``) is the faceted mesh.
    v_hi = g.vertices.astype(np.float64) * ss
    vn = shading.mesh_normals(v_hi, np.asarray(model.triangles), image_frame=True)
    corners, cn = v_hi[tri], vn[tri]  # (P, 3, 3)
    flat = np.einsum("pk,pkc->pc", bary, corners)
    proj = flat[:, None, :] - ((flat[:, None, :] - corners) * cn).sum(-1, keepdims=True) * cn
    shift = 0.75 * (np.einsum("pk,pkc->pc", bary, proj) - flat)
    n_s = np.einsum("pk,pkc->pc", bary, cn)
    nz_s = np.maximum(n_s[:, 2], 0.2)
    # depth of the smooth surface at the pixel centre: its z shift, less the slope times its x / y shift
    coarse_hi = np.zeros((hs, hs))
    coarse_hi.reshape(-1)[sel] = flat[:, 2] + shift[:, 2] + (n_s[:, 0] * shift[:, 0] + n_s[:, 1] * shift[:, 1]) / nz_s
    detail_hi = np.zeros((hs, hs))
    if kind == "detail":
        disp_mm = cv.sample(_detail_texture(cv, lm, rng), canon[:, :2]) * (front * float(strength))
        gx, gy, _ = shading.depth_gradients(coarse_hi, m_hi)
        nz = 1.0 / np.sqrt(1.0 + gx.reshape(-1)[sel] ** 2 + gy.reshape(-1)[sel] ** 2)
        detail_hi.reshape(-1)[sel] = disp_mm / 10.0 * scale * ss / np.maximum(nz, 0.5)
    normals = shading.depth_normals(coarse_hi + detail_hi, m_hi).reshape(-1, 3)[sel].astype(np.float64)
    albedo = cv.sample(_albedo_texture(cv, lm, rng, painted=(kind == "albedo")), canon[:, :2])
    skin = albedo.mean(0)
    albedo = albedo * front[:, None] + (1 - front[:, None]) * np.clip(skin * 0.9, 0.01, 1)
    ambient, up, lights = _lights(rng)
    e, spec = _shade(normals, ambient, up, lights, rng)
    face = albedo * e + spec[:, None]
    expo = rng.uniform(0.45, 0.65) / max(float(np.median(face @ np.array([0.299, 0.587, 0.114]))), 1e-3)
    face *= expo

    # background, then the openings of the mesh (eyes, mouth): dark, with an iris
    c0, c1 = rng.uniform(0.05, 0.9, 3), rng.uniform(0.05, 0.9, 3)
    t = np.linspace(0, 1, hs)[None, :, None] * math.cos(rng.uniform(0, 6.3)) + \
        np.linspace(0, 1, hs)[:, None, None] * math.sin(rng.uniform(0, 6.3))
    t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
    img = (c0 * (1 - t) + c1 * t).astype(np.float64)
    outside = np.pad((~m_hi).astype(np.uint8), 1, constant_values=1)
    cv2.floodFill(outside, np.zeros((hs + 4, hs + 4), np.uint8), (0, 0), 2)
    holes = outside[1:-1, 1:-1] == 1
    img[holes] = skin * 0.15 * expo * float(np.mean(ambient) + 0.3)
    lm_hi = g.landmarks.astype(np.float64) * ss
    yy, xx = np.mgrid[0:hs, 0:hs] + 0.5
    for idx in (range(36, 42), range(42, 48)):
        c = lm_hi[list(idx)].mean(0)
        wdt = np.linalg.norm(lm_hi[idx[3]] - lm_hi[idx[0]])
        rr = np.hypot(xx - c[0], yy - c[1])
        eye = holes & (rr < 0.8 * wdt)
        img[eye] = 0.55 * expo * float(np.mean(ambient) + 0.3)
        img[eye & (rr < 0.22 * wdt)] = rng.uniform(0.02, 0.2, 3) * expo
    img.reshape(-1, 3)[sel] = face
    alb_hi = np.zeros((hs, hs, 3))
    alb_hi.reshape(-1, 3)[sel] = albedo * expo

    # down to the crop: area average (sensor), blur, noise, JPEG
    img = cv2.resize(img.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    blur, sigma = rng.random() < 0.7, rng.uniform(0.2, 0.6) * size / 128
    noise = rng.normal(0, rng.uniform(0.002, 0.01), img.shape).astype(np.float32)
    jpeg, quality = rng.random() < 0.4, int(rng.integers(75, 96))
    if degrade and blur:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    if degrade:
        img = img + noise
    out = (np.clip(img[..., ::-1], 0, 1) * 255 + 0.5).astype(np.uint8)
    if degrade and jpeg:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else out

    cover = cv2.resize(m_hi.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    mask = g.mask & (cover > 0.999)

    def down(x):  # area average at the crop resolution, hi-res px -> crop px
        a = cv2.resize((x * m_hi).astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
        return np.where(mask, a / np.maximum(cover, 1e-6) / ss, 0.0).astype(np.float32)

    detail = down(detail_hi)
    coarse = down(coarse_hi)
    alb = cv2.resize((alb_hi * m_hi[..., None]).astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    alb = np.where(mask[..., None], alb / np.maximum(cover, 1e-6)[..., None], 0.0).astype(np.float32)
    return {"image": np.ascontiguousarray(out), "depth": np.where(mask, coarse + detail, 0).astype(np.float32),
            "coarse_depth": coarse, "mesh_depth": np.where(mask, g.coarse_depth, 0.0).astype(np.float32),
            "detail": detail, "albedo": alb, "mask": mask, "pose": g.pose, "identity": g.identity,
            "expression": g.expression, "landmarks": g.landmarks, "mm_per_px": np.float32(10.0 / scale)}


def make_set(model, kind: str, n: int, size: int = 128, seed: int = 0, degrade: bool = True, start: int = 0,
             strength: float = 1.0) -> dict[str, np.ndarray]:
    """Faces ``start .. start + n - 1`` of the held-out set ``kind`` ("detail" or "albedo") at crop size
    ``size``, stacked per field (a face depends only on its index, so a set can be made in chunks).

    ``degrade=False`` leaves out the camera's blur, noise and JPEG (the same faces otherwise): to tell how
    much of an error is due to them. ``strength`` scales the depth of every detail shape (the same faces, lights
    and albedo otherwise; 1: the depths in the module docstring)."""
    from rtface.errors import InputError

    if kind not in KINDS:
        raise InputError(f"unknown detail set {kind!r}; choose from {', '.join(KINDS)}")
    if int(n) < 1:
        raise InputError(f"n must be a positive number of faces, got {n}")
    out: dict[str, np.ndarray] = {}
    for i in range(int(n)):
        rng = np.random.default_rng([SEED, KINDS.index(kind), int(seed), int(start) + i])
        face = _render_one(model, kind, rng, int(size), degrade, float(strength))
        for k, v in face.items():
            v = np.asarray(v)
            if i == 0:
                out[k] = np.empty((int(n),) + v.shape, v.dtype)
            out[k][i] = v
    return out


__all__ = ["HIGHPASS_MM", "KINDS", "SEED", "eval_mask", "highpass", "highpass_error", "make_set"]
