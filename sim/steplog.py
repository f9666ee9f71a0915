"""The sim window's per-step log, for timing studies of a driver in another process.

``truckpilot sim --step-log PATH`` writes one JSON object per simulated step (JSON lines):

    {"step": n, "t_keys": s, "keys": "LRTB", "t_shown": s, "print": int, "distance": m, "offset": m}

step: the step number (1 = the first step after the reset; 0 is the reset's frame, logged
    once with t_keys null); t_keys: ``time.monotonic()`` seconds when the step's driving
    keys were read (``pygame.key.get_pressed()`` after the event pump); keys: the keys the
    step drove with, "L" left, "R" right, "T" throttle, "B" brake, "-" up (e.g. "-RT-");
    t_shown: ``time.monotonic()`` seconds right after the step's frame was shown (the
    window flipped); print: ``frame_print`` of that frame; distance: m along the road;
    offset: m from the nearest lane centre.

``time.monotonic()`` is the system's CLOCK_MONOTONIC on Linux, the same clock in every
process, so another process's timestamps join these directly. ``frame_print`` lets it
tell which step's frame it captured (the window shows the frame's pixels unchanged at
scale 1).
"""
from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

#: pixel stride of ``frame_print`` (every 4th row and column)
PRINT_STRIDE = 4


def frame_print(image: np.ndarray) -> int:
    """A 32-bit fingerprint (CRC-32) of an HxWx3 uint8 RGB frame, sampled every PRINT_STRIDE pixels."""
    return zlib.crc32(np.ascontiguousarray(image[::PRINT_STRIDE, ::PRINT_STRIDE, :3]).tobytes())


def keys_text(left: bool, right: bool, throttle: bool, brake: bool) -> str:
    """The four driving keys as "LRTB" letters, "-" for a key that is up."""
    return "".join(c if on else "-" for c, on in zip("LRTB", (left, right, throttle, brake)))


@dataclass(frozen=True)
class StepRecord:
    """One logged step (see the module doc for the fields and units)."""

    step: int
    t_keys: float | None
    keys: str
    t_shown: float
    print: int
    distance: float
    offset: float


class StepLog:
    """Appends StepRecords to a JSON-lines file (line-buffered, so a killed sim leaves whole lines)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", buffering=1)

    def write(self, record: StepRecord) -> None:
        self._file.write(json.dumps(asdict(record)) + "\n")

    def close(self) -> None:
        self._file.close()


def read_step_log(path: str | Path) -> list[StepRecord]:
    """The records of a step log, in order (a torn last line is skipped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(StepRecord(**json.loads(line)))
        except (json.JSONDecodeError, TypeError):
            continue
    return out
