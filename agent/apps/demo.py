"""``truckpilot demo``: the whole product on the built-in simulator, on a fresh machine.

1. record: headless autopilot sessions in the simulator (training seeds, and
   validation seeds under other conditions);
2. train: the direction classifier and the SSD detector on them in one joint
   run (one ResNet34 trunk feeding both heads, so the driver runs the trunk once
   per frame), within a CPU budget (the GPU when there is one), validated on
   the held-out sessions;
3. drive: the trained agent on seeds it never saw, scored side by side with the
   scripted expert and the source article's baseline controller;
4. report: ``OUT/report.md`` with the metrics, PNG plots (training curves,
   confusion matrix, detector PR curves), an animated GIF of a drive with the
   HUD, and the scorecard.

Everything lands in ``--out`` (default ``demo_out``); a second run starts afresh.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

log = logging.getLogger("truckpilot.demo")


def _opt(default, help_: str, item: type = int):
    """A DemoConfig field and its flag's help; ``item``: the element type of a tuple field."""
    return field(default=default, metadata={"help": help_, "item": item})


@dataclass(frozen=True)
class DemoConfig:
    """Every knob of the demo. Training is sized to ``train_budget_s``: the demo times a few steps of the
    joint network, then draws as many frames as fit (``--epoch-frames``), so the whole demo stays within
    10 minutes of a fresh clone, set-up included, on a 2-core CPU (measured: 33 img/s at 96x128 on an
    AVX512 EPYC, ~15 on an older AVX2 one)."""

    out: str = _opt("demo_out", "output directory (replaced if it exists)")
    train_seeds: tuple[int, ...] = _opt(tuple(range(1, 41)), "simulator seeds recorded for training (many short "
                                                             "sessions: diverse roads beat long ones)")
    val_seeds: tuple[int, ...] = _opt((101, 102), "seeds recorded for validation (never trained on)")
    frames_per_session: int = _opt(200, "frames recorded per training session (15 frames per simulated second)")
    val_frames_per_session: int = _opt(300, "frames recorded per validation session")
    input_height: int = _opt(96, "model input height, px (the frames are 320x240)")
    input_width: int = _opt(128, "model input width, px")
    start: str = _opt("auto", "fine-tune from a starting pair: auto = the published one "
                              "(perception/weights/start.safetensors) when this checkout has it | none = "
                              "--trunk-weights | PATH = a packed pair; its input size replaces --input-height/width")
    start_lr: float = _opt(1e-4, "peak learning rate when fine-tuning from a starting pair (low: at 5e-4 "
                                 "the demo's 74 steps cost the pair's detector 0.03 of validation mAP@0.5)")
    trunk_weights: str = _opt("imagenet", "trunk initialisation without a starting pair: imagenet (random with a "
                                          "warning when it cannot be loaded) | none | PATH")
    train_budget_s: float = _opt(180.0, "seconds of training steps to aim for (sizes the epoch from a timed probe; "
                                        "0: one pass over the recorded frames)")
    max_passes: float = _opt(10.0, "at most this many passes over the recorded frames, however fast the machine")
    epochs: int = _opt(1, "epochs of the joint run (both heads on one trunk), sharing the budget")
    freeze_epochs: int = _opt(0, "first epochs with the trunk frozen (worth it only with pretrained trunk weights)")
    perturb: float = _opt(0.4, "autopilot steering disturbances per simulated second while recording "
                               "(frames of the way back to the lane centre)")
    anchor_strides: tuple[int, ...] = _opt((), "detector anchor levels (empty: the starting pair's, else the default "
                                              "8 16 32 64 128); from a starting pair they may only add levels, e.g. "
                                              "4 8 16 32 64 128 for walkers a few px wide")
    anchor_sizes: tuple[float, ...] = _opt((), "base anchor side of each --anchor-strides level, as a fraction of the "
                                               "input's shorter side (a starting pair's levels keep theirs)", float)
    stopped_per_km: float = _opt(1.0, "broken-down vehicles per km in the training sessions (frames of a vehicle "
                                      "standing close ahead, which the agent must brake for: `truckpilot scenario "
                                      "stopped-vehicle`; the validation sessions have none)")
    queue_share: float = _opt(0.25, "share of the training seeds whose session the autopilot records standing "
                                     "behind broken-down vehicles instead of passing them (QUEUE_STOPPED_PER_KM of "
                                     "them, 2 x --frames-per-session frames): the approach to a vehicle straight "
                                     "ahead, which the agent must brake for and the passing autopilot never shows")
    direction_loss_weight: float = _opt(4.0, "joint loss = this x direction cross-entropy + detector loss (4: the "
                                             "detector loss is ~10x the direction loss at the start)")
    batch_size: int = _opt(32, "images per step")
    lr: float = _opt(2e-3, "peak learning rate of the heads (one-cycle)")
    trunk_lr_div: float = _opt(1.0, "trunk learning rate = lr / this (1: a randomly initialised trunk must learn "
                                    "as fast as the heads; 10 suits ImageNet weights)")
    eval_seeds: tuple[int, ...] = _opt((201, 202), "unseen seeds the trained agent drives")
    route_m: float = _opt(400.0, "route length per evaluation seed, m")
    gif_steps: int = _opt(150, "frames of the first evaluation drive kept for the GIF")
    device: str = _opt("auto", "auto | cpu | cuda")
    seed: int = _opt(0, "training seed")

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="truckpilot demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in fields(DemoConfig):
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, tuple):
            p.add_argument(flag, type=f.metadata["item"], nargs="+" if f.default else "*", default=list(f.default),
                           help=f.metadata["help"])
        else:
            p.add_argument(flag, type=type(f.default), default=f.default, help=f.metadata["help"])
    return p


