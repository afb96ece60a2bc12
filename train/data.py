"""On-the-fly synthetic training batches for phase 1 (``rtface.synth``), produced in worker processes.

One synthetic batch of ``batch_size`` faces (``synth.batch``, with fine detail) feeds both networks:

* CoarseNet: ``image`` (B,3,S,S) RGB [0,1], ``feedback`` (B,6,S,S) and the ground truth ``identity``,
  ``expression``, ``pose``. With probability ``feedback_prob`` a face carries the input-rendering-layer
  feedback (``rtface.render.feedback.render_feedback``) of a *perturbed* ground-truth estimate - what the
  previous video frame's estimate looks like - otherwise zeros (first frame / single image). The
  perturbation is Gaussian on every parameter (see :data:`PERTURB`), scaled per face.
* FineNet: the first ``fine_batch_size`` faces, with ``coarse_in`` = the GT 3DMM depth (``coarse_depth``)
  plus smooth noise (a random tilt and a low-frequency field, ``coarse_noise_px``), the GT ``mask`` and
  ``detail`` (= depth - coarse_depth). The FineNet's target is ``coarse_in + detail``: it *adds* the
  image-evidenced detail to the coarse surface it gets. With ``fine_predicted_prob`` > 0 that fraction of
  the faces instead gets what the pipeline gives it, the CoarseNet's own fit rasterised
  (:func:`predicted_coarse`), and ``detail`` = the true surface minus that fit on ``fine_valid``: the
  FineNet then also learns to correct the fit's shape errors at the scale of a few mm, where the image's
  shading shows them (the truth-fed faces keep it from changing a surface that is already right).
  ``fine_valid`` marks the pixels that carry the loss (the mask for truth-fed faces). With ``w_fine_flow`` > 0
  also ``fine_flow`` (B,2,S,S) crop px: where the fit put each point of the true face (0 for truth-fed faces),
  the target of a FineNet with a flow (``train/nets.py``).

Determinism: batch ``k`` of a run with seed ``s`` is drawn with synth seed :func:`batch_seed` (``s``, ``k``),
always < 10**6, so held-out sets (``benchmarks/accuracy.py``) use seeds >= 10**6. The feedback
perturbation and the depth noise use their own generator seeded from (s, k). Batches are identical
whatever the number of workers, and a resumed run continues with the same batches.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import multiprocessing as mp
import os
from dataclasses import dataclass, field

import numpy as np

from .config import VariantConfig

TRAIN_SEED_LIMIT = 10**6  # training synth seeds are below this; evaluation seeds start here

#: Std of the perturbation of the ground truth that the feedback input renders, before a per-face factor
#: drawn from U(PERTURB_FACTOR): from nearly exact to about twice as far off (angles 0.1 rad ~ 6 deg, scale
#: 6 %, translation 3 % of S), so the net learns to use the feedback but not to trust it blindly (at run
#: time it is the previous frame's estimate, with the CoarseNet's own errors).
PERTURB = {"identity": 0.5, "expression": 0.12, "angles": 0.10, "log_scale": 0.06, "translation_frac": 0.03}
PERTURB_FACTOR = (0.2, 2.0)


def batch_seed(seed: int, index: int) -> int:
    """Synth seed of training batch ``index`` of a run with ``seed`` (in [0, 10**6))."""
    return int((int(seed) * 7_919 + int(index) * 104_729 + 12_345) % TRAIN_SEED_LIMIT)


@dataclass
class _State:
    model: object = None
    pncc: np.ndarray | None = None
    coarse: dict = field(default_factory=dict)  # weights folder -> rtface.networks.CoarseNet (one ORT thread)


_STATE = _State()


def _model():
    if _STATE.model is None:
        from rtface.face_model import FaceModel
        from rtface.render.feedback import pncc_code

        _STATE.model = FaceModel.load()
        _STATE.pncc = pncc_code(_STATE.model.mean)
    return _STATE.model


def perturbed_feedback(model, pncc: np.ndarray, identity: np.ndarray, expression: np.ndarray,
                       pose: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Feedback images (B,6,S,S) of perturbed copies of the given ground truth."""
    from rtface.camera import project
    from rtface.render.feedback import render_feedback

    b = identity.shape[0]
    f = rng.uniform(*PERTURB_FACTOR, (b, 1))
    idn = identity + f * rng.normal(0.0, PERTURB["identity"], identity.shape)
    exp = np.clip(expression + f * rng.normal(0.0, PERTURB["expression"], expression.shape), 0.0, 1.0)
    p = np.array(pose, dtype=np.float64, copy=True)
    p[:, :3] += f * rng.normal(0.0, PERTURB["angles"], (b, 3))
    p[:, 3] *= np.exp(f[:, 0] * rng.normal(0.0, PERTURB["log_scale"], b))
    p[:, 4:6] += f * rng.normal(0.0, PERTURB["translation_frac"] * size, (b, 2))
    verts = project(model.vertices(idn.astype(np.float32), exp.astype(np.float32)), p)
    return render_feedback(verts, model.triangles, size, pncc)


