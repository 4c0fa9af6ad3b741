"""Launching runs: `lionbench run` checks every config first, then hands the arguments to a
`@hydra.main` job per run.

Hydra owns composition, multirun, launchers and `--cfg`; lionbench owns the run directory
(hydra.run.dir is `.` and Hydra writes no per-run files). Bad input is caught here, before Hydra
starts, so that it is one line, exit code 2 and nothing written. Each job hands its config to
run/runner.py, which trains or skips the run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf

from lionbench import config, signals
from lionbench.config.ladder import apply_size
from lionbench.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, Interrupted, UserError, say_error
from lionbench.recipe import Recipe, load_recipe
from lionbench.record import RunSummary, Status
from lionbench.run import slurm
from lionbench.run.budget import apply_budget
from lionbench.run.lock import check_free
from lionbench.run.rundir import RunDir, run_dir_path

if TYPE_CHECKING:
    import torch

# Resolvers must exist wherever a job runs, including a launcher's worker processes.
config.register_resolvers()


@dataclass(frozen=True)
class Outcome:
    """What one job ended with: its status, its exit code, and the objective a Hydra sweeper
    optimises (`objective`)."""

    status: Status
    exit_code: int
    objective: float
    run_dir: Path | None = None


def job(cfg: DictConfig) -> Outcome:
    """One Hydra job: one training run. Never raises for a run's own failure, so one bad run
    cannot stop a sweep; an interrupted run raises `Interrupted` (ends the whole command). A
    run refused here (its lock held, a checkpoint to delete) says so in the one error line and
    the multirun goes on."""
    from lionbench.run import runner  # torch's code: only once a job runs

    if signals.in_launcher_worker():
        signals.hold_stop_signals()
        if signals.PENDING:  # stopped between jobs: start no further run
            raise Interrupted(signals.PENDING[0], 0, Path(str(cfg.results_dir)))
    higher = False
    try:
        higher = str(cfg.train.target_metric) in load_recipe(cfg).higher_is_better
        result = runner.run(cfg)
    except UserError as e:
        say_error(e)
        return Outcome(Status.BAD_INPUT, EXIT_BAD_INPUT, objective(None, cfg, higher))
    value = objective(result.summary, cfg, higher)
    return Outcome(result.status, result.exit_code, value, result.run_dir)


def objective(summary: RunSummary | None, cfg: DictConfig, higher_is_better: bool) -> float:
    """What a Hydra sweeper that optimises a return value (Optuna...) gets from a run: the final
    eval value of `train.target_metric` (val loss by default: minimise; a higher-is-better
    metric such as top1: set hydra.sweeper.direction=maximize). A run that diverged, failed or
    was refused gets the worst value for the metric's direction (+inf, or -inf for a
    higher-is-better one), so the sweep goes on and never picks it; a finished run that is
    skipped gets its recorded value."""
    worst = -math.inf if higher_is_better else math.inf
    if summary is None or summary.status != Status.COMPLETED:
        return worst
    metric = str(cfg.train.target_metric)
    ema = metric.startswith("ema_")
    values = (summary.final_ema_val_metrics if ema else summary.final_val_metrics) or {}
    value = values.get(metric[4:] if ema else metric)
    if not isinstance(value, int | float) or math.isnan(value):
        return worst
    return float(value)


def precheck(args: list[str]) -> list[DictConfig] | None:
    """Compose and validate every job the arguments describe; raise UserError on the first bad.
    Returns the composed configs, or None for Hydra's print-only flags (--cfg, --help, ...)."""
    flags, overrides = config.split_args(args)
    if config.is_passthrough(flags):
        return None
    slurm.check_launcher(overrides)
    extra_dirs = config.config_dirs(flags)
    cfgs = []
    for overrides_of_job in config.expand_overrides(overrides, config.is_multirun(flags)):
        cfg = config.compose(overrides_of_job, extra_dirs)
        config.check_structure(cfg, overrides_of_job, extra_dirs)
        apply_size(cfg, overrides_of_job)
        config.validate(cfg, extra_dirs)
        recipe = load_recipe(cfg)
        recipe.check()
        apply_budget(cfg, recipe, overrides_of_job)
        recipe.check_target()
        check_dist(cfg)
        check_memory(cfg, recipe)
        cfgs.append(cfg)
    check_run_dirs(cfgs)
    return cfgs


