"""The paper's claims about Lion (docs/references.md), judged on one setting's tables.

These are claims about Lion arms against the recipe's AdamW baseline arm, whatever baseline the
rest of the report uses, and only where the setting has Lion runs. They are kept apart from the
tables so that their statistics can be replaced (paired tests) without touching anything else;
the current ones are deliberately simple and unchanged.
"""

from __future__ import annotations

import math

import pandas as pd

CLAIM_COLUMNS = ["claim", "verdict", "evidence"]
STATE = "optimizer state is half of AdamW's"
SPEED = "steps/s higher than AdamW (paper: 2-15%)"
RATIO = "Lion's best lr is 3-10x smaller than AdamW's"
STEPS = "Lion needs fewer steps to the target"


def lion_claims(
    optimizers: pd.DataFrame,
    completed: pd.DataFrame,
    sweep: pd.DataFrame,
    targets: pd.DataFrame,
    adamw: str | None,
) -> pd.DataFrame:
    """One row per claim; empty when the setting has no Lion arm. `adamw` is the label of the
    recipe's AdamW arm (None: there is none, so nothing can be judged)."""
    if optimizers.empty or not (optimizers["optim"] == "lion").any():
        return pd.DataFrame(columns=CLAIM_COLUMNS)
    lion = optimizers[(optimizers["optim"] == "lion") & (optimizers["n"] > 0)]
    base = optimizers[(optimizers["arm"] == adamw) & (optimizers["n"] > 0)]
    if base.empty or lion.empty:
        rows = [("Lion vs AdamW", "not enough data", "needs completed Lion and AdamW runs")]
        return pd.DataFrame(rows, columns=CLAIM_COLUMNS)
    rows = [
        state_claim(lion, base.iloc[0]),
        speed_claim(completed, str(adamw)),
        *ratio_claims(sweep[sweep["optim"] == "lion"] if not sweep.empty else sweep),
        steps_claim(targets, str(adamw)),
    ]
    return pd.DataFrame([r for r in rows if r is not None], columns=CLAIM_COLUMNS)


def state_claim(lion: pd.DataFrame, base: pd.Series) -> tuple[str, str, str]:
    """Lion keeps one buffer per parameter, AdamW two."""
    lion_mb = lion["optimizer_state_mb"].mean()
    ratio = lion_mb / base["optimizer_state_mb"]
    return (
        STATE,
        "holds" if 0.45 <= ratio <= 0.55 else "does not hold",
        f"Lion {lion_mb:.4g} MB vs AdamW {base['optimizer_state_mb']:.4g} MB: ratio {ratio:.3f}",
    )


def speed_claim(completed: pd.DataFrame, adamw: str) -> tuple[str, str, str]:
    """Mean steps/s of all Lion runs against the AdamW arm's, with a 2-SE band."""
    lion_sps = completed[completed["optim"] == "lion"]["steps_per_s"].dropna()
    adamw_sps = completed[completed["arm"] == adamw]["steps_per_s"].dropna()
    if len(lion_sps) >= 2 and len(adamw_sps) >= 2:
        diff = lion_sps.mean() - adamw_sps.mean()
        se = math.sqrt(lion_sps.var() / len(lion_sps) + adamw_sps.var() / len(adamw_sps))
        if diff > 2 * se:
            verdict = "holds"
        elif diff < -2 * se:
            verdict = "does not hold"
        else:
            verdict = "inconclusive (within noise)"
    else:
        verdict, se = "not enough data (needs 2+ runs of each)", math.nan
    return (
        SPEED,
        verdict,
        f"Lion {lion_sps.mean():.4g} vs AdamW {adamw_sps.mean():.4g} steps/s "
        f"({(lion_sps.mean() / adamw_sps.mean() - 1) * 100:+.1f}%)"
        + (f", 2 SE = {2 * se:.2g}" if not math.isnan(se) else ""),
    )


def ratio_claims(sweep: pd.DataFrame) -> list[tuple[str, str, str]]:
    """Where each Lion ratio sweep (one per family: impl, betas, ...) has its lowest loss."""
    families = list(sweep.groupby("family", sort=True)) if not sweep.empty else []
    if not any(len(rows) >= 2 for _, rows in families):
        return [(RATIO, "not enough data", "needs Lion runs at 2+ ratios")]
    out = []
    for family, rows in families:
        if len(rows) < 2:
            continue
        best = rows.sort_values("final_val_loss").iloc[0]
        edge = best["ratio"] in (rows["ratio"].min(), rows["ratio"].max())
        prefix = f"{family}: " if len(families) > 1 else ""
        out.append(
            (
                RATIO,
                "holds" if 3 <= best["ratio"] <= 10 else "does not hold",
                f"{prefix}best ratio r = {best['ratio']:g} of "
                f"{', '.join(f'{r:g}' for r in rows['ratio'])} "
                f"(val loss {best['final_val_loss']:.4g})"
                + ("; at the edge of the tested range" if edge else ""),
            )
        )
    return out


def steps_claim(targets: pd.DataFrame, adamw: str) -> tuple[str, str, str] | None:
    """At the tightest target: the best Lion arm's steps against the AdamW arm's."""
    if targets.empty:
        return None
    tightest = targets["target"].min()
    at = targets[targets["target"] == tightest]
    adamw_row = at[at["arm"] == adamw]
    lion_rows = at[at["optim"] == "lion"]
    if adamw_row.empty or lion_rows.empty or not bool(adamw_row["all_reached"].iloc[0]):
        return (STEPS, "not enough data", f"AdamW did not reach {tightest:.4g} in every seed")
    best = lion_rows.sort_values("steps_to_target").iloc[0]
    if math.isnan(best["steps_to_target"]) or not best["all_reached"]:
        return (STEPS, "does not hold", f"no Lion setting reached {tightest:.4g} in every seed")
    a, b = adamw_row["steps_to_target"].iloc[0], best["steps_to_target"]
    return (
        STEPS,
        "holds" if b < a else "does not hold",
        f"target {tightest:.4g}: best Lion ({best['arm']}) {b:.0f} steps vs AdamW {a:.0f} "
        f"({b / a:.2f}x)",
    )
