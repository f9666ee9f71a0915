"""Accuracy of a whole Perceiver (any engine) on labelled recorded frames: what the product sees.

Direction accuracy (the argmax against the frame's direction label) and detector mAP@0.5
(torchmetrics, xyxy frame pixels, one metric over all frames). ``truckpilot bench --data``
compares engines with it, and ``truckpilot export --int8`` checks the int8 graph against the
float32 one with it (perception.quantize.Int8Check).

:class:`LabelledFrame` is one frame with its labels; :func:`labelled_frames` reads them from
sessions (the session store), optionally a subset (every ``every``-th from ``offset``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np


@dataclass(frozen=True)
class LabelledFrame:
    """image: HxWx3 uint8 RGB; direction: label or None; boxes: xyxy frame px; labels: class names;
    where: "session path#frame index"."""

    image: np.ndarray
    direction: str | None
    boxes: tuple[tuple[float, float, float, float], ...]
    labels: tuple[str, ...]
    where: str


def labelled_frames(sessions: Sequence[str], every: int = 1, offset: int = 0,
                    keep: Callable[[int], bool] | None = None) -> Iterator[LabelledFrame]:
    """The frames of ``sessions`` in order; with ``every`` > 1 the ``offset``-th, (offset+every)-th, ...
    of each session (by position among its live records); ``keep(position)`` filters further."""
    from training.sessions import Session

    for path in sessions:
        session = Session.open(path)
        for position, record in enumerate(session.records()):
            if position % every != offset % every or (keep is not None and not keep(position)):
                continue
            yield LabelledFrame(session.load_image(record), record.direction, tuple(record.boxes),
                                tuple(record.labels), f"{path}#{record.index}")


def accuracy_of(perceiver, frames: Iterable[LabelledFrame], results: list | None = None) -> dict:
    """{"frames", "direction_accuracy" (0..1, frames with a direction label, when the perceiver has a
    direction model), "map_50" (0..1, when it has a detector)} of ``perceiver`` on ``frames``;
    ``results``: a list that receives (frame, Perception) of every frame, e.g. for :func:`as_labels`."""
    import torch
    from torchmetrics.detection import MeanAveragePrecision

    classes = list(perceiver.detector_card.classes) if perceiver.detector_card else []
    metric = MeanAveragePrecision(iou_type="bbox", iou_thresholds=[0.5], class_metrics=False)
    correct = total = count = 0
    for frame in frames:
        result = perceiver(frame.image)
        count += 1
        if results is not None:
            results.append((frame, result))
        if frame.direction is not None and perceiver.direction_card is not None:
            total += 1
            correct += result.direction == frame.direction
        if classes:
            known = [(b, l) for b, l in zip(frame.boxes, frame.labels) if l in classes]
            metric.update(
                [{"boxes": torch.tensor([d.box for d in result.detections], dtype=torch.float32).reshape(-1, 4),
                  "scores": torch.tensor([d.score for d in result.detections], dtype=torch.float32),
                  "labels": torch.tensor([classes.index(d.label) for d in result.detections], dtype=torch.long)}],
                [{"boxes": torch.tensor([b for b, _ in known], dtype=torch.float32).reshape(-1, 4),
                  "labels": torch.tensor([classes.index(l) for _, l in known], dtype=torch.long)}])
    out: dict = {"frames": count}
    if total:
        out["direction_accuracy"] = round(correct / total, 4)
    if classes:
        out["map_50"] = round(float(metric.compute()["map_50"]), 4)
    return out


def measure_accuracy(perceiver, sessions: Sequence[str]) -> dict:
    """:func:`accuracy_of` on every frame of ``sessions``."""
    return accuracy_of(perceiver, labelled_frames(sessions))


def as_labels(results: list, min_score: float) -> list[LabelledFrame]:
    """One perceiver's (frame, Perception) results as labels: its direction, its detections scoring at least
    ``min_score``. :func:`accuracy_of` another perceiver on them measures how well the two agree (direction
    agreement, mAP@0.5 of the other's detections against these), whatever the models' own accuracy."""
    return [LabelledFrame(frame.image, result.direction,
                          tuple(tuple(d.box) for d in result.detections if d.score >= min_score),
                          tuple(d.label for d in result.detections if d.score >= min_score), frame.where)
            for frame, result in results]
