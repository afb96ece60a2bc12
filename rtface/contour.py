"""Landmark marching: which model vertex each of the 68 iBUG landmarks is, for a given pose.

A 2D annotation puts the 17 jaw landmarks on the visible outline of the face. For a frontal face that is a fixed
vertex of the face model, but for a turned head the outline on the side turned away from the camera moves toward
the nose (the silhouette), while the side turned toward it keeps its jaw line. :class:`Contour` implements this
"landmark marching" (as in 3DDFA and eos) by a geometric rule: for jaw landmark ``k`` (not the chin) the
candidates are the face-area vertices of the mean face in a horizontal band of ``BAND_CM`` around the
landmark's own vertex, on its side of the face, between that vertex and the midline, and not behind it; under a
pose the selected vertex is the candidate that projects farthest outward (smallest image x on the image's left,
largest on the right). On the near side that is the fixed jaw vertex itself.

Used by the model fits of the training data (``train/landmark_fit.py``), the training loss and the pipeline's
``face.landmarks``, so all three agree. NumPy only.
"""

from __future__ import annotations

import numpy as np

from .camera import project

#: iBUG-68 index of each landmark's mirror image (left/right swapped), for horizontal flips.
MIRROR_68 = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nostrils
    + [45, 44, 43, 42, 47, 46]  # right eye <- left eye
    + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48]  # outer lips
    + [59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60]  # inner lips
    + [67, 66, 65]
)
JAW = np.arange(17)
CHIN = 8
#: Half-height (cm) of the horizontal band of candidate silhouette vertices around each jaw landmark.
BAND_CM = 0.45


class Contour:
    """Landmark marching for the 17 jaw landmarks of a face model (module docstring)."""

    def __init__(self, model):
        mean = np.asarray(model.mean, dtype=np.float64)
        self.landmarks = np.asarray(model.landmarks, dtype=np.int64)
        cands = []
        for k in JAW:
            v = self.landmarks[k]
            if k == CHIN:
                cands.append(np.array([v]))
                continue
            x, y, z = mean[v]
            side = np.sign(x)
            sel = ((np.abs(mean[:, 1] - y) < BAND_CM) & (side * mean[:, 0] >= 0.0)
                   & (side * mean[:, 0] <= side * x + 1e-6) & (mean[:, 2] >= z - 1e-6))
            ids = np.flatnonzero(sel)
            cands.append(np.union1d(ids, [v]))
        self.candidates = cands
        self.sides = np.array([np.sign(mean[self.landmarks[k], 0]) for k in JAW])
        #: every vertex any landmark can use (fixed landmarks and all contour candidates), sorted
        self.vertex_set = np.unique(np.concatenate([self.landmarks] + cands))
        self._local_candidates = [np.searchsorted(self.vertex_set, c) for c in cands]
        vs = self.vertex_set
        self._mean_vs = mean[vs]
        self._basis_vs = np.concatenate([np.asarray(model.id_basis)[:, vs], np.asarray(model.exp_basis)[:, vs]], 0)
        fixed = np.searchsorted(vs, self.landmarks)
        self._mean_lm, self._basis_lm = self._mean_vs[fixed], np.ascontiguousarray(self._basis_vs[:, fixed])

    def select(self, projected_x: np.ndarray) -> np.ndarray:
        """68 vertex ids given the projected image x of the model vertices ``(V,)`` (or of ``vertex_set`` via
        :meth:`select_subset`): the fixed landmarks with the jaw re-selected on the silhouette."""
        out = self.landmarks.copy()
        for k, (c, side) in enumerate(zip(self.candidates, self.sides)):
            if len(c) > 1:
                out[k] = c[np.argmax(side * projected_x[c])]
        return out

    def select_pose(self, vertices_cm: np.ndarray, pose: np.ndarray) -> np.ndarray:
        """68 vertex ids for a mesh ``(V, 3)`` cm seen with pose vector ``(6,)``."""
        x = np.full(len(vertices_cm), np.nan)
        vs = self.vertex_set
        x[vs] = project(vertices_cm[vs], pose)[:, 0]
        return self.select(x)


    def project_landmarks(self, identity: np.ndarray, expression: np.ndarray, pose: np.ndarray,
                          fixed: bool = False) -> np.ndarray:
        """``(N, 68, 2)`` image landmarks (x, y px) of N parameter sets: identity (N, Ki), expression (N, Ke) and
        pose vectors (N, 6) in that image; only the landmark and contour vertices are computed. Jaw marched to
        the silhouette (300-W convention), or with ``fixed=True`` the fixed landmark vertices (3D-consistent
        convention, ``FaceResult.landmarks3d``; only those 68 vertices are computed, with no multi-threaded
        BLAS call, so a video frame can afford it beside the networks)."""
        coeffs = np.concatenate([np.asarray(identity, np.float64), np.asarray(expression, np.float64)], 1)
        if fixed:
            verts = self._mean_lm + np.einsum("nk,kvc->nvc", coeffs, self._basis_lm)  # (N, 68, 3)
            return project(verts, np.asarray(pose, np.float64))[..., :2].astype(np.float64)
        verts = self._mean_vs + np.tensordot(coeffs, self._basis_vs, 1)  # (N, n, 3)
        p = project(verts, np.asarray(pose, np.float64))
        ids = np.searchsorted(self.vertex_set, self.select_batch(p[..., 0]))
        return np.take_along_axis(p[..., :2], ids[..., None], axis=1).astype(np.float64)

    def select_batch(self, projected_x: np.ndarray) -> np.ndarray:
        """``(B, n)`` image x of the :attr:`vertex_set` vertices (in that order) -> ``(B, 68)`` vertex ids."""
        px = np.asarray(projected_x)
        out = np.broadcast_to(self.landmarks, (px.shape[0], 68)).copy()
        for k, (c, side) in enumerate(zip(self._local_candidates, self.sides)):
            if len(c) > 1:
                out[:, k] = self.candidates[k][np.argmax(side * px[:, c], axis=1)]
        return out


__all__ = ["BAND_CM", "Contour", "MIRROR_68"]
