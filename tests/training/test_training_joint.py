"""Joint training (`truckpilot train joint`): one trunk, both heads, two ordinary checkpoints.

Real runs on small recorded sessions (tests/training/conftest.py), random-init
trunk at 64x64, one thread, a few steps each.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from perception.config import DetectorConfig, DirectionConfig, TrunkConfig
from training import cli as train_cli
from training.config import AugmentConfig
from training.data.augment import Augmenter
from training.tasks.joint import JointConfig, JointDataset, JointNet, JointTask
from training.data.samples import sample_from_array
from training.lr_finder import suggest_lr

SIZE = (64, 64)


def _argv(sessions, out, *extra):
    return ["joint", "--data", str(sessions[0]), "--val-data", str(sessions[2]), "--out", str(out),
            "--trunk-weights", "none", "--input-height", str(SIZE[0]), "--input-width", str(SIZE[1]),
            "--batch-size", "8", "--num-workers", "0", "--seed", "3", *extra]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


def _joint_config() -> JointConfig:
    trunk = TrunkConfig(weights="none")
    return JointConfig(DirectionConfig(input_size=SIZE, trunk=trunk), DetectorConfig(input_size=SIZE, trunk=trunk))


def test_joint_run_writes_two_checkpoints_the_perceiver_runs_on_one_trunk(scene_sessions, tmp_path):
    from perception.perceiver import Perceiver
    from training.cli import run_training
    from training.config import DataConfig, ModelConfig, OptimConfig, RunConfig, RuntimeConfig, TrainConfig

    run = tmp_path / "run"
    config = TrainConfig(task="joint",
                         data=DataConfig(sessions=(str(scene_sessions[0]),), val_sessions=(str(scene_sessions[2]),)),
                         model=ModelConfig(trunk_weights="none", input_height=SIZE[0], input_width=SIZE[1]),
                         optim=OptimConfig(epochs=2, freeze_epochs=1, batch_size=8, lr=3e-3),
                         runtime=RuntimeConfig(num_workers=0), run=RunConfig(out=str(run)))
    summary = run_training(config)

    best = summary["best_checkpoints"]
    assert best == {"direction": str(run / "best.direction.safetensors"),
                    "detector": str(run / "best.detector.safetensors")}
    assert summary["task"] == "joint" and summary["global_step"] == 2 * (24 // 8)
    assert set(summary["val"]) == {"joint_score", "direction", "detector"}
    for name in ("last.direction.safetensors", "last.detector.safetensors", "metrics.json", "confusion_matrix.png",
                 "top_losses.png", "pr_curves.png", "errors_gallery.png", "history.png", "state/last.pt"):
        assert (run / name).exists(), name
    assert not (run / "best.safetensors").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    val = metrics["val"]
    assert val["joint_score"] == pytest.approx((val["direction"]["accuracy"] + val["detector"]["map_50"]) / 2)
    assert val["direction_accuracy"] == val["direction"]["accuracy"] and val["frames"] == 24
    assert sum(map(sum, val["direction"]["confusion_matrix"])) == 24 and val["detector"]["images"] == 24
    assert {"joint_score", "direction_accuracy", "detector_map_50"} <= set(metrics["history"][-1]["val"])

    for stem in ("best", "last"):
        direction = load_file(str(run / f"{stem}.direction.safetensors"))
        detector = load_file(str(run / f"{stem}.detector.safetensors"))
        trunk_keys = sorted(k for k in direction if k.startswith("trunk."))
        assert trunk_keys and trunk_keys == sorted(k for k in detector if k.startswith("trunk."))
        assert all(torch.equal(direction[k], detector[k]) for k in trunk_keys), stem
        assert any(k.startswith("heads.") for k in detector) and any(k.startswith("head.") for k in direction)
    # the unfrozen epoch trained the shared trunk (best may be epoch 1, when the trunk was frozen: check last)
    from perception.direction import DirectionNet

    torch.manual_seed(3)
    fresh = DirectionNet(DirectionConfig(input_size=SIZE, trunk=TrunkConfig(weights="none"))).state_dict()
    last = load_file(str(run / "last.direction.safetensors"))
    assert max(float((fresh[k] - last[k]).abs().max()) for k in last
               if k.startswith("trunk.") and k.endswith("weight")) > 1e-4

    perceiver = Perceiver.from_checkpoints(best["direction"], best["detector"], device="cpu", score_threshold=0.0)
    assert perceiver.shared_trunk is True
    frame = np.random.default_rng(0).integers(0, 256, (72, 96, 3), dtype=np.uint8)
    perception = perceiver(frame)
    assert set(perception.direction_probs) == {"left", "straight", "right"}
    assert sum(perception.direction_probs.values()) == pytest.approx(1.0, abs=1e-4)
    assert perception.direction == max(perception.direction_probs, key=perception.direction_probs.get)
    assert len(perception.detections) > 0  # score_threshold 0: the top-k boxes come back
    for d in perception.detections:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 <= x2 <= 96 and 0 <= y1 <= y2 <= 72  # boxes in the frame's pixels
    assert "trunk" in perception.timings_ms

    # `truckpilot evaluate` takes either checkpoint unchanged
    from training.evaluate_cli import evaluate_checkpoint

    report = evaluate_checkpoint(run / "best.direction.safetensors", [str(scene_sessions[2])], tmp_path / "eval")
    assert report["kind"] == "direction"
    assert report["metrics"]["accuracy"] == pytest.approx(val["direction"]["accuracy"])


def test_joint_flip_swaps_the_direction_and_mirrors_the_boxes_of_one_sample():
    height, width = SIZE
    image = np.zeros((height, width, 3), np.uint8)
    image[:, :8] = 200  # a bright band on the left edge
    box = (4.0, 10.0, 20.0, 30.0)
    samples = [sample_from_array(image, "left", [box], ["car"], group="g", name="g/0")]
    directions, classes = ("left", "straight", "right"), ("car", "truck", "person", "sign")
    plain = JointDataset(samples, SIZE, directions, classes, augmenter=None)
    # flip always, and a crop that keeps the whole (square) frame: only the flip acts
    always_flip = AugmentConfig(flip_p=1.0, crop_min_scale=1.0, crop_ratio=(1.0, 1.0))
    flipped = JointDataset(samples, SIZE, directions, classes, Augmenter(SIZE, always_flip, directions))

    image0, target0, _ = plain[0]
    image1, target1, _ = flipped[(0, 12345)]
    assert directions[int(target0["direction"])] == "left"
    assert directions[int(target1["direction"])] == "right"
    assert torch.equal(image1, image0.flip(-1))
    assert torch.allclose(target1["boxes"], torch.tensor([[width - 20.0, 10.0, width - 4.0, 30.0]]))
    assert target1["labels"].tolist() == target0["labels"].tolist() == [1]
    # the views used by evaluation see the same sample
    assert int(flipped.direction_view()[(0, 12345)][1]) == directions.index("right")
    assert torch.allclose(flipped.detection_view()[(0, 12345)][1]["boxes"], target1["boxes"])


def test_joint_net_shares_one_trunk_and_param_groups_hold_each_parameter_once():
    torch.manual_seed(0)
    task = JointTask(_joint_config())
    model = task.build_model(init_trunk_weights=False)
    assert isinstance(model, JointNet)
    assert model.detector.trunk is model.direction.trunk is model.trunk
    all_params = list(model.parameters())
    for frozen in (False, True):
        model.freeze_trunk(frozen)
        groups = model.param_groups(1e-4, 1e-3)
        ids = [id(p) for g in groups for p in g["params"]]
        assert len(ids) == len(set(ids)), "a parameter appears twice"
        trunk_ids = {id(p) for p in model.trunk.parameters()}
        names = [g["name"] for g in groups]
        if frozen:
            assert names == ["direction_head", "detector_head"] and not trunk_ids & set(ids)
            assert not model.trunk.training or not model.training
        else:
            assert names == ["trunk", "direction_head", "detector_head"]
            assert set(ids) == {id(p) for p in all_params}
        torch.optim.AdamW(groups)  # the optimizer accepts them (it refuses duplicates)

    state = model.state_dict()  # the shared trunk once, and it loads back strictly
    assert any(k.startswith("direction.trunk.") for k in state)
    assert not any(k.startswith("detector.trunk.") for k in state)
    trunk_keys = len(model.trunk.state_dict())
    assert len(state) == len(model.direction.state_dict()) + len(model.detector.state_dict()) - trunk_keys
    other = JointTask(_joint_config()).build_model(init_trunk_weights=False)
    other.load_state_dict(state)
    assert torch.equal(other.detector.trunk.conv1.weight, model.trunk.conv1.weight)

    model.freeze_trunk(False)
    model.eval()
    x = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        direction_logits, (cls_logits, box_deltas) = model(x)
        assert direction_logits.shape == (2, 3)
        assert cls_logits.shape == (2, model.detector.num_anchors, 5) and box_deltas.shape[-1] == 4
        # one trunk pass gives what each network computes on its own
        assert torch.allclose(direction_logits, model.direction(x), atol=1e-5)
        assert torch.allclose(cls_logits, model.detector(x)[0], atol=1e-5)


def test_joint_loss_weights_the_direction_cross_entropy():
    torch.manual_seed(0)
    model = JointTask(_joint_config()).build_model(init_trunk_weights=False).eval()
    x = torch.randn(2, 3, *SIZE)
    targets = {"direction": torch.tensor([0, 2]),
               "detections": [{"boxes": torch.tensor([[5.0, 5.0, 30.0, 30.0]]), "labels": torch.tensor([1])},
                              {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}]}
    with torch.no_grad():
        outputs = model(x)
        ce = torch.nn.functional.cross_entropy(outputs[0], targets["direction"])
        det = model.detector.loss(*outputs[1], targets["detections"])["loss"]
        for weight in (0.0, 1.0, 2.5):
            loss = JointTask(_joint_config(), direction_loss_weight=weight).batch_loss(model, outputs, targets)
            assert float(loss) == pytest.approx(float(weight * ce + det), rel=1e-5)


def test_joint_resume_after_max_steps_matches_an_uninterrupted_run(scene_sessions, tmp_path, capsys):
    common = ("--epochs", "2", "--freeze-epochs", "1", "--deterministic", "--lr", "3e-3", "--eval-every-epochs", "2")
    whole = tmp_path / "whole"
    assert train_cli.main(_argv(scene_sessions, whole, *common)) == 0
    parted = tmp_path / "parted"
    assert train_cli.main(_argv(scene_sessions, parted, *common, "--max-steps", "4")) == 0  # epoch 2, step 1 of 3
    note = json.loads((parted / "state" / "last.json").read_text())
    assert (note["global_step"], note["epoch"], note["step_in_epoch"]) == (4, 1, 1)
    capsys.readouterr()
    assert train_cli.main(["joint", "--out", str(parted), "--resume", "--num-workers", "0"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["global_step"] == 6 and printed["best_checkpoints"]["detector"].endswith("best.detector.safetensors")
    for part in ("direction", "detector"):
        a = load_file(str(whole / f"last.{part}.safetensors"))
        b = load_file(str(parted / f"last.{part}.safetensors"))
        assert a.keys() == b.keys()
        worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())
        assert worst <= 1e-6, f"{part}: resumed weights differ from the uninterrupted run's by {worst}"


def test_joint_init_from_a_joint_pair_loads_both_parts(tmp_path):
    from perception.checkpoint import ModelCard, save_model
    from training.tasks.joint import resolve_init_pair

    torch.manual_seed(1)
    source = JointTask(_joint_config()).build_model(init_trunk_weights=False)
    for part in ("direction", "detector"):
        net = getattr(source, part)
        save_model(tmp_path / f"best.{part}.safetensors", net, ModelCard.for_model(net))
    pair = resolve_init_pair(str(tmp_path / "best.detector.safetensors"))
    assert pair == {"direction": tmp_path / "best.direction.safetensors",
                    "detector": tmp_path / "best.detector.safetensors"}
    torch.manual_seed(2)
    task = JointTask(_joint_config())
    target = task.build_model(init_trunk_weights=False)
    task.load_init(target, str(tmp_path / "best"))
    a, b = source.state_dict(), target.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(FileNotFoundError, match="RUN/best"):
        resolve_init_pair(str(tmp_path / "nothing"))


def test_joint_init_grows_the_detectors_anchor_levels_and_keeps_its_outputs(tmp_path):
    """A pair loaded into a joint model whose detector adds a stride-4 level (``with_added_levels``):
    every weight of the pair is loaded, and in eval mode the detector's outputs on the old levels'
    anchors are the pair's own, value for value; the stride-4 rows come first (the level order)."""
    from dataclasses import replace

    from perception.checkpoint import ModelCard, save_model
    from perception.detector import with_added_levels

    torch.manual_seed(1)
    config = _joint_config()
    source = JointTask(config).build_model(init_trunk_weights=False)
    for part in ("direction", "detector"):
        net = getattr(source, part)
        save_model(tmp_path / f"best.{part}.safetensors", net, ModelCard.for_model(net))
    old = config.detector.anchors
    grown = with_added_levels(config.detector, (4, *old.feature_strides), (0.02, *old.sizes))
    task = JointTask(replace(config, detector=grown))
    target = task.build_model(init_trunk_weights=False)
    task.load_init(target, str(tmp_path / "best"))
    source.eval(), target.eval()
    x = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        (d0, (c0, b0)), (d1, (c1, b1)) = source(x), target(x)
    added = c1.shape[1] - c0.shape[1]
    assert added > 0 and torch.allclose(d0, d1)
    assert torch.allclose(c0, c1[:, added:], atol=1e-5) and torch.allclose(b0, b1[:, added:], atol=1e-5)
    with pytest.raises(ValueError, match="drops the checkpoint's stride-8 level"):
        with_added_levels(config.detector, (4, *old.feature_strides[1:]), (0.02, *old.sizes[1:]))


