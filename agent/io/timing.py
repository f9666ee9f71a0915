"""Percentiles of timing samples: the one p50 / p95 that the driving loop's stage statistics,
``truckpilot bench`` and the capture benchmark report.

Linear interpolation between the closest ranks (numpy's default ``np.percentile`` method), so
p50 is the median and p95 of n samples lies at rank 0.95 * (n - 1).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

#: the percentiles a timing summary reports
P50_P95: tuple[float, float] = (50.0, 95.0)


def percentiles(values: Sequence[float] | np.ndarray, qs: Sequence[float] = P50_P95) -> tuple[float, ...]:
    """The ``qs`` percentiles (0..100) of ``values`` (any unit; not modified), one float each,
    by linear interpolation; NaN each when ``values`` is empty."""
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size == 0:
        return tuple(float("nan") for _ in qs)
    return tuple(float(v) for v in np.percentile(a, list(qs)))
