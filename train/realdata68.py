"""Training batches for the real-face CoarseNet: labelled real faces, their profiled copies and synthetic faces.

One batch of ``B`` crops mixes (fractions :data:`MIX`, per batch drawn from a seeded generator):

* ``300w``     - 300-W train photos (:mod:`train.labeled`), targets: the 68 hand-annotated landmarks and the
                 model fit (identity, expression, pose);
* ``profiled`` - the same photos turned to 25-90 deg of yaw and re-rendered (:mod:`train.profiling`), targets:
                 the re-rendered fit and its landmarks (exact by construction);
* ``ytf``      - YouTube Faces video frames (coarser labels: landmark weight :data:`YTF_LANDMARK_WEIGHT`);
* ``synth``    - :mod:`rtface.synth` faces with exact parameters.

Framing is the pipeline's: the five template points (``rtface.crop``) come either from the detector's five
points (cached with the fits; what the first frame of a stream sees) or from the 68 landmarks (what the
tracker's next crop is made of), then a similarity jitter a little wider than both produce, sometimes a large
in-plane rotation. Then a horizontal flip (landmarks mirrored with :data:`rtface.contour.MIRROR_68`, the pose
mirrored, the _L/_R blendshapes swapped, vertex ids mapped to their mirror vertices), colour, grey, blur, noise,
JPEG and occluders. Every target is expressed in crop pixels. Landmark targets carry the model vertex of each
landmark after contour marching (``vertex_ids``), so the loss compares like with like on turned heads.

Batch ``k`` of a run with seed ``s`` depends only on ``(s, k)``; workers are spawned processes.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import multiprocessing as mp
import os

import numpy as np

MIX = {"300w": 0.40, "profiled": 0.22, "ytf": 0.18, "synth": 0.20}
YTF_LANDMARK_WEIGHT = 0.5
#: weight of the vertex term per source: the fit of a real face is a pseudo ground truth (its pose is good, its
#: depth is a prior), synthetic faces are exact
VERTEX_WEIGHT = {"300w": 0.5, "profiled": 0.5, "ytf": 0.25, "synth": 1.0}
SOURCES = tuple(MIX)

_S: dict = {}


def default_spec(scene: str = "face", copies: int = 2, yaw_ranges: tuple[tuple[float, float], ...] = ((25.0, 90.0),),
                 mix: dict[str, float] | None = None, vertex_weight: dict[str, float] | None = None) -> dict:
    """Cache files of the training data (built on first use): 300-W train with its profiled copies (``copies`` a
    face, |yaw| in ``yaw_ranges``, ``scene`` as :class:`train.profiling.Profiler`'s) and YouTube Faces, the
    fractions of the sources in a batch (``mix``, default :data:`MIX`) and changes to the vertex-term weights of
    :data:`VERTEX_WEIGHT`. The defaults are the mix and weights of every released run; the released net's last run
    had three whole-head copies (``scene="head"``, yaw 30-60, 60-90 and 45-90), the runs before it the defaults'."""
    from . import labeled
    from .profiling import load_profiled

    spec: dict = {}
    for key, given in (("mix", mix), ("vertex_weight", vertex_weight)):
        if given and set(given) - set(SOURCES):
            raise ValueError(f"{key} names unknown sources {sorted(set(given) - set(SOURCES))}; sources: {SOURCES}")
    if mix:
        spec["mix"] = {k: float(mix.get(k, 0.0)) for k in SOURCES}
    if vertex_weight:
        spec["vertex_weight"] = {**VERTEX_WEIGHT, **{k: float(v) for k, v in vertex_weight.items()}}
    w300 = labeled.load("300w-train")
    prof = load_profiled(w300, copies=copies, yaw_ranges=yaw_ranges, scene=scene)
    return {"300w": w300.path, "ytf": labeled.load("ytf").path, "profiled": str(prof["path"]), **spec}


def _state(spec: dict[str, str | None] | None = None):
    """Per-process data: the face model and the labelled sets named by ``spec`` (cache files; None = unused)."""
    if spec is not None and _S.get("spec") != spec:
        _S.clear()
    if not _S:
        from rtface.contour import Contour
        from rtface.face_model import FaceModel
        from rtface.views import expression_mirror

        from .labeled import Labeled
        from .profiling import _mirror_index, read_profiled

        spec = spec or default_spec()
        model = FaceModel.load()
        _S["spec"] = spec
        _S["model"] = model
        _S["contour"] = Contour(model)
        _S["mirror_vertex"] = _mirror_index(model)
        _S["exp_swap"] = expression_mirror(model.expression_names)
        _S["300w"] = Labeled.from_file(spec["300w"])
        _S["ytf"] = Labeled.from_file(spec["ytf"]) if spec.get("ytf") else None
        _S["profiled"] = read_profiled(spec["profiled"]) if spec.get("profiled") else None
        mix = {k: v for k, v in (spec.get("mix") or MIX).items() if v > 0 and (k == "synth" or _S.get(k) is not None)}
        total = sum(mix.values())
        _S["mix"] = {k: v / total for k, v in mix.items()}
    return _S


def _read(source: str, i: int) -> tuple[np.ndarray, dict]:
    """Image and targets (image px) of face ``i`` of a source."""
    import cv2

    st = _S
    if source == "profiled":
        p = st["profiled"]
        j = int(p["source"][i])
        blob = p["jpeg"][p["offsets"][i]:p["offsets"][i + 1]]
        img = cv2.imdecode(blob, cv2.IMREAD_COLOR)
        lab = st["300w"]
        t = {"landmarks": p["landmarks"][i], "vertex_ids": p["vertex_ids"][i], "pose": p["pose"][i],
             "identity": lab.identity[j], "expression": lab.expression[j], "det_five": p["det_five"][i]}
        return img, t
    lab = st[source]
    img = cv2.imread(str(lab.paths[i]), cv2.IMREAD_COLOR)
    t = {"landmarks": lab.points[i], "vertex_ids": lab.vertex_ids[i], "pose": lab.pose[i],
         "identity": lab.identity[i], "expression": lab.expression[i], "det_five": lab.det_five[i]}
    return img, t


def _count(source: str) -> int:
    """Number of faces of a source."""
    return len(_S["profiled"]["source"]) if source == "profiled" else len(_S[source])


def jitter_transform(five: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Frame -> crop similarity from five points with the framing jitter of detection and tracking."""
    from rtface.camera import compose_affine
    from rtface.crop import crop_from_five

    a = crop_from_five(five, size)
    big_roll = rng.random() < 0.25
    ang = rng.uniform(-0.7, 0.7) if big_roll else rng.normal(0.0, 0.06)
    sc = float(np.exp(rng.normal(0.0, 0.07)))
    sh = rng.normal(0.0, 0.035 * size, 2)
    c, n = np.cos(ang) * sc, np.sin(ang) * sc
    centre = np.array([size / 2.0, size / 2.0])
    lin = np.array([[c, -n], [n, c]])
    j = np.concatenate([lin, (centre - lin @ centre + sh)[:, None]], axis=1)
    return compose_affine(j, a)


def appearance(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photometric augmentation of a BGR uint8 crop: contrast, brightness, white balance, saturation, gamma, grey,
    an occluder, blur, noise and JPEG, each with its own probability; returns a new crop."""
    import cv2

    s = img.shape[0]
    x = img.astype(np.float32)
    x = x * rng.uniform(0.6, 1.35) + rng.uniform(-30, 30)  # contrast / brightness
    x *= rng.uniform(0.85, 1.15, 3)  # white balance
    if rng.random() < 0.5:  # saturation
        g = x.mean(2, keepdims=True)
        x = g + (x - g) * rng.uniform(0.3, 1.4)
    x = np.clip(x, 0, 255)
    if rng.random() < 0.3:  # gamma
        x = 255.0 * (x / 255.0) ** rng.uniform(0.6, 1.6)
    if rng.random() < 0.1:
        x[:] = x.mean(2, keepdims=True)
    if rng.random() < 0.2:  # occluder: a rectangle or ellipse of flat or noisy colour over part of the face
        cx, cy = rng.uniform(0.2, 0.8, 2) * s
        w, h = rng.uniform(0.1, 0.45, 2) * s
        m = np.zeros((s, s), np.uint8)
        if rng.random() < 0.5:
            cv2.ellipse(m, (int(cx), int(cy)), (int(w / 2), int(h / 2)), rng.uniform(0, 180), 0, 360, 1, -1)
        else:
            cv2.rectangle(m, (int(cx - w / 2), int(cy - h / 2)), (int(cx + w / 2), int(cy + h / 2)), 1, -1)
        fill = rng.uniform(0, 255, 3) + rng.normal(0, rng.uniform(0, 40), (s, s, 3))
        x = np.where(m[..., None] > 0, fill, x)
    if rng.random() < 0.25:
        k = rng.uniform(0.5, 1.8)
        x = cv2.GaussianBlur(x, (0, 0), k)
    if rng.random() < 0.3:
        x = x + rng.normal(0, rng.uniform(2, 10), x.shape)
    out = np.clip(x, 0, 255).astype(np.uint8)
    if rng.random() < 0.35:
        ok, enc = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.uniform(25, 90))])
        out = cv2.imdecode(enc, cv2.IMREAD_COLOR)
    return out


