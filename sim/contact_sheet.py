"""A contact sheet: a grid of frames across seeds and every time of day x
weather, with the ground-truth boxes drawn and labelled. For eyeballing the
simulator and its labels.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .config import TIMES_OF_DAY, WEATHERS
from .env import TruckSimEnv
from .expert import Expert
from .rollout import expert_policy, rollout

log = logging.getLogger(__name__)

BOX_COLOURS = {"car": (255, 60, 60), "truck": (255, 170, 0), "person": (60, 255, 60), "sign": (60, 200, 255)}


def contact_sheet_frames(seeds=(0, 1, 2), width: int = 320, height: int = 240, min_steps: int = 60,
                         max_steps: int = 700):
    """Yield (time_of_day, weather, seed, frame HxWx3 uint8, info) for every
    condition and seed. The expert drives from the start; of the frames after
    ``min_steps`` (checked every 5 steps up to ``max_steps``) the one showing
    the most classes, then the most boxes, is kept, so that sheets show people
    and signs as well as traffic."""
    env = TruckSimEnv(render_mode="rgb_array", width=width, height=height)
    expert = Expert(seed=0, dt=env.config.dt)
    policy = expert_policy(env, expert)
    for tod in TIMES_OF_DAY:
        for weather in WEATHERS:
            for seed in seeds:
                start = env.reset(seed=int(seed), options={"time_of_day": tod, "weather": weather})
                best, best_score = start, -1.0
                for step in rollout(env, policy, max_steps, first=start):
                    if step.episode_end:
                        break
                    if step.index >= min_steps and step.index % 5 == 0:
                        labels = step.next_info["labels"]
                        score = len(set(labels)) + 0.05 * min(len(labels), 10)
                        if score > best_score:
                            best, best_score = (step.next_obs, step.next_info), score
                yield (tod, weather, int(seed), *best)
    env.close()


def annotate(frame: np.ndarray, boxes: np.ndarray, labels, caption: str = "") -> np.ndarray:
    """A copy of ``frame`` (HxWx3 uint8 RGB) with boxes (xyxy px) and labels drawn."""
    import pygame

    pygame.font.init()
    out = np.ascontiguousarray(frame.copy())
    h, w = out.shape[:2]
    surf = pygame.image.frombuffer(out, (w, h), "RGB")
    font = pygame.font.Font(None, max(12, h // 18))
    for (x0, y0, x1, y1), label in zip(boxes.tolist(), labels):
        col = BOX_COLOURS.get(label, (255, 255, 255))
        pygame.draw.rect(surf, col, (x0, y0, max(1, x1 - x0), max(1, y1 - y0)), 1)
        text = font.render(label, True, col)
        surf.blit(text, (x0, max(0, y0 - text.get_height())))
    if caption:
        text = font.render(caption, True, (255, 255, 255), (0, 0, 0))
        surf.blit(text, (2, h - text.get_height() - 2))
    return out


def make_contact_sheet(path: str | Path, seeds=(0, 1, 2), width: int = 320, height: int = 240,
                       min_steps: int = 60, max_steps: int = 700) -> Path:
    """Write the grid PNG to ``path``: one row per condition (9), one column per seed."""
    import pygame

    path = Path(path)
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".tga"):
        raise ValueError(f"contact sheet {path}: use a .png (or .jpg/.bmp/.tga) file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    seeds = tuple(seeds)
    rows = len(TIMES_OF_DAY) * len(WEATHERS)
    sheet = np.zeros((rows * height, len(seeds) * width, 3), dtype=np.uint8)
    n_boxes = 0
    for k, (tod, weather, seed, frame, info) in enumerate(contact_sheet_frames(seeds, width, height, min_steps, max_steps)):
        r, c = divmod(k, len(seeds))
        caption = f"{tod}/{weather} seed {seed} {info['direction']} {info['speed'] * 3.6:.0f} km/h"
        sheet[r * height:(r + 1) * height, c * width:(c + 1) * width] = annotate(frame, info["boxes"], info["labels"],
                                                                                  caption)
        n_boxes += len(info["labels"])
    surf = pygame.image.frombuffer(np.ascontiguousarray(sheet), (sheet.shape[1], sheet.shape[0]), "RGB")
    pygame.image.save(surf, str(path))
    log.info("contact sheet %s: %d frames, %d boxes", path, rows * len(seeds), n_boxes)
    return path