@dataclass
class StepTimes:
    """Wall seconds per demo stage, for the report."""

    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, fn, *args, **kwargs):
        log.info("demo: %s ...", name)
        t0 = time.monotonic()
        result = fn(*args, **kwargs)
        self.seconds[name] = round(time.monotonic() - t0, 1)
        log.info("demo: %s done in %.1f s", name, self.seconds[name])
        return result


# ---------------------------------------------------------------------------- stages

CONDITIONS = (("day", "clear"), ("dusk", "clear"), ("day", "rain"), ("night", "clear"), ("day", "fog"),
              ("dusk", "rain"))
VAL_CONDITIONS = (("dusk", "fog"), ("night", "rain"))


#: broken-down vehicles per km in a queue session (``DemoConfig.queue_share``): the first stands 150-275 m
#: in, so the autopilot, starting from a standstill, stands behind it ~25 s (370 frames) in
QUEUE_STOPPED_PER_KM = 4.0
#: a queue session is this many times ``frames_per_session`` long: it reaches a broken-down vehicle and stands
QUEUE_FRAMES_FACTOR = 2


def queues(index: int, share: float) -> bool:
    """Whether training session ``index`` (0, 1, ...) is a queue session at ``share`` (0..1): spread
    evenly, round(n x share) of any first n sessions, so every condition gets its part."""
    return math.floor((index + 1) * share + 0.5) > math.floor(index * share + 0.5)


def session_frames(config: DemoConfig, index: int) -> int:
    """Frames recorded for training session ``index``: a queue session's QUEUE_FRAMES_FACTOR x
    ``frames_per_session``."""
    return (QUEUE_FRAMES_FACTOR if queues(index, config.queue_share) else 1) * config.frames_per_session


def record_sessions(config: DemoConfig, root: Path) -> tuple[list[str], list[str]]:
    """Headless autopilot sessions: (training session dirs, validation session dirs)."""
    from agent.recording.recorder import record_sim

    def record(seed: int, tod: str, weather: str, frames: int, stopped_per_km: float = 0.0, queue: bool = False) -> str:
        out = root / f"seed{seed:03d}-{tod}-{weather}{'-queue' if queue else ''}"
        result = record_sim(out, seed=seed, time_of_day=tod, weather=weather, autopilot=True, headless=True,
                            frames=frames, progress=False, perturb=config.perturb, stopped_per_km=stopped_per_km,
                            pass_stopped=not queue)
        log.info("recorded %s: %d frames at %.0f fps", out.name, result.frames, result.fps)
        return str(out)

    train, counts = [], {False: 0, True: 0}
    for i, seed in enumerate(config.train_seeds):
        queue = queues(i, config.queue_share)
        condition = CONDITIONS[counts[queue] % len(CONDITIONS)]  # each kind of session cycles the conditions
        counts[queue] += 1
        if queue:
            train.append(record(seed, *condition, session_frames(config, i), QUEUE_STOPPED_PER_KM, queue=True))
        else:
            train.append(record(seed, *condition, session_frames(config, i), config.stopped_per_km))
    val = [record(s, *VAL_CONDITIONS[i % len(VAL_CONDITIONS)], config.val_frames_per_session)
           for i, s in enumerate(config.val_seeds)]
    return train, val