def _coarse_net(weights: str):
    if weights not in _STATE.coarse:
        from rtface.networks import load_networks

        _STATE.coarse[weights] = load_networks(weights or None, backend="cpu", threads=1,
                                               face_model_hash=_model().hash).coarse
    return _STATE.coarse[weights]


def predicted_coarse(model, coarse_net, image: np.ndarray, truth: np.ndarray, truth_mask: np.ndarray,
                     max_px: float, true_fit: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                     ) -> dict[str, np.ndarray]:
    """The FineNet input the pipeline would give for synthetic crops, and the target that goes with it.

    ``image`` (B,3,S,S) the CoarseNet input; ``truth`` (B,S,S) the true surface incl. detail (crop px) inside
    ``truth_mask``. The CoarseNet's fit (feedback off, a single image) is rasterised as in the pipeline:
    ``coarse_in`` its depth, ``mask`` its mask. ``target = truth - coarse_in`` on ``valid``: both masks, one
    pixel in from either silhouette, and within ``max_px`` of the fit once the two surfaces' median offset is
    removed (a fit that missed the face has no target there); 0 elsewhere.

    With ``true_fit`` = the true (identity, expression, pose), also ``flow`` (B,2,S,S) crop px: at each pixel
    of the true face, where the fit put that point of the surface (its projected position in the fit minus in
    the truth, interpolated over the true mesh's visible triangle): the shift that moves the fit onto the image
    (:class:`train.nets.FineNet`, flow); 0 off the true face."""
    import cv2

    from rtface.render.fit import render_fit

    s = image.shape[-1]
    out = coarse_net.run(image)
    verts, r = render_fit(model, out["identity"], out["expression"], out["pose"], s)
    mask = r.mask.astype(np.float32)
    coarse_in = r.depth.astype(np.float32) * mask
    kernel = np.ones((3, 3), np.uint8)
    valid = np.zeros_like(mask)
    target = np.zeros_like(mask)
    for i in range(len(image)):
        both = cv2.erode((r.mask[i] & (truth_mask[i] > 0)).astype(np.uint8), kernel) > 0
        if not both.any():
            continue
        diff = truth[i] - coarse_in[i]
        ok = both & (np.abs(diff - np.median(diff[both])) < max_px)
        valid[i] = ok
        target[i] = diff * ok
    result = {"coarse_in": coarse_in, "mask": mask, "target": target, "valid": valid}
    if true_fit is not None:
        true_verts, t = render_fit(model, *true_fit, s)
        shift = (verts - true_verts)[..., :2]  # (B, V, 2)
        flow = np.zeros((len(image), 2, s, s), np.float32)
        for i in range(len(image)):
            on = t.mask[i]
            corners = model.triangles[t.triangle[i][on]]  # (P, 3) vertex ids
            flow[i][:, on] = np.einsum("pk,pkc->cp", t.barycentric[i][on], shift[i][corners])
        result["flow"] = flow
    return result


