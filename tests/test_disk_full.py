"""A full disk ends a run with one line naming the condition and the file, exit 1, a failed
summary where it still fits, and the last complete checkpoint intact (issue 18 item 7).

The full disk is injected: a checkpoint's temporary file opened on /dev/full (the kernel's
always-full device: real torch.save, real ENOSPC), or a write that raises ENOSPC.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from helpers import run_dirs, run_inprocess, summary

from lionbench import files
from lionbench.run import checkpoint
from lionbench.run.rundir import CHECKPOINT, RunDir

STEPS = ["train.steps=10", "train.log_interval=5", "train.eval_interval=5"]


def run_lines(err: str) -> list[str]:
    """stderr's lines that are lionbench's own (not progress bars or warnings)."""
    return [ln for ln in err.splitlines() if ln.startswith(("run failed", "Traceback", "error"))]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_checkpoint_that_does_not_fit_keeps_the_previous_one(tmp_path, monkeypatch, capsys):
    real_mkstemp = tempfile.mkstemp
    saves = []

    def mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        fd, tmp = real_mkstemp(*args, **kwargs)
        if str(kwargs.get("prefix")).startswith(f".{CHECKPOINT}."):
            saves.append(tmp)
            if len(saves) == 2:  # the second checkpoint: every write fails with ENOSPC
                os.close(fd)
                fd = os.open("/dev/full", os.O_WRONLY)
        return fd, tmp

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    assert run_inprocess(tmp_path, *STEPS, "checkpoint.interval=4") == 1
    (d,) = run_dirs(tmp_path)
    ckpt = RunDir(d).checkpoint
    (line,) = run_lines(capsys.readouterr().err)
    assert line.startswith("run failed: disk full (") and str(ckpt) in line
    assert summary(d)["status"] == "failed" and "disk full" in summary(d)["error"]
    assert checkpoint.load(RunDir(d))["step"] == 4  # the previous checkpoint, intact
    assert not list(d.glob(".*.tmp"))  # the torn temporary file is gone


class FullAfter:
    """metrics.jsonl that takes `n` records, then fails as a full disk does (no file name)."""

    def __init__(self, f: Any, n: int) -> None:
        self.f, self.n = f, n

    def write(self, text: str) -> int:
        if self.n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.n -= 1
        return self.f.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)


def test_disk_full_mid_run_is_one_line_and_a_failed_summary(tmp_path, monkeypatch, capsys):
    real_start = RunDir.start

    def start(self: RunDir, *args: Any, **kwargs: Any) -> None:
        real_start(self, *args, **kwargs)
        self._metrics_file = FullAfter(self._metrics_file, 2)

    monkeypatch.setattr(RunDir, "start", start)
    assert run_inprocess(tmp_path, *STEPS) == 1
    (d,) = run_dirs(tmp_path)
    (line,) = run_lines(capsys.readouterr().err)
    assert line.startswith("run failed: disk full (") and str(d / "metrics.jsonl") in line
    assert summary(d)["status"] == "failed"
    assert not (d / "error.log").exists()  # the line says it all; a traceback would not fit


def test_disk_full_before_training_is_one_line(tmp_path, monkeypatch, capsys):
    def pwrite(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", pwrite)
    assert run_inprocess(tmp_path, *STEPS) == 1
    (line,) = run_lines(capsys.readouterr().err)
    assert line.startswith("run failed: disk full (") and ".lock" in line


def test_a_completed_run_leaves_no_stale_error_log(tmp_path, monkeypatch):
    from lionbench.loop import train

    def broken(*args: Any, **kwargs: Any) -> None:
        raise ValueError("a failure of the first attempt")

    with monkeypatch.context() as m:
        m.setattr(train, "train", broken)
        assert run_inprocess(tmp_path, *STEPS) == 1
    (d,) = run_dirs(tmp_path)
    assert (d / "error.log").exists()
    assert run_inprocess(tmp_path, *STEPS) == 0
    assert summary(d)["status"] == "completed"
    assert not (d / "error.log").exists()


def test_atomic_write_names_the_file_when_the_disk_is_full(tmp_path):
    target = tmp_path / "x.json"
    target.write_text("old")

    def write(f: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError) as e:
        files.atomic_write(target, write)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(target)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_disk_full_line_names_the_condition_and_the_path():
    from lionbench.errors import disk_full_line

    e = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/r/run/checkpoint.pt")
    line = disk_full_line(e, Path("/r/run"))
    assert line.startswith("disk full (") and "/r/run/checkpoint.pt" in line
    assert "\n" not in line
