"""A small real `truckpilot train direction` run on simulator sessions learns: the training loss drops and
`truckpilot evaluate` on sessions of other simulator seeds (never trained on) beats chance clearly.

Everything goes through the real entry point (agent.apps.cli main: record, train, evaluate), in-process, on
2 torch threads. Recipe: 12 x 200 training frames and 4 x 200 held-out frames recorded at 96x72 (recording
is ~0.2 s a session), a 48x64 input, a ResNet34 trunk without pretrained weights, nothing frozen, one-cycle
AdamW lr 3e-3, the default augmentation and sampler balancing, 3 epochs of 60 batches of 16 (180 steps,
2880 images), validation only after the last epoch.

Measured with this exact recipe on nine seed sets (train sim seeds / held-out sim seeds / --seed), on a
shared 2-core machine (another engineer's job running beside it); train+eval is `train` plus `evaluate`
in seconds with the sessions already recorded, load is the 1-minute load average before / after:
  seed set                  loss first->last  accuracy  majority  balanced  min recall  train+eval  load
  101-112 / 151-154 / 0     1.20 -> 0.43      0.7575    0.406     0.740     0.498       56 s        2.3/2.3 <- tested
  201-212 / 251-254 / 1     1.29 -> 0.83      0.7275    0.464     0.728     0.720       60 s        2.0/1.9
  301-312 / 351-354 / 2     1.18 -> 0.54      0.8400    0.448     0.834     0.715       52 s        2.3/2.0
  401-412 / 451-454 / 3     1.22 -> 0.51      0.8013    0.405     0.801     0.769       51 s        2.0/2.0
  501-512 / 551-554 / 4     1.09 -> 0.54      0.7863    0.454     0.755     0.659       51 s        2.0/2.1
  601-612 / 651-654 / 5     1.20 -> 0.66      0.7438    0.419     0.735     0.693       59 s        2.1/2.0
  701-712 / 751-754 / 6     1.19 -> 0.58      0.6850    0.375     0.694     0.471       53 s        1.9/2.3
  801-812 / 851-854 / 7     1.14 -> 0.61      0.6500    0.430     0.665     0.344       52 s        2.0/2.0
  901-912 / 951-954 / 8     1.29 -> 0.84      0.6875    0.503     0.726     0.555       53 s        2.0/2.3
So on every set: last/first loss 0.36-0.65, accuracy - majority share 0.185-0.396, balanced accuracy
0.665-0.834, every class recall >= 0.344. The seed set tested is the first one measured, not a picked one.

Why this recipe: the previous one (4 x 200 training frames, 2 held-out sessions, 60 steps of 32) beat chance
on only 2 of 3 seed sets (41-44 / 45-46 / 2: accuracy 0.472, majority 0.46); with 12 training sessions
(more roads, times of day and weather) and the same 60 steps of 32 it beat the majority share by 0.16-0.30
on seven sets but one (701-712) had a right recall of 0.25; 120 steps of 16 (the same images) had a lowest
recall of 0.32 (801-812). 180 steps of 16 is the recipe above. Time, back to back under pytest on this
shared machine at load 1.5-1.9: the previous test 37.8 s, this one 57.2 s (1.5x; ~45 s where the previous
one took 29 s on idle cores, an estimate from that ratio).
"""
from __future__ import annotations

import json

import pytest
import torch

from agent.apps import cli

# the first seed set measured (module docstring), not the best one
TRAIN_SEEDS = tuple(range(101, 113))
HELD_OUT_SEEDS = tuple(range(151, 155))
SEED = 0
FRAMES = 200
DIRECTIONS = ("left", "straight", "right")


@pytest.fixture()
def _two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def _record(out, seed):
    assert cli.main(["record", "--out", str(out), "--autopilot", "--headless", "--frames", str(FRAMES),
                     "--seed", str(seed), "--perturb", "0.4", "--sim-size", "96x72", "--no-progress"]) == 0
    return str(out)


@pytest.mark.slow  # 52-66 s of the 15-minute suite (917 s in the last fresh-clone run): `./run.sh test -m slow`
def test_train_direction_on_sim_sessions_drops_its_loss_and_beats_chance_on_held_out_seeds(tmp_path, capsys,
                                                                                            _two_threads):
    train = [_record(tmp_path / f"s{seed}", seed) for seed in TRAIN_SEEDS]
    held_out = [_record(tmp_path / f"s{seed}", seed) for seed in HELD_OUT_SEEDS]
    assert not set(TRAIN_SEEDS) & set(HELD_OUT_SEEDS)
    run = tmp_path / "run"
    assert cli.main(["train", "direction", "--data", *train, "--val-data", *held_out, "--out", str(run),
                     "--trunk-weights", "none", "--input-height", "48", "--input-width", "64",
                     "--epochs", "3", "--epoch-frames", "960", "--batch-size", "16", "--freeze-epochs", "0",
                     "--lr", "3e-3", "--trunk-lr-div", "1", "--eval-every-epochs", "3",
                     "--num-workers", "0", "--seed", str(SEED)]) == 0
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3] and history[-1]["global_step"] == 3 * 960 // 16
    losses = [h["train_loss"] for h in history]
    # measured last/first epoch mean train loss: 0.36 here, 0.36-0.65 over nine seed sets (module docstring)
    assert losses[-1] < 0.8 * losses[0], losses

    capsys.readouterr()
    report_dir = tmp_path / "eval"
    assert cli.main(["evaluate", str(run / "last.safetensors"), "--data", *held_out, "--out", str(report_dir)]) == 0
    metrics = json.loads((report_dir / "metrics.json").read_text())["metrics"]
    assert metrics["frames"] == FRAMES * len(HELD_OUT_SEEDS)
    # evaluate reproduces the run's own validation of its last epoch on the same held-out sessions
    assert metrics["accuracy"] == pytest.approx(history[-1]["val_metric"], abs=1e-9)
    support = {d: metrics["per_class"][d]["support"] for d in DIRECTIONS}
    assert min(support.values()) > 0, support
    majority = max(support.values()) / sum(support.values())
    # chance: 1/3 for a guess, the majority share for a constant answer (which also has balanced accuracy 1/3
    # and a recall of 0 on two classes). Thresholds from the module docstring's table, with margin: over nine
    # seed sets accuracy - majority share >= 0.185 (0.351 here), balanced accuracy >= 0.665 (0.740 here),
    # every class recall >= 0.344 (0.498 here).
    assert metrics["accuracy"] >= majority + 0.1, (metrics["accuracy"], support)
    assert metrics["balanced_accuracy"] >= 0.5, metrics["per_class"]
    assert all(metrics["per_class"][d]["recall"] > 0.2 for d in DIRECTIONS), metrics["per_class"]

    # the continuous steer head (issue 28), trained beside the classifier on the expert's intended steer that
    # every simulator frame stores: on the held-out seeds its mean absolute error is below a constant 0's (the
    # mean |label|). Measured with this recipe (after the head was added; one seed set, the tested one): head
    # 0.222, constant 0 0.316, the classifier's p(right) - p(left) 0.396; accuracy 0.728 (0.758 before the head).
    # Shorter runs (60-90 steps, 6 sessions) did not beat the constant reliably (0.17-0.52 vs 0.17-0.26).
    assert metrics["steer_frames"] == metrics["frames"], "a simulator frame without its steer label"
    assert metrics["steer_mae"] < 0.9 * metrics["steer_mae_zero"], (
        metrics["steer_mae"], metrics["steer_mae_zero"], metrics["steer_mae_expected"])