def check_dist(cfg: DictConfig) -> None:
    """DDP splits every step's batch evenly over the ranks, then into micro-batches."""
    nproc = cfg.dist.nproc
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise UserError(f"dist.nproc must be an integer >= 1, got {nproc!r}")
    ranks = int(os.environ.get("WORLD_SIZE", nproc))  # torchrun's, when already inside it
    per_rank = ranks * int(cfg.train.grad_accum)
    if int(cfg.train.batch_size) % per_rank:
        raise UserError(
            f"train.batch_size {cfg.train.batch_size} must be divisible by {ranks} ranks x "
            f"train.grad_accum {cfg.train.grad_accum} = {per_rank}"
        )


_TRAINING_BYTES: dict[str, int] = {}  # model and optimizer config -> bytes, once per command


def check_memory(cfg: DictConfig, recipe: Recipe) -> None:
    """The model's weights, gradients and optimizer state (the implementation's own state model)
    must fit in the free memory of the run's device: a size typo (`recipe.model.n_embd=76800`)
    is one line here, not an hour of swapping or an out-of-memory crash after the run directory
    exists. Activations come on top, so this is a floor, not a promise. The model is built on
    torch's meta device (shapes only: no memory, no init)."""
    import torch

    from lionbench.loop.device import resolve_device
    from lionbench.optim.registry import impl_of, spec_of

    impl = impl_of(cfg.optim)
    key = json.dumps(OmegaConf.to_container(cfg.recipe, resolve=True), sort_keys=True) + impl
    if key not in _TRAINING_BYTES:
        with torch.device("meta"):
            shapes = [tuple(p.shape) for p in recipe.build_model().parameters()]
        state = spec_of(cfg.optim).impl(impl).state_bytes
        _TRAINING_BYTES[key] = sum(8 * math.prod(s) + state(s) for s in shapes)
    need, device = _TRAINING_BYTES[key], resolve_device(cfg.device)
    free = free_memory(device)
    if free is not None and need > free:
        raise UserError(
            f"recipe={cfg.recipe.name} at these sizes needs {need / 2**30:.1f} GiB for its "
            f"weights, gradients and optimizer state alone, more than the {free / 2**30:.1f} GiB "
            f"free on {device} (smaller recipe.model.* sizes, or scale=small/smoke)"
        )


def free_memory(device: torch.device) -> int | None:
    """Bytes free on the device: MemAvailable on a Linux host, the CUDA driver's free memory on
    a GPU; None where unknown (the check is then skipped)."""
    import torch

    if device.type == "cuda":
        with contextlib.suppress(RuntimeError):
            return int(torch.cuda.mem_get_info(device)[0])
        return None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def check_run_dirs(cfgs: list[DictConfig]) -> None:
    """No other process trains these runs now, and what earlier attempts left is usable: a
    readable summary.json of this very run and a loadable checkpoint.pt, or the user is told
    which file to delete."""
    from lionbench.run import checkpoint  # torch: kept off module top (`run --help` is instant)

    for _, path in run_dirs(cfgs):
        rundir = RunDir(path)
        rundir.check_files()  # before the lock, which is a file in it
        if path.is_dir():
            check_free(rundir)
            rundir.check()
            checkpoint.check(rundir)


def run_dirs(cfgs: list[DictConfig]) -> list[tuple[dict[str, Any], Path]]:
    """(resolved config, run directory) of each checked config, as the runner will name it."""
    from lionbench.loop.device import resolve_device  # torch: kept off module top

    out = []
    for cfg in cfgs:
        plain = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(plain, dict)
        out.append((plain, run_dir_path(plain, resolve_device(cfg.device).type)))
    return out


@contextlib.contextmanager
def hydra_argv(args: list[str]) -> Iterator[None]:
    """`@hydra.main` reads the command line from sys.argv (its documented interface): give it
    the arguments after `run`, and put the real ones back afterwards."""
    saved = sys.argv
    sys.argv = ["lionbench", *args]
    try:
        yield
    finally:
        sys.argv = saved


HYDRA_HELP = "lionbench"  # conf/hydra/hydra_help/lionbench.yaml: the flags lionbench takes


