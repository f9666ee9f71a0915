"""Anchors, matching, SSD box encoding, and decode + NMS.

Conventions: boxes are float tensors ``(N, 4)``, ``xyxy`` or ``cxcywh`` in pixels of the
image the boxes belong to (for anchors and network outputs: the model input), as in
:mod:`perception.boxes`, which does the IoU, conversions, clipping and scaling. Sizes are
``(H, W)``. torchvision.ops does the NMS.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from perception.boxes import clip_boxes, cxcywh_to_xyxy, iou, xyxy_to_cxcywh

#: SSD box-encoding variances (centre, size).
DEFAULT_VARIANCES: tuple[float, float] = (0.1, 0.2)
#: Largest log size ratio decoded (avoids exp overflow): boxes at most ~1000x their anchor.
_MAX_LOG_RATIO = math.log(1000.0)

__all__ = [
    "match_batch",
    "feature_map_size",
    "grid_anchors",
    "make_anchors",
    "match",
    "encode",
    "decode",
    "decode_detections",
    "decode_detections_batch",
    "rank_within_groups",
]


def feature_map_size(input_size: tuple[int, int], stride: int) -> tuple[int, int]:
    """(h, w) of a ResNet-style feature map at ``stride`` (a power of two):
    the input halved log2(stride) times, rounding up (3x3/stride-2/pad-1 convs)."""
    h, w = input_size
    for _ in range(int(round(math.log2(stride)))):
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w


def grid_anchors(
    grid_size: tuple[int, int],
    input_size: tuple[int, int],
    base_size: float,
    scales: Sequence[float],
    aspect_ratios: Sequence[float],
) -> Tensor:
    """Anchors of one feature map, xyxy in input pixels, shape (gh * gw * k, 4).

    Cell (i, j) of a gh x gw grid over an H x W input has centre
    ((j + 0.5) * W / gw, (i + 0.5) * H / gh). Each cell gets k = len(scales) *
    len(aspect_ratios) anchors, ordered scale-major: for s in scales, for r in
    aspect_ratios: width = base_size * s * sqrt(r), height = base_size * s / sqrt(r).
    Order of rows: row i, then column j, then the k anchors, which is the order of
    a head output (B, k*X, gh, gw) permuted to (B, gh, gw, k*X) and viewed as (B, gh*gw*k, X).
    """
    gh, gw = grid_size
    height, width = input_size
    shapes = torch.tensor(
        [[base_size * s * math.sqrt(r), base_size * s / math.sqrt(r)] for s in scales for r in aspect_ratios],
        dtype=torch.float32,
    )  # (k, 2) w, h
    cy = (torch.arange(gh, dtype=torch.float32) + 0.5) * (height / gh)
    cx = (torch.arange(gw, dtype=torch.float32) + 0.5) * (width / gw)
    yy, xx = torch.meshgrid(cy, cx, indexing="ij")
    centres = torch.stack([xx, yy], dim=-1).reshape(-1, 1, 2)  # (gh*gw, 1, 2)
    k = shapes.shape[0]
    cxcywh = torch.cat([centres.expand(-1, k, 2), shapes.unsqueeze(0).expand(centres.shape[0], k, 2)], dim=-1)
    return cxcywh_to_xyxy(cxcywh.reshape(-1, 4))


def make_anchors(
    input_size: tuple[int, int],
    grid_sizes: Sequence[tuple[int, int]],
    base_sizes: Sequence[float],
    scales: Sequence[float],
    aspect_ratios: Sequence[float],
) -> Tensor:
    """Anchors of several feature maps, concatenated level by level: (A, 4) xyxy input pixels.

    grid_sizes: (gh, gw) per level; base_sizes: anchor side in pixels per level.
    A = sum(gh * gw) * len(scales) * len(aspect_ratios).
    """
    if len(grid_sizes) != len(base_sizes):
        raise ValueError(f"one base size per grid needed: {len(grid_sizes)} grids, {len(base_sizes)} sizes")
    return torch.cat(
        [grid_anchors(g, input_size, b, scales, aspect_ratios) for g, b in zip(grid_sizes, base_sizes)], dim=0
    )


def match(anchors: Tensor, gt_boxes: Tensor, iou_threshold: float = 0.5) -> Tensor:
    """Assign ground truths to anchors: LongTensor (A,) with a ground-truth index or -1.

    anchors: (A, 4) xyxy; gt_boxes: (G, 4) xyxy, same pixel frame.
    1. Greedy bipartite: repeatedly take the global maximum of the (G, A) IoU
       matrix, assign that anchor to that ground truth, and remove that row and
       column, so every ground truth claims one anchor and no anchor is claimed
       twice (pairs with IoU 0 are never forced).
    2. Every anchor still free takes its best ground truth if that IoU >= iou_threshold.
    """
    num_anchors = anchors.shape[0]
    assigned = torch.full((num_anchors,), -1, dtype=torch.long, device=anchors.device)
    if gt_boxes.numel() == 0 or num_anchors == 0:
        return assigned
    overlaps = iou(gt_boxes.to(anchors.dtype), anchors)  # (G, A)
    best_iou, best_gt = overlaps.max(dim=0)
    take = best_iou >= iou_threshold
    assigned[take] = best_gt[take]
    work = overlaps.clone()
    for _ in range(min(work.shape)):
        flat = int(torch.argmax(work))
        g, a = divmod(flat, num_anchors)
        if work[g, a] <= 0:
            break
        assigned[a] = g
        work[g, :] = -1.0
        work[:, a] = -1.0
    return assigned


def match_batch(anchors: Tensor, gt_boxes: Tensor, gt_valid: Tensor, iou_threshold: float = 0.5) -> Tensor:
    """``match`` for a whole batch at once, without a host sync per ground truth (the training hot path).

    anchors: (A, 4) xyxy; gt_boxes: (B, G, 4) xyxy, padded; gt_valid: (B, G) bool, False for padding.
    Returns LongTensor (B, A): per image, exactly what ``match`` returns for its valid boxes (indices
    into the padded G axis). The greedy bipartite step runs G rounds, each taking every image's
    global maximum of its remaining (G, A) IoU matrix at once.
    """
    batch, num_gt = gt_valid.shape
    num_anchors = anchors.shape[0]
    assigned = torch.full((batch, num_anchors), -1, dtype=torch.long, device=anchors.device)
    if num_gt == 0 or num_anchors == 0 or batch == 0:
        return assigned
    overlaps = iou(gt_boxes.reshape(-1, 4).to(anchors.dtype), anchors).reshape(batch, num_gt, num_anchors)
    overlaps = overlaps.masked_fill(~gt_valid[:, :, None], -1.0)  # padding never wins
    best_iou, best_gt = overlaps.max(dim=1)  # (B, A)
    assigned = torch.where(best_iou >= iou_threshold, best_gt, assigned)
    work = overlaps
    rows = torch.arange(batch, device=anchors.device)
    gt_ids = torch.arange(num_gt, device=anchors.device)
    anchor_ids = torch.arange(num_anchors, device=anchors.device)
    for _ in range(min(num_gt, num_anchors)):
        value, flat = work.reshape(batch, -1).max(dim=1)  # first maximum, as torch.argmax in ``match``
        g, a = flat // num_anchors, flat % num_anchors
        ok = value > 0
        assigned[rows, a] = torch.where(ok, g, assigned[rows, a])
        work = work.masked_fill(((gt_ids[None, :] == g[:, None]) & ok[:, None])[:, :, None], -1.0)
        work = work.masked_fill(((anchor_ids[None, :] == a[:, None]) & ok[:, None])[:, None, :], -1.0)
    return assigned


def encode(boxes: Tensor, anchors: Tensor, variances: Sequence[float] = DEFAULT_VARIANCES) -> Tensor:
    """SSD encoding of xyxy boxes (N, 4) relative to their xyxy anchors (N, 4) -> deltas (N, 4):
    ((cx - acx) / (aw * v0), (cy - acy) / (ah * v0), log(w / aw) / v1, log(h / ah) / v1)."""
    b = xyxy_to_cxcywh(boxes)
    a = xyxy_to_cxcywh(anchors)
    centre = (b[:, :2] - a[:, :2]) / (a[:, 2:] * variances[0])
    size = torch.log(b[:, 2:].clamp(min=1e-6) / a[:, 2:]) / variances[1]
    return torch.cat([centre, size], dim=1)


def decode(deltas: Tensor, anchors: Tensor, variances: Sequence[float] = DEFAULT_VARIANCES) -> Tensor:
    """Inverse of :func:`encode`: deltas (..., N, 4) and anchors (N, 4) xyxy -> boxes (..., N, 4) xyxy."""
    a = xyxy_to_cxcywh(anchors)
    centre = deltas[..., :2] * variances[0] * a[:, 2:] + a[:, :2]
    size = torch.exp((deltas[..., 2:] * variances[1]).clamp(max=_MAX_LOG_RATIO)) * a[:, 2:]
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def rank_within_groups(groups: Tensor, scores: Tensor) -> Tensor:
    """Rank of each entry among the entries of its group, by score, highest first (0 = best).

    groups: (N,) long >= 0; scores: (N,). Returns (N,) long. Ties keep input order.
    """
    by_score = torch.argsort(scores, descending=True, stable=True)
    order = by_score[torch.argsort(groups[by_score], stable=True)]  # grouped, best first in each group
    sorted_groups = groups[order]
    counts = torch.bincount(sorted_groups)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device) - starts[sorted_groups]
    return rank


def decode_detections_batch(
    scores: Tensor,
    deltas: Tensor,
    anchors: Tensor,
    image_size: tuple[int, int],
    score_threshold: float = 0.3,
    iou_threshold: float = 0.45,
    top_k: int = 100,
    variances: Sequence[float] = DEFAULT_VARIANCES,
    pre_nms_top_k: int = 1000,
) -> list[dict[str, Tensor]]:
    """Detections of a batch of images: decode, score threshold, top-k, per-class NMS.

    scores: (B, A, C) probabilities of the C object classes (background excluded);
    deltas: (B, A, 4) encoded boxes; anchors: (A, 4) xyxy; image_size (H, W) for clipping.
    In each image, candidates are (anchor, class) pairs with score > score_threshold; the
    image's best ``pre_nms_top_k`` of them go through ``torchvision.ops.batched_nms`` (boxes
    of the same image and class overlapping more than iou_threshold are suppressed; other
    classes and other images never suppress each other), and the image's best ``top_k``
    survive; equal scores rank by (anchor, class) index, so an image decodes the same in any
    batch. The whole batch is one pass (two host syncs), not a loop over images.
    Returns B dicts {"boxes": (K, 4) xyxy clipped, "scores": (K,), "labels": (K,) long in 1..C},
    highest score first; boxes of zero area after clipping are dropped.
    """
    batch, _, num_classes = scores.shape
    # (image, anchor, class) of the candidates, in (anchor, class) order within each image; no copy
    # of ``scores`` (often a strided view: softmax(...)[..., 1:])
    image, anchor_idx, cls = torch.nonzero(scores > score_threshold, as_tuple=True)
    cand_scores = scores[image, anchor_idx, cls]
    best = rank_within_groups(image, cand_scores) < pre_nms_top_k
    image, anchor_idx, cand_scores = image[best], anchor_idx[best], cand_scores[best]
    labels = cls[best] + 1
    boxes = clip_boxes(decode(deltas[image, anchor_idx], anchors[anchor_idx], variances), image_size)
    nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, cand_scores, labels, image = boxes[nonempty], cand_scores[nonempty], labels[nonempty], image[nonempty]
    kept = batched_nms(boxes, cand_scores, image * num_classes + labels - 1, iou_threshold)
    # batched_nms orders equal scores arbitrarily (and a saturated softmax gives many exact 1.0s):
    # back to candidate order, so ties go to the lower (anchor, class) index whatever else is in the batch
    kept = kept.sort().values
    rank = rank_within_groups(image[kept], cand_scores[kept])
    best = rank < top_k
    kept, rank = kept[best], rank[best]
    kept = kept[torch.argsort(image[kept] * top_k + rank)]  # grouped by image, best first
    counts = torch.bincount(image[kept], minlength=batch).tolist()
    return [{"boxes": b, "scores": s, "labels": c} for b, s, c in
            zip(boxes[kept].split(counts), cand_scores[kept].split(counts), labels[kept].split(counts))]


def decode_detections(
    scores: Tensor,
    deltas: Tensor,
    anchors: Tensor,
    image_size: tuple[int, int],
    score_threshold: float = 0.3,
    iou_threshold: float = 0.45,
    top_k: int = 100,
    variances: Sequence[float] = DEFAULT_VARIANCES,
    pre_nms_top_k: int = 1000,
) -> dict[str, Tensor]:
    """Detections of one image: :func:`decode_detections_batch` of a batch of one.

    scores: (A, C) probabilities of the C object classes (background excluded);
    deltas: (A, 4) encoded boxes; anchors: (A, 4) xyxy; image_size (H, W) for clipping.
    Returns {"boxes": (K, 4) xyxy clipped, "scores": (K,), "labels": (K,) long in 1..C},
    highest score first; boxes of zero area after clipping are dropped.
    """
    return decode_detections_batch(scores[None], deltas[None], anchors, image_size, score_threshold,
                                   iou_threshold, top_k, variances, pre_nms_top_k)[0]
