"""``truckpilot eval --live`` on a real X server: the sim window judges its route itself, the agent
and the baseline drive it through mss and XTest, the expert is the sim's autopilot."""
from __future__ import annotations

import pytest

from agent.apps.scorecard import ScorecardConfig
from agent.apps.scorecard_live import format_live_table, run_live_eval
from perception.types import Perception

pytestmark = pytest.mark.x11


def straight_only(image) -> Perception:
    """A perceiver that always sees a straight road: the agent never steers, so it needs the
    expert on seed 0's curves (in-process: 2 interventions in 300 m)."""
    return Perception("straight", {"left": 0.0, "straight": 1.0, "right": 0.0})


def test_eval_live_judges_in_the_sim_window_with_the_scorecards_rules(xvfb_display, tmp_path):
    card = run_live_eval(straight_only, [0], [("day", "clear")], 300.0, config=ScorecardConfig(traffic_density=0.0),
                         workdir=str(tmp_path), progress=False)
    routes = {r["driver"]: r for r in card["routes"]}
    # the expert drives from ground truth in the sim window as in-process: the same route, step for step
    live, here = routes["expert"]["live"], routes["expert"]["in_process"]
    for key in ("steps", "distance_m", "steer_changes", "offset_sum_m", "interventions", "finished"):
        assert live[key] == pytest.approx(here[key]), key
    # the straight-only agent leaves its lane live too: the sim's expert takes over and hands back
    agent = card["live"]["agent"]
    assert agent["interventions"] >= 1 and card["in_process"]["agent"]["interventions"] >= 1
    assert agent["route_completion"] > 0.95  # the expert's rescues bring it to the end
    assert 0.0 < routes["agent"]["live"]["driver_distance_m"] < routes["agent"]["live"]["distance_m"]
    # the baseline's km are the metres it drove itself on its one live route (not the expert's rescues)
    baseline = routes["baseline"]["live"]
    assert card["live"]["baseline"]["km_driven"] == pytest.approx(baseline["driver_distance_m"] / 1000, abs=5e-5)
    assert 0.0 < baseline["driver_distance_m"] < baseline["distance_m"], baseline
    lat = {x["driver"]: x for x in card["latency"]}
    assert set(lat) == {"agent", "baseline"}  # the expert sends no keys
    for x in lat.values():
        assert 0 < x["frame_age_p50_ms"] <= x["frame_to_key_p50_ms"] < 150
        assert x["frame_to_key_p50_ms"] <= x["frame_to_key_p95_ms"]
        assert x["keys_late_share"] < 0.2 and 0.8 < x["realtime_ratio"] < 1.2
    table = format_live_table(card)
    assert "agent/live" in table and "baseline/in-proc" in table and "frame->key" in table
