"""Speed benchmark of the env (not a test): env steps per second at a given
size, rgb_array rendering with full ground truth in ``info``.

    taskset -c 0 python -m sim.tools.bench --steps 3000
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from sim.env import TruckSimEnv
from sim.expert import Expert


def measure_env_steps_per_s(steps: int = 2000, width: int = 320, height: int = 240, seed: int = 0,
                            time_of_day: str = "day", weather: str = "clear", warmup: int = 300) -> float:
    """Env steps per second: only ``env.step`` is timed (render + ground truth +
    direction label included); actions come from the expert, computed outside
    the timed region so the truck drives a realistic route."""
    env = TruckSimEnv(render_mode="rgb_array", width=width, height=height, time_of_day=time_of_day, weather=weather)
    expert = Expert(seed=0, dt=env.config.dt)
    env.reset(seed=seed)
    for _ in range(warmup):
        env.step(expert.act(env))
    timed = 0.0
    for _ in range(steps):
        action = expert.act(env)
        t0 = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        timed += time.perf_counter() - t0
        if terminated or truncated:
            env.reset(seed=seed + 1)
    env.close()
    return steps / timed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.tools.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--size", default="320x240")
    p.add_argument("--all-conditions", action="store_true", help="measure every time of day x weather")
    args = p.parse_args(argv)
    from sim.config import TIMES_OF_DAY, WEATHERS, parse_size

    w, h = parse_size(args.size)
    conds = [(t, c) for t in TIMES_OF_DAY for c in WEATHERS] if args.all_conditions else [("day", "clear")]
    rates = []
    for tod, weather in conds:
        rate = measure_env_steps_per_s(args.steps, w, h, time_of_day=tod, weather=weather)
        rates.append(rate)
        print(f"{w}x{h} {tod:>5}/{weather:<5}: {rate:7.0f} env steps/s ({1e3 / rate:.2f} ms/step)")
    if len(rates) > 1:
        print(f"mean {np.mean(rates):.0f} steps/s, min {np.min(rates):.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
