"""TruckSim-v0: the Gymnasium contract, determinism, and the info ground truth."""
from __future__ import annotations

import importlib
import sys

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim
from sim.env import TruckSimEnv
from sim.expert import Expert


def test_import_registers_env_without_pygame_or_torch():
    code = ("import sys, sim, gymnasium; assert 'TruckSim-v0' in gymnasium.registry; "
            "bad = [m for m in ('pygame', 'torch') if m in sys.modules]; assert not bad, bad")
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)
    importlib.reload(sim)  # re-import (re-registration) must not fail
    assert sim.CLASSES == ("car", "truck", "person", "sign")
    assert sim.DIRECTIONS == ("left", "straight", "right")


@pytest.mark.parametrize("continuous", [False, True])
def test_check_env_passes(continuous):
    env = gymnasium.make("TruckSim-v0", render_mode="rgb_array", continuous=continuous, width=96, height=72)
    check_env(env.unwrapped)
    assert env.unwrapped.observation_space.shape == (72, 96, 3)
    if continuous:
        assert env.unwrapped.action_space.shape == (3,)
    else:
        assert isinstance(env.unwrapped.action_space, gymnasium.spaces.MultiBinary)
    env.close()


def _run(seed: int, actions: list | None, steps: int = 500) -> tuple[list[bytes], list]:
    """Frames of one episode; the expert drives when ``actions`` is None (its
    keys are returned so that a second run can replay them)."""
    env = TruckSimEnv(render_mode="rgb_array", width=160, height=120, weather="rain")
    expert = Expert(seed=0)
    obs, _ = env.reset(seed=seed)
    frames, taken = [obs.tobytes()], []
    for i in range(steps):
        a = expert.act(env) if actions is None else actions[i]
        taken.append(a)
        obs, _, term, trunc, _ = env.step(a)
        frames.append(obs.tobytes())
        assert not (term or trunc)
    env.close()
    return frames, taken


def test_same_seed_same_actions_give_identical_frames():
    a, actions = _run(7, None)
    b, _ = _run(7, actions)
    assert len(a) == len(b) == 501
    assert all(x == y for x, y in zip(a, b))
    c, _ = _run(8, actions, steps=20)
    assert any(x != y for x, y in zip(a[:21], c))  # another seed is another world


def test_info_carries_ground_truth():
    env = gymnasium.make("TruckSim-v0", width=320, height=240, time_of_day="day", weather="clear")
    obs, info = env.reset(seed=3)
    expert = Expert(seed=0)
    keys = {"direction", "boxes", "labels", "lateral_offset", "speed", "distance", "events", "route_progress",
            "road_curvature", "heading_error", "lead_distance"}
    seen_labels, seen_dirs = set(), set()
    for _ in range(300):
        assert keys <= set(info)
        assert info["direction"] in sim.DIRECTIONS
        boxes = info["boxes"]
        assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
        assert len(info["labels"]) == len(boxes)
        assert set(info["labels"]) <= set(sim.CLASSES)
        if len(boxes):
            assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 320).all()
            assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= 240).all()
            assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] - boxes[:, 1] >= 4).all()
        assert isinstance(info["events"], list)
        assert 0.0 <= info["route_progress"] <= 1.0
        assert info["lead_distance"] > 0
        seen_labels.update(info["labels"])
        seen_dirs.add(info["direction"])
        obs, reward, term, trunc, info = env.step(expert.act(env))
        assert obs.shape == (240, 240 * 4 // 3, 3) and obs.dtype == np.uint8
        assert not term
    assert info["speed"] > 5.0 and info["distance"] > 50.0
    assert {"car", "truck", "sign"} <= seen_labels
    env.close()


def test_options_and_errors():
    env = TruckSimEnv(width=64, height=48, route_length_m=100.0, max_episode_steps=5)
    _, info = env.reset(seed=0, options={"time_of_day": "night", "weather": "fog"})
    assert (info["time_of_day"], info["weather"]) == ("night", "fog")
    for i in range(5):
        _, _, term, trunc, _ = env.step(np.array([0, 0, 1, 0], np.int8))
    assert trunc and not term
    with pytest.raises(TypeError, match="no option"):
        TruckSimEnv(wheels=18)
    with pytest.raises(ValueError, match="time_of_day"):
        TruckSimEnv(time_of_day="noon")
    with pytest.raises(ValueError, match="shape"):
        env.step(np.array([1, 0, 1], np.int8))


def test_route_end_terminates():
    env = TruckSimEnv(width=64, height=48, route_length_m=60.0, traffic_density=0.0)
    env.reset(seed=1)
    expert = Expert(seed=0)
    for _ in range(400):
        _, _, term, trunc, info = env.step(expert.act(env))
        if term:
            break
    assert term and info["distance"] >= 60.0 and info["route_progress"] == 1.0
    assert "collision" not in info["events"]
