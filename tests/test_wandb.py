"""W&B: what lionbench hands to W&B, offline files inside the run directory, and a dead server
never stops training.

What lionbench sends is checked against a stand-in `wandb` module that records every call (the
bytes W&B writes into its own binary files are W&B's private format, written asynchronously:
asserting on them made a flaky test). One test runs the real W&B offline and checks only its
documented layout: an `offline-run-*` directory under the run directory, what `wandb sync` takes.
"""

from __future__ import annotations

import socket
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import run_dirs, run_inprocess, summary


class FakeRun:
    def __init__(self, calls: list, kwargs: dict[str, Any]) -> None:
        self.calls, self.kwargs = calls, kwargs
        self.id = "fake123"
        self.summary: dict[str, Any] = {}
        self.logged: list[tuple[dict, int]] = []
        self.finished: int | None = None

    def log(self, data: dict, step: int) -> None:
        self.logged.append((data, step))

    def finish(self, exit_code: int = 0) -> None:
        self.finished = exit_code

    def mark_preempting(self) -> None:
        self.calls.append(("preempting",))


def fake_wandb(fail_online: bool = False) -> tuple[types.ModuleType, list]:
    """A `wandb` module recording init calls; `fail_online`: online init raises, as with an
    unreachable server."""
    calls: list = []
    module = types.ModuleType("wandb")

    def init(mode: str, settings: Any = None, **kwargs: Any) -> FakeRun:
        calls.append(("init", mode, kwargs))
        if fail_online and mode == "online":
            raise TimeoutError("could not reach the server")
        run = FakeRun(calls, {"mode": mode, **kwargs})
        calls.append(("run", run))
        return run

    module.init = init  # type: ignore[attr-defined]
    module.Settings = lambda **kw: kw  # type: ignore[attr-defined]
    module.Image = lambda path: ("image", path)  # type: ignore[attr-defined]
    return module, calls


def runs_of(calls: list) -> list[FakeRun]:
    return [c[1] for c in calls if c[0] == "run"]


def test_offline_run_sends_metrics_config_and_summary(tmp_path, monkeypatch):
    module, calls = fake_wandb()
    monkeypatch.setitem(sys.modules, "wandb", module)
    monkeypatch.delenv("WANDB_MODE")
    assert run_inprocess(tmp_path, "logger.wandb.mode=offline", "train.steps=10") == 0
    (d,) = run_dirs(tmp_path)
    (run,) = runs_of(calls)
    assert run.kwargs["mode"] == "offline" and run.kwargs["dir"] == str(d)
    assert run.kwargs["config"]["optim"]["name"] == "lion"
    keys = {k for data, _ in run.logged for k in data}
    assert {"train/loss", "train/lr", "val/loss", "val/ppl"} <= keys  # metrics.jsonl names
    assert [s for _, s in run.logged] == sorted(s for _, s in run.logged)  # steps never go back
    assert run.summary["run_dir"] == summary(d)["run_dir"]  # the summary went to W&B too
    assert run.finished == 0


@pytest.fixture
def live_url(monkeypatch) -> Iterator[str]:
    """WANDB_BASE_URL of a local port that accepts connections (and never answers)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        monkeypatch.setenv("WANDB_BASE_URL", url)
        yield url


@pytest.fixture
def dead_url(monkeypatch) -> str:
    """WANDB_BASE_URL of a closed local port: refused at once, no network needed."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("WANDB_BASE_URL", url)
    return url


def test_unreachable_server_falls_back_to_offline(tmp_path, monkeypatch, capsys, live_url):
    """The server accepts connections but W&B's init fails (a timeout, an outage)."""
    module, calls = fake_wandb(fail_online=True)
    monkeypatch.setitem(sys.modules, "wandb", module)
    monkeypatch.delenv("WANDB_MODE")
    from lionbench.tracking.wandb_run import WandbLogger

    monkeypatch.setattr(WandbLogger, "online_failed", False)
    assert run_inprocess(tmp_path, "logger.wandb.mode=online", "train.steps=10") == 0
    (d,) = run_dirs(tmp_path)
    assert summary(d)["status"] == "completed"
    assert [c[1] for c in calls if c[0] == "init"] == ["online", "offline"]
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "offline" in warnings[0]
    (run,) = runs_of(calls)
    assert any("train/loss" in data for data, _ in run.logged)


