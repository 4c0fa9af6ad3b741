"""Matplotlib plots of one setting: train and val curves (and top-1 where the recipe logs it) by
step and by time, final val loss against lr for every optimizer, and each ratio sweep.

Bands are 95% t-intervals of the mean over seeds (`ci_band`, `stats.t_half`), not min-max:
they shrink with more seeds, as the paired tests' intervals do. Every plot is saved as PNG
(embedded in the HTML) and SVG (for papers), named by the setting's label
(`curves_step_gpt2-smoke-sched-cosine.png`), never by a hash. matplotlib is imported inside the
functions (Agg backend): `lionbench report` without `--out`, and every other command, never
pays for it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lionbench.optim.registry import OPTIMIZERS
from lionbench.report.rows import metrics_of
from lionbench.report.stats import t_half
from lionbench.run.rundir import RunDir

if TYPE_CHECKING:
    from lionbench.report.analyse import Setting

NOT_METRICS = {"step", "split", "time_s", "examples", "lr", "loss", "ppl"}  # ppl: exp(loss)


def ci_band(g: pd.DataFrame, value: str, by: str = "step") -> pd.DataFrame:
    """Per `by`: mean of `value` over runs, the 95% t-interval (low, high), n, mean time."""
    agg = g.groupby(by).agg(
        mean=(value, "mean"), std=(value, "std"), n=(value, "count"), time_s=("time_s", "mean")
    )
    half = [t_half(sd, n) for sd, n in zip(agg["std"], agg["n"], strict=True)]
    return agg.assign(low=agg["mean"] - half, high=agg["mean"] + half)


def slug(label: str) -> str:
    """A file-name form of a label: `gpt2 smoke sched=cosine` -> `gpt2-smoke-sched-cosine`."""
    return re.sub(r"[^a-z0-9.]+", "-", label.lower()).strip("-.") or "setting"


def unique_slugs(labels: Iterable[str]) -> list[str]:
    """One file-name form per label, all distinct (slugs that clash get -2, -3...)."""
    out: list[str] = []
    for label in labels:
        base = slug(label)
        name, k = base, 2
        while name in out:
            name, k = f"{base}-{k}", k + 1
        out.append(name)
    return out


def plot_names(settings: Iterable[Setting]) -> list[str]:
    """One unique slug per setting: the name of its plots, tables and HTML anchor."""
    return unique_slugs(s.label for s in settings)


def run_curves(run_dirs: Iterable[str]) -> pd.DataFrame:
    """Every train and val record of the runs (split, step, time_s, loss, top1, ...)."""
    rows = [
        {"run_dir": d, **r}
        for d in run_dirs
        for r in metrics_of(RunDir(Path(d)))
        if r.get("split") in ("train", "val")
    ]
    return pd.DataFrame(rows, columns=None if rows else ["run_dir", "split", "step", "loss"])


def panels(c: pd.DataFrame) -> list[tuple[str, str]]:
    """(split, metric) of each panel: train loss, val loss, then every other val metric logged
    (top-1 on the image recipes); EMA copies are left to the tables."""
    out = [(sp, "loss") for sp in ("train", "val") if (c["split"] == sp).any()]
    val = c[c["split"] == "val"]
    for col in val.columns:
        if col in NOT_METRICS or col == "run_dir" or col.startswith("ema_"):
            continue
        if pd.to_numeric(val[col], errors="coerce").notna().any():
            out.append(("val", col))
    return out


def curve_figure(s: Setting, c: pd.DataFrame, floor: pd.Series, axis: str, path: Path) -> None:
    """One panel per (split, metric), one line per arm (the baseline dashed), 95% CI bands."""
    import matplotlib.pyplot as plt

    shown = panels(c)
    rows = legend_rows(c["arm"].nunique())  # the legend below grows the figure, not the panels
    fig, axes = plt.subplots(
        1,
        len(shown),
        figsize=(max(8.0, 4.6 * len(shown)), 3.4 + rows * LEGEND_ROW_IN),
        squeeze=False,
    )
    xlabel = "step" if axis == "step" else "training time (s)"
    colours = {arm: f"C{i % 10}" for i, arm in enumerate(s.optimizers["arm"])}  # same in panels
    for ax, (split, metric) in zip(axes[0], shown, strict=True):
        part = c[c["split"] == split].dropna(subset=[metric])
        part = part.assign(**{metric: pd.to_numeric(part[metric], errors="coerce")})
        for arm, g in part.groupby("arm", sort=False):
            b = ci_band(g, metric)
            x = b.index.to_numpy() if axis == "step" else b["time_s"].to_numpy()
            style = "--" if arm == s.baseline else "-"
            (line,) = ax.plot(x, b["mean"], style, color=colours.get(arm, "k"), lw=1.4,
                              label=f"{arm} (n={g['run_dir'].nunique()})")  # fmt: skip
            ax.fill_between(x, b["low"], b["high"], color=line.get_color(), alpha=0.18, lw=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{split} {metric}")
        ax.set_title(f"{split} {metric}", fontsize=10)
        zoom(ax, part[metric], metric == "loss")
        if metric == "loss":
            floor_line(ax, floor)
    fig.suptitle(
        f"{s.label}\nmean over seeds, band: 95% CI of the mean (t); baseline dashed", fontsize=10
    )
    handles, labels = axes[0][0].get_legend_handles_labels()
    save(fig, path, (handles, labels))


def zoom(ax: Any, values: pd.Series, loss: bool) -> None:
    """The range of the seeds' own values, not of the bands (with 2 seeds a 95% band is wide,
    and a top-1 band would pass 0 and 1); a loss stops a little above its typical start (the
    first steps' spike would squash the rest), a fraction (top-1) stays within [0, 1]."""
    v = values[np.isfinite(values)]
    if v.empty:
        return
    lo, hi = float(v.min()), float(v.quantile(0.98) if loss else v.max())
    pad = 0.05 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1e-3)
    lo, hi = lo - pad, hi + pad
    if not loss and v.min() >= 0 and v.max() <= 1:
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    ax.set_ylim(lo, hi)


