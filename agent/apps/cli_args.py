"""argparse value types shared by the agent's commands."""
from __future__ import annotations

import argparse


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
