"""Box math: format conversion, IoU, clipping and scaling, for torch, numpy and plain Python.

Box format everywhere: ``xyxy`` = (x1, y1, x2, y2) in pixels of the image the boxes belong
to, edges not pixel indices: a box covering pixel columns 0..9 has x1 = 0, x2 = 10 (x2 and
y2 are exclusive as pixel indices), so its width is x2 - x1 and a box inside an image of
width W has 0 <= x1 <= x2 <= W. ``cxcywh`` = (centre x, centre y, width, height), same
pixels. Sizes are ``(H, W)``. Arrays and tensors of boxes are ``(N, 4)``.

Three paths, one rule each:

* torch (``iou``, ``clip_boxes``, ``scale_boxes``, conversions): Tensors, as the detector,
  training and evaluation use them; IoU and conversions are torchvision.ops.
* numpy (``iou_np``, ``clip_boxes_np``, ``scale_boxes_np``): float ndarrays, for the runtime.
* plain Python (``pair_iou``, ``clip_box_list``): one box pair or a handful of boxes, where
  array overhead would dominate (the controller's tracker, the recorder's ground truth).

Importing this module does not import torch; the torch functions import it when called,
so torch-free callers (the controller) can use the numpy and plain paths.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from torch import Tensor

__all__ = [
    "xyxy_to_cxcywh",
    "cxcywh_to_xyxy",
    "iou",
    "iou_np",
    "pair_iou",
    "clip_boxes",
    "clip_boxes_np",
    "clip_box_list",
    "scale_boxes",
    "scale_boxes_np",
]


# ------------------------------------------------------------------ torch
def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(N, 4) xyxy -> (N, 4) cxcywh."""
    from torchvision.ops import box_convert

    return box_convert(boxes, in_fmt="xyxy", out_fmt="cxcywh")


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(N, 4) cxcywh -> (N, 4) xyxy."""
    from torchvision.ops import box_convert

    return box_convert(boxes, in_fmt="cxcywh", out_fmt="xyxy")


def iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """IoU matrix (N, M) of xyxy boxes (N, 4) and (M, 4) (torchvision.ops.box_iou).
    A pair whose union is empty (two zero-area boxes) gives NaN, as torchvision does."""
    from torchvision.ops import box_iou

    return box_iou(boxes_a, boxes_b)


def clip_boxes(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """xyxy boxes (N, 4) clipped to an image of size (H, W): x to [0, W], y to [0, H]. A new tensor."""
    import torch

    height, width = size
    x = boxes[:, 0::2].clamp(0, width)
    y = boxes[:, 1::2].clamp(0, height)
    return torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], dim=1)


def scale_boxes(boxes: Tensor, from_size: tuple[int, int], to_size: tuple[int, int]) -> Tensor:
    """xyxy boxes (N, 4) in pixels of an image of size ``from_size`` (H, W) -> pixels of
    ``to_size`` (H, W), the same image resized. Same dtype as ``boxes``."""
    sx, sy = _factors(from_size, to_size)
    return boxes * boxes.new_tensor([sx, sy, sx, sy])


# ------------------------------------------------------------------ numpy
def iou_np(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU matrix (N, M) float64 of xyxy boxes (N, 4) and (M, 4); 0 where the union is empty."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0.0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0.0, None)
    inter = iw * ih
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def clip_boxes_np(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """xyxy boxes (N, 4) clipped to an image of size (H, W): x to [0, W], y to [0, H].
    A new array of the same dtype."""
    height, width = size
    out = np.array(boxes, copy=True).reshape(-1, 4)
    np.clip(out[:, 0::2], 0.0, width, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0.0, height, out=out[:, 1::2])
    return out


def scale_boxes_np(boxes: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """xyxy boxes (N, 4) in pixels of ``from_size`` (H, W) -> pixels of ``to_size`` (H, W).
    Same dtype as ``boxes`` when it is floating, float64 otherwise."""
    sx, sy = _factors(from_size, to_size)
    arr = np.asarray(boxes).reshape(-1, 4)
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
    return arr * np.asarray([sx, sy, sx, sy], dtype=dtype)


# ------------------------------------------------------------------ plain Python
def pair_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two xyxy boxes (any 4-sequences of numbers); 0.0 when the union is empty."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def clip_box_list(boxes: Iterable[Sequence[float]] | np.ndarray, size: tuple[int, int]) -> list[list[float]]:
    """xyxy boxes (N, 4) (an array, a tensor or a list of 4-sequences) clipped to an image of
    size (H, W), as a list of N [x1, y1, x2, y2] lists of Python numbers. For a handful of
    boxes this is ~10x faster than going through numpy."""
    height, width = size
    out = []
    for x1, y1, x2, y2 in (boxes.tolist() if hasattr(boxes, "tolist") else boxes):
        out.append([min(max(x1, 0.0), width), min(max(y1, 0.0), height),
                    min(max(x2, 0.0), width), min(max(y2, 0.0), height)])
    return out


def _factors(from_size: tuple[int, int], to_size: tuple[int, int]) -> tuple[float, float]:
    """(sx, sy) that take pixels of an image of size from_size (H, W) to to_size (H, W)."""
    return to_size[1] / from_size[1], to_size[0] / from_size[0]
