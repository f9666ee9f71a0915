"""The training tasks: what differs between the direction classifier, the detector, and the two
trained together on one trunk (joint). The engine (training.engine) is shared and task-blind.

Modules, each importing only those after it: registry (name -> task class, make_task,
default_model_config) > joint > direction | detector > base (the Task interface, normalise).
"""
from training.tasks.base import Task, normalise
from training.tasks.detector import DetectorTask
from training.tasks.direction import DirectionTask
from training.tasks.registry import TASK_CLASSES, default_model_config, make_task, task_class

__all__ = ["TASK_CLASSES", "DetectorTask", "DirectionTask", "Task", "default_model_config", "make_task", "normalise",
           "task_class"]
