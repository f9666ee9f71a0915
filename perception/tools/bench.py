"""Perception speed benchmark (not a test): median milliseconds per stage.

    .venv/bin/python -m perception.tools.bench                 # default input size, 2 threads
    .venv/bin/python -m perception.tools.bench --sizes 224x224 224x168 192x144 160x120
    .venv/bin/python -m perception.tools.bench --sizes 320x240 --shared-trunk --stride4
    .venv/bin/python -m perception.tools.bench --sizes 320x240 --decode-batch 64 --stride4   # batched decode vs a loop

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
from torch import Tensor
from tqdm import tqdm

from perception.config import STRIDE4_ANCHORS, AnchorConfig, DetectorConfig, DirectionConfig, TrunkConfig
from perception.anchors import decode_detections, decode_detections_batch
from perception.detector import SSDNet, detector_anchors
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


def measure_preprocess_ms(frame_hw: tuple[int, int], input_hw: tuple[int, int], n: int = 40,
                          seed: int = 0) -> dict:
    """perception.preprocess of one ``frame_hw`` (H, W) uint8 frame to ``input_hw`` (H, W): the resize on
    uint8 (``resize_frame``) and the whole path (resize + normalise to the float32 tensor), p50/p95 ms over
    ``n`` calls on one OpenCV / torch thread (the frame is smooth noise, like a picture)."""
    import cv2

    from perception.preprocess import preprocess, resize_frame

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(frame_hw[0] // 8, frame_hw[1] // 8, 3), dtype=np.uint8)
    frame = cv2.resize(small, (frame_hw[1], frame_hw[0]), interpolation=cv2.INTER_LINEAR)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    times: dict[str, list[float]] = {"resize": [], "total": []}
    try:
        with torch_threads(1):
            for _ in range(n + 3):
                t0 = time.perf_counter()
                resize_frame(frame, input_hw)
                t1 = time.perf_counter()
                preprocess([frame], input_hw, mean, std)
                t2 = time.perf_counter()
                times["resize"].append((t1 - t0) * 1e3)
                times["total"].append((t2 - t1) * 1e3)
    finally:
        cv2.setNumThreads(cv_threads)
    out: dict = {"frame_wh": [frame_hw[1], frame_hw[0]], "input_wh": [input_hw[1], input_hw[0]]}
    for key, values in times.items():
        values = values[3:]
        out[f"{key}_ms_p50"] = round(float(np.percentile(values, 50)), 3)
        out[f"{key}_ms_p95"] = round(float(np.percentile(values, 95)), 3)
    return out


def synthetic_scores(batch: int, num_anchors: int, num_classes: int, candidates: int, seed: int = 0) -> Tensor:
    """(batch, num_anchors, num_classes) class probabilities, background left out, like a trained
    detector's: about ``candidates`` (anchor, class) pairs per image clearly above 0.05, the rest near 0."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, num_anchors, num_classes + 1, generator=gen) - 8.0
    logits[..., 0] = 0.0
    hot = torch.rand(batch, num_anchors, num_classes, generator=gen) < candidates / (num_anchors * num_classes)
    logits[..., 1:] += hot * 10.0
    return torch.softmax(logits, dim=-1)[..., 1:]


def measure_decode_ms(
    batch: int = 64,
    input_size: tuple[int, int] = (240, 320),
    anchors: AnchorConfig | None = None,
    candidates: int = 300,
    rounds: int = 15,
    threads: int | None = 2,
) -> dict[str, float]:
    """Decoding a batch of detector outputs (decode, threshold 0.05 as in evaluation, NMS, top 100) in
    one pass (``decode_detections_batch``, what ``SSDNet.detect`` runs) and image by image
    (``decode_detections`` in a loop), in interleaved rounds on the same synthetic outputs
    (``synthetic_scores``). Returns median ms per batch of each and loop / batched."""
    config = DetectorConfig(trunk=TrunkConfig(weights="none"), input_size=input_size, anchors=anchors)
    anchor_boxes = detector_anchors(config)
    scores = synthetic_scores(batch, anchor_boxes.shape[0], config.num_classes, candidates)
    deltas = torch.randn(batch, anchor_boxes.shape[0], 4, generator=torch.Generator().manual_seed(1)) * 0.5
    size = tuple(config.input_size)

    def batched():
        return decode_detections_batch(scores, deltas, anchor_boxes, size, 0.05, 0.45, 100)

    def loop():
        return [decode_detections(scores[b], deltas[b], anchor_boxes, size, 0.05, 0.45, 100) for b in range(batch)]

    times: dict[str, list[float]] = {"batched": [], "loop": []}
    with torch_threads(threads):
        for fn in (batched, loop):  # warm-up
            fn()
        for _ in range(rounds):
            for name, fn in (("batched", batched), ("loop", loop)):
                t0 = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t0) * 1000.0)
    result = {f"{name}_ms": statistics.median(values) for name, values in times.items()}
    result["loop_over_batched"] = result["loop_ms"] / result["batched_ms"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perception.tools.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=None, help="model input sizes WxH (default: the default size)")
    parser.add_argument("--frames", type=int, default=30, help="timed frames per configuration")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--shared-trunk", action="store_true", help="also measure with one shared trunk")
    parser.add_argument("--bf16", action="store_true", help="also measure with bfloat16 autocast")
    parser.add_argument("--onnxruntime", action="store_true",
                        help="also measure the ONNX Runtime engine (float32, 1 thread)")
    parser.add_argument("--stride4", action="store_true",
                        help="also measure a detector with a stride-4 level (perception.config.STRIDE4_ANCHORS)")
    parser.add_argument("--decode-batch", type=int, default=0, metavar="B",
                        help="instead: decoding B images' detector outputs in one pass vs image by image")
    args = parser.parse_args(argv)
    sizes = [None] if not args.sizes else [tuple(int(v) for v in s.lower().split("x"))[::-1] for s in args.sizes]
    if args.decode_batch:
        for size in sizes:
            for anchors in [None] + ([STRIDE4_ANCHORS] if args.stride4 else []):
                config = DetectorConfig(anchors=anchors, **({"input_size": size} if size else {}))
                ms = measure_decode_ms(args.decode_batch, tuple(config.input_size), anchors, threads=args.threads)
                print(json.dumps({"decode_batch": args.decode_batch, "input_hw": list(config.input_size),
                                  "anchor_strides": list(config.anchors.feature_strides),
                                  **{k: round(v, 2) for k, v in ms.items()}}), flush=True)
        return 0
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
