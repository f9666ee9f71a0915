"""DirectionNet and SSDNet: shapes, layouts, freezing, parameter groups, loss and detect."""
from __future__ import annotations

import math

import pytest
import torch

from perception.anchors import encode
from perception.config import AnchorConfig, DetectorConfig, DirectionConfig, TrunkConfig
from perception.detector import SSDNet
from perception.direction import DirectionNet

NONE = TrunkConfig(weights="none")
SMALL = (64, 96)


def test_direction_net_shapes_and_split():
    model = DirectionNet(DirectionConfig(input_size=SMALL, trunk=NONE)).eval()
    x = torch.randn(2, 3, *SMALL)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, 512, 2, 3)
        logits = model.forward_head(feats)
        assert logits.shape == (2, 3)
        assert torch.equal(model(x), logits)
    assert isinstance(model.trunk, torch.nn.Module) and isinstance(model.head, torch.nn.Module)
    assert isinstance(model.head[-1], torch.nn.Linear) and model.head[-1].in_features == 512


@pytest.mark.parametrize("net, config", [(DirectionNet, DirectionConfig), (SSDNet, DetectorConfig)])
def test_freeze_trunk_and_param_groups(net, config):
    model = net(config(input_size=SMALL, trunk=NONE))
    model.freeze_trunk()
    model.train()
    assert all(not p.requires_grad for p in model.trunk.parameters())
    assert all(not m.training for m in model.trunk.modules())  # BN statistics fixed while frozen
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("trunk."))
    groups = model.param_groups(lr_trunk=1e-4, lr_head=1e-2)
    assert [g["name"] for g in groups] == ["head"] and groups[0]["lr"] == 1e-2
    model.freeze_trunk(False)
    model.train()
    assert all(p.requires_grad for p in model.parameters()) and model.trunk.training
    groups = model.param_groups(1e-4, 1e-2)
    assert [(g["name"], g["lr"]) for g in groups] == [("trunk", 1e-4), ("head", 1e-2)]
    n_params = sum(p.numel() for g in groups for p in g["params"])
    assert n_params == sum(p.numel() for p in model.parameters())
    torch.optim.SGD(groups, lr=0.1)  # valid optimizer groups


def test_article_layout_has_189_anchors_on_4_2_1_grids():
    model = SSDNet(DetectorConfig(layout="article", input_size=(224, 224), trunk=NONE)).eval()
    assert model.num_anchors == (16 + 4 + 1) * 9 == 189
    with torch.no_grad():
        cls_logits, box_deltas = model(torch.randn(1, 3, 224, 224))
    assert cls_logits.shape == (1, 189, 5) and box_deltas.shape == (1, 189, 4)
    # first level: 4x4 grid of 56 px cells; its first anchor is centred on (28, 28)
    centre = (model.anchors[0, :2] + model.anchors[0, 2:]) / 2
    assert torch.allclose(centre, torch.tensor([28.0, 28.0]))


def test_default_layout_has_stride_8_and_16_maps():
    cfg = DetectorConfig(input_size=(168, 224), trunk=NONE)
    assert cfg.match_iou == 0.3 and DetectorConfig(layout="article", trunk=NONE).match_iou == 0.5
    assert DetectorConfig(match_iou=0.5, trunk=NONE).match_iou == 0.5  # an old card's value stays
    model = SSDNet(cfg).eval()
    k = cfg.anchors.anchors_per_cell
    grids = [(21, 28), (11, 14), (6, 7), (3, 4), (2, 2)]  # strides 8, 16, 32, 64, 128
    assert model.num_anchors == sum(h * w for h, w in grids) * k
    with torch.no_grad():
        cls_logits, box_deltas = model(torch.randn(2, 3, 168, 224))
    assert cls_logits.shape == (2, model.num_anchors, 5) and box_deltas.shape == (2, model.num_anchors, 4)
    smallest = (model.anchors[:, 2] - model.anchors[:, 0]).min().item()
    assert smallest < 6.0  # small anchors for distant vehicles
    # untrained (BatchNorm on batch statistics, as in training): background is the likely class
    model.train()
    with torch.no_grad():
        cls_logits, _ = model(torch.randn(2, 3, 168, 224))
    assert torch.softmax(cls_logits, dim=-1)[..., 0].mean() > 0.9


