"""The paper's claims about Lion (docs/references.md), judged with paired statistics.

These are claims about Lion arms against the setting's AdamW arm (the tuned one where a sweep
chose it, else the recipe's), and only where the setting has Lion runs. Every claim that
compares Lion with AdamW uses the paired comparisons of verdicts.py with Holm's adjustment
across the Lion arms (docs/design.md, "Verdicts"): a claim holds only where a Lion arm is
significantly better and none significantly worse, so picking the best of several Lion arms
cannot make it hold. Every row says the evidence it rests on (`rests_on`): which arms, which
seeds, how many pairs; a claim the runs cannot test says "not tested" and what to run.
"""

from __future__ import annotations

import pandas as pd

from lionbench.report.values import seed_order
from lionbench.report.verdicts import compare_arms, describe

CLAIM_COLUMNS = ["claim", "verdict", "evidence", "rests_on"]
Claim = tuple[str, str, str, str]
STATE = "Lion's optimizer state is at most half of AdamW's"
SPEED = "steps/s higher than AdamW (paper: 2-15%)"
RATIO = "Lion's best lr is 3-10x smaller than AdamW's"
STEPS = "Lion needs fewer steps to the target"
BATCH = "Lion's gains grow with batch size"
SCHEDULE = "cosine decay helps Lion more than rsqrt"
BETAS = "betas (0.95, 0.98) train Lion more stably than (0.9, 0.99) at a high lr"
STATE_TOLERANCE = 1.02  # step counters and other scalars the measured bytes may include
RATIO_LOW, RATIO_HIGH = 3.0, 10.0  # the paper's range of AdamW lr / Lion lr


def lion_claims(
    optimizers: pd.DataFrame, values: pd.DataFrame, sweep: pd.DataFrame, adamw: str | None
) -> pd.DataFrame:
    """One row per claim; empty when the setting has no Lion arm. `values` are the per-run
    values of `verdicts.run_values`; `adamw` the label of the setting's AdamW arm (None: there
    is none, so nothing can be judged)."""
    if optimizers.empty or not (optimizers["optim"] == "lion").any():
        return pd.DataFrame(columns=CLAIM_COLUMNS)
    lion = optimizers[(optimizers["optim"] == "lion") & (optimizers["n"] > 0)]
    base = optimizers[(optimizers["arm"] == adamw) & (optimizers["n"] > 0)]
    if base.empty or lion.empty:
        rows = [("Lion vs AdamW", "not enough data", "needs completed Lion and AdamW runs", "-")]
        return pd.DataFrame(rows, columns=CLAIM_COLUMNS)
    arms = list(optimizers.loc[optimizers["optim"] == "lion", "arm"])
    lion_sweep = sweep[sweep["optim"] == "lion"] if not sweep.empty else sweep
    rows = [
        state_claim(lion, base.iloc[0]),
        speed_claim(values, str(adamw), arms),
        *ratio_claims(lion_sweep, values, float(base.iloc[0]["lr"])),
        steps_claim(values, str(adamw), arms),
    ]
    return pd.DataFrame([r for r in rows if r is not None], columns=CLAIM_COLUMNS)


def seeds_text(seeds: set | list) -> str:
    """`seeds 0-5`, `seeds 0, 2, 7`, or `no seed`."""
    s = sorted(seeds, key=seed_order)
    if not s:
        return "no seed"
    if all(isinstance(x, int) for x in s) and s == list(range(s[0], s[-1] + 1)) and len(s) > 2:
        return f"seeds {s[0]}-{s[-1]}"
    return "seeds " + ", ".join(map(str, s))


def rests_on(v: pd.DataFrame, baseline: str, arms: list[str]) -> str:
    """`adamw lr=0.003 vs lion r=3 (seeds 0-5: 6 pairs), ...`: the pairs a claim was judged on,
    from the values of its metric (and target)."""
    base = set(v.loc[v["arm"] == baseline, "seed"])
    parts = []
    for arm in arms:
        common = base & set(v.loc[v["arm"] == arm, "seed"])
        parts.append(f"{arm} ({seeds_text(common)}: {len(common)} pairs)")
    return f"{baseline} vs " + "; ".join(parts)


def state_claim(lion: pd.DataFrame, base: pd.Series) -> Claim:
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
    basis = (
        f"optimizer_state_bytes of {int(lion['n'].sum())} Lion and {int(base['n'])} AdamW "
        f"completed runs (bytes are deterministic: no seeds needed)"
    )
    return STATE, "holds" if ok else "does not hold", "; ".join(parts), basis


def combine(comps: pd.DataFrame) -> str:
    """A claim's verdict from its Lion arms' Holm-adjusted verdicts."""
    v = set(comps["verdict"])
    if "better" in v:
        return "mixed (see evidence)" if "worse" in v else "holds"
    if "worse" in v:
        return "does not hold"
    if v <= {"not enough data"}:
        return "not enough data"
    if all(x.startswith("not compared") for x in v):
        return "not tested (the arms ran one after another: speeds need interleaved runs)"
    return "no significant difference"


def evidence(comps: pd.DataFrame) -> str:
    return "; ".join(f"{r['arm']}: {describe(r, False)}" for _, r in comps.iterrows())


