"""Tables for people and for machines: console, report.md, self-contained report.html, and every
table as CSV and Parquet. Nothing here computes a number; analyse.py does.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from lionbench.files import atomic_write_text
from lionbench.report import page
from lionbench.report.analyse import Setting
from lionbench.report.exports import data_links, setting_tables, study_tables, write_tables
from lionbench.report.headline import comparison_display
from lionbench.report.plots import plot_names
from lionbench.report.profile_view import DEFINITION, TEX, display, profile_tables, profile_tex
from lionbench.report.profiles import Profile
from lionbench.report.scaling import ScalingStudy
from lionbench.report.scaling_plots import scaling_head, scaling_items, scaling_tables
from lionbench.report.studies import Study

LOSS_COLUMNS = {
    "arm": "optimizer",
    "n": "n",
    "seeds": "seeds",
    "final_val_loss": "final val loss",
    "best_val_loss": "best val loss",
    "gap_to_floor": "gap to floor",
    "diverged": "diverged",
    "failed": "failed",
}
SPEED_COLUMNS = {
    "arm": "optimizer",
    "steps_per_s": "steps/s",
    "steps_per_s_vs_baseline": "steps/s vs baseline",
    "examples_per_s": "examples/s",
    "opt_step_ms": "opt step ms",
    "opt_step_ms_vs_baseline": "opt step vs baseline",
    "peak_mem_mb": "peak mem MB",
    "optimizer_state_mb": "opt state MB",
    "optimizer_state_mb_vs_baseline": "opt state vs baseline",
}
TARGET_COLUMNS = {
    "target": "target",
    "arm": "optimizer",
    "reached": "reached",
    "steps_to_target": "steps to target",
    "time_to_target_s": "time to target (s)",
    "steps_vs_baseline": "steps vs baseline",
}
# Where each table and plot of a setting goes, by the start of its title: losses and curves, lr
# and ratio sweeps, targets, the paired tests behind the overview's verdicts, speed, claims.
ORDER = ("Optimizers: val", "curves", "lr sensitivity", "", "ratio sweep", "Steps", "Paired",
         "Optimizers: speed", "Claims")  # fmt: skip


def rank(title: str) -> int:
    """A section's place in `ORDER` (`""` catches the ratio-sweep tables)."""
    for i, start in enumerate(ORDER):
        if start and title.startswith(start):
            return i
    return ORDER.index("")


def pm(mean: float, std: float, digits: int = 4) -> str:
    """`mean ± std`, or the mean alone for one seed, or `-` for none."""
    if math.isnan(mean):
        return "-"
    return f"{mean:.{digits}g}" + (f" ± {std:.2g}" if not math.isnan(std) else "")


def _pm_column(t: pd.DataFrame, col: str) -> list[str]:
    return [pm(m, sd) for m, sd in zip(t[col], t[f"{col}_std"], strict=True)]


def display_tables(s: Setting) -> dict[str, pd.DataFrame]:
    """Human-readable versions of a setting's tables (strings, mean ± std), by title. Titles
    name the baseline arm: every `vs baseline` column is a ratio to it."""
    out: dict[str, pd.DataFrame] = {}
    against = f" (baseline: {s.baseline})" if s.baseline else " (no baseline)"
    if not s.optimizers.empty:
        t = s.optimizers.copy()
        for col in ("final_val_loss", "best_val_loss"):
            t[col] = [
                v + (f" (+{d} diverged)" if d else "")
                for v, d in zip(_pm_column(t, col), t["diverged"], strict=True)
            ]
        for title, columns in (
            ("Optimizers: val loss (mean ± std over completed seeds)", LOSS_COLUMNS),
            ("Optimizers: speed and memory" + against, SPEED_COLUMNS),
        ):
            out[title] = fmt(t[[c for c in columns if c in t]].rename(columns=columns))
    if not s.targets.empty:
        t = s.targets.copy()
        t["steps_to_target"] = [
            pm(m, sd, 5) if not math.isnan(m) else "not reached"
            for m, sd in zip(t["steps_to_target"], t["steps_to_target_std"], strict=True)
        ]
        cols = [c for c in TARGET_COLUMNS if c in t]
        out["Steps and time to target (val loss)" + against] = fmt(
            t[cols].rename(columns=TARGET_COLUMNS)
        )
    for family, t in s.sweep.groupby("family", sort=True) if not s.sweep.empty else ():
        t = t.copy()
        t["final_val_loss"] = _pm_column(t, "final_val_loss")
        t["best"] = ["best" if b else n for b, n in zip(t["best"], t["note"], strict=True)]
        cols = ["ratio", "lr", "weight_decay", "n", "diverged", "final_val_loss", "best"]
        names = {"weight_decay": "wd", "final_val_loss": "final val loss"}
        out[f"{family} ratio sweep"] = fmt(t[cols].rename(columns=names))
    if not s.comparisons.empty:
        title = f"Paired comparisons with the baseline {s.baseline} (by seed; Holm per metric)"
        out[title] = comparison_display(s.comparisons)
    if not s.claims.empty:
        out[f"Claims (Lion vs {s.claims_baseline or 'the recipe AdamW'})"] = s.claims
    return out