def test_stride_4_level_merges_layer1_and_layer2():
    """feature_strides with 4: a FineLevel on layer1 + upsampled layer2, anchors on a 4-px grid."""
    anchors = AnchorConfig(feature_strides=(4, 8, 16, 32), sizes=(0.03, 0.06, 0.12, 0.3))
    cfg = DetectorConfig(input_size=(90, 120), trunk=NONE, anchors=anchors)
    model = SSDNet(cfg).eval()
    x = torch.randn(2, 3, 90, 120)
    with torch.no_grad():
        levels = model.forward_features(x)
        assert [tuple(t.shape[1:]) for t in levels] == [(64, 23, 30), (128, 12, 15), (256, 6, 8), (512, 3, 4)]
        fine = model.fine(levels[0], levels[1])
        assert fine.shape == (2, 128, 23, 30)
        cls_logits, box_deltas = model(x)
    k = anchors.anchors_per_cell
    first = 23 * 30 * k
    assert model.num_anchors == (23 * 30 + 12 * 15 + 6 * 8 + 3 * 4) * k == cls_logits.shape[1] == box_deltas.shape[1]
    centres = (model.anchors[:first:k, :2] + model.anchors[:first:k, 2:]) / 2
    assert torch.allclose(centres[1] - centres[0], torch.tensor([120 / 30, 0.0]))  # 4-px grid
    side = 0.03 * 90
    assert torch.allclose(model.anchors[0, 2:] - model.anchors[0, :2], torch.tensor([0.7 * side, 0.7 * side]))
    # the stride-4 head sees layer2: changing only layer2's contribution changes its logits
    with torch.no_grad():
        base = model.forward_head(levels)[0][:, :first]
        shifted = model.forward_head((levels[0], levels[1] + 1.0, levels[2], levels[3]))[0][:, :first]
    assert not torch.allclose(base, shifted)
    assert SSDNet(DetectorConfig(input_size=(90, 120), trunk=NONE)).fine is None  # default: no stride 4


def test_wrong_input_size_is_refused():
    model = SSDNet(DetectorConfig(input_size=SMALL, trunk=NONE))
    with pytest.raises(ValueError, match="input_size"):
        model(torch.randn(1, 3, 96, 96))


