"""Hand-computed checks of perception.anchors: anchors, matching, encoding, decode + NMS."""
from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import batched_nms

from perception import anchors as A
from perception import boxes as B


def test_feature_map_size_rounds_up_like_resnet():
    assert A.feature_map_size((224, 224), 32) == (7, 7)
    assert A.feature_map_size((224, 224), 64) == (4, 4)
    assert A.feature_map_size((224, 224), 256) == (1, 1)
    assert A.feature_map_size((168, 224), 16) == (11, 14)
    with torch.no_grad():
        conv = torch.nn.Conv2d(1, 1, 3, stride=2, padding=1)
        assert conv(torch.zeros(1, 1, 7, 7)).shape[-1] == 4  # the rule the function encodes


def test_grid_anchors_small_map_by_hand():
    # 2x2 grid over a 40 (H) x 80 (W) input: cell 40 wide, 20 high; centres (20,10) (60,10) (20,30) (60,30)
    anchors = A.grid_anchors((2, 2), (40, 80), base_size=10.0, scales=(1.0, 2.0), aspect_ratios=(1.0, 4.0))
    assert anchors.shape == (2 * 2 * 4, 4)
    r = math.sqrt(4.0)
    first_cell = torch.tensor([
        [15.0, 5.0, 25.0, 15.0],                      # scale 1, ratio 1: 10 x 10
        [20 - 10 * r / 2, 10 - 10 / r / 2, 20 + 10 * r / 2, 10 + 10 / r / 2],  # scale 1, ratio 4: 20 x 5
        [10.0, 0.0, 30.0, 20.0],                      # scale 2, ratio 1: 20 x 20
        [0.0, 5.0, 40.0, 15.0],                       # scale 2, ratio 4: 40 x 10
    ])
    assert torch.allclose(anchors[:4], first_cell)
    # row-major: second cell is (row 0, column 1), centre (60, 10); third is (row 1, column 0), centre (20, 30)
    assert torch.allclose(anchors[4], torch.tensor([55.0, 5.0, 65.0, 15.0]))
    assert torch.allclose(anchors[8], torch.tensor([15.0, 25.0, 25.0, 35.0]))


def test_make_anchors_concatenates_levels_in_order():
    anchors = A.make_anchors((64, 64), [(2, 2), (1, 1)], [16.0, 48.0], (1.0,), (1.0,))
    assert anchors.shape == (5, 4)
    assert torch.allclose(anchors[0], torch.tensor([8.0, 8.0, 24.0, 24.0]))
    assert torch.allclose(anchors[4], torch.tensor([8.0, 8.0, 56.0, 56.0]))


def test_match_threshold_and_best_anchor():
    anchors = torch.tensor([
        [0.0, 0.0, 10.0, 10.0],
        [1.0, 0.0, 11.0, 10.0],    # IoU with gt0 = 90/110 = 0.818
        [100.0, 100.0, 110.0, 110.0],
        [0.0, 0.0, 10.0, 30.0],    # IoU with gt0 = 1/3: below 0.5
    ])
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    assert A.match(anchors, gt, 0.5).tolist() == [0, 0, -1, -1]
    assert A.match(anchors, gt, 0.3).tolist() == [0, 0, -1, 0]
    # a ground truth below every threshold still gets its best anchor
    assert A.match(anchors, gt, 0.99).tolist() == [0, -1, -1, -1]


def test_match_two_ground_truths_that_want_the_same_anchor():
    # Both ground truths overlap anchor 0 best. gt1 has the higher IoU with it (0.9 vs 0.6),
    # so gt1 claims anchor 0 first; gt0 then claims its best remaining anchor (anchor 1)
    # even though that IoU (0.25) is below the threshold.
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [4.0, 0.0, 14.0, 10.0]])
    gt = torch.tensor([
        [0.0, 0.0, 6.0, 10.0],    # IoU anchor0 = 60/100 = 0.6, anchor1 = 20/140 = 0.1429
        [0.0, 0.0, 9.0, 10.0],    # IoU anchor0 = 0.9, anchor1 = 50/140 = 0.357
    ])
    iou = B.iou(gt, anchors)
    assert torch.allclose(iou, torch.tensor([[0.6, 20 / 140], [0.9, 50 / 140]]))
    assert A.match(anchors, gt, 0.5).tolist() == [1, 0]


def test_match_greedy_takes_global_max_first():
    # gt0's best anchor is a0 (IoU 0.5); gt1's best is also a0 (0.8). The global max (gt1, a0)
    # is assigned first; gt0 then falls back to a1 (IoU 20/130), below the threshold but forced.
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 0.0, 30.0, 10.0]])
    gt = torch.tensor([[2.0, 0.0, 7.0, 10.0], [0.0, 0.0, 8.0, 10.0]])
    assert torch.allclose(B.iou(gt, anchors), torch.tensor([[0.5, 20 / 130, 0.0], [0.8, 30 / 150, 0.0]]))
    assert A.match(anchors, gt, 0.5).tolist() == [1, 0, -1]
    assert A.match(anchors, torch.zeros(0, 4), 0.5).tolist() == [-1, -1, -1]


