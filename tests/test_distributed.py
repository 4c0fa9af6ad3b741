"""DDP through torchrun on CPU (gloo): the same global batch and seed train the same model."""

from __future__ import annotations

import math

from helpers import SMOKE, metrics, run_cli, run_dirs, run_inprocess, summary

# Same seed, same global batch (8) for both: two ranks of 4 examples each vs one process of 8.
# The only arithmetic difference is where fp32 sums are split (the gradient all-reduce adds two
# half-batch means, one process sums the whole batch), a relative 1e-7 per step; over 30 smoke
# steps this stayed below 1e-6 (Lion's sign() even hid it completely). 1e-5 leaves room for other
# CPUs and BLAS builds while still failing on any real error (a wrong slice, an unsynchronized
# gradient or a doubled step would move the loss by 1e-2 or more).
REL_TOL = 1e-5


def test_two_ranks_train_like_one_process(tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert run_inprocess(single, "optim=adamw") == 0
    res = run_cli("run", *SMOKE, f"results_dir={ddp}", "optim=adamw", "dist.nproc=2")
    assert res.returncode == 0, res.stderr[-3000:]

    (d,) = run_dirs(ddp)  # one run directory, written by rank 0 alone
    (ref,) = run_dirs(single)
    s, r = summary(d), summary(ref)
    assert s["status"] == "completed" and s["steps"] == r["steps"]
    assert s["first_batch_hash"] == r["first_batch_hash"]  # the same global batch
    assert s["init_state_hash"] == r["init_state_hash"]
    for key in ("final_train_loss", "final_val_loss"):
        assert math.isclose(s[key], r[key], rel_tol=REL_TOL), (key, s[key], r[key])
    got, want = metrics(d), metrics(ref)
    assert [(m["step"], m["split"]) for m in got] == [(m["step"], m["split"]) for m in want]
    for a, b in zip(got, want, strict=True):
        assert math.isclose(a["loss"], b["loss"], rel_tol=REL_TOL), (a, b)
    assert not list(ddp.glob("*/*/checkpoint.pt"))

    # Finished: the same command trains nothing and starts no workers.
    again = run_cli("run", *SMOKE, f"results_dir={ddp}", "optim=adamw", "dist.nproc=2")
    assert again.returncode == 0 and "already completed" in again.stdout


def test_a_batch_the_ranks_cannot_share_is_refused(tmp_path):
    res = run_cli("run", *SMOKE, f"results_dir={tmp_path}", "dist.nproc=3")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: train.batch_size 8 must be divisible by 3 ranks x train.grad_accum 1 = 3"
    ]
    assert not list(tmp_path.iterdir())
