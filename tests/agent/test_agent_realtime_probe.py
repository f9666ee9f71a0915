"""agent.tools.realtime_probe.join: the agent's ticks against the sim window's steps, on a made-up
timeline where each lateness, drop and duplicate is known."""
from __future__ import annotations

import pytest

from agent.tools.realtime_probe import AgentTick, join
from sim.steplog import StepRecord

P = 1.0 / 15  # the sim's step, s


def steps(n: int, keys: dict[int, str]) -> list[StepRecord]:
    """Step k reads its keys at k * P and shows its frame 10 ms later; its fingerprint is k + 1000."""
    out = [StepRecord(0, None, "----", 0.01, 1000, 0.0, 0.0)]
    for k in range(1, n + 1):
        out.append(StepRecord(k, k * P, keys.get(k, "--T-"), k * P + 0.01, 1000 + k, float(k), 0.0))
    return out


def tick(step: int, capture_after: float, send_after: float, keys: str = "--T-", repeated: bool = False,
         clock: float | None = None) -> AgentTick:
    shown = step * P + 0.01 if step else 0.01
    t = shown + capture_after
    return AgentTick(t, 1.0, shown + send_after, 1000 + step, repeated, keys, t if clock is None else clock)


def test_join_counts_late_keys_drops_duplicates_and_clock_error():
    ticks = []
    for k in range(0, 40):
        if k == 10:
            continue  # frame 10 never acted on: dropped
        if k == 20:
            ticks.append(tick(k, 0.015, 0.070))  # sent after step 21 read its keys: lands in 22, one late
            continue
        ticks.append(tick(k, 0.015, 0.020, keys="L-T-" if k == 5 else "--T-", clock=k * P))
        ticks.append(tick(k, 0.048, 0.049, repeated=True))  # the loop saw no new frame
        if k == 30:
            ticks.append(tick(k, 0.050, 0.052))  # the same frame decided twice
    sim = steps(41, keys={6: "L-T-"})
    report = join(sim, ticks, P)
    assert report.decisions == 40 and report.matched == 40 and report.unmatched == 0
    assert report.landing == {0: 39, 1: 1}  # frame 20's keys one step late; 30's duplicate still in time
    assert report.dropped == 1 and report.duplicated == 1
    assert report.decision_gap_steps[2] == 1 and report.decision_gap_steps[0] == 1
    assert report.capture_age_ms.p50 == pytest.approx(15.0)
    assert report.decision_age_ms.max == pytest.approx(70.0)
    assert report.keys_mismatch == 0.0  # step 6 drove with frame 5's decision, as in-process
    assert report.pulse_stretch == {0: 1}
    assert "late 1/40" in report.summary()


def test_join_sees_keys_the_sim_did_not_drive_with():
    ticks = [tick(k, 0.015, 0.020, keys="-RT-" if k == 8 else "--T-", clock=k * P) for k in range(0, 20)]
    report = join(steps(21, keys={}), ticks, P)  # the sim never saw the right key
    assert report.keys_mismatch > 0 and report.landing == {0: 20}


def test_join_refuses_empty_logs():
    with pytest.raises(ValueError):
        join(steps(5, {}), [], P)
