"""One run directory -> one row of the runs table: what ran (its config.yaml, so that an
unfinished run still has its arm and setting) and what came of it (its summary.json of any
readable schema, how its timing went), and its val points for the curves table. Read through
`run.rundir.RunDir`; report/load.py assembles the rows.
"""

from __future__ import annotations

import contextlib
import json
import math
from datetime import datetime
from typing import Any

import yaml

from lionbench.optim.registry import OPTIMIZERS, hyperparams_of, impl_of
from lionbench.record import RunSummary, Status
from lionbench.report.arms import at_recipe_baseline, lr_wd
from lionbench.run.rundir import RunDir

# Summary fields copied into the runs table.
RESULT_KEYS = (
    "error", "steps", "diverged_at_step", "final_train_loss", "final_val_loss", "best_val_loss",
    "loss_floor", "steps_per_s", "examples_per_s", "tokens_per_s", "opt_step_ms",
    "peak_mem_bytes", "optimizer_state_bytes", "n_params", "train_time_s", "device",
    "device_name", "mfu", "schema_version",
)  # fmt: skip
# Derived from the summary: how the run's timing went (contended, when it ran) and its identity.
TIMING_KEYS = ("contended", "contention", "started", "ended", "identity")
CURVE_COLUMNS = ["run_dir", "step", "loss", "time_s"]
NUMERIC = (
    "final_val_loss", "best_val_loss", "loss_floor", "steps_per_s", "examples_per_s",
    "opt_step_ms", "peak_mem_bytes", "optimizer_state_bytes", "lr", "weight_decay", "ratio",
    "train_time_s", "ratio_base_lr", "ratio_base_wd", "expected_state_bytes", "started", "ended",
)  # fmt: skip


def read_run(rundir: RunDir) -> tuple[dict[str, Any] | None, str | None, dict[str, Any]]:
    """(config or None, why it is unreadable, the summary's columns) of one run directory. The
    config comes from the summary where it carries one (runs written since it does: one
    JSON read, where parsing 1,000 YAML files was the report's largest cost), else from
    config.yaml."""
    row, data = summary_columns(rundir)
    cfg = data.get("config") if data is not None else None
    if is_config(cfg):
        return cfg, None, row
    try:
        cfg = rundir.read_config()
        if not is_config(cfg):
            raise ValueError("not a lionbench config")
    except (OSError, ValueError, yaml.YAMLError) as e:
        return None, f"{rundir.config.name}: {e}", row
    return cfg, None, row


def is_config(cfg: Any) -> bool:
    return isinstance(cfg, dict) and all(isinstance(cfg.get(k), dict) for k in ("optim", "recipe"))


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
        "size": recipe.get("size"),  # of the recipe's ladder (None: the scale's model)
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


def summary_columns(rundir: RunDir) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(what came of a run, from its summary.json of any readable schema; the summary as read).
    No summary: the run is unfinished (`partial`); a still-`running` one is too, since nothing
    is final yet."""
    name = rundir.summary.name
    try:
        data = json.loads(rundir.summary.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        summary = RunSummary.from_dict(data)
    except FileNotFoundError:
        return {"status": Status.PARTIAL.value, "error": f"no {name} (unfinished run)"}, None
    except (OSError, ValueError, TypeError) as e:
        return {"status": Status.CORRUPT.value, "error": f"{name}: {e}"}, None
    row = {key: getattr(summary, key) for key in RESULT_KEYS}
    # the bytes the run's implementation should hold (newer summaries): the state claim's check
    row["expected_state_bytes"] = getattr(summary, "expected_state_bytes", None) or (
        summary.extra or {}
    ).get("expected_state_bytes")
    status = Status.PARTIAL if summary.status == Status.RUNNING else summary.status
    if status == Status.CORRUPT and not row["error"]:
        row["error"] = f"{name}: unknown status {data.get('status')!r}"
    loss = summary.final_val_loss
    if status == Status.COMPLETED and not (isinstance(loss, int | float) and math.isfinite(loss)):
        # no finite result: a diverged run as far as any comparison goes, and a problem row
        status = Status.DIVERGED
        row["error"] = f"completed with final val loss {loss!r}: counted as diverged"
    row["status"] = status.value
    row.update(
        contended=summary.timing_contended,
        contention=summary.timing_note,
        started=epoch(summary.started_at),
        ended=epoch(summary.ended_at),
    )
    return row, data


def epoch(stamp: Any) -> float | None:
    """An ISO 8601 time of a summary as seconds since the epoch (None: unknown)."""
    try:
        return datetime.fromisoformat(str(stamp)).timestamp() if stamp else None
    except ValueError:
        return None


_METRICS: dict[tuple[str, int, int], tuple[list[dict[str, Any]], str | None]] = {}


def parse_metrics(text: str, name: str) -> tuple[list[dict[str, Any]], str | None]:
    """(records, the first unparsable line that is not the last, or None), as
    `RunDir.read_metrics` reads them: a torn last line (a killed writer) is skipped silently, a
    bad line before it is data lost mid-file and is said, with its line number."""
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    with contextlib.suppress(ValueError):
        records = json.loads(f"[{','.join(line for _, line in numbered)}]")
        if len(records) == len(numbered):  # no line held two values, none spanned two
            return records, None
    records, problem = [], None
    for i, (n, line) in enumerate(numbered):
        try:
            records.append(json.loads(line))
        except ValueError as e:
            if i < len(numbered) - 1 and problem is None:
                col = f", column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
                problem = f"{name} line {n}{col}: not a JSON record (data lost mid-file)"
    return records, problem


def read_metrics(rundir: RunDir) -> tuple[list[dict[str, Any]], str | None]:
    """(metrics.jsonl's records, why they cannot all be trusted), read once per report (the
    tables' val points, the plots' and the curves table's come from the same read); a file
    that changed since is read again."""
    name = rundir.metrics.name
    try:
        st = rundir.metrics.stat()
    except OSError:
        return [], f"no {name}"
    key = (str(rundir.metrics), st.st_mtime_ns, st.st_size)
    if key not in _METRICS:
        try:
            text = rundir.metrics.read_text()
        except (OSError, UnicodeDecodeError) as e:
            _METRICS[key] = [], f"{name}: {e}"
        else:
            records, problem = parse_metrics(text, name)
            _METRICS[key] = records, problem if text.strip() else f"{name} is empty"
    return _METRICS[key]


def metrics_of(rundir: RunDir) -> list[dict[str, Any]]:
    """metrics.jsonl's records (none when it is missing or unreadable)."""
    return read_metrics(rundir)[0]


def val_points(rundir: RunDir, completed: bool = False) -> tuple[list[dict[str, Any]], str | None]:
    """A run's val points, or why its metrics.jsonl cannot be read (a record whose step or time
    is not a number: the run is then reported corrupt, not plotted). A torn last line (a killed
    writer) is skipped. A `completed` run must have its evals: a missing or empty file, a bad
    line mid-file or no val record makes it corrupt (its results would rest on lost data)."""
    d, points = rundir.path, []
    records, problem = read_metrics(rundir)
    if completed and problem:
        return [], problem
    for n, r in enumerate(records, 1):
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
    if completed and not points:
        return [], f"{rundir.metrics.name} has no val record with a loss"
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
