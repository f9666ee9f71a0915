"""sim.judge: the scorecard's intervention rules, and the sim window judging a route itself."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sim.judge import JudgeConfig, RouteJudge, Verdict
from sim.steplog import frame_print, keys_text, read_step_log

REPO = Path(__file__).resolve().parents[2]
DT = 1.0 / 15


def info(distance: float, offset: float = 0.0, events=()) -> dict:
    return {"distance": distance, "lateral_offset": offset, "events": list(events)}


def test_a_drift_past_the_grace_is_one_intervention_then_the_expert_hands_back():
    judge = RouteJudge(route_m=1000.0, dt=DT, config=JudgeConfig())
    grace = judge.grace_steps  # 15 steps at 1 s
    verdicts = [judge.step(False, True, i, info(i + 1, offset=1.6), False, False) for i in range(grace + 1)]
    assert verdicts[:-1] == [Verdict.GO_ON] * grace and verdicts[-1] is Verdict.TAKEOVER
    assert judge.interventions == 1 and not judge.in_control
    assert judge.driver_steps == grace + 1
    # the rescuer drives: not for the first recover_s even when settled, then back to the driver
    d = grace + 1
    out = [judge.step(False, False, d + i, info(d + i + 1, offset=0.1), False, False)
           for i in range(judge.min_recover - 1)]
    assert Verdict.HANDBACK not in out
    assert judge.step(False, False, 100, info(101, offset=0.1), False, False) is Verdict.HANDBACK
    assert judge.in_control and judge.driver_steps == grace + 1  # rescued steps are not the driver's


def test_a_lane_change_faster_than_the_grace_is_no_intervention_and_a_collision_ends():
    judge = RouteJudge(route_m=1000.0, dt=DT)
    for i in range(judge.grace_steps):
        assert judge.step(True, False, i, info(i + 1, offset=1.8, events=["lane_departure"] if i == 3 else []),
                          False, False) is Verdict.GO_ON
    assert judge.step(False, False, 20, info(21, offset=0.2), False, False) is Verdict.GO_ON
    assert judge.interventions == 0 and judge.lane_departures == 1
    assert judge.steer_changes == 1  # left ... then none
    assert judge.step(False, False, 21, info(22, events=["collision"]), True, False) is Verdict.END
    assert judge.collisions == 1 and not judge.finished


def test_off_road_is_an_intervention_at_once_and_the_route_end_finishes():
    judge = RouteJudge(route_m=100.0, dt=DT)
    assert judge.step(False, False, 0, info(1, events=["off_road"]), False, False) is Verdict.TAKEOVER
    judge = RouteJudge(route_m=100.0, dt=DT)
    assert judge.step(False, False, 99.5, info(100.01), True, False) is Verdict.END
    assert judge.finished


def test_standing_still_past_stall_s_is_an_intervention_and_the_expert_drives_on_past_stall_recover_m():
    config = JudgeConfig(stall_s=5.0, stall_recover_m=60.0)
    judge = RouteJudge(route_m=1000.0, dt=DT, config=config)
    stand = {"speed": 0.0}
    steps = int(5.0 / DT)  # 75 steps standing = 5.0 s: not yet more than stall_s
    assert all(judge.step(False, False, 100, {**info(100), **stand}, False, False) is Verdict.GO_ON
               for _ in range(steps))
    assert judge.step(False, False, 100, {**info(100), **stand}, False, False) is Verdict.TAKEOVER
    assert judge.interventions == 1 and not judge.in_control
    # settled in a lane, but only 30 m on: the expert keeps driving (round what held the truck)
    for d in range(101, 131):
        assert judge.step(False, False, d - 1, {**info(d, offset=0.1), "speed": 8.0}, False, False) is Verdict.GO_ON
    verdicts = [judge.step(False, False, d - 1, {**info(d, offset=0.1), "speed": 8.0}, False, False)
                for d in range(131, 170)]
    assert verdicts.index(Verdict.HANDBACK) == 160 - 131  # 60 m past where it took over (at 100 m)
    assert judge.in_control and judge.interventions == 1
    # slow but moving is not standing; and without stall_s nobody counts standing at all
    for _ in range(200):
        judge.step(False, False, 170, {**info(170.1), "speed": 0.6}, False, False)
    assert judge.interventions == 1
    off = RouteJudge(route_m=1000.0, dt=DT)
    for _ in range(300):
        off.step(False, False, 10, info(10), False, False)  # no "speed" needed when the rule is off
    assert off.interventions == 0 and off.in_control


def test_the_sim_window_judges_its_route_and_logs_every_step(tmp_path):
    """``python -m sim --autopilot --judge``: the expert drives 150 m; the summary holds the
    judge's counts; the step log has one line per step with the frame's fingerprint."""
    steps, summary = tmp_path / "steps.jsonl", tmp_path / "summary.json"
    out = subprocess.run([sys.executable, "-m", "sim", "--autopilot", "--judge", "--route-m", "150", "--fps", "1000",
                          "--seed", "2", "--traffic", "0", "--size", "160x120", "--step-log", str(steps),
                          "--summary", str(summary)], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "SDL_VIDEODRIVER": "dummy"})
    assert out.returncode == 0, out.stderr[-2000:]
    s = json.loads(summary.read_text())
    judged = s["judge"]
    assert judged["finished"] and judged["distance_m"] >= 150 and judged["collisions"] == 0
    assert judged["steps"] == s["steps"] and s["quit"] == "route over"
    records = read_step_log(steps)
    assert [r.step for r in records] == list(range(s["steps"] + 1))
    assert records[0].t_keys is None and all(r.t_keys <= r.t_shown for r in records[1:])
    assert sum("T" in r.keys for r in records[1:50]) >= 20  # the expert's throttle, as the step drove
    assert records[-1].distance >= 150
    assert len({r.print for r in records}) > 0.9 * len(records)  # the picture changes as the truck moves


def test_frame_print_and_keys_text():
    import numpy as np

    a = np.zeros((240, 320, 3), np.uint8)
    b = a.copy()
    b[8, 8, 1] = 1  # on the sampling grid
    c = a.copy()
    c[9, 9, 0] = 1  # off it
    assert frame_print(a) != frame_print(b) and frame_print(a) == frame_print(c)
    assert keys_text(True, False, True, False) == "L-T-"


def test_steer_reversals_count_the_wheel_turning_back_by_the_gap_keys_or_not():
    judge = RouteJudge(route_m=1000.0, dt=DT, config=JudgeConfig(reversal_gap=0.02))
    # the wheel: up to 0.3, back to 0.1 (a reversal), a wobble of 0.01 (below the gap: none),
    # down to -0.2, then up to 0.0 (a second reversal)
    wheel = [0.0, 0.1, 0.2, 0.3, 0.2, 0.1, 0.11, 0.1, 0.0, -0.1, -0.2, -0.1, 0.0]
    for i, w in enumerate(wheel):
        judge.step(False, False, i, {**info(i + 1), "steer": w}, False, False)
    assert judge.steer_reversals == 2
    assert judge.steer_changes == 0  # no key ever changed: the key count misses an analog wheel
    assert judge.to_dict()["steer_reversals"] == 2


def test_a_rescue_that_cannot_move_the_truck_ends_the_route_stuck_with_one_intervention():
    """Standing behind a broken-down vehicle with no room to pull out (the sim's truck cannot
    reverse), the expert stands too: at the rescue's time limit the route ends stuck, instead of
    handing back and counting the same standstill again every stall_s."""
    config = JudgeConfig(stall_s=5.0, stall_max_recover_s=40.0, stuck_m=2.0)
    judge = RouteJudge(route_m=1000.0, dt=DT, config=config)
    stand = {**info(100), "speed": 0.0}
    verdicts = [judge.step(False, False, 100, stand, False, False) for _ in range(int(5.0 / DT) + 1)]
    assert verdicts[-1] is Verdict.TAKEOVER
    # the expert creeps 1 m in 40 s: less than stuck_m
    out = [judge.step(False, False, 100 + i / 600, {**info(100 + (i + 1) / 600), "speed": 0.0}, False, False)
           for i in range(int(40.0 / DT))]
    assert out[-1] is Verdict.END and Verdict.HANDBACK not in out
    assert judge.stuck and judge.interventions == 1 and judge.to_dict()["stuck"] is True
    assert not judge.finished and judge.collisions == 0


def test_a_rescue_that_moved_the_truck_hands_back_at_its_time_limit():
    """Unsettled at max_recover_s but moving (the truck was carried 6 s along the road): the
    driver gets it back as before; only a rescue that went nowhere is stuck."""
    judge = RouteJudge(route_m=1000.0, dt=DT)
    assert judge.step(False, False, 0, info(1, events=["off_road"]), False, False) is Verdict.TAKEOVER
    out = [judge.step(False, False, 1 + i, info(2 + i, offset=1.0), False, False)
           for i in range(judge.max_recover)]
    assert out[-1] is Verdict.HANDBACK and not judge.stuck and judge.in_control
    judge = RouteJudge(route_m=1000.0, dt=DT)  # the same rescue standing still: stuck
    assert judge.step(False, False, 0, info(1, events=["oncoming_lane"]), False, False) is Verdict.TAKEOVER
    out = [judge.step(False, False, 1, info(1, offset=1.0, events=["oncoming_lane"]), False, False)
           for i in range(judge.max_recover)]
    assert out[-1] is Verdict.END and Verdict.HANDBACK not in out and judge.stuck and judge.interventions == 1
