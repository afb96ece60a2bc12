"""Synthetic faces with exact ground truth: the phase-1 training data (docs/CONTRACTS.md, "Synthetic faces").

``sample(model, rng, size=S, detail=True, config=None) -> SynthFace`` renders one face into an S x S crop;
``batch(model, n, seed, ...)`` stacks ``n`` of them (face ``i`` is drawn with ``np.random.default_rng([seed,
i])``, so a batch's first faces do not depend on ``n``). Everything is deterministic given the generator.

How a face is made (ranges in :class:`SynthConfig`):

* **Shape**: identity ~ N(0, 1) (times ``identity_scale``, clipped at ``identity_clip`` sigma); sparse
  expressions: a few ARKit blendshapes active with weights in [0, 1], left/right partners usually together,
  jawOpen often.
* **Pose and framing**: yaw up to +-80 deg (profiles included), pitch +-30, roll +-25, most of the mass near
  frontal (a normal core plus a uniform tail). The face is framed like the pipeline frames it
  (:mod:`rtface.crop`): the five points of the projected 68 landmarks are aligned to ``crop.TEMPLATE_5``
  (``crop.crop_from_five``, ``Pose.transformed``), then jittered like a detector would be (scale +-10 %,
  shift +-5 % of S, rotation +-10 deg about the crop centre). ``pose`` projects ``model.vertices(identity,
  expression)`` exactly onto ``vertices`` (``camera.project``).
* **Geometry maps**: ``coarse_depth`` / ``mask`` are :func:`rtface.render.rasterize` of ``vertices`` (both
  windings drawn, like the pipeline); ``mask == (coarse_depth != 0)`` holds exactly (a covered pixel whose
  depth happens to be exactly 0.0 is nudged to the smallest positive float). Eye and mouth openings of the
  mesh are holes: mask False, depth 0 (the image paints eyes and a mouth interior there).
* **Fine detail** (``detail=True``): band-limited displacement *along the surface normal* in wrinkle
  regions only, defined on the mean face's model-frame coordinates (interpolated to the pixels with the
  barycentrics, so it follows the face under any pose): horizontal forehead lines, vertical frown lines
  between the brows, crow's feet fanning out from the outer eye corners and nasolabial folds from the nose
  wings to beyond the mouth corners. Each line has a zero-mean "Mexican hat" cross-section
  ``-a (1 - t^2) exp(-t^2/2)``, ``t = distance / width`` (a groove of depth ``a`` with two low ridges),
  truncated at ``|t| = 4`` and windowed along the line with a compact window, so ``detail`` is exactly 0
  outside the wrinkle regions. Groove depths ``a`` lie in ``detail_mm`` (0.2 .. 1.5 mm, scaled by a random
  "age") and are converted to crop pixels with the pose scale: ``px = mm / 10 * scale``; widths are at
  least ``0.7 px`` (band limit). A displacement ``d`` along the normal changes the depth seen at a pixel by
  ``d / n_z`` (first order); ``n_z`` of the coarse surface is clamped at 0.5, so
  ``|detail| <= 2 * max(detail_mm) / 10 * scale`` (times the overlap of at most a few lines).
  ``depth = coarse_depth + detail``, ``detail = depth - coarse_depth`` (0 outside the mask and everywhere
  when ``detail=False``).
* **Appearance**: per-vertex albedo from model-frame position (no UV map): a skin tone interpolated along
  the Monk Skin Tone scale (10 sRGB swatches, very light to very dark) with a small hue jitter, low-
  frequency variation (random smooth Fourier noise on the vertex positions), cheek redness, redder lips
  (inside the polygon of the outer-lip landmarks 48..59 of the mean face), darker brows (a band along the
  landmarks 17..26), optional hair on the scalp and stubble; interpolated to pixels with the barycentrics,
  plus fine per-pixel skin noise; with probability ``marks_prob`` (0 by default) sharp albedo marks without
  geometry on top (moles, freckles, painted strokes and rings, stubble dots, blotches: :func:`_albedo_marks`).
  Lighting: order-2 SH irradiance (:mod:`rtface.render.shading`
  conventions, image frame, irradiance coefficients, RGB columns) of a dominant ambient term plus one
  slightly coloured directional light (mostly from the front and above), exposure folded in; with probability
  ``hard_light_prob`` (0 by default) the image shades that light exactly, ``ambient + I max(n . d, 0)`` (a hard
  terminator and attached shadows in deep grooves), and ``sh`` stays its band limit. Image
  (display values in [0, 1], no gamma: the same model as the phase-2 shape-from-shading loss)::

      face = albedo * (Y(n) . sh) [+ a small Blinn-Phong specular, not part of ``sh``]

  with ``n`` the normals of the **detailed** depth (``normals``; masked central differences, so the detail
  shows in the shading). The background is a solid colour, a gradient, smooth noise or random shapes;
  with probability ``occluder_prob`` an occluder (ellipse, rectangle or a hand-like blob) is drawn over
  part of the face — **the ground-truth ``mask``, depths and ``albedo`` stay those of the face geometry**
  (occluders only change ``image``). Finally blur, noise and (optionally) JPEG compression.

``albedo`` is 0 outside the mask; ``sh`` is ``(9, 3)`` for R, G, B; ``image`` is BGR uint8.

Speed: about 8.3 ms per 128 x 128 face with detail (about 7 ms without), one thread, on the 2-core
development machine while others were using it; ``python -m rtface.synth`` measures it again.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields

import numpy as np

from . import camera
from . import crop as cropmod
from .errors import InputError
from .render import rasterize
from .render import shading

# Monk Skin Tone scale (Google, 2022), sRGB, lightest to darkest.
_MONK = np.array(
    [[0xF6, 0xED, 0xE4], [0xF3, 0xE7, 0xDB], [0xF7, 0xEA, 0xD0], [0xEA, 0xDA, 0xBA], [0xD7, 0xBD, 0x96],
     [0xA0, 0x7E, 0x56], [0x82, 0x5C, 0x43], [0x60, 0x41, 0x34], [0x3A, 0x31, 0x2A], [0x29, 0x24, 0x20]],
    dtype=np.float32) / 255.0
# Hair colours (RGB): black, dark brown, brown, auburn, blond, grey.
_HAIR = np.array([[0.05, 0.04, 0.035], [0.16, 0.10, 0.06], [0.30, 0.19, 0.11], [0.42, 0.18, 0.08],
                  [0.70, 0.56, 0.34], [0.55, 0.54, 0.52]], dtype=np.float32)
_HAIR_P = np.array([0.3, 0.3, 0.17, 0.06, 0.1, 0.07])
_IRIS = np.array([[0.20, 0.11, 0.05], [0.33, 0.20, 0.09], [0.25, 0.38, 0.55], [0.30, 0.40, 0.25],
                  [0.06, 0.04, 0.03]], dtype=np.float32)
_IRIS_P = np.array([0.35, 0.25, 0.15, 0.1, 0.15])


@dataclass
class SynthConfig:
    """Ranges of the synthetic faces (angles in degrees, lengths in cm unless named otherwise)."""

    identity_scale: float = 1.0
    identity_clip: float = 3.0
    expression_none_prob: float = 0.2  # no blendshape active
    expression_max_active: int = 5  # 1..max active blendshapes otherwise
    expression_pair_prob: float = 0.7  # an _L/_R blendshape brings its partner (weight jittered)
    jaw_open_prob: float = 0.3  # extra chance of jawOpen
    # pose: with prob *_uniform uniform in +-max, else normal(0, sigma) clipped at +-max
    yaw_max: float = 80.0
    yaw_sigma: float = 20.0
    yaw_uniform: float = 0.35
    pitch_max: float = 30.0
    pitch_sigma: float = 10.0
    pitch_uniform: float = 0.25
    roll_max: float = 25.0
    roll_sigma: float = 7.0
    roll_uniform: float = 0.2
    # framing jitter (after alignment to the template)
    jitter_scale: float = 0.10
    jitter_shift: float = 0.05  # fraction of S
    jitter_rotation: float = 10.0
    # lighting (irradiance units; a frontal white surface of albedo 1 reaches about ambient + intensity)
    ambient: tuple[float, float] = (0.35, 0.8)
    light_intensity: tuple[float, float] = (0.15, 0.75)
    light_color_jitter: float = 0.06  # per-channel relative
    # the light's direction: (x, y, 1) normalised, x ~ N(0, sigma_x), y ~ N(-0.35, sigma_y) (image y is down)
    light_spread: tuple[float, float] = (0.6, 0.4)
    exposure: tuple[float, float] = (0.8, 1.2)
    specular_prob: float = 0.5
    # the probability that the directional light is shaded exactly (a clamped cosine: a hard terminator and
    # attached shadows in grooves, as a real lamp or the sun makes them) instead of its order-2 SH band limit; the
    # face's ``sh`` stays that band limit; 0 draws nothing and keeps earlier releases' faces
    hard_light_prob: float = 0.0
    # the probability of a second, weaker light (0.15-0.5 of the key light) from the other side; 0 draws nothing
    fill_light_prob: float = 0.0
    specular: tuple[float, float] = (0.02, 0.12)
    # appearance
    skin_variation: tuple[float, float] = (0.02, 0.07)  # amplitude of low-frequency albedo noise
    pore_noise: tuple[float, float] = (0.0, 0.03)  # per-pixel relative albedo noise
    hair_prob: float = 0.7
    stubble_prob: float = 0.12
    # sharp albedo marks without geometry (moles, freckles, painted strokes and rings, stubble dots, blotches;
    # ``_albedo_marks``): the probability that a face carries them; 0 keeps the faces of earlier releases
    marks_prob: float = 0.0
    # image degradations
    occluder_prob: float = 0.1
    blur_prob: float = 0.6
    blur_sigma: tuple[float, float] = (0.3, 1.1)  # pixels at S = 128, scaled with S
    noise_sigma: tuple[float, float] = (0.0, 0.025)
    jpeg_prob: float = 0.3
    jpeg_quality: tuple[int, int] = (35, 95)
    # fine detail
    detail_mm: tuple[float, float] = (0.2, 1.5)  # groove depth range
    min_width_px: float = 0.7  # band limit: narrowest wrinkle cross-section (pixels)
    # extra detail anywhere on the skin (``_extra_detail``): one-sided Gaussian grooves along short curves and
    # round bumps and dents, physical sizes; the expected number per face (0 keeps earlier releases' faces)
    extra_detail: float = 0.0
    # a per-face factor on the depth of all detail (wrinkles and extra), drawn log-uniform from this range;
    # (1, 1) draws nothing and keeps earlier releases' faces
    detail_gain: tuple[float, float] = (1.0, 1.0)
    # shade a smooth face (the faceted mesh's depth blurred over about one facet, ``SMOOTH_FACET_CM``) instead of
    # the facets, as real skin and the held-out renderer look; the truth fields stay the rasterised mesh's
    smooth_shading: bool = False
    background_kinds: tuple[float, float, float, float] = (0.15, 0.25, 0.3, 0.3)  # solid, gradient, noise, shapes


@dataclass
class SynthFace:
    """One synthetic face (docs/CONTRACTS.md). Maps are S x S, in crop pixels."""

    image: np.ndarray  # (S, S, 3) uint8 BGR
    identity: np.ndarray  # (100,) float32
    expression: np.ndarray  # (53,) float32 in [0, 1]
    pose: np.ndarray  # (6,) float32 pitch, yaw, roll, scale (px/cm), tx, ty (crop px)
    vertices: np.ndarray  # (V, 3) float32 crop px
    depth: np.ndarray  # (S, S) float32 incl. detail, 0 outside the mask
    coarse_depth: np.ndarray  # (S, S) float32 3DMM surface only
    detail: np.ndarray  # (S, S) float32 = depth - coarse_depth
    mask: np.ndarray  # (S, S) bool, face geometry (occluders do not change it)
    normals: np.ndarray  # (S, S, 3) float32 unit normals of ``depth`` (image frame), 0 outside the mask
    landmarks: np.ndarray  # (68, 2) float32 crop px
    albedo: np.ndarray  # (S, S, 3) float32 RGB in [0, 1], 0 outside the mask
    sh: np.ndarray  # (9, 3) float32 SH irradiance coefficients, RGB


FIELDS = tuple(f.name for f in fields(SynthFace))


# ------------------------------------------------------------------------------------------- per-model data


class _ModelData:
    """Things computed once per face model: region weights and landmark geometry on the mean face."""

    def __init__(self, model):
        self.triangles = np.ascontiguousarray(model.triangles, dtype=np.int32)
        mean = np.asarray(model.mean, dtype=np.float32)
        self.canon = mean
        lm = mean[np.asarray(model.landmarks)]
        self.lm = lm
        self.landmark_ids = np.asarray(model.landmarks)
        names = list(model.expression_names)
        self.names = names
        self.partner = np.array([_partner(names, n) for n in names])
        self.jaw_open = names.index("jawOpen") if "jawOpen" in names else -1
        xy, z = mean[:, :2], mean[:, 2]
        # lips: inside the outer-lip polygon, soft edge 0.12 cm, front surface only
        outer = lm[48:60, :2]
        d = _polyline_distance(xy, np.vstack([outer, outer[:1]]))
        inside = _inside_polygon(xy, outer)
        sd = np.where(inside, -d, d)
        self.lips = (np.clip(0.5 - sd / 0.24, 0, 1) * (z > lm[48:60, 2].min() - 1.0)).astype(np.float32)
        # brows: a band around the brow landmarks (slightly above them), thicker toward the nose
        brow_w = np.zeros(len(mean), np.float32)
        for a, b in ((17, 22), (22, 27)):
            line = lm[a:b, :2] + np.array([0.0, 0.1], np.float32)
            dd = _polyline_distance(xy, line)
            brow_w = np.maximum(brow_w, np.clip((0.42 - dd) / 0.15, 0, 1))
        self.brows = (brow_w * (z > 6.0)).astype(np.float32)
        # cheeks and eye surroundings (soft gaussians)
        eye_c = np.stack([lm[36:42].mean(0), lm[42:48].mean(0)])
        self.eye_centres = eye_c
        self.eyes = np.zeros(len(mean), np.float32)
        for c in eye_c:
            self.eyes += np.exp(-((xy - c[:2]) ** 2).sum(1) / (2 * 0.8**2)) * (z > 5.0)
        cheek_c = np.array([[-4.0, -0.8], [4.0, -0.8]], np.float32)
        self.cheeks = np.zeros(len(mean), np.float32)
        for c in cheek_c:
            self.cheeks += np.exp(-((xy - c) ** 2).sum(1) / (2 * 1.5**2)) * (z > 5.0)
        # stubble: below the nose, above the neck, outside the lips
        nose_y = lm[33, 1]
        chin_y = lm[8, 1]
        jaw_half = np.interp(xy[:, 1], [chin_y - 1.0, nose_y], [2.0, 6.5])
        st = (xy[:, 1] < nose_y - 0.4) & (xy[:, 1] > chin_y - 1.3) & (np.abs(xy[:, 0]) < jaw_half) & (z > 4.0)
        self.stubble = (st * (1 - np.clip(self.lips * 3, 0, 1))).astype(np.float32)
        self.brow_top = float(lm[17:27, 1].max())


def _partner(names: list[str], name: str) -> int:
    for a, b in (("_L", "_R"), ("_R", "_L"), ("Left", "Right"), ("Right", "Left")):
        if name.endswith(a):
            other = name[: -len(a)] + b
            if other in names and a in ("_L", "_R"):
                return names.index(other)
    return -1


def _inside_polygon(p: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd test of points (N, 2) against a closed polygon (M, 2)."""
    x, y = p[:, 0:1], p[:, 1:2]
    a = poly
    b = np.roll(poly, -1, axis=0)
    cond = (a[None, :, 1] > y) != (b[None, :, 1] > y)
    dy = b[None, :, 1] - a[None, :, 1]
    xint = a[None, :, 0] + (y - a[None, :, 1]) * (b[None, :, 0] - a[None, :, 0]) / np.where(dy == 0, 1e-12, dy)
    return ((cond & (x < xint)).sum(1) % 2) == 1


