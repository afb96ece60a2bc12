"""Results of the pipeline: :class:`FrameResult` (one per frame) holding :class:`FaceResult` (one per face).

Results are cheap to produce: the pipeline stores what it computed anyway (crop-aligned maps, coefficients,
crop-pixel vertices) and everything derived is computed on first access and cached:

* ``FaceResult.vertices`` (frame px), ``landmarks`` (300-W convention), ``landmarks3d`` (3D-consistent), ``pose``
  (frame coordinates);
* ``FrameResult.depth`` / ``FrameResult.mask``: every face's crop depth pasted into the frame, only over the
  face's bounding region, converted to frame pixels (``z_frame = z_crop / |frame_to_crop|``); where faces
  overlap the nearest (largest depth) wins; 0 and False where no face is.

Arrays computed on the GPU (CuPy) are copied to the host when a field is first read.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .camera import Pose, affine_scale, apply_affine, compose_affine, invert_affine


def _host(x: Any) -> Any:
    if x is None or isinstance(x, np.ndarray):
        return x
    if type(x).__module__.split(".")[0] == "cupy":
        return x.get()
    return np.asarray(x)


class _Lazy:
    """Descriptor: attribute stored as ``_name``; a CuPy value is copied to the host on first read."""

    def __set_name__(self, owner, name):
        self.name = "_" + name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        v = obj.__dict__.get(self.name)
        if v is not None and not isinstance(v, np.ndarray):
            v = _host(v)
            obj.__dict__[self.name] = v
        return v

    def __set__(self, obj, value):
        obj.__dict__[self.name] = value


#: :meth:`FaceResult.paste` scales a face up through a grid of ``PASTE_GRID_SCALE`` grid px per crop px where it
#: is drawn at ``PASTE_GRID_MIN`` frame px per crop px or more (see there).
PASTE_GRID_SCALE = 2.0
PASTE_GRID_MIN = 3.5


class FaceResult:
    """One reconstructed face.

    Attributes:
        box: (4,) float32 xyxy in frame pixels (detector box, carried along by tracking).
        score: detector score of the face's last detection.
        track_id: stable id of the face across frames of a stream.
        identity: (100,) float32 N(0,1)-scaled identity coefficients.
        expression: (53,) float32 blendshape weights in [0, 1].
        crop_pose: :class:`rtface.camera.Pose` in the face's crop (what CoarseNet estimated, after smoothing). "The
            crop" of a result is the face's **detail crop** (:mod:`rtface.detail`): the square of the frame the
            CoarseNet saw, sampled at the face's own resolution, ``size`` px a side (128 up to a cap).
        pose: the same pose in **frame** coordinates (``crop_pose.transformed(crop_to_frame)``).
        crop_vertices: (V, 3) float32 posed mesh in crop pixels.
        vertices: (V, 3) float32 posed mesh in frame pixels, z toward the camera (frame px).
        landmarks: (68, 2) float32 iBUG landmarks in frame pixels in the **300-W convention**: the model's landmark
            vertices with the jaw marched to the silhouette of a turned head (:mod:`rtface.contour`), as 300-W
            (LFPW, AFW, Helen, iBUG) annotates and dlib's 68-point predictor follows (the jaw on the visible
            outline of the face).
        landmarks3d: (68, 3) float32 the 68 **fixed** landmark vertices of the face model (``FaceModel.landmarks``)
            in frame pixels, z as :attr:`vertices`: the **3D-consistent convention** (each jaw point stays where
            the 3D jaw is, seen or hidden), as MediaPipe's face mesh, 3DDFA / 3DDFA_V2, LS3D-W and AFLW2000-3D
            define them. Equal to ``landmarks`` on the inner points 17..67; on the jaw (0..16) the two differ by
            how far the head is turned.
        depth, coarse_depth: (size, size) float32 crop-aligned depth in crop pixels (fine and 3DMM), 0 outside.
        mask: (size, size) bool, True where the face is rendered in the crop.
        crop_to_frame: (2, 3) float64 similarity crop -> frame; ``frame_to_crop`` its inverse.
        mm_per_pixel: millimetres per crop pixel (``10 / pose.scale`` of the crop pose; pose scale is px/cm).
    """

    depth = _Lazy()
    coarse_depth = _Lazy()
    mask = _Lazy()
    crop_vertices = _Lazy()

    def __init__(self, *, box, score, track_id, identity, expression, crop_pose: Pose, crop_vertices,
                 depth, coarse_depth, mask, frame_to_crop, landmark_index=None, landmarks=None,
                 landmark3d_index=None) -> None:
        self.box = np.asarray(box, np.float32)
        self.score = float(score)
        self.track_id = int(track_id)
        self.identity = np.asarray(identity, np.float32)
        self.expression = np.asarray(expression, np.float32)
        self.crop_pose = crop_pose
        self.crop_vertices = crop_vertices
        self.depth = depth
        self.coarse_depth = coarse_depth
        self.mask = mask
        self.frame_to_crop = np.asarray(frame_to_crop, np.float64)
        self.crop_to_frame = invert_affine(self.frame_to_crop)
        self._landmark_index = landmark_index
        self._landmarks = None if landmarks is None else np.asarray(landmarks, np.float32)
        self._landmark3d_index = None if landmark3d_index is None else np.asarray(landmark3d_index, np.int64)
        self._landmarks3d = None
        self._vertices = None
        self._pose = None

    @property
    def size(self) -> int:
        return int(self.depth.shape[-1])

    @property
    def mm_per_pixel(self) -> float:
        s = float(self.crop_pose.scale)
        return 10.0 / s if s > 0 else float("nan")

    @property
    def pose(self) -> Pose:
        if self._pose is None:
            self._pose = self.crop_pose.transformed(self.crop_to_frame)
        return self._pose

    def _to_frame(self, crop_points: np.ndarray) -> np.ndarray:
        """(P, 3) crop-pixel points -> float32 frame pixels (x, y through ``crop_to_frame``, z scaled with it)."""
        a = self.crop_to_frame  # elementwise: a (V, 2) @ (2, 2) matmul would go to multi-threaded BLAS
        v = np.asarray(crop_points, np.float32)
        out = np.empty_like(v)
        out[:, 0] = np.float32(a[0, 0]) * v[:, 0] + np.float32(a[0, 1]) * v[:, 1] + np.float32(a[0, 2])
        out[:, 1] = np.float32(a[1, 0]) * v[:, 0] + np.float32(a[1, 1]) * v[:, 1] + np.float32(a[1, 2])
        out[:, 2] = v[:, 2] * np.float32(affine_scale(a))
        return out

    @property
    def vertices(self) -> np.ndarray:
        if self._vertices is None:
            self._vertices = self._to_frame(self.crop_vertices)
        return self._vertices

    @property
    def landmarks(self) -> np.ndarray:
        if self._landmarks is None:
            lm = self.crop_vertices[self._landmark_index, :2]
            self._landmarks = apply_affine(self.crop_to_frame, lm)
        return self._landmarks

    @property
    def landmarks3d(self) -> np.ndarray:
        """(68, 3) float32 the fixed landmark vertices in frame pixels (3D-consistent convention; class docstring):
        exactly ``vertices[FaceModel.landmarks]``."""
        if self._landmarks3d is None:
            if self._landmark3d_index is None:
                raise ValueError("this FaceResult was built without landmark3d_index (the face model's 68 landmark "
                                 "vertex ids, FaceModel.landmarks); pass it to FaceResult to get landmarks3d")
            idx = self._landmark3d_index
            if self._vertices is not None:
                self._landmarks3d = self._vertices[idx]
            else:
                self._landmarks3d = self._to_frame(self.crop_vertices[idx])
        return self._landmarks3d

    def frame_region(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        """Integer bounds ``(x0, y0, x1, y1)`` of the face's mask in the frame (clipped), or None if empty."""
        m = self.mask
        ys, xs = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
        if len(ys) == 0:
            return None
        y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
        p = apply_affine(self.crop_to_frame, corners)
        fx0 = max(0, int(math.floor(p[:, 0].min())) - 1)
        fy0 = max(0, int(math.floor(p[:, 1].min())) - 1)
        fx1 = min(width, int(math.ceil(p[:, 0].max())) + 1)
        fy1 = min(height, int(math.ceil(p[:, 1].max())) + 1)
        if fx1 <= fx0 or fy1 <= fy0:
            return None
        return fx0, fy0, fx1, fy1

    def paste(self, height: int, width: int, which: str = "depth"):
        """This face's ``depth`` (or ``coarse_depth``) in frame pixels over its frame region.

        Returns ``(region, depth, mask)`` with ``region = (x0, y0, x1, y1)`` and arrays of the region's shape
        (depth 0 outside the mask), or None when the face is outside the frame. Depth is in frame pixels; linear
        interpolation normalised by the interpolated mask, so the face border does not blend with the 0
        background. A face drawn larger than its crop (:data:`PASTE_GRID_MIN` frame px per crop px or more,
        e.g. 7.6 at 1080p) is first resampled onto a frame-aligned grid of twice the crop's resolution and then
        scaled up with ``cv2.resize``, at a fifth of the cost of mapping every frame pixel back into the crop:
        the same surface to within a few hundredths of a crop pixel in position (a difference of 0.03 crop px
        on average, under half a crop px in depth for 99 % of the pixels at 1080p, most of it where the surface
        turns away near the silhouette).
        """
        import cv2

        region = self.frame_region(height, width)
        if region is None:
            return None
        x0, y0, x1, y1 = region
        src = self.depth if which == "depth" else self.coarse_depth
        mask = self.mask
        # One two-channel warp: (depth * mask, mask), both at crop size.
        dm = np.empty(mask.shape + (2,), np.float32)
        np.multiply(src, mask, out=dm[..., 0], casting="unsafe")
        dm[..., 1] = mask
        size = (x1 - x0, y1 - y0)
        to_frame = 1.0 / affine_scale(self.frame_to_crop)  # frame px per crop px
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        direct = to_frame < PASTE_GRID_MIN
        if direct:
            grid, step = size, (1.0, 1.0)
        else:
            n = PASTE_GRID_SCALE / to_frame  # grid px per frame px
            grid = (max(2, math.ceil(size[0] * n) + 1), max(2, math.ceil(size[1] * n) + 1))
            step = (size[0] / grid[0], size[1] / grid[1])
        # grid index -> frame px (grid pixel centres at (j + 0.5) * step from the region's corner) -> crop px,
        # in cv2's integer-centre convention on both sides (rtface centres are at +0.5).
        to_region = np.array([[step[0], 0, x0 + 0.5 * step[0]], [0, step[1], y0 + 0.5 * step[1]]])
        a = compose_affine(self.frame_to_crop, to_region)
        a[:, 2] -= 0.5
        w = cv2.warpAffine(dm, a, grid, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        num, den = w[..., 0], w[..., 1]
        if direct:
            inside = den >= 0.5
            depth = np.zeros(inside.shape, np.float32)
            np.divide(num, den, out=depth, where=inside)
        else:
            # normalise on the grid, carry the depth one grid pixel out (so the upscaled border does not blend
            # with the background), then scale depth and mask up separately
            ring_num, ring_den = cv2.blur(num, (3, 3)), cv2.blur(den, (3, 3))
            near = den > 1e-3
            dn = np.zeros(grid[::-1], np.float32)
            np.divide(ring_num, ring_den, out=dn, where=ring_den > 1e-3)
            np.divide(num, den, out=dn, where=near)
            inside = cv2.resize(den, size, interpolation=cv2.INTER_LINEAR) >= 0.5
            depth = cv2.resize(dn, size, interpolation=cv2.INTER_LINEAR)
            np.multiply(depth, inside, out=depth)
        depth *= np.float32(to_frame)
        return region, depth, inside

    def __repr__(self) -> str:
        b = ", ".join(f"{v:.0f}" for v in self.box)
        return f"<FaceResult track {self.track_id} box [{b}] score {self.score:.2f}>"


class FrameResult:
    """Everything rtface found in one frame.

    Attributes:
        index, timestamp: position in the source and time in seconds (see :mod:`rtface.sources`).
        image: (H, W, 3) uint8 BGR, the decoded frame.
        faces: list of :class:`FaceResult`, best detector score first.
        timings: dict stage -> milliseconds: wait, detect, crop, feedback, coarse, mesh, render, fine, other
            (these add up to ``total``, the pipeline thread's time on the frame; with ``wait`` and ``paste`` they
            add up to a stream's frame time, see :mod:`rtface.pipeline`), decode (the reader thread's time,
            overlapped), and paste once the frame depth has been read.
        detected: whether the detector ran on this frame (else faces were tracked).
        depth: (H, W) float32 depth of every face in frame pixels, 0 elsewhere (computed on first access).
        mask: (H, W) bool, True where a face is (computed on first access).
    """

    def __init__(self, index: int, timestamp: float, image: np.ndarray, faces: list[FaceResult],
                 timings: dict[str, float], detected: bool = True) -> None:
        self.index = int(index)
        self.timestamp = float(timestamp)
        self.image = image
        self.faces = faces
        self.timings = timings
        self.detected = bool(detected)
        self._depth = None
        self._mask = None
        self._coarse = None

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    def _paste(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        """Frame-size depth and mask: zeros (lazily mapped pages), each face written over its region only."""
        import time

        t0 = time.perf_counter()
        h, w = self.height, self.width
        depth = np.zeros((h, w), np.float32)
        mask = np.zeros((h, w), bool)
        for face in self.faces:
            r = face.paste(h, w, which)
            if r is None:
                continue
            (x0, y0, x1, y1), d, m = r
            sd, sm = depth[y0:y1, x0:x1], mask[y0:y1, x0:x1]
            if sm.any():  # overlaps an earlier face: the nearest (largest depth) wins
                m = m & (~sm | (d > sd))
                np.copyto(sd, d, where=m)
            else:  # nothing there yet, and d is 0 outside its mask
                sd[...] = d
            sm |= m
        self.timings.setdefault("paste", (time.perf_counter() - t0) * 1e3)
        return depth, mask

    @property
    def depth(self) -> np.ndarray:
        if self._depth is None:
            self._depth, self._mask = self._paste("depth")
        return self._depth

    @property
    def mask(self) -> np.ndarray:
        if self._mask is None:
            self._depth, self._mask = self._paste("depth")
        return self._mask

    @property
    def coarse_depth(self) -> np.ndarray:
        """(H, W) float32 3DMM (coarse) depth of every face in frame pixels, 0 elsewhere."""
        if self._coarse is None:
            self._coarse, _ = self._paste("coarse_depth")
        return self._coarse

    def __len__(self) -> int:
        return len(self.faces)

    def __repr__(self) -> str:
        return (f"<FrameResult {self.index} t={self.timestamp:.3f}s {self.width}x{self.height} "
                f"{len(self.faces)} face(s)>")


__all__ = ["FaceResult", "FrameResult"]
