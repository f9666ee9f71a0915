"""--cpu-malloc: glibc keeps freed blocks, so a training step stops faulting its large blocks in again.

The setting is process-wide, so the training steps run in a child interpreter; the figures
are the kernel's own page-fault counts (getrusage), not a mock.
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from training.config import RuntimeConfig
from training.cpu_malloc import apply_cpu_malloc

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

#: a child that optionally applies the setting, then runs 8 training steps of a small conv net
#: whose activations are 64 MiB each (above glibc's largest dynamic mmap threshold, 32 MiB, as
#: a 480x360 detector batch's are) and reports the minor page faults of each step
CHILD = """
import json, resource, sys
import torch
from training.cpu_malloc import apply_cpu_malloc
applied = apply_cpu_malloc(sys.argv[1], "cpu")
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, padding=1))
x = torch.randn(4, 8, 512, 512)
faults = []
for step in range(8):
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    net.zero_grad(set_to_none=True)
    net(x).square().mean().backward()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
print(json.dumps({"applied": applied, "faults": faults}))
"""

#: 4 KiB pages in one 64 MiB activation
PAGES_PER_ACTIVATION = 64 * 1024 * 1024 // 4096


def run_child(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's; elsewhere --cpu-malloc keep changes nothing")
def test_keep_stops_the_page_faults_of_a_training_step():
    system = run_child("system")
    keep = run_child("keep")
    assert system["applied"] is False and keep["applied"] is True
    after_warmup = slice(4, 8)
    system_faults, keep_faults = sum(system["faults"][after_warmup]), sum(keep["faults"][after_warmup])
    # glibc's default: every large block is a fresh mmap, its pages faulted in again at each step
    assert system_faults >= 4 * 4 * PAGES_PER_ACTIVATION, system
    # kept: freed blocks are reused; measured here 0-16k faults a step against 300k
    assert keep_faults * 10 < system_faults, (keep, system)


def test_system_and_cuda_runs_leave_malloc_alone():
    # neither call reaches mallopt, so running them in the test process changes nothing
    assert apply_cpu_malloc("system", "cpu") is False
    assert apply_cpu_malloc("keep", "cuda") is False


def test_a_bad_choice_names_the_option_and_the_choices():
    with pytest.raises(ValueError, match=r"--cpu-malloc 'fast'.*keep.*system"):
        apply_cpu_malloc("fast", "cpu")
    with pytest.raises(ValueError, match=r"--cpu-malloc 'fast'.*keep.*system"):
        RuntimeConfig(cpu_malloc="fast")


def test_the_train_and_evaluate_commands_offer_it():
    for command in ("train", "evaluate"):
        done = subprocess.run([sys.executable, "-m", "agent", command, "--help"], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        assert "--cpu-malloc" in done.stdout


@pytest.mark.slow  # 18 s: the benchmark tool itself; test_keep_stops_the_page_faults covers the setting
def test_malloc_bench_reports_both_modes_side_by_side(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "training.tools.malloc_bench", "--input-height", "64", "--input-width",
                           "96", "--batch-size", "2", "--rounds", "2", "--warmup", "1", "--steps", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["keep"]["applied"] is GLIBC and result["system"]["applied"] is False
    for mode in ("keep", "system"):
        per_round = result[mode]["s_per_step"]  # one figure per round, the headline their median
        assert len(per_round) == 2 and result[mode]["median_s_per_step"] == pytest.approx(sum(per_round) / 2)
        # ru_maxrss is KiB on Linux: a process holding torch and a ResNet34 is hundreds of MiB, not
        # hundreds of thousands (KiB reported as MiB) or a fraction of one (bytes divided twice)
        assert 100 < result[mode]["peak_rss_mib"] < 16 * 1024, result[mode]["peak_rss_mib"]
        assert 0.0 <= result[mode]["kernel_share"] <= 1.0
    assert result["system_vs_keep"] == result["system"]["median_s_per_step"] / result["keep"]["median_s_per_step"]


def test_malloc_bench_refuses_a_bad_count():
    done = subprocess.run([sys.executable, "-m", "training.tools.malloc_bench", "--rounds", "0"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "--rounds must be >= 1, got 0" in done.stderr
