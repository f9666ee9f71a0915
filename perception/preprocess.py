"""The one way frames become network input, for training, the Perceiver, ONNX Runtime and export.

Two steps, always in this order, and nothing else:

1. :func:`resize_frame`: HxWx3 uint8 RGB (any size) -> hxwx3 uint8 RGB at the model input
   (h, w), letterboxed (:class:`Letterbox`): the frame is scaled by one factor so it fits
   (never stretched: a 1280x720 or 1920x1080 game frame keeps its 16:9 shape in a 4:3 input),
   centred, and the rest is black bars. A frame of the input's aspect ratio (to a pixel of
   rounding: 320x240, 640x480, 800x600 for a 4:3 input) fills the input, as a plain resize.
   Shrinking is area averaging on uint8 (INTER_AREA), done as exact 2x2 halvings while the
   frame is at least twice the target, then one INTER_AREA to it: ~0.6 / ~1.3 ms for a 1280x720
   / 1920x1080 frame to 192x108 on one core, where one INTER_AREA pass costs ~7-11 / ~2-15 ms
   (OpenCV is only fast for integer factors); enlarging is INTER_LINEAR. Boxes map between
   frame and input pixels with :meth:`Letterbox.boxes_to_input` / :meth:`Letterbox.boxes_to_frame`
   (the Perceiver maps its detections back to frame pixels so; training maps labels in so).
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

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import torch


@dataclass(frozen=True)
class Letterbox:
    """Where a frame sits in the model input: scaled by one factor, centred, the rest padded.

    frame_size: (H, W) of the frame, px. input_size: (h, w) of the model input, px.
    content: (x, y, w, h) of the scaled frame inside the input, input px; the rest is bars
    (value 0). A point maps as ``x_in = x + x_frame * w / W``, ``y_in = y + y_frame * h / H``
    (and back), the factors being those of the resize actually done.
    """

    frame_size: tuple[int, int]
    input_size: tuple[int, int]
    content: tuple[int, int, int, int]

    @classmethod
    def fit(cls, frame_size: Sequence[int], input_size: Sequence[int]) -> "Letterbox":
        """The letterbox of a ``frame_size`` (H, W) frame in an ``input_size`` (h, w) input. A frame
        whose scaled size is within a pixel of the input on both sides fills it (no bars)."""
        frame_h, frame_w = int(frame_size[0]), int(frame_size[1])
        in_h, in_w = int(input_size[0]), int(input_size[1])
        if min(frame_h, frame_w, in_h, in_w) < 1:
            raise ValueError(f"sizes must be positive, got frame {frame_size} and input {input_size}")
        scale = min(in_w / frame_w, in_h / frame_h)
        w = max(1, min(in_w, round(frame_w * scale)))
        h = max(1, min(in_h, round(frame_h * scale)))
        if in_w - w <= 1 and in_h - h <= 1:
            w, h = in_w, in_h
        return cls((frame_h, frame_w), (in_h, in_w), ((in_w - w) // 2, (in_h - h) // 2, w, h))

    @property
    def fills(self) -> bool:
        """The frame covers the whole input (no bars)."""
        return self.content[2:] == (self.input_size[1], self.input_size[0])

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """The (h, w, 3) uint8 input image of a frame of ``frame_size`` (the frame itself when it
        already is the input, no copy)."""
        x, y, w, h = self.content
        if frame.shape[:2] == self.input_size and self.fills:
            return frame
        scaled = _scale_to(frame, w, h)
        if self.fills:
            return scaled
        out = np.zeros((*self.input_size, 3), np.uint8)
        out[y:y + h, x:x + w] = scaled
        return out

    def _factors(self) -> tuple[float, float]:
        """Input px per frame px, (x, y)."""
        return self.content[2] / self.frame_size[1], self.content[3] / self.frame_size[0]

    def boxes_to_input(self, boxes):
        """xyxy boxes (N, 4) in frame px -> input px (numpy array or torch tensor, as given)."""
        sx, sy = self._factors()
        x, y = self.content[:2]
        return _affine(boxes, (sx, sy, sx, sy), (x, y, x, y))

    def boxes_to_frame(self, boxes):
        """xyxy boxes (N, 4) in input px -> frame px (numpy array or torch tensor, as given); boxes
        on the bars land outside the frame: clip them to ``frame_size``."""
        sx, sy = self._factors()
        x, y = self.content[:2]
        return _affine(boxes, (1 / sx, 1 / sy, 1 / sx, 1 / sy), (-x / sx, -y / sy, -x / sx, -y / sy))


def _affine(boxes, scale: tuple[float, ...], offset: tuple[float, ...]):
    """boxes (N, 4) * scale + offset; a torch tensor stays one (on its device), else float numpy."""
    if hasattr(boxes, "new_tensor"):  # torch
        b = boxes.reshape(-1, 4)
        b = b if b.is_floating_point() else b.float()
        return b * b.new_tensor(scale) + b.new_tensor(offset)
    arr = np.asarray(boxes).reshape(-1, 4)
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
    return arr * np.asarray(scale, dtype) + np.asarray(offset, dtype)


def _scale_to(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """``frame`` resized to width x height: area averaging when shrinking (exact 2x2 halvings while
    at least twice the target on both sides, then one INTER_AREA), INTER_LINEAR when enlarging."""
    if frame.shape[:2] == (height, width):
        return frame
    if frame.shape[0] <= height and frame.shape[1] <= width:
        return cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
    while (frame.shape[0] >= 2 * height and frame.shape[1] >= 2 * width
           and frame.shape[0] % 2 == 0 and frame.shape[1] % 2 == 0):
        frame = cv2.resize(frame, (frame.shape[1] // 2, frame.shape[0] // 2), interpolation=cv2.INTER_AREA)
    if frame.shape[:2] == (height, width):
        return frame
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def resize_frame(frame: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """HxWx3 uint8 RGB -> (h, w, 3) uint8 RGB, ``size`` = (h, w) of the model input, letterboxed
    (:class:`Letterbox`: one scale factor, centred, black bars); the frame itself (no copy) when
    it already has the size.
    """
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        got = f"{type(frame).__name__} {getattr(frame, 'shape', '')} {getattr(frame, 'dtype', '')}"
        raise ValueError(f"expected an HxWx3 uint8 RGB frame, got {got}")
    return Letterbox.fit(frame.shape[:2], size).apply(frame)


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
    :func:`normalise` runs there (on the CPU: the same arithmetic in numpy, bit for bit, see
    ``_normalise_np``). size: (h, w) of the model input; mean, std: the card's.
    """
    if len(frames) == 0:
        raise ValueError("preprocess needs at least one frame")
    batch = np.stack([resize_frame(f, size) for f in frames])
    if torch.device(device).type == "cpu":
        return torch.from_numpy(_normalise_np(batch, mean, std))
    images = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2)
    return normalise(images, mean, std)


def _normalise_np(batch: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(B, h, w, 3) uint8 -> (B, 3, h, w) float32 C-contiguous: :func:`normalise`'s arithmetic in
    numpy, bit for bit (float32 ``x / 255``, ``- mean``, ``/ std``, each rounded as torch does).

    Why not torch on the CPU: its intra-op threads (2 by default here) turn this small op into a
    wait for a thread the game or the inference engine holds: measured 80-110 ms median per frame on
    the loaded 2-core machine (load ~13), against ~0.5 ms here (numpy runs it on the calling thread)."""
    x = batch.astype(np.float32)
    x /= np.float32(255.0)
    x -= np.asarray(mean, np.float32)
    x /= np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


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
