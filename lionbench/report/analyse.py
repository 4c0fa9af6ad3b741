"""Settings, arms and their tables: pure pandas and numpy, no rendering.

Runs are compared only within a *setting*: runs whose configs are equal once the optimizer
settings, the seed and what is not part of a run's identity are removed (`record.setting_config`,
the one definition), split by device. Within a setting every arm is compared with one *baseline*
arm (`arms.choose_baseline`): by default the recipe's AdamW setting. Columns `*_vs_baseline` are
ratios to it, and are left out when the setting has no baseline (docs/design.md, "Reports").
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lionbench.optim.registry import BASELINE
from lionbench.record import Status
from lionbench.report.arms import DEFAULT_BASELINE, choose_baseline
from lionbench.report.claims import lion_claims
from lionbench.report.targets import default_targets, target_table
from lionbench.report.values import run_values
from lionbench.report.verdicts import compare_arms

RATIO_COLUMNS = ("steps_per_s", "examples_per_s", "opt_step_ms", "optimizer_state_mb",
                 "peak_mem_mb")  # fmt: skip
FINISHED = tuple(s.value for s in Status if s.finished)
COUNTED = (Status.COMPLETED.value, Status.DIVERGED.value)  # a diverged seed stays in its arm
LABEL_KEYS = (("size", "size"), ("data", "data"), ("batch", "batch_size"),
              ("steps", "planned_steps"), ("sched", "sched"))  # fmt: skip


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
    comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)  # verdicts.compare_arms
    warnings: list[str] = field(default_factory=list)
    plots: dict[str, Path] = field(default_factory=dict)
    baseline: str | None = None
    baseline_optim: str = DEFAULT_BASELINE
    tuned_baseline: str | None = None  # the baseline arm a sweep or study tuned, if any
    claims_baseline: str | None = None  # the AdamW arm the Lion claims are about


def analyse(
    runs: pd.DataFrame,
    curves: pd.DataFrame,
    targets: list[float],
    baseline: str = DEFAULT_BASELINE,
    tuned: dict[str, str] | None = None,
) -> list[Setting]:
    """One `Setting` per setting key, its arms compared with optimizer `baseline`'s arm (the
    one a sweep or study tuned, where `tuned` names it by setting key; else the recipe's),
    named by what tells the settings apart and in that (stable) order."""
    settings = []
    finished = runs[runs["status"].isin(COUNTED)]
    for key, group in runs[runs["setting"].notna()].groupby("setting", sort=True):
        s = Setting(str(key), str(key), group, baseline_optim=baseline)
        s.tuned_baseline = (tuned or {}).get(str(key))
        analyse_setting(s, finished[finished["setting"] == key], curves, targets)
        settings.append(s)
    for s, label in zip(settings, setting_labels(settings), strict=True):
        s.label = label
    return sorted(settings, key=lambda s: s.label)


def analyse_setting(
    s: Setting, finished: pd.DataFrame, curves: pd.DataFrame, targets: list[float]
) -> None:
    """Fill one setting's tables: arms, targets, sweep, paired comparisons and claims."""
    completed = finished[finished["status"] == Status.COMPLETED.value]
    table = optimizer_table(s.runs, completed)
    s.baseline, warning = choose_baseline(table, s.baseline_optim, s.tuned_baseline)
    if s.baseline is not None and not (
        table.loc[table["arm"] == s.baseline, ["n", "diverged"]].iloc[0].sum()
    ):  # a baseline whose seeds all diverged is still judged (+inf losses): one with no run is not
        warning = f"the {s.baseline_optim} baseline ({s.baseline}) has no completed run"
        s.baseline = None
    s.optimizers = with_ratios(table, s.baseline)
    tlist = list(dict.fromkeys(targets)) or default_targets(completed, curves, s.baseline)
    s.targets = target_table(finished, curves, tlist, s.baseline)
    s.sweep = sweep_table(finished)
    values = run_values(finished, curves, tlist)
    if s.baseline is not None:
        s.comparisons = compare_arms(values, s.baseline, candidates(table, s.baseline))
    adamw = s.baseline if s.baseline_optim == BASELINE else choose_baseline(table, BASELINE)[0]
    s.claims_baseline = adamw
    s.claims = lion_claims(s.optimizers, values, s.sweep, adamw)
    s.warnings = [
        *pairing_warnings(finished),
        *([warning] if warning else []),
        *timing_warnings(finished),
    ]


def candidates(table: pd.DataFrame, baseline: str) -> list[str]:
    """Every arm but the baseline: other optimizers first (the comparisons people ran the
    setting for), then the baseline optimizer's other settings (its untuned recipe lr...)."""
    base_optim = table.loc[table["arm"] == baseline, "optim"].iloc[0]
    others = table[table["arm"] != baseline]
    return [*others.loc[others["optim"] != base_optim, "arm"],
            *others.loc[others["optim"] == base_optim, "arm"]]  # fmt: skip


