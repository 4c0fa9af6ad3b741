"""The report's machine-readable files: every table as `<name>.csv` and `<name>.parquet` (the
paper tables also as `<name>.tex`, latex.py), named as the plots are, by the setting's slug
(`optimizers_gpt2-smoke-sched-cosine.csv`) or the sweep's (`study_claims_<sweep>.csv`), never
by a hash; and the links report.md and report.html give to them. One function names the files
(`setting_tables`, `study_tables`): the writer and the links cannot disagree.

The files are tidy for pandas (`tidy`): one setting label everywhere (the `setting` column of
runs, problems, curves and every per-setting table, the label the file names are slugs of),
lists as lists (Parquet list columns, JSON in CSV), counts as integers (`reached` of `n_seeds`,
not "3/3"), booleans as booleans, and an all-null column typed by what it would hold (float for
numbers, string for text), never "None" strings. `curves` is every run's metrics.jsonl in long
form: one row per run, split, step and metric.
"""

from __future__ import annotations

import contextlib
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lionbench.record import Status
from lionbench.report.latex import kind_of, write_latex
from lionbench.report.plots import plot_names, unique_slugs
from lionbench.report.rows import metrics_of
from lionbench.run.rundir import RunDir

if TYPE_CHECKING:
    from lionbench.report.analyse import Setting
    from lionbench.report.studies import Study

# Columns of words and of yes/no: all-null, they stay string and boolean columns (any other
# all-null column is float: a number nobody measured).
TEXT = frozenset({
    "setting", "setting_key", "setting_config", "run_dir", "status", "error", "recipe", "scale",
    "size", "data", "optim", "impl", "optim_target", "hyperparams", "sched", "sweep_name", "sweep",
    "device", "device_name", "contention", "identity", "arm", "family", "note", "claim",
    "verdict", "evidence", "rests_on", "metric", "name", "method", "kind", "unpaired", "split",
})  # fmt: skip
# pandas' own string dtype: "str" from pandas 3 on; pandas 2's astype(str) writes "nan" for null
TEXT_DTYPE = "str" if int(pd.__version__.split(".")[0]) >= 3 else "string"
FLAGS = frozenset({"contended", "recipe_baseline", "all_reached", "baseline", "best"})
PROBLEM_COLUMNS = ["setting", "status", "recipe", "arm", "seed", "diverged_at_step", "error",
                   "run_dir"]  # fmt: skip
# A record's x-axes (its own columns); every other number it holds is a `metric` row.
CURVE_AXES = ["step", "time_s", "examples"]
CURVE_COLUMNS = ["setting", "arm", "seed", "run_dir", "split", *CURVE_AXES, "metric", "value"]


def setting_tables(s: Setting, name: str) -> dict[str, pd.DataFrame]:
    """A setting's tables by file name (without extension), named by the setting's slug like
    its plots (`optimizers_gpt2-smoke-sched-cosine`), never by a hash; each with a `setting`
    column holding the setting's label, so that tables concatenate."""
    tables = {
        "optimizers": s.optimizers,
        "targets": s.targets,
        "ratio_sweep": s.sweep,
        "claims": s.claims,
        "comparisons": s.comparisons,
    }
    return {
        f"{kind}_{name}": df.assign(setting=s.label)[["setting", *df.columns]]
        for kind, df in tables.items()
        if not df.empty
    }


def study_tables(found: Sequence[Study]) -> list[dict[str, pd.DataFrame]]:
    """Each sweep's claims and comparisons by file name, named by the sweep's slug (its name
    in a `sweep` column)."""
    return [
        {
            f"study_claims_{name}": st.claims.assign(sweep=st.name),
            f"study_comparisons_{name}": st.comparisons.assign(sweep=st.name),
        }
        for st, name in zip(found, unique_slugs(st.name for st in found), strict=True)
    ]


