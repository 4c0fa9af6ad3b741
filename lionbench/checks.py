"""Value checks shared by the config schema, the optimizer registry and the commands.

Each check raises `UserError` with one line that names the key, the bad value and what is
accepted. Nothing here imports torch or Hydra.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any

from lionbench.errors import UserError


def did_you_mean(name: str, options: Iterable[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f"; did you mean '{prefix}{close[0]}'?" if close else ""


def choice(value: Any, name: str, accepted: Iterable[str]) -> None:
    accepted = list(accepted)
    if value not in accepted:
        hint = did_you_mean(str(value), accepted)
        raise UserError(f"unknown {name} '{value}'{hint} (accepted: {', '.join(accepted)})")


def integer(value: Any, name: str, low: int | None = None, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{name} must be an integer, got {value!r}")
    if low is not None and value < low:
        raise UserError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise UserError(f"{name} must be <= {high:,}, got {value:,}")


def names(value: Any, name: str) -> None:
    """A list of strings (parameter-name patterns, ...), possibly empty."""
    if isinstance(value, str) or not hasattr(value, "__len__"):
        raise UserError(f"{name} must be a list of strings, e.g. [lm_head.*], got {value!r}")
    if not all(isinstance(v, str) for v in value):
        raise UserError(f"{name} must be a list of strings, e.g. [lm_head.*], got {value!r}")


def boolean(value: Any, name: str) -> None:
    if not isinstance(value, bool):
        raise UserError(f"{name} must be true or false, got {value!r}")


def real(
    value: Any,
    name: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UserError(f"{name} must be a finite number, got {value!r}")
    too_low = low is not None and (value < low or (low_open and value == low))
    too_high = high is not None and (value > high or (high_open and value == high))
    if not (too_low or too_high):
        return
    if high is None:
        accepted = f"{'>' if low_open else '>='} {low:g}"
    elif low is None:
        accepted = f"{'<' if high_open else '<='} {high:g}"
    else:
        accepted = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    raise UserError(f"{name} must be {accepted}, got {value}")


def positive(value: Any, name: str) -> None:
    real(value, name, low=0.0, low_open=True)


def non_negative(value: Any, name: str) -> None:
    real(value, name, low=0.0)


def unit_interval(value: Any, name: str) -> None:
    """A decay rate or momentum: in [0, 1)."""
    real(value, name, low=0.0, high=1.0, high_open=True)


def betas(value: Any, name: str) -> None:
    if isinstance(value, str) or not (hasattr(value, "__len__") and len(value) == 2):
        raise UserError(f"{name} must be two numbers [beta1, beta2], got {value}")
    for i, b in enumerate(value):
        unit_interval(b, f"{name}[{i}]")


def non_positive(value: Any, name: str) -> None:
    real(value, name, high=0.0)


def bench_counts(steps: int, warmup: int, repeats: int) -> None:
    """The counts every benchmark command takes: --steps >= 1, --warmup >= 0, --repeats >= 1."""
    for name, value, low in (
        ("--steps", steps, 1),
        ("--warmup", warmup, 0),
        ("--repeats", repeats, 1),
    ):
        if value < low:
            raise UserError(f"{name} must be >= {low}, got {value}")
