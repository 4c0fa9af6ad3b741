"""Sweeps and reports: idempotence, failure isolation, and report numbers recomputed by hand."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from helpers import SMOKE, run_cli, run_dirs, run_inprocess, summary

from lionbench import report as report_mod
from lionbench.commands import sweep as sweep_mod
from lionbench.commands.sweep import Request

TINY = [*SMOKE, "train.steps=10", "train.eval_interval=5"]


# The report tests below want the plain arms of a sweep (one AdamW setting, Lion per ratio), so
# the sweep's AdamW grid, extensions and confirmation are off here (tests/test_sweep.py).
PLAIN = {"adamw_lrs": [1.0], "max_extend": 0, "confirm_seeds": []}
PLAIN_CLI = ["--adamw-lrs", "1", "--max-extend", "0", "--confirm-seeds", "none"]


def tiny_sweep(results, ratios=(3.0, 10.0), seeds=(0, 1)):
    return sweep_mod.run_sweep(
        Request(list(ratios), list(seeds), [*TINY, f"results_dir={results}"], **PLAIN)
    )


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    results = tmp_path_factory.mktemp("sweep")
    assert tiny_sweep(results) == 0
    return results


def val_records(d):
    lines = (d / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == "val"]


def test_sweep_runs_adamw_per_seed_and_lion_per_ratio_and_seed(swept):
    got = sorted(
        (summary(d)["optim"], summary(d)["ratio"], summary(d)["seed"]) for d in run_dirs(swept)
    )
    assert got == sorted(
        [
            ("adamw", None, 0),
            ("adamw", None, 1),
            ("lion", 3.0, 0),
            ("lion", 3.0, 1),
            ("lion", 10.0, 0),
            ("lion", 10.0, 1),
        ]
    )
    assert {summary(d)["sweep_name"] for d in run_dirs(swept)} == {"gpt2-smoke-ratio-sweep"}


def test_second_sweep_trains_nothing(swept, capsys):
    stamps = {d: (d / "summary.json").stat().st_mtime_ns for d in run_dirs(swept)}
    assert tiny_sweep(swept) == 0
    out = capsys.readouterr().out
    assert "skipped: 6" in out and "completed: 0" in out
    assert {d: (d / "summary.json").stat().st_mtime_ns for d in run_dirs(swept)} == stamps


def test_report_numbers_match_an_independent_recomputation(swept, tmp_path):
    target = 4.7
    (setting,) = report_mod.report([swept], None, [target], [], quiet=True)
    final = {}  # arm -> final val losses, read straight from metrics.jsonl
    reached = {}
    for d in run_dirs(swept):
        s = summary(d)
        arm = (
            f"lion r={s['ratio']:g}"
            if s["optim"] == "lion"
            else (f"adamw lr={s['lr']:.3g} wd={s['weight_decay']:.3g}")
        )
        val = val_records(d)
        final.setdefault(arm, []).append(val[-1]["loss"])
        hit = [r["step"] for r in val if r["loss"] <= target]
        reached.setdefault(arm, []).append(hit[0] if hit else None)
    table = setting.optimizers.set_index("arm")
    assert set(table.index) == set(final)
    for arm, losses in final.items():
        assert table.loc[arm, "n"] == len(losses)
        assert table.loc[arm, "final_val_loss"] == pytest.approx(np.mean(losses))
        assert table.loc[arm, "final_val_loss_std"] == pytest.approx(np.std(losses, ddof=1))
    targets = setting.targets.set_index("arm")
    for arm, steps in reached.items():
        hits = [s for s in steps if s is not None]
        assert targets.loc[arm, "reached"] == f"{len(hits)}/{len(steps)}"
        if hits:
            assert targets.loc[arm, "steps_to_target"] == pytest.approx(np.mean(hits))
        else:
            assert math.isnan(targets.loc[arm, "steps_to_target"])  # never the budget
    sweep = setting.sweep.set_index("ratio")
    best = min((np.mean(v), float(k.split("=")[1])) for k, v in final.items() if "lion" in k)
    assert bool(sweep.loc[best[1], "best"])
    claims = setting.claims.set_index("claim")
    state = claims.loc["Lion's optimizer state is at most half of AdamW's"]
    assert state["verdict"] == "holds" and "ratio 0.500" in state["evidence"]


def test_report_writes_files(swept, tmp_path):
    out = tmp_path / "report"
    res = run_cli("report", str(swept), "--out", str(out), "--target", "4.7")
    assert res.returncode == 0, res.stderr
    for name in ("report.md", "report.html", "runs.csv", "problems.csv"):
        assert (out / name).stat().st_size > 0, name
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert any(n.startswith("curves_step") for n in pngs)
    assert any(n.startswith("curves_time") for n in pngs)
    assert any(n.startswith("ratio_sweep") for n in pngs)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(pngs)  # self-contained
    assert "Claims" in (out / "report.md").read_text()


def test_torn_missing_and_diverged_runs_are_reported_not_counted(swept, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(swept, results)
    dirs = run_dirs(results)
    torn, missing = dirs[0], dirs[1]
    text = (torn / "metrics.jsonl").read_text()
    (torn / "metrics.jsonl").write_text(text[: len(text) // 2])  # cut mid-line
    (torn / "summary.json").unlink()
    (missing / "summary.json").unlink()
    # same setting as the sweep (only the optimizer differs), absurd lr: diverges
    diverging = ["optim=lion", "optim.lr=50", "train.steps=10", "train.eval_interval=5"]
    assert run_inprocess(results, *diverging) == 3
    (setting,) = report_mod.report([results], None, [], [], quiet=True)
    runs = setting.runs.set_index("run_dir")
    assert runs.loc[str(torn), "status"] == "partial"
    assert runs.loc[str(missing), "status"] == "partial"
    assert (runs["status"] == "diverged").sum() == 1
    assert setting.optimizers["n"].sum() == 4  # 6 completed - 2 unfinished; diverged not counted
    assert setting.optimizers["diverged"].sum() == 1
    problems = report_mod.problem_table(setting.runs)
    assert sorted(problems["status"]) == ["diverged", "partial", "partial"]


def fail_lion_run(monkeypatch, ratio: float, seed: int) -> None:
    """Make the Lion run at this ratio and seed raise inside training (an injected failure)."""
    from lionbench.loop import train

    real = train.train

    def flaky(cfg, *args, **kwargs):
        if cfg.optim.name == "lion" and cfg.optim.ratio == ratio and cfg.seed == seed:
            raise RuntimeError("injected failure")
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(train, "train", flaky)


def test_a_failing_run_does_not_stop_the_sweep(tmp_path, monkeypatch, capsys):
    fail_lion_run(monkeypatch, ratio=10, seed=0)
    assert tiny_sweep(tmp_path) == 1  # non-zero only because a run failed
    statuses = sorted(summary(d)["status"] for d in run_dirs(tmp_path))
    assert statuses == ["completed"] * 5 + ["failed"]
    assert "failed: 1" in capsys.readouterr().out
    (setting,) = report_mod.report([tmp_path], None, [], [], quiet=True)
    assert (setting.runs["status"] == "failed").sum() == 1
    assert "injected failure" in report_mod.problem_table(setting.runs)["error"].iloc[0]


def sweep_cli(results, seeds, *extra, ratios="3"):
    """`lionbench sweep` (default: at ratio 3) in a subprocess, one AdamW setting."""
    return run_cli(
        "sweep", *TINY, f"results_dir={results}", "--ratios", ratios, "--seeds", seeds,
        *PLAIN_CLI, *extra,
    )  # fmt: skip


def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path):
    # one multirun per (seed, optimizer): two ratios give joblib two jobs at a time
    res = sweep_cli(tmp_path, "0,1", "--launcher", "joblib", ratios="3,10")
    assert res.returncode == 0, res.stderr
    dirs = run_dirs(tmp_path)
    assert len(dirs) == 6
    assert len({summary(d)["pid"] for d in dirs}) > 1


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--ratios", "3,x"], "--ratios must be a comma-separated list of floats"),
        (["--ratios", "0,3"], "--ratios must be > 0"),
        (["--seeds", "-1"], "--seeds must be >= 0"),
        (["--launcher", "slurm"], "unknown --launcher 'slurm'"),
        (["seed=3"], "sweep sets seed itself"),
        (["recipe=gpt3"], "unknown recipe 'gpt3'"),
    ],
)
def test_sweep_bad_input(tmp_path, args, expected):
    res = run_cli("sweep", *TINY, f"results_dir={tmp_path / 'r'}", *args)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], res.stderr
    assert not (tmp_path / "r").exists()


def test_report_bad_input(tmp_path):
    res = run_cli("report", str(tmp_path / "nope"))
    assert res.returncode == 2 and "does not exist" in res.stderr
    res = run_cli("report", str(tmp_path))
    assert res.returncode == 2 and "no run directories" in res.stderr


def test_submitit_local_launcher(tmp_path):
    """The cluster path through Hydra's submitit plugin, with its local executor."""
    res = sweep_cli(tmp_path, "0", "hydra/launcher=submitit_local")
    assert res.returncode == 0, res.stderr
    assert sorted(summary(d)["status"] for d in run_dirs(tmp_path)) == ["completed"] * 2
    assert "completed: 2" in res.stdout


