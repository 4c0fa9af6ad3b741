"""End-to-end runs on tiny configs: run directory contract, pairing, determinism, statuses."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml
from helpers import metrics, run_dirs, run_inprocess, summary

SUMMARY_KEYS = {
    "status",
    "recipe",
    "scale",
    "optim",
    "impl",
    "lr",
    "weight_decay",
    "ratio",
    "betas",
    "seed",
    "batch_size",
    "steps",
    "final_train_loss",
    "final_val_loss",
    "best_val_loss",
    "loss_floor",
    "steps_to_target",
    "time_to_target_s",
    "steps_per_s",
    "examples_per_s",
    "opt_step_ms",
    "peak_mem_bytes",
    "optimizer_state_bytes",
    "n_params",
    "device",
    "torch_version",
    "lionbench_version",
    "started_at",
    "wall_s",
}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Lion and AdamW on the same seed, smoke scale."""
    results = tmp_path_factory.mktemp("pair")
    assert run_inprocess(results, "optim=lion", "train.target=4.0") == 0
    assert run_inprocess(results, "optim=adamw", "train.target=4.0") == 0
    dirs = {summary(d)["optim"]: d for d in run_dirs(results)}
    assert set(dirs) == {"lion", "adamw"}
    return dirs


def test_run_directory_contract(pair):
    for optim, d in pair.items():
        s = summary(d)
        assert not SUMMARY_KEYS - set(s), SUMMARY_KEYS - set(s)
        assert s["status"] == "completed" and s["optim"] == optim
        assert s["recipe"] == "gpt2" and s["scale"] == "smoke" and s["steps"] == 30
        assert d.parent.name == "gpt2" and d.name.startswith(f"smoke-{optim}-")
        cfg_text = (d / "config.yaml").read_text()
        assert "optim:" in cfg_text and "${" not in cfg_text  # resolved
        assert s["config"] == yaml.safe_load(cfg_text)  # the summary says what ran, too
        records = metrics(d)
        train = [r for r in records if r["split"] == "train"]
        val = [r for r in records if r["split"] == "val"]
        assert [r["step"] for r in train] == [5, 10, 15, 20, 25, 30]  # log_interval 5
        assert [r["step"] for r in val] == [0, 10, 20, 30]  # at init, then every 10
        assert s["final_train_loss"] == pytest.approx(train[-1]["loss"])
        assert s["final_val_loss"] == pytest.approx(val[-1]["loss"])
        assert s["best_val_loss"] == pytest.approx(min(r["loss"] for r in val))
        assert val[0]["loss"] == pytest.approx(math.log(128), abs=0.1)  # uniform at init
        assert all(r["ppl"] == pytest.approx(math.exp(r["loss"])) for r in val)
        times = [r["time_s"] for r in train]
        assert times == sorted(times) and times[0] > 0
        assert s["examples_per_s"] == pytest.approx(s["steps_per_s"] * s["batch_size"])
        assert s["tokens_per_s"] == pytest.approx(s["examples_per_s"] * 32)  # block_size 32
        assert s["opt_step_ms"] > 0 and s["n_params"] == 30_592
        assert 0 < s["loss_floor"] < val[-1]["loss"] < math.log(128) + 0.5
        assert s["gap_to_floor"] == pytest.approx(s["final_val_loss"] - s["loss_floor"])
        # steps-to-target: the first eval step at or below the target, else null
        reached = [r for r in val if r["loss"] <= 4.0]
        assert s["steps_to_target"] == (reached[0]["step"] if reached else None)


def test_lion_hyperparameters_follow_the_ratio(pair):
    lion, adamw = summary(pair["lion"]), summary(pair["adamw"])
    r = lion["ratio"]
    assert r == pytest.approx(3.0)  # conf/recipe/gpt2.yaml
    assert lion["lr"] == pytest.approx(adamw["lr"] / r)
    assert lion["weight_decay"] == pytest.approx(adamw["weight_decay"] * r)
    assert lion["betas"] == [0.9, 0.99] and adamw["betas"] == [0.9, 0.95]


def test_optimizer_state_is_half_of_adamw(pair):
    lion, adamw = summary(pair["lion"]), summary(pair["adamw"])
    assert lion["optimizer_state_bytes"] == 4 * lion["n_params"]  # one fp32 momentum
    # AdamW: two fp32 moments plus one step counter per parameter tensor
    assert 8 * adamw["n_params"] <= adamw["optimizer_state_bytes"] < 8.1 * adamw["n_params"]


