"""`lionbench bench train`: training throughput of recipes x optimizers x compile settings.

Each configuration trains in a fresh `python -m lionbench run` process (so compilation caches,
allocator state and imported kernels of one configuration never help or hurt another) into its
own temporary results directory, for a few steps after a warmup; the numbers are the run's own
`summary.json` (docs/design.md, metric definitions: steps/s over the timed window after
`timing.warmup_steps`, `opt_step_ms` the median optimizer step). Repeats run every configuration
once each, in an order rotated by one per repeat, so that a slow spell of a shared machine is
spread over all of them; the table gives the median over repeats and the min-max.
"""

from __future__ import annotations

import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lionbench import checks
from lionbench.console import short
from lionbench.errors import UserError

COMPILE_VALUES = {"off": False, "on": True}
# Per-repeat numbers read from each run's summary.json (docs/design.md, metric definitions).
METRICS = (
    "steps_per_s",
    "examples_per_s",
    "tokens_per_s",
    "mfu",
    "opt_step_ms",
    "opt_step_share",
    "peak_mem_bytes",
    "optimizer_state_bytes",
)


@dataclass(frozen=True)
class Setup:
    """One configuration of the grid."""

    recipe: str
    optim: str
    compile: bool

    @property
    def label(self) -> str:
        return f"{self.recipe}/{self.optim}/compile={'on' if self.compile else 'off'}"


@dataclass(frozen=True)
class Plan:
    """Everything `bench train` was asked for, checked."""

    setups: list[Setup]
    scale: str
    data: str
    steps: int
    warmup: int
    repeats: int
    overrides: list[str]


def split(value: str, option: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise UserError(f"{option} is empty (give a comma-separated list)")
    return items


def _check_names(given: list[str], accepted: list[str], option: str) -> None:
    for name in given:
        if name not in accepted:
            raise UserError(f"unknown {option} '{name}' (accepted: {', '.join(accepted)})")


def check_options(
    recipes: str,
    optims: str,
    scale: str,
    data: str,
    compile_: str,
    steps: int,
    warmup: int,
    repeats: int,
    out: Path | None,
    overrides: list[str],
) -> Plan:
    """Every option, checked before the first run starts (a typo costs no benchmark time); the
    runs' configs are composed and validated as `lionbench run` would (docs/design.md)."""
    from lionbench.commands.bench_optim import check_out
    from lionbench.config import choices
    from lionbench.optim.registry import OPTIMIZERS

    check_out(out)
    recipe_list, optim_list = split(recipes, "--recipes"), split(optims, "--optims")
    _check_names(recipe_list, choices("recipe"), "--recipes")
    _check_names(optim_list, list(OPTIMIZERS), "--optims")
    _check_names([scale], choices("scale"), "--scale")
    _check_names([data], choices("data"), "--data")
    compile_list = split(compile_, "--compile")
    _check_names(compile_list, list(COMPILE_VALUES), "--compile")
    checks.bench_counts(steps, warmup, repeats)
    if warmup >= steps:
        raise UserError(f"--warmup {warmup} must be below --steps {steps} (nothing would be timed)")
    setups = [
        Setup(r, o, COMPILE_VALUES[c])
        for r, o, c in itertools.product(recipe_list, optim_list, dict.fromkeys(compile_list))
    ]
    plan = Plan(setups, scale, data, steps, warmup, repeats, list(overrides))
    _precheck(plan)
    return plan


def _precheck(plan: Plan) -> None:
    """Compose and validate each configuration's run as `lionbench run` does before training."""
    from lionbench.run.launch import precheck

    with tempfile.TemporaryDirectory(prefix="lionbench-bench-") as tmp:
        for setup in plan.setups:
            precheck(run_args(setup, plan, Path(tmp)))


def run_args(setup: Setup, plan: Plan, results_dir: Path) -> list[str]:
    """The `lionbench run` arguments of one configuration: a short run whose only evaluations
    (untimed, excluded from steps/s) are at step 0 and at the end, on one batch."""
    return [
        f"recipe={setup.recipe}",
        f"optim={setup.optim}",
        f"scale={plan.scale}",
        f"data={plan.data}",
        f"compile={str(setup.compile).lower()}",
        f"results_dir={results_dir}",
        "logger.wandb.mode=disabled",
        f"train.steps={plan.steps}",
        f"train.eval_interval={plan.steps}",
        f"train.log_interval={plan.steps}",
        "train.eval_batches=1",
        f"timing.warmup_steps={plan.warmup}",
        "checkpoint.interval=0",
        *plan.overrides,
    ]


def run_one(setup: Setup, plan: Plan) -> dict[str, Any]:
    """Train one configuration in a fresh process; its numbers, or its error."""
    from lionbench.run.rundir import RunDir, find_run_dirs

    with tempfile.TemporaryDirectory(prefix="lionbench-bench-") as tmp:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"}
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "lionbench", "run", *run_args(setup, plan, Path(tmp))],
            capture_output=True,
            text=True,
            env=env,
        )
        wall = time.perf_counter() - t0
        found = find_run_dirs([Path(tmp)])
        summary = RunDir(found[0]).read_summary() if found else None
    if summary is None or str(summary.status) != "completed":
        return {"ok": False, "wall_s": wall, "error": _error(proc, summary)}
    values = {k: getattr(summary, k, None) for k in METRICS if k != "opt_step_share"}
    sps, opt_ms = summary.steps_per_s, summary.opt_step_ms
    values["opt_step_share"] = opt_ms / (1000.0 / sps) if sps and opt_ms else None
    return {"ok": True, "wall_s": wall, **values, "device": summary.device_name}


