"""W&B: the finished runs a sweep reuses join its W&B group (and get its `sweep:` tag).

A reused run is not trained again, so it was logged under the group of the sweep that trained
it. The W&B server is a stand-in `wandb` module whose `Api` keeps runs in a dict: no network.
One test runs two sweeps end to end (a stand-in for `launch.main` writes each run's summary as
a W&B-logged run leaves it); the others call the sweep rounds' `join_group` on run directories.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from helpers import SMOKE

from lionbench.commands import sweep as sweep_mod
from lionbench.commands import tuning
from lionbench.commands.sweep import Request
from lionbench.run import launch
from lionbench.run.rundir import RunDir
from lionbench.tracking import wandb_groups, wandb_run

OVERRIDES = [*SMOKE, "train.steps=10"]


class ApiRun:
    """A W&B public-API run: group and tags, written back to the server by `update()`."""

    def __init__(self, server: Server, path: str) -> None:
        self.server, self.path = server, path
        self.group, self.tags = server.runs[path]["group"], list(server.runs[path]["tags"])

    def update(self) -> None:
        self.server.updates.append(self.path)
        self.server.runs[self.path] = {"group": self.group, "tags": list(self.tags)}


class Server:
    """The W&B server behind `wandb.Api`; `error`: every request fails with it."""

    def __init__(self, error: Exception | None = None) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.updates: list[str] = []
        self.requests = 0
        self.error = error

    def module(self) -> types.ModuleType:
        server = self

        class Api:
            def __init__(self, timeout: int | None = None) -> None:
                pass

            def run(self, path: str) -> ApiRun:
                server.requests += 1
                if server.error is not None:
                    raise server.error
                if path not in server.runs:
                    raise ValueError(f"Could not find run {path}")  # RunNotFoundError's base
                return ApiRun(server, path)

        module = types.ModuleType("wandb")
        module.Api = Api  # type: ignore[attr-defined]
        return module


@pytest.fixture
def server(monkeypatch) -> Server:
    s = Server()
    monkeypatch.setitem(sys.modules, "wandb", s.module())
    monkeypatch.setattr(wandb_run, "wandb_server_unreachable", lambda *a, **k: None)
    monkeypatch.setattr(wandb_run.WandbLogger, "online_failed", False)
    return s


def train_as_sweep_a(monkeypatch, server: Server) -> None:
    """`launch.main` that finishes each run at once, as if logged to W&B online under its sweep's
    group: its summary.json names its W&B run, which is on the server."""

    def main(args: list[str], cfgs: Any = None) -> int:
        for cfg, path in launch.run_dirs(cfgs):
            path.mkdir(parents=True, exist_ok=True)
            w, name = f"me/proj/{path.name[-10:]}", cfg["sweep_name"]
            record = {"status": "completed", "final_val_loss": 1.0, "run_dir": str(path),
                      "schema_version": 2, "sweep_name": name, "wandb_run": w,
                      "wandb_mode": "online"}  # fmt: skip
            (path / "summary.json").write_text(json.dumps(record))
            server.runs[w] = {"group": name, "tags": [f"sweep:{name}"]}
        return 0

    monkeypatch.setattr(launch, "main", main)


def sweep(results: Path, name: str, mode: str = "disabled") -> int:
    """A 2-run sweep (one AdamW lr, one Lion ratio, one seed) named `name`, W&B in `mode`."""
    overrides = [*OVERRIDES, f"results_dir={results}", f"logger.wandb.mode={mode}"]
    return sweep_mod.run_sweep(
        Request([3.0], [0], overrides, name, adamw_lrs=[1.0], confirm_seeds=[], max_extend=0)
    )


def test_a_sweep_joins_the_runs_it_reuses_to_its_group(tmp_path, monkeypatch, server, capsys):
    """End to end: sweep b reuses the 2 runs sweep a trained (and logged in group a)."""
    train_as_sweep_a(monkeypatch, server)
    assert sweep(tmp_path, "a") == 0
    capsys.readouterr()
    assert sweep(tmp_path, "b", mode="online") == 0
    out = capsys.readouterr().out
    assert "selection: 2 runs, 2 already finished\nW&B: 2 reused run(s) joined group b\n" in out
    assert len(server.runs) == 2 and len(server.updates) == 2
    for run in server.runs.values():
        assert run == {"group": "b", "tags": ["sweep:a", "sweep:b"]}


# The rest calls join_sweep_group directly on run directories as sweep a left them.


def reused_runs(
    tmp_path: Path, server: Server, n: int = 3, wandb_mode: str | None = "online",
    synced: bool = True,
) -> list[Path]:  # fmt: skip
    """n finished runs trained by sweep a, logged to W&B in `wandb_mode` (None: W&B off)."""
    dirs = []
    for i in range(n):
        d = tmp_path / f"run{i}"
        d.mkdir(parents=True)
        w = f"me/proj/{tmp_path.name}{i}" if wandb_mode else None
        record = {"status": "completed", "run_dir": str(d), "schema_version": 2,
                  "sweep_name": "a", "wandb_run": w, "wandb_mode": wandb_mode}  # fmt: skip
        (d / "summary.json").write_text(json.dumps(record))
        if w and synced:
            server.runs[w] = {"group": "a", "tags": ["sweep:a", "mine"]}
        dirs.append(d)
    return dirs


def join(name: str, mode: str, dirs: list[Path]) -> None:
    tuning.join_group(name, [({"logger": {"wandb": {"mode": mode}}}, d) for d in dirs])


def test_joined_runs_keep_their_tags_and_a_second_join_sends_nothing(tmp_path, server, capsys):
    dirs = reused_runs(tmp_path, server)
    join("b", "online", dirs)
    assert capsys.readouterr().out == "W&B: 3 reused run(s) joined group b\n"
    assert all(r == {"group": "b", "tags": ["sweep:a", "mine", "sweep:b"]}
               for r in server.runs.values())  # fmt: skip
    join("b", "online", dirs)  # b again: the runs are in its group already
    assert len(server.updates) == 3 and capsys.readouterr().out == ""
    requests = server.requests
    join("a", "online", dirs)  # a's own runs were logged in its group: no request at all
    assert server.requests == requests and capsys.readouterr().out == ""


def test_a_network_error_is_one_warning_and_stops_the_requests(tmp_path, server, capsys):
    dirs = reused_runs(tmp_path, server)
    server.error = ConnectionError("Max retries exceeded with url: /graphql")
    join("b", "online", dirs)
    assert capsys.readouterr().err == (
        "warning: W&B: 3 of 3 reused run(s) could not be joined to group b (ConnectionError: "
        "Max retries exceeded with url: /graphql); the sweep goes on\n"
    )
    assert server.requests == 1  # no wait per run on a dead server
    assert {r["group"] for r in server.runs.values()} == {"a"}


def test_an_unreachable_server_is_one_warning_without_a_request(
    tmp_path, monkeypatch, server, capsys
):
    dirs = reused_runs(tmp_path, server)
    monkeypatch.setattr(
        wandb_run, "wandb_server_unreachable", lambda *a, **k: "api.wandb.ai:443: x"
    )
    join("b", "online", dirs)
    assert capsys.readouterr().err == (
        "warning: W&B: 3 reused run(s) could not be joined to group b (api.wandb.ai:443: x)\n"
    )
    assert server.requests == 0


def test_an_offline_or_disabled_sweep_changes_nothing(tmp_path, monkeypatch, server, capsys):
    dirs = reused_runs(tmp_path, server)
    monkeypatch.delitem(sys.modules, "wandb")  # never imported: nothing to send
    join("b", "offline", dirs)
    assert capsys.readouterr().out == (
        "W&B: 3 reused run(s) keep their earlier W&B group: this sweep logs offline and cannot "
        "change a W&B run; run the sweep again online to join them to b\n"
    )
    join("b", "disabled", dirs)
    assert capsys.readouterr().out == ""
    assert server.requests == 0 and {r["group"] for r in server.runs.values()} == {"a"}


def test_offline_runs_not_uploaded_and_runs_without_wandb_are_counted(tmp_path, server, capsys):
    unsynced = reused_runs(tmp_path / "o", server, 1, "offline", synced=False)
    synced = reused_runs(tmp_path / "s", server, 1, "offline")  # uploaded with `wandb sync`
    off = reused_runs(tmp_path / "x", server, 2, None)
    gone = reused_runs(tmp_path / "g", server, 1)
    del server.runs["me/proj/g0"]  # deleted on the server
    join("b", "online", [*unsynced, *synced, *off, *gone])
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "W&B: 2 reused run(s) have no W&B run to put in group b (W&B was off)",
        "W&B: 1 reused run(s) joined group b",
        "W&B: 1 reused run(s) were logged offline and are not on the W&B server yet: upload them "
        "with `wandb sync`, then run the sweep again to join them to b",
    ]
    assert err == (
        "warning: W&B: 1 reused run(s) not found on the W&B server (deleted, or in another "
        "project): not in group b\n"
    )
    assert server.runs["me/proj/s0"]["group"] == "b"


def test_runs_written_before_the_record_are_found_in_their_wandb_directory(tmp_path):
    d = tmp_path / "run"
    (d / "wandb" / "run-20260101_120000-abc123").mkdir(parents=True)
    (d / "wandb" / "offline-run-20260102_080000-def456").mkdir()
    (d / "config.yaml").write_text(
        "sweep_name: old\nrecipe:\n  name: gpt2\nlogger:\n  wandb:\n"
        "    mode: auto\n    project: mine\n    entity: team\n"
    )
    (d / "summary.json").write_text(json.dumps({"status": "completed", "sweep_name": "old"}))
    rundir = RunDir(d)

    def ref() -> wandb_groups.WandbRef | None:
        return wandb_groups.wandb_ref(rundir.read_summary(), rundir.wandb, rundir.read_config)

    assert ref() == wandb_groups.WandbRef("team/mine/def456", "offline", "old")
    (d / "wandb" / "offline-run-20260102_080000-def456").rmdir()
    assert ref() == wandb_groups.WandbRef("team/mine/abc123", "online", "old")
