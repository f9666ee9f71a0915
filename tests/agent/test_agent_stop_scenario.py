"""``truckpilot scenario stopped-vehicle`` on the real simulator: with the simulator's own boxes as its
eyes the agent's controller stops short of the broken-down vehicle; blind, it drives into it."""
from __future__ import annotations

import math

import pytest

from agent.apps.stop_scenario import StopScenarioConfig, run_stop_scenario, summarise
from perception.types import Detection, Perception


class LabelPerceiver:
    """Perfect eyes on a lane keeper: each frame's boxes from the simulator's ground truth
    (``SimSource.info``), and a direction that steers back to the lane centre from the sim's lateral
    offset and heading error (the expert's own label would pull out and pass the stopped vehicle,
    and this scenario scores braking). Attach it with ``run_stop_scenario(on_start=...)``."""

    def __init__(self) -> None:
        self.source = None

    def attach(self, source) -> None:
        self.source = source

    def __call__(self, image) -> Perception:
        info = self.source.info
        error = info["lateral_offset"] + 4.0 * info["heading_error"]
        direction = "left" if error > 0.15 else "right" if error < -0.15 else "straight"
        probs = {d: float(d == direction) for d in ("left", "straight", "right")}
        detections = tuple(Detection(tuple(float(v) for v in box), label, 1.0)
                           for box, label in zip(info["boxes"], info["labels"]))
        return Perception(direction=direction, direction_probs=probs, detections=detections)


class BlindPerceiver(LabelPerceiver):
    """The same lane keeping, no boxes: it cannot see what to brake for."""

    def __call__(self, image) -> Perception:
        seen = super().__call__(image)
        return Perception(direction=seen.direction, direction_probs=seen.direction_probs)


CONFIG = StopScenarioConfig(route_m=500.0, timeout_s=60.0)  # straight road, the first vehicle 170-420 m in


@pytest.mark.parametrize("seed", [402, 404])
def test_with_the_simulators_boxes_the_agent_stops_short_of_the_stopped_vehicle(seed):
    eyes = LabelPerceiver()
    run = run_stop_scenario(eyes, seed, "day", "clear", CONFIG, on_start=eyes.attach)
    assert run.outcome == "stopped", run
    # it braked with the vehicle well ahead, at speed, and stood still before reaching it
    assert run.brake_gap_m is not None and run.brake_gap_m > 10.0 and run.brake_speed_mps > 5.0, run
    assert 0.0 < run.stop_gap_m < run.brake_gap_m and run.min_gap_m > 0.0, run
    summary = summarise([run])
    assert summary["stopped"] == 1 and summary["mean_stop_gap_m"] == run.stop_gap_m


def test_blind_the_agent_drives_into_it():
    eyes = BlindPerceiver()
    run = run_stop_scenario(eyes, 402, "day", "clear", CONFIG, on_start=eyes.attach)
    assert run.outcome == "collision" and run.stop_gap_m is None and run.brake_gap_m is None, run
    assert run.min_gap_m < 1.0 and math.isfinite(run.min_gap_m), run  # bumpers within a metre: it hit
    assert summarise([run])["collision"] == 1
