"""The training run's configuration: one frozen dataclass, fields carry their help.

CleanRL style: every option is a dataclass field whose ``metadata["help"]`` is
the ``--help`` text; :func:`parse_train_config` builds the argparse parser from
the fields, so the CLI and the saved ``config.json`` can never drift apart.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

from training.cpu_malloc import CPU_MALLOC_CHOICES

TASKS = ("direction", "detector", "joint")
BALANCE_MODES = ("sampler", "sampler-size", "loss", "none")


#: the detector's default random-crop scale floor (scale augmentation; its boxes follow the crop)
DETECTOR_CROP_MIN_SCALE = 0.6
#: detector evaluation keeps detections scoring at least this (mAP needs the low-confidence end of the PR curve)
EVAL_SCORE_THRESHOLD = 0.05


def _opt(default, help: str, **extra):
    """A dataclass field with a default and its ``--help`` text."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; saved as RUN_DIR/config.json."""

    task: str = _opt("direction", "which network to train: direction | detector | joint (both on one shared trunk, "
                     "writes best.direction.safetensors + best.detector.safetensors)", positional=True)
    data: tuple[str, ...] = _opt((), "session directories to train on (several allowed)", nargs="+")
    out: str = _opt("runs/train", "run directory: config.json, metrics.json, plots, best checkpoint, state/")
    val_data: tuple[str, ...] = _opt(
        (), "session directories to validate on; when empty, whole sessions are held out from --data", nargs="*"
    )
    val_fraction: float = _opt(0.2, "share of --data sessions held out for validation when --val-data is empty")
    init: str = _opt("", "start from this checkpoint (.safetensors written by perception.save_model); joint: a joint "
                     "run's stem RUN/best, either file of the pair, or a single direction/detector checkpoint")
    trunk_weights: str = _opt(
        "imagenet", "trunk initialisation when --init is empty: imagenet | none | PATH (a torchvision resnet34 "
        "state dict, or a direction/detector checkpoint's .safetensors: its trunk starts a model with, e.g., "
        "new anchors)")
    input_height: int = _opt(0, "model input height in px (0: the model's default)")
    input_width: int = _opt(0, "model input width in px (0: the model's default)")
    train_crop_height: int = _opt(
        0, "detector: train on crops this many px tall, cut at the model input's pixel scale (objects as large as "
        "in the full input, a step costs the crop's pixels); validation and the checkpoint stay at the full "
        "input size (0: no training crops, samples are the whole input)")
    train_crop_width: int = _opt(0, "detector: width in px of the training crops (with --train-crop-height)")
    crop_on_boxes: float = _opt(
        0.0, "detector: probability that a crop's window is placed to hold a box of the frame whole (one "
        "drawn at random, where it fits), else anywhere; for --train-crop-height/--train-crop-width, whose "
        "windows are a fraction of the frame and mostly miss the few rows where objects are (0: anywhere)")
    anchor_strides: tuple[int, ...] = _opt(
        (), "detector/joint, fresh models: feature strides of the anchor levels (empty: the default 8 16 32 64 "
        "128; 8 is a level on ResNet layer2 for small, distant objects; 4 adds a level on layer1 merged with "
        "layer2, for objects a few px wide)", nargs="*")
    anchor_sizes: tuple[float, ...] = _opt(
        (), "detector/joint, fresh models: base anchor side of each level as a fraction of the input's shorter "
        "side, one per --anchor-strides (empty: the default sizes)", nargs="*")
    anchor_ratios: tuple[float, ...] = _opt(
        (), "detector/joint, fresh models: anchor width/height ratios (empty: the default 1 2 0.5)", nargs="*")
    match_iou: float = _opt(
        0.0, "detector/joint, fresh models: IoU at which an anchor becomes a positive for a box (0: the default "
        "0.3; lower gives small boxes more positive anchors)")
    epochs: int = _opt(6, "total epochs (frozen + unfrozen)")
    epoch_frames: int = _opt(0, "frames drawn per epoch (0: as many as the training set holds); sizes a run to a "
                                "time budget without dropping sessions (with --balance sampler or sampler-size "
                                "drawn with replacement, else shuffled passes over the frames)")
    freeze_epochs: int = _opt(1, "epochs with the trunk frozen (head only) before unfreezing everything")
    batch_size: int = _opt(64, "images per step per process")
    lr: float = _opt(1e-3, "peak learning rate of the head (one-cycle max_lr)")
    trunk_lr_div: float = _opt(10.0, "after unfreezing, trunk max_lr = lr / trunk_lr_div (discriminative rates)")
    weight_decay: float = _opt(1e-4, "AdamW decoupled weight decay")
    pct_start: float = _opt(0.25, "one-cycle warm-up share of each phase")
    balance: str = _opt(
        "sampler", "class balancing: sampler (WeightedRandomSampler-style draws) | sampler-size (detector: draws "
                   "balanced over class x height band, small / medium / large as in the metrics, so frames with far "
                   "objects of a rare class come up as often as the others, and a crop placed on a box, "
                   "--crop-on-boxes, picks the rare one) | loss (class weights) | none"
    )
    augment: bool = _opt(True, "flip (mirrors boxes, swaps left/right), colour jitter, box-aware random crop "
                                "(--crop-min-scale: by default for the detector only)")
    flip: bool = _opt(True, "horizontal flips in the augmentation (mirrors boxes, swaps left/right labels)")
    crop_min_scale: float = _opt(0.0, "random resized crop: smallest share of the frame area a crop keeps; 1.0: no "
                                      "crop; 0: auto = 0.6 for the detector, no crop for direction and joint (a crop "
                                      "shifts the road sideways and the direction label does not follow it)")
    color_jitter: float = _opt(0.3, "colour jitter strength: brightness, contrast and saturation factors in "
                                    "[1 - this, 1 + this], hue shift up to this / 10 turns (0: none)")
    cache: bool = _opt(True, "decode every frame once at model resolution and keep uint8 tensors in memory")
    device: str = _opt("auto", "auto (CUDA when present, else CPU) | cpu | cuda | cuda:N")
    cpu_malloc: str = _opt("keep", "CPU runs: keep (glibc keeps freed blocks for reuse instead of returning them "
                                   "to the OS every step; faster CPU steps, the peak heap stays held) | system "
                                   "(glibc's defaults); training/cpu_malloc.py")
    amp: str = _opt("auto", "mixed precision: auto (bf16 autocast on CUDA) | bf16 | off")
    channels_last: str = _opt("auto", "channels_last memory format: auto (on CUDA) | on | off")
    num_workers: int = _opt(-1, "DataLoader worker processes (-1: auto, 0: load in the main process)")
    seed: int = _opt(0, "seed for python, numpy, torch, the split and the augmentation")
    deterministic: bool = _opt(False, "torch.use_deterministic_algorithms(True) (CPU: bit-exact resume)")
    eval_every_epochs: int = _opt(1, "validate (and maybe save best) every N epochs")
    save_every_steps: int = _opt(0, "also write the resumable state every N steps (0: only at epoch ends)")
    resume: bool = _opt(False, "continue the run in --out from state/last.pt exactly where it stopped")
    max_steps: int = _opt(0, "stop after this many optimizer steps in total (0: no limit; smoke tests)")
    find_lr: bool = _opt(False, "run the LR range test, write lr_find.png + lr_find.json, then exit")
    find_lr_steps: int = _opt(100, "mini-batches the LR range test may take (it stops early when the loss blows up)")
    benchmark_steps: int = _opt(0, "time N training steps (after warm-up), print img/s and data-wait share, exit")
    score_threshold: float = _opt(EVAL_SCORE_THRESHOLD, "detector: minimum score kept for evaluation")
    direction_loss_weight: float = _opt(1.0, "joint: loss = this * direction cross-entropy + detector loss")
    log_every_steps: int = _opt(10, "progress bar / non-finite check interval in steps")
    debug_inject_nan_at_step: int = _opt(-1, argparse.SUPPRESS)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r}: choose one of {TASKS}")
        if self.balance not in BALANCE_MODES:
            raise ValueError(f"--balance {self.balance!r}: choose one of {BALANCE_MODES}")
        if self.balance == "sampler-size" and self.task != "detector":
            raise ValueError(f"--balance sampler-size balances box sizes: it applies to the detector only, not to "
                             f"a {self.task} run; use --balance sampler")
        if self.cpu_malloc not in CPU_MALLOC_CHOICES:
            raise ValueError(f"--cpu-malloc {self.cpu_malloc!r}: choose one of {CPU_MALLOC_CHOICES}")
        if self.amp not in ("auto", "bf16", "off"):
            raise ValueError(f"--amp {self.amp!r}: choose auto, bf16 or off")
        if self.channels_last not in ("auto", "on", "off"):
            raise ValueError(f"--channels-last {self.channels_last!r}: choose auto, on or off")
        if not 0 <= self.freeze_epochs <= self.epochs:
            raise ValueError(f"--freeze-epochs {self.freeze_epochs} must lie in 0..--epochs ({self.epochs})")
        if self.epoch_frames < 0:
            raise ValueError(f"--epoch-frames {self.epoch_frames} must be >= 0 (0: the training set's size)")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size {self.batch_size} must be >= 1")
        if self.direction_loss_weight < 0:
            raise ValueError(f"--direction-loss-weight {self.direction_loss_weight} must be >= 0")
        if not 0.0 <= self.crop_min_scale <= 1.0:
            raise ValueError(f"--crop-min-scale {self.crop_min_scale} must lie in [0, 1]; 1.0 turns the crop off, "
                             "0 picks it per task")
        if not 0.0 <= self.color_jitter < 1.0:
            raise ValueError(f"--color-jitter {self.color_jitter} must lie in [0, 1); 0 turns it off")
        if not 0.0 <= self.match_iou <= 1.0:
            raise ValueError(f"--match-iou {self.match_iou} must lie in (0, 1], or be 0 for the default")
        fresh_detector_options = self.anchor_strides or self.anchor_sizes or self.anchor_ratios or self.match_iou
        if fresh_detector_options and self.task == "direction":
            raise ValueError("--anchor-strides/--anchor-sizes/--anchor-ratios/--match-iou are detector options; "
                             "drop them for a direction run")
        if fresh_detector_options and self.init:
            raise ValueError("--anchor-* and --match-iou shape a fresh detector; with --init the checkpoint's "
                             "anchors and matching are used: drop them or drop --init")
        if bool(self.anchor_strides) != bool(self.anchor_sizes):
            raise ValueError("give --anchor-strides and --anchor-sizes together (one size per stride), or neither")
        self.detector_options()  # AnchorConfig's own checks, at parse time
        if bool(self.train_crop_height) != bool(self.train_crop_width):
            raise ValueError("give --train-crop-height and --train-crop-width together, or neither")
        if self.train_crop_height < 0 or self.train_crop_width < 0:
            raise ValueError(f"--train-crop-height/--train-crop-width {self.train_crop_height}x"
                             f"{self.train_crop_width} must be positive (0: no training crops)")
        if self.train_crop_height and self.task != "detector":
            raise ValueError("--train-crop-height/--train-crop-width are detector options (a crop shifts the road "
                             "sideways and a direction label does not follow it): drop them for a "
                             f"{self.task} run")
        if not 0.0 <= self.crop_on_boxes <= 1.0:
            raise ValueError(f"--crop-on-boxes {self.crop_on_boxes} must lie in [0, 1] (a probability)")
        if self.crop_on_boxes and self.task != "detector":
            raise ValueError(f"--crop-on-boxes is a detector option (direction and joint runs do not crop): drop it "
                             f"for a {self.task} run")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction {self.val_fraction} must lie strictly between 0 and 1")

    @property
    def resolved_crop_min_scale(self) -> float:
        """--crop-min-scale with 0 (auto) resolved: 0.6 for the detector, 1.0 (no crop) for direction and joint."""
        if self.crop_min_scale > 0:
            return self.crop_min_scale
        return DETECTOR_CROP_MIN_SCALE if self.task == "detector" else 1.0

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(H, W) override, or None for the model's default."""
        if self.input_height and self.input_width:
            return (self.input_height, self.input_width)
        if self.input_height or self.input_width:
            raise ValueError("give both --input-height and --input-width, or neither")
        return None

    @property
    def train_crop_size(self) -> tuple[int, int] | None:
        """(H, W) of the detector's training crops, or None for whole-input samples."""
        if self.train_crop_height and self.train_crop_width:
            return (self.train_crop_height, self.train_crop_width)
        return None

    def detector_options(self) -> dict:
        """Keyword arguments of a fresh perception DetectorConfig from --anchor-* and --match-iou
        (only those given; an empty dict keeps every default). AnchorConfig checks the anchors
        and names what is wrong."""
        options = {}
        if self.anchor_strides or self.anchor_ratios:
            from perception.config import AnchorConfig

            changes = {}
            if self.anchor_strides:
                changes.update(feature_strides=tuple(self.anchor_strides), sizes=tuple(self.anchor_sizes))
            if self.anchor_ratios:
                changes["aspect_ratios"] = tuple(self.anchor_ratios)
            options["anchors"] = dataclasses.replace(AnchorConfig(), **changes)
        if self.match_iou:
            options["match_iou"] = self.match_iou
        return options

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def build_parser(cls=TrainConfig, prog: str = "truckpilot train") -> argparse.ArgumentParser:
    """An argparse parser with one option per dataclass field (help from metadata)."""
    parser = argparse.ArgumentParser(prog=prog, description=cls.__doc__)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        help_ = f.metadata.get("help")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        hint = hints[f.name]
        if f.metadata.get("positional"):
            parser.add_argument(f.name, choices=TASKS if f.name == "task" else None, help=help_)
            continue
        flag = "--" + f.name.replace("_", "-")
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_)
        elif typing.get_origin(hint) is tuple:
            parser.add_argument(flag, nargs=f.metadata.get("nargs", "+"), type=typing.get_args(hint)[0],
                                default=list(default), help=help_)
        else:
            parser.add_argument(flag, type=hint, default=default, help=help_)
    return parser


def parse_train_config(argv: list[str]) -> TrainConfig:
    """Resolve a TrainConfig from command-line arguments (``truckpilot train ...``)."""
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    try:
        config = TrainConfig.from_dict(args)
    except ValueError as exc:
        parser.error(str(exc))
    if not config.data and not config.resume:
        parser.error("--data SESSION... is required")
    return config
