"""`lionbench study claims` and the report's confirmed verdicts and six claims.

Training is replaced by a stand-in for `launch.main` that writes each run directory from a known
loss model (config, metrics and summary, as a run writes them), so that planted effects and
their absence are judged through the whole path (study -> manifests -> report) in seconds. The
claims' own tests get an A/A check: under no difference they hold (or are reversed) in at most
5% of draws."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import yaml
from helpers import SMOKE, cli_inprocess

from lionbench import report as report_mod
from lionbench.commands import study
from lionbench.commands.sweep import Request
from lionbench.report import claims as claims_mod
from lionbench.report import conditions
from lionbench.report import studies as studies_mod
from lionbench.report.values import SeedValue
from lionbench.run import launch
from lionbench.run.rundir import RunDir

SELECT, CONFIRM = [0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]
GRID = {"ratios": [1.5, 3.0, 6.0, 12.0], "adamw_lrs": [0.5, 1.0, 2.0]}
BASE_LR = 3e-3  # gpt2 smoke's recipe.adamw.lr


def noise(*key: object) -> float:
    """A deterministic N(0, 1)-like draw per key (seed, optimizer, condition)."""
    digest = hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()
    rng = np.random.default_rng(int(digest[:8], 16))
    return float(rng.standard_normal())


def planted_loss(cfg: dict, effects: bool) -> float:
    """Optimum AdamW lr 3e-3, Lion lr 1e-3 (r = 3); at batch 2 the optima move, AdamW's to
    1.5e-3 and Lion's to 2e-3 (what retuning must find); a shared per-seed term pairs the runs.
    With `effects`: Lion is 0.05 ahead at the recipe batch and not at batch 2, rsqrt costs Lion
    0.1 and AdamW 0.02, and at 2x its best lr Lion's default betas cost 0.3."""
    o, seed = cfg["optim"], cfg["seed"]
    lion = o["name"] == "lion"
    best = 1e-3 if lion else BASE_LR
    if cfg["train"]["batch_size"] < 8:
        best *= 2.0 if lion else 0.5
    loss = 3.0 + 0.2 * math.log(o["lr"] / best) ** 2 + 0.05 * noise(seed)
    loss += 0.005 * noise(
        seed, o["name"], o["lr"], cfg["train"]["batch_size"], cfg["sched"]["name"]
    )
    if not effects:
        return loss
    small = cfg["train"]["batch_size"] < 8
    if lion and not small:
        loss -= 0.05
    if cfg["sched"]["name"] == "rsqrt":
        loss += 0.1 if lion else 0.02
    if lion and o["lr"] > 1.5 * best and list(o["betas"]) == [0.9, 0.99]:
        loss += 0.3
    return loss


def write_run(cfg: dict, path, loss: float) -> None:
    """A completed run directory as a run writes it: config, two val records, summary."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    records = [
        {"split": "val", "step": 0, "loss": 6.0, "time_s": 0.0},
        {"split": "val", "step": 10, "loss": loss, "time_s": 1.0},
    ]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    lion = cfg["optim"]["name"] == "lion"
    summary = {
        "schema_version": 2,
        "status": "completed",
        "run_dir": str(path),
        "steps": 10,
        "final_val_loss": loss,
        "best_val_loss": loss,
        "steps_per_s": 10.0 + noise(cfg["seed"], "speed"),
        "optimizer_state_bytes": 1000 if lion else 2000,
        "expected_state_bytes": 1000 if lion else 2000,
        "device": "cpu",
    }
    (path / "summary.json").write_text(json.dumps(summary))


@pytest.fixture(scope="module")
def studied(tmp_path_factory):
    """A study over the fake runs with the effects planted (their absence: the A/A test below)."""
    results = tmp_path_factory.mktemp("study")
    monkeypatch = pytest.MonkeyPatch()

    def main(args, cfgs=None):
        for cfg, path in launch.run_dirs(cfgs):
            if not RunDir(path).status().finished:
                write_run(cfg, path, planted_loss(cfg, True))
        return 0

    monkeypatch.setattr(launch, "main", main)
    try:
        code = study.run_study(
            Request(
                GRID["ratios"], SELECT, [*SMOKE, f"results_dir={results}"], launcher="joblib",
                adamw_lrs=GRID["adamw_lrs"], confirm_seeds=CONFIRM, max_extend=1,
            )
        )  # fmt: skip
    finally:
        monkeypatch.undo()
    assert code == 0
    (found,) = studies_mod.read_studies([results], *report_mod.load_runs([results]))
    return True, results, found


def verdicts(found) -> dict[str, str]:
    return dict(zip(found.claims["claim"], found.claims["verdict"], strict=True))


def test_study_manifest_names_every_condition(studied):
    _, results, _ = studied
    m = json.loads((results / "_studies" / "gpt2-smoke-claims.json").read_text())
    assert m["seeds"] == CONFIRM and m["best"] == {"adamw": 1.0, "lion": 3.0}
    assert m["reference"] == {"batch_size": 8, "sched": "cosine", "lion_betas": [0.9, 0.99]}
    assert m["claims"]["batch"]["change"] == "train.batch_size=2"
    # each optimizer retuned at each condition, on the same budget: the grid around its best
    batch, sched = m["claims"]["batch"]["tuned"], m["claims"]["schedule"]["tuned"]
    assert batch["adamw"]["initial_grid"] == [0.5, 1.0, 2.0] and batch["lion"]["initial_grid"] == [
        1.5, 3.0, 6.0
    ]  # fmt: skip
    assert batch["adamw"]["best"]["lr"] == pytest.approx(1.5e-3)  # the optima moved at batch 2
    assert batch["lion"]["best"]["lr"] == pytest.approx(2e-3)
    assert sched["adamw"]["best"]["lr"] == pytest.approx(BASE_LR)  # and stayed under rsqrt
    assert {batch[o]["optimum"] for o in batch} == {"interior"}
    variant_lrs = {
        yaml.safe_load((results / d / "config.yaml").read_text())["optim"]["lr"]
        for dirs in m["claims"]["batch"]["variant"].values()
        for d in dirs
    }
    assert sorted(variant_lrs) == pytest.approx([1.5e-3, 2e-3])
    for claim, optims in (("batch", 2), ("schedule", 2), ("betas", 1)):
        for part in ("reference", "variant"):
            got = m["claims"][claim][part]
            assert sum(len(v) == len(CONFIRM) for v in got.values()) == optims, (claim, part)
            for dirs in got.values():
                assert all((results / d / "summary.json").exists() for d in dirs)


def test_planted_effects_are_found_and_absent_ones_are_not(studied):
    planted, _, found = studied
    v = verdicts(found)
    assert v[claims_mod.RATIO] == "holds"  # r = 3 is interior and beats r = 1.5 by 0.1
    assert v["Lion's optimizer state is at most half of AdamW's"] == "holds"
    new = (claims_mod.BATCH, claims_mod.SCHEDULE, claims_mod.BETAS)
    expected = "holds" if planted else "no significant difference"
    assert {v[c] for c in new} == {expected}, v


def test_the_headline_uses_only_the_confirmation_seeds(studied):
    planted, _, found = studied
    c = found.comparisons.set_index("metric").loc["final_val_loss"]
    assert c["n"] == len(CONFIRM) and c["unpaired"] == ""
    assert "on fresh seeds (6,7,8,9,10,11)" in found.headline and "n=6 pairs" in found.headline
    assert "lion r=3" in found.headline and "adamw lr=0.003" in found.headline
    # Lion is 0.05 ahead with the effects, level without
    assert c["verdict"] == ("better" if planted else "no significant difference")


def test_each_condition_is_compared_with_the_adamw_retuned_there(studied):
    """The small-batch setting's baseline is the AdamW the study retuned at that batch, not
    the recipe's lr (which did not run there), and the batch claim says what it rests on."""
    _, results, found = studied
    settings = report_mod.report([results], None, [], [], quiet=True)
    small = next(s for s in settings if "batch=2" in s.label)
    assert small.baseline == "adamw lr=0.0015 wd=0.1"
    main = next(s for s in settings if "batch=8" in s.label)
    assert main.baseline == "adamw lr=0.003 wd=0.1"  # the tuned best is the recipe's lr here
    basis = found.claims.set_index("claim").loc[claims_mod.BATCH, "rests_on"]
    assert "adamw retuned to lr 0.0015" in basis and "lion retuned to lr 0.002" in basis


