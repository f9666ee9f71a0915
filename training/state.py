"""Atomic files and the resumable training state.

The state file holds only tensors, numbers, strings, lists, tuples and dicts
(model, optimizer and scheduler state dicts, RNG states, counters), written
with ``torch.save`` and read back with ``torch.load(weights_only=True)``: a
state file cannot run code when it is loaded.

Writes are atomic: a temporary file in the same directory, flushed and
fsynced, then ``os.replace``d over the target and the directory fsynced, so a
kill at any moment leaves either the old file or the new one, never a torn one.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch

STATE_FORMAT = "truckpilot-train-state"
STATE_VERSION = 1


class StateError(Exception):
    """A training state file cannot be used; the message names the file and the fix."""


def atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write ``path`` via temp file + flush + fsync + rename (+ directory fsync)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def save_state(path: Path, state: dict) -> None:
    """Atomically save a training state dict (plain types and tensors only)."""
    payload = {"format": STATE_FORMAT, "version": STATE_VERSION, **state}
    atomic_write(path, lambda handle: torch.save(payload, handle))


def load_state(path: Path) -> dict:
    """Load a state written by :func:`save_state`, never unpickling arbitrary objects."""
    path = Path(path)
    if not path.exists():
        raise StateError(f"{path}: no training state to resume from; start the run without --resume")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (any unreadable file gets the same advice)
        raise StateError(f"{path}: unreadable training state ({exc}); delete it and start the run again") from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise StateError(f"{path}: not a TruckPilot training state; point --out at the run directory to resume")
    if state.get("version") != STATE_VERSION:
        raise StateError(f"{path}: training state version {state.get('version')} is not supported")
    return state
