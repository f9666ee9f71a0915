"""``truckpilot eval``: a closed-loop scorecard in the simulator, three drivers side by side.

    truckpilot eval --model runs/dir/best.safetensors --seeds 0-4 --conditions day/clear,night/rain --json
    truckpilot eval --model d.safetensors --detector det.safetensors --seeds 0-9 --route-m 2000 --json out.json
    truckpilot eval --model d.safetensors --detector det.safetensors --seeds 301-305 --route-m 2000 \
        --conditions day/clear,dusk/fog,night/rain --traffic 2 --stopped-per-km 1 --drivers agent,expert
                                       # issue 29's harder card: 15 routes of 2 km, double traffic, stopped vehicles
    truckpilot eval --live --model d.safetensors --seeds 0-2 --conditions day/clear,dusk/fog,night/rain --route-m 600
                                       # also live: the sim's own window, mss + XTest (agent.apps.scorecard_live)

Drivers (``agent.runtime.drivers``): ``agent`` (Perceiver + Controller + PWM keys), ``expert``
(the scripted autopilot, from ground truth) and ``baseline`` (the source article:
argmax direction, 0.09 s key pulses, throttle always held). Every driver drives the
same routes: one per seed x condition, ``route_m`` metres, traffic on, each on the one
driving tick of ``truckpilot drive --sim`` (``agent.runtime.loop.run_ticks``), the driver as
its decider, the intervention rules and metrics (``sim.judge``) as its scorer.

Per driver:

* ``route_completion``: distance covered / route length (0..1) within the time budget
  (``budget_factor`` x the expert's time on that route), averaged over routes;
* ``collisions``: a collision ends the route;
* ``routes_stuck``: routes ended because the rescuing expert could not move the truck on either
  (``sim.judge``: its one intervention is counted, not one per hand-back);
* ``interventions`` and ``km_per_intervention``: an intervention is a moment the expert
  must take over: off-road, the truck's centre in the oncoming lanes, or
  |lateral offset| > 1.5 m for more than ``offset_grace_s`` (a lane change crosses the
  line faster; a drift does not). It is counted, the expert drives ``recover_s`` (and
  until the truck is back within 0.5 m of a lane centre, at most ``max_recover_s``), then
  hands back (the rules: ``ScorecardConfig.judge``, a ``sim.judge.JudgeConfig``). km are those
  the driver itself drove; with no intervention
  ``km_per_intervention`` is the km driven and ``km_per_intervention_lower_bound`` is true;
* ``lane_departures_per_km``: lane changes (the "lane_departure" event) per km driven;
* ``mean_abs_offset_m``: mean |offset from the nearest lane centre| while driving;
* ``steer_changes_per_s``: changes of the steering keys (left / none / right) per second driven;
* ``steer_reversals_per_s``: reversals of the truck's steering wheel (it turns back by at least
  2 % of full lock, ``sim.judge``) per second driven: keys and analog axes alike.

``--drivers agent,analog`` adds the agent driving analog axes (``analog``: the same model and
controller, its continuous steer and pedals through ``agent.runtime.axis_control.AxisShaper``
into the simulator's continuous controls; live, through the SCS SDK input plugin's block).

Time is the simulator's (step x dt): the controller's clock is sim time, so a run is
deterministic and faster than real time. The JSON has the three driver rows at the top
level ("agent", "expert", "baseline"), plus "routes" (per route detail) and "config".
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Union

from agent.runtime.drivers import ALL_DRIVERS, ANALOG, DRIVER_NAMES, BaselineDecider, ExpertDecider, JudgeScorer, Rescue
from agent.runtime.loop import LoopParts, open_sim, run_ticks
from agent.runtime.parts import AgentDecider, Decider
from sim.judge import JudgeConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScorecardConfig:
    """How the routes are driven (units: m, s) and judged (``judge``: ``sim.judge.JudgeConfig``,
    the intervention rules)."""

    route_m: float = 1000.0  #: route length per seed x condition
    width: int = 320  #: frame size given to the drivers
    height: int = 240
    traffic_density: float = 1.0  #: traffic on the road (sim default)
    stopped_per_km: float = 0.0  #: broken-down vehicles standing in the truck's lane, per km (sim's stopped_per_km)
    budget_factor: float = 2.0  #: time budget = this x the expert's time on the route
    judge: JudgeConfig = JudgeConfig()  #: the intervention rules (frozen: one shared default is safe)


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '3' -> [3]; '1,5,7' -> [1, 5, 7] (ranges inclusive, mixable)."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-"))
                if hi < lo or lo < 0:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise ValueError(f"seeds {text!r}: use A-B (inclusive), a number, or a comma list, e.g. 0-4 or 1,5,7") from None
    if not seeds:
        raise ValueError(f"seeds {text!r} names no seed")
    return seeds


def parse_conditions(text: str) -> list[tuple[str, str]]:
    """'day/clear,night/rain' -> [("day", "clear"), ("night", "rain")], checked against the sim's."""
    from sim import TIMES_OF_DAY, WEATHERS

    out = []
    for part in text.split(","):
        bits = part.strip().split("/")
        if len(bits) != 2 or bits[0] not in TIMES_OF_DAY or bits[1] not in WEATHERS:
            raise ValueError(f"condition {part!r}: use TIME/WEATHER with TIME in {TIMES_OF_DAY} and WEATHER in "
                             f"{WEATHERS}, e.g. day/clear,night/rain")
        out.append((bits[0], bits[1]))
    return out


