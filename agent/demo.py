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
import shutil
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

log = logging.getLogger("truckpilot.demo")


def _opt(default, help_: str):
    return field(default=default, metadata={"help": help_})


@dataclass(frozen=True)
class DemoConfig:
    """Every knob of the demo. The defaults fit a fresh clone (set-up included) in 10 minutes on a 2-core
    AVX2 CPU, where the joint run trains at ~15 img/s at 96x128: one epoch over 3,000 frames."""

    out: str = _opt("demo_out", "output directory (replaced if it exists)")
    train_seeds: tuple[int, ...] = _opt((1, 2, 3, 4, 5, 6), "simulator seeds recorded for training")
    val_seeds: tuple[int, ...] = _opt((101, 102), "seeds recorded for validation (never trained on)")
    frames_per_session: int = _opt(500, "frames recorded per training session (15 frames per simulated second)")
    val_frames_per_session: int = _opt(300, "frames recorded per validation session")
    input_height: int = _opt(96, "model input height, px (the frames are 320x240)")
    input_width: int = _opt(128, "model input width, px")
    trunk_weights: str = _opt("imagenet", "trunk initialisation: imagenet (random with a warning when it "
                                          "cannot be loaded) | none | PATH")
    epochs: int = _opt(1, "epochs of the joint run (both heads on one trunk); each costs ~4 min on a 2-core CPU")
    freeze_epochs: int = _opt(0, "first epochs with the trunk frozen (worth it only with pretrained trunk weights)")
    perturb: float = _opt(0.4, "autopilot steering disturbances per simulated second while recording "
                               "(frames of the way back to the lane centre)")
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
            p.add_argument(flag, type=int, nargs="+", default=list(f.default), help=f.metadata["help"])
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


def record_sessions(config: DemoConfig, root: Path) -> tuple[list[str], list[str]]:
    """Headless autopilot sessions: (training session dirs, validation session dirs)."""
    from agent.recorder import record_sim

    def record(seed: int, tod: str, weather: str, frames: int) -> str:
        out = root / f"seed{seed:03d}-{tod}-{weather}"
        result = record_sim(out, seed=seed, time_of_day=tod, weather=weather, autopilot=True, headless=True,
                            frames=frames, progress=False, perturb=config.perturb)
        log.info("recorded %s: %d frames at %.0f fps", out.name, result.frames, result.fps)
        return str(out)

    train = [record(s, *CONDITIONS[i % len(CONDITIONS)], config.frames_per_session)
             for i, s in enumerate(config.train_seeds)]
    val = [record(s, *VAL_CONDITIONS[i % len(VAL_CONDITIONS)], config.val_frames_per_session)
           for i, s in enumerate(config.val_seeds)]
    return train, val


def train_models(config: DemoConfig, train: list[str], val: list[str], out: Path) -> dict:
    """``truckpilot train joint`` through the same code as the CLI; returns its summary (with
    ``best_checkpoints``: {"direction": path, "detector": path})."""
    from training.cli import run_training
    from training.config import TrainConfig

    train_config = TrainConfig(
        task="joint", data=tuple(train), val_data=tuple(val), out=str(out), trunk_weights=config.trunk_weights,
        input_height=config.input_height, input_width=config.input_width, epochs=config.epochs, freeze_epochs=config.freeze_epochs,
        batch_size=config.batch_size, device=config.device, seed=config.seed, lr=config.lr,
        trunk_lr_div=config.trunk_lr_div,
    )
    return run_training(train_config)


def drive_and_score(config: DemoConfig, direction_ckpt: Path, detector_ckpt: Path, out: Path) -> dict:
    """Scorecard on unseen seeds, and a GIF of the first drive with the HUD."""
    import imageio.v3 as iio

    from agent.drive import drive_sim, load_perceiver
    from agent.hud import HudStats, draw_hud
    from agent.scorecard import run_scorecard

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
    from agent.scorecard import format_table

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
