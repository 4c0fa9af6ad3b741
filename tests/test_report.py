"""The report package on run directories written by hand: old (schema 1) runs from the previous
release, other optimizers than Lion and AdamW, hyperparameters that split arms, and the choice
of the baseline arm. No training here: every run directory is a fixture or written below."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lionbench import report as report_mod
from lionbench.errors import UserError
from lionbench.record import RunSummary, Status, digest
from lionbench.run.rundir import NOT_STARTED, NOT_STARTED_FIX, NOT_STARTED_TEXT

SCHEMA1 = Path(__file__).parent / "data" / "schema1" / "results"
ADAMW = "adamw lr=0.003 wd=0.1"
RECIPE = {
    "name": "gpt2",
    "model": {"n_layer": 2, "n_embd": 32},
    "adamw": {"lr": 3e-3, "weight_decay": 0.1, "betas": [0.9, 0.95]},
    "lion": {"ratio": 3, "betas": [0.9, 0.99]},
}
DEFAULT_HP = {
    "adamw": {"betas": [0.9, 0.95], "eps": 1e-8},
    "lion": {"betas": [0.9, 0.99]},
    "sgd": {"momentum": 0.9, "nesterov": True},
    "adafactor": {"beta2_decay": -0.8, "d": 1.0},
}
DEFAULT_IMPL = {"adamw": "fused", "lion": "lionbench", "sgd": "foreach", "adafactor": "foreach"}


def write_run(
    root: Path,
    optim: str,
    lr: float,
    wd: float,
    seed: int,
    loss: float = 4.0,
    **opts: object,
) -> Path:
    """A finished run directory as lionbench writes it (schema 2 summary). `opts`: `hp`
    (hyperparameters), `impl`, `ratio`, `target` (a user `_target_`), `recipe` (blocks added
    to the recipe), `sps` (steps/s), `summary` (summary fields to override)."""
    hp = opts.get("hp", DEFAULT_HP.get(optim, {}))
    o = {"name": optim, "lr": lr, "weight_decay": wd, **hp}
    if opts.get("target"):
        o["_target_"] = opts["target"]
    else:
        o["impl"] = opts.get("impl", DEFAULT_IMPL[optim])
    if opts.get("ratio") is not None:
        o["ratio"] = opts["ratio"]
    cfg = {
        "seed": seed,
        "results_dir": str(root),
        "scale": "smoke",
        "sweep_name": None,
        "train": {"steps": 30, "batch_size": 8},
        "checkpoint": {"interval": 1000, "keep": False},
        "data": {"source": "builtin"},
        "recipe": {**RECIPE, **opts.get("recipe", {})},
        "optim": o,
        "logger": {"wandb": {"mode": "disabled"}},
    }
    d = root / "gpt2" / f"{optim}-lr{lr:g}-wd{wd:g}-s{seed}-{digest(cfg)}"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    curve = [loss + 3.0 * (30 - step) / 30 for step in (0, 10, 20, 30)]
    points = [
        {"step": step, "split": "val", "loss": v, "time_s": step * 0.1}
        for step, v in zip((0, 10, 20, 30), curve, strict=True)
    ]
    (d / "metrics.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))
    summary = RunSummary(
        status=Status.COMPLETED, recipe="gpt2", optim=optim, impl=o.get("impl", "target"),
        optim_target=opts.get("target"), lr=lr, weight_decay=wd, hyperparams=hp, seed=seed,
        device="cpu", steps=30, final_val_loss=loss, best_val_loss=loss, loss_floor=1.0,
        steps_per_s=opts.get("sps", 10.0), examples_per_s=80.0, opt_step_ms=1.0,
        peak_mem_bytes=10**9, optimizer_state_bytes=1000, n_params=100,
    )  # fmt: skip
    summary.update(**opts.get("summary", {}))
    (d / "summary.json").write_text(summary.to_json())
    return d


def one_setting(root: Path, **kwargs: object) -> report_mod.Setting:
    (setting,) = report_mod.report([root], None, [], [], quiet=True, **kwargs)
    return setting


# ----------------------------------------------------------------------------- schema 1 runs


def test_schema1_runs_from_the_previous_release_load_complete_and_share_one_setting(tmp_path):
    dirs = sorted(p.parent for p in SCHEMA1.glob("gpt2/*/config.yaml"))
    assert len(dirs) == 8
    configs = {d: yaml.safe_load((d / "config.yaml").read_text()) for d in dirs}
    assert all("schema_version" not in json.loads((d / "summary.json").read_text()) for d in dirs)
    (ckpt,) = [d for d, c in configs.items() if c["checkpoint"]["interval"] == 10]
    assert configs[ckpt]["optim"]["name"] == "lion" and configs[ckpt]["seed"] == 2

    setting = one_setting(SCHEMA1)  # one setting: the checkpoint.interval run joins it
    runs = setting.runs.set_index("run_dir")
    assert len(runs) == 8 and set(runs["status"]) == {"completed"}
    assert set(runs["schema_version"]) == {1}
    assert runs.loc[str(ckpt), "arm"] == "lion r=3"
    assert setting.baseline == ADAMW
    assert len(setting.warnings) == 1 and "different seed sets" in setting.warnings[0]
    table = setting.optimizers.set_index("arm")
    assert table["n"].to_dict() == {ADAMW: 3, "lion r=3": 3, "lion r=10": 2}
    assert table.loc["lion r=3", "seeds"] == "0,1,2"
    assert table.loc[ADAMW, "steps_per_s_vs_baseline"] == 1.0
    assert sorted(setting.sweep["ratio"]) == [3.0, 10.0]
    claims = setting.claims.set_index("claim")
    assert claims.loc["Lion's optimizer state is at most half of AdamW's", "verdict"] == "holds"
    assert set(setting.targets["arm"]) == set(table.index)

    out = tmp_path / "report"
    report_mod.report([SCHEMA1], out, [], [], quiet=True)
    for name in ("report.md", "report.html", "runs.csv", "optimizers_gpt2-smoke.csv"):
        assert (out / name).stat().st_size > 0, name
    for kind in ("ratio_sweep", "lr_sensitivity", "curves_step", "curves_time"):
        for ext in ("png", "svg"):  # named by the label, never the setting hash
            assert (out / f"{kind}_gpt2-smoke.{ext}").stat().st_size > 0, (kind, ext)
    assert not list(out.glob(f"*{setting.key}*"))  # no plot or table named by the hash
    assert "Baseline: adamw lr=0.003 wd=0.1" in (out / "report.md").read_text()


# ------------------------------------------------------------------------ any optimizer, arms


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """AdamW (the recipe's), SGD, Adafactor and Lion r=3, two seeds each, one setting."""
    for seed in (0, 1):
        write_run(tmp_path, "adamw", 3e-3, 0.1, seed, loss=4.0, sps=10.0)
        write_run(tmp_path, "sgd", 0.1, 5e-4, seed, loss=4.5, sps=20.0)
        write_run(tmp_path, "adafactor", 1e-2, 0.0, seed, loss=4.2, sps=8.0)
        write_run(tmp_path, "lion", 1e-3, 0.3, seed, loss=4.1, ratio=3, sps=12.0)
    return tmp_path


def test_sgd_and_adafactor_are_ordinary_arms_against_the_adamw_baseline(mixed, capsys):
    setting = one_setting(mixed)
    table = setting.optimizers.set_index("arm")
    assert set(table.index) == {ADAMW, "sgd lr=0.1 wd=0.0005", "adafactor lr=0.01 wd=0", "lion r=3"}
    assert (table["n"] == 2).all()
    assert setting.baseline == ADAMW and setting.warnings == []
    assert table.loc["sgd lr=0.1 wd=0.0005", "steps_per_s_vs_baseline"] == pytest.approx(2.0)
    assert table.loc["adafactor lr=0.01 wd=0", "steps_per_s_vs_baseline"] == pytest.approx(0.8)
    assert table["baseline"].to_dict()[ADAMW] and table["baseline"].sum() == 1
    assert not any(c.endswith("_vs_adamw") for c in table.columns)
    titles = list(report_mod.display_tables(setting))
    assert any(t.endswith(f"(baseline: {ADAMW})") for t in titles)


def test_baseline_option_switches_the_baseline_but_not_the_lion_claims(mixed):
    setting = one_setting(mixed, baseline="sgd")
    sgd = "sgd lr=0.1 wd=0.0005"
    assert setting.baseline == sgd  # no recipe.sgd block: its only arm
    table = setting.optimizers.set_index("arm")
    assert table.loc[sgd, "steps_per_s_vs_baseline"] == 1.0
    assert table.loc[ADAMW, "steps_per_s_vs_baseline"] == pytest.approx(0.5)
    assert setting.claims_baseline == ADAMW
    speed = setting.claims.set_index("claim").loc["steps/s higher than AdamW (paper: 2-15%)"]
    assert "AdamW 10 steps/s" in speed["evidence"]


def test_lion_claims_only_where_lion_ran(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path, "adamw", 3e-3, 0.1, seed)
        write_run(tmp_path, "sgd", 0.1, 5e-4, seed)
    setting = one_setting(tmp_path)
    assert setting.claims.empty and setting.sweep.empty
    assert not any(t.startswith("Claims") for t in report_mod.display_tables(setting))


def test_arms_differing_only_in_betas_are_two_arms_not_pooled_seeds(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path, "adamw", 3e-3, 0.1, seed, loss=4.0)
        hp = {"betas": [0.9, 0.99], "eps": 1e-8}  # only betas differ
        write_run(tmp_path, "adamw", 3e-3, 0.1, seed, loss=5.0, hp=hp)
    setting = one_setting(tmp_path)
    table = setting.optimizers.set_index("arm")
    recipe_betas = f"{ADAMW} betas=[0.9,0.95]"
    assert set(table.index) == {recipe_betas, f"{ADAMW} betas=[0.9,0.99]"}
    assert (table["n"] == 2).all() and (table["final_val_loss_std"] == 0).all()
    assert setting.baseline == recipe_betas  # the recipe block's betas


def test_by_a_hyperparameter_the_label_shows_names_it_once(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path, "adamw", 3e-3, 0.1, seed, loss=4.0)
        hp = {"betas": [0.9, 0.99], "eps": 1e-8}
        write_run(tmp_path, "adamw", 3e-3, 0.1, seed, loss=5.0, hp=hp)
    (setting,) = report_mod.report([tmp_path], None, [], ["optim.betas"], quiet=True)
    arms = set(setting.optimizers["arm"])
    assert arms == {f"{ADAMW} betas=[0.9,0.95]", f"{ADAMW} betas=[0.9,0.99]"}


def test_two_user_optimizer_arms_without_recipe_block_give_no_baseline(tmp_path):
    for lr in (1e-3, 1e-2):
        write_run(tmp_path, "myopt", lr, 0.0, 0, target="mypkg.MyOpt", hp={"gamma": 0.5})
    write_run(tmp_path, "adamw", 3e-3, 0.1, 0)
    setting = one_setting(tmp_path)
    assert set(setting.optimizers["arm"]) == {ADAMW, "myopt lr=0.001 wd=0", "myopt lr=0.01 wd=0"}
    setting = one_setting(tmp_path, baseline="myopt")
    assert setting.baseline is None
    assert any("several myopt arms" in w for w in setting.warnings)
    assert not any(c.endswith("_vs_baseline") for c in setting.optimizers.columns)


def test_impls_show_in_labels_and_the_default_impl_is_the_baseline(tmp_path, capsys):
    write_run(tmp_path, "adamw", 3e-3, 0.1, 0, impl="fused")
    write_run(tmp_path, "adamw", 3e-3, 0.1, 0, impl="foreach")
    report_mod.report([tmp_path], None, [], [])
    (setting,) = report_mod.report([tmp_path], None, [], [], quiet=True)
    assert set(setting.optimizers["arm"]) == {f"{ADAMW} [fused]", f"{ADAMW} [foreach]"}
    assert setting.baseline == f"{ADAMW} [fused]"
    assert "[fused]" in capsys.readouterr().out  # not eaten as rich markup


# ---------------------------------------------------------------------------------- baseline


def test_the_baseline_is_the_recipe_arm_even_when_another_adamw_lr_does_better(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path, "adamw", 3e-3, 0.1, seed, loss=4.0, sps=10.0)
        write_run(tmp_path, "adamw", 1e-2, 0.1, seed, loss=3.0, sps=20.0)
    setting = one_setting(tmp_path)
    assert setting.baseline == ADAMW
    table = setting.optimizers.set_index("arm")
    assert table.loc["adamw lr=0.01 wd=0.1", "steps_per_s_vs_baseline"] == pytest.approx(2.0)
    # default targets: the median run's curve over both arms at 25/50/75% of the evals; the
    # tightest (3.5) tells the arms apart: the better arm reaches it, the baseline never does
    assert sorted(setting.targets["target"].unique()) == pytest.approx([3.5, 4.5, 5.5])
    tight = setting.targets[setting.targets["target"] == 3.5].set_index("arm")
    assert tight.loc[ADAMW, "reached"] == "0/2"
    assert tight.loc["adamw lr=0.01 wd=0.1", "reached"] == "2/2"


def test_without_the_recipe_arm_there_is_no_baseline_and_no_ratio_columns(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path, "adamw", 1e-2, 0.1, seed, loss=3.0)
        write_run(tmp_path, "lion", 1e-3, 0.3, seed, ratio=3)
    setting = one_setting(tmp_path)
    assert setting.baseline is None
    assert any(w.startswith("no adamw baseline run in this setting") for w in setting.warnings)
    assert not any("vs_baseline" in c for c in setting.optimizers.columns)
    for table in report_mod.display_tables(setting).values():
        assert not any("vs baseline" in str(c) for c in table.columns)
    (with_target,) = report_mod.report([tmp_path], None, [3.5], [], quiet=True)
    assert "steps_vs_baseline" not in with_target.targets.columns


def test_a_recipe_block_picks_the_baseline_for_any_optimizer(tmp_path):
    block = {"sgd": {"lr": 0.05, "weight_decay": 5e-4}}
    for lr in (0.1, 0.05):
        write_run(tmp_path, "sgd", lr, 5e-4, 0, recipe=block)
    write_run(tmp_path, "adamw", 3e-3, 0.1, 0, recipe=block)
    assert one_setting(tmp_path, baseline="sgd").baseline == "sgd lr=0.05 wd=0.0005"


def test_an_unknown_baseline_name_is_a_user_error(mixed):
    with pytest.raises(UserError, match="did you mean 'sgd'"):
        report_mod.report([mixed], None, [], [], quiet=True, baseline="sdg")


# ----------------------------------------------------------------------------------- records


def test_a_summary_of_an_unknown_schema_is_corrupt_listed_and_not_counted(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path, "adamw", 3e-3, 0.1, seed)
    future = write_run(tmp_path, "adamw", 3e-3, 0.1, 2)
    data = json.loads((future / "summary.json").read_text())
    (future / "summary.json").write_text(json.dumps({**data, "schema_version": 99}))
    broken = tmp_path / "gpt2" / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text("optim: [unclosed")
    setting = one_setting(tmp_path)
    runs = setting.runs.set_index("run_dir")
    assert str(broken) not in runs.index  # no config, no setting: listed with the problems
    assert runs.loc[str(future), "status"] == "corrupt"
    assert "schema 99" in runs.loc[str(future), "error"]
    (row,) = setting.optimizers.to_dict("records")
    assert row["n"] == 2 and row["failed"] == 1
    runs, _ = report_mod.load_runs([tmp_path])
    problems = report_mod.problem_table(runs).set_index("run_dir")
    assert set(problems.index) == {str(future), str(broken)}
    assert set(problems["status"]) == {"corrupt"}
    assert problems.loc[str(broken), "error"].startswith("config.yaml:")


def test_the_config_in_the_summary_is_read_and_config_yaml_only_for_runs_without_it(tmp_path):
    """Runs written since the summary gained `config` carry their config there (one JSON read
    per run); a run from before, or one whose summary lacks it, is read from config.yaml."""
    new = write_run(tmp_path, "adamw", 3e-3, 0.1, 0)
    old = write_run(tmp_path, "adamw", 3e-3, 0.1, 1)
    cfg = yaml.safe_load((new / "config.yaml").read_text())
    data = json.loads((new / "summary.json").read_text())
    (new / "summary.json").write_text(json.dumps({**data, "config": cfg}))
    (new / "config.yaml").write_text("optim: [not read")  # the summary's copy is the one read
    runs, _ = report_mod.load_runs([tmp_path])
    runs = runs.set_index("run_dir")
    assert set(runs["status"]) == {"completed"}
    assert runs.loc[str(new), "lr"] == runs.loc[str(old), "lr"] == 3e-3
    assert runs.loc[str(new), "identity"] != runs.loc[str(old), "identity"]  # seeds 0 and 1
    (old / "config.yaml").write_text("optim: [unclosed")  # no copy in its summary: corrupt
    runs, _ = report_mod.load_runs([tmp_path])
    assert runs.set_index("run_dir").loc[str(old), "status"] == "corrupt"


def test_a_results_directory_of_only_unreadable_configs_is_listed_not_a_crash(tmp_path):
    d = tmp_path / "gpt2" / "broken"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text("just a string")
    assert report_mod.report([tmp_path], tmp_path / "out", [], [], quiet=True) == []
    assert "corrupt" in (tmp_path / "out" / "report.md").read_text()


def not_started_run(root: Path, scale: str = "full") -> Path:
    """A run directory as a kill during setup leaves it: config.yaml, an empty metrics.jsonl,
    the lock file, and (from this version on) the NOT_STARTED marker; no summary."""
    d = write_run(root / "killed", "lion", 1e-3, 0.3, 0, ratio=3)
    with_config(d, scale=scale)
    (d / "summary.json").unlink()
    (d / "metrics.jsonl").write_text("")
    (d / ".lock").write_text("{}")
    return d


@pytest.mark.parametrize("marker", [True, False], ids=["marker", "earlier-version"])
def test_a_run_killed_in_setup_is_a_problem_line_never_a_setting(tmp_path, marker):
    for optim, lr, wd in (("adamw", 3e-3, 0.1), ("lion", 1e-3, 0.3)):
        write_run(tmp_path, optim, lr, wd, 0, ratio=3 if optim == "lion" else None)
    d = not_started_run(tmp_path)  # scale=full: a setting of its own, were it one
    if marker:
        (d / NOT_STARTED).write_text(NOT_STARTED_TEXT)
    out = tmp_path / "out"
    settings = report_mod.report([tmp_path], out, [], [], quiet=True)
    assert [s.label for s in settings] == ["gpt2 smoke"]  # no `device=` section for it
    assert str(d) not in set(settings[0].runs["run_dir"])
    assert list(report_mod.overview(settings)["setting"]) == ["gpt2 smoke"]
    runs, _ = report_mod.load_runs([tmp_path])
    (line,) = report_mod.problem_table(runs).to_dict("records")
    assert line["status"] == "not_started" and line["run_dir"] == str(d)
    assert line["arm"] == "lion lr=0.001 wd=0.3"
    assert "run the same command again to start it" in line["error"]
    md = (out / "report.md").read_text()
    assert "device=" not in md and "nan" not in md
    sections = [line for line in md.splitlines() if line.startswith("## ")]
    assert sections == ["## gpt2 smoke", "## Diverged, failed and unfinished runs"]
    assert f"| not_started | gpt2 | lion lr=0.001 wd=0.3 | 0 | - | {line['error']} | {d} |" in md


def test_only_runs_killed_in_setup_give_problem_lines_not_a_crash(tmp_path):
    d = not_started_run(tmp_path, scale="smoke")
    assert report_mod.report([tmp_path], tmp_path / "out", [], [], quiet=True) == []
    assert (
        f"| not_started | gpt2 | lion lr=0.001 wd=0.3 | 0 | - | {NOT_STARTED_FIX} | {d} |"
        in (tmp_path / "out" / "report.md").read_text()
    )


def test_a_lion_run_with_its_lr_set_directly_is_not_labelled_by_ratio(tmp_path):
    write_run(tmp_path, "adamw", 3e-3, 0.1, 0)
    write_run(tmp_path, "lion", 1e-3, 0.3, 0, ratio=3)
    write_run(tmp_path, "lion", 2e-4, 0.3, 0, ratio=3)  # optim.lr overridden
    arms = set(one_setting(tmp_path).optimizers["arm"])
    assert arms == {ADAMW, "lion r=3", "lion lr=0.0002 wd=0.3"}


# ------------------------------------------------------------------------ the report as a document


def test_a_band_is_the_95_percent_t_interval_of_the_mean_not_min_max():
    from lionbench.report.plots import ci_band

    g = pd.DataFrame(
        {"step": [0, 0, 0, 10], "loss": [1.0, 2.0, 3.0, 5.0], "time_s": [0.0, 0.0, 0.0, 1.0]}
    )
    band = ci_band(g, "loss")
    half = 4.302653 / math.sqrt(3)  # t(0.975, 2) * sd 1 / sqrt(3)
    assert band.loc[0, "mean"] == pytest.approx(2.0)
    assert band.loc[0, "low"] == pytest.approx(2.0 - half, rel=1e-5)
    assert band.loc[0, "high"] == pytest.approx(2.0 + half, rel=1e-5)
    assert band.loc[10, "low"] == band.loc[10, "high"] == 5.0  # one seed: no band


def with_config(d: Path, **keys: object) -> None:
    """Add top-level config blocks to a written run (a schedule, a grad clip...)."""
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    for key, value in keys.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))


