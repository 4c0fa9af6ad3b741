"""The performance profiles shown: their two plots (matplotlib, drawn as plots.py draws, PNG and
SVG), their tables in words, the files they are exported as and the summary as booktabs LaTeX.
Nothing here computes a number; profiles.py does.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from lionbench.report.latex import escape, tabular
from lionbench.report.plots import save
from lionbench.report.profiles import METRICS, TAU_MAX, Profile, rho

TITLES = {"steps": "performance profile: steps to target",
          "time": "performance profile: time to target"}  # fmt: skip
WORDS = {"steps": "steps", "time": "training time"}
STYLES = ("-", "--", "-.", ":")
TEX = "profile_scores"  # the table that also gets LaTeX
DEFINITION = (
    "Each setting is a workload. An optimizer stands in it by one arm: the baseline arm for the "
    "baseline optimizer, its arm of lowest mean final val loss for every other (chosen on the "
    "same seeds: it favours optimizers with several arms). t = the median over that arm's seeds "
    "of the steps (time) to the setting's tightest target, a seed that diverged or missed it "
    "counting as infinite; r = t / the fastest optimizer's t there (inf: never, or not run); "
    f"rho(tau) = the share of workloads with r <= tau; score = the area under rho from 1 to "
    f"{TAU_MAX:g}, over {TAU_MAX - 1:g} (AlgoPerf's: 1 = the fastest everywhere, 0 = never within "
    f"{TAU_MAX:g}x of the fastest). Times only from runs whose timing was not contended."
)


def draw_profiles(p: Profile, out: Path) -> None:
    """performance_profile_steps and performance_profile_time (PNG and SVG), each where some
    workload is in that metric's profile; their PNGs named in `p.plots` by title."""
    import matplotlib

    matplotlib.use("Agg")
    for metric in METRICS:
        if p.points.empty or not (p.points["metric"] == metric).any():
            continue
        path = out / f"performance_profile_{metric}"
        profile_plot(p, metric, path)
        p.plots[TITLES[metric]] = path.parent / f"{path.name}.png"


def profile_plot(p: Profile, metric: str, path: Path) -> None:
    """One step curve per optimizer, rho(tau) for tau from 1 to TAU_MAX (log axis), a marker
    where each workload enters it, labelled by the workload; the score and seeds in the legend."""
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    pts = p.points[p.points["metric"] == metric]
    names = short_names(list(dict.fromkeys(pts["setting"])))
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    n_work = 0
    for i, (optim, g) in enumerate(pts.groupby("optim", sort=False)):
        r = g["tau"].to_numpy(dtype=float)
        n_work = len(r)
        inside = np.sort(r[np.isfinite(r) & (r <= TAU_MAX)])
        xs = np.unique(np.r_[1.0, inside, TAU_MAX])
        s = p.scores.set_index("optim").loc[optim]
        seeds = (f"{int(g['timed'].sum())} seeds timed" if metric == "time" else
                 f"{int(g['reached'].sum())}/{int(g['n_seeds'].sum())} seeds reached")  # fmt: skip
        label = (f"{optim}: score {s[f'score_{metric}']:.2f}; {len(inside)}/{len(r)} settings "
                 f"within {TAU_MAX:g}x; {seeds}")  # fmt: skip
        color = f"C{i % 10}"  # the first drawn widest: curves that coincide stay visible
        ax.step(xs, [rho(r, x) for x in xs], where="post", ls=STYLES[i % 4],
                lw=max(1.2, 4.0 - 1.1 * i), color=color, label=label, alpha=0.85)  # fmt: skip
        shown = g[np.isfinite(r) & (r <= TAU_MAX)]
        for tau, at in shown.groupby("tau", sort=True):  # settings tied at one tau: one point
            xy = (tau, at["rho"].max())
            ax.plot(*xy, "o", ms=5, color=color, clip_on=False)
            ax.annotate(", ".join(at["setting"].map(names)), xy, fontsize=6.5, color=color,
                        textcoords="offset points", xytext=(4, -10 - 8 * i))  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlim(0.98, TAU_MAX * 1.02)
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ticks = [1, 1.25, 1.5, 2, 3, 4]
    ax.set_xticks([t for t in ticks if t <= TAU_MAX], [f"{t:g}" for t in ticks if t <= TAU_MAX])
    ax.set_ylim(-0.03, 1.06)
    ticks = range(n_work + 1) if n_work <= 10 else (0, n_work)
    ax.set_yticks([k / n_work for k in ticks], [f"{k}/{n_work}" for k in ticks])
    ax.set_xlabel(f"tau: {WORDS[metric]} to target as a multiple of the fastest's (log scale)")
    ax.set_ylabel(f"rho(tau): share of the {n_work} settings")
    ax.set_title(
        f"{TITLES[metric].capitalize()} (median over seeds)\nscore: area under rho from 1 to "
        f"{TAU_MAX:g}, over {TAU_MAX - 1:g} (AlgoPerf)",
        fontsize=10,
    )
    save(fig, path)


def short_names(labels: list[str]) -> dict[str, str]:
    """The name a point is labelled with: the recipe where that tells the settings apart, else
    the words of its label that not every label has (`n_embd=64`)."""
    words = [label.split(" ") for label in labels]
    if len({w[0] for w in words}) == len(words):
        return {label: w[0] for label, w in zip(labels, words, strict=True)}
    common = set.intersection(*(set(w) for w in words)) if words else set()
    return {
        label: " ".join(x for x in w if x not in common) or label
        for label, w in zip(labels, words, strict=True)
    }


