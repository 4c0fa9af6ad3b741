"""The report's CSV and Parquet files as pandas users read them (issue 26): one setting label in
runs, tables and file names, lists as lists, typed columns, a long `curves` table, and completed
runs whose metrics.jsonl cannot be trusted listed as problems. Run directories written by hand,
no training."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_report import ADAMW, with_config, write_run

from lionbench import report as report_mod
from lionbench.report.plots import slug

LION = "lion r=3"


def two_arms(root: Path, seeds: tuple[int, ...] = (0, 1, 2)) -> dict[tuple[str, int], Path]:
    """AdamW at the recipe's setting and Lion at r=3, one run directory per seed."""
    return {
        (optim, seed): write_run(root, optim, lr, wd, seed, ratio=ratio, loss=loss)
        for seed in seeds
        for optim, lr, wd, ratio, loss in (
            ("adamw", 3e-3, 0.1, None, 4.0),
            ("lion", 1e-3, 0.3, 3, 3.8),
        )
    }


def exported(tmp_path: Path) -> tuple[list[report_mod.Setting], Path]:
    out = tmp_path / "out"
    return report_mod.report([tmp_path / "r"], out, [], [], quiet=True), out


def test_parquet_keeps_lists_numbers_booleans_and_types_all_null_columns(tmp_path):
    two_arms(tmp_path / "r")
    _, out = exported(tmp_path)
    opt = pd.read_parquet(out / "optimizers_gpt2-smoke.parquet").set_index("arm")
    schema = pq.read_schema(out / "optimizers_gpt2-smoke.parquet")
    assert schema.field("seeds").type == pa.list_(pa.int64())
    assert list(opt.loc[LION, "seeds"]) == [0, 1, 2]
    assert opt["n"].dtype == "int64" and opt["final_val_loss"].dtype == "float64"
    assert opt["expected_state_mb"].isna().all() and opt["expected_state_mb"].dtype == "float64"
    assert opt["baseline"].dtype == bool and bool(opt.loc[ADAMW, "baseline"])
    runs = pd.read_parquet(out / "runs.parquet")
    for col in ("mfu", "tokens_per_s", "diverged_at_step"):  # no run measured them: numbers
        assert runs[col].isna().all() and runs[col].dtype == "float64", col
    assert pd.api.types.is_bool_dtype(runs["contended"])  # nothing known, still yes/no
    assert pd.api.types.is_string_dtype(runs["optim_target"]) and runs["optim_target"].isna().all()
    assert runs["seed"].dtype == "int64" and runs["peak_mem_bytes"].dtype == "int64"
    for path in out.glob("*.parquet"):  # a null is a null, never the text "None" or "nan"
        df = pd.read_parquet(path)
        words = [c for c, t in df.dtypes.items() if pd.api.types.is_string_dtype(t)]
        for col in [c for c in words if not pd.api.types.is_object_dtype(df[c])]:
            assert not df[col].isin(["None", "nan", "<NA>"]).any(), (path.name, col)
    targets = pd.read_parquet(out / "targets_gpt2-smoke.parquet")
    assert targets["reached"].dtype == "int64" and targets["n_seeds"].dtype == "int64"
    assert (targets["n_seeds"] == 3).all() and targets["reached"].le(3).all()
    comp = pd.read_parquet(out / "comparisons_gpt2-smoke.parquet")
    assert comp["diverged"].dtype == "int64" and comp["baseline_diverged"].dtype == "int64"


def test_csv_holds_lists_as_json_and_nulls_as_empty_cells(tmp_path):
    two_arms(tmp_path / "r", seeds=(0, 2))
    _, out = exported(tmp_path)
    opt = pd.read_csv(out / "optimizers_gpt2-smoke.csv")
    assert [json.loads(s) for s in opt["seeds"]] == [[0, 2], [0, 2]]
    runs = pd.read_csv(out / "runs.csv")
    assert runs["optim_target"].isna().all() and runs["mfu"].isna().all()
    targets = pd.read_csv(out / "targets_gpt2-smoke.csv")
    assert targets["reached"].dtype == "int64" and set(targets["n_seeds"]) == {2}


def test_one_setting_label_in_runs_tables_curves_and_file_names(tmp_path):
    for sched in ("cosine", "constant"):
        for d in two_arms(tmp_path / "r" / sched, seeds=(0, 1)).values():
            with_config(d, sched={"name": sched, "warmup_steps": 0})
    settings, out = exported(tmp_path)
    labels = {s.label for s in settings}
    assert labels == {"gpt2 smoke sched=cosine", "gpt2 smoke sched=constant"}
    runs = pd.read_parquet(out / "runs.parquet")
    assert set(runs["setting"]) == labels
    keys = runs.drop_duplicates("setting").set_index("setting")["setting_key"]
    assert {s.label: s.key for s in settings} == keys.to_dict()  # the hash, kept beside
    assert set(pd.read_parquet(out / "curves.parquet")["setting"]) == labels
    for s in settings:
        for kind in ("optimizers", "targets", "ratio_sweep", "claims", "comparisons"):
            for ext in ("parquet", "csv"):
                path = out / f"{kind}_{slug(s.label)}.{ext}"
                df = pd.read_parquet(path) if ext == "parquet" else pd.read_csv(path)
                assert set(df["setting"]) == {s.label}, path.name
                assert df.columns[0] == "setting"
    mine = runs[runs["setting"] == "gpt2 smoke sched=cosine"]
    assert all("/cosine/" in d for d in mine["run_dir"])


