"""Scaling studies (`_studies/<name>.json` of kind "scaling"): does the candidate's advantage
over the baseline survive as the model and its data grow?

Every number rests on the confirmation runs alone (fresh seeds, the same for every optimizer
and point): the selection runs chose the settings, so their losses are biased low. Per point
and candidate: the paired final-val-loss difference (t-test, Holm across the study's points and
candidates) and the effective-data speedup, the data the baseline needs for the candidate's
loss over the data the candidate had, read off the baseline's loss-against-data curve at that
size, seed by seed. The trend is an OLS fit of log2 speedup on log2 parameters (and log2
budget). docs/design.md, "Scaling verdicts", defines each step.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lionbench.optim.registry import OPTIMIZERS
from lionbench.record import Status
from lionbench.report.scaling_fit import (
    NEEDS_BUDGETS,
    TWO_SIZES,
    Trend,
    count_text,
    data_equivalent,
    fit_trend,
    mean_interval,
)
from lionbench.report.stats import ALPHA, holm
from lionbench.report.studies import SCALING, Runs
from lionbench.run.rundir import STUDIES, find_manifests

SCHEMA = 1


@dataclass
class ScalingStudy:
    """One scaling manifest judged: `problem` when it could not be read; else `points` (one row
    per point and candidate), `losses` (per optimizer, point and seed), `speedups` (per
    candidate, point and seed), each candidate's `Trend` and verdict line."""

    name: str
    path: Path
    problem: str | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    points: pd.DataFrame = field(default_factory=pd.DataFrame)
    losses: pd.DataFrame = field(default_factory=pd.DataFrame)
    speedups: pd.DataFrame = field(default_factory=pd.DataFrame)
    trends: dict[str, Trend] = field(default_factory=dict)
    verdicts: list[str] = field(default_factory=list)
    plots: dict[str, Path] = field(default_factory=dict)


def read_scaling(roots: list[Path], runs: pd.DataFrame) -> list[ScalingStudy]:
    """Every scaling manifest under the roots, judged on the runs table; a manifest that cannot
    be read (or is of another schema) is a problem line, never a crash."""
    found = Runs(runs, pd.DataFrame())
    out = []
    for path in find_manifests(roots, STUDIES):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            out.append(ScalingStudy(path.stem, path, f"study manifest {path}: unreadable ({e})"))
            continue
        if not isinstance(data, dict) or data.get("kind") != SCALING:
            continue  # a claims study: studies.py reads it
        if data.get("schema_version") != SCHEMA:
            why = f"schema {data.get('schema_version')!r}, this lionbench reads {SCHEMA}"
            out.append(ScalingStudy(path.stem, path, f"scaling manifest {path}: {why}"))
            continue
        try:
            out.append(judge_scaling(data, path, found))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            problem = f"scaling manifest {path}: malformed ({type(e).__name__}: {e})"
            out.append(ScalingStudy(path.stem, path, problem))
    return out


def judge_scaling(data: dict[str, Any], path: Path, found: Runs) -> ScalingStudy:
    """Losses, per-point comparisons, speedups, trends and verdicts of one scaling manifest."""
    st = ScalingStudy(str(data["name"]), path, manifest=data)
    st.losses = seed_losses(data, path.parent.parent, found)
    st.points, st.speedups = point_rows(data, st.losses)
    budgets = sorted({float(p["budget"]) for p in data["points"]})
    for cand in data["candidates"]:
        obs = st.speedups[st.speedups["candidate"] == cand] if not st.speedups.empty else None
        st.trends[cand] = fit_trend(obs, budgets, [float(p["params"]) for p in data["points"]])
        rows = st.points[st.points["candidate"] == cand]
        st.verdicts.append(verdict(data, cand, st.trends[cand], rows, obs))
    return st


