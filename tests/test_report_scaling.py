"""The report's scaling studies on run directories written by hand: no training. AdamW's final
val loss follows L_A(D) = c_k * 3 * D^-0.1 at every size (c_k a per-seed factor) and the
candidate's is AdamW's at a known multiple s of its data, L_C(D) = L_A(s * D), so the
effective-data speedup of every point and seed is s exactly (a power law is a straight line in
log-log: interpolation and extrapolation alike recover it). The statistics are checked against
scipy and numpy computed here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from lionbench import report as report_mod
from lionbench.report import figures, profile_view
from lionbench.report.scaling import read_scaling
from lionbench.report.scaling_fit import NEEDS_BUDGETS, TWO_SIZES, data_equivalent
from lionbench.report.scaling_plots import scaling_head
from lionbench.report.studies import read_studies
from lionbench.report.terminal import print_console

SEEDS = [1, 2, 3, 4]
SEED_FACTOR = {1: 1.0, 2: 1.01, 3: 0.99, 4: 1.02}  # AdamW's loss scale per seed
SEED_NOISE = {1: 0.05, 2: -0.03, 3: 0.01, 4: -0.03}  # log2 speedup per seed (sums to 0)
SIZES = {"l1w16": 1e4, "l2w32": 4e4, "l3w64": 1.6e5}  # 2 doublings apart
SIZE_NOISE = {"l1w16": 0.02, "l2w32": -0.04, "l3w64": 0.02}  # orthogonal to a line in log2 P
PER_PARAM = 20.0
SHRINK = 0.9  # the planted speedup's factor per doubling of parameters
START = 1.5  # the planted speedup at the smallest size


def planted_log2_speedup(size: str, seed: int) -> float:
    doublings = math.log2(SIZES[size] / min(SIZES.values()))
    return math.log2(START) + doublings * math.log2(SHRINK) + SIZE_NOISE[size] + SEED_NOISE[seed]


def adamw_loss(data: float, seed: int) -> float:
    return SEED_FACTOR[seed] * 3.0 * data**-0.1


def write_run(root: Path, name: str, optim: str, seed: int, size: str, loss: float) -> str:
    """A finished run directory (config, one val record, summary); `loss` inf: diverged. Its
    path relative to `root`, as a manifest names it."""
    n_layer, width = int(size[1]), int(size.split("w")[1])
    cfg = {
        "seed": seed, "results_dir": str(root), "scale": "small", "sweep_name": None,
        "train": {"steps": 100, "batch_size": 8}, "data": {"source": "builtin"},
        "recipe": {"name": "gpt2", "model": {"n_layer": n_layer, "n_embd": width},
                   "adamw": {"lr": 3e-3, "weight_decay": 0.1}, "lion": {"ratio": 3},
                   "budget_tag": name},
        "optim": {"name": optim, "lr": 3e-3, "weight_decay": 0.1},
        "logger": {"wandb": {"mode": "disabled"}},
    }  # fmt: skip
    d = root / "gpt2" / f"{name}-{optim}-s{seed}"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    finite = math.isfinite(loss)
    record = {"split": "val", "step": 100, "loss": loss if finite else 99.0, "time_s": 1.0}
    (d / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    summary = {
        "schema_version": 2, "status": "completed" if finite else "diverged", "recipe": "gpt2",
        "optim": optim, "lr": 3e-3, "weight_decay": 0.1, "seed": seed, "device": "cpu",
        "steps": 100, "final_val_loss": loss if finite else None,
        "diverged_at_step": None if finite else 50, "steps_per_s": 10.0,
    }  # fmt: skip
    (d / "summary.json").write_text(json.dumps(summary))
    return str(d.relative_to(root))


def build_study(root: Path, name: str, sizes: list[str], budgets: list[float], **opts) -> Path:
    """A scaling study's runs and manifest. `opts`: `diverged` {(optim, size, budget, seed)},
    `seeds`."""
    seeds = opts.get("seeds", SEEDS)
    points = []
    for size in sizes:
        for budget in budgets:
            data = PER_PARAM * SIZES[size] * budget
            entries = {}
            for optim in ("adamw", "lion"):
                dirs = []
                for seed in seeds:
                    loss = adamw_loss(data, seed)
                    if optim == "lion":
                        loss = adamw_loss(data * 2.0 ** planted_log2_speedup(size, seed), seed)
                    if (optim, size, budget, seed) in opts.get("diverged", set()):
                        loss = math.inf
                    tag = f"{name}-{size}-b{budget:g}"
                    dirs.append(write_run(root, tag, optim, seed, size, loss))
                entries[optim] = grid_entry(dirs)
            points.append({"size": size, "params": SIZES[size], "budget": budget,
                           "data": data, "steps": 100, "optimizers": entries})  # fmt: skip
    manifest = {
        "schema_version": 1, "kind": "scaling", "name": name, "recipe": "gpt2",
        "scale": "small", "overrides": [], "baseline": "adamw", "candidates": ["lion"],
        "unit": "tokens", "per_param": PER_PARAM, "sizes": sizes, "budgets": budgets,
        "selection_seeds": [0], "confirm_seeds": seeds, "points": points,
    }  # fmt: skip
    path = root / "_studies" / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(manifest))
    return path


def grid_entry(confirm: list[str]) -> dict:
    """A manifest's grid entry as a sweep writes it (one setting tried)."""
    best = {"lr_multiplier": 1.0, "ratio": None, "lr": 3e-3, "weight_decay": 0.1,
            "mean_final_val_loss": 3.0, "run_dirs": []}  # fmt: skip
    return {"grid_key": "lr_multiplier", "initial_grid": [1.0], "grid": [1.0], "extended": [],
            "scores": [], "best": best, "optimum": "interior", "edge": None,
            "confirm_run_dirs": confirm}  # fmt: skip


