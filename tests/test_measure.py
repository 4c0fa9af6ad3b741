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
    last step) every step is charged at the measured steady rate."""
    code = run_inprocess(
        tmp_path,
        "optim=lion",
        "optim.impl=lionbench_compiled",
        "optim.lr=0.01",
        "recipe.model.n_embd=192",  # c_fc: 192 x 768 elements, compiled
        "train.steps=8",
        "train.log_interval=100",
        "train.eval_interval=100",
        "train.target=4.8",
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
    assert val[0]["loss"] > 4.8 > val[-1]["loss"]  # 4.85 at step 0 (uniform), 4.75 at step 8
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