def seed_losses(data: dict[str, Any], base: Path, found: Runs) -> pd.DataFrame:
    """One row per confirmation run: size, params, budget, data, optim, seed, loss (a diverged
    run's loss is +inf; failed and unfinished runs have no loss and no row)."""
    rows = []
    for p in data["points"]:
        for optim, entry in p["optimizers"].items():
            runs = found.rows(base, list((entry or {}).get("confirm_run_dirs") or []))
            for _, r in runs.drop_duplicates("seed").iterrows():
                if r["status"] not in (Status.COMPLETED.value, Status.DIVERGED.value):
                    continue
                loss = math.inf if r["status"] == Status.DIVERGED.value else r["final_val_loss"]
                rows.append({"size": str(p["size"]), "params": float(p["params"]),
                             "budget": float(p["budget"]), "data": data_of(p), "optim": optim,
                             "seed": r["seed"], "loss": float(loss)})  # fmt: skip
    cols = ["size", "params", "budget", "data", "optim", "seed", "loss"]
    return pd.DataFrame(rows, columns=cols)


def data_of(point: dict[str, Any]) -> float:
    """The data a point trained on (tokens or examples); its budget multiple where not given."""
    return float(point.get("data") or point["budget"])


def by_seed(losses: pd.DataFrame, optim: str) -> dict[Any, float]:
    rows = losses[losses["optim"] == optim]
    return dict(zip(rows["seed"], rows["loss"], strict=True))


def point_rows(data: dict[str, Any], losses: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per point and candidate, one row per point, candidate and seed's speedup). The
    loss difference pairs the seeds where both losses are finite; p is Holm-adjusted across
    every point and candidate of the study."""
    base, rows, seeds = data["baseline"], [], []
    for p in data["points"]:
        here = losses[(losses["size"] == str(p["size"])) & (losses["budget"] == float(p["budget"]))]
        base_loss = by_seed(here, base)
        where = {"size": str(p["size"]), "params": float(p["params"]), "budget": float(p["budget"])}
        for cand in data["candidates"]:
            cand_loss = by_seed(here, cand)
            paired = [k for k in cand_loss if k in base_loss]
            diffs = np.array([cand_loss[k] - base_loss[k] for k in paired])
            finite = diffs[np.isfinite(diffs)]
            mean, low, high, pval = mean_interval(finite)
            speed = point_speedups(losses, data, p, cand)
            seeds += [{**where, "candidate": cand, **s} for s in speed]
            logs = np.array([s["log2_speedup"] for s in speed if math.isfinite(s["log2_speedup"])])
            s_mean, s_low, s_high, _ = mean_interval(logs)
            dropped = Counter(s["why"] for s in speed if s["why"])
            rows.append({
                **where, "data": data_of(p), "candidate": cand, "loss_diff": mean,
                "loss_diff_low": low, "loss_diff_high": high, "p": pval, "n_pairs": len(finite),
                "n_nonfinite_pairs": len(diffs) - len(finite),
                "speedup": 2.0**s_mean, "speedup_low": 2.0**s_low, "speedup_high": 2.0**s_high,
                "n_speedup": len(logs), "n_dropped": sum(dropped.values()),
                "dropped": "; ".join(f"{n} {why}" for why, n in sorted(dropped.items())),
                "extrapolated": any(s["extrapolated"] for s in speed),
            })  # fmt: skip
    points = pd.DataFrame(rows)
    if not points.empty:
        points["p_holm"] = holm([float(v) for v in points["p"]])
    return points, pd.DataFrame(seeds)


def point_speedups(
    losses: pd.DataFrame, data: dict[str, Any], point: dict[str, Any], cand: str
) -> list[dict[str, Any]]:
    """Per seed of the candidate at this point: log2 of D'/D, D' the data at which the
    baseline's loss curve at this size (its seed's losses at every budget) reaches the
    candidate's loss; nan with the reason where there is none."""
    size = str(point["size"])
    budgets = sorted({data_of(p) for p in data["points"] if str(p["size"]) == size})
    if len(budgets) < 2:
        return []
    at_size = losses[(losses["size"] == size) & (losses["optim"] == data["baseline"])]
    curve = at_size.pivot_table(index="data", columns="seed", values="loss", aggfunc="first")
    curve = curve.reindex(budgets)
    here = losses[(losses["size"] == size) & (losses["budget"] == float(point["budget"]))]
    out = []
    for seed, target in by_seed(here, cand).items():
        base = curve[seed].to_numpy(dtype=float) if seed in curve else np.full(len(budgets), np.nan)
        if np.isnan(base).any():
            value, extrapolated, why = math.nan, False, "missing baseline run"
        else:
            value, extrapolated, why = data_equivalent(np.array(budgets), base, target)
        out.append({"seed": seed, "log2_speedup": math.log2(value / data_of(point))
                    if math.isfinite(value) else math.nan, "extrapolated": extrapolated,
                    "why": why})  # fmt: skip
    return out


