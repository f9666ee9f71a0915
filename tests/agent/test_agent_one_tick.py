"""One tick: ``truckpilot eval``'s agent and ``truckpilot drive --sim`` send the same keys for the
same frames. Both drive through ``run_ticks``; this fails if either path drifts (another controller
config, a gain, the speed or the clock fed differently, another tick order, another sim setup)."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from drive_kit import TinyDirectionNet, tiny_card

from agent.apps.drive import drive_sim
from agent.apps.scorecard import ScorecardConfig, drive_route, make_driver
from perception.perceiver import Perceiver
from perception.types import DIRECTIONS, Perception

SEED, ROUTE_M, TICKS = 1, 300.0, 150
#: the agent must drive at least this many ticks before the scorecard's first intervention
MIN_COMPARED = 60


class HalfBrightness:
    """A stand-in model that steers, a pure function of the frame: the direction probabilities
    from the brightness of the lower frame's left vs right half (where the bright markings are)."""

    def __call__(self, image: np.ndarray) -> Perception:
        lower = image[image.shape[0] // 2:].astype(np.float32).mean(axis=2)
        half = lower.shape[1] // 2
        lean = float(lower[:, half:].mean() - lower[:, :half].mean())  # > 0: brighter on the right
        logits = np.array([-lean, 0.0, lean]) * 0.5
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        by_name = dict(zip(DIRECTIONS, (float(p) for p in probs)))
        return Perception(max(by_name, key=by_name.get), by_name, (), {})


@pytest.fixture(scope="module", params=["tiny-cnn", "half-brightness"])
def perceiver(request):
    if request.param == "half-brightness":
        return HalfBrightness()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return Perceiver(TinyDirectionNet(), None, direction_card=tiny_card(), device="cpu")


def digest(observation) -> str:
    return hashlib.sha1(observation.frame.image.tobytes()).hexdigest()


def same_keys(perceiver) -> list[tuple]:
    """Drive ``perceiver`` on the same route through ``drive_sim`` and the scorecard's ``drive_route``;
    assert the frames, clocks and keys agree tick by tick until the scorecard's first intervention;
    return the keys compared."""
    config = ScorecardConfig(route_m=ROUTE_M)  # the scorecard's defaults: 320x240, traffic 1
    via_drive = []
    drive_sim(perceiver, seed=SEED, time_of_day="day", weather="clear", size=(config.width, config.height),
              traffic=config.traffic_density, route_m=ROUTE_M, steps=TICKS,
              on_tick=lambda i, obs, p, a, r: via_drive.append((i, digest(obs), obs.clock_s, tuple(r.held.as_array()))))
    via_eval = []

    def eval_tick(i, obs, perception, action, result):
        # the scorecard's expert rescuing decides without a perception: compare up to its first takeover
        if perception is None or len(via_eval) < i:
            return
        via_eval.append((i, digest(obs), obs.clock_s, tuple(result.held.as_array())))

    # the agent exactly as run_scorecard builds it (controller_config None, as `truckpilot eval` without flags)
    driver = make_driver("agent", perceiver, 1 / 15, SEED)
    drive_route(driver, SEED, "day", "clear", TICKS, config, name="agent", on_tick=eval_tick)
    n = min(len(via_eval), len(via_drive))
    assert n >= MIN_COMPARED, f"only {n} ticks before the first intervention: too few to compare"
    for e, d in zip(via_eval[:n], via_drive[:n]):  # the first difference: the keys of tick i change frame i + 1
        assert e[:3] == d[:3], f"tick {e[0]}: not the same frame / clock (eval {e[1:3]}, drive --sim {d[1:3]})"
        assert e[3] == d[3], f"tick {e[0]}: eval sent keys {e[3]}, drive --sim sent {d[3]}"
    keys_drive = [t[3] for t in via_drive[:n]]
    assert len({k[2] for k in keys_drive[:n]}) == 2, "the throttle never changed: a weak check"
    return keys_drive[:n]


def test_the_scorecards_agent_and_drive_sim_send_the_same_keys_for_the_same_frames(perceiver):
    keys = same_keys(perceiver)
    if isinstance(perceiver, HalfBrightness):  # the real (untrained) CNN holds straight; this one steers
        assert sum(a[:2] != b[:2] for a, b in zip(keys, keys[1:])) >= 10, "the steering never changed: a weak check"


@pytest.mark.parametrize("flags", [[], ["--target-speed", "9"]])
def test_the_eval_and_drive_clis_give_the_agent_the_same_controller_and_simulator(monkeypatch, flags):
    """`truckpilot eval` and `truckpilot drive --sim`, given the same flags, hand the same controller
    settings and the same simulator setup (frame size, traffic) to the tick the test above compares."""
    from agent.apps import drive, scorecard
    from agent.runtime.controller import Controller
    from agent.runtime.loop import LoopStats
    from agent.types import StopReason

    model = object()
    seen = {}
    monkeypatch.setattr(drive, "perceiver_from_args", lambda args: model)

    def fake_drive_sim(perceiver, **kwargs):
        seen["drive"] = (perceiver, kwargs)
        return LoopStats(steps=0, wall_s=0.0, fps=0.0, stages={}, stopped_by=StopReason.STEPS)

    def fake_run_scorecard(perceiver, seeds, conditions, route_m, **kwargs):
        seen["eval"] = (perceiver, kwargs)
        return {"agent": {}}

    monkeypatch.setattr(drive, "drive_sim", fake_drive_sim)
    monkeypatch.setattr(scorecard, "run_scorecard", fake_run_scorecard)
    assert drive.main(["--model", "m.safetensors", "--sim", *flags]) == 0
    assert scorecard.main(["--model", "m.safetensors", "--drivers", "agent", *flags]) == 0
    (p_drive, k_drive), (p_eval, k_eval) = seen["drive"], seen["eval"]
    assert p_drive is model and p_eval is model
    assert Controller(k_drive["controller_config"]).config == Controller(k_eval["controller_config"]).config
    card = k_eval["config"]
    assert (k_drive["size"], k_drive["traffic"]) == ((card.width, card.height), card.traffic_density)
