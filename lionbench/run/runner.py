"""One run around the training loop: find its directory, skip it if finished, resume it from
its checkpoint, hand the loop where its records go (run/outputs.py), and record what came of it
(summary.json, W&B, the exit code).

With `dist.nproc > 1` the Hydra job only orchestrates: torchrun's workers train the run and rank
0 writes its directory, which this reads back.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

import lionbench
from lionbench import console
from lionbench.config import decimal_div
from lionbench.config.ladder import apply_size
from lionbench.errors import (
    EXIT_DIVERGED,
    EXIT_FAILED,
    EXIT_OK,
    Interrupted,
    disk_full_line,
    first_line,
    is_disk_full,
    warn,
)
from lionbench.loop import ddp, train
from lionbench.loop.device import device_name, resolve_device
from lionbench.optim import check_impl
from lionbench.optim.registry import hyperparams_of, impl_of, spec_of
from lionbench.recipe import Recipe, load_recipe
from lionbench.record import RunSummary, Status
from lionbench.run import checkpoint, slurm, torchrun
from lionbench.run.budget import apply_budget
from lionbench.run.lock import RunLock
from lionbench.run.outputs import RunOutputs
from lionbench.run.revision import git_revision
from lionbench.run.rundir import RunDir, run_dir_path
from lionbench.tracking.wandb_run import WandbLogger

EXIT_CODES = {Status.COMPLETED: EXIT_OK, Status.DIVERGED: EXIT_DIVERGED, Status.FAILED: EXIT_FAILED}


@dataclass
class RunResult:
    status: Status
    run_dir: Path
    summary: RunSummary

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.status, EXIT_FAILED)


def run(cfg: DictConfig) -> RunResult:
    """One run of a resolved config: check, skip if finished, else train and record (or, with
    dist.nproc > 1, have torchrun's workers train it)."""
    device = resolve_device(cfg.device)
    if ddp.in_worker():
        cfg.dist.nproc = ddp.world()  # `torchrun -m lionbench run`: torchrun decides
        device = ddp.setup(device)
    try:
        return _run(cfg, device)
    finally:
        if ddp.in_worker():
            ddp.teardown()


def _run(cfg: DictConfig, device: torch.device) -> RunResult:
    apply_size(cfg)  # as the launcher's check did: a Hydra job's config is composed anew
    recipe = load_recipe(cfg)
    recipe.check()
    apply_budget(cfg, recipe)
    check_impl(cfg.optim, device.type)
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    rundir = RunDir(run_dir_path(plain, device.type), writer=ddp.rank() == 0)
    try:
        with RunLock(rundir, enabled=rundir.writer):
            return _run_locked(cfg, device, recipe, plain, rundir)
    except OSError as e:  # a full disk outside training: taking the lock, starting, finishing
        if not is_disk_full(e):
            raise
        summary = identity_summary(plain, device).update(run_dir=str(rundir.path))
        return disk_full(rundir, summary, e)


def disk_full(rundir: RunDir, summary: RunSummary, e: OSError) -> RunResult:
    """End a run that ran out of space with one line and, where it still fits, a failed
    summary; its last checkpoint (written to a temporary file, then renamed) stays intact."""
    line = disk_full_line(e, rundir.path)
    summary.update(status=Status.FAILED, error=line, ended_at=_now())
    rundir.close()
    with contextlib.suppress(OSError):  # nothing more to say if even that does not fit
        rundir.write_summary(summary)
    print(f"run failed: {line}", file=sys.stderr, flush=True)
    return RunResult(Status.FAILED, rundir.path, summary)


def setup_warnings(cfg: DictConfig, device: torch.device) -> list[str]:
    """What a run is told before its first step: scale=full on a CPU (the published model size,
    meant for a GPU), an lr warmup as long as the run (the peak lr is never reached), and a
    timing warmup as long as the run (no step is timed: no speed)."""
    lines = []
    if device.type == "cpu" and cfg.get("scale") == "full":
        lines.append(
            f"scale=full on a CPU: the published {cfg.recipe.name} size needs many GB of memory "
            f"and hours per run here (scale=small is the CPU comparison)"
        )
    warmup, steps = int(cfg.timing.warmup_steps), int(cfg.train.steps)
    if int(cfg.sched.warmup_steps) > steps:  # equal: the peak is the last update's lr
        lines.append(
            f"sched.warmup_steps={cfg.sched.warmup_steps} is beyond train.steps={steps}: the "
            f"lr is still warming up when the run ends and never reaches optim.lr (lower "
            f"sched.warmup_steps, or raise train.steps)"
        )
    if warmup >= steps:
        lines.append(
            f"timing.warmup_steps={warmup} is not below train.steps={steps}: no step is timed, "
            f"so this run records no speed (steps/s, time to target); lower timing.warmup_steps"
        )
    return lines


def _run_locked(
    cfg: DictConfig, device: torch.device, recipe: Recipe, plain: dict[str, Any], rundir: RunDir
) -> RunResult:
    """The run, with its directory to itself: skip it if finished, else train (or resume)."""
    previous = rundir.read_summary()
    if previous is not None and previous.finished:
        print(f"already {previous.status}: {rundir.path} (nothing to train)", flush=True)
        return RunResult(previous.status, rundir.path, previous)
    if int(cfg.dist.nproc) > 1 and not ddp.in_worker():
        return run_workers(plain, rundir)
    for line in setup_warnings(cfg, device) if rundir.writer else []:
        warn(line)

    resume = checkpoint.load(rundir) if rundir.checkpoint.exists() else None
    rundir.start(
        OmegaConf.to_yaml(plain),
        keep_metrics_bytes=resume["run"]["metrics_bytes"] if resume else None,
    )
    wandb = WandbLogger.off()
    if rundir.writer:
        resume_id = resume["run"]["wandb_id"] if resume else None
        wandb = WandbLogger.start(plain, rundir.path, rundir.wandb, rundir.path.name, resume_id)
    summary = identity_summary(plain, device)
    summary.update(run_dir=str(rundir.path), started_at=_now(), **wandb.record())
    if resume:
        summary.update(resumed_from_step=resume["step"], resumes=resume["loop"]["resumes"] + 1)
        print(f"resuming {rundir.path} from its checkpoint at step {resume['step']}", flush=True)
    wall0 = time.perf_counter()
    try:
        summary.update(**train.train(cfg, recipe, device, RunOutputs(rundir, wandb), resume))
    except Exception as e:
        summary.update(wall_s=time.perf_counter() - wall0)
        if isinstance(e, OSError) and is_disk_full(e):
            result = disk_full(rundir, summary, e)
            wandb.finish(result.summary.to_dict(), EXIT_FAILED)
            return result
        failed(rundir, summary, e)
    summary.update(ended_at=_now(), wall_s=time.perf_counter() - wall0)
    return finish(cfg, rundir, wandb, summary)


def failed(rundir: RunDir, summary: RunSummary, e: Exception) -> None:
    """Record an exception: its first line in the summary, its traceback in error.log."""
    summary.update(status=Status.FAILED, error=first_line(e, with_type=True))
    where = f"traceback in {rundir.error_log}"
    try:
        rundir.write_error_log(traceback.format_exc())
    except OSError as log_error:
        where = f"no traceback: {rundir.error_log}: {log_error.strerror}"
    print(f"run failed: {summary.error} ({where})", file=sys.stderr, flush=True)


def finish(cfg: DictConfig, rundir: RunDir, wandb: WandbLogger, summary: RunSummary) -> RunResult:
    """Write the summary; an interrupted run ends the command, a finished one drops its
    checkpoint (nothing to resume) unless asked to keep it."""
    rundir.write_summary(summary)
    rundir.close()
    if summary.status == Status.INTERRUPTED:
        wandb.preempted()
        raise Interrupted(summary.interrupted_by or 0, summary.steps or 0, rundir.path)
    if summary.status != Status.FAILED and not cfg.checkpoint.keep and rundir.writer:
        rundir.checkpoint.unlink(missing_ok=True)
    wandb.finish(summary.to_dict(), EXIT_CODES[summary.status])
    if summary.status != Status.FAILED:
        console.summary_table(summary.to_dict(), next_step=not in_multirun())
    return RunResult(summary.status, rundir.path, summary)


def in_multirun() -> bool:
    """Whether this run is one job of a Hydra multirun (which ends with its own next step)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_workers(plain: dict[str, Any], rundir: RunDir) -> RunResult:
    """The orchestrator's side of dist.nproc > 1: torchrun's workers read the resolved config
    from the run directory and rank 0 writes the results there; this reads them back."""
    rundir.mark_setup()  # until rank 0 has done a step (a resumed run's checkpoint says more)
    rundir.write_config(OmegaConf.to_yaml(plain))
    code = torchrun.launch(rundir, int(plain["dist"]["nproc"]))
    summary = rundir.read_summary()
    if summary is None or summary.status not in (*EXIT_CODES, Status.INTERRUPTED):
        summary = (summary or RunSummary()).update(
            status=Status.FAILED,
            error=f"torchrun exited with code {code} before rank 0 wrote a summary",
            run_dir=str(rundir.path),
        )
        rundir.write_summary(summary)
        print(f"run failed: {summary.error}", file=sys.stderr, flush=True)
    if summary.status == Status.INTERRUPTED:
        raise Interrupted(summary.interrupted_by or 0, summary.steps or 0, rundir.path)
    return RunResult(summary.status, rundir.path, summary)


def identity_summary(cfg: dict[str, Any], device: torch.device) -> RunSummary:
    """The summary's fields known before training: what runs, where, with which code."""
    o = cfg["optim"]
    spec = spec_of(o)
    hyper = hyperparams_of(o)
    summary = RunSummary(
        recipe=cfg["recipe"]["name"],
        scale=cfg["scale"],
        data=cfg["data"]["source"],
        optim=spec.name,
        impl=impl_of(o),
        optim_target=spec.target,
        lr=o["lr"],
        weight_decay=o["weight_decay"],
        hyperparams=hyper,
        betas=hyper.get("betas"),
        seed=cfg["seed"],
        sched=cfg["sched"]["name"],
        batch_size=cfg["train"]["batch_size"],
        grad_accum=cfg["train"]["grad_accum"],
        planned_steps=cfg["train"]["steps"],
        precision=cfg["precision"],
        compile=cfg["compile"],
        sweep_name=cfg.get("sweep_name"),
        device=device.type,
        device_name=device_name(device),
        torch_version=torch.__version__,
        lionbench_version=lionbench.__version__,
        git_rev=git_revision(),
        hostname=platform.node(),
        pid=os.getpid(),
        **slurm.job_info(),
        config=cfg,
    )
    if spec.ratio_of:  # the effective ratio (lr and wd can be overridden directly)
        base = cfg["recipe"][spec.ratio_of]
        summary.ratio = decimal_div(base["lr"], o["lr"])  # 0.003 / 0.0003 is 10, as typed
        summary.wd_ratio = (
            decimal_div(o["weight_decay"], base["weight_decay"]) if base["weight_decay"] else None
        )
    return summary


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
