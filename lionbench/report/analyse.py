"""Settings, arms and their tables: pure pandas and numpy, no rendering.

Runs are compared only within a *setting*: runs whose configs are equal once the optimizer
settings, the seed and what is not part of a run's identity are removed (`record.setting_config`,
the one definition), split by device. Within a setting every arm is compared with one *baseline*
arm (`arms.choose_baseline`): by default the recipe's AdamW setting. Columns `*_vs_baseline` are
ratios to it, and are left out when the setting has no baseline (docs/design.md, "Reports").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lionbench.record import Status
from lionbench.report.arms import DEFAULT_BASELINE, choose_baseline
from lionbench.report.claims import lion_claims

TARGET_FRACTIONS = (0.5, 0.75, 1.0)  # default targets: the baseline's val loss at these points
RATIO_COLUMNS = ("steps_per_s", "examples_per_s", "opt_step_ms", "optimizer_state_mb",
                 "peak_mem_mb")  # fmt: skip
FINISHED = tuple(s.value for s in Status if s.finished)


@dataclass
class Setting:
    """All the tables of one comparable setting. `baseline` is the label of the arm the others
    are compared with (None: the setting has none, see `warnings`)."""

    key: str
    label: str
    runs: pd.DataFrame
    optimizers: pd.DataFrame = field(default_factory=pd.DataFrame)
    targets: pd.DataFrame = field(default_factory=pd.DataFrame)
    sweep: pd.DataFrame = field(default_factory=pd.DataFrame)
    claims: pd.DataFrame = field(default_factory=pd.DataFrame)
    warnings: list[str] = field(default_factory=list)
    plots: dict[str, Path] = field(default_factory=dict)
    baseline: str | None = None
    baseline_optim: str = DEFAULT_BASELINE
    claims_baseline: str | None = None  # the recipe's AdamW arm, what the Lion claims are about


def analyse(
    runs: pd.DataFrame,
    curves: pd.DataFrame,
    targets: list[float],
    baseline: str = DEFAULT_BASELINE,
) -> list[Setting]:
    """One `Setting` per setting key, its arms compared with optimizer `baseline`'s arm."""
    settings = []
    done = runs[runs["status"] == Status.COMPLETED.value]
    for key, group in runs[runs["setting"].notna()].groupby("setting", sort=True):
        first = group.iloc[0]
        label = (
            f"{first['recipe']} scale={first['scale']} data={first['data']} "
            f"batch={first['batch_size']} steps={first['planned_steps']} "
            f"device={first.get('device')} [{key}]"
        )
        s = Setting(str(key), label, group, baseline_optim=baseline)
        completed = done[done["setting"] == key]
        table = optimizer_table(group, completed)
        s.baseline, warning = choose_baseline(table, baseline)
        if s.baseline is not None and table.loc[table["arm"] == s.baseline, "n"].iloc[0] == 0:
            warning = f"the {baseline} baseline ({s.baseline}) has no completed run"
            s.baseline = None
        s.optimizers = with_ratios(table, s.baseline)
        s.targets = target_table(completed, curves, targets, s.baseline)
        s.sweep = sweep_table(completed)
        adamw = s.baseline if baseline == "adamw" else choose_baseline(table, "adamw")[0]
        s.claims_baseline = adamw
        s.claims = lion_claims(s.optimizers, completed, s.sweep, s.targets, adamw)
        s.warnings = pairing_warnings(completed) + ([warning] if warning else [])
        settings.append(s)
    return settings


