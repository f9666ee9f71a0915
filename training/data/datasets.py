"""Datasets over FrameSamples, with a frame cache decoded at model resolution.

The cache decodes every frame once, resizes it to the model input (H, W) with
perception.preprocess.resize_frame (the Perceiver's resize) and keeps it as one
(N, 3, H, W) uint8 tensor: DataLoader workers forked after it is built share its
pages, and a step costs only the augmentation, so the GPU is not starved by
JPEG/PNG decoding. The engine normalises batches with perception.preprocess.normalise
(training.tasks.normalise), so an unaugmented frame reaches the network exactly as
the Perceiver would feed it.

Items are addressed by ``(index, seed)`` pairs (see training.data.sampler): the
seed drives the augmentation of that one draw, which makes runs reproducible
and resumable at any step. Each item is (image, target, jitter): jitter (4,)
holds the colour factors that the engine applies on the device
(training.data.augment.color_jitter_batch).
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from perception.preprocess import Letterbox, resize_frame
from training.data.augment import IDENTITY_JITTER, Augmenter, resize_sample
from training.data.samples import FrameSample

log = logging.getLogger(__name__)


def _decode_resized(sample: FrameSample, size: tuple[int, int]) -> np.ndarray:
    """The sample's frame as (3, H, W) uint8 RGB at ``size`` (H, W), resized by
    :func:`perception.preprocess.resize_frame`, the resize the Perceiver applies when driving."""
    image = sample.load_image()
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{sample.name}: expected an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")
    return np.ascontiguousarray(resize_frame(image, size).transpose(2, 0, 1))


def build_frame_cache(samples: Sequence[FrameSample], size: tuple[int, int], threads: int = 0,
                      desc: str = "decode frames") -> torch.Tensor:
    """Decode and resize every sample once: returns (N, 3, H, W) uint8, RGB."""
    height, width = size
    cache = torch.empty((len(samples), 3, height, width), dtype=torch.uint8)
    threads = threads or min(16, os.cpu_count() or 1)

    def fill(i: int) -> None:
        cache[i] = torch.from_numpy(_decode_resized(samples[i], size))

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in tqdm(pool.map(fill, range(len(samples))), total=len(samples), desc=desc, unit="img",
                      leave=False, mininterval=1.0):
            pass
    log.info("frame cache: %d frames at %dx%d, %.1f MiB", len(samples), width, height, cache.numel() / 2**20)
    return cache


def _scaled_boxes(sample: FrameSample, size: tuple[int, int]) -> torch.Tensor:
    """The sample's boxes in model-input px: (N, 4) float32 xyxy, through the same letterbox
    (perception.preprocess.Letterbox) that :func:`_decode_resized` puts the frame in."""
    boxes = torch.tensor(sample.boxes, dtype=torch.float32).reshape(-1, 4)
    return Letterbox.fit(sample.size, size).boxes_to_input(boxes)


def source_size(samples: Sequence[FrameSample], input_size: tuple[int, int]) -> tuple[int, int]:
    """(H, W) to decode frames at when a crop resizes them afterwards: ``input_size``, shrunk with its
    aspect kept to no more than the largest frame among ``samples`` (upscaling in the cache adds no
    detail; the crop's own resize does it from the frame's pixels, and a 320x240 session cached for a
    640x480 model holds a quarter of the memory)."""
    height, width = int(input_size[0]), int(input_size[1])
    frame_h = max((s.size[0] for s in samples), default=height)
    frame_w = max((s.size[1] for s in samples), default=width)
    factor = min(1.0, frame_h / height, frame_w / width)
    if factor >= 1.0:
        return height, width
    return max(1, round(height * factor)), max(1, round(width * factor))


class _FrameDataset(Dataset):
    """Shared machinery: images from the cache (or decoded per item) and the augmenter.

    input_size: the size images are decoded (and cached) at, and that boxes are given in; the
    augmenter (when given) turns them into samples of its own out_size."""

    def __init__(self, samples: Sequence[FrameSample], input_size: tuple[int, int], augmenter: Augmenter | None,
                 cache: bool, base_seed: int = 0) -> None:
        if not samples:
            raise ValueError("no frames: the sessions given hold no labelled frames for this task")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.augmenter = augmenter
        self.base_seed = base_seed
        self.names = [s.name for s in samples]
        self.groups = [s.group for s in samples]
        self.takeovers = torch.tensor([bool(s.meta.get("takeover", False)) for s in samples], dtype=torch.bool)
        self._samples = None if cache else list(samples)
        self.images = build_frame_cache(samples, self.input_size) if cache else None

    def __len__(self) -> int:
        return len(self.names)

    def _key(self, key) -> tuple[int, int]:
        if isinstance(key, (tuple, list)):
            return int(key[0]), int(key[1])
        return int(key), self.base_seed * 1_000_003 + int(key)

    def takeover_mask(self) -> torch.Tensor:
        """(N,) bool: the frames a person drove (a takeover during ``drive --record``)."""
        return self.takeovers

    def image(self, index: int) -> torch.Tensor:
        """(3, H, W) uint8 at ``input_size``, unaugmented."""
        if self.images is not None:
            return self.images[index]
        return torch.from_numpy(_decode_resized(self._samples[index], self.input_size))


def direction_targets(samples: Sequence[FrameSample], directions: Sequence[str]) -> torch.Tensor:
    """(N,) int64 index into ``directions`` of each sample's direction label (all must have one).
    Raises ValueError naming labels that are not among ``directions``."""
    directions = tuple(directions)
    unknown = sorted({s.direction for s in samples} - set(directions))
    if unknown:
        raise ValueError(f"direction labels {unknown} are not among the model's {directions}")
    return torch.tensor([directions.index(s.direction) for s in samples], dtype=torch.int64)


def box_targets(samples: Sequence[FrameSample], input_size: tuple[int, int], classes: Sequence[str],
                who: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per sample: boxes (N,4) float32 xyxy in model-input px for ``input_size`` (h, w), and
    labels (N,) int64 in 1..C (0 is background). Boxes of classes not in ``classes`` are dropped,
    with one warning naming them (``who``: "detector" / "joint", for the message)."""
    classes = tuple(classes)
    boxes: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    unknown: set[str] = set()
    for s in samples:
        keep = [i for i, name in enumerate(s.labels) if name in classes]
        unknown.update(name for name in s.labels if name not in classes)
        boxes.append(_scaled_boxes(s, input_size)[keep])
        labels.append(torch.tensor([classes.index(s.labels[i]) + 1 for i in keep], dtype=torch.int64))
    if unknown:
        log.warning("%s: boxes of classes %s are not among the model's %s and are ignored", who, sorted(unknown),
                    classes)
    return boxes, labels


