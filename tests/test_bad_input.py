"""Bad input: one line on stderr naming what is accepted, exit code 2, no traceback, nothing
written."""

from __future__ import annotations

import functools
import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import SMOKE, run_cli
from PIL import Image

from lionbench.errors import UserError
from lionbench.optim.registry import OPTIMIZERS

CASES = {
    "unknown recipe": (["recipe=gpt3"], "accepted: gpt2"),
    "unknown optimizer": (["optim=nonesuch"], f"accepted: {', '.join(sorted(OPTIMIZERS))}"),
    "misspelt key": (["optim.lrr=1e-3"], "did you mean 'optim.lr'"),
    "misspelt group key": (["trian.steps=3"], "did you mean 'train'"),
    "negative lr": (["optim.lr=-1"], "optim.lr must be > 0"),
    "beta above one": (["optim.betas=[1.5,0.9]"], "optim.betas[0] must be in [0, 1)"),
    "missing token dir": (["data=tokens", "data.dir=/nonexistent"], "/nonexistent"),
    "token dir unset": (["data=tokens"], "data.dir"),
    "unknown scale": (["scale=huge"], "accepted: full, small, smoke"),
    "unknown impl": (["optim=adamw", "optim.impl=fusd"], "did you mean 'fused'"),
    "zero ratio": (["optim.ratio=0"], "optim.ratio must be > 0"),
    "non-integer steps": (["train.steps=ten"], "train.steps must be an integer"),
    "sweep without -m": (["optim=lion,adamw"], "add -m"),
    "indivisible accumulation": (["train.grad_accum=3"], "divisible"),
    "triton on cpu": (["optim.impl=lion_pytorch_triton", "device=cpu"], "needs a CUDA device"),
    "unknown device": (["device=tpu"], "accepted: auto, cpu, cuda"),
    "bad head count": (["recipe.model.n_head=3"], "divisible"),
    "results dir not writable": (["results_dir=/proc/lionbench-results"], "is not writable"),
    "results dir is a file": (["results_dir=/etc/hostname"], "exists and is not a directory"),
    # issue 18: values that were accepted and silently misread
    "target metric typo": (["train.target_metric=loos"], "did you mean 'loss'"),
    "target metric of another recipe": (["train.target_metric=top1"], "accepted: loss, ppl"),
    "negative checkpoint interval": (["checkpoint.interval=-1"], "checkpoint.interval"),
    "checkpoint keep not a boolean": (["checkpoint.keep=maybe"], "checkpoint.keep must be true"),
    "bias not a boolean": (["recipe.model.bias=maybe"], "recipe.model.bias must be true"),
    "dropout not a number": (["recipe.model.dropout=high"], "recipe.model.dropout must be"),
    "zero sampling steps": (
        ["recipe=unet", "recipe.diffusion.sample_steps=0"],
        "recipe.diffusion.sample_steps must be >= 1",
    ),
    "sampling steps not a number": (
        ["recipe=unet", "recipe.diffusion.sample_steps=many"],
        "recipe.diffusion.sample_steps must be an integer",
    ),
    "channels_last not a boolean": (["channels_last=yes"], "accepted: auto, true, false"),
}


@pytest.mark.parametrize("overrides,expected", CASES.values(), ids=CASES.keys())
def test_bad_input(tmp_path, overrides, expected):
    results = tmp_path / "results"
    res = run_cli("run", *SMOKE, f"results_dir={results}", *overrides)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in res.stderr + res.stdout
    assert not results.exists()


def test_bad_input_in_one_multirun_point_stops_everything_before_it_starts(tmp_path):
    results = tmp_path / "results"
    res = run_cli("run", "-m", *SMOKE, f"results_dir={results}", "optim.lr=1e-3,-1")
    assert res.returncode == 2 and "optim.lr must be > 0" in res.stderr
    assert not results.exists()


