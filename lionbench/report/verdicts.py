"""Per-seed values of every run and their paired comparisons: candidate arms against a baseline.

A diverged seed stays in its arm (docs/design.md, "Verdicts"): its losses are +inf (worse than
any finite loss) and it never reaches a target (+inf steps and time, as AlgoPerf scores a run
that misses the target), so a comparison with a divergence is decided by the sign test. Speeds
(steps/s, optimizer step time, time to target) come only from a fair measurement: completed
runs whose timing was not contended (loop/exposure.py), of arms whose runs were interleaved in
time; arms run one after another, where machine drift lines up with the optimizer, get no speed
verdict. Only seeds both arms ran are paired; the others are listed, never silently used.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lionbench.record import Status
from lionbench.report.stats import compare, holm, seeds_needed, verdict

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
VALUE_COLUMNS = ["run_dir", "arm", "optim", "seed", "diverged", "metric", "target", "value",
                 "started", "ended"]  # fmt: skip
COMPARISON_COLUMNS = [
    "arm", "metric", "target", "name", "n", "estimate", "low", "high", "sd", "p", "p_holm", "p_t",
    "p_exact", "family", "method", "kind", "verdict", "seeds_needed", "diverged", "unpaired",
]  # fmt: skip


def first_hits(curves: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per run, the first eval (step, time_s) at or below the target. A run that never got
    there has no row: its steps are nan, never the step budget (that would reward runs that did
    not get there). One pass over all curves per target: 1,000 runs stay fast."""
    hit = curves[curves["loss"] <= target].sort_values("step", kind="stable")
    return hit.drop_duplicates("run_dir").set_index("run_dir")[["step", "time_s"]]


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
    contended = column(finished, "contended", False).fillna(False).astype(bool).to_numpy()
    unfair = diverged | contended
    parts: list[tuple[str, float, np.ndarray]] = []
    for col in ("final_val_loss", "best_val_loss", "steps_per_s", "opt_step_ms"):
        v = pd.to_numeric(finished[col], errors="coerce").to_numpy(dtype=float)
        if col.endswith("loss"):
            v = np.where(diverged, math.inf, v)
        else:
            v = np.where(unfair | ~np.isfinite(v), math.nan, v)
        parts.append((col, math.nan, v))
    for target in targets:
        hits = first_hits(curves, target).reindex(finished["run_dir"])
        steps = pd.to_numeric(hits["step"], errors="coerce").to_numpy(dtype=float)
        times = pd.to_numeric(hits["time_s"], errors="coerce").to_numpy(dtype=float)
        parts.append(("steps_to_target", float(target), np.where(diverged | np.isnan(steps),
                                                                   math.inf, steps)))  # fmt: skip
        # a run that never got there took +inf time; a contended one's time is not its own
        times = np.where(diverged | np.isnan(steps), math.inf, times)
        parts.append(("time_to_target_s", float(target), np.where(contended, math.nan, times)))
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
            "started": np.tile(column(finished, "started").to_numpy(dtype=float), k),
            "ended": np.tile(column(finished, "ended").to_numpy(dtype=float), k),
        },
        columns=VALUE_COLUMNS,
    )
    return out[out["value"].notna()].reset_index(drop=True)


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


def comparison_row(
    metric: str, target: float, arm: str, base: Seeds, cand: Seeds, family: int = 1
) -> dict:
    """One candidate's paired comparison on one metric, one of a family of `family`; `result`
    and `paired` (the paired values) are popped by the caller."""
    common = sorted(set(base) & set(cand), key=seed_order)
    paired = (
        np.array([base[s][0] for s in common], float),
        np.array([cand[s][0] for s in common], float),
    )
    result = compare(*paired, METRICS[metric][1], family)
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
        "diverged": f"{sum(cand[s][1] for s in common)}/{sum(base[s][1] for s in common)}",
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