def steer_targets(samples: Sequence[FrameSample]) -> torch.Tensor:
    """(N,) float32: each sample's continuous steer label ([-1, 1], + = right), NaN where it has none
    (the steer loss and ``steer_mae`` skip those frames)."""
    return torch.tensor([float("nan") if s.steer is None else float(s.steer) for s in samples], dtype=torch.float32)


class DirectionDataset(_FrameDataset):
    """(image (3,H,W) uint8, direction index int64) per frame with a direction label.

    steer: items carry {"direction": () int64, "steer": () float32} instead of the bare index, the
    steer being the frame's continuous label (NaN without one), negated when the augmenter mirrors
    the frame (+ = right); what DirectionTask trains the steer head with.
    """

    def __init__(self, samples: Sequence[FrameSample], input_size, directions: Sequence[str],
                 augmenter: Augmenter | None = None, cache: bool = True, base_seed: int = 0,
                 steer: bool = False) -> None:
        self.directions = tuple(directions)
        labelled = [s for s in samples if s.direction is not None]
        if len(labelled) < len(samples):
            log.info("direction: %d of %d frames have no direction label and are skipped",
                     len(samples) - len(labelled), len(samples))
        self.targets = direction_targets(labelled, self.directions)
        self.with_steer = bool(steer)
        self.steers = steer_targets(labelled)
        if self.with_steer:
            log.info("direction: %d of %d frames have a continuous steer label", int(self.steers.isfinite().sum()),
                     len(labelled))
        super().__init__(labelled, input_size, augmenter, cache, base_seed)

    def __getitem__(self, key):
        index, seed = self._key(key)
        image, label = self.image(index), int(self.targets[index])
        jitter = torch.tensor(IDENTITY_JITTER)
        steer = self.steers[index]
        if self.augmenter is not None:
            if self.with_steer and self.augmenter.flips(seed):
                steer = -steer
            image, _, _, label, jitter = self.augmenter(image, torch.zeros((0, 4)),
                                                        torch.zeros((0,), dtype=torch.int64), label, seed)
        label = torch.tensor(label, dtype=torch.int64)
        if self.with_steer:
            return image, {"direction": label, "steer": steer.clone()}, jitter
        return image, label, jitter

    def class_counts(self) -> torch.Tensor:
        return torch.bincount(self.targets, minlength=len(self.directions))

    def sample_weights(self) -> torch.Tensor:
        """Per-frame draw weight inversely proportional to its class frequency."""
        counts = self.class_counts().clamp(min=1).double()
        return (1.0 / counts)[self.targets]


