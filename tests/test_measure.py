"""Honest measurements (docs/design.md, metric definitions): per-run peak memory, expected
optimizer state, compilation kept out of training time, and the exact loss floor of the eval set."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from helpers import metrics, run_dirs, run_inprocess, summary

from lionbench import config
from lionbench.data import builtin_tokens as bt
from lionbench.loop.timing import Clock, PeakMemory
from lionbench.recipe import load_recipe

# ------------------------------------------------------------------------------- the timing rule


def test_clock_charges_warm_steps_at_the_first_timed_rate():
    """3 warm steps that took 10 s, then timed segments: the warm steps cost what 3 steps of
    the first timed segment cost, and the rest of their time is compile_s, exactly."""
    clock = Clock(torch.device("cpu"), warmup_steps=3)
    clock._step0 = 0
    clock.add(2, 6.0)  # steps 0..2: warm, no rate yet
    assert clock.charged_s() is None
    clock._step0 = 2
    clock.add(1, 4.0)  # step 2..3: still warm
    clock._step0 = 3
    clock.add(2, 1.0)  # steps 3..5: the first timed segment, 0.5 s per step
    assert clock.charged_s() == pytest.approx(1.0 + 3 * 0.5)
    assert clock.compile_s == pytest.approx(10.0 - 1.5)
    assert clock.charged_s() + clock.compile_s == pytest.approx(clock.train_s)
    clock._step0 = 5
    clock.add(5, 5.0)  # a slower later segment changes nothing already charged
    assert clock.charged_s() == pytest.approx(6.0 + 1.5) == clock.total_s()
    assert clock.steps_per_s() == pytest.approx(7 / 6.0)

    # a resume warms up again; its warm steps wait for this process's own first timed segment
    resumed = Clock(torch.device("cpu"), warmup_steps=3)
    resumed.load_state_dict(clock.state_dict(), step=10)
    assert resumed.warmup_steps == 13
    resumed._step0 = 10
    resumed.add(3, 9.0)
    assert resumed.charged_s() is None
    assert resumed.total_s() == pytest.approx(7.5 + 3 * 6.0 / 7)  # at the window's rate
    resumed._step0 = 13
    resumed.add(4, 2.0)
    assert resumed.charged_s() == pytest.approx(7.5 + 2.0 + 3 * 0.5)
    assert resumed.compile_s == pytest.approx(8.5 + 9.0 - 1.5)


def test_clock_reads_checkpoints_written_before_the_rule():
    clock = Clock(torch.device("cpu"), warmup_steps=3)
    clock.load_state_dict({"train_s": 5.0, "window_s": 3.0, "steps": 6}, step=9)
    assert clock.charged_s() == 5.0 and clock.compile_s == 0.0  # warm steps as measured


def test_compilation_stays_out_of_training_time(tmp_path):
    """Lion through torch.compile on CPU (a tensor above the fused-update threshold): the warm
    steps' excess is compile_s; with one timed segment (edges only at the warmup end and at the
    last step) every step is charged at the measured steady rate. The compile caches of this
    process are cleared first: a test that compiled Lion before would leave nothing to compile."""
    import torch

    torch.compiler.reset()
    code = run_inprocess(
        tmp_path,
        "optim=lion",
        "optim.impl=lionbench_compiled",
        "optim.lr=0.01",
        "recipe.model.n_embd=192",  # c_fc: 192 x 768 elements, compiled
        "train.steps=8",
        "train.log_interval=100",
        "train.eval_interval=100",
        "train.target=4.83",
    )
    assert code == 0
    (d,) = run_dirs(tmp_path)
    s = summary(d)
    assert s["compile_s"] > 0
    assert s["timed_steps"] == 5
    assert s["train_time_s"] == pytest.approx(8 / s["steps_per_s"], rel=1e-9)
    assert s["train_time_s"] + s["compile_s"] <= s["wall_s"]
    val = [r for r in metrics(d) if r["split"] == "val"]
    assert [r["step"] for r in val] == [0, 8] and val[0]["time_s"] == 0.0
    assert val[-1]["time_s"] == pytest.approx(s["train_time_s"], rel=1e-12)
    assert val[0]["loss"] > 4.83 > val[-1]["loss"]  # 4.85 at step 0 (uniform), 4.81 at step 8
    assert s["steps_to_target"] == 8
    assert s["time_to_target_s"] == pytest.approx(s["train_time_s"], rel=1e-12)
    assert s["expected_state_bytes"] == s["optimizer_state_bytes"]


# ------------------------------------------------------------------------------------ memory


def test_expected_state_bytes_match_the_measured(tmp_path):
    for optim, impl in (
        ("lion", "lionbench"),
        ("lion", "lionbench_bf16"),
        ("adamw", "fused"),
        ("sgd", "foreach"),
        ("adafactor", "foreach"),
    ):
        results = tmp_path / f"{optim}-{impl}"
        code = run_inprocess(results, f"optim={optim}", f"optim.impl={impl}", "train.steps=1")
        assert code == 0, impl
        s = summary(run_dirs(results)[0])
        assert s["optimizer_state_bytes"] > 0
        assert s["expected_state_bytes"] == s["optimizer_state_bytes"], (optim, impl)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or PeakMemory(torch.device("cpu")).kind != "cpu_vmhwm_run",
    reason="a per-run CPU peak needs Linux's /proc/self/clear_refs (elsewhere the process max)",
)
def test_peak_memory_is_per_run(tmp_path):
    """A large model, then a small one in the same process: the second run reports less (the
    process's lifetime maximum could only grow)."""
    fast = ["train.steps=2", "train.eval_interval=100", "train.eval_batches=1"]
    big = ["recipe.model.n_embd=512", "recipe.model.n_layer=4", "optim=adamw"]
    assert run_inprocess(tmp_path / "big", *big, *fast) == 0
    assert run_inprocess(tmp_path / "small", "optim=adamw", *fast) == 0
    first = summary(run_dirs(tmp_path / "big")[0])
    second = summary(run_dirs(tmp_path / "small")[0])
    assert first["peak_mem_kind"] == second["peak_mem_kind"] == "cpu_vmhwm_run"
    assert second["peak_mem_bytes"] < first["peak_mem_bytes"]


# -------------------------------------------------------------------------------- loss floor


def builtin_data(scale: str):
    cfg = config.compose([f"scale={scale}"])
    config.validate(cfg)
    recipe = load_recipe(cfg)
    batch, accum = int(cfg.train.batch_size), int(cfg.train.grad_accum)
    data = recipe.build_data(batch, batch // accum, torch.device("cpu"), 0)
    return cfg, data


def language(cfg) -> bt.TokenLanguage:
    b = cfg.recipe.builtin
    keys = ("vocab_size", "successors", "concentration", "block_len", "new_prob", "seed")
    return bt.TokenLanguage(**{k: b[k] for k in keys})


def bayes_loss_slow(lang: bt.TokenLanguage, chain: bt.Chain, x: np.ndarray, y: np.ndarray):
    """-log Pr(y_t | x_<=t) token by token, following each sequence's blocks as they come."""
    succ: dict[tuple[int, int], float] = {}
    for a in range(lang.n_text):
        below = 0.0
        for b, cum in zip(chain.successors[a], chain.cum_probs[a], strict=True):
            if cum > below:  # merged duplicates add nothing
                succ[(a, int(b))] = cum - below
            below = cum
    stride = lang.block_len + 1
    out = np.zeros(y.shape)
    for i in range(len(x)):
        seq = np.concatenate([x[i], y[i, -1:]])
        kind = None
        for t in range(1, len(seq)):
            offset, token = t % stride, int(seq[t])
            if offset == 0:
                kind = token
                p = lang.new_prob if token == lang.new_marker else 1 - lang.new_prob
            elif t < stride or kind == lang.new_marker:  # the first block is always new text
                p = chain.stationary[token] if offset == 1 else succ[(int(seq[t - 1]), token)]
            else:
                p = 1.0  # a copy: certain given the context
            out[i, t - 1] = -math.log(p)
    return out


def test_floor_is_the_bayes_loss_of_the_eval_batches():
    cfg, data = builtin_data("smoke")
    lang = language(cfg)
    chain = bt.build_chain(lang)
    per_batch = [bayes_loss_slow(lang, chain, x.numpy(), y.numpy()).mean() for x, y in data.eval]
    assert len(per_batch) == int(cfg.train.eval_batches)
    assert data.loss_floor == pytest.approx(float(np.mean(per_batch)), rel=1e-12)
    process = bt.loss_floor(lang, chain, int(cfg.recipe.model.block_size) + 1)
    assert data.info["loss_floor_process"] == pytest.approx(process, rel=1e-12)
    assert abs(data.loss_floor - process) > 0.05  # smoke's 16 sequences: far from the entropy


def test_small_scale_floor_is_near_the_entropy():
    _, data = builtin_data("small")
    assert abs(data.loss_floor - data.info["loss_floor_process"]) < 0.01


# ------------------------------------------------------------------------------ bench optim


def test_bench_optim_counts_steps_and_says_what_it_does(capsys):
    """Exact step counts with no budget, a probe before each repeat, a line as each
    implementation starts and finishes (in a rotated order), and fractions of a ceiling that no
    implementation exceeds: structure only, never the (shared machine's) timings."""
    from lionbench.commands import bench_optim as bench

    impls = ["adamw:fused", "sgd:foreach"]
    rows = bench.bench_optim(bench.Options("flat:1000", impls, 3, 1, 2, "cpu", budget_s=0.0))
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("bench optim: flat:1000, 1,000 parameters in 1 tensors, on cpu")
    assert err[1].startswith("plan: 2 implementations x 2 repeats")
    assert err[-1].startswith("done in ")
    probes = [i for i, line in enumerate(err) if " probe best " in line]
    starts = [line for line in err if line.endswith(" ...")]
    assert len(probes) == 2 and len(starts) == 4
    assert starts == [
        "[1/4] adamw:fused, repeat 1/2 ...",
        "[2/4] sgd:foreach, repeat 1/2 ...",
        "[3/4] sgd:foreach, repeat 2/2 ...",  # rotated: a slow spell does not always hit one
        "[4/4] adamw:fused, repeat 2/2 ...",
    ]
    assert probes[1] > err.index(starts[1]) and probes[1] < err.index(starts[2])
    finished = [line for line in err if ": 3 steps, median " in line]
    assert len(finished) == 4 and all("median so far" in line for line in finished)

    assert [r["impl"] for r in rows] == impls
    for r in rows:
        assert r["steps"] == 3 and r["timed_steps"] == 6 and r["repeats"] == 2
        assert r["ms_min"] <= r["ms_per_step"] <= r["ms_max"]
        assert 0 < r["fraction_of_bandwidth"] <= 1
        assert r["bandwidth_gb_s"] >= max(r["probe_gb_s"], r["effective_gb_s"])
        assert r["probe_pattern"] in bench.PROBE_PATTERNS
        assert r["threads"] == torch.get_num_threads()
    assert rows[0]["vs_adamw_fused"] == 1.0


def test_a_budget_adds_steps_up_to_the_cap():
    """At least `steps` timed steps, more while the budget lasts, never more than MAX_STEPS;
    the warm-up steps are run and not timed."""
    from lionbench.commands import bench_optim as bench

    class Counting:
        calls = 0

        def step(self) -> None:
            self.calls += 1

    tensors = bench.make_tensors([(4,)], torch.device("cpu"))
    exact = Counting()
    warm_s, times = bench.time_steps(exact, tensors, torch.device("cpu"), 5, 2, seconds=0.0)
    assert len(times) == 5 and exact.calls == 7 and warm_s >= 0
    capped = Counting()
    _, times = bench.time_steps(capped, tensors, torch.device("cpu"), 5, 0, seconds=1e9)
    assert len(times) == bench.MAX_STEPS == capped.calls


def test_steps_and_budget_options():
    """--steps alone: exactly N; --budget alone: at least MIN_STEPS; neither: the default
    budget; a budget that is not a finite number of seconds >= 0 is one line."""
    from lionbench.commands import bench_optim as bench
    from lionbench.errors import UserError

    assert bench.counts(None, None) == (bench.MIN_STEPS, bench.DEFAULT_BUDGET_S)
    assert bench.counts(20, None) == (20, 0.0)
    assert bench.counts(None, 5.0) == (bench.MIN_STEPS, 5.0)
    assert bench.counts(4, 5.0) == (4, 5.0)
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(UserError, match="--budget must be a finite number of seconds >= 0"):
            bench.check_options(bench.Options("flat:10", [], 1, 0, 1, "cpu", budget_s=bad))


def test_default_impls_leave_out_only_the_slow_cpu_paths():
    from lionbench.commands import bench_optim as bench
    from lionbench.optim.registry import OPTIMIZERS, all_impls

    assert set(bench.SLOW_ON_CPU) <= set(all_impls())  # a renamed implementation fails here
    runnable = bench.default_impls("cpu")
    default = bench.pick_impls([], "cpu")
    assert default == [i for i in runnable if i not in bench.SLOW_ON_CPU]
    assert bench.BASELINE in default
    # every optimizer still timed, but Muon (its bf16 Newton-Schulz takes minutes a step on a
    # CPU at GPT-2 size) and the libraries' entries (their defaults cost 90 s more, heavyball
    # compiles): `--impls all` times them; another optimizer left out fails here
    left_out = {n for n, spec in OPTIMIZERS.items()
                if all(f"{n}:{i}" in bench.SLOW_ON_CPU for i in spec.impls)}  # fmt: skip
    assert left_out == {"muon", "timm", "pytorch_optimizer", "heavyball"}
    assert {i.split(":")[0] for i in default} == set(OPTIMIZERS) - left_out
    assert bench.pick_impls(["all"], "cpu") == runnable
    assert bench.pick_impls(["sgd:loop", "sgd:loop"], "cpu") == ["sgd:loop"]


def rows_of(effective: dict[str, float], probe: float) -> list[dict]:
    """Rows for made-up median step times: `effective` GB/s per implementation of 1e9 fp32
    parameters (adamw moves 28 bytes each, lion 20), against a probe's best of `probe` GB/s."""
    from lionbench.commands import bench_optim as bench

    n = 10**9
    medians = {
        impl: [bench.impl_spec(impl).bytes_moved * n / (gbps * 1e9)] * 3
        for impl, gbps in effective.items()
    }
    settings = {"n": n, "params": "flat:1e9", "tensors": 1, "repeats": 3, "warmup": 1}
    settings |= {"budget_s": 0.0, "device": torch.device("cpu")}
    counts = {impl: [2, 2, 2] for impl in effective}
    probes = [{"scale": probe * 1e9 * 0.9, "add": probe * 1e9}, {"scale": probe * 0.5e9}]
    return bench.summarize(medians, counts, probes, settings)


def test_the_ceiling_is_the_best_probe_pass():
    rows = {r["impl"]: r for r in rows_of({"adamw:fused": 40.0, "lion:lionbench": 30.0}, 50.0)}
    for r in rows.values():
        assert r["probe_gb_s"] == pytest.approx(50.0) == r["bandwidth_gb_s"]
        assert r["probe_pattern"] == "add" and not r["above_probe"]
    assert rows["adamw:fused"]["fraction_of_bandwidth"] == pytest.approx(0.8)
    assert rows["lion:lionbench"]["fraction_of_bandwidth"] == pytest.approx(0.6)


def test_an_implementation_above_the_probe_raises_the_ceiling_and_is_flagged(capsys):
    """Never a fraction above 1: the ceiling becomes the fastest implementation's bandwidth,
    the row says so, and the table marks it and explains."""
    from lionbench.commands import bench_optim as bench

    rows = rows_of({"adamw:fused": 53.0, "lion:lionbench": 30.0}, 50.0)
    fused, lion = rows
    assert fused["above_probe"] and not lion["above_probe"]
    assert fused["fraction_of_bandwidth"] == 1.0
    assert lion["fraction_of_bandwidth"] == pytest.approx(30 / 53)
    assert fused["bandwidth_gb_s"] == pytest.approx(53.0) and fused["probe_gb_s"] == 50.0
    bench.print_table(rows)
    out = capsys.readouterr().out
    assert "100%*" in out and "(probe 50.0, raised)" in out
    assert "* adamw:fused moved more bytes per second than the probe's best pass" in out


def test_bench_optim_progress_goes_to_stderr_and_the_table_to_stdout(tmp_path):
    from helpers import run_cli

    out = tmp_path / "b.csv"
    res = run_cli(
        "bench", "optim", "--params", "flat:2000", "--impls", "adamw:fused,sgd:foreach",
        "--steps", "2", "--repeats", "1", "--out", str(out), "--device", "cpu",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stderr.startswith("bench optim: flat:2000")
    assert "[1/2] adamw:fused, repeat 1/1 ..." in res.stderr and "done in " in res.stderr
    assert "repeat 1/1" not in res.stdout and "adamw:fused" in res.stdout
    import pandas as pd

    table = pd.read_csv(out)
    assert list(table["timed_steps"]) == [2, 2] and (table["fraction_of_bandwidth"] <= 1).all()
