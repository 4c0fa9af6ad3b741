"""Run directories -> a runs DataFrame (one row per directory) and a curves DataFrame (one row
per val point of every run).

Every run directory is read through `run.rundir.RunDir` into a row (report/rows.py). Nothing is
dropped silently: an unreadable config or summary, a summary of a schema this lionbench does
not know, or a completed run's metrics.jsonl that is missing, empty, unparsable before its last
line or without a val record, is a `corrupt` row that the report lists and never counts; copies
of one run are counted once and said.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from lionbench.errors import UserError
from lionbench.optim.registry import OPTIMIZERS
from lionbench.record import Status, digest, identity, setting_config, text_digest
from lionbench.report.arms import arm_labels
from lionbench.report.rows import (
    CURVE_COLUMNS,
    NUMERIC,
    RESULT_KEYS,
    TIMING_KEYS,
    config_columns,
    flatten,
    read_run,
    val_points,
)
from lionbench.run.rundir import NOT_STARTED_FIX, RunDir, find_run_dirs


def load_runs(roots: list[Path], by: Iterable[str] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs: one row per run directory, curves: one row per val point of every run)."""
    by = list(by)
    rows: list[dict[str, Any]] = []
    configs: list[tuple[int, dict[str, Any]]] = []
    curves: list[dict[str, Any]] = []
    keys: set[str] = set()  # every dotted config key of the runs, for checking --by
    for root in roots:
        if not root.exists():
            raise UserError(f"results directory {root} does not exist")
    for d in find_run_dirs(roots):
        rundir = RunDir(d)
        cfg, error, result = read_run(rundir)
        if cfg is None:
            rows.append({"run_dir": str(d), "status": Status.CORRUPT.value, "error": error})
            continue
        row = {"run_dir": str(d), **config_columns(cfg), **result}
        if by:  # every dotted key, for checking --by and for the --by columns
            flat = flatten(cfg)
            keys.update(flat)
            row.update({key: str(flat.get(key)) for key in by})
        if isinstance(row.get("device"), str):  # the hash that names the run's directory
            row["identity"] = digest(identity(cfg, row["device"]))
        if row["status"] == Status.PARTIAL.value and rundir.never_trained():
            # set up, never trained: a problem line, never a setting of its own (device unknown)
            row.update(status=Status.NOT_STARTED.value, error=NOT_STARTED_FIX)
            rows.append(row)
            continue
        configs.append((len(rows), cfg))
        points, error = val_points(rundir, completed=row["status"] == Status.COMPLETED.value)
        if error:
            row.update(status=Status.CORRUPT.value, error=error)
        rows.append(row)
        curves.extend(points)
    if not rows:
        raise UserError(
            f"no run directories under {', '.join(map(str, roots))} "
            f"(expected <results_dir>/<recipe>/<run>/config.yaml)"
        )
    check_by(by, keys)
    names = optimizer_names(rows)
    seen: dict[str, tuple[str, str]] = {}  # the runs of a setting share one config: once each
    for i, cfg in configs:
        text = json.dumps(setting_config(cfg, names), sort_keys=True, default=str)
        if text not in seen:
            # what the settings share, flat: labels name the keys that tell two settings apart
            flat_text = json.dumps(flatten(json.loads(text)), sort_keys=True)
            seen[text] = (text_digest(text, 8), flat_text)
        rows[i]["setting"], rows[i]["setting_config"] = seen[text]
    runs = pd.DataFrame(rows)
    # every result column, even when no run has a summary yet (all unfinished or not started)
    wanted = (*RESULT_KEYS, *TIMING_KEYS)
    runs = runs.reindex(columns=[*runs.columns, *(k for k in wanted if k not in runs)])
    for col in NUMERIC:
        if col in runs:
            runs[col] = pd.to_numeric(runs[col], errors="coerce")
    runs, repeated = without_copies(runs)
    runs["setting"] = with_device(runs)
    runs["arm"], runs["family"] = arm_labels(runs, by)
    runs.attrs["warnings"] = repeated
    if "optim" in runs:  # a run outside every setting (never started) is named plainly
        unset = (runs["arm"] == "?") & runs["optim"].notna()
        runs.loc[unset, "arm"] = [plain_arm(r) for _, r in runs[unset].iterrows()]
    return runs, pd.DataFrame(curves, columns=CURVE_COLUMNS)


def plain_arm(r: pd.Series) -> str:
    """`lion lr=0.0003 wd=1`: the arm of a run outside every setting (one that never started),
    for its line among the problems."""
    parts = [str(r["optim"])]
    for name, col in (("lr", "lr"), ("wd", "weight_decay")):
        value = pd.to_numeric(pd.Series([r.get(col)]), errors="coerce").iloc[0]
        if pd.notna(value):
            parts.append(f"{name}={value:.3g}")
    return " ".join(parts)


def without_copies(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One row per run identity: directories that hold the same run (copies of a results tree,
    a run directory copied by hand) would count one run's seed many times, shrinking every
    interval to nothing. The first (by path) is kept; each group is said in one line."""
    if "identity" not in runs or runs["identity"].isna().all():
        return runs, []
    known = runs[runs["identity"].notna()]
    dupes = known[known.duplicated("identity", keep=False)]
    lines = []
    for _, g in dupes.groupby("identity", sort=True):
        kept, *others = sorted(g["run_dir"])
        lines.append(
            f"{len(others)} run director{'y' if len(others) == 1 else 'ies'} repeat {kept} "
            f"(the same run: config and device): counted once ({', '.join(others[:3])}"
            f"{', ...' if len(others) > 3 else ''})"
        )
    drop = known.index[known.duplicated("identity", keep=False)].difference(
        known.sort_values("run_dir").drop_duplicates("identity").index
    )
    return runs.drop(index=drop).reset_index(drop=True), lines


def optimizer_names(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """Names whose recipe blocks (`recipe.<name>`) are optimizer baselines, not part of what runs
    share: the registry's, and those of user optimizers among these runs."""
    seen = {r["optim"] for r in rows if r.get("optim_target") and r.get("optim")}
    return (*OPTIMIZERS, *sorted(seen - set(OPTIMIZERS)))


def check_by(by: list[str], keys: set[str]) -> None:
    """A `--by` key that no run's config has would split nothing: it is a typo."""
    for key in by:
        if key not in keys:
            close = difflib.get_close_matches(key, sorted(keys), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise UserError(
                f"unknown --by key '{key}'{hint} (accepted: a dotted config key of the runs, "
                f"e.g. optim.betas, train.batch_size)"
            )


def with_device(runs: pd.DataFrame) -> pd.Series:
    """A CPU result is not a GPU result: the device splits settings. An unfinished run (no
    summary, so no device) joins its config's setting when that setting ran on one device."""
    if "setting" not in runs:
        return pd.Series([None] * len(runs), index=runs.index)
    device = runs["device"] if "device" in runs else pd.Series(None, index=runs.index)
    devices = runs.assign(device=device).dropna(subset=["device"])
    known = devices.groupby("setting")["device"].unique()
    keys = []
    for setting, dev in zip(runs["setting"], device, strict=True):
        if not isinstance(setting, str):
            keys.append(None)
            continue
        if not isinstance(dev, str):
            seen = known.get(setting, [])
            dev = seen[0] if len(seen) == 1 else "unknown"
        keys.append(f"{setting}-{dev}")
    return pd.Series(keys, index=runs.index)
