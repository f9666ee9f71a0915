"""The training tasks: what differs between the direction classifier and the detector
(and, in training.joint, the two trained together on one trunk).

A task builds its model and datasets, computes the loss of a batch, and
evaluates a model on a dataset (metrics dict + PNG report files). The engine
(training.engine) is shared and knows nothing task-specific.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from perception.config import DetectorConfig, DirectionConfig, TrunkConfig
from perception.preprocess import normalise as preprocess_normalise
from training.config import EVAL_SCORE_THRESHOLD, AugmentConfig
from training.data.augment import Augmenter, color_jitter_batch
from training.data.datasets import DetectionDataset, DirectionDataset, detection_collate, direction_collate, source_size
from training.metrics import classification_metrics, detection_metrics, match_detections
from training.reports import plot_confusion_matrix, plot_detection_gallery, plot_pr_curves, plot_top_losses
from training.data.samples import FrameSample

log = logging.getLogger(__name__)


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
                    outputs = model(x)
                    if also_flipped:
                        flipped = x.flip(-1)
                        if channels_last:
                            flipped = flipped.contiguous(memory_format=torch.channels_last)
                        outputs = (outputs, model(flipped))
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


class DirectionTask(Task):
    """3-way direction classifier; primary metric: accuracy."""

    kind = "direction"
    primary_metric = "accuracy"

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


class DetectorTask(Task):
    """SSD detector; primary metric: mAP@0.5."""

    kind = "detector"
    primary_metric = "map_50"

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


def make_task(kind: str, model_config, direction_loss_weight: float = 1.0) -> Task:
    """The task of this kind; model_config: DirectionConfig, DetectorConfig or (joint) training.joint.JointConfig.
    direction_loss_weight: joint only, the weight of the direction cross-entropy."""
    if kind == "direction":
        return DirectionTask(model_config)
    if kind == "detector":
        return DetectorTask(model_config)
    if kind == "joint":
        from training.joint import JointTask

        return JointTask(model_config, direction_loss_weight)
    raise ValueError(f"unknown task {kind!r}; choose direction, detector or joint")


def default_model_config(kind: str, trunk_weights: str, input_size: tuple[int, int] | None,
                         classes: Sequence[str] | None = None, detector_options: dict | None = None):
    """The config for a fresh model of this kind (joint: a training.joint.JointConfig of both).
    detector_options: more DetectorConfig keyword arguments (e.g. anchors, match_iou) for the detector."""
    trunk = TrunkConfig(weights=trunk_weights)
    if kind == "joint":
        from training.joint import JointConfig

        return JointConfig(default_model_config("direction", trunk_weights, input_size),
                           default_model_config("detector", trunk_weights, input_size, classes, detector_options))
    if kind == "direction":
        config = DirectionConfig(trunk=trunk)
    else:
        config = DetectorConfig(trunk=trunk, **({"classes": tuple(classes)} if classes else {}),
                                **(detector_options or {}))
    if input_size is not None:
        config = replace(config, input_size=tuple(input_size))
    return config