def measure_train_rate(config: DemoConfig, steps: int = 5, clock: Callable[[], float] = time.perf_counter,
                       model_config=None) -> float:
    """Images per second of one joint training step (forward, backward, AdamW) at the demo's input size and
    batch size, on random input: batch size / the median of ``steps`` timed steps after two warm-up steps
    (a mean of 3 right after recording read 22-30 img/s on one machine). Slightly optimistic: the real
    step also matches anchors to boxes and loads data. ``clock``: seconds, read before and after each
    timed step. ``model_config``: the JointConfig the run trains (default: the defaults at ``config``'s
    input size; a starting pair's anchor levels cost more)."""
    import torch

    from training.runtime import setup_runtime, teardown_runtime
    from training.tasks import default_model_config, make_task

    runtime = setup_runtime(config.device, "auto", "auto")
    try:
        task = make_task("joint", model_config or default_model_config("joint", "none",
                                                                       (config.input_height, config.input_width)))
        model = task.build_model(init_trunk_weights=False).to(runtime.device)
        if runtime.channels_last:
            model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randn(config.batch_size, 3, config.input_height, config.input_width, device=runtime.device)
        amp = runtime.amp_dtype

        def step() -> None:
            with torch.autocast(runtime.device.type, dtype=amp or torch.float32, enabled=amp is not None):
                direction, (cls, box) = model(x)
            loss = direction.float().mean() + cls.float().mean() + box.float().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if runtime.cuda:
                torch.cuda.synchronize()

        for _ in range(2):  # warm-up: allocator, oneDNN primitive caches
            step()
        times = []
        for _ in range(steps):
            t0 = clock()
            step()
            times.append(clock() - t0)
        return config.batch_size / statistics.median(times)
    finally:
        teardown_runtime(runtime)


