"""Direction classifier: ResNet34 trunk + (pool -> dropout -> linear(512, 3)) for left/straight/right,
and beside it a continuous steering head (tanh(linear(512, 1)) on the same features)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from perception.config import DirectionConfig
from perception.trunk import LAYER4_CHANNELS, ResNetTrunk


class DirectionNet(nn.Module):
    """Classifies a normalised frame (B, 3, H, W) into config.classes, and (config.steer_head) regresses
    the steer: (B,) in [-1, 1] of full lock, + = right.

    forward_features(x) -> (B, 512, ceil(H/32), ceil(W/32)) layer4 features;
    forward_head(features) -> logits (B, len(classes)); forward = head(features(x)).
    ``with_steer=True`` (forward and forward_head) returns (logits, steer (B,) or None when the
    network has no steer head); without it every caller sees the classifier alone, as before the head.
    The steer head reads the pooled features after the classifier's dropout: tanh(linear(512, 1)).
    ``init_trunk_weights=False`` skips loading config.trunk.weights (used when a
    checkpoint's weights are about to replace them).
    """

    kind = "direction"

    def __init__(self, config: DirectionConfig | None = None, *, init_trunk_weights: bool = True) -> None:
        super().__init__()
        self.config = config if config is not None else DirectionConfig()
        self.trunk = ResNetTrunk(self.config.trunk, load_weights=init_trunk_weights)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            nn.Dropout(self.config.dropout),
            nn.Linear(LAYER4_CHANNELS, len(self.config.classes)),
        )
        # a separate module (not in ``head``): checkpoints without it keep their key names. Zero-initialised:
        # a fresh head says 0 (straight ahead) and moves away only as far as the features earn it
        self.steer_head = nn.Linear(LAYER4_CHANNELS, 1) if self.config.steer_head else None
        if self.steer_head is not None:
            nn.init.zeros_(self.steer_head.weight)
            nn.init.zeros_(self.steer_head.bias)
        self._trunk_frozen = False

    @property
    def has_steer_head(self) -> bool:
        return self.steer_head is not None

    def forward_features(self, x: Tensor) -> Tensor:
        return self.trunk(x)

    def forward_head(self, features: Tensor, with_steer: bool = False):
        if not with_steer:
            return self.head(features)
        pooled = self.head[2](self.head[1](self.head[0](features)))  # pool, flatten, dropout
        logits = self.head[3](pooled)
        steer = torch.tanh(self.steer_head(pooled).squeeze(1)) if self.steer_head is not None else None
        return logits, steer

    def forward(self, x: Tensor, with_steer: bool = False):
        return self.forward_head(self.forward_features(x), with_steer=with_steer)

    def freeze_trunk(self, frozen: bool = True) -> None:
        """Stop (or restart) training the trunk: its parameters get requires_grad=not frozen,
        and while frozen its BatchNorm layers stay in eval mode (running stats fixed)."""
        _freeze(self, frozen)

    @property
    def trunk_frozen(self) -> bool:
        return self._trunk_frozen

    def train(self, mode: bool = True) -> "DirectionNet":
        super().train(mode)
        if self._trunk_frozen:
            self.trunk.eval()
        return self

    def param_groups(self, lr_trunk: float, lr_head: float) -> list[dict]:
        """Optimizer parameter groups for discriminative learning rates (trunk, head);
        frozen parameters are left out."""
        return _param_groups(self, lr_trunk, lr_head)


def _freeze(model: nn.Module, frozen: bool) -> None:
    model._trunk_frozen = bool(frozen)
    for p in model.trunk.parameters():
        p.requires_grad_(not frozen)
    model.train(model.training)


def _param_groups(model: nn.Module, lr_trunk: float, lr_head: float) -> list[dict]:
    trunk_ids = {id(p) for p in model.trunk.parameters()}
    trunk = [p for p in model.trunk.parameters() if p.requires_grad]
    head = [p for p in model.parameters() if id(p) not in trunk_ids and p.requires_grad]
    groups = []
    if trunk:
        groups.append({"params": trunk, "lr": lr_trunk, "name": "trunk"})
    if head:
        groups.append({"params": head, "lr": lr_head, "name": "head"})
    return groups
