"""DDP: `torchrun --nproc_per_node=2` on CPU (gloo) trains, and rank 0 writes a checkpoint that loads."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_two_gloo_processes_train_and_save_a_loadable_checkpoint(scene_sessions, tmp_path):
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "training.cli", "direction",
           "--data", str(scene_sessions[0]), str(scene_sessions[1]), "--val-data", str(scene_sessions[2]),
           "--out", str(out), "--trunk-weights", "none", "--input-height", "32", "--input-width", "32",
           "--epochs", "2", "--freeze-epochs", "1", "--batch-size", "4", "--num-workers", "0", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 1 of 2" in done.stderr and "(gloo)" in done.stderr

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    # 48 frames over 2 ranks = 24 each = 6 steps of 4 per epoch and rank
    assert metrics["global_step"] == 12

    from perception.checkpoint import load_model

    model, card = load_model(out / "best.safetensors")
    assert card.kind == "direction" and card.provenance["train_config"]["optim"]["batch_size"] == 4
    last, _ = load_model(out / "last.safetensors")
    assert sum(p.numel() for p in last.parameters()) > 0
