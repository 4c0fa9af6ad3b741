"""Tuning grids: the values a sweep tries for each optimizer, along the axis its registry entry
gives (`OptimizerSpec.tuning_axis`), where the best one lies and which point comes next.

Along `ratio` a value r puts a ratio-linked optimizer (Lion) at lr = base lr / r and wd = base
wd x r, as `optim.ratio=r`; along `lr_multiplier` a value m puts any other optimizer at lr = m x
its recipe lr, as `optim.lr=...`. Pure functions: no runs, no files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lionbench.config import decimal_div, decimal_mul
from lionbench.errors import UserError
from lionbench.optim.registry import RATIO, OptimizerSpec

STEP = 2.0  # an extension point lies a factor STEP beyond the grid's edge
HINTS = {
    "--ratios": "Lion's lr = adamw.lr / ratio; ",
    "--adamw-lrs": "AdamW's lr = recipe.adamw.lr x multiplier; ",
    "--lrs": "a candidate's lr = its recipe lr x multiplier; ",
}


def exact(x: float) -> str:
    """Short when that is exact, else every digit (ratios 3.0000001 and 3.0000002 stay two)."""
    short = f"{x:g}"
    return short if float(short) == x else repr(float(x))


# ------------------------------------------------------------------------- the tuning axis


def config_value(spec: OptimizerSpec, value: float, base_lr: float) -> float:
    """What a run's config holds at a grid value: `optim.ratio` (ratio axis), or `optim.lr` =
    value x the recipe's lr, computed on the decimals as written (`config.decimal_mul`)."""
    return value if spec.tuning_axis == RATIO else decimal_mul(value, base_lr)


def config_key(spec: OptimizerSpec) -> str:
    """The `optim` key that holds the grid value's setting: `ratio`, or `lr`."""
    return "ratio" if spec.tuning_axis == RATIO else "lr"


def grid_value(spec: OptimizerSpec, optim_cfg: dict[str, Any], base_lr: float) -> float:
    """The grid value a resolved `optim` config is at (the inverse of `config_value`)."""
    held = float(optim_cfg[config_key(spec)])
    return held if spec.tuning_axis == RATIO else decimal_div(held, base_lr)


def override(spec: OptimizerSpec, values: list[float], base_lr: float) -> str:
    """The Hydra sweep override that runs the optimizer at these grid values."""
    settings = ",".join(exact(config_value(spec, v, base_lr)) for v in values)
    return f"optim.{config_key(spec)}={settings}"


def lr_times(spec: OptimizerSpec, value: float, factor: float) -> float:
    """The grid value whose lr is `factor` times the lr at `value` (a ratio divides the lr)."""
    return decimal_div(value, factor) if spec.tuning_axis == RATIO else decimal_mul(value, factor)


def label(spec: OptimizerSpec, value: float) -> str:
    """A grid value in words: `ratio 3`, `lr x2`."""
    return f"ratio {exact(value)}" if spec.tuning_axis == RATIO else f"lr x{exact(value)}"


# ------------------------------------------------------------------------------ the options


def parse_list(text: str, name: str, kind: type) -> list[Any]:
    """`--ratios 3,5,10` / `--seeds 0,1,2`: distinct finite numbers > 0, or seeds >= 0."""
    accepted = (
        "comma-separated numbers > 0, e.g. 3,5,10"
        if kind is float
        else "comma-separated integers >= 0, e.g. 0,1,2"
    )
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(
            f"{name} must be a comma-separated list of {kind.__name__}s, got {text!r} "
            f"(accepted: {accepted})"
        ) from None
    if not values:
        raise UserError(f"{name} is empty (accepted: {accepted})")
    if kind is float and any(not math.isfinite(v) or v <= 0 for v in values):
        raise UserError(
            f"{name} must be > 0 and finite, got {text!r} ({HINTS.get(name, '')}"
            f"accepted: {accepted})"
        )
    if kind is int and any(v < 0 for v in values):
        raise UserError(f"{name} must be >= 0, got {text!r} (accepted: {accepted})")
    if len(set(values)) != len(values):
        raise UserError(f"{name} has repeated values: {text!r} (each value once)")
    return values


def parse_confirm(text: str | None) -> list[int] | None:
    """`--confirm-seeds`: None (the default: fresh seeds), `none` (no confirmation) or seeds."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return []
    return parse_list(text, "--confirm-seeds", int)


def default_multipliers(n: int) -> list[float]:
    """n powers of 2 centred on 1 (the recipe's lr); an even n puts its extra point below 1:
    1 -> [1], 2 -> [0.5, 1], 3 -> [0.5, 1, 2], 4 -> [0.25, 0.5, 1, 2]."""
    low = -(n // 2)
    return [2.0**k for k in range(low, low + n)]


# ----------------------------------------------------------------------- choosing, extending


@dataclass
class Choice:
    """An optimizer's best grid value and where it lies in the grid."""

    best: float | None
    score: float
    position: str  # interior | bound | none (every setting diverged or failed)
    edge: str | None  # low | high | both (a one-point grid) | None


def choose(values: list[float], scores: dict[float, float]) -> Choice:
    """The lowest mean loss (ties: the smaller value), and at which edge of the grid it is."""
    finite = [v for v in values if math.isfinite(scores.get(v, math.inf))]
    if not finite:
        return Choice(None, math.inf, "none", None)
    best = min(finite, key=lambda v: (scores[v], v))
    low, high = best == min(values), best == max(values)
    edge = "both" if low and high else "low" if low else "high" if high else None
    return Choice(best, scores[best], "interior" if edge is None else "bound", edge)


def beyond(values: list[float], edge: str | None, left: int) -> list[float]:
    """The points one STEP beyond the edge(s) where the optimum sits, at most `left` of them
    (a one-point grid is at both edges; its low side comes first)."""
    new = []
    if edge in ("low", "both"):
        new.append(min(values) / STEP)
    if edge in ("high", "both"):
        new.append(max(values) * STEP)
    return new[: max(left, 0)]
