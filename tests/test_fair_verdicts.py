"""Verdicts a researcher can act on: finite intervals and decisions at 3 seeds, seed advice for
the family actually compared, speed judged only from a fair measurement, claims that name their
evidence, and the edge cases that used to mislead (docs/design.md, "Verdicts")."""

from __future__ import annotations

import json
import math
import shutil
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from helpers import cli_inprocess
from test_report import ADAMW, one_setting, write_run

from lionbench import report as report_mod
from lionbench.record import Status
from lionbench.report.power import t_needed, t_power
from lionbench.report.stats import compare, exact_can_decide

CLOCK = datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp()


def stamp(t: float) -> str:
    return datetime.fromtimestamp(CLOCK + t, timezone.utc).isoformat(timespec="seconds")


def timed(at: float, contended: bool = False, sps: float = 10.0) -> dict:
    """Summary fields of a run that trained from `at` to `at + 50` seconds (after CLOCK)."""
    note = "other processes used 1.00 of 2 cores while it trained" if contended else None
    return {"started_at": stamp(at), "ended_at": stamp(at + 50), "timing_contended": contended,
            "timing_note": note, "steps_per_s": sps}  # fmt: skip


# ------------------------------------------------------------------------ the statistics


def test_three_pairs_decide_a_large_effect_with_a_finite_interval():
    """The example that had no power: +0.223 with a per-seed spread of 0.009, 3 seeds."""
    base = np.array([3.10, 3.25, 3.02])
    cand = base + 0.223 + np.array([0.009, -0.008, 0.0])
    r = compare(base, cand, "difference")
    assert r.method == "paired t" and r.p < 0.001
    assert 0.2 < r.low < r.estimate < r.high < 0.25


def test_the_exact_check_applies_only_where_it_can_decide():
    assert not exact_can_decide(5, 1) and exact_can_decide(6, 1)
    assert not exact_can_decide(6, 2) and exact_can_decide(7, 2)  # 2/64 > 0.05/2
    assert not exact_can_decide(17, 1)  # enumeration stops at 16: the t-test alone
    r = compare(np.zeros(6), np.full(6, 0.1) + np.arange(6) * 1e-3, "difference")
    assert r.method == "paired t + sign-flip" and r.p == pytest.approx(2 / 64)


def test_seeds_needed_is_the_smallest_n_with_80_percent_power_in_the_family():
    for effect, family in ((1.0, 1), (0.5, 2), (2.0, 4)):
        n = t_needed(effect, family)
        assert t_power(n, effect, 0.05 / family) >= 0.8 > t_power(n - 1, effect, 0.05 / family)
    assert t_needed(1.0, 2) > t_needed(1.0, 1)  # two candidates need more seeds than one


def test_the_seed_advice_accounts_for_holm_over_the_arms(tmp_path):
    """Two candidates, 6 pairs, one clearly worse: the advice is at the family's level, and an
    interval never excludes 0 beside "no significant difference"."""
    for seed in range(6):
        write_run(tmp_path, "adamw", 3e-3, 0.1, seed, loss=4.0 + 0.01 * (seed % 3))
        write_run(tmp_path, "adamw", 1e-4, 0.1, seed, loss=4.5 + 0.01 * (seed % 2))
        write_run(tmp_path, "adamw", 6e-3, 0.1, seed, loss=3.995 + 0.013 * (seed % 2))
    c = one_setting(tmp_path).comparisons
    loss = c[c["metric"] == "final_val_loss"].set_index("arm")
    assert loss.loc["adamw lr=0.0001 wd=0.1", "verdict"] == "worse"
    assert loss["family"].eq(2).all()
    close = loss.loc["adamw lr=0.006 wd=0.1"]
    assert close["verdict"] == "no significant difference"
    assert close["low"] <= 0 <= close["high"]
    assert close["seeds_needed"] >= 7  # at 0.05/2: more than one candidate alone would need


