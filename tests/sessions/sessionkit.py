"""Helpers shared by the session tests: deterministic test frames and small sessions."""
from __future__ import annotations

import numpy as np

from training.sessions import SessionWriter

CLASSES = ("car", "truck", "person", "sign")
W, H = 64, 48


def frame_image(i: int) -> np.ndarray:
    """A distinct, deterministic HxWx3 uint8 RGB test image per index."""
    rng = np.random.default_rng(i)
    img = np.zeros((H, W, 3), np.uint8)
    img[: H // 2] = (135, 180, 230)
    img[H // 2 :] = rng.integers(40, 120, 3)
    x = int(rng.integers(0, W - 10))
    img[20:30, x : x + 10] = (255, 0, 0)
    return img


def make_session(path, n=20, image_format="png", fps=10.0, labelled=True):
    """A session of n frame_image frames; labelled: sim directions and boxes (odd frames: one car)."""
    with SessionWriter.create(path, source={"kind": "test"}, width=W, height=H, fps=fps, classes=CLASSES,
                              image_format=image_format) as writer:
        for i in range(n):
            if not labelled:
                writer.append(frame_image(i), timestamp=i / 10, keys=(False, False, True, False))
                continue
            writer.append(
                frame_image(i), timestamp=i / 10, keys=(i % 3 == 0, i % 3 == 2, True, False),
                action=(-1.0 if i % 3 == 0 else 1.0 if i % 3 == 2 else 0.0, 1.0, 0.0),
                direction=("left", "straight", "right")[i % 3], direction_source="sim",
                boxes=[(1.0, 2.0, 20.5, 30.0)] if i % 2 else [], labels=["car"] if i % 2 else [],
                boxes_source="sim", extra={"speed": float(i)},
            )
    return path
