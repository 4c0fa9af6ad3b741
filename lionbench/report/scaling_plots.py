"""A scaling study shown: its two plots (matplotlib, imported inside the functions, Agg; drawn and
saved as plots.py draws, PNG and SVG), its tables in words, the items of its report section
and its export table. The verdicts' numbers come from scaling.py and scaling_fit.py.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lionbench.report import page
from lionbench.report.plots import save, unique_slugs
from lionbench.report.scaling import ScalingStudy, title
from lionbench.report.scaling_fit import NEEDS_BUDGETS, TWO_SIZES, Trend, count_text, fitted
from lionbench.report.stats import t_half
from lionbench.report.verdicts import p_text

SCALING_DEFINITION = (
    "Each point (model size x data budget) tuned every optimizer on the same grid budget, then "
    "re-ran each optimizer's best setting on the same fresh seeds; everything below rests on "
    "those confirmation runs alone. Loss diff: candidate - baseline final val loss, paired by "
    "seed (95% t interval; p paired t, Holm across the study's points and candidates). "
    "Speedup: per seed, the data D' at which the baseline's loss-against-data curve at that "
    "size (log-log linear between budgets; extrapolated beyond them up to 2x, flagged) reaches "
    "the candidate's loss, over the candidate's data D; geometric mean over seeds with its 95% "
    "t interval. Trend: OLS of each point's mean log2 speedup on log2 parameters (and log2 "
    "budget), residual df = points - coefficients (a seed's values at one size share its "
    "baseline curve, so seeds are not independent values of the trend); its factor per "
    "doubling with a 95% interval, and where the fitted speedup and its 95% band reach 1 (at "
    "the geometric-mean budget)."
)
FACTORS = (0.125, 0.25, 0.35, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0,
           4.0, 6.0, 8.0)  # fmt: skip
TITLES = {"speedup": "effective-data speedup against parameters",
          "loss": "final val loss against data"}  # fmt: skip


def draw_scaling(studies: Sequence[ScalingStudy], out: Path) -> None:
    """scaling_<name> (speedups, where there are any) and scaling_loss_<name> of each study
    (PNG and SVG), named in the study's `plots` by title."""
    import matplotlib

    matplotlib.use("Agg")
    for st, name in zip(studies, names(studies), strict=True):
        if st.problem is not None:
            continue
        if not st.speedups.empty and st.speedups["log2_speedup"].notna().any():
            speedup_plot(st, out / f"scaling_{name}")
            st.plots[TITLES["speedup"]] = out / f"scaling_{name}.png"
        if np.isfinite(st.losses["loss"]).any():
            loss_plot(st, out / f"scaling_loss_{name}")
            st.plots[TITLES["loss"]] = out / f"scaling_loss_{name}.png"


def names(studies: Sequence[ScalingStudy]) -> list[str]:
    """One file-name form per study, all distinct."""
    return unique_slugs(st.name for st in studies)


def speedup_plot(st: ScalingStudy, path: Path) -> None:
    """One panel per candidate: the speedup at each point against parameters (log x, log2 y),
    one marker series per budget with its 95% interval as error bars, the fitted line and its
    95% band at each budget in the same colour, a dashed line at 1."""
    import matplotlib.pyplot as plt

    cands = list(st.trends)
    fig, axes = plt.subplots(1, len(cands), figsize=(6.4 * len(cands), 4.6), squeeze=False)
    budgets = sorted(st.points["budget"].unique())
    base = title(st.manifest["baseline"])
    for ax, cand in zip(axes[0], cands, strict=True):
        rows = st.points[st.points["candidate"] == cand]
        for i, budget in enumerate(budgets):
            at = rows[(rows["budget"] == budget) & rows["speedup"].notna()]
            color = f"C{i % 10}"
            low = (at["speedup"] - at["speedup_low"]).fillna(0).clip(lower=0)
            high = (at["speedup_high"] - at["speedup"]).fillna(0).clip(lower=0)
            dodge = 2.0 ** (0.06 * (i - (len(budgets) - 1) / 2))  # budgets side by side
            ax.errorbar(at["params"] * dodge, at["speedup"], yerr=[low, high], marker="o",
                        ls="none", ms=5, capsize=3, color=color,
                        label=f"budget {budget:g}x")  # fmt: skip
            fit_line(ax, st.trends[cand], rows["params"], budget, color)
        ax.axhline(1.0, color="gray", ls="--", lw=0.9)
        shown = rows[["speedup", "speedup_low", "speedup_high"]].to_numpy().ravel()
        count_axes(ax, rows["params"], list(shown))
        ax.set_xlabel("parameters (log scale)")
        ax.set_ylabel(f"speedup D'/D ({base}'s data for the same loss)")
        ax.set_title(f"{title(cand)} vs {base}: {st.trends[cand].label}", fontsize=9)
    fig.suptitle(f"scaling study {st.name}: effective-data speedup\nmean over seeds, 95% CI; "
                 f"fitted line with its 95% band", fontsize=10)  # fmt: skip
    save(fig, path)