def test_same_seed_same_weights_and_batches(pair, tmp_path):
    lion, adamw = summary(pair["lion"]), summary(pair["adamw"])
    assert lion["init_state_hash"] == adamw["init_state_hash"]
    assert lion["first_batch_hash"] == adamw["first_batch_hash"]
    assert run_inprocess(tmp_path, "optim=lion", "seed=1") == 0
    other = summary(run_dirs(tmp_path)[0])
    assert other["init_state_hash"] != lion["init_state_hash"]
    assert other["first_batch_hash"] != lion["first_batch_hash"]


def test_same_config_twice_gives_identical_metrics(pair, tmp_path):
    assert run_inprocess(tmp_path, "optim=lion", "train.target=4.0") == 0
    again = run_dirs(tmp_path)[0]
    assert again.name == pair["lion"].name  # the directory name is derived from the config

    def losses(d):
        return [(r["step"], r["split"], r["loss"]) for r in metrics(d)]

    assert losses(again) == losses(pair["lion"])


def test_finished_run_is_skipped(pair, capsys):
    results = pair["lion"].parent.parent
    before = (pair["lion"] / "summary.json").read_text()
    assert run_inprocess(results, "optim=lion", "train.target=4.0") == 0
    assert "already completed" in capsys.readouterr().out
    assert (pair["lion"] / "summary.json").read_text() == before


def test_unfinished_run_starts_over(tmp_path):
    assert run_inprocess(tmp_path, "optim=adamw") == 0
    d = run_dirs(tmp_path)[0]
    complete = metrics(d)
    # Simulate a run killed mid-way: no summary and a torn metrics file.
    (d / "summary.json").unlink()
    with (d / "metrics.jsonl").open("a") as f:
        f.write('{"step": 99, "spl')
    assert run_inprocess(tmp_path, "optim=adamw") == 0
    redone = metrics(d)
    assert len(redone) == len(complete)
    assert [dict(r, time_s=0) for r in redone] == [dict(r, time_s=0) for r in complete]
    assert summary(d)["status"] == "completed"


def test_a_run_killed_in_setup_is_not_started_and_the_same_command_starts_it(tmp_path, monkeypatch):
    from lionbench.commands.screen import problem_line
    from lionbench.loop import train
    from lionbench.record import Status
    from lionbench.run.rundir import NOT_STARTED, RunDir

    def status_of(d):
        return RunDir(d).status()

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # like a kill: the process ends, no summary is written

    monkeypatch.setattr(train, "build", killed)  # during setup, before step 0's eval
    with pytest.raises(KeyboardInterrupt):
        run_inprocess(tmp_path, "optim=adamw")
    (d,) = run_dirs(tmp_path)
    assert (d / NOT_STARTED).is_file() and not (d / "summary.json").exists()
    assert status_of(d) == Status.NOT_STARTED and status_of(d).problem
    assert problem_line(d) == (
        f"not_started: {d} (interrupted before step 1, nothing trained: run the same command "
        f"again to start it, or delete the directory)"
    )
    monkeypatch.undo()
    monkeypatch.setattr(train, "window_edge", killed)  # right after step 1
    with pytest.raises(KeyboardInterrupt):
        run_inprocess(tmp_path, "optim=adamw")
    assert not (d / NOT_STARTED).exists()  # the first step was done
    monkeypatch.undo()
    assert run_inprocess(tmp_path, "optim=adamw") == 0
    assert summary(d)["status"] == "completed" and status_of(d) == Status.COMPLETED
    assert [r["step"] for r in metrics(d) if r["split"] == "val"] == [0, 10, 20, 30]


def test_divergence_stops_the_run_with_exit_code_3(tmp_path):
    code = run_inprocess(tmp_path, "optim=lion", "optim.lr=50", "sched.warmup_steps=0")
    assert code == 3
    s = summary(run_dirs(tmp_path)[0])
    assert s["status"] == "diverged"
    assert s["diverged_at_step"] is not None and s["steps"] == s["diverged_at_step"] < 30
    # A diverged run is finished: running it again trains nothing and reports it again.
    assert run_inprocess(tmp_path, "optim=lion", "optim.lr=50", "sched.warmup_steps=0") == 3


