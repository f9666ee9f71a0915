"""Evaluation numbers: classification metrics and detection mAP.

Classification: accuracy, per-class precision / recall / F1 / support, a
confusion matrix (rows = true class, columns = predicted class).

Steer (the direction network's continuous head): mean absolute error against the
frames' continuous steer label, beside the classifier's p(right) - p(left) and a
constant 0 on the same frames (:func:`steer_metrics`).

Detection: torchmetrics ``MeanAveragePrecision`` (pycocotools backend), COCO
style: mAP@[.5:.95] and mAP@0.5, overall and per class, plus the precision
table behind PR curves, and a greedy IoU >= 0.5 matching per image that finds
the misses and false alarms shown in the gallery.

Size bands: mAP@0.5 per class again for boxes of one height band
(``HEIGHT_BANDS``, KITTI-style difficulty by pixel height, as fractions of the
image height). Boxes outside the band become COCO "crowd" (ignore) regions:
missing them costs nothing and a detection that lands on one is neither a hit
nor a false alarm; a detection on nothing is a false alarm in every band.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from perception.boxes import iou


def classification_metrics(probs: torch.Tensor, targets: torch.Tensor, classes: tuple[str, ...]) -> dict:
    """probs (N, C) softmax probabilities, targets (N,) int64 -> JSON-able metrics dict."""
    num = len(classes)
    preds = probs.argmax(dim=1)
    confusion = torch.zeros((num, num), dtype=torch.int64)
    confusion.index_put_((targets, preds), torch.ones_like(targets), accumulate=True)
    true_pos = confusion.diag().double()
    predicted = confusion.sum(dim=0).double()
    actual = confusion.sum(dim=1).double()
    precision = torch.where(predicted > 0, true_pos / predicted.clamp(min=1), torch.zeros_like(true_pos))
    recall = torch.where(actual > 0, true_pos / actual.clamp(min=1), torch.zeros_like(true_pos))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12),
                     torch.zeros_like(true_pos))
    per_class = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
               "support": int(actual[i])}
        for i, name in enumerate(classes)
    }
    nll = -torch.log(probs.gather(1, targets[:, None]).clamp(min=1e-12)).squeeze(1)
    present = actual > 0
    return {
        "frames": int(targets.numel()),
        "accuracy": float((preds == targets).double().mean()) if targets.numel() else 0.0,
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "loss": float(nll.mean()) if targets.numel() else 0.0,
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
        "classes": list(classes),
    }


def expected_steer(probs: torch.Tensor, classes: tuple[str, ...]) -> torch.Tensor:
    """The classifier's estimate of the steer: p(right) - p(left), (N,) from probs (N, C); in [-1, 1],
    + = right (zero when the classes lack "left" or "right")."""
    zero = torch.zeros(probs.shape[0], dtype=probs.dtype)
    right = probs[:, classes.index("right")] if "right" in classes else zero
    left = probs[:, classes.index("left")] if "left" in classes else zero
    return right - left


def steer_metrics(targets: torch.Tensor, expected: torch.Tensor, head: torch.Tensor | None = None) -> dict:
    """Mean absolute errors against the continuous steer label, over the frames that have one.

    targets (N,) float: the label ([-1, 1], + = right), NaN where a frame has none; expected (N,):
    the classifier's p(right) - p(left); head (N,) or None: the steer head's output (None: a network
    without the head). -> {"steer_frames": frames with a label, "steer_mae": head vs label (None
    without the head or without labelled frames), "steer_mae_expected": p(right) - p(left) vs label,
    "steer_mae_zero": a constant 0 (straight ahead) vs label: the mean |label|, the floor any
    estimate must beat}.
    """
    labelled = torch.isfinite(targets)
    n = int(labelled.sum())
    if n == 0:
        return {"steer_frames": 0, "steer_mae": None, "steer_mae_expected": None, "steer_mae_zero": None}
    label = targets[labelled].double()

    def mae(pred: torch.Tensor) -> float:
        return float((pred[labelled].double() - label).abs().mean())

    return {"steer_frames": n, "steer_mae": mae(head) if head is not None else None,
            "steer_mae_expected": mae(expected), "steer_mae_zero": float(label.abs().mean())}


#: Height bands of the size breakdown: name -> [low, high) box height as a fraction of the image
#: height. At the simulator's 240-px frames: small < 8 px, medium 8-16 px, large >= 16 px; the
#: sim labels boxes from 4 px up (far objects), which at the 144-px model input are 2.4 px tall.
HEIGHT_BANDS: dict[str, tuple[float, float]] = {
    "small": (0.0, 1.0 / 30.0),
    "medium": (1.0 / 30.0, 1.0 / 15.0),
    "large": (1.0 / 15.0, float("inf")),
    "medium+large": (1.0 / 30.0, float("inf")),
}


@dataclass(frozen=True)
class DetectionMatch:
    """Errors in one image at IoU >= iou_threshold among predictions scoring >= score_threshold.

    misses: indices of ground-truth boxes no prediction of their class found.
    false_alarms: indices of predictions that matched no ground truth of their class.
    """

    misses: tuple[int, ...]
    false_alarms: tuple[int, ...]


def match_detections(pred: dict, target: dict, iou_threshold: float = 0.5,
                     score_threshold: float = 0.3) -> DetectionMatch:
    """Greedy (highest score first) same-class matching for one image.

    pred: {"boxes" (P,4) xyxy, "scores" (P,), "labels" (P,)}; target: {"boxes" (G,4), "labels" (G,)}.
    """
    keep = torch.nonzero(pred["scores"] >= score_threshold).flatten()
    order = keep[pred["scores"][keep].argsort(descending=True)]
    gt_boxes, gt_labels = target["boxes"], target["labels"]
    taken = torch.zeros(len(gt_labels), dtype=torch.bool)
    false_alarms = []
    if len(order) and len(gt_labels):
        ious = iou(pred["boxes"][order].float(), gt_boxes.float())
    for rank, p in enumerate(order.tolist()):
        if not len(gt_labels):
            false_alarms.append(p)
            continue
        candidates = (gt_labels == pred["labels"][p]) & ~taken & (ious[rank] >= iou_threshold)
        if candidates.any():
            best = torch.where(candidates, ious[rank], torch.full_like(ious[rank], -1)).argmax()
            taken[best] = True
        else:
            false_alarms.append(p)
    misses = tuple(torch.nonzero(~taken).flatten().tolist())
    return DetectionMatch(misses=misses, false_alarms=tuple(false_alarms))


def _per_class(result: dict, classes: tuple[str, ...]) -> dict[str, float]:
    """torchmetrics' map_per_class as {class name: value}, -1 for classes it did not report."""
    values = result["map_per_class"].flatten().tolist()
    ids = result["classes"].flatten().tolist()
    out = {name: -1.0 for name in classes}
    for cls_id, value in zip(ids, values):
        if 1 <= cls_id <= len(classes):
            out[classes[cls_id - 1]] = float(value)
    return out