def test_encode_decode_round_trip():
    g = torch.Generator().manual_seed(0)
    anchors = B.cxcywh_to_xyxy(torch.cat([torch.rand(500, 2, generator=g) * 200,
                                          torch.rand(500, 2, generator=g) * 60 + 4], dim=1))
    boxes = B.cxcywh_to_xyxy(torch.cat([torch.rand(500, 2, generator=g) * 200,
                                        torch.rand(500, 2, generator=g) * 90 + 2], dim=1))
    deltas = A.encode(boxes, anchors, (0.1, 0.2))
    back = A.decode(deltas, anchors, (0.1, 0.2))
    assert (back - boxes).abs().max().item() < 1e-5 * 200  # relative 1e-5 of the coordinate range
    assert torch.allclose(back, boxes, atol=1e-4, rtol=1e-5)


def test_encode_by_hand():
    anchor = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # centre (5, 10), 10 x 20
    box = torch.tensor([[1.0, 2.0, 21.0, 22.0]])     # centre (11, 12), 20 x 20
    expected = torch.tensor([[6 / (10 * 0.1), 2 / (20 * 0.1), math.log(2.0) / 0.2, 0.0]])
    assert torch.allclose(A.encode(box, anchor), expected, atol=1e-6)
    assert torch.allclose(A.decode(expected, anchor), box, atol=1e-5)


def test_decode_detections_nms_same_class_suppressed_other_class_kept():
    anchors = torch.tensor([
        [0.0, 0.0, 20.0, 20.0],
        [1.0, 1.0, 21.0, 21.0],     # IoU 0.82 with anchor 0
        [0.0, 0.0, 20.0, 20.0],     # same place as anchor 0
        [50.0, 50.0, 70.0, 70.0],
    ])
    deltas = torch.zeros(4, 4)  # boxes = anchors
    # classes: 2 object classes; column 0 = class 1, column 1 = class 2
    scores = torch.tensor([
        [0.90, 0.01],   # class 1, kept
        [0.80, 0.02],   # class 1, overlaps anchor 0 -> suppressed
        [0.05, 0.70],   # class 2 at the same place -> kept (different class)
        [0.20, 0.10],   # below the threshold
    ])
    out = A.decode_detections(scores, deltas, anchors, (100, 100), score_threshold=0.3, iou_threshold=0.45)
    assert out["labels"].tolist() == [1, 2]
    assert torch.allclose(out["scores"], torch.tensor([0.90, 0.70]))
    assert torch.allclose(out["boxes"], anchors[[0, 2]])
    # top_k keeps the best
    top1 = A.decode_detections(scores, deltas, anchors, (100, 100), 0.3, 0.45, top_k=1)
    assert top1["labels"].tolist() == [1]


def test_decode_detections_clips_and_drops_empty_boxes():
    anchors = torch.tensor([[-10.0, -10.0, 30.0, 30.0], [120.0, 120.0, 140.0, 140.0]])
    scores = torch.tensor([[0.9], [0.9]])
    out = A.decode_detections(scores, torch.zeros(2, 4), anchors, (100, 100), 0.3, 0.45)
    assert out["boxes"].tolist() == [[0.0, 0.0, 30.0, 30.0]]  # second box clips to nothing


def _decode_one_image_oracle(scores, deltas, anchors, size, thr, iou_thr, top_k, pre_nms_top_k):
    """The per-image decode written out plainly (what decode_detections did before it was batched)."""
    num_classes = scores.shape[1]
    flat = scores.reshape(-1)
    keep = torch.nonzero(flat > thr).squeeze(1)
    if keep.numel() > pre_nms_top_k:
        keep = keep[flat[keep].topk(pre_nms_top_k).indices]
    anchor_idx = torch.div(keep, num_classes, rounding_mode="floor")
    labels = keep % num_classes + 1
    cand = flat[keep]
    boxes = B.clip_boxes(A.decode(deltas[anchor_idx], anchors[anchor_idx]), size)
    ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, cand, labels = boxes[ok], cand[ok], labels[ok]
    kept = batched_nms(boxes, cand, labels, iou_thr)[:top_k]
    return {"boxes": boxes[kept], "scores": cand[kept], "labels": labels[kept]}


