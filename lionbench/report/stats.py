"""Paired statistics for candidate-vs-baseline comparisons: numbers in, numbers out.

Nothing here knows about runs, arms or rendering (docs/design.md, "Verdicts"). Two arms are
compared seed by seed (the same seed gives both optimizers the same initialisation and batches),
so the unit of analysis is the per-seed difference (losses) or log ratio (speeds, steps):

- finite values everywhere: an exact sign-flip permutation test of the mean difference (or mean
  log ratio, reported as a ratio): under no difference each pair's sign is a fair coin, so all
  2^n sign patterns are equally likely whatever the distribution (timings are heavy-tailed);
  its 95% interval is the set of shifts the test does not reject. With more than 16 pairs a
  paired t-test (normal approximation) replaces the enumeration. Fewer than 6 pairs can never
  be significant (the smallest p is 2/2^n) and get an unbounded interval;
- a value that may be infinite (a diverged run's loss, the steps of a run that never reached the
  target, AlgoPerf's convention): an exact two-sided sign test on the signs of the differences
  (ties, including both infinite, dropped) and the order-statistic 95% interval for the median
  difference or ratio, both distribution-free and valid with infinities.

Several candidate arms compared with one baseline get Holm's step-down adjustment (per metric).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

ALPHA = 0.05
POWER_Z = 0.8416  # z of 80% power, for the seeds needed to resolve an observed effect
MIN_SIGN_N = 6  # the exact two-sided sign and sign-flip tests cannot reach p < 0.05 below it
MAX_EXACT = 16  # enumerate 2^n sign patterns up to here; above, the paired t-test
_SIGNS: dict[int, np.ndarray] = {}


@dataclass(frozen=True)
class Result:
    """One paired comparison. `estimate`, `low`, `high` are a difference (kind "difference") or
    a ratio candidate/baseline (kind "ratio"); `direction` is -1, 0 or +1: which way the
    candidate's values lie (below, neither, above the baseline's); `needed` the seeds that would
    resolve the observed effect at 80% power (None: no effect to resolve, or already resolved)."""

    n: int
    estimate: float
    low: float
    high: float
    p: float
    method: str
    kind: str
    direction: int
    needed: int | None = None


def paired_t(diffs: np.ndarray) -> tuple[float, float, float, float]:
    """(mean, low, high, p) of a paired t-test on finite differences, n >= 2. Equal
    differences (sd 0) give a degenerate interval at their mean: p 1 at zero, else 0."""
    n = len(diffs)
    mean = float(np.mean(diffs))
    sd = float(np.std(diffs, ddof=1))
    if sd == 0.0:
        return mean, mean, mean, 1.0 if mean == 0.0 else 0.0
    se = sd / math.sqrt(n)
    half = float(sps.t.ppf(1 - ALPHA / 2, n - 1)) * se
    p = float(2 * sps.t.sf(abs(mean) / se, n - 1))
    return mean, mean - half, mean + half, p


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


def flip_ci(d: np.ndarray) -> tuple[float, float]:
    """The shifts m for which `flip_p(d - m)` is at least 0.05, by bisection from the mean
    (p = 1) outwards to a shift beyond every value (p = 2/2^n); unbounded below 6 pairs."""
    if len(d) < MIN_SIGN_N:
        return -math.inf, math.inf
    mean, span = float(d.mean()), float(d.max() - d.min()) + 1e-12
    bounds = []
    for far in (float(d.min()) - span, float(d.max()) + span):
        inside, outside = mean, far
        for _ in range(30):
            mid = (inside + outside) / 2
            if flip_p(d - mid) >= ALPHA:
                inside = mid
            else:
                outside = mid
        bounds.append(inside)
    return bounds[0], bounds[1]


def location_test(d: np.ndarray) -> tuple[float, float, float, float, str]:
    """(mean, low, high, p, method) of finite paired differences: sign-flip up to 16 pairs."""
    if len(d) > MAX_EXACT:
        return (*paired_t(d), "paired t")
    if not d.any():
        return 0.0, 0.0, 0.0, 1.0, "sign-flip"
    low, high = flip_ci(d)
    return float(d.mean()), low, high, flip_p(d), "sign-flip"


def sign_p(signs: np.ndarray) -> float:
    """Exact two-sided sign test on -1/0/+1 signs; zeros (ties) are dropped."""
    pos, neg = int((signs > 0).sum()), int((signs < 0).sum())
    if pos + neg == 0:
        return 1.0
    return float(sps.binomtest(pos, pos + neg, 0.5).pvalue)


def median_ci(values: np.ndarray) -> tuple[float, float, float]:
    """(median, low, high): the order-statistic interval [x_(k), x_(n+1-k)] with the largest k
    whose coverage 1 - 2 P(Bin(n, 1/2) <= k - 1) is at least 95%; infinite values are ordered
    like any other. Fewer than 6 values: no such k, the interval is unbounded."""
    x = np.sort(values)
    n = len(x)
    mid = x[(n - 1) // 2 : n // 2 + 1]
    median = float(mid[0]) if mid[0] == mid[-1] else float(np.mean(mid))
    k = 0
    while k + 1 <= n // 2 and 2 * sps.binom.cdf(k, n, 0.5) <= ALPHA:
        k += 1
    if k == 0:
        return median, -math.inf, math.inf
    return median, float(x[k - 1]), float(x[n - k])


def t_needed(diffs: np.ndarray) -> int | None:
    """Seeds a paired t-test needs to resolve the observed mean difference at 80% power (normal
    approximation, from the observed sd of the differences)."""
    mean, sd = float(np.mean(diffs)), float(np.std(diffs, ddof=1))
    if mean == 0.0 or not math.isfinite(sd) or sd == 0.0:
        return None
    z = float(sps.norm.ppf(1 - ALPHA / 2))
    return max(MIN_SIGN_N, math.ceil(((z + POWER_Z) * sd / abs(mean)) ** 2) + 2)


def sign_needed(signs: np.ndarray) -> int | None:
    """Seeds a sign test needs to resolve the observed share of positive signs at 80% power;
    at least 6 (below that no outcome is significant); ties are assumed to recur."""
    nonzero = signs[signs != 0]
    if len(nonzero) == 0:
        return None
    q = float((nonzero > 0).mean())
    if q == 0.5:
        return None
    z = float(sps.norm.ppf(1 - ALPHA / 2))
    q_eff = min(max(q, 0.02), 0.98)
    m = ((z * 0.5 + POWER_Z * math.sqrt(q_eff * (1 - q_eff))) / (q_eff - 0.5)) ** 2
    return max(MIN_SIGN_N, math.ceil(m * len(signs) / len(nonzero)))


def compare(base: np.ndarray, cand: np.ndarray, kind: str) -> Result:
    """Paired comparison of candidate values with baseline values (same seeds, same order).

    kind "difference": cand - base; "ratio": cand / base, tested on the log ratio. Values may
    be +inf (diverged, never reached): then the sign test and the median's interval are used."""
    base, cand = np.asarray(base, float), np.asarray(cand, float)
    n = len(base)
    if n < 2:
        return Result(n, math.nan, math.nan, math.nan, math.nan, "-", kind, 0)
    if np.isfinite(base).all() and np.isfinite(cand).all() and (kind != "ratio" or _positive(
        base, cand
    )):  # fmt: skip
        d = cand - base if kind == "difference" else np.log(cand) - np.log(base)
        mean, low, high, p, method = location_test(d)
        direction = int(np.sign(mean))
        needed = t_needed(d) if p >= ALPHA else None
        if kind == "ratio":
            mean, low, high = math.exp(mean), math.exp(low), math.exp(high)
            method += " on log ratio"
        return Result(n, mean, low, high, p, method, kind, direction, needed)
    signs = np.sign(np.where(base == cand, 0.0, cand - base))
    effects = np.array([_effect(b, c, kind) for b, c in zip(base, cand, strict=True)])
    median, low, high = median_ci(effects)
    p = sign_p(signs)
    direction = int(np.sign((signs > 0).sum() - (signs < 0).sum()))
    needed = sign_needed(signs) if p >= ALPHA else None
    return Result(n, median, low, high, p, "sign test", kind, direction, needed)


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
