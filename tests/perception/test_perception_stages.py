"""PERCEPTION_STAGES names every stage a Perceiver times: readers (the bench's per-stage
report) take the stage names from it rather than from a prefix of a string."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from perception.config import DetectorConfig, DirectionConfig, TrunkConfig
from perception.detector import SSDNet
from perception.direction import DirectionNet
from perception.perceiver import Perceiver
from perception.types import PERCEPTION_STAGES

SMALL = (64, 96)  # (H, W) model input


def _models():
    torch.manual_seed(0)
    trunk = TrunkConfig(weights="none")
    direction = DirectionNet(DirectionConfig(input_size=SMALL, trunk=trunk))
    detector = SSDNet(DetectorConfig(input_size=SMALL, trunk=trunk))
    return direction, detector


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
def test_every_timed_stage_is_a_perception_stage(engine):
    if engine == "onnxruntime":
        pytest.importorskip("onnxruntime")
    direction, separate = _models()  # two trunks with different weights: each network runs its own
    detector = SSDNet(DetectorConfig(input_size=SMALL, trunk=TrunkConfig(weights="none")))
    detector.trunk = direction.trunk  # one trunk object: it runs once
    frame = np.random.default_rng(0).integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    seen: set[str] = set()
    for models in [(direction, detector), (direction, separate), (direction, None), (None, detector)]:
        timings = Perceiver(*models, device="cpu", engine=engine)(frame).timings_ms
        assert timings and set(timings) <= set(PERCEPTION_STAGES), sorted(timings)
        seen |= set(timings)
    assert {"preprocess", "decode_nms", "total"} <= seen
    assert ("networks" in seen) == (engine == "onnxruntime")
    if engine == "torch":
        assert {"trunk", "direction", "detector"} <= seen