@dataclass(frozen=True)
class RouteScore:
    """One driver on one route. Distances in m, times in sim seconds."""

    driver: str
    seed: int
    time_of_day: str
    weather: str
    route_m: float
    distance_m: float
    driver_distance_m: float
    finished: bool
    collisions: int
    interventions: int
    lane_departures: int
    offset_sum_m: float
    driver_steps: int
    steer_changes: int
    steps: int
    budget_steps: int
    dt: float
    wall_s: float
    steer_reversals: int = 0
    stuck: bool = False  #: ended with the rescuing expert unable to move the truck on (``sim.judge``)

    @property
    def route_completion(self) -> float:
        return min(1.0, max(0.0, self.distance_m / self.route_m))


#: a driver for ``drive_route``: a Decider, or a function of the route's env -> Decider (for the
#: expert, which reads the simulator's world rather than its frames)
DriverSpec = Union[Decider, Callable[[object], Decider]]


def drive_route(driver: DriverSpec, seed: int, time_of_day: str, weather: str, budget_steps: int,
                config: ScorecardConfig = ScorecardConfig(), *, name: str | None = None,
                on_tick: Callable | None = None, analog: bool = False) -> RouteScore:
    """``driver`` drives one route (seed, condition) for at most ``budget_steps`` sim steps; an expert
    takes over at each intervention (see the module doc). Returns its RouteScore.

    The route runs on the one driving tick (``run_ticks``) with the frame source and keys of
    ``truckpilot drive --sim`` (``open_sim``), ``Rescue`` (the driver, or the expert while it
    rescues) as the decider and ``JudgeScorer`` (``sim.judge.RouteJudge``) as the scorer; it ends
    at the route's end, a collision, or the budget. name: the RouteScore's driver (default the
    driver's ``name``); on_tick: as ``LoopParts.on_tick`` (tests). analog: the env takes continuous
    controls (the driver's ``Decision.axes``; the rescuing expert drives it the same way).
    """
    from sim.judge import RouteJudge

    source, keys_out = open_sim(seed=seed, size=(config.width, config.height), time_of_day=time_of_day,
                                weather=weather, traffic=config.traffic_density, route_m=config.route_m,
                                stopped_per_km=config.stopped_per_km,
                                analog=analog)
    t0 = time.perf_counter()
    try:
        decider = driver if hasattr(driver, "decide") else driver(source.env)
        judge = RouteJudge(config.route_m, source.dt, config.judge)
        rescue = Rescue(decider, ExpertDecider(source.env, seed=seed, dt=source.dt, analog=analog), judge)
        rescue.reset()
        # budget_steps sim steps: their outcomes come with the next grab, so one tick more (its keys go nowhere)
        run_ticks(LoopParts(source, rescue, keys_out, scorer=JudgeScorer(judge), on_tick=on_tick,
                            stop_when=judge.stop_request),
                  max_steps=budget_steps + 1)
        counts = judge.to_dict()
        return RouteScore(driver=name or getattr(driver, "name", "driver"), seed=seed, time_of_day=time_of_day,
                          weather=weather, budget_steps=budget_steps, wall_s=time.perf_counter() - t0, **counts)
    finally:
        keys_out.close()
        source.close()


