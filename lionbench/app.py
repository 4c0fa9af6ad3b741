"""`lionbench run`: check every config first, then hand the arguments to Hydra's own main.

Hydra owns composition, multirun, launchers and `--cfg`; lionbench owns the run directory
(hydra.run.dir is `.` and Hydra writes no per-run files). Bad input is caught here, before Hydra
starts, so that it is one line, exit code 2 and nothing written.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from lionbench import config
from lionbench.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, UserError

# Resolvers must exist wherever a job runs, including a launcher's worker processes.
config.register_resolvers()

# Statuses of the jobs this process ran (basic launcher); read by `main` for the exit code.
_results: list[tuple[str, int]] = []


@hydra.main(config_path=str(config.CONF_DIR), config_name="config", version_base="1.3")
def _job(cfg: DictConfig) -> int:
    """One Hydra job: one training run. Never raises, so one bad run cannot stop a sweep."""
    from lionbench import train

    try:
        result = train.run(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        _results.append(("bad_input", EXIT_BAD_INPUT))
        return EXIT_BAD_INPUT
    _results.append((result.status, result.exit_code))
    return result.exit_code


def precheck(args: list[str]) -> list[DictConfig] | None:
    """Compose and validate every job the arguments describe; raise UserError on the first bad.
    Returns the composed configs, or None for Hydra's print-only flags (--cfg, --help, ...)."""
    from lionbench.recipe import load_recipe

    flags, overrides = config.split_args(args)
    if config.is_passthrough(flags):
        return None
    cfgs = []
    for job in config.expand_overrides(overrides, config.is_multirun(flags)):
        cfg = config.compose(job)
        config.validate(cfg)
        load_recipe(cfg).check()
        check_dist(cfg)
        cfgs.append(cfg)
    check_run_dirs(cfgs)
    return cfgs


def check_dist(cfg: DictConfig) -> None:
    """DDP splits every step's batch evenly over the ranks, then into micro-batches."""
    nproc = cfg.dist.nproc
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise UserError(f"dist.nproc must be an integer >= 1, got {nproc!r}")
    ranks = distributed_world(nproc)
    per_rank = ranks * int(cfg.train.grad_accum)
    if int(cfg.train.batch_size) % per_rank:
        raise UserError(
            f"train.batch_size {cfg.train.batch_size} must be divisible by {ranks} ranks x "
            f"train.grad_accum {cfg.train.grad_accum} = {per_rank}"
        )


def distributed_world(nproc: int) -> int:
    """The ranks a run will have: torchrun's WORLD_SIZE when already inside it, else nproc."""
    import os

    return int(os.environ.get("WORLD_SIZE", nproc))


def check_run_dirs(cfgs: list[DictConfig]) -> None:
    """What earlier attempts left must be usable: a readable summary.json of this very run and
    a loadable checkpoint.pt, or the user is told which file to delete."""
    from lionbench import checkpoint
    from lionbench.track import RunDir

    for _, path in run_dirs(cfgs):
        if path.is_dir():
            RunDir(path).check()
            checkpoint.check(path / checkpoint.FILENAME)


def run_dirs(cfgs: list[DictConfig]) -> list[tuple[dict, Path]]:
    """(resolved config, run directory) of each checked config, as `train.run` will name it."""
    from omegaconf import OmegaConf

    from lionbench.track import run_dir_path
    from lionbench.train import resolve_device

    out = []
    for cfg in cfgs:
        plain = OmegaConf.to_container(cfg, resolve=True)
        out.append((plain, run_dir_path(plain, resolve_device(cfg.device).type)))
    return out


def main(args: list[str], checked: list[DictConfig] | None = None) -> int:
    """Run `lionbench run ARGS`; `checked` is precheck(args) when the caller already ran it."""
    if checked is None:
        try:
            checked = precheck(args)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            return EXIT_BAD_INPUT
    from lionbench.checkpoint import Interrupted

    _results.clear()
    sys.argv = ["lionbench", *args]
    try:
        _job()
    except Interrupted as e:
        print(
            f"interrupted by signal {e.signum} at step {e.step}: checkpoint saved in {e.run_dir}; "
            f"run the same command again to resume",
            file=sys.stderr,
            flush=True,
        )
        return e.exit_code
    if checked is None:  # --cfg, --help, ...: Hydra printed, nothing ran
        return EXIT_OK
    if not config.is_multirun(config.split_args(args)[0]):
        return _results[0][1] if _results else EXIT_OK
    if not _results:  # the launcher ran the jobs in other processes: read their run directories
        from lionbench.sweep import status_of

        statuses = [status_of(d) for _, d in run_dirs(checked)]
    else:
        statuses = [status for status, _ in _results]
    bad = {"failed", "partial", "missing", "bad_input"}
    return EXIT_FAILED if any(status in bad for status in statuses) else EXIT_OK
