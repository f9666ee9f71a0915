"""Perception speed benchmark (not a test): median milliseconds per stage.

    .venv/bin/python -m perception.bench                 # default input size, 2 threads
    .venv/bin/python -m perception.bench --sizes 224x224 224x168 192x144 160x120
    .venv/bin/python -m perception.bench --sizes 320x240 --shared-trunk --stride4

Sizes on the command line are WxH. Models are randomly initialised (speed does
not depend on the weights); the frame is a 320x240 RGB image like the simulator's.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import torch
from tqdm import tqdm

from perception.config import STRIDE4_ANCHORS, AnchorConfig, DetectorConfig, DirectionConfig, TrunkConfig
from perception.detector import SSDNet
from perception.direction import DirectionNet
from perception.perceiver import Perceiver

log = logging.getLogger(__name__)


@contextmanager
def torch_threads(n: int | None):
    """Temporarily set torch's intra-op thread count (None = leave it)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_perceiver(
    input_size: tuple[int, int] | None = None,
    shared_trunk: bool = False,
    device: str = "cpu",
    layout: str = "default",
    bf16: bool = False,
    engine: str = "torch",
    anchors: AnchorConfig | None = None,
) -> Perceiver:
    """Random-init DirectionNet + SSDNet at ``input_size`` (H, W; None = default) in a Perceiver.
    shared_trunk=True gives both the same trunk object (the trunk then runs once).
    engine: "torch" or "onnxruntime" (1 thread). anchors: None = the layout's."""
    trunk = TrunkConfig(weights="none")
    dcfg, scfg = DirectionConfig(trunk=trunk), DetectorConfig(trunk=trunk, layout=layout, anchors=anchors)
    if input_size is not None:
        dcfg, scfg = replace(dcfg, input_size=input_size), replace(scfg, input_size=input_size)
    direction, detector = DirectionNet(dcfg), SSDNet(scfg)
    if shared_trunk:
        detector.trunk = direction.trunk
    return Perceiver(direction, detector, device=device, bf16=bf16, engine=engine)


def measure_perceiver_ms(
    perceiver: Perceiver | None = None,
    n_frames: int = 30,
    frame_size: tuple[int, int] = (240, 320),
    threads: int | None = 2,
    warmup: int = 3,
    input_size: tuple[int, int] | None = None,
    shared_trunk: bool = False,
    seed: int = 0,
    bf16: bool = False,
) -> dict[str, float]:
    """Median ms per stage (Perception.timings_ms keys) over ``n_frames`` single-frame calls.

    perceiver: None = random-init direction + detector at ``input_size`` (None =
    the default), trunk shared if ``shared_trunk``, bfloat16 autocast if ``bf16``. frame_size: (H, W) of the
    frames given. threads: torch threads during the run (restored after).
    Also returns "fps" = 1000 / median total.
    """
    if perceiver is None:
        perceiver = build_perceiver(input_size, shared_trunk, bf16=bf16)
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, size=(*frame_size, 3), dtype=np.uint8)
    samples: dict[str, list[float]] = {}
    with torch_threads(threads):
        for _ in range(warmup):
            perceiver(frame)
        for _ in tqdm(range(n_frames), desc="bench", leave=False, disable=n_frames < 10):
            for key, ms in perceiver(frame).timings_ms.items():
                samples.setdefault(key, []).append(ms)
    result = {key: statistics.median(values) for key, values in samples.items()}
    result["fps"] = 1000.0 / result["total"]
    result["min_total"] = min(samples["total"])
    return result


def measure_cpu_ms(
    perceiver: Perceiver | None = None,
    n_frames: int = 15,
    frame_size: tuple[int, int] = (240, 320),
    input_size: tuple[int, int] | None = None,
    shared_trunk: bool = False,
    bf16: bool = False,
    warmup: int = 2,
) -> float:
    """Median CPU milliseconds one Perceiver call costs on ONE thread (``time.thread_time``).

    Unlike wall time this hardly moves when other processes load the machine, so it
    compares configurations fairly on a shared box; the 2-core wall time is at best
    about half of it.
    """
    if perceiver is None:
        perceiver = build_perceiver(input_size, shared_trunk, bf16=bf16)
    frame = np.random.default_rng(0).integers(0, 256, size=(*frame_size, 3), dtype=np.uint8)
    with torch_threads(1):
        for _ in range(warmup):
            perceiver(frame)
        costs = []
        for _ in range(n_frames):
            t0 = time.thread_time()
            perceiver(frame)
            costs.append((time.thread_time() - t0) * 1000.0)
    return statistics.median(costs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perception.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=None, help="model input sizes WxH (default: the default size)")
    parser.add_argument("--frames", type=int, default=30, help="timed frames per configuration")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--shared-trunk", action="store_true", help="also measure with one shared trunk")
    parser.add_argument("--bf16", action="store_true", help="also measure with bfloat16 autocast")
    parser.add_argument("--onnxruntime", action="store_true",
                        help="also measure the ONNX Runtime engine (float32, 1 thread)")
    parser.add_argument("--stride4", action="store_true",
                        help="also measure a detector with a stride-4 level (perception.config.STRIDE4_ANCHORS)")
    args = parser.parse_args(argv)
    sizes = [None] if not args.sizes else [tuple(int(v) for v in s.lower().split("x"))[::-1] for s in args.sizes]
    rows = []
    for size in sizes:
        for shared in ([False, True] if args.shared_trunk else [False]):
            variants = [("torch", False, None)] + ([("torch", True, None)] if args.bf16 else []) + \
                       ([("onnxruntime", False, None)] if args.onnxruntime else []) + \
                       ([("torch", False, STRIDE4_ANCHORS)] if args.stride4 else [])
            for engine, bf16, anchors in variants:
                t0 = time.perf_counter()
                perceiver = build_perceiver(size, shared, bf16=bf16, engine=engine, anchors=anchors)
                ms = measure_perceiver_ms(perceiver, n_frames=args.frames, threads=args.threads)
                cpu = measure_cpu_ms(perceiver)
                row = {"input_hw": list(perceiver.detector_card.input_size), "shared_trunk": shared,
                       "engine": engine, "bf16": bf16,
                       "anchor_strides": list(perceiver.detector_model.config.anchors.feature_strides),
                       "anchors": perceiver.detector_model.num_anchors, "cpu_ms_1thread": round(cpu, 1),
                       **{k: round(v, 2) for k, v in ms.items()}}
                rows.append(row)
                print(json.dumps(row), flush=True)
                log.info("measured in %.1f s", time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