def _polyline_distance(p: np.ndarray, line: np.ndarray, return_t: bool = False):
    """Distance of points (N, 2) to a polyline (M, 2); with ``return_t`` also the arc parameter in [0, 1]."""
    a = line[:-1][None]  # (1, M-1, 2)
    ab = (line[1:] - line[:-1])[None]
    ap = p[:, None, :] - a
    L2 = (ab**2).sum(-1)
    t = np.clip((ap * ab).sum(-1) / np.maximum(L2, 1e-12), 0, 1)
    d2 = ((ap - t[..., None] * ab) ** 2).sum(-1)
    k = d2.argmin(1)
    d = np.sqrt(d2[np.arange(len(p)), k])
    if not return_t:
        return d
    seg = np.sqrt(L2[0])
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    tt = (cum[k] + t[np.arange(len(p)), k] * seg[k]) / max(cum[-1], 1e-12)
    return d, tt


_CACHE: dict[str, _ModelData] = {}


def _data(model) -> _ModelData:
    key = getattr(model, "hash", None) or str(id(model))
    d = _CACHE.get(key)
    if d is None:
        d = _CACHE[key] = _ModelData(model)
    return d


# -------------------------------------------------------------------------------------------- parameters


def _angle(rng, max_deg, sigma_deg, p_uniform):
    if rng.random() < p_uniform:
        a = rng.uniform(-max_deg, max_deg)
    else:
        a = float(np.clip(rng.normal(0.0, sigma_deg), -max_deg, max_deg))
    return math.radians(a)


