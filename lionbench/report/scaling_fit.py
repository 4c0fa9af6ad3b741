"""The numbers of a scaling study, numbers in, numbers out: the data at which a loss-against-data
curve reaches a loss (log-log interpolation, flagged extrapolation), a mean with its t interval,
and the OLS trend of log2 speedup on log2 parameters (and log2 budget) with its factors per
doubling, its 95% confidence band and where the fitted speedup (and the band) reach 1.
scaling.py says what they are computed on; docs/design.md, "Scaling verdicts", defines them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from lionbench.report.stats import ALPHA, paired_t

NEEDS_BUDGETS = "needs >= 2 budgets"
TWO_SIZES = "two sizes: a line through two points, not a trend"
ONE_SIZE = "one size: no trend"
SPAN = 1000.0  # the band and crossing are searched up to this many times the largest size
REACH = 2.0  # extrapolation goes at most this factor beyond the budgets' range of data
NAN3 = (math.nan, math.nan, math.nan)


@dataclass
class Trend:
    """One candidate's fit of log2 speedup on log2 parameters (and log2 budget) over `n_obs`
    points (each its seeds' mean): `coef` and
    `cov` are (intercept, parameters slope[, budget slope]) and their covariance; the factors
    are 2^slope per doubling, (estimate, low, high); `crossing`: the parameters where the
    fitted speedup is 1, `band`: where its 95% band first contains 1 (at `log2_budget`)."""

    label: str
    n_obs: int = 0
    sizes: int = 0
    coef: np.ndarray | None = None
    cov: np.ndarray | None = None
    df: int = 0
    log2_budget: float = 0.0
    size_factor: tuple[float, float, float] = NAN3
    data_factor: tuple[float, float, float] = NAN3
    crossing: float = math.nan
    crossing_note: str = ""
    band: float = math.nan
    band_note: str = ""


def mean_interval(values: np.ndarray) -> tuple[float, float, float, float]:
    """(mean, low, high, p) of values with a 95% t interval (nan interval for one value)."""
    if len(values) == 0:
        return math.nan, math.nan, math.nan, math.nan
    if len(values) == 1:
        return float(values[0]), math.nan, math.nan, math.nan
    return paired_t(values, ALPHA)


def data_equivalent(data: np.ndarray, loss: np.ndarray, target: float) -> tuple[float, bool, str]:
    """(D', extrapolated, why not): the data at which the curve (data ascending, its losses)
    reaches loss `target`, linear in (log D, log L) on the first bracketing segment; beyond the
    curve's range, from its end segment (the last where the target is below every loss, the
    first where above), flagged, and at most REACH times beyond the range. A non-finite loss, a
    flat bracketing segment, an end segment along which the loss does not fall, or a D' beyond
    that reach give none."""
    if not (np.isfinite(loss).all() and (loss > 0).all() and math.isfinite(target) and target > 0):
        return math.nan, False, "non-finite loss"
    x, y, t = np.log(data), np.log(loss), math.log(target)
    for j in range(len(x) - 1):
        if min(y[j], y[j + 1]) <= t <= max(y[j], y[j + 1]):
            if y[j] == y[j + 1]:
                return math.nan, False, "flat segment"
            return math.exp(x[j] + (t - y[j]) * (x[j + 1] - x[j]) / (y[j + 1] - y[j])), False, ""
    j = len(x) - 2 if t < y.min() else 0
    if y[j + 1] >= y[j]:
        return math.nan, True, "flat or rising end segment"
    found = math.exp(x[j] + (t - y[j]) * (x[j + 1] - x[j]) / (y[j + 1] - y[j]))
    if not data[0] / REACH <= found <= data[-1] * REACH:  # a near-flat end runs off: no value
        return math.nan, True, f"beyond {REACH:g}x the budgets' data"
    return found, True, ""


def fit_trend(obs: pd.DataFrame | None, budgets: list[float], params: list[float]) -> Trend:
    """OLS of each point's mean log2 speedup (over its seeds) on log2 parameters, with log2
    budget as a second regressor where the points span two budgets or more. One value per
    point: a seed's values at one size share its baseline curve, so seeds are not independent
    observations of the trend; the residual df is points - coefficients."""
    if len(budgets) < 2:
        return Trend(NEEDS_BUDGETS)
    obs = obs[np.isfinite(obs["log2_speedup"])] if obs is not None and not obs.empty else None
    if obs is None or obs.empty:
        return Trend("no speedup values", sizes=0)
    obs = obs.groupby(["params", "budget"], as_index=False)["log2_speedup"].mean()
    sizes = obs["params"].nunique()
    if sizes < 2:
        return Trend(ONE_SIZE, len(obs), sizes)
    columns = [np.ones(len(obs)), np.log2(obs["params"].to_numpy(dtype=float))]
    with_budget = obs["budget"].nunique() >= 2
    if with_budget:
        columns.append(np.log2(obs["budget"].to_numpy(dtype=float)))
    x = np.column_stack(columns)
    if np.linalg.matrix_rank(x) < x.shape[1]:  # a size and budget that move together
        x, with_budget = x[:, :2], False
    y = obs["log2_speedup"].to_numpy(dtype=float)
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    df = len(y) - x.shape[1]
    resid = y - x @ coef
    width = x.shape[1]
    cov = (resid @ resid / df) * np.linalg.inv(x.T @ x) if df > 0 else np.full((width,) * 2, np.nan)
    trend = Trend("trend" if sizes >= 3 else TWO_SIZES, len(obs), sizes, coef, cov, df,
                  float(np.mean(np.log2(budgets))) if with_budget else 0.0)  # fmt: skip
    trend.size_factor = factor(coef, cov, df, 1)
    if with_budget:
        trend.data_factor = factor(coef, cov, df, 2)
    crossings(trend, min(params), max(params))
    return trend


def factor(coef: np.ndarray, cov: np.ndarray, df: int, i: int) -> tuple[float, float, float]:
    """2^slope of regressor i with its 95% t interval: the factor per doubling."""
    half = t_quantile(df) * math.sqrt(cov[i, i]) if df > 0 else math.nan
    return 2.0 ** coef[i], 2.0 ** (coef[i] - half), 2.0 ** (coef[i] + half)


def t_quantile(df: int) -> float:
    return float(special.stdtrit(df, 1 - ALPHA / 2))


def fitted(
    t: Trend, log2_params: np.ndarray, log2_budget: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fitted log2 speedup, band low, band high) at these log2 parameters and `log2_budget`
    (default: the geometric mean of the study's budgets): the 95% confidence band of the fitted
    mean (its spread through the coefficients' covariance)."""
    assert t.coef is not None and t.cov is not None
    x = np.column_stack([np.ones(len(log2_params)), log2_params])
    if len(t.coef) == 3:
        at = t.log2_budget if log2_budget is None else log2_budget
        x = np.column_stack([x, np.full(len(log2_params), at)])
    y = x @ t.coef
    half = t_quantile(t.df) * np.sqrt(np.einsum("ij,jk,ik->i", x, t.cov, x)) if t.df > 0 else y * 0
    return y, y - half, y + half


def crossings(t: Trend, smallest: float, largest: float) -> None:
    """Where the fitted speedup is 1 and where its band first contains 1, searched from the
    smallest size to SPAN times the largest (else said: not within that range)."""
    assert t.coef is not None
    lo, hi = math.log2(smallest), math.log2(SPAN * largest)
    within = f"not within {count_text(smallest)} to {count_text(SPAN * largest)} parameters"
    if t.coef[1] != 0:
        at = -(fitted(t, np.zeros(1))[0][0]) / t.coef[1]
        t.crossing = 2.0**at if lo <= at <= hi else math.nan
    t.crossing_note = "" if math.isfinite(t.crossing) else within
    if t.df <= 0:
        t.band_note = "no band (no residual degrees of freedom)"
        return
    grid = np.linspace(lo, hi, 4001)
    _, low, high = fitted(t, grid)
    inside = np.flatnonzero((low <= 0) & (high >= 0))
    t.band = 2.0 ** grid[inside[0]] if len(inside) else math.nan
    t.band_note = "" if len(inside) else within


def count_text(n: float) -> str:
    """A parameter or data count for prose: 43.8k, 2.1M, 1.3B."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.3g}"
