"""`lionbench run`: check every config first, then hand the arguments to Hydra's own main.

Hydra owns composition, multirun, launchers and `--cfg`; lionbench owns the run directory
(hydra.run.dir is `.` and Hydra writes no per-run files). Bad input is caught here, before Hydra
starts, so that it is one line, exit code 2 and nothing written.
"""

from __future__ import annotations

import sys

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


def precheck(args: list[str]) -> None:
    """Compose and validate every job the arguments describe; raise UserError on the first bad."""
    flags, overrides = config.split_args(args)
    if any(f in config.PASSTHROUGH_FLAGS for f in flags):
        return
    multirun = "-m" in flags or "--multirun" in flags
    for job in config.expand_overrides(overrides, multirun):
        cfg = config.compose(job)
        config.validate(cfg)
        from lionbench.recipe import load_recipe

        load_recipe(cfg).check()


def main(args: list[str]) -> int:
    try:
        precheck(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    _results.clear()
    sys.argv = ["lionbench", *args]
    _job()
    flags, _ = config.split_args(args)
    if any(f in config.PASSTHROUGH_FLAGS for f in flags):
        return EXIT_OK
    multirun = "-m" in flags or "--multirun" in flags
    if not multirun:
        return _results[0][1] if _results else EXIT_OK
    if not _results:  # the launcher ran the jobs in other processes: read their run directories
        from lionbench.sweep import expected_runs, status_of

        statuses = [status_of(d) for _, d in expected_runs([args])]
    else:
        statuses = [status for status, _ in _results]
    bad = {"failed", "partial", "missing", "bad_input"}
    return EXIT_FAILED if any(status in bad for status in statuses) else EXIT_OK
