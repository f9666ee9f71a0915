"""The benchmark entry point the lead's ``truckpilot bench`` calls (not a speed check: speed is
measured with ``python -m sim.tools.bench``)."""
from __future__ import annotations

from types import SimpleNamespace

import sim.tools.bench as bench
from sim.tools.bench import measure_env_steps_per_s


def test_measure_env_steps_per_s_times_only_the_measured_steps(monkeypatch):
    """A fake clock that advances 1 ms per reading: each timed env.step spans exactly 1 ms, so the rate
    is exactly 1000 steps/s when only the ``steps`` measured steps are timed (not the warm-up, not the
    expert), and anything else shows."""
    readings = []

    def fake_perf_counter():
        readings.append(len(readings) * 1e-3)
        return readings[-1]

    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=fake_perf_counter))
    rate = measure_env_steps_per_s(steps=30, width=64, height=48, warmup=5)
    assert len(readings) == 2 * 30  # start and end of each measured step
    assert rate == 1000.0