class DetectionDataset(_FrameDataset):
    """(image (3,H,W) uint8, {"boxes": (N,4) float32 xyxy model-input px, "labels": (N,) int64 in 1..C}).

    Without an augmenter, (H, W) = input_size. With one, frames are decoded at input_size and the
    items come out at the augmenter's out_size (a training crop may be smaller than the model input)."""

    def __init__(self, samples: Sequence[FrameSample], input_size, classes: Sequence[str],
                 augmenter: Augmenter | None = None, cache: bool = True, base_seed: int = 0) -> None:
        self.classes = tuple(classes)
        size = (int(input_size[0]), int(input_size[1]))
        labelled = [s for s in samples if s.boxes_labelled]
        if len(labelled) < len(samples):
            log.info("detector: %d of %d frames have no box labels and are skipped", len(samples) - len(labelled),
                     len(samples))
        samples = labelled
        self.boxes, self.labels = box_targets(samples, size, self.classes, "detector")
        self._crop_weights: list[torch.Tensor] | None = None  # see weight_crops_by_rarity
        super().__init__(samples, size, augmenter, cache, base_seed)

    def __getitem__(self, key):
        index, seed = self._key(key)
        image, boxes, labels = self.image(index), self.boxes[index], self.labels[index]
        jitter = torch.tensor(IDENTITY_JITTER)
        if self.augmenter is not None:
            weights = self._crop_weights[index] if self._crop_weights is not None else None
            image, boxes, labels, _, jitter = self.augmenter(image, boxes, labels, -1, seed, weights)
        return image, {"boxes": boxes.float().reshape(-1, 4), "labels": labels}, jitter

    def class_counts(self) -> torch.Tensor:
        """Boxes per class (index 0 = first class)."""
        return self.group_counts(by_size=False)

    def box_groups(self, by_size: bool = False) -> list[torch.Tensor]:
        """Per frame, the balancing group of each box: its class index (0-based), or with by_size
        class * 3 + height band (0 small, 1 medium, 2 large: ``training.metrics.HEIGHT_BANDS``, the box
        height as a fraction of the image height)."""
        if not by_size:
            return [lab - 1 for lab in self.labels]
        from training.metrics import HEIGHT_BANDS

        edges = torch.tensor([HEIGHT_BANDS["small"][1], HEIGHT_BANDS["medium"][1]], dtype=torch.float32)
        height = float(self.input_size[0])
        return [(lab - 1) * 3 + torch.bucketize((boxes[:, 3] - boxes[:, 1]) / height, edges, right=True)
                for boxes, lab in zip(self.boxes, self.labels)]

    def group_counts(self, by_size: bool = False, groups: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Boxes per group of :meth:`box_groups` (``groups``: those already computed): (C,) int64, or with
        by_size (C * 3,), class-major (reshape to (C, 3) for small / medium / large per class)."""
        groups = self.box_groups(by_size) if groups is None else groups
        every = torch.cat(groups) if groups else torch.zeros(0, dtype=torch.int64)
        return torch.bincount(every, minlength=len(self.classes) * (3 if by_size else 1))

    def _inverse_group_counts(self, by_size: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(:meth:`box_groups`, (G,) float64 1 / boxes per group, a group with no boxes counted as one)."""
        groups = self.box_groups(by_size)
        return groups, 1.0 / self.group_counts(by_size, groups).clamp(min=1).double()

    def sample_weights(self, by_size: bool = False) -> torch.Tensor:
        """Per-frame draw weight: frames with boxes of rare groups are drawn more often.

        Groups are classes, or with by_size classes x height bands (:meth:`box_groups`).
        weight = max over the frame's boxes of 1 / (boxes of that group); frames without
        boxes get the weight of the most frequent group.
        """
        groups, inv = self._inverse_group_counts(by_size)
        floor = float(inv.min())
        return torch.tensor([float(inv[g].max()) if g.numel() else floor for g in groups], dtype=torch.float64)

    def weight_crops_by_rarity(self, by_size: bool = True) -> None:
        """From now on, a training crop placed on a box (--crop-on-boxes) picks it in proportion to
        1 / (boxes of its group) instead of uniformly: in a frame drawn for its one far walker the crop
        holds that walker, not the car beside it. Call before the DataLoader's workers start."""
        groups, inv = self._inverse_group_counts(by_size)
        self._crop_weights = [inv[g] for g in groups]


def detection_collate(batch):
    """-> images (B,3,H,W) uint8, targets list of dicts, jitter (B,4)."""
    images = torch.stack([item[0] for item in batch])
    return images, [item[1] for item in batch], torch.stack([item[2] for item in batch])


def direction_collate(batch):
    """-> images (B,3,H,W) uint8, labels (B,) int64, jitter (B,4); with steer items (DirectionDataset's
    ``steer``) the labels are {"direction": (B,) int64, "steer": (B,) float32, NaN = no label}."""
    images = torch.stack([item[0] for item in batch])
    if isinstance(batch[0][1], dict):
        targets = {key: torch.stack([item[1][key] for item in batch]) for key in batch[0][1]}
    else:
        targets = torch.stack([item[1] for item in batch])
    return images, targets, torch.stack([item[2] for item in batch])


__all__ = ["DirectionDataset", "DetectionDataset", "build_frame_cache", "detection_collate", "direction_collate",
           "resize_sample", "source_size", "steer_targets"]