def test_a_sweep_with_a_diverging_and_a_failing_run_finishes_the_others(
    tmp_path, monkeypatch, capsys
):
    fail_lion_run(monkeypatch, ratio=3, seed=0)
    # ratio 1e-4: Lion's lr is 10,000x AdamW's, which diverges within the first steps
    overrides = [*TINY, "train.log_interval=2", f"results_dir={tmp_path}"]
    assert sweep_mod.run_sweep(Request([3.0, 1e-4], [0, 1], overrides, **PLAIN)) == 1
    by_arm = {
        (summary(d)["optim"], summary(d)["ratio"], summary(d)["seed"]): summary(d)
        for d in run_dirs(tmp_path)
    }
    assert len(by_arm) == 6
    statuses = {k: s["status"] for k, s in by_arm.items()}
    assert statuses == {
        ("adamw", None, 0): "completed",
        ("adamw", None, 1): "completed",
        ("lion", 3.0, 0): "failed",
        ("lion", 3.0, 1): "completed",
        ("lion", 1e-4, 0): "diverged",
        ("lion", 1e-4, 1): "diverged",
    }
    for s in by_arm.values():
        if s["status"] == "diverged":
            assert 0 < s["diverged_at_step"] == s["steps"] < 10
    out = capsys.readouterr().out
    assert "failed: 1" in out and "diverged: 2" in out
    (setting,) = report_mod.report([tmp_path], None, [], [], quiet=True)
    problems = report_mod.problem_table(setting.runs)
    assert sorted(problems["status"]) == ["diverged", "diverged", "failed"]
    assert "injected failure" in " ".join(problems["error"].dropna())
