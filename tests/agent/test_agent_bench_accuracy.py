"""``truckpilot bench --data``: the product path's accuracy beside the unoptimised model's, on a real
recorded session (random-init models: the figures are low, but both paths must see the same)."""
from __future__ import annotations

import pytest
import torch

from agent.apps.bench import build_product_perceiver, compare_accuracy, measure_accuracy
from agent.recording.recorder import record_sim
from perception.checkpoint import save_model
from perception.config import DetectorConfig, DirectionConfig, TrunkConfig
from perception.detector import SSDNet
from perception.direction import DirectionNet


@pytest.fixture(scope="module")
def checkpoints_and_session(module_tmp_path):
    root = module_tmp_path
    torch.manual_seed(0)
    trunk = TrunkConfig(weights="none")
    direction = DirectionNet(DirectionConfig(input_size=(64, 96), trunk=trunk))
    detector = SSDNet(DetectorConfig(input_size=(64, 96), trunk=trunk))
    detector.trunk.load_state_dict(direction.trunk.state_dict())  # one shared trunk, as a joint run writes
    d, s = save_model(root / "d.safetensors", direction), save_model(root / "s.safetensors", detector)
    record_sim(root / "val", seed=5, autopilot=True, headless=True, frames=12, progress=False)
    return str(d), str(s), str(root / "val")


def test_product_path_and_reference_agree_when_their_settings_agree(checkpoints_and_session):
    """ONNX Runtime vs eager PyTorch, compared at the evaluation threshold: the same accuracy and mAP;
    the product's operating threshold is reported beside them and left as it was."""
    d, s, session = checkpoints_and_session
    product = build_product_perceiver(d, s, engine="onnxruntime")
    assert product.engine == "onnxruntime" and product.shared_trunk
    operating = product.score_threshold
    report = compare_accuracy(product, d, s, [session])
    assert product.score_threshold == operating
    assert report["product"]["frames"] == report["reference"]["frames"] == report["product_operating"]["frames"] == 12
    assert report["delta_points"] == {"direction_accuracy": 0.0, "map_50": 0.0}, report
    assert "score >= 0.05" in report["product_settings"] and "score >= 0.05" in report["reference_settings"]
    assert f"score >= {operating}" in report["product_operating_settings"]
    assert report["product_operating"]["direction_accuracy"] == report["product"]["direction_accuracy"]


def test_measure_accuracy_counts_every_frame_and_scores_a_perfect_direction(checkpoints_and_session):
    """A perceiver whose direction is always the label and whose detections are the labelled boxes
    scores 1.0 on both; leaving out one labelled box costs mAP."""
    d, s, session = checkpoints_and_session
    product = build_product_perceiver(d, s, engine="torch")
    from perception.types import Detection
    from training.sessions import Session

    records = Session.open(session).records()
    assert any(r.boxes for r in records), "the fixture session must hold boxes for the mAP half of this test"

    def oracle_of(answers_for):
        answers = iter(answers_for)

        def oracle(frame):
            result = product(frame)
            r = next(answers)
            detections = [Detection(tuple(float(v) for v in box), label, 1.0) for box, label in zip(r.boxes, r.labels)]
            return type(result)(r.direction, result.direction_probs, detections, result.timings_ms)

        oracle.direction_card, oracle.detector_card = product.direction_card, product.detector_card
        return oracle

    figures = measure_accuracy(oracle_of(records), [session])
    assert figures["frames"] == 12 and figures["direction_accuracy"] == 1.0 and figures["map_50"] == 1.0
    # the same frames answered with a box missing: the mAP now falls short of 1
    dropped = [r for r in records if r.boxes][0]
    fewer = [type(r)(**{**r.__dict__, "boxes": r.boxes[1:], "labels": r.labels[1:]}) if r is dropped else r
             for r in records]
    assert measure_accuracy(oracle_of(fewer), [session])["map_50"] < 1.0


def test_bench_refuses_a_bad_data_session_before_measuring(tmp_path, capsys, checkpoints_and_session):
    from agent.apps.bench import main

    d, s, _ = checkpoints_and_session
    assert main(["--model", d, "--detector", s, "--data", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(["--data", str(tmp_path)]) == 2
    assert "needs trained checkpoints" in capsys.readouterr().err