def test_curves_are_every_record_of_every_run_in_long_form(tmp_path):
    dirs = two_arms(tmp_path / "r", seeds=(0, 1))
    d = dirs[("lion", 0)]
    records = [
        {"step": 0, "split": "val", "loss": 7.0, "ppl": 1096.6, "time_s": 0.0, "examples": 0},
        {"step": 5, "split": "train", "loss": 6.5, "lr": 1e-3, "time_s": 0.5, "examples": 40},
        {"step": 10, "split": "train", "loss": 6.0, "lr": 5e-4, "time_s": 1.0, "examples": 80},
        {
            "step": 10,
            "split": "val",
            "loss": 5.9,
            "ppl": 365.0,
            "time_s": 1.1,
            "examples": 80,
            "ok": True,
            "note": "text",
        },
    ]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    _, out = exported(tmp_path)
    curves = pd.read_parquet(out / "curves.parquet")
    assert list(curves.columns) == [
        "setting", "arm", "seed", "run_dir", "split", "step", "time_s", "examples", "metric",
        "value",
    ]  # fmt: skip
    assert curves["step"].dtype == "int64" and curves["value"].dtype == "float64"
    assert not curves.duplicated(["run_dir", "split", "step", "metric"]).any()
    mine = curves[curves["run_dir"] == str(d)]
    got = {(r.split, r.step, r.metric): (r.value, r.time_s, r.examples) for r in mine.itertuples()}
    assert got == {
        ("val", 0, "loss"): (7.0, 0.0, 0),
        ("val", 0, "ppl"): (1096.6, 0.0, 0),
        ("train", 5, "loss"): (6.5, 0.5, 40),
        ("train", 5, "lr"): (1e-3, 0.5, 40),
        ("train", 10, "loss"): (6.0, 1.0, 80),
        ("train", 10, "lr"): (5e-4, 1.0, 80),
        ("val", 10, "loss"): (5.9, 1.1, 80),
        ("val", 10, "ppl"): (365.0, 1.1, 80),
    }  # no `ok` (a flag) nor `note` (text): only numbers are metrics
    assert set(mine["arm"]) == {LION} and set(mine["seed"]) == {0}
    assert set(mine["setting"]) == {"gpt2 smoke"}
    other = curves[curves["run_dir"] == str(dirs[("adamw", 1)])]  # a run of write_run's: val only
    assert len(other) == 4 and set(other["metric"]) == {"loss"}
    assert other["examples"].isna().all()  # not logged by that run: null, not 0
    csv = pd.read_csv(out / "curves.csv")
    assert len(csv) == len(curves) and list(csv.columns) == list(curves.columns)


VAL = [json.dumps({"step": s, "split": "val", "loss": 7.0 - s / 10, "time_s": s / 10})
       for s in (0, 10, 20, 30)]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "metrics.jsonl is empty"),
        ("\n\n", "metrics.jsonl is empty"),
        ("\n".join([VAL[0], '{"step": 10, "spl', *VAL[2:]]) + "\n", "metrics.jsonl line 2, column"),
        (
            "\n".join([VAL[0], "", "garbage", VAL[3]]),
            "metrics.jsonl line 3, column 1: not a JSON record",
        ),
        (json.dumps({"step": 5, "split": "train", "loss": 6.0}) + "\n", "no val record"),
        (None, "no metrics.jsonl"),
    ],
    ids=["empty", "blank-lines", "torn-mid-file", "garbage-mid-file", "no-val", "missing"],
)
def test_a_completed_run_with_unreadable_metrics_is_a_problem_not_a_result(tmp_path, text, error):
    dirs = two_arms(tmp_path / "r")
    bad = dirs[("lion", 1)]
    if text is None:
        (bad / "metrics.jsonl").unlink()
    else:
        (bad / "metrics.jsonl").write_text(text)
    (s,), out = exported(tmp_path)
    runs = s.runs.set_index("run_dir")
    assert runs.loc[str(bad), "status"] == "corrupt"
    assert error in runs.loc[str(bad), "error"]
    opt = s.optimizers.set_index("arm")
    assert opt.loc[LION, "n"] == 2 and opt.loc[LION, "seeds"] == "0,2"  # never counted
    assert opt.loc[LION, "failed"] == 1
    problems = pd.read_parquet(out / "problems.parquet")
    (row,) = problems.to_dict("records")
    assert row["run_dir"] == str(bad) and row["status"] == "corrupt" and error in row["error"]
    assert row["setting"] == s.label and row["arm"] == LION
    md = (out / "report.md").read_text()
    assert error in md.split("## Diverged, failed and unfinished runs")[1]
    assert str(bad) not in set(pd.read_parquet(out / "curves.parquet")["run_dir"])
    assert pd.api.types.is_bool_dtype(pd.read_parquet(out / "runs.parquet")["contended"])


def test_a_torn_last_line_of_a_killed_writer_is_still_fine(tmp_path):
    dirs = two_arms(tmp_path / "r")
    torn = dirs[("lion", 1)]
    (torn / "metrics.jsonl").write_text("\n".join(VAL) + '\n{"step": 40, "split": "va')
    (s,), out = exported(tmp_path)
    assert s.runs.set_index("run_dir").loc[str(torn), "status"] == "completed"
    assert s.optimizers.set_index("arm").loc[LION, "n"] == 3
    assert pd.read_parquet(out / "problems.parquet").empty
    curves = pd.read_parquet(out / "curves.parquet")
    assert sorted(curves.loc[curves["run_dir"] == str(torn), "step"]) == [0, 10, 20, 30]


def test_an_unfinished_run_with_an_empty_metrics_file_stays_unfinished(tmp_path):
    dirs = two_arms(tmp_path / "r")
    d = dirs[("lion", 1)]
    (d / "summary.json").unlink()
    (d / "metrics.jsonl").write_text("")
    runs, _ = report_mod.load_runs([tmp_path / "r"])
    assert runs.set_index("run_dir").loc[str(d), "status"] == "not_started"  # not corrupt
