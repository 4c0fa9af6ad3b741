"""Performance profiles across settings: one score per optimizer over every setting of the
results (AlgoPerf: Dahl et al. 2023, "Benchmarking Neural Network Training Algorithms"; Dolan
and Moré 2002). Pure pandas and numpy: the plots and the words are profile_view.py's.

Each setting with a target is a *workload* w. An optimizer s is represented in it by one arm:
the setting's baseline arm for the baseline optimizer, for every other optimizer its arm with
the lowest mean final val loss (`headline.headline_order`, the rule the headlines lead with).
t(s, w) is the median over that arm's seeds of the steps (and, separately, the time) to the
setting's tightest target (the one the headlines and claims use), a seed that diverged or never
reached it counting +inf; r(s, w) = t(s, w) / min over s of t(s, w), +inf when the optimizer
never got there (or did not run on w); rho_s(tau) = the share of workloads with r <= tau; and
the score is AlgoPerf's B_s = 1 / (TAU_MAX - 1) * integral from 1 to TAU_MAX of rho_s: 1 for
the fastest on every workload, 0 when never within TAU_MAX times the fastest. Times come only
from runs whose timing was not contended; a workload where an optimizer has no such run is
left out of the time profile (of every optimizer: its fastest time is not known).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lionbench.report.analyse import COUNTED
from lionbench.report.headline import headline_order
from lionbench.report.values import run_values

if TYPE_CHECKING:
    from lionbench.report.analyse import Setting

TAU_MAX = 4.0  # AlgoPerf's r_max: the right edge of the plot and the score's upper limit
# metric -> (the per-seed column, its ratio column)
METRICS = {"steps": ("steps", "steps_ratio"), "time": ("time_s", "time_ratio")}
SEED_COLUMNS = ["setting", "target", "optim", "arm", "seed", "steps", "time_s"]
TABLE_COLUMNS = ["setting", "target", "optim", "arm", "n_seeds", "reached", "timed", "steps",
                 "steps_ratio", "time_s", "time_ratio", "note"]  # fmt: skip


@dataclass
class Profile:
    """The performance profiles of the results: `table` one row per (setting, optimizer),
    `scores` one per optimizer, `points` one per (metric, optimizer, setting): the ratio at
    which that setting enters the optimizer's profile and the share reached there."""

    seeds: pd.DataFrame
    table: pd.DataFrame
    scores: pd.DataFrame
    points: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    plots: dict[str, Path] = field(default_factory=dict)


def representatives(s: Setting) -> dict[str, str]:
    """optimizer -> the arm that stands for it in this setting: the baseline arm for the
    baseline optimizer, every other optimizer's arm of lowest mean final val loss (the arm the
    headlines lead with; an arm without a counted run is never one)."""
    ran = s.runs.loc[s.runs["status"].isin(COUNTED), ["arm", "optim"]].drop_duplicates("arm")
    optim_of = dict(zip(ran["arm"], ran["optim"], strict=True))
    chosen: dict[str, str] = {}
    if s.baseline is not None and s.baseline in optim_of:
        chosen[str(optim_of[s.baseline])] = s.baseline
    for arm in headline_order(s, list(optim_of)):
        chosen.setdefault(str(optim_of[arm]), arm)
    return chosen


def workload_seeds(settings: list[Setting], curves: pd.DataFrame) -> tuple[pd.DataFrame, list]:
    """(one row per run of each setting's representative arms: its steps and time to the
    setting's tightest target, +inf when missed or diverged, time nan when contended; notes on
    the settings left out)."""
    rows: list[pd.DataFrame] = []
    notes = []
    for s in settings:
        arms = representatives(s)
        runs = s.runs[s.runs["status"].isin(COUNTED) & s.runs["arm"].isin(arms.values())]
        if s.targets.empty or runs.empty:
            notes.append(f"{s.label}: left out, it has no target (the default targets need a "
                         "baseline arm and a completed run; give --target)")  # fmt: skip
            continue
        target = float(s.targets["target"].min())
        v = run_values(runs, curves, [target])
        per_run = v.pivot_table(index="run_dir", columns="metric", values="value", aggfunc="first")
        per_run = per_run.reindex(columns=["steps_to_target", "time_to_target_s"])
        mine = runs.set_index("run_dir")
        rows.append(
            pd.DataFrame({
                "setting": s.label,
                "target": target,
                "optim": mine["optim"].astype(str),
                "arm": mine["arm"],
                "seed": mine["seed"],
                "steps": per_run["steps_to_target"].reindex(mine.index).astype(float),
                "time_s": per_run["time_to_target_s"].reindex(mine.index).astype(float),
            }).reset_index(drop=True)
        )  # fmt: skip
    seeds = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=SEED_COLUMNS)
    return seeds, notes


def median(values: pd.Series) -> float:
    """The median with +inf as a value (a seed that missed): +inf when half or more missed
    (with an even count the mean of the middle two, +inf when either is); nan for none."""
    v = values.dropna().to_numpy(dtype=float)
    return float(np.median(v)) if len(v) else math.nan


def timing_note(timed: int, seeds: int) -> str:
    """What the time to target rests on, where not every seed's timing counts."""
    if timed == seeds:
        return ""
    if timed == 0:
        return "no time: every seed's timing contended"
    return f"time from {timed} of {seeds} seeds (the others' timing contended)"


