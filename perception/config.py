"""Configuration of the perception networks: frozen dataclasses, JSON-able.

Every config has ``to_dict()`` (plain JSON types: dict, list, str, int, float)
and ``from_dict(d)``; the dict form is what a checkpoint's model card carries.

Sizes are ``(H, W)`` in pixels of the model input. ``mean`` and ``std`` are
per-channel RGB values on the 0..1 scale (an image is divided by 255 first).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from perception.types import DEFAULT_DETECTION_CLASSES, DIRECTIONS

#: ImageNet channel statistics (RGB, 0..1 scale): what the torchvision trunk was trained with.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Default model input (H, W): 192x144, 4:3 like the simulator's 320x240 frames (0.6x).
#: Chosen by measurement (perception/RESULTS.md, "Input size"): with one shared trunk
#: both networks run at ~22 FPS float32 / ~34 FPS bfloat16 on 2 CPU cores (best case),
#: where 224x168 manages ~20 / ~26; below 192x144 the sim's smallest boxes (4 px at
#: 320x240) drop under 2.4 px.
DEFAULT_INPUT_SIZE: tuple[int, int] = (144, 192)

TRUNK_ARCHITECTURES: tuple[str, ...] = ("resnet34",)
DETECTOR_LAYOUTS: tuple[str, ...] = ("default", "article")
DETECTOR_LOSSES: tuple[str, ...] = ("hnm", "focal")


def _tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _check_size(name: str, size: tuple[int, int]) -> None:
    if len(size) != 2 or any(int(s) != s or s < 32 for s in size):
        raise ValueError(f"{name} must be (H, W) with integers >= 32, got {size!r}")


def _check_stats(name: str, values: tuple[float, ...], positive: bool = False) -> None:
    if len(values) != 3:
        raise ValueError(f"{name} must have 3 values (R, G, B), got {values!r}")
    if positive and any(v <= 0 for v in values):
        raise ValueError(f"{name} values must be > 0, got {values!r}")


@dataclass(frozen=True)
class TrunkConfig:
    """The shared ResNet trunk (torchvision children up to layer4).

    arch: "resnet34" (the only one so far).
    weights: "imagenet" (torchvision ResNet34_Weights.IMAGENET1K_V1 from the torch
        hub cache or downloaded; on any failure a WARNING is logged and the trunk
        stays randomly initialised), "none" (random init, silently), or a local
        file path to a torchvision resnet34 state dict (``.pth``/``.pt`` loaded
        with ``torch.load(weights_only=True)``, or ``.safetensors``).
    """

    arch: str = "resnet34"
    weights: str = "imagenet"

    def __post_init__(self) -> None:
        if self.arch not in TRUNK_ARCHITECTURES:
            raise ValueError(f"TrunkConfig.arch={self.arch!r}; supported: {TRUNK_ARCHITECTURES}")
        if not isinstance(self.weights, str) or not self.weights:
            raise ValueError(f"TrunkConfig.weights must be 'imagenet', 'none' or a file path, got {self.weights!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrunkConfig":
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class DirectionConfig:
    """The direction classifier: trunk -> global average pool -> dropout -> linear(512, len(classes)).

    steer_head: also a continuous steering head on the same pooled (and dropped-out) features,
        tanh(linear(512, 1)): the steer in [-1, 1] of full lock, + = right (perception.direction).
        True for every new network; a card written before the field existed has no ``steer_head``
        key and describes a network without the head (:meth:`from_dict` reads the missing key as
        False), so older checkpoints load as they were trained and give ``steer`` None.
    """

    classes: tuple[str, ...] = DIRECTIONS
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    trunk: TrunkConfig = field(default_factory=TrunkConfig)
    dropout: float = 0.25
    steer_head: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "input_size", tuple(int(s) for s in self.input_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if isinstance(self.trunk, dict):
            object.__setattr__(self, "trunk", TrunkConfig.from_dict(self.trunk))
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"DirectionConfig.classes must be >= 2 distinct names, got {self.classes!r}")
        _check_size("DirectionConfig.input_size", self.input_size)
        _check_stats("DirectionConfig.mean", self.mean)
        _check_stats("DirectionConfig.std", self.std, positive=True)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"DirectionConfig.dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DirectionConfig":
        d = _known(cls, d)
        d.setdefault("steer_head", False)  # a dict from before the field: a network without the steer head
        d["steer_head"] = bool(d["steer_head"])
        if "trunk" in d:
            d["trunk"] = TrunkConfig.from_dict(d["trunk"])
        return cls(**{k: _tuple(v) for k, v in d.items()})


@dataclass(frozen=True)
class AnchorConfig:
    """Anchors: one level per feature map, k = len(scales) * len(aspect_ratios) per cell.

    feature_strides: nominal stride of each level's feature map w.r.t. the model
        input (4 = ResNet layer1 merged with layer2 (SSDNet's FineLevel), 8 = layer2, 16 = layer3,
        32 = layer4, 64, 128, ... = extra stride-2 blocks).
        The map size is the input size halved log2(stride) times, rounding up.
    sizes: base anchor side of each level, as a fraction of the input's shorter side.
    scales: multipliers of the base size (anchor sides = size * scale).
    aspect_ratios: width / height; the area is kept: w = s*sqrt(r), h = s/sqrt(r).
    """

    feature_strides: tuple[int, ...] = (8, 16, 32, 64, 128)
    sizes: tuple[float, ...] = (0.04, 0.08, 0.2, 0.4, 0.7)
    scales: tuple[float, ...] = (0.7, 1.0, 1.4)
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5)

    def __post_init__(self) -> None:
        for name in ("feature_strides", "sizes", "scales", "aspect_ratios"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.feature_strides or len(self.sizes) != len(self.feature_strides):
            raise ValueError(
                f"AnchorConfig: one size per feature stride needed, got strides {self.feature_strides} "
                f"and sizes {self.sizes}"
            )
        for s in self.feature_strides:
            if s < 4 or s & (s - 1):
                raise ValueError(f"AnchorConfig.feature_strides must be powers of two >= 4, got {s}")
        if list(self.feature_strides) != sorted(set(self.feature_strides)):
            raise ValueError(f"AnchorConfig.feature_strides must be strictly increasing, got {self.feature_strides}")
        if not self.scales or not self.aspect_ratios or min(self.scales + self.aspect_ratios + self.sizes) <= 0:
            raise ValueError("AnchorConfig: sizes, scales and aspect_ratios must be non-empty and > 0")

    @property
    def anchors_per_cell(self) -> int:
        """k: anchors per feature-map cell."""
        return len(self.scales) * len(self.aspect_ratios)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AnchorConfig":
        return cls(**{k: _tuple(v) for k, v in _known(cls, d).items()})


#: The source article's anchors: 4x4, 2x2 and 1x1 grids (at 224x224), 9 anchors a cell
#: (zooms 0.7/1/1.3 x ratios 1, 2, 1/2), base size = one grid cell.
ARTICLE_ANCHORS = AnchorConfig(
    feature_strides=(64, 128, 256), sizes=(0.25, 0.5, 1.0), scales=(0.7, 1.0, 1.3), aspect_ratios=(1.0, 2.0, 0.5)
)


#: The default anchors plus a stride-4 level (SSDNet's FineLevel) of base size 0.02 of the short
#: side, for objects a few pixels wide (training/RESULTS.md, "A stride-4 level for walkers").
STRIDE4_ANCHORS = AnchorConfig(
    feature_strides=(4, 8, 16, 32, 64, 128), sizes=(0.02, 0.04, 0.08, 0.2, 0.4, 0.7)
)


#: IoU at which an anchor becomes a positive, per layout (DetectorConfig.match_iou=None)
DEFAULT_MATCH_IOU: dict[str, float] = {"default": 0.3, "article": 0.5}


def default_anchor_config(layout: str) -> AnchorConfig:
    """The anchors that go with a detector layout ("default" or "article")."""
    if layout == "article":
        return ARTICLE_ANCHORS
    if layout == "default":
        return AnchorConfig()
    raise ValueError(f"unknown detector layout {layout!r}; choose one of {DETECTOR_LAYOUTS}")


@dataclass(frozen=True)
class DetectorConfig:
    """The SSD detector.

    classes: object class names; the network has len(classes) + 1 outputs per
        anchor, index 0 = background, index i = classes[i - 1].
    layout: "default" (heads on ResNet layer2 (stride 8), layer3 (16), layer4 (32) and
        extra blocks (64, 128, ...), as AnchorConfig.feature_strides says: the stride-8
        and stride-16 maps find distant objects) or "article" (the source article's head:
        a stride-1 block on layer4, then 4x4, 2x2, 1x1 grids at 224x224; 189 anchors).
    anchors: None = the layout's default anchors.
    loss: "focal" (softmax focal loss over all anchors) or "hnm" (cross-entropy with
        3:1 hard-negative mining); both add smooth-L1 on positive anchors' box deltas.
    match_iou: IoU at which an anchor becomes a positive for a ground truth; None = the
        layout's default: 0.3 for "default" (most simulator boxes are a few px tall and no
        anchor reaches IoU 0.5 with them: training.tools.anchor_coverage), 0.5 for "article".
    variances: SSD box-encoding variances (centre, size).
    extra_channels: width of the extra blocks and of the article's head.
    head_dropout: dropout in the extra blocks (the article uses 0.4).
    """

    classes: tuple[str, ...] = DEFAULT_DETECTION_CLASSES
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    trunk: TrunkConfig = field(default_factory=TrunkConfig)
    layout: str = "default"
    anchors: AnchorConfig | None = None
    loss: str = "focal"
    match_iou: float | None = None
    variances: tuple[float, float] = (0.1, 0.2)
    negative_ratio: float = 3.0
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25
    box_loss_weight: float = 1.0
    extra_channels: int = 256
    head_dropout: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "input_size", tuple(int(s) for s in self.input_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        object.__setattr__(self, "variances", tuple(float(v) for v in self.variances))
        if isinstance(self.trunk, dict):
            object.__setattr__(self, "trunk", TrunkConfig.from_dict(self.trunk))
        if self.layout not in DETECTOR_LAYOUTS:
            raise ValueError(f"DetectorConfig.layout={self.layout!r}; choose one of {DETECTOR_LAYOUTS}")
        if self.anchors is None:
            object.__setattr__(self, "anchors", default_anchor_config(self.layout))
        elif isinstance(self.anchors, dict):
            object.__setattr__(self, "anchors", AnchorConfig.from_dict(self.anchors))
        if self.match_iou is None:
            object.__setattr__(self, "match_iou", DEFAULT_MATCH_IOU[self.layout])
        if self.layout == "article" and min(self.anchors.feature_strides) < 64:
            raise ValueError("the 'article' layout has feature maps at strides >= 64 only; fix anchors.feature_strides")
        if self.loss not in DETECTOR_LOSSES:
            raise ValueError(f"DetectorConfig.loss={self.loss!r}; choose one of {DETECTOR_LOSSES}")
        if not self.classes or len(set(self.classes)) != len(self.classes) or "background" in self.classes:
            raise ValueError(f"DetectorConfig.classes must be distinct names (not 'background'), got {self.classes!r}")
        _check_size("DetectorConfig.input_size", self.input_size)
        _check_stats("DetectorConfig.mean", self.mean)
        _check_stats("DetectorConfig.std", self.std, positive=True)
        if not 0.0 < self.match_iou <= 1.0:
            raise ValueError(f"DetectorConfig.match_iou must be in (0, 1], got {self.match_iou}")

    @property
    def num_classes(self) -> int:
        """C, the number of object classes (the network outputs C + 1 scores)."""
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (TrunkConfig, AnchorConfig)):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            d[f.name] = value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DetectorConfig":
        d = _known(cls, d)
        if "trunk" in d:
            d["trunk"] = TrunkConfig.from_dict(d["trunk"])
        if d.get("anchors") is not None:
            d["anchors"] = AnchorConfig.from_dict(d["anchors"])
        return cls(**{k: _tuple(v) for k, v in d.items()})


def _known(cls, d: dict[str, Any]) -> dict[str, Any]:
    """The keys of ``d`` that ``cls`` has; an unknown key is an error naming it."""
    if not isinstance(d, dict):
        raise TypeError(f"{cls.__name__}.from_dict needs a dict, got {type(d).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}.from_dict: unknown keys {unknown}; known: {sorted(names)}")
    return dict(d)


def with_trunk_weights(config, weights: str):
    """A copy of a Direction/DetectorConfig whose trunk uses ``weights`` instead."""
    return replace(config, trunk=replace(config.trunk, weights=weights))
