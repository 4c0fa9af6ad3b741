"""The seeds a paired comparison needs: power of the paired t-test (noncentral t) and of the
sign test, at the level of the family actually compared (docs/design.md, "Verdicts"). Used for
the advice beside an unresolved verdict and by `lionbench plan`.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy import special

from lionbench.report.stats import MIN_SIGN_N, Result, level, pair_signs

POWER = 0.8  # the power the seed advice aims at
MAX_SEEDS = 100_000  # seed advice is capped here (an effect that small is no effect)


def t_power(n: int, effect: float, alpha: float) -> float:
    """Power of a two-sided paired t-test with n pairs at level alpha, for a true mean
    difference of `effect` standard deviations of the differences (noncentral t)."""
    df = n - 1
    crit = float(special.stdtrit(df, 1 - alpha / 2))
    nc = abs(effect) * math.sqrt(n)
    return float(1.0 - special.nctdtr(df, nc, crit) + special.nctdtr(df, nc, -crit))


def t_needed(effect: float, family: int = 1) -> int | None:
    """Pairs a paired t-test needs for 80% power at the family's level, for an effect of
    `effect` standard deviations of the differences (None: no effect to resolve)."""
    if not math.isfinite(effect) or effect == 0.0:
        return None
    alpha = level(family)
    z = float(special.ndtri(1 - alpha / 2) + special.ndtri(POWER))
    n = max(2, math.ceil((z / abs(effect)) ** 2) - 2)  # the normal guess; t needs a few more
    while n < MAX_SEEDS and t_power(n, effect, alpha) < POWER:
        n += 1 if n < 200 else max(1, n // 100)
    return min(n, MAX_SEEDS)


def sign_needed(signs: np.ndarray, family: int = 1) -> int | None:
    """Seeds a sign test needs to resolve the observed share of positive signs at 80% power at
    the family's level (normal approximation; at least 6); ties are assumed to recur."""
    nonzero = signs[signs != 0]
    if len(nonzero) == 0:
        return None
    q = float((nonzero > 0).mean())
    if q == 0.5:
        return None
    z_a = float(special.ndtri(1 - level(family) / 2))
    q_eff = min(max(q, 0.02), 0.98)
    m = (
        (z_a * 0.5 + float(special.ndtri(POWER)) * math.sqrt(q_eff * (1 - q_eff))) / (q_eff - 0.5)
    ) ** 2
    return min(MAX_SEEDS, max(MIN_SIGN_N, math.ceil(m * len(signs) / len(nonzero))))


def seeds_needed(result: Result, base: np.ndarray, cand: np.ndarray) -> Result:
    """The result with the seeds an unresolved comparison needs at 80% power in its family:
    from the observed mean and spread of the differences (t), or from the observed share of
    signs (sign test) of the paired values it was computed from."""
    if result.method == "sign test":
        signs = pair_signs(np.asarray(base, float), np.asarray(cand, float))
        return replace(result, needed=sign_needed(signs, result.family))
    if not math.isfinite(result.sd) or result.sd == 0.0:
        return result
    mean = math.log(result.estimate) if result.kind == "ratio" else result.estimate
    return replace(result, needed=t_needed(mean / result.sd, result.family))
