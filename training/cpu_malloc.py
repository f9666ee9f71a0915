"""Keep freed memory in the process on CPU runs, instead of handing it back to the OS each step.

PyTorch's CPU allocator is plain ``malloc`` (``posix_memalign``). glibc serves large blocks
with their own ``mmap`` (from 128 KiB; its dynamic threshold rises as such blocks are freed, but
never past 32 MiB) and returns them with ``munmap`` when the tensor dies, so the next step
faults every page in again and the kernel zeroes it. A detector batch's largest activations
are past 32 MiB (32 x 64 x 120 x 160 bf16 is 75 MiB at 640x480): on the project's 2-core VM such
a training step spent half its CPU time in the kernel, at 90,000 page faults a second. CUDA has
its caching allocator; this is the CPU's nearest equivalent without a new dependency (jemalloc
or tcmalloc would need ``LD_PRELOAD`` and a system package).

:func:`keep_freed_memory` asks glibc (``mallopt``) to serve large blocks from the heap
(``M_MMAP_MAX = 0``) and never to trim it (``M_TRIM_THRESHOLD`` = 2^31 - 1 bytes): after the
first steps a training step mostly reuses memory it already has (6,900 page faults a step
instead of 135,000 at 480x360, batch 8). The price is that the process keeps its peak heap
until it exits, memory the next step would ask for again anyway (peak RSS measured the same).
It is process-wide and cannot be undone cleanly, so only the training and evaluation entry
points call it, only for CPU runs, and ``--cpu-malloc system`` skips it.
Measured side by side: ``python -m training.tools.malloc_bench``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger(__name__)

#: glibc's mallopt parameter numbers (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
#: the largest trim threshold mallopt takes (an int): the heap is never trimmed
NEVER_TRIM_BYTES = 2**31 - 1

CPU_MALLOC_CHOICES = ("keep", "system")


def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (mallopt exists), else None (macOS, Windows, musl)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "mallopt") else None
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Make glibc keep freed blocks for reuse (no mmap for large blocks, no trimming).

    Returns True when applied, False where the C library is not glibc (nothing changes).
    Call it once, early, in a process that trains or evaluates on the CPU.
    """
    libc = _glibc()
    if libc is None:
        log.debug("cpu_malloc: not glibc; the allocator is left as it is")
        return False
    ok = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM_BYTES) == 1
    if not ok:
        log.warning("cpu_malloc: glibc refused mallopt; freed memory goes back to the OS as usual")
    return ok


def apply_cpu_malloc(choice: str, device_type: str) -> bool:
    """``--cpu-malloc`` for a run on ``device_type`` ("cpu", "cuda"): "keep" applies
    :func:`keep_freed_memory` on CPU runs; "system" (or a CUDA run) leaves malloc alone.
    Returns whether it was applied."""
    if choice not in CPU_MALLOC_CHOICES:
        raise ValueError(f"--cpu-malloc {choice!r}: choose one of {CPU_MALLOC_CHOICES}")
    if choice == "system" or device_type != "cpu":
        return False
    return keep_freed_memory()
