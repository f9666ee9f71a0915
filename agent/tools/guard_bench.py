"""Measure the safety guard on a real X server: kill -9 and SIGSTOP trials.

    python -m agent.tools.guard_bench --runs 50            # starts its own Xvfb
    python -m agent.tools.guard_bench --runs 50 --display :1

Each trial starts a child "agent" (``python -m agent.tools.guard_bench --child``)
that holds the Left key through X11Keys under a SafetyGuard and heartbeats
once per period, then kills it (SIGKILL) or stops it (SIGSTOP) and watches
the X server keymap (``query_keymap``) until Left is up. Reports keys left
down and release latencies. ``--no-guard`` runs the same child without the
guard, as the control.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from agent.io.xvfb import xvfb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialResult:
    """One trial: whether a key was still down at the end, release latency (ms,
    from the signal to the keymap showing the key up; None if never), whether
    the guard process exited afterwards (kill trials)."""

    key_left_down: bool
    latency_ms: float | None
    guard_exited: bool
    note: str = ""


def run_child(period_s: float, use_guard: bool, hosted: bool = False) -> int:
    """The child agent: hold Left under a SafetyGuard; print HELD <guard pid>.
    hosted: the guard process hosts the keys (as it does for uinput)."""
    from agent.io.guard import GuardConfig, SafetyGuard
    from agent.io.keys.x11 import X11Keys
    from agent.types import KeysHeld

    # Ctrl+C raises KeyboardInterrupt, as in an agent run from a terminal, even when this
    # process inherited SIGINT ignored (a job started with & from a non-interactive shell, as
    # CI scripts often are: Python then leaves SIGINT ignored and the SIGINT trial would hang)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    backend = X11Keys()
    keys = KeysHeld(left=True)
    if not use_guard:
        backend.apply(keys)
        print("HELD 0", flush=True)
        while True:
            time.sleep(period_s)
    guard = SafetyGuard(backend, period_s, config=GuardConfig(host_keys=hosted))
    guard.engage(frame_fresh=True)
    guard.apply(keys)
    print("HELD", guard.guard_pid, flush=True)
    reported = False
    while True:
        time.sleep(period_s)
        guard.apply(keys)
        if not guard.engaged and not reported:
            print("DISENGAGED", guard.disengage_reason, flush=True)
            reported = True


def process_gone(pid: int, timeout: float = 5.0) -> bool:
    """True once ``pid`` no longer runs (gone, or a zombie awaiting its reaper) within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.01)
    return False


def _start_child(period_s: float, use_guard: bool, hosted: bool = False) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-m", "agent.tools.guard_bench", "--child", "--period", repr(period_s)]
    if not use_guard:
        cmd.append("--no-guard")
    if hosted:
        cmd.append("--hosted")
    repo = Path(__file__).resolve().parent.parent
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=repo)
    line = child.stdout.readline().split()
    if not line or line[0] != "HELD":
        child.kill()
        child.wait()
        raise RuntimeError(f"guard_bench child did not start: {line}")
    return child, int(line[1])


def _wait_key_up(reader, key: str, since: float, timeout: float) -> float | None:
    while time.monotonic() - since < timeout:
        if key not in reader.down([key]):
            return (time.monotonic() - since) * 1e3
        time.sleep(0.001)
    return None


def kill_trial(reader, period_s: float = 0.05, use_guard: bool = True, sig: int = signal.SIGKILL,
               timeout_s: float = 2.0, hosted: bool = False) -> TrialResult:
    """Start a child holding Left, send it ``sig``, watch the keymap."""
    child, guard_pid = _start_child(period_s, use_guard, hosted)
    try:
        if "Left" not in reader.down(["Left"]):
            return TrialResult(False, None, True, note="child did not hold Left")
        start = time.monotonic()
        os.kill(child.pid, sig)
        latency = _wait_key_up(reader, "Left", start, timeout_s)
        child.wait(timeout=5)
        guard_exited = process_gone(guard_pid, 5.0) if guard_pid else True
        return TrialResult("Left" in reader.down(["Left"]), latency, guard_exited)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def stall_trial(reader, period_s: float = 0.05, timeout_s: float = 2.0, hosted: bool = False) -> TrialResult:
    """SIGSTOP a guarded child holding Left; latency until the guard released it.
    Then SIGCONT: the child must report that it disengaged; then SIGTERM it."""
    child, guard_pid = _start_child(period_s, True, hosted)
    try:
        start = time.monotonic()
        os.kill(child.pid, signal.SIGSTOP)
        latency = _wait_key_up(reader, "Left", start, timeout_s)
        os.kill(child.pid, signal.SIGCONT)
        note = child.stdout.readline().strip()
        down_after_resume = "Left" in reader.down(["Left"])
        child.terminate()
        child.wait(timeout=5)
        return TrialResult(down_after_resume, latency, process_gone(guard_pid, 5.0), note=note)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGCONT)
            child.kill()
            child.wait()


def summarize(results: list[TrialResult]) -> dict:
    latencies = [r.latency_ms for r in results if r.latency_ms is not None]
    return {
        "runs": len(results),
        "keys_left_down": sum(r.key_left_down or r.latency_ms is None for r in results),
        "guard_processes_left": sum(not r.guard_exited for r in results),
        "latency_ms_median": statistics.median(latencies) if latencies else None,
        "latency_ms_max": max(latencies) if latencies else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.tools.guard_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="kill -9 trials")
    parser.add_argument("--stall-runs", type=int, default=10, help="SIGSTOP trials")
    parser.add_argument("--period", type=float, default=0.05, help="loop period in seconds")
    parser.add_argument("--display", default=None, help="X display (default: start a private Xvfb)")
    parser.add_argument("--no-guard", action="store_true", help="control: run the child without the guard")
    parser.add_argument("--hosted", action="store_true",
                        help="the guard process hosts the keys (the uinput arrangement, here with X11 keys)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return run_child(args.period, not args.no_guard, args.hosted)
    from tqdm import tqdm

    from agent.io.keys.x11 import X11KeymapReader

    with xvfb(args.display) as display:
        os.environ["DISPLAY"] = display
        with X11KeymapReader(display) as reader:
            kills = [kill_trial(reader, args.period, not args.no_guard, hosted=args.hosted)
                     for _ in tqdm(range(args.runs), desc="kill -9 trials")]
            print("kill -9:", summarize(kills))
            if not args.no_guard and args.stall_runs:
                stalls = [stall_trial(reader, args.period, hosted=args.hosted)
                          for _ in tqdm(range(args.stall_runs), desc="SIGSTOP trials")]
                print(f"SIGSTOP (period {args.period * 1e3:.0f} ms, release after "
                      f"{3 * args.period * 1e3:.0f} ms of silence):", summarize(stalls))
                print("  child after SIGCONT:", sorted({r.note for r in stalls}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