def ratio_table(seeds: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One row per (setting, optimizer) of every optimizer that ran in any setting: seeds,
    seeds that reached the target, seeds timed (uncontended), the medians over seeds and their
    ratios to the setting's fastest (`ratios`); not run: +inf, noted. And notes on what was
    left out."""
    rows = []
    optims = list(dict.fromkeys(seeds["optim"]))
    for (setting, optim), g in seeds.groupby(["setting", "optim"], sort=False):
        timed = g["time_s"].dropna()
        rows.append({
            "setting": setting, "target": g["target"].iloc[0], "optim": optim,
            "arm": g["arm"].iloc[0], "n_seeds": len(g),
            "reached": int(np.isfinite(g["steps"]).sum()), "timed": len(timed),
            "steps": median(g["steps"]), "time_s": median(timed),
            "note": timing_note(len(timed), len(g)),
        })  # fmt: skip
    table = pd.DataFrame(rows, columns=[c for c in TABLE_COLUMNS if "ratio" not in c])
    for setting, g in table.groupby("setting", sort=False):
        for optim in optims:
            if optim not in set(g["optim"]):
                rows.append({"setting": setting, "target": g["target"].iloc[0], "optim": optim,
                             "n_seeds": 0, "reached": 0, "timed": 0, "steps": math.inf,
                             "time_s": math.inf, "note": "not run"})  # fmt: skip
    table = pd.DataFrame(rows, columns=table.columns)
    table = table.sort_values(
        ["setting", "optim"], key=lambda c: c.map(optims.index) if c.name == "optim" else c
    ).reset_index(drop=True)
    return ratios(table)


def ratios(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """`steps_ratio` and `time_ratio`: each median over the setting's fastest, +inf where the
    optimizer never got there (every optimizer's, where none did); nan where the setting is
    left out of that metric's profile (the fastest took 0: the target was met before training;
    or, for time, an optimizer without an uncontended run), with a note saying so."""
    table = table.copy()
    notes = []
    for metric, (col, ratio) in METRICS.items():
        best = table.groupby("setting")[col].transform("min")
        unknown = table[col].isna().groupby(table["setting"]).transform("any")
        r = (table[col] / best).where(np.isfinite(best), math.inf)
        table[ratio] = r.where(~unknown & (best != 0), math.nan)
        for setting in table.loc[unknown, "setting"].unique():
            who = table.loc[(table["setting"] == setting) & table[col].isna(), "optim"]
            notes.append(f"{setting}: left out of the {metric} profile ({', '.join(who)}: no "
                         "uncontended run, so the fastest time is not known)")  # fmt: skip
        for setting in table.loc[~unknown & (best == 0), "setting"].unique():
            notes.append(f"{setting}: left out of the {metric} profile (the target was met "
                         "before training: 0 to target)")  # fmt: skip
    return table.reindex(columns=TABLE_COLUMNS), notes


def rho(r: np.ndarray, tau: float) -> float:
    """rho(tau): the share of the workloads (those in this metric's profile) with r <= tau."""
    r = r[~np.isnan(r)]
    return float(np.mean(r <= tau)) if len(r) else math.nan


def score(r: np.ndarray, tau_max: float = TAU_MAX) -> float:
    """AlgoPerf's B = 1/(tau_max - 1) * integral_1^tau_max rho(tau) dtau, exactly: rho is a
    step function, so each workload adds (tau_max - r) / (tau_max - 1) (0 beyond tau_max or
    never reached), averaged over the workloads."""
    r = r[~np.isnan(r)]
    if not len(r):
        return math.nan
    return float(np.mean(np.clip((tau_max - r) / (tau_max - 1.0), 0.0, 1.0)))


def score_table(table: pd.DataFrame, tau_max: float = TAU_MAX) -> pd.DataFrame:
    """One row per optimizer: its score on steps and on time, the workloads in each profile,
    those it reached within tau_max, and the seeds its points rest on."""
    rows = []
    for optim, g in table.groupby("optim", sort=False):
        row: dict[str, object] = {"optim": optim}
        for metric, (_, ratio) in METRICS.items():
            r = g[ratio].to_numpy(dtype=float)
            row[f"score_{metric}"] = score(r, tau_max)
            row[f"workloads_{metric}"] = int((~np.isnan(r)).sum())
            row[f"within_{metric}"] = int((r <= tau_max).sum())
        row["n_seeds"] = int(g["n_seeds"].sum())
        row["reached"] = int(g["reached"].sum())
        rows.append(row)
    return pd.DataFrame(rows)


def profile_points(table: pd.DataFrame) -> pd.DataFrame:
    """Per metric and optimizer, one row per workload in order of its ratio: tau (the ratio at
    which the workload enters the profile; +inf: never), rho after it, and the seeds it rests
    on (reached of run, and for time the uncontended ones)."""
    rows = []
    for metric, (_, ratio) in METRICS.items():
        for optim, g in table.groupby("optim", sort=False):
            g = g[g[ratio].notna()].sort_values(ratio, kind="stable")
            r = g[ratio].to_numpy(dtype=float)
            for _, w in g.iterrows():
                rows.append({
                    "metric": metric, "optim": optim, "tau": w[ratio],
                    "rho": rho(r, w[ratio]) if math.isfinite(w[ratio]) else math.nan,
                    "setting": w["setting"], "arm": w["arm"], "n_seeds": w["n_seeds"],
                    "reached": w["reached"], "timed": w["timed"],
                })  # fmt: skip
    return pd.DataFrame(rows)


def performance_profiles(settings: list[Setting], curves: pd.DataFrame) -> Profile | None:
    """The profiles across the settings, or None when they would say nothing: fewer than two
    workloads (settings with a target) or no workload with two optimizers."""
    seeds, notes = workload_seeds(settings, curves)
    if seeds.empty or seeds["setting"].nunique() < 2:
        return None
    if seeds.groupby("setting")["optim"].nunique().max() < 2:
        return None
    table, left_out = ratio_table(seeds)
    return Profile(seeds, table, score_table(table), profile_points(table), notes + left_out)
