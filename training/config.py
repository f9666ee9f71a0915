"""The training run's configuration: nested frozen dataclasses by concern; every field carries its help.

:class:`TrainConfig` holds the task and one section per concern: ``data`` (:class:`DataConfig`),
``model`` (:class:`ModelConfig`), ``optim`` (:class:`OptimConfig`), ``augment``
(:class:`AugmentConfig`), ``runtime`` (:class:`RuntimeConfig`) and ``run`` (:class:`RunConfig`).
Each leaf field is made by :func:`option`: its default, its ``--help`` text and its command-line
flag (``--`` + the field name with dashes, unless ``flag=`` names another). One helper builds the
parser from any such dataclass tree (:func:`add_arguments`, one argument group per section) and the
nested config back from the parsed namespace (:func:`from_arguments`), so the CLI, the code and the
saved ``RUN_DIR/config.json`` (:meth:`TrainConfig.to_dict`, nested like the classes) cannot drift
apart. Flags stay flat (``--lr``, not ``--optim.lr``): each flag names one field of the whole tree.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
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


# ---------------------------------------------------------------------------- the helper

def option(default, help: str, *, flag: str | None = None, nargs: str | None = None,
           choices: tuple | None = None, positional: bool = False, resume_may_differ: bool = False):
    """A dataclass field that is one command-line option.

    default: its value when the flag is not given (a tuple field's default must be a tuple).
    help: the ``--help`` text (``argparse.SUPPRESS``: a working flag that ``--help`` does not list).
    flag: the option's name without ``--`` (default: the field name with ``_`` -> ``-``).
    nargs: for tuple fields, argparse's nargs (default ``+``).
    choices: the values allowed; argparse refuses others and :func:`check_choices` does for code.
    positional: a positional argument instead of a ``--`` option (top-level fields only).
    resume_may_differ: ``--resume`` accepts another value than the run started with (how the run is
        driven, not what it computes: ``--device``, ``--max-steps``, ...).
    """
    metadata = {"help": help, "flag": flag, "nargs": nargs, "choices": choices, "positional": positional,
                "resume_may_differ": resume_may_differ, "cli": True}
    return field(default=default, metadata=metadata)


def tuning(default, help: str):
    """A dataclass field that is a fixed tuning, not a command-line option: saved with the config and settable
    in code (tests pin one to make a draw exact), but no flag sets it."""
    metadata = {"help": help, "flag": None, "nargs": None, "choices": None, "positional": False,
                "resume_may_differ": False, "cli": False}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class ConfigOption:
    """One leaf field of a config tree: where it sits (``path``, e.g. ("optim", "lr")) and how it is spelled."""

    path: tuple[str, ...]
    field: dataclasses.Field
    hint: type

    @property
    def dest(self) -> str:
        """The argparse destination: the dotted path, e.g. ``optim.lr``."""
        return ".".join(self.path)

    @property
    def flag(self) -> str:
        """``--lr`` (a positional field: its name)."""
        if self.field.metadata["positional"]:
            return self.field.name
        return "--" + (self.field.metadata["flag"] or self.field.name.replace("_", "-"))

    @property
    def help(self) -> str:
        return self.field.metadata["help"]

    @property
    def on_command_line(self) -> bool:
        """False for a :func:`tuning` field: no flag sets it."""
        return self.field.metadata["cli"]

    @property
    def is_tuple(self) -> bool:
        return typing.get_origin(self.hint) is tuple

    def get(self, config):
        """This field's value in ``config`` (an instance of the tree's root class)."""
        for name in self.path:
            config = getattr(config, name)
        return config


def _sections(cls) -> list[tuple[dataclasses.Field, type]]:
    """(field, type hint) of each field of the dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def config_options(cls, prefix: tuple[str, ...] = ()) -> list[ConfigOption]:
    """Every leaf field of the dataclass tree ``cls`` in declaration order, command-line options and
    tunings (a field whose type is a dataclass is a section and is walked into)."""
    options = []
    for f, hint in _sections(cls):
        if dataclasses.is_dataclass(hint):
            options += config_options(hint, prefix + (f.name,))
        else:
            options.append(ConfigOption(prefix + (f.name,), f, hint))
    return options


