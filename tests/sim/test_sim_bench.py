"""The benchmark entry point the lead's ``truckpilot bench`` calls (a smoke run,
not a speed check: speed is measured with ``python -m sim.tools.bench``)."""
from __future__ import annotations

from sim.tools.bench import measure_env_steps_per_s


def test_measure_env_steps_per_s_runs_and_reports_a_rate():
    rate = measure_env_steps_per_s(steps=30, width=64, height=48, warmup=5)
    assert isinstance(rate, float) and rate > 0
