"""argparse value types shared by the agent's commands, and their --set NAME=VALUE settings."""
from __future__ import annotations

import argparse
import json
from dataclasses import fields, replace


def region_arg(text: str) -> tuple[int, int, int, int]:
    """'x,y,w,h' (screen pixels) -> (x, y, w, h); width and height must be positive."""
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"region {text!r} is not x,y,w,h (e.g. 0,0,1280,720)") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"region {text!r} needs a positive width and height")
    return x, y, w, h


def size_arg(text: str) -> tuple[int, int]:
    """'WIDTHxHEIGHT' (pixels) -> (width, height); both must be positive."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not WIDTHxHEIGHT (e.g. 320x240)") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"size {text!r} must be positive")
    return w, h


def with_settings(config, items: list[str]):
    """``config`` (a frozen dataclass, e.g. ControllerConfig) with each ``--set NAME=VALUE`` of ``items``
    applied, VALUE read as the field's type (bools true/false, tuples as JSON lists); ValueError naming
    the item and the fields there are."""
    known = {f.name for f in fields(config)}
    changes = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or name not in known:
            raise ValueError(f"--set {item!r}: give NAME=VALUE with NAME one of {', '.join(sorted(known))}")
        current = getattr(config, name)
        try:
            if isinstance(current, bool):
                changes[name] = {"true": True, "false": False}[text.strip().lower()]
            elif isinstance(current, (int, float)):
                changes[name] = type(current)(text)
            else:
                changes[name] = type(current)(json.loads(text))
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"--set {item!r}: {text!r} is not a {type(current).__name__}") from None
    return replace(config, **changes)
