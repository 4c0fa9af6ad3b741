"""`lionbench report --out` writes every paper table as LaTeX (issue 27, item 6): a booktabs
`tabular` per table beside its CSV, mean ± 95% CI, the verdict marks, escaped labels, linked
from the report, and (where pdflatex is installed) compiling inside a plain article. Run
directories written by hand, no training."""

from __future__ import annotations

import json
import math
import re
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest
import yaml
from scipy import stats

from lionbench import report as report_mod
from lionbench.record import RunSummary, Status, digest
from lionbench.report.latex import escape, kind_of, mean_ci, write_latex

RECIPE = {
    "name": "gpt2",
    "model": {"n_layer": 2, "n_embd": 32},
    "adamw": {"lr": 3e-3, "weight_decay": 0.1, "betas": [0.9, 0.95]},
    "lion": {"ratio": 3, "betas": [0.9, 0.99]},
}
# two arms of a user optimizer told apart by a tag full of LaTeX's special characters
TAGS = ("50%_{x}", "#1~^\\$&")
SLUG = "gpt2-smoke"
# final val loss per seed 0, 1, 2: AdamW the baseline, Lion better, the first tag worse
LOSSES = {
    ("adamw", 3e-3, 0.1, None, None): (4.00, 4.05, 4.10),
    ("lion", 1e-3, 0.3, 3, None): (3.80, 3.84, 3.91),
    ("lion", 3e-4, 1.0, 10, None): (3.90, 3.97, 4.00),
    ("my_opt", 1e-2, 0.0, None, TAGS[0]): (4.50, 4.56, 4.61),
    ("my_opt", 1e-2, 0.0, None, TAGS[1]): (4.00, 4.06, 4.09),
}