@pytest.mark.parametrize("pre_nms_top_k, top_k", [(1000, 100), (40, 7)])
def test_decode_detections_batch_equals_image_by_image(pre_nms_top_k, top_k):
    """A batch with crowded, empty and edge-clipped images decodes to what each image gives alone:
    nothing suppresses across images, and the caps are per image."""
    anchors = A.make_anchors((96, 128), [(12, 16), (6, 8)], [10.0, 24.0], (1.0,), (1.0, 2.0, 0.5))
    gen = torch.Generator().manual_seed(3)
    batch, num_classes = 6, 4
    scores = torch.rand(batch, anchors.shape[0], num_classes, generator=gen) ** 4  # a few above 0.3
    scores[2] = 0.0  # an image with no candidate
    scores[4] = scores[4] ** 0.1  # an image with more candidates than pre_nms_top_k
    deltas = torch.randn(batch, anchors.shape[0], 4, generator=gen) * 3  # some leave the image
    got = A.decode_detections_batch(scores, deltas, anchors, (96, 128), 0.3, 0.45, top_k, pre_nms_top_k=pre_nms_top_k)
    assert len(got) == batch
    for b in range(batch):
        want = _decode_one_image_oracle(scores[b], deltas[b], anchors, (96, 128), 0.3, 0.45, top_k, pre_nms_top_k)
        for key in ("boxes", "scores", "labels"):
            assert torch.equal(got[b][key], want[key]), (b, key)
    assert got[2]["boxes"].shape == (0, 4)
    assert len(got[4]["scores"]) == top_k  # capped
    assert all(len(d["scores"]) > 0 for i, d in enumerate(got) if i != 2)


def test_decode_detections_batch_breaks_score_ties_by_index_in_any_batch():
    """A saturated softmax gives exact 1.0s: which tied boxes survive top_k, and their order, is
    the lowest (anchor, class) index first, whatever else shares the batch."""
    anchors = A.make_anchors((96, 128), [(12, 16)], [6.0], (1.0,), (1.0,))  # 192 disjoint-ish boxes
    gen = torch.Generator().manual_seed(5)
    scores = torch.rand(3, anchors.shape[0], 2, generator=gen) * 0.5
    scores[1, 10:60, 1] = 1.0
    scores[1, 12:14, 0] = 1.0  # same boxes as two of the class-2 ones: another class, not suppressed
    deltas = torch.zeros(3, anchors.shape[0], 4)
    alone = A.decode_detections(scores[1], deltas[1], anchors, (96, 128), 0.3, 0.45, top_k=8)
    together = A.decode_detections_batch(scores, deltas, anchors, (96, 128), 0.3, 0.45, top_k=8)[1]
    for key in ("boxes", "scores", "labels"):
        assert torch.equal(alone[key], together[key]), key
    index = [int(i) for i in torch.nonzero((scores[1] == 1.0).reshape(-1)).squeeze(1)[:8]]
    assert together["scores"].tolist() == [1.0] * 8
    assert together["boxes"].tolist() == anchors[[i // 2 for i in index]].tolist()
    assert together["labels"].tolist() == [i % 2 + 1 for i in index]


def test_rank_within_groups_by_hand():
    groups = torch.tensor([1, 0, 1, 1, 0, 3])
    scores = torch.tensor([0.2, 0.9, 0.7, 0.7, 0.1, 0.5])
    # group 1: 0.7 (index 2, first of the tie), 0.7 (index 3), 0.2; group 0: 0.9, 0.1; group 3: 0.5
    assert A.rank_within_groups(groups, scores).tolist() == [2, 0, 0, 1, 1, 0]
    assert A.rank_within_groups(torch.zeros(0, dtype=torch.long), torch.zeros(0)).tolist() == []


@pytest.mark.parametrize("threshold", [0.4, 0.5])
def test_match_every_gt_gets_an_anchor_on_a_real_anchor_set(threshold):
    anchors = A.make_anchors((96, 128), [(6, 8), (3, 4)], [8.0, 20.0], (0.7, 1.0, 1.4), (1.0, 2.0, 0.5))
    gt = torch.tensor([[5.0, 50.0, 20.0, 60.0], [6.0, 51.0, 21.0, 61.0], [60.0, 40.0, 100.0, 90.0]])
    assigned = A.match(anchors, gt, threshold)
    assert set(assigned[assigned >= 0].tolist()) == {0, 1, 2}


def _random_gt(gen: torch.Generator, n: int, size: float = 96.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen) * size * 0.8
    wh = 4.0 + torch.rand(n, 2, generator=gen) * size * 0.4
    return torch.cat([xy, xy + wh], dim=1)


def test_match_batch_equals_match_image_by_image():
    """Padded batches of 0..7 boxes, with duplicates (two ground truths wanting the same anchor):
    match_batch gives, image by image, what match gives."""
    anchors = A.make_anchors((96, 128), [(6, 8), (3, 4)], [24.0, 48.0], scales=[0.7, 1.4], aspect_ratios=[1.0, 2.0])
    gen = torch.Generator().manual_seed(0)
    for trial in range(20):
        counts = [int(c) for c in torch.randint(0, 8, (5,), generator=gen)]
        boxes = [_random_gt(gen, n) for n in counts]
        if counts[0] >= 2:
            boxes[0][1] = boxes[0][0] + 0.5  # nearly the same box: both want the same anchor
        width = max(counts)
        padded = torch.zeros(5, width, 4)
        valid = torch.zeros(5, width, dtype=torch.bool)
        for b, bx in enumerate(boxes):
            padded[b, : len(bx)] = bx
            valid[b, : len(bx)] = True
        got = A.match_batch(anchors, padded, valid, 0.5)
        for b, bx in enumerate(boxes):
            assert torch.equal(got[b], A.match(anchors, bx, 0.5)), (trial, b)
