"""``truckpilot drive --window`` on a ``truckpilot sim`` window of a given size, on a private Xvfb:
the loop's per-stage p50 / p95 (frame_to_key, perceive.preprocess, ...), as a user would run it.

    .venv/bin/python -m agent.tools.live_window_bench --size 1280x720 --seconds 40
    .venv/bin/python -m agent.tools.live_window_bench --model dir.safetensors --detector det.safetensors

Without checkpoints it writes a pair shaped like the demo's (a shared ResNet34 trunk, input 96x128,
``agent.apps.demo.DemoConfig``) with random weights into the output folder: the figures are then
the cost of those networks, not of a driving model (a random detector finds many boxes, so NMS
costs more, and the truck may stand still, so the guard's frozen-picture rule fires). Prints the
drive's summary; ``--json FILE`` keeps its LoopStats.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def demo_shaped_pair(out: Path, input_hw: tuple[int, int] = (96, 128), seed: int = 0) -> tuple[Path, Path]:
    """Direction + detector checkpoints with one (random) trunk, the demo's input size: paths."""
    import torch

    from perception.checkpoint import save_model
    from perception.config import DetectorConfig, DirectionConfig, TrunkConfig
    from perception.detector import SSDNet
    from perception.direction import DirectionNet

    torch.manual_seed(seed)
    direction = DirectionNet(DirectionConfig(input_size=input_hw, trunk=TrunkConfig(weights="none")),
                             init_trunk_weights=False)
    detector = SSDNet(DetectorConfig(input_size=input_hw, trunk=TrunkConfig(weights="none")), init_trunk_weights=False)
    detector.trunk.load_state_dict(direction.trunk.state_dict())  # shared: the Perceiver runs it once
    return save_model(out / "direction.safetensors", direction), save_model(out / "detector.safetensors", detector)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="1280x720", help="sim window WIDTHxHEIGHT (default 1280x720)")
    p.add_argument("--seconds", type=float, default=40.0, help="drive this long (default 40)")
    p.add_argument("--fps", type=float, default=15.0, help="drive loop rate (default 15)")
    p.add_argument("--model", help="direction checkpoint (default: a random demo-shaped pair)")
    p.add_argument("--detector", help="detector checkpoint")
    p.add_argument("--json", help="write the drive's LoopStats here")
    args = p.parse_args(argv)
    from agent.io.xvfb import private_xvfb

    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp, private_xvfb(size=(max(1280, width + 40), max(800, height + 40))) as display:
        model, detector = args.model, args.detector
        if not model and not detector:
            model, detector = (str(p) for p in demo_shaped_pair(Path(tmp)))
        env = {**os.environ, "DISPLAY": display}
        env.pop("SDL_VIDEODRIVER", None)
        title = "TruckPilot bench sim"
        sim = subprocess.Popen([sys.executable, "-m", "agent", "sim", "--title", title, "--size", args.size,
                                "--seed", "3", "--seconds", str(args.seconds + 120)],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(5)  # the window opens
            cmd = [sys.executable, "-m", "agent", "drive", "--window", title, "--fps", str(args.fps),
                   "--seconds", str(args.seconds)]
            cmd += ["--model", model] if model else []
            cmd += ["--detector", detector] if detector else []
            cmd += ["--json", args.json] if args.json else []
            print("$", " ".join(cmd), flush=True)
            return subprocess.run(cmd, cwd=REPO, env=env).returncode
        finally:
            sim.terminate()
            sim.wait()


if __name__ == "__main__":
    sys.exit(main())
