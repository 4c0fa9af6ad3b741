"""Paired statistics for candidate-vs-baseline comparisons: numbers in, numbers out.

Nothing here knows about runs, arms or rendering (docs/design.md, "Verdicts"). Two arms are
compared seed by seed (the same seed gives both optimizers the same initialisation and batches),
so the unit of analysis is the per-seed difference (losses) or log ratio (speeds, steps):

- finite values everywhere: a paired t-test of the mean difference (mean log ratio, reported as
  a ratio), with a finite t interval from 2 pairs on, so that the 3-5 seeds people run can decide
  an effect that is large against the seed-to-seed spread. Where the exact sign-flip test can
  decide at the family's level (2/2^n below 0.05/m: 6 pairs for one candidate, 7 for two, 8 for
  four), it checks the t-test's normality: the decision p is the larger of the two, so a verdict
  holds by both whenever both can speak. Above 16 pairs the t-test alone (the central limit);
- a value that may be infinite (a diverged run's loss, the steps of a run that never reached the
  target, AlgoPerf's convention): an exact two-sided sign test on the signs of the differences
  (ties, including both infinite, dropped) and the order-statistic interval for the median
  difference or ratio, both distribution-free and valid with infinities (they need 6 pairs).
- a value read on a grid (the steps to a target: the first eval at or below it): the t-test's
  spread is at least the rounding's, so arms whose seeds all cross between the same two evals
  are not "known exactly" apart.

Several candidate arms compared with one baseline form a family of m comparisons (per metric):
Holm's step-down adjustment decides, intervals are simultaneous over the family (Bonferroni:
level 1 - 0.05/m), and the seeds an unresolved comparison needs are computed at that level
(`power.seeds_needed`), so that the advice holds for the family actually compared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

ALPHA = 0.05
MIN_SIGN_N = 6  # the exact two-sided sign and sign-flip tests cannot reach p < 0.05 below it
MAX_EXACT = 16  # enumerate 2^n sign patterns up to here; above, the t-test alone
_SIGNS: dict[int, np.ndarray] = {}


@dataclass(frozen=True)
class Result:
    """One paired comparison. `estimate`, `low`, `high` are a difference (kind "difference") or
    a ratio candidate/baseline (kind "ratio"); the interval is simultaneous over a family of
    `family` comparisons. `p` decides (t, or the larger of t and the exact sign-flip where that
    can decide); `p_t` and `p_exact` are the two tests' own. `direction` is -1, 0 or +1: which
    way the candidate's values lie (below, neither, above the baseline's). `sd` is the spread
    of the per-seed differences (log ratios), nan for the sign test. `needed`: the seeds that
    would resolve the observed effect at 80% power in the family (set after adjustment)."""

    n: int
    estimate: float
    low: float
    high: float
    p: float
    method: str
    kind: str
    direction: int
    p_t: float = math.nan
    p_exact: float = math.nan
    sd: float = math.nan
    family: int = 1
    needed: int | None = None


def level(family: int) -> float:
    """The per-comparison level of a family of m comparisons (Bonferroni): 0.05 / m."""
    return ALPHA / max(family, 1)


def paired_t(
    diffs: np.ndarray, alpha: float = ALPHA, floor_sd: float = 0.0
) -> tuple[float, float, float, float]:
    """(mean, low, high, p) of a paired t-test on finite differences, n >= 2, with a (1 -
    alpha) interval. `floor_sd`: the spread the differences have at least, whatever they show
    (values read on a grid: equal readings are not equal values). Equal differences with no
    floor (sd 0) give a degenerate interval at their mean: p 1 at zero, else 0."""
    n = len(diffs)
    mean = float(np.mean(diffs))
    sd = max(float(np.std(diffs, ddof=1)), floor_sd)
    if sd == 0.0:
        return mean, mean, mean, 1.0 if mean == 0.0 else 0.0
    se = sd / math.sqrt(n)
    half = float(special.stdtrit(n - 1, 1 - alpha / 2)) * se
    p = float(2 * special.stdtr(n - 1, -abs(mean) / se))
    return mean, mean - half, mean + half, p


def t_half(std: float, n: int, alpha: float = ALPHA) -> float:
    """Half-width of the (1 - alpha) t-interval of a mean of n values with sample std `std`
    (scipy.stats.t.ppf, as a ufunc): the plots' bands and the LaTeX tables' `mean ± CI` share
    it. 0 for one value or an unknown std: there is no interval to show."""
    if n < 2 or not math.isfinite(std):
        return 0.0
    return float(special.stdtrit(n - 1, 1 - alpha / 2)) * std / math.sqrt(n)


def flips(n: int) -> np.ndarray:
    """All 2^n patterns of n signs, as a (2^n, n) matrix of +-1 (cached)."""
    if n not in _SIGNS:
        bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
        _SIGNS[n] = 1.0 - 2.0 * bits
    return _SIGNS[n]


def flip_p(d: np.ndarray) -> float:
    """Exact two-sided sign-flip p-value of the mean of d: the share of sign patterns whose
    |sum| is at least the observed one (ties within rounding count)."""
    sums = np.abs(flips(len(d)) @ d)
    observed = abs(float(d.sum()))
    return float((sums >= observed - 1e-9 * (np.abs(d).sum() + 1e-300)).mean())


def exact_can_decide(n: int, family: int) -> bool:
    """Whether the exact sign-flip test can reach the family's level with n pairs: its
    smallest p is 2/2^n (and it is enumerated up to MAX_EXACT pairs)."""
    return n <= MAX_EXACT and 2.0 ** (1 - n) < level(family)


def location_test(
    d: np.ndarray, family: int = 1, floor_sd: float = 0.0
) -> tuple[float, float, float, float, float]:
    """(mean, low, high, p_t, p_exact) of finite paired differences: the t-test (its interval
    at the family's level, its spread at least `floor_sd`) and, where it can decide, the exact
    sign-flip test (else nan)."""
    mean, low, high, p_t = paired_t(d, level(family), floor_sd)
    if not exact_can_decide(len(d), family):
        return mean, low, high, p_t, math.nan
    return mean, low, high, p_t, flip_p(d) if d.any() else 1.0


def sign_p(signs: np.ndarray) -> float:
    """Exact two-sided sign test on -1/0/+1 signs; zeros (ties) are dropped. Bin(n, 1/2) is
    symmetric, so the two-sided p is twice the smaller tail (scipy's binomtest, as a ufunc)."""
    pos, neg = int((signs > 0).sum()), int((signs < 0).sum())
    if pos + neg == 0:
        return 1.0
    return min(1.0, 2.0 * float(special.bdtr(min(pos, neg), pos + neg, 0.5)))


def median_ci(values: np.ndarray, alpha: float = ALPHA) -> tuple[float, float, float]:
    """(median, low, high): the order-statistic interval [x_(k), x_(n+1-k)] with the largest k
    whose coverage 1 - 2 P(Bin(n, 1/2) <= k - 1) is at least 1 - alpha; infinite values are
    ordered like any other. Too few values for any k: the interval is unbounded."""
    x = np.sort(values)
    n = len(x)
    mid = x[(n - 1) // 2 : n // 2 + 1]
    median = float(mid[0]) if mid[0] == mid[-1] else float(np.mean(mid))
    k = 0
    while k + 1 <= n // 2 and 2 * special.bdtr(k, n, 0.5) <= alpha:
        k += 1
    if k == 0:
        return median, -math.inf, math.inf
    return median, float(x[k - 1]), float(x[n - k])


def compare(
    base: np.ndarray,
    cand: np.ndarray,
    kind: str,
    family: int = 1,
    resolution: tuple[np.ndarray, np.ndarray] | None = None,
) -> Result:
    """Paired comparison of candidate values with baseline values (same seeds, same order), one
    of a family of `family` comparisons.

    kind "difference": cand - base; "ratio": cand / base, tested on the log ratio. Values may
    be +inf (diverged, never reached): then the sign test and the median's interval are used.
    `resolution` (baseline's, candidate's): the width of the grid each value was read on (the
    steps to a target are known to an eval interval); the t-test's spread is then at least the
    rounding's (`rounding_sd`), so that seeds that all cross between the same two evals do not
    read as a difference known exactly."""
    base, cand = np.asarray(base, float), np.asarray(cand, float)
    n = len(base)
    if n < 2:
        return Result(n, math.nan, math.nan, math.nan, math.nan, "-", kind, 0, family=family)
    if np.isfinite(base).all() and np.isfinite(cand).all() and (kind != "ratio" or _positive(
        base, cand
    )):  # fmt: skip
        d = cand - base if kind == "difference" else np.log(cand) - np.log(base)
        floor = rounding_sd(base, cand, kind, resolution) if resolution is not None else 0.0
        mean, low, high, p_t, p_exact = location_test(d, family, floor)
        # the decision: the t-test, checked by the exact test wherever that can decide
        p, method = (p_t, "paired t") if math.isnan(p_exact) else (
            max(p_t, p_exact), "paired t + sign-flip"
        )  # fmt: skip
        if kind == "ratio":
            mean, low, high = math.exp(mean), math.exp(low), math.exp(high)
            method += " on log ratio"
        sd = max(float(np.std(d, ddof=1)), floor)
        return Result(n, mean, low, high, p, method, kind, int(np.sign(np.mean(d))), p_t,
                      p_exact, sd, family)  # fmt: skip
    signs = pair_signs(base, cand)
    effects = np.array([_effect(b, c, kind) for b, c in zip(base, cand, strict=True)])
    median, low, high = median_ci(effects, level(family))
    if kind == "ratio":  # a ratio of non-negative values is never below 0
        low = max(low, 0.0)
    p = sign_p(signs)
    direction = int(np.sign((signs > 0).sum() - (signs < 0).sum()))
    return Result(n, median, low, high, p, "sign test", kind, direction, p_exact=p, family=family)


def rounding_sd(
    base: np.ndarray, cand: np.ndarray, kind: str, resolution: tuple[np.ndarray, np.ndarray]
) -> float:
    """The spread a paired difference has from rounding alone: a value read on a grid of width
    w lies anywhere in the step before it (uniform: variance w^2 / 12), for both arms; on the
    log scale of a ratio, w / x at the middle of that step (the delta method)."""
    (wb, wc) = (np.asarray(w, float) for w in resolution)
    if kind == "ratio":
        wb = wb / np.maximum(base - wb / 2, 1e-300)
        wc = wc / np.maximum(cand - wc / 2, 1e-300)
    return float(np.sqrt(np.mean(wb**2 + wc**2) / 12.0))


def pair_signs(base: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """-1, 0 or +1 per pair: which way the candidate lies (equal values, infinite ones
    included, are ties)."""
    with np.errstate(invalid="ignore"):  # inf - inf where both are infinite: a tie, set below
        return np.sign(np.where(base == cand, 0.0, cand - base))


def _positive(base: np.ndarray, cand: np.ndarray) -> bool:
    return bool((base > 0).all() and (cand > 0).all())


def _effect(b: float, c: float, kind: str) -> float:
    """One pair's difference or ratio, with infinities and zeros ordered soundly: equal values
    (both infinite, both zero) give no effect; a finite candidate against an infinite
    baseline is the best possible, the reverse the worst."""
    if b == c:
        return 0.0 if kind == "difference" else 1.0
    if kind == "difference":
        return c - b
    if math.isinf(c) or b == 0.0:
        return math.inf
    return 0.0 if math.isinf(b) else c / b


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (nan stays nan and does not count as a test)."""
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    order = sorted(idx, key=lambda i: pvalues[i])
    m = len(order)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def verdict(result: Result, p_adjusted: float, lower_is_better: bool) -> str:
    """`better`, `worse`, `no significant difference` or `not enough data` (fewer than 2
    pairs). Significance is the Holm-adjusted p below 0.05; the direction is the candidate's."""
    if result.n < 2 or math.isnan(p_adjusted):
        return "not enough data"
    if p_adjusted >= ALPHA or result.direction == 0:
        return "no significant difference"
    better = (result.direction < 0) == lower_is_better
    return "better" if better else "worse"
