"""The README's picture: a portrait, its coarse depth and its fine depth rendered as shaded surfaces.

``python -m benchmarks.figure IMAGE [IMAGE ...] --out docs/portraits.png [--size 0] [--weights DIR]``

One row per image (a picture, or a video as ``clip.mp4@FRAME``): the face's detail crop (the square the
FineNet sees, at the face's own resolution, :mod:`rtface.detail`) | coarse depth (3DMM, shaded) | fine depth
(shaded) | fine - coarse (everything the FineNet adds, blue = into the skin, red = out, +-1 mm) | its part below
2 mm (the high-pass of the detail measure, :mod:`benchmarks.relief`; +-0.3 mm) | fine depth in colour. Tiles
are shown at the detail resolution (``--size 0``, the default) or scaled to ``--size`` px.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .relief import HIGHPASS_MM, gaussian_highpass


def detail_map(fine: np.ndarray, coarse: np.ndarray, mask: np.ndarray, mm_per_px: float,
               limit_mm: float = 1.0, highpass_mm: float | None = None) -> np.ndarray:
    """BGR picture of ``fine - coarse`` in mm (its high-pass below ``highpass_mm``, if given), clipped at
    +-``limit_mm`` (blue negative, red positive)."""
    d = np.where(mask, (fine - coarse) * mm_per_px, 0.0)
    if highpass_mm is not None:
        d = gaussian_highpass(d, mask, highpass_mm / mm_per_px)
    d = d / limit_mm
    d = np.clip(d, -1.0, 1.0)
    out = np.full(d.shape + (3,), 255, np.float32)
    out[..., 0] -= 255 * np.clip(d, 0, 1)  # positive: less blue, less green -> red
    out[..., 1] -= 255 * np.abs(d)
    out[..., 2] -= 255 * np.clip(-d, 0, 1)  # negative: less red -> blue
    out[~mask] = 0
    return out.astype(np.uint8)


def face_row(image: np.ndarray, size: int, pipeline) -> np.ndarray | None:
    import cv2

    from rtface.camera import warp_to_crop
    from rtface.viz import colorize_depth, shade_depth, side_by_side

    result = pipeline(image)
    if not result.faces:
        return None
    face = max(result.faces, key=lambda f: f.score)
    s = face.depth.shape[0]
    crop = warp_to_crop(image, face.frame_to_crop, s)
    tiles = [crop, shade_depth(face.coarse_depth, face.mask), shade_depth(face.depth, face.mask),
             detail_map(face.depth, face.coarse_depth, face.mask, face.mm_per_pixel, limit_mm=1.0),
             detail_map(face.depth, face.coarse_depth, face.mask, face.mm_per_pixel, limit_mm=0.3,
                        highpass_mm=HIGHPASS_MM),
             colorize_depth(face.depth, face.mask)]
    if size:
        tiles = [cv2.resize(t, (size, size), interpolation=cv2.INTER_AREA if size < s else cv2.INTER_LINEAR)
                 for t in tiles]
    labels = ["input crop", "coarse (3DMM)", "fine", "fine - coarse", f"< {HIGHPASS_MM:g} mm", "depth"]
    return side_by_side(*tiles, labels=labels)


def read_picture(path: str) -> np.ndarray | None:
    """A picture file, or frame N of a video given as ``clip.mp4@N``; None if unreadable."""
    import cv2

    if "@" in path and not Path(path).exists():
        import av

        from rtface.sources import av_frame_bgr

        video, _, n = path.rpartition("@")
        if not n.isdigit() or not Path(video).is_file():
            return None
        with av.open(video) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i == int(n):
                    return av_frame_bgr(frame)
        return None
    return cv2.imread(path, cv2.IMREAD_COLOR)


def main(argv: list[str] | None = None) -> int:
    import cv2

    from rtface.pipeline import Pipeline

    ap = argparse.ArgumentParser(prog="python -m benchmarks.figure", description=__doc__.split("\n")[0])
    ap.add_argument("images", nargs="+")
    ap.add_argument("--out", default="docs/portraits.png")
    ap.add_argument("--size", type=int, default=0, help="tile side in pixels (0: the face's detail resolution)")
    ap.add_argument("--weights", help="weights folder (default: the package's rtface/weights)")
    args = ap.parse_args(argv)
    pipe = Pipeline(args.weights, backend="cpu")
    rows = []
    size = args.size
    for path in args.images:
        image = read_picture(path)
        if image is None:
            print(f"error: cannot read {path} as an image", file=sys.stderr)
            return 2
        row = face_row(image, args.size, pipe)
        if row is None:
            print(f"no face found in {path}; skipped", file=sys.stderr)
            continue
        rows.append(row)
    if not rows:
        print("error: no face in any image", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    width = max(r.shape[1] for r in rows)  # rows at their faces' own resolutions: padded to the widest
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    cv2.imwrite(str(out), np.concatenate(rows, axis=0))
    print(f"wrote {out}")
    pipe.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
