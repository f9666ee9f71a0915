"""perception: boxes and anchors, the direction classifier and SSD detector, the Perceiver,
and safe checkpoints. See perception/README.md.

The main names are importable from the package (``from perception import Perceiver``)
but load lazily, so ``import perception.types`` stays free of torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "Perceiver": "perception.perceiver",
    "Preprocessor": "perception.preprocess",
    "DirectionNet": "perception.direction",
    "SSDNet": "perception.detector",
    "ModelCard": "perception.checkpoint",
    "CheckpointError": "perception.checkpoint",
    "save_model": "perception.checkpoint",
    "load_model": "perception.checkpoint",
    "read_card": "perception.checkpoint",
    "TrunkConfig": "perception.config",
    "DirectionConfig": "perception.config",
    "AnchorConfig": "perception.config",
    "DetectorConfig": "perception.config",
    "Detection": "perception.types",
    "Perception": "perception.types",
    "DIRECTIONS": "perception.types",
    "DEFAULT_DETECTION_CLASSES": "perception.types",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'perception' has no attribute {name!r}")
