"""The image recipes (resnet50, vit, unet) on builtin, image-folder and synthetic data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import SMOKE, metrics, run_cli, run_dirs, run_inprocess, summary
from PIL import Image

from lionbench import config
from lionbench.recipe import load_recipe

RECIPES = ("resnet50", "vit", "unet")


@pytest.mark.parametrize(
    "recipe,expected",
    [("resnet50", 25_557_032), ("vit", 86_567_656), ("unet", 35_746_307)],
)
def test_parameter_counts_at_full_scale(recipe, expected):
    cfg = config.compose([f"recipe={recipe}", "scale=full"])
    config.validate(cfg)
    with torch.device("meta"):
        model = load_recipe(cfg).build_model()
    assert sum(p.numel() for p in model.parameters()) == expected


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    results = tmp_path_factory.mktemp("images")
    for recipe in RECIPES:
        for optim in ("lion", "adamw"):
            assert run_inprocess(results, f"recipe={recipe}", f"optim={optim}") == 0
    return {(summary(d)["recipe"], summary(d)["optim"]): d for d in run_dirs(results)}


@pytest.mark.parametrize("recipe", RECIPES)
def test_smoke_runs_write_the_full_run_directory(smoke_runs, recipe):
    lion, adamw = smoke_runs[(recipe, "lion")], smoke_runs[(recipe, "adamw")]
    for d in (lion, adamw):
        s = summary(d)
        assert s["status"] == "completed" and s["steps"] == 20
        assert s["flops_per_example"] > 0 and s["examples_per_s"] > 0
        assert s["optimizer_state_bytes"] > 0 and s["opt_step_ms"] > 0
        val = [r for r in metrics(d) if r["split"] == "val"]
        assert [r["step"] for r in val] == [0, 10, 20]
        assert all(math.isfinite(r["loss"]) for r in val)
        if recipe != "unet":
            assert all(0.0 <= r["top1"] <= 1.0 for r in val)
            assert s["final_val_metrics"]["top1"] == val[-1]["top1"]
    # shared seeds: the same initial weights and the same first batch for both optimizers
    assert summary(lion)["init_state_hash"] == summary(adamw)["init_state_hash"]
    assert summary(lion)["first_batch_hash"] == summary(adamw)["first_batch_hash"]


def test_unet_writes_a_sample_grid(smoke_runs):
    d = smoke_runs[("unet", "adamw")]
    img = Image.open(d / "samples.png")
    assert img.format == "PNG" and img.size[0] >= 4 * 16  # 16 samples of 16 px, 4 per row
    assert summary(d)["artifacts"] == {"samples": str(d / "samples.png")}
    val = [r["loss"] for r in metrics(d) if r["split"] == "val"]
    assert val[-1] < val[0]  # the denoising MSE falls


def test_ema_is_evaluated_separately(tmp_path):
    assert run_inprocess(tmp_path, "recipe=unet", "optim=adamw", "train.ema_decay=0.9") == 0
    (d,) = run_dirs(tmp_path)
    val = [r for r in metrics(d) if r["split"] == "val"]
    assert all("ema_loss" in r for r in val)
    assert val[0]["ema_loss"] == pytest.approx(val[0]["loss"])  # identical weights at step 0
    assert val[-1]["ema_loss"] != val[-1]["loss"]
    assert summary(d)["final_ema_val_metrics"]["loss"] == val[-1]["ema_loss"]


def test_accuracy_target(tmp_path):
    code = run_inprocess(tmp_path, "recipe=vit", "train.target_metric=top1", "train.target=0.0")
    assert code == 0
    s = summary(run_dirs(tmp_path)[0])
    # top1 >= 0 holds for the initial model: zero steps, as the report's curves count it
    assert s["target_metric"] == "top1" and s["steps_to_target"] == 0


def write_image_folder(root, classes=("circle", "square", "stripes"), per_class=6):
    """Real PNG and JPEG files, three visually different classes."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                img = rng.integers(0, 60, (24, 24, 3), dtype=np.uint8)
                img[:, :, c] += 150
                fmt = "png" if i % 2 else "jpg"
                Image.fromarray(img).save(folder / f"{i}.{fmt}")
    return root


@pytest.mark.parametrize("recipe", RECIPES)
def test_image_folder_data(tmp_path, recipe):
    root = write_image_folder(tmp_path / "images")
    overrides = [
        f"recipe={recipe}",
        "data=imagefolder",
        f"data.root={root}",
        "data.workers=0",
        "train.steps=4",
        "train.batch_size=8",
        "train.eval_interval=2",
    ]
    assert run_inprocess(tmp_path / "r", *overrides) == 0
    s = summary(run_dirs(tmp_path / "r")[0])
    assert s["status"] == "completed" and s["data"] == "imagefolder"
    if recipe != "unet":
        assert s["data_info"]["num_classes"] == 3 and s["data_info"]["train_images"] == 18


def test_image_folder_batches_do_not_depend_on_the_workers(tmp_path):
    """Seeded by (seed, epoch, position), not by worker: 2 workers and none give one run."""
    root = write_image_folder(tmp_path / "images")
    args = [
        "recipe=resnet50",
        "data=imagefolder",
        f"data.root={root}",
        "train.steps=4",
        "train.batch_size=8",
    ]
    assert run_inprocess(tmp_path / "a", *args, "data.workers=2") == 0
    assert run_inprocess(tmp_path / "b", *args, "data.workers=0") == 0
    (a,), (b,) = run_dirs(tmp_path / "a"), run_dirs(tmp_path / "b")
    assert summary(a)["first_batch_hash"] == summary(b)["first_batch_hash"]
    assert [r["loss"] for r in metrics(a)] == [r["loss"] for r in metrics(b)]