def judged(root: Path):
    (st,) = read_scaling([root], report_mod.load_runs([root])[0])
    return st


@pytest.fixture(scope="module")
def shrinking(tmp_path_factory):
    """Three sizes, three budgets, four seeds; Lion's speedup planted to shrink x0.9 per
    doubling of parameters; Lion diverged on seed 3 at (l2w32, budget 2)."""
    root = tmp_path_factory.mktemp("scaling")
    build_study(root, "gpt2-small-scaling", list(SIZES), [1.0, 2.0, 4.0],
                diverged={("lion", "l2w32", 2.0, 3)})  # fmt: skip
    return root, judged(root)


def point(st, size: str, budget: float):
    rows = st.points[(st.points["size"] == size) & (st.points["budget"] == budget)]
    return rows.iloc[0]


def seed_speedups(st, size: str, budget: float):
    s = st.speedups
    return s[(s["size"] == size) & (s["budget"] == budget)].set_index("seed")


def test_speedup_is_the_planted_multiple_interpolated_and_extrapolated(shrinking):
    _, st = shrinking
    inside = seed_speedups(st, "l1w16", 1.0)  # 1.5x of budget 1 lies on AdamW's curve
    beyond = seed_speedups(st, "l1w16", 4.0)  # 1.5x of the largest budget lies beyond it
    for seed in SEEDS:
        expected = planted_log2_speedup("l1w16", seed)
        assert inside.loc[seed, "log2_speedup"] == pytest.approx(expected, abs=1e-9)
        assert not inside.loc[seed, "extrapolated"]
        assert beyond.loc[seed, "log2_speedup"] == pytest.approx(expected, abs=1e-9)
        assert beyond.loc[seed, "extrapolated"]
    assert not point(st, "l1w16", 1.0)["extrapolated"]
    assert point(st, "l1w16", 4.0)["extrapolated"]


def test_speedup_interval_is_the_t_interval_of_log2_speedups(shrinking):
    _, st = shrinking
    logs = np.array([planted_log2_speedup("l3w64", s) for s in SEEDS])
    low, high = stats.t.interval(0.95, len(logs) - 1, loc=logs.mean(), scale=stats.sem(logs))
    row = point(st, "l3w64", 2.0)
    assert row["speedup"] == pytest.approx(2.0 ** logs.mean())
    assert (row["speedup_low"], row["speedup_high"]) == pytest.approx((2.0**low, 2.0**high))
    assert row["n_speedup"] == 4 and row["n_dropped"] == 0


def test_loss_difference_and_p_match_a_paired_t_test(shrinking):
    _, st = shrinking
    data = PER_PARAM * SIZES["l2w32"] * 4.0
    adamw = np.array([adamw_loss(data, s) for s in SEEDS])
    lion = np.array([adamw_loss(data * 2 ** planted_log2_speedup("l2w32", s), s) for s in SEEDS])
    diff = lion - adamw
    test = stats.ttest_rel(lion, adamw)
    low, high = stats.t.interval(0.95, 3, loc=diff.mean(), scale=stats.sem(diff))
    row = point(st, "l2w32", 4.0)
    assert row["loss_diff"] == pytest.approx(diff.mean())
    assert (row["loss_diff_low"], row["loss_diff_high"]) == pytest.approx((low, high))
    assert row["p"] == pytest.approx(test.pvalue)
    assert row["n_pairs"] == 4
    ps = st.points["p"].to_numpy()  # Holm across all 9 points: the largest ranked p first
    order = np.argsort(ps)
    holm = np.maximum.accumulate(np.minimum(1, (len(ps) - np.arange(len(ps))) * ps[order]))
    assert st.points["p_holm"].to_numpy()[order] == pytest.approx(holm)


