"""The label names, in their fixed order: the one home of the object classes and the direction
labels. The simulator's ground truth uses them; perception's defaults, the recorder and the
tools import them from here (perception.types re-exports them). No imports: any layer can use it.
"""
from __future__ import annotations

#: object classes of the ground truth and of a default detector, in this fixed order
CLASSES: tuple[str, ...] = ("car", "truck", "person", "sign")
#: direction labels (the intended steer with a deadband), in this fixed order
DIRECTIONS: tuple[str, ...] = ("left", "straight", "right")

__all__ = ["CLASSES", "DIRECTIONS"]
