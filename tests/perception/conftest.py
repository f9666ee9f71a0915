"""Perception test fixtures (helpers in perception_testkit.py)."""
from __future__ import annotations

import pytest

from perception_testkit import SimSample, fit_overfit_model, sim_samples


@pytest.fixture(scope="session")
def sim_overfit_samples() -> list[SimSample]:
    """32 simulator frames with objects, all three directions (the overfit set)."""
    return sim_samples(32)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every perception test runs on one torch thread (tests/conftest.py)."""
    yield


@pytest.fixture(scope="session")
def overfit_direction(sim_overfit_samples):
    """(DirectionNet fitted to the 32 simulator frames at the default input size, x, directions, targets)."""
    return fit_overfit_model("direction", sim_overfit_samples)


@pytest.fixture(scope="session")
def overfit_detector(sim_overfit_samples):
    """(SSDNet fitted to the 32 simulator frames at the default input size, x, directions, targets)."""
    return fit_overfit_model("detector", sim_overfit_samples)
