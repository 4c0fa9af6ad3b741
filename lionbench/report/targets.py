"""Targets: the val losses steps- and time-to-target are measured against, and the table of
who reached them when (docs/design.md, "Targets"). Pure pandas, no statistics: the paired
verdicts on steps and time to a target are verdicts.py's.
"""

from __future__ import annotations

import math

import pandas as pd

from lionbench.record import Status
from lionbench.report.values import first_hits

# default targets: the median run's val loss at these fractions of the evaluations
TARGET_FRACTIONS = (0.25, 0.5, 0.75)


def default_targets(
    completed: pd.DataFrame, curves: pd.DataFrame, baseline: str | None
) -> list[float]:
    """Val losses that tell the arms apart: the median completed run's val loss at 25%, 50% and
    75% of the evaluations (step 0 excluded), over all arms alike, so that a stronger arm gets
    there sooner and a weaker one later or never. Symmetric in the arms (a target taken from
    the baseline's seeds alone would be reached by them by construction and favour it: an A/A
    study found 7% false "worse" verdicts), and robust to a bad arm (the worst run's curve, the
    earlier rule, gave targets every arm passed at its first eval). A target every run reaches
    at its first eval decides nothing and is dropped. None without a baseline (give --target)."""
    if baseline is None:
        return []
    mine = curves[curves["run_dir"].isin(completed["run_dir"]) & (curves["step"] > 0)]
    median = mine.groupby("step")["loss"].median().sort_index()
    if median.empty:
        return []
    first = mine.sort_values("step").groupby("run_dir")["loss"].first()
    picks = {median.iloc[max(0, math.ceil(f * len(median)) - 1)] for f in TARGET_FRACTIONS}
    telling = [float(p) for p in picks if not (first <= p).all()]
    return sorted(telling or [float(median.iloc[-1])], reverse=True)


def target_table(
    finished: pd.DataFrame, curves: pd.DataFrame, targets: list[float], baseline: str | None
) -> pd.DataFrame:
    """Steps and time to each target per arm, averaged over the seeds that reached it; a
    diverged seed counts as not reached (`reached` k/n counts it). `steps_vs_baseline` where
    both arms reached it in every seed; the paired verdicts are in `Setting.comparisons`."""
    rows = []
    for target in targets:
        hits = first_hits(curves, target)
        for arm, runs in finished.groupby("arm", sort=False):
            ok = runs[runs["status"] == Status.COMPLETED.value]
            mine = hits.reindex(ok["run_dir"])
            steps = pd.to_numeric(mine["step"], errors="coerce").dropna()
            times = pd.to_numeric(mine["time_s"], errors="coerce").dropna()
            rows.append(
                {
                    "target": target,
                    "arm": arm,
                    "optim": runs["optim"].iloc[0],
                    "reached": f"{len(steps)}/{len(runs)}",  # for people; the exports
                    "n_reached": len(steps),  # write these two integers instead
                    "n_seeds": len(runs),
                    "all_reached": len(steps) == len(runs),
                    "steps_to_target": float(steps.mean()) if len(steps) else math.nan,
                    "steps_to_target_std": (
                        float(steps.std(ddof=1)) if len(steps) > 1 else math.nan
                    ),
                    "time_to_target_s": float(times.mean()) if len(times) else math.nan,
                }
            )
    table = pd.DataFrame(rows)
    if table.empty or baseline is None:
        return table
    base = table[(table["arm"] == baseline) & table["all_reached"]].set_index("target")
    base_steps = table["target"].map(base["steps_to_target"])
    table["steps_vs_baseline"] = (table["steps_to_target"] / base_steps).where(table["all_reached"])
    return table