def make_driver(name: str, perceiver, dt: float, seed: int, controller_config=None, axis_config=None) -> DriverSpec:
    """The scorecard's driver ``name`` (DRIVER_NAMES): "agent" = ``AgentDecider`` with a
    ``Controller(controller_config)`` (as ``truckpilot drive`` builds it, the sim's speed known),
    "expert" = ``ExpertDecider`` (seeded, its own dt), "baseline" = ``BaselineDecider`` at ``dt``,
    "analog" = the agent with an ``AxisShaper(axis_config)`` (drive it with ``drive_route(analog=True)``)."""
    if name == "agent":
        from agent.runtime.controller import Controller

        return AgentDecider(perceiver, Controller(controller_config))
    if name == ANALOG:
        from agent.runtime.axis_control import AxisShaper
        from agent.runtime.controller import Controller

        return AgentDecider(perceiver, Controller(controller_config), axes=AxisShaper(axis_config))
    if name == "expert":
        return lambda env: ExpertDecider(env, seed=seed)
    if name == "baseline":
        return BaselineDecider(perceiver, dt=dt)
    raise ValueError(f"unknown driver {name!r}; choose from {ALL_DRIVERS}")


def summarise(routes: list[RouteScore]) -> dict:
    """One driver's row from its routes (see the module doc for each figure)."""
    km = sum(r.driver_distance_m for r in routes) / 1000.0
    interventions = sum(r.interventions for r in routes)
    driver_s = sum(r.driver_steps * r.dt for r in routes)
    driver_steps = sum(r.driver_steps for r in routes)
    return {
        "route_completion": round(sum(r.route_completion for r in routes) / max(1, len(routes)), 4),
        "collisions": sum(r.collisions for r in routes),
        "interventions": interventions,
        "km_per_intervention": round(km / interventions if interventions else km, 4),
        "km_per_intervention_lower_bound": interventions == 0,
        "lane_departures_per_km": round(sum(r.lane_departures for r in routes) / km, 4) if km > 0 else None,
        "mean_abs_offset_m": round(sum(r.offset_sum_m for r in routes) / driver_steps, 4) if driver_steps else None,
        "steer_changes_per_s": round(sum(r.steer_changes for r in routes) / driver_s, 4) if driver_s > 0 else None,
        "steer_reversals_per_s": round(sum(r.steer_reversals for r in routes) / driver_s, 4) if driver_s > 0 else None,
        "km_driven": round(km, 4),
        "routes": len(routes),
        "routes_finished": sum(r.finished for r in routes),
        "routes_stuck": sum(r.stuck for r in routes),
        "wall_s": round(sum(r.wall_s for r in routes), 2),
    }


def run_config(config: ScorecardConfig | None, route_m: float, drivers: tuple[str, ...], perceiver) -> ScorecardConfig:
    """The config of one scorecard run (``run_scorecard``, ``agent.apps.scorecard_live.run_live_eval``):
    ``config`` (None: the defaults) with ``route_m`` (m) as its route length. ValueError for a driver
    not in ALL_DRIVERS, or for "agent" / "baseline" / "analog" without a ``perceiver``."""
    unknown = sorted(set(drivers) - set(ALL_DRIVERS))
    if unknown:
        raise ValueError(f"unknown driver(s) {unknown}; choose from {ALL_DRIVERS}")
    if perceiver is None and set(drivers) - {"expert"}:
        raise ValueError("the agent and baseline drivers need a perceiver (a direction and/or detector model)")
    return replace(config or ScorecardConfig(), route_m=float(route_m))