def floor_line(ax: Any, floor: pd.Series) -> None:
    """The recipe's loss floor: a line when it lies in the plotted range, else a note (a line
    far below the curves would squash them)."""
    if floor.empty:
        return
    f = float(floor.mean())
    lo, hi = ax.get_ylim()
    if lo <= f <= hi:
        ax.axhline(f, color="gray", lw=0.8, ls=":", label="loss floor")
    else:
        where = "below" if f < lo else "above"
        ax.annotate(f"loss floor {f:.3g} ({where} the plot)", xy=(0.98, 0.02 if f < lo else 0.95),
                    xycoords="axes fraction", ha="right", fontsize=7, color="gray")  # fmt: skip


def errorbars(ax: Any, x: pd.Series, rows: pd.DataFrame, label: str, color: str) -> None:
    """Mean final val loss with 95% CI bars over seeds."""
    yerr = [t_half(sd, int(n)) for sd, n in zip(rows["final_val_loss_std"], rows["n"], strict=True)]
    ax.errorbar(x, rows["final_val_loss"], yerr=yerr, marker="o", ms=4, capsize=3, color=color,
                label=label)  # fmt: skip


def mark_best(ax: Any, x: float, y: float, text: str, color: str) -> None:
    """A star on the best point of a line, named in the legend (a note beside the point would
    cover the other optimizers' points)."""
    ax.plot([x], [y], ls="none", marker="*", ms=15, color=color, mec="black", mew=0.6, zorder=5,
            label=text)  # fmt: skip


def lr_plot(s: Setting, path: Path) -> None:
    """Final val loss against lr for each optimizer (Lion and AdamW alike), best of each marked."""
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    opt = s.optimizers[s.optimizers["n"] > 0]
    for i, (line, rows) in enumerate(opt.groupby(opt["arm"].map(lr_line), sort=True)):
        rows = rows.sort_values("lr")
        color = f"C{i % 10}"
        errorbars(ax, rows["lr"], rows, f"{line} (mean, 95% CI over seeds)", color)
        clean = rows[rows["diverged"] == 0]
        if len(rows) >= 2 and not clean.empty and clean["final_val_loss"].notna().any():
            b = clean.loc[clean["final_val_loss"].idxmin()]
            mark_best(ax, b["lr"], b["final_val_loss"], f"best {line}: lr={b['lr']:.3g}", color)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    lrs = sorted(opt["lr"].dropna().unique())
    if len(lrs) <= 8:  # the tested lrs are the ticks (a decade's label alone says little)
        ax.set_xticks(lrs, [f"{x:.3g}" for x in lrs])
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("final val loss")
    ax.set_title(f"lr sensitivity: final val loss vs lr\n{s.label}", fontsize=10)
    save(fig, path)


