"""``truckpilot dagger``: learn from the agent's own mistakes (DAgger, Ross et al. 2011) in the simulator.

A driver cloned from the expert's frames drifts into states the expert never showed it. DAgger
labels the states the learner itself visits. Each round:

1. **drive**: the current agent (Perceiver -> Controller -> PWM keys, the ``AgentDecider`` that
   ``truckpilot drive`` runs) drives ``--seeds-per-round`` routes on seeds that neither training
   nor the held-out card uses, in the in-process simulator (``--traffic``, ``--stopped-per-km``).
   Every visited frame is recorded into a session with the expert's label (``info["direction"]``:
   the scripted expert's intended steer for the world as the agent left it, provenance "sim"),
   the keys the agent held, and the model's own output (``extra.model_direction`` /
   ``model_probs``). Where the agent leaves the lane, the expert takes over as the scorecard's
   does (``agent.runtime.drivers.Rescue`` judged by ``sim.judge.RouteJudge``: off the road, in
   the oncoming lanes, or |offset| > 1.5 m for 1 s), and where it stands still for ``--stall-s``
   (behind a broken-down vehicle: the agent brakes for it but never passes, the expert drives
   round it); those frames carry ``extra.takeover`` and
   the expert's keys, the 15 frames before each takeover ``extra.pre_takeover``, so ``truckpilot sessions ls`` counts each run of them as an intervention
   (``training.sessions.interventions``) and ``--takeover-weight`` draws them more often.
2. **aggregate and fine-tune**: the round's sessions join the data (the starting data, every
   earlier round's); the joint network (both heads on one trunk) is fine-tuned from the previous
   round's checkpoint (``truckpilot train joint --init PREVIOUS``, in-process), one epoch sized to
   ``--train-seconds`` from a timed probe of the training step (the demo's planner).
3. **score**: the new pair drives the held-out card (``agent.apps.scorecard``: ``--eval-seeds`` x
   ``--eval-conditions``, ``--eval-route-m`` each, same traffic and stopped vehicles): km per
   intervention, interventions, collisions, mean |offset|.

Round 0 is the starting agent scored before any DAgger data: ``--model``/``--detector``
checkpoints (with ``--data`` / ``--val-data``: the sessions they were trained on, kept in every
round's data), or, without them, the demo's recipe (``truckpilot demo``'s recording and
training, sized by ``--start-train-seconds``; like the demo it fine-tunes from the published
starting pair, ``perception/weights/start.safetensors``, at that pair's input size, when the
checkout has one).

Output in ``--out``: ``dagger.json`` (the config, and one row per round: frames added, takeover
frames, interventions in the new data, train seconds, the checkpoint and the one it was
fine-tuned from, and the card's figures), ``dagger.md`` (the table) and ``dagger.png`` (the
figures per round); ``sessions/``, ``round0/`` (the starting pair, copied), ``roundK/train/``
(each fine-tune's run directory, ``best.direction.safetensors`` + ``best.detector.safetensors``).

``--resume`` continues the run in ``--out`` to ``--rounds`` rounds: round k+1 starts from round k's
pair, on the same data and validation sessions. The run's own settings come from its
``dagger.json``; from the command line only the budget (``--rounds``, ``--train-seconds``) and how
the machine is used (``--threads``, ``--no-progress``). Each continuation is listed under
``resumed`` in the report, so a row's budget can be told. The training rate is the one the run
measured (no second probe). A round left unfinished (its ``roundK/`` folder there, no row) is
refused with the folders to remove.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

log = logging.getLogger("truckpilot.dagger")

#: the card's conditions, and the conditions DAgger drives under (cycled over a round's seeds)
CARD_CONDITIONS = "day/clear,dusk/fog,night/rain"
#: the options ``--resume`` takes from the command line; every other setting is the run's own (its dagger.json)
RESUME_FIELDS = ("rounds", "train_seconds", "threads", "progress")
#: the row fields every round reports, in the table's order
ROW_FIELDS = ("round", "frames_added", "takeover_frames", "data_interventions", "train_s", "km_per_intervention",
              "interventions", "collisions", "routes_stuck", "mean_abs_offset_m", "route_completion", "km_driven")


@dataclass(frozen=True)
class DaggerConfig:
    """Every knob of a DAgger run (units: m, s, frames)."""

    out: str = "dagger_out"
    model: str = ""  #: starting direction checkpoint ("" with detector "": the demo's recipe)
    detector: str = ""  #: starting detector checkpoint
    data: tuple[str, ...] = ()  #: sessions the starting pair was trained on (kept in every round's data)
    val_data: tuple[str, ...] = ()  #: validation sessions (none: the recipe's, or recorded by the expert)
    rounds: int = 3
    seeds_per_round: int = 4
    frames_per_round: int = 3000  #: recorded per round, split evenly over its seeds (a route that ends gives fewer)
    route_m: float = 2000.0  #: route length of each DAgger drive
    first_seed: int = 1000  #: round k drives seeds first_seed + (k - 1) x seeds_per_round + i
    conditions: str = CARD_CONDITIONS  #: TIME/WEATHER list the DAgger drives cycle through
    traffic: float = 2.0
    stopped_per_km: float = 1.0
    #: standing still longer than this (s) is an intervention, drives and card: the expert drives the
    #: truck round what holds it (``sim.judge``; the agent brakes for a broken-down vehicle but never passes)
    stall_s: float = 5.0
    train_seconds: float = 600.0  #: training steps per round (sized from a timed probe; 0: no probe)
    min_batches: int = 5  #: ... but at least this many batches (with train_seconds 0: exactly this many)
    lr: float = 5e-4  #: peak learning rate of the fine-tune (one-cycle)
    batch_size: int = 32
    takeover_weight: float = 3.0  #: the expert's takeover frames are drawn this many times as often
    direction_loss_weight: float = 4.0
    eval_seeds: str = "301-305"
    eval_conditions: str = CARD_CONDITIONS
    eval_route_m: float = 2000.0
    val_seeds: tuple[int, ...] = (101, 102)  #: seeds of the validation sessions recorded when none are given
    val_frames: int = 300
    start_train_seconds: float = 180.0  #: the demo recipe's training budget (no --model)
    input_height: int = 96  #: the demo recipe's input size (no --model; a checkpoint keeps its own)
    input_width: int = 128
    trunk_weights: str = "imagenet"  #: the demo recipe's trunk start
    engine: str = "auto"  #: the agent's inference engine (``truckpilot drive --engine``)
    threads: int = 0  #: CPU threads of torch (training, the torch engine) and of ONNX Runtime (0: their defaults)
    device: str = "auto"
    seed: int = 0
    progress: bool = True
    resume: bool = False  #: continue the run in ``out`` (see the module doc)

    def __post_init__(self) -> None:
        if self.rounds < 0 or self.seeds_per_round < 1 or self.frames_per_round < self.seeds_per_round:
            raise ValueError(f"--rounds {self.rounds} must be >= 0, --seeds-per-round {self.seeds_per_round} >= 1 "
                             f"and --frames-per-round {self.frames_per_round} at least one frame per seed")
        if self.train_seconds < 0 or self.route_m < 50 or self.eval_route_m < 50:
            raise ValueError("--train-seconds must be >= 0 and --route-m / --eval-route-m >= 50")
        if bool(self.detector) and not self.model:
            raise ValueError("--detector needs --model (the direction checkpoint) too")

    def dagger_seeds(self, round_: int) -> list[int]:
        start = self.first_seed + (round_ - 1) * self.seeds_per_round
        return list(range(start, start + self.seeds_per_round))


# ----------------------------------------------------------------------------- one DAgger drive


class _Annotating:
    """A ``SessionWriter`` seen through: each ``append`` gets ``pending`` merged into its ``extra``,
    and is held back ``lookback`` frames, so that the frames before a takeover (the agent's drift
    that led to it) are marked ``pre_takeover`` when it starts. ``flush()`` before closing."""

    def __init__(self, writer, lookback: int) -> None:
        from collections import deque

        self._writer = writer
        self.pending: dict = {}
        self.lookback = lookback
        self._held: deque = deque()
        self._was_takeover = False

    def append(self, *args, extra=None, **kwargs) -> None:
        extra = {**(extra or {}), **self.pending}
        takeover = bool(extra.get("takeover"))
        if takeover and not self._was_takeover:
            for _, _, held in self._held:
                held["pre_takeover"] = True
        self._was_takeover = takeover
        self._held.append((args, kwargs, extra))
        while len(self._held) > self.lookback:
            self._append_oldest()

    def _append_oldest(self) -> None:
        args, kwargs, extra = self._held.popleft()
        self._writer.append(*args, extra=extra, **kwargs)

    def flush(self) -> None:
        while self._held:
            self._append_oldest()

    def __getattr__(self, name):
        return getattr(self._writer, name)


class DaggerRecorder:
    """``SimSessionRecorder`` (frame, keys held, the sim's expert label and boxes) plus, per frame,
    who drove (``extra.driver``: "agent" or "expert"; the expert's frames also ``takeover``),
    ``extra.dagger`` True, and the model's output when the agent drove (``model_direction``,
    ``model_probs``: the intervention marks name what the model said before the expert stepped in).
    The ``lookback`` frames before each takeover are marked ``pre_takeover`` (the drift that led to
    it; the judge takes over after 1 s beyond the offset limit, 15 frames). ``flush()`` before the
    writer closes."""

    def __init__(self, writer, lookback: int = 15) -> None:
        from agent.recording.sim_parts import SimSessionRecorder

        self._writer = _Annotating(writer, lookback)
        self._inner = SimSessionRecorder(self._writer)
        self.agent_frames = self.expert_frames = 0

    def flush(self) -> None:
        self._writer.flush()

    def record(self, observation, decision, result, latency_ms: float) -> None:
        extra: dict = {"dagger": True, "driver": "expert" if decision.takeover else "agent"}
        perception = decision.perception
        if perception is not None and perception.direction_probs:
            extra["model_direction"] = perception.direction
            extra["model_probs"] = {k: round(float(v), 4) for k, v in perception.direction_probs.items()}
        if decision.takeover:
            self.expert_frames += 1
        else:
            self.agent_frames += 1
        self._writer.pending = extra
        self._inner.record(observation, decision, result, latency_ms)


def dagger_drive(perceiver, out: Path, *, seed: int, time_of_day: str, weather: str, frames: int,
                 route_m: float, traffic: float, stopped_per_km: float, stall_s: float = 0.0,
                 size: tuple[int, int] = (320, 240),
                 controller_config=None, meta: dict | None = None) -> dict:
    """The agent drives one route (``seed``, condition) for at most ``frames`` ticks, the expert
    labelling every frame and taking over where the agent leaves the lane (the scorecard's rules),
    all recorded into a new session at ``out``. Returns {"session", "frames", "agent_frames",
    "expert_frames", "interventions", "collisions", "stuck", "distance_m"}; a drive whose rescue
    cannot move the truck on (``sim.judge``'s stuck) ends there."""
    from agent.runtime.controller import Controller
    from agent.runtime.drivers import ExpertDecider, JudgeScorer, Rescue
    from agent.runtime.loop import LoopParts, open_sim, run_ticks
    from agent.runtime.parts import AgentDecider
    from perception.types import DEFAULT_DETECTION_CLASSES, DIRECTIONS
    from sim.judge import JudgeConfig, RouteJudge
    from training.sessions import SessionWriter

    source, keys_out = open_sim(seed=seed, size=size, time_of_day=time_of_day, weather=weather, traffic=traffic,
                                route_m=route_m, stopped_per_km=stopped_per_km)
    try:
        first = source.first()
        info = first.info
        writer = SessionWriter.create(
            out, source={"kind": "sim", "seed": seed, "time_of_day": info.get("time_of_day", time_of_day),
                         "weather": info.get("weather", weather), "driver": "dagger", "headless": True,
                         "dt": source.dt, "traffic": traffic, "stopped_per_km": stopped_per_km, "route_m": route_m,
                         **(meta or {})},
            width=first.frame.image.shape[1], height=first.frame.image.shape[0], fps=0.0,
            classes=DEFAULT_DETECTION_CLASSES, directions=DIRECTIONS, image_format="png")
        judge = RouteJudge(route_m, source.dt, JudgeConfig(stall_s=stall_s))
        rescue = Rescue(AgentDecider(perceiver, Controller(controller_config)),
                        ExpertDecider(source.env, seed=seed, dt=source.dt), judge)
        rescue.reset()
        recorder = DaggerRecorder(writer)
        try:
            run_ticks(LoopParts(source, rescue, keys_out, recorder=recorder, scorer=JudgeScorer(judge),
                                stop_when=judge.stop_request), max_steps=frames)
        finally:
            recorder.flush()
            writer.close()
        return {"session": str(out), "frames": writer.frames_written, "agent_frames": recorder.agent_frames,
                "expert_frames": recorder.expert_frames, "interventions": judge.interventions,
                "collisions": judge.collisions, "stuck": judge.stuck, "distance_m": round(judge.distance_m, 1)}
    finally:
        keys_out.close()
        source.close()


# ----------------------------------------------------------------------------- the run


def _pair(stem: Path) -> dict[str, Path]:
    return {part: stem.with_name(f"{stem.name}.{part}.safetensors") for part in ("direction", "detector")}


def _plan_epoch_frames(config: DaggerConfig, stem: Path) -> tuple[int, float]:
    """(frames of the round's one epoch, measured img/s): ``train_seconds`` x the probe's rate,
    whole batches, at least ``min_batches``."""
    from agent.apps.demo import DemoConfig, measure_train_rate
    from training.cli import joint_init_config
    from training.config import ModelConfig

    model_config = joint_init_config(ModelConfig(init=str(stem)))
    height, width = (int(s) for s in model_config.direction.input_size)
    rate = measure_train_rate(DemoConfig(input_height=height, input_width=width, batch_size=config.batch_size,
                                         device=config.device), model_config=model_config)
    return _epoch_frames(config, rate), rate


def _epoch_frames(config: DaggerConfig, rate: float) -> int:
    """Whole batches for ``train_seconds`` at ``rate`` img/s (rate 0: ``min_batches``), at least
    ``min_batches``; never 4 steps: the one-cycle schedule's 25 % warm-up would be one step, where
    torch's OneCycleLR divides by zero."""
    batches = max(config.min_batches, int(config.train_seconds * rate / config.batch_size))
    return (batches + (batches == 4)) * config.batch_size


def fine_tune(config: DaggerConfig, init: Path, sessions: list[str], val: list[str], run_dir: Path,
              epoch_frames: int, round_: int) -> tuple[Path, dict]:
    """``truckpilot train joint --init INIT`` on ``sessions`` (validated on ``val``), one epoch of
    ``epoch_frames``; returns (the new pair's stem, the training summary)."""
    from training.cli import run_training
    from training.config import DataConfig, ModelConfig, OptimConfig, RunConfig, RuntimeConfig, TrainConfig

    train_config = TrainConfig(
        task="joint",
        data=DataConfig(sessions=tuple(sessions), val_sessions=tuple(val), epoch_frames=epoch_frames,
                        takeover_weight=config.takeover_weight),
        model=ModelConfig(init=str(init)),
        optim=OptimConfig(epochs=1, freeze_epochs=0, batch_size=config.batch_size, lr=config.lr, trunk_lr_div=1.0,
                          direction_loss_weight=config.direction_loss_weight),
        runtime=RuntimeConfig(device=config.device, seed=config.seed + round_), run=RunConfig(out=str(run_dir)))
    summary = run_training(train_config)
    best = summary.get("best_checkpoints") or summary.get("last_checkpoints")
    stem = Path(best["direction"])
    return stem.with_name(stem.name[: -len(".direction.safetensors")]), summary


def score(config: DaggerConfig, stem: Path) -> dict:
    """The held-out card for the pair at ``stem``: the scorecard's agent row (and the wall seconds)."""
    from agent.apps.drive import load_perceiver
    from agent.apps.scorecard import ScorecardConfig, parse_conditions, parse_seeds, run_scorecard
    from sim.judge import JudgeConfig

    pair = _pair(stem)
    perceiver = load_perceiver(str(pair["direction"]), str(pair["detector"]),
                               device=None if config.device == "auto" else config.device, engine=config.engine,
                               threads=config.threads or None)
    t0 = time.monotonic()
    card = run_scorecard(perceiver, parse_seeds(config.eval_seeds), parse_conditions(config.eval_conditions),
                         config.eval_route_m, drivers=("agent",), progress=config.progress,
                         config=ScorecardConfig(traffic_density=config.traffic, stopped_per_km=config.stopped_per_km,
                                                judge=JudgeConfig(stall_s=config.stall_s)))
    routes = [{k: r[k] for k in ("seed", "time_of_day", "weather", "distance_m", "finished", "stuck", "collisions",
                                 "interventions", "offset_sum_m", "driver_steps")} for r in card["routes"]]
    return {**card["agent"], "eval_s": round(time.monotonic() - t0, 1), "card_routes": routes}


def _start(config: DaggerConfig, out: Path, recipe: dict) -> tuple[Path, list[str], list[str], dict]:
    """The starting pair copied to ``out/round0/best.*`` (its stem), the starting data, the
    validation sessions, and how the start was made (``recipe``: DemoConfig fields)."""
    stem = out / "round0" / "best"
    stem.parent.mkdir(parents=True)
    train, val = list(config.data), list(config.val_data)
    if config.model:
        from training.tasks.joint import resolve_init_pair

        pair = resolve_init_pair(config.model)
        sources = {"direction": Path(config.model) if pair["direction"] is None else pair["direction"],
                   "detector": Path(config.detector) if config.detector else pair["detector"]}
        if sources["detector"] is None:
            raise ValueError(f"--model {config.model} has no detector beside it: give --detector too")
        how = {"from": "checkpoints", **{part: str(p) for part, p in sources.items()}}
    else:
        from agent.apps.demo import DemoConfig, record_sessions, train_models, with_starting_pair

        recipe = with_starting_pair(DemoConfig(**{"out": str(out / "start"), "input_height": config.input_height,
                               "input_width": config.input_width, "trunk_weights": config.trunk_weights,
                               "train_budget_s": config.start_train_seconds, "device": config.device,
                               "seed": config.seed, **recipe}))
        log.info("dagger: no --model: the demo's recipe makes the starting pair (%.0f s of training)",
                 config.start_train_seconds)
        demo_train, demo_val = record_sessions(recipe, out / "sessions" / "start")
        summary = train_models(recipe, demo_train, demo_val, out / "start" / "train")
        sources = {part: Path(p) for part, p in summary["best_checkpoints"].items()}
        train, val = train + demo_train, val or demo_val
        how = {"from": "demo recipe", "recipe": recipe.to_dict(), **{part: str(p) for part, p in sources.items()}}
    for part, path in _pair(stem).items():
        shutil.copyfile(sources[part], path)
    if not val:
        val = _record_val(config, out / "sessions")
    return stem, train, val, how


def _record_val(config: DaggerConfig, root: Path) -> list[str]:
    """Expert sessions on ``val_seeds`` under the card's conditions (never trained on)."""
    from agent.apps.scorecard import parse_conditions
    from agent.recording.recorder import record_sim

    conditions = parse_conditions(config.conditions)
    paths = []
    for i, seed in enumerate(config.val_seeds):
        tod, weather = conditions[i % len(conditions)]
        path = root / f"val-seed{seed}-{tod}-{weather}"
        record_sim(path, seed=seed, time_of_day=tod, weather=weather, frames=config.val_frames, progress=False)
        paths.append(str(path))
    return paths


def run_dagger(config: DaggerConfig, recipe: dict | None = None) -> dict:
    """Run every round (see the module doc) and write the report; returns the dagger.json dict.
    recipe: DemoConfig fields for the starting recipe (no ``model``), e.g. a test's tiny one.
    ``config.threads``: torch's thread count for the run (restored after it)."""
    import torch

    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _run_dagger(config, recipe)
    finally:
        torch.set_num_threads(threads)


def _run_dagger(config: DaggerConfig, recipe: dict | None) -> dict:
    from agent.apps.scorecard import parse_conditions, parse_seeds
    from training.sessions import Session
    from training.sessions.interventions import session_interventions

    out = Path(config.out)
    if config.resume:
        saved = read_report(out)
        config = resumed_config(config, saved["config"])
    elif out.exists() and any(out.iterdir()):
        raise ValueError(f"--out {out} exists and is not empty: choose a new directory (or --resume the run in it)")
    eval_seeds = set(parse_seeds(config.eval_seeds))
    used = {s for k in range(1, config.rounds + 1) for s in config.dagger_seeds(k)}
    if used & eval_seeds or set(config.val_seeds) & (eval_seeds | used):
        raise ValueError(f"DAgger seeds {sorted(used)}, validation seeds {list(config.val_seeds)} and the card's "
                         f"seeds {sorted(eval_seeds)} must not overlap")
    conditions = parse_conditions(config.conditions)
    parse_conditions(config.eval_conditions)
    t_start = time.monotonic()
    if config.resume:
        report, stem, sessions, val, rate = _resume(config, out, saved)
    else:
        out.mkdir(parents=True, exist_ok=True)
        stem, sessions, val, how = _start(config, out, dict(recipe or {}))
        report = {"config": asdict(config), "start": how, "start_data": list(sessions), "val_data": val,
                  "rounds": []}
        report["rounds"].append(_row(0, stem, None, [], 0.0, score(config, stem), {}))
        _write(out, report)
        rate = None
    wall_before = float(report.get("wall_s") or 0.0)
    rows = report["rounds"]
    for k in range(len(rows), config.rounds + 1):
        round_dir = out / f"round{k}"
        round_dir.mkdir()
        from agent.apps.drive import load_perceiver

        pair = _pair(stem)
        perceiver = load_perceiver(str(pair["direction"]), str(pair["detector"]),
                                   device=None if config.device == "auto" else config.device, engine=config.engine,
                                   threads=config.threads or None)
        seeds = config.dagger_seeds(k)
        per_seed = int(math.ceil(config.frames_per_round / len(seeds)))
        drives = []
        t0 = time.monotonic()
        for i, seed in enumerate(seeds):
            tod, weather = conditions[(i + k) % len(conditions)]
            path = out / "sessions" / f"round{k}-seed{seed}-{tod}-{weather}"
            drive = dagger_drive(perceiver, path, seed=seed, time_of_day=tod, weather=weather, frames=per_seed,
                                 route_m=config.route_m, traffic=config.traffic, stopped_per_km=config.stopped_per_km,
                                 stall_s=config.stall_s,
                                 meta={"dagger_round": k, "model": str(stem)})
            drive["data_interventions"] = len(session_interventions(Session.open(path)))
            log.info("dagger round %d: seed %d %s/%s: %d frames (%d the expert's), %d interventions", k, seed, tod,
                     weather, drive["frames"], drive["expert_frames"], drive["data_interventions"])
            drives.append(drive)
        drive_s = time.monotonic() - t0
        sessions = sessions + [d["session"] for d in drives]
        if config.train_seconds <= 0:  # no probe: min_batches only
            epoch_frames, rate = _epoch_frames(config, 0.0), 0.0
        elif not rate:
            epoch_frames, rate = _plan_epoch_frames(config, stem)
        else:
            epoch_frames = _epoch_frames(config, rate)
        t0 = time.monotonic()
        new_stem, summary = fine_tune(config, stem, sessions, val, round_dir / "train", epoch_frames, k)
        train_s = time.monotonic() - t0
        card = score(config, new_stem)
        rows.append(_row(k, new_stem, stem, drives, train_s, card,
                         {"drive_s": round(drive_s, 1), "epoch_frames": epoch_frames, "train_img_per_s": round(rate, 1),
                          "data_sessions": len(sessions), "train_seconds": config.train_seconds,
                          "val": summary.get("val")}))
        stem = new_stem
        report["wall_s"] = round(wall_before + time.monotonic() - t_start, 1)
        _write(out, report)
        log.info("dagger round %d: %s", k, {f: rows[-1][f] for f in ROW_FIELDS})
    report["wall_s"] = round(wall_before + time.monotonic() - t_start, 1)
    _write(out, report)
    return report


def read_report(out: Path) -> dict:
    """The run's report, ``out``/dagger.json; FileNotFoundError naming it when there is none."""
    path = out / "dagger.json"
    if not path.is_file():
        raise FileNotFoundError(f"--resume: {path} not found: --out must name a DAgger run's folder")
    return json.loads(path.read_text())


def resumed_config(given: DaggerConfig, saved: dict) -> DaggerConfig:
    """The run's own config (``saved``: its dagger.json's "config"), with ``RESUME_FIELDS`` from ``given``."""
    tuples = {name: tuple(saved[name]) for name in ("data", "val_data", "val_seeds")}
    known = {f.name for f in fields(DaggerConfig)}
    run_config = DaggerConfig(**{**{k: v for k, v in saved.items() if k in known}, **tuples})
    return replace(run_config, out=given.out, resume=True, **{name: getattr(given, name) for name in RESUME_FIELDS})


def _resume(config: DaggerConfig, out: Path, report: dict) -> tuple[dict, Path, list[str], list[str], float | None]:
    """(the report so far, the last round's stem, its data, the validation sessions, the measured
    training rate) of the run in ``out`` (``report``: its dagger.json); ValueError when it has
    ``config.rounds`` rounds already, or when a round was left unfinished."""
    rows = report["rounds"]
    done = len(rows) - 1
    if done >= config.rounds:
        raise ValueError(f"--resume: {out} has {done} rounds already: ask for more with --rounds {done + 1}")
    leftovers = [out / f"round{done + 1}", *sorted((out / "sessions").glob(f"round{done + 1}-*"))]
    leftovers = [str(p) for p in leftovers if p.exists()]
    if leftovers:
        raise ValueError(f"--resume: round {done + 1} was left unfinished in {out}: remove {' '.join(leftovers)} "
                         "to run it again")
    if "start_data" in report:
        start_data = list(report["start_data"])
    elif report["start"].get("from") == "checkpoints":  # reports written before start_data: --data was the start's
        start_data = list(report["config"]["data"])
    else:
        raise ValueError(f"--resume: {out / 'dagger.json'} does not list the starting data: start a new run")
    sessions = start_data + [d["session"] for row in rows[1:] for d in row["drives"]]
    missing = [p for p in sessions + list(report["val_data"]) if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"--resume: the run's sessions are gone: {', '.join(missing[:3])}")
    report["config"] = asdict(config)
    report.setdefault("resumed", []).append({"after_round": done, **{name: getattr(config, name)
                                                                      for name in RESUME_FIELDS}})
    rate = rows[-1].get("train_img_per_s") if done else None
    return report, Path(rows[-1]["checkpoint"]), sessions, list(report["val_data"]), rate


def _row(k: int, stem: Path, init: Path | None, drives: list[dict], train_s: float, card: dict, more: dict) -> dict:
    from perception.quantize import checkpoint_digest

    pair = _pair(stem)
    return {
        "round": k, "frames_added": sum(d["frames"] for d in drives),
        "takeover_frames": sum(d["expert_frames"] for d in drives),
        "data_interventions": sum(d["data_interventions"] for d in drives), "train_s": round(train_s, 1),
        "km_per_intervention": card["km_per_intervention"],
        "km_per_intervention_lower_bound": card["km_per_intervention_lower_bound"],
        "interventions": card["interventions"], "collisions": card["collisions"],
        "routes_stuck": card["routes_stuck"], "mean_abs_offset_m": card["mean_abs_offset_m"],
        "route_completion": card["route_completion"],
        "km_driven": card["km_driven"], "eval_s": card["eval_s"], "card_routes": card["card_routes"],
        "checkpoint": str(stem), "init": str(init) if init is not None else None,
        "sha256": {part: checkpoint_digest(p)[:16] for part, p in pair.items()},
        "drives": drives, **more,
    }


# ----------------------------------------------------------------------------- report


def format_markdown(report: dict) -> str:
    """The rounds as a markdown table (km per intervention '>=' when no intervention bounds it)."""
    lines = ["| " + " | ".join(ROW_FIELDS) + " |", "|" + "---:|" * len(ROW_FIELDS)]
    for row in report["rounds"]:
        cells = []
        for f in ROW_FIELDS:
            v = row[f]
            text = "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
            if f == "km_per_intervention" and row.get("km_per_intervention_lower_bound"):
                text = ">=" + text
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write(out: Path, report: dict) -> None:
    (out / "dagger.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    c = report["config"]
    text = ["# DAgger", "",
            f"Held-out card: seeds {c['eval_seeds']} x {c['eval_conditions']}, {c['eval_route_m']:.0f} m each, "
            f"traffic {c['traffic']}, {c['stopped_per_km']} stopped vehicles per km. Round 0 is the starting agent.",
            "", format_markdown(report), "", "![dagger](dagger.png)", ""]
    (out / "dagger.md").write_text("\n".join(text))
    _plot(out / "dagger.png", report["rounds"])


def _plot(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = [r["round"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    axes[0].plot(k, [r["km_per_intervention"] for r in rows], "o-")
    axes[0].set_title("km per intervention (higher is better)")
    axes[1].plot(k, [r["interventions"] for r in rows], "o-", label="interventions")
    axes[1].plot(k, [r["collisions"] for r in rows], "s-", label="collisions")
    axes[1].legend()
    axes[1].set_title("on the held-out card")
    axes[2].plot(k, [r["mean_abs_offset_m"] or 0.0 for r in rows], "o-")
    axes[2].set_title("mean |offset| m")
    for ax in axes:
        ax.set_xlabel("round")
        ax.set_xticks(k)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- CLI


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="truckpilot dagger", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = DaggerConfig()
    p.add_argument("--out", default=d.out, help=f"output directory, new or empty (default {d.out})")
    p.add_argument("--model", default="", metavar="CKPT",
                   help="starting direction checkpoint, or a joint run's stem RUN/best (default: the demo's recipe)")
    p.add_argument("--detector", default="", metavar="CKPT", help="starting detector checkpoint")
    p.add_argument("--data", nargs="*", default=[], metavar="SESSION",
                   help="sessions the starting pair was trained on: part of every round's data")
    p.add_argument("--val-data", nargs="*", default=[], metavar="SESSION",
                   help="validation sessions (default: the recipe's, or expert sessions recorded on --val-seeds)")
    p.add_argument("--rounds", type=int, default=d.rounds, help=f"DAgger rounds after round 0 (default {d.rounds})")
    p.add_argument("--seeds-per-round", type=int, default=d.seeds_per_round,
                   help=f"routes the agent drives per round (default {d.seeds_per_round})")
    p.add_argument("--frames-per-round", type=int, default=d.frames_per_round,
                   help=f"frames recorded per round, split over its seeds (default {d.frames_per_round})")
    p.add_argument("--route-m", type=float, default=d.route_m, help=f"route length of a DAgger drive, m (default "
                                                                     f"{d.route_m:.0f})")
    p.add_argument("--first-seed", type=int, default=d.first_seed,
                   help=f"round k drives seeds FIRST + (k-1) x seeds-per-round ... (default {d.first_seed})")
    p.add_argument("--conditions", default=d.conditions, help=f"TIME/WEATHER list the DAgger drives cycle through "
                                                              f"(default {d.conditions})")
    p.add_argument("--train-seconds", type=float, default=d.train_seconds,
                   help=f"training steps per round, s, sized from a timed probe (default {d.train_seconds:.0f})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"fine-tune peak learning rate (default {d.lr})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"images per step (default {d.batch_size})")
    p.add_argument("--takeover-weight", type=float, default=d.takeover_weight,
                   help=f"draw the expert's takeover frames this many times as often (default {d.takeover_weight})")
    p.add_argument("--eval-seeds", default=d.eval_seeds, help=f"the held-out card's seeds (default {d.eval_seeds})")
    p.add_argument("--eval-conditions", default=d.eval_conditions,
                   help=f"the card's TIME/WEATHER list (default {d.eval_conditions})")
    p.add_argument("--eval-route-m", type=float, default=d.eval_route_m,
                   help=f"the card's route length, m (default {d.eval_route_m:.0f})")
    p.add_argument("--traffic", type=float, default=d.traffic, help=f"traffic density, drives and card (default "
                                                                    f"{d.traffic})")
    p.add_argument("--stopped-per-km", type=float, default=d.stopped_per_km,
                   help=f"stopped vehicles in the truck's lane per km, drives and card (default {d.stopped_per_km})")
    p.add_argument("--stall-s", type=float, default=d.stall_s,
                   help=f"standing still longer than this is an intervention, drives and card (default {d.stall_s}; "
                        "0: never)")
    p.add_argument("--start-train-seconds", type=float, default=d.start_train_seconds,
                   help="without --model: the demo recipe's training budget, s")
    p.add_argument("--input-height", type=int, default=d.input_height, help="without --model: the recipe's input height")
    p.add_argument("--input-width", type=int, default=d.input_width, help="without --model: the recipe's input width")
    p.add_argument("--trunk-weights", default=d.trunk_weights, help="without --model: imagenet | none | PATH")
    p.add_argument("--engine", default=d.engine, help="the agent's inference engine (as truckpilot drive)")
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda (training, and the torch engine)")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="CPU threads of torch and ONNX Runtime (default: theirs; 1 is much faster on a busy machine)")
    p.add_argument("--seed", type=int, default=d.seed, help="training seed")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out to --rounds rounds (its settings, but for --rounds, "
                        "--train-seconds, --threads and --no-progress, come from its dagger.json)")
    return p


def config_from_args(args: argparse.Namespace) -> DaggerConfig:
    """The DaggerConfig of parsed options: each is named after its field (--val-data: val_data); the
    fields without an option keep their defaults. ValueError for values DaggerConfig refuses."""
    given = {f.name: getattr(args, f.name) for f in fields(DaggerConfig) if hasattr(args, f.name)}
    return DaggerConfig(**{**given, "data": tuple(args.data), "val_data": tuple(args.val_data),
                           "progress": not args.no_progress})


def main(argv: list[str]) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        report = run_dagger(config)
    except (ValueError, FileNotFoundError) as exc:
        print(f"truckpilot dagger: {exc}", file=sys.stderr)
        return 1
    print(format_markdown(report))
    print(f"dagger finished in {report['wall_s']:.0f} s; report: {Path(config.out) / 'dagger.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
