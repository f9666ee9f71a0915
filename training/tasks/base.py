"""The Task interface every training task implements, and what all tasks share.

A task builds its model and datasets, computes the loss of a batch, and evaluates a model on a
dataset (metrics dict + PNG report files). The engine (training.engine) is shared and knows
nothing task-specific; training.tasks.registry maps a task's name to its class.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from perception.preprocess import normalise as preprocess_normalise
from training.config import AugmentConfig
from training.data.augment import color_jitter_batch
from training.data.samples import FrameSample


def normalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float],
              channels_last: bool = False, jitter: torch.Tensor | None = None) -> torch.Tensor:
    """(B,3,H,W) uint8 on any device -> float32 (x/255 - mean)/std, optionally channels_last.

    The normalisation is perception.preprocess.normalise, the Perceiver's.
    jitter: optional (B, 4) colour factors applied first, on the 0..1 scale
    (training.data.augment.color_jitter_batch).
    """
    x = images if jitter is None else color_jitter_batch(images.float() / 255.0, jitter)
    x = preprocess_normalise(x, mean, std)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


class Task:
    """Interface; see DirectionTask and DetectorTask."""

    kind: str
    primary_metric: str

    def __init__(self, model_config) -> None:
        self.model_config = model_config

    @classmethod
    def create(cls, model_config, direction_loss_weight: float = 1.0, steer_loss_weight: float = 1.0) -> "Task":
        """The task for ``model_config``; direction_loss_weight matters to the joint task only,
        steer_loss_weight (the direction network's steer head) to the direction and joint tasks."""
        return cls(model_config)

    @classmethod
    def default_model_config(cls, trunk_weights: str, input_size: tuple[int, int] | None,
                             classes: Sequence[str] | None = None, detector_options: dict | None = None):
        """The config of a fresh model of this task. trunk_weights: imagenet | none | PATH;
        input_size: (H, W) px or None for the config's default; classes and detector_options
        (more DetectorConfig keyword arguments, e.g. anchors, match_iou): detector only."""
        raise NotImplementedError

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.model_config.input_size)

    def build_model(self, init_trunk_weights: bool = True) -> nn.Module:
        raise NotImplementedError

    def build_dataset(self, samples: Sequence[FrameSample], augment: bool, cache: bool, seed: int,
                      augment_config: AugmentConfig = AugmentConfig()):
        raise NotImplementedError

    def collate(self, batch):
        raise NotImplementedError

    def batch_loss(self, model: nn.Module, outputs, targets, class_weights: torch.Tensor | None,
                   input_size: tuple[int, int] | None = None) -> torch.Tensor:
        """The batch's scalar loss. input_size: (H, W) of the batch's images (training crops may be
        smaller than the model input; only the detector's anchors depend on it)."""
        raise NotImplementedError

    def targets_to(self, targets, device: torch.device):
        raise NotImplementedError

    def forward(self, model: nn.Module, x: torch.Tensor):
        """The model's outputs for a normalised batch, as :meth:`batch_loss` and :meth:`evaluate` take them
        (``model`` may be wrapped in DistributedDataParallel): ``model(x)`` unless a task needs more."""
        return model(x)

    def evaluate(self, model: nn.Module, dataset, device: torch.device, out_dir: Path | None,
                 batch_size: int = 64, amp_dtype=None, channels_last: bool = False) -> dict:
        raise NotImplementedError

    def evaluate_options(self, config) -> dict:
        """Extra keyword arguments of :meth:`evaluate` taken from the TrainConfig (none by default)."""
        return {}

    def inference_batches(self, model, dataset, device, batch_size: int, amp_dtype=None, channels_last: bool = False,
                          also_flipped: bool = False) -> Iterator[tuple[object, object]]:
        """(model outputs, the batch's targets as collated) for ``dataset`` in order, batch by batch:
        the model in eval mode (restored afterwards) under autocast when ``amp_dtype`` is given.
        Call under ``torch.no_grad()``. Images are normalised by the model config's mean/std.
        also_flipped: the outputs are a pair (outputs of the images, outputs of the images
        flipped left-right), for test-time flip augmentation."""
        was_training = model.training
        model.eval()
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=self.collate,
                            generator=torch.Generator().manual_seed(0))
        try:
            for images, targets, _ in tqdm(loader, desc="evaluate", unit="batch", leave=False, mininterval=1.0):
                x = normalise(images.to(device), self.model_config.mean, self.model_config.std, channels_last)
                with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                    outputs = self.forward(model, x)
                    if also_flipped:
                        flipped = x.flip(-1)
                        if channels_last:
                            flipped = flipped.contiguous(memory_format=torch.channels_last)
                        outputs = (outputs, self.forward(model, flipped))
                yield outputs, targets
        finally:
            model.train(was_training)

    def checkpoint_paths(self, stem: Path) -> dict[str, Path]:
        """{checkpoint kind: path} that :meth:`save_checkpoints` writes for ``stem`` (e.g. RUN/best):
        one ordinary perception checkpoint, STEM.safetensors."""
        return {self.kind: Path(stem).with_name(Path(stem).name + ".safetensors")}

    def save_checkpoints(self, stem: Path, model: nn.Module, provenance: dict, metrics: dict | None = None
                         ) -> dict[str, Path]:
        """Write the model as perception checkpoint(s) (``save_model`` + model card); returns
        :meth:`checkpoint_paths`. ``metrics``: the validation report, its numbers go on the card."""
        from perception.checkpoint import ModelCard, save_model

        prov = dict(provenance)
        if metrics:
            prov["val_metrics"] = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        paths = self.checkpoint_paths(stem)
        save_model(paths[self.kind], model, ModelCard.for_model(model, prov))
        return paths


def spread_out(ranked: Sequence[int], count: int, min_gap: int = 10) -> list[int]:
    """Up to ``count`` of ``ranked`` (dataset indices, most interesting first), skipping any
    within ``min_gap`` of one already taken (neighbouring frames of a drive look alike),
    then filling up from the skipped ones if too few remain."""
    taken: list[int] = []
    skipped: list[int] = []
    for index in ranked:
        if len(taken) == count:
            break
        (skipped if any(abs(index - t) < min_gap for t in taken) else taken).append(index)
    return taken + skipped[: count - len(taken)]
