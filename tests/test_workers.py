"""rtface.workers: ranges cover [0, n) exactly once, work runs on several threads, errors propagate."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from rtface.workers import cores, run_ranges, split_range


@pytest.mark.parametrize("n,parts", [(1, 2), (5, 2), (7, 3), (16, 16), (3, 8)])
def test_split_range_covers_once(n, parts):
    r = split_range(n, parts)
    assert len(r) == min(n, parts) and r[0][0] == 0 and r[-1][1] == n
    assert all(hi > lo for lo, hi in r) and all(a[1] == b[0] for a, b in zip(r[:-1], r[1:]))
    sizes = [hi - lo for lo, hi in r]
    assert max(sizes) - min(sizes) <= 1


def test_run_ranges_fills_everything_and_uses_threads():
    out = np.zeros(1000, np.int64)
    names = set()

    def fill(lo, hi):
        names.add(threading.current_thread().name)
        out[lo:hi] += 1

    run_ranges(fill, len(out))
    assert (out == 1).all()
    assert len(names) == min(cores(), 1000)
    run_ranges(fill, len(out), min_size=10_000)  # too little work to split: the caller alone
    assert (out == 2).all()


def test_run_ranges_propagates_errors():
    def boom(lo, hi):
        if lo > 0:
            raise ValueError("part failed")

    if cores() > 1:
        with pytest.raises(ValueError, match="part failed"):
            run_ranges(boom, 10)