def _error(proc: subprocess.CompletedProcess, summary: Any) -> str:
    """One line: the run's recorded error, else the last `error:` line, else the last line."""
    if summary is not None and summary.error:
        return str(summary.error).strip().splitlines()[-1]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    chosen = [line for line in lines if line.startswith("error:")] or lines
    status = str(summary.status) if summary is not None else f"exit code {proc.returncode}"
    return chosen[-1].strip() if chosen else status


def bench_train(plan: Plan, log: Any = None) -> list[dict[str, Any]]:
    """Every configuration once per repeat, the order rotated by one each repeat."""
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    samples: dict[Setup, list[dict[str, Any]]] = {s: [] for s in plan.setups}
    n, total = len(plan.setups), len(plan.setups) * plan.repeats
    done = 0
    for r in range(plan.repeats):
        for setup in plan.setups[r % n :] + plan.setups[: r % n]:
            result = run_one(setup, plan)
            samples[setup].append(result)
            done += 1
            shown = (
                f"{result['steps_per_s']:.3g} steps/s"
                if result["ok"]
                else f"failed: {result['error']}"
            )
            wall = result["wall_s"]
            log(f"[{done}/{total}] repeat {r + 1}: {setup.label}: {shown} ({wall:.0f} s)")
    return [aggregate(setup, samples[setup], plan) for setup in plan.setups]


def aggregate(setup: Setup, results: list[dict[str, Any]], plan: Plan) -> dict[str, Any]:
    """Median, min and max of each metric over the repeats that completed."""
    ok = [r for r in results if r["ok"]]
    errors = [r["error"] for r in results if not r["ok"]]
    row: dict[str, Any] = {
        "recipe": setup.recipe,
        "optim": setup.optim,
        "compile": setup.compile,
        "scale": plan.scale,
        "data": plan.data,
        "steps": plan.steps,
        "warmup_steps": plan.warmup,
        "repeats": len(results),
        "completed": len(ok),
        "error": errors[-1] if errors else None,
        "device": ok[0]["device"] if ok else None,
    }
    for key in METRICS:
        values = [r[key] for r in ok if r.get(key) is not None]
        row[key] = statistics.median(values) if values else None
        row[f"{key}_min"] = min(values) if values else None
        row[f"{key}_max"] = max(values) if values else None
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    """One line per configuration, narrow enough for 100 columns; failures listed below."""
    from rich.table import Table

    from lionbench.console import make_console

    first = rows[0]
    device = next((r["device"] for r in rows if r["device"]), "?")
    table = Table(
        title=f"bench train: scale={first['scale']} data={first['data']}, {first['steps']} steps "
        f"({first['warmup_steps']} warmup), {first['repeats']} repeat(s), {device}",
        title_justify="left",
        caption="steps/s, ex/s, opt ms, opt %: medians over repeats (range: min-max of steps/s); "
        "opt %: optimizer step / whole step; MB: peak memory and optimizer state",
        caption_justify="left",
    )
    for col in ("recipe", "optim", "compile"):
        table.add_column(col, no_wrap=True)
    tokens = any(r["tokens_per_s"] for r in rows)
    mfu = any(r["mfu"] for r in rows)
    cols = ["steps/s", "range", "ex/s", *(["tok/s"] if tokens else []), *(["MFU"] if mfu else [])]
    for col in (*cols, "opt ms", "opt %", "peak MB", "state MB"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(*_cells(r, tokens, mfu))
    console = make_console()
    console.print(table)
    for r in rows:
        if r["error"]:
            console.print(
                f"failed {r['repeats'] - r['completed']}/{r['repeats']}: {r['recipe']}/"
                f"{r['optim']}/compile={'on' if r['compile'] else 'off'}: {r['error']}",
                highlight=False,
                markup=False,
            )


def _cells(r: dict[str, Any], tokens: bool, mfu: bool) -> list[str]:
    head = [r["recipe"], r["optim"], "on" if r["compile"] else "off"]
    if not r["completed"]:
        return [*head, "failed", *["-"] * (6 + tokens + mfu)]
    cells = [
        short(r["steps_per_s"]),
        f"{short(r['steps_per_s_min'])}-{short(r['steps_per_s_max'])}",
        short(r["examples_per_s"]),
    ]
    if tokens:
        cells.append(short(r["tokens_per_s"]))
    if mfu:
        cells.append(short(r["mfu"], pct=True))
    cells += [
        short(r["opt_step_ms"]),
        short(r["opt_step_share"], pct=True),
        short(r["peak_mem_bytes"], 1e-6),
        short(r["optimizer_state_bytes"], 1e-6),
    ]
    return [*head, *cells]