def _ground_truth_counts(targets: list[dict], classes: tuple[str, ...]) -> dict[str, int]:
    """Boxes per class, leaving out those marked ``iscrowd`` (ignore regions)."""
    counts = {name: 0 for name in classes}
    for t in targets:
        crowd = t.get("iscrowd", torch.zeros_like(t["labels"]))
        for label, ignored in zip(t["labels"].tolist(), crowd.tolist()):
            if 1 <= label <= len(classes) and not ignored:
                counts[classes[label - 1]] += 1
    return counts


def height_band_metrics(preds: list[dict], targets: list[dict], classes: tuple[str, ...], image_height: float,
                        bands: dict[str, tuple[float, float]] | None = None) -> dict:
    """mAP@0.5 overall and per class for each height band of the ground truth.

    preds / targets as in :func:`detection_metrics`, boxes in px of images ``image_height`` px tall.
    bands: name -> [low, high) box height / image_height (default ``HEIGHT_BANDS``).
    Returns {band: {"height_fraction": [low, high], "height_px": [low, high] in these images' px,
    "map_50", "min_class_ap_50", "per_class": {name: {"ap_50", "ground_truth"}}}}; a class with no
    box in the band has ap_50 -1 and is left out of map_50 and min_class_ap_50.
    """
    from torchmetrics.detection import MeanAveragePrecision

    if image_height <= 0:
        raise ValueError(f"height_band_metrics: image_height must be > 0 px, got {image_height}")
    preds = [{k: v.detach().cpu() for k, v in p.items()} for p in preds]
    truth = []  # (boxes, labels, height fraction) per image, for every band
    for t in targets:
        boxes = t["boxes"].detach().cpu().reshape(-1, 4).float()
        truth.append((boxes, t["labels"].detach().cpu(), (boxes[:, 3] - boxes[:, 1]) / image_height))
    out = {}
    for name, (low, high) in (bands or HEIGHT_BANDS).items():
        banded = [{"boxes": boxes, "labels": labels, "iscrowd": ((fraction < low) | (fraction >= high)).long()}
                  for boxes, labels, fraction in truth]
        metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", iou_thresholds=[0.5], class_metrics=True,
                                      backend="pycocotools", sync_on_compute=False)
        metric.update(preds, banded)
        ap50 = _per_class(metric.compute(), classes)
        counts = _ground_truth_counts(banded, classes)
        present = [ap50[c] for c in classes if counts[c] > 0]
        out[name] = {
            "height_fraction": [low, high if high != float("inf") else None],
            "height_px": [low * image_height, high * image_height if high != float("inf") else None],
            "map_50": float(sum(present) / len(present)) if present else -1.0,
            "min_class_ap_50": float(min(present)) if present else -1.0,
            "per_class": {c: {"ap_50": ap50[c] if counts[c] > 0 else -1.0, "ground_truth": counts[c]}
                          for c in classes},
        }
    return out


