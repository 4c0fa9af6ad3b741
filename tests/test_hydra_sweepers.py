"""Hydra's sweepers that optimise a return value (Optuna): each job returns the run's objective,
the final value of `train.target_metric`, so the sweeper finds the best lr; its sampling grammar
(interval(), tag()) passes through the pre-check, which checks both ends of an interval."""

from __future__ import annotations

import math

import pytest
import yaml
from helpers import cli_inprocess, run_dirs, run_inprocess, summary
from omegaconf import OmegaConf

from lionbench.record import RunSummary, Status
from lionbench.run.launch import objective

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")

QUICK = ["optim=adamw", "train.steps=20", "train.eval_interval=10", "timing.warmup_steps=2"]


def optimization_results(results) -> dict:
    (path,) = results.glob("_multirun/*/optimization_results.yaml")
    return yaml.safe_load(path.read_text())


def test_optuna_finds_the_lr_with_the_lowest_final_val_loss(tmp_path):
    """The issue's example: a grid over three lrs; the sweeper used to optimise the exit code
    (best_value 0.0, the worst lr)."""
    code = run_inprocess(tmp_path, "-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid",
                         "optim.lr=choice(1e-4,1e-3,1e-2)", *QUICK)  # fmt: skip
    assert code == 0
    losses = {summary(d)["lr"]: summary(d)["final_val_loss"] for d in run_dirs(tmp_path)}
    assert len(losses) == 3
    best = optimization_results(tmp_path)
    assert best["best_params"]["optim.lr"] == min(losses, key=losses.get)
    assert best["best_value"] == pytest.approx(min(losses.values()))


def test_an_interval_search_samples_inside_it_and_returns_each_runs_loss(tmp_path):
    code = run_inprocess(tmp_path, "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2",
                         "hydra.sweeper.sampler.seed=0", "optim.lr=tag(log, interval(1e-4, 1e-2))",
                         *QUICK)  # fmt: skip
    assert code == 0
    runs = [summary(d) for d in run_dirs(tmp_path)]
    assert len(runs) == 2 and all(1e-4 <= r["lr"] <= 1e-2 for r in runs)
    best = optimization_results(tmp_path)
    assert best["best_value"] == pytest.approx(min(r["final_val_loss"] for r in runs))


def test_interval_without_a_sampling_sweeper_is_one_line(tmp_path, capsys):
    code = cli_inprocess("run", "-m", "optim.lr=interval(1e-4,1e-2)", "scale=smoke",
                         f"results_dir={tmp_path}")  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "interval() needs a sweeper that samples, e.g. hydra/sweeper=optuna" in err[0]
    assert not any(tmp_path.iterdir())


def test_an_interval_end_that_is_bad_input_is_caught_before_any_run(tmp_path, capsys):
    code = cli_inprocess("run", "-m", "hydra/sweeper=optuna", "optim.lr=interval(-1, 1e-2)",
                         "scale=smoke", f"results_dir={tmp_path}")  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "optim.lr" in err[0]
    assert not any(tmp_path.iterdir())


def cfg(metric: str = "loss") -> object:
    return OmegaConf.create({"train": {"target_metric": metric}})


def test_the_objective_is_the_target_metric_and_the_worst_value_when_a_run_did_not_complete():
    done = RunSummary(status=Status.COMPLETED, final_val_metrics={"loss": 3.5, "top1": 0.6},
                      final_ema_val_metrics={"top1": 0.7})  # fmt: skip
    assert objective(done, cfg(), False) == 3.5
    assert objective(done, cfg("top1"), True) == 0.6
    assert objective(done, cfg("ema_top1"), True) == 0.7
    for status in (Status.DIVERGED, Status.FAILED):
        run = RunSummary(status=status, final_val_metrics={"loss": 2.0})
        assert objective(run, cfg(), False) == math.inf  # never the best of a minimisation
        assert objective(run, cfg("top1"), True) == -math.inf  # nor of a maximisation
    assert objective(None, cfg(), False) == math.inf  # refused before it ran
    nan = RunSummary(status=Status.COMPLETED, final_val_metrics={"loss": math.nan})
    assert objective(nan, cfg(), False) == math.inf
