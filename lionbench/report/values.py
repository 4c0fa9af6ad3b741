"""Per-seed values of every run: the numbers the paired comparisons (verdicts.py) pair by seed.

A diverged seed stays in its arm (docs/design.md, "Verdicts"): its losses are +inf (worse than
any finite loss) and it never reaches a target (+inf steps and time, as AlgoPerf scores a run
that misses the target). Speeds come only from a fair measurement: a run whose timing was
contended (loop/exposure.py) has none. Steps and time to a target carry the resolution of the
eval grid they were read on.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd

from lionbench.record import Status

VALUE_COLUMNS = ["run_dir", "arm", "optim", "seed", "diverged", "metric", "target", "value",
                 "resolution", "started", "ended"]  # fmt: skip


def first_hits(curves: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per run, the first eval (step, time_s) at or below the target, and how far back the
    eval before it lies (`step_res`, `time_res`: the run crossed the target somewhere in that
    gap, so the value is known to that resolution). A run that never got there has no row: its
    steps are nan, never the step budget (that would reward runs that did not get there). One
    pass over all curves per target: 1,000 runs stay fast."""
    c = curves.sort_values(["run_dir", "step"], kind="stable")
    run = c["run_dir"].to_numpy()
    same = np.r_[False, run[1:] == run[:-1]]  # the row before is the same run's previous eval
    c = c.assign(
        step_res=np.where(same, c["step"].diff(), 0.0),
        time_res=np.where(same, c["time_s"].diff(), 0.0),
    )
    hit = c[c["loss"] <= target]
    return hit.drop_duplicates("run_dir").set_index("run_dir")[
        ["step", "time_s", "step_res", "time_res"]
    ]


def column(runs: pd.DataFrame, name: str, default: object = math.nan) -> pd.Series:
    """A column of the runs table, or `default` for every run (tables built by hand, runs
    written before the column existed)."""
    return runs[name] if name in runs else pd.Series(default, index=runs.index)


def run_values(finished: pd.DataFrame, curves: pd.DataFrame, targets: list[float]) -> pd.DataFrame:
    """One row per run and metric (and target): the value the comparisons pair by seed.
    `finished` holds the completed and diverged runs of one setting. A contended run has no
    speed value (its timing was the machine's). Built from numpy columns in one go: the A/A
    test calls this hundreds of times."""
    diverged = (finished["status"] == Status.DIVERGED.value).to_numpy()
    contended = column(finished, "contended", False).eq(True).to_numpy()  # None: not known
    unfair = diverged | contended
    exact = np.zeros(len(finished))
    parts: list[tuple[str, float, np.ndarray, np.ndarray]] = []  # metric, target, value, res
    for col in ("final_val_loss", "best_val_loss", "steps_per_s", "opt_step_ms"):
        v = pd.to_numeric(finished[col], errors="coerce").to_numpy(dtype=float)
        if col.endswith("loss"):
            v = np.where(diverged, math.inf, v)
        else:
            v = np.where(unfair | ~np.isfinite(v), math.nan, v)
        parts.append((col, math.nan, v, exact))
    for target in targets:
        hits = first_hits(curves, target).reindex(finished["run_dir"])
        steps, times, step_res, time_res = (
            pd.to_numeric(hits[c], errors="coerce").to_numpy(dtype=float)
            for c in ("step", "time_s", "step_res", "time_res")
        )
        missed = diverged | np.isnan(steps)
        parts.append(("steps_to_target", float(target), np.where(missed, math.inf, steps),
                      np.nan_to_num(step_res)))  # fmt: skip
        # a run that never got there took +inf time; a contended one's time is not its own
        times = np.where(contended, math.nan, np.where(missed, math.inf, times))
        parts.append(("time_to_target_s", float(target), times, np.nan_to_num(time_res)))
    k = len(parts)
    out = pd.DataFrame(
        {
            "run_dir": np.tile(finished["run_dir"].to_numpy(dtype=object), k),
            "arm": np.tile(finished["arm"].to_numpy(dtype=object), k),
            "optim": np.tile(finished["optim"].to_numpy(dtype=object), k),
            "seed": np.tile(finished["seed"].to_numpy(dtype=object), k),
            "diverged": np.tile(diverged, k),
            "metric": np.repeat([m for m, _, _, _ in parts], len(finished)),
            "target": np.repeat([t for _, t, _, _ in parts], len(finished)),
            "value": np.concatenate([v for _, _, v, _ in parts]),
            "resolution": np.concatenate([r for _, _, _, r in parts]),
            "started": np.tile(column(finished, "started").to_numpy(dtype=float), k),
            "ended": np.tile(column(finished, "ended").to_numpy(dtype=float), k),
        },
        columns=VALUE_COLUMNS,
    )
    return out[out["value"].notna()].reset_index(drop=True)


class SeedValue(NamedTuple):
    """One seed's value of a metric: whether its run diverged, and the resolution the value
    was read at (steps and time to a target lie on the eval grid; 0: exact)."""

    value: float
    diverged: bool
    resolution: float = 0.0


Seeds = dict[object, SeedValue]  # seed -> its value


def seed_order(seed: object) -> tuple[int, object]:
    """Seeds in numeric order (10 after 9), anything else after them as text."""
    return (0, seed) if isinstance(seed, int | float) else (1, str(seed))


def per_seed(values: pd.DataFrame) -> dict[tuple[str, float], dict[str, Seeds]]:
    """(metric, target; -1 for none) -> arm -> seed -> SeedValue, in first-seen order. A seed
    run twice: the mean of its values, diverged if either run diverged, the coarser resolution."""
    acc: dict[tuple[str, float], dict[str, dict[object, list[SeedValue]]]] = {}
    res = values["resolution"] if "resolution" in values else pd.Series(0.0, index=values.index)
    cols = zip(values["metric"], values["target"], values["arm"], values["seed"],
               values["value"], values["diverged"], res, strict=True)  # fmt: skip
    for metric, target, arm, seed, value, div, r in cols:
        key = (str(metric), -1.0 if pd.isna(target) else float(target))
        acc.setdefault(key, {}).setdefault(str(arm), {}).setdefault(seed, []).append(
            SeedValue(float(value), bool(div), float(r))
        )
    return {
        key: {arm: {seed: merged(vs) for seed, vs in seeds.items()} for arm, seeds in arms.items()}
        for key, arms in acc.items()
    }


def merged(values: list[SeedValue]) -> SeedValue:
    """One seed's runs as one value: the mean, diverged if any run was, the coarser resolution
    (one run, by far the usual case, as it is)."""
    if len(values) == 1:
        return values[0]
    return SeedValue(
        float(np.mean([v.value for v in values])),
        any(v.diverged for v in values),
        max(v.resolution for v in values),
    )
