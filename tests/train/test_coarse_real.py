"""Real-face CoarseNet training (train/realdata68.py, train/coarse_real.py) on a tiny labelled set."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def spec(tiny_set):
    return {"300w": tiny_set.path, "ytf": None, "profiled": None}


def test_flip_mirrors_landmarks_pose_and_vertices(tiny_set, spec, face_model):
    """A flipped sample's targets describe the flipped photo: its vertex ids projected with its pose land on its
    landmarks as well as the unflipped fit does."""
    from rtface.camera import project
    from train import realdata68

    st = realdata68._state(spec)
    errs = {True: [], False: []}
    for seed in range(12):
        rng = np.random.default_rng(seed)
        flip = rng.random() < 0.5  # the first draw of real_sample decides the flip
        s = realdata68.real_sample("300w", seed % len(tiny_set), 128, np.random.default_rng(seed))
        verts = face_model.vertices(s["identity"], s["expression"])
        lm = project(verts[s["vertex_ids"]], s["pose"])[:, :2]
        errs[flip].append(np.linalg.norm(lm - s["landmarks"], axis=1).mean())
        # image-left eye stays on the image's left after a flip (the order was mirrored)
        assert s["landmarks"][36, 0] < s["landmarks"][45, 0]
        assert s["image"].shape == (128, 128, 3) and s["image"].dtype == np.uint8
    assert errs[True] and errs[False]
    # crop px: the fit's own residual is ~1.5 % of the face (~1 px at S = 128); a broken mirror would be far off
    assert max(errs[True]) < 3.0 and max(errs[False]) < 3.0
    assert st["mix"].keys() == {"300w", "synth"}


def test_batch_layout(spec):
    from train import realdata68

    b = realdata68.make_batch(64, 6, seed=0, index=0, spec=spec)
    assert b["image"].shape == (6, 3, 64, 64) and b["image"].dtype == np.float32
    assert b["landmarks"].shape == (6, 68, 2) and b["vertex_ids"].shape == (6, 68)
    assert set(np.unique(b["w_landmark"])) <= {1.0}
    again = realdata68.make_batch(64, 6, seed=0, index=0, spec=spec)
    assert np.array_equal(b["image"], again["image"])  # batch k depends only on (seed, k)



def test_spec_mix_and_vertex_weights(spec):
    """A spec's own mix and vertex weights replace the defaults: only the sources it gives a share are drawn, and
    their vertex weight is the spec's."""
    from train import realdata68

    own = {**spec, "mix": {"300w": 1.0, "profiled": 0.0, "ytf": 0.0, "synth": 0.0},
           "vertex_weight": {**realdata68.VERTEX_WEIGHT, "300w": 0.75}}
    b = realdata68.make_batch(64, 5, seed=0, index=0, spec=own)
    assert not b["is_synth"].any() and np.allclose(b["w_vertex"], 0.75)
    assert realdata68._state(own)["mix"] == {"300w": 1.0}


def test_bad_spec_options():
    """Unknown source names in a mix or in vertex weights are refused before any data is read."""
    from train import coarse_real

    for opt in (["--mix", "300w=0.5,aflw=0.5"], ["--vertex-weights", "lp=1"]):
        args = coarse_real.parse_args(["--steps", "1", "--out", "x", *opt])
        with pytest.raises(ValueError, match="unknown sources"):
            coarse_real.data_spec(args)

def test_short_training_run_lowers_the_landmark_loss(spec, face_model):
    import torch

    from train import realdata68
    from train.coarse_real import Trainer, variant_config

    torch.manual_seed(0)
    cfg = variant_config("s")
    tr = Trainer(cfg, face_model, total_steps=40, lr=1e-3,
                 weights={"landmark": 1.0, "vertex": 1.0, "identity": 0.02, "expression": 0.2})
    batch = realdata68.make_batch(cfg.size, 8, seed=1, index=0, spec=spec)
    first = tr.step(batch)["landmark"]
    for _ in range(24):
        last = tr.step(batch)["landmark"]
    assert np.isfinite(last) and last < 0.7 * first
    state = tr.state({"test": True})
    assert state["phase"] == "coarse-real" and state["config"]["coarse"]["feedback"] is False


def test_grown_net_computes_the_same_function():
    import torch

    from train.coarse_real import grow, variant_config
    from train.nets import CoarseNet

    torch.manual_seed(0)
    small, big = variant_config("s", (1, 1, 1, 1)), variant_config("s", (2, 2, 2, 2))
    a = CoarseNet(small)
    with torch.no_grad():  # make every BatchNorm non-trivial, as after training
        for m in a.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.running_mean.uniform_(-0.1, 0.1)
    b = CoarseNet(big)
    b.load_state_dict(grow(a.state_dict(), small.coarse, b))
    x = torch.rand(2, 3, small.size, small.size)
    a.eval()
    b.eval()
    with torch.no_grad():
        for u, v in zip(a(x), b(x)):
            assert torch.allclose(u, v, atol=1e-5)
    assert sum(p.numel() for p in b.parameters()) > sum(p.numel() for p in a.parameters())


def test_weight_average_is_what_a_checkpoint_releases(spec, face_model):
    """--ema: the checkpoint's ``coarse`` is the running average (what export and the held-out check see),
    ``coarse_raw`` the trained weights; a resumed trainer gets both back."""
    import torch

    from train import realdata68
    from train.coarse_real import Trainer, variant_config

    torch.manual_seed(0)
    cfg = variant_config("s")
    w = {"landmark": 1.0, "vertex": 1.0, "identity": 0.02, "expression": 0.2}
    tr = Trainer(cfg, face_model, total_steps=10, lr=1e-3, weights=w, ema=0.5)
    batch = realdata68.make_batch(cfg.size, 4, seed=1, index=0, spec=spec)
    for _ in range(3):
        tr.step(batch)
    state = tr.state({})
    raw, avg = state["coarse_raw"], state["coarse"]
    assert raw.keys() == avg.keys()
    key = "fc.0.weight" if "fc.0.weight" in raw else next(k for k in raw if k.endswith("weight"))
    assert not torch.equal(raw[key], avg[key])
    again = Trainer(cfg, face_model, total_steps=10, lr=1e-3, weights=w, ema=0.5)
    again.load(state)
    assert torch.equal(again.coarse.state_dict()[key], raw[key])
    assert torch.equal(again.released.state_dict()[key], avg[key])
    plain = Trainer(cfg, face_model, total_steps=10, lr=1e-3, weights=w)
    assert plain.released is plain.coarse and "coarse_raw" not in plain.state({})


def test_init_from_the_shipped_onnx_computes_its_function():
    """coarse_from_onnx reads the shipped CoarseNet (weights stored as float16 behind Cast nodes) into a net that
    computes exactly the ONNX function in eval mode."""
    import onnxruntime as ort
    import torch

    from rtface.networks import weights_dir
    from train.coarse_real import coarse_from_onnx, variant_config

    path = weights_dir() / "coarse_s.onnx"
    x = np.random.default_rng(0).random((3, 3, 128, 128), dtype=np.float32)
    net = coarse_from_onnx(path, variant_config("s", (2, 2, 2, 2)), x).eval()
    with torch.no_grad():
        y = net(torch.from_numpy(x))
    y = (y if isinstance(y, torch.Tensor) else y[0]).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert np.abs(y - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())
