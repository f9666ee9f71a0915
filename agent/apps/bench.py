"""``truckpilot bench``: speed figures measured side by side in one run.

    truckpilot bench --json                      # random-init models at the default input size
    truckpilot bench --model D.safetensors --detector S.safetensors --json
    truckpilot bench --model D.safetensors --detector S.safetensors --data sessions/val1 sessions/val2 --json
    truckpilot bench --pair D192.safetensors S192.safetensors --pair D128.safetensors S128.safetensors \
        --data sessions/val1 sessions/val2 --table-only --out bench.json   # engines side by side

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
  table                      with ``--pair D S`` (repeatable): for each pair, rows for the naive eager baseline,
                             float32 and int8 ONNX Runtime: loop_fps_p50, frame_to_key_ms_p50/p95 and, with
                             ``--data``, direction_accuracy and map_50 (all engines at the evaluation threshold,
                             top-100), delta_points int8 - fp32 and fp32 - naive, ``agreement``: int8 scored
                             against fp32's own outputs (direction, mAP@0.5 vs its detections >= 0.3),
                             cpu_ms_per_frame_1thread (load-robust); ``auto``: what ``--engine auto``
                             picks for the pair and why; ``cpu``: the CPU's int8 dot-product flags and its
                             flags that bear on inference (perception.cpu_features.INFERENCE_FLAGS)
  preprocess_ms              with ``--pair``: perception.preprocess of 1280x720 and 1920x1080 frames to each
                             pair's input size (resize on uint8 + normalise), p50/p95 ms on one core
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
    """Direction accuracy and detector mAP@0.5 (torchmetrics, xyxy frame pixels) of ``perceiver`` on every
    frame of ``sessions`` (training.perceiver_accuracy, which ``export --int8`` checks with too)."""
    from training.perceiver_accuracy import measure_accuracy as measure

    return measure(perceiver, sessions)


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


def build_naive_perceiver(direction: str | None = None, detector: str | None = None):
    """The source article's way: two separate eager ResNet34 passes, NMS over every anchor (no score filter, no
    top-k). Without checkpoints: random-init models at 224x224, as the article; with them: those models at
    their own input size, each running its own trunk (even where the two trunks are equal)."""
    from perception.detector import SSDNet
    from perception.perceiver import Perceiver
    from perception.tools.bench import build_perceiver

    if direction or detector:
        perceiver = Perceiver.from_checkpoints(direction, detector, device="cpu", engine="torch")
        perceiver.shared_trunk = False  # the naive path runs each model's trunk (eager engine reads this per call)
    else:
        perceiver = build_perceiver(input_size=(224, 224), shared_trunk=False)
    perceiver.score_threshold = 0.0
    perceiver.top_k = int(perceiver.detector_model.anchors.shape[0])
    assert isinstance(perceiver.detector_model, SSDNet) and not perceiver.shared_trunk
    return perceiver


#: the engines of the --pair table: the naive eager baseline, float32 and int8 ONNX Runtime
TABLE_ENGINES = ("naive-eager", "onnxruntime", "onnxruntime-int8")


#: the detections of the float32 engine that the int8 engine's are scored against (its operating threshold)
AGREEMENT_MIN_SCORE = 0.3


def engine_row(engine: str, direction: str, detector: str, sessions: list[str] | None, steps: int,
               engine_threads: int, cpu_features=None, keep: list | None = None, agree_with: list | None = None
               ) -> dict:
    """One row of the table: the loop (FPS p50, frame-to-key p50/p95, in the in-process simulator) and, with
    ``sessions``, direction accuracy and mAP@0.5 of one engine on one checkpoint pair.

    Loop: the engine as it drives (naive: eager PyTorch, two trunks, NMS over every anchor; ONNX Runtime:
    shared trunk, pre-NMS score filter and top-k, ``engine_threads`` threads). Accuracy: every engine at the
    evaluation score threshold (0.05), top-100 after NMS, so the rows differ only by the networks' arithmetic
    (naive: eager PyTorch float32, the unoptimised model). ``keep``: a list receiving this engine's (frame,
    Perception) results; ``agree_with``: another engine's, to score this one against (``agreement``: direction
    agreement and mAP@0.5 against its detections scoring >= AGREEMENT_MIN_SCORE), which says how far the
    arithmetic moves the outputs even where the models' own accuracy is too low to show it."""
    from agent.apps.drive import load_perceiver
    from perception.perceiver import Perceiver
    from training.config import EVAL_SCORE_THRESHOLD

    t0 = time.perf_counter()
    if engine == "naive-eager":
        perceiver = build_naive_perceiver(direction, detector)
    else:
        perceiver = load_perceiver(direction, detector, device="cpu", engine=engine, threads=engine_threads,
                                   cpu_features=cpu_features)
    card = perceiver.detector_card or perceiver.direction_card
    row: dict = {"engine": engine, "precision": perceiver.precision, "input_wh": list(card.input_size[::-1]),
                 "shared_trunk": perceiver.shared_trunk, "direction": direction, "detector": detector,
                 "threads": perceiver._onnx.threads if perceiver._onnx is not None else None}
    from perception.tools.bench import measure_cpu_ms

    row["cpu_ms_per_frame_1thread"] = round(measure_cpu_ms(perceiver), 1)  # load-robust: CPU time of one call
    loop = measure_loop(perceiver, steps)
    row.update({"loop_fps_p50": loop["fps_p50"], "frame_to_key_ms_p50": loop["frame_to_key_ms_p50"],
                "frame_to_key_ms_p95": loop["frame_to_key_ms_p95"], "loop": loop})
    if sessions:
        if engine == "naive-eager":
            scored = Perceiver.from_checkpoints(direction, detector, device="cpu", engine="torch",
                                                score_threshold=EVAL_SCORE_THRESHOLD, top_k=100)
        else:
            scored, perceiver.score_threshold, perceiver.top_k = perceiver, EVAL_SCORE_THRESHOLD, 100
        from training.perceiver_accuracy import accuracy_of, as_labels, labelled_frames

        figures = accuracy_of(scored, labelled_frames(sessions), keep)
        if agree_with:
            agreement = accuracy_of(scored, as_labels(agree_with, AGREEMENT_MIN_SCORE))
            row["agreement"] = {"direction": agreement.get("direction_accuracy"), "map_50": agreement.get("map_50"),
                                "against": f"onnxruntime fp32 detections scoring >= {AGREEMENT_MIN_SCORE}"}
        row.update({k: figures[k] for k in ("direction_accuracy", "map_50") if k in figures},
                   accuracy_frames=figures["frames"],
                   accuracy_settings=f"score >= {EVAL_SCORE_THRESHOLD}, top-100 after NMS")
    log.info("bench table: %s at %sx%s in %.0f s", engine, *row["input_wh"], time.perf_counter() - t0)
    return row