def test_joint_config_refuses_networks_that_read_the_input_differently():
    trunk = TrunkConfig(weights="none")
    with pytest.raises(ValueError, match="input_size"):
        JointConfig(DirectionConfig(input_size=(64, 64), trunk=trunk), DetectorConfig(input_size=(64, 96), trunk=trunk))


def test_joint_benchmark_past_the_schedule_and_find_lr(scene_sessions, tmp_path, capsys):
    # 24 frames / batch 8 = 3 steps an epoch, 6 epochs = 18 one-cycle steps; 10 warm-up + 12 timed go past them
    called = time.perf_counter()
    assert train_cli.main(_argv(scene_sessions, tmp_path / "bench", "--benchmark-steps", "12")) == 0
    wall_s = time.perf_counter() - called
    bench = json.loads((tmp_path / "bench" / "benchmark.json").read_text())
    assert bench["task"] == "joint" and bench["steps"] == 12 and bench["batch_size"] == 8
    # the timed steps' images over their own seconds, a part of the whole call's wall time
    assert bench["img_per_s"] == pytest.approx(12 * 8 * bench["world_size"] / bench["seconds"])
    assert bench["seconds"] < wall_s, (bench["seconds"], wall_s)
    assert train_cli.main(_argv(scene_sessions, tmp_path / "lr", "--find-lr", "--find-lr-steps", "6")) == 0
    found = json.loads((tmp_path / "lr" / "lr_find.json").read_text())
    lrs, losses = found["lrs"], found["losses"]
    assert found["steps"] == len(lrs) == len(losses) >= 3 and (tmp_path / "lr" / "lr_find.png").exists()
    # the rule on the saved curve; with 6 points none is skipped, so it lies between the first rate
    # tried and the rate of minimum loss
    assert found["suggested_lr"] == suggest_lr(lrs, losses)
    assert found["min_loss_lr"] == lrs[int(np.argmin(losses))]
    assert lrs[0] <= found["suggested_lr"] <= found["min_loss_lr"], (found["suggested_lr"], lrs, losses)


def test_joint_under_two_gloo_processes_writes_the_pair(scene_sessions, tmp_path):
    """DDP: rank 0 alone evaluates (the detector's mAP must not wait on rank 1) and writes both files."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "training.cli", "joint",
           "--data", str(scene_sessions[0]), "--val-data", str(scene_sessions[2]), "--out", str(out),
           "--trunk-weights", "none", "--input-height", "64", "--input-width", "64", "--epochs", "1",
           "--freeze-epochs", "0", "--batch-size", "4", "--num-workers", "0", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)}
    done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == 24 // 2 // 4
    direction = load_file(str(out / "best.direction.safetensors"))
    detector = load_file(str(out / "best.detector.safetensors"))
    assert all(torch.equal(direction[k], detector[k]) for k in direction if k.startswith("trunk."))