def times(x: float) -> str:
    """A ratio to the fastest: `1.00x`, `inf` (never got there), `-` (left out)."""
    if math.isnan(x):
        return "-"
    return "inf" if math.isinf(x) else f"{x:.2f}x"


def value(x: float) -> str:
    """A median over seeds: `20`, `inf` (half or more missed), `-` (none: contended)."""
    return "-" if math.isnan(x) else f"{x:.4g}"


def seeds_text(w: pd.Series, metric: str = "steps") -> str:
    """The seeds a point rests on: `2/2 reached`, and for time the uncontended ones."""
    if not w["n_seeds"]:
        return "not run"
    said = f"{int(w['reached'])}/{int(w['n_seeds'])} reached"
    return said + (f", {int(w['timed'])} timed" if metric == "time" else "")


def summary_display(p: Profile) -> pd.DataFrame:
    """Optimizer x setting: `steps ratio / time ratio (seeds reached)`, then the two scores."""
    rows = []
    for optim, g in p.table.groupby("optim", sort=False):
        row = {"optimizer": optim}
        for _, w in g.iterrows():
            row[str(w["setting"])] = (
                "not run" if not w["n_seeds"] else
                f"{times(w['steps_ratio'])} / {times(w['time_ratio'])} "
                f"({int(w['reached'])}/{int(w['n_seeds'])})"
            )  # fmt: skip
        s = p.scores.set_index("optim").loc[optim]
        for metric in METRICS:
            x = s[f"score_{metric}"]
            row[f"score ({metric})"] = "-" if math.isnan(x) else f"{x:.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


def detail_display(p: Profile) -> pd.DataFrame:
    """Setting x optimizer: the arm, the target, seeds, the medians and their ratios."""
    t = p.table
    return pd.DataFrame({
        "setting": t["setting"], "target": [f"{x:.4g}" for x in t["target"]],
        "optimizer": t["optim"], "arm": t["arm"].fillna("-"),
        "seeds": [seeds_text(w, "time") for _, w in t.iterrows()],
        "median steps": t["steps"].map(value), "steps ratio": t["steps_ratio"].map(times),
        "median time (s)": t["time_s"].map(value),
        "time ratio": t["time_ratio"].map(times), "note": t["note"].replace("", "-"),
    })  # fmt: skip


def points_display(p: Profile, metric: str) -> pd.DataFrame:
    """The points of one plot: where each setting enters each optimizer's curve, and on what."""
    pts = p.points[p.points["metric"] == metric]
    return pd.DataFrame({
        "optimizer": pts["optim"], "tau (ratio)": pts["tau"].map(times),
        "rho(tau)": ["-" if math.isnan(x) else f"{x:.3g}" for x in pts["rho"]],
        "setting": pts["setting"], "arm": pts["arm"].fillna("-"),
        "seeds": [seeds_text(w, metric) for _, w in pts.iterrows()],
    })  # fmt: skip


def display(p: Profile) -> dict[str, pd.DataFrame | Path]:
    """The section's tables and plots by title, in order: the summary, the details, then each
    plot followed by the points it draws."""
    out: dict[str, pd.DataFrame | Path] = {
        "Ratio to the fastest per setting: steps / time (seeds reached), and the score":
            summary_display(p),
        "Per setting: the arm, seeds, medians over seeds and ratios": detail_display(p),
    }  # fmt: skip
    for metric, title in TITLES.items():
        if title in p.plots:
            out[title] = p.plots[title]
            out[f"Points of the {title}: setting and seeds"] = points_display(p, metric)
    return out


def profile_tables(p: Profile) -> dict[str, pd.DataFrame]:
    """The exported tables by file name: per setting and optimizer, per optimizer, per point."""
    return {"profiles": p.table, TEX: p.scores, "profile_points": p.points}


def tex_ratio(x: float) -> str:
    return "--" if math.isnan(x) else r"$\infty$" if math.isinf(x) else f"${x:.2f}{{\\times}}$"


def tex_score(x: float) -> str:
    return "--" if math.isnan(x) else f"${x:.3f}$"


def profile_tex(p: Profile) -> str:
    """Optimizer x setting: steps ratio / time ratio, then the two scores, as booktabs."""
    settings = list(dict.fromkeys(p.table["setting"]))
    scores = p.scores.set_index("optim")
    rows = []
    for optim, g in p.table.groupby("optim", sort=False):
        cells = {
            w["setting"]: "not run" if not w["n_seeds"] else
            f"{tex_ratio(w['steps_ratio'])} / {tex_ratio(w['time_ratio'])} "
            f"({int(w['reached'])}/{int(w['n_seeds'])})"
            for _, w in g.iterrows()
        }  # fmt: skip
        b = scores.loc[optim]
        rows.append([escape(optim), *(cells.get(s, "--") for s in settings),
                     *(tex_score(b[f"score_{m}"]) for m in METRICS)])  # fmt: skip
    caption = (
        "performance profiles across settings: per setting, the median over seeds of the steps "
        "/ time to its tightest target over the fastest optimizer's ($\\infty$: never reached; "
        "--: left out, the report says why) and (the seeds that reached it / seeds); score: the "
        f"area under the profile from 1 to {TAU_MAX:g}, over {TAU_MAX - 1:g} (AlgoPerf)"
    )
    header = ["optimizer", *(escape(s) for s in settings), "score (steps)", "score (time)"]
    return tabular("l" + "r" * (len(settings) + 2), header, rows, caption)
