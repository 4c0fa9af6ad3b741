"""`lionbench sweep`: equal tuning budgets, grids extended until the optimum is interior,
select-then-confirm with a manifest, interleaved order, and the overrides a sweep refuses.

One real (tiny) sweep checks the whole path end to end; the grid logic is also checked with a
stand-in for `launch.main` that writes summaries from a known loss curve, so that an interior and
a bound optimum are both exercised without training."""

from __future__ import annotations

import json
import math

import pytest
from helpers import SMOKE, cli_inprocess, run_cli, summary

from lionbench.commands import grid
from lionbench.commands import sweep as sweep_mod
from lionbench.commands.sweep import Request
from lionbench.run import launch
from lionbench.run.rundir import RunDir

TINY = [*SMOKE, "train.steps=10", "train.eval_interval=10"]


def record_launches(monkeypatch, fake_loss=None):
    """Record (seed, optimizer) of every multirun in launch order; with `fake_loss(optim, lr)`
    write a completed summary instead of training (and skip finished runs, as runs do)."""
    launches = []
    real = launch.main

    def main(args, cfgs=None):
        plain = launch.run_dirs(cfgs)
        launches.append((plain[0][0]["seed"], plain[0][0]["optim"]["name"], len(plain)))
        if fake_loss is None:
            return real(args, cfgs)
        for cfg, path in plain:
            if RunDir(path).status().finished:
                continue
            path.mkdir(parents=True, exist_ok=True)
            loss = fake_loss(cfg["optim"]["name"], cfg["optim"]["lr"])
            record = {"status": "completed", "final_val_loss": loss, "run_dir": str(path)}
            (path / "summary.json").write_text(json.dumps({**record, "schema_version": 2}))
        return 0

    monkeypatch.setattr(launch, "main", main)
    return launches


def manifest(results, name="gpt2-smoke-ratio-sweep"):
    return json.loads((results / "_sweeps" / f"{name}.json").read_text())


# ------------------------------------------------------------------ a real sweep, end to end

# recipe.adamw.lr far below the optimum: the larger AdamW lr and the smaller Lion ratio (larger
# Lion lr) always win, so both optima sit at an edge and stay there after one extension.
REAL = [*TINY, "recipe.adamw.lr=1e-5"]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    results = tmp_path_factory.mktemp("sweep")
    monkeypatch = pytest.MonkeyPatch()
    launches = record_launches(monkeypatch)
    try:
        code = sweep_mod.run_sweep(
            Request([3.0, 10.0], [0, 1], [*REAL, f"results_dir={results}"], max_extend=1)
        )
    finally:
        monkeypatch.undo()
    assert code == 0
    return results, launches


def test_equal_budget_interleaved_order_and_extension(swept):
    results, launches = swept
    # selection: seed 0 AdamW then Lion, seed 1 Lion then AdamW; 2 AdamW lrs for 2 ratios
    assert launches[:4] == [(0, "adamw", 2), (0, "lion", 2), (1, "lion", 2), (1, "adamw", 2)]
    # one extension point each, same interleaving; then confirmation on seeds 2, 3
    assert launches[4:8] == [(0, "adamw", 1), (0, "lion", 1), (1, "lion", 1), (1, "adamw", 1)]
    assert launches[8:] == [(2, "adamw", 1), (2, "lion", 1), (3, "lion", 1), (3, "adamw", 1)]
    m = manifest(results)
    adamw, lion = m["optimizers"]["adamw"], m["optimizers"]["lion"]
    assert adamw["initial_grid"] == [0.5, 1.0] and adamw["extended"] == [2.0]
    assert lion["initial_grid"] == [3.0, 10.0] and lion["extended"] == [1.5]
    assert (adamw["optimum"], adamw["edge"]) == ("bound", "high")
    assert (lion["optimum"], lion["edge"]) == ("bound", "low")
    assert adamw["best"]["lr_multiplier"] == 2.0 and adamw["best"]["lr"] == pytest.approx(2e-5)
    assert lion["best"]["ratio"] == 1.5


def test_adamw_runs_scale_optim_lr_and_keep_the_recipe_wd(swept):
    results, _ = swept
    adamw = [summary(results / d) for s in manifest(results)["optimizers"]["adamw"]["scores"]
             for d in s["run_dirs"]]  # fmt: skip
    assert sorted({s["lr"] / 1e-5 for s in adamw}) == pytest.approx([0.5, 1.0, 2.0])
    assert {s["weight_decay"] for s in adamw} == {0.1}


def test_confirmation_runs_the_two_best_settings_on_fresh_seeds(swept):
    results, _ = swept
    m = manifest(results)
    assert m["selection_seeds"] == [0, 1] and m["confirm_seeds"] == [2, 3]
    for optim, key in (("adamw", "lr"), ("lion", "ratio")):
        entry = m["optimizers"][optim]
        runs = [summary(results / d) for d in entry["confirm_run_dirs"]]
        assert sorted(s["seed"] for s in runs) == [2, 3]
        assert {s["status"] for s in runs} == {"completed"}
        best = summary(results / entry["best"]["run_dirs"][0])
        assert {s[key] for s in runs} == {best[key]}
        assert {s["sweep_name"] for s in runs} == {"gpt2-smoke-ratio-sweep"}


