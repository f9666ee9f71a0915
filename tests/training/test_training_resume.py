"""Resume after kill -9 ends with the same weights as an uninterrupted run (CPU, deterministic)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]


def _train_cmd(sessions, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "training.cli", "direction", "--data", str(sessions[0]),
            "--val-data", str(sessions[2]), "--out", str(out), "--trunk-weights", "none",
            "--input-height", "32", "--input-width", "32", "--epochs", "2", "--freeze-epochs", "1",
            "--batch-size", "4", "--lr", "3e-3", "--deterministic", "--num-workers", "0", "--seed", "7", *extra]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _saved_step(state_path: Path) -> int:
    """global_step of the last saved state, from its JSON note (-1 before the first save)."""
    try:
        return int(json.loads(state_path.with_suffix(".json").read_text())["global_step"])
    except FileNotFoundError:
        return -1


def test_killed_and_resumed_run_matches_uninterrupted(scene_sessions, tmp_path):
    whole = tmp_path / "whole"
    uninterrupted = subprocess.Popen(_train_cmd(scene_sessions, whole), cwd=REPO, env=_env(),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(scene_sessions, killed, "--save-every-steps", "8"), cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = killed / "state" / "last.pt"
    deadline = time.monotonic() + 120
    # 24 train frames / batch 4 = 6 steps an epoch, 12 in all; kill inside epoch 2 (unfrozen phase).
    while _saved_step(state) < 8:  # saves at 6 (epoch end) and 8 (epoch 2, step 2 of 6)
        assert proc.poll() is None, "training ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    killed_at = _saved_step(state)
    assert killed_at == 8, killed_at
    assert not (killed / "last.safetensors").exists()

    resumed = subprocess.run(_train_cmd(scene_sessions, killed, "--save-every-steps", "8", "--resume"), cwd=REPO,
                             env=_env(), capture_output=True, text=True, timeout=180)
    _, whole_err = uninterrupted.communicate(timeout=180)
    assert uninterrupted.returncode == 0, whole_err[-2000:]
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr

    a = load_file(str(whole / "last.safetensors"))
    b = load_file(str(killed / "last.safetensors"))
    assert a.keys() == b.keys()
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())
    assert worst <= 1e-6, f"resumed weights differ from the uninterrupted run's by {worst}"
    assert _saved_step(state) == 12
    # the run did train: the trunk moved away from its (seeded) initial weights
    from perception.config import DirectionConfig, TrunkConfig
    from perception.direction import DirectionNet

    torch.manual_seed(7)
    fresh = DirectionNet(DirectionConfig(input_size=(32, 32), trunk=TrunkConfig(weights="none"))).state_dict()
    moved = max(float((fresh[k] - a[k]).abs().max()) for k in a if k.startswith("trunk") and a[k].is_floating_point())
    assert moved > 1e-4


def test_sigterm_saves_the_state_at_a_step_boundary_and_exits(scene_sessions, tmp_path):
    run = tmp_path / "term"
    proc = subprocess.Popen(_train_cmd(scene_sessions, run), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    state = run / "state" / "last.pt"
    deadline = time.monotonic() + 120
    while _saved_step(state) < 6:  # the first epoch's end
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "--resume" in err
    stopped_at = _saved_step(state)
    assert "stopped by a signal" in err and 6 < stopped_at < 12, stopped_at
    saved = torch.load(state, weights_only=True)
    assert int(saved["global_step"]) == stopped_at and int(saved["step_in_epoch"]) == stopped_at - 6