def run_scorecard(perceiver, seeds, conditions=(("day", "clear"),), route_m: float = 1000.0, *,
                  drivers: tuple[str, ...] = DRIVER_NAMES, controller_config=None,
                  config: ScorecardConfig | None = None, progress: bool = True, axis_config=None) -> dict:
    """Drive every route with each driver and return the scorecard dict (``axis_config``: the
    "analog" driver's ``AxisConfig``, None: its defaults).

    perceiver: callable frame -> Perception (a Perceiver), used by "agent" and "baseline"
        (None only when ``drivers`` is just ("expert",)).
    seeds: ints; conditions: (time_of_day, weather) pairs; route_m: route length, m.
    Returns {"agent": {...}, "expert": {...}, "baseline": {...}, "routes": [...], "config": {...}}
    (rows only for the drivers asked for). The expert drives each route first: its time sets
    the budget (``budget_factor`` x its steps; 2 x route_m / 10 m/s if it did not finish).
    """
    from tqdm import tqdm

    config = run_config(config, route_m, drivers, perceiver)
    seeds, conditions = list(seeds), [tuple(c) for c in conditions]
    per_driver: dict[str, list[RouteScore]] = {name: [] for name in drivers}
    detail = []
    jobs = [(seed, tod, weather) for tod, weather in conditions for seed in seeds]
    bar = tqdm(total=len(jobs) * (len(drivers) + ("expert" not in drivers)), desc="scorecard", unit="route",
               disable=not progress, file=sys.stderr)
    for seed, tod, weather in jobs:
        expert = drive_route(make_driver("expert", None, 0.0, seed), seed, tod, weather, generous_steps(config),
                             config, name="expert")
        bar.update(1)
        dt = expert.dt
        budget = route_budget(expert, config)
        for name in drivers:
            if name == "expert":
                score = RouteScore(**{**asdict(expert), "budget_steps": budget})
            else:
                driver = make_driver(name, perceiver, dt, seed, controller_config, axis_config)
                score = drive_route(driver, seed, tod, weather, budget, config, name=name, analog=name == ANALOG)
                bar.update(1)
            per_driver[name].append(score)
            detail.append({**asdict(score), "route_completion": round(score.route_completion, 4)})
            log.info("%s seed %d %s/%s: %.0f m%s, %d interventions, %d collisions", name, seed, tod, weather,
                     score.distance_m, " (finished)" if score.finished else "", score.interventions, score.collisions)
    bar.close()
    out: dict = {name: summarise(per_driver[name]) for name in drivers}
    out["routes"] = detail
    out["config"] = {**asdict(config), "seeds": seeds, "conditions": ["/".join(c) for c in conditions],
                     "drivers": list(drivers)}
    return out


def route_budget(expert: RouteScore, config: ScorecardConfig) -> int:
    """The route's time budget in steps: ``budget_factor`` x the expert's steps on it
    (2 x route_m / 10 m/s when the expert did not finish)."""
    base_steps = expert.steps if expert.finished else int(math.ceil(config.route_m / 10.0 / expert.dt))
    return int(math.ceil(config.budget_factor * base_steps))


def generous_steps(config: ScorecardConfig) -> int:
    """The expert's own budget: enough for the route at 2 m/s on average."""
    from sim.config import DEFAULT_DT

    return int(math.ceil(config.route_m / 2.0 / DEFAULT_DT))


