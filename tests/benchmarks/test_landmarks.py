"""The landmark benchmark's by-yaw machinery (benchmarks/landmarks.py): both conventions per pass, yaw buckets,
the large-yaw extra pass, the hamilton turned heads, and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import landmarks as bl


@pytest.fixture(scope="module")
def tiny_pose_set(tiny_set, face_model):
    from benchmarks.largepose import labels_3d

    labels = tiny_set.points.astype(np.float64)
    fives, missed = bl._framing(tiny_set.det_five, labels)
    return bl.PoseSet("tiny", [tiny_set.read_image(i) for i in range(len(tiny_set))], labels,
                      labels_3d(face_model, tiny_set.identity, tiny_set.expression, tiny_set.pose, labels),
                      np.rad2deg(tiny_set.pose[:, 1].astype(np.float64)), fives, missed, "the tiny set")


def test_by_yaw_buckets_and_balanced():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 100, (40, 68, 2))
    gt[:, 0] = [0, 0]
    gt[:, 1] = [100, 100]  # every box 100 x 100: the error in px is the NME in %
    yaw = np.repeat([10.0, 40.0, -75.0, 20.0], 10)
    err = np.repeat([1.0, 2.0, 4.0, 1.0], 10)
    pred = gt + err[:, None, None] * np.array([1.0, 0.0])
    missed = np.zeros(40, bool)
    missed[25] = True
    r = bl.by_yaw(pred, gt, yaw, missed)
    assert r["0-30"]["faces"] == 20 and np.isclose(r["0-30"]["box_nme"], 1.0)
    assert np.isclose(r["30-60"]["box_nme"], 2.0) and np.isclose(r["60-90"]["box_nme"], 4.0)
    assert r["60-90"]["missed"] == 1 and r["all"]["missed"] == 1
    assert np.isclose(r["balanced"], (1 + 2 + 4) / 3) and np.isclose(r["all"]["box_nme"], 2.0)
    few = bl.by_yaw(pred[:25], gt[:25], yaw[:25], missed[:25])  # 5 faces at 60-90: too few for "balanced"
    assert few["balanced"] is None and few["60-90"]["faces"] == 5


def test_passes_give_both_conventions(nets, face_model, tiny_pose_set):
    ps = tiny_pose_set
    r = bl.evaluate_images(lambda x: nets.coarse.run(x), face_model, nets.size, ps.images, ps.labels, ps.fives, 2)
    for k in (1, 2):
        lm, lm3d = r[f"pass{k}"], r[f"pass{k}_3d"]
        assert lm.shape == lm3d.shape == (len(ps.images), 68, 2) and r[f"pass{k}_yaw"].shape == (len(ps.images),)
        assert np.allclose(lm[:, 17:], lm3d[:, 17:])  # the conventions differ only on the jaw
    s = bl.convention_summary({"lm": r["pass2"], "lm3d": r["pass2_3d"]}, ps)
    assert set(s) == set(bl.CONVENTIONS)
    assert s["landmarks / 300-W labels"]["all"]["box_nme"] < 6.0  # frontal, well-labelled faces


def test_large_yaw_pass_runs_only_where_the_yaw_is_large(nets, face_model, tiny_pose_set, monkeypatch):
    from rtface.views import MAX_VIEWS

    ps, predict = tiny_pose_set, (lambda x: nets.coarse.run(x))
    base = bl.final_landmarks(predict, face_model, nets.size, ps, 2, (1, MAX_VIEWS))
    none = bl.final_landmarks(predict, face_model, nets.size, ps, 2, (1, MAX_VIEWS), "final")
    assert not none["gated"].any() and np.array_equal(none["lm"], base["lm"])  # frontal faces: no extra pass
    monkeypatch.setattr(bl, "LARGE_YAW_DEG", -1.0)  # every face gets it
    every = bl.final_landmarks(predict, face_model, nets.size, ps, 2, (1, MAX_VIEWS), "final")
    three = bl.evaluate_images(predict, face_model, nets.size, ps.images, ps.labels, ps.fives, 3,
                               views=(1, MAX_VIEWS, MAX_VIEWS))
    assert every["gated"].all() and np.allclose(every["lm"], three["pass3"]) and np.allclose(every["lm3d"],
                                                                                              three["pass3_3d"])
    recrop = bl.final_landmarks(predict, face_model, nets.size, ps, 2, (1, MAX_VIEWS), "recrop")
    three = bl.evaluate_images(predict, face_model, nets.size, ps.images, ps.labels, ps.fives, 3,
                               views=(1, 1, MAX_VIEWS))
    assert recrop["gated"].all() and np.allclose(recrop["lm"], three["pass3"])
    with pytest.raises(ValueError, match="large_yaw_pass"):
        bl.final_landmarks(predict, face_model, nets.size, ps, 2, (1, MAX_VIEWS), "always")


def test_hamilton_turned_heads(monkeypatch, tmp_path, face_model):
    from benchmarks import largepose
    from tests.conftest import shared

    shared(largepose.HAMILTON_VIDEO)
    monkeypatch.setattr(largepose, "HAMILTON_PROFILES", ((264, 264),))  # one audience frame, three labelled profiles
    r = bl.evaluate_hamilton(sheet=str(tmp_path / "sheet.png"))
    assert r["frames"] == 1 and r["faces"] >= 3 and r["detector_faces"] >= 1
    assert sum(r[k]["faces"] for k in ("0-30", "30-60", "60-90")) == r["faces"]
    lab = r["labelled"]  # the other frames' labels find no face in this one
    assert lab["faces"] == 11 and lab["matched"] == 3 and lab["nme_%"] < 10.0
    import cv2

    sheet = cv2.imread(r["sheet"])
    assert sheet is not None and sheet.shape[0] == 160 and sheet.shape[1] == 8 * 160


def test_bad_sets_option():
    with pytest.raises(SystemExit):
        bl.main(["--sets", "300w-test,aflw2000"])


def test_against_mediapipe_matches_faces_and_normalises_by_its_box():
    """A face whose landmarks3d equal MediaPipe's scores 0; one shifted by 5 % of MediaPipe's box size scores 5 %;
    a face far from every MediaPipe face is not matched; buckets follow rtface's yaw."""
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    ref = rng.uniform(100, 200, (68, 2))
    size = np.sqrt(np.ptp(ref[:, 0]) * np.ptp(ref[:, 1]))

    def face(points, yaw_deg):
        lm3 = np.concatenate([points, np.zeros((68, 1))], 1)
        return SimpleNamespace(landmarks3d=lm3, landmarks=points,
                               pose=SimpleNamespace(angles=np.deg2rad([0.0, yaw_deg, 0.0])))

    mp_points = np.full((2, 68, 2), np.nan)
    mp_points[0] = ref
    out = bl._against_mediapipe([face(ref, 10), face(ref + [0.05 * size, 0], -70), face(ref + 500, 0)], mp_points)
    assert len(out) == 2
    assert out[0][:2] == pytest.approx((0.0, 0.0), abs=1e-9) and out[1][:2] == pytest.approx((5.0, 5.0))
    s = bl._mediapipe_summary(out, {"points": mp_points[None], "version": "test"})
    assert s["faces"] == 2 and s["mediapipe_faces"] == 1 and s["3d_%"] == pytest.approx(2.5)
    assert s["by_yaw"]["0-30"]["faces"] == 1 and s["by_yaw"]["60-90"]["3d_%"] == pytest.approx(5.0)
    assert s["by_yaw"]["30-60"] == {"faces": 0, "3d_%": None}