def test_token_files_and_synthetic_data(tmp_path):
    data = tmp_path / "tokens"
    data.mkdir()
    rng = np.random.default_rng(0)
    rng.integers(0, 100, 5000).astype(np.uint16).tofile(data / "train.bin")
    rng.integers(0, 100, 1000).astype(np.uint16).tofile(data / "val.bin")
    (data / "meta.json").write_text(json.dumps({"vocab_size": 100}))
    assert run_inprocess(tmp_path / "r", "data=tokens", f"data.dir={data}") == 0
    assert run_inprocess(tmp_path / "r", "data=synthetic", "optim=adamw") == 0
    by_data = {summary(d)["data"]: summary(d) for d in run_dirs(tmp_path / "r")}
    assert by_data["tokens"]["status"] == "completed"
    assert by_data["tokens"]["loss_floor"] is None
    assert by_data["tokens"]["data_info"] == {"train_tokens": 5000, "val_tokens": 1000}
    # one repeated random batch: the model memorises it, the loss falls fast
    assert by_data["synthetic"]["final_train_loss"] < math.log(128)


def test_grad_accumulation_matches_the_full_batch(tmp_path):
    """batch 8 in one micro-batch or in 4 micro-batches of 2: the same updates (fp32 noise)."""
    assert run_inprocess(tmp_path / "a", "optim=adamw", "train.steps=10") == 0
    assert run_inprocess(tmp_path / "b", "optim=adamw", "train.steps=10", "train.grad_accum=4") == 0
    (a,), (b,) = run_dirs(tmp_path / "a"), run_dirs(tmp_path / "b")
    la = [r["loss"] for r in metrics(a)]
    lb = [r["loss"] for r in metrics(b)]
    assert la == pytest.approx(lb, rel=1e-4)


def test_scale_full_on_a_cpu_is_warned_before_training():
    """A user who leaves scale=full on a CPU hears it before the first step; a GPU does not."""
    import torch

    from lionbench import config
    from lionbench.run.runner import setup_warnings

    cfg = config.compose(["scale=full", "recipe=vit"])
    (line,) = setup_warnings(cfg, torch.device("cpu"))
    assert line.startswith("scale=full on a CPU: the published vit size")
    assert setup_warnings(cfg, torch.device("cuda")) == []
    assert setup_warnings(config.compose(["scale=small"]), torch.device("cpu")) == []


def test_an_lr_warmup_beyond_the_run_is_said_once_before_training(tmp_path, capsys):
    assert run_inprocess(tmp_path, "optim=adamw", "train.steps=4", "sched.warmup_steps=6") == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if "sched.warmup_steps" in ln]
    assert err == [
        "warning: sched.warmup_steps=6 is beyond train.steps=4: the lr is still warming up "
        "when the run ends and never reaches optim.lr (lower sched.warmup_steps, or raise "
        "train.steps)"
    ]


def test_a_run_shorter_than_its_timing_warmup_records_no_speed(tmp_path, capsys):
    """Zero timed steps: one warning before training and no speed figure at all (a rate from
    warm steps would be compilation's, not the optimizer's)."""
    assert run_inprocess(tmp_path, "optim=adamw", "train.steps=3", "timing.warmup_steps=3") == 0
    (d,) = run_dirs(tmp_path)
    s = summary(d)
    assert s["timed_steps"] == 0 and s["steps_per_s"] is None and s["examples_per_s"] is None
    assert s["timing_contended"] is None and s["train_time_s"] > 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if "timing.warmup_steps" in ln]
    assert err == [
        "warning: timing.warmup_steps=3 is not below train.steps=3: no step is timed, so this "
        "run records no speed (steps/s, time to target); lower timing.warmup_steps"
    ]


def test_a_run_records_what_its_timing_shared_the_machine_with(tmp_path):
    """Other processes' CPU time during the timed window, the cores it needed, the load: what
    the report judges a speed by (loop/exposure.py)."""
    assert run_inprocess(tmp_path, "optim=adamw", "train.steps=20") == 0
    (d,) = run_dirs(tmp_path)
    s = summary(d)
    e = s["timing_exposure"]
    assert e["others_cpu_cores"] >= 0 and e["cpu_count"] >= 1 and e["window_s"] > 0
    assert 1 <= e["needed_cores"] <= e["cpu_count"]
    assert isinstance(s["timing_contended"], bool)
    assert (s["timing_note"] is None) == (not s["timing_contended"])