def test_a_diverged_seed_is_dropped_and_counted(shrinking):
    _, st = shrinking
    row = point(st, "l2w32", 2.0)
    assert (row["n_speedup"], row["n_dropped"], row["dropped"]) == (3, 1, "1 non-finite loss")
    assert (row["n_pairs"], row["n_nonfinite_pairs"]) == (3, 1)
    assert math.isnan(seed_speedups(st, "l2w32", 2.0).loc[3, "log2_speedup"])


def test_trend_recovers_the_planted_shrink_and_where_it_reaches_one(shrinking):
    """One value per point (its seeds' mean): seeds share their baseline curve at a size, so
    the residual df is points - coefficients (9 - 3), not values - coefficients."""
    _, st = shrinking
    t = st.trends["lion"]
    assert t.label == "trend" and t.sizes == 3 and t.n_obs == 9 and t.df == 6
    obs = st.speedups.dropna(subset=["log2_speedup"])
    means = obs.groupby(["params", "budget"], as_index=False)["log2_speedup"].mean()
    x = np.log2(means["params"].to_numpy())
    fit = np.polyfit(x, means["log2_speedup"].to_numpy(), 1)  # without the budget regressor
    assert t.coef[1] == pytest.approx(fit[0], abs=1e-3)  # the dropped seed unbalances a little
    assert t.size_factor[0] == pytest.approx(SHRINK, abs=2e-3)
    assert t.data_factor[0] == pytest.approx(1.0, abs=2e-3)  # no effect of budget planted
    design = np.column_stack([np.ones(len(x)), x, np.log2(means["budget"].to_numpy())])
    y = means["log2_speedup"].to_numpy()
    beta, rss = np.linalg.lstsq(design, y, rcond=None)[:2]
    se = math.sqrt(rss[0] / (len(y) - 3) * np.linalg.inv(design.T @ design)[1, 1])
    half = stats.t.ppf(0.975, len(y) - 3) * se
    assert t.size_factor[1:] == pytest.approx((2 ** (beta[1] - half), 2 ** (beta[1] + half)))
    assert t.size_factor[2] < 1
    crossing = 2 ** ((-beta[0] - beta[2] * np.mean(np.log2([1, 2, 4]))) / beta[1])
    assert t.crossing == pytest.approx(crossing)
    assert t.crossing == pytest.approx(1e4 * 2 ** (math.log2(START) / -math.log2(SHRINK)), 0.02)
    assert min(SIZES.values()) <= t.band <= 1000 * max(SIZES.values())
    (line,) = st.verdicts
    assert line.startswith("Lion's effective-data speedup over AdamW shrinks with size: x0.9")
    assert "(3 sizes, 3 budgets, 4 seeds" in line and "reaches 1 at about" in line
    assert "1 pair with a diverged run left out" in line


def test_extrapolation_stops_at_twice_the_budgets_range():
    """A near-flat end segment would put the baseline's equivalent data anywhere: beyond 2x
    the largest (or below half the smallest) budget's data there is no value."""
    data, loss = np.array([1e6, 2e6]), np.array([2.0, 1.99])
    found, extrapolated, why = data_equivalent(data, loss, 1.989)  # just below the last loss
    assert extrapolated and why == "" and 2e6 < found < 4e6
    found, extrapolated, why = data_equivalent(data, loss, 1.9)  # 2^13 x beyond, in log-log
    assert math.isnan(found) and extrapolated and why == "beyond 2x the budgets' data"
    found, _, why = data_equivalent(data, loss, 2.01)  # above the first loss: below 1e6
    assert 5e5 < found < 1e6 and why == ""


def test_two_sizes_are_a_line_not_a_trend(tmp_path):
    build_study(tmp_path, "two", ["l1w16", "l2w32"], [1.0, 2.0], seeds=[1, 2, 3])
    st = judged(tmp_path)
    assert st.trends["lion"].label == TWO_SIZES
    assert "no trend claimed" in st.verdicts[0] and TWO_SIZES in st.verdicts[0]
    assert "shrinks" not in st.verdicts[0] and "grows" not in st.verdicts[0]


