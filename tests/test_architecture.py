"""The layer contracts in pyproject.toml ([tool.importlinter]) hold, and they name every module.

`lint-imports` builds the real import graph of agent, perception, training and sim; a module that
imports upward (training importing agent, sim importing torch, agent.io importing agent.runtime ...)
breaks a contract and fails this test.
"""
from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import training

ROOT = Path(__file__).resolve().parents[1]


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["name"]: c for c in config["contracts"]}


def test_lint_imports_keeps_every_contract():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_the_store_only_contracts_name_every_other_training_module():
    """A new training module must be added to the lists, or agent's lower layers could import it."""
    others = {f"training.{m.name}" for m in pkgutil.iter_modules(training.__path__)} - {"training.sessions"}
    for name, contract in _contracts().items():
        listed = {m for m in contract.get("forbidden_modules", []) if m.startswith("training.")}
        if listed:
            assert listed == others, f"contract {name!r}: add {sorted(others - listed)}, drop {sorted(listed - others)}"


def test_agent_layers_cover_every_agent_subpackage():
    import agent

    layers = next(c["layers"] for c in _contracts().values()
                  if c["type"] == "layers" and all(layer.startswith("agent.") for layer in c["layers"]))
    subpackages = {f"agent.{m.name}" for m in pkgutil.iter_modules(agent.__path__) if m.name != "__main__"}
    assert subpackages == set(layers), f"unlayered: {sorted(subpackages - set(layers))}"