def test_the_report_opens_with_the_confirmed_verdict_and_the_claims(studied, tmp_path):
    _, results, found = studied
    report_mod.report([results], tmp_path / "out", [], [], quiet=True)
    md = (tmp_path / "out" / "report.md").read_text()
    first = md.splitlines()[2]
    assert first == f"- {found.headline}"
    assert "## Sweep gpt2-smoke-claims: confirmed verdict and claims" in md
    for claim in found.claims["claim"]:
        assert claim in md
    assert (tmp_path / "out" / "study_claims_gpt2-smoke-claims.csv").exists()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["sched=rsqrt"], "the study varies sched itself"),
        (["train.batch_size=4"], "the study varies train.batch_size itself"),
    ],
)
def test_overrides_the_study_varies_are_refused(tmp_path, args, expected, capsys):
    code = cli_inprocess(
        "study", "claims", "--ratios", "3", "--seeds", "0", *SMOKE, f"results_dir={tmp_path}", *args
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expected in err[0]
    assert not any(tmp_path.iterdir())


def test_a_small_batch_that_is_not_smaller_is_refused(tmp_path, capsys):
    code = cli_inprocess(
        "study", "claims", "--ratios", "3", "--seeds", "0", "--small-batch", "8", *SMOKE,
        f"results_dir={tmp_path}",
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--small-batch must be between 1 and" in err[0]
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------ A/A: the claims' error rate


def null_draw(rng: np.random.Generator, n: int) -> dict[str, dict]:
    """Four conditions of n seeds with a shared seed term and no effect anywhere."""
    shared = rng.standard_normal(n)
    return {
        f"{o} {part}": {
            s: SeedValue(3 + shared[s] + 0.3 * rng.standard_normal(), False) for s in range(n)
        }
        for o in ("lion", "adamw")
        for part in ("reference", "variant")
    }


def test_claims_hold_in_at_most_5_percent_of_null_draws():
    """400 draws of 6 seeds with no effect: each of the batch, schedule and betas claims is
    decided (either way) in at most 5% of them (the exact sign-flip test's level is 2/64)."""
    rng = np.random.default_rng(20260213)
    meta = {
        "reference": {"batch_size": 8, "sched": "cosine", "lion_betas": [0.9, 0.99]},
        "claims": {"batch": {"change": "train.batch_size=2"}},
        "aggressive_lr_factor": 2.0,
    }
    judges = (conditions.batch_claim, conditions.schedule_claim, conditions.betas_claim)
    decided = {j.__name__: 0 for j in judges}
    draws = 400
    for _ in range(draws):
        c = null_draw(rng, 6)
        for j in judges:
            decided[j.__name__] += j(meta, c)[1] not in ("no significant difference",)
    rates = {k: v / draws for k, v in decided.items()}
    assert all(r <= 0.05 for r in rates.values()), rates
