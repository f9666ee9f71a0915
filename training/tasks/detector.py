"""The SSD detector task (car, truck, person, sign)."""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from perception.config import DetectorConfig, TrunkConfig
from training.config import EVAL_SCORE_THRESHOLD, AugmentConfig
from training.data.augment import Augmenter
from training.data.datasets import DetectionDataset, detection_collate, source_size
from training.metrics import detection_metrics, match_detections
from training.reports import plot_detection_gallery, plot_pr_curves
from training.tasks.base import Task, spread_out

log = logging.getLogger(__name__)


class DetectorTask(Task):
    """SSD detector; primary metric: mAP@0.5."""

    kind = "detector"
    primary_metric = "map_50"

    @classmethod
    def default_model_config(cls, trunk_weights: str, input_size: tuple[int, int] | None,
                             classes: Sequence[str] | None = None, detector_options: dict | None = None
                             ) -> DetectorConfig:
        config = DetectorConfig(trunk=TrunkConfig(weights=trunk_weights),
                                **({"classes": tuple(classes)} if classes else {}), **(detector_options or {}))
        return config if input_size is None else replace(config, input_size=tuple(input_size))

    def build_model(self, init_trunk_weights: bool = True) -> nn.Module:
        from perception.detector import SSDNet

        return SSDNet(self.model_config, init_trunk_weights=init_trunk_weights)

    def build_dataset(self, samples, augment: bool, cache: bool, seed: int,
                      augment_config: AugmentConfig = AugmentConfig()) -> DetectionDataset:
        """Without augment: frames at the model input size. With it: samples of the training crop
        (augment_config.train_crop) or the input size; when they are cropped, frames are decoded at
        no more than their own resolution (:func:`~training.data.datasets.source_size`) and the crop
        resizes them."""
        if not augment:
            return DetectionDataset(samples, self.input_size, self.model_config.classes, None, cache, seed)
        out_size = augment_config.train_crop or self.input_size
        augmenter = Augmenter(out_size, augment_config.for_task(self.kind), input_size=self.input_size)
        decode_size = source_size(samples, self.input_size) if augmenter.crops else self.input_size
        if decode_size != self.input_size:
            log.info("detector: training frames cached at %dx%d (their own size); each crop is resized to %dx%d "
                     "at the scale of the %dx%d model input", decode_size[1], decode_size[0], out_size[1], out_size[0],
                     self.input_size[1], self.input_size[0])
        return DetectionDataset(samples, decode_size, self.model_config.classes, augmenter, cache, seed)

    def collate(self, batch):
        return detection_collate(batch)

    def evaluate_options(self, config) -> dict:
        return {"score_threshold": config.run.score_threshold}

    def targets_to(self, targets, device):
        return [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]

    def batch_loss(self, model, outputs, targets, class_weights=None, input_size=None):
        cls_logits, box_deltas = outputs
        return model.loss(cls_logits.float(), box_deltas.float(), targets, input_size)["loss"]

    @torch.no_grad()
    def evaluate(self, model, dataset: DetectionDataset, device, out_dir=None, batch_size=64, amp_dtype=None,
                 channels_last=False, score_threshold: float = EVAL_SCORE_THRESHOLD, gallery_size: int = 12,
                 gallery_score: float = 0.3, flip_tta: bool = False) -> dict:
        """mAP@0.5 and mAP@[.5:.95] overall and per class, mAP@0.5 per box-height band ("by_height");
        PR curves and error gallery when out_dir is given.

        flip_tta: test-time flip augmentation (perception.flip_tta): each image also runs
        flipped left-right and the two passes' detections are fused (two forward passes); the
        metrics are the fused ones, and "without_tta" holds map_50, map and per-class ap_50 of
        the plain pass alone (the same forward passes, so the two are directly comparable)."""
        from perception.flip_tta import fuse_flip_batch

        def detect(outputs):
            cls_logits, box_deltas = outputs
            return model.detect(cls_logits.float(), box_deltas.float(), score_threshold=score_threshold,
                                iou_threshold=0.45, top_k=100)

        preds, plain_preds, targets = [], [], []
        for outputs, batch_targets in self.inference_batches(model, dataset, device, batch_size, amp_dtype,
                                                             channels_last, also_flipped=flip_tta):
            if flip_tta:
                plain = detect(outputs[0])
                detections = fuse_flip_batch(plain, detect(outputs[1]), float(self.input_size[1]))
                plain_preds.extend({k: v.cpu() for k, v in d.items()} for d in plain)
            else:
                detections = detect(outputs)
            preds.extend({k: v.cpu() for k, v in d.items()} for d in detections)
            targets.extend(batch_targets)
        classes = tuple(self.model_config.classes)
        metrics, curves = detection_metrics(preds, targets, classes, image_height=self.input_size[0])
        if flip_tta:
            alone, _ = detection_metrics(plain_preds, targets, classes)
            metrics["without_tta"] = {"map_50": alone["map_50"], "map": alone["map"],
                                      "per_class": {c: {"ap_50": v["ap_50"]} for c, v in alone["per_class"].items()}}
        if out_dir is not None:
            out_dir = Path(out_dir)
            plot_pr_curves(curves, out_dir / "pr_curves.png",
                           title=f"detector PR at IoU 0.5: mAP@0.5 {metrics['map_50']:.3f}")
            errors = []
            for i, (p, t) in enumerate(zip(preds, targets)):
                m = match_detections(p, t, 0.5, gallery_score)
                if m.misses or m.false_alarms:
                    errors.append((len(m.misses) + len(m.false_alarms), i, m))
            errors.sort(key=lambda e: -e[0])
            by_index = {i: m for _, i, m in errors}
            items = []
            for i in spread_out([i for _, i, _ in errors], gallery_size):
                m = by_index[i]
                items.append({"image": dataset.image(i), "title": f"{dataset.names[i]}\n{len(m.misses)} missed, "
                              f"{len(m.false_alarms)} false alarms", "gt_boxes": targets[i]["boxes"],
                              "gt_labels": targets[i]["labels"], "missed": m.misses,
                              "pred_boxes": preds[i]["boxes"], "pred_labels": preds[i]["labels"],
                              "pred_scores": preds[i]["scores"], "false_alarms": m.false_alarms})
            plot_detection_gallery(items, classes, out_dir / "errors_gallery.png")
            metrics["frames_with_errors"] = len(errors)
            metrics["gallery_score_threshold"] = gallery_score
        metrics["test_time_augmentation"] = "flip" if flip_tta else "none"
        return metrics
