"""The claims a study's conditions test (`lionbench study claims`; docs/design.md, "Confirmed
verdicts and studies"): gains that grow with the batch, cosine helping Lion more than rsqrt,
betas (0.95, 0.98) more stable at a high lr. Each is one paired test over the confirmation
seeds of a difference of differences, each optimizer tuned at each condition; report/studies.py
reads the runs the study manifest names.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lionbench.report.claims import BATCH, BETAS, SCHEDULE, Claim
from lionbench.report.stats import verdict
from lionbench.report.values import Seeds, SeedValue
from lionbench.report.verdicts import comparison_row, describe


def gap(a: Seeds, b: Seeds) -> Seeds:
    """Per seed a - b (infinities kept; inf - inf, no information, drops the seed)."""
    out: Seeds = {}
    for seed in set(a) & set(b):
        d = a[seed].value - b[seed].value
        if not math.isnan(d):
            out[seed] = SeedValue(d, a[seed].diverged or b[seed].diverged)
    return out


def paired(name: str, base: Seeds, cand: Seeds) -> dict[str, Any]:
    """One comparison of `cand` with `base` (lower is better), as a verdicts row."""
    row = comparison_row("final_val_loss", -1.0, name, base, cand)
    row.pop("paired")
    row["p_holm"] = row["p"]
    row["verdict"] = verdict(row.pop("result"), row["p"], True)
    row["name"] = name
    return row


def claim_verdict(row: dict[str, Any]) -> str:
    """better -> holds, worse -> the reverse holds, else as the comparison says."""
    return {"better": "holds", "worse": "does not hold (the reverse is significant)"}.get(
        row["verdict"], row["verdict"]
    )


def condition_basis(study: dict[str, Any], claim: str, row: dict[str, Any]) -> str:
    """The runs a condition claim rests on: the seeds paired, and the settings compared."""
    tuned = (study["claims"].get(claim) or {}).get("tuned") or {}
    retuned = "; ".join(
        f"{o} retuned to lr {t['best']['lr']:.3g} ({t.get('optimum')})"
        for o, t in sorted(tuned.items())
        if t.get("best")
    )
    seeds = ", ".join(map(str, study.get("seeds", [])))
    return f"{row['n']} pairs (confirmation seeds {seeds})" + (f"; {retuned}" if retuned else "")


def batch_claim(study: dict[str, Any], c: dict[str, Seeds]) -> Claim:
    """Lion - AdamW at the recipe's batch against Lion - AdamW at the smaller batch, by seed,
    each optimizer tuned at each batch: lower (Lion further ahead at the larger batch) means
    the gains grow with the batch."""
    big = gap(c["lion reference"], c["adamw reference"])
    small = gap(c["lion variant"], c["adamw variant"])
    row = paired("batch", small, big)
    text = (
        f"Lion - AdamW final val loss (mean over seeds): {mean(big):+.4g} at batch "
        f"{study['reference']['batch_size']}, {mean(small):+.4g} at "
        f"{study['claims']['batch']['change']}; their difference: {describe(row, False)}"
    )
    return BATCH, claim_verdict(row), text, condition_basis(study, "batch", row)


def schedule_claim(study: dict[str, Any], c: dict[str, Seeds]) -> Claim:
    """Each optimizer's cosine - rsqrt final val loss by seed, each tuned under each schedule;
    Lion's lower than AdamW's means cosine helps Lion more."""
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
    return SCHEDULE, claim_verdict(row), text, condition_basis(study, "schedule", row)


def betas_claim(study: dict[str, Any], c: dict[str, Seeds]) -> Claim:
    """Lion at an aggressive lr with (0.95, 0.98) against its default betas, by seed (a
    diverged seed's loss is +inf, so divergences decide through the sign test)."""
    row = paired("betas", c["lion reference"], c["lion variant"])
    diverged = {
        k: sum(v.diverged for v in c[f"lion {k}"].values()) for k in ("reference", "variant")
    }
    text = (
        f"at {study['aggressive_lr_factor']:g}x Lion's best lr, final val loss with (0.95, 0.98) "
        f"minus with {tuple(study['reference']['lion_betas'])}: {describe(row, False)}; "
        f"diverged seeds {diverged['variant']} vs {diverged['reference']}"
    )
    return BETAS, claim_verdict(row), text, condition_basis(study, "betas", row)


def mean(seeds: Seeds) -> float:
    v = np.array([x.value for x in seeds.values()], float)
    return float(np.mean(v)) if len(v) else math.nan
