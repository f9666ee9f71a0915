"""Measurements of the session store: recording speed and what a kill -9 costs.

- ``measure_record_fps``: frames per second of headless autopilot recording
  (simulator + store), or of the store alone with ``source="synthetic"``.
- ``measure_write_fps``: the store alone, on a fixed synthetic frame.
- ``run_kill_trials``: start ``truckpilot record --autopilot --headless`` n times,
  kill -9 each at a random moment, then check every session opens, how many
  seconds of frames were lost (wall time of the kill minus the wall time of the
  last record), and that no record points at a missing or truncated image.

Run ``python -m agent.tools.sessions_bench record`` or ``python -m agent.tools.sessions_bench kill --trials 50``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from perception.types import DEFAULT_DETECTION_CLASSES


def _synthetic_frame(width: int, height: int) -> np.ndarray:
    """A road-like HxWx3 uint8 RGB frame: sky, grass, a road, a few cars."""
    img = np.empty((height, width, 3), np.uint8)
    img[: height // 2] = (135, 180, 230)
    img[height // 2 :] = (70, 130, 60)
    for y in range(height // 2, height):
        half = int((y - height // 2) / (height / 2) * width * 0.45) + 4
        img[y, max(0, width // 2 - half) : width // 2 + half] = (90, 90, 95)
    rng = np.random.default_rng(0)
    for _ in range(4):
        x, y = int(rng.integers(0, width - 30)), int(rng.integers(height // 2, height - 20))
        img[y : y + 14, x : x + 24] = rng.integers(0, 255, 3)
    return img


def measure_write_fps(frames: int = 600, width: int = 320, height: int = 240, image_format: str = "png",
                      out_dir: str | os.PathLike | None = None) -> dict:
    """Store-only throughput: append the same synthetic frame ``frames`` times (with a box label)."""
    from training.sessions.store import Session
    from training.sessions.writer import SessionWriter

    image = _synthetic_frame(width, height)
    tmp = tempfile.mkdtemp(prefix="tp-bench-", dir=out_dir)
    try:
        path = Path(tmp) / "session"
        t0 = time.perf_counter()
        with SessionWriter.create(path, source={"kind": "bench"}, width=width, height=height, fps=0,
                                  classes=DEFAULT_DETECTION_CLASSES, image_format=image_format) as writer:
            for _ in range(frames):
                writer.append(image, timestamp=writer.elapsed(), keys=(False, False, True, False),
                              direction="straight", direction_source="sim",
                              boxes=[(10.0, 130.0, 40.0, 150.0)], labels=["car"], boxes_source="sim")
        seconds = time.perf_counter() - t0
        assert len(Session.open(path)) == frames
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        return {"what": "store only", "frames": frames, "seconds": round(seconds, 3), "fps": round(frames / seconds, 1),
                "bytes_per_frame": round(size / frames), "size": f"{width}x{height}", "image_format": image_format}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure_record_fps(frames: int = 1000, width: int = 320, height: int = 240, image_format: str = "png",
                       seed: int = 0, out_dir: str | os.PathLike | None = None, source: str = "sim") -> dict:
    """Frames per second of headless autopilot recording of the simulator at ``width`` x ``height``
    (``source="sim"``), or of the store alone (``source="synthetic"``). Returns a dict of figures."""
    if source == "synthetic":
        return measure_write_fps(frames, width, height, image_format, out_dir)
    from agent.recording.recorder import record_sim

    tmp = tempfile.mkdtemp(prefix="tp-bench-", dir=out_dir)
    try:
        result = record_sim(Path(tmp) / "session", seed=seed, width=width, height=height, autopilot=True,
                            headless=True, frames=frames, image_format=image_format, progress=False)
        return {"what": "headless autopilot recording (sim + store)", "frames": result.frames,
                "seconds": round(result.seconds, 3), "fps": round(result.fps, 1),
                "bytes_per_frame": round(result.disk_bytes / max(1, result.frames)), "size": f"{width}x{height}",
                "image_format": image_format}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True)
class KillTrial:
    """One kill -9: seconds after recording started, frames read back, seconds of frames lost, verify status."""

    trial: int
    killed_after_s: float
    opened: bool
    frames: int
    lost_s: float
    orphan_image_bytes: int
    bad_records: int
    status: str
    error: str = ""


def record_command(out: Path, seed: int) -> list[str]:
    return [sys.executable, "-m", "agent", "record", "--out", str(out), "--autopilot", "--headless",
            "--no-progress", "--seed", str(seed), "--minutes", "10"]


def kill_once(out: Path, trial: int, rng: random.Random, max_delay_s: float = 2.0, start_timeout_s: float = 60.0,
              command=record_command) -> KillTrial:
    """Start a headless recording into ``out``, kill -9 it at a random moment after its first frames, check it."""
    from training.sessions.records import FRAMES_FILE, MANIFEST_FILE
    from training.sessions.store import Session
    from training.sessions.verify import verify

    proc = subprocess.Popen(command(out, trial), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + start_timeout_s
    frames_file = out / FRAMES_FILE
    while not (frames_file.exists() and frames_file.stat().st_size > 0):
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")[-2000:]
            return KillTrial(trial, 0.0, False, 0, float("nan"), 0, 0, "error", f"recorder exited early: {err}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            return KillTrial(trial, 0.0, False, 0, float("nan"), 0, 0, "error", "recorder did not start")
        time.sleep(0.01)
    started = time.monotonic()
    time.sleep(rng.uniform(0.0, max_delay_s))
    killed_at = time.time()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    killed_after = time.monotonic() - started
    try:
        session = Session.open(out)
    except Exception as exc:  # noqa: BLE001 - this is the measurement
        return KillTrial(trial, killed_after, False, 0, float("nan"), 0, 0, "error", repr(exc))
    records = session.records()
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    created = _dt.datetime.fromisoformat(manifest["created"]).timestamp()
    last_wall = created + records[-1].timestamp if records else created
    report = verify(out, repair=False)
    return KillTrial(trial, round(killed_after, 3), True, len(records), round(killed_at - last_wall, 3),
                     report.orphan_image_bytes, report.records_quarantined, report.status)


def run_kill_trials(trials: int = 50, seed: int = 0, root: str | os.PathLike | None = None,
                    max_delay_s: float = 2.0, keep: bool = False) -> dict:
    """``trials`` kill -9 trials; returns {"trials": [...], "opened", "max_lost_s", "bad_records", ...}."""
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="tp-kill-", dir=root))
    results = []
    try:
        for i in range(trials):
            result = kill_once(tmp / f"kill{i:03d}", i, rng, max_delay_s)
            results.append(result)
            print(f"trial {i}: {result}", file=sys.stderr)
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    lost = [r.lost_s for r in results if r.opened]
    return {
        "trials": len(results),
        "opened": sum(r.opened for r in results),
        "max_lost_s": max(lost) if lost else None,
        "mean_lost_s": round(sum(lost) / len(lost), 3) if lost else None,
        "over_1s": sum(1 for v in lost if v > 1.0),
        "bad_records": sum(r.bad_records for r in results),
        "statuses": {s: sum(r.status == s for r in results) for s in sorted({r.status for r in results})},
        "frames": [r.frames for r in results],
        "details": [asdict(r) for r in results],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agent.tools.sessions_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("record", help="recording frames per second")
    r.add_argument("--frames", type=int, default=1000)
    r.add_argument("--size", default="320x240")
    r.add_argument("--image-format", choices=("png", "jpg"), default="png")
    r.add_argument("--source", choices=("sim", "synthetic"), default="sim")
    k = sub.add_parser("kill", help="kill -9 trials")
    k.add_argument("--trials", type=int, default=50)
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--max-delay", type=float, default=2.0)
    args = p.parse_args(argv)
    if args.what == "record":
        width, height = (int(v) for v in args.size.split("x"))
        print(json.dumps(measure_record_fps(args.frames, width, height, args.image_format, source=args.source)))
    else:
        summary = run_kill_trials(args.trials, args.seed, max_delay_s=args.max_delay)
        summary.pop("details")
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
