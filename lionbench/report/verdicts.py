"""Per-seed values of every run and their paired comparisons: candidate arms against a baseline.

A diverged seed stays in its arm (docs/design.md, "Verdicts"): its losses are +inf (worse than
any finite loss) and it never reaches a target (+inf steps and time, as AlgoPerf scores a run
that misses the target), so a comparison with a divergence is decided by the sign test. Speeds
come from completed runs only (a diverged run stopped early and its timing is not comparable).
Only seeds both arms ran are paired; the others are listed, never silently used.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lionbench.record import Status
from lionbench.report.stats import compare, holm, verdict

# metric -> (lower is better, kind, display name)
METRICS = {
    "final_val_loss": (True, "difference", "final val loss"),
    "best_val_loss": (True, "difference", "best val loss"),
    "steps_to_target": (True, "ratio", "steps to"),
    "time_to_target_s": (True, "ratio", "time to"),
    "steps_per_s": (False, "ratio", "steps/s"),
    "opt_step_ms": (True, "ratio", "opt step time"),
}
VALUE_COLUMNS = ["run_dir", "arm", "optim", "seed", "diverged", "metric", "target", "value"]
COMPARISON_COLUMNS = [
    "arm", "metric", "target", "name", "n", "estimate", "low", "high", "p", "p_holm", "method",
    "kind", "verdict", "seeds_needed", "diverged", "unpaired",
]  # fmt: skip


def first_hits(curves: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per run, the first eval (step, time_s) at or below the target. A run that never got
    there has no row: its steps are nan, never the step budget (that would reward runs that did
    not get there). One pass over all curves per target: 1,000 runs stay fast."""
    hit = curves[curves["loss"] <= target].sort_values("step", kind="stable")
    return hit.drop_duplicates("run_dir").set_index("run_dir")[["step", "time_s"]]


def run_values(finished: pd.DataFrame, curves: pd.DataFrame, targets: list[float]) -> pd.DataFrame:
    """One row per run and metric (and target): the value the comparisons pair by seed.
    `finished` holds the completed and diverged runs of one setting. Built from numpy columns
    in one go: the A/A test calls this hundreds of times."""
    diverged = (finished["status"] == Status.DIVERGED.value).to_numpy()
    parts: list[tuple[str, float, np.ndarray]] = []
    for col in ("final_val_loss", "best_val_loss", "steps_per_s", "opt_step_ms"):
        v = pd.to_numeric(finished[col], errors="coerce").to_numpy(dtype=float)
        if col.endswith("loss"):
            v = np.where(diverged, math.inf, v)
        else:
            v = np.where(diverged | ~np.isfinite(v), math.nan, v)
        parts.append((col, math.nan, v))
    for target in targets:
        hits = first_hits(curves, target).reindex(finished["run_dir"])
        for metric, col in (("steps_to_target", "step"), ("time_to_target_s", "time_s")):
            v = pd.to_numeric(hits[col], errors="coerce").to_numpy(dtype=float)
            parts.append((metric, float(target), np.where(diverged | np.isnan(v), math.inf, v)))
    k = len(parts)
    out = pd.DataFrame(
        {
            "run_dir": np.tile(finished["run_dir"].to_numpy(dtype=object), k),
            "arm": np.tile(finished["arm"].to_numpy(dtype=object), k),
            "optim": np.tile(finished["optim"].to_numpy(dtype=object), k),
            "seed": np.tile(finished["seed"].to_numpy(dtype=object), k),
            "diverged": np.tile(diverged, k),
            "metric": np.repeat([m for m, _, _ in parts], len(finished)),
            "target": np.repeat([t for _, t, _ in parts], len(finished)),
            "value": np.concatenate([v for _, _, v in parts]),
        },
        columns=VALUE_COLUMNS,
    )
    return out[out["value"].notna()].reset_index(drop=True)


def compare_arms(values: pd.DataFrame, baseline: str, candidates: list[str]) -> pd.DataFrame:
    """Every candidate arm against the baseline arm on every metric, paired by seed, with Holm's
    adjustment across the candidates of each metric (and target). Plain dicts, not pandas
    groupbys: the A/A test calls this hundreds of times."""
    rows: list[dict[str, object]] = []
    for (metric, target), by_arm in per_seed(values).items():
        base = by_arm.get(baseline, {})
        group_rows = [
            comparison_row(metric, target, arm, base, by_arm.get(arm, {})) for arm in candidates
        ]
        adjusted = holm([float(r["p"]) for r in group_rows])  # type: ignore[arg-type]
        lower = METRICS[metric][0]
        for r, p_adj in zip(group_rows, adjusted, strict=True):
            r["p_holm"] = p_adj
            r["verdict"] = verdict(r.pop("result"), p_adj, lower)  # type: ignore[arg-type]
        rows += group_rows
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


