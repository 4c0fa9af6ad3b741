"""Image data shared by the image recipes (resnet50, vit, unet).

Three sources, all yielding `(images, labels)` batches on the device, float, normalised:
- `builtin`: the procedural classes of `builtin_images`, kept on the device as uint8 and
  augmented there (random flips) with the run's data generator;
- `imagefolder`: torchvision ImageFolder over `root/train/<class>/*` and `root/val/<class>/*` with
  the standard ImageNet transforms, a DataLoader with workers, pinned memory, persistent workers,
  seeded shuffling and seeded workers;
- `synthetic`: one random batch made once on the device, for pure throughput.

`check_image_folder` runs before any work (no torch) so that a bad folder is one line, exit 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lionbench.errors import UserError

# torchvision's IMG_EXTENSIONS, repeated here so the check needs no torch import.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# "imagenet": (x - mean) / std for classifiers; "symmetric": [-1, 1] for diffusion.
NORMALISATIONS = ("imagenet", "symmetric")


def check_image_folder(root: str, batch_size: int = 1) -> dict[str, Any]:
    """Validate `root/train` and `root/val` class folders; return class names and counts.

    It counts what torchvision's ImageFolder will load: files with an image extension anywhere
    under a class folder (sub-folders too, symlinks followed), by name only, so that the check
    stays cheap on a million files."""
    base = Path(str(root)).expanduser()
    layout = f"{base}/train/<class>/* and {base}/val/<class>/*"
    if not base.is_dir():
        raise UserError(
            f"data.root {root} is not a directory (expected train/ and val/ with "
            f"one sub-folder per class)"
        )
    if not any(base.iterdir()):
        raise UserError(f"data.root {root} is empty (data=imagefolder needs {layout})")
    info: dict[str, Any] = {}
    classes: list[str] | None = None
    for split in ("train", "val"):
        split_dir = base / split
        if not split_dir.is_dir():
            raise UserError(f"{split_dir} is missing (data=imagefolder needs {layout})")
        names = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
        if not names:
            raise UserError(
                f"{split_dir} has no class sub-folders (expected {split_dir}/<class>/*)"
            )
        skipped = 0
        for name in names:
            n_images = 0
            for _, _, files in os.walk(split_dir / name, followlinks=True):
                images = sum(f.lower().endswith(IMAGE_EXTENSIONS) for f in files)
                n_images += images
                skipped += len(files) - images
            if not n_images:
                raise UserError(
                    f"class folder {split_dir / name} has no images ({', '.join(IMAGE_EXTENSIONS)})"
                )
            info[f"{split}_images"] = info.get(f"{split}_images", 0) + n_images
        if skipped:
            print(
                f"warning: skipping {skipped} non-image file(s) under {split_dir}",
                file=sys.stderr,
                flush=True,
            )
        if classes is None:
            classes = names
        elif names != classes:
            only_val = sorted(set(names) - set(classes))
            only_train = sorted(set(classes) - set(names))
            diff = "; ".join(
                f"only in {where}: {', '.join(n[:5])}{', ...' if len(n) > 5 else ''}"
                for where, n in (("val", only_val), ("train", only_train))
                if n
            )
            raise UserError(
                f"{base}/val classes differ from {base}/train classes ({diff}); they must be "
                f"the same folders"
            )
    if info["train_images"] < batch_size:
        raise UserError(
            f"{base / 'train'} has {info['train_images']} images, fewer than one "
            f"batch (train.batch_size={batch_size})"
        )
    info["classes"] = classes
    info["num_classes"] = len(classes or [])
    return info


def _normalise(x: Any, mode: str) -> Any:
    """uint8 [N, 3, H, W] on the device -> float, normalised."""
    import torch

    x = x.float().div_(255.0)
    if mode == "symmetric":
        return x.mul_(2.0).sub_(1.0)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)


def builtin_source(
    resolution: int,
    n_train: int,
    n_val: int,
    seed: int,
    batch_size: int,
    micro_batch: int,
    n_eval: int,
    normalise: str,
    device: Any,
    data_seed: int,
) -> tuple[Any, list[Any], dict[str, Any]]:
    """The procedural dataset on the device: (train stream, eval batches, info)."""
    import torch

    from lionbench.data import builtin_images
    from lionbench.data.stream import RandomBatches

    data = builtin_images.load(resolution, n_train, max(n_val, n_eval), seed)
    train_x = torch.from_numpy(data.train_x).to(device)
    train_y = torch.from_numpy(data.train_y).to(device)

    def draw(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(train_x), (batch_size,), generator=gen)
        flip = torch.rand(batch_size, generator=gen) < 0.5
        idx, flip = idx.to(device), flip.to(device)
        x = train_x[idx]
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        return _normalise(x, normalise), train_y[idx]

    val_x = torch.from_numpy(data.val_x[:n_eval]).to(device)
    val_y = torch.from_numpy(data.val_y[:n_eval]).to(device)
    eval_batches = [
        (_normalise(x, normalise), y)
        for x, y in zip(val_x.split(micro_batch), val_y.split(micro_batch), strict=True)
    ]
    info = {
        "num_classes": len(builtin_images.CLASS_NAMES),
        "train_images": n_train,
        "val_images": n_eval,
        **data.info,
    }
    return RandomBatches(draw, data_seed), eval_batches, info


def synthetic_source(
    resolution: int, batch_size: int, num_classes: int, device: Any, data_seed: int
) -> tuple[Any, list[Any]]:
    import torch

    from lionbench.data.stream import RepeatedBatch

    gen = torch.Generator().manual_seed(data_seed)
    x = torch.randn(batch_size, 3, resolution, resolution, generator=gen).to(device)
    y = torch.randint(num_classes, (batch_size,), generator=gen).to(device)
    return RepeatedBatch((x, y)), [(x, y)]


def _transforms(resolution: int, train: bool, normalise: str) -> Any:
    from torchvision import transforms as T

    if normalise == "symmetric":
        norm = T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    else:
        norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if train:
        crop = (
            T.RandomResizedCrop(resolution)
            if normalise == "imagenet"
            else T.Compose([T.Resize(resolution), T.CenterCrop(resolution)])
        )
        return T.Compose([crop, T.RandomHorizontalFlip(), T.ToTensor(), norm])
    return T.Compose(
        [
            T.Resize(round(resolution / 0.875))
            if normalise == "imagenet"
            else T.Resize(resolution),
            T.CenterCrop(resolution),
            T.ToTensor(),
            norm,
        ]
    )


def _seed_worker(worker_id: int) -> None:
    """DataLoader workers: numpy and random seeded from torch's per-worker seed."""
    import random

    import torch

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class LoaderStream:
    """Endless whole-step batches from a DataLoader; epoch e is shuffled by (data_seed, e)."""

    def __init__(
        self, dataset: Any, batch_size: int, workers: int, device: Any, data_seed: int
    ) -> None:
        self.dataset, self.batch_size, self.workers = dataset, batch_size, workers
        self.device, self.data_seed = device, data_seed
        self.epoch, self.in_epoch, self.drawn = 0, 0, 0
        self._it: Iterator[Any] | None = None
        self._loader: Any = None

    def _epoch_iterator(self) -> Iterator[Any]:
        import torch
        from torch.utils.data import DataLoader, RandomSampler

        gen = torch.Generator().manual_seed(
            (self.data_seed + self.epoch * 0x9E3779B97F4A7C15) % 2**63
        )
        sampler = RandomSampler(self.dataset, generator=gen)
        if self._loader is None or self.workers == 0:
            self._loader = DataLoader(
                self.dataset,
                batch_size=self.batch_size,
                sampler=sampler,
                drop_last=True,
                num_workers=self.workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=self.workers > 0,
                worker_init_fn=_seed_worker,
                generator=torch.Generator().manual_seed(self.data_seed),
            )
        else:
            self._loader.sampler.generator = gen  # persistent workers keep running
        return iter(self._loader)

    def next(self) -> Any:
        if self._it is None:
            self._it = self._epoch_iterator()
        try:
            x, y = next(self._it)
        except StopIteration:
            self.epoch, self.in_epoch = self.epoch + 1, 0
            self._it = self._epoch_iterator()
            x, y = next(self._it)
        self.in_epoch += 1
        self.drawn += 1
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "in_epoch": self.in_epoch, "drawn": self.drawn}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.drawn = int(state["epoch"]), int(state["drawn"])
        self._it = self._epoch_iterator()
        for _ in range(int(state["in_epoch"])):  # replay the position within the epoch
            next(self._it)
        self.in_epoch = int(state["in_epoch"])