@pytest.mark.parametrize("loss", ["focal", "hnm"])
def test_loss_keys_empty_images_and_perfect_boxes(loss):
    torch.manual_seed(0)
    model = SSDNet(DetectorConfig(input_size=SMALL, trunk=NONE, loss=loss))
    anchors = model.anchors
    gt = anchors[10:11].clone()
    targets = [{"boxes": gt, "labels": torch.tensor([2])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    a = model.num_anchors
    # logits that are right everywhere: background except the matched anchors of image 0
    labels, box_targets = model.assign_targets(targets)
    assert labels[0, 10] == 2 and labels[1].eq(0).all()
    assert torch.allclose(box_targets[0, 10], torch.zeros(4), atol=1e-5)  # gt == anchor
    cls_logits = torch.full((2, a, 5), -20.0)
    cls_logits[..., 0] = 20.0
    cls_logits[labels > 0] = torch.tensor([-20.0, -20.0, 20.0, -20.0, -20.0])
    out = model.loss(cls_logits, box_targets.clone(), targets)
    assert set(out) == {"loss", "cls", "box"}
    assert out["loss"].item() < 1e-6 and out["box"].item() < 1e-9
    # wrong class and wrong box both cost
    bad = model.loss(torch.zeros(2, a, 5, requires_grad=True), torch.ones(2, a, 4), targets)
    assert bad["cls"].item() > 0.1 and bad["box"].item() > 0.1
    bad["loss"].backward()
    # only empty images: finite, no positives to normalise by
    empty = [targets[1], targets[1]]
    out = model.loss(torch.zeros(2, a, 5), torch.zeros(2, a, 4), empty)
    assert math.isfinite(out["loss"].item()) and out["box"].item() == 0.0


def test_loss_refuses_bad_labels():
    model = SSDNet(DetectorConfig(input_size=SMALL, trunk=NONE))
    a = model.num_anchors
    with pytest.raises(ValueError, match="1..4"):
        model.loss(torch.zeros(1, a, 5), torch.zeros(1, a, 4),
                   [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([0])}])


def test_detect_decodes_a_known_output():
    model = SSDNet(DetectorConfig(input_size=SMALL, trunk=NONE))
    a = model.num_anchors
    box = torch.tensor([[10.0, 12.0, 30.0, 40.0]])
    cls_logits = torch.zeros(1, a, 5)
    cls_logits[..., 0] = 10.0
    cls_logits[0, 7] = torch.tensor([0.0, 0.0, 0.0, 10.0, 0.0])  # "person" at anchor 7
    deltas = torch.zeros(1, a, 4)
    deltas[0, 7] = encode(box, model.anchors[7:8])[0]
    (out,) = model.detect(cls_logits, deltas, score_threshold=0.3)
    assert out["labels"].tolist() == [3]
    assert torch.allclose(out["boxes"], box, atol=1e-4)
    assert out["scores"].item() > 0.99


def test_custom_anchor_config():
    anchors = AnchorConfig(feature_strides=(16, 32), sizes=(0.1, 0.3), scales=(1.0,), aspect_ratios=(1.0, 2.0))
    model = SSDNet(DetectorConfig(input_size=SMALL, trunk=NONE, anchors=anchors, classes=("car",)))
    assert model.num_anchors == (4 * 6 + 2 * 3) * 2
    cls_logits, _ = model(torch.randn(1, 3, *SMALL))
    assert cls_logits.shape[-1] == 2


def test_assign_targets_equals_matching_each_image_alone():
    """The batched target assignment gives each image the labels and encoded boxes that
    ``match`` + ``encode`` give it alone (images with 0..6 objects, one with none)."""
    from perception.anchors import encode, match

    torch.manual_seed(0)
    model = SSDNet(DetectorConfig(input_size=(96, 128), trunk=TrunkConfig(weights="none")))
    gen = torch.Generator().manual_seed(1)
    targets = []
    for n in (0, 1, 3, 6, 2):
        xy = torch.rand(n, 2, generator=gen) * 80
        boxes = torch.cat([xy, xy + 6 + torch.rand(n, 2, generator=gen) * 40], dim=1)
        targets.append({"boxes": boxes, "labels": torch.randint(1, model.config.num_classes + 1, (n,), generator=gen)})
    labels, encoded = model.assign_targets(targets)
    for b, target in enumerate(targets):
        want_labels = torch.zeros(model.num_anchors, dtype=torch.long)
        want_boxes = torch.zeros(model.num_anchors, 4)
        if len(target["labels"]):
            assigned = match(model.anchors, target["boxes"], model.config.match_iou)
            pos = assigned >= 0
            want_labels[pos] = target["labels"][assigned[pos]]
            want_boxes[pos] = encode(target["boxes"][assigned[pos]], model.anchors[pos], model.config.variances)
        assert torch.equal(labels[b], want_labels), b
        assert torch.allclose(encoded[b], want_boxes, atol=1e-6), b
    assert (labels[0] == 0).all() and (labels[3] > 0).sum() >= 6


def test_crop_anchors_are_the_full_inputs_anchors_inside_the_crop():
    """Training crops: a crop's anchors have the pixel sizes of the full input's (sizes are fractions of
    config.input_size's short side), tiled on the crop's own grid. With every stride dividing both
    sizes, they are exactly the full input's anchors whose centres lie in the crop's window."""
    from perception.detector import detector_anchors

    config = DetectorConfig(input_size=(256, 512), trunk=NONE,
                            anchors=AnchorConfig(feature_strides=(4, 8, 16, 32, 64, 128),
                                                 sizes=(0.02, 0.04, 0.08, 0.2, 0.4, 0.7)))
    full = detector_anchors(config)
    crop = detector_anchors(config, (128, 256))
    centres = (full[:, :2] + full[:, 2:]) / 2
    inside = full[(centres[:, 0] < 256) & (centres[:, 1] < 128)]
    assert crop.shape == inside.shape
    assert torch.equal(crop, inside)  # the same rows in the same level/row/column/anchor order
    assert torch.equal(detector_anchors(config, (256, 512)), full)


def test_ssdnet_trains_on_crops_and_refuses_them_in_eval():
    torch.manual_seed(0)
    model = SSDNet(DetectorConfig(input_size=(96, 128), trunk=NONE)).train()
    crop = (64, 96)
    cls_logits, box_deltas = model(torch.randn(2, 3, *crop))
    anchors = model.anchors_for(crop)
    assert cls_logits.shape[1] == box_deltas.shape[1] == anchors.shape[0] < model.num_anchors
    assert model.anchors_for(crop) is anchors and model.anchors_for((96, 128)) is model.anchors
    # anchor sides are those of the full input: the largest one is 0.7 x 96 px wide whatever the crop
    assert float((anchors[:, 2] - anchors[:, 0]).max()) == pytest.approx(float(
        (model.anchors[:, 2] - model.anchors[:, 0]).max()))
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 40.0, 30.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    losses = model.loss(cls_logits, box_deltas, targets, input_size=crop)
    assert torch.isfinite(losses["loss"]) and float(losses["box"].detach()) > 0
    losses["loss"].backward()
    with pytest.raises(ValueError, match="training crop must pass its size"):
        model.loss(cls_logits, box_deltas, targets)
    with pytest.raises(ValueError, match="input_size"):  # larger than the input: refused even in training
        model(torch.randn(1, 3, 128, 128))
    model.eval()
    with pytest.raises(ValueError, match="input_size"), torch.no_grad():
        model(torch.randn(1, 3, *crop))
