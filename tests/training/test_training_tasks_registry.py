"""The task registry: every task `truckpilot train` offers is registered, and names map to classes."""
from __future__ import annotations

import pytest

from perception.config import DetectorConfig, DirectionConfig
from training.config import TASKS
from training.tasks import TASK_CLASSES, DetectorTask, DirectionTask, default_model_config, make_task
from training.tasks.joint import JointConfig, JointTask


def test_the_registry_holds_exactly_the_tasks_the_cli_offers():
    assert tuple(TASK_CLASSES) == TASKS
    assert all(cls.kind == kind for kind, cls in TASK_CLASSES.items())


@pytest.mark.parametrize("kind, task_type, config_type", [
    ("direction", DirectionTask, DirectionConfig),
    ("detector", DetectorTask, DetectorConfig),
    ("joint", JointTask, JointConfig),
])
def test_make_task_builds_the_named_task_on_its_default_config(kind, task_type, config_type):
    config = default_model_config(kind, "none", (48, 64), classes=("car", "person"))
    assert type(config) is config_type
    task = make_task(kind, config, direction_loss_weight=0.5)
    assert type(task) is task_type
    assert task.input_size == (48, 64)
    if kind == "detector":
        assert tuple(config.classes) == ("car", "person")
    if kind == "joint":
        assert task.direction_loss_weight == 0.5
        assert tuple(config.detector.classes) == ("car", "person")


def test_an_unknown_task_names_the_choices():
    with pytest.raises(ValueError, match="direction, detector, joint"):
        make_task("segmenter", None)