Seeds = dict[object, tuple[float, bool]]  # seed -> (value, diverged)


def seed_order(seed: object) -> tuple[int, object]:
    """Seeds in numeric order (10 after 9), anything else after them as text."""
    return (0, seed) if isinstance(seed, int | float) else (1, str(seed))


def per_seed(values: pd.DataFrame) -> dict[tuple[str, float], dict[str, Seeds]]:
    """(metric, target; -1 for none) -> arm -> seed -> (value, diverged), in first-seen order.
    A seed run twice: the mean of its values, diverged if either run diverged."""
    acc: dict[tuple[str, float], dict[str, dict[object, list[tuple[float, bool]]]]] = {}
    cols = zip(values["metric"], values["target"], values["arm"], values["seed"],
               values["value"], values["diverged"], strict=True)  # fmt: skip
    for metric, target, arm, seed, value, div in cols:
        key = (str(metric), -1.0 if pd.isna(target) else float(target))
        acc.setdefault(key, {}).setdefault(str(arm), {}).setdefault(seed, []).append(
            (float(value), bool(div))
        )
    return {
        key: {
            arm: {
                seed: (float(np.mean([v for v, _ in vs])), any(d for _, d in vs))
                for seed, vs in seeds.items()
            }
            for arm, seeds in arms.items()
        }
        for key, arms in acc.items()
    }


def comparison_row(metric: str, target: float, arm: str, base: Seeds, cand: Seeds) -> dict:
    """One candidate's paired comparison on one metric; `result` is popped by the caller."""
    common = sorted(set(base) & set(cand), key=seed_order)
    result = compare(
        np.array([base[s][0] for s in common], float),
        np.array([cand[s][0] for s in common], float),
        METRICS[metric][1],
    )
    only_b = sorted(set(base) - set(common), key=seed_order)
    only_c = sorted(set(cand) - set(common), key=seed_order)
    unpaired = "; ".join(
        f"{who} only: {', '.join(map(str, seeds))}"
        for who, seeds in (("baseline", only_b), ("candidate", only_c))
        if seeds
    )
    name = METRICS[metric][2] + (f" {target:.4g}" if target >= 0 else "")
    return {
        "arm": arm,
        "metric": metric,
        "target": target if target >= 0 else math.nan,
        "name": name,
        "n": result.n,
        "estimate": result.estimate,
        "low": result.low,
        "high": result.high,
        "p": result.p,
        "method": result.method,
        "kind": result.kind,
        "seeds_needed": result.needed,
        "diverged": f"{sum(cand[s][1] for s in common)}/{sum(base[s][1] for s in common)}",
        "unpaired": unpaired,
        "result": result,
    }


def describe(row: dict[str, object] | pd.Series, with_name: bool = True) -> str:
    """`final val loss -0.021 [-0.030, -0.012], p=0.003, n=6 (better)`: one comparison in
    words (a ratio as `0.82x`; a median for the sign test)."""
    name = f"{row['name']} " if with_name else ""
    if row["verdict"] == "not enough data":
        return f"{name}n={row['n']} (not enough data)"
    ratio = row["kind"] == "ratio"
    est = effect_text(row["estimate"], ratio) + (" median" if row["method"] == "sign test" else "")
    ci = f"[{effect_text(row['low'], ratio)}, {effect_text(row['high'], ratio)}]"
    p = p_text(row["p_holm"])
    p = p if p.startswith("<") else f"={p}"
    text = f"{name}{est} {ci}, p{p}, n={row['n']} ({row['verdict']}"
    needed = row.get("seeds_needed")
    if row["verdict"] == "no significant difference" and needed is not None and needed == needed:
        text += f"; ~{int(needed)} seeds would resolve it"  # type: ignore[call-overload]
    return text + ")"


def effect_text(v: object, ratio: bool) -> str:
    """An estimate or interval bound: `0.82x` for a ratio, `-0.021` for a difference."""
    x = float(v)  # type: ignore[arg-type]
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.3g}x" if ratio else f"{x:+.3g}"


def p_text(p: object) -> str:
    """A p-value: `0.012`, `<0.001`, or `-` for none."""
    x = float(p)  # type: ignore[arg-type]
    return "-" if math.isnan(x) else (f"{x:.2g}" if x >= 0.001 else "<0.001")
