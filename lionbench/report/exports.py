"""The report's machine-readable files: every table as `<name>.csv` and `<name>.parquet`, named
as the plots are, by the setting's slug (`optimizers_gpt2-smoke-sched-cosine.csv`) or the
sweep's (`study_claims_<sweep>.csv`), never by a hash; and the links report.md and report.html
give to them. One function names the files (`setting_tables`, `study_tables`): the writer and
the links cannot disagree.
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from lionbench.report.plots import plot_names, unique_slugs

if TYPE_CHECKING:
    from lionbench.report.analyse import Setting
    from lionbench.report.studies import Study


def setting_tables(s: Setting, name: str) -> dict[str, pd.DataFrame]:
    """A setting's machine-readable tables by file name (without extension), named by the
    setting's slug like its plots (`optimizers_gpt2-smoke-sched-cosine`), never by a hash."""
    tables = {
        "optimizers": s.optimizers,
        "targets": s.targets,
        "ratio_sweep": s.sweep,
        "claims": s.claims,
        "comparisons": s.comparisons,
    }
    return {f"{kind}_{name}": df for kind, df in tables.items() if not df.empty}


def study_tables(found: Sequence[Study]) -> list[dict[str, pd.DataFrame]]:
    """Each sweep's claims and comparisons by file name, named by the sweep's slug."""
    return [
        {f"study_claims_{name}": st.claims, f"study_comparisons_{name}": st.comparisons}
        for st, name in zip(found, unique_slugs(st.name for st in found), strict=True)
    ]


def data_links(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(markdown lines, HTML fragments) linking the CSV of each table (Parquet lies beside)."""
    if not names:
        return [], []
    md = "Tables as CSV (and Parquet): " + ", ".join(f"[{n}.csv]({n}.csv)" for n in names)
    links = ", ".join(f"<a href='{html.escape(n)}.csv'>{html.escape(n)}.csv</a>" for n in names)
    return [md, ""], [f"<p class=meta>Tables as CSV (and Parquet): {links}</p>"]


def write_tables(
    settings: list[Setting],
    problems: pd.DataFrame,
    runs: pd.DataFrame,
    out: Path,
    found: Sequence[Study] = (),
) -> None:
    """<name>.csv and <name>.parquet (when pyarrow is there) of runs, problems and each table,
    named as the report links them (`setting_tables`, `study_tables`)."""
    tables = {"runs": runs, "problems": problems}
    for files in study_tables(found):
        tables.update(files)
    for s, name in zip(settings, plot_names(settings), strict=True):
        tables.update(setting_tables(s, name))
    for name, df in tables.items():
        df.to_csv(out / f"{name}.csv", index=False)
        with contextlib.suppress(ImportError):  # Parquet needs pyarrow
            df.astype({c: str for c in df.columns if df[c].dtype == object}).to_parquet(
                out / f"{name}.parquet", index=False
            )