def engine_table(pairs: list[tuple[str, str]], sessions: list[str] | None, steps: int, engine_threads: int,
                 engines: tuple[str, ...] = TABLE_ENGINES, naive_steps: int | None = None) -> dict:
    """Every engine on every (direction, detector) checkpoint pair, side by side (see :func:`engine_row`),
    the CPU's int8 flags, what ``--engine auto`` picks for each pair and why, and the int8 - fp32 /
    fp32 - naive accuracy differences in points."""
    from perception.cpu_features import probe_cpu_features
    from perception.quantize import choose_cpu_engine

    features = probe_cpu_features()
    rows, auto = [], []
    for direction, detector in pairs:
        choice = choose_cpu_engine(direction, detector, features)
        auto.append({"direction": direction, "detector": detector, "engine": choice.engine, "reason": choice.reason})
        fp32_results: list = []
        pair_rows = [engine_row(engine, direction, detector, sessions,
                                naive_steps or steps if engine == "naive-eager" else steps, engine_threads, features,
                                keep=fp32_results if engine == "onnxruntime" else None,
                                agree_with=fp32_results if engine == "onnxruntime-int8" else None)
                     for engine in engines]
        fp32_results.clear()
        by_engine = {row["engine"]: row for row in pair_rows}
        for a, b in (("onnxruntime-int8", "onnxruntime"), ("onnxruntime", "naive-eager")):
            if a in by_engine and b in by_engine:
                by_engine[a][f"delta_points_vs_{b}"] = {
                    k: round(100 * (by_engine[a][k] - by_engine[b][k]), 2)
                    for k in ("direction_accuracy", "map_50") if k in by_engine[a] and k in by_engine[b]}
        rows.extend(pair_rows)
    return {"naive_loop_steps": naive_steps or steps, "cpu": {"machine": features.machine, "int8_dot": list(features.int8_dot),
                    "flags": list(features.inference_flags)},
            "auto": auto, "sessions": sessions, "loop_steps": steps, "rows": rows}


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
    if args.pair:
        from perception.checkpoint import read_card
        from perception.tools.bench import measure_preprocess_ms

        sizes = sorted({tuple(read_card(d).input_size) for d, _ in args.pair}, reverse=True)
        log.info("bench: preprocessing of large frames")
        result["preprocess_ms"] = [measure_preprocess_ms(frame_hw, size) for size in sizes
                                   for frame_hw in ((720, 1280), (1080, 1920))]
        log.info("bench: engine table")
        result["table"] = engine_table([tuple(p) for p in args.pair], list(args.data) if args.data else None,
                                       args.loop_steps, args.engine_threads or 1, naive_steps=args.naive_loop_steps)
        if args.table_only:
            return result
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
    if args.data and (args.model or args.detector):
        log.info("bench: accuracy, product path vs the unoptimised model")
        result["accuracy"] = compare_accuracy(product, args.model, args.detector, list(args.data))
    return result