def test_one_size_has_no_fit(tmp_path):
    build_study(tmp_path, "one", ["l2w32"], [1.0, 2.0], seeds=[1, 2, 3])
    st = judged(tmp_path)
    assert st.trends["lion"].label == "one size: no trend" and st.trends["lion"].coef is None
    logs = np.array([planted_log2_speedup("l2w32", s) for s in [1, 2, 3]] * 2)
    assert f"x{2 ** logs.mean():.3g} [" in st.verdicts[0] and "per doubling" not in st.verdicts[0]


def test_one_budget_has_no_speedup(tmp_path):
    build_study(tmp_path, "flat", ["l1w16", "l2w32", "l3w64"], [1.0], seeds=[1, 2])
    st = judged(tmp_path)
    assert st.speedups.empty and st.trends["lion"].label == NEEDS_BUDGETS
    assert NEEDS_BUDGETS in st.verdicts[0]
    assert st.points["n_pairs"].tolist() == [2, 2, 2]


def test_interpolation_takes_the_first_bracketing_segment_and_refuses_flat_ones():
    data = np.array([1.0, 2.0, 4.0])
    value, extrapolated, _ = data_equivalent(data, np.array([4.0, 2.0, 3.0]), 2.5)
    assert value == pytest.approx(2 ** (1 - math.log(2.5 / 2) / math.log(2))) and not extrapolated
    assert data_equivalent(data, np.array([3.0, 3.0, 2.0]), 3.0)[2] == "flat segment"
    assert data_equivalent(data, np.array([2.0, 3.0, 4.0]), 1.0)[2] == "flat or rising end segment"
    assert data_equivalent(data, np.array([3.0, math.inf, 2.0]), 2.5)[2] == "non-finite loss"


def test_report_writes_the_section_plots_and_table(tmp_path, monkeypatch, capsys):
    build_study(tmp_path, "gpt2-small-scaling", list(SIZES), [1.0, 2.0], seeds=[1, 2])
    # the settings' own plots and the profiles are not this section's: skipped, for speed
    monkeypatch.setattr(figures, "make_all_plots", lambda settings, out: None)
    monkeypatch.setattr(profile_view, "draw_profiles", lambda profile, out: None)
    out = tmp_path / "out"
    report_mod.report([tmp_path], out, [], [], quiet=True)
    md = (out / "report.md").read_text()
    assert "## Scaling study gpt2-small-scaling: does the advantage survive scale?" in md
    assert "- Lion's effective-data speedup over AdamW shrinks with size: x0.9" in md
    assert "| l2w32 | 40k | 2x | 1.6M tokens | Lion |" in md
    assert "| Lion | trend | 6 | x0.9" in md  # 3 sizes x 2 budgets: one value per point
    assert "- scaling gpt2-small-scaling: Lion" in md  # on the opening page too
    for png in ("scaling_gpt2-small-scaling.png", "scaling_loss_gpt2-small-scaling.png"):
        assert (out / png).stat().st_size > 0 and f"]({png})" in md
    assert "Scaling study gpt2-small-scaling" in (out / "report.html").read_text()
    assert (out / "scaling.csv").read_text().startswith("study,size,params,budget")
    (st,) = read_scaling([tmp_path], report_mod.load_runs([tmp_path])[0])
    print_console([], pd.DataFrame(), scaling=[st])
    assert "shrinks with size" in capsys.readouterr().out


def test_a_corrupt_manifest_is_a_problem_line_not_a_traceback(tmp_path):
    build_study(tmp_path, "ok", ["l1w16", "l2w32"], [1.0, 2.0], seeds=[1, 2])
    studies = tmp_path / "_studies"
    (studies / "broken.json").write_text("{not json")
    (studies / "future.json").write_text(json.dumps({"schema_version": 9, "kind": "scaling"}))
    (studies / "hollow.json").write_text(json.dumps({"schema_version": 1, "kind": "scaling"}))
    (studies / "claims.json").write_text(json.dumps({"schema_version": 1, "sweep_manifest": "x"}))
    runs, curves = report_mod.load_runs([tmp_path])
    found = {st.name: st for st in read_scaling([tmp_path], runs)}
    assert set(found) == {"ok", "broken", "future", "hollow"}
    assert "unreadable" in found["broken"].problem and "schema 9" in found["future"].problem
    assert "malformed" in found["hollow"].problem and found["ok"].problem is None
    assert read_studies([tmp_path], runs, curves) == []  # no sweep: nothing of the scaling's
    md, html = scaling_head(found["broken"])
    assert any("unreadable" in line for line in md) and any("unreadable" in h for h in html)
