"""``truckpilot dagger``: a tiny run end to end (the demo's recipe at 64x64, one round), and its seed checks."""
from __future__ import annotations

import json

import numpy as np
import pytest

from agent.apps.dagger import ROW_FIELDS, DaggerConfig, run_dagger


def _records(path):
    from training.sessions import Session

    session = Session.open(path)
    return session.records(include_deleted=True), session


def _left_leaning_pair(stem):
    """A fresh joint pair at 64x64 (random trunk) whose direction head says "left" whatever it sees: an
    agent that leaves its lane within seconds, so the expert must take over in a few hundred frames.
    Its detector sees nothing (background everywhere): a random one's boxes stand within a few metres
    of the truck, and the controller's range rule would hold it at the start."""
    import torch

    from training.tasks import default_model_config, make_task

    task = make_task("joint", default_model_config("joint", "none", (64, 64)))
    model = task.build_model(init_trunk_weights=False)
    classes = list(model.direction.config.classes)
    with torch.no_grad():
        model.direction.head[-1].weight.mul_(0.01)
        model.direction.head[-1].bias.copy_(torch.tensor([4.0 if c == "left" else 0.0 for c in classes]))
        for head in model.detector.heads:
            head.cls.bias.view(-1, head.num_outputs)[:, 0] = 50.0
    task.save_checkpoints(stem, model, {"made_by": "tests/agent/test_agent_dagger.py"})
    return stem


