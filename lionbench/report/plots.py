"""Matplotlib plots of one setting: val loss by step and by time, and each ratio sweep.

matplotlib is imported inside the functions (Agg backend): `lionbench report` without `--out`,
and every other command, never pays for it. Each plot is saved next to the report and recorded
in `Setting.plots`, which render.py embeds.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lionbench.optim.registry import OPTIMIZERS

if TYPE_CHECKING:
    from lionbench.report.analyse import Setting


def make_plots(s: Setting, curves: pd.DataFrame, out: Path) -> None:
    """curves_step_<key>.png, curves_time_<key>.png and, with 2+ ratios, ratio_sweep_<key>.png."""
    import matplotlib

    matplotlib.use("Agg")

    done = s.runs[s.runs["status"] == "completed"]
    if done.empty:
        return
    c = curves[curves["run_dir"].isin(done["run_dir"])].merge(
        done[["run_dir", "arm", "optim"]], on="run_dir"
    )
    floor = done["loss_floor"].dropna()
    for axis, xlabel in (("step", "step"), ("time_s", "training time (s)")):
        curve_plot(s, c, floor, axis, xlabel, out)
    if not s.sweep.empty and s.sweep.groupby("family").size().max() >= 2:
        sweep_plot(s, out)


def curve_plot(
    s: Setting, c: pd.DataFrame, floor: pd.Series, axis: str, xlabel: str, out: Path
) -> None:
    """Mean val loss per arm with the min-max band over seeds; the baseline dashed."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for arm, g in c.groupby("arm", sort=False):
        if axis == "step":
            stats = g.groupby("step")["loss"].agg(["mean", "min", "max"])
            x = stats.index.to_numpy()
        else:
            stats = g.groupby("step").agg(
                mean=("loss", "mean"), min=("loss", "min"), max=("loss", "max"),
                x=("time_s", "mean"),
            )  # fmt: skip
            x = stats["x"].to_numpy()
        style = "--" if arm == s.baseline else "-"
        (line,) = ax.plot(x, stats["mean"], style, label=f"{arm} (n={g['run_dir'].nunique()})")
        ax.fill_between(x, stats["min"], stats["max"], color=line.get_color(), alpha=0.2)
    if not floor.empty:
        ax.axhline(floor.mean(), color="gray", lw=0.8, ls=":", label="loss floor")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("val loss")
    ax.set_title(f"val loss by {xlabel}: mean, min-max over seeds\n{s.label}", fontsize=9)
    zoom(ax, c["loss"], floor)
    name = f"curves_{'step' if axis == 'step' else 'time'}_{s.key}.png"
    save(fig, out / name, s, f"val loss by {xlabel}")


def sweep_plot(s: Setting, out: Path) -> None:
    """Final val loss against the ratio, one line per family, the baseline as a band."""
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6, 4))
    for family, sw in s.sweep.groupby("family", sort=True):
        sw = sw.sort_values("ratio")
        ax.errorbar(
            sw["ratio"], sw["final_val_loss"], yerr=sw["final_val_loss_std"].fillna(0),
            marker="o", capsize=3, label=f"{family} (mean ± std over seeds)",
        )  # fmt: skip
    opt = s.optimizers
    base = opt[opt["baseline"]] if "baseline" in opt else opt.iloc[:0]
    if not base.empty:
        b = base.iloc[0]
        std = 0 if math.isnan(b["final_val_loss_std"]) else b["final_val_loss_std"]
        mean = b["final_val_loss"]
        ax.axhspan(mean - std, mean + std, color="tab:orange", alpha=0.2)
        ax.axhline(mean, color="tab:orange", ls="--", label=f"{b['arm']} (mean ± std)")
    ratios = sorted(s.sweep["ratio"].unique())
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
    ax.set_xlabel(f"ratio r  ({ratio_rule(s.sweep['optim'].iloc[0])})")
    ax.set_ylabel("final val loss")
    ax.set_title(f"lr/wd ratio sweep\n{s.label}", fontsize=9)
    save(fig, out / f"ratio_sweep_{s.key}.png", s, "ratio sweep")


def ratio_rule(optim: str) -> str:
    """How a ratio-linked optimizer's lr and wd derive from its base's (the registry says which)."""
    spec = OPTIMIZERS.get(optim)
    base = spec.ratio_of if spec is not None and spec.ratio_of else "base"
    return f"{optim} lr = {base} lr / r, wd = {base} wd × r"


def save(fig: Any, path: Path, s: Setting, title: str) -> None:
    """Legend, grid, layout, PNG, close; one place so every plot looks alike."""
    import matplotlib.pyplot as plt

    ax = fig.axes[0]
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    s.plots[title] = path


def zoom(ax: Any, losses: pd.Series, floor: pd.Series) -> None:
    """Keep the interesting range: from the floor (or min) to a little above the start."""
    lo = min(losses.min(), floor.mean()) if not floor.empty else losses.min()
    hi = losses.quantile(0.98)
    if np.isfinite(lo) and np.isfinite(hi) and hi > lo:
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