# -------------------------------------------------------------------------------- speed


def test_contended_runs_leave_the_speed_verdicts_with_one_line(tmp_path):
    for seed in range(6):
        write_run(tmp_path, "adamw", 3e-3, 0.1, seed, summary=timed(200 * seed))
        loaded = seed in (1, 4)
        write_run(tmp_path, "lion", 1e-3, 0.3, seed, ratio=3,
                  summary=timed(200 * seed + 100, loaded, 4.0 if loaded else 10.0))  # fmt: skip
    s = one_setting(tmp_path)
    sps = s.comparisons.set_index("metric").loc["steps_per_s"]
    assert sps["n"] == 4 and "baseline only: 1, 4" in sps["unpaired"]
    assert sps["verdict"] != "worse"  # the load is not the optimizer's
    (line,) = [w for w in s.warnings if "contended" in w]
    assert line.startswith("2 contended run(s) left out of the speed verdicts: lion r=3 seed 1")
    loss = s.comparisons.set_index("metric").loc["final_val_loss"]
    assert loss["n"] == 6  # losses do not depend on the machine


def test_a_speed_claim_with_every_lion_run_contended_says_why_it_is_not_judged(tmp_path):
    for seed in range(3):
        write_run(tmp_path, "adamw", 3e-3, 0.1, seed, summary=timed(200 * seed))
        write_run(tmp_path, "lion", 1e-3, 0.3, seed, ratio=3,
                  summary=timed(200 * seed + 100, True, 4.0))  # fmt: skip
    claims = one_setting(tmp_path).claims.set_index("claim")
    speed = claims.loc["steps/s higher than AdamW (paper: 2-15%)"]
    assert speed["verdict"] == "not enough data"
    assert speed["evidence"].startswith("no steps/s of Lion to compare: contended runs")


def test_arms_run_one_after_another_get_no_speed_verdict(tmp_path):
    """`run -m optim=lion,adamw seed=...` used to run each arm as one block."""
    for seed in range(6):
        write_run(tmp_path, "adamw", 3e-3, 0.1, seed, summary=timed(100 * seed))
        write_run(tmp_path, "lion", 1e-3, 0.3, seed, ratio=3, summary=timed(1000 + 100 * seed))
    s = one_setting(tmp_path)
    c = s.comparisons.set_index("metric")
    assert c.loc["steps_per_s", "verdict"] == "not compared: the arms ran one after another"
    assert c.loc["final_val_loss", "verdict"] != "not compared: the arms ran one after another"
    claim = s.claims.set_index("claim").loc["steps/s higher than AdamW (paper: 2-15%)"]
    assert claim["verdict"].startswith("not tested")


# ------------------------------------------------------------------------- edge cases


def test_a_nan_final_loss_counts_as_diverged_and_is_a_problem(tmp_path):
    for seed in range(3):
        write_run(tmp_path, "adamw", 3e-3, 0.1, seed)
        nan = {"final_val_loss": math.nan} if seed == 1 else {}
        write_run(tmp_path, "lion", 1e-3, 0.3, seed, ratio=3, loss=3.5, summary=nan)
    s = one_setting(tmp_path)
    lion = s.runs[s.runs["optim"] == "lion"].set_index("seed")
    assert lion.loc[1, "status"] == Status.DIVERGED.value
    assert "counted as diverged" in lion.loc[1, "error"]
    loss = s.comparisons.set_index("metric").loc["final_val_loss"]
    assert loss["n"] == 3 and loss["diverged"] == "1/0"
    problems = report_mod.problem_table(s.runs)
    assert (problems["status"] == "diverged").sum() == 1


