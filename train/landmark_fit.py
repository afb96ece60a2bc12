"""Fits of the face model to 68 annotated 2D landmarks (identity, expression, weak-perspective pose).

The fit minimises, over pose ``(R, s, t)``, identity ``a`` and expression ``b``::

    sum_k || x_k - (t + s * P R X_k(a, b)) ||^2 / d^2  +  lam_id ||a||^2  +  lam_exp ||b||^2,   0 <= b <= 1

with ``X_k`` the model vertex of landmark ``k`` (cm), ``P`` the image projection of :mod:`rtface.camera`
(x right, y down) and ``d`` the side of the landmarks' bounding box (so the priors do not depend on the
image's resolution). It alternates two exact sub-problems:

1. **pose** given the shape: the least-squares affine camera, projected onto the nearest scaled rotation (SVD),
   then a few Gauss-Newton steps on ``(angles, log s, t)``;
2. **shape** given the pose: one bounded linear least-squares problem in ``(a, b)`` (``scipy.optimize.lsq_linear``),
   identity free with its Tikhonov prior, expression weights bounded to [0, 1] (a clipped unconstrained solve is
   much worse: the blendshapes are far from orthogonal);

and re-selects the jaw-contour vertices between them (**landmark marching**, :class:`Contour`): a 2D annotation
puts landmarks 0..16 on the visible outline of the face, which for a turned head is not a fixed vertex but the
outermost point of the face at that height on the side turned away from the camera (the rule lives in
the runtime, :mod:`rtface.contour`, so the pipeline's landmarks follow it too).

Everything is NumPy/SciPy (no torch): fits are made once per labelled face by ``python -m train.fitcache`` and
cached. Units: landmarks in image pixels (rtface's convention, pixel centres at +0.5), model in cm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtface.camera import matrix_to_angles, project, rotation_matrix
from rtface.contour import MIRROR_68, Contour

@dataclass
class LandmarkFit:
    """A fit: ``identity`` (Ki,), ``expression`` (Ke,) in [0, 1], ``pose`` (6,) in the image's pixels,
    ``vertex_ids`` (68,) the model vertices of the landmarks after marching, ``residual`` mean point error
    in pixels and ``nme`` that error over sqrt(w*h) of the landmarks' box."""

    identity: np.ndarray
    expression: np.ndarray
    pose: np.ndarray
    vertex_ids: np.ndarray
    residual: float
    nme: float


