"""python -m perception.bench: one JSON row per configuration, the stride-4 detector beside the default."""
from __future__ import annotations

import json

from perception import bench


def test_bench_rows_compare_the_stride_4_detector_with_the_default(capsys):
    assert bench.main(["--sizes", "96x64", "--frames", "2", "--threads", "1", "--stride4"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["anchor_strides"] for r in rows] == [[8, 16, 32, 64, 128], [4, 8, 16, 32, 64, 128]]
    default, fine = rows
    assert default["input_hw"] == fine["input_hw"] == [64, 96]
    # 24x16 cells at stride 4, 9 anchors each, on top of the default levels
    assert fine["anchors"] - default["anchors"] == 16 * 24 * 9
    assert all(r["total"] > 0 and r["fps"] > 0 and r["cpu_ms_1thread"] > 0 for r in rows)
