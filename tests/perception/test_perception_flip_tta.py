"""Test-time flip augmentation: mirroring boxes and fusing the two passes (perception.flip_tta)."""
from __future__ import annotations

import pytest
import torch

from perception.flip_tta import fuse_flip_batch, fuse_flip_detections, mirror_boxes

W = 100.0


def dets(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores, dtype=torch.float32), "labels": torch.tensor(labels, dtype=torch.long)}


def test_mirror_boxes_flips_x_and_keeps_x1_left_of_x2():
    boxes = torch.tensor([[10.0, 5.0, 30.0, 25.0], [0.0, 0.0, 100.0, 50.0]])
    mirrored = mirror_boxes(boxes, W)
    assert mirrored.tolist() == [[70.0, 5.0, 90.0, 25.0], [0.0, 0.0, 100.0, 50.0]]
    assert torch.equal(mirror_boxes(mirrored, W), boxes)


def test_the_same_detections_from_both_passes_fuse_to_themselves():
    plain = dets([[10, 10, 20, 30], [50, 40, 90, 60], [12, 11, 21, 29]], [0.9, 0.7, 0.4], [1, 2, 3])
    flipped = {**plain, "boxes": mirror_boxes(plain["boxes"], W)}
    fused = fuse_flip_detections(plain, flipped, W)
    assert torch.allclose(fused["boxes"], plain["boxes"]) and torch.allclose(fused["scores"], plain["scores"])
    assert torch.equal(fused["labels"], plain["labels"])


def test_overlapping_boxes_of_one_class_average_by_score():
    plain = dets([[10, 10, 20, 30]], [0.8], [3])
    # the flipped pass saw the same walker 2 px to the right: (12, 10, 22, 30) in the image
    flipped = dets(mirror_boxes(torch.tensor([[12.0, 10.0, 22.0, 30.0]]), W).tolist(), [0.4], [3])
    fused = fuse_flip_detections(plain, flipped, W)
    assert len(fused["scores"]) == 1 and fused["labels"].tolist() == [3]
    x = (0.8 * 10 + 0.4 * 12) / 1.2
    assert fused["boxes"][0].tolist() == pytest.approx([x, 10.0, x + 10.0, 30.0])
    assert fused["scores"].item() == pytest.approx((0.8 + 0.4) / 2)


def test_one_pass_only_halves_the_score_and_classes_never_fuse():
    plain = dets([[10, 10, 20, 30], [60, 10, 70, 30]], [0.9, 0.6], [1, 1])
    flipped = dets(mirror_boxes(torch.tensor([[60.0, 10.0, 70.0, 30.0]]), W).tolist(), [0.5], [2])  # same place, a truck
    fused = fuse_flip_detections(plain, flipped, W)
    assert sorted(zip(fused["labels"].tolist(), [round(s, 4) for s in fused["scores"].tolist()])) == [
        (1, 0.3), (1, 0.45), (2, 0.25)]
    assert fused["scores"].tolist() == sorted(fused["scores"].tolist(), reverse=True)


def test_top_k_and_empty_passes():
    empty = dets([], [], [])
    out = fuse_flip_detections(empty, empty, W)
    assert out["boxes"].shape == (0, 4) and out["scores"].shape == (0,)
    many = dets([[i * 10.0, 0, i * 10.0 + 5, 5] for i in range(8)], [0.1 * (i + 1) for i in range(8)], [1] * 8)
    out = fuse_flip_detections(many, empty, W, top_k=3)
    assert out["scores"].tolist() == pytest.approx([0.4, 0.35, 0.3])
    with pytest.raises(ValueError, match="2 plain results but 1 flipped"):
        fuse_flip_batch([empty, empty], [empty], W)
