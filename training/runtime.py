"""Where a run executes: device choice, torchrun/DDP set-up, seeding, RNG state.

Nothing here runs at import; :func:`setup_runtime` is called by the engine.
"""
from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    """The process's place in the run.

    device: torch device this process computes on.
    rank, world_size, local_rank: torchrun's values (0, 1, 0 when not distributed).
    amp_dtype: autocast dtype (torch.bfloat16) or None for full precision.
    channels_last: use the channels_last memory format for images and weights.
    """

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """"auto" -> cuda:LOCAL_RANK when CUDA is present, else cpu; otherwise the named device."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


def cpu_has_native_bf16() -> bool | None:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), as PyTorch's own CPU
    checks see it; None where this PyTorch build cannot tell."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if not all(callable(check) for check in checks):
        return None
    return any(bool(check()) for check in checks)


#: what bf16 autocast cost on a CPU without it (training/RESULTS.md, "Training speed")
EMULATED_BF16_NOTE = ("bf16 is emulated on it: a 192x144 detector step took 76 s instead of 6.2 s in float32 on a "
                      "2-core AVX2 EPYC")


def setup_runtime(device: str = "auto", amp: str = "auto", channels_last: str = "auto") -> Runtime:
    """Read torchrun's environment, start the process group if WORLD_SIZE > 1, pick the device.

    Backend: NCCL on CUDA, gloo on CPU. Rank-0-only writes are the caller's job (Runtime.is_main).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        # rank 0 validates alone while the others wait at a barrier: allow long validations
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                device_id=dev if dev.type == "cuda" else None, timeout=timedelta(minutes=60))
        log.info("distributed: rank %d of %d on %s (%s)", rank, world_size, dev, backend)
    amp_dtype = None
    if amp == "bf16" or (amp == "auto" and dev.type == "cuda"):
        amp_dtype = torch.bfloat16
    if amp_dtype is not None and dev.type == "cpu" and cpu_has_native_bf16() is False:
        log.warning("--amp bf16 on a CPU without native bf16 (no AVX512-BF16 or AMX): %s. Use --amp off here "
                    "(the default on CPUs)", EMULATED_BF16_NOTE)
    use_cl = channels_last == "on" or (channels_last == "auto" and dev.type == "cuda")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(dev, rank, world_size, local_rank, amp_dtype, use_cl)


def teardown_runtime(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (all devices); optionally force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def get_rng_state() -> dict:
    """RNG states of python, numpy and torch as plain types/tensors (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"name": str(np_state[0]), "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value):
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuple(v) for v in value)
    return value


def all_reduce_max(value: float, runtime: Runtime) -> float:
    """Max of a scalar over ranks (identity when not distributed)."""
    if not runtime.distributed:
        return value
    t = torch.tensor([float(value)], device=runtime.device if runtime.cuda else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()