def test_settings_are_named_by_schedule_and_other_differing_keys_never_numbered(tmp_path):
    for seed in (0, 1):
        for sched in ("cosine", "constant"):
            for optim, lr, wd in (("adamw", 3e-3, 0.1), ("lion", 1e-3, 0.3)):
                d = write_run(
                    tmp_path / sched, optim, lr, wd, seed, ratio=3 if optim == "lion" else None
                )
                with_config(d, sched={"name": sched, "warmup_steps": 0})
        d = write_run(tmp_path / "clip", "adamw", 3e-3, 0.1, seed)
        with_config(d, sched={"name": "cosine", "warmup_steps": 0}, train={"grad_clip": 0.5})
    settings = report_mod.report([tmp_path], None, [], [], quiet=True)
    labels = sorted(s.label for s in settings)
    assert labels == [
        "gpt2 smoke sched=constant",
        "gpt2 smoke sched=cosine",
        "gpt2 smoke sched=cosine grad_clip=0.5",
    ]
    overview = report_mod.overview(settings)
    assert list(overview["setting"]) == [s.label for s in settings]
    row = overview.set_index("setting").loc["gpt2 smoke sched=cosine"]
    assert row["seeds"] == 2 and row["baseline"] == ADAMW
    assert row["verdict"].startswith("lion r=3: final val loss")