def plan_epoch_frames(config: DemoConfig, recorded_frames: int, images_per_s: float) -> int:
    """Frames drawn per epoch so that ``epochs`` epochs take about ``train_budget_s`` at ``images_per_s``;
    0 (one pass over the data) without a budget. At least 20 batches, at most ``max_passes`` passes."""
    if config.train_budget_s <= 0:
        return 0
    frames = int(config.train_budget_s * images_per_s / config.epochs)
    frames = min(frames, int(config.max_passes * recorded_frames))
    return max(frames // config.batch_size, 20) * config.batch_size


def starting_pair_file(config: DemoConfig) -> Path | None:
    """The packed starting pair ``config.start`` names (None: start from ``trunk_weights``)."""
    from perception.starting_pair import published_pair

    if config.start == "none":
        return None
    if config.start == "auto":
        return published_pair()
    path = Path(config.start)
    if not path.is_file():
        raise FileNotFoundError(f"--start {path}: no such file; give auto, none or a packed pair "
                                "(`truckpilot pretrain --publish DIR` writes DIR/start.safetensors)")
    return path


def starting_stem(config: DemoConfig) -> Path | None:
    """The unpacked starting pair's stem (``.../best``, for ``train joint --init``), or None."""
    from perception.starting_pair import unpack_pair

    packed = starting_pair_file(config)
    return None if packed is None else unpack_pair(packed)["direction"].with_name("best")


def with_starting_pair(config: DemoConfig) -> DemoConfig:
    """``config`` as it runs: with a starting pair, the pair's input size and ``start_lr``."""
    from dataclasses import replace

    from perception.starting_pair import read_pair_meta

    packed = starting_pair_file(config)
    if packed is None:
        return config
    height, width = read_pair_meta(packed)["cards"]["direction"]["input_size"]
    log.info("demo: fine-tuning from the starting pair %s (%dx%d input)", packed, height, width)
    return replace(config, input_height=int(height), input_width=int(width), lr=config.start_lr)


def train_models(config: DemoConfig, train: list[str], val: list[str], out: Path, init: Path | None = None) -> dict:
    """``truckpilot train joint`` through the same code as the CLI, sized to the budget; returns its summary
    (with ``best_checkpoints``: {"direction": path, "detector": path}). init: a pair's stem RUN/best to
    start from (default: ``config``'s starting pair, if any)."""
    from training.cli import joint_init_config, run_training
    from training.config import DataConfig, ModelConfig, OptimConfig, RunConfig, RuntimeConfig, TrainConfig

    init = str(init or starting_stem(config) or "")
    model = ModelConfig(init=init, trunk_weights=config.trunk_weights,
                        input_height=0 if init else config.input_height, input_width=0 if init else config.input_width,
                        anchor_strides=tuple(config.anchor_strides), anchor_sizes=tuple(config.anchor_sizes))
    epoch_frames = 0
    if config.train_budget_s > 0:
        rate = measure_train_rate(config, model_config=joint_init_config(model) if init else None)
        recorded = sum(session_frames(config, i) for i in range(len(train)))
        epoch_frames = plan_epoch_frames(config, recorded, rate)
        log.info("training probe: %.1f img/s; %d epoch(s) of %d frames (%d steps each) for a %.0f s budget "
                 "(%d frames recorded)", rate, config.epochs, epoch_frames, epoch_frames // config.batch_size,
                 config.train_budget_s, recorded)
    train_config = TrainConfig(
        task="joint", data=DataConfig(sessions=tuple(train), val_sessions=tuple(val), epoch_frames=epoch_frames),
        model=model,
        optim=OptimConfig(epochs=config.epochs, freeze_epochs=config.freeze_epochs, batch_size=config.batch_size,
                          lr=config.lr, trunk_lr_div=config.trunk_lr_div,
                          direction_loss_weight=config.direction_loss_weight),
        runtime=RuntimeConfig(device=config.device, seed=config.seed), run=RunConfig(out=str(out)),
    )
    return run_training(train_config)


def drive_and_score(config: DemoConfig, direction_ckpt: Path, detector_ckpt: Path, out: Path) -> dict:
    """Scorecard on unseen seeds, and a GIF of the first drive with the HUD."""
    import imageio.v3 as iio

    from agent.apps.drive import drive_sim, load_perceiver
    from agent.runtime.hud import HudStats, draw_hud
    from agent.apps.scorecard import run_scorecard

    perceiver = load_perceiver(str(direction_ckpt), str(detector_ckpt), device=None if config.device == "auto"
                               else config.device, engine="auto")
    card = run_scorecard(perceiver, config.eval_seeds, (("day", "clear"),), config.route_m)

    frames = []

    def keep(step, observation, perception, action, result):
        if step % 2 == 0:
            stats = HudStats(status="agent driving", speed_mps=observation.speed_mps, step=step,
                             stage_ms=dict(perception.timings_ms))
            frames.append(draw_hud(observation.frame.image, perception, result.held, stats, min_width=480))

    loop = drive_sim(perceiver, seed=config.eval_seeds[0], steps=config.gif_steps, on_tick=keep,
                     route_m=config.route_m)
    if frames:
        iio.imwrite(out / "drive.gif", frames, duration=1000 * 2 / 15, loop=0)
    card["gif_drive"] = {"steps": loop.steps, "distance_m": loop.distance_m, "fps": round(loop.fps, 1)}
    return card


# ---------------------------------------------------------------------------- report

def _copy_plots(run_dir: Path, out: Path, prefix: str) -> list[str]:
    names = []
    for png in sorted(run_dir.rglob("*.png")):
        target = out / f"{prefix}_{png.name}"
        shutil.copyfile(png, target)
        names.append(target.name)
    return names


def write_report(out: Path, config: DemoConfig, times: StepTimes, training: dict, card: dict,
                 plots: list[str]) -> Path:
    from agent.apps.scorecard import format_table

    lines = ["# TruckPilot demo report", "",
             "Recorded autopilot sessions in the built-in simulator, trained both networks, and let the "
             "trained agent drive seeds it never saw.", "",
             "## Time", "", "| stage | seconds |", "| --- | ---: |"]
    lines += [f"| {k} | {v} |" for k, v in times.seconds.items()]
    lines += ["", "## Validation (held-out seeds and conditions)", "",
              "```json", json.dumps(training.get("val"), indent=2, default=str), "```", "",
              "## Closed-loop scorecard (unseen seeds)", "", "```", format_table(card), "```", "",
              "![drive](drive.gif)", "", "## Plots", ""]
    lines += [f"![{name}]({name})" for name in plots]
    lines += ["", "## Configuration", "", "```json", json.dumps(config.to_dict(), indent=2), "```", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    (out / "scorecard.json").write_text(json.dumps(card, indent=2, default=str))
    return path


def run_demo(config: DemoConfig) -> Path:
    out = Path(config.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    config = with_starting_pair(config)
    times = StepTimes()
    train, val = times.run("record", record_sessions, config, out / "sessions")
    run_dir = out / "runs" / "joint"
    training = times.run("train", train_models, config, train, val, run_dir)
    best = training["best_checkpoints"]
    card = times.run("drive and score", drive_and_score, config, Path(best["direction"]), Path(best["detector"]),
                     out)
    plots = _copy_plots(run_dir, out, "train")
    report = write_report(out, config, times, training, card, plots)
    return report


def main(argv: list[str]) -> int:
    args = get_args_parser().parse_args(argv)
    values = {f.name: (tuple(getattr(args, f.name)) if isinstance(f.default, tuple) else getattr(args, f.name))
              for f in fields(DemoConfig)}
    config = DemoConfig(**values)
    t0 = time.monotonic()
    report = run_demo(config)
    card = json.loads((report.parent / "scorecard.json").read_text())
    print(f"demo finished in {time.monotonic() - t0:.0f} s; report: {report}")
    print(json.dumps({k: card[k] for k in ("agent", "expert", "baseline") if k in card}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