def launch(args: list[str]) -> list[Outcome]:
    """Run the jobs through Hydra's main; returns the outcomes of the jobs run in this process
    (none when a launcher ran them in other processes, or for print-only flags)."""
    outcomes: list[Outcome] = []

    @hydra.main(
        config_path=str(config.CONF_DIR), config_name=config.CONFIG_NAME, version_base="1.3"
    )
    def hydra_job(cfg: DictConfig) -> float:
        outcomes.append(job(cfg))
        return outcomes[-1].objective  # what a sweeper optimises; the exit code comes from main

    if "--hydra-help" in args:  # Hydra composes that help without the primary config
        args = [*args, f"hydra/hydra_help={HYDRA_HELP}"]
    with hydra_argv(args):
        hydra_job()
    return outcomes


def uses_workers(args: list[str]) -> bool:
    """A multirun whose launcher runs the jobs in other processes (joblib, submitit_local...)."""
    flags, overrides = config.split_args(args)
    return config.is_multirun(flags) and any(
        o.startswith("hydra/launcher=") and o != "hydra/launcher=basic" for o in overrides
    )


def interrupted_line(e: Interrupted | None, signum: int) -> str:
    if e is not None:
        return (
            f"interrupted by signal {e.signum} at step {e.step}: checkpoint saved in "
            f"{e.run_dir}; run the same command again to resume"
        )
    return (
        f"interrupted by signal {signum}: the runs in progress were checkpointed, the "
        f"launcher's workers stopped and no further run starts; run the same command again to "
        f"resume (finished runs are skipped)"
    )


def main(args: list[str], checked: list[DictConfig] | None = None) -> int:
    """Run `lionbench run ARGS`, a multirun seed by seed (`config.seeds_first`); `checked` is
    precheck(args) when the caller already ran it. Bad input raises UserError (one line and
    exit code 2 in `cli.main`)."""
    args = config.seeds_first(args)
    if checked is None:
        checked = precheck(args)
    forward = signals.ForwardSignals(uses_workers(args))
    try:
        with forward:
            outcomes = launch(args)
    except Interrupted as e:
        shown = e if forward.signum is None else None  # workers: more than one run stopped
        print(interrupted_line(shown, e.signum), file=sys.stderr, flush=True)
        return e.exit_code
    except BaseException:  # a worker that the signal ended, or a second signal
        if forward.signum is None:
            raise
        print(interrupted_line(None, forward.signum), file=sys.stderr, flush=True)
        return 128 + forward.signum
    if forward.signum is not None:  # the signal came as the last jobs ended: stop all the same
        print(interrupted_line(None, forward.signum), file=sys.stderr, flush=True)
        return 128 + forward.signum
    if checked is None:  # --cfg, --help, ...: Hydra printed, nothing ran
        return EXIT_OK
    if not config.is_multirun(config.split_args(args)[0]):
        return outcomes[0].exit_code if outcomes else EXIT_OK
    if outcomes:
        statuses = [o.status for o in outcomes]
        dirs = [o.run_dir for o in outcomes if o.run_dir is not None]
    else:  # the launcher ran the jobs in other processes: read their run directories
        dirs = [d for _, d in run_dirs(checked)]
        statuses = [RunDir(d).status() for d in dirs]
        if config.sweeper(config.split_args(args)[1]) != "basic":
            dirs = []  # a sampler's points are its own: the checked ones are not the runs
    if checked[0].get("sweep_name") is None:  # a sweep's multiruns: the sweep says its own
        closing_table(dirs, Path(str(checked[0].results_dir)).expanduser())
    return EXIT_FAILED if any(s.problem for s in statuses) else EXIT_OK


def closing_table(dirs: list[Path], results: Path) -> None:
    """One table of the multirun's runs (each once, in the order they ran) and its next step."""
    from lionbench.console import multirun_table

    if not dirs:  # a sampler's runs elsewhere: Hydra's own output said what ran
        return
    summaries = []
    for d in dict.fromkeys(dirs):
        s = RunDir(d).read_summary()
        summaries.append(
            s.to_dict() if s is not None else {"run_dir": str(d), "status": RunDir(d).status()}
        )
    multirun_table(summaries, results)
