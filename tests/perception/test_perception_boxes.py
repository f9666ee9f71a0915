"""Hand-computed checks of perception.boxes: conversions, IoU, clipping and scaling, and that
the torch, numpy and plain-Python paths agree."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from perception import boxes as B

A_BOX = [0.0, 0.0, 10.0, 10.0]
OTHERS = [[5.0, 0.0, 15.0, 10.0],    # intersection 50, union 150
          [20.0, 20.0, 30.0, 30.0],  # disjoint
          [0.0, 0.0, 10.0, 10.0],    # the same box
          [2.0, 2.0, 4.0, 6.0],      # inside: 8 / 100
          [10.0, 0.0, 20.0, 10.0]]   # touching edges: no overlap
EXPECTED = [50 / 150, 0.0, 1.0, 8 / 100, 0.0]


def test_xyxy_cxcywh_round_trip_and_values():
    xyxy = torch.tensor([[10.0, 20.0, 50.0, 40.0], [0.0, 0.0, 1.0, 3.0]])
    cxcywh = B.xyxy_to_cxcywh(xyxy)
    assert torch.allclose(cxcywh, torch.tensor([[30.0, 30.0, 40.0, 20.0], [0.5, 1.5, 1.0, 3.0]]))
    assert torch.allclose(B.cxcywh_to_xyxy(cxcywh), xyxy)


def test_iou_by_hand_all_paths():
    assert torch.allclose(B.iou(torch.tensor([A_BOX]), torch.tensor(OTHERS)), torch.tensor([EXPECTED]))
    assert np.allclose(B.iou_np(np.array([A_BOX]), np.array(OTHERS)), [EXPECTED])
    assert [B.pair_iou(A_BOX, o) for o in OTHERS] == pytest.approx(EXPECTED)
    assert B.pair_iou(OTHERS[0], A_BOX) == pytest.approx(50 / 150)  # symmetric


def test_iou_of_empty_union_is_zero_in_numpy_and_plain():
    point = [3.0, 3.0, 3.0, 3.0]
    assert B.pair_iou(point, point) == 0.0
    assert B.iou_np(np.array([point]), np.array([point])).tolist() == [[0.0]]
    assert B.iou_np(np.zeros((0, 4)), np.array(OTHERS)).shape == (0, len(OTHERS))


def test_iou_numpy_and_torch_agree_on_random_boxes():
    rng = np.random.default_rng(0)
    def random_boxes(n):
        xy = rng.uniform(0, 100, (n, 2))
        return np.concatenate([xy, xy + rng.uniform(1, 40, (n, 2))], axis=1)
    a, b = random_boxes(40), random_boxes(30)
    from_torch = B.iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    assert from_torch.max() > 0.2  # the check means something: some pairs overlap a lot
    assert np.allclose(B.iou_np(a, b), from_torch, atol=1e-12)
    assert np.allclose([[B.pair_iou(x, y) for y in b] for x in a], from_torch, atol=1e-12)


def test_clip_by_hand_all_paths():
    boxes = [[-5.0, -2.0, 20.0, 8.0], [30.0, 5.0, 50.0, 25.0], [1.0, 1.0, 2.0, 2.0]]
    size = (20, 40)  # (H, W): x to [0, 40], y to [0, 20]
    expected = [[0.0, 0.0, 20.0, 8.0], [30.0, 5.0, 40.0, 20.0], [1.0, 1.0, 2.0, 2.0]]
    assert B.clip_boxes(torch.tensor(boxes), size).tolist() == expected
    clipped = B.clip_boxes_np(np.array(boxes, dtype=np.float32), size)
    assert clipped.dtype == np.float32 and clipped.tolist() == expected
    assert B.clip_box_list(boxes, size) == expected
    assert B.clip_box_list(np.array(boxes, dtype=np.float32), size) == expected


def test_clip_numpy_does_not_change_its_input():
    boxes = np.array([[-5.0, -2.0, 50.0, 30.0]])
    B.clip_boxes_np(boxes, (20, 40))
    assert boxes.tolist() == [[-5.0, -2.0, 50.0, 30.0]]


def test_scale_by_hand_and_paths_agree():
    boxes = [[10.0, 20.0, 30.0, 40.0]]
    expected = [[20.0, 10.0, 60.0, 20.0]]  # (240, 320) -> (120, 640): x * 2, y / 2
    scaled = B.scale_boxes(torch.tensor(boxes), (240, 320), (120, 640))
    assert scaled.dtype == torch.float32 and scaled.tolist() == expected
    scaled_np = B.scale_boxes_np(np.array(boxes, dtype=np.float32), (240, 320), (120, 640))
    assert scaled_np.dtype == np.float32 and scaled_np.tolist() == expected
    assert B.scale_boxes_np(np.array([[10, 20, 30, 40]]), (240, 320), (120, 640)).tolist() == expected
    rng = np.random.default_rng(1)
    many = rng.uniform(0, 300, (50, 4)).astype(np.float32)
    assert np.array_equal(B.scale_boxes_np(many, (225, 400), (224, 224)),
                          B.scale_boxes(torch.from_numpy(many), (225, 400), (224, 224)).numpy())


def test_import_does_not_load_torch():
    code = "import sys, perception.boxes; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