def add_arguments(parser: argparse.ArgumentParser, cls, flags: typing.Collection[str] | None = None) -> None:
    """Add one argparse argument per leaf field of the dataclass tree ``cls``: positional fields and
    the root's own options on ``parser``, each section's in an argument group named after it (the
    section class's first docstring line describes it). Defaults are those of ``cls()``; :func:`tuning`
    fields get no argument. flags: only these options (e.g. ``{"--match-iou"}``; default: all), for a
    tool that offers a few of a config's options with the same names, help and defaults."""
    defaults = cls()
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f, hint in _sections(cls):
        if dataclasses.is_dataclass(hint):
            groups[f.name] = parser.add_argument_group(f.name, (hint.__doc__ or "").strip().split("\n")[0])
    options = [opt for opt in config_options(cls) if opt.on_command_line]
    unknown = set(flags or ()) - {opt.flag for opt in options}
    if unknown:
        raise ValueError(f"{cls.__name__} has no options {sorted(unknown)}")
    for opt in options:
        if flags is not None and opt.flag not in flags:
            continue
        meta = opt.field.metadata
        target = groups[opt.path[0]] if len(opt.path) > 1 else parser
        default = opt.get(defaults)
        kwargs = {"help": opt.help}
        if meta["choices"]:
            kwargs["choices"] = meta["choices"]
        elif not meta["positional"] and opt.hint is not bool:
            kwargs["metavar"] = opt.flag.lstrip("-").replace("-", "_").upper()  # --val-data VAL_DATA
        if meta["positional"]:
            if len(opt.path) > 1:
                raise TypeError(f"{opt.dest}: only top-level fields can be positional")
            target.add_argument(opt.flag, **kwargs)
        elif opt.hint is bool:
            target.add_argument(opt.flag, dest=opt.dest, action=argparse.BooleanOptionalAction, default=default,
                                **kwargs)
        elif opt.is_tuple:
            target.add_argument(opt.flag, dest=opt.dest, nargs=meta["nargs"] or "+", type=typing.get_args(opt.hint)[0],
                                default=list(default), **kwargs)
        else:
            target.add_argument(opt.flag, dest=opt.dest, type=opt.hint, default=default, **kwargs)


def from_arguments(cls, namespace: argparse.Namespace, prefix: tuple[str, ...] = ()):
    """The instance of the dataclass tree ``cls`` that a namespace parsed with :func:`add_arguments` describes
    (lists back to tuples; :func:`tuning` fields, and options that ``add_arguments(flags=...)`` left out,
    keep their defaults; each class's own checks run and raise ValueError)."""
    values = {}
    for f, hint in _sections(cls):
        path = prefix + (f.name,)
        if dataclasses.is_dataclass(hint):
            values[f.name] = from_arguments(hint, namespace, path)
        elif f.metadata["cli"] and hasattr(namespace, ".".join(path)):
            value = getattr(namespace, ".".join(path))
            values[f.name] = tuple(value) if typing.get_origin(hint) is tuple else value
    return cls(**values)