def timing_warnings(finished: pd.DataFrame) -> list[str]:
    """The runs whose timing was contended, left out of every speed verdict, with why."""
    if "contended" not in finished:
        return []
    bad = finished[finished["contended"].eq(True)]  # None or NaN: not known to be contended
    if bad.empty:
        return []
    named = "; ".join(
        f"{r['arm']} seed {r['seed']} ({r['contention']})" for _, r in bad.head(5).iterrows()
    )
    more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
    return [f"{len(bad)} contended run(s) left out of the speed verdicts: {named}{more}"]


def setting_labels(settings: list[Setting]) -> list[str]:
    """Each setting named by recipe and scale plus every key whose value differs between the
    settings (data, batch, steps, sched, device...), never by a hash; settings that still read
    alike get the other config keys they differ in (`warmup_steps=10`), and only then #1, #2."""
    firsts = [s.runs.iloc[0] for s in settings]
    devices = [s.key.split("-", 1)[1] if "-" in s.key else "?" for s in settings]
    parts = [[str(f["recipe"]), str(f["scale"])] for f in firsts]
    for name, col in LABEL_KEYS:
        vals = [str(f.get(col)) for f in firsts]
        if len(set(vals)) > 1:
            for p, v in zip(parts, vals, strict=True):
                p.append(f"{name}={v}")
    if len(set(devices)) > 1:
        for p, d in zip(parts, devices, strict=True):
            p.append(f"device={d}")
    labels = [" ".join(p) for p in parts]
    for lab in set(labels):
        alike = [i for i, x in enumerate(labels) if x == lab]
        configs = [json.loads(str(firsts[i].get("setting_config") or "{}")) for i in alike]
        keys = sorted({k for c in configs for k in c if len({str(d.get(k)) for d in configs}) > 1})
        for i, c in zip(alike, configs, strict=True):
            said = [f"{k.rsplit('.', 1)[-1]}={c[k]}" for k in keys if c.get(k) is not None]
            labels[i] = " ".join([labels[i], *said[:3]])
    counts = {lab: labels.count(lab) for lab in labels}
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(f"{lab} #{seen[lab]}" if counts[lab] > 1 else lab)
    return out


def mean_std(values: pd.Series) -> tuple[float, float, int]:
    """Mean, sample std (nan for one value) and count of the finite values."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    v = v[np.isfinite(v)]
    if v.empty:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan, len(v)


def seed_list(seeds: pd.Series) -> list[int]:
    """The seeds, sorted, as ints (a corrupt row without a seed makes the column float)."""
    return sorted(int(x) for x in pd.to_numeric(seeds, errors="coerce").dropna())


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
        nans = pd.Series(math.nan, index=ok.index)
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
                "seeds": ",".join(str(x) for x in seed_list(ok["seed"])),  # for people
                "seed_list": seed_list(ok["seed"]),  # the exports' `seeds`: a real list
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
                "expected_state_mb": ok.get("expected_state_bytes", nans).mean() / 1e6,
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


def sweep_table(finished: pd.DataFrame) -> pd.DataFrame:
    """Ratio-linked arms (Lion's lr and wd derived from AdamW's through r) by family and ratio.
    `best` marks each family's lowest mean final val loss among arms without a diverged seed:
    an arm whose other seeds diverged is never silently best (its `note` says so)."""
    linked = finished[finished["family"].notna()]
    rows = []
    for (family, ratio), runs in linked.groupby(["family", "ratio"], sort=True):
        ok = runs[runs["status"] == Status.COMPLETED.value]
        mean, std, n = mean_std(ok["final_val_loss"])
        rows.append(
            {
                "optim": runs["optim"].iloc[0],
                "family": family,
                "arm": runs["arm"].iloc[0],
                "ratio": ratio,
                "lr": runs["lr"].iloc[0],
                "weight_decay": runs["weight_decay"].iloc[0],
                "n": n,
                "diverged": int((runs["status"] == Status.DIVERGED.value).sum()),
                "final_val_loss": mean,
                "final_val_loss_std": std,
            }
        )
    table = pd.DataFrame(rows)
    if not table.empty:
        clean = table["final_val_loss"].where(table["diverged"] == 0)
        best = clean.groupby(table["family"]).transform("min")
        table["best"] = clean == best
        lowest = table.groupby("family")["final_val_loss"].transform("min")
        table["note"] = [
            f"lowest mean of the completed seeds, but {d} diverged: not best" if d and v == lo
            else ""
            for d, v, lo in zip(table["diverged"], table["final_val_loss"], lowest, strict=True)
        ]  # fmt: skip
    return table


def pairing_warnings(finished: pd.DataFrame) -> list[str]:
    """Arms that ran different seeds are not paired: say so rather than compare silently. A
    diverged seed is one the arm ran (it stays in its arm)."""
    seed_sets = {arm: frozenset(r["seed"]) for arm, r in finished.groupby("arm")}
    if len(set(seed_sets.values())) > 1:
        detail = "; ".join(f"{a}: {sorted(s)}" for a, s in seed_sets.items())
        return [f"arms ran different seed sets ({detail}); means use each arm's own seeds"]
    return []