def format_table(table: dict) -> str:
    """The engine table as aligned text: one line per row."""
    head = f"{'engine':<18}{'input':>9}{'FPS p50':>9}{'f2k p50':>9}{'f2k p95':>9}{'dir acc':>9}{'mAP@.5':>9}"
    lines = [head]
    for row in table["rows"]:
        acc = row.get("direction_accuracy")
        mean_ap = row.get("map_50")
        lines.append(f"{row['engine']:<18}{'x'.join(map(str, row['input_wh'])):>9}{row['loop_fps_p50']:>9.1f}"
                     f"{row['frame_to_key_ms_p50']:>9.1f}{row['frame_to_key_ms_p95']:>9.1f}"
                     f"{'' if acc is None else f'{acc:.4f}':>9}{'' if mean_ap is None else f'{mean_ap:.4f}':>9}")
    return "\n".join(lines)


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
    p.add_argument("--pair", nargs=2, action="append", metavar=("DIRECTION", "DETECTOR"),
                   help="a joint run's checkpoints (repeatable, e.g. one pair per input size): a table of the naive "
                        "eager baseline, float32 and int8 ONNX Runtime on each, loop FPS, frame-to-key and, with "
                        "--data, accuracy; int8 needs `truckpilot export D S --int8 --calib ...` first")
    p.add_argument("--naive-loop-steps", type=int, default=30,
                   help="with --pair: ticks of the naive baseline's loop (it runs at a few FPS at most)")
    p.add_argument("--table-only", action="store_true", help="with --pair: measure the table only")
    p.add_argument("--out", help="also write the JSON here")
    return p


def main(argv: list[str]) -> int:
    args = get_args_parser().parse_args(argv)
    if args.data:  # fail before minutes of measuring, not after
        from training.sessions import Session
        from training.sessions.records import SessionError

        if not (args.model or args.detector or args.pair):
            print("truckpilot bench: --data needs trained checkpoints (--model and/or --detector, or --pair)",
                  file=sys.stderr)
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
            if key in result:
                print(f"{key:<24}{result[key]}")
        if "table" in result:
            print(format_table(result["table"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
