"""The real entry points (`truckpilot train/evaluate/export`) on small recorded sessions, in-process."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from training import cli as train_cli
from training import evaluate_cli, export

TINY = ["--trunk-weights", "none", "--batch-size", "4", "--num-workers", "0"]
SIZE = {"direction": ["--input-height", "32", "--input-width", "32"],
        "detector": ["--input-height", "64", "--input-width", "64"]}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _train(task, sessions, out, *extra):
    argv = [task, "--data", str(sessions[0]), "--val-data", str(sessions[2]), "--out", str(out), *TINY, *SIZE[task],
            *extra]
    return train_cli.main(argv)


def test_train_direction_writes_the_run_directory_and_evaluate_reproduces_it(scene_sessions, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train("direction", scene_sessions, run, "--epochs", "2", "--freeze-epochs", "1") == 0
    for name in ("config.json", "metrics.json", "best.safetensors", "last.safetensors", "confusion_matrix.png",
                 "top_losses.png", "history.png", "state/last.pt"):
        assert (run / name).exists(), name
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "direction" and config["optim"]["epochs"] == 2 and config["data"]["balance"] == "sampler"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 2 * (24 // 4) and len(metrics["history"]) == 2
    val = metrics["val"]
    assert set(val["per_class"]) == {"left", "straight", "right"}
    assert sum(map(sum, val["confusion_matrix"])) == val["frames"] == 24
    # accuracy is the confusion matrix's diagonal over the frames (rows true, columns predicted)
    assert val["accuracy"] == pytest.approx(sum(val["confusion_matrix"][i][i] for i in range(3)) / 24)
    assert [row[i] for i, row in enumerate(val["confusion_matrix"])] == \
        [round(val["per_class"][d]["recall"] * val["per_class"][d]["support"]) for d in ("left", "straight", "right")]
    from perception.checkpoint import load_model

    model, card = load_model(run / "best.safetensors")
    assert card.kind == "direction" and tuple(card.input_size) == (32, 32)
    assert card.provenance["val_sessions"] and card.provenance["train_config"]["task"] == "direction"

    capsys.readouterr()
    out = tmp_path / "eval"
    assert evaluate_cli.main([str(run / "best.safetensors"), "--data", str(scene_sessions[2]), "--out", str(out)]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert abs(report["metrics"]["accuracy"] - val["accuracy"]) < 1e-9
    assert (out / "confusion_matrix.png").stat().st_size > 1000 and (out / "top_losses.png").exists()


def test_train_detector_reports_map_per_class(scene_sessions, tmp_path):
    run = tmp_path / "det"
    assert _train("detector", scene_sessions, run, "--epochs", "1", "--freeze-epochs", "0") == 0
    metrics = json.loads((run / "metrics.json").read_text())
    val = metrics["val"]
    assert set(val["per_class"]) == {"car", "truck", "person", "sign"}
    # ground truth counted per class from the validation session itself; -1 exactly for classes it lacks
    from training.data.samples import samples_from_session

    boxes_per_class = {name: sum(s.labels.count(name) for s in samples_from_session(scene_sessions[2]))
                       for name in ("car", "truck", "person", "sign")}
    assert {name: e["ground_truth"] for name, e in val["per_class"].items()} == boxes_per_class
    for name, entry in val["per_class"].items():
        assert (entry["ap_50"] == -1.0) == (boxes_per_class[name] == 0) and "ap" in entry, (name, entry)
    present = [e["ap_50"] for e in val["per_class"].values() if e["ground_truth"] > 0]
    assert val["min_class_ap_50"] == pytest.approx(min(present))
    assert val["map"] <= val["map_50"] + 1e-9  # AP over IoU 0.5:0.95 never exceeds AP at 0.5
    assert (run / "pr_curves.png").exists() and (run / "errors_gallery.png").exists()
    assert set(val["by_height"]) == {"small", "medium", "large", "medium+large"}
    # 64-px input: "medium" is boxes 64/30 to 64/15 px tall
    assert val["by_height"]["medium"]["height_px"] == pytest.approx([64 / 30, 64 / 15])
    # evaluate reproduces the validation report; --tta flip runs the mirrored pass too and says so
    best = str(run / "best.safetensors")
    assert evaluate_cli.main([best, "--data", str(scene_sessions[2]), "--out", str(tmp_path / "plain")]) == 0
    plain = json.loads((tmp_path / "plain" / "metrics.json").read_text())["metrics"]
    assert plain["map_50"] == pytest.approx(val["map_50"], abs=1e-9) and plain["test_time_augmentation"] == "none"
    assert evaluate_cli.main([best, "--data", str(scene_sessions[2]), "--out", str(tmp_path / "tta"),
                              "--tta", "flip"]) == 0
    tta = json.loads((tmp_path / "tta" / "metrics.json").read_text())["metrics"]
    assert tta["test_time_augmentation"] == "flip" and tta["map"] <= tta["map_50"] + 1e-9
    assert {n: e["ground_truth"] for n, e in tta["per_class"].items()} == boxes_per_class
    assert tta["images"] == plain["images"] and (tmp_path / "tta" / "pr_curves.png").exists()
    # the un-augmented pass of the same run is reported beside the fused one, and matches a plain evaluate
    assert tta["without_tta"]["map_50"] == pytest.approx(plain["map_50"], abs=1e-9)
    assert tta["without_tta"]["per_class"]["car"]["ap_50"] == pytest.approx(plain["per_class"]["car"]["ap_50"])
    assert "without_tta" not in plain


def test_flip_tta_is_refused_for_a_direction_checkpoint(scene_sessions, tmp_path, capsys):
    run = tmp_path / "dir"
    assert _train("direction", scene_sessions, run, "--epochs", "1", "--freeze-epochs", "0", "--max-steps", "1") == 0
    capsys.readouterr()
    assert evaluate_cli.main([str(run / "last.safetensors"), "--data", str(scene_sessions[2]), "--tta", "flip"]) == 1
    err = capsys.readouterr().err
    assert "direction checkpoint" in err and "drop --tta" in err


def test_anchor_and_matching_options_shape_a_fresh_detector(scene_sessions, tmp_path, capsys):
    from perception.checkpoint import read_card

    run = tmp_path / "det8"
    assert _train("detector", scene_sessions, run, "--epochs", "1", "--freeze-epochs", "0", "--max-steps", "2",
                  "--anchor-strides", "8", "16", "32", "--anchor-sizes", "0.1", "0.25", "0.5",
                  "--anchor-ratios", "1", "0.33", "--match-iou", "0.4") == 0
    model_config = read_card(run / "last.safetensors").model_config()
    anchors = model_config.anchors
    assert model_config.match_iou == 0.4  # not the default (0.3): the option reached the card
    assert anchors.feature_strides == (8, 16, 32) and anchors.sizes == (0.1, 0.25, 0.5)
    assert anchors.aspect_ratios == (1.0, 0.33) and anchors.scales == (0.7, 1.0, 1.4)
    # that run's trunk starts a detector with a stride-4 level (new anchors, so not --init)
    fine = tmp_path / "det4"
    assert _train("detector", scene_sessions, fine, "--epochs", "1", "--freeze-epochs", "0", "--max-steps", "1",
                  "--lr", "1e-9", "--trunk-weights", str(run / "last.safetensors"),
                  "--anchor-strides", "4", "8", "16", "32", "--anchor-sizes", "0.05", "0.1", "0.25", "0.5") == 0
    fine_card = read_card(fine / "last.safetensors")
    assert fine_card.model_config().anchors.feature_strides == (4, 8, 16, 32)
    from perception.checkpoint import load_model

    first, second = load_model(run / "last.safetensors")[0], load_model(fine / "last.safetensors")[0]
    assert second.fine is not None
    assert torch.allclose(first.trunk.layer3[0].conv1.weight, second.trunk.layer3[0].conv1.weight, atol=1e-6)
    for bad, message in ((["--anchor-strides", "8", "16"], "together"),
                         (["--anchor-strides", "8", "12", "--anchor-sizes", "0.1", "0.2"], "powers of two"),
                         (["--anchor-ratios", "x"], "invalid float")):
        with pytest.raises(SystemExit):
            _train("detector", scene_sessions, tmp_path / "bad", *bad)
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _train("direction", scene_sessions, tmp_path / "bad", "--anchor-ratios", "1", "0.5")
    assert "detector options" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _train("detector", scene_sessions, tmp_path / "bad", "--init", str(run / "last.safetensors"),
               "--anchor-ratios", "1", "0.5")
    assert "checkpoint's ratios" in capsys.readouterr().err


def test_init_with_added_anchor_levels_keeps_every_trained_head(scene_sessions, tmp_path, capsys):
    """--init plus --anchor-strides/--anchor-sizes that keep the checkpoint's levels and add a stride-4
    one: the old heads move to their new index with their weights (--lr 1e-9: a step cannot change
    them), the stride-4 level starts fresh; dropping a level or changing a size is refused by name."""
    from perception.checkpoint import load_model

    run, grown = tmp_path / "det", tmp_path / "det4"
    assert _train("detector", scene_sessions, run, "--epochs", "1", "--freeze-epochs", "0", "--max-steps", "2",
                  "--anchor-strides", "8", "16", "32", "--anchor-sizes", "0.1", "0.25", "0.5") == 0
    assert _train("detector", scene_sessions, grown, "--epochs", "1", "--freeze-epochs", "0", "--max-steps", "1",
                  "--lr", "1e-9", "--init", str(run / "last.safetensors"),
                  "--anchor-strides", "4", "8", "16", "32", "--anchor-sizes", "0.05", "0.1", "0.25", "0.5") == 0
    first, second = load_model(run / "last.safetensors")[0], load_model(grown / "last.safetensors")[0]
    assert second.config.anchors.feature_strides == (4, 8, 16, 32) and second.fine is not None
    for old_index in range(3):
        for name in ("cls", "box"):
            a, b = getattr(first.heads[old_index], name).weight, getattr(second.heads[old_index + 1], name).weight
            assert torch.allclose(a, b, atol=1e-6), (old_index, name)
    for bad, message in ((["--anchor-strides", "4", "8", "16", "--anchor-sizes", "0.05", "0.1", "0.25"],
                          "drops the checkpoint's stride-32 level"),
                         (["--anchor-strides", "4", "8", "16", "32", "--anchor-sizes", "0.05", "0.1", "0.3", "0.5"],
                          "gives the stride-16 level size 0.3")):
        assert _train("detector", scene_sessions, tmp_path / "bad", "--epochs", "1", "--max-steps", "1",
                      "--init", str(run / "last.safetensors"), *bad) == 1
        assert message in capsys.readouterr().err


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_state(scene_sessions, tmp_path, capsys):
    run = tmp_path / "nan"
    # 6 steps an epoch: epoch 1 ends at step 6 (best + state), a state at 8, NaN in the 9th step
    code = _train("direction", scene_sessions, run, "--epochs", "2", "--freeze-epochs", "1", "--save-every-steps", "4",
                  "--debug-inject-nan-at-step", "8")
    assert code == 3
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "--lr" in err
    note = json.loads((run / "state" / "last.json").read_text())
    assert note["global_step"] == 8
    state = torch.load(run / "state" / "last.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    best = load_file(str(run / "best.safetensors"))
    assert all(torch.isfinite(v).all() for v in best.values() if v.is_floating_point())
    assert not (run / "last.safetensors").exists() and not (run / "metrics.json").exists()


def test_find_lr_writes_plot_and_suggestion(scene_sessions, tmp_path, capsys):
    run = tmp_path / "lr"
    assert _train("direction", scene_sessions, run, "--find-lr", "--find-lr-steps", "25") == 0
    result = json.loads((run / "lr_find.json").read_text())
    from training.lr_finder import suggest_lr

    lrs = result["lrs"]  # 1e-7 growing geometrically towards 10 over the 25 steps (fewer if the loss blew up)
    assert result["steps"] >= 10 and lrs[0] == pytest.approx(1e-7)
    assert all(b / a == pytest.approx((10 / 1e-7) ** (1 / 24)) for a, b in zip(lrs, lrs[1:]))
    # the suggestion is the one the saved curve gives (loss smoothed and bias-corrected per step)
    assert result["suggested_lr"] == suggest_lr(lrs, result["losses"]) and lrs[0] <= result["suggested_lr"] <= lrs[-1]
    assert result["min_loss_lr"] == lrs[int(np.argmin(result["losses"]))]
    assert len(result["lrs"]) == len(result["losses"]) == result["steps"]
    assert (run / "lr_find.png").stat().st_size > 1000
    assert "suggested_lr" in capsys.readouterr().out


def test_benchmark_reports_throughput(scene_sessions, tmp_path, monkeypatch):
    from training.engine import Trainer

    # the time of each batch fetch and of each training step, as seen from outside the benchmark
    fetches, steps = [], []
    endless_batches, train_step = Trainer.endless_batches, Trainer.train_step

    def timed_batches(self):
        it = endless_batches(self)
        while True:
            t0 = time.perf_counter()
            batch = next(it)
            fetches.append(time.perf_counter() - t0)
            yield batch

    def timed_step(self, *args):
        t0 = time.perf_counter()
        loss = train_step(self, *args)
        steps.append(time.perf_counter() - t0)
        return loss

    monkeypatch.setattr(Trainer, "endless_batches", timed_batches)
    monkeypatch.setattr(Trainer, "train_step", timed_step)
    run = tmp_path / "bench"
    assert _train("direction", scene_sessions, run, "--benchmark-steps", "3", "--balance", "loss") == 0
    bench = json.loads((run / "benchmark.json").read_text())
    assert bench["steps"] == 3 and bench["batch_size"] == 4 and bench["input_size"] == [32, 32]
    assert bench["img_per_s"] == pytest.approx(3 * 4 / bench["seconds"])  # the timed steps' own images
    # the data wait of the 3 timed steps (the last 3 fetches and steps; warm-up ones before them):
    # no shorter than the fetches themselves, no longer than the timed span less the training steps
    assert len(fetches) == len(steps) > 3
    waited = bench["data_wait_share"] * bench["seconds"]
    assert sum(fetches[-3:]) <= waited <= bench["seconds"] - sum(steps[-3:]), (waited, fetches, steps, bench)


def test_refuses_to_overwrite_a_run_without_resume(scene_sessions, tmp_path, capsys):
    run = tmp_path / "twice"
    (run / "state").mkdir(parents=True)
    (run / "state" / "last.pt").write_bytes(b"x")
    assert _train("direction", scene_sessions, run, "--epochs", "1") == 1
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["direction", "detector", "detector-stride4"])
def test_export_onnx_matches_pytorch(kind, tmp_path, capsys):
    from perception.checkpoint import save_model
    from perception.config import AnchorConfig, DetectorConfig, DirectionConfig, TrunkConfig
    from perception.detector import SSDNet
    from perception.direction import DirectionNet

    torch.manual_seed(0)
    trunk = TrunkConfig(weights="none")
    if kind == "direction":
        model = DirectionNet(DirectionConfig(input_size=(64, 64), trunk=trunk))
    elif kind == "detector":
        model = SSDNet(DetectorConfig(input_size=(64, 64), trunk=trunk))
    else:  # the FineLevel's upsample and sum go through ONNX too
        anchors = AnchorConfig(feature_strides=(4, 8, 16, 32), sizes=(0.05, 0.1, 0.25, 0.5))
        model = SSDNet(DetectorConfig(input_size=(64, 64), trunk=trunk, anchors=anchors))
    ckpt = save_model(tmp_path / f"{kind}.safetensors", model.eval())
    out = tmp_path / f"{kind}.onnx"
    assert export.main([str(ckpt), "--onnx", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["match"] is True
    diffs = export.compare_with_torch(ckpt, out, batch=2, seed=5)
    assert max(diffs.values()) < 1e-3
    import onnx

    card = {p.key: p.value for p in onnx.load(str(out)).metadata_props}["truckpilot_card"]
    assert json.loads(card)["kind"] == kind.split("-")[0]


def test_max_steps_then_resume_with_only_the_run_directory(scene_sessions, tmp_path):
    run = tmp_path / "partial"
    assert _train("direction", scene_sessions, run, "--epochs", "2", "--freeze-epochs", "1", "--max-steps", "8") == 0
    note = json.loads((run / "state" / "last.json").read_text())
    assert note["global_step"] == 8 and note["epoch"] == 1 and note["step_in_epoch"] == 2
    assert train_cli.main(["direction", "--out", str(run), "--resume"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 12 and [h["epoch"] for h in metrics["history"]] == [1, 2]


def _flat_layout(config: dict) -> dict:
    """A nested config dict in the flat layout of config.json before the sections: one key per flag."""
    from training.config import TrainConfig, config_options

    nested = TrainConfig.from_dict(config)
    return {opt.flag.lstrip("-").replace("-", "_"): (list(v) if isinstance(v := opt.get(nested), tuple) else v)
            for opt in config_options(TrainConfig) if opt.on_command_line}


def test_resume_continues_a_run_saved_in_the_flat_layout_and_refuses_other_settings(scene_sessions, tmp_path,
                                                                                    capsys):
    """A run started before the sections (flat config.json and state) resumes with only --out; a resume
    that changes a setting is refused and names the flag."""
    from training.state import load_state, save_state

    run = tmp_path / "old"
    assert _train("direction", scene_sessions, run, "--epochs", "2", "--freeze-epochs", "1", "--max-steps", "8") == 0
    flat = _flat_layout(json.loads((run / "config.json").read_text()))
    assert flat["data"] == [str(scene_sessions[0])] and flat["epochs"] == 2 and "optim" not in flat
    (run / "config.json").write_text(json.dumps(flat))
    state = load_state(run / "state" / "last.pt")
    save_state(run / "state" / "last.pt", {**state, "config": json.dumps(flat)})
    capsys.readouterr()
    assert _train("direction", scene_sessions, run, "--epochs", "2", "--freeze-epochs", "1", "--lr", "0.5",
                  "--resume") == 1
    err = capsys.readouterr().err
    assert "different settings" in err and "'--lr': (0.001, 0.5)" in err
    assert train_cli.main(["direction", "--out", str(run), "--resume"]) == 0
    assert json.loads((run / "metrics.json").read_text())["global_step"] == 12
    assert json.loads((run / "config.json").read_text())["optim"]["epochs"] == 2  # rewritten nested


def test_init_fine_tunes_a_checkpoint_at_a_new_input_size(scene_sessions, tmp_path):
    """Progressive resizing: --init with another --input-height/--input-width keeps every weight and
    rebuilds the anchors (fractions of the short side) for the new size."""
    from perception.checkpoint import load_model

    small = tmp_path / "det64"
    assert _train("detector", scene_sessions, small, "--epochs", "1", "--freeze-epochs", "0", "--max-steps", "1") == 0
    large = tmp_path / "det96"
    argv = ["detector", "--data", str(scene_sessions[0]), "--val-data", str(scene_sessions[2]), "--out", str(large),
            *TINY, "--input-height", "96", "--input-width", "128", "--init", str(small / "last.safetensors"),
            "--epochs", "1", "--freeze-epochs", "0", "--max-steps", "1", "--lr", "1e-12", "--seed", "7"]
    assert train_cli.main(argv) == 0
    before, _ = load_model(small / "last.safetensors")
    after, card = load_model(large / "last.safetensors")
    assert tuple(card.input_size) == (96, 128)
    assert before.config.anchors == after.config.anchors
    assert after.anchors.shape[0] > before.anchors.shape[0]  # more cells on the larger grid
    # the anchors scale with the short side: the largest anchor of the last level grows by 96 / 64
    assert after.anchors[-1, 3] - after.anchors[-1, 1] == pytest.approx(
        1.5 * float(before.anchors[-1, 3] - before.anchors[-1, 1]), rel=1e-4)
    # another --seed, so a fresh init would differ: these are the checkpoint's weights
    for name in ("trunk.layer3.0.conv1.weight", "heads.0.cls.weight"):
        assert torch.allclose(before.state_dict()[name], after.state_dict()[name], atol=1e-6), name
    with torch.no_grad():
        cls_logits, _ = after(torch.zeros(1, 3, 96, 128))
    assert cls_logits.shape[1] == after.num_anchors


def test_detector_trains_on_crops_and_validates_on_the_full_input(scene_sessions, tmp_path, capsys):
    """--train-crop-height/--train-crop-width: steps see 32x32 crops at the scale of the 64x64 input; the run
    validates and saves at 64x64, and the option is refused where it cannot work."""
    from perception.checkpoint import load_model

    run = tmp_path / "crops"
    assert _train("detector", scene_sessions, run, "--epochs", "1", "--freeze-epochs", "0",
                  "--train-crop-height", "32", "--train-crop-width", "32") == 0
    config = json.loads((run / "config.json").read_text())
    assert (config["augment"]["train_crop_height"], config["augment"]["train_crop_width"]) == (32, 32)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val"]["by_height"]["medium"]["height_px"] == pytest.approx([64 / 30, 64 / 15])
    model, card = load_model(run / "best.safetensors")
    assert tuple(card.input_size) == (64, 64) and model.num_anchors == model.anchors_for((64, 64)).shape[0]
    capsys.readouterr()
    for task, bad, message in (("detector", ["--train-crop-height", "32"], "together"),
                               ("direction", ["--train-crop-height", "16", "--train-crop-width", "16"],
                                "detector options")):
        with pytest.raises(SystemExit) as exit_info:
            _train(task, scene_sessions, tmp_path / "bad", *bad)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert _train("detector", scene_sessions, tmp_path / "big", "--train-crop-height", "80",
                  "--train-crop-width", "80") == 1
    assert "larger than the model input" in capsys.readouterr().err
