"""training.lr_finder.suggest_lr on synthetic curves: the rule its docstring states, pinned point by point."""
from __future__ import annotations

import numpy as np
import pytest

from training.lr_finder import suggest_lr


def _curve(drops: dict[int, float], n: int, floor_at: int, base_drop: float = 0.01, rise: float = 0.2):
    """n losses starting at 10: falling ``base_drop`` a step (``drops[i]`` from point i to i+1 instead)
    up to ``floor_at``, rising ``rise`` a step after it."""
    losses = [10.0]
    for i in range(n - 1):
        losses.append(losses[-1] - drops.get(i, base_drop) if i < floor_at else losses[-1] + rise)
    return losses


LRS_40 = list(np.logspace(-6, 0, 40))  # 40 rates: skip = min(10, 40 // 10) = 4


def test_the_steepest_fall_before_the_minimum_not_the_minimum_nor_the_skipped_points():
    # a steep fall from point 14 to 16 (central differences: 0.30, 0.45, 0.25 per step at 14, 15, 16),
    # the minimum at 30, a steeper fall still among the 4 skipped points, and a blow-up after 30
    losses = _curve({1: 2.0, 13: 0.1, 14: 0.5, 15: 0.4, 16: 0.1}, 40, floor_at=30)
    assert int(np.argmin(losses)) == 30
    assert suggest_lr(LRS_40, losses) == LRS_40[15]  # the steepest descent ...
    assert LRS_40[15] < LRS_40[30] / 10  # ... neither the rate of minimum loss nor a tenth of it


def test_a_minimum_too_close_to_the_start_gives_a_tenth_of_its_rate():
    lrs = [1e-6, 1e-4, 1e-2, 1.0, 100.0]  # 5 points: none skipped
    assert suggest_lr(lrs, [3.0, 1.0, 2.0, 5.0, 9.0]) == pytest.approx(1e-5)  # min at 1: lrs[1] / 10
    assert suggest_lr(lrs, [1.0, 2.0, 3.0, 4.0, 5.0]) == 1e-6  # min at 0: a tenth would be below lrs[0]
    assert suggest_lr(LRS_40, _curve({}, 40, floor_at=5)) == pytest.approx(max(LRS_40[0], LRS_40[5] / 10))


def test_the_minimum_is_sought_after_the_skipped_points():
    # the lowest loss of all is at point 2 (skipped); after the skip the curve bottoms out at 39,
    # its steepest fall at 20: the suggestion is above the rate of the overall minimum
    losses = _curve({19: 0.3, 20: 0.3}, 40, floor_at=39)
    losses[2] = 0.0
    assert int(np.argmin(losses)) == 2
    assert suggest_lr(LRS_40, losses) == LRS_40[20] > LRS_40[int(np.argmin(losses))]


def test_short_curves():
    assert suggest_lr([], []) == 1e-3
    assert suggest_lr([1e-5, 1e-4], [2.0, 1.0]) == 1e-5
