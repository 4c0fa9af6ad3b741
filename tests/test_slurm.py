"""lionbench on a real SLURM cluster: sweeps through submitit, requeue, failures, DDP over tasks.

They need a running cluster (`tests/slurm/cluster.sh start`, which `.ci/run` calls) and skip with
one line when none answers. The cluster's slurm.conf is found through SLURM_CONF, else in
$LIONBENCH_SLURM_DIR (default /tmp/lionbench-slurm); the partition is $LIONBENCH_SLURM_PARTITION
(default debug). Every run is a few smoke steps: the time goes into job starts, not training.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import SMOKE, metrics, run_cli, run_dirs, run_inprocess, summary

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
HOOK = Path(__file__).parent / "slurm" / "hook"  # sitecustomize: injected failure, requeue
PARTITION = os.environ.get("LIONBENCH_SLURM_PARTITION", "debug")
JOB_TIMEOUT_S = 900  # a loaded machine starts jobs slowly; a healthy one takes seconds
TINY = ["train.steps=4", "train.log_interval=1", "train.eval_interval=100"]


def slurm_conf() -> Path:
    if os.environ.get("SLURM_CONF"):
        return Path(os.environ["SLURM_CONF"])
    return Path(os.environ.get("LIONBENCH_SLURM_DIR", "/tmp/lionbench-slurm")) / "slurm.conf"


def why_not_running(conf: Path) -> str | None:
    """Why the cluster cannot take jobs, in one line (None: it can)."""
    missing = [c for c in ("sbatch", "srun", "scontrol", "squeue") if shutil.which(c) is None]
    if missing:
        return f"SLURM is not installed ({', '.join(missing)} not on PATH)"
    if not conf.is_file():
        return f"no SLURM cluster configured ({conf} does not exist)"
    env = {**os.environ, "SLURM_CONF": str(conf)}
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, env=env)
    if ping.returncode != 0 or "UP" not in ping.stdout:
        return f"no SLURM controller answers `scontrol ping` (SLURM_CONF={conf})"
    return None


@pytest.fixture(scope="module")
def cluster():
    """SLURM_CONF for the module's tests, or one skip line saying why SLURM is not there."""
    conf = slurm_conf()
    if reason := why_not_running(conf):
        pytest.skip(f"{reason}; start a cluster with tests/slurm/cluster.sh start")
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    yield conf
    if saved is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = saved