def _pose_from_affine(x3: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Scaled-orthographic pose vector from 3D points (N,3) cm and their image points (N,2) px."""
    u = np.stack([pts[:, 0], -pts[:, 1]], 1)  # y up: a plain orthographic camera
    xm, um = x3.mean(0), u.mean(0)
    a = np.linalg.lstsq(x3 - xm, u - um, rcond=None)[0].T  # (2, 3)
    uu, sig, vt = np.linalg.svd(a, full_matrices=False)
    r2 = uu @ vt
    s = float(sig.mean())
    r = np.vstack([r2, np.cross(r2[0], r2[1])])
    t = um - s * r2 @ xm
    return np.array([*matrix_to_angles(r), s, t[0], -t[1]])


def _refine_pose(x3: np.ndarray, pts: np.ndarray, pose: np.ndarray, iters: int = 3) -> np.ndarray:
    """A few Gauss-Newton steps on (angles, log scale, translation) with a numerical Jacobian."""
    p = pose.astype(np.float64).copy()
    target = pts.reshape(-1)
    eps = np.array([1e-4, 1e-4, 1e-4, 1e-4, 1e-3, 1e-3])

    def f(q):
        qq = q.copy()
        qq[3] = np.exp(q[3])
        return project(x3, qq)[:, :2].reshape(-1).astype(np.float64)

    q = p.copy()
    q[3] = np.log(max(p[3], 1e-9))
    for _ in range(iters):
        r0 = f(q)
        jac = np.empty((len(r0), 6))
        for i in range(6):
            dq = q.copy()
            dq[i] += eps[i]
            jac[:, i] = (f(dq) - r0) / eps[i]
        step = np.linalg.lstsq(jac, target - r0, rcond=None)[0]
        q = q + step
        if np.abs(step).max() < 1e-6:
            break
    q[3] = np.exp(q[3])
    return q


class LandmarkFitter:
    """Fits the face model to 68 2D landmarks (module docstring). Thread-safe after construction.

    Args:
        model: a :class:`rtface.FaceModel`.
        num_identity: identity modes fitted (the rest stay 0).
        lam_identity, lam_expression: Tikhonov weights of the priors, in units of (landmark error / box side)^2
            per unit coefficient squared.
        iterations: alternations of pose, marching and shape.
    """

    def __init__(self, model, num_identity: int = 100, lam_identity: float = 2e-4, lam_expression: float = 2e-5,
                 iterations: int = 6):
        self.model = model
        self.contour = Contour(model)
        vs = self.contour.vertex_set
        self._index = {int(v): i for i, v in enumerate(vs)}
        self.vs = vs
        self.mean = model.mean[vs].astype(np.float64)
        self.ki = int(num_identity)
        self.id_basis = model.id_basis[: self.ki, vs].astype(np.float64)  # (Ki, n, 3)
        self.exp_basis = model.exp_basis[:, vs].astype(np.float64)  # (Ke, n, 3)
        self.ke = self.exp_basis.shape[0]
        self._flat = np.ascontiguousarray(np.concatenate([self.id_basis, self.exp_basis]).reshape(self.ki + self.ke, -1))
        self.lam_id = float(lam_identity)
        self.lam_exp = float(lam_expression)
        self.iterations = int(iterations)

    def _local(self, ids: np.ndarray) -> np.ndarray:
        return np.array([self._index[int(v)] for v in ids])

    def _shape(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.mean + (np.concatenate([a, b]) @ self._flat).reshape(-1, 3)

    def _solve_shape(self, amat: np.ndarray, rhs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``min ||amat (a, b) - rhs||^2 + lam_id ||a||^2 + lam_exp ||b||^2`` with ``0 <= b <= 1``.

        The identity is eliminated exactly (Schur complement of the normal equations); the remaining box-
        constrained problem in the expression weights is small (Ke x Ke) and solved by bounded least squares.
        """
        from scipy.optimize import lsq_linear

        ki = self.ki
        k = amat.T @ amat
        g = amat.T @ rhs
        k[np.arange(ki), np.arange(ki)] += self.lam_id
        k[np.arange(ki, k.shape[0]), np.arange(ki, k.shape[0])] += self.lam_exp
        kaa, kab, kbb = k[:ki, :ki], k[:ki, ki:], k[ki:, ki:]
        ga, gb = g[:ki], g[ki:]
        caa = np.linalg.cholesky(kaa)
        sa = np.linalg.solve(caa, np.column_stack([kab, ga]))  # L^-1 [Kab, ga]
        q = kbb - sa[:, :-1].T @ sa[:, :-1]
        qv = gb - sa[:, :-1].T @ sa[:, -1]
        lq = np.linalg.cholesky(q + 1e-12 * np.eye(len(q)))
        # min 1/2 b'Qb - qv'b  ==  min ||Lq' b - Lq^-1 qv||^2
        sol = lsq_linear(lq.T, np.linalg.solve(lq, qv), bounds=(0.0, 1.0), method="bvls", tol=1e-10)
        b = np.clip(sol.x, 0.0, 1.0)  # bvls may end a hair outside its bounds
        a = np.linalg.solve(kaa, ga - kab @ b)
        return a, b

    def fit(self, points: np.ndarray, weights: np.ndarray | None = None) -> LandmarkFit:
        """Fit to ``points`` (68, 2) image px; ``weights`` (68,) optional per-landmark weights (0 = ignore)."""
        pts = np.asarray(points, dtype=np.float64)
        if pts.shape != (68, 2) or not np.isfinite(pts).all():
            raise ValueError(f"expected 68 finite 2D landmarks, got shape {pts.shape}")
        w = np.ones(68) if weights is None else np.asarray(weights, dtype=np.float64)
        lo, hi = pts.min(0), pts.max(0)
        d = float(max(hi[0] - lo[0], hi[1] - lo[1]))
        if d <= 1e-6:
            raise ValueError("degenerate landmarks (all points coincide)")
        a = np.zeros(self.ki)
        b = np.zeros(self.ke)
        ids = self.contour.landmarks.copy()
        sw = np.sqrt(w)[:, None]
        pose = None
        for it in range(self.iterations):
            loc = self._local(ids)
            x3 = self._shape(a, b)[loc]
            pose = _pose_from_affine(x3, pts) if pose is None else pose
            pose = _refine_pose(x3, pts, pose)
            # marching on the current shape and pose
            shape_all = np.full((self.model.num_vertices, 3), np.nan)
            shape_all[self.vs] = self._shape(a, b)
            ids = self.contour.select_pose(shape_all, pose)
            loc = self._local(ids)
            # shape given pose: x = t + s * P R (mean + B c): linear in c = (a, b)
            r = rotation_matrix(pose[:3])
            s = pose[3]
            pr = s * np.stack([r[0], -r[1]])  # (2, 3): image x and y (down)
            t = pose[4:6]
            base = self.mean[loc] @ pr.T + t  # (68, 2)
            bid = np.einsum("knc,dc->nkd", self.id_basis[:, loc], pr)  # (68, Ki, 2)
            bex = np.einsum("knc,dc->nkd", self.exp_basis[:, loc], pr)  # (68, Ke, 2)
            amat = np.concatenate([bid, bex], axis=1).transpose(0, 2, 1).reshape(136, -1) / d
            amat = amat * np.repeat(sw[:, 0], 2)[:, None]
            rhs = ((pts - base) * sw).reshape(-1) / d
            a, b = self._solve_shape(amat, rhs)
        loc = self._local(ids)
        x3 = self._shape(a, b)[loc]
        pose = _refine_pose(x3, pts, pose)
        shape_all = np.full((self.model.num_vertices, 3), np.nan)
        shape_all[self.vs] = self._shape(a, b)
        ids = self.contour.select_pose(shape_all, pose)
        pred = project(self._shape(a, b)[self._local(ids)], pose)[:, :2]
        err = np.linalg.norm(pred - pts, axis=1)
        wh = np.sqrt(max(hi[0] - lo[0], 1e-6) * max(hi[1] - lo[1], 1e-6))
        return LandmarkFit(a.astype(np.float32), b.astype(np.float32), pose.astype(np.float32), ids,
                           float(err.mean()), float(err.mean() / wh))


__all__ = ["Contour", "LandmarkFit", "LandmarkFitter", "MIRROR_68"]
