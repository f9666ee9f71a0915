"""TruckPilot's built-in simulator: a pseudo-3D road seen from a truck's cab,
with traffic, people and signs, ground truth for every frame, a Gymnasium
environment ``TruckSim-v0`` and a scripted expert.

Importing ``sim`` registers the environment; it does not import pygame's
display or torch (the renderer imports pygame when it is built).

    import gymnasium, sim
    from sim.expert import Expert
    env = gymnasium.make("TruckSim-v0", render_mode="rgb_array", width=320, height=240)
    obs, info = env.reset(seed=0)        # info: direction, boxes, labels, ...
    keys = Expert(seed=0).act(env)       # int8 (left, right, throttle, brake)
    obs, reward, terminated, truncated, info = env.step(keys)

    truckpilot sim [--autopilot] [--title T]   # drive in a window (python -m sim)
    truckpilot sim --contact-sheet out.png     # every condition, with ground-truth boxes
    python -m sim.tools.evaluate_expert --seeds 20 --km 5
    python -m sim.tools.bench --all-conditions

Modules: config (SimConfig), road and roadside (seeded geometry, signs,
scenery), truck (ego physics), actors (traffic, people, IDM), world (the
episode's state and events), conditions (light, fog, rain), render and
sprites (pseudo-3D drawing and boxes), labels (CLASSES and DIRECTIONS), env,
rollout (stepping an env with a policy, in-process), expert, perturb, judge (the scorecard's route rules), steplog (the window's per-step log), cli, contact_sheet, scs_telemetry and scs_telemetry_layout (the
SCS Telemetry block); tools/ holds evaluate_expert and bench. See sim/README.md.
"""
from __future__ import annotations

from .config import DEFAULT_DT, TIMES_OF_DAY, WEATHERS, SimConfig
from .labels import CLASSES, DIRECTIONS

ENV_ID = "TruckSim-v0"


def _register() -> None:
    import gymnasium

    if ENV_ID not in gymnasium.registry:
        gymnasium.register(id=ENV_ID, entry_point="sim.env:TruckSimEnv")


_register()

__all__ = ["CLASSES", "DIRECTIONS", "ENV_ID", "SimConfig", "TIMES_OF_DAY", "WEATHERS", "DEFAULT_DT"]
