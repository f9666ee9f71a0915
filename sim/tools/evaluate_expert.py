"""Drive the scripted expert over many seeded routes without rendering and
report the acceptance figures: collisions, off-road events, mean |lateral
offset|, and the share of each direction label.

    python -m sim.tools.evaluate_expert --seeds 20 --km 5
"""
from __future__ import annotations

import argparse
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from tqdm import tqdm

from sim.config import DEFAULT_DT
from sim.expert import Expert
from sim.labels import DIRECTIONS
from sim.truck import TruckControls
from sim.world import World

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RouteResult:
    """One seed's drive. ``steps`` frames of ``dt`` s; counts of step events;
    ``direction_counts`` frames per label; ``finished`` = route length reached."""

    seed: int
    steps: int
    distance_m: float
    finished: bool
    collisions: int
    off_road_steps: int
    lane_departures: int
    mean_abs_lateral_offset_m: float
    max_abs_lateral_offset_m: float
    mean_speed_m_s: float
    direction_counts: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0


@dataclass(frozen=True)
class ExpertReport:
    routes: tuple[RouteResult, ...]

    @property
    def collisions(self) -> int:
        return sum(r.collisions for r in self.routes)

    @property
    def off_road_steps(self) -> int:
        return sum(r.off_road_steps for r in self.routes)

    @property
    def mean_abs_lateral_offset_m(self) -> float:
        steps = sum(r.steps for r in self.routes)
        return sum(r.mean_abs_lateral_offset_m * r.steps for r in self.routes) / max(1, steps)

    @property
    def direction_shares(self) -> dict[str, float]:
        total = Counter()
        for r in self.routes:
            total.update(r.direction_counts)
        n = sum(total.values()) or 1
        return {k: total[k] / n for k in DIRECTIONS}

    @property
    def all_finished(self) -> bool:
        return all(r.finished for r in self.routes)

    def summary(self) -> str:
        shares = self.direction_shares
        km = sum(r.distance_m for r in self.routes) / 1000
        steps = sum(r.steps for r in self.routes)
        wall = sum(r.wall_s for r in self.routes)
        return (f"routes={len(self.routes)} km={km:.1f} finished={sum(r.finished for r in self.routes)}/{len(self.routes)} "
                f"collisions={self.collisions} off_road_steps={self.off_road_steps} "
                f"mean|lateral_offset|={self.mean_abs_lateral_offset_m:.3f} m "
                f"max|lateral_offset|={max(r.max_abs_lateral_offset_m for r in self.routes):.2f} m "
                f"lane_departures={sum(r.lane_departures for r in self.routes)} "
                f"directions: left={shares['left']:.3f} straight={shares['straight']:.3f} right={shares['right']:.3f} "
                f"mean_speed={sum(r.mean_speed_m_s * r.steps for r in self.routes) / max(1, steps):.1f} m/s "
                f"steps={steps} wall={wall:.1f}s ({wall / max(1, steps) * 1e6:.0f} us/step)")


def drive_route(seed: int, route_length_m: float = 5000.0, dt: float = DEFAULT_DT, traffic_density: float = 1.0,
                pedestrian_density: float = 1.0, max_steps: int | None = None) -> RouteResult:
    """The expert (Expert(seed=0), the env's labeller) drives one route with no rendering."""
    world = World(seed, route_length_m=route_length_m, traffic_density=traffic_density,
                  pedestrian_density=pedestrian_density)
    expert = Expert(seed=0, dt=dt)
    limit = max_steps if max_steps is not None else int(route_length_m / 1.0 / dt)  # avg >= 1 m/s or give up
    events, directions = Counter(), Counter()
    lat_sum = lat_max = speed_sum = 0.0
    steps = 0
    t0 = time.perf_counter()
    while not world.route_done and steps < limit:
        keys = expert.act(world)
        directions[expert.direction(world)] += 1
        step_events = world.step(dt, TruckControls.from_keys(*(bool(k) for k in keys)))
        steps += 1
        events.update(step_events)
        off = abs(world.lateral_offset())
        lat_sum += off
        lat_max = max(lat_max, off)
        speed_sum += world.truck.v
        if "collision" in step_events:
            log.warning("seed %d: collision at %.0f m (d=%.2f, v=%.1f)", seed, world.distance_m, world.truck.d,
                        world.truck.v)
            break
    return RouteResult(seed, steps, world.distance_m, world.route_done, events["collision"], events["off_road"],
                       events["lane_departure"], lat_sum / max(1, steps), lat_max, speed_sum / max(1, steps),
                       dict(directions), time.perf_counter() - t0)


def evaluate_expert(seeds=range(20), route_length_m: float = 5000.0, dt: float = DEFAULT_DT,
                    traffic_density: float = 1.0, pedestrian_density: float = 1.0, progress: bool = True) -> ExpertReport:
    results = []
    for seed in tqdm(list(seeds), desc="expert routes", disable=not progress):
        results.append(drive_route(seed, route_length_m, dt, traffic_density, pedestrian_density))
    return ExpertReport(tuple(results))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.tools.evaluate_expert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=20, help="number of routes (seeds 0..N-1)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--km", type=float, default=5.0, help="route length per seed, km")
    p.add_argument("--traffic", type=float, default=1.0, help="traffic density")
    p.add_argument("--pedestrians", type=float, default=1.0, help="pedestrian density")
    p.add_argument("--per-route", action="store_true", help="print one line per route")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = evaluate_expert(range(args.first_seed, args.first_seed + args.seeds), args.km * 1000.0,
                             traffic_density=args.traffic, pedestrian_density=args.pedestrians)
    if args.per_route:
        for r in report.routes:
            print(r)
    print(report.summary())
    shares = report.direction_shares
    ok = (report.collisions == 0 and report.off_road_steps == 0 and report.mean_abs_lateral_offset_m < 0.4
          and min(shares.values()) >= 0.15 and report.all_finished)
    print("acceptance:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
