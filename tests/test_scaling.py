"""The size ladder (`recipe.size`), data budgets (`train.budget`) and `lionbench study scaling`:
what a size and a budget set, that they leave every earlier run's identity alone, the study's
bad input, its plan and cost, and a real tiny grid at smoke scale (two sizes, one budget, two
confirmation seeds) trained, resumed and reported."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from helpers import SMOKE, cli_inprocess, run_dirs, run_inprocess, summary

from lionbench import config
from lionbench.commands import scaling_cost
from lionbench.config.ladder import apply_size, sizes_of
from lionbench.errors import UserError
from lionbench.recipe import load_recipe
from lionbench.record import run_name
from lionbench.run.budget import apply_budget, budget_steps, parameter_count

GPT2_SMOKE = ["recipe=gpt2", "scale=smoke", "optim=adamw"]


def composed(*overrides: str):
    cfg = config.compose([*GPT2_SMOKE, *overrides])
    apply_size(cfg, overrides)
    config.validate(cfg)
    return cfg


def plain(cfg) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


# ------------------------------------------------------------------------------ the ladder


def test_size_sets_the_model_shape_and_the_run_name():
    cfg = composed("recipe.size=l3w64")
    m = cfg.recipe.model
    assert (m.n_layer, m.n_head, m.n_embd) == (3, 4, 64)
    assert (m.block_size, m.vocab_size) == (32, 128)  # the scale's context and vocabulary
    assert run_name(plain(cfg), "cpu").startswith("smoke-l3w64-adamw-")


@pytest.mark.parametrize("recipe", ["gpt2", "vit", "resnet50", "unet"])
def test_every_ladder_rung_builds_and_grows(recipe):
    """Each rung is a valid model of the recipe, and the ladder is listed small to large."""
    cfg = config.compose([f"recipe={recipe}", "scale=small", "optim=adamw"])
    counts = []
    for size in sizes_of(cfg):
        sized = config.compose([f"recipe={recipe}", "scale=small", f"recipe.size={size}"])
        apply_size(sized)
        config.validate(sized)
        recipe_obj = load_recipe(sized)
        recipe_obj.check()
        counts.append(parameter_count(recipe_obj))
    assert len(counts) >= 4 and counts == sorted(counts), counts


def test_a_size_and_its_shape_spelled_out_are_one_run():
    """recipe.size and train.budget are left out of the identity (their effect is in the model
    and train.steps): the same run either way, and runs from before the keys keep their names."""
    sized = plain(composed("recipe.size=l2w48", "train.steps=30"))
    spelled = plain(composed("recipe.model.n_head=3", "recipe.model.n_embd=48", "train.steps=30"))
    assert run_name(sized, "cpu").rsplit("-", 1)[1] == run_name(spelled, "cpu").rsplit("-", 1)[1]
    default = plain(composed())
    before = json.loads(json.dumps(default))
    for key in ("size", "sizes", "data_per_param"):
        del before["recipe"][key]
    del before["train"]["budget"]
    assert run_name(default, "cpu") == run_name(before, "cpu")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["recipe.size=l2w33"], "unknown recipe.size 'l2w33'; did you mean 'l2w32'?"),
        (["recipe.size=l2w48", "recipe.model.n_embd=64"], "recipe.size=l2w48 sets recipe.model"),
        (["train.budget=1", "train.steps=5"], "train.budget=1 sets train.steps (drop one)"),
        (["train.budget=0"], "train.budget must be > 0"),
        (["train.budget=1", "recipe.data_per_param=null"], "has no recipe.data_per_param"),
    ],
)
def test_size_and_budget_bad_input(overrides, message):
    cfg = config.compose([*GPT2_SMOKE, *overrides])
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        apply_size(cfg, overrides)
        apply_budget(cfg, load_recipe(cfg), overrides)


# ------------------------------------------------------------------------------ budgets


def test_budget_sets_steps_from_the_parameters_and_the_tokens_a_step_sees():
    cfg = composed("recipe.size=l2w48", "train.budget=0.5")
    recipe = load_recipe(cfg)
    model = recipe.build_model()
    params = sum(p.numel() for p in model.parameters())  # tied embedding counted once
    assert parameter_count(recipe) == params
    steps, counted, data = budget_steps(cfg, recipe)
    tokens_per_step = cfg.train.batch_size * cfg.recipe.model.block_size
    assert steps == math.ceil(0.5 * 20 * params / tokens_per_step)
    assert counted == params and data == steps * tokens_per_step  # what the steps train on
    apply_budget(cfg, recipe)
    assert cfg.train.steps == steps


def test_a_run_with_a_budget_records_what_it_trained(tmp_path):
    """Through Hydra's own composition (the job's config), not only the launcher's check."""
    assert run_inprocess(tmp_path, "recipe.size=l2w32", "train.budget=0.01") == 0
    (run,) = run_dirs(tmp_path)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["recipe"]["size"] == "l2w32" and cfg["train"]["budget"] == 0.01
    steps = math.ceil(0.01 * 20 * 30592 / (8 * 32))  # smoke's l2w32: 30,592 parameters
    assert summary(run)["steps"] == cfg["train"]["steps"] == steps


