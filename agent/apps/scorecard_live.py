"""``truckpilot eval --live``: the scorecard's routes driven the user's way, beside in-process.

    truckpilot eval --live --model dir.safetensors --seeds 0-2 \\
        --conditions day/clear,dusk/fog,night/rain --route-m 600 --json live.json

Every route (seed x condition, ``route_m`` m, traffic on) is driven twice per driver:

* in-process, as ``truckpilot eval`` drives it (``agent.apps.scorecard.drive_route``: sim time,
  the one driving tick, ``sim.judge`` as the scorer);
* live (``agent.apps.live_sim.drive_live``): the simulator runs as its own window process in
  real time (15 frames/s); the agent captures the window with mss and its keys reach the sim
  through the X server (XTest) under the safety guard, as ``truckpilot drive --window`` runs;
  the sim judges the route itself from ground truth with the same rules (``sim.judge``: the
  expert takes over at an intervention and hands back) and writes its counts at the end. The
  baseline is driven the same way (``BaselineController`` in the live loop); the expert is the
  sim's own autopilot (``--autopilot``), judged the same way. The ``analog`` driver (asked for by
  name) is the agent steering and pressing the pedals through analog axes: the simulator's
  continuous controls in-process; live, the SCS SDK input plugin's block, which the sim window
  reads (``truckpilot sim --scs-controls``) and ``drive --window --axes`` writes.

A game window gives no speed, so the agent drives on the controller's cruise throttle duty in
both columns (``AgentDecider(use_speed=False)``; plain ``truckpilot eval`` holds a target speed
from the sim's speed). The time budget per route is the scorecard's (``route_budget``, from the
in-process expert). Live, the agent is not told of a hand-back (a game would not tell it
either): its controller goes on from its own state, where in-process it starts afresh.

Latency per route (live): frame age at capture (the sim shows a frame -> the agent grabs it)
and frame to key (shown -> the keys sent), p50 / p95 ms, from the sim's step log joined with
the agent's ticks (``agent.tools.realtime_probe``); the share of decisions whose keys reached
the sim a step later than in-process; frames never acted on; and the sim's speed against real time.
"""
from __future__ import annotations

import logging
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.apps.live_sim import LiveDrive, LiveRoute, drive_live, x_display
from agent.apps.scorecard import (
    RouteScore,
    ScorecardConfig,
    drive_route,
    generous_steps,
    make_driver,
    route_budget,
    run_config,
    summarise,
)
from agent.runtime.drivers import ALL_DRIVERS, ANALOG, DRIVER_NAMES

log = logging.getLogger(__name__)

#: the metric rows of the side-by-side table
TABLE_ROWS: tuple[str, ...] = ("route_completion", "collisions", "interventions", "km_per_intervention",
                               "lane_departures_per_km", "mean_abs_offset_m", "steer_changes_per_s",
                               "steer_reversals_per_s", "km_driven")


@dataclass(frozen=True)
class RouteLatency:
    """The live timing of one driver on one route (ms unless named; see the module doc)."""

    driver: str
    seed: int
    condition: str
    frame_age_p50_ms: float
    frame_age_p95_ms: float
    frame_to_key_p50_ms: float
    frame_to_key_p95_ms: float
    loop_frame_to_key_p50_ms: float  #: the loop's own figure: grab -> keys sent
    loop_frame_to_key_p95_ms: float
    keys_late_share: float  #: decisions whose keys reached the sim later than in-process
    frames_dropped: int  #: frames the sim showed that the agent never acted on
    realtime_ratio: float  #: sim time / wall time of the sim window


def in_process_driver(name: str, perceiver, dt: float, seed: int, controller_config=None):
    """The in-process twin of the live driver ``name``: the agent (keys, or analog axes) without the
    sim's speed."""
    if name in ("agent", ANALOG):
        from agent.runtime.axis_control import AxisShaper
        from agent.runtime.controller import Controller
        from agent.runtime.parts import AgentDecider

        return AgentDecider(perceiver, Controller(controller_config), use_speed=False,
                            axes=AxisShaper() if name == ANALOG else None)
    return make_driver(name, perceiver, dt, seed, controller_config)


def live_score(name: str, route: LiveRoute, drive: LiveDrive) -> RouteScore:
    """The RouteScore of a live drive, from the counts the sim window's judge wrote."""
    return RouteScore(driver=name, seed=route.seed, time_of_day=route.time_of_day, weather=route.weather,
                      budget_steps=route.budget_steps or 0, wall_s=float(drive.summary.get("wall_s") or 0.0),
                      **drive.summary["judge"])


def latency_of(name: str, route: LiveRoute, drive: LiveDrive) -> RouteLatency | None:
    if drive.report is None or drive.stats is None:
        return None
    r, loop = drive.report, drive.stats.stages.get("frame_to_key")
    late = sum(v for k, v in r.landing.items() if k > 0)
    return RouteLatency(name, route.seed, f"{route.time_of_day}/{route.weather}", r.capture_age_ms.p50,
                        r.capture_age_ms.p95, r.decision_age_ms.p50, r.decision_age_ms.p95,
                        round(loop.p50_ms, 2) if loop else float("nan"), round(loop.p95_ms, 2) if loop else float("nan"),
                        round(late / max(1, sum(r.landing.values())), 4), r.dropped,
                        float(drive.summary.get("realtime_ratio") or 0.0))


