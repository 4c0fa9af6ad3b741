"""`lionbench study scaling`: does a candidate's advantage over a tuned AdamW survive scale?

For each model size (`recipe.size`, the recipe's ladder) x data budget (`train.budget`, a
multiple of `recipe.data_per_param`) on the user's grid, every optimizer is tuned *at that
point* with the same small budget (tuning.tune: its grid on the selection seeds, extensions while
an optimum sits at an edge, its best on fresh confirmation seeds): the best lr moves with size
and data, so a fixed lr would bias the trend. Each point is a sweep of its own through the same
launchers, so finished runs are skipped and an interrupted study resumes where it stopped.

Before anything trains, the plan (runs, data, and the time a short probe run per size measured
on this device) is printed; `--dry-run` stops there. The manifest `_studies/<name>.json` (kind
"scaling", written after every point) names each point's runs for report/scaling.py: the paired
loss differences, the effective-data speedups and their trend with size.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lionbench import checks, config
from lionbench.commands import manifest, screen, sweep, tuning
from lionbench.commands.scaling_cost import PROBE_STEPS, Cost, duration, estimate, probe_sizes
from lionbench.commands.scaling_grid import Grid, Point, make_grid
from lionbench.errors import Interrupted, UserError
from lionbench.files import atomic_write_json
from lionbench.run.rundir import STUDIES, manifest_path

SCALING_SCHEMA = 1
SCALING_PAIRS = 4  # default confirmation seeds after the selection seeds (paired by seed)
RESERVED = ("recipe.size", "train.budget", "train.steps", "train.eval_interval")


def check_overrides(overrides: list[str]) -> None:
    """The study sets each point's size, budget, steps and evaluations itself."""
    for o in overrides:
        key = config.override_key(o)
        if key in RESERVED:
            raise UserError(
                f"'{o}': the study sets {key} for every point (use --sizes and --budgets; "
                f"recipe.data_per_param=... moves every budget)"
            )


@dataclass
class Request:
    """What `lionbench study scaling` was asked for, besides the sweep's own options."""

    sweep: sweep.Request
    sizes: list[str]
    budgets: list[float]
    dry_run: bool = False
    probe_steps: int = PROBE_STEPS  # 0: no probe, no time estimate


def run_scaling(req: Request) -> int:
    """Plan, cost, then every point tuned; the exit code is 1 only when a run failed."""
    check_overrides(req.sweep.overrides)
    checks.integer(req.probe_steps, "--probe-steps", low=0, high=10_000)
    req = replace(req, sweep=req.sweep.with_fresh_seeds(SCALING_PAIRS))
    sw = sweep.setup(req.sweep)
    if req.sweep.name is None:
        sw.name = f"{sw.recipe}-{sw.scale}-scaling"
    plan = make_grid(sw, req.sizes, req.budgets)
    print(sweep.plan_line(sw), flush=True)
    try:
        cost = estimate(sw, plan.points, probe_sizes(sw, plan.points, req.probe_steps))
    except Interrupted as e:  # a probe stopped: nothing of the study has trained
        print(f"interrupted by signal {e.signum} while probing: nothing of the study trained; "
              f"run the same command again", file=sys.stderr, flush=True)  # fmt: skip
        return e.exit_code
    for line in [*cost.lines(plan.unit), *plan.warnings()]:
        print(line, flush=True)
    if req.dry_run:
        print("--dry-run: nothing trained", flush=True)
        return 0
    return study(sw, plan, cost)


def study(sw: tuning.Sweep, plan: Grid, cost: Cost) -> int:
    """Tune every point in turn (small sizes first: early results come cheap)."""
    started, done, trained = time.monotonic(), [], []
    for i, p in enumerate(plan.points, 1):
        print(f"study {sw.name}: point {i}/{len(plan.points)}: {p.label} ({p.params:,} "
              f"parameters, {p.data:,} {plan.unit}, {p.steps:,} steps)", flush=True)  # fmt: skip
        sub = replace(sw, overrides=[*sw.overrides, *p.overrides], grids={}, runs=[])
        chosen = tuning.tune(sub)
        trained += [(p, r) for r in sub.runs if not r.before.finished]
        if isinstance(chosen, int):
            return chosen
        done.append((p, sub, chosen))
        path = write_study(sw, plan, done, complete=i == len(plan.points))
        for o, c in chosen.items():
            print(f"{p.label}: {screen.optimum_line(sub, o, c)}", flush=True)
    elapsed = time.monotonic() - started
    return final_screen(sw, done, path, elapsed, cost.of_runs(trained))


def final_screen(
    sw: tuning.Sweep, done: list[tuple[Point, tuning.Sweep, Any]], path: Path, took: float,
    estimated: float,
) -> int:  # fmt: skip
    """Counts, each point's optima, measured time against the estimate; 1 if a run failed."""
    from lionbench.run.rundir import RunDir

    runs = [r for _, sub, _ in done for r in sub.runs]
    statuses = [RunDir(r.path).status() for r in runs]
    skipped = sum(r.before.finished for r in runs)
    problems = [r for r, s in zip(runs, statuses, strict=True) if s.problem]
    print(f"study {sw.name}: {len(runs)} runs, {len(runs) - skipped} trained, {skipped} "
          f"already finished, {len(problems)} without a result", flush=True)  # fmt: skip
    for r in problems:
        if line := screen.problem_line(r.path):
            print(line, flush=True)
    guess = f"estimated {duration(estimated)}" if math.isfinite(estimated) else "no estimate"
    print(f"took {duration(took)}; {guess} for the runs it trained", flush=True)
    print(f"study manifest: {path}", flush=True)
    print(f"report with: lionbench report {sw.results_dir} --out report", flush=True)
    return 1 if problems else 0


def write_study(
    sw: tuning.Sweep, plan: Grid, done: list[tuple[Point, tuning.Sweep, Any]], complete: bool
) -> Path:
    """`<results_dir>/_studies/<name>.json`, atomically, after every point (a study stopped
    half-way still reports the points it finished)."""
    content = {
        "schema_version": SCALING_SCHEMA,
        "kind": "scaling",
        "name": sw.name,
        "recipe": sw.recipe,
        "scale": sw.scale,
        "overrides": sw.overrides,
        "baseline": sw.baseline,
        "candidates": sw.optims[1:],
        "unit": plan.unit,
        "per_param": plan.per_param,
        "sizes": list(dict.fromkeys(p.size for p in plan.points)),
        "budgets": sorted({p.budget for p in plan.points}),
        "selection_seeds": sw.seeds,
        "confirm_seeds": sw.confirm_seeds,
        "max_extend": sw.max_extend,
        "complete": complete,
        "points": [
            {
                "size": p.size,
                "params": p.params,
                "budget": p.budget,
                "data": p.data,
                "steps": p.steps,
                "optimizers": {o: manifest.grid_entry(sub, o, c) for o, c in chosen.items()},
            }
            for p, sub, chosen in done
        ],
    }
    path = manifest_path(sw.results_dir, STUDIES, sw.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, content)
    return path