def speed_claim(values: pd.DataFrame, adamw: str, arms: list[str]) -> Claim:
    """Each Lion arm's steps/s against the AdamW arm's, paired by seed (ratio of steps/s), on
    uncontended runs of arms that ran interleaved (verdicts.py)."""
    v = values[values["metric"] == "steps_per_s"]
    comps = compare_arms(v, adamw, arms)
    lion_sps = v.loc[v["optim"] == "lion", "value"].mean()
    adamw_sps = v.loc[v["arm"] == adamw, "value"].mean()
    basis = rests_on(v, adamw, arms) + " (uncontended runs only)"
    missing = [who for who, sps in (("Lion", lion_sps), ("AdamW", adamw_sps)) if sps != sps]
    if missing:
        why = (f"no steps/s of {' or '.join(missing)} to compare: contended runs and runs with no "
               "timed step are left out (the warnings name them)")  # fmt: skip
        return SPEED, "not enough data", why, basis
    head = f"Lion {lion_sps:.4g} vs AdamW {adamw_sps:.4g} steps/s (means); paired: "
    return SPEED, combine(comps), head + evidence(comps), basis


def ratio_claims(sweep: pd.DataFrame, values: pd.DataFrame, adamw_lr: float) -> list[Claim]:
    """Per Lion ratio sweep (one per family: impl, betas, ...), with r = AdamW's lr (the
    setting's AdamW arm) / Lion's lr: decided only when the tested ratios reach beyond both
    edges of [3, 10] (else "not tested", with the ratios to add), and then only when the best
    arm without a diverged seed is significantly better (paired, Holm) than every arm on the
    other side of [3, 10]."""
    families = list(sweep.groupby("family", sort=True)) if not sweep.empty else []
    if not any(len(rows) >= 2 for _, rows in families):
        return [(RATIO, "not enough data", "needs Lion runs at 2+ ratios", "-")]
    out = []
    for family, rows in families:
        if len(rows) >= 2:
            prefix = f"{family}: " if len(families) > 1 else ""
            r = effective_ratio(adamw_lr / rows["lr"])
            out.append(ratio_claim(rows.assign(r=r), values, prefix))
    return out


def effective_ratio(r: pd.Series) -> pd.Series:
    """AdamW's lr / Lion's lr, rounded off the binary noise of the division (3e-3 / 3e-4 is
    10, not 10.000000000000002: the edges of [3, 10] are compared exactly)."""
    return r.round(9)


def untested_ratios(r: pd.Series, config_ratio: pd.Series) -> str | None:
    """Why the tested ratios cannot decide the claim, with the config ratios to add; None
    when they reach below 3 and above 10."""
    low, high = r.min() < RATIO_LOW, r.max() > RATIO_HIGH
    if low and high:
        return None
    scale = float((config_ratio / r).iloc[0])  # config ratio per effective ratio
    add = []
    if not low:
        add.append(f"one below 3 (e.g. {scale * min(r.min(), RATIO_LOW) / 2:.3g})")
    if not high:
        add.append(f"one above 10 (e.g. {scale * max(r.max(), RATIO_HIGH) * 2:.3g})")
    tested = ", ".join(f"{x:.3g}" for x in sorted(r))
    return (
        f"tested r = {tested} (AdamW's lr / Lion's lr) do not reach beyond both edges of "
        f"[3, 10]; add ratios {' and '.join(add)}"
    )


def ratio_claim(rows: pd.DataFrame, values: pd.DataFrame, prefix: str) -> Claim:
    """One family's ratio claim (`ratio_claims`); `rows["r"]` is each arm's effective ratio."""
    arms = list(rows["arm"])
    if why := untested_ratios(rows["r"], rows["ratio"]):
        return RATIO, "not tested", prefix + why, f"lion arms {', '.join(arms)}"
    if not rows["best"].any():
        return RATIO, "not enough data", f"{prefix}every ratio had a diverged seed", "-"
    best = rows[rows["best"]].iloc[0]
    inside = rows["r"].between(RATIO_LOW, RATIO_HIGH)
    best_inside = RATIO_LOW <= best["r"] <= RATIO_HIGH
    rivals = rows[(inside != best_inside) & (rows["arm"] != best["arm"])]
    v = values[values["metric"] == "final_val_loss"]
    comps = compare_arms(v, str(best["arm"]), list(rivals["arm"]))
    decided = not comps.empty and (comps["verdict"] == "worse").all()
    verdict_text = ("holds" if best_inside else "does not hold") if decided else (
        "no significant difference"
    )  # fmt: skip
    edge = best["r"] in (rows["r"].min(), rows["r"].max())
    text = (
        f"{prefix}best r = {best['r']:.3g} of {', '.join(f'{r:.3g}' for r in sorted(rows['r']))} "
        f"(val loss {best['final_val_loss']:.4g}, no diverged seed)"
        + ("; at the edge of the tested range" if edge else "")
        + "".join(f"; {n}" for n in rows["note"] if n)
    )
    if not comps.empty:
        text += "; the other side of [3, 10] vs the best: " + evidence(comps)
    return RATIO, verdict_text, text, rests_on(v, str(best["arm"]), list(rivals["arm"]))


def steps_claim(values: pd.DataFrame, adamw: str, arms: list[str]) -> Claim | None:
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
    return STEPS, combine(comps), text, rests_on(v, adamw, arms)