def fit_line(ax: Any, t: Trend, params: pd.Series, budget: float, color: str) -> None:
    """The fitted speedup and its 95% band across the sizes, at one budget."""
    if t.coef is None or t.cov is None:
        return
    grid = np.linspace(math.log2(params.min()), math.log2(params.max()), 100)
    y, low, high = fitted(t, grid, math.log2(budget))
    ax.plot(2.0**grid, 2.0**y, color=color, lw=1.2)
    if t.df > 0 and t.label != TWO_SIZES:  # two sizes' band says nothing, and fills the panel
        ax.fill_between(2.0**grid, 2.0**low, 2.0**high, color=color, alpha=0.15, lw=0)


def loss_plot(st: ScalingStudy, path: Path) -> None:
    """Mean final val loss against data (log x), one line per size and optimizer (the baseline
    dashed), error bars the 95% t interval over seeds (diverged seeds left out, said)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    finite = st.losses[np.isfinite(st.losses["loss"])]
    baseline = st.manifest["baseline"]
    sizes = list(dict.fromkeys(st.losses.sort_values("params")["size"]))
    others = [o for o in dict.fromkeys(st.losses["optim"]) if o != baseline]
    styles = {baseline: "--", **{o: ["-", "-.", ":"][i % 3] for i, o in enumerate(others)}}
    for (size, optim), g in finite.groupby(["size", "optim"], sort=False):
        agg = g.groupby("data")["loss"].agg(["mean", "std", "count"]).sort_index()
        yerr = [t_half(sd, int(n)) for sd, n in zip(agg["std"], agg["count"], strict=True)]
        ax.errorbar(agg.index, agg["mean"], yerr=yerr, ls=styles[optim], marker="o", ms=4,
                    capsize=3, color=f"C{sizes.index(size) % 10}",
                    label=f"{size} {title(str(optim))}")  # fmt: skip
    count_axes(ax, st.losses["data"])
    ax.set_xlabel(f"data ({st.manifest.get('unit', 'tokens')}, log scale)")
    ax.set_ylabel("final val loss")
    dropped = int((~np.isfinite(st.losses["loss"])).sum())
    note = f"; {dropped} diverged run{'s' if dropped > 1 else ''} left out" if dropped else ""
    ax.set_title(f"scaling study {st.name}: mean over seeds, 95% CI; baseline dashed{note}",
                 fontsize=9)  # fmt: skip
    save(fig, path)


def count_axes(ax: Any, xs: Sequence[float], ys: Sequence[float] = ()) -> None:
    """A log x axis with a tick at each of `xs`, labelled as counts (`43.9k`, `1.6M`) and, with
    `ys` (the values and interval ends to show, 1 always), a log y axis fitted to them with
    ticks at round factors (a fit's band on two sizes may reach x50: it is cut, not the view);
    plain text, no mathtext (parsing it was most of a plot's time)."""
    import matplotlib.ticker as mt

    ax.set_xscale("log")
    xs = sorted({float(x) for x in xs if math.isfinite(float(x))})
    ticks = [x for i, x in enumerate(xs) if i == 0 or x / xs[i - 1] > 1.2]  # labels apart
    ax.xaxis.set_major_locator(mt.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(mt.FuncFormatter(lambda v, _: count_text(v)))
    ax.xaxis.set_minor_locator(mt.NullLocator())
    if xs:
        ax.set_xlim(xs[0] / 1.3, xs[-1] * 1.3)
    finite = [float(y) for y in ys if math.isfinite(float(y)) and float(y) > 0]
    if not ys or not finite:
        return
    low, high = min([*finite, 1.0]) / 1.12, max([*finite, 1.0]) * 1.12
    ax.set_yscale("log", base=2)
    ax.set_ylim(low, high)
    ticks = [v for v in FACTORS if low <= v <= high]
    ax.yaxis.set_major_locator(mt.FixedLocator(ticks))
    ax.yaxis.set_major_formatter(mt.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(mt.NullLocator())


def interval_text(estimate: float, low: float, high: float, fmt: str, factor: bool = False) -> str:
    """`x1.23 [1.1, 1.4]` (a `factor`) or `-0.012 [-0.02, -0.004]`; the estimate alone without
    an interval, `-` without an estimate."""
    if math.isnan(estimate):
        return "-"
    shown = ("x" if factor else "") + format(estimate, fmt)
    return shown if math.isnan(low) else f"{shown} [{format(low, fmt)}, {format(high, fmt)}]"


def seeds_text(r: pd.Series) -> str:
    """What a row rests on: the loss pairs (and those with a diverged run, left out) and the
    seeds with a speedup (and those dropped, and why)."""
    text = f"{r['n_pairs']} pair{'' if r['n_pairs'] == 1 else 's'}"
    if r["n_nonfinite_pairs"]:
        text += f" (+{r['n_nonfinite_pairs']} with a diverged run, left out)"
    if r["n_speedup"] or r["n_dropped"]:
        text += f"; speedup {r['n_speedup']}"
        text += f" ({r['n_dropped']} dropped: {r['dropped']})" if r["n_dropped"] else ""
    return text


def points_display(st: ScalingStudy) -> pd.DataFrame:
    """The per-point table in words, one row per point and candidate."""
    unit = st.manifest.get("unit", "tokens")
    single = len({float(p["budget"]) for p in st.manifest["points"]}) < 2
    rows = [
        {
            "size": r["size"],
            "params": count_text(r["params"]),
            "budget": f"{r['budget']:g}x",
            "data": f"{count_text(r['data'])} {unit}",
            "candidate": title(r["candidate"]),
            "loss diff [95% CI]": interval_text(r["loss_diff"], r["loss_diff_low"],
                                                r["loss_diff_high"], "+.3g"),
            "p (Holm)": p_text(r["p_holm"]),
            "speedup [95% CI]": NEEDS_BUDGETS if single else interval_text(
                r["speedup"], r["speedup_low"], r["speedup_high"], ".3g", True),
            "extrapolated": "yes" if r["extrapolated"] else "no",
            "seeds": seeds_text(r),
        }
        for _, r in st.points.iterrows()
    ]  # fmt: skip
    return pd.DataFrame(rows)


def trend_display(st: ScalingStudy) -> pd.DataFrame:
    """Each candidate's fit in words: what it is, its factors per doubling, where it reaches 1."""
    rows = []
    for cand, t in st.trends.items():
        fits = t.coef is not None  # no fit: one size, one budget, no values
        per_size = interval_text(*t.size_factor, ".3g", True) if fits else "-"
        rows.append({
            "candidate": title(cand),
            "fit": t.label,
            "points": t.n_obs,
            "per doubling of parameters": per_size,
            "per doubling of data": interval_text(*t.data_factor, ".3g", True) if fits else "-",
            "fitted speedup 1 at": (count_text(t.crossing) if math.isfinite(t.crossing)
                                    else t.crossing_note or "-"),
            "95% band contains 1 from": (count_text(t.band) if math.isfinite(t.band)
                                         else t.band_note or "-"),
        })  # fmt: skip
    return pd.DataFrame(rows)


def scaling_head(st: ScalingStudy) -> tuple[list[str], list[str]]:
    """(markdown lines, HTML fragments) opening a study's section: its heading and anchor, its
    verdict lines (or why it has none) and what they mean."""
    head = f"Scaling study {st.name}: does the advantage survive scale?"
    lines = st.verdicts or [str(st.problem)]
    md = [f"## {head}", "", *[f"- {v}" for v in lines], "", SCALING_DEFINITION, ""]
    body = [f"<h2 id='scaling-{html.escape(st.name)}'>{html.escape(head)}</h2><ul>"]
    body += [f"<li>{page.colour(v)}</li>" for v in lines]
    body.append(f"</ul><p class=meta>{html.escape(SCALING_DEFINITION)}</p>")
    return md, body


def scaling_items(st: ScalingStudy) -> list[tuple[str, pd.DataFrame | Path]]:
    """The titled tables and plots of a study's section, in order."""
    items: list[tuple[str, pd.DataFrame | Path]] = []
    if not st.points.empty:
        items.append(("Points: candidate vs baseline on the confirmation seeds",
                      points_display(st)))  # fmt: skip
        items.append(("Trend with size (OLS on log2 parameters and log2 budget)",
                      trend_display(st)))  # fmt: skip
    return items + [(f"{name} ({st.name})", png) for name, png in st.plots.items()]


def scaling_tables(studies: Sequence[ScalingStudy]) -> dict[str, pd.DataFrame]:
    """`scaling`: every study's per-point rows, with the study's name, for pandas."""
    parts = [st.points.assign(study=st.name) for st in studies if not st.points.empty]
    if not parts:
        return {}
    table = pd.concat(parts, ignore_index=True)
    return {"scaling": table[["study", *(c for c in table.columns if c != "study")]]}
