"""Anchor coverage: exact on hand-placed boxes, and the CLI on recorded sessions."""
from __future__ import annotations

import json

import numpy as np
import pytest

from perception.config import AnchorConfig, DetectorConfig, TrunkConfig
from perception.detector import SSDNet
from training.tools.anchor_coverage import anchor_coverage, main, scaled_boxes
from training.data.samples import FrameSample


def _sample(boxes, labels, size=(240, 320)):
    return FrameSample(load_image=lambda: np.zeros((*size, 3), np.uint8), size=size, direction=None,
                       boxes=tuple(boxes), labels=tuple(labels))


def test_a_box_on_an_anchor_is_covered_and_a_speck_is_not():
    config = DetectorConfig(input_size=(64, 64), trunk=TrunkConfig(weights="none"),
                            anchors=AnchorConfig(feature_strides=(16, 32), sizes=(0.25, 0.5), scales=(1.0,),
                                                 aspect_ratios=(1.0,)))
    anchors = SSDNet(config, init_trunk_weights=False).anchors
    exact = anchors[5].tolist()  # a 16x16 anchor of the stride-16 grid
    # frames are 128x128 (twice the input): boxes are halved on the way in
    samples = [_sample([[2 * v for v in exact], [0, 0, 1, 1]], ["car", "sign"], size=(128, 128)),
               _sample([], [], size=(128, 128))]
    boxes, labels = scaled_boxes(samples, (64, 64))
    assert boxes.shape == (2, 4) and labels == ["car", "sign"]
    assert boxes[0].tolist() == pytest.approx(exact)
    rows = anchor_coverage(boxes, labels, config)
    assert rows["car"].covered == 1.0 and rows["car"].median_best_iou == pytest.approx(1.0)
    assert rows["car"].positives_per_box == 1.0  # the neighbouring 16x16 anchors do not overlap it
    assert rows["sign"].covered == 0.0 and rows["sign"].median_best_iou < 0.01
    assert rows["all"].boxes == 2 and rows["all"].covered == 0.5


def test_cli_reports_every_class_of_recorded_sessions(scene_sessions, capsys):
    argv = ["--data", *map(str, scene_sessions), "--input-height", "64", "--input-width", "64", "--json"]
    assert main([*argv, "--match-iou", "0.2"]) == 0
    low = json.loads(capsys.readouterr().out)
    assert main([*argv, "--match-iou", "0.5"]) == 0
    strict = json.loads(capsys.readouterr().out)
    assert strict["match_iou"] == 0.5 and low["match_iou"] == 0.2
    assert set(strict["rows"]) == {"all", "car", "truck", "person", "sign"}
    assert strict["rows"]["all"]["boxes"] > 0
    # a lower threshold can only cover more boxes and give them more positives
    assert low["rows"]["all"]["covered"] >= strict["rows"]["all"]["covered"]
    assert low["rows"]["all"]["positives_per_box"] > strict["rows"]["all"]["positives_per_box"]
    assert main(["--data", str(scene_sessions[0]), "--anchor-strides", "8"]) == 1
    assert "together" in capsys.readouterr().err
