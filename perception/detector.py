"""SSD detector: ResNet34 trunk, extra conv blocks, class and box heads on several feature maps.

Layouts (DetectorConfig.layout):
  "default": heads on layer2 (stride 8, optional), layer3 (16), layer4 (32) and extra stride-2
      blocks (64, 128, ...), as config.anchors.feature_strides lists. The stride-16
      map is what lets it find distant (small) vehicles. Stride 4 (optional) adds a FineLevel:
      layer1 merged with upsampled layer2, for objects a few pixels wide (distant walkers).
  "article": the source article's head: dropout(relu(layer4)) -> a stride-1 block
      -> stride-2 blocks giving 4x4, 2x2, 1x1 grids at 224x224; 9 anchors a cell, 189 anchors.

Outputs: cls_logits (B, A, C+1), index 0 = background; box_deltas (B, A, 4)
SSD-encoded relative to ``self.anchors`` (A, 4) xyxy in model-input pixels.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from perception.anchors import decode_detections_batch, encode, feature_map_size, make_anchors, match_batch
from perception.config import DetectorConfig
from perception.direction import _freeze, _param_groups
from perception.trunk import LAYER1_CHANNELS, LAYER2_CHANNELS, LAYER3_CHANNELS, LAYER4_CHANNELS, ResNetTrunk


class StdConv(nn.Module):
    """3x3 conv (stride 1 or 2, padding 1) -> BatchNorm -> ReLU -> Dropout."""

    def __init__(self, c_in: int, c_out: int, stride: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(F.relu(self.bn(self.conv(x))))


class OutConv(nn.Module):
    """Class and box predictions of one feature map (B, c_in, h, w):
    -> cls (B, h*w*k, num_outputs), box (B, h*w*k, 4), rows ordered (row, column, anchor)."""

    def __init__(self, c_in: int, k: int, num_outputs: int, background_bias: float) -> None:
        super().__init__()
        self.k, self.num_outputs = k, num_outputs
        self.cls = nn.Conv2d(c_in, k * num_outputs, 3, padding=1)
        self.box = nn.Conv2d(c_in, k * 4, 3, padding=1)
        for conv in (self.cls, self.box):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        with torch.no_grad():  # start out predicting "background" with p ~ 0.99
            self.cls.bias.view(k, num_outputs)[:, 0] = background_bias

    @staticmethod
    def _flatten(x: Tensor, last: int) -> Tensor:
        b = x.shape[0]
        return x.permute(0, 2, 3, 1).reshape(b, -1, last)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._flatten(self.cls(x), self.num_outputs), self._flatten(self.box(x), 4)


#: width of the FineLevel (stride-4) feature map
FINE_LEVEL_CHANNELS = 128


class FineLevel(nn.Module):
    """The stride-4 feature map, FPN's top-down step one level deep.

    forward(c1 (B, 64, h, w) layer1, c2 (B, 128, ceil(h/2), ceil(w/2)) layer2) -> (B, width, h, w):
    1x1 projections of both to ``width`` channels, layer2's upsampled (nearest) to layer1's grid,
    summed, then a 3x3 StdConv. layer1 alone has too little context to tell a walker from a
    fence post; layer2 brings it, layer1 the 4-px grid that objects 2-5 px wide need.
    """

    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.lateral = nn.Conv2d(LAYER1_CHANNELS, width, 1)
        self.top_down = nn.Conv2d(LAYER2_CHANNELS, width, 1)
        self.smooth = StdConv(width, width, stride=1, dropout=dropout)

    def forward(self, c1: Tensor, c2: Tensor) -> Tensor:
        up = F.interpolate(self.top_down(c2), size=c1.shape[-2:], mode="nearest")
        return self.smooth(self.lateral(c1) + up)


def detector_anchors(config: DetectorConfig, input_size: tuple[int, int] | None = None) -> Tensor:
    """The anchors of an SSDNet built from ``config``: (A, 4) xyxy in model-input pixels, level by
    level (config.anchors.feature_strides), in the order of the heads' outputs.

    input_size: (H, W) of the images the anchors tile (default config.input_size). The anchor
    sides stay config.anchors.sizes times the shorter side of config.input_size whatever this is,
    so a training crop smaller than the input gets the anchors of the same pixel sizes that the
    full input has, on its own grid."""
    anchors_cfg = config.anchors
    size = tuple(int(s) for s in (input_size if input_size is not None else config.input_size))
    grid_sizes = [feature_map_size(size, s) for s in anchors_cfg.feature_strides]
    short_side = min(config.input_size)
    return make_anchors(size, grid_sizes, [f * short_side for f in anchors_cfg.sizes],
                        anchors_cfg.scales, anchors_cfg.aspect_ratios)


class SSDNet(nn.Module):
    """SSD on a ResNet34 trunk; see the module docstring for the layouts.

    forward(x (B,3,H,W) normalised, (H, W) = config.input_size)
        -> (cls_logits (B, A, C+1), box_deltas (B, A, 4)).
    forward_features(x) -> (layer1, layer2, layer3, layer4) trunk features (strides 4, 8, 16, 32);
    forward_head(features) -> (cls_logits, box_deltas).
    ``anchors``: buffer (A, 4) xyxy in model-input pixels (rebuilt from the config,
    not saved in state dicts).
    ``init_trunk_weights=False`` skips loading config.trunk.weights.
    """

    kind = "detector"

    def __init__(self, config: DetectorConfig | None = None, *, init_trunk_weights: bool = True) -> None:
        super().__init__()
        self.config = cfg = config if config is not None else DetectorConfig()
        self.trunk = ResNetTrunk(cfg.trunk, load_weights=init_trunk_weights)
        anchors_cfg = cfg.anchors
        k = anchors_cfg.anchors_per_cell
        num_outputs = cfg.num_classes + 1
        background_bias = math.log(99.0 * cfg.num_classes)
        strides = anchors_cfg.feature_strides
        width = cfg.extra_channels
        self._level_strides = strides
        if cfg.layout == "article":
            self.pre = nn.Sequential(nn.ReLU(), nn.Dropout(cfg.head_dropout),
                                     StdConv(LAYER4_CHANNELS, width, stride=1, dropout=cfg.head_dropout))
            extra_in = width
        else:
            self.pre = nn.Identity()
            extra_in = LAYER4_CHANNELS
        top = max(strides)
        n_extra = max(0, int(round(math.log2(top))) - 5)  # stride 64 is the first extra block
        extras = []
        for _ in range(n_extra):
            extras.append(StdConv(extra_in, width, stride=2, dropout=cfg.head_dropout))
            extra_in = width
        self.extras = nn.ModuleList(extras)
        self.fine = FineLevel(FINE_LEVEL_CHANNELS, cfg.head_dropout) if 4 in strides else None
        channels = {4: FINE_LEVEL_CHANNELS, 8: LAYER2_CHANNELS, 16: LAYER3_CHANNELS,
                    32: LAYER4_CHANNELS if cfg.layout == "default" else width}
        heads = []
        for s in strides:
            heads.append(OutConv(channels.get(s, width), k, num_outputs, background_bias))
        self.heads = nn.ModuleList(heads)
        self.register_buffer("anchors", detector_anchors(cfg), persistent=False)
        self._crop_anchors: dict[tuple[int, int], Tensor] = {}
        self._trunk_frozen = False

    @property
    def num_anchors(self) -> int:
        return self.anchors.shape[0]

    def anchors_for(self, input_size: tuple[int, int] | None = None) -> Tensor:
        """Anchors (A', 4) xyxy px for images of ``input_size`` (H, W): ``self.anchors`` for
        config.input_size (or None), else those of a training crop of that size
        (:func:`detector_anchors`), made once per size on the anchors' device."""
        if input_size is None or tuple(input_size) == tuple(self.config.input_size):
            return self.anchors
        key = (int(input_size[0]), int(input_size[1]))
        cached = self._crop_anchors.get(key)
        if cached is None or cached.device != self.anchors.device:
            cached = detector_anchors(self.config, key).to(self.anchors.device)
            self._crop_anchors[key] = cached
        return cached

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Trunk levels of x (B, 3, H, W). In eval mode (H, W) must be config.input_size, which
        the anchors that :meth:`detect` decodes against were made for; in training mode any size
        up to it is accepted (training crops: pass the size to :meth:`loss`)."""
        expected = tuple(self.config.input_size)
        size = tuple(x.shape[-2:])
        crop_ok = self.training and size[0] <= expected[0] and size[1] <= expected[1]
        if size != expected and not crop_ok:
            raise ValueError(
                f"SSDNet input is {size} (H, W) but the anchors were made for {expected}; "
                "resize frames to config.input_size (the Perceiver does this)"
            )
        return self.trunk.forward_levels(x)

    def forward_head(self, features: tuple[Tensor, Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        c1, c2, c3, c4 = features
        maps: dict[int, Tensor] = {8: c2, 16: c3}
        if self.fine is not None:
            maps[4] = self.fine(c1, c2)
        x = self.pre(c4)
        maps[32] = x
        stride = 32
        for block in self.extras:
            x = block(x)
            stride *= 2
            maps[stride] = x
        outs = [head(maps[s]) for s, head in zip(self._level_strides, self.heads)]
        cls_logits = torch.cat([o[0] for o in outs], dim=1)
        box_deltas = torch.cat([o[1] for o in outs], dim=1)
        return cls_logits, box_deltas

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.forward_head(self.forward_features(x))

    def freeze_trunk(self, frozen: bool = True) -> None:
        """Stop (or restart) training the trunk; while frozen its BatchNorm layers stay in eval mode."""
        _freeze(self, frozen)

    @property
    def trunk_frozen(self) -> bool:
        return self._trunk_frozen

    def train(self, mode: bool = True) -> "SSDNet":
        super().train(mode)
        if self._trunk_frozen:
            self.trunk.eval()
        return self

    def param_groups(self, lr_trunk: float, lr_head: float) -> list[dict]:
        """Optimizer parameter groups (trunk, head = extras + heads); frozen parameters left out."""
        return _param_groups(self, lr_trunk, lr_head)

    # ----------------------------------------------------------------- training

    def assign_targets(self, targets: list[dict[str, Tensor]], input_size: tuple[int, int] | None = None
                       ) -> tuple[Tensor, Tensor]:
        """Per-anchor training targets of a batch.

        targets: list (len B) of {"boxes": (N, 4) xyxy model-input px, "labels": (N,) long in 1..C}.
        input_size: (H, W) of the batch's images when they are training crops smaller than
        config.input_size (default: config.input_size); the anchors are those of :meth:`anchors_for`.
        Returns labels (B, A) long (0 = background) and encoded boxes (B, A, 4)
        (zeros where the anchor is background).
        """
        anchors = self.anchors_for(input_size)
        num_anchors = anchors.shape[0]
        batch = len(targets)
        boxes_list, labels_list = [], []
        for b, target in enumerate(targets):
            boxes = target["boxes"].to(anchors.device, anchors.dtype).reshape(-1, 4)
            labels = target["labels"].to(anchors.device).long().reshape(-1)
            if boxes.shape[0] != labels.shape[0]:
                raise ValueError(f"target {b}: {boxes.shape[0]} boxes but {labels.shape[0]} labels")
            boxes_list.append(boxes)
            labels_list.append(labels)
        counts = [labels.shape[0] for labels in labels_list]
        num_gt = max(counts, default=0)
        labels_out = torch.zeros((batch, num_anchors), dtype=torch.long, device=anchors.device)
        boxes_out = torch.zeros((batch, num_anchors, 4), dtype=anchors.dtype, device=anchors.device)
        if num_gt == 0:
            return labels_out, boxes_out
        all_labels = torch.cat(labels_list)
        if bool(((all_labels < 1) | (all_labels > self.config.num_classes)).any()):  # one host sync per batch
            bad = next(b for b, labels in enumerate(labels_list)
                       if labels.numel() and (labels.min() < 1 or labels.max() > self.config.num_classes))
            raise ValueError(
                f"target {bad}: labels must be in 1..{self.config.num_classes} (0 is background), "
                f"got {labels_list[bad].tolist()}"
            )
        gt_boxes = torch.zeros((batch, num_gt, 4), dtype=anchors.dtype, device=anchors.device)
        gt_labels = torch.zeros((batch, num_gt), dtype=torch.long, device=anchors.device)
        gt_valid = torch.zeros((batch, num_gt), dtype=torch.bool, device=anchors.device)
        for b, (boxes, labels) in enumerate(zip(boxes_list, labels_list)):
            gt_boxes[b, : counts[b]] = boxes
            gt_labels[b, : counts[b]] = labels
            gt_valid[b, : counts[b]] = True
        assigned = match_batch(anchors, gt_boxes, gt_valid, self.config.match_iou)  # (B, A)
        pos = assigned >= 0
        index = assigned.clamp(min=0)
        matched_boxes = torch.gather(gt_boxes, 1, index[:, :, None].expand(-1, -1, 4))  # (B, A, 4)
        labels_out = torch.where(pos, torch.gather(gt_labels, 1, index), labels_out)
        encoded = encode(matched_boxes.reshape(-1, 4), anchors.repeat(batch, 1), self.config.variances)
        boxes_out = torch.where(pos[:, :, None], encoded.reshape(batch, num_anchors, 4), boxes_out)
        return labels_out, boxes_out

    def loss(self, cls_logits: Tensor, box_deltas: Tensor, targets: list[dict[str, Tensor]],
             input_size: tuple[int, int] | None = None) -> dict[str, Tensor]:
        """{"loss": cls + box_loss_weight * box, "cls": ..., "box": ...}, each a scalar
        normalised by the number of positive anchors in the batch (at least 1).
        input_size: (H, W) of the images when they are training crops (see :meth:`assign_targets`).

        box: smooth-L1 (beta 1) of the positive anchors' encoded deltas.
        cls: config.loss = "focal": softmax focal loss (gamma, alpha for objects and
        1 - alpha for background) over all anchors; "hnm": cross-entropy over the
        positives and the hardest negatives, negative_ratio per positive in each
        image (at least negative_ratio negatives in an image with no objects).
        """
        cfg = self.config
        num_anchors = self.anchors_for(input_size).shape[0]
        if cls_logits.shape[:2] != box_deltas.shape[:2] or cls_logits.shape[1] != num_anchors:
            size = tuple(input_size) if input_size is not None else tuple(self.config.input_size)
            raise ValueError(
                f"loss: cls_logits {tuple(cls_logits.shape)} / box_deltas {tuple(box_deltas.shape)} "
                f"do not match the {num_anchors} anchors of a {size} (H, W) input; a training crop must "
                "pass its size as input_size"
            )
        if len(targets) != cls_logits.shape[0]:
            raise ValueError(f"loss: {len(targets)} targets for a batch of {cls_logits.shape[0]}")
        labels, box_targets = self.assign_targets(targets, input_size)
        pos = labels > 0
        num_pos = pos.sum().clamp(min=1).to(cls_logits.dtype)
        box = F.smooth_l1_loss(box_deltas[pos], box_targets[pos], reduction="sum", beta=1.0) / num_pos
        log_probs = F.log_softmax(cls_logits, dim=-1)  # (B, A, C+1)
        log_p_true = log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)  # (B, A)
        if cfg.loss == "focal":
            p_true = log_p_true.exp()
            alpha = torch.where(pos, cfg.focal_alpha, 1.0 - cfg.focal_alpha)
            cls = -(alpha * (1.0 - p_true).pow(cfg.focal_gamma) * log_p_true).sum() / num_pos
        else:
            ce = -log_p_true
            with torch.no_grad():
                neg_loss = ce.detach().masked_fill(pos, -1.0)
                order = neg_loss.argsort(dim=1, descending=True)
                rank = order.argsort(dim=1)
                n_neg = (pos.sum(dim=1, keepdim=True).clamp(min=1) * cfg.negative_ratio).long()
                hard_neg = (rank < n_neg) & ~pos
            cls = (ce[pos].sum() + ce[hard_neg].sum()) / num_pos
        return {"loss": cls + cfg.box_loss_weight * box, "cls": cls, "box": box}

    # ---------------------------------------------------------------- inference

    @torch.no_grad()
    def detect(
        self,
        cls_logits: Tensor,
        box_deltas: Tensor,
        score_threshold: float = 0.3,
        iou_threshold: float = 0.45,
        top_k: int = 100,
    ) -> list[dict[str, Tensor]]:
        """Decode a batch in one pass (``decode_detections_batch``): per image {"boxes": (K, 4) xyxy
        model-input px (clipped), "scores": (K,) softmax probabilities, "labels": (K,) long in 1..C},
        highest score first."""
        scores = F.softmax(cls_logits.float(), dim=-1)[..., 1:]
        return decode_detections_batch(scores, box_deltas.float(), self.anchors.float(),
                                       tuple(self.config.input_size), score_threshold, iou_threshold, top_k,
                                       self.config.variances)


def with_added_levels(config: DetectorConfig, strides: tuple[int, ...], sizes: tuple[float, ...]) -> DetectorConfig:
    """``config`` with the anchor levels ``strides`` (sizes: their base side as a fraction of the input's
    shorter side), which must keep every level ``config`` has at its size, with the same scales and
    ratios: a trained detector then keeps all its heads and only the added levels start fresh
    (:func:`grown_state`). Raises ValueError naming the level that would change."""
    from dataclasses import replace

    old = config.anchors
    new = replace(old, feature_strides=tuple(int(s) for s in strides), sizes=tuple(float(s) for s in sizes))
    for stride, size in zip(old.feature_strides, old.sizes):
        if stride not in new.feature_strides:
            raise ValueError(f"--anchor-strides {list(new.feature_strides)} drops the checkpoint's stride-{stride} "
                             f"level: with --init, --anchor-strides may only add levels to {list(old.feature_strides)}")
        kept = new.sizes[new.feature_strides.index(stride)]
        if abs(kept - size) > 1e-9:
            raise ValueError(f"--anchor-sizes gives the stride-{stride} level size {kept}, the checkpoint's is "
                             f"{size}: with --init, keep the sizes of its levels {list(old.sizes)}")
    if config.layout != "default" and new.feature_strides != old.feature_strides:
        raise ValueError(f"anchor levels can be added to the 'default' layout only, not {config.layout!r}")
    return replace(config, anchors=new)


def grown_state(state: dict[str, Tensor], old: DetectorConfig, new: DetectorConfig) -> tuple[dict[str, Tensor], tuple[str, ...]]:
    """An SSDNet state dict for ``old``, renamed for ``new`` (``old`` with anchor levels added, see
    :func:`with_added_levels`): ``heads.i.*`` moves to the index of the same stride in ``new``.
    Returns (state, prefixes of the modules only ``new`` has: its added heads and, for stride 4,
    ``fine.``), which a caller loads with ``strict=False`` and lets start fresh."""
    old_strides, new_strides = old.anchors.feature_strides, new.anchors.feature_strides
    index = {f"heads.{i}.": f"heads.{new_strides.index(s)}." for i, s in enumerate(old_strides)}
    renamed = {}
    for key, value in state.items():
        prefix = next((p for p in index if key.startswith(p)), None)
        renamed[index[prefix] + key[len(prefix):] if prefix else key] = value
    fresh = tuple(f"heads.{j}." for j, s in enumerate(new_strides) if s not in old_strides)
    if 4 in new_strides and 4 not in old_strides:
        fresh += ("fine.",)
    return renamed, fresh
