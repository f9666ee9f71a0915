"""The one way frames become network input, for training, the Perceiver, ONNX Runtime and export.

Two steps, always in this order, and nothing else:

1. :func:`resize_frame`: HxWx3 uint8 RGB (any size) -> hxwx3 uint8 RGB at the model input
   (h, w), with ``cv2.resize``: INTER_AREA when either side shrinks (a game frame, 1280x720 or
   1920x1080, down to e.g. 192x144: ~2.5 / ~6 ms on one core), INTER_LINEAR when the frame is
   enlarged, untouched when it already has the size. Resizing runs on uint8, before any float
   work, so a large frame costs one cv2 pass.
2. :func:`normalise`: (B, 3, h, w) uint8 (or float32 on the 0..1 scale, e.g. after colour
   jitter) on any device -> float32 ``(x / 255 - mean) / std``, with the model card's RGB mean
   and std on the 0..1 scale.

:func:`preprocess` (and :class:`Preprocessor`, the same bound to one card) does both for a list
of frames: what the Perceiver feeds its networks (PyTorch and ONNX Runtime engines) and what
``truckpilot export`` checks the exported graph on. Training caches frames resized by
:func:`resize_frame`, may augment them (as uint8), and calls :func:`normalise` on the batch; on
unaugmented frames (validation, evaluation) it gives the serving tensor bit for bit
(tests/perception/test_perception_preprocess.py checks this on recorded simulator frames).
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch


def resize_frame(frame: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """HxWx3 uint8 RGB -> (h, w, 3) uint8 RGB, ``size`` = (h, w) of the model input.

    cv2 INTER_AREA when the frame shrinks along either side, INTER_LINEAR when it only grows;
    the frame itself (no copy) when it already has the size.
    """
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        got = f"{type(frame).__name__} {getattr(frame, 'shape', '')} {getattr(frame, 'dtype', '')}"
        raise ValueError(f"expected an HxWx3 uint8 RGB frame, got {got}")
    height, width = int(size[0]), int(size[1])
    if frame.shape[:2] == (height, width):
        return frame
    shrinking = frame.shape[0] > height or frame.shape[1] > width
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def normalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(B, 3, H, W) images -> float32 ``(x / 255 - mean) / std`` on the images' device.

    images: uint8 0..255, or floating point already on the 0..1 scale (x / 255 is then skipped:
    training's colour jitter works there). mean, std: RGB on the 0..1 scale.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) images, got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        x = images.to(torch.float32).div_(255.0)
    elif images.is_floating_point():
        x = images.to(torch.float32)
    else:
        raise ValueError(f"expected uint8 or floating point images, got {images.dtype}")
    mean_t = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


def preprocess(frames: Sequence[np.ndarray], size: Sequence[int], mean: Sequence[float], std: Sequence[float],
               device: str | torch.device = "cpu") -> torch.Tensor:
    """Frames (each HxWx3 uint8 RGB, sizes may differ) -> (B, 3, h, w) float32 on ``device``.

    :func:`resize_frame` on the CPU, then the uint8 batch moves to ``device`` and
    :func:`normalise` runs there. size: (h, w) of the model input; mean, std: the card's.
    """
    if len(frames) == 0:
        raise ValueError("preprocess needs at least one frame")
    batch = np.stack([resize_frame(f, size) for f in frames])
    images = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2)
    return normalise(images, mean, std)


class Preprocessor:
    """:func:`preprocess` bound to one model input: size (h, w), mean, std (0..1 scale), device.

    ``key`` is equal for two Preprocessors that give the same tensor for the same frames.
    Call with a list of HxWx3 uint8 RGB frames -> (B, 3, h, w) float32 on the device.
    """

    def __init__(self, size: Sequence[int], mean: Sequence[float], std: Sequence[float],
                 device: str | torch.device = "cpu") -> None:
        self.size = (int(size[0]), int(size[1]))
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.device = torch.device(device)
        self.key = (self.size, self.mean, self.std)

    @classmethod
    def for_card(cls, card, device: str | torch.device = "cpu") -> "Preprocessor":
        """The Preprocessor of a ModelCard (or any object with input_size, mean and std)."""
        return cls(card.input_size, card.mean, card.std, device)

    def __call__(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        return preprocess(frames, self.size, self.mean, self.std, self.device)