def data_links(names: Sequence[str], tex: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """(markdown lines, HTML fragments) linking the CSV of each table (Parquet lies beside) and
    the LaTeX of those that have one (`latex.kind_of`: the paper tables; and `tex`)."""
    if not names:
        return [], []
    tex = [n for n in names if kind_of(n) or n in tex]
    md = "Tables as CSV (and Parquet): " + ", ".join(f"[{n}.csv]({n}.csv)" for n in names)
    links = ", ".join(f"<a href='{html.escape(n)}.csv'>{html.escape(n)}.csv</a>" for n in names)
    if tex:
        md += "; as LaTeX (booktabs): " + ", ".join(f"[{n}.tex]({n}.tex)" for n in tex)
        links += "; as LaTeX (booktabs): " + ", ".join(
            f"<a href='{html.escape(n)}.tex'>{html.escape(n)}.tex</a>" for n in tex
        )
    return [md, ""], [f"<p class=meta>Tables as CSV (and Parquet): {links}</p>"]


def missing(v: Any) -> bool:
    """None, NaN or pd.NA (a list is a value, never missing)."""
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def tidy_column(name: str, col: pd.Series) -> pd.Series:
    """One column typed by what it holds: an object column of numbers numeric, of booleans
    boolean, of lists lists, else strings (nulls stay null, never the text "None")."""
    if col.isna().all() and (col.dtype == object or name in TEXT | FLAGS):
        return col.astype(TEXT_DTYPE if name in TEXT else "boolean" if name in FLAGS else "float64")
    if col.dtype != object:
        return col
    values = [v for v in col if not missing(v)]
    if all(isinstance(v, bool | np.bool_) for v in values):
        return col.astype("boolean" if len(values) < len(col) else "bool")
    if all(isinstance(v, int | float | np.number) for v in values):
        return pd.to_numeric(col.map(lambda v: math.nan if missing(v) else v))
    if all(isinstance(v, list | tuple | np.ndarray) for v in values):
        return col.map(lambda v: None if missing(v) else list(v))
    return col.map(lambda v: None if missing(v) else text(v)).astype(TEXT_DTYPE)


def text(v: Any) -> str:
    """A cell as a string: dicts (hyperparameters) as JSON."""
    return json.dumps(v, sort_keys=True, default=str) if isinstance(v, dict) else str(v)


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """A table as pandas users want it: the human strings replaced by what they stand for
    (`seeds` "0,1,2" -> [0, 1, 2], `reached` "3/3" -> 3 with `n_seeds` 3, a comparison's
    `diverged` "1/0" -> 1 with `baseline_diverged` 0), every column typed (`tidy_column`)."""
    df = df.copy()
    if "seed_list" in df:
        df["seeds"] = df.pop("seed_list")
    if "n_reached" in df:
        df["reached"] = df.pop("n_reached")
    if "diverged" in df and df["diverged"].map(lambda v: isinstance(v, str)).any():
        pairs = df["diverged"].map(lambda v: str(v).split("/") if "/" in str(v) else [None] * 2)
        df["diverged"] = pd.to_numeric(pairs.str[0], errors="coerce")
        baseline = pd.to_numeric(pairs.str[1], errors="coerce")
        df.insert(df.columns.get_loc("diverged") + 1, "baseline_diverged", baseline)
    for c in df.columns:
        df[c] = tidy_column(str(c), df[c])
    return df


def labelled_runs(runs: pd.DataFrame, settings: Sequence[Setting]) -> pd.DataFrame:
    """The runs with `setting` the setting's label (as in the tables and file names) and the
    hash it replaces as `setting_key`; a run outside every setting has none."""
    labels = {s.key: s.label for s in settings}
    key = runs["setting"] if "setting" in runs else pd.Series(None, index=runs.index)
    out = runs.drop(columns=["setting"], errors="ignore")
    out.insert(0, "setting_key", key)
    out.insert(0, "setting", key.map(labels))
    return out


def problem_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """Every run that did not complete, and why (the labelled runs), typed as the runs are."""
    bad = runs[runs["status"] != Status.COMPLETED.value]
    return bad.reindex(columns=PROBLEM_COLUMNS).reset_index(drop=True)


def curve_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every train and val record of every run (corrupt ones aside) in long form: one row per
    (run_dir, split, step, metric), with the record's `time_s` and `examples` beside it and the
    run's setting, arm and seed, for plotting in pandas without reading metrics.jsonl."""
    ok = runs[runs["status"] != Status.CORRUPT.value]
    records = [
        {"run_dir": d, **r}
        for d in ok["run_dir"]
        for r in metrics_of(RunDir(Path(d)))
        if isinstance(r, dict) and r.get("split") in ("train", "val")
    ]
    columns = ["run_dir", "split", *CURVE_AXES, *(k for r in records for k in r)]
    wide = pd.DataFrame(records).reindex(columns=list(dict.fromkeys(columns)))
    for axis in CURVE_AXES:
        wide[axis] = pd.to_numeric(wide[axis], errors="coerce")
    wide = wide[wide["step"].notna() & (wide["step"] % 1 == 0)].astype({"step": "int64"})
    ids = ["run_dir", "split", *CURVE_AXES]
    metrics = [
        c for c in wide.columns
        if c not in ids and pd.api.types.is_numeric_dtype(wide[c])
        and not pd.api.types.is_bool_dtype(wide[c])
    ]  # fmt: skip
    long = wide.melt(id_vars=ids, value_vars=metrics, var_name="metric", value_name="value")
    long = long[long["value"].notna()].astype({"value": "float64", "metric": TEXT_DTYPE})
    long = long.drop_duplicates(["run_dir", "split", "step", "metric"], keep="last")
    who = ok.drop_duplicates("run_dir").set_index("run_dir")
    for col in ("setting", "arm", "seed"):
        long[col] = long["run_dir"].map(who[col]) if col in who else None
    long = long.sort_values(["run_dir", "split", "metric", "step"], kind="stable")
    return long.reindex(columns=CURVE_COLUMNS).reset_index(drop=True)


def csv_ready(df: pd.DataFrame) -> pd.DataFrame:
    """List cells as JSON (`[0, 1, 2]`): CSV has no lists, and JSON reads back in any language."""
    objects = [c for c in df.columns if df[c].dtype == object]
    lists = [c for c in objects if df[c].map(lambda v: isinstance(v, list)).any()]
    encoded = {c: df[c].map(lambda v: json.dumps(v) if isinstance(v, list) else v) for c in lists}
    return df.assign(**encoded)


def write_tables(
    settings: list[Setting],
    runs: pd.DataFrame,
    out: Path,
    found: Sequence[Study] = (),
    extra: Mapping[str, pd.DataFrame] | None = None,
) -> None:
    """<name>.csv and <name>.parquet (when pyarrow is there) of runs, problems, curves and each
    table, named as the report links them (`setting_tables`, `study_tables`; `extra`: the
    performance profiles'), all tidy; and <name>.tex of each paper table (latex.py)."""
    labelled = labelled_runs(runs, settings)
    tables = {
        "runs": labelled,
        "problems": problem_rows(labelled),
        "curves": curve_table(labelled),
    }
    for files in study_tables(found):
        tables.update(files)
    for s, name in zip(settings, plot_names(settings), strict=True):
        tables.update(setting_tables(s, name))
    write_latex(tables, out, {s.label: s.baseline for s in settings})
    tables.update(extra or {})
    for name, df in tables.items():
        df = tidy(df)
        csv_ready(df).to_csv(out / f"{name}.csv", index=False)
        with contextlib.suppress(ImportError):  # Parquet needs pyarrow
            df.to_parquet(out / f"{name}.parquet", index=False)
