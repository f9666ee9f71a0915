"""Metrics: classification numbers on a known confusion, mAP on perfect and imperfect detections."""
from __future__ import annotations

import torch

from sim.labels import CLASSES
from training.metrics import classification_metrics, detection_metrics, match_detections


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


def test_height_bands_score_each_size_alone_and_ignore_the_other_sizes():
    # 120-px-tall images: "small" < 4 px, "medium" 4-8 px, "large" >= 8 px tall
    targets = [
        {"boxes": torch.tensor([[10.0, 10, 40, 60], [70, 50, 72, 53]]), "labels": torch.tensor([1, 1])},
        {"boxes": torch.tensor([[20.0, 20, 24, 26], [50, 30, 80, 70]]), "labels": torch.tensor([3, 3])},
    ]
    preds = [  # both large boxes found; the tiny car found too, with the top score; the 6-px person missed
        {"boxes": torch.tensor([[70.0, 50, 72, 53], [10, 10, 40, 60]]), "scores": torch.tensor([0.95, 0.9]),
         "labels": torch.tensor([1, 1])},
        {"boxes": torch.tensor([[50.0, 30, 80, 70], [90, 90, 99, 99]]), "scores": torch.tensor([0.8, 0.85]),
         "labels": torch.tensor([3, 3])},  # plus a false person that outscores the true one
    ]
    metrics, _ = detection_metrics(preds, targets, CLASSES, image_height=120)
    bands = metrics["by_height"]
    large, small, medium = bands["large"], bands["small"], bands["medium"]
    assert large["height_px"] == [8.0, None] and small["height_px"] == [0.0, 4.0]
    # the tiny car is ignored in "large": the detection on it is neither a hit nor a false alarm
    assert large["per_class"]["car"] == {"ap_50": 1.0, "ground_truth": 1}
    # the false person outscores the true one: precision 1/2 at recall 1 (COCO's 101-point AP)
    assert abs(large["per_class"]["person"]["ap_50"] - 0.5) < 0.01
    assert large["per_class"]["truck"]["ap_50"] == -1.0 and large["per_class"]["truck"]["ground_truth"] == 0
    assert abs(large["map_50"] - 0.75) < 0.01 and abs(large["min_class_ap_50"] - 0.5) < 0.01
    assert small["per_class"]["car"] == {"ap_50": 1.0, "ground_truth": 1} and small["per_class"]["person"]["ap_50"] == -1.0
    assert medium["per_class"]["person"] == {"ap_50": 0.0, "ground_truth": 1}
    assert medium["per_class"]["car"]["ground_truth"] == 0
    assert bands["medium+large"]["per_class"]["person"]["ground_truth"] == 2
    # without image_height there is no breakdown
    assert "by_height" not in detection_metrics(preds, targets, CLASSES)[0]
