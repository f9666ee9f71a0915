"""``truckpilot demo``: the training budget is planned from a timed probe, and a small demo runs end to end."""
from __future__ import annotations

import json
import time

import pytest

from agent.apps.demo import DemoConfig, measure_train_rate, plan_epoch_frames, run_demo


def test_the_budget_sizes_the_epoch_within_its_bounds():
    config = DemoConfig(train_budget_s=300, batch_size=32, epochs=1, max_passes=10)
    # 30 img/s for 300 s: 9,000 frames, a whole number of batches
    assert plan_epoch_frames(config, recorded_frames=8000, images_per_s=30.0) == 8992
    # two epochs share the budget
    assert plan_epoch_frames(DemoConfig(train_budget_s=300, batch_size=32, epochs=2), 8000, 30.0) == 4480
    # a fast machine (a GPU) stops at max_passes over the recording
    assert plan_epoch_frames(config, recorded_frames=8000, images_per_s=5000.0) == 80000
    # a very slow machine still gets 20 batches
    assert plan_epoch_frames(config, recorded_frames=8000, images_per_s=0.1) == 20 * 32
    # no budget: one pass over what was recorded (the training default, 0)
    assert plan_epoch_frames(DemoConfig(train_budget_s=0), 8000, 30.0) == 0


def test_the_probe_is_batch_size_over_the_median_timed_step():
    """Real training steps of the joint network at 64x64; the clock is a script, so the arithmetic
    (median of the timed steps, warm-up steps untimed) is checked exactly, with no speed assumed."""
    readings = [100.0, 100.1, 200.0, 200.3, 300.0, 300.2]  # before/after three timed steps: 0.1, 0.3, 0.2 s
    config = DemoConfig(input_height=64, input_width=64, batch_size=4, device="cpu")
    assert measure_train_rate(config, steps=3, clock=lambda: readings.pop(0)) == pytest.approx(4 / 0.2)
    assert readings == []  # read before and after each timed step, never for the two warm-up steps
    # the real clock (the default): the one timed step lies within the call, so the rate is at least
    # the batch over the call's wall time (a clock read in milliseconds would break it)
    called = time.perf_counter()
    rate = measure_train_rate(config, steps=1)
    assert rate >= 4 / (time.perf_counter() - called), rate


def _tiny_packed_pair(tmp_path, size=(64, 64)):
    """A joint network's two checkpoints (one trunk), packed as the published starting pair is."""
    import torch

    from perception.checkpoint import ModelCard, save_model
    from perception.config import DetectorConfig, DirectionConfig, TrunkConfig
    from perception.starting_pair import pack_pair
    from training.tasks.joint import JointConfig, JointTask

    torch.manual_seed(3)
    trunk = TrunkConfig(weights="none")
    model = JointTask(JointConfig(DirectionConfig(input_size=size, trunk=trunk),
                                  DetectorConfig(input_size=size, trunk=trunk))).build_model(init_trunk_weights=False)
    paths = {}
    for part in ("direction", "detector"):
        net = getattr(model, part)
        paths[part] = save_model(tmp_path / "pair" / f"best.{part}.safetensors", net, ModelCard.for_model(net))
    return pack_pair(paths["direction"], paths["detector"], tmp_path / "start.safetensors", {"recipe": "tiny"})