# ------------------------------------------------------------------------ the study's input


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sizes", "l2w32,nope"], "unknown recipe.size 'nope'"),
        (["--sizes", "l2w32,l2w32"], "--sizes has repeated names"),
        (["--budgets", "0"], "--budgets"),
        (["--sizes", "l2w32", "recipe.size=l2w48"], "the study sets recipe.size"),
        (["--sizes", "l2w32", "train.steps=5"], "the study sets train.steps"),
        (["--sizes", "l2w32", "--optims", "adamw"], "adamw is the baseline"),
        (["--sizes", "l2w32", "--probe-steps", "-1"], "--probe-steps must be"),
        (["--sizes", "l2w32", "--probe-steps", "2"], "--probe-steps 2 times nothing"),
    ],
)
def test_study_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    code = cli_inprocess("study", "scaling", *args, *SMOKE, f"results_dir={tmp_path}")
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not any(tmp_path.iterdir())


def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(scaling_cost, "measure", lambda cfg: scaling_cost.Probe(100.0, 1.0, 0.01))
    args = ["--sizes", "l2w32,l2w48,l3w64", "--budgets", "1,2", "--dry-run"]
    code = cli_inprocess("study", "scaling", *args, *SMOKE, f"results_dir={tmp_path}")
    out = capsys.readouterr().out
    assert code == 0 and "--dry-run: nothing trained" in out
    plan = [line for line in out.splitlines() if line.startswith("  l")]
    assert len(plan) == 6 and plan[0].startswith("  l2w32 x1: 30,592 parameters, 611,840 tokens")
    # 3 x 3 selection runs... per point: AdamW's 3 lrs and Lion's 3 ratios on seed 0, then both
    # best settings on the 4 confirmation seeds
    assert "14 runs (+ up to 2 extension runs)" in plan[0]
    assert "total: 84 runs (up to 96 with extensions)" in out
    # smoke's builtin train split is 256 sequences of 32 targets: 611,840 tokens are 75 passes
    assert "611,840 tokens (2,390 steps, 75 passes over the train split)" in plan[0]
    assert "warning: 6 of 6 points pass over their train split more than 2 times" in out
    assert run_dirs(tmp_path) == []


# ------------------------------------------------------------------- a real tiny grid (CI)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two sizes x one budget at smoke, one grid point per optimizer, confirmation seeds 1, 2."""
    results = tmp_path_factory.mktemp("scaling")
    args = ["study", "scaling", "--sizes", "l2w32,l2w48", "--budgets", "0.02", "--ratios", "3",
            "--adamw-lrs", "1", "--max-extend", "0", "--seeds", "0", "--confirm-seeds", "1,2",
            *SMOKE, f"results_dir={results}"]  # fmt: skip
    assert cli_inprocess(*args) == 0
    return results, args


def test_tiny_grid_trains_every_point_and_writes_the_manifest(tiny):
    results, _ = tiny
    m = json.loads((results / "_studies" / "gpt2-smoke-scaling.json").read_text())
    assert m["kind"] == "scaling" and m["complete"] is True
    assert m["sizes"] == ["l2w32", "l2w48"] and m["budgets"] == [0.02]
    assert m["unit"] == "tokens" and m["per_param"] == 20
    assert [p["size"] for p in m["points"]] == ["l2w32", "l2w48"]
    for p in m["points"]:
        assert p["params"] < 70_000 and p["steps"] == math.ceil(0.02 * 20 * p["params"] / 256)
        for o in ("adamw", "lion"):
            dirs = p["optimizers"][o]["confirm_run_dirs"]
            seeds = sorted(summary(results / d)["seed"] for d in dirs)
            assert seeds == [1, 2]
            assert all(summary(results / d)["status"] == "completed" for d in dirs)
    assert len(run_dirs(results)) == 2 * (2 + 4)  # per point: 2 selection, 4 confirmation


