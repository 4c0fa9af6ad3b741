"""SIGTERM to a sweep whose runs go to joblib's worker processes: the command says it was
interrupted, its workers stop, and no further run starts (issue 18 item 8)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import SMOKE

from lionbench.signals import child_pids

pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def alive(pid: int) -> bool:
    """Running (a zombie that nobody reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(condition, limit_s: float, proc: subprocess.Popen | None = None) -> bool:
    """Poll; a generous bound against a hang, never a timing assertion."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if condition():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.2)
    return condition()


def test_sigterm_stops_a_joblib_sweep_and_its_workers(tmp_path):
    args = ["--ratios", "3,10", "--seeds", "0", "--confirm-seeds", "none", "--max-extend", "0"]
    cmd = [sys.executable, "-m", "lionbench", "sweep", *args, "--launcher", "joblib", *SMOKE]
    cmd += ["train.steps=100000", "checkpoint.interval=50", f"results_dir={tmp_path}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        started = wait_until(lambda: len(list(tmp_path.glob("*/*/config.yaml"))) >= 2, 300, proc)
        assert started, proc.communicate(timeout=60)
        workers = child_pids(proc.pid)
        assert workers
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by signal 15" in err and "Traceback" not in err
    assert wait_until(lambda: not any(alive(p) for p in workers), 120)
    runs = sorted(p.parent.name for p in tmp_path.glob("*/*/config.yaml"))
    assert len(runs) == 2 and all("adamw" in r for r in runs)  # the Lion round never started
