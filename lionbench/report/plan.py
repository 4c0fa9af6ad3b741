"""`lionbench plan`: how many seeds a comparison needs, from the runs already on disk.

For each setting with a baseline, the spread of the per-seed paired differences (log ratios for
speeds and steps) of a metric, pooled over its candidate arms, is what a paired t-test at the
family's level (`--arms` candidates, Holm) needs to resolve an effect: the smallest number of
pairs with 80% power (report/stats.py `t_needed`). Effects are given in the metric's own units
(`--effect 0.01` on a loss, `--effect 1.05` on steps/s: a ratio), or by default as 0.5, 1 and 2
standard deviations of the differences. Numbers in, a table out; no statistic is computed here
that the verdicts do not use.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

from lionbench.errors import UserError
from lionbench.report.power import t_needed
from lionbench.report.verdicts import METRICS

if TYPE_CHECKING:
    from lionbench.report.analyse import Setting

PLAN_COLUMNS = ["setting", "metric", "pairs", "sd", "effect", "effect_sd", "arms", "seeds_needed"]
DEFAULT_EFFECTS_SD = (0.5, 1.0, 2.0)


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise UserError(f"unknown --metric '{metric}' (accepted: {', '.join(METRICS)})")


def pooled_sd(c: pd.DataFrame) -> tuple[float, int]:
    """(the pooled sd of the per-seed differences over the comparisons, their pairs): each
    comparison's variance weighted by its degrees of freedom."""
    ok = c[c["sd"].notna() & (c["n"] >= 2)]
    df = (ok["n"] - 1).sum()
    if not df:
        return math.nan, 0
    return math.sqrt(float(((ok["n"] - 1) * ok["sd"] ** 2).sum() / df)), int(ok["n"].sum())


def plan(
    settings: list[Setting], metric: str, effects: list[float], arms: int | None
) -> pd.DataFrame:
    """One row per setting and effect: the seeds a comparison with `arms` candidates needs."""
    check_metric(metric)
    ratio = METRICS[metric][1] == "ratio"
    for e in effects:
        if not math.isfinite(e) or e == 0 or (ratio and e <= 0):
            accepted = "a ratio > 0 other than 1, e.g. 1.05" if ratio else "a difference, e.g. 0.01"
            raise UserError(f"--effect {e} cannot be resolved on {metric} (accepted: {accepted})")
    rows = []
    for s in settings:
        c = s.comparisons
        if c.empty or s.baseline is None:
            continue
        mine = c[c["metric"] == metric]
        if metric == "steps_to_target" and not mine.empty:
            mine = mine[mine["target"] == mine["target"].min()]  # the tightest target
        sd, pairs = pooled_sd(mine)
        if not math.isfinite(sd) or sd == 0:
            continue
        family = arms or max(1, int(mine["arm"].nunique()))
        given = [(e, (math.log(e) if ratio else e) / sd) for e in effects]
        scaled = [(math.exp(k * sd) if ratio else k * sd, k) for k in DEFAULT_EFFECTS_SD]
        for effect, in_sd in given or scaled:
            rows.append({
                "setting": s.label, "metric": metric, "pairs": pairs, "sd": sd, "effect": effect,
                "effect_sd": abs(in_sd), "arms": family, "seeds_needed": t_needed(in_sd, family),
            })  # fmt: skip
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)