def real_sample(source: str, i: int, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One augmented real crop with its targets in crop pixels (module docstring)."""
    from rtface.camera import Pose, apply_affine, warp_to_crop
    from rtface.contour import MIRROR_68
    from rtface.crop import five_from_68

    from rtface.views import mirror_pose

    img, t = _read(source, i)
    lm = t["landmarks"].astype(np.float64)
    pose = t["pose"].astype(np.float64)
    ids = t["vertex_ids"].copy()
    expr = t["expression"].copy()
    h, w = img.shape[:2]
    det = t["det_five"]
    if rng.random() < 0.5:  # mirror the photo and every target
        img = img[:, ::-1]
        lm = lm[MIRROR_68].copy()
        lm[:, 0] = w - lm[:, 0]
        pose = mirror_pose(pose, w)
        ids = _S["mirror_vertex"][ids[MIRROR_68]]
        expr = expr[_S["exp_swap"]]
        if np.isfinite(det).all():
            det = det[[1, 0, 2, 4, 3]].copy()
            det[:, 0] = w - det[:, 0]
    use_det = np.isfinite(det).all() and rng.random() < 0.5
    five = det.astype(np.float64) if use_det else five_from_68(lm)
    a = jitter_transform(five, size, rng)
    crop = appearance(warp_to_crop(np.ascontiguousarray(img), a, size), rng)
    return {"image": crop, "landmarks": apply_affine(a, lm).astype(np.float32), "vertex_ids": ids,
            "pose": Pose.from_vector(pose).transformed(a).to_vector(), "identity": t["identity"],
            "expression": expr.astype(np.float32)}


def make_batch(size: int, batch_size: int, seed: int, index: int, spec: dict | None = None) -> dict[str, np.ndarray]:
    """Training batch ``index`` (module docstring): ``image`` (B,3,S,S) RGB [0,1], ``landmarks`` (B,68,2),
    ``vertex_ids`` (B,68), ``identity``, ``expression``, ``pose`` (crop px), ``w_landmark``, ``w_vertex`` (B,)."""
    from rtface import synth
    from rtface.networks import preprocess

    st = _state(spec)
    rng = np.random.default_rng([int(seed), int(index), 68])
    kinds_all = list(st["mix"])
    src = [kinds_all[k] for k in rng.choice(len(kinds_all), size=batch_size, p=list(st["mix"].values()))]
    n_syn = sum(s == "synth" for s in src)
    samples, kinds = [], []
    for s in src:
        if s == "synth":
            continue
        samples.append(real_sample(s, int(rng.integers(_count(s))), size, rng))
        kinds.append(s)
    if n_syn:
        raw = synth.batch(st["model"], n_syn, seed=int(rng.integers(10**6)), size=size, detail=True)
        model, contour = st["model"], st["contour"]
        for j in range(n_syn):
            verts = model.vertices(raw["identity"][j], raw["expression"][j])
            ids = contour.select_pose(verts, raw["pose"][j])
            lm = raw["vertices"][j][ids, :2]
            samples.append({"image": raw["image"][j], "landmarks": lm.astype(np.float32), "vertex_ids": ids,
                            "pose": raw["pose"][j].astype(np.float32),
                            "identity": raw["identity"][j].astype(np.float32),
                            "expression": raw["expression"][j].astype(np.float32)})
            kinds.append("synth")
    out = {k: np.stack([s[k] for s in samples]) for k in ("landmarks", "vertex_ids", "pose", "identity",
                                                          "expression")}
    out["image"] = preprocess(np.stack([s["image"] for s in samples]))
    out["w_landmark"] = np.array([YTF_LANDMARK_WEIGHT if k == "ytf" else 1.0 for k in kinds], np.float32)
    vw = st["spec"].get("vertex_weight") or VERTEX_WEIGHT
    out["w_vertex"] = np.array([vw[k] for k in kinds], np.float32)
    out["is_synth"] = np.array([k == "synth" for k in kinds], np.float32)
    return out


def _worker_init(spec: dict | None) -> None:
    os.environ["NUMBA_NUM_THREADS"] = "1"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _state(spec)


class Stream:
    """Batches ``start, start+1, ...`` made by ``workers`` spawned processes (0: in this process) from the data
    named by ``spec`` (:func:`default_spec` when None)."""

    def __init__(self, size: int, batch_size: int, seed: int, start: int = 0, workers: int = 1, prefetch: int = 6,
                 spec: dict | None = None):
        spec = spec or default_spec()
        self.args = (int(size), int(batch_size), int(seed))
        self.spec = spec
        self.next_index = int(start)
        self._submitted = self.next_index
        self.prefetch = prefetch
        self._pending: collections.deque = collections.deque()
        self._pool = None
        if workers > 0:
            self._pool = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                                initargs=(spec,))

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._pool is None:
            out = make_batch(*self.args, self.next_index, self.spec)
        else:
            while len(self._pending) < self.prefetch:
                self._pending.append(self._pool.submit(make_batch, *self.args, self._submitted, self.spec))
                self._submitted += 1
            out = self._pending.popleft().result()
        self.next_index += 1
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


__all__ = ["MIX", "SOURCES", "Stream", "appearance", "default_spec", "jitter_transform", "make_batch", "real_sample"]
