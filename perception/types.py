"""Plain typed results of perception. No tensor crosses out of the package.

Boxes are xyxy in pixels of the frame that was given to the Perceiver,
with 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H.
"""
from __future__ import annotations

from dataclasses import dataclass, field

#: the class and direction names live in sim.labels (the bottom layer); perception re-exports them
from sim.labels import CLASSES as DEFAULT_DETECTION_CLASSES  # noqa: F401
from sim.labels import DIRECTIONS  # noqa: F401

#: Every stage name a Perceiver may time in ``Perception.timings_ms`` (see perception.perceiver).
PERCEPTION_STAGES: tuple[str, ...] = ("preprocess", "trunk", "direction", "detector", "networks", "decode_nms",
                                      "total")


@dataclass(frozen=True)
class Detection:
    """One detected object: box xyxy in input-frame pixels, class name, score in [0, 1]."""

    box: tuple[float, float, float, float]
    label: str
    score: float


@dataclass(frozen=True)
class Perception:
    """What the Perceiver saw in one frame.

    direction: the most probable of DIRECTIONS.
    direction_probs: probability per direction name, summing to 1.
    detections: after score threshold and NMS, highest score first.
    timings_ms: wall milliseconds per stage, keyed by PERCEPTION_STAGES names.
    steer: the direction network's continuous steering head, in [-1, 1] of full lock, + = right;
        None when the network has none (a checkpoint from before the head), with no direction
        model, and on an ONNX graph exported before the graphs held the steer output.
    """

    direction: str
    direction_probs: dict[str, float]
    detections: tuple[Detection, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)
    steer: float | None = None
