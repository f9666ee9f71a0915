"""--takeover-weight: the frames a person drove (takeovers of `drive --record`) are drawn W times as often,
and the run says how many there were and with what weight."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from sim.labels import CLASSES, DIRECTIONS
from tests.training.conftest import draw_scene
from training import cli as train_cli
from training.config import parse_train_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["--trunk-weights", "none", "--batch-size", "4", "--num-workers", "0", "--input-height", "32",
        "--input-width", "32", "--device", "cpu"]
FRAMES, TAKEOVER = 24, range(10, 14)  # frames 10..13 of each --data session: a person drove them


def drive_session(path, seed: int):
    """A recorded drive: labelled scenes, frames in TAKEOVER marked as DriveRecorder marks a takeover."""
    from training.sessions import SessionWriter

    rng = np.random.default_rng(seed)
    with SessionWriter.create(path, source={"kind": "window", "driver": "model"}, width=96, height=72, fps=10,
                              classes=CLASSES, directions=DIRECTIONS) as writer:
        for i in range(FRAMES):
            image, direction, boxes, labels = draw_scene(rng)
            extra = {"takeover": True} if i in TAKEOVER else {"model_direction": direction}
            writer.append(image, timestamp=i / 10, keys=(direction == "left", direction == "right", True, False),
                          direction=direction, direction_source="keys" if i in TAKEOVER else "model",
                          boxes=boxes, labels=labels, boxes_source="sim", extra=extra)
    return path


@pytest.fixture(scope="module")
def drives(module_tmp_path):
    return [drive_session(module_tmp_path / f"d{seed}", seed) for seed in (1, 2)]


def drawn_share(drives, tmp_path, *extra) -> tuple[float, object]:
    """Share of one epoch's draws that fall on takeover frames, and the trainer."""
    from training.runtime import setup_runtime, teardown_runtime

    config = parse_train_config(["direction", "--data", str(drives[0]), "--val-data", str(drives[1]), "--out",
                                 str(tmp_path / "run"), *TINY, "--epoch-frames", "4000", *extra])
    runtime = setup_runtime("cpu", "off", "off")
    try:
        trainer = train_cli.build_trainer(config, runtime)
    finally:
        teardown_runtime(runtime)
    marked = trainer.train_set.takeover_mask()
    order = trainer.sampler.epoch_order()
    return float(marked[order].double().mean()), trainer


def test_takeover_weight_draws_the_persons_frames_more_often(drives, tmp_path):
    plain, trainer = drawn_share(drives, tmp_path)
    assert trainer.takeover_frames == len(TAKEOVER)
    weighted, trainer = drawn_share(drives, tmp_path, "--takeover-weight", "10")
    assert trainer.takeover_frames == len(TAKEOVER)
    # class-balanced draws put about 4 of 24 frames' share on them; weight 10 about 40 of 60
    assert plain < 0.3 and weighted > 0.5, (plain, weighted)
    assert weighted == pytest.approx(trainer.takeover_share, abs=0.03)
    none_share, _ = drawn_share(drives, tmp_path, "--takeover-weight", "10", "--balance", "none")
    assert none_share == pytest.approx(40 / 60, abs=0.03)  # 4 frames x 10 against 20 x 1


def test_the_weight_and_the_marked_frames_are_in_the_log_config_and_metrics(drives, tmp_path, caplog):
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="training.engine"):
        assert train_cli.main(["direction", "--data", str(drives[0]), "--val-data", str(drives[1]), "--out",
                               str(run), *TINY, "--epochs", "1", "--max-steps", "1",
                               "--takeover-weight", "5"]) == 0
    assert any("takeover frames (a person drove): 4 of 24 training frames, --takeover-weight 5" in r.getMessage()
               for r in caplog.records), caplog.text
    assert json.loads((run / "config.json").read_text())["data"]["takeover_weight"] == 5.0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["takeover_weight"] == 5.0 and metrics["takeover_frames"] == 4
    assert 0.3 < metrics["takeover_share"] < 1.0


def test_a_weight_that_is_not_positive_is_refused():
    with pytest.raises((ValueError, SystemExit)):
        parse_train_config(["direction", "--data", "x", "--takeover-weight", "0"])
