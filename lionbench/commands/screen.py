"""A sweep's (or study's) final screen: every run of every round (ran, skipped, diverged or
failed), each problem with where to read more, where each optimizer's optimum lies, and where
it all is. The exit code is 1 when a run failed (or left no result)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from lionbench.commands import grid
from lionbench.commands.grid import Choice
from lionbench.commands.tuning import Sweep, selection_runs
from lionbench.errors import EXIT_FAILED, EXIT_OK
from lionbench.optim.registry import OPTIMIZERS
from lionbench.record import Status
from lionbench.run.rundir import NOT_STARTED_FIX, RunDir

STYLE = {"failed": "red", "diverged": "yellow", "partial": "red", "not_started": "red",
         "missing": "red"}  # fmt: skip
COUNTS = ("completed", "skipped", "diverged", "failed", "partial", "not_started", "missing")


def optimum_line(sw: Sweep, optim: str, c: Choice) -> str:
    """Where the optimizer's optimum is, in words."""
    spec = OPTIMIZERS[optim]
    values = ", ".join(grid.exact(v) for v in sorted(sw.grids[optim]))
    if c.best is None:
        return f"{optim}: no optimum (every setting diverged or failed; grid {values})"
    run = selection_runs(sw, optim, c.best)[0]
    edge = "the only point tried" if c.edge == "both" else f"at the {c.edge} bound"
    where = (
        "interior"
        if c.position == "interior"
        else f"{edge} (extension limit {sw.max_extend} reached)"
    )
    return (
        f"{optim}: best {grid.label(spec, c.best)} (lr {run.lr:.3g}, wd "
        f"{run.weight_decay:.3g}), mean final val loss {c.score:.4f}; optimum {where}; "
        f"grid {values}"
    )


def problem_line(path: Path) -> str | None:
    """For a run that failed (or left no result): what went wrong and where to read more, the
    SLURM job's log included when a cluster ran it."""
    rundir = RunDir(path)
    status = rundir.status()
    if not status.problem:
        return None
    s = rundir.read_summary()
    where = [f"error: {s.error}"] if s is not None and s.error else []
    if status == Status.NOT_STARTED:
        where.append(NOT_STARTED_FIX)
    if rundir.error_log.exists():
        where.append(f"traceback: {rundir.error_log}")
    if s is not None and s.slurm_job_id:
        where.append(f"SLURM job {s.slurm_job_id} log: {s.slurm_log or 'unknown'}")
    return f"{status}: {path}" + (f" ({'; '.join(where)})" if where else "")


def account(
    sw: Sweep, chosen: dict[str, Choice], manifest: Path, also: tuple[str, ...] = ()
) -> int:
    """The final screen (then `also`, a study's lines); the sweep's exit code."""
    from rich.table import Table

    from lionbench.console import make_console

    table = Table(title=f"sweep {sw.name}", title_justify="left")
    for col in ("round", "optim", "setting", "seed", "status", "run directory"):
        table.add_column(col)
    counts: Counter[str] = Counter()
    statuses = [RunDir(r.path).status() for r in sw.runs]
    for r, status in zip(sw.runs, statuses, strict=True):
        skipped = r.before.finished and status == r.before
        counts["skipped" if skipped else str(status)] += 1
        shown = f"skipped ({status})" if skipped else str(status)
        table.add_row(
            r.stage,
            r.optim,
            r.label or grid.label(OPTIMIZERS[r.optim], r.value),
            str(r.seed),
            f"[{STYLE.get(status, 'green')}]{shown}[/]",
            str(r.path),
        )
    console = make_console()
    console.print(table)
    console.print(
        "  ".join(f"{k}: {counts[k]}" for k in COUNTS if counts[k] or k in COUNTS[:4]),
        soft_wrap=True,
    )
    for r in sw.runs:
        if line := problem_line(r.path):
            console.print(line, soft_wrap=True, markup=False)
    for o in sw.optims:
        console.print(optimum_line(sw, o, chosen[o]), soft_wrap=True)
    console.print(f"manifest: {manifest}", soft_wrap=True)
    for line in also:
        console.print(line, soft_wrap=True)
    console.print(
        f"results in {sw.results_dir / sw.recipe}; report with: lionbench report {sw.results_dir}",
        soft_wrap=True,
    )
    return EXIT_FAILED if any(s.problem for s in statuses) else EXIT_OK
