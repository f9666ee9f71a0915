"""Overfit checks: each network fits 32 real simulator frames (see perception_testkit.sim_samples).

To stay within ~60 s on one core the trunk (random init, weights "none") has its
BatchNorm statistics set from the 32 frames and is then frozen; its features are
computed once and the heads train on them (the detector's extra blocks included).
``test_full_networks_train_end_to_end`` checks separately that gradients reach
and change every trunk parameter when the trunk is not frozen.
"""
from __future__ import annotations

import torch
from torchvision.ops import box_iou

from perception.config import DetectorConfig, DirectionConfig, TrunkConfig
from perception.detector import SSDNet
from perception.direction import DirectionNet

from perception_testkit import sim_batch, sim_samples


def test_direction_net_fits_32_frames(overfit_direction):
    model, x, directions, _ = overfit_direction
    with torch.inference_mode():
        predicted = model(x).argmax(dim=1)
    accuracy = (predicted == directions).float().mean().item()
    assert accuracy >= 0.99, f"train accuracy {accuracy:.3f}"


def test_detector_fits_32_frames(overfit_detector):
    model, x, _, targets = overfit_detector
    with torch.inference_mode():
        cls_logits, box_deltas = model(x)
        losses = model.loss(cls_logits, box_deltas, targets)
        detections = model.detect(cls_logits, box_deltas, score_threshold=0.3, iou_threshold=0.45)
    assert losses["loss"].item() < 0.05, {k: v.item() for k, v in losses.items()}
    worst = 0.0
    for i, (det, target) in enumerate(zip(detections, targets)):
        assert len(det["boxes"]) == len(target["boxes"]), f"frame {i}: {len(det['boxes'])} detections, " \
                                                          f"{len(target['boxes'])} objects"
        overlaps = box_iou(target["boxes"], det["boxes"])
        for g in range(len(target["boxes"])):
            j = int(overlaps[g].argmax())
            assert det["labels"][j] == target["labels"][g], f"frame {i} object {g}: wrong class"
            worst = max(worst, (det["boxes"][j] - target["boxes"][g]).abs().max().item())
    print(f"overfit detector: worst box error {worst:.2f} px (model input)")
    assert worst <= 2.0, f"worst box error {worst:.2f} px (model input)"


def test_full_networks_train_end_to_end():
    """Unfrozen, BatchNorm in train mode: a few steps reach every trunk parameter and lower the loss."""
    torch.manual_seed(0)
    trunk = TrunkConfig(weights="none")
    size = (64, 96)
    samples = sim_samples(4, seed=1)
    for model in (DirectionNet(DirectionConfig(input_size=size, trunk=trunk, dropout=0.0)),
                  SSDNet(DetectorConfig(input_size=size, trunk=trunk, head_dropout=0.0))):
        cfg = model.config
        x, directions, targets = sim_batch(samples, size, cfg.mean, cfg.std)
        before = {k: v.detach().clone() for k, v in model.trunk.named_parameters()}
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()
        losses = []
        for _ in range(4):
            if isinstance(model, DirectionNet):
                loss = torch.nn.functional.cross_entropy(model(x), directions)
            else:
                loss = model.loss(*model(x), targets)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        unchanged = [k for k, v in model.trunk.named_parameters() if torch.equal(v, before[k])]
        assert not unchanged, f"{type(model).__name__}: trunk parameters not updated: {unchanged[:3]}"
        assert losses[-1] < losses[0], f"{type(model).__name__}: loss did not fall: {losses}"