def fmt(df: pd.DataFrame) -> pd.DataFrame:
    """Every cell a string: floats to 4 significant digits, nan as `-`."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:.4g}"
        return str(v)

    return df.map(cell) if hasattr(df, "map") else df.applymap(cell)


def problem_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every run that did not complete, and why: listed, never counted."""
    bad = runs[runs["status"] != "completed"]
    cols = ["status", "recipe", "arm", "seed", "diverged_at_step", "error", "run_dir"]
    return fmt(bad[[c for c in cols if c in bad]].astype(object).fillna("-"))


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured table; `|` in labels (user values) is escaped so rows stay rows."""
    cols = [str(c) for c in df.columns]
    nums = page.numeric_columns(df)  # numbers right-aligned, as in the HTML
    lines = [
        "| " + " | ".join(cols) + " |",
        "|" + "".join("--:|" if c in nums else "---|" for c in cols),
    ]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in r) + " |")
    return "\n".join(lines)


def setting_sections(s: Setting, anchor: str, first: bool = False) -> tuple[list[str], list[str]]:
    """(markdown lines, HTML fragments) of one setting: warnings, the arms, then its tables and
    plots in `ORDER`, and links to its CSV files."""
    first_cls = " class=first" if first else ""
    md = [f"## {s.label}", ""]
    body = [f"<h2 id='{anchor}'{first_cls}>{html.escape(s.label)}</h2>"]
    for w in s.warnings:
        md += [f"> warning: {w}", ""]
        body.append(f"<p class=warn>warning: {html.escape(w)}</p>")
    compared = "Runs compared: " + ", ".join(
        f"{arm} (seeds {g})"
        for arm, g in zip(s.optimizers.get("arm", []), s.optimizers.get("seeds", []), strict=True)
    )
    base = f"Baseline: {s.baseline}" if s.baseline else f"Baseline: none ({s.baseline_optim})"
    for line in (compared, base):
        md += [line, ""]
        body.append(f"<p class=meta>{html.escape(line)}</p>")
    items: list[tuple[str, pd.DataFrame | Path]] = [*display_tables(s).items(), *s.plots.items()]
    for title, item in sorted(items, key=lambda it: rank(it[0])):  # stable: tables keep order
        lines, fragment = item_section(title, item)
        md += lines
        body.append(fragment)
    links_md, links_html = data_links(list(setting_tables(s, anchor)))
    return md + links_md, body + links_html


def item_section(title: str, item: pd.DataFrame | Path) -> tuple[list[str], str]:
    """(markdown lines, HTML fragment) of one titled table, or one plot with its SVG link."""
    if isinstance(item, pd.DataFrame):
        return [f"### {title}", "", markdown_table(item), ""], (
            f"<h3>{html.escape(title)}</h3>" + page.table(item)
        )
    svg = item.name[: -len(".png")] + ".svg"
    return [f"![{title}]({item.name})", "", f"[{title} (SVG)]({svg})", ""], page.figure(title, item)


def study_sections(found: Sequence[Study]) -> tuple[list[str], list[str]]:
    """(markdown lines, HTML fragments): each sweep's confirmed verdict and its claims table."""
    md: list[str] = []
    body: list[str] = []
    for i, (st, files) in enumerate(zip(found, study_tables(found), strict=True)):
        md += [f"## Sweep {st.name}: confirmed verdict and claims", "", st.headline, ""]
        cls = " class=first" if i == 0 else ""
        body.append(
            f"<h2 id='sweep-{html.escape(st.name)}'{cls}>Sweep {html.escape(st.name)}: "
            "confirmed verdict and claims</h2>"
        )
        body.append(f"<p>{page.colour(st.headline)}</p>")
        tables = {"Claims (paired tests on the runs named by the manifests)": st.claims}
        if not st.comparisons.empty:
            tables["Confirmation runs: paired comparisons"] = comparison_display(st.comparisons)
        for title, table in tables.items():
            if table.empty:
                continue
            lines, fragment = item_section(title, table)
            md += lines
            body.append(fragment)
        links_md, links_html = data_links([n for n, df in files.items() if not df.empty])
        md += links_md
        body += links_html
    return md, body


