"""The figures of a report as jobs, and the processes that draw them.

A `Figure` names one plot of one setting (plots.py draws it); `make_all_plots` lists every
setting's figures and has them drawn by `PlotWorkers` (`python -m lionbench.report.plot_worker`,
one per core) while the report does the rest, or in this process.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Callable
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


def make_all_plots(
    settings: list[Setting],
    out: Path,
    workers: PlotWorkers | None = None,
    meanwhile: Callable[[], None] | None = None,
) -> None:
    """Every setting's plots, each file named by the setting's label, drawn by `workers` (the
    processes `start_workers` started) while this process runs `meanwhile`, or here; each
    setting's `plots` then names its PNGs in a fixed order."""
    jobs = [f for s, name in zip(settings, plot_names(settings), strict=True)
            for f in figures(s, out, name)]  # fmt: skip
    if workers is not None and jobs:
        workers.send(jobs)
        if meanwhile is not None:
            meanwhile()
        workers.wait()
    else:
        for f in jobs:
            draw(f)
        if meanwhile is not None:
            meanwhile()
    for f in jobs:
        f.setting.plots[f.title] = png_of(f)


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


WORKERS_ENV = "LIONBENCH_PLOT_WORKERS"  # processes that draw the plots (0: this process)
WORKER = ["-m", "lionbench.report.plot_worker"]  # a worker's command after the interpreter


def worker_count() -> int:
    """How many worker processes draw a report's plots: one per usable core (none on one
    core: this process draws them), or what LIONBENCH_PLOT_WORKERS says."""
    n = os.environ.get(WORKERS_ENV, "").strip()
    if n.isdigit():
        return int(n)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores if cores and cores >= 2 else 0


class PlotWorkers:
    """Processes that draw the plots (`python -m lionbench.report.plot_worker`) while this one
    does the rest. Each spends its first 0.6 s importing matplotlib and pandas, so they start
    early, on cores this process leaves idle: all but one when the report starts (this process
    reads the runs on the last), the last once the runs are read (the first have finished their
    imports by then). Matplotlib spends most of a figure in Python (layout, ticks, text), so
    figures are drawn side by side only in processes: over 1,000 runs on 2 cores, about 1.5 s of
    plotting in this process became about 0.7 s in two workers, while this one printed the
    console tables. A worker that fails leaves its figures to this process, which then raises
    what drawing them raises."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.procs: list[subprocess.Popen] = []
        self.shares: list[list[Figure]] = []
        self.add(count - 1)

    def add(self, n: int = 1) -> None:
        """Start n more workers (up to the count), each waiting for its figures on stdin."""
        cmd = [sys.executable, *WORKER]
        for _ in range(max(0, min(n, self.count - len(self.procs)))):
            self.procs.append(
                subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
            )

    def send(self, jobs: list[Figure]) -> None:
        """Hand out the figures, the heaviest first, each to the least loaded worker."""
        self.add(self.count)
        self.shares = [[] for _ in self.procs]
        load = [0] * len(self.procs)
        for f in sorted(jobs, key=lambda f: f.curves is None):  # curve figures weigh twice
            i = load.index(min(load))
            self.shares[i].append(f)
            load[i] += 1 if f.curves is None else 2
        for proc, share in zip(self.procs, self.shares, strict=True):
            try:
                assert proc.stdin is not None
                proc.stdin.write(pickle.dumps(share, protocol=pickle.HIGHEST_PROTOCOL))
                proc.stdin.close()
            except OSError:  # the worker died before it read: wait() draws its share here
                proc.kill()

    def wait(self) -> None:
        """Wait for every worker; the figures of one that failed are drawn here."""
        for proc, share in zip(self.procs, self.shares, strict=True):
            if proc.wait() != 0:
                for f in share:
                    draw(f)

    def close(self) -> None:
        """Stop workers that were never given figures (an error before the plots)."""
        for proc in self.procs:
            if proc.poll() is None and proc.stdin is not None and not proc.stdin.closed:
                proc.kill()
            proc.wait()


def start_workers() -> PlotWorkers | None:
    """Start the plot workers (None: this process will draw)."""
    count = worker_count()
    return PlotWorkers(count) if count else None