def detection_metrics(preds: list[dict], targets: list[dict], classes: tuple[str, ...],
                      image_height: float | None = None) -> tuple[dict, dict]:
    """COCO-style mAP with torchmetrics.

    preds: per image {"boxes" (P,4) xyxy px, "scores" (P,), "labels" (P,) int64 in 1..C};
    targets: per image {"boxes" (G,4) xyxy px, "labels" (G,)}.
    image_height: the images' height in px; when given, metrics["by_height"] holds
    :func:`height_band_metrics` (mAP@0.5 per box-height band).
    Returns (metrics JSON-able dict, curves dict with "recall" (101,) and
    "precision" {class name: (101,) precision at IoU 0.5, -1 where undefined}).
    Per-class values are -1 for classes with no ground truth in the data.
    """
    from torchmetrics.detection import MeanAveragePrecision

    # sync_on_compute=False: under DDP only rank 0 evaluates, on the whole validation set; the default
    # all_gather would wait for ranks that never call it
    coco = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True, extended_summary=True,
                                backend="pycocotools", sync_on_compute=False)
    at_50 = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", iou_thresholds=[0.5], class_metrics=True,
                                 backend="pycocotools", sync_on_compute=False)
    preds = [{k: v.detach().cpu() for k, v in p.items()} for p in preds]
    targets = [{k: v.detach().cpu() for k, v in t.items()} for t in targets]
    coco.update(preds, targets)
    at_50.update(preds, targets)
    full = coco.compute()
    half = at_50.compute()

    gt_counts = _ground_truth_counts(targets, classes)
    ap50 = _per_class(half, classes)
    ap = _per_class(full, classes)
    for name, count in gt_counts.items():  # a class without ground truth has no AP
        if count == 0:
            ap50[name] = ap[name] = -1.0
    metrics = {
        "images": len(targets),
        "map_50": float(full["map_50"]),
        "map": float(full["map"]),
        "map_75": float(full["map_75"]),
        "mar_100": float(full["mar_100"]),
        "per_class": {name: {"ap_50": ap50[name], "ap": ap[name], "ground_truth": gt_counts[name]}
                      for name in classes},
        "classes": list(classes),
    }
    present = [v for name, v in ap50.items() if gt_counts[name] > 0]
    metrics["min_class_ap_50"] = float(min(present)) if present else 0.0
    if image_height is not None:
        metrics["by_height"] = height_band_metrics(preds, targets, classes, image_height)

    curves = {"recall": torch.linspace(0, 1, 101).tolist(), "precision": {}}
    precision = full.get("precision")
    ids = full["classes"].flatten().tolist()
    if isinstance(precision, torch.Tensor) and precision.ndim == 5:
        # (T iou thresholds, R recall points, K classes, A areas, M max-dets); T[0] is IoU 0.5, A[0] all, M[-1] 100
        for k, cls_id in enumerate(ids):
            if 1 <= cls_id <= len(classes) and k < precision.shape[2]:
                curves["precision"][classes[cls_id - 1]] = precision[0, :, k, 0, -1].tolist()
    return metrics, curves
