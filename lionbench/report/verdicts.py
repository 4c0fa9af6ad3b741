"""Paired comparisons of candidate arms against a baseline, from the per-seed values of
values.py, and their words.

A comparison with a divergence (+inf) is decided by the sign test (stats.py). Speeds (steps/s,
optimizer step time, time to target) are compared only between arms whose runs were interleaved
in time; arms run one after another, where machine drift lines up with the optimizer, get no
speed verdict. Only seeds both arms ran are paired; the others are listed, never silently used.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lionbench.report.power import seeds_needed
from lionbench.report.stats import compare, holm, verdict
from lionbench.report.values import Seeds, per_seed, seed_order

# metric -> (lower is better, kind, display name)
METRICS = {
    "final_val_loss": (True, "difference", "final val loss"),
    "best_val_loss": (True, "difference", "best val loss"),
    "steps_to_target": (True, "ratio", "steps to"),
    "time_to_target_s": (True, "ratio", "time to"),
    "steps_per_s": (False, "ratio", "steps/s"),
    "opt_step_ms": (True, "ratio", "opt step time"),
}
# the metrics that are timings: judged only from a fair measurement
SPEED_METRICS = ("steps_per_s", "opt_step_ms", "time_to_target_s")
NOT_INTERLEAVED = "not compared: the arms ran one after another"
COMPARISON_COLUMNS = [
    "arm", "metric", "target", "name", "n", "estimate", "low", "high", "sd", "p", "p_holm", "p_t",
    "p_exact", "family", "method", "kind", "verdict", "seeds_needed", "diverged", "unpaired",
]  # fmt: skip


def compare_arms(values: pd.DataFrame, baseline: str, candidates: list[str]) -> pd.DataFrame:
    """Every candidate arm against the baseline arm on every metric, paired by seed. The
    candidates of one metric (and target) are a family: Holm's adjustment decides, intervals
    are simultaneous over it and the seed advice is at its level (report/stats.py). A timing of
    arms that never ran interleaved is not compared. Plain dicts, not pandas groupbys: the A/A
    test calls this hundreds of times."""
    rows: list[dict[str, object]] = []
    spans = run_spans(values)
    for (metric, target), by_arm in per_seed(values).items():
        base = by_arm.get(baseline, {})
        blocked = set()
        if metric in SPEED_METRICS:
            blocked = {
                a
                for a in candidates
                if ran_apart(spans, baseline, a, set(base) & set(by_arm.get(a, {})))
            }
        tested = [a for a in candidates if a not in blocked]
        family = sum(len(set(base) & set(by_arm.get(a, {}))) >= 2 for a in tested)
        group_rows = [
            comparison_row(metric, target, arm, base, by_arm.get(arm, {}), family) for arm in tested
        ]
        adjusted = holm([float(r["p"]) for r in group_rows])  # type: ignore[arg-type]
        lower = METRICS[metric][0]
        for r, p_adj in zip(group_rows, adjusted, strict=True):
            result = r.pop("result")
            r["p_holm"] = p_adj
            r["verdict"] = verdict(result, p_adj, lower)  # type: ignore[arg-type]
            paired = r.pop("paired")
            if r["verdict"] == "no significant difference":
                r["seeds_needed"] = seeds_needed(result, *paired).needed  # type: ignore[misc, arg-type]
        rows += group_rows
        rows += [blocked_row(metric, target, arm) for arm in candidates if arm in blocked]
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def run_spans(values: pd.DataFrame) -> dict[tuple[str, object], tuple[float, float]]:
    """(arm, seed) -> (started, ended) of its run, in seconds since the epoch (nan: unknown)."""
    first = values.drop_duplicates("run_dir")
    return {
        (str(a), s): (float(b), float(e))
        for a, s, b, e in zip(
            first["arm"], first["seed"], first["started"], first["ended"], strict=True
        )
    }


def ran_apart(
    spans: dict[tuple[str, object], tuple[float, float]], baseline: str, arm: str, common: set
) -> bool:
    """Whether every paired run (seeds `common`) of one arm ended before any of the other's
    began: machine drift over time would then line up with the optimizer. Unknown times: not
    apart (runs written before lionbench recorded them)."""
    if len(common) < 2:
        return False
    a = [spans.get((baseline, s), (math.nan, math.nan)) for s in common]
    b = [spans.get((arm, s), (math.nan, math.nan)) for s in common]
    if any(math.isnan(x) for span in (*a, *b) for x in span):
        return False
    return max(e for _, e in a) <= min(s for s, _ in b) or max(e for _, e in b) <= min(
        s for s, _ in a
    )


def blocked_row(metric: str, target: float, arm: str) -> dict[str, object]:
    """The comparison of a timing between arms that ran one after another: none."""
    row: dict[str, object] = dict.fromkeys(COMPARISON_COLUMNS, math.nan)
    name = METRICS[metric][2] + (f" {target:.4g}" if target >= 0 else "")
    row.update(arm=arm, metric=metric, target=target if target >= 0 else math.nan, name=name,
               n=0, method="-", kind=METRICS[metric][1], verdict=NOT_INTERLEAVED,
               seeds_needed=None, diverged="-", unpaired="")  # fmt: skip
    return row


def comparison_row(
    metric: str, target: float, arm: str, base: Seeds, cand: Seeds, family: int = 1
) -> dict:
    """One candidate's paired comparison on one metric, one of a family of `family`; `result`
    and `paired` (the paired values) are popped by the caller."""
    common = sorted(set(base) & set(cand), key=seed_order)
    paired = (
        np.array([base[s].value for s in common], float),
        np.array([cand[s].value for s in common], float),
    )
    resolution = (
        np.array([base[s].resolution for s in common], float),
        np.array([cand[s].resolution for s in common], float),
    )
    result = compare(*paired, METRICS[metric][1], family, resolution)
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
        "sd": result.sd,
        "p": result.p,
        "p_t": result.p_t,
        "p_exact": result.p_exact,
        "family": result.family,
        "method": result.method,
        "kind": result.kind,
        "seeds_needed": None,
        "diverged": "/".join(str(sum(x[s].diverged for s in common)) for x in (cand, base)),
        "unpaired": unpaired,
        "result": result,
        "paired": paired,
    }


def describe(row: dict[str, object] | pd.Series, with_name: bool = True) -> str:
    """`final val loss -0.021 [-0.030, -0.012], p=0.003, n=6 pairs (better)`: one comparison
    in words (a ratio as `0.82x`; a median for the sign test)."""
    name = f"{row['name']} " if with_name else ""
    if row["verdict"] == NOT_INTERLEAVED:
        return f"{name}{NOT_INTERLEAVED}"
    if row["verdict"] == "not enough data":
        return f"{name}n={row['n']} pairs (not enough data)"
    ratio = row["kind"] == "ratio"
    est = effect_text(row["estimate"], ratio) + (" median" if row["method"] == "sign test" else "")
    ci = f"[{effect_text(row['low'], ratio)}, {effect_text(row['high'], ratio)}]"
    p = p_text(row["p_holm"])
    p = p if p.startswith("<") else f"={p}"
    text = f"{name}{est} {ci}, p{p}, n={row['n']} pairs ({row['verdict']}"
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
