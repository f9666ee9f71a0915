"""Joint training: one ResNet34 trunk, the direction head and the SSD heads, trained together.

Every simulator frame carries both labels (a direction and boxes), so one trunk
pass per step can feed both losses. The result is a pair of ordinary
perception checkpoints (``*.direction.safetensors`` and
``*.detector.safetensors``) with bit-identical trunk weights: the Perceiver
sees ``shared_trunk=True`` and runs the trunk once per frame when driving.

Pieces:

- :class:`JointConfig`: the two perception configs; input size, mean, std and
  trunk must agree (checked).
- :class:`JointNet`: ``forward(x) -> (direction_logits (B,3), (cls_logits (B,A,C+1),
  box_deltas (B,A,4)))`` with the trunk computed once (``trunk.forward_levels``).
- :class:`JointDataset`: frames with both a direction label and box labels;
  one :class:`~training.data.augment.Augmenter` call per item, so a flip mirrors the
  boxes and swaps left/right of the same sample.
- :class:`JointTask` (kind ``"joint"``): loss = ``direction_loss_weight`` *
  cross-entropy(direction) + ``steer_loss_weight`` * the steer head's masked SmoothL1
  (training.tasks.direction.steer_loss) + detector loss; evaluation = the direction report
  and the detector report (DirectionTask / DetectorTask on views of the data);
  primary metric ``joint_score`` = mean of direction accuracy and detector mAP@0.5.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from perception.config import DetectorConfig, DirectionConfig
from training.config import EVAL_SCORE_THRESHOLD, AugmentConfig
from training.data.augment import IDENTITY_JITTER, Augmenter
from training.data.datasets import _FrameDataset, box_targets, direction_targets, steer_targets
from training.data.samples import FrameSample
from training.tasks.base import Task
from training.tasks.detector import DetectorTask
from training.tasks.direction import DirectionTask, has_steer_head
from training.tasks.init_state import load_init_state

log = logging.getLogger(__name__)

#: the checkpoint kinds a joint run writes, in this order: RUN/best.direction.safetensors, RUN/best.detector.safetensors
JOINT_PARTS = ("direction", "detector")


@dataclass(frozen=True)
class JointConfig:
    """The two networks of a joint model; they must read the same input the same way.

    direction / detector: perception configs with equal input_size (H, W), mean, std and trunk.
    """

    direction: DirectionConfig
    detector: DetectorConfig

    def __post_init__(self) -> None:
        for name in ("input_size", "mean", "std", "trunk"):
            a, b = getattr(self.direction, name), getattr(self.detector, name)
            if a != b:
                raise ValueError(f"joint model: direction {name} {a} differs from detector {name} {b}; a shared "
                                 "trunk needs the same input size, normalisation and trunk")

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.direction.input_size)

    @property
    def mean(self) -> tuple[float, float, float]:
        return self.direction.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self.direction.std

    @property
    def classes(self) -> tuple[str, ...]:
        """The direction classes (what class balancing and ``--balance loss`` refer to)."""
        return self.direction.classes

    def to_dict(self) -> dict:
        return {"direction": self.direction.to_dict(), "detector": self.detector.to_dict()}


class JointNet(nn.Module):
    """A DirectionNet and an SSDNet that share one trunk object (``detector.trunk is direction.trunk``).

    forward(x (B,3,H,W) normalised, (H, W) = the detector's input_size)
        -> (direction_logits (B, n_directions), (cls_logits (B, A, C+1), box_deltas (B, A, 4))),
        the trunk run once; ``with_steer=True``: the first item is (direction_logits, steer (B,) or None),
        as DirectionNet.forward_head gives it. The detector's own trunk is dropped; its head is kept.
    state_dict() holds the shared trunk once, as direction.trunk.*; load_state_dict() accepts that
    (or both copies).
    """

    kind = "joint"

    def __init__(self, direction: nn.Module, detector: nn.Module) -> None:
        super().__init__()
        if tuple(direction.config.input_size) != tuple(detector.config.input_size):
            raise ValueError(f"JointNet: direction input {direction.config.input_size} differs from detector input "
                             f"{detector.config.input_size}")
        detector.trunk = direction.trunk
        self.direction = direction
        self.detector = detector
        self.config = JointConfig(direction.config, detector.config)
        # the shared trunk once in state dicts (under direction.trunk.*): resumable states stay one trunk big
        self.register_state_dict_post_hook(_drop_detector_trunk)
        self.register_load_state_dict_pre_hook(_fill_detector_trunk)

    @property
    def trunk(self) -> nn.Module:
        return self.direction.trunk

    @property
    def has_steer_head(self) -> bool:
        return self.direction.has_steer_head

    def forward(self, x: Tensor, with_steer: bool = False):
        levels = self.detector.forward_features(x)  # checks the input size; trunk.forward_levels once
        return self.direction.forward_head(levels[-1], with_steer=with_steer), self.detector.forward_head(levels)

    def freeze_trunk(self, frozen: bool = True) -> None:
        """Stop (or restart) training the shared trunk; while frozen its BatchNorm layers stay in eval mode."""
        self.direction.freeze_trunk(frozen)
        self.detector.freeze_trunk(frozen)

    @property
    def trunk_frozen(self) -> bool:
        return self.direction.trunk_frozen

    def param_groups(self, lr_trunk: float, lr_head: float) -> list[dict]:
        """Optimizer groups "trunk" (lr_trunk), "direction_head" and "detector_head" (lr_head);
        every trainable parameter exactly once, frozen ones left out."""
        trunk_ids = {id(p) for p in self.trunk.parameters()}
        groups = []
        trunk = [p for p in self.trunk.parameters() if p.requires_grad]
        if trunk:
            groups.append({"params": trunk, "lr": lr_trunk, "name": "trunk"})
        for name, part in (("direction_head", self.direction), ("detector_head", self.detector)):
            head = [p for p in part.parameters() if id(p) not in trunk_ids and p.requires_grad]
            if head:
                groups.append({"params": head, "lr": lr_head, "name": name})
        return groups


def _drop_detector_trunk(module, state_dict, prefix, local_metadata) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + "detector.trunk.")]:
        del state_dict[key]


def _fill_detector_trunk(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                         error_msgs) -> None:
    source = prefix + "direction.trunk."
    for key in [k for k in state_dict if k.startswith(source)]:
        state_dict.setdefault(prefix + "detector.trunk." + key[len(source):], state_dict[key])


class JointDataset(_FrameDataset):
    """Frames with both labels.

    item: (image (3,H,W) uint8, {"direction": () int64, "steer": () float32 (NaN: no steer label),
    "boxes": (N,4) float32 xyxy model-input px, "labels": (N,) int64 in 1..C}, jitter (4,)). One
    Augmenter call per item: a flip mirrors the boxes, swaps left/right and negates the steer together.
    """

    def __init__(self, samples: Sequence[FrameSample], input_size, directions: Sequence[str],
                 classes: Sequence[str], augmenter: Augmenter | None = None, cache: bool = True,
                 base_seed: int = 0) -> None:
        self.directions = tuple(directions)
        self.classes = tuple(classes)
        size = (int(input_size[0]), int(input_size[1]))
        both = [s for s in samples if s.direction is not None and s.boxes_labelled]
        if len(both) < len(samples):
            log.info("joint: %d of %d frames lack a direction label or box labels and are skipped",
                     len(samples) - len(both), len(samples))
        self.targets = direction_targets(both, self.directions)
        self.steers = steer_targets(both)
        self.boxes, self.labels = box_targets(both, size, self.classes, "joint")
        if not both and samples:
            raise ValueError("no frames with both a direction label and box labels: joint training needs sessions "
                             "recorded with both (e.g. `truckpilot record --sim`); train direction and detector "
                             "separately otherwise")
        super().__init__(both, size, augmenter, cache, base_seed)

    def __getitem__(self, key):
        index, seed = self._key(key)
        image, boxes, labels, direction = self.image(index), self.boxes[index], self.labels[index], \
            int(self.targets[index])
        jitter = torch.tensor(IDENTITY_JITTER)
        steer = self.steers[index].clone()
        if self.augmenter is not None:
            if self.augmenter.flips(seed):
                steer = -steer
            image, boxes, labels, direction, jitter = self.augmenter(image, boxes, labels, direction, seed)
        return image, {"direction": torch.tensor(direction, dtype=torch.int64), "steer": steer,
                       "boxes": boxes.float().reshape(-1, 4), "labels": labels}, jitter

    def class_counts(self) -> Tensor:
        """Frames per direction class (the joint run balances on directions)."""
        return torch.bincount(self.targets, minlength=len(self.directions))

    def sample_weights(self) -> Tensor:
        """Per-frame draw weight inversely proportional to its direction's frequency."""
        counts = self.class_counts().clamp(min=1).double()
        return (1.0 / counts)[self.targets]

    def direction_view(self, steer: bool = False) -> "LabelView":
        """The same frames as a direction dataset: items (image, direction int64, jitter); with ``steer``
        (image, {"direction", "steer"}, jitter), as DirectionDataset's ``steer`` items."""
        if steer:
            return LabelView(self, lambda t: {"direction": t["direction"], "steer": t["steer"]})
        return LabelView(self, lambda t: t["direction"])

    def detection_view(self) -> "LabelView":
        """The same frames as a detection dataset: items (image, {"boxes", "labels"}, jitter)."""
        return LabelView(self, lambda t: {"boxes": t["boxes"], "labels": t["labels"]})


class LabelView(Dataset):
    """A JointDataset seen through one of its labels (shares its frame cache; no copy).

    Has what DirectionTask.evaluate / DetectorTask.evaluate use: len, items, ``names``, ``image(i)``.
    """

    def __init__(self, base: JointDataset, pick) -> None:
        self.base = base
        self.pick = pick
        self.names = base.names

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        image, target, jitter = self.base[key]
        return image, self.pick(target), jitter

    def image(self, index: int) -> Tensor:
        return self.base.image(index)


def joint_collate(batch):
    """-> images (B,3,H,W) uint8, {"direction": (B,) int64, "steer": (B,) float32 (NaN: no label),
    "detections": list of {"boxes", "labels"}}, jitter (B,4)."""
    images = torch.stack([item[0] for item in batch])
    targets = {"direction": torch.stack([item[1]["direction"] for item in batch]),
               "detections": [{"boxes": item[1]["boxes"], "labels": item[1]["labels"]} for item in batch]}
    if "steer" in batch[0][1]:
        targets["steer"] = torch.stack([item[1]["steer"] for item in batch])
    return images, targets, torch.stack([item[2] for item in batch])


def checkpoint_paths(stem: Path) -> dict[str, Path]:
    """{"direction": STEM.direction.safetensors, "detector": STEM.detector.safetensors}."""
    stem = Path(stem)
    return {part: stem.with_name(f"{stem.name}.{part}.safetensors") for part in JOINT_PARTS}


class JointTask(Task):
    """Both networks on one trunk; primary metric ``joint_score`` = (direction accuracy + detector mAP@0.5) / 2."""

    kind = "joint"
    primary_metric = "joint_score"

    def __init__(self, model_config: JointConfig, direction_loss_weight: float = 1.0,
                 steer_loss_weight: float = 1.0) -> None:
        if not isinstance(model_config, JointConfig):
            raise TypeError(f"JointTask needs a JointConfig, got {type(model_config).__name__}")
        if direction_loss_weight < 0:
            raise ValueError(f"--direction-loss-weight {direction_loss_weight} must be >= 0")
        super().__init__(model_config)
        self.direction_loss_weight = float(direction_loss_weight)
        self.direction_task = DirectionTask(model_config.direction, steer_loss_weight)
        self.steer_loss_weight = self.direction_task.steer_loss_weight
        self.detector_task = DetectorTask(model_config.detector)

    @classmethod
    def create(cls, model_config: JointConfig, direction_loss_weight: float = 1.0,
               steer_loss_weight: float = 1.0) -> "JointTask":
        return cls(model_config, direction_loss_weight, steer_loss_weight)

    @classmethod
    def default_model_config(cls, trunk_weights: str, input_size: tuple[int, int] | None,
                             classes: Sequence[str] | None = None, detector_options: dict | None = None
                             ) -> JointConfig:
        return JointConfig(DirectionTask.default_model_config(trunk_weights, input_size),
                           DetectorTask.default_model_config(trunk_weights, input_size, classes, detector_options))

    def build_model(self, init_trunk_weights: bool = True) -> JointNet:
        from perception.detector import SSDNet
        from perception.direction import DirectionNet

        direction = DirectionNet(self.model_config.direction, init_trunk_weights=init_trunk_weights)
        detector = SSDNet(self.model_config.detector, init_trunk_weights=False)  # its trunk is replaced
        return JointNet(direction, detector)

    def build_dataset(self, samples, augment: bool, cache: bool, seed: int,
                      augment_config: AugmentConfig = AugmentConfig()) -> JointDataset:
        cfg = self.model_config
        augmenter = (Augmenter(self.input_size, augment_config.for_task(self.kind), tuple(cfg.direction.classes))
                     if augment else None)
        return JointDataset(samples, self.input_size, cfg.direction.classes, cfg.detector.classes, augmenter, cache,
                            seed)

    def collate(self, batch):
        return joint_collate(batch)

    def targets_to(self, targets, device):
        moved = {"direction": self.direction_task.targets_to(targets["direction"], device),
                 "detections": self.detector_task.targets_to(targets["detections"], device)}
        if "steer" in targets:
            moved["steer"] = targets["steer"].to(device, non_blocking=True)
        return moved

    def forward(self, model, x):
        """((direction_logits, steer), detector outputs) when the direction network has the steer head,
        else JointNet's plain (direction_logits, detector outputs)."""
        return model(x, with_steer=True) if has_steer_head(model) else model(x)

    def batch_loss(self, model: JointNet, outputs, targets, class_weights=None, input_size=None) -> Tensor:
        """direction_loss_weight x cross-entropy + steer_loss_weight x steer loss (when the outputs hold a
        steer and the targets steer labels) + the detector loss."""
        direction_outputs, detector_outputs = outputs
        direction = self.direction_task.batch_loss(model.direction, direction_outputs, targets["direction"],
                                                   class_weights)
        detector = self.detector_task.batch_loss(model.detector, detector_outputs, targets["detections"],
                                                 input_size=input_size)
        loss = self.direction_loss_weight * direction + detector
        steer = self.direction_task.steer_term(direction_outputs, {"steer": targets["steer"]}
                                               if "steer" in targets else None)
        return loss if steer is None else loss + steer

    def evaluate_options(self, config) -> dict:
        return self.detector_task.evaluate_options(config)

    def evaluate(self, model: JointNet, dataset: JointDataset, device, out_dir=None, batch_size=64, amp_dtype=None,
                 channels_last=False, score_threshold: float = EVAL_SCORE_THRESHOLD) -> dict:
        """{"joint_score", "direction_accuracy", "detector_map_50", "detector_map", "steer_mae" and
        "steer_mae_expected" (when the frames have steer labels), "direction": the DirectionTask report,
        "detector": the DetectorTask report}; out_dir gets both tasks' PNGs
        (confusion_matrix, top_losses, pr_curves, errors_gallery). The trunk runs once per task here."""
        common = dict(device=device, out_dir=out_dir, batch_size=batch_size, amp_dtype=amp_dtype,
                      channels_last=channels_last)
        direction = self.direction_task.evaluate(model.direction, dataset.direction_view(steer=True), **common)
        detector = self.detector_task.evaluate(model.detector, dataset.detection_view(),
                                               score_threshold=score_threshold, **common)
        return {"joint_score": (float(direction["accuracy"]) + float(detector["map_50"])) / 2.0,
                "direction_accuracy": float(direction["accuracy"]), "detector_map_50": float(detector["map_50"]),
                "detector_map": float(detector["map"]), "frames": len(dataset),
                **{key: direction[key] for key in ("steer_mae", "steer_mae_expected") if key in direction},
                "direction": direction, "detector": detector}

    def checkpoint_paths(self, stem: Path) -> dict[str, Path]:
        return checkpoint_paths(stem)

    def save_checkpoints(self, stem: Path, model: JointNet, provenance: dict, metrics: dict | None = None
                         ) -> dict[str, Path]:
        """Two ordinary perception checkpoints with identical trunk tensors:
        STEM.direction.safetensors (a DirectionNet) and STEM.detector.safetensors (an SSDNet).
        Each card's provenance gets its own network's numeric validation metrics and ``joint_score``."""
        from perception.checkpoint import ModelCard, save_model

        paths = self.checkpoint_paths(stem)
        for part in JOINT_PARTS:
            prov = {**provenance, "joint": {"trained_together_with": _other_part(part), "shared_trunk": True,
                                            "pair": paths[_other_part(part)].name}}
            if metrics:
                own = metrics[part]
                prov["val_metrics"] = {**{k: v for k, v in own.items() if isinstance(v, (int, float))},
                                       "joint_score": metrics["joint_score"]}
            net = getattr(model, part)
            save_model(paths[part], net, ModelCard.for_model(net, prov))
        return paths

    def load_init(self, model: JointNet, init: str) -> None:
        """--init for a joint run: a joint pair's stem (RUN/best) or either file of it, or a direction
        checkpoint whose pair is missing; see :func:`resolve_init_pair`."""
        from perception.checkpoint import load_model

        pair = resolve_init_pair(init)
        for part, path in pair.items():
            if path is None:
                continue
            source, card = load_model(path, "cpu")
            if card.kind != part:
                raise ValueError(f"--init {path} is a {card.kind} checkpoint, expected a {part} one")
            load_init_state(getattr(model, part), source.state_dict(), path, source_config=source.config)
        if pair["direction"] is not None:  # the detector's load overwrote the shared trunk: the direction's wins
            source, _ = load_model(pair["direction"], "cpu")
            model.trunk.load_state_dict(source.trunk.state_dict())


def _other_part(part: str) -> str:
    """direction <-> detector."""
    return "detector" if part == "direction" else "direction"


def resolve_init_pair(init: str) -> dict[str, Path | None]:
    """--init of a joint run -> {"direction": path or None, "detector": path or None}.

    Accepts RUN/best (the stem), RUN/best.direction.safetensors or RUN/best.detector.safetensors
    (the pair is then both files), or any single direction/detector checkpoint (the other part
    starts fresh). When both exist, the trunk is taken from the direction checkpoint.
    """
    path = Path(init)
    for part in JOINT_PARTS:
        suffix = f".{part}.safetensors"
        if path.name.endswith(suffix):
            path = path.with_name(path.name[: -len(suffix)])
            break
    pair = checkpoint_paths(path)
    if any(p.exists() for p in pair.values()):
        return {part: (p if p.exists() else None) for part, p in pair.items()}
    if Path(init).exists():
        from perception.checkpoint import read_card

        card = read_card(init)
        return {part: (Path(init) if card.kind == part else None) for part in JOINT_PARTS}
    raise FileNotFoundError(f"--init {init}: neither {pair['direction']} nor {pair['detector']} nor {init} exists; "
                            "give a joint run's stem (RUN/best) or a .safetensors checkpoint")
