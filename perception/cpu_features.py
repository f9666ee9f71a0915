"""What the CPU can do for int8 inference: a probe of its feature flags, injectable for tests.

int8 static quantisation (perception.quantize) only pays where the CPU has int8 dot-product
instructions: ONNX Runtime's int8 convolutions then multiply-accumulate four u8 x s8 products
per lane and instruction. Without them the int8 kernels emulate it (several instructions per
product, and u8 x s8 saturation on plain AVX2) and can be slower, and less exact, than float32.

:func:`probe_cpu_features` reads the running CPU (``/proc/cpuinfo`` on Linux); a test or a
tool passes its own :class:`CpuFeatures` instead (``CpuFeatures.of("x86_64", {"avx2"})``), so
the engine choice (perception.quantize.choose_cpu_engine) is exercised on CPUs this machine is
not. The probe has no state: call it where the answer is needed.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

#: flags naming an int8 dot-product instruction, per architecture family. x86: AVX512-VNNI,
#: AVX-VNNI (Alder Lake+, Zen 5) and AMX-INT8; Arm: the v8.2 dot product (``asimddp`` in Linux's
#: /proc/cpuinfo, ``dotprod`` elsewhere) and i8mm.
INT8_DOT_FLAGS: dict[str, tuple[str, ...]] = {
    "x86": ("avx512_vnni", "avx_vnni", "amx_int8"),
    "arm": ("asimddp", "dotprod", "i8mm"),
}

#: the feature flags that bear on inference speed, as ``truckpilot bench`` reports them (the names
#: of /proc/cpuinfo): the SIMD widths, fused multiply-add, half and bfloat16 floats, the int8 dot
#: products (INT8_DOT_FLAGS) and AMX tiles on x86; NEON (asimd) and its half/dot/int8/bf16
#: extensions and SVE on Arm. A flag not named here is not reported, whatever its name starts with.
INFERENCE_FLAGS: frozenset[str] = frozenset({
    "sse4_1", "sse4_2", "sse4a", "avx", "avx2", "fma", "f16c",
    "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512ifma", "avx512vbmi", "avx512_vbmi2",
    "avx512_bitalg", "avx512_vpopcntdq", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "avx_vnni", "avx_vnni_int8", "avx_ifma", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16",
    "asimd", "asimdhp", "asimdrdm", "asimddp", "asimdfhm", "fphp", "dotprod", "i8mm", "bf16", "sve", "sve2",
    "svei8mm", "svebf16",
}) | {flag for flags in INT8_DOT_FLAGS.values() for flag in flags}

_X86 = ("x86_64", "amd64", "i386", "i686", "x86")
_ARM = ("aarch64", "arm64", "armv8l", "armv8", "arm")


@dataclass(frozen=True)
class CpuFeatures:
    """machine: ``platform.machine()`` of the CPU (e.g. "x86_64", "aarch64"); flags: its feature
    flags, lower case (x86 ``flags``, Arm ``Features`` of /proc/cpuinfo); source: where they came
    from ("/proc/cpuinfo", "injected", ...), for the log line that explains a choice."""

    machine: str
    flags: frozenset[str]
    source: str = "injected"

    @classmethod
    def of(cls, machine: str, flags: Iterable[str], source: str = "injected") -> "CpuFeatures":
        """A feature set given by hand (tests, tools): ``CpuFeatures.of("x86_64", {"avx2"})``."""
        return cls(machine.lower(), frozenset(f.lower() for f in flags), source)

    @property
    def family(self) -> str:
        """"x86", "arm" or "other"."""
        if self.machine in _X86:
            return "x86"
        if self.machine in _ARM or self.machine.startswith("arm"):
            return "arm"
        return "other"

    @property
    def int8_dot(self) -> tuple[str, ...]:
        """The int8 dot-product flags this CPU has (empty: none)."""
        return tuple(f for f in INT8_DOT_FLAGS.get(self.family, ()) if f in self.flags)

    @property
    def inference_flags(self) -> tuple[str, ...]:
        """This CPU's flags that are among INFERENCE_FLAGS, sorted."""
        return tuple(sorted(self.flags & INFERENCE_FLAGS))

    @property
    def has_int8_dot(self) -> bool:
        return bool(self.int8_dot)

    def describe(self) -> str:
        """One phrase for a log line: "x86_64 with avx512_vnni (/proc/cpuinfo)"."""
        have = ", ".join(self.int8_dot) or f"no int8 dot product ({'/'.join(INT8_DOT_FLAGS.get(self.family, ()))} " \
                                            f"absent)"
        return f"{self.machine} with {have} ({self.source})"


def parse_cpuinfo(text: str) -> frozenset[str]:
    """The feature flags of /proc/cpuinfo text: the first ``flags`` (x86) or ``Features`` (Arm) line."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(value.lower().split())
    return frozenset()


def probe_cpu_features(cpuinfo: str | Path = "/proc/cpuinfo", machine: str | None = None) -> CpuFeatures:
    """The running CPU's features: ``cpuinfo`` parsed (no flags when it cannot be read, e.g. not on
    Linux), ``machine`` = platform.machine() unless given."""
    try:
        flags = parse_cpuinfo(Path(cpuinfo).read_text(errors="replace"))
        source = str(cpuinfo)
    except OSError:
        flags, source = frozenset(), f"{cpuinfo} unreadable"
    return CpuFeatures((machine or platform.machine()).lower(), flags, source)