def _draw_shape(md: _ModelData, rng, cfg: SynthConfig, num_id: int, num_exp: int):
    identity = np.clip(rng.standard_normal(num_id) * cfg.identity_scale, -cfg.identity_clip, cfg.identity_clip)
    expression = np.zeros(num_exp)
    if rng.random() >= cfg.expression_none_prob:
        k = int(rng.integers(1, cfg.expression_max_active + 1))
        for j in rng.choice(num_exp, size=k, replace=False):
            w = rng.random() ** 0.8
            expression[j] = max(expression[j], w)
            p = md.partner[j]
            if p >= 0 and rng.random() < cfg.expression_pair_prob:
                expression[p] = np.clip(w + rng.normal(0, 0.1), 0, 1)
    if md.jaw_open >= 0 and rng.random() < cfg.jaw_open_prob:
        expression[md.jaw_open] = max(expression[md.jaw_open], rng.random())
    angles = np.array([_angle(rng, cfg.pitch_max, cfg.pitch_sigma, cfg.pitch_uniform),
                       _angle(rng, cfg.yaw_max, cfg.yaw_sigma, cfg.yaw_uniform),
                       _angle(rng, cfg.roll_max, cfg.roll_sigma, cfg.roll_uniform)])
    jitter = np.array([rng.uniform(-cfg.jitter_scale, cfg.jitter_scale),
                       rng.uniform(-cfg.jitter_shift, cfg.jitter_shift),
                       rng.uniform(-cfg.jitter_shift, cfg.jitter_shift),
                       math.radians(rng.uniform(-cfg.jitter_rotation, cfg.jitter_rotation))])
    return identity.astype(np.float32), expression.astype(np.float32), angles, jitter


def _frame(verts_cm: np.ndarray, md: _ModelData, angles: np.ndarray, jitter: np.ndarray, size: int) -> np.ndarray:
    """Pose vector (float32) framing the face like the pipeline: five points -> template, then jitter."""
    s0 = size / cropmod.CROP_CM
    p0 = np.array([angles[0], angles[1], angles[2], s0, size / 2, size / 2])
    lm = camera.project(verts_cm[md.landmark_ids], p0)
    a = cropmod.crop_from_five(cropmod.five_from_68(lm), size)
    pose = camera.Pose.from_vector(p0).transformed(a)
    c = np.array([size / 2.0, size / 2.0])
    sc, rot = 1.0 + jitter[0], jitter[3]
    lin = sc * np.array([[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]])
    t = c + jitter[1:3] * size - lin @ c
    j = np.concatenate([lin, t[:, None]], axis=1)
    return pose.transformed(j).to_vector()


# ------------------------------------------------------------------------------------------------- public


def sample(model, rng: np.random.Generator, size: int = 128, detail: bool = True,
           config: SynthConfig | None = None) -> SynthFace:
    """One synthetic face in an ``size x size`` crop (see the module docstring)."""
    cfg = config or SynthConfig()
    size = _check_size(size)
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    md = _data(model)
    identity, expression, angles, jitter = _draw_shape(md, rng, cfg, model.num_identity, model.num_expression)
    verts = _single_vertices(model, identity, expression)
    return _render(model, md, rng, cfg, size, detail, identity, expression, verts, angles, jitter)


def render_face(model, identity: np.ndarray, expression: np.ndarray, angles: np.ndarray,
                rng: np.random.Generator, size: int = 128, detail: bool = False,
                config: SynthConfig | None = None, jitter: np.ndarray | None = None) -> SynthFace:
    """Render a chosen face: identity (Ki,), expression (Ke,), head angles (pitch, yaw, roll) in radians.

    Framing as in :func:`sample` with the given ``jitter`` (relative scale, x and y shift in units of the
    crop, rotation in radians; zeros = exactly the template framing); skin, lighting, background and
    detail come from ``rng`` (the same seed gives the same look, so a sequence of frames stays coherent).
    """
    cfg = config or SynthConfig()
    size = _check_size(size)
    identity = np.asarray(identity, dtype=np.float32)
    expression = np.asarray(expression, dtype=np.float32)
    verts = _single_vertices(model, identity, expression)
    j = np.zeros(4) if jitter is None else np.asarray(jitter, dtype=np.float64)
    if j.shape != (4,):
        raise InputError(f"jitter must have 4 values (scale, dx, dy, rotation), got shape {j.shape}")
    return _render(model, _data(model), rng, cfg, size, detail, identity, expression, verts,
                   np.asarray(angles, dtype=np.float64), j)