def scaling_sections(found: Sequence[ScalingStudy]) -> tuple[list[str], list[str]]:
    """(markdown lines, HTML fragments) of each scaling study: its verdicts (or why none),
    what they mean, the per-point and trend tables and the plots."""
    md: list[str] = []
    body: list[str] = []
    for st in found:
        head_md, head_html = scaling_head(st)
        md += head_md
        body += head_html
        for title, item in scaling_items(st):
            lines, fragment = item_section(title, item)
            md += lines
            body.append(fragment)
    return md, body


def profile_sections(p: Profile) -> tuple[list[str], list[str]]:
    """(markdown lines, HTML fragments) of the performance profiles across settings: what they
    are, what was left out, the summary and details, each plot with the points it draws."""
    title = "Performance profiles across recipes"
    md = [f"## {title}", "", DEFINITION, ""]
    body = [f"<h2 id=profiles>{title}</h2>", f"<p class=meta>{html.escape(DEFINITION)}</p>"]
    for w in p.notes:
        md += [f"> note: {w}", ""]
        body.append(f"<p class=warn>note: {html.escape(w)}</p>")
    for name, item in display(p).items():
        lines, fragment = item_section(name, item)
        md += lines
        body.append(fragment)
    links_md, links_html = data_links(list(profile_tables(p)), tex=[TEX])
    return md + links_md, body + links_html


def render(
    settings: list[Setting],
    problems: pd.DataFrame,
    runs: pd.DataFrame,
    out: Path,
    found: Sequence[Study] = (),
    profile: Profile | None = None,
    scaling: Sequence[ScalingStudy] = (),
) -> None:
    """report.md, self-contained report.html, CSV and Parquet of every table (and LaTeX of the
    paper tables, exports.write_tables), with the scaling studies after the sweeps and the
    performance profiles across settings after the settings' sections where there are any."""
    anchors = plot_names(settings)
    said = [(st.name, st.verdicts or [st.problem or ""]) for st in scaling]
    md, body = page.opening(settings, runs, found, anchors, profile is not None, said)
    for s_md, s_body in (study_sections(found), scaling_sections(scaling)):
        md += s_md
        body += s_body
    for i, s in enumerate(settings):
        s_md, s_body = setting_sections(s, anchors[i], first=i == 0 and not found)
        md += s_md
        body += s_body
    if profile is not None:
        p_md, p_body = profile_sections(profile)
        md += p_md
        body += p_body
    md += ["## Diverged, failed and unfinished runs", ""]
    body.append("<h2 id=problems>Diverged, failed and unfinished runs</h2>")
    if problems.empty:
        md += ["None.", ""]
        body.append("<p>None.</p>")
    else:
        md += [markdown_table(problems), ""]
        body.append(page.table(problems))
    links_md, links_html = data_links(["runs", "problems", "curves"])
    md += links_md
    body += links_html
    atomic_write_text(out / "report.md", "\n".join(md))
    atomic_write_text(out / "report.html", page.document(body))
    extra = {**(profile_tables(profile) if profile is not None else {}), **scaling_tables(scaling)}
    write_tables(settings, runs, out, found, extra)
    if profile is not None:
        atomic_write_text(out / f"{TEX}.tex", profile_tex(profile))
