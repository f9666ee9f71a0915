"""Closed loop in the built-in simulator: Controller + SimKeys drive from ground-truth
perception (one-hot direction from info["direction"], boxes from info["boxes"]), the
worst case for a bang-bang 3-class direction signal. No rendering window; rgb_array."""
from __future__ import annotations

import pytest

from agent.runtime.controller import Controller
from agent.io.keys import SimKeys
from perception.types import DIRECTIONS, Detection, Perception


def ground_truth_perception(info) -> Perception:
    probs = {name: float(name == info["direction"]) for name in DIRECTIONS}
    detections = tuple(Detection(tuple(map(float, box)), label, 1.0)
                       for box, label in zip(info["boxes"], info["labels"]))
    return Perception(info["direction"], probs, detections)


@pytest.mark.parametrize("seed", [1, 6])
def test_controller_drives_the_sim_without_incident(seed):
    from sim.config import SimConfig
    from sim.env import TruckSimEnv
    from sim.rollout import rollout

    env = TruckSimEnv(render_mode="rgb_array", config=SimConfig())
    controller, keys = Controller(), SimKeys()
    now, events = 0.0, []

    def drive(obs, info):
        action = controller.update(ground_truth_perception(info), now, (obs.shape[1], obs.shape[0]),
                                   speed_mps=info["speed"])
        keys.apply(controller.keys_for(action, now))
        return keys.held().as_array()

    try:
        for step in rollout(env, drive, 450, seed=seed):  # 30 simulated seconds; stops at the episode's end
            now += env.config.dt
            info = step.next_info
            events += info["events"]
    finally:
        env.close()
    assert "collision" not in events and "off_road" not in events, events
    assert info["distance"] > 150.0, info["distance"]  # ~5+ m/s average from a standing start
    assert abs(info["lateral_offset"]) < 1.0