def batch(model, n: int, seed: int, size: int = 128, detail: bool = True,
          config: SynthConfig | None = None) -> dict[str, np.ndarray]:
    """``n`` faces stacked per field (``image`` (n, S, S, 3) ...); face ``i`` is
    ``sample(model, np.random.default_rng([seed, i]), ...)``, so the first faces do not depend on ``n``."""
    cfg = config or SynthConfig()
    size = _check_size(size)
    if int(n) < 1:
        raise InputError(f"n must be a positive number of faces, got {n}")
    rngs = [np.random.default_rng([int(seed), i]) for i in range(int(n))]
    out: dict[str, np.ndarray] = {}
    for i, r in enumerate(rngs):
        # per face, without BLAS: see _single_vertices (a batched model.vertices() is slower here overall)
        face = sample(model, r, size=size, detail=detail, config=cfg)
        for k in FIELDS:
            a = getattr(face, k)
            if i == 0:
                out[k] = np.empty((len(rngs),) + a.shape, a.dtype)
            out[k][i] = a
    return out


def _single_vertices(model, identity: np.ndarray, expression: np.ndarray) -> np.ndarray:
    """``model.vertices(identity, expression)`` for one face without BLAS.

    Measured on the 2-core development machine under load: a matrix-vector product in multi-threaded
    OpenBLAS interleaved with the rest of the rendering took 10-20 ms per face (waking its threads), and a
    batched ``model.vertices()`` left OpenBLAS threads spinning that slowed the rendering after it by about
    1.5 ms per face; ``einsum`` over the identity modes plus the few active blendshapes takes under 1 ms
    and stays on one thread. Equal to ``model.vertices`` up to float32 rounding (~1e-6 cm)."""
    ki = len(identity)
    out = model.mean + np.einsum("k,kvc->vc", identity.astype(np.float32), model.id_basis[:ki])
    for j in np.flatnonzero(expression):
        out += expression[j] * model.exp_basis[j]
    return np.ascontiguousarray(out, dtype=np.float32)


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 16 <= int(size) <= 4096:
        raise InputError(f"size must be an int in 16..4096 (crop side in pixels), got {size!r}")
    return int(size)


# ---------------------------------------------------------------------------------------------- rendering


def _render(model, md, rng, cfg, size, detail, identity, expression, verts_cm, angles, jitter) -> SynthFace:
    s = size
    pose = _frame(verts_cm, md, angles, jitter, s)
    vpx = camera.project(verts_cm, pose)
    scale = float(pose[3])
    r = rasterize(vpx, md.triangles, s, s, backend="cpu")
    mask = np.asarray(r.mask)
    coarse = np.asarray(r.depth, dtype=np.float32).copy()
    zero = mask & (coarse == 0)
    if zero.any():
        coarse[zero] = np.float32(np.finfo(np.float32).tiny)
    sel = np.flatnonzero(mask)
    tri = md.triangles[np.asarray(r.triangle).reshape(-1)[sel]]  # (P, 3)
    bary = np.asarray(r.barycentric).reshape(-1, 3)[sel]

    # per-vertex albedo, then one gather for albedo + canonical coordinates
    valb, skin_luma = _vertex_albedo(md, rng, cfg)
    attrs = np.concatenate([valb, md.canon], axis=1)  # (V, 6)
    px = np.einsum("pk,pkc->pc", bary, attrs[tri])
    alb_p, canon_p = px[:, :3], px[:, 3:]

    gx_c, gy_c, _ = shading.depth_gradients(coarse, mask)
    detail_map = np.zeros((s, s), np.float32)
    if detail:
        nz = 1.0 / np.sqrt(1.0 + gx_c.reshape(-1)[sel] ** 2 + gy_c.reshape(-1)[sel] ** 2)
        disp_cm = _wrinkles(md, rng, cfg, canon_p, scale)
        if cfg.extra_detail > 0:
            disp_cm = disp_cm + _extra_detail(rng, cfg, canon_p, md)
        if tuple(cfg.detail_gain) != (1.0, 1.0):
            lo, hi = np.log(cfg.detail_gain[0]), np.log(cfg.detail_gain[1])
            disp_cm = disp_cm * float(np.exp(rng.uniform(lo, hi)))
        detail_map.reshape(-1)[sel] = (disp_cm * scale / np.maximum(nz, 0.5)).astype(np.float32)
    depth = coarse + detail_map
    depth[~mask] = 0.0
    coarse[~mask] = 0.0
    detail_map = depth - coarse
    normals = shading.depth_normals(depth, mask).astype(np.float32)
    shade_normals = normals
    if cfg.smooth_shading:
        from .refine import masked_blur

        shade_normals = shading.depth_normals(masked_blur(coarse, mask, SMOOTH_FACET_CM * scale) + detail_map,
                                              mask).astype(np.float32)

    # lighting
    sh, light_dir, light_rgb, ambient, lights = _lighting(rng, cfg, skin_luma)
    n_p = shade_normals.reshape(-1, 3)[sel]
    if cfg.marks_prob > 0 and len(sel) and rng.random() < cfg.marks_prob:
        alb_p = _albedo_marks(np.random.default_rng(rng.integers(2**63)), md, canon_p, alb_p, scale)
    pores = 1.0 + rng.uniform(*cfg.pore_noise) * rng.standard_normal((len(sel), 1), dtype=np.float32)
    alb_p = np.clip(alb_p * pores, 0.0, 1.0).astype(np.float32)
    if cfg.hard_light_prob > 0 and rng.random() < cfg.hard_light_prob:
        face = alb_p * _hard_light(n_p, ambient, lights)
    else:
        face = alb_p * shading.shade(n_p, sh)
    if rng.random() < cfg.specular_prob:
        h = light_dir + np.array([0.0, 0.0, 1.0])
        h /= np.linalg.norm(h)
        ks, p = rng.uniform(*cfg.specular), rng.uniform(8.0, 40.0)
        spec = ks * np.clip(n_p @ h.astype(np.float32), 0, 1) ** p
        face = face + spec[:, None] * light_rgb[None, :]
    albedo = np.zeros((s, s, 3), np.float32)
    albedo.reshape(-1, 3)[sel] = alb_p

    img = _background(rng, cfg, s)
    img.reshape(-1, 3)[sel] = face
    lm = vpx[md.landmark_ids, :2]
    _paint_holes(rng, img, mask, coarse, vpx[md.landmark_ids], scale, sh, alb_p.mean(0) if len(sel) else None)
    if rng.random() < cfg.occluder_prob:
        _occluder(rng, img, lm, s)
    img = _degrade(rng, cfg, img, s)
    return SynthFace(
        image=img, identity=identity.astype(np.float32), expression=expression.astype(np.float32),
        pose=pose.astype(np.float32), vertices=vpx.astype(np.float32), depth=depth.astype(np.float32),
        coarse_depth=coarse, detail=detail_map.astype(np.float32), mask=mask, normals=normals,
        landmarks=np.ascontiguousarray(lm, dtype=np.float32), albedo=albedo, sh=sh.astype(np.float32))


