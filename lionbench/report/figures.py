"""The figures of a report: which plots each setting gets, with what data, drawn by plots.py.

A `Figure` names one plot of one setting and carries what drawing it reads (the setting's arm
tables, its curves, read once here); `make_all_plots` draws every setting's figures and names
their PNGs in the setting's `plots`, in a fixed order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from lionbench.report.plots import (
    curve_figure,
    lr_plot,
    plot_names,
    run_curves,
    slug,
    sweep_plot,
)

if TYPE_CHECKING:
    from lionbench.report.analyse import Setting


@dataclass(frozen=True)
class Figure:
    """One plot to draw: its kind, the setting it shows, the path of its files without the
    suffix, and for the curve plots the curves they draw (read once, in the parent process)."""

    kind: str  # "curves_step", "curves_time", "lr_sensitivity" or "ratio_sweep"
    setting: Setting
    path: Path
    curves: pd.DataFrame | None = None

    @property
    def title(self) -> str:
        return TITLES[self.kind]


TITLES = {
    "curves_step": "curves by step",
    "curves_time": "curves by training time (s)",
    "lr_sensitivity": "lr sensitivity",
    "ratio_sweep": "ratio sweep",
}


def make_all_plots(settings: list[Setting], out: Path) -> None:
    """Every setting's plots, each file named by the setting's label; each setting's `plots`
    then names its PNGs in a fixed order."""
    for s, name in zip(settings, plot_names(settings), strict=True):
        for f in figures(s, out, name):
            s.plots[f.title] = draw(f)


def figures(s: Setting, out: Path, name: str | None = None) -> list[Figure]:
    """curves_step_<name>, curves_time_<name>, lr_sensitivity_<name> (2+ lrs of an optimizer)
    and ratio_sweep_<name> (2+ ratios) of one setting, to draw."""
    name = name or slug(s.label)
    done = s.runs[s.runs["status"] == "completed"]
    if done.empty:
        return []
    jobs = []
    c = run_curves(done["run_dir"]).merge(done[["run_dir", "arm"]], on="run_dir")
    if not c.empty:
        jobs += [Figure(f"curves_{a}", s, out / f"curves_{a}_{name}", c) for a in ("step", "time")]
    if (
        s.optimizers["lr"].notna().any()
        and s.optimizers.groupby("optim")["lr"].nunique().max() >= 2
    ):
        jobs.append(Figure("lr_sensitivity", s, out / f"lr_sensitivity_{name}"))
    if not s.sweep.empty and s.sweep.groupby("family").size().max() >= 2:
        jobs.append(Figure("ratio_sweep", s, out / f"ratio_sweep_{name}"))
    return jobs


def draw(f: Figure) -> Path:
    """Draw one figure and save it as .png and .svg; the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")
    s = f.setting
    if f.curves is not None:
        floor = s.runs.loc[s.runs["status"] == "completed", "loss_floor"].dropna()
        curve_figure(s, f.curves, floor, f.kind.removeprefix("curves_"), f.path)
    elif f.kind == "lr_sensitivity":
        lr_plot(s, f.path)
    else:
        sweep_plot(s, f.path)
    return png_of(f)


def png_of(f: Figure) -> Path:
    return f.path.parent / f"{f.path.name}.png"  # names hold dots (`lr-0.003`): no with_suffix