def hooked_env(**extra: str) -> dict[str, str]:
    """The environment of a command whose SLURM jobs load the test hooks and this checkout
    (sbatch passes the environment on to the job), at the nice value of the tests."""
    path = os.pathsep.join([str(HOOK), str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path.rstrip(os.pathsep), "PYTHONUNBUFFERED": "1", **extra}


def sbatch(script: str, tmp_path: Path, *options: str, env: dict[str, str]) -> str:
    """Submit a batch script; returns the job id."""
    path = tmp_path / "job.sh"
    path.write_text("#!/bin/bash\n" + script + "\n")
    out = subprocess.run(
        ["sbatch", "--parsable", f"--partition={PARTITION}", "--time=10",
         f"--output={tmp_path}/slurm-%j.out", "--open-mode=append", *options, str(path)],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    return out.stdout.strip().split(";")[0]


ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD",
          "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT"}  # fmt: skip


def wait_for_job(job: str, timeout: float = JOB_TIMEOUT_S) -> None:
    """Until the job has ended for good (a requeued job is pending again, then runs again)."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True
        )
        if not set(out.stdout.split()) & ACTIVE:
            return
        assert time.monotonic() < deadline, f"SLURM job {job} still queued or running"
        time.sleep(0.5)


def job_fields(job: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True)
    return dict(f.split("=", 1) for f in out.stdout.split() if "=" in f)


def start_requeued_at_once(job: str, timeout: float = JOB_TIMEOUT_S) -> None:
    """SLURM holds a requeued job back for about two minutes (reason BeginTime); once the job
    is requeued, let it start at once (`scontrol update JobId=... StartTime=now`)."""
    deadline = time.monotonic() + timeout
    while True:
        f = job_fields(job)
        if int(f.get("Restarts", "0")) > 0:
            if f.get("JobState") == "PENDING" and f.get("Reason") == "BeginTime":
                subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
                return
            if f.get("JobState") not in ACTIVE - {"RUNNING"}:  # running again, or ended
                return
        assert f.get("JobState") in ACTIVE, f"SLURM job {job} ended without being requeued: {f}"
        assert time.monotonic() < deadline, f"SLURM job {job} was not requeued"
        time.sleep(0.2)


def without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time_s"} for r in records]


# ------------------------------------------------------------------------------ the sweep


def slurm_sweep(results: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run_cli(
        "sweep", "recipe=gpt2", *SMOKE, *TINY, "--ratios", "3,10", "--seeds", "0,1",
        "--adamw-lrs", "1", "--confirm-seeds", "none", "--max-extend", "0",
        f"results_dir={results}", "hydra/launcher=submitit_slurm",
        f"hydra.launcher.partition={PARTITION}", "hydra.launcher.timeout_min=10",
        timeout=JOB_TIMEOUT_S, env=env,
    )  # fmt: skip


def test_a_sweep_runs_each_run_as_a_slurm_job(cluster, tmp_path):
    """Six runs (AdamW at one lr, Lion at two ratios, two seeds), each a SLURM job; one of them
    fails (injected), the others complete, and the screen names the failed job's log. A second
    sweep queues nothing for the finished runs and trains the failed one again."""
    results = tmp_path / "results"
    first = slurm_sweep(results, hooked_env(LIONBENCH_TEST_FAIL="lion,10,1"))
    assert first.returncode == 1, first.stderr[-3000:]  # 1: a run failed; the others went on
    dirs = run_dirs(results)
    assert len(dirs) == 6
    by_status: dict[str, list[dict]] = {}
    for d in dirs:
        by_status.setdefault(summary(d)["status"], []).append(summary(d))
    assert sorted((k, len(v)) for k, v in by_status.items()) == [("completed", 5), ("failed", 1)]
    jobs = {s["slurm_job_id"] for s in summary_list(dirs)}
    assert None not in jobs and len(jobs) == 6  # every run was its own SLURM job
    (failed,) = by_status["failed"]
    assert failed["optim"] == "lion" and failed["seed"] == 1
    assert "injected failure" in failed["error"]
    log = Path(failed["slurm_log"])
    assert log.is_file() and "injected failure" in log.read_text()  # the traceback is there
    out = first.stdout
    assert "completed: 5" in out and "failed: 1" in out
    assert f"SLURM job {failed['slurm_job_id']} log: {log}" in " ".join(out.split())

    stamps = {d: summary(d)["ended_at"] for d in dirs if summary(d)["status"] == "completed"}
    second = slurm_sweep(results, hooked_env())
    assert second.returncode == 0, second.stderr[-3000:]
    assert "skipped: 5" in second.stdout and "completed: 1" in second.stdout
    assert {d: summary(d)["ended_at"] for d in stamps} == stamps  # nothing retrained
    assert {summary(d)["status"] for d in run_dirs(results)} == {"completed"}
    assert summary(Path(failed["run_dir"]))["slurm_job_id"] not in jobs  # a new job for it

    report = run_cli("report", str(results), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr[-3000:]


def summary_list(dirs: list[Path]) -> list[dict]:
    return [summary(d) for d in dirs]


# ------------------------------------------------------------------------------ preemption

LONG = ["train.steps=40", "train.log_interval=2", "train.eval_interval=20", "checkpoint.interval=8"]


def test_a_requeued_job_resumes_bit_for_bit(cluster, tmp_path):
    """`scontrol requeue` mid-run (SIGTERM from SLURM): the run checkpoints and stops, SLURM
    starts the job again, and the run resumes from its checkpoint to the same metrics as a run
    that was never interrupted."""
    results = tmp_path / "preempted"
    offline = ["scale=smoke", "logger.wandb.mode=offline"]  # the W&B run must continue
    args = " ".join(["run", *offline, f"results_dir={results}", *LONG])
    job = sbatch(
        f"exec {sys.executable} -m lionbench {args}",
        tmp_path,
        "--requeue",
        env=hooked_env(LIONBENCH_TEST_REQUEUE="1"),
    )
    reference = tmp_path / "reference"  # meanwhile, the uninterrupted run, here
    ref_run = subprocess.Popen(
        [sys.executable, "-m", "lionbench", "run", *SMOKE, f"results_dir={reference}", *LONG],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=hooked_env(),
    )  # fmt: skip
    start_requeued_at_once(job)
    wait_for_job(job)
    assert ref_run.wait(timeout=JOB_TIMEOUT_S) == 0, ref_run.stderr.read()[-3000:]
    log = "\n".join(p.read_text() for p in tmp_path.glob("slurm-*.out"))
    (d,), (ref,) = run_dirs(results), run_dirs(reference)
    s = summary(d)
    assert s["status"] == "completed", log[-3000:]
    assert s["resumes"] == 1 and 8 <= s["resumed_from_step"] < 40, log[-3000:]
    assert s["slurm_job_id"] == job
    assert "interrupted" in log and "resuming" in log  # both attempts in the job's log
    assert without_time(metrics(d)) == without_time(metrics(ref))
    for key in ("final_train_loss", "final_val_loss", "best_val_loss", "first_batch_hash"):
        assert s[key] == summary(ref)[key], key
    # W&B offline: the resumed process continued the same W&B run (one id, two offline parts
    # that `wandb sync` uploads as one run)
    parts = sorted((d / "wandb").glob("offline-run-*"))
    assert len(parts) == 2 and len({p.name.rsplit("-", 1)[1] for p in parts}) == 1, parts


# ------------------------------------------------------------------------------------- DDP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_across_two_slurm_tasks_trains_like_one_process(cluster, tmp_path):
    """The README's `srun torchrun` form: two SLURM tasks, one torchrun each (a "node" of one
    rank), one DDP run whose losses equal one process's with the same global batch."""
    ddp = tmp_path / "ddp"
    torchrun = (
        f"{sys.executable} -m torch.distributed.run --nnodes 2 --node_rank $SLURM_PROCID "
        f"--nproc_per_node 1 --master_addr 127.0.0.1 --master_port {free_port()}"
    )
    args = " ".join([*SMOKE, f"results_dir={ddp}", "optim=adamw", "train.steps=10"])
    job = sbatch(
        f"exec srun --kill-on-bad-exit=1 bash -c '{torchrun} -m lionbench run {args}'",
        tmp_path,
        "--ntasks=2",
        "--nodes=1",
        env=hooked_env(),
    )
    single = tmp_path / "single"
    assert run_inprocess(single, "optim=adamw", "train.steps=10") == 0
    wait_for_job(job)
    log = "\n".join(p.read_text() for p in tmp_path.glob("slurm-*.out"))
    (d,), (ref,) = run_dirs(ddp), run_dirs(single)
    s, r = summary(d), summary(ref)
    assert s["status"] == "completed", log[-3000:]
    assert s["first_batch_hash"] == r["first_batch_hash"]  # the same global batch
    got, want = metrics(d), metrics(ref)
    assert [(m["step"], m["split"]) for m in got] == [(m["step"], m["split"]) for m in want]
    for a, b in zip(got, want, strict=True):  # tolerance: see tests/test_distributed.py
        assert math.isclose(a["loss"], b["loss"], rel_tol=1e-5), (a, b)
