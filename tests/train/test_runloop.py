"""train/runloop.py: the bookkeeping shared by the phase-1 and phase-2 loops."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from train.runloop import RunClock  # noqa: E402


def test_running_means_start_at_the_first_value_then_follow_slowly():
    clock = RunClock(lambda: None, ckpt_every_s=1e9)
    clock.update({"sfs": 1.0})
    assert clock.avg["sfs"] == 1.0
    clock.update({"sfs": 2.0, "new": 5.0})
    assert clock.avg["sfs"] == pytest.approx(1.1)
    assert clock.avg["new"] == 5.0


def test_checkpoint_when_due_and_stop_at_the_time_limit(capsys):
    saved = []
    clock = RunClock(lambda: saved.append(1), ckpt_every_s=1e9, max_minutes=0.0)
    assert clock.after_step(1) is False and saved == []  # not due, no limit
    clock.ckpt_every_s = 0.0
    assert clock.after_step(2) is False and saved == [1]  # due: saved
    clock.max_minutes = 1e-9
    assert clock.after_step(3) is True
    assert "stopping after" in capsys.readouterr().out