def test_the_html_opens_with_an_overview_and_colours_verdicts(mixed, tmp_path):
    out = tmp_path / "out"
    assert len(report_mod.report([mixed], out, [], [], quiet=True)) == 1
    text = (out / "report.html").read_text()
    overview = text.index("Overview: each setting")
    assert overview < text.index("<h2")  # before every section
    assert "<a href='#gpt2-smoke'>gpt2 smoke</a>" in text and "id='gpt2-smoke'" in text
    assert "@media print" in text
    assert "<span class=nsd>no significant difference</span>" in text
    assert "<th class=num>final val loss</th>" in text and "<th>optimizer</th>" in text
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {p[: -len(".png")] for p in pngs} == {p.name[: -len(".svg")] for p in out.glob("*.svg")}
    for name in pngs:
        assert f"({name})" in (out / "report.md").read_text()


def test_tables_are_named_by_the_setting_like_plots_and_linked_from_the_report(tmp_path):
    for sched in ("cosine", "constant"):
        for seed in (0, 1):
            for optim, lr, wd in (("adamw", 3e-3, 0.1), ("lion", 1e-3, 0.3)):
                ratio = 3 if optim == "lion" else None
                d = write_run(tmp_path / "r" / sched, optim, lr, wd, seed, ratio=ratio)
                with_config(d, sched={"name": sched, "warmup_steps": 0})
    out = tmp_path / "out"
    settings = report_mod.report([tmp_path / "r"], out, [], [], quiet=True)
    csvs = {p.name for p in out.glob("*.csv")}
    for slug in ("gpt2-smoke-sched-constant", "gpt2-smoke-sched-cosine"):
        assert {f"optimizers_{slug}.csv", f"comparisons_{slug}.csv"} <= csvs
        assert (out / f"optimizers_{slug}.parquet").exists()
    assert not [n for n in csvs for s in settings if s.key in n]  # never the hash
    md, page_html = (out / "report.md").read_text(), (out / "report.html").read_text()
    for name in csvs:  # every table linked from both, and every link a file
        assert f"]({name})" in md and f"href='{name}'" in page_html, name
    linked = set(re.findall(r"\]\(([^)]+\.csv)\)", md))
    assert linked == csvs
    section = md[md.index("## gpt2 smoke sched=cosine") :].split("\n## ")[0]
    assert "[optimizers_gpt2-smoke-sched-cosine.csv]" in section  # in its own section


