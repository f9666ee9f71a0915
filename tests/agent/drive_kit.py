"""Test kit for the driving loop: a tiny direction classifier trained on simulator frames.

Why not the project's ResNet34 DirectionNet: training it from scratch takes minutes on
the test machine's 2 shared cores (measured ~25-60 ms per sample per step at 48x64),
and no pretrained weights can be downloaded. The Perceiver runs any direction network
whose model card says how to feed it (input size, mean, std, classes), so the tests
give it this small CNN (3 convolutions + 2 linear layers, 64x48 input), trained in a
few seconds on frames of the real simulator labelled with ``info["direction"]`` (the
expert's intended steer with a deadband), the same labels the training package uses.

Data: the expert drives with random steering perturbations (so the frames include
drifting away from the lane centre and its recovery), then one round of DAgger: the
model drives, the expert's labels of the frames it reaches are added, and it is trained
again. Day / clear weather and an empty road, as in the end-to-end test.
"""
from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from perception.checkpoint import ModelCard
from perception.config import DirectionConfig, TrunkConfig
from perception.perceiver import Perceiver, Preprocessor
from perception.types import DIRECTIONS

INPUT_SIZE = (48, 64)  # (H, W)
MEAN, STD = (0.5, 0.5, 0.5), (1.0, 1.0, 1.0)
REPO = Path(__file__).resolve().parents[2]
SIM_OPTIONS = dict(width=320, height=240, traffic_density=0.0, time_of_day="day", weather="clear")


class TinyDirectionNet(nn.Module):
    """(B, 3, 48, 64) normalised -> logits (B, 3) over DIRECTIONS. Keeps the spatial layout
    (no global pooling): where the road goes in the image is what tells the direction."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 5, 2, 2), nn.ReLU(),
            nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, 2, 1), nn.ReLU(),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Linear(32 * 6 * 8, 64), nn.ReLU(), nn.Linear(64, len(DIRECTIONS)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def tiny_card() -> ModelCard:
    """The card telling the Perceiver how to feed TinyDirectionNet."""
    config = DirectionConfig(input_size=INPUT_SIZE, mean=MEAN, std=STD, trunk=TrunkConfig(weights="none"))
    return ModelCard("direction", config.to_dict(), DIRECTIONS, INPUT_SIZE, MEAN, STD,
                     provenance={"note": "tests/agent/drive_kit.py tiny CNN trained on sim frames"})


def _env(seed_route_m: float = 3000.0):
    import gymnasium

    import sim  # noqa: F401

    return gymnasium.make("TruckSim-v0", route_length_m=seed_route_m, **SIM_OPTIONS)


def collect(seed: int, steps: int, policy=None, every: int = 2, perturb: float = 0.03):
    """Frames (N, 240, 320, 3) uint8 and direction labels (N,) from ``steps`` sim steps.

    policy: None = the expert with random perturbations (a held steering key for
    0.25-0.9 s, started with probability ``perturb`` per step); else a callable
    (frame, info, now_s) -> keys array (4,) (the model, for DAgger).
    An episode that ends or drifts > 1.6 m off its lane restarts on a new seed.
    """
    from sim.expert import Expert
    from sim.rollout import rollout

    env = _env()
    obs, info = env.reset(seed=seed)
    dt = env.unwrapped.config.dt
    expert = Expert(seed=seed, dt=dt)
    rng = np.random.default_rng(seed)
    frames, labels = [], []
    left, key, calls = 0, 0, 0

    def act(frame, frame_info):
        nonlocal left, key, calls
        calls += 1
        if policy is not None:
            return policy(frame, frame_info, (calls - 1) * dt)
        keys = expert.act(env.unwrapped)
        if left > 0:
            keys = keys.copy()
            keys[0], keys[1] = key == 0, key == 1
            left -= 1
        elif rng.random() < perturb:
            left, key = int(rng.integers(4, 14)), int(rng.integers(0, 2))
        return keys

    for step in rollout(env, act, steps, first=(obs, info), on_end="reset",
                        end_when=lambda s: abs(s.next_info["lateral_offset"]) > 1.6,
                        next_seed=lambda ended: seed + 1000 + ended.index, on_reset=expert.reset):
        if step.index % every == 0:
            frames.append(step.obs)
            labels.append(DIRECTIONS.index(step.info["direction"]))
    env.close()
    return np.stack(frames), np.array(labels)


def _train(net: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    counts = torch.bincount(y, minlength=len(DIRECTIONS)).clamp(min=1).float()
    weight = (1.0 / counts) / (1.0 / counts).sum() * len(DIRECTIONS)
    opt = torch.optim.AdamW(net.parameters(), 3e-3, weight_decay=1e-3)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for b in range(0, len(x), 64):
            idx = perm[b:b + 64]
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx], weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()


def train_tiny_perceiver(seed: int = 100, steps: int = 2400, dagger_steps: int = 1600, epochs: int = 8,
                         dagger_rounds: int = 1, use_speed: bool = False, controller_config=None) -> Perceiver:
    """A CPU Perceiver with a freshly trained TinyDirectionNet (about 10-30 s on one core).

    use_speed: whether the model drives the DAgger rounds holding the controller's target
    speed (the sim's speed known) or with the cruise throttle duty, as in a game window;
    controller_config: the controller it drives the DAgger rounds with (as it will be driven).
    """
    from agent.runtime.controller import Controller
    from agent.runtime.loop import Observation
    from agent.runtime.parts import AgentDecider
    from agent.types import Frame

    torch.manual_seed(seed)
    pre = Preprocessor(INPUT_SIZE, MEAN, STD)
    frames, labels = collect(seed, steps)
    x, y = pre(list(frames)), torch.from_numpy(labels)
    net = TinyDirectionNet()
    _train(net, x, y, epochs, seed)
    for round_ in range(dagger_rounds if dagger_steps else 0):
        driver = AgentDecider(Perceiver(net, None, direction_card=tiny_card(), device="cpu"),
                              Controller(controller_config), use_speed=use_speed)

        def policy(frame, info, now_s):
            seen = Observation(Frame(frame, time.monotonic(), 0), now_s, speed_mps=float(info["speed"]), info=info)
            return driver.decide(seen).keys.as_array()

        more_frames, more_labels = collect(seed + 1 + round_, dagger_steps, policy=policy)
        x = torch.cat([x, pre(list(more_frames))])
        y = torch.cat([y, torch.from_numpy(more_labels)])
        net = TinyDirectionNet()
        _train(net, x, y, epochs, seed)
    return Perceiver(net, None, direction_card=tiny_card(), device="cpu")


def accuracy(perceiver: Perceiver, frames: np.ndarray, labels: np.ndarray) -> float:
    """Share of frames whose argmax direction matches the label."""
    predicted = [DIRECTIONS.index(p.direction) for p in perceiver.perceive_batch(list(frames))]
    return float(np.mean(np.array(predicted) == labels))


class SimWindowProcess:
    """``truckpilot sim`` in a subprocess; a thread follows its log for distance and restarts."""

    PROGRESS = re.compile(r"t=(\d+)s (\d+) km/h (\d+) m")

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "agent.apps.cli", "sim", *args], cwd=REPO,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.distance_m = 0.0
        self.restarts = 0
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            m = self.PROGRESS.search(line)
            if m:
                self.distance_m = float(m.group(3))
            if "episode over" in line:
                self.restarts += 1

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._thread.join(timeout=5)


def wait_for_window(title: str, timeout: float = 30.0) -> None:
    from agent.io.window import find_window

    deadline = time.monotonic() + timeout
    while True:
        try:
            find_window(title)
            return
        except LookupError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