def config_to_dict(config) -> dict:
    """A dataclass tree as nested plain dicts (tuples as lists): what ``json.dumps`` writes."""
    out = {}
    for f, hint in _sections(type(config)):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(hint):
            out[f.name] = config_to_dict(value)
        else:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def config_from_dict(cls, data: dict, prefix: tuple[str, ...] = ()):
    """The inverse of :func:`config_to_dict`; a missing key keeps its default, an unknown one is an error."""
    sections = _sections(cls)
    unknown = set(data) - {f.name for f, _ in sections}
    if unknown:
        where = ".".join(prefix) or cls.__name__
        raise ValueError(f"unknown fields {sorted(unknown)} in {where}")
    values = {}
    for f, hint in sections:
        if f.name not in data:
            continue
        value = data[f.name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ValueError(f"{'.'.join(prefix + (f.name,))} must be a section (a JSON object), not {value!r}")
            value = config_from_dict(hint, value, prefix + (f.name,))
        elif typing.get_origin(hint) is tuple:
            value = tuple(value)
        values[f.name] = value
    return cls(**values)


def check_choices(config) -> None:
    """ValueError naming the flag when a field with ``choices`` holds another value (for configs built in code;
    argparse already refuses them on the command line)."""
    for f, _ in _sections(type(config)):
        choices = f.metadata.get("choices")
        value = getattr(config, f.name)
        if choices and value not in choices:
            flag = f.name if f.metadata["positional"] else "--" + (f.metadata["flag"] or f.name.replace("_", "-"))
            raise ValueError(f"{flag} {value!r}: choose one of {choices}")


# ---------------------------------------------------------------------------- the sections

@dataclass(frozen=True)
class DataConfig:
    """Which recorded sessions a run trains and validates on, and how frames are drawn from them."""

    sessions: tuple[str, ...] = option((), "session directories to train on (several allowed)", flag="data")
    val_sessions: tuple[str, ...] = option(
        (), "session directories to validate on; when empty, whole sessions are held out from --data",
        flag="val-data", nargs="*")
    val_fraction: float = option(0.2, "share of --data sessions held out for validation when --val-data is empty")
    balance: str = option(
        "sampler", "class balancing: sampler (WeightedRandomSampler-style draws) | sampler-size (detector: draws "
                   "balanced over class x height band, small / medium / large as in the metrics, so frames with far "
                   "objects of a rare class come up as often as the others, and a crop placed on a box, "
                   "--crop-on-boxes, picks the rare one) | loss (class weights) | none", choices=BALANCE_MODES)
    epoch_frames: int = option(0, "frames drawn per epoch (0: as many as the training set holds); sizes a run to a "
                                  "time budget without dropping sessions (with --balance sampler or sampler-size "
                                  "drawn with replacement, else shuffled passes over the frames)")
    takeover_weight: float = option(
        1.0, "draw the frames a person drove (takeovers recorded by `truckpilot drive --record`; `truckpilot "
             "sessions ls` counts them) W times as often as the others (1: no change; other values draw with "
             "replacement, on top of --balance sampler's weights)")
    cache: bool = option(True, "decode every frame once at model resolution and keep uint8 tensors in memory")

    def __post_init__(self) -> None:
        check_choices(self)
        if not (math.isfinite(self.takeover_weight) and self.takeover_weight > 0):
            raise ValueError(f"--takeover-weight {self.takeover_weight} must be a positive number (1: no change)")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction {self.val_fraction} must lie strictly between 0 and 1")
        if self.epoch_frames < 0:
            raise ValueError(f"--epoch-frames {self.epoch_frames} must be >= 0 (0: the training set's size)")


@dataclass(frozen=True)
class ModelConfig:
    """The network: where its weights start, its input size (px), and a fresh detector's anchors."""

    init: str = option("", "start from this checkpoint (.safetensors written by perception.save_model); joint: a "
                           "joint run's stem RUN/best, either file of the pair, or a single direction/detector "
                           "checkpoint")
    trunk_weights: str = option(
        "imagenet", "trunk initialisation when --init is empty: imagenet | none | PATH (a torchvision resnet34 "
        "state dict, or a direction/detector checkpoint's .safetensors: its trunk starts a model with, e.g., "
        "new anchors)")
    input_height: int = option(0, "model input height in px (0: the model's default)")
    input_width: int = option(0, "model input width in px (0: the model's default)")
    anchor_strides: tuple[int, ...] = option(
        (), "detector/joint: feature strides of the anchor levels (empty: the default 8 16 32 64 128, or --init's; "
        "8 is a level on ResNet layer2 for small, distant objects; 4 adds a level on layer1 merged with layer2, for "
        "objects a few px wide). With --init: its levels plus added ones, which start fresh", nargs="*")
    anchor_sizes: tuple[float, ...] = option(
        (), "detector/joint: base anchor side of each level as a fraction of the input's shorter side, one per "
        "--anchor-strides (empty: the default sizes; with --init its levels keep theirs)", nargs="*")
    anchor_ratios: tuple[float, ...] = option(
        (), "detector/joint, fresh models: anchor width/height ratios (empty: the default 1 2 0.5)", nargs="*")
    match_iou: float = option(
        0.0, "detector/joint, fresh models: IoU at which an anchor becomes a positive for a box (0: the default "
        "0.3; lower gives small boxes more positive anchors)")

    def __post_init__(self) -> None:
        if bool(self.input_height) != bool(self.input_width):
            raise ValueError("give both --input-height and --input-width, or neither")
        if self.input_height < 0 or self.input_width < 0:
            raise ValueError(f"--input-height/--input-width {self.input_height}x{self.input_width} must be positive "
                             "(0: the model's default)")
        if not 0.0 <= self.match_iou <= 1.0:
            raise ValueError(f"--match-iou {self.match_iou} must lie in (0, 1], or be 0 for the default")
        if (self.anchor_ratios or self.match_iou) and self.init:
            raise ValueError("--anchor-ratios and --match-iou shape a fresh detector; with --init the checkpoint's "
                             "ratios and matching are used: drop them or drop --init (--anchor-strides/--anchor-sizes "
                             "may add levels to --init's detector)")
        if bool(self.anchor_strides) != bool(self.anchor_sizes):
            raise ValueError("give --anchor-strides and --anchor-sizes together (one size per stride), or neither")
        self.detector_options()  # AnchorConfig's own checks, at parse time

    @property
    def fresh_detector_options(self) -> bool:
        """Whether any of --anchor-strides/--anchor-sizes/--anchor-ratios/--match-iou is given."""
        return bool(self.anchor_strides or self.anchor_sizes or self.anchor_ratios or self.match_iou)

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(H, W) px override, or None for the model's default."""
        return (self.input_height, self.input_width) if self.input_height else None

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


@dataclass(frozen=True)
class OptimConfig:
    """The schedule and the optimiser: epochs, batch, one-cycle AdamW rates, the joint loss's weighting."""

    epochs: int = option(6, "total epochs (frozen + unfrozen)")
    freeze_epochs: int = option(1, "epochs with the trunk frozen (head only) before unfreezing everything")
    batch_size: int = option(64, "images per step per process")
    lr: float = option(1e-3, "peak learning rate of the head (one-cycle max_lr)")
    trunk_lr_div: float = option(10.0, "after unfreezing, trunk max_lr = lr / trunk_lr_div (discriminative rates)")
    weight_decay: float = option(1e-4, "AdamW decoupled weight decay")
    pct_start: float = option(0.25, "one-cycle warm-up share of each phase")
    direction_loss_weight: float = option(1.0, "joint: loss = this * direction cross-entropy + detector loss")
    steer_loss_weight: float = option(1.0, "direction and joint: + this * SmoothL1 (beta 0.1) of the continuous "
                                           "steer head on the frames with a steer label (0: the head is not trained)")

    def __post_init__(self) -> None:
        if not 0 <= self.freeze_epochs <= self.epochs:
            raise ValueError(f"--freeze-epochs {self.freeze_epochs} must lie in 0..--epochs ({self.epochs})")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size {self.batch_size} must be >= 1")
        if self.direction_loss_weight < 0:
            raise ValueError(f"--direction-loss-weight {self.direction_loss_weight} must be >= 0")
        if self.steer_loss_weight < 0:
            raise ValueError(f"--steer-loss-weight {self.steer_loss_weight} must be >= 0")


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation (training.data.augment.Augmenter applies it; validation never augments).

    The command-line options come first; ``flip_p``, ``crop_ratio`` and ``min_visibility`` are fixed
    tunings (no flag). The Augmenter needs a resolved config (:meth:`for_task`: ``crop_min_scale`` 0
    means "per task").
    """

    enabled: bool = option(True, "flip (mirrors boxes, swaps left/right), colour jitter, box-aware random crop "
                                 "(--crop-min-scale: by default for the detector only)", flag="augment")
    flip: bool = option(True, "horizontal flips in the augmentation (mirrors boxes, swaps left/right labels)")
    crop_min_scale: float = option(0.0, "random resized crop: smallest share of the frame area a crop keeps; 1.0: "
                                        "no crop; 0: auto = 0.6 for the detector, no crop for direction and joint (a "
                                        "crop shifts the road sideways and the direction label does not follow it)")
    color_jitter: float = option(0.3, "colour jitter strength: brightness, contrast and saturation factors in "
                                      "[1 - this, 1 + this], hue shift up to this / 10 turns (0: none)")
    train_crop_height: int = option(
        0, "detector: train on crops this many px tall, cut at the model input's pixel scale (objects as large as "
        "in the full input, a step costs the crop's pixels); validation and the checkpoint stay at the full "
        "input size (0: no training crops, samples are the whole input)")
    train_crop_width: int = option(0, "detector: width in px of the training crops (with --train-crop-height)")
    crop_on_boxes: float = option(
        0.0, "detector: probability that a crop's window is placed to hold a box of the frame whole (one "
        "drawn at random, where it fits), else anywhere; for --train-crop-height/--train-crop-width, whose "
        "windows are a fraction of the frame and mostly miss the few rows where objects are (0: anywhere)")
    flip_p: float = tuning(0.5, "probability of a horizontal flip when --flip is on")
    crop_ratio: tuple[float, float] = tuning(
        (0.85, 1.18), "(min, max) aspect-ratio change of a crop relative to the input (1.0: the input's own "
        "width/height; torchvision's ratio is absolute, so the Augmenter scales it)")
    min_visibility: float = tuning(0.35, "a box keeps its place in a crop only if this share of its area stays "
                                         "inside")

    def __post_init__(self) -> None:
        if not 0.0 <= self.crop_min_scale <= 1.0:
            raise ValueError(f"--crop-min-scale {self.crop_min_scale} must lie in [0, 1]; 1.0 turns the crop off, "
                             "0 picks it per task")
        if not 0.0 <= self.color_jitter < 1.0:
            raise ValueError(f"--color-jitter {self.color_jitter} must lie in [0, 1); 0 turns it off")
        if bool(self.train_crop_height) != bool(self.train_crop_width):
            raise ValueError("give --train-crop-height and --train-crop-width together, or neither")
        if self.train_crop_height < 0 or self.train_crop_width < 0:
            raise ValueError(f"--train-crop-height/--train-crop-width {self.train_crop_height}x"
                             f"{self.train_crop_width} must be positive (0: no training crops)")
        if not 0.0 <= self.crop_on_boxes <= 1.0:
            raise ValueError(f"--crop-on-boxes {self.crop_on_boxes} must lie in [0, 1] (a probability)")
        if not 0.0 <= self.flip_p <= 1.0 or not 0.0 <= self.min_visibility <= 1.0:
            raise ValueError(f"flip_p {self.flip_p} and min_visibility {self.min_visibility} must lie in [0, 1]")
        if not 0.0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"crop_ratio {self.crop_ratio} must be (min, max) with 0 < min <= max")

    def for_task(self, task: str) -> "AugmentConfig":
        """This config with ``crop_min_scale`` 0 (auto) resolved: 0.6 for the detector, 1.0 (no crop) for
        direction and joint; a config already resolved comes back unchanged."""
        if self.crop_min_scale > 0:
            return self
        return dataclasses.replace(self, crop_min_scale=DETECTOR_CROP_MIN_SCALE if task == "detector" else 1.0)

    @property
    def crop_scale(self) -> tuple[float, float]:
        """(min, max) share of the frame area a random resized crop keeps (needs a resolved config)."""
        if self.crop_min_scale <= 0:
            raise ValueError("crop_min_scale 0 means 'per task': resolve it with AugmentConfig.for_task(task)")
        return (self.crop_min_scale, 1.0)

    @property
    def crops(self) -> bool:
        """False when the random crop keeps the whole frame (crop_min_scale 1.0): the crop step is skipped."""
        return self.crop_scale[0] < 1.0

    @property
    def jitter_strengths(self) -> tuple[float, float, float, float]:
        """Brightness, contrast, saturation (multipliers drawn in [1 - s, 1 + s]) and hue (turns, in [-s, s])."""
        j = float(self.color_jitter)
        return (j, j, j, j / 10.0)

    @property
    def train_crop(self) -> tuple[int, int] | None:
        """(H, W) px of the detector's training crops, or None for whole-input samples."""
        return (self.train_crop_height, self.train_crop_width) if self.train_crop_height else None


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how the run computes: device, precision, memory, data-loading workers, seeds."""

    device: str = option("auto", "auto (CUDA when present, else CPU) | cpu | cuda | cuda:N", resume_may_differ=True)
    cpu_malloc: str = option("keep", "CPU runs: keep (glibc keeps freed blocks for reuse instead of returning them "
                                     "to the OS every step; faster CPU steps, the peak heap stays held) | system "
                                     "(glibc's defaults); training/cpu_malloc.py", choices=CPU_MALLOC_CHOICES)
    amp: str = option("auto", "mixed precision: auto (bf16 autocast on CUDA) | bf16 | off",
                      choices=("auto", "bf16", "off"))
    channels_last: str = option("auto", "channels_last memory format: auto (on CUDA) | on | off",
                                choices=("auto", "on", "off"))
    num_workers: int = option(-1, "DataLoader worker processes (-1: auto, 0: load in the main process)",
                              resume_may_differ=True)
    seed: int = option(0, "seed for python, numpy, torch, the split and the augmentation")
    deterministic: bool = option(False, "torch.use_deterministic_algorithms(True) (CPU: bit-exact resume)")

    def __post_init__(self) -> None:
        check_choices(self)


@dataclass(frozen=True)
class RunConfig:
    """The run directory, how often it validates, logs and saves, and the modes (resume, LR test, benchmark)."""

    out: str = option("runs/train", "run directory: config.json, metrics.json, plots, best checkpoint, state/")
    eval_every_epochs: int = option(1, "validate (and maybe save best) every N epochs")
    score_threshold: float = option(EVAL_SCORE_THRESHOLD, "detector: minimum score kept for evaluation")
    save_every_steps: int = option(0, "also write the resumable state every N steps (0: only at epoch ends)",
                                   resume_may_differ=True)
    log_every_steps: int = option(10, "progress bar / non-finite check interval in steps", resume_may_differ=True)
    resume: bool = option(False, "continue the run in --out from state/last.pt exactly where it stopped",
                          resume_may_differ=True)
    max_steps: int = option(0, "stop after this many optimizer steps in total (0: no limit; smoke tests)",
                            resume_may_differ=True)
    find_lr: bool = option(False, "run the LR range test, write lr_find.png + lr_find.json, then exit",
                           resume_may_differ=True)
    find_lr_steps: int = option(100, "mini-batches the LR range test may take (it stops early when the loss blows "
                                     "up)", resume_may_differ=True)
    benchmark_steps: int = option(0, "time N training steps (after warm-up), print img/s and data-wait share, exit",
                                  resume_may_differ=True)
    debug_inject_nan_at_step: int = option(-1, argparse.SUPPRESS, resume_may_differ=True)

    def __post_init__(self) -> None:
        if self.eval_every_epochs < 1:
            raise ValueError(f"--eval-every-epochs {self.eval_every_epochs} must be >= 1")
        if self.log_every_steps < 1:
            raise ValueError(f"--log-every-steps {self.log_every_steps} must be >= 1")


# ---------------------------------------------------------------------------- the whole run

@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; saved as RUN_DIR/config.json (nested by section)."""

    task: str = option("direction", "which network to train: direction | detector | joint (both on one shared "
                       "trunk, writes best.direction.safetensors + best.detector.safetensors)", positional=True,
                       choices=TASKS)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        """The checks that involve the task or several sections (each section checks its own fields)."""
        check_choices(self)
        if self.data.balance == "sampler-size" and self.task != "detector":
            raise ValueError(f"--balance sampler-size balances box sizes: it applies to the detector only, not to "
                             f"a {self.task} run; use --balance sampler")
        if self.model.fresh_detector_options and self.task == "direction":
            raise ValueError("--anchor-strides/--anchor-sizes/--anchor-ratios/--match-iou are detector options; "
                             "drop them for a direction run")
        if self.augment.train_crop_height and self.task != "detector":
            raise ValueError("--train-crop-height/--train-crop-width are detector options (a crop shifts the road "
                             "sideways and a direction label does not follow it): drop them for a "
                             f"{self.task} run")
        if self.augment.crop_on_boxes and self.task != "detector":
            raise ValueError(f"--crop-on-boxes is a detector option (direction and joint runs do not crop): drop it "
                             f"for a {self.task} run")

    @property
    def augmentation(self) -> AugmentConfig:
        """The augmentation this run's task applies (``crop_min_scale`` resolved, see AugmentConfig.for_task)."""
        return self.augment.for_task(self.task)

    def to_dict(self) -> dict:
        """Nested plain dicts, one per section, as RUN_DIR/config.json holds them."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """The config of :meth:`to_dict`'s output. A flat dict (config.json of runs from before the sections:
        one key per flag, e.g. ``"lr"``, ``"data"``) is read too, each key as the field its flag sets."""
        if _is_flat(data):
            data = _nest_flat(data)
        return config_from_dict(cls, data)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        """Read a saved config.json (either layout); ValueError naming the file when it does not fit."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not a TrainConfig this version reads ({exc}); start the run again with "
                             "the command line in a new --out, or resume it with the truckpilot version that "
                             "wrote it") from None