def format_table(card: dict) -> str:
    """The scorecard as a text table, one column per driver."""
    drivers = [d for d in ALL_DRIVERS if d in card]
    rows = ["route_completion", "collisions", "interventions", "km_per_intervention", "lane_departures_per_km",
            "mean_abs_offset_m", "steer_changes_per_s", "km_driven"]
    lines = [f"{'':<24}" + "".join(f"{d:>12}" for d in drivers)]
    for row in rows:
        cells = []
        for d in drivers:
            v = card[d].get(row)
            text = "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
            if row == "km_per_intervention" and card[d].get("km_per_intervention_lower_bound"):
                text = ">=" + text
            cells.append(f"{text:>12}")
        lines.append(f"{row:<24}" + "".join(cells))
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="truckpilot eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    from agent.apps.drive import add_perceiver_args

    add_perceiver_args(p)
    p.add_argument("--seeds", default="0-4", help="seeds, A-B inclusive or a comma list (default 0-4)")
    p.add_argument("--conditions", default="day/clear",
                   help="TIME/WEATHER list, e.g. day/clear,night/rain (default day/clear)")
    p.add_argument("--route-m", type=float, default=1000.0, help="route length per seed x condition, m (default 1000)")
    p.add_argument("--drivers", default=",".join(DRIVER_NAMES), help="which drivers (default agent,expert,baseline; "
                        "also: analog, the agent on analog axes)")
    p.add_argument("--traffic", type=float, default=1.0, help="traffic density (default 1)")
    p.add_argument("--stopped-per-km", type=float, default=0.0,
                   help="broken-down vehicles standing in the truck's lane among the traffic, per km (default 0)")
    p.add_argument("--stall-s", type=float, default=0.0,
                   help="standing still longer than this (s) is an intervention: the expert drives round what "
                        "holds the truck (default 0: never)")
    p.add_argument("--budget-factor", type=float, default=2.0, help="time budget = this x the expert's time")
    p.add_argument("--target-speed", type=float, help="speed the agent's controller holds, m/s (default 12)")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="print the scorecard as JSON (to FILE if given, else stdout)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--live", action="store_true",
                   help="also drive every route the user's way: the sim in its own window in real time, mss "
                        "capture, XTest keys under the guard; one table of in-process and live per driver, "
                        "and the latency per route (agent.apps.scorecard_live; needs an X display or Xvfb)")
    return p


def main(argv: list[str]) -> int:
    args = get_args_parser().parse_args(argv)
    from agent.apps.drive import perceiver_from_args, set_torch_threads

    set_torch_threads(args)
    try:
        seeds = parse_seeds(args.seeds)
        conditions = parse_conditions(args.conditions)
        drivers = tuple(d.strip() for d in args.drivers.split(",") if d.strip())
        perceiver = None
        if set(drivers) - {"expert"}:
            perceiver = perceiver_from_args(args)
        controller_config = None
        if args.target_speed is not None:
            from agent.runtime.controller import ControllerConfig

            controller_config = ControllerConfig(target_speed_mps=args.target_speed)
        config = ScorecardConfig(route_m=args.route_m, traffic_density=args.traffic, budget_factor=args.budget_factor,
                                 stopped_per_km=args.stopped_per_km, judge=JudgeConfig(stall_s=args.stall_s))
        if args.live and args.stopped_per_km:
            raise ValueError("--stopped-per-km is in-process only: the live card's sim window has no stopped vehicles")
        if args.live:
            from agent.apps.scorecard_live import format_live_table, run_live_eval

            card = run_live_eval(perceiver, seeds, conditions, args.route_m, drivers=drivers,
                                 controller_config=controller_config, config=config, progress=not args.no_progress)
        else:
            card = run_scorecard(perceiver, seeds, conditions, args.route_m, drivers=drivers,
                                 controller_config=controller_config, config=config, progress=not args.no_progress)
    except Exception as exc:  # noqa: BLE001 - bad options, checkpoints: one clear line
        from perception.checkpoint import CheckpointError

        if not isinstance(exc, (ValueError, CheckpointError, FileNotFoundError)):
            raise
        print(f"truckpilot eval: {exc}", file=sys.stderr)
        return 1
    table = format_live_table(card) if args.live else format_table(card)
    if args.json is None:
        print(table)
    else:
        text = json.dumps(card, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
            print(table)
            print(f"scorecard written to {args.json}")
    return 0
