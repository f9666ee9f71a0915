"""``truckpilot bench``: speed figures measured side by side in one run.

    truckpilot bench --json                      # random-init models at the default input size
    truckpilot bench --model D.safetensors --detector S.safetensors --json
    truckpilot bench --model D.safetensors --detector S.safetensors --data sessions/val1 sessions/val2 --json

Figures (JSON keys):
  sim_steps_per_s            simulator env steps/s at 320x240, rgb_array + ground truth, one core
  record_fps                 headless autopilot recording, frames/s (sim + session store)
  capture_ms                 mss grab + BGRA->RGB, median/p95 ms: a 320x240 region and the full screen
                             (a private Xvfb when there is no DISPLAY)
  perceiver                  how the product Perceiver runs: input size, shared trunk, engine (ONNX Runtime
                             on 1 thread by default on the CPU, ``--engine``), threads
  perceiver_ms               the product Perceiver, median ms per stage, one 320x240 frame
  loop_fps_p50               the driving loop in the in-process simulator with both networks, 1000 / p50 tick ms
  frame_to_key_ms_p50/p95    from the frame's capture to its keys being sent
  baseline_loop_fps_p50      the same loop with the naive perception: two separate eager ResNet34 passes at
                             224x224 (no shared trunk) and NMS over every anchor (no score filter, no top-k)
  speedup_vs_baseline        loop_fps_p50 / baseline_loop_fps_p50
  accuracy                   with ``--data SESSION...`` (labelled sessions the models did not train on):
                             direction accuracy and detector mAP@0.5 of the product path (its engine,
                             shared trunk, pre-NMS score filter and top-k) beside the unoptimised model: the
                             same checkpoints in eager PyTorch float32; both at the score threshold of
                             ``truckpilot evaluate`` (0.05); ``delta_points`` = product - reference;
                             ``product_operating``: the product at its operating threshold (0.3)
Both loops run in this process, one after the other, with the same thread settings.

OpenMP wait policy: not forced. On the project's 2-core AVX2 machine OMP_WAIT_POLICY=PASSIVE
made the 2-thread PyTorch trunk 3x slower (96 vs 31 ms at 96x128) and the loop slower
(14.2 vs 16.1 FPS p50, frame-to-key p95 98 vs 75 ms), so neither bench nor the CLI sets it;
``omp_wait_policy`` in the JSON records what the environment had.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

log = logging.getLogger("truckpilot.bench")


def _percentiles(values_ms: list[float]) -> dict[str, float]:
    """{"p50", "p95"} of millisecond samples, rounded to 3 places (agent.io.timing.percentiles)."""
    from agent.io.timing import percentiles

    p50, p95 = percentiles(values_ms)
    return {"p50": round(p50, 3), "p95": round(p95, 3)}


def measure_capture_ms(display: str | None, grabs: int = 60) -> dict:
    """mss grab + BGRA->RGB of a 320x240 region and of the full screen, ms percentiles."""
    from agent.io.capture import open_capture
    from agent.io.xvfb import xvfb

    out = {}
    with xvfb(display or os.environ.get("DISPLAY"), size=(1280, 720)) as name:
        for label, region in (("region_320x240", (0, 0, 320, 240)), ("full_screen", None)):
            with open_capture(region=region, display_name=name) as capture:
                capture.grab()
                times = []
                for _ in range(grabs):
                    t0 = time.perf_counter()
                    frame = capture.grab()
                    times.append((time.perf_counter() - t0) * 1e3)
                out[label] = {**_percentiles(times), "size": f"{frame.image.shape[1]}x{frame.image.shape[0]}"}
        out["display"] = name
    return out


def build_product_perceiver(direction: str | None, detector: str | None, engine: str = "auto",
                            threads: int | None = None):
    """The Perceiver the product drives with (``agent.apps.drive.load_perceiver``'s engine choice): the given
    checkpoints, or random-init models at the default input size sharing one trunk (speed does not
    depend on the weights)."""
    from agent.apps.drive import load_perceiver
    from perception.perceiver import Perceiver

    if direction or detector:
        return load_perceiver(direction, detector, device="cpu", engine=engine, threads=threads)
    from perception.tools.bench import build_perceiver

    p = build_perceiver(shared_trunk=True)
    chosen = "onnxruntime" if engine == "auto" else engine
    return Perceiver(p.direction_model, p.detector_model, p.direction_card, p.detector_card, "cpu", engine=chosen,
                     **({"threads": threads or 1} if chosen == "onnxruntime" else {}))


def measure_accuracy(perceiver, sessions: list[str]) -> dict:
    """Direction accuracy and detector mAP@0.5 (torchmetrics, xyxy frame pixels) of ``perceiver`` on
    every frame of the labelled ``sessions``."""
    import torch
    from torchmetrics.detection import MeanAveragePrecision

    from training.sessions import Session

    classes = list(perceiver.detector_card.classes) if perceiver.detector_card else []
    metric = MeanAveragePrecision(iou_type="bbox", iou_thresholds=[0.5], class_metrics=False)
    correct = total = frames = 0
    for path in sessions:
        session = Session.open(path)
        for record in session.records():
            result = perceiver(session.load_image(record))
            frames += 1
            if record.direction is not None and perceiver.direction_card is not None:
                total += 1
                correct += result.direction == record.direction
            if classes:
                known = [(b, l) for b, l in zip(record.boxes, record.labels) if l in classes]
                metric.update(
                    [{"boxes": torch.tensor([d.box for d in result.detections], dtype=torch.float32).reshape(-1, 4),
                      "scores": torch.tensor([d.score for d in result.detections], dtype=torch.float32),
                      "labels": torch.tensor([classes.index(d.label) for d in result.detections], dtype=torch.long)}],
                    [{"boxes": torch.tensor([b for b, _ in known], dtype=torch.float32).reshape(-1, 4),
                      "labels": torch.tensor([classes.index(l) for _, l in known], dtype=torch.long)}])
    out: dict = {"frames": frames}
    if total:
        out["direction_accuracy"] = round(correct / total, 4)
    if classes:
        out["map_50"] = round(float(metric.compute()["map_50"]), 4)
    return out


def compare_accuracy(product, direction: str | None, detector: str | None, sessions: list[str]) -> dict:
    """The product path against the unoptimised model on the same sessions (see the module doc).

    ``product``: the product path at the evaluation score threshold (its engine, shared trunk, pre-NMS score
    filter and top-k), so ``delta_points`` measures what the optimisations change; ``product_operating``: the
    same path at its operating threshold (what the controller is given; it ignores scores below its own
    ``min_score`` anyway). mAP over a PR curve cut at 0.3 is lower for a model whose scores are low, which
    says nothing about the optimisations."""
    from perception.perceiver import Perceiver
    from training.config import EVAL_SCORE_THRESHOLD

    reference = Perceiver.from_checkpoints(direction, detector, device="cpu", engine="torch",
                                           score_threshold=EVAL_SCORE_THRESHOLD, top_k=100)
    operating_threshold = product.score_threshold
    operating = measure_accuracy(product, sessions)
    product.score_threshold = EVAL_SCORE_THRESHOLD
    try:
        got = measure_accuracy(product, sessions)
    finally:
        product.score_threshold = operating_threshold
    want = measure_accuracy(reference, sessions)
    delta = {k: round(100 * (got[k] - want[k]), 2) for k in ("direction_accuracy", "map_50") if k in got and k in want}
    return {"product": got, "reference": want, "delta_points": delta, "product_operating": operating,
            "reference_settings": f"eager PyTorch float32, score >= {EVAL_SCORE_THRESHOLD}, top-100 after NMS",
            "product_settings": f"{product.engine}, score >= {EVAL_SCORE_THRESHOLD}, top-{product.top_k}",
            "product_operating_settings": f"{product.engine}, score >= {operating_threshold}, top-{product.top_k}",
            "sessions": sessions}


def build_naive_perceiver():
    """The source article's way: two separate eager ResNet34 passes at 224x224, NMS over every anchor."""
    from perception.tools.bench import build_perceiver
    from perception.detector import SSDNet

    perceiver = build_perceiver(input_size=(224, 224), shared_trunk=False)
    perceiver.score_threshold = 0.0
    perceiver.top_k = int(perceiver.detector_model.anchors.shape[0])
    assert isinstance(perceiver.detector_model, SSDNet) and not perceiver.shared_trunk
    return perceiver


def measure_loop(perceiver, steps: int, seed: int = 0) -> dict:
    """The driving loop in the in-process simulator, unpaced: FPS and frame-to-key latency."""
    from agent.apps.drive import drive_sim
    from agent.runtime.loop import perceive_stage
    from perception.types import PERCEPTION_STAGES

    stats = drive_sim(perceiver, seed=seed, time_of_day="day", weather="clear", steps=steps)
    tick = stats.stages["tick"]
    latency = stats.stages["frame_to_key"]
    perceive = {stage: round(stats.stages[perceive_stage(stage)].p50_ms, 2) for stage in PERCEPTION_STAGES
                if perceive_stage(stage) in stats.stages}
    return {"fps_p50": round(1000.0 / tick.p50_ms, 2), "tick_ms_p50": round(tick.p50_ms, 2),
            "tick_ms_p95": round(tick.p95_ms, 2), "frame_to_key_ms_p50": round(latency.p50_ms, 2),
            "frame_to_key_ms_p95": round(latency.p95_ms, 2), "perceive_stage_ms_p50": perceive,
            "steps": stats.steps, "distance_m": stats.distance_m}


def run_bench(args) -> dict:
    import torch

    from agent.tools.sessions_bench import measure_record_fps
    from perception.tools.bench import measure_perceiver_ms
    from sim.tools.bench import measure_env_steps_per_s

    torch.set_num_threads(args.threads)
    result: dict = {"threads": args.threads, "cpu_count": os.cpu_count(),
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    log.info("bench: simulator")
    result["sim_steps_per_s"] = round(measure_env_steps_per_s(steps=args.sim_steps), 1)
    log.info("bench: recording")
    result["record_fps"] = measure_record_fps(frames=args.record_frames)["fps"]
    if not args.no_capture:
        log.info("bench: capture")
        result["capture_ms"] = measure_capture_ms(args.display)
    log.info("bench: perceiver")
    product = build_product_perceiver(args.model, args.detector, args.engine, args.engine_threads)
    result["perceiver"] = {"input_hw": list(product.detector_card.input_size if product.detector_card
                                            else product.direction_card.input_size),
                           "shared_trunk": product.shared_trunk, "engine": product.engine,
                           "engine_threads": product._onnx.threads if product._onnx is not None else args.threads}
    result["perceiver_ms"] = measure_perceiver_ms(product, n_frames=args.frames, threads=args.threads)
    log.info("bench: driving loop (product perception)")
    loop = measure_loop(product, args.loop_steps)
    log.info("bench: driving loop (naive baseline perception)")
    naive = measure_loop(build_naive_perceiver(), args.loop_steps)
    result.update({
        "loop": loop, "baseline_loop": naive,
        "loop_fps_p50": loop["fps_p50"], "frame_to_key_ms_p50": loop["frame_to_key_ms_p50"],
        "frame_to_key_ms_p95": loop["frame_to_key_ms_p95"], "baseline_loop_fps_p50": naive["fps_p50"],
        "speedup_vs_baseline": round(loop["fps_p50"] / naive["fps_p50"], 2),
    })
    if args.data:
        log.info("bench: accuracy, product path vs the unoptimised model")
        result["accuracy"] = compare_accuracy(product, args.model, args.detector, list(args.data))
    return result


def get_args_parser() -> argparse.ArgumentParser:
    from agent.apps.drive import ENGINE_CHOICES

    p = argparse.ArgumentParser(prog="truckpilot bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.add_argument("--model", help="direction checkpoint (.safetensors) for the product loop")
    p.add_argument("--detector", help="detector checkpoint (.safetensors) for the product loop")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--engine", choices=ENGINE_CHOICES, default="auto",
                   help="the product Perceiver's engine (auto: ONNX Runtime on the CPU, as `drive` picks)")
    p.add_argument("--engine-threads", type=int, help="ONNX Runtime threads of the product path (default 1)")
    p.add_argument("--data", nargs="+", metavar="SESSION",
                   help="labelled sessions: also compare accuracy, product path vs unoptimised model")
    p.add_argument("--sim-steps", type=int, default=2000, help="timed simulator steps")
    p.add_argument("--record-frames", type=int, default=1000, help="frames recorded for record_fps")
    p.add_argument("--frames", type=int, default=30, help="frames timed for perceiver_ms")
    p.add_argument("--loop-steps", type=int, default=150, help="ticks of each driving loop")
    p.add_argument("--display", help="X display for capture (default $DISPLAY, else a private Xvfb)")
    p.add_argument("--no-capture", action="store_true", help="skip the capture figures")
    p.add_argument("--out", help="also write the JSON here")
    return p


def main(argv: list[str]) -> int:
    args = get_args_parser().parse_args(argv)
    if args.data:  # fail before minutes of measuring, not after
        from training.sessions import Session
        from training.sessions.records import SessionError

        if not (args.model or args.detector):
            print("truckpilot bench: --data needs trained checkpoints (--model and/or --detector)", file=sys.stderr)
            return 2
        for path in args.data:
            try:
                Session.open(path)
            except (SessionError, OSError) as exc:
                print(f"truckpilot bench: --data {path}: {exc}", file=sys.stderr)
                return 2
    result = run_bench(args)
    text = json.dumps(result, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if args.json:
        print(text)
    else:
        for key in ("sim_steps_per_s", "record_fps", "loop_fps_p50", "frame_to_key_ms_p95",
                    "baseline_loop_fps_p50", "speedup_vs_baseline"):
            print(f"{key:<24}{result[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
