"""The training tasks by name: ``truckpilot train KIND`` and a checkpoint's model card name one.

Each task is a class (training.tasks.base.Task) with ``create`` and ``default_model_config``;
the registry is the one place that lists them, so the engine, the CLIs and the demo never
branch on a task's name.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Mapping, Sequence

from training.tasks.base import Task
from training.tasks.detector import DetectorTask
from training.tasks.direction import DirectionTask
from training.tasks.joint import JointTask

#: task name -> its class (read-only)
TASK_CLASSES: Mapping[str, type[Task]] = MappingProxyType({
    DirectionTask.kind: DirectionTask,
    DetectorTask.kind: DetectorTask,
    JointTask.kind: JointTask,
})


def task_class(kind: str) -> type[Task]:
    """The class of the task named ``kind``; ValueError naming the choices for any other name."""
    try:
        return TASK_CLASSES[kind]
    except KeyError:
        raise ValueError(f"unknown task {kind!r}; choose one of {', '.join(TASK_CLASSES)}") from None


def make_task(kind: str, model_config, direction_loss_weight: float = 1.0, steer_loss_weight: float = 1.0) -> Task:
    """The task of this kind; model_config: DirectionConfig, DetectorConfig or (joint) JointConfig.
    direction_loss_weight: joint only, the weight of the direction cross-entropy; steer_loss_weight:
    direction and joint, the weight of the steer head's loss."""
    return task_class(kind).create(model_config, direction_loss_weight, steer_loss_weight)


def default_model_config(kind: str, trunk_weights: str, input_size: tuple[int, int] | None,
                         classes: Sequence[str] | None = None, detector_options: dict | None = None):
    """The config for a fresh model of this kind (joint: a JointConfig of both).
    detector_options: more DetectorConfig keyword arguments (e.g. anchors, match_iou) for the detector."""
    return task_class(kind).default_model_config(trunk_weights, input_size, classes, detector_options)