def test_tiny_grid_again_trains_only_what_is_missing(tiny, capsys):
    results, args = tiny
    m = json.loads((results / "_studies" / "gpt2-smoke-scaling.json").read_text())
    lost = results / m["points"][1]["optimizers"]["lion"]["confirm_run_dirs"][0]
    (lost / "summary.json").unlink()  # as if the study had been stopped before this run ended
    for f in lost.iterdir():
        f.unlink()
    lost.rmdir()
    assert cli_inprocess(*args) == 0
    out = capsys.readouterr().out
    assert "12 runs, 1 trained, 11 already finished, 0 without a result" in out
    assert summary(lost)["status"] == "completed"


def test_no_time_estimate_when_the_runs_go_to_slurm():
    """A probe on the submitting machine (a login node) would time the wrong hardware: the plan
    says so instead of a figure."""
    from lionbench.commands.scaling_grid import Point
    from lionbench.commands.tuning import Sweep

    sw = Sweep("s", ["hydra/launcher=submitit_slurm"], [], "gpt2", "smoke", Path("r"), {}, [0],
               [1], 0, {"adamw": [1.0], "lion": [3.0]})  # fmt: skip
    assert scaling_cost.on_cluster(sw)
    assert scaling_cost.probe_sizes(sw, [Point("l2w32", 1.0, 10, 200, 5)]) == {}
    cost = scaling_cost.estimate(sw, [Point("l2w32", 1.0, 10, 200, 5)], {})
    *points, total = cost.lines("tokens")
    assert points == ["  l2w32 x1: 10 parameters, 200 tokens (5 steps); 4 runs (+ up to 0 "
                      "extension runs)"]  # fmt: skip
    assert total.endswith("time not estimated: the runs go to SLURM's nodes (a probe here would "
                          "time this machine)")  # fmt: skip


def test_list_shows_every_ladder_with_parameters_counted_once(tmp_path, monkeypatch, capsys):
    """`lionbench list` counts each rung's parameters once per version of the recipe's files
    (kept in the cache: a second listing imports no torch)."""
    from lionbench.commands import listing

    monkeypatch.setenv("LIONBENCH_CACHE", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "400")
    assert cli_inprocess("list") == 0
    out = capsys.readouterr().out
    assert "gpt2: l2w32 43.9k, l2w48 84.3k, l2w64 137k, l3w64 187k" in out
    assert "resnet50: r10 " in out and "unet: c16 " in out and "vit: w64 " in out
    monkeypatch.setattr(listing, "count_ladder", lambda recipe: pytest.fail("counted again"))
    assert listing.ladder_line("gpt2").startswith("gpt2: l2w32 43.9k, l2w48 84.3k")


def test_a_busy_probe_is_said_and_not_kept(tmp_path, capsys, monkeypatch):
    """The probe's run knows when its timed window shared the machine (loop/exposure.py): the
    plan says its estimate is too long, and the next plan probes again."""
    busy = scaling_cost.Probe(100.0, 1.0, 0.01, "other processes used 1.9 of 2 cores")
    monkeypatch.setattr(scaling_cost, "measure", lambda cfg: busy)
    args = ["--sizes", "l2w32", "--budgets", "1", "--dry-run", *SMOKE, f"results_dir={tmp_path}"]
    assert cli_inprocess("study", "scaling", *args) == 0
    out = capsys.readouterr().out
    assert "warning: the machine was busy while probing l2w32: the estimate is too long" in out
    kept = json.loads((tmp_path / "_studies" / "probes" / "gpt2-smoke-scaling.json").read_text())
    assert kept == {}
    quiet = scaling_cost.Probe(100.0, 1.0, 0.01)
    monkeypatch.setattr(scaling_cost, "measure", lambda cfg: quiet)
    assert cli_inprocess("study", "scaling", *args) == 0
    assert "probing l2w32" in capsys.readouterr().out  # probed again, and kept this time
    kept = json.loads((tmp_path / "_studies" / "probes" / "gpt2-smoke-scaling.json").read_text())
    assert list(kept.values()) == [{**quiet.__dict__}]
