"""What a run learns from SLURM, and the check that SLURM is there before a sweep submits to it.

`hydra/launcher=submitit_slurm` hands every run to `sbatch`; without SLURM's commands or a
controller that answers, submitit would fail with a traceback after lionbench had started, so the
launcher is checked with the other bad input (one line, exit code 2, nothing written).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from lionbench.errors import UserError

LAUNCHER = "submitit_slurm"
COMMANDS = ("sbatch", "srun", "scontrol")
PING_TIMEOUT_S = 20.0
HINT = "use --launcher joblib or hydra/launcher=submitit_local to run on this machine"


def launcher_of(overrides: list[str]) -> str | None:
    """The `hydra/launcher=` choice among the overrides (None: Hydra's basic launcher)."""
    for o in overrides:
        key, _, value = o.lstrip("+~").partition("=")
        if key == "hydra/launcher":
            return value
    return None


def partition_of(overrides: list[str]) -> str | None:
    for o in overrides:
        key, _, value = o.lstrip("+~").partition("=")
        if key == "hydra.launcher.partition":
            return value or None
    return None


def check_launcher(overrides: list[str]) -> None:
    """With hydra/launcher=submitit_slurm: SLURM's commands are on PATH, a controller answers,
    and the partition asked for exists. Raise UserError naming what is missing."""
    if launcher_of(overrides) != LAUNCHER:
        return
    missing = [c for c in COMMANDS if shutil.which(c) is None]
    if missing:
        raise UserError(
            f"hydra/launcher={LAUNCHER} needs SLURM, but {', '.join(missing)} is not on PATH "
            f"({HINT})"
        )
    conf = os.environ.get("SLURM_CONF")
    if conf is not None and not Path(conf).is_file():
        raise UserError(
            f"hydra/launcher={LAUNCHER} needs a SLURM configuration, but SLURM_CONF={conf} is "
            f"not a file ({HINT})"
        )
    if not controller_answers():
        raise UserError(
            f"hydra/launcher={LAUNCHER} needs a SLURM controller, but none answers `scontrol "
            f"ping` (SLURM_CONF: {conf or 'unset'}; {HINT})"
        )
    partition = partition_of(overrides)
    if partition is not None:
        known = partitions()
        if partition not in known:
            raise UserError(
                f"hydra.launcher.partition={partition}: no such SLURM partition (accepted: "
                f"{', '.join(known) or 'none found by sinfo'})"
            )


def _run(cmd: list[str]) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=PING_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None


def controller_answers() -> bool:
    ping = _run(["scontrol", "ping"])
    return ping is not None and ping.returncode == 0 and "UP" in ping.stdout


def partitions() -> list[str]:
    out = _run(["sinfo", "-h", "-o", "%R"])
    return sorted(set(out.stdout.split())) if out is not None and out.returncode == 0 else []


def job_info() -> dict[str, str | None]:
    """The SLURM job this process runs in, and where its log is (submitit's files), for the
    run's summary: a failed run on a cluster is then found from the sweep's screen."""
    job = os.environ.get("SLURM_JOB_ID")
    if job is None:
        return {"slurm_job_id": None, "slurm_log": None}
    log = None
    if os.environ.get("SUBMITIT_FOLDER"):
        import submitit

        log = str(submitit.JobEnvironment().paths.stderr)
    elif (out := _run(["scontrol", "show", "job", job])) is not None:
        fields = dict(f.split("=", 1) for f in out.stdout.split() if "=" in f)
        log = fields.get("StdErr")
    if log is not None:
        log = str(Path(log).resolve())
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return {"slurm_job_id": f"{array}_{task}" if array and task else job, "slurm_log": log}
