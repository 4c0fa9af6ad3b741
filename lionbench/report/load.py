"""Run directories -> a runs DataFrame (one row per directory) and a curves DataFrame (one row
per val point of every run).

Every run directory is read through `run.rundir.RunDir`. The config says what ran (so an
unfinished run still has its arm and setting); the summary, read as a `RunSummary` of any
readable schema, says what came of it. Nothing is dropped silently: an unreadable config or
summary, or a summary of a schema this lionbench does not know, is a `corrupt` row that the
report lists and never counts.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from lionbench.errors import UserError
from lionbench.optim.registry import OPTIMIZERS, hyperparams_of, impl_of
from lionbench.record import RunSummary, Status, digest, setting_config
from lionbench.report.arms import arm_labels, at_recipe_baseline, lr_wd
from lionbench.run.rundir import NOT_STARTED_FIX, RunDir, find_run_dirs

# Summary fields copied into the runs table.
RESULT_KEYS = (
    "error", "steps", "diverged_at_step", "final_train_loss", "final_val_loss", "best_val_loss",
    "loss_floor", "steps_per_s", "examples_per_s", "tokens_per_s", "opt_step_ms",
    "peak_mem_bytes", "optimizer_state_bytes", "n_params", "train_time_s", "device",
    "device_name", "mfu", "schema_version",
)  # fmt: skip
NUMERIC = (
    "final_val_loss", "best_val_loss", "loss_floor", "steps_per_s", "examples_per_s",
    "opt_step_ms", "peak_mem_bytes", "optimizer_state_bytes", "lr", "weight_decay", "ratio",
    "train_time_s", "ratio_base_lr", "ratio_base_wd", "expected_state_bytes",
)  # fmt: skip
CURVE_COLUMNS = ["run_dir", "step", "loss", "time_s"]


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
        cfg, error = read_config(rundir)
        if cfg is None:
            rows.append({"run_dir": str(d), "status": Status.CORRUPT.value, "error": error})
            continue
        flat = flatten(cfg)
        keys.update(flat)
        row = {"run_dir": str(d), **config_columns(cfg), **summary_columns(rundir)}
        row.update({key: str(flat.get(key)) for key in by})
        if row["status"] == Status.PARTIAL.value and rundir.never_trained():
            # set up, never trained: a problem line, never a setting of its own (device unknown)
            row.update(status=Status.NOT_STARTED.value, error=NOT_STARTED_FIX)
            rows.append(row)
            continue
        configs.append((len(rows), cfg))
        points, error = val_points(rundir)
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
    for i, cfg in configs:
        shared = setting_config(cfg, names)
        rows[i]["setting"] = digest(shared, 8)
        # what the settings share, flat: labels name the keys that tell two settings apart
        rows[i]["setting_config"] = json.dumps(flatten(shared), sort_keys=True, default=str)
    runs = pd.DataFrame(rows)
    # every result column, even when no run has a summary yet (all unfinished or not started)
    runs = runs.reindex(columns=[*runs.columns, *(k for k in RESULT_KEYS if k not in runs)])
    for col in NUMERIC:
        if col in runs:
            runs[col] = pd.to_numeric(runs[col], errors="coerce")
    runs["setting"] = with_device(runs)
    runs["arm"], runs["family"] = arm_labels(runs, by)
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


def read_config(rundir: RunDir) -> tuple[dict[str, Any] | None, str | None]:
    """(config, None), or (None, why it is not a lionbench config)."""
    try:
        cfg = rundir.read_config()
        if not isinstance(cfg, dict) or not all(
            isinstance(cfg.get(k), dict) for k in ("optim", "recipe")
        ):
            raise ValueError("not a lionbench config")
    except (OSError, ValueError, yaml.YAMLError) as e:
        return None, f"{rundir.config.name}: {e}"
    return cfg, None


def optimizer_name(optim: dict[str, Any]) -> str | None:
    """`optim.name`, or for a user `_target_` optimizer without one, its class name in lower
    case (what the registry calls it), read from the path: the report imports no user code."""
    name = optim.get("name")
    target = optim.get("_target_")
    if not name and isinstance(target, str):
        name = target.rpartition(".")[2].lower()
    return str(name) if name else None


def config_columns(cfg: dict[str, Any]) -> dict[str, Any]:
    """What ran, from the config: every optimizer alike, registered or user `_target_`."""
    o, recipe = cfg["optim"], cfg["recipe"]
    name = optimizer_name(o)
    spec = OPTIMIZERS.get(name) if o.get("_target_") is None else None
    ratio_of = spec.ratio_of if spec is not None else None
    ratio_base = lr_wd(recipe.get(ratio_of)) if ratio_of else None
    hp = hyperparams_of(o)
    return {
        "recipe": recipe.get("name"),
        "scale": cfg.get("scale"),
        "data": (cfg.get("data") or {}).get("source"),
        "optim": name,
        "impl": impl_of(o),
        "optim_target": o.get("_target_"),
        "lr": o.get("lr"),
        "weight_decay": o.get("weight_decay"),
        "ratio": o.get("ratio") if ratio_of else None,
        "hyperparams": json.dumps(hp, sort_keys=True, default=str),
        "seed": cfg.get("seed"),
        "batch_size": (cfg.get("train") or {}).get("batch_size"),
        "planned_steps": (cfg.get("train") or {}).get("steps"),
        "sched": (cfg.get("sched") or {}).get("name"),
        "sweep_name": cfg.get("sweep_name"),
        "recipe_baseline": at_recipe_baseline(
            recipe, name or "", o.get("lr"), o.get("weight_decay"), hp
        ),
        "ratio_base_lr": ratio_base[0] if ratio_base else None,
        "ratio_base_wd": ratio_base[1] if ratio_base else None,
    }


def summary_columns(rundir: RunDir) -> dict[str, Any]:
    """What came of a run, from its summary.json of any readable schema. No summary: the run
    is unfinished (`partial`); a still-`running` one is too, since nothing is final yet."""
    name = rundir.summary.name
    try:
        data = json.loads(rundir.summary.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        summary = RunSummary.from_dict(data)
    except FileNotFoundError:
        return {"status": Status.PARTIAL.value, "error": f"no {name} (unfinished run)"}
    except (OSError, ValueError, TypeError) as e:
        return {"status": Status.CORRUPT.value, "error": f"{name}: {e}"}
    row = {key: getattr(summary, key) for key in RESULT_KEYS}
    # the bytes the run's implementation should hold (newer summaries): the state claim's check
    row["expected_state_bytes"] = getattr(summary, "expected_state_bytes", None) or (
        summary.extra or {}
    ).get("expected_state_bytes")
    status = Status.PARTIAL if summary.status == Status.RUNNING else summary.status
    if status == Status.CORRUPT and not row["error"]:
        row["error"] = f"{name}: unknown status {data.get('status')!r}"
    row["status"] = status.value
    return row


def optimizer_names(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """Names whose recipe blocks (`recipe.<name>`) are optimizer baselines, not part of what runs
    share: the registry's, and those of user optimizers among these runs."""
    seen = {r["optim"] for r in rows if r.get("optim_target") and r.get("optim")}
    return (*OPTIMIZERS, *sorted(seen - set(OPTIMIZERS)))


def val_points(rundir: RunDir) -> tuple[list[dict[str, Any]], str | None]:
    """A run's val points, or why its metrics.jsonl cannot be read (a record whose step or time
    is not a number: the run is then reported corrupt, not plotted). A torn last line (a killed
    writer) is skipped by `read_metrics`."""
    d, points = rundir.path, []
    for n, r in enumerate(rundir.read_metrics(), 1):
        if not isinstance(r, dict) or r.get("split") != "val":
            continue
        if not isinstance(r.get("loss"), int | float):
            continue
        step, time_s = r.get("step"), r.get("time_s")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            return [], f"{rundir.metrics.name} record {n}: step {step!r} is not an integer >= 0"
        if time_s is not None and (isinstance(time_s, bool) or not isinstance(time_s, int | float)):
            return [], f"{rundir.metrics.name} record {n}: time_s {time_s!r} is not a number"
        points.append({"run_dir": str(d), "step": step, "loss": r["loss"], "time_s": time_s})
    return points, None


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"train.batch_size": 8, ...}, the keys `--by` names."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


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
