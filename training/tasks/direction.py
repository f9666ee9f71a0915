"""The 3-way direction classifier task (left / straight / right), with the continuous steer head beside it.

Loss: cross-entropy on the direction + ``steer_loss_weight`` x SmoothL1 (beta ``STEER_LOSS_BETA``) of the
steer head (tanh, [-1, 1], + = right) against the frame's continuous steer label, over the frames of the
batch that have one (``FrameSample.steer``; NaN in the targets = none: those frames train the classifier
only). A network without the head (a checkpoint from before it) trains and evaluates as before.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from perception.config import DirectionConfig, TrunkConfig
from training.config import AugmentConfig
from training.data.augment import Augmenter
from training.data.datasets import DirectionDataset, direction_collate
from training.metrics import classification_metrics, expected_steer, steer_metrics
from training.reports import plot_confusion_matrix, plot_top_losses
from training.tasks.base import Task, spread_out

log = logging.getLogger(__name__)

#: SmoothL1's beta for the steer loss (fractions of full lock): quadratic below 0.1, linear above, so a
#: coarse label (a keyboard's -1 / +1 in a game's telemetry) pulls no harder than an error of 0.1
STEER_LOSS_BETA = 0.1
#: state-dict prefix of the steer head in a DirectionNet: the weights an --init from a checkpoint written
#: before the head lacks (they start fresh)
STEER_HEAD_PREFIX = "steer_head."


def has_steer_head(model: nn.Module) -> bool:
    """Whether ``model`` (a DirectionNet, possibly DDP-wrapped) has the continuous steer head."""
    return bool(getattr(getattr(model, "module", model), "has_steer_head", False))


def with_steer_head(config: DirectionConfig, why: str = "") -> DirectionConfig:
    """``config`` with the steer head (a card from before the head describes a network without one: a run
    that starts from it trains a fresh head beside the loaded classifier)."""
    if config.steer_head:
        return config
    log.info("%sno steer head on the checkpoint: a fresh one is trained beside its classifier", why)
    return replace(config, steer_head=True)


def steer_loss(steer: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Masked SmoothL1 (beta STEER_LOSS_BETA) of the head's steer (B,) against labels (B,) (NaN = no label):
    the mean over labelled frames; 0 (still connected to the head's graph) when there are none."""
    labelled = torch.isfinite(labels)
    if not bool(labelled.any()):
        return steer.float().sum() * 0.0
    return F.smooth_l1_loss(steer.float()[labelled], labels[labelled].float(), beta=STEER_LOSS_BETA)