def test_an_all_diverged_baseline_is_judged_by_the_inf_rule(tmp_path):
    gone = {"status": Status.DIVERGED, "final_val_loss": None, "best_val_loss": None}
    for seed in range(6):
        write_run(tmp_path, "adamw", 3e-3, 0.1, seed, summary=gone)
        write_run(tmp_path, "lion", 1e-3, 0.3, seed, ratio=3, loss=3.5)
    s = one_setting(tmp_path)
    assert s.baseline == ADAMW
    loss = s.comparisons.set_index("metric").loc["final_val_loss"]
    assert loss["method"] == "sign test" and loss["verdict"] == "better"  # 6 of 6 pairs


def test_one_diverged_seed_is_not_a_different_seed_set(tmp_path):
    for seed in range(3):
        write_run(tmp_path, "adamw", 3e-3, 0.1, seed)
        gone = {"status": Status.DIVERGED} if seed == 2 else {}
        write_run(tmp_path, "lion", 1e-3, 0.3, seed, ratio=3, summary=gone)
    assert not any("different seed sets" in w for w in one_setting(tmp_path).warnings)


def test_copies_of_one_run_are_counted_once_and_said(tmp_path, capsys):
    original = write_run(tmp_path, "adamw", 3e-3, 0.1, 0)
    write_run(tmp_path, "adamw", 3e-3, 0.1, 1)
    for i in range(5):
        shutil.copytree(original, original.with_name(f"copy{i}"))
    report_mod.report([tmp_path], None, [], [])
    out = capsys.readouterr().out
    s = one_setting(tmp_path)
    assert len(s.runs) == 2 and s.optimizers["n"].iloc[0] == 2
    assert "5 run directories repeat" in out and "counted once" in out


def test_the_headline_is_one_short_line_per_candidate_counting_pairs(tmp_path):
    for seed in range(3):
        write_run(tmp_path, "adamw", 3e-3, 0.1, seed, loss=4.0 + 0.01 * seed)
        write_run(tmp_path, "adamw", 6e-3, 0.1, seed, loss=3.9 + 0.012 * seed)
        write_run(tmp_path, "lion", 1e-3, 0.3, seed, ratio=3, loss=3.6 + 0.011 * seed)
        write_run(tmp_path, "lion", 3e-4, 1.0, seed + 1, ratio=10, loss=3.7)
    lines = report_mod.headline(one_setting(tmp_path)).splitlines()
    assert len(lines) == 3  # other optimizers first, each by its loss: the best arm leads
    assert lines[0].startswith("gpt2 smoke: lion r=3 vs adamw lr=0.003 wd=0.1: final val loss")
    assert lines[1].startswith("gpt2 smoke: lion r=10 vs adamw lr=0.003 wd=0.1")
    assert lines[2].startswith("gpt2 smoke: adamw lr=0.006 wd=0.1 vs")  # the baseline's own last
    assert "n=3 pairs" in lines[0] and "n=2 pairs" in lines[1]
    assert all(len(line) < 260 for line in lines)


def test_steps_read_on_the_eval_grid_are_not_known_exactly_apart():
    """Three seeds each reaching the target at the same evals (150 and 200, evals every 50):
    the crossing lies somewhere in the 50 steps before, so a ratio of 1.33 is not decided from
    3 pairs; with 5 it is. Unrounded values with no spread would be decided at once."""
    w = (np.full(3, 50.0), np.full(3, 50.0))
    r = compare(np.full(3, 150.0), np.full(3, 200.0), "ratio", 1, w)
    assert r.p > 0.05 and r.low < 1.0 < r.high and r.sd > 0.1
    assert compare(np.full(3, 150.0), np.full(3, 200.0), "ratio").p == 0.0  # no grid: exact
    w5 = (np.full(5, 50.0), np.full(5, 50.0))
    assert compare(np.full(5, 150.0), np.full(5, 200.0), "ratio", 1, w5).p < 0.05