def test_prepare_bad_input(tmp_path):
    res = run_cli("prepare", "text", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o"))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'missing.txt'} is not a file (give text or .jsonl files)"
    ]
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------
# Data directories: token files and image folders (built in tmp_path, rejected before any run)
# ---------------------------------------------------------------------------------------------


def _tokens(
    tmp: Path,
    train: np.ndarray | bytes | None = None,
    val: np.ndarray | bytes | None = None,
    meta: object = None,
) -> list[str]:
    """A token directory (good uint16 files unless told otherwise) and the overrides using it."""
    d = tmp / "tokens"
    d.mkdir()
    for name, data in (("train", train), ("val", val)):
        if isinstance(data, bytes):
            (d / f"{name}.bin").write_bytes(data)
        else:
            (np.zeros(300, np.uint16) if data is None else data).tofile(d / f"{name}.bin")
    if meta is not None:
        (d / "meta.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    return ["data=tokens", f"data.dir={d}"]


def _empty_dir(tmp: Path, name: str) -> Path:
    (tmp / name).mkdir()
    return tmp / name


def _no_bins(tmp: Path) -> list[str]:
    d = _empty_dir(tmp, "tokens")
    (d / "input.txt").write_text("plain text, not tokenized yet")
    return ["data=tokens", f"data.dir={d}"]


@functools.cache
def _png() -> bytes:
    """One tiny real PNG, made once."""
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 40, 40)).save(buf, format="PNG")
    return buf.getvalue()


