"""sim.rollout: the one env-stepping loop gives what a hand-written loop gives, and keeps its
stop and reset rules."""
from __future__ import annotations

import numpy as np
import pytest

from sim.env import TruckSimEnv
from sim.expert import Expert
from sim.rollout import expert_policy, rollout


def _env(**options) -> TruckSimEnv:
    return TruckSimEnv(render_mode="rgb_array", width=64, height=48, time_of_day="day", weather="clear", **options)


def test_steps_match_a_hand_written_loop():
    env = _env()
    expert = Expert(seed=1, dt=env.config.dt)
    obs, info = env.reset(seed=4)
    by_hand = []
    for _ in range(40):
        action = expert.act(env)
        by_hand.append((obs, info["distance"], action))
        obs, _, _, _, info = env.step(action)
    env.close()

    env = _env()
    expert = Expert(seed=1, dt=env.config.dt)
    steps = list(rollout(env, expert_policy(env, expert), 40, seed=4))
    env.close()
    assert [s.index for s in steps] == list(range(40)) and {s.episode for s in steps} == {0}
    for step, (frame, distance, action) in zip(steps, by_hand):
        assert np.array_equal(step.obs, frame) and step.info["distance"] == distance
        assert np.array_equal(step.action, action)
    assert all(a.next_info is b.info for a, b in zip(steps, steps[1:]))  # each step starts where the last ended
    assert np.array_equal(steps[-1].next_obs, obs) and steps[-1].next_info["distance"] == info["distance"]


def test_stop_ends_after_the_step_that_ends_the_episode():
    env = _env(max_episode_steps=7)
    steps = list(rollout(env, lambda obs, info: np.array([0, 0, 1, 0], np.int8), 100, seed=0))
    env.close()
    assert len(steps) == 7
    assert steps[-1].truncated and steps[-1].episode_end and not any(s.episode_end for s in steps[:-1])


def test_reset_starts_the_next_episode_with_the_seed_given_and_calls_on_reset():
    env = _env(max_episode_steps=5)
    resets, ended = [], []

    def next_seed(step):
        ended.append(step.index)
        return 100 + step.index

    steps = list(rollout(env, lambda obs, info: np.array([0, 0, 1, 0], np.int8), 12, seed=0, on_end="reset",
                         next_seed=next_seed, on_reset=lambda: resets.append(True)))
    env.close()
    assert [s.episode for s in steps] == [0] * 5 + [1] * 5 + [2] * 2
    assert ended == [4, 9] and len(resets) == 2
    fresh = _env()
    first_of_second, _ = fresh.reset(seed=104)
    fresh.close()
    assert np.array_equal(steps[5].obs, first_of_second) and steps[5].info["step"] == 0


def test_end_when_ends_an_episode_early():
    env = _env()
    steps = list(rollout(env, lambda obs, info: np.array([0, 0, 1, 0], np.int8), 50, seed=0,
                         end_when=lambda step: step.index == 3))
    env.close()
    assert len(steps) == 4 and steps[-1].episode_end and not steps[-1].terminated and not steps[-1].truncated


def test_first_continues_from_the_callers_reset_and_a_consumer_that_stops_steps_no_further():
    env = _env()
    start = env.reset(seed=2)
    calls = []

    def policy(obs, info):
        calls.append(info["step"])
        return np.array([0, 0, 1, 0], np.int8)

    for step in rollout(env, policy, 100, first=start):
        if step.index == 2:
            break
    assert calls == [0, 1, 2] and step.obs is not None and env._steps == 3
    env.close()


def test_bad_arguments_are_refused():
    env = _env()
    with pytest.raises(ValueError, match="seed .* or first"):
        next(rollout(env, lambda obs, info: None, 1, seed=0, first=(None, {})))
    with pytest.raises(ValueError, match="on_end"):
        next(rollout(env, lambda obs, info: None, 1, on_end="again"))
    env.close()