def test_real_wandb_offline_files_live_in_the_run_directory(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE")
    assert run_inprocess(tmp_path, "logger.wandb.mode=offline", "train.steps=5") == 0
    (d,) = run_dirs(tmp_path)
    assert len(list((d / "wandb").glob("offline-run-*"))) == 1  # what `wandb sync` takes


@pytest.mark.parametrize("env, expected", [("disabled", []), ("offline", ["offline"])])
def test_wandb_mode_environment_variable_is_respected_under_auto(
    tmp_path, monkeypatch, env, expected
):
    module, calls = fake_wandb()
    monkeypatch.setitem(sys.modules, "wandb", module)
    monkeypatch.setenv("WANDB_MODE", env)
    assert run_inprocess(tmp_path, "logger.wandb.mode=auto", "train.steps=5") == 0
    assert [c[1] for c in calls if c[0] == "init"] == expected
    if env == "disabled":  # explicit config wins over the environment
        assert run_inprocess(tmp_path / "b", "logger.wandb.mode=offline", "train.steps=5") == 0
        assert [c[1] for c in calls if c[0] == "init"] == ["offline"]


def test_dead_server_goes_offline_at_once(tmp_path, monkeypatch, capsys, dead_url):
    """A server that cannot be reached at all: online W&B is not even tried (it would wait for
    init_timeout and retry), one warning names the server, the run logs offline."""
    module, calls = fake_wandb()
    monkeypatch.setitem(sys.modules, "wandb", module)
    monkeypatch.delenv("WANDB_MODE")
    from lionbench.tracking.wandb_run import WandbLogger

    monkeypatch.setattr(WandbLogger, "online_failed", False)
    assert run_inprocess(tmp_path, "logger.wandb.mode=online", "train.steps=5") == 0
    assert [c[1] for c in calls if c[0] == "init"] == ["offline"]
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "unreachable" in warnings[0]
    assert dead_url.removeprefix("http://") in warnings[0]


def test_real_wandb_with_a_dead_server_logs_offline(tmp_path, monkeypatch, dead_url):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE")
    from lionbench.tracking.wandb_run import WandbLogger

    monkeypatch.setattr(WandbLogger, "online_failed", False)
    assert run_inprocess(tmp_path, "logger.wandb.mode=online", "train.steps=5") == 0
    (d,) = run_dirs(tmp_path)
    assert summary(d)["status"] == "completed"
    assert len(list((d / "wandb").glob("offline-run-*"))) == 1  # what `wandb sync` takes


def test_server_check_names_what_failed(monkeypatch, dead_url, live_url):
    from lionbench.tracking.wandb_run import wandb_server_unreachable

    assert wandb_server_unreachable() is None  # live_url was set last
    monkeypatch.setenv("WANDB_BASE_URL", dead_url)
    assert dead_url.removeprefix("http://") in (wandb_server_unreachable() or "")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:99999")
    assert "invalid port" in (wandb_server_unreachable() or "")


def test_wandb_variables_count_where_the_config_leaves_them_unset(tmp_path, monkeypatch, capsys):
    """WANDB_PROJECT lands in the run unless logger.wandb.project is set; the name leads with
    the recipe; an offline run says how to upload it (W&B's documented `wandb sync PATH`)."""
    module, calls = fake_wandb()
    monkeypatch.setitem(sys.modules, "wandb", module)
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_PROJECT", "myproj")
    assert run_inprocess(tmp_path / "a", "logger.wandb.mode=offline", "train.steps=3") == 0
    explicit = ["logger.wandb.mode=offline", "logger.wandb.project=mine", "train.steps=3"]
    assert run_inprocess(tmp_path / "b", *explicit, "sweep_name=s1") == 0
    first, second = runs_of(calls)
    assert first.kwargs["project"] == "myproj" and second.kwargs["project"] == "mine"
    assert first.kwargs["name"].startswith("gpt2-smoke-lion-")
    assert "tags" not in first.kwargs and "entity" not in first.kwargs  # W&B's env decides
    assert second.kwargs["group"] == "s1" and second.kwargs["tags"] == ["sweep:s1"]
    (d,) = run_dirs(tmp_path / "a")
    assert f"upload it with: wandb sync {d / 'wandb'}/offline-run-*" in capsys.readouterr().err
    # the W&B run is recorded, for a later sweep that reuses the run (test_wandb_group.py)
    assert (summary(d)["wandb_run"], summary(d)["wandb_mode"]) == ("myproj/fake123", "offline")