def test_file_names_are_unique_and_safe_for_labels_that_slug_alike():
    from lionbench.report.plots import unique_slugs

    names = unique_slugs(["gpt2 smoke lr=1/2", "GPT2 smoke lr=1:2", "gpt2 smoke lr=1 2", "../x"])
    assert names == ["gpt2-smoke-lr-1-2", "gpt2-smoke-lr-1-2-2", "gpt2-smoke-lr-1-2-3", "x"]
    assert all(re.fullmatch(r"[a-z0-9.-]+", n) and not n.startswith(".") for n in names)


def test_verdict_words_are_coloured_and_numbers_right_aligned():
    from lionbench.report import page

    df = pd.DataFrame(
        {"optimizer": ["lion r=3", "sgd lr=0.1"], "estimate": ["-0.02 [-0.03, -0.01]", "-"],
         "seeds": ["0,1,2", "0,1"], "verdict": ["better", "worse (the reverse)"]}
    )  # fmt: skip
    html = page.table(df)
    assert "<th class=num>estimate</th>" in html and "<th>optimizer</th>" in html
    assert "<th>seeds</th>" in html  # a list of seeds is text
    assert "<span class=better>better</span>" in html
    assert "<span class=worse>worse</span>" in html


def test_curve_panels_are_train_loss_val_loss_and_top1_where_logged():
    from lionbench.report.plots import panels

    c = pd.DataFrame(
        [
            {"split": "train", "step": 5, "loss": 3.0, "lr": 0.1},
            {"split": "val", "step": 5, "loss": 3.1, "ppl": 22.2, "top1": 0.4, "ema_top1": 0.3},
        ]
    )
    assert panels(c) == [("train", "loss"), ("val", "loss"), ("val", "top1")]
    assert panels(c.drop(columns=["top1"])) == [("train", "loss"), ("val", "loss")]


