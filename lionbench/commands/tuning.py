"""A sweep's rounds: the state of a sweep (`Sweep`, its `Run`s), the multiruns of each round
(`Job`, in an order that interleaves the optimizers), and select-then-confirm (`tune`): selection
on every grid, extensions while an optimum sits at a grid's edge, confirmation of each best
setting on fresh seeds. Shared by `lionbench sweep` (sweep.py) and `study claims` (study.py).

Every run goes through `lionbench run -m` (run/launch.py), so any Hydra launcher works and every
run is an ordinary run directory: finished runs are skipped, unfinished ones start over, and a
run that diverges or fails never stops the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lionbench.commands import grid
from lionbench.commands.grid import Choice
from lionbench.optim.registry import OPTIMIZERS
from lionbench.record import Status
from lionbench.run import launch as run_launch
from lionbench.run.rundir import RunDir
from lionbench.tracking.wandb_groups import join_sweep_group, wandb_ref


@dataclass
class Run:
    """One run the sweep asked for: its round, arm, directory and status before the round."""

    stage: str  # selection | extension | confirmation | claim <name>
    optim: str
    value: float  # the grid value along the optimizer's axis (lr multiplier, ratio)
    seed: int
    path: Path
    before: Status
    lr: float
    weight_decay: float
    label: str | None = None  # a study's condition (None: the grid value names the run)


@dataclass
class Sweep:
    """What a sweep was asked for, and the runs it asked for so far. `initial` maps each
    optimizer to its first grid, the baseline first; `base` to the (lr, wd) of the recipe
    block its axis scales (`OptimizerSpec.baseline_block`)."""

    name: str
    overrides: list[str]
    extra: list[str]  # hydra/launcher=... from --launcher
    recipe: str
    scale: str
    results_dir: Path
    base: dict[str, tuple[float, float]]
    seeds: list[int]
    confirm_seeds: list[int]
    max_extend: int
    initial: dict[str, list[float]]
    grids: dict[str, list[float]] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)

    @property
    def optims(self) -> list[str]:
        """The optimizers, baseline first: the order of the first seed's runs."""
        return list(self.initial)

    @property
    def baseline(self) -> str:
        return self.optims[0]

    def extended(self, optim: str) -> int:
        return len(self.grids[optim]) - len(self.initial[optim])


def job_args(
    sw: Sweep, optim: str, values: list[float], seeds: list[int], extra: tuple[str, ...] = ()
) -> list[str]:
    """`lionbench run` arguments of one multirun: one optimizer's grid points at the seeds,
    then `extra` overrides (a study's condition). A baseline's lr is set as optim.lr (never
    through recipe.<name>.lr, from which a ratio-linked optimizer's derives)."""
    seed_list = ",".join(map(str, seeds))
    common = ["-m", *sw.overrides, f"seed={seed_list}", f"sweep_name={sw.name}", *sw.extra]
    point = grid.override(OPTIMIZERS[optim], values, sw.base[optim][0])
    return [*common, f"optim={optim}", point, *extra]


def value_of(sw: Sweep, optim: str, cfg: dict[str, Any], values: list[float]) -> float:
    """Which grid value a composed job is (Hydra may order a multirun's jobs its own way)."""
    spec, base_lr = OPTIMIZERS[optim], sw.base[optim][0]
    held = cfg["optim"][grid.config_key(spec)]
    for v in values:
        if grid.config_value(spec, v, base_lr) == held:
            return v
    return grid.grid_value(spec, cfg["optim"], base_lr)


def parallel_launcher(sw: Sweep) -> bool:
    """Jobs run in parallel (joblib, submitit, any `hydra/launcher=` override)."""
    return bool(sw.extra) or any(o.startswith("hydra/launcher=") for o in sw.overrides)


@dataclass
class Job:
    """One multirun of a round: an optimizer's settings at some seeds, as `lionbench run` args.
    `values` are the grid values its runs record; `label` names a study's condition on the
    final screen (None: the grid value)."""

    optim: str
    values: list[float]
    seeds: list[int]
    args: list[str]
    label: str | None = None


def order(sw: Sweep, seeds: list[int]) -> list[tuple[str, list[int]]]:
    """(optimizer, seeds) of each multirun. One after another (the basic launcher), runs go
    seed-major with the first optimizer alternating from seed to seed, so that a machine's
    drift does not line up with the optimizer; a parallel launcher gets each optimizer's whole
    round as one multirun, so that its jobs run at once."""
    optims = sw.optims
    if parallel_launcher(sw):
        return [(o, seeds) for o in optims]
    return [
        (optim, [seed])
        for i, seed in enumerate(seeds)
        for optim in (optims if i % 2 == 0 else optims[::-1])
    ]


def jobs(
    sw: Sweep,
    points: dict[str, list[float]],
    seeds: list[int],
    extra: tuple[str, ...] = (),
    label: str | None = None,
) -> list[Job]:
    """The multiruns that run each optimizer's points on the seeds, in `order`."""
    return [
        Job(optim, points[optim], group, job_args(sw, optim, points[optim], group, extra), label)
        for optim, group in order(sw, seeds)
        if points.get(optim)
    ]