def test_the_resolution_of_steps_to_target_is_the_gap_to_the_eval_before(tmp_path):
    from lionbench.report.values import first_hits

    curves = pd.DataFrame(
        {"run_dir": ["a"] * 4 + ["b"] * 2, "step": [0, 50, 100, 150, 0, 30],
         "time_s": [0.0, 1.0, 2.0, 3.0, 0.0, 0.5], "loss": [5, 4, 3, 2, 5, 2.5]}
    )  # fmt: skip
    hits = first_hits(curves, 3.0)
    assert hits.loc["a", "step"] == 100 and hits.loc["a", "step_res"] == 50
    assert hits.loc["a", "time_res"] == pytest.approx(1.0)
    assert hits.loc["b", "step"] == 30 and hits.loc["b", "step_res"] == 30
    assert first_hits(curves, 5.0).loc["a", "step_res"] == 0  # at the first eval: exact


def test_a_ratio_judged_by_the_sign_test_is_never_below_zero():
    r = compare(np.full(3, 100.0), np.full(3, math.inf), "ratio")  # never reached: +inf
    assert r.method == "sign test" and r.estimate == math.inf
    assert r.low == 0.0 and r.high == math.inf


def test_every_claim_names_the_evidence_it_rests_on(tmp_path):
    for seed in range(4):
        write_run(tmp_path, "adamw", 3e-3, 0.1, seed)
        for ratio, loss in ((1.5, 3.9), (3, 3.6), (20, 3.95)):
            write_run(tmp_path, "lion", 3e-3 / ratio, 0.1 * ratio, seed, ratio=ratio,
                      loss=loss + 0.01 * seed % 3)  # fmt: skip
    claims = one_setting(tmp_path).claims.set_index("claim")
    assert all(claims["rests_on"].str.len() > 0)
    ratio = claims.loc["Lion's best lr is 3-10x smaller than AdamW's"]
    assert ratio["verdict"] != "not tested"  # 1.5 and 20 reach beyond both edges
    assert "lion r=1.5" in ratio["rests_on"] and "4 pairs" in ratio["rests_on"]


# ----------------------------------------------------------------------- lionbench plan


def test_plan_gives_the_seeds_for_an_effect_from_the_runs_on_disk(tmp_path, capsys):
    for seed in range(4):
        write_run(tmp_path, "adamw", 3e-3, 0.1, seed, loss=4.0 + 0.02 * (seed % 2))
        write_run(tmp_path, "lion", 1e-3, 0.3, seed, ratio=3, loss=3.95 + 0.01 * (seed % 3))
    table = report_mod.seeds_plan([tmp_path], "final_val_loss", [0.01, 0.05], None, None)
    assert list(table["effect"]) == [0.01, 0.05] and (table["arms"] == 1).all()
    sd = table["sd"].iloc[0]
    assert list(table["seeds_needed"]) == [t_needed(0.01 / sd), t_needed(0.05 / sd)]
    wider = report_mod.seeds_plan([tmp_path], "final_val_loss", [0.01], 4, None)
    assert wider["seeds_needed"].iloc[0] > table["seeds_needed"].iloc[0]
    assert cli_inprocess("plan", str(tmp_path), "--effect", "0.01") == 0
    assert "seeds for 80% power" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--metric", "loss"], "unknown --metric 'loss' (accepted: final_val_loss"),
        (["--metric", "steps_per_s", "--effect", "-1"], "--effect -1.0 cannot be resolved"),
        (["--arms", "0"], "--arms must be >= 1"),
    ],
)
def test_plan_bad_input_is_one_line(tmp_path, capsys, args, expected):
    write_run(tmp_path, "adamw", 3e-3, 0.1, 0)
    assert cli_inprocess("plan", str(tmp_path), *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err


def test_a_summary_records_its_timing_exposure_fields(tmp_path):
    d = write_run(tmp_path, "adamw", 3e-3, 0.1, 0, summary=timed(0, True))
    data = json.loads((d / "summary.json").read_text())
    assert data["timing_contended"] is True and data["timing_note"].startswith("other processes")
