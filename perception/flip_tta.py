"""Test-time augmentation by horizontal flip: fuse a detector's detections of an image
with its detections of the mirrored image.

The model runs twice (the image, then the image flipped left-right); the second pass's
boxes are mirrored back and the two sets are fused by weighted box fusion (Solovyev et
al., "Weighted boxes fusion", 2021) rather than plain NMS: boxes of one class that
overlap are averaged, weighted by score, so the two passes' localisation errors partly
cancel (this matters most for small boxes, where 1 px is much of the IoU). A fused
score is the mean over the two passes of each pass's best score in the cluster, so an
object seen in only one pass keeps half its score.

Boxes are xyxy float tensors in pixels of the model input (as ``SSDNet.detect`` returns).
Costs two forward passes; meant for offline evaluation, not for the driving loop on CPU.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from perception.boxes import iou

__all__ = ["mirror_boxes", "fuse_flip_detections", "fuse_flip_batch"]

#: Boxes of one class overlapping at least this much (IoU) are fused (the WBF paper's default).
DEFAULT_FUSION_IOU = 0.55


def mirror_boxes(boxes: Tensor, image_width: float) -> Tensor:
    """xyxy boxes (N, 4) in an image of width ``image_width`` px -> the same boxes in the image
    flipped left-right (x -> W - x; x1 and x2 swap so x1 <= x2 still holds)."""
    out = boxes.clone()
    out[:, 0] = image_width - boxes[:, 2]
    out[:, 2] = image_width - boxes[:, 0]
    return out


def fuse_flip_detections(plain: dict[str, Tensor], flipped: dict[str, Tensor], image_width: float,
                         iou_threshold: float = DEFAULT_FUSION_IOU, top_k: int = 100) -> dict[str, Tensor]:
    """Weighted box fusion of one image's two passes.

    plain: detections of the image; flipped: detections of the image flipped left-right
    (boxes in the flipped image's coordinates). Each is {"boxes": (K, 4) xyxy px,
    "scores": (K,), "labels": (K,) long}. Clusters: non-maximum suppression at
    ``iou_threshold`` per class picks the cluster heads; every box joins the head of its
    class it overlaps most. Fused box: score-weighted mean of the cluster's boxes; fused
    score: (best score of pass 1 in the cluster + best of pass 2) / 2.
    Returns the same dict format, at most ``top_k`` detections, highest score first.
    """
    boxes = torch.cat([plain["boxes"], mirror_boxes(flipped["boxes"], image_width)])
    scores = torch.cat([plain["scores"], flipped["scores"]])
    labels = torch.cat([plain["labels"], flipped["labels"]])
    passes = torch.cat([torch.zeros(len(plain["scores"]), dtype=torch.long, device=scores.device),
                        torch.ones(len(flipped["scores"]), dtype=torch.long, device=scores.device)])
    if boxes.numel() == 0:
        return {"boxes": boxes.reshape(0, 4), "scores": scores, "labels": labels}
    heads = batched_nms(boxes, scores, labels, iou_threshold)  # best first
    overlap = iou(boxes[heads], boxes)  # (H, N)
    overlap = overlap.masked_fill(labels[heads][:, None] != labels[None, :], -1.0)
    cluster = overlap.argmax(dim=0)  # (N,) index into heads; a head is its own best (IoU 1)
    n = len(heads)
    weight_sum = torch.zeros(n, dtype=scores.dtype, device=scores.device).index_add_(0, cluster, scores)
    fused = torch.zeros(n, 4, dtype=boxes.dtype, device=boxes.device).index_add_(0, cluster, boxes * scores[:, None])
    fused = fused / weight_sum.clamp(min=1e-12)[:, None]
    best_per_pass = torch.zeros(n * 2, dtype=scores.dtype, device=scores.device)
    best_per_pass = best_per_pass.scatter_reduce(0, cluster * 2 + passes, scores, reduce="amax")
    fused_scores = best_per_pass.view(n, 2).mean(dim=1)
    order = torch.argsort(fused_scores, descending=True, stable=True)[:top_k]
    return {"boxes": fused[order], "scores": fused_scores[order], "labels": labels[heads][order]}


def fuse_flip_batch(plain: list[dict[str, Tensor]], flipped: list[dict[str, Tensor]], image_width: float,
                    iou_threshold: float = DEFAULT_FUSION_IOU, top_k: int = 100) -> list[dict[str, Tensor]]:
    """:func:`fuse_flip_detections` image by image (two lists of per-image dicts, same order)."""
    if len(plain) != len(flipped):
        raise ValueError(f"fuse_flip_batch: {len(plain)} plain results but {len(flipped)} flipped ones")
    return [fuse_flip_detections(p, f, image_width, iou_threshold, top_k) for p, f in zip(plain, flipped)]
