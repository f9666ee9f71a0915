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


@pytest.mark.parametrize("size", [(320, 240), (640, 480)])
def test_the_controllers_range_from_a_box_bottom_is_the_simulators_distance(size):
    """The range rule's flat-road geometry (horizon, camera height, field of view) against the simulator's
    camera: the broken-down vehicle's ground-truth box bottom gives its distance within 10 % plus the
    camera's ~1.5 m set-back from the front bumper, from 40 m down to a standstill behind it."""
    import gymnasium

    import sim  # noqa: F401  (registers TruckSim-v0)
    from agent.apps.stop_scenario import _first_stopped_gap
    from agent.runtime.controller import ControllerConfig
    from sim.expert import Expert

    width, height = size
    config = ControllerConfig()
    env = gymnasium.make("TruckSim-v0", width=width, height=height, traffic_density=0.0, pedestrian_density=0.0,
                         route_length_m=800.0, stopped_per_km=4.0, road_curvature=0.0)
    try:
        env.reset(seed=404)
        world, expert, pairs = env.unwrapped.world, Expert(pass_stopped=False), []
        for _ in range(450):
            _, _, terminated, _, info = env.step(expert.act(env))
            assert not terminated
            gap, stopped = _first_stopped_gap(world), {v.uid for v in world.vehicles if v.stopped}
            pairs += [(gap, config.range_m(box[3], width, height)) for box, uid in zip(info["boxes"], info["object_ids"])
                      if uid in stopped and gap < 40.0]
    finally:
        env.close()
    assert len(pairs) > 100 and min(g for g, _ in pairs) < 8.0
    for gap, distance in pairs:
        assert gap + 0.5 < distance < 1.1 * gap + 2.5, (gap, distance)


def test_the_scenario_command_takes_controller_settings_and_names_a_bad_one(capsys):
    from agent.apps.stop_scenario import main

    assert main(["stopped-vehicle", "--set", "stop_gapp_m=3"]) == 2
    err = capsys.readouterr().err
    assert "--set 'stop_gapp_m=3'" in err and "stop_gap_m" in err  # the fields there are
    assert main(["stopped-vehicle", "--set", "range_brake=maybe"]) == 2
    assert "'maybe' is not a bool" in capsys.readouterr().err
