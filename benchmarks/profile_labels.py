"""Hand-labelled real profiles: the turned faces of ``hamilton_640x360.mp4`` with the points that can be seen.

``hamilton_profile_labels.json`` (next to this module) holds 11 faces (5 frames of a singer in close-up profile,
3 audience members in two frames each, all at roughly 60-90 degrees of yaw), labelled by eye: the iBUG 68-point
indices that lie on or near the profile line, where the 300-W and the 3D-consistent conventions agree (chin 8,
nasion 27, nose tip 30, subnasale 33, upper lip 51, near mouth corner 54, lower lip 57; not every point on every
face), and the centre of the visible eye. These are the only real faces beyond 60 degrees with labels that the
assets give; too few to rank small differences, enough to see a fit that puts a profile at half its yaw (its
nose tip and lips then fall on the cheek).

Error of one face: the mean distance over its labelled points (the visible eye: the mean of that eye's six
landmarks) divided by :data:`BOX_PER_NASION_LIP` times the labelled nasion to upper-lip distance, which is the
68-point box normaliser sqrt(w*h) in the median over the 300-W test faces; so the figure reads as a box-NME in %.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LABELS = Path(__file__).with_name("hamilton_profile_labels.json")
#: median over the 554 300-W test faces of sqrt(w*h) of the 68-point box over the distance of points 27 and 51
BOX_PER_NASION_LIP = 2.27
#: the visible eye of a face looking towards the image's left (the subject's left eye)
NEAR_EYE = tuple(range(42, 48))


@dataclass(frozen=True)
class ProfileLabel:
    """One labelled face: ``frame`` index, ``who``, ``points`` {68-point index: (x, y)} and ``near_eye`` (x, y),
    frame pixels with pixel centres at integer + 0.5."""

    frame: int
    who: str
    points: dict[int, tuple[float, float]]
    near_eye: tuple[float, float]

    @property
    def scale(self) -> float:
        """The normaliser in px: :data:`BOX_PER_NASION_LIP` x |p27 - p51|."""
        return BOX_PER_NASION_LIP * float(np.hypot(*np.subtract(self.points[27], self.points[51])))

    def error(self, landmarks: np.ndarray) -> float:
        """Box-NME (a fraction) of 68 predicted points (68, >= 2) in frame pixels against this label."""
        lm = np.asarray(landmarks, np.float64)[:, :2]
        if lm.shape != (68, 2):
            raise ValueError(f"expected 68 landmarks (68, 2) or (68, 3), got shape {np.shape(landmarks)}")
        pred = [lm[k] for k in self.points] + [lm[list(NEAR_EYE)].mean(0)]
        true = [np.asarray(p, np.float64) for p in self.points.values()] + [np.asarray(self.near_eye, np.float64)]
        return float(np.mean(np.linalg.norm(np.subtract(pred, true), axis=1)) / self.scale)


def load(path: str | Path = LABELS) -> list[ProfileLabel]:
    """The labelled faces of ``path`` (default :data:`LABELS`)."""
    data = json.loads(Path(path).read_text())
    out = []
    for f in data["faces"]:
        points = {int(k): (float(v[0]), float(v[1])) for k, v in f["points"].items()}
        if 27 not in points or 51 not in points:
            raise ValueError(f"{path}: frame {f['frame']} ({f['who']}) lacks point 27 or 51, the normaliser's")
        out.append(ProfileLabel(int(f["frame"]), str(f["who"]), points, (float(f["near_eye"][0]),
                                                                          float(f["near_eye"][1]))))
    return out


def match(label: ProfileLabel, faces: list[np.ndarray]) -> int | None:
    """Index of the predicted face (each (68, >= 2) landmarks) that ``label`` belongs to: the one whose nose tip
    (point 30) is nearest the labelled one, if within one normaliser; None when no face is that near."""
    if not faces:
        return None
    d = [float(np.hypot(*(np.asarray(f, np.float64)[30, :2] - label.points[30]))) for f in faces]
    j = int(np.argmin(d))
    return j if d[j] < label.scale else None


def score(labels: list[ProfileLabel], predictions: dict[int, list[np.ndarray]]) -> dict:
    """Errors of ``predictions`` {frame: [landmarks (68, >= 2) of each face]} against ``labels``: ``nme_%`` (mean
    over the matched faces), ``faces``, ``matched``, and ``per_face`` [(frame, who, nme % or None)]."""
    per_face = []
    for lab in labels:
        faces = predictions.get(lab.frame, [])
        j = match(lab, faces)
        per_face.append((lab.frame, lab.who, None if j is None else 100 * lab.error(faces[j])))
    errs = [e for *_, e in per_face if e is not None]
    return {"faces": len(labels), "matched": len(errs), "nme_%": float(np.mean(errs)) if errs else None,
            "per_face": per_face}


def sheet(labels: list[ProfileLabel], images: dict[int, np.ndarray], fits: dict[str, dict[int, list]],
          side: int = 200) -> np.ndarray:
    """A picture of every label: one row per weights in ``fits`` ({name: {frame: faces}}), one tile per
    face (brightened), labels as magenta crosses, the matched fit's ``landmarks3d`` green (labelled indices yellow,
    the mean of the near eye a yellow ring), the face's error and the fit's yaw written on the tile."""
    import cv2

    rows = []
    for name, faces_of in fits.items():
        tiles = []
        for lab in labels:
            pts = np.array([*lab.points.values(), lab.near_eye])
            c, z = pts.mean(0), side / (1.5 * lab.scale)
            a = np.array([[z, 0, side / 2 - z * c[0]], [0, z, side / 2 - z * c[1]]])
            tile = cv2.warpAffine(images[lab.frame], a, (side, side), flags=cv2.INTER_LINEAR).astype(np.float32)
            tile = np.clip(tile * (230.0 / max(float(np.percentile(tile, 99)), 1.0)), 0, 255).astype(np.uint8)

            def px(p):
                return int(round(p[0] * z + a[0, 2])), int(round(p[1] * z + a[1, 2]))

            faces = faces_of.get(lab.frame, [])
            j = match(lab, [f.landmarks3d for f in faces])
            text = f"{Path(name).name} {lab.frame}: no face"
            if j is not None:
                f = faces[j]
                for k, p in enumerate(f.landmarks3d[:, :2]):
                    cv2.circle(tile, px(p), 2, (0, 255, 255) if k in lab.points else (0, 255, 0), -1)
                cv2.circle(tile, px(f.landmarks3d[list(NEAR_EYE), :2].mean(0)), 5, (0, 255, 255), 1)
                text = (f"{Path(name).name} {lab.frame}: {100 * lab.error(f.landmarks3d):.1f}% "
                        f"{np.rad2deg(f.pose.angles[1]):+.0f}deg")
            for p in pts:
                cv2.drawMarker(tile, px(p), (255, 0, 255), cv2.MARKER_CROSS, 11, 2)
            cv2.putText(tile, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
            tiles.append(tile)
        rows.append(np.hstack(tiles))
    return np.vstack(rows)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from benchmarks.largepose import hamilton_faces

    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_labels", description=__doc__.split("\n\n")[0])
    p.add_argument("weights", nargs="*", help="weights folders to compare (default: the shipped weights)")
    p.add_argument("--sheet", default=None, help="PNG of the labels with each weights' fit")
    a = p.parse_args(argv)
    labels = load()
    frames = {lab.frame for lab in labels}
    names = a.weights or ["shipped"]
    runs = {n: hamilton_faces(None if n == "shipped" else n, frames) for n in names}
    fits = {n: {i: faces for i, _, faces in run} for n, run in runs.items()}
    print("| weights | all | " + " | ".join(f"{lab.frame} {lab.who}" for lab in labels) + " |")
    print("| --- " * (len(labels) + 2) + "|")
    for n, faces_of in fits.items():
        s = score(labels, {i: [f.landmarks3d for f in fs] for i, fs in faces_of.items()})
        cells = ["-" if e is None else f"{e:.1f}" for *_, e in s["per_face"]]
        print(f"| {n} | {s['nme_%']:.2f} ({s['matched']}/{s['faces']}) | " + " | ".join(cells) + " |")
    if a.sheet:
        import cv2

        images = {i: img for i, img, _ in next(iter(runs.values()))}
        cv2.imwrite(a.sheet, sheet(labels, images, fits))
        print(f"wrote {a.sheet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
