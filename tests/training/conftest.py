"""Fixtures for the training tests: small recorded sessions of generated road scenes.

The scenes are drawn with numpy (no simulator needed): a road whose far end
bends left, stays centred or bends right (the direction label) and coloured
boxes for the four object classes (car red, truck blue, person yellow,
sign green) with their exact xyxy boxes. They are written to disk with the
real session store (training.sessions.SessionWriter) and read back through it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim.labels import CLASSES, DIRECTIONS
COLOURS = {"car": (220, 30, 30), "truck": (30, 60, 220), "person": (240, 220, 40), "sign": (30, 200, 60)}
SHAPES = {"car": (0.22, 0.16), "truck": (0.32, 0.26), "person": (0.07, 0.22), "sign": (0.12, 0.12)}  # (w, h) share


def draw_scene(rng: np.random.Generator, width: int = 96, height: int = 72):
    """One frame: (image HxWx3 uint8 RGB, direction, boxes (N,4) xyxy px, labels)."""
    image = np.zeros((height, width, 3), np.uint8)
    horizon = height // 3
    image[:horizon] = (120, 170, 230)
    image[horizon:] = (70, 130, 60)
    direction = DIRECTIONS[rng.integers(3)]
    shift = {"left": -0.35, "straight": 0.0, "right": 0.35}[direction] * width
    for y in range(horizon, height):
        t = (y - horizon) / (height - horizon)  # 0 at the horizon, 1 at the bottom
        centre = width / 2 + shift * (1 - t) ** 2
        half = 4 + t * width * 0.38
        x1, x2 = int(max(0, centre - half)), int(min(width, centre + half))
        image[y, x1:x2] = (90, 90, 95)
    boxes, labels = [], []
    for _ in range(rng.integers(0, 3)):
        name = CLASSES[rng.integers(len(CLASSES))]
        w, h = SHAPES[name]
        bw, bh = max(3, int(w * width * rng.uniform(0.8, 1.2))), max(3, int(h * height * rng.uniform(0.8, 1.2)))
        x1 = int(rng.integers(0, width - bw))
        y1 = int(rng.integers(horizon // 2, height - bh))
        image[y1:y1 + bh, x1:x1 + bw] = COLOURS[name]
        boxes.append((x1, y1, x1 + bw, y1 + bh))
        labels.append(name)
    noise = rng.integers(-12, 13, size=image.shape)
    image = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return image, direction, boxes, labels


def write_session(path: Path, seed: int, frames: int, width: int = 96, height: int = 72) -> Path:
    from training.sessions import SessionWriter

    rng = np.random.default_rng(seed)
    with SessionWriter.create(path, source={"kind": "test-scenes", "seed": seed}, width=width, height=height,
                              fps=10, classes=CLASSES, directions=DIRECTIONS) as writer:
        for i in range(frames):
            image, direction, boxes, labels = draw_scene(rng, width, height)
            writer.append(image, timestamp=i / 10, keys=(direction == "left", direction == "right", True, False),
                          direction=direction, direction_source="sim", boxes=boxes, labels=labels,
                          boxes_source="sim")
    return path


@pytest.fixture(scope="session")
def scene_sessions(tmp_path_factory) -> list[Path]:
    """Three small sessions (seeds 1, 2, 3) of 24 frames each."""
    root = tmp_path_factory.mktemp("sessions")
    return [write_session(root / f"s{seed}", seed, 24) for seed in (1, 2, 3)]


#: (width, height) of the simulator sessions of ``sim_sessions``: a 720p game-size frame (shrunk to the
#: model input), the recorder's default 320x240, and 160x120 (enlarged to the default 192x144 input)
SIM_SESSION_SIZES = ((1280, 720), (320, 240), (160, 120))


@pytest.fixture(scope="session")
def sim_sessions(tmp_path_factory) -> list[Path]:
    """Three tiny sessions recorded from the real simulator (autopilot, headless) with the product
    recorder, one per SIM_SESSION_SIZES entry: 4 frames each, sim labels (direction, boxes)."""
    from agent.recording.recorder import record_sim

    root = tmp_path_factory.mktemp("sim_sessions")
    paths = []
    for seed, (width, height) in enumerate(SIM_SESSION_SIZES, start=11):
        out = root / f"sim{width}x{height}"
        record_sim(out, seed=seed, width=width, height=height, frames=4, progress=False,
                   min_box_height_px=4.0 * height / 240)
        paths.append(out)
    return paths
