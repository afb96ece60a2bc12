"""rtface batch --address on a Ray cluster of two nodes started with the stock `ray start` commands on this machine
(a head and one more node, one CPU each); the test starts the cluster and stops exactly its processes after."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import rtface
from tests.batch_clips import assert_same, cut, sequential
from tests.conftest import SHARED_ASSETS, shared

ray = pytest.importorskip("ray", reason="rtface batch's Ray tests need Ray: pip install 'rtface[batch]'")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster():
    shared("yunet/face_detection_yunet_2023mar.onnx")
    from rtface.batching.localcluster import LocalCluster

    c = LocalCluster(nodes=2, cpus_per_node=1, env={"RTFACE_ASSETS": str(SHARED_ASSETS), "RTFACE_OFFLINE": "1"})
    with c:
        yield c
    assert c.folder is None


def test_batch_on_a_two_node_cluster(cluster, tmp_path):
    clips = [cut("video/dafoe_1280x720.mp4", tmp_path / "a.mp4", 0, 16, (256, 144)),
             cut("video/hamilton_640x360.mp4", tmp_path / "b.mp4", 0, 12, (320, 180)),
             cut("video/dafoe_1280x720.mp4", tmp_path / "c.mp4", 40, 16, (256, 144))]
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "rtface.cli", "batch", *map(str, clips), "--out", str(out),
                        "--address", cluster.address, "--backend", "cpu"], env=cluster.env, cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"on Ray ({cluster.address}: 2 nodes, 2 CPUs; 2 tasks at a time)" in r.stdout
    assert "3 inputs: 3 done" in r.stdout
    for clip in clips:
        assert_same(out / f"{clip.stem}.npz", sequential(clip))
    assert len(rtface.load(out / "b.npz")) == 12
