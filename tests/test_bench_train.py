"""`lionbench bench train`: option errors before any work, one real grid end to end (two runs of
GPT-2 at smoke scale, Lion against AdamW), the table with a failed configuration, CSV and JSON."""

from __future__ import annotations

import csv
import json

import pytest

from lionbench.cli import main
from lionbench.commands import bench_train as bt
from lionbench.commands.bench_optim import write
from lionbench.optim.registry import OPTIMIZERS


def cli(*args: str) -> int:
    with pytest.raises(SystemExit) as e:
        main(["bench", "train", *args])
    return int(e.value.code)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--recipes", "gpt3"], "unknown --recipes 'gpt3' (accepted: gpt2, resnet50, unet, vit)"),
        (["--optims", "lion,lamb"], f"unknown --optims 'lamb' (accepted: {', '.join(OPTIMIZERS)})"),
        (["--scale", "huge"], "unknown --scale 'huge' (accepted: full, small, smoke)"),
        (["--compile", "off,maybe"], "unknown --compile 'maybe' (accepted: off, on)"),
        (["--data", "web"], "unknown --data 'web'"),
        (["--steps", "5", "--warmup", "5"], "--warmup 5 must be below --steps 5"),
        (["--repeats", "0"], "--repeats must be >= 1, got 0"),
        (["--recipes", ""], "--recipes is empty"),
        (["--out", "rows.txt"], "give a .csv or .json file"),
        (["--recipes", "gpt2", "train.batch_size=-1"], "train.batch_size"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli(*args) == 2
    out = capsys.readouterr()
    (line,) = out.err.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert out.out == "" and list(tmp_path.iterdir()) == []


def test_gpt2_lion_against_adamw_end_to_end(tmp_path, capsys):
    """Two fresh runs; the numbers come from their summaries; CSV and JSON hold the same rows."""
    out = tmp_path / "rows.json"
    args = ["--recipes", "gpt2", "--optims", "lion,adamw", "--scale", "smoke", "--compile", "off"]
    assert cli(*args, "--steps", "4", "--warmup", "1", "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "bench train: scale=smoke" in printed and f"wrote {out}" in printed
    rows = json.loads(out.read_text())
    assert [(r["recipe"], r["optim"], r["compile"]) for r in rows] == [
        ("gpt2", "lion", False),
        ("gpt2", "adamw", False),
    ]
    for r in rows:
        assert r["completed"] == 1 and r["error"] is None
        assert r["steps_per_s"] > 0 and r["tokens_per_s"] > r["examples_per_s"] > 0
        assert 0 < r["opt_step_share"] < 1 and r["mfu"] is None  # no MFU on a CPU
    lion, adamw = rows
    assert adamw["optimizer_state_bytes"] / lion["optimizer_state_bytes"] == pytest.approx(
        2, rel=0.01
    )
    write(rows, tmp_path / "rows.csv")
    with (tmp_path / "rows.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [r["optim"] for r in table] == ["lion", "adamw"]
    assert float(table[0]["steps_per_s"]) == pytest.approx(lion["steps_per_s"])


def test_a_failed_configuration_is_shown_with_its_error(capsys):
    plan = bt.Plan([], "smoke", "builtin", 4, 1, 2, [])
    ok = {"ok": True, "wall_s": 1.0, "device": "cpu", **dict.fromkeys(bt.METRICS)}
    ok.update(steps_per_s=10.0, examples_per_s=80.0, opt_step_ms=5.0, opt_step_share=0.05)
    failed = {"ok": False, "wall_s": 1.0, "error": "RuntimeError: out of memory"}
    rows = [
        bt.aggregate(bt.Setup("gpt2", "lion", False), [ok, {**ok, "steps_per_s": 12.0}], plan),
        bt.aggregate(bt.Setup("vit", "adamw", True), [failed, failed], plan),
    ]
    assert rows[0]["steps_per_s"] == 11.0 and rows[0]["steps_per_s_min"] == 10.0
    assert rows[1]["completed"] == 0 and rows[1]["steps_per_s"] is None
    bt.print_table(rows)
    printed = capsys.readouterr().out
    assert "failed 2/2: vit/adamw/compile=on: RuntimeError: out of memory" in printed
    assert "10.0-12.0" in printed


def test_repeats_rotate_the_order(monkeypatch):
    """Repeat r starts r configurations later, so no configuration always runs first."""
    order = []

    def fake(setup, plan):
        order.append(setup.optim)
        return {"ok": False, "wall_s": 0.0, "error": "x"}

    monkeypatch.setattr(bt, "run_one", fake)
    setups = [bt.Setup("gpt2", o, False) for o in ("lion", "adamw", "sgd")]
    bt.bench_train(bt.Plan(setups, "smoke", "builtin", 4, 1, 3, []), log=lambda _: None)
    assert order == ["lion", "adamw", "sgd", "adamw", "sgd", "lion", "sgd", "lion", "adamw"]
