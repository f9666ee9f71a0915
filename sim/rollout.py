"""Stepping a simulator env with a policy, in-process: the one rollout loop.

    from sim.rollout import expert_policy, rollout
    for step in rollout(env, expert_policy(env, expert), 600, seed=3):
        frames.append((step.obs, step.info["boxes"]))  # the frame the policy saw, its ground truth

The env is any Gymnasium env (``TruckSim-v0`` made with ``gymnasium.make`` or a bare
``sim.env.TruckSimEnv``). This is for stepping the env as fast as it goes (datasets, studies,
scorecards, contact sheets); the real-time driving loop (agent.runtime.loop) is another thing.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Literal

import numpy as np

#: ``policy(obs, info) -> action``: obs an HxWx3 uint8 RGB frame, info its ground truth (see
#: TruckSimEnv.step); the action is whatever ``env.step`` takes (int8 keys, or 3 floats)
Policy = Callable[[np.ndarray, dict], Any]


@dataclass(frozen=True)
class Step:
    """One env step: the frame the policy acted on, what it did, and what came of it.

    index: 0-based over the whole rollout (all episodes); episode: 0-based episode number.
    obs / info: the frame the policy saw and its ground truth; action: the policy's return
    value, as given to ``env.step``. next_obs / next_info: what ``env.step`` returned (the
    frame after the step, before any reset). terminated / truncated: as ``env.step`` said.
    episode_end: this step ended the episode (terminated, truncated, or the rollout's
    ``end_when`` rule held).
    """

    index: int
    episode: int
    obs: np.ndarray
    info: dict
    action: Any
    next_obs: np.ndarray
    next_info: dict
    terminated: bool
    truncated: bool
    episode_end: bool


def expert_policy(env, expert) -> Policy:
    """A scripted ``sim.expert.Expert`` as a policy: it reads the world of ``env`` (a Gymnasium
    wrapper or a bare TruckSimEnv), not the frame; returns int8 keys (left, right, throttle, brake)."""
    base = env.unwrapped
    return lambda obs, info: expert.act(base)


def rollout(
    env,
    policy: Policy,
    steps: int,
    *,
    seed: int | None = None,
    options: dict | None = None,
    first: tuple[np.ndarray, dict] | None = None,
    on_end: Literal["stop", "reset"] = "stop",
    end_when: Callable[[Step], bool] | None = None,
    next_seed: Callable[[Step], int | None] | None = None,
    on_reset: Callable[[], None] | None = None,
) -> Iterator[Step]:
    """Step ``env`` with ``policy`` at most ``steps`` times, yielding a :class:`Step` after each.

    Start: ``env.reset(seed=seed, options=options)``, or, with ``first`` = the (obs, info) of
    a reset the caller already did, from there (then seed must be None).
    Each step: action = policy(obs, info); env.step(action); yield the Step. The policy is
    called lazily, after the consumer has handled the previous Step, so it may read state the
    consumer updates; a consumer that stops iterating steps the env no further.
    An episode ends when env.step says terminated or truncated, or ``end_when(step)`` holds.
    Then, with ``on_end="stop"``, the rollout ends after yielding that step; with
    ``on_end="reset"``, the env is reset with ``seed=next_seed(step)`` (None, or no
    next_seed: unseeded, the env's random stream goes on) and the same ``options``,
    ``on_reset()`` is called (e.g. an expert's reset), and the rollout goes on.
    The env is neither made nor closed here.
    """
    if on_end not in ("stop", "reset"):
        raise ValueError(f"rollout: on_end must be 'stop' or 'reset', got {on_end!r}")
    if first is not None:
        if seed is not None:
            raise ValueError("rollout: pass seed (the rollout resets the env) or first (the caller did), not both")
        obs, info = first
    else:
        obs, info = env.reset(seed=seed, options=options)
    episode = 0
    for index in range(steps):
        action = policy(obs, info)
        next_obs, _reward, terminated, truncated, next_info = env.step(action)
        step = Step(index, episode, obs, info, action, next_obs, next_info, bool(terminated), bool(truncated),
                    episode_end=False)
        ended = step.terminated or step.truncated or (end_when is not None and bool(end_when(step)))
        if ended:
            step = replace(step, episode_end=True)
        yield step
        if not ended:
            obs, info = next_obs, next_info
            continue
        if on_end == "stop":
            return
        obs, info = env.reset(seed=None if next_seed is None else next_seed(step), options=options)
        if on_reset is not None:
            on_reset()
        episode += 1