@pytest.fixture
def sweep_runs(tmp_path: Path) -> Path:
    """AdamW at two lrs and Lion at two ratios, two seeds: all four plots of a setting."""
    for seed in (0, 1):
        write_run(tmp_path, "adamw", 3e-3, 0.1, seed, loss=4.0 + 0.01 * seed)
        write_run(tmp_path, "adamw", 6e-3, 0.1, seed, loss=3.9 + 0.01 * seed)
        for ratio in (3, 10):
            write_run(tmp_path, "lion", 3e-3 / ratio, 0.1 * ratio, seed, ratio=ratio,
                      loss=3.8 + 0.01 * ratio + 0.02 * seed)  # fmt: skip
    return tmp_path


def test_a_sweep_setting_gets_its_four_plots_in_order(sweep_runs, tmp_path):
    out = tmp_path / "out"
    (setting,) = report_mod.report([sweep_runs / "gpt2"], out, [], [], quiet=True)
    assert list(setting.plots) == [
        "curves by step", "curves by training time (s)", "lr sensitivity", "ratio sweep"
    ]  # fmt: skip
    assert all(p.parent == out and p.is_file() for p in setting.plots.values())
    assert len(list(out.glob("*.svg"))) == 4


def test_the_lr_plot_draws_one_line_per_arm_family_not_per_optimizer():
    """Two Lion betas at one lr must not become one line that jumps between them."""
    from lionbench.report.plots import lr_line

    assert lr_line("lion r=0.75 betas=[0.9,0.99]") == "lion betas=[0.9,0.99]"
    assert lr_line("lion r=0.375 betas=[0.95,0.98]") == "lion betas=[0.95,0.98]"
    assert lr_line("adamw lr=0.012 wd=0.1") == lr_line("adamw lr=0.003 wd=0.1") == "adamw wd=0.1"
