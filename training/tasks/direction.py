"""The 3-way direction classifier task (left / straight / right)."""
from __future__ import annotations

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
from training.metrics import classification_metrics
from training.reports import plot_confusion_matrix, plot_top_losses
from training.tasks.base import Task, spread_out


class DirectionTask(Task):
    """3-way direction classifier; primary metric: accuracy."""

    kind = "direction"
    primary_metric = "accuracy"

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
        return DirectionDataset(samples, self.input_size, self.model_config.classes, augmenter, cache, seed)

    def collate(self, batch):
        return direction_collate(batch)

    def targets_to(self, targets, device):
        return targets.to(device, non_blocking=True)

    def batch_loss(self, model, outputs, targets, class_weights=None, input_size=None):
        return F.cross_entropy(outputs.float(), targets, weight=class_weights)

    @torch.no_grad()
    def evaluate(self, model, dataset: DirectionDataset, device, out_dir=None, batch_size=64, amp_dtype=None,
                 channels_last=False, gallery_size: int = 16) -> dict:
        """Accuracy, per-class precision/recall, confusion matrix; PNGs when out_dir is given."""
        all_probs, all_targets = [], []
        for logits, targets in self.inference_batches(model, dataset, device, batch_size, amp_dtype, channels_last):
            all_probs.append(F.softmax(logits.float(), dim=1).cpu())
            all_targets.append(targets)
        probs = torch.cat(all_probs)
        targets = torch.cat(all_targets)
        classes = tuple(self.model_config.classes)
        metrics = classification_metrics(probs, targets, classes)
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
