"""The closed-loop scorecard: the three drivers, interventions, the JSON of ``truckpilot eval``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from drive_kit import TinyDirectionNet, tiny_card

from agent.runtime.drivers import BaselineDecider, steer_state
from agent.runtime.loop import Decision, Observation
from agent.apps.scorecard import (
    RouteScore,
    ScorecardConfig,
    drive_route,
    format_table,
    parse_conditions,
    parse_seeds,
    run_config,
    run_scorecard,
    summarise,
)
from agent.types import Frame, KeysHeld
from perception.perceiver import Perceiver
from perception.types import DIRECTIONS, Perception

REPO = Path(__file__).resolve().parents[2]
ROW_KEYS = {"route_completion", "collisions", "interventions", "km_per_intervention", "lane_departures_per_km",
            "mean_abs_offset_m", "steer_changes_per_s"}


def scripted(direction: str):
    probs = {d: (0.9 if d == direction else 0.05) for d in DIRECTIONS}
    return lambda image: Perception(direction, probs, (), {})


class DriftLeft:
    """A decider that taps left every ``every`` ticks and holds ~12 m/s: it drifts off its lane."""

    name = "drift"

    def __init__(self, every: int = 3, brake: bool = False) -> None:
        self.every, self.brake = every, brake
        self.steps = self.resets = 0

    def reset(self) -> None:
        self.resets += 1

    def decide(self, observation):
        self.steps += 1
        if self.brake:
            return Decision(KeysHeld(brake=True))
        return Decision(KeysHeld(left=self.steps % self.every == 0, throttle=observation.info["speed"] < 12.0))


def still(index: int = 0) -> Observation:
    """An observation of a grey frame at sim time index / 15 s (the baseline only counts steps)."""
    return Observation(Frame(np.full((24, 32, 3), 128, np.uint8), 0.0, index), index / 15, speed_mps=0.0, info={})


def test_baseline_pulses_the_argmax_key_for_0_09_s_per_decision():
    drv = BaselineDecider(scripted("left"), dt=1 / 15)
    decisions = [drv.decide(still(i)) for i in range(6)]
    keys = [d.keys for d in decisions]
    assert drv.pulse_steps == 1  # 0.09 s rounds to one 1/15 s step
    assert [steer_state(k) for k in keys] == [0, -1, 0, -1, 0, -1]  # decide (keys up), pulse, decide, ...
    assert [d.perception is not None for d in decisions] == [True, False] * 3  # it perceives when it decides
    assert all(k.throttle and not k.brake for k in keys)
    drv = BaselineDecider(scripted("right"), dt=0.03)
    assert drv.pulse_steps == 3
    assert [steer_state(drv.decide(still()).keys) for _ in range(8)] == [0, 1, 1, 1, 0, 1, 1, 1]
    drv = BaselineDecider(scripted("straight"), dt=1 / 15)
    assert all(drv.decide(still()).keys == KeysHeld(throttle=True) for _ in range(5))


def test_interventions_are_counted_and_the_expert_hands_back():
    config = ScorecardConfig(route_m=400.0, traffic_density=0.0)
    driver = DriftLeft(every=3)
    score = drive_route(driver, seed=2, time_of_day="day", weather="clear", budget_steps=900, config=config)
    assert score.interventions >= 2, score  # drifts off, rescued, handed back, drifts off again
    assert driver.resets - 1 >= score.interventions - 1  # reset at the start, then at each handback
    assert score.collisions == 0 and score.finished and score.route_completion == 1.0
    assert score.distance_m > score.driver_distance_m > 0  # the expert's recovery distance is not the driver's
    row = summarise([score])
    assert row["km_per_intervention"] == pytest.approx(score.driver_distance_m / 1000 / score.interventions, abs=1e-3)
    assert row["km_per_intervention_lower_bound"] is False
    # a driver that only brakes never gets anywhere, and is not rescued for it
    stopped = drive_route(DriftLeft(brake=True), 2, "day", "clear", 150, config)
    assert stopped.distance_m == 0 and stopped.route_completion == 0 and stopped.interventions == 0


@pytest.fixture(scope="module")
def tiny_random_perceiver():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return Perceiver(TinyDirectionNet(), None, direction_card=tiny_card(), device="cpu")


def test_run_scorecard_rows_and_determinism(tiny_random_perceiver):
    config = ScorecardConfig(traffic_density=1.0)
    cards = [run_scorecard(tiny_random_perceiver, [1], [("day", "clear"), ("night", "rain")], 150.0, config=config,
                           progress=False) for _ in range(2)]
    card = cards[0]
    assert {"agent", "expert", "baseline"} <= set(card)
    for name in ("agent", "expert", "baseline"):
        assert ROW_KEYS <= set(card[name]), name
        # the row's completion is the mean over its own routes of distance / route length (capped at 1)
        routes = [r for r in card["routes"] if r["driver"] == name]
        assert card[name]["routes"] == len(routes) == 2
        assert card[name]["route_completion"] == pytest.approx(
            sum(min(1.0, r["distance_m"] / r["route_m"]) for r in routes) / 2, abs=1e-4)
    assert card["expert"]["route_completion"] == 1.0 and card["expert"]["collisions"] == 0
    assert card["expert"]["interventions"] == 0 and card["expert"]["km_per_intervention_lower_bound"] is True
    assert len(card["routes"]) == 6 and card["config"]["conditions"] == ["day/clear", "night/rain"]
    strip = lambda c: [{k: v for k, v in r.items() if k != "wall_s"} for r in c["routes"]]  # noqa: E731
    assert strip(cards[0]) == strip(cards[1]), "same seeds, same model: same scorecard"
    assert "route_completion" in format_table(card)


def test_parse_seeds_and_conditions():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4] and parse_seeds("7") == [7] and parse_seeds("1,3-4") == [1, 3, 4]
    for bad in ("4-1", "a-b", "", "1,,2"):
        with pytest.raises(ValueError, match="seeds"):
            parse_seeds(bad)
    assert parse_conditions("day/clear,night/rain") == [("day", "clear"), ("night", "rain")]
    with pytest.raises(ValueError, match="TIME/WEATHER"):
        parse_conditions("noon/clear")


def test_both_scorecards_take_their_config_and_refusals_from_run_config():
    from agent.apps.scorecard_live import run_live_eval

    base = ScorecardConfig(traffic_density=0.25, budget_factor=3.0)
    config = run_config(base, 250, ("expert",), None)
    assert config == ScorecardConfig(traffic_density=0.25, budget_factor=3.0, route_m=250.0)
    assert run_config(None, 400, ("agent",), object()) == ScorecardConfig(route_m=400.0)
    # the same refusals in-process and live, before any route is driven (or X server opened)
    for run in (run_scorecard, run_live_eval):
        with pytest.raises(ValueError, match=r"unknown driver\(s\) \['pilot'\]"):
            run(object(), [0], [("day", "clear")], 100.0, drivers=("agent", "pilot"), progress=False)
        with pytest.raises(ValueError, match="need a perceiver"):
            run(None, [0], [("day", "clear")], 100.0, drivers=("expert", "baseline"), progress=False)


def test_summarise_figures():
    r = RouteScore("agent", 0, "day", "clear", 1000.0, distance_m=800.0, driver_distance_m=700.0, finished=False,
                   collisions=0, interventions=2, lane_departures=1, offset_sum_m=30.0, driver_steps=100,
                   steer_changes=50, steps=120, budget_steps=120, dt=0.1, wall_s=1.0)
    row = summarise([r])
    assert row["route_completion"] == 0.8 and row["km_per_intervention"] == 0.35
    assert row["lane_departures_per_km"] == pytest.approx(1 / 0.7, abs=1e-3)
    assert row["mean_abs_offset_m"] == 0.3 and row["steer_changes_per_s"] == 5.0


def test_eval_cli_prints_json_with_three_rows(tmp_path):
    from perception.checkpoint import save_model
    from perception.config import DirectionConfig, TrunkConfig
    from perception.direction import DirectionNet

    torch.manual_seed(1)
    ckpt = save_model(tmp_path / "d.safetensors",
                      DirectionNet(DirectionConfig(input_size=(32, 32), trunk=TrunkConfig(weights="none"))))
    r = subprocess.run([sys.executable, "-m", "agent.apps.cli", "eval", "--model", str(ckpt), "--seeds", "3",
                        "--route-m", "60", "--json", "--no-progress", "--device", "cpu"], cwd=REPO,
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    card = json.loads(r.stdout)
    for name in ("agent", "expert", "baseline"):
        assert ROW_KEYS <= set(card[name])
    r = subprocess.run([sys.executable, "-m", "agent.apps.cli", "eval", "--model", str(ckpt), "--seeds", "9-2"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "seeds" in r.stderr