def test_a_second_identical_sweep_skips_everything(swept, capsys):
    results, _ = swept
    before = (results / "_sweeps" / "gpt2-smoke-ratio-sweep.json").read_text()
    code = sweep_mod.run_sweep(
        Request([3.0, 10.0], [0, 1], [*REAL, f"results_dir={results}"], max_extend=1)
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "completed: 0" in out and "skipped: 16" in out
    assert "adamw: best lr x2" in out and "optimum at the high bound" in out
    assert "lion: best ratio 1.5" in out and "optimum at the low bound" in out
    assert (results / "_sweeps" / "gpt2-smoke-ratio-sweep.json").read_text() == before


# ---------------------------------------------------------- the grid logic on a known curve


def test_an_edge_optimum_is_extended_until_interior(tmp_path, monkeypatch):
    base = 3e-3  # gpt2 smoke's recipe.adamw.lr
    # AdamW's best lr is 2x the recipe's, Lion's best ratio 5 (lr base / 5)
    curves = {"adamw": 2 * base, "lion": base / 5}
    launches = record_launches(monkeypatch, lambda o, lr: math.log(lr / curves[o]) ** 2)
    overrides = [*TINY, f"results_dir={tmp_path}"]
    assert sweep_mod.run_sweep(Request([10.0, 20.0], [0], overrides)) == 0
    m = manifest(tmp_path)
    adamw, lion = m["optimizers"]["adamw"], m["optimizers"]["lion"]
    assert adamw["grid"] == [0.5, 1.0, 2.0, 4.0] and adamw["best"]["lr_multiplier"] == 2.0
    assert lion["grid"] == [2.5, 5.0, 10.0, 20.0] and lion["best"]["ratio"] == 5.0
    assert adamw["optimum"] == lion["optimum"] == "interior"
    assert adamw["edge"] is None and lion["edge"] is None
    # the default confirmation: one fresh seed, numbered after the selection seed
    assert m["confirm_seeds"] == [1] and launches[-2:] == [(1, "adamw", 1), (1, "lion", 1)]


def test_any_candidates_get_the_baselines_budget_along_their_own_axis(tmp_path, monkeypatch):
    """`--optims lion,muon,sgd`: Lion along its ratios, Muon and SGD along lr multipliers of
    their recipe lrs, each grid as long as AdamW's, extended at its edge, and every best
    setting confirmed on the fresh seed; the runs of a seed alternate which optimizer leads."""
    base = {"adamw": 3e-3, "muon": 3e-3, "sgd": 0.3}  # gpt2 smoke's recipe lrs
    best = {"adamw": 2 * base["adamw"], "lion": base["adamw"] / 5, "muon": base["muon"] / 2,
            "sgd": 4 * base["sgd"]}  # fmt: skip
    launches = record_launches(monkeypatch, lambda o, lr: math.log(lr / best[o]) ** 2)
    req = Request([2.5, 5.0, 10.0], [0], [*TINY, f"results_dir={tmp_path}"],
                  optims=["lion", "muon", "sgd"], max_extend=1)  # fmt: skip
    assert sweep_mod.run_sweep(req) == 0
    m = manifest(tmp_path, "gpt2-smoke-lion-muon-sgd-sweep")
    opt = m["optimizers"]
    assert list(opt) == ["adamw", "lion", "muon", "sgd"]
    assert {o: len(e["initial_grid"]) for o, e in opt.items()} == dict.fromkeys(opt, 3)
    assert opt["lion"]["grid_key"] == "ratio" and opt["lion"]["best"]["ratio"] == 5.0
    assert opt["muon"]["grid_key"] == "lr_multiplier" and opt["muon"]["best"]["lr"] == 1.5e-3
    assert opt["sgd"]["grid"] == [0.5, 1.0, 2.0, 4.0] and opt["sgd"]["best"]["lr_multiplier"] == 4
    assert all(len(e["confirm_run_dirs"]) == 1 for e in opt.values())
    assert [o for seed, o, _ in launches if seed == 0][:4] == ["adamw", "lion", "muon", "sgd"]


def test_diverged_settings_count_as_inf_and_the_bound_is_reported(tmp_path, monkeypatch):
    # Lion: lower lr is always better, but ratio 10 "diverges"; AdamW's best is beyond 2 bounds
    def loss(optim, lr):
        return (
            math.inf
            if optim == "lion" and lr < 3e-3 / 9
            else -math.log(lr) * (1 if optim == "adamw" else -1)
        )

    record_launches(monkeypatch, loss)
    overrides = [*TINY, f"results_dir={tmp_path}"]
    code = sweep_mod.run_sweep(
        Request([3.0, 10.0], [0], overrides, adamw_lrs=[1.0, 2.0], confirm_seeds=[])
    )
    assert code == 0
    m = manifest(tmp_path)
    adamw, lion = m["optimizers"]["adamw"], m["optimizers"]["lion"]
    assert adamw["extended"] == [4.0, 8.0] and adamw["optimum"] == "bound"
    assert adamw["best"]["lr_multiplier"] == 8.0
    # ratio 10 diverged, so 3 was at the low edge; 1.5 is worse: 3 is interior
    assert lion["grid"] == [1.5, 3.0, 10.0] and lion["best"]["ratio"] == 3.0
    assert lion["optimum"] == "interior"
    assert lion["scores"][2]["mean_final_val_loss"] == "inf"
    assert adamw["confirm_run_dirs"] == [] and m["confirm_seeds"] == []


@pytest.mark.parametrize(
    "values,scores,expected",
    [
        ([1.0], {1.0: 0.5}, ("bound", "both", [0.5, 2.0])),
        ([3.0, 5.0, 10.0], {3.0: 2, 5.0: 1, 10.0: 3}, ("interior", None, [])),
        ([3.0, 5.0, 10.0], {3.0: 1, 5.0: 2, 10.0: 3}, ("bound", "low", [1.5])),
        ([0.5, 1.0], {0.5: math.inf, 1.0: math.inf}, ("none", None, [])),
    ],
)
def test_choose_and_beyond(values, scores, expected):
    c = grid.choose(values, scores)
    assert (c.position, c.edge, grid.beyond(values, c.edge, 2)) == expected


def test_default_adamw_multipliers_match_the_ratio_count():
    assert [grid.default_multipliers(n) for n in (1, 2, 3)] == [
        [1.0],
        [0.5, 1.0],
        [0.5, 1.0, 2.0],
    ]


def test_a_group_of_finished_runs_is_not_launched_again(tmp_path, monkeypatch, capsys):
    """On a cluster every launch queues jobs: a second sweep launches only the multiruns that
    hold a run still to train (here the Lion group of the one run whose summary is gone)."""
    launches = record_launches(monkeypatch, lambda o, lr: 1.0)
    overrides = [*TINY, f"results_dir={tmp_path}", "hydra/launcher=submitit_local"]

    def sweep(overrides: list[str]) -> int:
        return sweep_mod.run_sweep(
            Request([3.0, 10.0], [0, 1], overrides, confirm_seeds=[], max_extend=0)
        )

    assert sweep(overrides) == 0
    assert sorted(launches) == [(0, "adamw", 4), (0, "lion", 4)]  # parallel: one per optimizer
    launches.clear()
    assert sweep(overrides) == 0
    assert launches == []
    lion = manifest(tmp_path)["optimizers"]["lion"]["scores"][0]["run_dirs"][0]
    (tmp_path / lion / "summary.json").unlink()
    capsys.readouterr()
    assert sweep(overrides) == 0
    assert launches == [(0, "lion", 4)]
    assert "skipped: 7" in capsys.readouterr().out


# ------------------------------------------------------------------------------ bad input


def test_ratio_precision_keeps_close_ratios_apart(tmp_path, monkeypatch):
    launches = record_launches(monkeypatch, lambda o, lr: 1.0)
    overrides = [*TINY, f"results_dir={tmp_path}"]
    ratios = [3.0000001, 3.0000002]
    code = sweep_mod.run_sweep(Request(ratios, [0], overrides, max_extend=0))
    assert code == 0
    lion = manifest(tmp_path)["optimizers"]["lion"]
    assert [s["ratio"] for s in lion["scores"]] == ratios
    assert len({d for s in lion["scores"] for d in s["run_dirs"]}) == 2
    assert (0, "lion", 2) in launches


@pytest.mark.parametrize("override", ["optim.lr=1e-3", "optim.weight_decay=0", "optim.ratio=3"])
def test_derived_optimizer_overrides_are_refused(tmp_path, override, capsys):
    code = cli_inprocess(
        "sweep",
        "--ratios",
        "3,10",
        "--seeds",
        "0",
        *TINY,
        f"results_dir={tmp_path / 'r'}",
        override,
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    key = override.split("=")[0]
    assert len(err) == 1 and f"the sweep derives {key}" in err[0]
    assert "recipe.adamw.lr=" in err[0]
    assert not (tmp_path / "r").exists()


def test_cli_refuses_optim_lr_in_one_line(tmp_path):
    res = run_cli(
        "sweep", *TINY, f"results_dir={tmp_path / 'r'}", "optim.lr=1e-3", "--ratios", "3,10"
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: 'optim.lr=1e-3': the sweep derives")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--confirm-seeds", "1"], "--confirm-seeds 1 are also in --seeds"),
        (["--adamw-lrs", "0,1"], "--adamw-lrs must be > 0"),
        (["--max-extend", "-1"], "--max-extend must be >= 0"),
        (["--optims", "adamw"], "adamw is the baseline every sweep tunes"),
        (["--optims", "lion,moun"], "unknown --optims 'moun'; did you mean 'muon'?"),
        (["--optims", "lion,lion"], "--optims has repeated names"),
        (["--optims", "muon", "--lrs", "1,-2"], "--lrs must be > 0"),
    ],
)
def test_sweep_options_bad_input(tmp_path, args, expected):
    res = run_cli("sweep", *TINY, f"results_dir={tmp_path / 'r'}", "--seeds", "0,1", *args)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], res.stderr
    assert not (tmp_path / "r").exists()