class DirectionTask(Task):
    """3-way direction classifier + continuous steer head; primary metric: accuracy.

    steer_loss_weight: loss = cross-entropy + this x :func:`steer_loss` (``--steer-loss-weight``).
    """

    kind = "direction"
    primary_metric = "accuracy"

    def __init__(self, model_config, steer_loss_weight: float = 1.0) -> None:
        if steer_loss_weight < 0:
            raise ValueError(f"--steer-loss-weight {steer_loss_weight} must be >= 0")
        super().__init__(model_config)
        self.steer_loss_weight = float(steer_loss_weight)

    @classmethod
    def create(cls, model_config, direction_loss_weight: float = 1.0, steer_loss_weight: float = 1.0
               ) -> "DirectionTask":
        return cls(model_config, steer_loss_weight)

    @classmethod
    def default_model_config(cls, trunk_weights: str, input_size: tuple[int, int] | None,
                             classes: Sequence[str] | None = None, detector_options: dict | None = None
                             ) -> DirectionConfig:
        config = DirectionConfig(trunk=TrunkConfig(weights=trunk_weights))
        return config if input_size is None else replace(config, input_size=tuple(input_size))

    def build_model(self, init_trunk_weights: bool = True) -> nn.Module:
        from perception.direction import DirectionNet

        return DirectionNet(self.model_config, init_trunk_weights=init_trunk_weights)

    def build_dataset(self, samples, augment: bool, cache: bool, seed: int,
                      augment_config: AugmentConfig = AugmentConfig()) -> DirectionDataset:
        augmenter = (Augmenter(self.input_size, augment_config.for_task(self.kind), tuple(self.model_config.classes))
                     if augment else None)
        return DirectionDataset(samples, self.input_size, self.model_config.classes, augmenter, cache, seed,
                                steer=True)

    def collate(self, batch):
        return direction_collate(batch)

    def targets_to(self, targets, device):
        if isinstance(targets, dict):
            return {key: value.to(device, non_blocking=True) for key, value in targets.items()}
        return targets.to(device, non_blocking=True)

    def forward(self, model, x):
        """(logits, steer) when the network has the steer head, else logits."""
        return model(x, with_steer=True) if has_steer_head(model) else model(x)

    def steer_term(self, outputs, targets) -> torch.Tensor | None:
        """steer_loss_weight x :func:`steer_loss`, or None when the outputs hold no steer or the targets no
        steer labels (outputs and targets as :meth:`batch_loss` takes them)."""
        steer = outputs[1] if isinstance(outputs, tuple) else None
        labels = targets.get("steer") if isinstance(targets, dict) else None
        if steer is None or labels is None:
            return None
        return self.steer_loss_weight * steer_loss(steer, labels)

    def batch_loss(self, model, outputs, targets, class_weights=None, input_size=None):
        """outputs: logits (B, C) or (logits, steer (B,) or None); targets: (B,) int64 or {"direction",
        "steer" (B,) float, NaN = no label}. Cross-entropy + the steer term where both sides have one."""
        logits = outputs[0] if isinstance(outputs, tuple) else outputs
        labels = targets["direction"] if isinstance(targets, dict) else targets
        loss = F.cross_entropy(logits.float(), labels, weight=class_weights)
        steer = self.steer_term(outputs, targets)
        return loss if steer is None else loss + steer

    @torch.no_grad()
    def evaluate(self, model, dataset: DirectionDataset, device, out_dir=None, batch_size=64, amp_dtype=None,
                 channels_last=False, gallery_size: int = 16) -> dict:
        """Accuracy, per-class precision/recall, confusion matrix; PNGs when out_dir is given. With steer labels
        (a dataset with ``steer``): ``steer_frames``, ``steer_mae`` (the head; None without one),
        ``steer_mae_expected`` (p(right) - p(left)) and ``steer_mae_zero`` (a constant 0) against them."""
        all_probs, all_targets, all_steer_labels, all_steers = [], [], [], []
        for outputs, targets in self.inference_batches(model, dataset, device, batch_size, amp_dtype, channels_last):
            logits, steer = outputs if isinstance(outputs, tuple) else (outputs, None)
            all_probs.append(F.softmax(logits.float(), dim=1).cpu())
            if isinstance(targets, dict):
                all_targets.append(targets["direction"])
                all_steer_labels.append(targets["steer"].float())
            else:
                all_targets.append(targets)
            if steer is not None:
                all_steers.append(steer.float().cpu())
        probs = torch.cat(all_probs)
        targets = torch.cat(all_targets)
        classes = tuple(self.model_config.classes)
        metrics = classification_metrics(probs, targets, classes)
        if all_steer_labels:
            metrics.update(steer_metrics(torch.cat(all_steer_labels), expected_steer(probs, classes),
                                         torch.cat(all_steers) if all_steers else None))
        if out_dir is not None:
            out_dir = Path(out_dir)
            plot_confusion_matrix(metrics["confusion_matrix"], classes, out_dir / "confusion_matrix.png",
                                  title=f"direction: accuracy {metrics['accuracy']:.3f} on {len(targets)} frames")
            losses = -torch.log(probs.gather(1, targets[:, None]).clamp(min=1e-12)).squeeze(1)
            top = spread_out(losses.argsort(descending=True).tolist(), gallery_size)
            preds = probs.argmax(1)
            titles = [f"{dataset.names[i]}\ntrue {classes[targets[i]]} / pred {classes[preds[i]]}\n"
                      f"p(pred)={float(probs[i, preds[i]]):.2f} p(true)={float(probs[i, targets[i]]):.2f} "
                      f"loss {float(losses[i]):.2f}" for i in top]
            plot_top_losses([dataset.image(i) for i in top], titles, out_dir / "top_losses.png")
            metrics["top_losses"] = [{"frame": dataset.names[i], "true": classes[targets[i]],
                                      "pred": classes[preds[i]], "loss": float(losses[i])} for i in top]
        return metrics