class EvalLoader:
    """The fixed eval set: a subset of val chosen once by the eval seed, in a fixed order."""

    def __init__(
        self, dataset: Any, n_eval: int, micro_batch: int, workers: int, device: Any, eval_seed: int
    ) -> None:
        from torch.utils.data import DataLoader, Subset

        rng = np.random.Generator(np.random.PCG64(eval_seed))
        n = min(n_eval, len(dataset))
        indices = sorted(rng.choice(len(dataset), size=n, replace=False).tolist())
        self.device = device
        self.loader = DataLoader(
            Subset(dataset, indices),
            batch_size=micro_batch,
            shuffle=False,
            num_workers=workers,
            pin_memory=device.type == "cuda",
        )

    def __iter__(self) -> Iterator[Any]:
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def imagefolder_source(
    root: str,
    resolution: int,
    batch_size: int,
    micro_batch: int,
    n_eval: int,
    normalise: str,
    workers: int,
    device: Any,
    data_seed: int,
    eval_seed: int,
) -> tuple[Any, Any, dict[str, Any]]:
    from torchvision.datasets import ImageFolder

    base = Path(str(root)).expanduser()
    train = ImageFolder(str(base / "train"), transform=_transforms(resolution, True, normalise))
    val = ImageFolder(str(base / "val"), transform=_transforms(resolution, False, normalise))
    if len(train) < batch_size:
        raise UserError(
            f"{base / 'train'} has {len(train)} images, fewer than one batch "
            f"(train.batch_size={batch_size})"
        )
    workers = min(workers, os.cpu_count() or 1)
    stream = LoaderStream(train, batch_size, workers, device, data_seed)
    evals = EvalLoader(val, n_eval, micro_batch, workers, device, eval_seed)
    info = {
        "num_classes": len(train.classes),
        "train_images": len(train),
        "val_images": len(val),
        "eval_images": min(n_eval, len(val)),
    }
    return stream, evals, info


def build_image_data(
    cfg: Any, batch_size: int, micro_batch: int, device: Any, data_seed: int, normalise: str
) -> Any:
    """The `Data` of an image recipe for cfg.data.source (builtin, imagefolder, synthetic)."""
    from lionbench.recipe import Data

    image = cfg.recipe.image
    n_eval = int(cfg.train.eval_batches) * batch_size
    source = cfg.data.source
    if source == "builtin":
        b = cfg.recipe.builtin
        stream, evals, info = builtin_source(
            int(image.resolution),
            int(b.train_images),
            int(b.val_images),
            int(b.seed),
            batch_size,
            micro_batch,
            n_eval,
            normalise,
            device,
            data_seed,
        )
    elif source == "imagefolder":
        stream, evals, info = imagefolder_source(
            cfg.data.root,
            int(image.resolution),
            batch_size,
            micro_batch,
            n_eval,
            normalise,
            int(cfg.data.workers),
            device,
            data_seed,
            int(cfg.data.eval_seed),
        )
    else:
        stream, evals = synthetic_source(
            int(image.resolution), batch_size, int(image.num_classes), device, data_seed
        )
        info = {}
    return Data(stream, evals, None, info)