def write_run(root: Path, optim: str, lr: float, wd: float, seed: int, **opts: object) -> None:
    """A finished run directory as lionbench writes it: config.yaml, metrics.jsonl, summary."""
    hp: dict = {"betas": [0.9, 0.95], "eps": 1e-8} if optim == "adamw" else {}
    o: dict = {"name": optim, "lr": lr, "weight_decay": wd, **hp}
    if opts.get("tag") is not None:
        hp = {"tag": opts["tag"]}
        o.update(hp, _target_="mypkg.MyOpt")
    else:
        o["impl"] = {"adamw": "fused", "lion": "lionbench"}[optim]
    if opts.get("ratio") is not None:
        o["ratio"] = opts["ratio"]
    cfg = {
        "seed": seed, "results_dir": str(root), "scale": "smoke", "sweep_name": None,
        "train": {"steps": 30, "batch_size": 8}, "data": {"source": "builtin"},
        "checkpoint": {"interval": 1000, "keep": False}, "recipe": RECIPE, "optim": o,
        "logger": {"wandb": {"mode": "disabled"}},
    }  # fmt: skip
    d = root / "gpt2" / f"{optim}-s{seed}-{digest(cfg)}"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    loss = float(opts["loss"])  # type: ignore[arg-type]
    points = [
        {"step": s, "split": "val", "loss": loss + 3.0 * (30 - s) / 30, "time_s": s * 0.1}
        for s in (0, 10, 20, 30)
    ]
    (d / "metrics.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))
    summary = RunSummary(
        status=Status.COMPLETED, recipe="gpt2", optim=optim, impl=o.get("impl", "target"),
        optim_target=o.get("_target_"), lr=lr, weight_decay=wd, hyperparams=hp, seed=seed,
        device="cpu", steps=30, final_val_loss=loss, best_val_loss=loss, loss_floor=1.0,
        steps_per_s=10.0, examples_per_s=80.0, opt_step_ms=1.0, peak_mem_bytes=10**9,
        optimizer_state_bytes=1000 if optim == "lion" else 2000, n_params=100,
    )  # fmt: skip
    (d / "summary.json").write_text(summary.to_json())


@pytest.fixture
def reported(tmp_path: Path) -> tuple[report_mod.Setting, Path]:
    """Five arms, three seeds each, one setting, reported with `--out`."""
    for (optim, lr, wd, ratio, tag), losses in LOSSES.items():
        for seed, loss in enumerate(losses):
            write_run(tmp_path / "r", optim, lr, wd, seed, ratio=ratio, tag=tag, loss=loss)
    out = tmp_path / "out"
    (setting,) = report_mod.report([tmp_path / "r"], out, [], [], quiet=True)
    return setting, out


def tex(out: Path, kind: str) -> str:
    return (out / f"{kind}_{SLUG}.tex").read_text()


def test_every_paper_table_is_a_booktabs_tabular_beside_its_csv(reported):
    _, out = reported
    names = {p.stem for p in out.glob("*.tex")}
    assert names == {f"{k}_{SLUG}" for k in ("optimizers", "targets", "ratio_sweep", "claims",
                                              "comparisons")}  # fmt: skip
    assert all((out / f"{n}.csv").exists() for n in names)
    for name in names:
        text = (out / f"{name}.tex").read_text()
        assert text.startswith("% caption: gpt2 smoke: ")
        assert r"\usepackage{booktabs,amssymb}" in text.splitlines()[1]
        body = [line for line in text.splitlines() if not line.startswith("%")]
        assert body[0].startswith(r"\begin{tabular}{") and body[-1] == r"\end{tabular}"
        assert body[1] == r"\toprule" and body[3] == r"\midrule"
        assert body[-2] == r"\bottomrule" and r"\begin{table}" not in text
    assert not {kind_of(n) for n in ("runs", "problems", "curves")} - {None}


def test_labels_are_escaped_and_the_loss_is_mean_plus_minus_the_95_ci(reported):
    setting, out = reported
    text = tex(out, "optimizers")
    assert r"tag=50\%\_\{x\}" in text and "50%_{x}" not in text
    assert r"tag=\#1\textasciitilde{}\textasciicircum{}\textbackslash{}\$\&" in text
    lion = LOSSES[("lion", 1e-3, 0.3, 3, None)]
    half = stats.t.ppf(0.975, 2) * statistics.stdev(lion) / math.sqrt(3)
    assert half == pytest.approx(0.1383, abs=1e-4)  # to its second significant digit: 0.14
    assert r"lion r=3 & 3 & $3.85 \pm 0.14$" in text
    assert r"$0.500{\times}$" in text  # optimizer state vs the baseline
    assert setting.baseline in text.splitlines()[0]  # the caption names the baseline
    assert r"$3.85 \pm 0.14$ $\star$" in tex(out, "ratio_sweep")  # the best r


def test_comparisons_carry_the_difference_its_ci_and_the_verdict_marks(reported):
    setting, out = reported
    text = tex(out, "comparisons")
    caption = text.splitlines()[0]
    assert r"$\blacktriangle$ better" in caption and r"$\blacktriangledown$ worse" in caption
    rows = {}
    for arm in setting.comparisons["arm"].unique():  # one heading per arm, its metrics below
        assert text.count(f"\\emph{{{escape(arm)}}}") == 1
        block = text.split(f"\\emph{{{escape(arm)}}}")[1].split(r"\emph{")[0]
        rows[arm] = next(r for r in block.splitlines() if r.startswith(r"\quad final val loss"))
    c = setting.comparisons.set_index(["arm", "metric"])
    lion = c.loc[("lion r=3", "final_val_loss")]
    assert lion["verdict"] == "better"
    bounds = f"[{lion['low']:+#.3g}, {lion['high']:+#.3g}]"
    assert f"$\\mathbf{{{lion['estimate']:+#.3g}}}\\ {bounds}$" in rows["lion r=3"]
    assert rows["lion r=3"].endswith(r"& $\blacktriangle$ better \\")
    worse, same = (f"my_opt lr=0.01 wd=0 tag={t}" for t in TAGS)
    assert rows[worse].endswith(r"& $\blacktriangledown$ worse \\")
    assert rows[same].endswith(r"& $\circ$ n.s. \\") and r"\mathbf" not in rows[same]
    assert r"\checkmark{} holds" in tex(out, "claims")  # Lion's state is half of AdamW's


def test_the_report_links_the_latex_files(reported):
    _, out = reported
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    for kind in ("optimizers", "comparisons", "targets"):
        assert f"[{kind}_{SLUG}.tex]({kind}_{SLUG}.tex)" in md
        assert f"href='{kind}_{SLUG}.tex'" in page
    assert "runs.tex" not in md and not (out / "runs.tex").exists()


def test_a_sweep_table_is_captioned_by_the_sweep(reported, tmp_path):
    setting, _ = reported
    study = setting.comparisons.assign(sweep="my_sweep")
    write_latex({"study_comparisons_my-sweep": study}, tmp_path, {})
    text = (tmp_path / "study_comparisons_my-sweep.tex").read_text()
    assert text.startswith(r"% caption: sweep my\_sweep (confirmation seeds): ")
    assert "AdamW's best setting" in text.splitlines()[0] and r"\bottomrule" in text


def test_escape_and_number_formats():
    assert escape("a_b%c&d#e$f{g}h") == r"a\_b\%c\&d\#e\$f\{g\}h"
    assert escape("~^\\") == r"\textasciitilde{}\textasciicircum{}\textbackslash{}"
    assert mean_ci(4.0, float("nan"), 1) == "$4$"  # one seed: no interval
    assert mean_ci(float("nan"), 0.1, 3) == "--"
    assert mean_ci(1234.0, 10.0, 3) == "$1234 \\pm 25$"  # to the half-width's 2nd digit


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no pdflatex (CI has no LaTeX)")
def test_the_tables_compile_with_booktabs_and_amssymb_only(reported, tmp_path):
    """Each table \\input inside the user's own float, its `% caption:` line as the caption."""
    _, out = reported
    floats = []
    for path in sorted(out.glob("*.tex")):
        caption = path.read_text().splitlines()[0].removeprefix("% caption: ")
        floats.append(
            f"\\begin{{table}}[ht]\\centering\\small\n\\input{{{path}}}\n"
            f"\\caption{{{caption}}}\n\\end{{table}}\n"
        )
    doc = tmp_path / "paper.tex"
    doc.write_text(
        "\\documentclass{article}\n\\usepackage{booktabs,amssymb}\n\\begin{document}\n"
        + "".join(floats)
        + "\\end{document}\n"
    )
    run = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
    assert (tmp_path / "paper.pdf").stat().st_size > 0
    assert not re.search(r"^! ", run.stdout, re.MULTILINE)
