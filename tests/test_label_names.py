"""The class and direction names have one home, sim.labels: every other module uses that tuple."""
from __future__ import annotations

from pathlib import Path

import sim
import sim.env
import sim.render
from perception import config as perception_config
from perception import types as perception_types
from sim import labels

ROOT = Path(__file__).resolve().parents[1]
#: the session store is a leaf that may import no project module: its default keeps a literal copy
ALLOWED_COPIES = {"sim/labels.py", "training/sessions/writer.py"}


def test_every_public_name_is_the_one_tuple():
    assert perception_types.DIRECTIONS is labels.DIRECTIONS and sim.DIRECTIONS is labels.DIRECTIONS
    assert perception_types.DEFAULT_DETECTION_CLASSES is labels.CLASSES
    assert sim.CLASSES is labels.CLASSES and sim.render.CLASSES is labels.CLASSES and sim.env.CLASSES is labels.CLASSES
    assert perception_config.DetectorConfig().classes is labels.CLASSES


def test_no_module_spells_the_names_out_again():
    literals = ['"left", "straight", "right"', '"car", "truck", "person", "sign"']
    copies = []
    for package in ("agent", "perception", "sim", "training"):
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            rel = path.relative_to(ROOT).as_posix()
            if rel not in ALLOWED_COPIES and any(lit in text for lit in literals):
                copies.append(rel)
    assert copies == [], f"import the names from sim.labels instead: {copies}"
