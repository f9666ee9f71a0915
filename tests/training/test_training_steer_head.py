"""The direction network's continuous steer head (issue 28): its label, its masked loss, the flip, --init from
a checkpoint without it. That the head learns (beats a constant 0 on held-out simulator seeds) is asserted in
test_training_direction_learns.py, on the run it already makes: a shorter run of its own (60-90 steps on 6
sessions, ~30 s) did not beat the constant reliably.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from training.data.samples import sample_from_array

def _record(out, seed, time_of_day, weather, frames):
    from agent.recording.recorder import record_sim

    record_sim(out, seed=seed, time_of_day=time_of_day, weather=weather, width=96, height=72, frames=frames,
               progress=False, perturb=0.4, min_box_height_px=4.0 * 72 / 240)
    return str(out)


def test_sim_recordings_store_the_experts_intended_steer_as_each_frames_label(tmp_path):
    """Every simulator frame keeps extra["expert_steer"] (the continuous quantity its direction label is cut
    from, with the 0.05 deadband), and training reads it as FrameSample.steer."""
    from sim.expert import DIRECTION_DEADBAND
    from training.data.samples import samples_from_session
    from training.sessions import Session
    from training.sessions.telemetry import EXPERT_STEER_KEY, steer_label

    path = _record(tmp_path / "s", 7, "day", "clear", frames=40)
    records = list(Session.open(path).records())
    steers = [r.extra[EXPERT_STEER_KEY] for r in records]
    assert len(steers) == 40 and all(-1.0 <= s <= 1.0 for s in steers)
    for record, steer in zip(records, steers):
        want = "left" if steer < -DIRECTION_DEADBAND else "right" if steer > DIRECTION_DEADBAND else "straight"
        assert record.direction == want, (record.index, steer, record.direction)
        # the sim's telemetry steer is the keys (-1 / 0 / +1), never the label
        assert record.extra["telemetry"]["steer"] in (-1.0, 0.0, 1.0)
    assert [s.steer for s in samples_from_session(path)] == pytest.approx(steers)
    # where the label comes from: the expert's steer, else a game's (scs) telemetry steer, else none
    assert steer_label({"telemetry": {"source": "sim", "steer": 1.0}}) is None
    assert steer_label({"telemetry": {"source": "scs", "steer": -0.25}}) == -0.25
    assert steer_label({"expert_steer": 0.1, "telemetry": {"source": "scs", "steer": -0.25}}) == 0.1
    assert steer_label({}) is None and steer_label(None) is None


def test_a_flip_negates_the_steer_label_with_the_image_and_swaps_the_direction():
    import torchvision.transforms.v2.functional as F

    from training.config import AugmentConfig, TrainConfig
    from training.data.augment import Augmenter
    from training.data.datasets import DirectionDataset, direction_collate

    rng = np.random.default_rng(0)
    directions = ("left", "straight", "right")
    samples = [sample_from_array(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8), d, name=d, steer=s)
               for d, s in (("left", -0.3), ("straight", 0.02), ("right", None))]
    config = TrainConfig(task="direction", augment=AugmentConfig(color_jitter=0.0)).augmentation
    dataset = DirectionDataset(samples, (24, 32), directions, Augmenter((24, 32), config, directions), steer=True)
    seen = set()
    for index, sample in enumerate(samples):
        for seed in range(24):
            image, target, _ = dataset[(index, seed)]
            flipped = torch.equal(image, F.horizontal_flip(dataset.image(index)))
            seen.add(flipped)
            steer = float(target["steer"])
            if sample.steer is None:
                assert math.isnan(steer)
            else:
                assert steer == pytest.approx(-sample.steer if flipped else sample.steer)
            mirrored = {"left": "right", "right": "left"}.get(sample.direction, sample.direction)
            assert directions[int(target["direction"])] == (mirrored if flipped else sample.direction)
    assert seen == {True, False}
    images, targets, _ = direction_collate([dataset[(i, 0)] for i in range(3)])
    assert targets["direction"].shape == targets["steer"].shape == (3,)
    # a dataset without steer items is as before: the bare direction index
    assert DirectionDataset(samples, (24, 32), directions)[0][1].dtype == torch.int64


def test_the_steer_loss_counts_labelled_frames_only_and_adds_to_the_cross_entropy():
    from perception.config import DirectionConfig, TrunkConfig
    from training.tasks.direction import DirectionTask, steer_loss

    steer = torch.tensor([0.1, 0.5, -0.2], requires_grad=True)
    labels = torch.tensor([0.1, float("nan"), 0.3])
    loss = steer_loss(steer, labels)
    assert float(loss.detach()) == pytest.approx(float(torch.nn.functional.smooth_l1_loss(
        torch.tensor([0.1, -0.2]), torch.tensor([0.1, 0.3]), beta=0.1)))
    loss.backward()
    assert steer.grad[1] == 0 and steer.grad[2] != 0
    none = steer_loss(steer, torch.full((3,), float("nan")))
    assert float(none.detach()) == 0.0 and none.requires_grad  # still in the graph: DDP sees the head used

    config = DirectionConfig(input_size=(32, 32), trunk=TrunkConfig(weights="none"))
    logits = torch.randn(3, 3)
    targets = {"direction": torch.tensor([0, 1, 2]), "steer": labels}
    ce = torch.nn.functional.cross_entropy(logits, targets["direction"])
    for weight in (0.0, 2.0):
        task = DirectionTask(config, steer_loss_weight=weight)
        got = task.batch_loss(None, (logits, steer.detach()), targets)
        assert float(got) == pytest.approx(float(ce + weight * steer_loss(steer.detach(), labels)))
    # logits alone, or bare direction targets: the cross-entropy alone, as before the head
    assert float(DirectionTask(config).batch_loss(None, logits, targets["direction"])) == pytest.approx(float(ce))
    with pytest.raises(ValueError, match="--steer-loss-weight"):
        DirectionTask(config, steer_loss_weight=-1.0)


def test_init_from_a_checkpoint_without_the_head_keeps_its_weights_and_adds_a_fresh_head(tmp_path):
    from safetensors.torch import save_file

    from perception.checkpoint import CARD_KEY, ModelCard, read_card
    from perception.config import DirectionConfig, TrunkConfig
    from perception.direction import DirectionNet
    from training.cli import load_init_state
    from training.tasks.direction import with_steer_head

    torch.manual_seed(0)
    old = DirectionNet(DirectionConfig(input_size=(32, 32), trunk=TrunkConfig(weights="none"), steer_head=False))
    card = ModelCard.for_model(old).to_dict()
    del card["config"]["steer_head"]
    path = tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in old.state_dict().items()}, str(path),
              metadata={CARD_KEY: json.dumps(card, sort_keys=True)})
    config = with_steer_head(read_card(path).model_config())
    assert config.steer_head
    model = DirectionNet(config, init_trunk_weights=False)
    load_init_state(model, old.state_dict(), path)
    assert model.has_steer_head and torch.equal(model.head[3].weight, old.head[3].weight)
    with pytest.raises(ValueError, match="do not fit"):
        load_init_state(model, {k: v for k, v in old.state_dict().items() if not k.startswith("head.")}, path)
