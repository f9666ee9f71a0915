"""Measure the safety guard on a real X server: kill -9 and SIGSTOP trials.

    python -m agent.tools.guard_bench --runs 50            # starts its own Xvfb
    python -m agent.tools.guard_bench --runs 50 --display :1

Each trial starts a child "agent" (``python -m agent.tools.guard_bench --child``)
that holds the Left key through X11Keys under a SafetyGuard and heartbeats
once per period, then kills it (SIGKILL) or stops it (SIGSTOP) and watches
the X server keymap (``query_keymap``) until Left is up. Reports keys left
down and release latencies. ``--no-guard`` runs the same child without the
guard, as the control.

    python -m agent.tools.guard_bench --runs 50 --stall-runs 50 --axes /dev/shm/tp-bench-SCSControls

``--axes PATH`` also deflects an analog steering axis: the child writes steer 0.8 and throttle 0.5
to an SCS SDK input plugin block at PATH (``ScsControlsOutput``, under the guard) besides holding
Left, and the bench reads the block as the game does (``sim.scs_controls.ControlsDevice``, which
makes it) until the steering and both pedals read neutral: the axis latency and axes left
deflected are reported beside the key's.
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
    axes_left_deflected: bool | None = None  #: --axes: the steering or a pedal still off neutral at the end
    axes_latency_ms: float | None = None  #: --axes: from the signal to the block reading neutral


#: what the child holds on the analog output (--axes): steering 80 % right, half throttle
DEFLECTED = (0.8, 0.5, 0.0)


def run_child(period_s: float, use_guard: bool, hosted: bool = False, axes_path: str | None = None) -> int:
    """The child agent: hold Left (and with ``axes_path`` the ``DEFLECTED`` axes on that SCS controls
    block) under a SafetyGuard; print HELD <guard pid>. hosted: the guard process hosts the keys
    and the axes (as it does for uinput keys and a uinput gamepad)."""
    from agent.io.axes import Axes
    from agent.io.guard import GuardConfig, SafetyGuard
    from agent.io.keys.x11 import X11Keys
    from agent.types import KeysHeld

    axis_out, axes = None, None
    if axes_path is not None:
        from agent.io.axes.scs_controls import ScsControlsOutput

        axis_out, axes = ScsControlsOutput.open(axes_path), Axes(*DEFLECTED)

    # Ctrl+C raises KeyboardInterrupt, as in an agent run from a terminal, even when this
    # process inherited SIGINT ignored (a job started with & from a non-interactive shell, as
    # CI scripts often are: Python then leaves SIGINT ignored and the SIGINT trial would hang)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    backend = X11Keys()
    keys = KeysHeld(left=True)
    if not use_guard:
        backend.apply(keys)
        if axis_out is not None:
            axis_out.send(axes)
        print("HELD 0", flush=True)
        while True:
            time.sleep(period_s)
    guard = SafetyGuard(backend, period_s, config=GuardConfig(host_keys=hosted, host_axes=hosted or None),
                        axes=axis_out)
    guard.engage(frame_fresh=True)
    guard.apply(keys, axes=axes)
    print("HELD", guard.guard_pid, flush=True)
    reported = False
    while True:
        time.sleep(period_s)
        guard.apply(keys, axes=axes)
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


def _start_child(period_s: float, use_guard: bool, hosted: bool = False,
                 axes_path: str | None = None) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-m", "agent.tools.guard_bench", "--child", "--period", repr(period_s)]
    if not use_guard:
        cmd.append("--no-guard")
    if hosted:
        cmd.append("--hosted")
    if axes_path is not None:
        cmd += ["--axes", axes_path]
    repo = Path(__file__).resolve().parent.parent
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=repo)
    line = child.stdout.readline().split()
    if not line or line[0] != "HELD":
        child.kill()
        child.wait()
        raise RuntimeError(f"guard_bench child did not start: {line}")
    return child, int(line[1])


def _deflected(device) -> bool:
    r = device.read()
    return r.steering != 0.0 or r.aforward != 0.0 or r.abackward != 0.0


def _wait_both(reader, device, since: float, timeout: float) -> tuple[float | None, float | None]:
    """(ms until Left is up, ms until the block reads neutral; None: not within ``timeout``), both
    watched in one loop from ``since``; the axis one is None without a ``device``."""
    key_ms = axes_ms = None
    while time.monotonic() - since < timeout and (key_ms is None or (device is not None and axes_ms is None)):
        now_ms = (time.monotonic() - since) * 1e3
        if key_ms is None and "Left" not in reader.down(["Left"]):
            key_ms = now_ms
        if device is not None and axes_ms is None and not _deflected(device):
            axes_ms = now_ms
        time.sleep(0.001)
    return key_ms, axes_ms


def kill_trial(reader, period_s: float = 0.05, use_guard: bool = True, sig: int = signal.SIGKILL,
               timeout_s: float = 2.0, hosted: bool = False, device=None) -> TrialResult:
    """Start a child holding Left (and with ``device``, a ``sim.scs_controls.ControlsDevice``, the
    deflected axes on its block), send it ``sig``, watch the keymap and the block."""
    child, guard_pid = _start_child(period_s, use_guard, hosted, str(device.path) if device is not None else None)
    try:
        if "Left" not in reader.down(["Left"]):
            return TrialResult(False, None, True, note="child did not hold Left")
        if device is not None and not _deflected(device):
            return TrialResult(False, None, True, note="child did not deflect the axes")
        start = time.monotonic()
        os.kill(child.pid, sig)
        latency, axes_ms = _wait_both(reader, device, start, timeout_s)
        child.wait(timeout=5)
        guard_exited = process_gone(guard_pid, 5.0) if guard_pid else True
        return TrialResult("Left" in reader.down(["Left"]), latency, guard_exited,
                           axes_left_deflected=_deflected(device) if device is not None else None,
                           axes_latency_ms=axes_ms)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def stall_trial(reader, period_s: float = 0.05, timeout_s: float = 2.0, hosted: bool = False,
                device=None) -> TrialResult:
    """SIGSTOP a guarded child holding Left (and the deflected axes with ``device``); latency until
    the guard released it (and centred them). Then SIGCONT: the child must report that it
    disengaged; then SIGTERM it."""
    child, guard_pid = _start_child(period_s, True, hosted, str(device.path) if device is not None else None)
    try:
        if device is not None and not _deflected(device):
            return TrialResult(False, None, True, note="child did not deflect the axes")
        start = time.monotonic()
        os.kill(child.pid, signal.SIGSTOP)
        latency, axes_ms = _wait_both(reader, device, start, timeout_s)
        os.kill(child.pid, signal.SIGCONT)
        note = child.stdout.readline().strip()
        down_after_resume = "Left" in reader.down(["Left"])
        deflected_after_resume = _deflected(device) if device is not None else None
        child.terminate()
        child.wait(timeout=5)
        return TrialResult(down_after_resume, latency, process_gone(guard_pid, 5.0), note=note,
                           axes_left_deflected=deflected_after_resume, axes_latency_ms=axes_ms)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGCONT)
            child.kill()
            child.wait()


def summarize(results: list[TrialResult], limit_ms: float | None = None) -> dict:
    """Counts and latencies of ``results``; with ``limit_ms`` also how many released (and centred)
    within it."""
    latencies = [r.latency_ms for r in results if r.latency_ms is not None]
    out = {
        "runs": len(results),
        "keys_left_down": sum(r.key_left_down or r.latency_ms is None for r in results),
        "guard_processes_left": sum(not r.guard_exited for r in results),
        "latency_ms_median": statistics.median(latencies) if latencies else None,
        "latency_ms_max": max(latencies) if latencies else None,
    }
    if limit_ms is not None:
        out["keys_released_within_limit"] = sum(r.latency_ms is not None and r.latency_ms <= limit_ms for r in results)
    if any(r.axes_left_deflected is not None for r in results):
        axes = [r.axes_latency_ms for r in results if r.axes_latency_ms is not None]
        out.update({
            "axes_left_deflected": sum(bool(r.axes_left_deflected) or r.axes_latency_ms is None for r in results),
            "axes_latency_ms_median": statistics.median(axes) if axes else None,
            "axes_latency_ms_max": max(axes) if axes else None,
        })
        if limit_ms is not None:
            out["axes_neutral_within_limit"] = sum(r.axes_latency_ms is not None and r.axes_latency_ms <= limit_ms
                                                   for r in results)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.tools.guard_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="kill -9 trials")
    parser.add_argument("--stall-runs", type=int, default=10, help="SIGSTOP trials")
    parser.add_argument("--period", type=float, default=0.05, help="loop period in seconds")
    parser.add_argument("--display", default=None, help="X display (default: start a private Xvfb)")
    parser.add_argument("--no-guard", action="store_true", help="control: run the child without the guard")
    parser.add_argument("--hosted", action="store_true",
                        help="the guard process hosts the keys and the axes (the uinput arrangement, here with X11 keys "
                             "and the SCS block)")
    parser.add_argument("--axes", metavar="PATH", default=None,
                        help="also deflect an analog steering axis on an SCS controls block made at PATH (the game's "
                             "side, sim.scs_controls.ControlsDevice) and time until it reads neutral")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return run_child(args.period, not args.no_guard, args.hosted, args.axes)
    from contextlib import nullcontext

    from tqdm import tqdm

    from agent.io.keys.x11 import X11KeymapReader

    limit_ms = 3 * args.period * 1e3
    with xvfb(args.display) as display:
        os.environ["DISPLAY"] = display
        if args.axes:
            from sim.scs_controls import ControlsDevice

            block = ControlsDevice(args.axes)
        else:
            block = nullcontext(None)
        with X11KeymapReader(display) as reader, block as device:
            kills = [kill_trial(reader, args.period, not args.no_guard, hosted=args.hosted, device=device)
                     for _ in tqdm(range(args.runs), desc="kill -9 trials")]
            print("kill -9:", summarize(kills, limit_ms))
            if not args.no_guard and args.stall_runs:
                stalls = [stall_trial(reader, args.period, hosted=args.hosted, device=device)
                          for _ in tqdm(range(args.stall_runs), desc="SIGSTOP trials")]
                print(f"SIGSTOP (period {args.period * 1e3:.0f} ms, release after "
                      f"{limit_ms:.0f} ms of silence):", summarize(stalls, limit_ms))
                print("  child after SIGCONT:", sorted({r.note for r in stalls}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
