"""python -m perception.tools.bench: one JSON row per configuration, the stride-4 detector beside the default."""
from __future__ import annotations

import inspect
import json
import time

import pytest

from perception.tools import bench


def test_bench_rows_compare_the_stride_4_detector_with_the_default(capsys):
    assert bench.main(["--sizes", "96x64", "--frames", "2", "--threads", "1", "--stride4"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["anchor_strides"] for r in rows] == [[8, 16, 32, 64, 128], [4, 8, 16, 32, 64, 128]]
    default, fine = rows
    assert default["input_hw"] == fine["input_hw"] == [64, 96]
    # 24x16 cells at stride 4, 9 anchors each, on top of the default levels
    assert fine["anchors"] - default["anchors"] == 16 * 24 * 9
    for r in rows:  # fps is 1000 / the median total ms, and the fastest frame is no slower than the median
        assert r["fps"] == pytest.approx(1000 / r["total"], rel=0.01, abs=0.01) and r["min_total"] <= r["total"]


def test_synthetic_scores_have_about_the_asked_candidates_per_image():
    scores = bench.synthetic_scores(4, 5000, 4, candidates=50)
    assert scores.shape == (4, 5000, 4)
    per_image = (scores > 0.05).sum(dim=(1, 2))
    assert all(30 <= n <= 75 for n in per_image.tolist()), per_image


def test_decode_bench_rows_time_the_batched_decode_beside_the_loop(capsys):
    called = time.perf_counter()
    assert bench.main(["--sizes", "96x64", "--decode-batch", "4", "--threads", "1", "--stride4"]) == 0
    wall_ms = (time.perf_counter() - called) * 1e3
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["anchor_strides"] for r in rows] == [[8, 16, 32, 64, 128], [4, 8, 16, 32, 64, 128]]
    # each figure is the median of `rounds` timed calls, all made within this call: over the rows,
    # rounds // 2 + 1 calls of each kind took at least its median (figures rounded to 0.01 ms)
    rounds = inspect.signature(bench.measure_decode_ms).parameters["rounds"].default
    at_least = sum((rounds // 2 + 1) * (r["batched_ms"] - 0.005 + r["loop_ms"] - 0.005) for r in rows)
    assert 0 < at_least <= wall_ms, (rows, wall_ms)
    for r in rows:
        assert r["decode_batch"] == 4 and r["input_hw"] == [64, 96]
        assert abs(r["loop_over_batched"] - r["loop_ms"] / r["batched_ms"]) < 0.02 * r["loop_over_batched"] + 0.01