def _images(
    tmp: Path,
    train: dict[str, int] | None = None,
    val: dict[str, int] | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """An image folder root/{train,val}/<class>/*.png, and the resnet50 overrides using it."""
    root = tmp / "images"
    train = {"cat": 10, "dog": 10} if train is None else train
    val = {"cat": 2, "dog": 2} if val is None else val
    for split, counts in (("train", train), ("val", val)):
        (root / split).mkdir(parents=True)
        for name, n in counts.items():
            (root / split / name).mkdir()
            for i in range(n):
                (root / split / name / f"{i}.png").write_bytes(_png())
    return ["recipe=resnet50", "data=imagefolder", f"data.root={root}", *extra]


DATA_CASES = {
    "odd-length token file": (
        lambda t: _tokens(t, train=b"\0" * 1001),
        "train.bin has an odd byte length (1001): not a uint16 token file",
    ),
    "token ids above the vocabulary, no meta.json": (
        lambda t: _tokens(t, train=np.arange(600, dtype=np.uint16)),
        "train.bin has token id 599 but the model's vocabulary is 128 (ids 0..127)",
    ),
    "token ids above the vocabulary in val.bin": (
        lambda t: _tokens(t, val=np.full(300, 128, np.uint16)),
        "val.bin has token id 128 but the model's vocabulary is 128",
    ),
    "empty token dir": (
        lambda t: ["data=tokens", f"data.dir={_empty_dir(t, 'tokens')}"],
        "is empty (data=tokens needs train.bin, val.bin; make them with `lionbench prepare",
    ),
    "token dir without token files": (
        _no_bins,
        "train.bin is missing (data=tokens needs train.bin, val.bin, as `lionbench prepare "
        "text` writes; found: input.txt)",
    ),
    "token file shorter than a window": (
        lambda t: _tokens(t, val=np.zeros(10, np.uint16)),
        "val.bin has 10 tokens, fewer than one window of 33",
    ),
    "meta.json not an object": (
        lambda t: _tokens(t, meta="[257]"),
        "meta.json is not a JSON object",
    ),
    "meta.json with another dtype": (
        lambda t: _tokens(t, meta={"vocab_size": 100, "dtype": "uint32"}),
        "meta.json has dtype 'uint32', but data=tokens reads uint16 token files (accepted: uint16)",
    ),
    "meta.json vocabulary not a count": (
        lambda t: _tokens(t, meta={"vocab_size": "257"}),
        "meta.json has vocab_size '257': it must be an integer >= 1",
    ),
    "negative eval seed": (lambda t: ["data.eval_seed=-1"], "data.eval_seed must be >= 0, got -1"),
    "image root missing": (
        lambda t: ["recipe=resnet50", "data=imagefolder", f"data.root={t / 'nope'}"],
        "nope is not a directory (expected train/ and val/ with one sub-folder per class)",
    ),
    "image root unset": (
        lambda t: ["recipe=resnet50", "data=imagefolder"],
        "missing value for data.root",
    ),
    "empty image root": (
        lambda t: ["recipe=resnet50", "data=imagefolder", f"data.root={_empty_dir(t, 'im')}"],
        "im is empty (data=imagefolder needs",
    ),
    "train split without class folders": (
        lambda t: _images(t, train={}),
        "train has no class sub-folders",
    ),
    "val classes differ from train": (
        lambda t: _images(t, val={"cat": 2, "dgo": 2}),
        "val classes differ from",
    ),
    "fewer train images than a batch": (
        lambda t: _images(t, train={"cat": 5, "dog": 5}),
        "has 10 images, fewer than one batch (train.batch_size=16)",
    ),
    "more classes than model outputs": (
        lambda t: _images(
            t, train={f"c{i}": 2 for i in range(11)}, val={f"c{i}": 1 for i in range(11)}
        ),
        "has 11 classes but the model has 10 outputs (set recipe.image.num_classes=11)",
    ),
    "negative loader workers": (
        lambda t: _images(t, extra=("data.workers=-1",)),
        "data.workers must be >= 0, got -1",
    ),
}


def _tree(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def _assert_rejected(res: subprocess.CompletedProcess, expected: str) -> None:
    """Exit code 2, one `error:` line with the expected words, no traceback."""
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in res.stderr + res.stdout


@pytest.mark.parametrize("make,expected", DATA_CASES.values(), ids=DATA_CASES.keys())
def test_bad_data(tmp_path, make, expected):
    overrides = make(tmp_path)
    before = _tree(tmp_path)
    results = tmp_path / "results"
    res = run_cli("run", *SMOKE, f"results_dir={results}", *overrides, cwd=tmp_path)
    _assert_rejected(res, expected)
    assert not results.exists()
    assert _tree(tmp_path) == before


def test_val_class_difference_is_named(tmp_path):
    from lionbench.data.images import check_image_folder

    _images(tmp_path, val={"cat": 2, "dgo": 2})
    with pytest.raises(UserError, match="only in val: dgo; only in train: dog"):
        check_image_folder(str(tmp_path / "images"))


def test_image_check_counts_images_in_sub_folders_as_imagefolder_does(tmp_path):
    """torchvision's ImageFolder walks each class folder recursively: so does the check."""
    from lionbench.data.images import check_image_folder

    _images(tmp_path, train={"cat": 0, "dog": 3})
    nested = tmp_path / "images" / "train" / "cat" / "2023"
    nested.mkdir()
    (nested / "a.PNG").write_bytes(_png())
    info = check_image_folder(str(tmp_path / "images"), batch_size=4)
    assert info["train_images"] == 4 and info["classes"] == ["cat", "dog"]


def test_token_id_scan_boundary(tmp_path):
    """The largest id allowed is vocab_size - 1; a meta.json vocab_size vouches for the files."""
    from lionbench.data import tokens

    _tokens(tmp_path, train=np.arange(128, dtype=np.uint16), val=np.arange(64, dtype=np.uint16))
    d = str(tmp_path / "tokens")
    assert tokens.check_dir(d, 32, 128) == {}
    with pytest.raises(UserError, match=r"train.bin has token id 127 .* vocabulary is 127"):
        tokens.check_dir(d, 32, 127)
    (tmp_path / "tokens" / "meta.json").write_text(json.dumps({"vocab_size": 100}))
    assert tokens.check_dir(d, 32, 127)["vocab_size"] == 100  # trusted: no scan


# ---------------------------------------------------------------------------------------------
# The other commands: usage errors and option values
# ---------------------------------------------------------------------------------------------


def _fake_results(tmp: Path) -> Path:
    """One finished run directory, enough for `report` to read configs."""
    d = tmp / "results" / "gpt2" / "run-a"
    d.mkdir(parents=True)
    cfg = {
        "recipe": {"name": "gpt2", "adamw": {"lr": 1e-3, "weight_decay": 0.1}},
        "optim": {"name": "adamw", "impl": "fused", "lr": 1e-3, "weight_decay": 0.1},
        "seed": 0,
        "train": {"steps": 10, "batch_size": 8},
    }
    (d / "config.yaml").write_text(json.dumps(cfg))  # JSON is YAML
    (d / "summary.json").write_text(json.dumps({"status": "completed", "device": "cpu"}))
    return tmp / "results"


def _a_file(tmp: Path, name: str = "file.txt") -> Path:
    (tmp / name).write_text("occupied")
    return tmp / name


COMMAND_CASES = {
    # Click/Typer usage errors: one line, not the usage panel
    "usage: int option given a word": (
        lambda t: ["bench", "optim", "--steps", "abc"],
        "error: Invalid value for '--steps'",
    ),
    "usage: missing argument": (
        lambda t: ["prepare", "text", "--out", str(t / "o")],
        "Missing argument 'files' (see '",
    ),
    "usage: missing required option": (
        lambda t: ["prepare", "text", str(_a_file(t))],
        "Missing option '--out'",
    ),
    "usage: unknown option": (
        lambda t: ["report", "--nonsense"],
        "No such option: --nonsense",
    ),
    "usage: option without its value": (
        lambda t: ["sweep", *SMOKE, "--ratios"],
        "Option '--ratios' requires an argument",
    ),
    "usage: unknown command": (
        lambda t: ["trian"],
        "No such command 'trian' (commands: run, sweep, report, plan, list, prepare, bench, study)",
    ),
    # sweep
    "sweep: non-finite ratio": (
        lambda t: ["sweep", *SMOKE, "--ratios", "3,nan"],
        "--ratios must be > 0 and finite, got '3,nan'",
    ),
    "sweep: empty ratios": (
        lambda t: ["sweep", *SMOKE, "--ratios", ","],
        "--ratios is empty (accepted: comma-separated numbers > 0",
    ),
    "sweep: fractional seed": (
        lambda t: ["sweep", *SMOKE, "--seeds", "0,1.5"],
        "--seeds must be a comma-separated list of ints, got '0,1.5' (accepted: "
        "comma-separated integers >= 0",
    ),
    "sweep: repeated seed": (
        lambda t: ["sweep", *SMOKE, "--seeds", "0,1,0"],
        "--seeds has repeated values: '0,1,0'",
    ),
    "sweep: name with a comma": (
        lambda t: ["sweep", *SMOKE, "--name", "a,b"],
        "--name 'a,b' is not a valid sweep name (accepted: letters, digits",
    ),
    # report
    "report: results path missing": (
        lambda t: ["report", str(t / "nope")],
        "nope does not exist",
    ),
    "report: results path is a file": (
        lambda t: ["report", str(_a_file(t))],
        "file.txt is not a directory (give results directories",
    ),
    "report: out inside a file": (
        lambda t: ["report", str(_fake_results(t)), "--out", str(_a_file(t) / "report")],
        "file.txt is a file, not a directory",
    ),
    "report: non-finite target": (
        lambda t: ["report", str(_fake_results(t)), "--target", "nan"],
        "--target must be a finite val loss >= 0, got nan",
    ),
    "report: unknown --by key": (
        lambda t: ["report", str(_fake_results(t)), "--by", "optim.betaz"],
        "unknown --by key 'optim.betaz'",
    ),
    # bench optim
    "bench: zero steps": (
        lambda t: ["bench", "optim", "--steps", "0", "--out", str(t / "b.csv")],
        "--steps must be >= 1, got 0",
    ),
    "bench: unknown device": (
        lambda t: ["bench", "optim", "--device", "tpu"],
        "unknown --device 'tpu' (accepted: auto, cpu, cuda, cuda:N)",
    ),
    "bench: triton on cpu": (
        lambda t: ["bench", "optim", "--impls", "lion:lion_pytorch_triton", "--device", "cpu"],
        "--impls lion:lion_pytorch_triton needs a CUDA device",
    ),
    "bench: out in a missing directory": (
        lambda t: ["bench", "optim", "--out", str(t / "missing" / "b.csv")],
        "give a .csv or .json file in an existing directory",
    ),
    "bench: unknown params": (
        lambda t: ["bench", "optim", "--params", "gpt5"],
        "unknown --params 'gpt5' (accepted: gpt2-124m, resnet50, vit-b16, flat:N)",
    ),
    # prepare text
    "prepare: out inside a file": (
        lambda t: ["prepare", "text", str(_a_file(t, "in.txt")), "--out", str(_a_file(t) / "o")],
        "file.txt is a file, not a directory",
    ),
    "prepare: unknown tokenizer": (
        lambda t: ["prepare", "text", str(_a_file(t)), "--out", str(t / "o"), "--tokenizer", "bpe"],
        "unknown --tokenizer 'bpe' (accepted: bytes, gpt2)",
    ),
    "prepare: val fraction above one": (
        lambda t: [
            "prepare",
            "text",
            str(_a_file(t)),
            "--out",
            str(t / "o"),
            "--val-fraction",
            "1.5",
        ],
        "--val-fraction must be in (0, 1), got 1.5",
    ),
}


@pytest.mark.parametrize("make,expected", COMMAND_CASES.values(), ids=COMMAND_CASES.keys())
def test_bad_command_input(tmp_path, make, expected):
    args = make(tmp_path)
    before = _tree(tmp_path)
    res = run_cli(*args, cwd=tmp_path)
    _assert_rejected(res, expected)
    assert _tree(tmp_path) == before  # nothing written, not even under the working directory


def test_help_is_still_help():
    """Usage errors became one line; asking for help still prints the normal help, exit 0."""
    res = run_cli("report", "--help")
    assert res.returncode == 0 and "Usage" in res.stdout and "--target" in res.stdout
    assert res.stderr == ""
    res = run_cli("bench", "--help")
    assert res.returncode == 0 and "optim" in res.stdout
    res = run_cli("prepare")  # a group without its command: its help, as before (exit 2)
    assert res.returncode == 2 and "text" in res.stdout and "error" not in res.stderr


# ------------------------------------------- hydra/launcher=submitit_slurm without a cluster


def _fake_slurm(tmp: Path, ping: str, ping_code: int) -> Path:
    """A PATH with SLURM's client commands as stand-ins: `scontrol ping` answers `ping`,
    `sinfo` knows one partition, debug."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    scripts = {
        "sbatch": "exit 0",
        "srun": "exit 0",
        "scontrol": f"echo '{ping}'; exit {ping_code}",
        "sinfo": "echo debug",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir


SLURM_CASES = {
    "no SLURM commands": (lambda tmp: tmp, [], "sbatch, srun, scontrol is not on PATH"),
    "controller down": (
        lambda tmp: _fake_slurm(tmp, "Slurmctld(primary) at vm is DOWN", 1),
        [],
        "needs a SLURM controller, but none answers `scontrol ping`",
    ),
    "unknown partition": (
        lambda tmp: _fake_slurm(tmp, "Slurmctld(primary) at vm is UP", 0),
        ["hydra.launcher.partition=gpu"],
        "no such SLURM partition (accepted: debug)",
    ),
}


@pytest.mark.parametrize("command", ["run", "sweep"])
@pytest.mark.parametrize("path,extra,expected", SLURM_CASES.values(), ids=SLURM_CASES.keys())
def test_submitit_slurm_without_slurm(tmp_path, command, path, extra, expected):
    results = tmp_path / "results"
    args = ["-m"] if command == "run" else ["--ratios", "3", "--seeds", "0"]
    (tmp_path / "slurm.conf").write_text("")  # read by the stand-ins' real counterparts only
    env = {"PATH": str(path(tmp_path)), "SLURM_CONF": str(tmp_path / "slurm.conf")}
    res = run_cli(
        command, *args, *SMOKE, f"results_dir={results}", "hydra/launcher=submitit_slurm",
        *extra, env=env,
    )  # fmt: skip
    _assert_rejected(res, expected)
    assert not results.exists()


# ---------------------------------------------------------------------------------------------
# issue 18 items 12-13, checked in this process through the same pre-check `run` uses (fast)
# ---------------------------------------------------------------------------------------------

PRECHECK_CASES = {
    "section replaced by a value": (["recipe.model=5"], "recipe.model is a section of keys"),
    "value replaced by a section": (["train.steps={a: 1}"], "train.steps must be a single value"),
    "section deleted": (["~train"], "'~train' deletes train, but lionbench needs train"),
    "key deleted": (["~optim.lr"], "'~optim.lr' deletes optim.lr, but optim=lion needs optim.lr"),
    "leaf deleted": (["~train.steps"], "but lionbench needs train.steps (train.steps=...)"),
    "resolver input not a number": (
        ["recipe.adamw.lr=abc"],
        "recipe.adamw.lr must be a number (optim.lr is computed from it), got 'abc'",
    ),
    "aliased input not a number": (
        ["optim=adamw", "recipe.adamw.lr=abc"],
        "recipe.adamw.lr must be a finite number, got 'abc' (optim.lr is set from it)",
    ),
    "checkpoint interval a word": (["checkpoint.interval=abc"], "checkpoint.interval"),
    "dropout a word": (["recipe.model.dropout=high"], "recipe.model.dropout must be"),
    "unquoted ~ in a path": (["data=tokens", "data.dir=~/tok"], "'data.dir=\"~/tok\"'"),
    "unquoted non-ASCII path": (["data=tokens", "data.dir=/tmp/é"], "quote a value"),
    "unquoted comma in a path": (["data=tokens", "data.dir=/a,b"], "'data.dir=\"/a,b\"'"),
    # issue 26: accepted, then the wrong experiment ran, or setup hung
    "+key typo": (
        ["+train.stpes=5"],
        "adds 'train.stpes', a key no config of lionbench reads; did you mean 'train.steps'?",
    ),
    "+key under a registry optimizer": (["+optim.betaz=[0.9,0.9]"], "did you mean 'optim.betas'"),
    "+key new at the root": (["+foo=1"], "adds 'foo', a key no config of lionbench reads"),
    "+key that exists": (["+train.steps=5"], "train.steps exists: set it with train.steps=5"),
    "an eval set that would take minutes at every eval": (
        ["train.eval_batches=100000"],
        "= 800,000 eval examples, more than 100,000",
    ),
    "steps beyond any run": (["train.steps=100000000000000000000000"], "train.steps must be <="),
    "seed beyond numpy's range": (["seed=100000000000000000000000000"], "seed must be <="),
    "steps as a float": (["train.steps=1e23"], "train.steps must be an integer"),
    "an interval beyond any run": (["train.eval_interval=10000000000"], "train.eval_interval"),
    "too many data workers": (
        ["recipe=resnet50", "data=imagefolder", "data.root=/tmp", "data.workers=100000"],
        "data.workers must be <= 256",
    ),
    "a model that cannot fit": (
        ["recipe.model.n_embd=76800", "recipe.model.n_head=1"],
        "GiB for its weights, gradients",
    ),
}


def _precheck_rejects(tmp: Path, overrides: list[str], expected: str) -> None:
    from lionbench.run.launch import precheck

    results = tmp / "results"
    with pytest.raises(UserError) as e:
        precheck([*SMOKE, f"results_dir={results}", *overrides])
    assert expected in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert not results.exists()


@pytest.mark.parametrize("overrides,expected", PRECHECK_CASES.values(), ids=PRECHECK_CASES.keys())
def test_bad_input_precheck(tmp_path, overrides, expected):
    _precheck_rejects(tmp_path, overrides, expected)


def test_a_setting_a_registry_optimizer_does_not_have_is_refused(tmp_path):
    """A user's YAML for a registry optimizer with a key its entry does not list: the key would
    be ignored while the run's directory changed; it is named, with the settings accepted."""
    conf = tmp_path / "conf" / "optim"
    conf.mkdir(parents=True)
    (conf / "my_sgd.yaml").write_text("name: sgd\nlr: 0.1\nweight_decay: 0\nmomentum: 0.9\n"
                                      "nesterov: true\nmomentumm: 0.8\n")  # fmt: skip
    _precheck_rejects(
        tmp_path,
        ["--config-dir", str(tmp_path / "conf"), "optim=my_sgd"],
        "optim.momentumm is not a setting of optim=sgd; did you mean "
        "'optim.momentum'? (its settings: lr, weight_decay, momentum, nesterov",
    )


def test_a_target_optimizer_takes_new_keys_as_its_arguments(tmp_path):
    from lionbench.run.launch import precheck

    (cfg,) = precheck([*SMOKE, f"results_dir={tmp_path}", "+optim._target_=torch.optim.SGD",
                       "+optim.momentum=0.5", "+optim.dampening=0.1"])  # fmt: skip
    assert cfg.optim.dampening == 0.1


CLI_CASES = {
    "unknown flag": (["--foo"], "unknown option '--foo'"),
    "misspelt flag after the overrides": (
        ["train.steps=3", "--multirn"],
        "did you mean '--multirun'",
    ),
}


@pytest.mark.parametrize("args,expected", CLI_CASES.values(), ids=CLI_CASES.keys())
def test_bad_flags_are_one_line_before_any_check(tmp_path, args, expected, capsys):
    from helpers import cli_inprocess

    assert cli_inprocess("run", *SMOKE, f"results_dir={tmp_path / 'r'}", *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "text,expected",
    [
        ("name: lion\nlr: [1, 2\n", "optim/bad.yaml:3: did not find expected ',' or ']'"),
        ("name: !!python/object/apply:os.system ['true']\n",
         "optim/bad.yaml:1: could not determine a constructor for the tag"),
    ],
    ids=["syntax error", "python tag"],
)  # fmt: skip
def test_a_config_dir_with_bad_yaml_names_the_file_and_line(tmp_path, text, expected, capsys):
    from helpers import cli_inprocess

    (tmp_path / "conf" / "optim").mkdir(parents=True)
    (tmp_path / "conf" / "optim" / "bad.yaml").write_text(text)
    code = cli_inprocess("run", "--config-dir", str(tmp_path / "conf"), *SMOKE,
                         f"results_dir={tmp_path / 'r'}")  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "r").exists()


def test_torchvision_built_for_another_torch_is_one_line_naming_the_fix(tmp_path, monkeypatch):
    """The 30-line `operator torchvision::nms does not exist` traceback at a recipe's import."""
    import importlib

    from lionbench.run.launch import precheck

    real = importlib.import_module

    def broken(name, *a, **k):
        if name == "lionbench.recipes.vit":
            raise RuntimeError("operator torchvision::nms does not exist")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(UserError) as e:
        precheck([*SMOKE, f"results_dir={tmp_path}", "recipe=vit"])
    line = str(e.value)
    assert "\n" not in line and "does not match torch" in line
    assert "operator torchvision::nms does not exist" in line
    assert "pip install 'torchvision==" in line


def test_quoted_path_is_accepted_by_the_parser():
    from lionbench.config import expand_overrides

    assert expand_overrides(['data.dir="~/a b,é"'], False) == [['data.dir="~/a b,é"']]


def test_flag_without_its_value_is_one_line():
    from lionbench.config import is_multirun, split_args

    with pytest.raises(UserError, match=r"--cfg needs a value \(accepted: job, hydra, all\)"):
        split_args(["--cfg"])
    assert split_args(["--info"]) == (["--info"], [])  # --info's value is optional
    flags, overrides = split_args(["optim=lion,adamw", "-m"])  # -m after an override
    assert is_multirun(flags) and overrides == ["optim=lion,adamw"]


@pytest.mark.parametrize("kind", ["dangling", "loop"])
def test_results_dir_symlink_that_leads_nowhere(tmp_path, kind):
    link = tmp_path / "link"
    if kind == "dangling":
        link.symlink_to(tmp_path / "gone")
    else:
        (tmp_path / "other").symlink_to(link)
        link.symlink_to(tmp_path / "other")
    from lionbench.run.launch import precheck

    expected = "a dangling symlink" if kind == "dangling" else "a symlink loop"
    with pytest.raises(UserError, match=expected):
        precheck([*SMOKE, f"results_dir={link}"])


@pytest.mark.parametrize("what", ["run dir is a file", "config.yaml", "metrics.jsonl"])
def test_run_directory_in_the_way(tmp_path, what):
    from lionbench.run.launch import precheck, run_dirs

    args = [*SMOKE, f"results_dir={tmp_path / 'results'}"]
    run_dir = run_dirs(precheck(args))[0][1]
    run_dir.parent.mkdir(parents=True)
    if what == "run dir is a file":
        run_dir.write_text("occupied")
        expected = "exists and is not a directory"
    else:
        (run_dir / what).mkdir(parents=True)
        expected = f"{what} is a directory; remove it"
    before = _tree(tmp_path)
    with pytest.raises(UserError, match=expected):
        precheck(args)
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_token_file_that_is_not_a_file(tmp_path, kind):
    import os

    overrides = _tokens(tmp_path)
    train = tmp_path / "tokens" / "train.bin"
    train.unlink()
    train.mkdir() if kind == "directory" else os.mkfifo(train)
    expected = "is a directory" if kind == "directory" else "is not a regular file"
    _precheck_rejects(tmp_path, overrides, f"train.bin {expected}")


@pytest.mark.parametrize(
    "params,expected",
    [
        ("flat:inf", "flat:N needs a finite size N >= 1"),
        ("flat:1e13", "more than the cpu memory of"),
    ],
)
def test_bench_params_out_of_range(params, expected):
    from lionbench.commands.bench_optim import Options, check_options

    with pytest.raises(UserError, match=expected):
        check_options(Options(params, ["adamw:foreach"], 1, 0, 1, "cpu"))


def test_report_marks_a_record_with_a_bad_step_corrupt(tmp_path):
    from lionbench.report.load import load_runs

    root = _fake_results(tmp_path)
    run = root / "gpt2" / "run-a"
    (run / "metrics.jsonl").write_text('{"step": "abc", "split": "val", "loss": 1.0}\n')
    runs, curves = load_runs([root])
    assert runs.loc[0, "status"] == "corrupt" and "step 'abc'" in runs.loc[0, "error"]
    assert curves.empty


def test_prepare_reads_a_jsonl_with_a_byte_order_mark(tmp_path):
    from lionbench.commands.prepare import prepare_text

    src = tmp_path / "docs.jsonl"
    src.write_bytes(b'\xef\xbb\xbf{"text": "one"}\n{"text": "two"}\n')
    assert prepare_text([src], tmp_path / "o")["documents"] == 2


def test_prepare_reads_a_file_and_its_symlink_once(tmp_path, capsys):
    """`prepare text dir/*` over a file and a link to it: one file's documents, said once."""
    from lionbench.commands.prepare import prepare_text

    src = _a_file(tmp_path)
    link = tmp_path / "link.txt"
    link.symlink_to(src)
    once = prepare_text([src], tmp_path / "once")
    both = prepare_text([src, link, tmp_path / "." / src.name], tmp_path / "o")
    assert both["documents"] == once["documents"]
    for name in ("train.bin", "val.bin"):
        assert (tmp_path / "o" / name).read_bytes() == (tmp_path / "once" / name).read_bytes()
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"note: {link} is the same file as {src}: read once",
        f"note: {src} is given again: read once",  # pathlib drops the "."
    ]