def launch(sw: Sweep, stage: str, round_jobs: list[Job]) -> int:
    """Run the jobs in order; every job is checked before the first starts, and every run is
    recorded in `sw.runs` with its status before the round. A job whose runs all finished is
    not launched (on a cluster: no job to queue). Returns a signal's exit code, or 0."""
    checked = [run_launch.precheck(job.args) or [] for job in round_jobs]
    pending = []  # per job: does any of its runs still need training?
    reused = []  # (config, directory) of the runs finished before: not trained, not logged
    for job, cfgs in zip(round_jobs, checked, strict=True):
        first = len(sw.runs)
        for cfg, path in run_launch.run_dirs(cfgs):
            o = cfg["optim"]
            value = value_of(sw, job.optim, cfg, job.values)
            sw.runs.append(
                Run(stage, job.optim, value, cfg["seed"], path, RunDir(path).status(), o["lr"],
                    o["weight_decay"], job.label)
            )  # fmt: skip
            if sw.runs[-1].before.finished:
                reused.append((cfg, path))
        pending.append(not all(r.before.finished for r in sw.runs[first:]))
    n = sum(len(cfgs) for cfgs in checked)
    print(f"sweep {sw.name}: {stage}: {n} runs, {len(reused)} already finished", flush=True)
    join_group(sw.name, reused)
    for job, cfgs, todo in zip(round_jobs, checked, pending, strict=True):
        if not todo:  # every run finished: submit nothing (on a cluster, no job to queue)
            continue
        code = run_launch.main(job.args, cfgs)
        if code >= 128:  # interrupted by a signal: checkpointed; the same command resumes
            return code
    return 0


def join_group(name: str, reused: list[tuple[dict[str, Any], Path]]) -> None:
    """The W&B runs of the finished runs a round reuses join the sweep's group."""
    if not reused:
        return
    refs = []
    for _, path in reused:
        rundir = RunDir(path)
        refs.append(wandb_ref(rundir.read_summary(), rundir.wandb, rundir.read_config))
    join_sweep_group(name, str(reused[0][0]["logger"]["wandb"]["mode"]), refs)


def run_loss(path: Path) -> float:
    """A run's final val loss; +inf for a run that diverged, failed or has no result."""
    s = RunDir(path).read_summary()
    if s is None or s.status != Status.COMPLETED or s.final_val_loss is None:
        return math.inf
    loss = float(s.final_val_loss)
    return loss if math.isfinite(loss) else math.inf


def selection_runs(sw: Sweep, optim: str, value: float) -> list[Run]:
    """The runs that score a grid value: its selection and extension runs, never confirmation
    runs or a study's claim runs at the same value."""
    return [
        r
        for r in sw.runs
        if r.optim == optim and r.value == value and r.stage in ("selection", "extension")
    ]


def score(sw: Sweep, optim: str, value: float) -> float:
    """Mean final val loss over the selection seeds (+inf as soon as one has no result)."""
    losses = [run_loss(r.path) for r in selection_runs(sw, optim, value)]
    return sum(losses) / len(losses) if losses else math.inf


def choices(sw: Sweep) -> dict[str, Choice]:
    return {
        o: grid.choose(sw.grids[o], {v: score(sw, o, v) for v in sw.grids[o]}) for o in sw.optims
    }


def select(sw: Sweep) -> dict[str, Choice] | int:
    """Selection, then extension rounds until every optimum is interior or out of budget.
    Returns the choices, or a signal's exit code."""
    sw.grids = {o: list(v) for o, v in sw.initial.items()}
    if code := launch(sw, "selection", jobs(sw, sw.grids, sw.seeds)):
        return code
    while True:
        chosen = choices(sw)
        new = {
            o: pts
            for o, c in chosen.items()
            if (pts := grid.beyond(sw.grids[o], c.edge, sw.max_extend - sw.extended(o)))
        }
        if not new:
            return chosen
        for o, pts in new.items():
            sw.grids[o] += pts
        if code := launch(sw, "extension", jobs(sw, new, sw.seeds)):
            return code


def confirm(sw: Sweep, chosen: dict[str, Choice]) -> int:
    """Each optimizer's best setting on the fresh seeds (none for an optimizer without one)."""
    points = {o: [c.best] for o, c in chosen.items() if c.best is not None}
    if not sw.confirm_seeds or not points:
        return 0
    return launch(sw, "confirmation", jobs(sw, points, sw.confirm_seeds))


def tune(sw: Sweep) -> dict[str, Choice] | int:
    """Selection, extensions, then confirmation: the choices, or a signal's exit code."""
    chosen = select(sw)
    if isinstance(chosen, int):
        return chosen
    return code if (code := confirm(sw, chosen)) else chosen
