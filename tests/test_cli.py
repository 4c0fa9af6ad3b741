"""The command line as a user types it, in subprocesses."""

from __future__ import annotations

import subprocess
import sys

from conftest import SMOKE, run_cli, run_dirs, summary


def test_help_does_not_import_torch():
    """What makes `--help` instant: neither torch nor Hydra is imported (no wall-time assertion:
    this machine is shared)."""
    code = (
        "import sys; from lionbench.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'hydra' not in sys.modules, 'hydra imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    res = run_cli("--help")
    assert res.returncode == 0 and "run" in res.stdout and "list" in res.stdout


def test_list_shows_what_exists():
    res = run_cli("list")
    assert res.returncode == 0
    for word in (
        "gpt2",
        "lion",
        "adamw",
        "lion_pytorch_foreach",
        "fused",
        "smoke",
        "small",
        "full",
        "builtin",
        "tokens",
        "synthetic",
        "cosine",
    ):
        assert word in res.stdout, word


def test_run_end_to_end(tmp_path):
    res = run_cli("run", *SMOKE, "optim=adamw", f"results_dir={tmp_path}")
    assert res.returncode == 0, res.stderr
    (d,) = run_dirs(tmp_path)
    s = summary(d)
    assert s["status"] == "completed" and s["optim"] == "adamw"
    assert s["final_val_loss"] < 4.85  # ln(128) = 4.85 at init: it learned something
    assert "loss floor" in res.stdout and str(d) in res.stdout


def test_multirun_makes_four_runs_then_trains_nothing(tmp_path):
    args = [
        "run",
        "-m",
        *SMOKE,
        "train.steps=10",
        "optim=lion,adamw",
        "seed=0,1",
        f"results_dir={tmp_path}",
    ]
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    dirs = run_dirs(tmp_path)
    assert len(dirs) == 4
    assert {(summary(d)["optim"], summary(d)["seed"]) for d in dirs} == {
        ("lion", 0),
        ("lion", 1),
        ("adamw", 0),
        ("adamw", 1),
    }
    stamps = {d: (d / "summary.json").stat().st_mtime_ns for d in dirs}
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already completed") == 4
    assert "step 5/10" not in again.stdout
    assert {d: (d / "summary.json").stat().st_mtime_ns for d in run_dirs(tmp_path)} == stamps


def test_hydra_cfg_job_prints_the_config_and_runs_nothing(tmp_path):
    res = run_cli("run", "--cfg", "job", "--resolve", "optim=adamw", f"results_dir={tmp_path}")
    assert res.returncode == 0, res.stderr
    assert "name: adamw" in res.stdout and "lr: 0.003" in res.stdout  # the small scale's AdamW lr
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_prepare_then_train_on_the_token_files(tmp_path):
    text = tmp_path / "book.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(f'{{"text": "document {i}: hello lion"}}' for i in range(20)))
    out = tmp_path / "tok"
    res = run_cli("prepare", "text", str(text), str(docs), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert f"data.dir={out}" in res.stdout
    res = run_cli(
        "run",
        *SMOKE,
        "data=tokens",
        f"data.dir={out}",
        "recipe.model.vocab_size=257",
        f"results_dir={tmp_path / 'r'}",
    )
    assert res.returncode == 0, res.stderr
    (d,) = run_dirs(tmp_path / "r")
    s = summary(d)
    assert s["data"] == "tokens" and s["status"] == "completed"
    assert s["final_val_loss"] < s["n_params"]  # finite, and recorded


def test_run_help_is_hydras():
    res = run_cli("run", "--help")
    assert res.returncode == 0
    assert "recipe: gpt2" in res.stdout and "optim: adafactor, adamw, lion, sgd" in res.stdout


def test_multirun_in_worker_processes_reports_failures_in_its_exit_code(tmp_path):
    """Image files that cannot be decoded but start like a PNG pass the pre-check (it reads
    only their first bytes) and make each run fail inside joblib's worker processes; the parent
    reads the run directories."""
    root = tmp_path / "images"
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            for i in range(10):
                (root / split / name / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a png")
    res = run_cli(
        "run",
        "-m",
        *SMOKE,
        "hydra/launcher=joblib",
        "recipe=resnet50",
        "data=imagefolder",
        f"data.root={root}",
        "data.workers=0",
        "optim=lion,adamw",
        f"results_dir={tmp_path / 'r'}",
    )
    assert res.returncode == 1, (res.stdout, res.stderr)
    statuses = {summary(d)["status"] for d in run_dirs(tmp_path / "r")}
    assert statuses == {"failed"}
