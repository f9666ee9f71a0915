"""agent.io.timing.percentiles: the one p50 / p95 of the loop, bench and capture benchmark."""
from __future__ import annotations

import math

import pytest

from agent.io.timing import percentiles


def test_percentiles_by_hand():
    values = [float(v) for v in range(20, 0, -1)]  # 20 .. 1, unsorted on purpose
    p50, p95 = percentiles(values)
    assert p50 == pytest.approx(10.5)  # the median
    assert p95 == pytest.approx(19.05)  # rank 0.95 * 19 = 18.05 of 1..20: 19 + 0.05
    assert values[0] == 20.0  # not sorted in place
    assert percentiles([4.0, 1.0, 3.0], (0, 100, 50)) == (1.0, 4.0, 3.0)


def test_percentiles_of_one_and_of_none():
    assert percentiles([7.5]) == (7.5, 7.5)
    assert all(math.isnan(v) for v in percentiles([]))
