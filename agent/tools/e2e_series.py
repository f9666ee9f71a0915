"""Run the end-to-end 1 km test N times in a row and count the passes (idle, or with a busy core).

    python -m agent.tools.e2e_series --runs 20            # idle machine
    python -m agent.tools.e2e_series --runs 20 --busy     # a busy loop pinned to core 0 throughout

One pytest session runs ``tests/agent/test_agent_drive_e2e.py`` with this module as a plugin
(``-p agent.tools.e2e_series --series-runs N``): the test is parametrised N times; its model is the
published tiny ensemble (``tests/agent/data/e2e_direction.pt``, the same on every machine), and each
run is one complete, independent drive of its own sim window, with the test's one attempt and all
its assertions. The counts come from pytest's JUnit XML; the load average
(1, 5, 15 min) is printed before and after, since the machine's load is part of the result.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from agent.tools.realtime_probe import BusyCore

REPO = Path(__file__).resolve().parents[2]
E2E_TEST = "tests/agent/test_agent_drive_e2e.py"


# ----------------------------------------------------------------------------- pytest plugin


def pytest_addoption(parser) -> None:
    parser.addoption("--series-runs", type=int, default=1, help="run each test this many times (e2e series)")


def pytest_generate_tests(metafunc) -> None:
    runs = metafunc.config.getoption("series_runs")
    if runs > 1:
        metafunc.fixturenames.append("series_run")
        metafunc.parametrize("series_run", range(1, runs + 1), ids=[f"run{i:02d}" for i in range(1, runs + 1)])


# ----------------------------------------------------------------------------- the series


@dataclass(frozen=True)
class SeriesResult:
    """runs: drives asked; outcomes: "pass" / "fail" / "error" per run, in order; wall_s: seconds;
    load_before / load_after: os.getloadavg() (1, 5, 15 min); busy: a core was held busy."""

    runs: int
    outcomes: tuple[str, ...]
    failures: tuple[str, ...]
    wall_s: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    busy: bool
    command: str

    @property
    def passed(self) -> int:
        return self.outcomes.count("pass")

    @property
    def longest_streak(self) -> int:
        best = cur = 0
        for o in self.outcomes:
            cur = cur + 1 if o == "pass" else 0
            best = max(best, cur)
        return best

    def summary(self) -> str:
        load = lambda v: "/".join(f"{x:.2f}" for x in v)  # noqa: E731
        return "\n".join([
            f"e2e series ({'busy loop on core 0' if self.busy else 'no extra load'}): passed {self.passed} of "
            f"{self.runs}; longest run of passes {self.longest_streak}; {self.wall_s / 60:.1f} min",
            f"outcomes: {' '.join(o[0].upper() for o in self.outcomes)}",
            f"load average (1/5/15 min) before {load(self.load_before)}, after {load(self.load_after)}",
            f"command: {self.command}",
        ] + [f"failure: {f}" for f in self.failures])


def run_series(runs: int, busy: bool, extra: list[str] | None = None) -> SeriesResult:
    """Run the e2e test ``runs`` times in one pytest session (with a busy core if ``busy``)."""
    with tempfile.TemporaryDirectory(prefix="e2e-series-") as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", E2E_TEST, "-p", "agent.tools.e2e_series", "--series-runs",
               str(runs), "-m", "slow", f"--junitxml={xml}", "-q", "-rA", "-p", "no:cacheprovider", *(extra or [])]
        shown = f"python -m agent.tools.e2e_series --runs {runs}" + (" --busy" if busy else "")
        load_before = os.getloadavg()
        t0 = time.monotonic()
        if busy:
            with BusyCore(0):
                proc = subprocess.run(cmd, cwd=REPO)
        else:
            proc = subprocess.run(cmd, cwd=REPO)
        wall = time.monotonic() - t0
        load_after = os.getloadavg()
        if not xml.exists():
            raise RuntimeError(f"pytest wrote no report (exit {proc.returncode})")
        outcomes, failures = [], []
        for case in ET.parse(xml).getroot().iter("testcase"):
            bad = case.find("failure") if case.find("failure") is not None else case.find("error")
            if case.find("skipped") is not None:
                outcomes.append("skip")
            elif bad is None:
                outcomes.append("pass")
            else:
                outcomes.append("fail" if bad.tag == "failure" else "error")
                failures.append(f"{case.get('name')}: {(bad.get('message') or '')[:300]}")
    return SeriesResult(runs, tuple(outcomes), tuple(failures), wall, load_before, load_after, busy, shown)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agent.tools.e2e_series", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--busy", action="store_true", help="a busy loop pinned to core 0 during the series")
    args = p.parse_args(argv)
    result = run_series(args.runs, args.busy)
    print(result.summary(), flush=True)
    return 0 if result.passed == result.runs else 1


if __name__ == "__main__":
    sys.exit(main())
