"""``truckpilot scenario stopped-vehicle``: does the agent brake for a broken-down vehicle in its lane?

A scripted scenario in the in-process simulator: an empty road (no traffic, no pedestrians) with
broken-down vehicles standing in the truck's lane (``sim.world``'s stopped vehicles, the first
150-400 m past the start), driven by the agent as ``truckpilot drive --sim`` drives (Perceiver ->
Controller -> PWM keys; no expert, no rescue). Per run it reports:

* ``outcome``: "stopped" (the truck stood still, under ``standstill_mps`` for ``standstill_s``, with
  the vehicle still ahead), "collision", or "timeout";
* ``stop_gap_m``: the gap, m, from the truck's front bumper to the stopped vehicle's rear bumper
  where it stood (None unless it stopped);
* ``brake_gap_m`` / ``brake_speed_mps``: that gap and the truck's speed when the controller first
  braked for it (None when it never braked), and ``min_gap_m``.

The agent's controller brakes on the time-to-collision of the nearest box in its path (see
``agent.runtime.controller``); it does not steer round a stopped vehicle, so "stopped" is the
outcome a good detector gives. The expert would pass it; this scenario scores braking alone.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StopScenarioConfig:
    """The scenario's road and when a run ends."""

    route_m: float = 800.0  #: route length, m (the first stopped vehicle stands 170-420 m in)
    curvature: float = 0.0  #: the road's constant curvature, 1/m (0: straight; the seed places the vehicles)
    stopped_per_km: float = 2.0  #: spacing 500 m on average: one stopped vehicle ahead at a time
    standstill_mps: float = 0.2  #: slower than this counts as standing
    standstill_s: float = 3.0  #: ... for this long: the run ends "stopped"
    timeout_s: float = 120.0  #: simulated seconds before the run ends "timeout"


@dataclass
class StopRun:
    """One run's figures (see the module doc)."""

    seed: int
    time_of_day: str
    weather: str
    outcome: str = "timeout"
    stop_gap_m: float | None = None
    brake_gap_m: float | None = None
    brake_speed_mps: float | None = None
    min_gap_m: float = math.inf
    sim_s: float = 0.0


def _first_stopped_gap(world) -> float:
    """Gap (m) from the truck's front to the rear of the nearest stopped vehicle not yet behind it; inf if none."""
    t = world.truck
    gaps = [v.s - v.length / 2 - t.s for v in world.vehicles if v.stopped and v.s + v.length / 2 > t.s]
    return min(gaps, default=math.inf)


def run_stop_scenario(perceiver, seed: int, time_of_day: str, weather: str,
                      config: StopScenarioConfig = StopScenarioConfig(), controller_config=None,
                      on_start=None) -> StopRun:
    """The agent drives one scenario road (``seed``, condition); returns its StopRun.
    on_start: called with the ``SimSource`` once the sim is reset (its ``info`` is each frame's
    ground truth: the tests' label-reading perceiver attaches here)."""
    from agent.runtime.controller import Controller
    from agent.runtime.loop import open_sim, run_loop
    from agent.types import StopReason

    source, keys_out = open_sim(seed=seed, time_of_day=time_of_day, weather=weather, traffic=0.0,
                                route_m=config.route_m, stopped_per_km=config.stopped_per_km, pedestrian_density=0.0,
                                road_curvature=config.curvature)
    run = StopRun(seed, time_of_day, weather)
    still = {"steps": 0}
    try:
        source.first()
        if on_start is not None:
            on_start(source)
        world = source.env.unwrapped.world
        standstill_steps = max(1, int(round(config.standstill_s / source.dt)))

        def on_tick(step, observation, perception, action, result) -> None:
            gap = _first_stopped_gap(world)
            run.min_gap_m = min(run.min_gap_m, gap)
            speed = float(world.truck.v)
            if action is not None and action.brake > 0 and run.brake_gap_m is None and math.isfinite(gap):
                run.brake_gap_m, run.brake_speed_mps = round(gap, 2), round(speed, 2)
            still["steps"] = still["steps"] + 1 if speed < config.standstill_mps and math.isfinite(gap) else 0
            if still["steps"] >= standstill_steps:
                run.outcome, run.stop_gap_m = "stopped", round(gap, 2)

        stats = run_loop(source, perceiver, Controller(controller_config), keys_out,
                         max_steps=int(config.timeout_s / source.dt), on_tick=on_tick,
                         stop_when=lambda: "stood still behind the stopped vehicle" if run.outcome == "stopped" else None)
        if stats.stopped_by == StopReason.COLLISION:
            run.outcome = "collision"
        run.sim_s = round(stats.steps * source.dt, 1)
        run.min_gap_m = round(run.min_gap_m, 2)
        return run
    finally:
        keys_out.close()
        source.close()


def summarise(runs: list[StopRun]) -> dict:
    """Counts per outcome, and the mean stop gap and brake gap of the runs that stopped."""
    stopped = [r for r in runs if r.outcome == "stopped"]
    return {"runs": len(runs), **{o: sum(r.outcome == o for r in runs) for o in ("stopped", "collision", "timeout")},
            "mean_stop_gap_m": round(sum(r.stop_gap_m for r in stopped) / len(stopped), 2) if stopped else None,
            "mean_brake_gap_m": round(sum(r.brake_gap_m for r in stopped) / len(stopped), 2) if stopped else None}


def get_args_parser() -> argparse.ArgumentParser:
    from agent.apps.drive import add_perceiver_args

    p = argparse.ArgumentParser(prog="truckpilot scenario", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=("stopped-vehicle",), help="the scenario")
    add_perceiver_args(p)
    p.add_argument("--seeds", default="401-405", help="seeds, A-B inclusive or a comma list (default 401-405)")
    p.add_argument("--conditions", default="day/clear", help="TIME/WEATHER list (default day/clear)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a ControllerConfig field changed, e.g. range_brake=false or stop_gap_m=12 (repeatable)")
    p.add_argument("--json", metavar="FILE", help="also write the runs and the summary as JSON to FILE")
    return p


def main(argv: list[str]) -> int:
    from agent.apps.cli_args import with_settings
    from agent.apps.drive import perceiver_from_args, set_torch_threads
    from agent.apps.scorecard import parse_conditions, parse_seeds
    from agent.runtime.controller import ControllerConfig
    from perception.checkpoint import CheckpointError

    args = get_args_parser().parse_args(argv)
    set_torch_threads(args)
    try:
        seeds, conditions = parse_seeds(args.seeds), parse_conditions(args.conditions)
        controller_config = with_settings(ControllerConfig(), args.set)
        perceiver = perceiver_from_args(args)
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        print(f"truckpilot scenario: {exc}", file=sys.stderr)
        return 2
    runs = []
    for tod, weather in conditions:
        for seed in seeds:
            run = run_stop_scenario(perceiver, seed, tod, weather, controller_config=controller_config)
            log.info("scenario seed %d %s/%s: %s", seed, tod, weather, asdict(run))
            runs.append(run)
    result = {"runs": [asdict(r) for r in runs], "summary": summarise(runs)}
    print(f"{'seed':>5} {'condition':<12} {'outcome':<10} {'stop gap m':>10} {'brake gap m':>11} {'at m/s':>7}")
    for r in runs:
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        print(f"{r.seed:>5} {r.time_of_day + '/' + r.weather:<12} {r.outcome:<10} {fmt(r.stop_gap_m):>10} "
              f"{fmt(r.brake_gap_m):>11} {fmt(r.brake_speed_mps):>7}")
    print(json.dumps(result["summary"]))
    if args.json:
        from pathlib import Path

        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
