"""Perception test kit: real simulator frames with ground truth, and the overfit helpers.

(A module with a unique name, so tests can import it; the fixtures live in conftest.py.)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from perception.types import DEFAULT_DETECTION_CLASSES, DIRECTIONS

# ---------------------------------------------------------------- overfit models

#: Adam steps of the overfit fits (heads only, on cached trunk features; default input size).
OVERFIT_STEPS = {"direction": 150, "detector": 150}


def calibrate_and_freeze_trunk(model, x: torch.Tensor) -> torch.Tensor:
    """Set the random trunk's BatchNorm statistics from the data (one cumulative pass),
    freeze the trunk, and return its features of x (computed once, reused every step)."""
    for module in model.trunk.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    model.trunk.train()
    with torch.no_grad():
        model.forward_features(x)
    model.freeze_trunk(True)
    model.train()
    with torch.no_grad():
        return model.forward_features(x)


def fit_overfit_model(kind: str, samples: list["SimSample"]):
    """Fit a random-init DirectionNet ("direction") or SSDNet ("detector") at the default
    input size to simulator ``samples``: trunk BN calibrated then frozen, heads trained
    with Adam + one-cycle on cached trunk features. Returns (model in eval mode,
    x, directions, targets) as sim_batch gives them."""
    from perception.config import DetectorConfig, DirectionConfig, TrunkConfig
    from perception.detector import SSDNet
    from perception.direction import DirectionNet

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        trunk = TrunkConfig(weights="none")
        model = DirectionNet(DirectionConfig(trunk=trunk)) if kind == "direction" else SSDNet(DetectorConfig(trunk=trunk))
        cfg = model.config
        x, directions, targets = sim_batch(samples, cfg.input_size, cfg.mean, cfg.std)
        feats = calibrate_and_freeze_trunk(model, x)
        params = [p for p in model.parameters() if p.requires_grad]
        steps = OVERFIT_STEPS[kind]
        max_lr = 1e-2 if kind == "direction" else 3e-3
        opt = torch.optim.Adam(params, lr=max_lr)
        schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=steps, pct_start=0.2)
        for _ in range(steps):
            if kind == "direction":
                loss = torch.nn.functional.cross_entropy(model.forward_head(feats), directions)
            else:
                loss = model.loss(*model.forward_head(feats), targets)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
        model.eval()
        return model, x, directions, targets
    finally:
        torch.set_num_threads(before)




# ---------------------------------------------------------------- simulator frames

@dataclass(frozen=True)
class SimSample:
    """One simulator frame with its ground truth: image 240x320x3 uint8 RGB,
    boxes (N, 4) float32 xyxy frame px, labels (N,) int64 in 1..C, direction index."""

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    direction: int


def sim_samples(n: int = 32, seed: int = 2, every: int = 7, max_steps: int = 3000) -> list[SimSample]:
    """n frames from the simulator driven by its expert, each with at least one object,
    at most ceil(n / 3) per direction (so all three are represented)."""
    import gymnasium
    import sim  # noqa: F401  (registers TruckSim-v0)
    from sim.expert import Expert
    from sim.rollout import expert_policy, rollout

    env = gymnasium.make("TruckSim-v0")
    expert = Expert(seed=seed)
    picked: list[SimSample] = []
    quota = -(-n // len(DIRECTIONS))
    per_direction = dict.fromkeys(DIRECTIONS, 0)
    for step in rollout(env, expert_policy(env, expert), max_steps, seed=seed, on_end="reset",
                        next_seed=lambda ended: seed + ended.index + 1, on_reset=expert.reset):
        info = step.info
        if step.index % every == 0 and len(info["boxes"]):
            if per_direction[info["direction"]] < quota:
                per_direction[info["direction"]] += 1
                picked.append(SimSample(
                    step.obs.copy(), np.asarray(info["boxes"], np.float32).reshape(-1, 4),
                    np.array([DEFAULT_DETECTION_CLASSES.index(c) + 1 for c in info["labels"]], np.int64),
                    DIRECTIONS.index(info["direction"]),
                ))
        if len(picked) >= n:
            break
    env.close()
    if len(picked) < n:
        raise RuntimeError(f"only {len(picked)} simulator frames with objects in {max_steps} steps")
    return picked


def sim_batch(samples: list[SimSample], input_size: tuple[int, int], mean, std):
    """(x (B,3,H,W) normalised as the Perceiver does, directions (B,), targets in model-input px)."""
    from perception.boxes import scale_boxes
    from perception.perceiver import Preprocessor

    x = Preprocessor(input_size, mean, std)([s.image for s in samples])
    directions = torch.tensor([s.direction for s in samples])
    targets = [
        {"boxes": scale_boxes(torch.from_numpy(s.boxes), s.image.shape[:2], input_size),
         "labels": torch.from_numpy(s.labels)}
        for s in samples
    ]
    return x, directions, targets