def _vertex_albedo(md: _ModelData, rng, cfg: SynthConfig) -> np.ndarray:
    x = md.canon
    t = rng.uniform(0.0, len(_MONK) - 1.0)
    i = min(int(t), len(_MONK) - 2)
    skin = _MONK[i] * (1 - (t - i)) + _MONK[i + 1] * (t - i)
    skin = skin * np.exp(rng.normal(0.0, [0.04, 0.03, 0.05])).astype(np.float32)  # hue / saturation jitter
    # low-frequency variation: random Fourier features of the model-frame position (wavelengths 3-12 cm)
    k = 6
    dirs = rng.standard_normal((k, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    freq = 2 * np.pi / rng.uniform(3.0, 12.0, k)
    phase = rng.uniform(0, 2 * np.pi, k)
    waves = np.sin(x @ (dirs * freq[:, None]).T.astype(np.float32) + phase.astype(np.float32))  # (V, k)
    amp = rng.uniform(*cfg.skin_variation)
    lum = 1.0 + amp * waves[:, :4].sum(1) / 2.0
    tint = 0.5 * amp * waves[:, 4:] @ np.array([[1.0, -0.5, -0.5], [0.3, 0.3, -0.6]], np.float32)
    alb = skin[None, :] * (lum[:, None] + tint)
    # cheek redness, eye shadow
    red = rng.uniform(0.0, 0.12)
    alb = alb * (1.0 + red * md.cheeks[:, None] * np.array([0.6, -0.4, -0.4], np.float32))
    alb = alb * (1.0 - rng.uniform(0.0, 0.15) * md.eyes[:, None])
    # lips
    lip_col = skin * np.array([0.95, 0.62, 0.66], np.float32) * rng.uniform(0.75, 1.0)
    wl = md.lips[:, None] * rng.uniform(0.5, 0.95)
    alb = alb * (1 - wl) + lip_col[None] * wl
    # hair colour (also for brows / stubble)
    hair = _HAIR[rng.choice(len(_HAIR), p=_HAIR_P)] * np.exp(rng.normal(0, 0.1, 3)).astype(np.float32)
    brow_col = np.minimum(hair, skin * 0.45)
    wb = md.brows[:, None] * rng.uniform(0.45, 0.9)
    alb = alb * (1 - wb) + brow_col[None] * wb
    if rng.random() < cfg.stubble_prob:
        ws = md.stubble[:, None] * rng.uniform(0.15, 0.45)
        alb = alb * (1 - ws) + (np.minimum(hair, skin * 0.5))[None] * ws
    if rng.random() < cfg.hair_prob:
        h0 = md.brow_top + rng.uniform(3.0, 4.8)
        yh = h0 - 0.05 * x[:, 0] ** 2
        top = np.clip((x[:, 1] - yh) / 0.7, 0, 1)
        above_ears = np.clip((x[:, 1] - (md.lm[0, 1] + rng.uniform(0.5, 2.0))) / 0.7, 0, 1)
        side = above_ears * np.clip((3.0 - x[:, 2]) / 0.7, 0, 1)
        wh = np.maximum(top, side)[:, None]
        streak = 1.0 + 0.15 * np.sin(x[:, 0:1] * rng.uniform(6, 12) + x[:, 2:3] * 3.0)
        alb = alb * (1 - wh) + hair[None] * streak * wh
    return np.clip(alb, 0.01, 1.0).astype(np.float32), float(skin @ np.array([0.299, 0.587, 0.114]))


#: Fixed random numbers that the stubble dots of :func:`_albedo_marks` take their offsets from, by cell hash.
_DOT_TABLE = np.random.default_rng(0).random(4096)


def _albedo_marks(rng, md: _ModelData, u: np.ndarray, alb: np.ndarray, scale: float) -> np.ndarray:
    """Albedo (P, 3) of the pixels with mean-face coordinates ``u`` (P, 3) (cm) with sharp marks painted on it:
    marks that change the colour only, never the geometry, so that a FineNet learns that a thin dark line, a
    dot or a coloured stroke is not a groove (real faces have moles, freckles, make-up, stubble and glasses
    frames; the per-vertex albedo of :func:`_vertex_albedo` has no edge sharper than a triangle).

    Each kind is drawn with its own probability: spots (moles, freckles: 3-80 disks of radius 0.03-0.2 cm,
    brown, more or less dark), strokes (1-4 quadratic curves or ellipses of half-width 0.03-0.2 cm: make-up,
    face paint, frames; dark or any colour), stubble (a dot on a 0.1-0.16 cm cell grid, present in a random
    share of the cells, in a random band of the face) and blotches (1-2 ellipses of 0.3-1.5 cm with a soft
    edge). Edges are anti-aliased over about a pixel (``scale``: px per cm)."""
    x, y = u[:, 0], u[:, 1]
    lm = md.lm
    x_lim, y_lo, y_hi = 6.5, float(lm[8, 1]), md.brow_top + 3.5
    aa = 0.7 / max(scale, 1e-6)  # ramp width (cm), about a pixel
    skin = np.median(alb, axis=0)
    out = alb.astype(np.float32).copy()

    def paint(weight: np.ndarray, colour) -> None:
        w = np.clip(weight, 0.0, 1.0)[:, None].astype(np.float32)
        out[:] = out * (1.0 - w) + w * np.asarray(colour, np.float32)

    def centre():
        return np.array([rng.uniform(-x_lim, x_lim), rng.uniform(y_lo, y_hi)])

    if rng.random() < 0.7:  # spots
        layer = np.zeros(len(u))
        for _ in range(int(rng.integers(3, 81))):
            c, r = centre(), rng.uniform(0.03, 0.2)
            near = (np.abs(x - c[0]) < r + aa) & (np.abs(y - c[1]) < r + aa)
            if near.any():
                d = np.hypot(x[near] - c[0], y[near] - c[1])
                layer[near] = np.maximum(layer[near], rng.uniform(0.4, 1.0) * np.clip(0.5 + (r - d) / aa, 0, 1))
        paint(layer, skin * np.array([0.75, 0.6, 0.5]) * rng.uniform(0.4, 1.0))
    if rng.random() < 0.5:  # strokes: curves and rings
        for _ in range(int(rng.integers(1, 5))):
            if rng.random() < 0.3:
                ang = np.linspace(0, 2 * np.pi, 48)
                radii = np.array([rng.uniform(1.0, 2.5), rng.uniform(0.8, 1.8)])
                line = centre() + radii * np.stack([np.cos(ang), np.sin(ang)], 1)
            else:
                p0, p1, p2 = centre(), centre(), centre()
                p2 = p0 + (p2 - p0) * rng.uniform(0.1, 0.6)
                tt = np.linspace(0, 1, 24)[:, None]
                line = (1 - tt) ** 2 * p0 + 2 * (1 - tt) * tt * p1 + tt**2 * p2
            hw = rng.uniform(0.03, 0.2)
            lo, hi = line.min(0) - hw - aa, line.max(0) + hw + aa
            near = (x > lo[0]) & (x < hi[0]) & (y > lo[1]) & (y < hi[1])
            if not near.any():
                continue
            layer = np.zeros(len(u))
            d = _polyline_distance(np.stack([x[near], y[near]], 1), line)
            layer[near] = rng.uniform(0.5, 1.0) * np.clip(0.5 + (hw - d) / aa, 0, 1)
            colour = rng.uniform(0.02, 0.15) * np.ones(3) if rng.random() < 0.5 else rng.uniform(0.05, 0.9, 3)
            paint(layer, colour)
    if rng.random() < 0.3:  # stubble dots: one per grid cell, in a share of the cells, in a band of the face
        cell, r = rng.uniform(0.1, 0.16), rng.uniform(0.02, 0.045)
        ix, iy = np.floor(x / cell).astype(np.int64), np.floor(y / cell).astype(np.int64)
        h = (ix * 73856093) ^ (iy * 19349663) ^ int(rng.integers(1 << 30))
        t = _DOT_TABLE
        ox, oy, on = t[h % len(t)], t[(h // len(t)) % len(t)], t[(h // 7) % len(t)]
        d = np.hypot(x - (ix + 0.2 + 0.6 * ox) * cell, y - (iy + 0.2 + 0.6 * oy) * cell)
        band_lo = rng.uniform(y_lo, float(lm[33, 1]))
        band = (y > band_lo) & (y < band_lo + rng.uniform(2.0, 6.0))
        layer = np.where(band & (on < rng.uniform(0.3, 0.9)), np.clip(0.5 + (r - d) / aa, 0, 1), 0.0)
        paint(layer * rng.uniform(0.4, 0.9), np.minimum(skin * 0.4, rng.uniform(0.02, 0.2)))
    if rng.random() < 0.3:  # blotches: birthmarks, blush, make-up patches
        for _ in range(int(rng.integers(1, 3))):
            c, ax, ay = centre(), rng.uniform(0.3, 1.5), rng.uniform(0.3, 1.5)
            d = np.hypot((x - c[0]) / ax, (y - c[1]) / ay)
            soft = rng.uniform(0.05, 0.4)
            paint(rng.uniform(0.3, 0.8) * np.clip((1.0 - d) / soft, 0, 1),
                  skin * np.array([rng.uniform(0.5, 1.0), rng.uniform(0.4, 0.9), rng.uniform(0.4, 0.9)]))
    return np.clip(out, 0.01, 1.0)


def _ricker(d: np.ndarray, w: float) -> np.ndarray:
    """Zero-mean groove cross-section (1 at the centre), truncated at |d| = 4 w."""
    t2 = (d / w) ** 2
    return np.where(t2 < 16.0, (1.0 - t2) * np.exp(-0.5 * t2), 0.0)


def _window(t: np.ndarray) -> np.ndarray:
    """Compact smooth window on t in [-1, 1]."""
    return np.clip(1.0 - t * t, 0.0, None) ** 2


def _wrinkles(md: _ModelData, rng, cfg: SynthConfig, u: np.ndarray, scale: float) -> np.ndarray:
    """Displacement along the normal (cm, negative = into the skin) at pixels with mean-face coords ``u``."""
    x, y, z = u[:, 0], u[:, 1], u[:, 2]
    out = np.zeros(len(u))
    age = rng.random()
    amp_scale = 0.35 + 0.65 * age
    wmin = cfg.min_width_px / max(scale, 1e-6)  # cm

    def amp():
        return rng.uniform(*cfg.detail_mm) * amp_scale / 10.0  # cm

    lm = md.lm
    # forehead: horizontal lines above the brows
    if rng.random() < 0.3 + 0.6 * age:
        n = int(rng.integers(2, 6))
        sp = rng.uniform(0.55, 0.9)
        y0 = md.brow_top + rng.uniform(0.7, 1.3)
        curv = rng.uniform(-0.01, 0.03)
        gate = np.clip((z - 6.5) / 1.0, 0, 1)
        reg = (gate > 0) & (y > y0 - 1.0) & (y < y0 + n * sp + 1.0) & (np.abs(x) < 6.0)
        if reg.any():
            xr, yr = x[reg], y[reg]
            acc = np.zeros(reg.sum())
            for k in range(n):
                w = max(rng.uniform(0.08, 0.16), wmin)
                half = rng.uniform(2.5, 4.5)
                x0 = rng.uniform(-0.6, 0.6)
                yk = y0 + k * sp + curv * xr**2 + 0.1 * np.sin(xr * rng.uniform(0.8, 1.6) + rng.uniform(0, 6.3))
                acc -= amp() * rng.uniform(0.5, 1.0) * _ricker(yr - yk, w) * _window((xr - x0) / half)
            out[reg] += acc * gate[reg]
    # frown lines between the brows
    if rng.random() < 0.1 + 0.5 * age:
        yb = float(lm[21, 1])
        for side in (-1.0, 1.0):
            xc = side * rng.uniform(0.3, 0.6)
            w = max(rng.uniform(0.06, 0.12), wmin)
            y_lo, y_hi = yb - 0.4, yb + rng.uniform(0.8, 1.6)
            reg = (np.abs(x - xc) < 4 * w + 0.3) & (y > y_lo) & (y < y_hi) & (z > 8.0)
            if reg.any():
                xc_k = xc + 0.15 * side * (y[reg] - y_lo) / (y_hi - y_lo)
                win = _window((y[reg] - 0.5 * (y_lo + y_hi)) / (0.5 * (y_hi - y_lo)))
                out[reg] -= amp() * _ricker(x[reg] - xc_k, w) * win
    # crow's feet at the outer eye corners (landmarks 36 and 45)
    if rng.random() < 0.15 + 0.7 * age:
        for side, idx in ((-1.0, 36), (1.0, 45)):
            cx, cy = lm[idx, 0] + side * 0.35, lm[idx, 1]
            r_max = rng.uniform(1.2, 2.0)
            dx, dy = (x - cx) * side, y - cy
            reg = (dx > -0.3) & (np.abs(dy) < r_max) & (dx < r_max) & (z > 4.0)
            if not reg.any():
                continue
            rr = np.hypot(dx[reg], dy[reg])
            th = np.arctan2(dy[reg], dx[reg])
            win = _window((rr - 0.5 * (r_max + 0.15)) / (0.5 * (r_max - 0.15)))
            n = int(rng.integers(3, 6))
            angles = np.linspace(-0.8, 0.7, n) + rng.normal(0, 0.08, n)
            a0 = amp() * rng.uniform(0.4, 0.8)
            acc = np.zeros(reg.sum())
            for ak in angles:
                w = max(rng.uniform(0.05, 0.1), wmin)
                dth = np.angle(np.exp(1j * (th - ak)))
                acc -= a0 * _ricker(rr * np.sin(dth), w) * (np.abs(dth) < 1.2)
            out[reg] += acc * win
    # nasolabial folds: nose wing (31 / 35) to beyond the mouth corner (48 / 54), bulging outward
    if rng.random() < 0.3 + 0.6 * age:
        a0 = amp()
        w = max(rng.uniform(0.15, 0.3), wmin)
        for side, i_nose, i_mouth in ((-1.0, 31, 48), (1.0, 35, 54)):
            p0 = lm[i_nose, :2] + np.array([side * 0.5, 0.15])
            p2 = lm[i_mouth, :2] + np.array([side * rng.uniform(0.4, 0.8), -rng.uniform(0.4, 1.0)])
            p1 = 0.5 * (p0 + p2) + np.array([side * rng.uniform(0.3, 0.8), 0.0])
            tt = np.linspace(0, 1, 24)[:, None]
            curve = (1 - tt) ** 2 * p0 + 2 * (1 - tt) * tt * p1 + tt**2 * p2
            lo, hi = curve.min(0) - 4 * w, curve.max(0) + 4 * w
            reg = (x > lo[0]) & (x < hi[0]) & (y > lo[1]) & (y < hi[1]) & (z > 6.0)
            if not reg.any():
                continue
            d, t = _polyline_distance(np.stack([x[reg], y[reg]], 1), curve, return_t=True)
            out[reg] -= a0 * _ricker(d, w) * _window(2.0 * t - 1.0) ** 0.5
    return out


#: Blur (Gaussian sigma, cm) that turns the faceted mesh depth into a smooth face for shading (the mesh's edges
#: are about 2 mm long).
SMOOTH_FACET_CM = 0.1


def _extra_detail(rng, cfg: SynthConfig, u: np.ndarray, md: _ModelData) -> np.ndarray:
    """Displacement (cm, negative = into the skin) of extra detail anywhere on the front of the face at mean-face
    coordinates ``u``: one-sided Gaussian grooves along short random curves (sigma 0.4-3 mm, depth 0.15-2 mm)
    and round bumps and dents (moles, scars, pores' larger kin; sigma 0.4-2.5 mm, 0.1-1 mm)."""
    x, y, z = u[:, 0], u[:, 1], u[:, 2]
    out = np.zeros(len(u))
    front = z > 4.0
    if not front.any():
        return out
    pts = u[front]
    for _ in range(int(rng.poisson(cfg.extra_detail))):
        c = pts[rng.integers(len(pts))]
        if rng.random() < 0.6:  # a groove along a quadratic curve through c
            w = rng.uniform(0.04, 0.3)
            depth = rng.uniform(0.015, 0.2) * (0.3 + 0.7 * min(1.0, w / 0.15))
            length = rng.uniform(0.6, 3.0)
            th = rng.uniform(0, np.pi)
            d = np.array([np.cos(th), np.sin(th)])
            bend = rng.normal(0, 0.25) * d[::-1] * np.array([-1, 1])
            tt = np.linspace(-0.5, 0.5, 16)[:, None]
            curve = c[:2] + tt * length * d + (4 * tt**2 - 1) * bend
            lo, hi = curve.min(0) - 4 * w, curve.max(0) + 4 * w
            reg = (x > lo[0]) & (x < hi[0]) & (y > lo[1]) & (y < hi[1]) & front
            if not reg.any():
                continue
            dist, t = _polyline_distance(np.stack([x[reg], y[reg]], 1), curve, return_t=True)
            out[reg] -= depth * np.exp(-0.5 * (dist / w) ** 2) * _window(2.0 * t - 1.0) ** 0.5
        else:  # a bump (out) or a dent (in)
            w = rng.uniform(0.04, 0.25)
            amp = rng.uniform(0.01, 0.1) * (1 if rng.random() < 0.5 else -1)
            reg = (np.abs(x - c[0]) < 4 * w) & (np.abs(y - c[1]) < 4 * w) & front
            out[reg] += amp * np.exp(-0.5 * ((x[reg] - c[0]) ** 2 + (y[reg] - c[1]) ** 2) / w**2)
    return out


def _lighting(rng, cfg: SynthConfig, skin_luma: float = 0.5):
    """SH (9, 3) irradiance of ambient + one directional light (and, with probability ``fill_light_prob``, a weaker
    fill light from the other side), exposure folded in; also the key light's direction and colour (max 1), and the
    RGB ambient and the lights' (direction, RGB intensity) that the SH band-limits.

    Like a camera's auto exposure, darker skin gets up to 2x more exposure."""
    # direction: mostly frontal and from above (image y is down)
    d = np.array([rng.normal(0, cfg.light_spread[0]), rng.normal(-0.35, cfg.light_spread[1]), 1.0])
    d /= np.linalg.norm(d)
    tint = np.exp(rng.normal(0, cfg.light_color_jitter, 3))
    amb_tint = np.exp(rng.normal(0, cfg.light_color_jitter, 3))
    expo = rng.uniform(*cfg.exposure) * float(np.clip((0.5 / max(skin_luma, 0.05)) ** 0.5, 1.0, 2.0))
    amb = rng.uniform(*cfg.ambient) * amb_tint * expo
    inten = rng.uniform(*cfg.light_intensity) * tint * expo
    sh = shading.directional_light(d, inten, amb, order=2)
    lights = [(d, inten)]
    if cfg.fill_light_prob > 0 and rng.random() < cfg.fill_light_prob:
        # a weaker light from the other side, as a reflector or a window would add
        d2 = np.array([-np.sign(d[0]) * abs(rng.normal(0.6, 0.4)), rng.normal(0.0, 0.4), 1.0])
        d2 /= np.linalg.norm(d2)
        inten2 = inten * rng.uniform(0.15, 0.5)
        sh = sh + shading.directional_light(d2, inten2, 0.0, order=2)
        lights.append((d2, inten2))
    return sh, d, (inten / max(inten.max(), 1e-6)).astype(np.float32), amb, lights


def _hard_light(normals: np.ndarray, ambient: np.ndarray, lights: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Irradiance (P, 3) of ``_lighting``'s light with each directional light an exact clamped cosine:
    ``ambient + sum_k I_k max(n . d_k, 0)`` (RGB ``ambient`` and intensities ``I_k``, unit directions ``d_k``)."""
    n = normals.astype(np.float64)
    e = np.broadcast_to(np.asarray(ambient, np.float64), (len(n), 3)).copy()
    for d, inten in lights:
        e += np.clip(n @ np.asarray(d, np.float64), 0.0, None)[:, None] * np.asarray(inten, np.float64)[None, :]
    return e.astype(np.float32)


def _background(rng, cfg: SynthConfig, s: int) -> np.ndarray:
    import cv2

    kind = rng.choice(4, p=np.asarray(cfg.background_kinds) / sum(cfg.background_kinds))
    c0 = rng.random(3).astype(np.float32)
    if kind == 0:
        img = np.broadcast_to(c0, (s, s, 3)).copy()
    elif kind == 1:
        c1 = rng.random(3).astype(np.float32)
        a = rng.uniform(0, 2 * np.pi)
        g = np.linspace(-1, 1, s, dtype=np.float32)
        t = (math.cos(a) * g[None, :] + math.sin(a) * g[:, None]) * 0.5 + 0.5
        img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    else:
        k = int(rng.integers(2, 9))
        grid = rng.random((k, k, 3)).astype(np.float32)
        img = cv2.resize(grid, (s, s), interpolation=cv2.INTER_CUBIC)
        if kind == 3:
            for _ in range(int(rng.integers(3, 12))):
                col = tuple(float(v) for v in rng.random(3))
                shape = rng.integers(3)
                p = (rng.random(2) * s).astype(int)
                if shape == 0:
                    cv2.circle(img, (int(p[0]), int(p[1])), int(rng.uniform(0.03, 0.3) * s), col, -1, cv2.LINE_AA)
                elif shape == 1:
                    q = (rng.random(2) * s).astype(int)
                    cv2.rectangle(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), col, -1)
                else:
                    q = (rng.random(2) * s).astype(int)
                    cv2.line(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), col,
                             max(1, int(rng.uniform(0.01, 0.06) * s)), cv2.LINE_AA)
        img = np.clip(img, 0, 1)
    return np.ascontiguousarray(img, dtype=np.float32)


def _poly_mask(s: int, pts: np.ndarray, dilate_px: float = 0.0) -> np.ndarray:
    import cv2

    m = np.zeros((s, s), np.uint8)
    q = np.round((np.asarray(pts, np.float64) - 0.5) * 16).astype(np.int32)
    cv2.fillPoly(m, [q], 1, cv2.LINE_8, shift=4)
    if dilate_px >= 0.5:
        k = int(round(dilate_px)) * 2 + 1
        m = cv2.dilate(m, np.ones((k, k), np.uint8))
    return m.astype(bool)


def _paint_holes(rng, img, mask, depth, lm3, scale, sh, mean_albedo) -> None:
    """Paint eyes and a mouth interior into the mesh's openings (pixels outside the mask only)."""
    import cv2

    s = img.shape[0]
    ambient = float(sh[0].mean() * shading.SH_C0 + 0.5 * sh[3].mean() * shading.SH_C1)
    ambient = min(max(ambient, 0.2), 1.2)
    ys, xs = None, None
    # every enclosed opening (nostrils, eyes, mouth) first gets a dark skin colour
    if mean_albedo is not None:
        outside = np.pad((~mask).astype(np.uint8), 1, constant_values=1)
        ff = np.zeros((s + 4, s + 4), np.uint8)
        cv2.floodFill(outside, ff, (0, 0), 2)
        enclosed = outside[1:-1, 1:-1] == 1
        if enclosed.any():
            img[enclosed] = mean_albedo * 0.3 * ambient

    def visible(idx):
        p = lm3[idx]
        j, i = int(np.floor(p[:, 0].mean())), int(np.floor(p[:, 1].mean()))
        if not (0 <= i < s and 0 <= j < s):
            return False
        # the opening is visible when no face surface lies in front of the landmarks around it
        ii = np.clip(np.floor(p[:, 1]).astype(int), 0, s - 1)
        jj = np.clip(np.floor(p[:, 0]).astype(int), 0, s - 1)
        front = np.where(mask[ii, jj], depth[ii, jj], -np.inf)
        return bool(np.mean(front <= p[:, 2] + 0.4 * scale) > 0.5)

    iris_col = _IRIS[rng.choice(len(_IRIS), p=_IRIS_P)]
    sclera = np.array([0.86, 0.82, 0.78], np.float32) * rng.uniform(0.8, 1.0)
    for idx in (np.arange(36, 42), np.arange(42, 48)):
        if not visible(idx):
            continue
        hole = _poly_mask(s, lm3[idx, :2], 0.06 * scale) & ~mask
        if not hole.any():
            continue
        if ys is None:
            ys, xs = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
        c = lm3[idx, :2].mean(0)
        r = np.hypot(xs[hole] - c[0], ys[hole] - c[1])
        r_iris = 0.55 * scale
        col = np.where((r < r_iris)[:, None], iris_col[None], sclera[None])
        col = np.where((r < 0.22 * scale)[:, None], 0.02, col)
        img[hole] = col * ambient * 0.85
    idx = np.arange(60, 68)
    if visible(idx):
        hole = _poly_mask(s, lm3[idx, :2], 0.08 * scale) & ~mask
        if hole.any():
            if ys is None:
                ys, xs = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
            p = np.stack([xs[hole], ys[hole]], 1)
            d_up = _polyline_distance(p, lm3[60:65, :2])
            d_lo = _polyline_distance(p, np.vstack([lm3[64:68, :2], lm3[60:61, :2]]))
            dark = np.array([0.22, 0.07, 0.07], np.float32) * rng.uniform(0.4, 1.0)
            teeth = np.array([0.85, 0.82, 0.74], np.float32) * rng.uniform(0.7, 1.0)
            is_teeth = (d_up < 0.3 * scale) | (d_lo < rng.uniform(0.0, 0.2) * scale)
            col = np.where(is_teeth[:, None], teeth[None], dark[None])
            img[hole] = col * ambient * 0.8


def _occluder(rng, img, lm, s) -> None:
    import cv2

    layer = np.zeros((s, s), np.uint8)
    c = lm[rng.integers(len(lm))] + rng.normal(0, 0.05 * s, 2)
    size = rng.uniform(0.15, 0.4) * s
    kind = rng.integers(3)
    f = 16
    cc = (int(round((c[0] - 0.5) * f)), int(round((c[1] - 0.5) * f)))
    ang = float(rng.uniform(0, 180))
    if kind == 0:
        cv2.ellipse(layer, cc, (int(size * f / 2), int(size * rng.uniform(0.3, 0.9) * f / 2)), ang, 0, 360, 1, -1,
                    cv2.LINE_8, 4)
        col = rng.random(3)
    elif kind == 1:
        box = cv2.boxPoints(((float(c[0]), float(c[1])), (float(size), float(size * rng.uniform(0.3, 1.0))), ang))
        cv2.fillPoly(layer, [np.round((box - 0.5) * f).astype(np.int32)], 1, cv2.LINE_8, 4)
        col = rng.random(3)
    else:  # hand-like: palm plus four fingers
        t = rng.uniform(0, len(_MONK) - 1)
        col = _MONK[int(round(t))] * rng.uniform(0.7, 1.0)
        cv2.ellipse(layer, cc, (int(size * 0.45 * f), int(size * 0.35 * f)), ang, 0, 360, 1, -1, cv2.LINE_8, 4)
        a = math.radians(ang)
        u = np.array([math.cos(a), math.sin(a)])
        v = np.array([-u[1], u[0]])
        for k in range(4):
            base = c + u * (k - 1.5) * size * 0.2 - v * size * 0.25
            tip = base - v * size * rng.uniform(0.45, 0.7)
            cv2.line(layer, (int(base[0]), int(base[1])), (int(tip[0]), int(tip[1])), 1,
                     max(1, int(size * 0.16)), cv2.LINE_8)
    occ = layer.astype(bool)
    if occ.any():
        ys, xs = np.nonzero(occ)
        g = 0.75 + 0.35 * (xs - xs.min()) / max(1, xs.max() - xs.min())
        img[occ] = np.clip(np.asarray(col, np.float32)[None] * g[:, None], 0, 1)


def _degrade(rng, cfg: SynthConfig, img: np.ndarray, s: int) -> np.ndarray:
    import cv2

    if rng.random() < cfg.blur_prob:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(*cfg.blur_sigma) * s / 128.0)
    sigma = rng.uniform(*cfg.noise_sigma)
    if sigma > 0:
        img = img + sigma * rng.standard_normal(img.shape, dtype=np.float32)
    out = (np.clip(img[..., ::-1], 0, 1) * 255.0 + 0.5).astype(np.uint8)  # RGB -> BGR
    if rng.random() < cfg.jpeg_prob:
        q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return np.ascontiguousarray(out)


def _timing(n: int = 64, size: int = 128) -> float:
    from .face_model import FaceModel

    model = FaceModel.load()
    batch(model, 4, seed=1, size=size)  # warm up (Numba compile, caches)
    t = time.perf_counter()
    batch(model, n, seed=0, size=size)
    return (time.perf_counter() - t) / n * 1e3


__all__ = ["FIELDS", "SynthConfig", "SynthFace", "batch", "render_face", "sample"]

if __name__ == "__main__":
    print(f"{_timing():.2f} ms per 128x128 synthetic face (batch of 64, one process)")
