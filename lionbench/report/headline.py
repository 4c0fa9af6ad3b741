"""The report's opening verdicts and its comparisons table, in words: one short line per
candidate arm of a setting, against its baseline, with the pairs it rests on (docs/design.md,
"Verdicts"). Nothing here computes a statistic; verdicts.py and stats.py do.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

from lionbench.report.verdicts import describe, effect_text, p_text

if TYPE_CHECKING:
    from lionbench.report.analyse import Setting

HEADLINE_ARMS = 4  # candidate arms named in a setting's headline; the table has them all
HEADLINE_METRICS = ("final_val_loss", "steps_to_target")


def headlines(s: Setting) -> list[str]:
    """One short line per candidate (up to 4, in `headline_order`): `gpt2 smoke: lion r=3 vs
    adamw lr=0.003 wd=0.1: final val loss -0.021 [-0.030, -0.012], p=0.003, n=6 pairs (better);
    steps to 1.6 0.82x [...] (better)`; then how many arms the table has besides."""
    head, parts, more = verdict_parts(s)
    lines = [f"{head}: {part}" for part in parts]
    if more is not None and more > 0:
        lines.append(f"{head}: and {more} more arm(s): see the paired comparisons")
    return lines


def headline(s: Setting) -> str:
    """The setting's headlines as one text, a line each."""
    return "\n".join(headlines(s))


def seed_count(s: Setting) -> int:
    """Seeds that count: completed or diverged (a diverged seed stays in its arm)."""
    return int(s.runs.loc[s.runs["status"].isin(("completed", "diverged")), "seed"].nunique())


def verdict_parts(
    s: Setting, limit: int = HEADLINE_ARMS, vs: bool = True
) -> tuple[str, list[str], int | None]:
    """(the setting's label, one verdict per candidate arm (`vs`: naming the baseline), arms
    left out), or (label, [why there is no verdict], None). Each verdict counts its pairs."""
    head = s.label
    if s.baseline is None:
        why = next(iter(s.warnings), "no baseline arm")
        return head, [f"no verdict ({why})"], None
    c = s.comparisons
    if c.empty:
        return head, [f"{s.baseline} is the only arm"], None
    tightest = c["target"].min()
    keep = c["metric"].isin(HEADLINE_METRICS) & (c["target"].isna() | (c["target"] == tightest))
    arms = headline_order(s, list(dict.fromkeys(c["arm"])))
    parts = []
    for arm in arms[:limit]:
        rows = c[keep & (c["arm"] == arm)]
        said = "; ".join(describe(r) for _, r in rows.iterrows())
        parts.append(f"{arm} vs {s.baseline}: {said}" if vs else f"{arm}: {said}")
    return head, parts, len(arms) - limit


def headline_order(s: Setting, arms: list[str]) -> list[str]:
    """The candidates a reader looks for first: other optimizers before the baseline's own
    other settings, each by its mean final val loss (its best setting first: in a sweep the
    tuned arm, not the grid's edges)."""
    o = s.optimizers.set_index("arm")
    base_optim = o["optim"].get(s.baseline)
    loss = pd.to_numeric(o["final_val_loss"], errors="coerce")

    def key(arm: str) -> tuple[bool, float]:
        value = loss.get(arm, math.nan)
        return (o["optim"].get(arm) == base_optim, math.inf if value != value else float(value))

    return sorted(arms, key=key)


def overview(settings: list[Setting]) -> pd.DataFrame:
    """One row per setting, the report's first table: what it is, its seeds, the baseline, and
    every candidate arm's verdict against it, one arm a line."""
    rows = []
    for s in settings:
        _, parts, _ = verdict_parts(s, limit=len(s.optimizers), vs=False)
        rows.append(
            {
                "setting": s.label,
                "seeds": seed_count(s),
                "arms": len(s.optimizers),
                "baseline": s.baseline or "none",
                "verdict": "\n".join(parts),
            }
        )
    return pd.DataFrame(rows, columns=["setting", "seeds", "arms", "baseline", "verdict"])


def comparison_display(c: pd.DataFrame) -> pd.DataFrame:
    """The paired comparisons as strings: estimate [95% CI, simultaneous over the candidates],
    the t-test's p, the exact check's where it could decide, the Holm-adjusted p that decides,
    the verdict (and the seeds an unresolved one needs, for the family compared)."""
    rows = []
    for _, r in c.iterrows():
        ratio = r["kind"] == "ratio"
        rows.append(
            {
                "optimizer": r["arm"],
                "metric": r["name"],
                "n pairs": r["n"],
                "estimate [95% CI]": _estimate(r, ratio),
                "p (t)": p_text(r["p_t"]) if "p_t" in r else "-",
                "p (exact)": p_text(r["p_exact"]) if "p_exact" in r else "-",
                "p (Holm)": p_text(r["p_holm"]),
                "verdict": r["verdict"]
                + (
                    f" (~{int(r['seeds_needed'])} seeds to resolve)"
                    if r["verdict"] == "no significant difference" and _known(r["seeds_needed"])
                    else ""
                ),
                "method": r["method"],
                "diverged (cand/base)": r["diverged"],
                "unpaired seeds": r["unpaired"] or "-",
            }
        )
    return pd.DataFrame(rows)


def _known(v: object) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _estimate(r: pd.Series, ratio: bool) -> str:
    if r["verdict"] == "not enough data" or r["n"] == 0:
        return "-"
    med = " (median)" if r["method"] == "sign test" else ""
    bounds = f"[{effect_text(r['low'], ratio)}, {effect_text(r['high'], ratio)}]"
    return f"{effect_text(r['estimate'], ratio)} {bounds}{med}"


# END
