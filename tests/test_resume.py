"""Checkpoint and resume: a killed or preempted run continues bit for bit where it stopped."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from helpers import SMOKE, metrics, run_cli, run_dirs, run_inprocess, summary

# Long enough (a few seconds) that a kill lands mid-run; checkpoints every 10 steps.
LONG = [
    "train.steps=120",
    "train.log_interval=5",
    "train.eval_interval=50",
    "checkpoint.interval=10",
]


def without_time(records: list[dict]) -> list[dict]:
    """Metrics minus wall-clock fields, which differ between any two runs."""
    return [{k: v for k, v in r.items() if k != "time_s"} for r in records]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    results = tmp_path_factory.mktemp("uninterrupted")
    assert run_inprocess(results, *LONG) == 0
    (d,) = run_dirs(results)
    assert not (d / "checkpoint.pt").exists()  # removed once the run is finished
    return d


def start_run(results, *extra) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lionbench", "run", *SMOKE, f"results_dir={results}", *LONG, *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_for_checkpoint(results, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not list(results.glob("*/*/checkpoint.pt")):
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.05)


def wait_for_step(results, proc: subprocess.Popen, step: int, timeout: float = 120) -> None:
    """Until the run has logged `step` (it logs every 5 steps and runs on to 120)."""
    deadline = time.monotonic() + timeout
    (d,) = run_dirs(results)
    while True:
        lines = (d / "metrics.jsonl").read_text().splitlines()
        done = [json.loads(x)["step"] for x in lines[:-1]]  # the last line may be torn
        if done and max(done) >= step:
            break
        assert proc.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)


def assert_same_as_uninterrupted(results, uninterrupted) -> dict:
    (d,) = run_dirs(results)
    assert d.name == uninterrupted.name  # the same config is the same run directory
    s, ref = summary(d), summary(uninterrupted)
    assert s["status"] == "completed" and s["resumes"] == 1
    assert 10 <= s["resumed_from_step"] < 120
    assert without_time(metrics(d)) == without_time(metrics(uninterrupted))
    for key in ("final_train_loss", "final_val_loss", "best_val_loss", "first_batch_hash"):
        assert s[key] == ref[key], key
    assert not (d / "checkpoint.pt").exists()
    assert not list(d.glob(".*.tmp"))  # no torn temporary files left behind
    return s


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_run_resumes_identically(tmp_path, uninterrupted, sig):
    results = tmp_path / "results"
    proc = start_run(results)
    wait_for_checkpoint(results, proc)
    wait_for_step(results, proc, random.randrange(15, 80))  # a random step after it
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    (d,) = run_dirs(results)
    if sig == signal.SIGTERM:
        # A clean stop: checkpoint written at the next step boundary, run marked interrupted.
        assert proc.returncode == 128 + signal.SIGTERM
        assert "interrupted by signal 15" in err and "Traceback" not in err
        assert summary(d)["status"] == "interrupted"
        stopped_at = summary(d)["steps"]
    else:
        assert proc.returncode == -signal.SIGKILL
        assert not (d / "summary.json").exists()
        stopped_at = None
    assert (d / "checkpoint.pt").exists()

    # The same command again: resumes, appends to the same metrics, ends as the uninterrupted run.
    assert run_inprocess(results, *LONG) == 0
    s = assert_same_as_uninterrupted(results, uninterrupted)
    if stopped_at is not None:
        assert s["resumed_from_step"] == stopped_at


def test_a_finished_run_is_not_resumed_and_keeps_no_checkpoint(tmp_path, uninterrupted, capsys):
    results = tmp_path / "results"
    assert run_inprocess(results, *LONG, "checkpoint.keep=true") == 0
    (d,) = run_dirs(results)
    assert (d / "checkpoint.pt").exists()  # kept on request
    assert run_inprocess(results, *LONG) == 0
    assert "already completed" in capsys.readouterr().out


def test_changing_checkpoint_settings_keeps_the_run_directory(tmp_path, uninterrupted):
    results = tmp_path / "results"
    assert run_inprocess(results, *LONG, "checkpoint.interval=0") == 0
    (d,) = run_dirs(results)
    assert d.name == uninterrupted.name


def _interrupted_run_dir(tmp_path):
    """A run directory as a SIGTERM leaves it: checkpoint.pt and an 'interrupted' summary."""
    results = tmp_path / "results"
    proc = start_run(results)
    wait_for_checkpoint(results, proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    (d,) = run_dirs(results)
    return results, d


def _assert_refused(results, d, expected: str) -> None:
    before = sorted(p.name for p in d.iterdir())
    res = run_cli("run", *SMOKE, f"results_dir={results}", *LONG)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert "Traceback" not in res.stdout + res.stderr
    assert sorted(p.name for p in d.iterdir()) == before  # nothing written, nothing deleted
    assert run_dirs(results) == [d]


def test_bad_leftovers_are_refused_with_one_line(tmp_path):
    results, d = _interrupted_run_dir(tmp_path)
    ckpt = d / "checkpoint.pt"
    good = ckpt.read_bytes()

    ckpt.write_bytes(good[: len(good) // 2])  # a torn copy
    _assert_refused(results, d, "checkpoint.pt is unreadable")
    ckpt.write_bytes(b"not a checkpoint at all")
    _assert_refused(results, d, "checkpoint.pt is unreadable")
    import torch

    torch.save({"model": {}}, ckpt)  # some other program's file
    _assert_refused(results, d, "is not a lionbench checkpoint")
    flipped = bytearray(good)
    middle = len(good) // 2
    flipped[middle : middle + 64] = bytes(b ^ 0xFF for b in flipped[middle : middle + 64])
    ckpt.write_bytes(bytes(flipped))  # 64 flipped bytes: a bad disk, a bad copy
    _assert_refused(results, d, "checkpoint.pt is")  # "... is corrupt" or "... is unreadable"

    from lionbench.run import checkpoint

    ckpt.write_bytes(good)
    state = torch.load(ckpt, weights_only=True)
    content = {k: v for k, v in state.items() if k != "digest"}
    content["run"] = {**content["run"], "name": "smoke-adamw-lr0.003-wd0.1-s0-0123456789"}
    torch.save({**content, "digest": checkpoint.content_digest(content)}, ckpt)
    _assert_refused(results, d, "belongs to another run ('smoke-adamw-lr0.003")  # copied in
    ckpt.write_bytes(good)

    metrics = d / "metrics.jsonl"
    records = metrics.read_bytes()
    metrics.write_bytes(records[:10])  # a node crash lost what was not yet flushed to disk
    _assert_refused(results, d, "metrics.jsonl is shorter than its checkpoint says")
    metrics.write_bytes(records)

    summary_file = d / "summary.json"
    summary_file.write_text('{"status": "compl')  # torn by hand
    _assert_refused(results, d, "summary.json is corrupt")
    summary_file.write_text(json.dumps({"status": "completed", "run_dir": "/elsewhere/other-run"}))
    _assert_refused(results, d, "belongs to another run")
    summary_file.write_text(json.dumps(["not", "a", "summary"]))
    _assert_refused(results, d, "is not a lionbench summary")


def test_a_second_command_is_refused_while_the_run_trains(tmp_path, uninterrupted):
    """A launcher retry or a requeue while the first job lives: one line naming the holder,
    exit 2; the first run completes with exactly an uninterrupted run's records."""
    results = tmp_path / "results"
    proc = start_run(results)
    wait_for_checkpoint(results, proc)
    os.kill(proc.pid, signal.SIGSTOP)  # holds its lock while the second command starts
    try:
        res = run_cli("run", *SMOKE, f"results_dir={results}", *LONG)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and f"being trained by another process (pid {proc.pid} on" in lines[0]
    assert proc.wait(timeout=600) == 0
    (d,) = run_dirs(results)
    assert without_time(metrics(d)) == without_time(metrics(uninterrupted))  # no duplicates
