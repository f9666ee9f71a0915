"""Make ``import sim`` find the real package when pytest is started as
``.venv/bin/pytest`` (not ``python -m pytest``): with rootdir conftest
insertion, ``tests/`` is on sys.path and ``tests/sim`` (no __init__) would
otherwise be picked up as an empty namespace package named ``sim``."""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
_cached = sys.modules.get("sim")
if _cached is not None and getattr(_cached, "__file__", None) is None:
    del sys.modules["sim"]