def run_live_eval(perceiver, seeds, conditions, route_m: float, *, drivers: tuple[str, ...] = DRIVER_NAMES,
                  controller_config=None, config: ScorecardConfig | None = None, workdir: str | None = None,
                  progress: bool = True) -> dict:
    """Every route in-process and live for each driver. Returns {"in_process": {driver: row},
    "live": {driver: row}, "latency": [RouteLatency dicts], "routes": [per route detail], "config"}."""
    config = run_config(config, route_m, drivers, perceiver)
    size = (config.width, config.height)
    scores: dict[str, dict[str, list[RouteScore]]] = {"in_process": {d: [] for d in drivers},
                                                      "live": {d: [] for d in drivers}}
    latency: list[RouteLatency] = []
    detail: list[dict] = []
    with x_display() as display, tempfile.TemporaryDirectory(prefix="eval-live-") as scratch:
        base = Path(workdir or scratch)
        for tod, weather in conditions:
            for seed in seeds:
                expert = drive_route(make_driver("expert", None, 0.0, seed), seed, tod, weather,
                                     generous_steps(config), config, name="expert")
                budget = route_budget(expert, config)
                route = LiveRoute(seed, tod, weather, config.route_m, config.traffic_density, budget_steps=budget)
                for name in drivers:
                    if name == "expert":
                        here = RouteScore(**{**asdict(expert), "budget_steps": budget})
                    else:
                        here = drive_route(in_process_driver(name, perceiver, expert.dt, seed, controller_config),
                                           seed, tod, weather, budget, config, name=name, analog=name == ANALOG)
                    live_route = route if name != "expert" else LiveRoute(
                        seed, tod, weather, config.route_m, config.traffic_density, budget_steps=generous_steps(config))
                    drive = drive_live(perceiver, live_route, driver=name, controller_config=controller_config,
                                       display=display, workdir=base / f"{seed}-{tod}-{weather}", size=size)
                    live = live_score(name, live_route, drive)
                    if name == "expert":
                        live = RouteScore(**{**asdict(live), "budget_steps": budget})
                    scores["in_process"][name].append(here)
                    scores["live"][name].append(live)
                    lat = latency_of(name, route, drive)
                    if lat is not None:
                        latency.append(lat)
                    detail.append({"driver": name, "seed": seed, "condition": f"{tod}/{weather}",
                                   "in_process": {**asdict(here), "route_completion": round(here.route_completion, 4)},
                                   "live": {**asdict(live), "route_completion": round(live.route_completion, 4)}})
                    if progress:
                        print(f"{name:>8} seed {seed} {tod}/{weather}: in-process {here.distance_m:.0f} m, "
                              f"{here.interventions} interventions; live {live.distance_m:.0f} m, "
                              f"{live.interventions} interventions"
                              + (f"; frame->key p50 {lat.frame_to_key_p50_ms:.0f} p95 {lat.frame_to_key_p95_ms:.0f} ms"
                                 if lat else ""), file=sys.stderr, flush=True)
    out = {mode: {d: summarise(rows) for d, rows in per.items()} for mode, per in scores.items()}
    out["latency"] = [asdict(x) for x in latency]
    out["routes"] = detail
    out["config"] = {**asdict(config), "seeds": list(seeds), "conditions": ["/".join(c) for c in conditions],
                     "drivers": list(drivers), "agent_speed": "none (cruise throttle duty), in both columns"}
    return out


def format_live_table(card: dict) -> str:
    """One table: a column per driver and mode (in-process, live); then the latency per route."""
    cols = [(d, m) for d in ALL_DRIVERS if d in card["live"] for m in ("in_process", "live")]
    head = [f"{d}/{'in-proc' if m == 'in_process' else 'live'}" for d, m in cols]
    lines = [f"{'':<24}" + "".join(f"{h:>17}" for h in head)]
    for row in TABLE_ROWS:
        cells = []
        for d, m in cols:
            v = card[m][d].get(row)
            text = "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
            if row == "km_per_intervention" and card[m][d].get("km_per_intervention_lower_bound"):
                text = ">=" + text
            cells.append(f"{text:>17}")
        lines.append(f"{row:<24}" + "".join(cells))
    if card.get("latency"):
        lines.append("")
        lines.append(f"{'latency (live)':<30}{'frame age ms':>16}{'frame->key ms':>16}{'loop grab->key':>16}"
                     f"{'keys late':>11}{'dropped':>9}{'x real':>8}")
        for lat in card["latency"]:
            name = f"{lat['driver']} {lat['seed']} {lat['condition']}"
            lines.append(f"{name:<30}"
                         f"{lat['frame_age_p50_ms']:>8.1f}/{lat['frame_age_p95_ms']:<7.1f}"
                         f"{lat['frame_to_key_p50_ms']:>8.1f}/{lat['frame_to_key_p95_ms']:<7.1f}"
                         f"{lat['loop_frame_to_key_p50_ms']:>8.1f}/{lat['loop_frame_to_key_p95_ms']:<7.1f}"
                         f"{lat['keys_late_share']:>11.1%}{lat['frames_dropped']:>9d}{lat['realtime_ratio']:>8.3f}")
        lines.append("(p50/p95; frame age: shown -> grabbed; frame->key: shown -> keys sent; keys late: reached "
                     "the sim a step later than in-process)")
    return "\n".join(lines)
