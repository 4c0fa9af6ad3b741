"""`lionbench run`: check every config first, then hand the arguments to a `@hydra.main` job.

Hydra owns composition, multirun, launchers and `--cfg`; lionbench owns the run directory
(hydra.run.dir is `.` and Hydra writes no per-run files). Bad input is caught here, before Hydra
starts, so that it is one line, exit code 2 and nothing written.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from lionbench import config, slurm
from lionbench.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, Interrupted, UserError
from lionbench.lock import check_free
from lionbench.recipe import load_recipe
from lionbench.record import Status, run_dir_path, status_of
from lionbench.track import RunDir

# Resolvers must exist wherever a job runs, including a launcher's worker processes.
config.register_resolvers()
# The pid of the process that launched the jobs: a job in another process runs in a worker.
LAUNCHER_PID_ENV = "LIONBENCH_LAUNCHER_PID"


def job(cfg: DictConfig) -> tuple[Status, int]:
    """One Hydra job: one training run. Never raises for a run's own failure, so one bad run
    cannot stop a sweep; an interrupted run raises `Interrupted` (ends the whole command)."""
    from lionbench import checkpoint, runner  # torch's code: only once a job runs

    if os.environ.get(LAUNCHER_PID_ENV, str(os.getpid())) != str(os.getpid()):
        checkpoint.hold_stop_signals()  # a launcher's worker process
        if checkpoint.PENDING:  # stopped between jobs: start no further run
            raise Interrupted(checkpoint.PENDING[0], 0, Path(str(cfg.results_dir)))
    try:
        result = runner.run(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return Status.BAD_INPUT, EXIT_BAD_INPUT
    return result.status, result.exit_code


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
        config.validate(cfg, extra_dirs)
        recipe = load_recipe(cfg)
        recipe.check()
        recipe.check_target()
        check_dist(cfg)
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


def check_run_dirs(cfgs: list[DictConfig]) -> None:
    """No other process trains these runs now, and what earlier attempts left is usable: a
    readable summary.json of this very run and a loadable checkpoint.pt, or the user is told
    which file to delete."""
    from lionbench import checkpoint  # torch: kept off module top so `run --help` is instant

    for _, path in run_dirs(cfgs):
        RunDir(path).check_files()  # before the lock, which is a file in it
        if path.is_dir():
            check_free(path)
            RunDir(path).check()
            checkpoint.check(path / checkpoint.FILENAME)


def run_dirs(cfgs: list[DictConfig]) -> list[tuple[dict[str, Any], Path]]:
    """(resolved config, run directory) of each checked config, as the runner will name it."""
    from lionbench.device import resolve_device  # torch: kept off module top (`run --help`)

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


def launch(args: list[str]) -> list[tuple[Status, int]]:
    """Run the jobs through Hydra's main; returns the outcomes of the jobs run in this process
    (none when a launcher ran them in other processes, or for print-only flags)."""
    outcomes: list[tuple[Status, int]] = []

    @hydra.main(config_path=str(config.CONF_DIR), config_name="config", version_base="1.3")
    def hydra_job(cfg: DictConfig) -> int:
        outcomes.append(job(cfg))
        return outcomes[-1][1]

    with hydra_argv(args):
        hydra_job()
    return outcomes


class StopWaiting(BaseException):
    """A second signal while a launcher's workers checkpoint: stop waiting for them."""


def child_pids(parent: int | None = None) -> list[int]:
    """The direct children of `parent` (this process), from /proc (Linux); none without it."""
    me, children = parent or os.getpid(), []
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:  # "pid (command) state ppid ...": the command may hold spaces and parentheses
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            if int(fields[1]) == me:
                children.append(int(entry.name))
    return children


class ForwardSignals:
    """SIGTERM/SIGINT to a command whose launcher runs the jobs in worker processes (joblib's
    loky workers): without this the main process dies at once and its workers, orphaned, go on
    with every job left. The first signal is passed to the workers as SIGTERM, so that each run
    in progress checkpoints and ends as interrupted; that ends the launch, which stops the
    workers and starts no further job. A second signal stops waiting (runs still in progress
    resume from their last periodic checkpoint). Resource trackers ignore SIGTERM."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise StopWaiting
        self.signum = signum
        for pid in child_pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)

    def __enter__(self) -> ForwardSignals:
        if self.enabled:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(ValueError):  # not the main thread
                    self._previous[sig] = signal.signal(sig, self._handle)
            # Workers started from here on know they are workers; and a worker that dies
            # anyway (a signal before it runs a job) reaches main() as an exception, not as
            # Hydra's printed traceback.
            self._env = {k: os.environ.get(k) for k in (LAUNCHER_PID_ENV, "HYDRA_FULL_ERROR")}
            os.environ.update({LAUNCHER_PID_ENV: str(os.getpid()), "HYDRA_FULL_ERROR": "1"})
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        for key, value in getattr(self, "_env", {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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
    """Run `lionbench run ARGS`; `checked` is precheck(args) when the caller already ran it."""
    if checked is None:
        try:
            checked = precheck(args)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            return EXIT_BAD_INPUT
    forward = ForwardSignals(uses_workers(args))
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
        return outcomes[0][1] if outcomes else EXIT_OK
    if outcomes:
        statuses = [status for status, _ in outcomes]
    else:  # the launcher ran the jobs in other processes: read their run directories
        statuses = [status_of(d) for _, d in run_dirs(checked)]
    return EXIT_FAILED if any(s.problem for s in statuses) else EXIT_OK