def lr_line(arm: str) -> str:
    """The arm's label without its lr (`r=`, `lr=`): arms that differ in anything else (betas,
    weight decay, impl) get lines of their own, never one line zigzagging between them."""
    return re.sub(r" (?:r|lr)=\S+", "", arm)


def sweep_plot(s: Setting, path: Path) -> None:
    """Final val loss against the ratio, one line per family, the best r starred, the baseline
    as its 95% CI band."""
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (family, sw) in enumerate(s.sweep.groupby("family", sort=True)):
        sw = sw.sort_values("ratio")
        color = f"C{i % 10}"
        errorbars(ax, sw["ratio"], sw, f"{family} (mean, 95% CI over seeds)", color)
        for _, b in sw[sw["best"].astype(bool)].iterrows():
            mark_best(
                ax, b["ratio"], b["final_val_loss"], f"best {family}: r={b['ratio']:g}", color
            )
    opt = s.optimizers
    base = opt[opt["baseline"]] if "baseline" in opt else opt.iloc[:0]
    if not base.empty:
        b = base.iloc[0]
        half = t_half(b["final_val_loss_std"], int(b["n"]))
        mean = b["final_val_loss"]
        ax.axhspan(mean - half, mean + half, color="gray", alpha=0.2)
        ax.axhline(mean, color="gray", ls="--", label=f"{b['arm']} (baseline, 95% CI)")
    ratios = sorted(s.sweep["ratio"].unique())
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
    ax.set_xlabel(f"ratio r  ({ratio_rule(s.sweep['optim'].iloc[0])})")
    ax.set_ylabel("final val loss")
    ax.set_title(f"lr/wd ratio sweep\n{s.label}", fontsize=10)
    save(fig, path)


def ratio_rule(optim: str) -> str:
    """How a ratio-linked optimizer's lr and wd derive from its base's (the registry says which)."""
    spec = OPTIMIZERS.get(optim)
    base = spec.ratio_of if spec is not None and spec.ratio_of else "base"
    return f"{optim} lr = {base} lr / r, wd = {base} wd × r"


def save(fig: Any, path: Path, legend: Any = None) -> None:
    """Legend (below the panels when given), grid, layout, PNG and SVG, close: one place so
    every plot looks alike. The PNG is what the HTML embeds."""
    import matplotlib
    import matplotlib.pyplot as plt

    for ax in fig.axes:
        ax.grid(alpha=0.3)
    rows = 0
    if legend is None:
        fig.axes[0].legend(fontsize=7)
    else:
        handles, labels = legend
        rows = legend_rows(len(labels))
        fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=8,
                   frameon=False)  # fmt: skip
    margins(fig, rows)
    png = path.parent / f"{path.name}.png"  # names hold dots (`lr-0.003`): no with_suffix
    fig.savefig(png, dpi=130)
    # text as SVG text, not glyph outlines: editable and searchable in a paper, and faster
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(path.parent / f"{path.name}.svg")
    plt.close(fig)


LEGEND_ROW_IN = 0.2  # the height of one row of a legend below the panels (fontsize 8), inches


def legend_rows(labels: int) -> int:
    return math.ceil(labels / 3)


def margins(fig: Any, legend_rows: int = 0) -> None:
    """Fixed margins, in inches, around the panels: room for the tick labels and axis label on
    the left and below, a two-line title above, and the legend rows below the panels. Fixed
    rather than measured (tight_layout draws every text once more: a third of a figure's time)
    and the same in every plot, so that the plots line up."""
    w, h = fig.get_size_inches()
    panels = max(1, len(fig.axes))
    bottom = 0.55 + (legend_rows * LEGEND_ROW_IN + 0.15 if legend_rows else 0.0)
    inner = w - 0.8 - 0.25 - 0.7 * (panels - 1)  # the panels' total width
    fig.subplots_adjust(left=0.8 / w, right=1 - 0.25 / w, top=1 - 0.7 / h, bottom=bottom / h,
                        wspace=0.7 / (inner / panels))  # fmt: skip
