"""The command line as a user types it, in subprocesses."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import SMOKE, run_cli, run_dirs, summary


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


def test_run_help_is_lionbenchs_summary_and_hydra_help_is_hydras():
    """`run --help` lists groups with their defaults and keys without Hydra or torch (it must
    print at once), hiding the internal recipe_scale group; `--hydra-help` is Hydra's page."""
    res = run_cli("run", "--help")
    assert res.returncode == 0, res.stderr
    from lionbench.optim.registry import OPTIMIZERS

    optims = ", ".join(f"[{n}]" if n == "lion" else n for n in sorted(OPTIMIZERS))  # the default
    assert f"optim   {optims}" in res.stdout
    assert "recipe  [gpt2], resnet50, unet, vit" in res.stdout
    assert "recipe_scale" not in res.stdout and "train.batch_size" in res.stdout
    assert "compile=false" in res.stdout
    probe = (
        "import sys, contextlib, io\nfrom lionbench import cli\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    cli.main(['run', '--help'])\n"
        "assert 'torch' not in sys.modules and 'hydra' not in sys.modules, 'heavy import'"
    )
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    hydra_help = run_cli("run", "--hydra-help")
    assert hydra_help.returncode == 0 and "Hydra" in hydra_help.stdout
    # lionbench's completion, not Hydra's `-sc install=bash` (which lionbench refuses)
    assert "lionbench --install-completion" in hydra_help.stdout
    assert "-sc" not in hydra_help.stdout and "hydra/launcher: basic, joblib" in hydra_help.stdout


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


@pytest.mark.parametrize(
    "args, expected",
    [
        (["sweep", "scale=smoke", "--ratio", "3"], "no such option --ratio for 'lionbench sweep'; "
         "did you mean --ratios?"),
        (["sweep", "-m", "scale=smoke"], "no such option -m for 'lionbench sweep' (options: "),
        (["study", "claims", "--seed", "0"], "did you mean --seeds?"),
        (["bench", "train", "--recipe", "gpt2"], "did you mean --recipes?"),
    ],
)  # fmt: skip
def test_a_mistyped_option_gets_did_you_mean_not_a_lexer_error(tmp_path, args, expected, capsys):
    """Options of commands that pass the rest to Hydra: a typo is named, with the closest
    option, in one line, exit 2, and nothing runs (the check precedes any composition)."""
    from lionbench import cli

    with pytest.raises(SystemExit) as e:
        cli.main([*args, f"results_dir={tmp_path / 'r'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and expected in err[0]
    assert not (tmp_path / "r").exists()


def test_output_outside_a_terminal_is_not_cut_to_80_columns(monkeypatch, capsys):
    """SLURM logs and pipes: a long run-directory path in a table stays whole on one line."""
    from lionbench.console import summary_table

    monkeypatch.delenv("COLUMNS", raising=False)
    path = "/very/long/results/" + "x" * 150 + "/gpt2/small-lion-lr0.001-wd0.3-s0-0123456789"
    summary_table({"recipe": "gpt2", "optim": "lion", "status": "completed", "run_dir": path})
    assert any(path in line for line in capsys.readouterr().out.splitlines())


def complete(words: str, shell: str = "bash") -> list[str]:
    """What a TAB prints, through the same protocol the installed completion script uses:
    bash passes the words split at `=` and the index of the word under the cursor."""
    cwords = words.replace("=", " = ").split() if shell == "bash" else words.split()
    cword = len(cwords) - (0 if words.endswith((" ", "=")) and shell == "bash" else 1)
    if shell == "bash" and words.endswith("="):
        cword -= 1  # the cursor is on the `=` word
    env = {
        "_LIONBENCH_COMPLETE": f"complete_{shell}",
        "COMP_WORDS": " ".join(cwords) + (" " if words.endswith(" ") else ""),
        "COMP_CWORD": str(cword),
        "_TYPER_COMPLETE_ARGS": words,
    }
    res = run_cli(env=env)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def test_tab_completes_commands_options_groups_and_choices():
    assert complete("lionbench ru") == ["run"]
    assert "recipe=" in complete("lionbench run rec")
    assert "recipe.adamw.lr=" in complete("lionbench run rec")
    assert complete("lionbench run recipe=") == ["gpt2", "resnet50", "unet", "vit"]
    assert complete("lionbench run optim=l") == ["lion"]
    assert complete("lionbench sweep --rat") == ["--ratios"]
    assert "train.batch_size=" in complete("lionbench sweep scale=smoke train.ba")
    zsh = " ".join(complete("lionbench run recipe=", "zsh"))
    assert all(f'"recipe={c}"' in zsh for c in ("gpt2", "resnet50", "unet", "vit"))


def test_hydras_shell_completion_points_to_lionbenchs_own(capsys):
    from lionbench import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["run", "--shell-completion", "install=bash"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1
    assert err[0].endswith("lionbench --install-completion")


def test_a_finished_run_says_the_next_command():
    from lionbench.console import next_steps

    line = next_steps(
        {"optim": "lion", "recipe": "vit", "scale": "smoke", "run_dir": "/r/vit/smoke-lion-x"}
    )
    assert "optim=adamw" in line and "lionbench report /r" in line
    assert "lionbench sweep recipe=vit scale=smoke" in line


def test_runs_of_a_sweep_leave_the_next_command_to_the_sweep(capsys):
    """The hint is for a first single run; in a sweep it would repeat after every run."""
    from lionbench.console import summary_table

    done = {"status": "completed", "optim": "lion", "recipe": "gpt2", "run_dir": "/r/gpt2/x"}
    summary_table(done)
    assert "next: compare with adamw" in capsys.readouterr().out
    summary_table({**done, "sweep_name": "s1"})
    assert "next:" not in capsys.readouterr().out