def mean_std(values: pd.Series) -> tuple[float, float, int]:
    """Mean, sample std (nan for one value) and count of the finite values."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    v = v[np.isfinite(v)]
    if v.empty:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan, len(v)


def optimizer_table(group: pd.DataFrame, completed: pd.DataFrame) -> pd.DataFrame:
    """One row per arm: loss over its completed seeds, speed, memory, and what went wrong."""
    rows = []
    for arm, runs in group.groupby("arm", sort=False):
        ok = completed[completed["arm"] == arm]
        fv, fs, n = mean_std(ok["final_val_loss"])
        bv, bs, _ = mean_std(ok["best_val_loss"])
        floor = ok["loss_floor"].dropna()
        first = runs.iloc[0]
        flags = runs["recipe_baseline"].dropna()
        rows.append(
            {
                "arm": arm,
                "optim": first["optim"],
                "impl": first["impl"],
                "lr": first["lr"],
                "weight_decay": first["weight_decay"],
                "hyperparams": first["hyperparams"],
                "recipe_baseline": bool(flags.any()) if not flags.empty else None,
                "n": n,
                "seeds": ",".join(str(x) for x in sorted(ok["seed"].tolist())),
                "final_val_loss": fv,
                "final_val_loss_std": fs,
                "best_val_loss": bv,
                "best_val_loss_std": bs,
                "gap_to_floor": fv - float(floor.mean()) if not floor.empty else math.nan,
                "steps_per_s": ok["steps_per_s"].mean(),
                "examples_per_s": ok["examples_per_s"].mean(),
                "opt_step_ms": ok["opt_step_ms"].median(),
                "peak_mem_mb": ok["peak_mem_bytes"].mean() / 1e6,
                "optimizer_state_mb": ok["optimizer_state_bytes"].mean() / 1e6,
                "diverged": int((runs["status"] == Status.DIVERGED.value).sum()),
                "failed": int((~runs["status"].isin(FINISHED)).sum()),
            }
        )
    return pd.DataFrame(rows)


def with_ratios(table: pd.DataFrame, baseline: str | None) -> pd.DataFrame:
    """The arms table with a `baseline` flag and, when there is a baseline, `*_vs_baseline`."""
    table = table.copy()
    table["baseline"] = table["arm"] == baseline
    if baseline is None:
        return table
    base = table[table["baseline"]].iloc[0]
    for col in RATIO_COLUMNS:
        table[f"{col}_vs_baseline"] = table[col] / base[col]
    return table


def default_targets(
    completed: pd.DataFrame, curves: pd.DataFrame, baseline: str | None
) -> list[float]:
    """Losses the baseline arm reaches in every seed: its worst seed's val loss at 50%, 75% and
    100% of training. None without a baseline (give --target)."""
    if baseline is None:
        return []
    runs = completed[completed["arm"] == baseline]
    worst = curves[curves["run_dir"].isin(runs["run_dir"])].groupby("step")["loss"].max()
    worst = worst[worst.index > 0].sort_index()
    if worst.empty:
        return []
    picks = {worst.iloc[max(0, math.ceil(f * len(worst)) - 1)] for f in TARGET_FRACTIONS}
    return [float(p) for p in sorted(picks, reverse=True)]


def first_hits(curves: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per run, the first eval (step, time_s) at or below the target. A run that never got
    there has no row: its steps are nan, never the step budget (that would reward runs that did
    not get there). One pass over all curves per target: 1,000 runs stay fast."""
    hit = curves[curves["loss"] <= target].sort_values("step", kind="stable")
    return hit.drop_duplicates("run_dir").set_index("run_dir")[["step", "time_s"]]


def target_table(
    completed: pd.DataFrame, curves: pd.DataFrame, targets: list[float], baseline: str | None
) -> pd.DataFrame:
    """Steps and time to each target per arm; `steps_vs_baseline` where both reached it in
    every seed."""
    targets = list(dict.fromkeys(targets)) or default_targets(completed, curves, baseline)
    rows = []
    for target in targets:
        hits = first_hits(curves, target)
        for arm, runs in completed.groupby("arm", sort=False):
            mine = hits.reindex(runs["run_dir"])
            steps = pd.to_numeric(mine["step"], errors="coerce").dropna()
            times = pd.to_numeric(mine["time_s"], errors="coerce").dropna()
            rows.append(
                {
                    "target": target,
                    "arm": arm,
                    "optim": runs["optim"].iloc[0],
                    "reached": f"{len(steps)}/{len(runs)}",
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


def sweep_table(completed: pd.DataFrame) -> pd.DataFrame:
    """Ratio-linked arms (Lion's lr and wd derived from AdamW's through r) by family and ratio;
    `best` marks each family's lowest mean final val loss."""
    linked = completed[completed["family"].notna()]
    rows = []
    for (family, ratio), runs in linked.groupby(["family", "ratio"], sort=True):
        mean, std, n = mean_std(runs["final_val_loss"])
        rows.append(
            {
                "optim": runs["optim"].iloc[0],
                "family": family,
                "arm": runs["arm"].iloc[0],
                "ratio": ratio,
                "lr": runs["lr"].iloc[0],
                "weight_decay": runs["weight_decay"].iloc[0],
                "n": n,
                "final_val_loss": mean,
                "final_val_loss_std": std,
            }
        )
    table = pd.DataFrame(rows)
    if not table.empty:
        best = table.groupby("family")["final_val_loss"].transform("min")
        table["best"] = table["final_val_loss"] == best
    return table


def pairing_warnings(completed: pd.DataFrame) -> list[str]:
    """Arms that ran different seeds are not paired: say so rather than compare silently."""
    seed_sets = {arm: frozenset(r["seed"]) for arm, r in completed.groupby("arm")}
    if len(set(seed_sets.values())) > 1:
        detail = "; ".join(f"{a}: {sorted(s)}" for a, s in seed_sets.items())
        return [f"arms ran different seed sets ({detail}); means use each arm's own seeds"]
    return []
