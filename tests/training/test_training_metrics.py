"""Metrics: classification numbers on a known confusion, mAP on perfect and imperfect detections."""
from __future__ import annotations

import torch

from training.metrics import classification_metrics, detection_metrics, match_detections

CLASSES = ("car", "truck", "person", "sign")


def test_classification_metrics_known_confusion():
    targets = torch.tensor([0, 0, 1, 1, 1, 2])
    preds = torch.tensor([0, 1, 1, 1, 1, 2])
    probs = torch.nn.functional.one_hot(preds, 3).float() * 0.8 + 0.2 / 3
    m = classification_metrics(probs, targets, ("left", "straight", "right"))
    assert m["accuracy"] == 5 / 6
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 3, 0], [0, 0, 1]]
    assert m["per_class"]["left"]["recall"] == 0.5 and m["per_class"]["left"]["precision"] == 1.0
    assert m["per_class"]["straight"]["precision"] == 0.75 and m["per_class"]["straight"]["recall"] == 1.0
    assert m["per_class"]["right"]["support"] == 1


def _targets():
    return [
        {"boxes": torch.tensor([[10.0, 10, 50, 40], [60, 20, 90, 60]]), "labels": torch.tensor([1, 3])},
        {"boxes": torch.tensor([[5.0, 5, 30, 30]]), "labels": torch.tensor([2])},
    ]


def test_perfect_detections_score_one_and_absent_class_is_minus_one():
    targets = _targets()
    preds = [{"boxes": t["boxes"].clone(), "scores": torch.full((len(t["labels"]),), 0.9), "labels": t["labels"]}
             for t in targets]
    metrics, curves = detection_metrics(preds, targets, CLASSES)
    assert abs(metrics["map_50"] - 1.0) < 1e-6 and abs(metrics["map"] - 1.0) < 1e-6
    assert metrics["per_class"]["car"]["ap_50"] > 0.99 and metrics["per_class"]["person"]["ap_50"] > 0.99
    assert metrics["per_class"]["sign"]["ap_50"] == -1.0 and metrics["per_class"]["sign"]["ground_truth"] == 0
    assert set(curves["precision"]) >= {"car", "truck", "person"}
    assert len(curves["recall"]) == 101


def test_missed_and_shifted_detections_lower_map_and_are_found():
    targets = _targets()
    preds = [
        {"boxes": torch.tensor([[10.0, 10, 50, 40], [0, 0, 8, 8]]), "scores": torch.tensor([0.9, 0.8]),
         "labels": torch.tensor([1, 4])},  # person missed, a false sign
        {"boxes": torch.tensor([[5.0, 5, 30, 30]]), "scores": torch.tensor([0.7]), "labels": torch.tensor([1])},
    ]  # right box, wrong class
    metrics, _ = detection_metrics(preds, targets, CLASSES)
    assert metrics["per_class"]["car"]["ap_50"] > 0.99  # the false car scores below the true one
    assert metrics["per_class"]["truck"]["ap_50"] == 0.0
    assert metrics["per_class"]["person"]["ap_50"] == 0.0
    assert metrics["map_50"] < 0.5
    m0 = match_detections(preds[0], targets[0], 0.5, 0.3)
    assert m0.misses == (1,) and m0.false_alarms == (1,)
    m1 = match_detections(preds[1], targets[1], 0.5, 0.3)
    assert m1.misses == (0,) and m1.false_alarms == (0,)
