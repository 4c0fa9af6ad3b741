"""The paper's claims about Lion (docs/references.md), judged with paired statistics.

These are claims about Lion arms against the recipe's AdamW baseline arm, whatever baseline the
rest of the report uses, and only where the setting has Lion runs. Every claim that compares
Lion with AdamW uses the paired comparisons of verdicts.py with Holm's adjustment across the Lion
arms (docs/design.md, "Verdicts"): a claim holds only where a Lion arm is significantly better
and none significantly worse, so picking the best of several Lion arms cannot make it hold.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from lionbench.report.stats import verdict
from lionbench.report.verdicts import Seeds, compare_arms, comparison_row, describe

CLAIM_COLUMNS = ["claim", "verdict", "evidence"]
STATE = "Lion's optimizer state is at most half of AdamW's"
SPEED = "steps/s higher than AdamW (paper: 2-15%)"
RATIO = "Lion's best lr is 3-10x smaller than AdamW's"
STEPS = "Lion needs fewer steps to the target"
BATCH = "Lion's gains grow with batch size"
SCHEDULE = "cosine decay helps Lion more than rsqrt"
BETAS = "betas (0.95, 0.98) train Lion more stably than (0.9, 0.99) at a high lr"
STATE_TOLERANCE = 1.02  # step counters and other scalars the measured bytes may include


def lion_claims(
    optimizers: pd.DataFrame,
    values: pd.DataFrame,
    sweep: pd.DataFrame,
    adamw: str | None,
) -> pd.DataFrame:
    """One row per claim; empty when the setting has no Lion arm. `values` are the per-run
    values of `verdicts.run_values`; `adamw` the label of the recipe's AdamW arm (None: there
    is none, so nothing can be judged)."""
    if optimizers.empty or not (optimizers["optim"] == "lion").any():
        return pd.DataFrame(columns=CLAIM_COLUMNS)
    lion = optimizers[(optimizers["optim"] == "lion") & (optimizers["n"] > 0)]
    base = optimizers[(optimizers["arm"] == adamw) & (optimizers["n"] > 0)]
    if base.empty or lion.empty:
        rows = [("Lion vs AdamW", "not enough data", "needs completed Lion and AdamW runs")]
        return pd.DataFrame(rows, columns=CLAIM_COLUMNS)
    arms = list(optimizers.loc[optimizers["optim"] == "lion", "arm"])
    rows = [
        state_claim(lion, base.iloc[0]),
        speed_claim(values, str(adamw), arms),
        *ratio_claims(sweep[sweep["optim"] == "lion"] if not sweep.empty else sweep, values),
        steps_claim(values, str(adamw), arms),
    ]
    return pd.DataFrame([r for r in rows if r is not None], columns=CLAIM_COLUMNS)


def state_claim(lion: pd.DataFrame, base: pd.Series) -> tuple[str, str, str]:
    """Lion keeps one buffer per parameter (bf16 momentum: a quarter of AdamW's bytes), AdamW
    two. Bytes are deterministic: no statistics, but each implementation is also checked
    against the bytes it should hold (`expected_state_bytes` of the run summaries)."""
    adamw_mb = float(base["optimizer_state_mb"])
    parts, ok = [], True
    for impl, rows in lion.groupby("impl", sort=True):
        mb = float(rows["optimizer_state_mb"].mean())
        ratio = mb / adamw_mb
        ok &= ratio <= 0.5 * STATE_TOLERANCE
        text = f"lion [{impl}] {mb:.4g} MB vs AdamW {adamw_mb:.4g} MB: ratio {ratio:.3f}"
        expected = rows["expected_state_mb"].mean() if "expected_state_mb" in rows else None
        if expected is None or pd.isna(expected):
            text += " (expected_state_bytes not recorded: measured ratio only)"
        elif abs(mb - expected) > 0.01 * expected:
            ok = False
            text += f" (its implementation should hold {expected:.4g} MB)"
        else:
            text += " (as its implementation should)"
        parts.append(text)
    return STATE, "holds" if ok else "does not hold", "; ".join(parts)


def combine(comps: pd.DataFrame) -> str:
    """A claim's verdict from its Lion arms' Holm-adjusted verdicts."""
    v = set(comps["verdict"])
    if "better" in v:
        return "mixed (see evidence)" if "worse" in v else "holds"
    if "worse" in v:
        return "does not hold"
    if v <= {"not enough data"}:
        return "not enough data"
    return "no significant difference"


def evidence(comps: pd.DataFrame) -> str:
    return "; ".join(f"{r['arm']}: {describe(r, False)}" for _, r in comps.iterrows())


def speed_claim(values: pd.DataFrame, adamw: str, arms: list[str]) -> tuple[str, str, str]:
    """Each Lion arm's steps/s against the AdamW arm's, paired by seed (ratio of steps/s)."""
    v = values[values["metric"] == "steps_per_s"]
    comps = compare_arms(v, adamw, arms)
    lion_sps = v.loc[v["optim"] == "lion", "value"].mean()
    adamw_sps = v.loc[v["arm"] == adamw, "value"].mean()
    head = f"Lion {lion_sps:.4g} vs AdamW {adamw_sps:.4g} steps/s (means); paired: "
    return SPEED, combine(comps), head + evidence(comps)


def ratio_claims(sweep: pd.DataFrame, values: pd.DataFrame) -> list[tuple[str, str, str]]:
    """Per Lion ratio sweep (one per family: impl, betas, ...), the best ratio among arms
    without divergences; the claim is decided only when that best arm's final loss is
    significantly lower (paired, Holm) than every arm on the other side of [3, 10]."""
    families = list(sweep.groupby("family", sort=True)) if not sweep.empty else []
    if not any(len(rows) >= 2 for _, rows in families):
        return [(RATIO, "not enough data", "needs Lion runs at 2+ ratios")]
    out = []
    for family, rows in families:
        if len(rows) < 2:
            continue
        prefix = f"{family}: " if len(families) > 1 else ""
        if not rows["best"].any():
            out.append((RATIO, "not enough data", f"{prefix}every ratio had a diverged seed"))
            continue
        best = rows[rows["best"]].iloc[0]
        inside = rows["ratio"].between(3, 10)
        best_inside = 3 <= best["ratio"] <= 10
        rivals = rows[(inside != best_inside) & (rows["arm"] != best["arm"])]
        v = values[values["metric"] == "final_val_loss"]
        comps = compare_arms(v, str(best["arm"]), list(rivals["arm"]))
        decided = (comps["verdict"] == "worse").all()
        verdict = ("holds" if best_inside else "does not hold") if decided else (
            "no significant difference"
        )  # fmt: skip
        edge = best["ratio"] in (rows["ratio"].min(), rows["ratio"].max())
        text = (
            f"{prefix}best ratio r = {best['ratio']:g} of "
            f"{', '.join(f'{r:g}' for r in rows['ratio'])} "
            f"(val loss {best['final_val_loss']:.4g}, no diverged seed)"
            + ("; at the edge of the tested range" if edge else "")
            + "".join(f"; {n}" for n in rows["note"] if n)
        )
        if not comps.empty:
            text += "; the other side of [3, 10] vs the best: " + evidence(comps)
        out.append((RATIO, verdict, text))
    return out


def steps_claim(values: pd.DataFrame, adamw: str, arms: list[str]) -> tuple[str, str, str] | None:
    """At the tightest target: every Lion arm's steps against the AdamW arm's, paired by seed;
    a seed that diverged or never reached the target takes infinite steps (sign test)."""
    v = values[values["metric"] == "steps_to_target"]
    if v.empty:
        return None
    tightest = v["target"].min()
    v = v[v["target"] == tightest]
    comps = compare_arms(v, adamw, arms)
    reached = v.assign(ok=v["value"] < float("inf")).groupby("arm")["ok"].agg(["sum", "size"])
    counts = ", ".join(
        f"{a} {int(r['sum'])}/{int(r['size'])}"
        for a, r in reached.iterrows()
        if a in [*arms, adamw]
    )
    text = f"target {tightest:.4g}, seeds reaching it: {counts}; paired: " + evidence(comps)
    return STEPS, combine(comps), text


# ------------------------------------------- study claims: one paired test over condition pairs
# (lionbench study claims; report/studies.py reads the runs, docs/design.md says the rules)


def gap(a: Seeds, b: Seeds) -> Seeds:
    """Per seed a - b (infinities kept; inf - inf, no information, drops the seed)."""
    out: Seeds = {}
    for seed in set(a) & set(b):
        d = a[seed][0] - b[seed][0]
        if not math.isnan(d):
            out[seed] = (d, a[seed][1] or b[seed][1])
    return out


def paired(name: str, base: Seeds, cand: Seeds) -> dict[str, Any]:
    """One comparison of `cand` with `base` (lower is better), as a verdicts row."""
    row = comparison_row("final_val_loss", -1.0, name, base, cand)
    row["p_holm"] = row["p"]
    row["verdict"] = verdict(row.pop("result"), row["p"], True)
    row["name"] = name
    return row


def claim_verdict(row: dict[str, Any]) -> str:
    """better -> holds, worse -> the reverse holds, else as the comparison says."""
    return {"better": "holds", "worse": "does not hold (the reverse is significant)"}.get(
        row["verdict"], row["verdict"]
    )


def batch_claim(study: dict[str, Any], c: dict[str, Seeds]) -> tuple[str, str, str]:
    """Lion - AdamW at the recipe's batch against Lion - AdamW at the smaller batch, by seed:
    lower (Lion further ahead at the larger batch) means the gains grow with the batch."""
    big = gap(c["lion reference"], c["adamw reference"])
    small = gap(c["lion variant"], c["adamw variant"])
    row = paired("batch", small, big)
    text = (
        f"Lion - AdamW final val loss (mean over seeds): {mean(big):+.4g} at batch "
        f"{study['reference']['batch_size']}, {mean(small):+.4g} at "
        f"{study['claims']['batch']['change']}; their difference: {describe(row, False)}"
    )
    return BATCH, claim_verdict(row), text


def schedule_claim(study: dict[str, Any], c: dict[str, Seeds]) -> tuple[str, str, str]:
    """Each optimizer's cosine - rsqrt final val loss by seed; Lion's lower than AdamW's means
    cosine helps Lion more."""
    cosine_is_reference = study["reference"]["sched"] != "rsqrt"
    gains = {}
    for o in ("lion", "adamw"):
        ref, var = c[f"{o} reference"], c[f"{o} variant"]
        gains[o] = gap(ref, var) if cosine_is_reference else gap(var, ref)
    row = paired("schedule", gains["adamw"], gains["lion"])
    text = (
        f"final val loss with cosine minus with rsqrt (negative: cosine helps): Lion "
        f"{mean(gains['lion']):+.4g}, AdamW {mean(gains['adamw']):+.4g}; Lion's minus "
        f"AdamW's: {describe(row, False)}"
    )
    return SCHEDULE, claim_verdict(row), text


def betas_claim(study: dict[str, Any], c: dict[str, Seeds]) -> tuple[str, str, str]:
    """Lion at an aggressive lr with (0.95, 0.98) against its default betas, by seed (a
    diverged seed's loss is +inf, so divergences decide through the sign test)."""
    row = paired("betas", c["lion reference"], c["lion variant"])
    diverged = {k: sum(d for _, d in c[f"lion {k}"].values()) for k in ("reference", "variant")}
    text = (
        f"at {study['aggressive_lr_factor']:g}x Lion's best lr, final val loss with (0.95, 0.98) "
        f"minus with {tuple(study['reference']['lion_betas'])}: {describe(row, False)}; "
        f"diverged seeds {diverged['variant']} vs {diverged['reference']}"
    )
    return BETAS, claim_verdict(row), text


def mean(seeds: Seeds) -> float:
    v = np.array([x for x, _ in seeds.values()], float)
    return float(np.mean(v)) if len(v) else math.nan
