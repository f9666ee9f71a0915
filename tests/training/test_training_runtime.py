"""Runtime set-up on the CPU: bf16 autocast where the CPU has no native bf16 is warned about."""
from __future__ import annotations

import logging

import torch

from training.runtime import cpu_has_native_bf16, setup_runtime


def test_bf16_on_a_cpu_without_it_warns_and_names_the_fix(caplog):
    native = cpu_has_native_bf16()
    flags = open("/proc/cpuinfo").read().split() if native is not None else []
    if native is not None:  # PyTorch's check agrees with the kernel's CPU flags
        assert native == ("avx512_bf16" in flags or "amx_tile" in flags)
    with caplog.at_level(logging.WARNING, logger="training.runtime"):
        runtime = setup_runtime(device="cpu", amp="bf16", channels_last="off")
    assert runtime.amp_dtype == torch.bfloat16  # asked for, so given: the warning says what it costs
    warned = [r.getMessage() for r in caplog.records if "native bf16" in r.getMessage()]
    if native is False:
        assert len(warned) == 1 and "--amp off" in warned[0]
    else:
        assert not warned
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="training.runtime"):
        assert setup_runtime(device="cpu", amp="auto").amp_dtype is None  # CPUs default to float32
    assert not caplog.records