def test_a_tiny_round_labels_the_agents_frames_marks_takeovers_and_fine_tunes_from_round0(tmp_path):
    from perception.types import DIRECTIONS
    from safetensors.numpy import load_file
    from training.sessions.interventions import interventions

    start = _left_leaning_pair(tmp_path / "start" / "best")
    out = tmp_path / "dagger"
    config = DaggerConfig(
        out=str(out), model=str(start), rounds=1, seeds_per_round=2, frames_per_round=240, route_m=600.0,
        conditions="day/clear,night/rain", traffic=0.0, stopped_per_km=2.0, train_seconds=0.0, min_batches=2,
        batch_size=8, eval_seeds="301", eval_conditions="day/clear", eval_route_m=60.0, val_seeds=(101,),
        val_frames=16, engine="torch", threads=1, device="cpu", progress=False)
    report = run_dagger(config)

    # the report: one row per round (0 = the start, before any DAgger data), every field, on disk too
    on_disk = json.loads((out / "dagger.json").read_text())
    assert on_disk["rounds"] == json.loads(json.dumps(report["rounds"], default=str))
    rows = report["rounds"]
    assert [r["round"] for r in rows] == [0, 1]
    for row in rows:
        assert set(ROW_FIELDS) <= set(row), set(ROW_FIELDS) - set(row)
        assert row["km_per_intervention"] > 0 and row["interventions"] >= 0 and row["collisions"] >= 0
        assert row["mean_abs_offset_m"] is not None and row["mean_abs_offset_m"] >= 0
    assert rows[0]["frames_added"] == 0 and rows[0]["train_s"] == 0 and rows[0]["init"] is None
    assert rows[1]["train_s"] > 0 and rows[1]["epoch_frames"] == 2 * 8
    assert rows[0]["interventions"] >= 1  # the left-leaning start needs the expert on the card too
    table = (out / "dagger.md").read_text()
    assert "| round |" in table and "\n| 0 |" in table and "\n| 1 |" in table
    assert (out / "dagger.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the round's sessions: the agent's keys, the expert's label on every frame, takeovers marked
    sessions = [d["session"] for d in rows[1]["drives"]]
    assert len(sessions) == 2
    frames = takeover = agent = disagree = marks = 0
    for path in sessions:
        records, session = _records(path)
        assert session.manifest.source["driver"] == "dagger"
        frames += len(records)
        for r in records:
            assert r.direction in DIRECTIONS and r.direction_source == "sim"  # the expert's label, every frame
            assert r.extra["dagger"] is True and r.extra["driver"] in ("agent", "expert")
            if r.extra["driver"] == "agent":
                agent += 1
                assert not r.extra.get("takeover") and r.extra["model_direction"] in DIRECTIONS
                disagree += r.extra["model_direction"] != r.direction
            else:
                takeover += 1
                assert r.extra["takeover"] is True and "model_direction" not in r.extra
        found = interventions(records)
        marks += len(found)
        by_index = {r.index: r for r in records}
        for mark in found:  # the drift before each takeover is marked too: the frame before it, at least
            if mark.start_index > 0:
                assert by_index[mark.start_index - 1].extra.get("pre_takeover") is True, mark
        assert sum(bool(r.extra.get("pre_takeover")) for r in records) <= 15 * len(found)
    assert frames == rows[1]["frames_added"] > 0
    assert takeover == rows[1]["takeover_frames"] > 0, "the tiny agent never needed the expert"
    assert marks == rows[1]["data_interventions"] >= 1
    assert agent > 0 and disagree > 0  # the labels are the expert's, not a copy of what the model said

    # lineage: round 1 was fine-tuned from round 0's pair, on the start's data plus the round's sessions
    assert rows[1]["init"] == rows[0]["checkpoint"]
    run = json.loads((out / "round1" / "train" / "config.json").read_text())
    assert run["model"]["init"] == rows[0]["checkpoint"]
    assert run["data"]["sessions"] == sessions  # no starting data given: the round's sessions alone
    assert run["data"]["val_sessions"] == report["val_data"] and len(report["val_data"]) == 1  # recorded by the expert
    assert run["data"]["takeover_weight"] == config.takeover_weight
    for part in ("direction", "detector"):
        before = load_file(f"{rows[0]['checkpoint']}.{part}.safetensors")
        after = load_file(f"{rows[1]['checkpoint']}.{part}.safetensors")
        assert before.keys() == after.keys()
        assert any(not np.array_equal(before[k], after[k]) for k in before), f"{part}: fine-tuning changed nothing"
        assert rows[0]["sha256"][part] != rows[1]["sha256"][part]

    # --resume: round 2 from round 1's pair, the run's own settings (2 seeds a round, not the default 4),
    # the budget from the command line; the data: round 1's sessions and round 2's
    resumed = run_dagger(DaggerConfig(out=str(out), rounds=2, train_seconds=0.0, threads=1, progress=False,
                                      resume=True))
    rows2 = resumed["rounds"]
    assert [r["round"] for r in rows2] == [0, 1, 2]
    assert rows2[:2] == json.loads(json.dumps(rows, default=str))  # the earlier rows kept as they were
    assert rows2[2]["init"] == rows[1]["checkpoint"] and len(rows2[2]["drives"]) == 2
    run2 = json.loads((out / "round2" / "train" / "config.json").read_text())
    assert run2["data"]["sessions"] == sessions + [d["session"] for d in rows2[2]["drives"]]
    assert run2["data"]["val_sessions"] == report["val_data"]
    assert resumed["resumed"] == [{"after_round": 1, "rounds": 2, "train_seconds": 0.0, "threads": 1,
                                   "progress": False}]
    assert resumed["config"]["seeds_per_round"] == 2 and resumed["wall_s"] > report["wall_s"]
    with pytest.raises(ValueError, match="has 2 rounds already"):
        run_dagger(DaggerConfig(out=str(out), rounds=2, resume=True))
    (out / "round3").mkdir()  # a round left unfinished: refused, and nothing removed
    with pytest.raises(ValueError, match="round 3 was left unfinished") as refused:
        run_dagger(DaggerConfig(out=str(out), rounds=3, resume=True))
    assert str(out / "round3") in str(refused.value) and (out / "round3").is_dir()
    with pytest.raises(FileNotFoundError, match="dagger.json not found"):
        run_dagger(DaggerConfig(out=str(tmp_path / "nothing"), rounds=3, resume=True))


def test_seeds_shared_with_the_card_are_refused_before_any_work(tmp_path):
    config = DaggerConfig(out=str(tmp_path / "d"), rounds=2, seeds_per_round=2, first_seed=300, eval_seeds="301-305")
    with pytest.raises(ValueError, match="must not overlap"):
        run_dagger(config)
    assert not (tmp_path / "d").exists()
    with pytest.raises(ValueError, match="--detector needs --model"):
        DaggerConfig(detector="det.safetensors")


def test_the_card_puts_stopped_vehicles_on_its_routes():
    """``truckpilot eval --stopped-per-km`` (the harder card): the option reaches every route's world."""
    from agent.apps.scorecard import ScorecardConfig, drive_route, get_args_parser
    from agent.runtime.drivers import ExpertDecider

    envs = []

    def expert(env):
        envs.append(env.unwrapped)  # its world is made at the reset, after the driver
        return ExpertDecider(env, seed=3)

    config = ScorecardConfig(route_m=400.0, traffic_density=2.0, stopped_per_km=3.0)
    score = drive_route(expert, 3, "day", "clear", 2000, config, name="expert")
    assert score.finished and score.collisions == 0
    (env,) = envs
    world = env.world
    assert world.stopped_per_km == 3.0 and world.traffic_density == 2.0
    assert any(v.stopped and v.s < world.truck.s for v in world.vehicles)  # one stood on it, and was passed
    args = get_args_parser().parse_args(["--stopped-per-km", "1.5", "--traffic", "2", "--route-m", "2000"])
    assert (args.stopped_per_km, args.traffic, args.route_m) == (1.5, 2.0, 2000.0)


def test_the_round_is_sized_in_whole_batches_never_four():
    from agent.apps.dagger import _epoch_frames

    config = DaggerConfig(train_seconds=60.0, batch_size=8, min_batches=2)
    assert _epoch_frames(config, 10.0) == 75 * 8  # 60 s x 10 img/s = 600 images = 75 batches
    assert _epoch_frames(config, 0.1) == 2 * 8  # at least min_batches
    # 4 steps would make the one-cycle warm-up one step, where torch's OneCycleLR divides by zero
    assert _epoch_frames(DaggerConfig(train_seconds=0.0, batch_size=8, min_batches=4), 0.0) == 5 * 8


def test_every_dagger_option_reaches_its_config_field_and_a_bad_budget_is_refused_by_name(capsys):
    from agent.apps.dagger import DaggerConfig, config_from_args, get_args_parser, main

    args = get_args_parser().parse_args([
        "--out", "o", "--model", "m", "--detector", "d", "--data", "a", "b", "--val-data", "v", "--rounds", "2",
        "--seeds-per-round", "3", "--frames-per-round", "90", "--route-m", "500", "--first-seed", "7",
        "--train-seconds", "60", "--lr", "0.001", "--batch-size", "8", "--takeover-weight", "2", "--stall-s", "4",
        "--eval-seeds", "1-2", "--eval-route-m", "300", "--traffic", "1.5", "--stopped-per-km", "0.5",
        "--threads", "1", "--seed", "3", "--no-progress", "--resume"])
    config = config_from_args(args)
    assert config == DaggerConfig(out="o", model="m", detector="d", data=("a", "b"), val_data=("v",), rounds=2,
                                  seeds_per_round=3, frames_per_round=90, route_m=500.0, first_seed=7,
                                  train_seconds=60.0, lr=0.001, batch_size=8, takeover_weight=2.0, stall_s=4.0,
                                  eval_seeds="1-2", eval_route_m=300.0, traffic=1.5, stopped_per_km=0.5,
                                  threads=1, seed=3, progress=False, resume=True)
    assert config_from_args(get_args_parser().parse_args([])) == DaggerConfig()
    assert main(["--seeds-per-round", "4", "--frames-per-round", "2"]) == 1
    assert "--frames-per-round 2" in capsys.readouterr().err
