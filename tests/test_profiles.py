"""Performance profiles across settings (report/profiles.py): ratios, rho(tau) and the AlgoPerf
score against hand computation, infinite ratios for an optimizer that never gets there, time
points left out for contended runs, and the report's section only where there is something to
compare (2+ settings, 2+ optimizers in one)."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report import write_run

from lionbench import report as report_mod
from lionbench.report.profiles import (
    TAU_MAX,
    median,
    performance_profiles,
    profile_points,
    ratio_table,
    rho,
    score,
    score_table,
)

INF = math.inf


def seeds_table(steps: dict[tuple[str, str], list[float]], times=None) -> pd.DataFrame:
    """A per-seed table as profiles.workload_seeds builds it: (setting, optim) -> steps to the
    target per seed (time = steps / 10 unless `times` gives it; nan: a contended seed)."""
    rows = []
    for (setting, optim), values in steps.items():
        ts = (times or {}).get((setting, optim), [v / 10 for v in values])
        for seed, (v, t) in enumerate(zip(values, ts, strict=True)):
            rows.append({"setting": setting, "target": 4.0, "optim": optim, "arm": f"{optim} arm",
                         "seed": seed, "steps": v, "time_s": t})  # fmt: skip
    return pd.DataFrame(rows)


# three settings, three optimizers; medians: A 100 / 60 / 250, B 80 / 40 / inf, C 30 / 60 / 90
STEPS = {
    ("A", "adamw"): [100, 100], ("A", "lion"): [50, 70], ("A", "sgd"): [200, 300],
    ("B", "adamw"): [80, 80], ("B", "lion"): [40, 40], ("B", "sgd"): [INF, 120],
    ("C", "adamw"): [30, 30], ("C", "lion"): [60, 60], ("C", "sgd"): [90, INF, 90],
}  # fmt: skip
RATIOS = {
    "adamw": {"A": 100 / 60, "B": 2.0, "C": 1.0},
    "lion": {"A": 1.0, "B": 1.0, "C": 2.0},
    "sgd": {"A": 250 / 60, "B": INF, "C": 3.0},
}


def by_optim(table: pd.DataFrame, column: str) -> dict[str, dict[str, float]]:
    return {
        o: dict(zip(g["setting"], g[column], strict=True))
        for o, g in table.groupby("optim", sort=False)
    }


def test_ratios_are_medians_over_seeds_over_the_fastest_median():
    table, notes = ratio_table(seeds_table(STEPS))
    assert notes == []
    got = by_optim(table, "steps_ratio")
    for optim, want in RATIOS.items():
        assert got[optim] == pytest.approx(want), optim
    times = by_optim(table, "time_ratio")  # time = steps / 10 here: the same ratios
    assert all(times[o] == pytest.approx(got[o]) for o in got)
    row = table.set_index(["setting", "optim"]).loc[("B", "sgd")]
    assert row["steps"] == INF and row["reached"] == 1 and row["n_seeds"] == 2
    assert table.set_index(["setting", "optim"]).loc[("C", "sgd"), "reached"] == 2


def test_median_counts_a_miss_as_infinite():
    assert median(pd.Series([100.0, INF, 120.0])) == 120.0  # one of three missed
    assert median(pd.Series([100.0, INF])) == INF  # even count: the middle two's mean
    assert median(pd.Series([INF, INF, 50.0])) == INF
    assert math.isnan(median(pd.Series([], dtype=float)))


def test_rho_and_score_against_hand_computation():
    table, _ = ratio_table(seeds_table(STEPS))
    r = {o: np.array(list(v.values()), dtype=float) for o, v in RATIOS.items()}
    assert [rho(r["adamw"], t) for t in (1, 1.5, 2, 4)] == pytest.approx([1 / 3, 1 / 3, 1, 1])
    assert [rho(r["lion"], t) for t in (1, 1.99, 2)] == pytest.approx([2 / 3, 2 / 3, 1])
    sgd = [rho(r["sgd"], t) for t in (1, 3, 4, 4.2, 1e9)]  # B never: below 1 for any tau
    assert sgd == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3, 2 / 3])
    # B = 1/3 * integral_1^4 rho: each setting adds (4 - r) / 3, none beyond 4 or never
    want = {"adamw": (7 / 9 + 2 / 3 + 1) / 3, "lion": (1 + 1 + 2 / 3) / 3, "sgd": (1 / 3) / 3}
    scores = score_table(table).set_index("optim")
    assert scores["score_steps"].to_dict() == pytest.approx(want)
    assert scores.loc["sgd", "within_steps"] == 1 and scores.loc["lion", "within_steps"] == 3
    for optim, ratios in r.items():  # the closed form is the integral of the step function
        taus = np.linspace(1, TAU_MAX, 30001)
        area = np.trapezoid([rho(ratios, t) for t in taus], taus) / (TAU_MAX - 1)
        assert score(ratios) == pytest.approx(area, abs=1e-3), optim


def test_points_list_the_setting_and_seeds_where_each_enters_the_curve():
    table, _ = ratio_table(seeds_table(STEPS))
    pts = profile_points(table)
    sgd = pts[(pts["metric"] == "steps") & (pts["optim"] == "sgd")]
    assert list(sgd["setting"]) == ["C", "A", "B"]  # by ratio: 3, 4.17, never
    assert list(sgd["rho"][:2]) == pytest.approx([1 / 3, 2 / 3])  # rho there (A: beyond 4)
    assert math.isnan(sgd["rho"].iloc[2]) and sgd["tau"].iloc[2] == INF
    assert list(sgd["reached"]) == [2, 2, 1] and list(sgd["n_seeds"]) == [3, 2, 2]


def test_an_optimizer_that_never_reaches_a_setting_stays_below_one():
    table, _ = ratio_table(seeds_table(STEPS))
    sgd = table[table["optim"] == "sgd"]["steps_ratio"].to_numpy(dtype=float)
    assert rho(sgd, 1e12) == pytest.approx(2 / 3)  # B never: rho never reaches 1


def test_an_optimizer_not_run_in_a_setting_is_infinite_there_and_says_so():
    steps = {("A", "adamw"): [100, 100], ("A", "lion"): [50, 50], ("B", "adamw"): [80, 80]}
    table, _ = ratio_table(seeds_table(steps))
    row = table.set_index(["setting", "optim"]).loc[("B", "lion")]
    assert row["steps_ratio"] == INF and row["note"] == "not run" and row["n_seeds"] == 0
    scores = score_table(table).set_index("optim")
    assert scores.loc["lion", "score_steps"] == pytest.approx(0.5)  # A: 1, B: never
    assert scores.loc["adamw", "score_steps"] == pytest.approx(((4 - 2) / 3 + 1) / 2)


def test_contended_times_are_left_out_and_said():
    times = {
        ("A", "lion"): [5.0, math.nan],  # one seed contended: time from the other
        ("B", "sgd"): [math.nan, math.nan],  # no uncontended run: B leaves the time profile
    }
    table, notes = ratio_table(seeds_table(STEPS, times))
    t = table.set_index(["setting", "optim"])
    assert t.loc[("A", "lion"), "time_s"] == 5.0 and t.loc[("A", "lion"), "timed"] == 1
    assert "time from 1 of 2 seeds" in t.loc[("A", "lion"), "note"]
    assert t.loc["B", "time_ratio"].isna().all()  # every optimizer's: the fastest is unknown
    assert t.loc["B", "steps_ratio"].notna().all()
    assert notes == ["B: left out of the time profile (sgd: no uncontended run, so the fastest "
                     "time is not known)"]  # fmt: skip
    scores = score_table(table).set_index("optim")
    assert (scores["workloads_time"] == 2).all() and (scores["workloads_steps"] == 3).all()
    # lion's time on A: median of the one timed seed, 5.0, against adamw's 10 and sgd's 25
    assert t.loc[("A", "adamw"), "time_ratio"] == pytest.approx(2.0)


def test_a_target_met_before_training_leaves_that_profile_and_says_so():
    steps = {**STEPS, ("A", "adamw"): [0, 0], ("A", "lion"): [0, 10], ("A", "sgd"): [0, 0]}
    table, notes = ratio_table(seeds_table(steps))
    assert table.loc[table["setting"] == "A", "steps_ratio"].isna().all()
    assert any(n.startswith("A: left out of the steps profile (the target was met") for n in notes)
    scores = score_table(table).set_index("optim")
    assert (scores["workloads_steps"] == 2).all()
    assert scores.loc["lion", "score_steps"] == pytest.approx((1 + 2 / 3) / 2)  # B and C only


# ----------------------------------------------------------------------- in the report


def two_recipes(root: Path, settings: int = 2) -> None:
    """`settings` settings (the model's width tells them apart), AdamW (final loss 4), Lion (3)
    and SGD (5), two seeds each: the tightest default target is 4 (the median final loss);
    Lion gets there at step 20, AdamW at 30, SGD never."""
    for i in range(settings):
        model = {"model": {"n_layer": 2, "n_embd": 32 * (i + 1)}}
        for seed in (0, 1):
            write_run(root, "adamw", 3e-3, 0.1, seed, 4.0, recipe=model)
            write_run(root, "lion", 1e-3, 0.3, seed, 3.0, ratio=3, recipe=model)
            write_run(root, "sgd", 0.1, 0.0, seed, 5.0, recipe=model)


def test_the_report_adds_profiles_across_settings(tmp_path):
    two_recipes(tmp_path / "r")
    out = tmp_path / "out"
    settings = report_mod.report([tmp_path / "r"], out, [], [], quiet=True)
    assert len(settings) == 2
    md = (out / "report.md").read_text()
    assert "## Performance profiles across recipes" in md
    assert md.index("## Performance profiles") > md.index(f"## {settings[-1].label}")
    assert md.index("## Performance profiles") < md.index("## Diverged, failed")
    html = (out / "report.html").read_text()
    assert "<h2 id=profiles>Performance profiles across recipes</h2>" in html
    assert "href='#profiles'" in html
    for name in ("performance_profile_steps", "performance_profile_time"):
        for ext in ("png", "svg"):
            assert (out / f"{name}.{ext}").stat().st_size > 0, (name, ext)
    table = pd.read_csv(out / "profiles.csv")
    lion = table[table["optim"] == "lion"]
    assert list(lion["steps_ratio"]) == [1.0, 1.0] and list(lion["arm"]) == ["lion r=3"] * 2
    assert list(table.loc[table["optim"] == "adamw", "steps_ratio"]) == [1.5, 1.5]
    assert (table.loc[table["optim"] == "sgd", "steps_ratio"] == INF).all()
    scores = pd.read_csv(out / "profile_scores.csv").set_index("optim")
    assert scores["score_steps"].to_dict() == pytest.approx(
        {"adamw": 2.5 / 3, "lion": 1.0, "sgd": 0.0}
    )
    tex = (out / "profile_scores.tex").read_text()
    assert "\\begin{tabular}" in tex and "$\\infty$ / $\\infty$ (0/2)" in tex
    assert "[profile_scores.tex](profile_scores.tex)" in md
    if shutil.which("pdflatex"):  # it compiles inside the user's float with booktabs, amssymb
        doc = out / "paper.tex"
        doc.write_text(
            "\\documentclass{article}\\usepackage{booktabs,amssymb}\\begin{document}\n"
            "\\begin{table}\\small\\input{profile_scores.tex}\\end{table}\\end{document}\n"
        )
        run = subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
            cwd=out, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-2000:]


def test_the_representative_arm_is_the_baseline_or_the_best_arm(tmp_path):
    two_recipes(tmp_path)
    for seed in (0, 1):  # a worse lion arm, and a better AdamW arm that is not the baseline
        write_run(tmp_path, "lion", 3e-4, 1.0, seed, 4.5, ratio=10)
        write_run(tmp_path, "adamw", 1e-2, 0.1, seed, 2.0)
    _, curves, settings = report_mod.settings_of([tmp_path], [], [], None)
    p = performance_profiles(settings, curves)
    assert p is not None
    arms = p.table.set_index(["setting", "optim"])["arm"]
    first = settings[0].label
    assert arms[(first, "lion")] == "lion r=3"  # lowest mean final val loss of lion's arms
    assert arms[(first, "adamw")] == "adamw lr=0.003 wd=0.1"  # the baseline, not the best


def test_one_setting_or_one_optimizer_gives_no_profiles(tmp_path):
    two_recipes(tmp_path / "one", settings=1)
    out = tmp_path / "out"
    report_mod.report([tmp_path / "one"], out, [], [], quiet=True)
    assert "Performance profiles" not in (out / "report.md").read_text()
    assert not (out / "performance_profile_steps.png").exists()
    assert not (out / "profiles.csv").exists()
    for i in range(2):  # two settings, AdamW alone in each
        for seed in (0, 1):
            model = {"model": {"n_layer": 2, "n_embd": 32 * (i + 1)}}
            write_run(tmp_path / "alone", "adamw", 3e-3, 0.1, seed, 4.0, recipe=model)
    _, curves, settings = report_mod.settings_of([tmp_path / "alone"], [], [], None)
    assert len(settings) == 2 and performance_profiles(settings, curves) is None
