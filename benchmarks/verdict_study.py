"""How often the report's verdicts are wrong, and how often they find a real effect (not part of
the test suite; docs/design.md, "Verdicts", quotes its tables).

`power`: the share of comparisons with a decisive, correct verdict at 3, 5 and 8 seeds for
effects of 0.5, 1 and 2 standard deviations of the per-seed paired differences (normal per-seed
noise; one candidate, and two candidates with the effect, Holm over both), through the report's
own `compare_arms`; with no effect, the share of draws where any candidate is decided (A/A).

`aa`: real gpt2 smoke runs of one AdamW config, each seed once, a third of them beside a busy
process (one core, not a child of the run, started just before it). Each draw takes 2n of the
runs that trained alone at random and splits them into a baseline and a candidate arm (pairs of
different seeds: no effect, and no pairing benefit); for the speeds, each of the candidate's
runs is swapped for a loaded one with probability 0.3 (load injected into one arm). The
report's `run_values` + `compare_arms` give the verdicts on final val loss and on steps/s, with
the contended runs left out as the report does, and once more with them kept. The decisive
rate and its 95% Clopper-Pearson interval, per n.

    python benchmarks/verdict_study.py power
    python benchmarks/verdict_study.py aa --pool 40 --draws 400
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

DECISIVE = ("better", "worse")
NO_CURVES = pd.DataFrame(columns=["run_dir", "step", "loss", "time_s"])


def interval(hits: int, n: int) -> str:
    """`4.8% [2.9%, 7.3%]`: the rate and its 95% Clopper-Pearson interval."""
    ci = sps.binomtest(hits, n).proportion_ci(0.95)
    return f"{hits / n:.1%} [{ci.low:.1%}, {ci.high:.1%}]"


def verdicts(runs: pd.DataFrame, k: int) -> pd.DataFrame:
    from lionbench.report.values import run_values
    from lionbench.report.verdicts import compare_arms

    cands = [f"cand {j}" for j in range(1, k + 1)]
    return compare_arms(run_values(runs, NO_CURVES, []), "base", cands)


def synthetic(rng: np.random.Generator, n: int, k: int, effect: float) -> pd.DataFrame:
    """k + 1 arms on n paired seeds: a shared seed term, each arm's own N(0, 1), candidates
    `effect` sds of the differences (sqrt 2) lower."""
    shared = rng.standard_normal(n)
    rows = []
    for j in range(k + 1):
        own = rng.standard_normal(n)
        for s in range(n):
            loss = shared[s] + own[s] - (effect * math.sqrt(2) if j else 0.0)
            rows.append({
                "run_dir": f"{j}/{s}", "arm": f"cand {j}" if j else "base", "optim": "x",
                "seed": s, "status": "completed", "final_val_loss": loss, "best_val_loss": loss,
                "steps_per_s": 1.0, "opt_step_ms": 1.0,
            })  # fmt: skip
    return pd.DataFrame(rows)


def power(draws: int) -> None:
    rng = np.random.default_rng(0)
    print("| pairs | effect (sd of differences) | 1 candidate | 2 candidates (Holm) |")
    print("|---:|---:|---:|---:|")
    for n in (3, 5, 8):
        for effect in (0.0, 0.5, 1.0, 2.0):
            cells = []
            for k in (1, 2):
                hits, total = 0, 0
                for _ in range(draws):
                    c = verdicts(synthetic(rng, n, k, effect), k)
                    v = c.loc[c["metric"] == "final_val_loss", "verdict"]
                    if effect:  # every comparison counts: correct and decisive, or not
                        hits, total = hits + int((v == "better").sum()), total + len(v)
                    else:  # the draw counts: did any candidate get a verdict at all?
                        hits, total = hits + int(v.isin(DECISIVE).any()), total + 1
                cells.append(interval(hits, total))
            print(f"| {n} | {effect:g}{' (A/A)' if not effect else ''} | {cells[0]} | {cells[1]} |")


def busy_process() -> int:
    """A process that keeps one core busy, started through a shell that exits at once, so that
    it is no child of this process (a run counts its children's CPU time as its own)."""
    out = subprocess.run(
        ["sh", "-c", f"{sys.executable} -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    time.sleep(0.2)  # running before the run starts
    return int(out.stdout.strip())


def train_pool(results: Path, runs: int, load_share: float, rng: np.random.Generator) -> None:
    """`runs` smoke runs; each shares the machine with a busy process with probability
    `load_share` (its seed is recorded in loaded.json)."""
    import os
    import signal

    from lionbench.run.launch import main

    loaded = []
    for seed in range(runs):
        pid = busy_process() if rng.random() < load_share else None
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                main(["scale=smoke", "logger.wandb.mode=disabled", f"results_dir={results}",
                      "optim=adamw", f"seed={seed}", "train.steps=200"])  # fmt: skip
        finally:
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                loaded.append(seed)
        print(f"trained {seed + 1} of {runs}", file=sys.stderr, flush=True)
    (results / "loaded.json").write_text(json.dumps(loaded))


def draw(runs: pd.DataFrame, n: int, arm: str) -> pd.DataFrame:
    """n runs relabelled as an arm on seeds 0..n-1 (the pairs of an A/A draw)."""
    return runs.assign(arm=arm, seed=range(n)).reset_index(drop=True)


def aa(pool: int, draws: int, results: Path | None) -> None:
    from lionbench.report.load import load_runs

    rng = np.random.default_rng(1)
    if results is None:
        results = Path(tempfile.mkdtemp(prefix="lionbench-aa-"))
        t0 = time.perf_counter()
        train_pool(results, 2 * pool, 1 / 3, rng)
        print(f"trained in {time.perf_counter() - t0:.0f} s: {results}", file=sys.stderr)
    runs, _ = load_runs([results])
    hogged = set(json.loads((results / "loaded.json").read_text()))
    alone, loaded = runs[~runs["seed"].isin(hogged)], runs[runs["seed"].isin(hogged)]
    flagged = int(loaded["contended"].fillna(False).sum())
    false = int(alone["contended"].fillna(False).sum())
    ratio = loaded["steps_per_s"].median() / alone["steps_per_s"].median()
    print(
        f"{len(runs)} runs: {len(loaded)} beside a busy process ({flagged} flagged contended, "
        f"median steps/s {ratio:.2f}x of the others), {len(alone)} alone ({false} flagged)"
    )
    print("| pairs | final val loss | steps/s, contended left out | steps/s, kept |")
    print("|---:|---:|---:|---:|")
    for n in (3, 5, 8):
        hits = {"loss": 0, "fair": 0, "kept": 0}
        for _ in range(draws):
            pick = alone.iloc[rng.choice(len(alone), 2 * n, replace=False)]
            base, cand = draw(pick.iloc[:n], n, "base"), draw(pick.iloc[n:], n, "cand 1")
            c = verdicts(pd.concat([base, cand], ignore_index=True), 1)
            hits["loss"] += c.set_index("metric").loc["final_val_loss", "verdict"] in DECISIVE
            swap = rng.random(n) < 0.3  # this candidate run shared the machine
            hot = loaded.iloc[rng.choice(len(loaded), n, replace=False)]
            mixed = [hot.iloc[i] if swap[i] else pick.iloc[n + i] for i in range(n)]
            cand = draw(pd.DataFrame(mixed), n, "cand 1")
            both = pd.concat([base, cand], ignore_index=True)
            fair = verdicts(both, 1).set_index("metric")["verdict"]
            kept = verdicts(both.assign(contended=False), 1).set_index("metric")["verdict"]
            hits["fair"] += fair.get("steps_per_s") in DECISIVE
            hits["kept"] += kept.get("steps_per_s") in DECISIVE
        print(f"| {n} | " + " | ".join(interval(hits[k], draws) for k in hits) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("study", choices=("power", "aa"))
    parser.add_argument("--draws", type=int, default=400)
    parser.add_argument("--pool", type=int, default=60, help="half the runs trained (aa)")
    parser.add_argument("--results", type=Path, help="reuse the runs of an earlier aa study")
    args = parser.parse_args()
    if args.study == "power":
        power(args.draws)
    else:
        aa(args.pool, args.draws, args.results)


if __name__ == "__main__":
    main()