def test_result_files_follow_the_users_umask(tmp_path):
    """summary.json, config.yaml and metrics.jsonl get the mode open() would give (0644 under
    the usual umask 022), not mkstemp's 0600: on a shared cluster the group reads them."""
    import os
    import stat

    mask = os.umask(0o022)
    os.umask(mask)
    assert run_inprocess(tmp_path, "train.steps=2") == 0
    (d,) = run_dirs(tmp_path)
    for name in ("summary.json", "config.yaml", "metrics.jsonl"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o666 & ~mask, name


# ------------------------------------------------------------------------------ git revision


def _git(cwd, *args: str) -> str:
    import subprocess

    ident = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    return subprocess.run(
        ["git", *ident, *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A git repository with a committed `lionbench/` package and a `venv/.../lionbench` copy."""
    for pkg in (tmp_path / "lionbench", tmp_path / "venv" / "site" / "lionbench"):
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "lionbench")
    _git(tmp_path, "commit", "-q", "-m", "x")
    return tmp_path


def test_git_rev_is_the_checkouts_commit_and_says_dirty(repo):
    from lionbench.run.revision import checkout_revision

    head = _git(repo, "rev-parse", "--short", "HEAD")
    assert checkout_revision(repo / "lionbench") == head
    (repo / "lionbench" / "__init__.py").write_text("x = 1\n")
    assert checkout_revision(repo / "lionbench") == head + "-dirty"


def test_an_installed_copy_inside_another_repository_is_not_its_checkout(repo):
    from lionbench.run.revision import checkout_revision, recorded_revision

    installed = repo / "venv" / "site" / "lionbench"
    assert checkout_revision(installed) is None
    assert recorded_revision(installed) is None
    (installed / "_revision.txt").write_text("abc1234\n")  # what setup.py writes into a wheel
    assert recorded_revision(installed) == "abc1234"


def test_setup_py_writes_the_revision_where_the_installed_package_reads_it(tmp_path, monkeypatch):
    """The wheel's build hook, run on this checkout into a scratch build directory."""
    import runpy
    from pathlib import Path

    import setuptools
    from setuptools.command.build_py import build_py
    from setuptools.dist import Distribution

    from lionbench.run.revision import checkout_revision, recorded_revision

    root = Path(__file__).resolve().parents[1]
    monkeypatch.setattr(setuptools, "setup", lambda **kw: None)
    hook = runpy.run_path(str(root / "setup.py"), run_name="setup_under_test")
    expected = checkout_revision(root / "lionbench")
    if expected is None:
        pytest.skip("not a git checkout")
    monkeypatch.setattr(build_py, "run", lambda self: None)  # the modules themselves: not needed
    cmd = hook["BuildPyWithRevision"](Distribution())
    cmd.build_lib = str(tmp_path)
    (tmp_path / "lionbench").mkdir()
    cmd.run()
    assert recorded_revision(tmp_path / "lionbench") == expected


def test_a_multirun_runs_seed_by_seed_every_optimizer_within_each_seed(
    tmp_path, monkeypatch, capsys
):
    """`optim=lion,adamw seed=0,1`: Hydra's basic sweeper varies the first override slowest,
    so lionbench puts the seed first; one optimizer's block after the other's would let the
    machine's drift pass for a speed difference."""
    from lionbench.config import seeds_first
    from lionbench.run import runner

    order = []
    real = runner.run

    def record(cfg):
        order.append((cfg.seed, cfg.optim.name))
        return real(cfg)

    monkeypatch.setattr(runner, "run", record)
    assert run_inprocess(tmp_path, "-m", "optim=lion,adamw", "seed=0,1", "train.steps=4") == 0
    assert order == [(0, "lion"), (0, "adamw"), (1, "lion"), (1, "adamw")]
    # One closing table and one next step that fits what ran (both optimizers: the report),
    # no per-run "run the same command with optim=adamw" after each run.
    out = capsys.readouterr().out
    assert out.count("multirun: 4 run(s)") == 1
    assert f"next: lionbench report {tmp_path}" in out
    assert "with optim=adamw" not in out and "next: compare" not in out
    assert seeds_first(["-m", "optim=a,b", "--config-dir", "c", "seed=0,1"]) == [
        "-m", "--config-dir", "c", "seed=0,1", "optim=a,b"
    ]  # fmt: skip
