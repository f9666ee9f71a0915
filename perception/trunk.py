"""The ResNet trunk shared by both networks: torchvision resnet34's children up to layer4.

Parameter names are torchvision's (``conv1.weight``, ``layer3.0.bn1.running_mean``,
...), so a torchvision resnet34 state dict loads into it directly (its ``fc.*``
keys are ignored).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import ResNet34_Weights, resnet34

from perception.config import TrunkConfig

log = logging.getLogger(__name__)

#: channels of layer1 (stride 4), layer2 (stride 8), layer3 (stride 16) and layer4 (stride 32)
#: outputs of resnet34.
LAYER1_CHANNELS = 64
LAYER2_CHANNELS = 128
LAYER3_CHANNELS = 256
LAYER4_CHANNELS = 512


class ResNetTrunk(nn.Module):
    """conv1 -> bn1 -> relu -> maxpool -> layer1..layer4.

    forward(x (B,3,H,W) normalised) -> layer4 features (B, 512, ceil(H/32), ceil(W/32)).
    forward_levels(x) -> (layer1 (B, 64, ceil(H/4), ceil(W/4)), layer2 (B, 128, ceil(H/8), ceil(W/8)),
                          layer3 (B, 256, ceil(H/16), ceil(W/16)), layer4 (B, 512, ceil(H/32), ceil(W/32))).
    """

    def __init__(self, config: TrunkConfig, load_weights: bool = True) -> None:
        super().__init__()
        self.config = config
        net = resnet34(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        if load_weights:
            load_trunk_weights(self, config.weights)

    def forward_levels(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        c1 = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        return c1, c2, c3, self.layer4(c3)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_levels(x)[-1]


def _imagenet_state_dict() -> dict[str, Tensor]:
    return ResNet34_Weights.IMAGENET1K_V1.get_state_dict(progress=False, check_hash=True)


def _file_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"trunk weights file {path} does not exist; give 'imagenet', 'none' or a file path")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"trunk weights file {path} does not hold a state dict (got {type(state).__name__})")
    return state


#: prefix of the trunk's keys in a TruckPilot model's state dict (``trunk.layer1.0.conv1.weight``)
_CHECKPOINT_PREFIX = "trunk."


def load_trunk_weights(trunk: ResNetTrunk, weights: str) -> None:
    """Load ``weights`` ("imagenet", "none" or a file path) into ``trunk``.

    "imagenet": from the torch hub cache or a download; on any failure a WARNING is
    logged and the trunk keeps its random init. A file: a torchvision resnet34 state
    dict (keys outside the trunk, fc.*, are ignored) or a TruckPilot checkpoint's
    safetensors (its ``trunk.*`` keys: start a detector of another layout from a trained
    trunk). A missing trunk key or a shape mismatch raises ValueError naming the file.
    """
    if weights == "none":
        return
    if weights == "imagenet":
        try:
            state = _imagenet_state_dict()
        except Exception as exc:  # no network, no cache, bad hash: all mean "train from scratch"
            log.warning(
                "ImageNet resnet34 weights unavailable (%s: %s); the trunk starts from random init. "
                "Put resnet34-b627a593.pth in the torch hub cache (~/.cache/torch/hub/checkpoints) "
                "or pass a local weights file to use pretrained weights.",
                type(exc).__name__,
                exc,
            )
            return
        source = "torchvision ImageNet (IMAGENET1K_V1)"
    else:
        state = _file_state_dict(Path(weights))
        source = weights
    own = trunk.state_dict()
    if not any(k in own for k in state) and any(k.startswith(_CHECKPOINT_PREFIX) for k in state):
        # a TruckPilot direction or detector checkpoint: take its trunk
        state = {k[len(_CHECKPOINT_PREFIX):]: v for k, v in state.items() if k.startswith(_CHECKPOINT_PREFIX)}
    picked = {k: v for k, v in state.items() if k in own}
    missing = sorted(set(own) - set(picked))
    if missing:
        raise ValueError(f"trunk weights {source}: missing {len(missing)} keys (first: {missing[:3]}); "
                         "expected a torchvision resnet34 state dict or a direction/detector checkpoint")
    bad = [k for k, v in picked.items() if tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise ValueError(f"trunk weights {source}: shape mismatch for {bad[:3]}; expected a resnet34 state dict")
    trunk.load_state_dict(picked, strict=True)
    log.info("trunk weights loaded from %s", source)
