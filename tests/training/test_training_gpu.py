"""CUDA paths: bf16 autocast + channels_last training, and the out-of-memory message (need a GPU)."""
from __future__ import annotations

import json

import pytest

from training import cli as train_cli

pytestmark = pytest.mark.gpu


def _argv(task, sessions, out, *extra):
    return [task, "--data", str(sessions[0]), str(sessions[1]), "--val-data", str(sessions[2]), "--out", str(out),
            "--trunk-weights", "none", "--num-workers", "2", *extra]


def test_cuda_training_uses_bf16_and_channels_last(scene_sessions, tmp_path):
    run = tmp_path / "cuda"
    assert train_cli.main(_argv("detector", scene_sessions, run, "--epochs", "2", "--batch-size", "8")) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 2 * (48 // 8)
    bench = tmp_path / "bench"
    assert train_cli.main(_argv("direction", scene_sessions, bench, "--batch-size", "16", "--benchmark-steps", "5")) == 0
    result = json.loads((bench / "benchmark.json").read_text())
    assert result["device"].startswith("cuda") and result["amp"] == "torch.bfloat16" and result["channels_last"]


def test_cuda_out_of_memory_names_a_smaller_batch(scene_sessions, tmp_path, capsys):
    run = tmp_path / "oom"
    code = train_cli.main(_argv("direction", scene_sessions, run, "--batch-size", "32", "--input-height", "3072",
                                "--input-width", "3072", "--epochs", "1", "--freeze-epochs", "0", "--num-workers", "0"))
    assert code == 4
    err = capsys.readouterr().err
    assert "out of memory" in err and "--batch-size 16" in err