def _is_flat(data: dict) -> bool:
    """Whether ``data`` is an old flat config (a section name maps to a plain value, or a key is a flag's field)."""
    sections = {f.name for f, hint in _sections(TrainConfig) if dataclasses.is_dataclass(hint)}
    return any(k in sections and not isinstance(v, dict) for k, v in data.items()) or \
        any(k not in sections and k != "task" for k in data)


def _nest_flat(data: dict) -> dict:
    """An old flat config dict in the nested layout: each key is the field name its flag had (``val_data``
    for ``--val-data``), so it goes where that flag's field now sits. Unknown keys stay at the top, for
    :func:`config_from_dict` to name."""
    by_flag = {opt.flag.lstrip("-").replace("-", "_"): opt.path for opt in config_options(TrainConfig)}
    nested: dict = {}
    for key, value in data.items():
        path = by_flag.get(key, (key,))
        node = nested
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = value
    return nested


def build_parser(prog: str = "truckpilot train") -> argparse.ArgumentParser:
    """The ``truckpilot train`` parser: one option per TrainConfig field, one argument group per section."""
    parser = argparse.ArgumentParser(prog=prog, description=TrainConfig.__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(parser, TrainConfig)
    return parser


def parse_train_config(argv: list[str]) -> TrainConfig:
    """Resolve a TrainConfig from command-line arguments (``truckpilot train ...``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = from_arguments(TrainConfig, args)
    except ValueError as exc:
        parser.error(str(exc))
    if not config.data.sessions and not config.run.resume:
        parser.error("--data SESSION... is required")
    return config