def smooth_noise(mask: np.ndarray, sigma_px: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random field (B,S,S) inside ``mask``: a tilt plus a bilinear-upsampled 4x4 Gaussian grid."""
    import cv2

    b, h, w = mask.shape
    out = np.zeros((b, h, w), dtype=np.float32)
    if sigma_px <= 0:
        return out
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(b):
        tilt = rng.normal(0.0, sigma_px / h, 2)
        grid = rng.normal(0.0, sigma_px, (4, 4)).astype(np.float32)
        field = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        out[i] = (field + tilt[0] * (xs - w / 2) + tilt[1] * (ys - h / 2)) * mask[i]
    return out


def make_batch(cfg: VariantConfig, seed: int, index: int) -> dict[str, np.ndarray]:
    """Training batch ``index`` (see the module docstring)."""
    from rtface import synth
    from rtface.networks import preprocess

    model = _model()
    t = cfg.train
    s = cfg.size
    n = min(t.fine_batch_size, t.batch_size) if t.fine_only else t.batch_size
    detail = t.coarse_detail or t.fine_only
    raw = synth.batch(model, n, seed=batch_seed(seed, index), size=s, detail=detail,
                      config=synth.SynthConfig(detail_mm=tuple(t.detail_mm), min_width_px=t.detail_min_width_px,
                                               marks_prob=t.synth_marks_prob))
    rng = np.random.default_rng([int(seed), int(index), 7])
    image = preprocess(raw["image"])
    identity = raw["identity"].astype(np.float32)
    expression = raw["expression"].astype(np.float32)
    pose = raw["pose"].astype(np.float32)
    feedback = np.zeros((n, 6, s, s), dtype=np.float32)
    use = rng.random(n) < (0.0 if t.fine_only else t.feedback_prob)
    if use.any():
        feedback[use] = perturbed_feedback(model, _STATE.pncc, identity[use], expression[use], pose[use], s, rng)
    nf = min(t.fine_batch_size, n)
    mask = raw["mask"][:nf].astype(np.float32)
    coarse = raw["coarse_depth"][:nf].astype(np.float32) * mask
    detail = raw["detail"][:nf].astype(np.float32) * mask
    coarse_in = coarse + smooth_noise(mask, t.coarse_noise_px, rng)
    valid = mask.copy()
    flow = np.zeros((nf, 2, s, s), np.float32) if t.w_fine_flow > 0 else None  # the truth needs no shift
    pick = np.flatnonzero(rng.random(nf) < t.fine_predicted_prob)
    if len(pick):
        p = predicted_coarse(model, _coarse_net(t.fine_coarse_weights), image[pick], (coarse + detail)[pick],
                             mask[pick], t.fine_predicted_max_px,
                             None if flow is None else (identity[pick], expression[pick], pose[pick]))
        coarse_in[pick], mask[pick], detail[pick], valid[pick] = p["coarse_in"], p["mask"], p["target"], p["valid"]
        if flow is not None:
            flow[pick] = p["flow"]
    out = {
        "image": image, "feedback": feedback, "identity": identity, "expression": expression, "pose": pose,
        "coarse_depth": raw["coarse_depth"].astype(np.float32), "mask": raw["mask"].astype(np.float32),
        "fine_coarse_in": coarse_in, "fine_mask": mask, "fine_detail": detail, "fine_valid": valid,
    }
    if flow is not None:
        out["fine_flow"] = flow
    return out


def to_tensors(batch: dict[str, np.ndarray], device) -> dict:
    """A batch's numeric arrays as torch tensors on ``device`` (other entries, e.g. names, are left out)."""
    import torch

    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in batch.items()
            if isinstance(v, np.ndarray) and v.dtype.kind in "biuf"}


class BatchStream:
    """Iterator over training batches ``start, start+1, ...`` made by ``workers`` processes (0: inline)."""

    def __init__(self, cfg: VariantConfig, seed: int, start: int = 0, workers: int | None = None,
                 prefetch: int | None = None):
        self.cfg = cfg
        self.seed = int(seed)
        self.next_index = int(start)
        self.workers = cfg.train.data_workers if workers is None else int(workers)
        self.prefetch = max(1, cfg.train.prefetch if prefetch is None else int(prefetch))
        self._pool = None
        self._pending: collections.deque = collections.deque()
        self._submitted = self.next_index
        if self.workers > 0:
            # spawn, not fork: forking a process whose torch/OpenMP thread pools are running can deadlock.
            ctx = mp.get_context("spawn")
            self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_worker_init)

    def _fill(self) -> None:
        while len(self._pending) < self.prefetch:
            self._pending.append(self._pool.submit(make_batch, self.cfg, self.seed, self._submitted))
            self._submitted += 1

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._pool is None:
            out = make_batch(self.cfg, self.seed, self.next_index)
        else:
            self._fill()
            out = self._pending.popleft().result()
        self.next_index += 1
        return out

    def close(self) -> None:
        if self._pool is not None:
            for f in self._pending:
                f.cancel()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _worker_init() -> None:
    # Before numba loads: one rasteriser thread per worker, and no OpenMP spin-waiting that would steal the
    # training process's core on a small shared CPU.
    os.environ["NUMBA_NUM_THREADS"] = "1"
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:
        pass
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _model()
