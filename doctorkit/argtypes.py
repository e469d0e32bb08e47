"""Range-checked argparse types: every numeric command-line flag is checked here, where it is parsed.

A bad value then stops the command with argparse's own one-line `error: argument --x: ...` (exit 2)
before any model or data loads, instead of failing deep inside generation or training.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable


def _number(kind: type, text: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None


def int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = _number(int, text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def float_in(low: float, high: float | None = None, low_open: bool = False) -> Callable[[str], float]:
    """A float in [low, high] ((low, high] when low_open); high None means no upper bound."""
    def parse(text: str) -> float:
        value = _number(float, text)
        if value != value or (value <= low if low_open else value < low) or (high is not None and value > high):
            bounds = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'}{']' if high is not None else ')'}"
            raise argparse.ArgumentTypeError(f"must be in {bounds}, got {text}")
        return value
    parse.__name__ = "number"
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
non_negative_float = float_in(0.0)
probability = float_in(0.0, 1.0, low_open=True)    # top-p: 0 would keep no token at all
penalty = float_in(0.0, None, low_open=True)       # repetition penalty divides logits: must be > 0


def port_number(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port in [1, 65535], got {value}")
    return value


def existing_file(text: str) -> str:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return text


def existing_path(text: str) -> str:
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file or folder")
    return text