def _without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time_s"} for r in records]


def test_image_folder_with_workers_resumes_identically(tmp_path):
    """A resume in the middle of a later epoch, with DataLoader workers, continues bit for bit:
    the sampler starts at the checkpointed position and each image's augmentation is drawn from
    (seed, epoch, position), so fresh workers reproduce what the old ones would have drawn."""
    root = write_image_folder(tmp_path / "images")  # 18 images: 2 batches of 8 per epoch
    args = [
        "recipe=resnet50",
        "data=imagefolder",
        f"data.root={root}",
        "data.workers=2",
        "train.steps=7",
        "train.batch_size=8",
        "train.log_interval=1",
        "train.eval_interval=7",
        "checkpoint.interval=5",  # step 5: epoch 2, one batch into it
        "checkpoint.keep=true",
    ]
    assert run_inprocess(tmp_path, *args) == 0
    (d,) = run_dirs(tmp_path)
    uninterrupted, final = _without_time(metrics(d)), summary(d)["final_val_loss"]
    # The run again from its kept step-5 checkpoint, as after a kill: it redoes steps 6 and 7.
    (d / "summary.json").unlink()
    assert run_inprocess(tmp_path, *args) == 0
    assert summary(d)["resumed_from_step"] == 5
    assert _without_time(metrics(d)) == uninterrupted
    assert summary(d)["final_val_loss"] == final


def _bad_folder(tmp_path, kind):
    root = write_image_folder(tmp_path / "images")
    if kind == "no train":
        import shutil

        shutil.rmtree(root / "train")
    elif kind == "empty class":
        (root / "train" / "empty").mkdir()
    return root


@pytest.mark.parametrize(
    "kind,expected", [("no train", "train is missing"), ("empty class", "has no images")]
)
def test_bad_image_folder_is_one_line_exit_2(tmp_path, kind, expected):
    root = _bad_folder(tmp_path, kind)
    results = tmp_path / "results"
    res = run_cli(
        "run",
        *SMOKE,
        "recipe=resnet50",
        "data=imagefolder",
        f"data.root={root}",
        f"results_dir={results}",
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in res.stderr
    assert not results.exists()


def test_non_image_files_are_skipped_with_a_warning(tmp_path, capsys):
    root = write_image_folder(tmp_path / "images")
    (root / "train" / "circle" / "notes.txt").write_text("not an image")
    code = run_inprocess(
        tmp_path / "r",
        "recipe=vit",
        "data=imagefolder",
        f"data.root={root}",
        "data.workers=0",
        "train.steps=2",
        "train.batch_size=8",
    )
    assert code == 0
    assert "skipping 1 non-image file(s)" in capsys.readouterr().err


def test_empty_and_corrupt_images_are_skipped_with_one_warning(tmp_path, capsys):
    root = write_image_folder(tmp_path / "images")
    (root / "train" / "circle" / "empty.png").write_bytes(b"")
    (root / "val" / "square" / "bad.jpg").write_text("not a jpeg at all")
    code = run_inprocess(
        tmp_path / "r",
        "recipe=resnet50",
        "data=imagefolder",
        f"data.root={root}",
        "data.workers=0",
        "train.steps=2",
        "train.batch_size=8",
    )
    assert code == 0
    expected = (
        f"warning: skipping 2 empty or corrupt image file(s) under {root} "
        f"(e.g. {root / 'train' / 'circle' / 'empty.png'})"
    )
    lines = capsys.readouterr().err.splitlines()
    assert lines.count(expected) == 1, lines
    s = summary(run_dirs(tmp_path / "r")[0])
    assert s["status"] == "completed" and s["data_info"]["train_images"] == 18


def test_image_header_check(tmp_path):
    from lionbench.data.images import is_readable_image

    img = np.zeros((4, 4, 3), dtype=np.uint8)
    for fmt in ("png", "jpeg", "bmp", "tiff", "webp", "ppm", "gif"):
        Image.fromarray(img).save(tmp_path / f"ok.{fmt}", format=fmt)
        assert is_readable_image(str(tmp_path / f"ok.{fmt}")), fmt
    (tmp_path / "png_named.jpg").write_bytes((tmp_path / "ok.png").read_bytes())
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    assert is_readable_image(str(tmp_path / "png_named.jpg"))  # PIL reads it by content
    assert not is_readable_image(str(tmp_path / "empty.jpg"))
    assert not is_readable_image(str(tmp_path / "text.png"))
    assert not is_readable_image(str(tmp_path / "missing.png"))


def test_a_class_of_only_corrupt_images_is_bad_input(tmp_path):
    from lionbench.data.images import check_image_folder
    from lionbench.errors import UserError

    root = write_image_folder(tmp_path / "images")
    (root / "train" / "broken").mkdir()
    (root / "train" / "broken" / "a.jpg").write_bytes(b"")
    with pytest.raises(UserError, match="broken has no readable images"):
        check_image_folder(str(root))


def test_synthetic_image_data(tmp_path):
    assert run_inprocess(tmp_path, "recipe=resnet50", "data=synthetic", "train.steps=5") == 0
    assert summary(run_dirs(tmp_path)[0])["status"] == "completed"