def title(name: str) -> str:
    spec = OPTIMIZERS.get(name)
    return spec.title if spec is not None else name


def verdict(
    data: dict[str, Any], cand: str, t: Trend, rows: pd.DataFrame, obs: pd.DataFrame | None
) -> str:
    """One line per candidate: the trend with size in words, its factor per doubling of
    parameters [95% CI] and what it rests on, and the loss differences (Holm) beside it."""
    who = f"{title(cand)}'s effective-data speedup over {title(data['baseline'])}"
    better = int(((rows["p_holm"] < ALPHA) & (rows["loss_diff"] < 0)).sum())
    worse = int(((rows["p_holm"] < ALPHA) & (rows["loss_diff"] > 0)).sum())
    losses = (f"final val loss lower at {better}, higher at {worse} of {len(rows)} points "
              f"(paired t, Holm){left_out(data, rows)}")  # fmt: skip
    if t.label == NEEDS_BUDGETS:
        return f"{who}: {NEEDS_BUDGETS} (one budget, no loss-against-data curve); {losses}"
    logs = obs["log2_speedup"].dropna().to_numpy() if obs is not None else np.array([])
    if len(logs) == 0:
        return f"{who}: no value (every seed dropped: see the table); {losses}"
    if t.coef is None:
        mean, low, high, _ = mean_interval(logs)
        return (f"{who}: {t.label}; x{2.0 ** mean:.3g} [{2.0 ** low:.3g}, {2.0 ** high:.3g}] "
                f"(geometric mean over points and seeds); {losses}")  # fmt: skip
    f, lo, hi = t.size_factor
    n_seeds = obs["seed"].nunique() if obs is not None else 0
    extra = int(rows["extrapolated"].sum())
    budgets = len({float(p["budget"]) for p in data["points"]})
    seeds = f"{n_seeds} seed{'' if n_seeds == 1 else 's'}"
    basis = (
        f"{t.sizes} sizes, {budgets} budgets, {seeds}; {extra} of {len(rows)} points extrapolated"
    )
    per = f"x{f:.3g} per doubling of parameters [{lo:.3g}, {hi:.3g}] ({basis})"
    if t.label == TWO_SIZES:
        return f"{who}: no trend claimed, {TWO_SIZES}: {per}; {losses}"
    words = ("shrinks with size" if hi < 1 else "grows with size" if lo > 1
             else "shows no detectable trend with size")  # fmt: skip
    if not (math.isfinite(lo) and math.isfinite(hi)):
        words = f"cannot be judged ({t.n_obs} points for {len(t.coef)} coefficients: no interval)"
    line = f"{who} {words}: {per}"
    if words != "shows no detectable trend with size" and math.isfinite(t.crossing):
        line += f"; the fitted speedup reaches 1 at about {count_text(t.crossing)} parameters"
    return f"{line}; {losses}"


def left_out(data: dict[str, Any], rows: pd.DataFrame) -> str:
    """What the line does not rest on: diverged pairs (left out of the differences and the
    speedups, which favours whoever diverged) and the points an unfinished study lacks."""
    said = []
    diverged = int(rows["n_nonfinite_pairs"].sum()) if "n_nonfinite_pairs" in rows else 0
    if diverged:
        said.append(f"{diverged} pair{'' if diverged == 1 else 's'} with a diverged run left out")
    planned = len(data.get("sizes") or []) * len(data.get("budgets") or [])
    if data.get("complete") is False:
        said.append(f"unfinished study: {len(data['points'])} of {planned} points")
    return "; " + "; ".join(said) if said else ""