def test_a_small_demo_fine_tunes_from_a_starting_pair_records_trains_drives_reports_and_publishes(tmp_path,
                                                                                                     monkeypatch):
    from agent.apps.pretrain import publish
    from perception.checkpoint import read_card
    from perception.starting_pair import read_pair_meta, unpack_pair

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # where the pair is unpacked
    packed = _tiny_packed_pair(tmp_path)
    config = DemoConfig(out=str(tmp_path / "demo"), train_seeds=(1, 2), val_seeds=(101,), frames_per_session=40,
                        val_frames_per_session=16, input_height=96, input_width=128, start=str(packed),
                        batch_size=8, train_budget_s=0.2, eval_seeds=(201,), route_m=60.0, gif_steps=6,
                        device="cpu")
    report = run_demo(config)
    out = tmp_path / "demo"
    text = report.read_text()
    assert report == out / "report.md" and "Closed-loop scorecard" in text and "![drive](drive.gif)" in text
    card = json.loads((out / "scorecard.json").read_text())
    for driver in ("agent", "expert", "baseline"):  # each row is the mean of its own routes' distance / length
        routes = [r for r in card["routes"] if r["driver"] == driver]
        assert len(routes) == len(config.eval_seeds) and card[driver]["route_completion"] == pytest.approx(
            sum(min(1.0, r["distance_m"] / r["route_m"]) for r in routes) / len(routes), abs=1e-4)
    assert card["expert"]["route_completion"] == 1.0
    from PIL import Image

    with Image.open(out / "drive.gif") as gif:  # the HUD frames of the GIF drive, drawn at least 480 px wide
        assert gif.format == "GIF" and gif.size[0] >= 480 and gif.n_frames >= 2, (gif.format, gif.size)
    assert card["gif_drive"]["steps"] >= 2
    # the run was sized by the budget: 0.2 s at any CPU speed is fewer than 20 batches, so the floor holds
    run = json.loads((out / "runs" / "joint" / "config.json").read_text())
    assert run["data"]["epoch_frames"] == 20 * 8
    assert run["optim"]["direction_loss_weight"] == config.direction_loss_weight
    # it started from the unpacked pair, at the pair's 64x64 (not the 96x128 asked for), at start_lr
    assert run["model"]["init"] == str(unpack_pair(packed)["direction"].with_name("best"))
    assert (run["model"]["input_height"], run["model"]["input_width"]) == (0, 0)
    assert run["optim"]["lr"] == config.start_lr
    assert read_card(out / "runs" / "joint" / "best.detector.safetensors").input_size == (64, 64)
    metrics = json.loads((out / "runs" / "joint" / "metrics.json").read_text())
    assert metrics["history"], metrics
    assert {"train_history.png", "train_confusion_matrix.png", "train_pr_curves.png"} <= \
        {p.name for p in out.glob("*.png")}
    with pytest.raises(FileNotFoundError, match="--start"):
        run_demo(DemoConfig(out=str(tmp_path / "none"), start=str(tmp_path / "missing.safetensors")))

    # publish (truckpilot pretrain --publish) packs a run's best pair with its recipe and validation
    work = tmp_path / "work"
    work.mkdir()
    (work / "recipe.json").write_text(json.dumps(config.to_dict()))
    (work / "summary.json").write_text(json.dumps({**metrics, "train_wall_s": 1.0}))  # what `make` writes
    path = publish(work, tmp_path / "weights")
    assert path == tmp_path / "weights" / "start.safetensors"
    notes = read_pair_meta(path)["notes"]
    assert notes["recipe"]["train_seeds"] == [1, 2] and "truckpilot pretrain" in notes["command"]
    assert notes["val"]["map_50"] == metrics["val"]["detector"]["map_50"]
    model_card = (tmp_path / "weights" / "MODEL_CARD.md").read_text()
    assert "seeds 1-2" in model_card and "for 64x64 px input" in model_card  # the size the pair reads
    # a recipe run continuing that one's pair (--init WORK/run/best, a stride-4 level added): the card gives both
    more = tmp_path / "more"
    more.mkdir()
    (more / "recipe.json").write_text(json.dumps({**config.to_dict(), "train_seeds": [7], "init": str(work / "run" / "best"),
                                                  "anchor_strides": [4, 8], "command": "truckpilot pretrain --out MORE"}))
    (more / "summary.json").write_text(json.dumps({**metrics, "train_wall_s": 2.0}))
    publish(more, tmp_path / "weights")
    model_card = (tmp_path / "weights" / "MODEL_CARD.md").read_text()
    assert "### Run 1" in model_card and "### Run 2" in model_card and "3 s of training wall time in all" in model_card
    assert model_card.index("seeds 1-2") < model_card.index("`truckpilot pretrain --out MORE`: from the previous run's "
                                                             "pair, its detector grown to anchor strides 4, 8")
    # a run continuing the packed pair itself (--init weights/start.safetensors: unpacked into the cache, its
    # notes beside it): the card goes back through the packed pair's own lineage
    from perception.starting_pair import unpack_pair

    unpacked = unpack_pair(tmp_path / "weights" / "start.safetensors", tmp_path / "cache")
    third = tmp_path / "third"
    third.mkdir()
    (third / "recipe.json").write_text(json.dumps({**config.to_dict(), "train_seeds": [9], "queue_share": 0.5,
                                                   "init": str(unpacked["direction"].parent / "best"),
                                                   "command": "truckpilot pretrain --out THIRD"}))
    (third / "summary.json").write_text(json.dumps({**metrics, "train_wall_s": 4.0}))
    publish(third, tmp_path / "weights3")
    model_card = (tmp_path / "weights3" / "MODEL_CARD.md").read_text()
    assert "### Run 3" in model_card and "7 s of training wall time in all" in model_card
    assert model_card.index("seeds 1-2") < model_card.index("--out MORE") < model_card.index("--out THIRD")
    assert "50% of the sessions" in model_card  # the queue sessions


def test_queue_sessions_are_spread_over_the_seeds_and_conditions(tmp_path):
    """--queue-share: round(n x share) of any first n training sessions stand behind broken-down
    vehicles (twice as long, QUEUE_STOPPED_PER_KM of them); each kind of session cycles all conditions."""
    from agent.apps.demo import CONDITIONS, QUEUE_STOPPED_PER_KM, queues, record_sessions
    from training.sessions import Session

    for share in (0.0, 0.25, 0.5, 1.0):
        flags = [queues(i, share) for i in range(24)]
        assert all(sum(flags[:n]) == int(n * share + 0.5) for n in range(1, 25)), (share, flags)
    config = DemoConfig(out=str(tmp_path), train_seeds=tuple(range(1, 5)), val_seeds=(101,), frames_per_session=3,
                        val_frames_per_session=2, queue_share=0.5, perturb=0.0)
    train, val = record_sessions(config, tmp_path / "sessions")
    sources = [Session.open(path).manifest.source for path in train]
    assert [s["pass_stopped"] for s in sources] == [False, True, False, True]
    assert [len(list(Session.open(path).records())) for path in train] == [6, 3, 6, 3]
    assert [s["stopped_per_km"] for s in sources] == [QUEUE_STOPPED_PER_KM, 1.0, QUEUE_STOPPED_PER_KM, 1.0]
    assert [(s["time_of_day"], s["weather"]) for s in sources] == [CONDITIONS[0], CONDITIONS[0], CONDITIONS[1],
                                                                    CONDITIONS[1]]
    assert [path.endswith("-queue") for path in train] == [True, False, True, False] and len(val) == 1


def test_pretrain_init_takes_a_packed_pair_and_names_a_missing_one(tmp_path, capsys):
    """``truckpilot pretrain --init PAIR.safetensors`` unpacks the packed pair to continue it; a file that is
    not there is refused before any recording, naming it."""
    from agent.apps.pretrain import main

    missing = tmp_path / "nope.safetensors"
    assert main(["--out", str(tmp_path / "out"), "--init", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"--init {missing}" in err and "not found" in err
    assert not (tmp_path / "out").exists()  # nothing recorded
