"""Image data shared by the image recipes (resnet50, vit, unet).

Three sources, all yielding `(images, labels)` batches on the device, float, normalised:
- `builtin`: the procedural classes of `builtin_images`, kept on the device as uint8 and
  augmented there (random flips) with the run's data generator;
- `imagefolder`: torchvision ImageFolder over `root/train/<class>/*` and `root/val/<class>/*` with
  the standard ImageNet transforms, a DataLoader with workers, pinned memory, persistent workers;
  the shuffle and every image's augmentation are functions of (data seed, epoch, position), so
  the batches are the same with any number of workers and a resume continues exactly;
- `synthetic`: one random batch made once on the device, for pure throughput.

`check_image_folder` runs before any work (no torch) so that a bad folder is one line, exit 2.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from lionbench.errors import UserError

# torchvision's IMG_EXTENSIONS, repeated here so the check needs no torch import.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# How the formats that PIL reads for IMAGE_EXTENSIONS begin (GIF too: PIL opens one whatever its
# name). WebP ("RIFF....WEBP") and PNM ("P1".."P6" and a blank) are tested in _starts_like_image.
_SIGNATURES = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"BM",  # BMP
    b"II*\x00",  # TIFF, little- and big-endian, classic and BigTIFF
    b"MM\x00*",
    b"II+\x00",
    b"MM\x00+",
    b"GIF87a",
    b"GIF89a",
)
# Scans of image folders in this process, by root: (signature, scan). A command checks each job
# before it starts and the run checks again; the files are read once per process (and again if a
# class folder changed), and the warnings are printed once.
_SCANS: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}


def _starts_like_image(head: bytes) -> bool:
    return (
        head.startswith(_SIGNATURES)
        or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
        or re.match(rb"P[1-6]\s", head) is not None
    )


def is_readable_image(path: str) -> bool:
    """Whether a file with an image name holds an image, from its first 12 bytes (one small
    read: cheap on a million files). A file that starts like no known format, the rare case,
    is opened by PIL (header only) before it is called unreadable. An empty file is not an
    image; a file cut short after a valid header is not caught here (it fails when loaded)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    if not head:
        return False
    if _starts_like_image(head):
        return True
    from PIL import Image

    try:
        with Image.open(path):
            return True
    except Exception:  # PIL raises many kinds (UnidentifiedImageError, SyntaxError, ...)
        return False


def _scan_class(folder: Path) -> tuple[int, int, list[str]]:
    """(images, files without an image name, image-named files that are no image) under a
    class folder, walked as torchvision's ImageFolder walks it (sub-folders, symlinks)."""
    n_images, n_other, unreadable = 0, 0, []
    for dirpath, _, files in os.walk(folder, followlinks=True):
        for f in files:
            if not f.lower().endswith(IMAGE_EXTENSIONS):
                n_other += 1
            elif is_readable_image(path := os.path.join(dirpath, f)):
                n_images += 1
            else:
                unreadable.append(path)
    return n_images, n_other, sorted(unreadable)


def _check_split(split_dir: Path) -> tuple[list[str], int, list[str]]:
    """(class names, images, unreadable files) of one split; bad layouts are a UserError."""
    names = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    if not names:
        raise UserError(f"{split_dir} has no class sub-folders (expected {split_dir}/<class>/*)")
    with ThreadPoolExecutor(max_workers=min(16, len(names))) as pool:  # I/O bound: threads
        scans = list(pool.map(_scan_class, (split_dir / name for name in names)))
    for name, (n_images, _, bad) in zip(names, scans, strict=True):
        if not n_images:
            what = "no readable images" if bad else "no images"
            raise UserError(
                f"class folder {split_dir / name} has {what} ({', '.join(IMAGE_EXTENSIONS)})"
            )
    skipped = sum(s[1] for s in scans)
    if skipped:
        print(
            f"warning: skipping {skipped} non-image file(s) under {split_dir}",
            file=sys.stderr,
            flush=True,
        )
    unreadable = [p for s in scans for p in s[2]]
    return names, sum(s[0] for s in scans), unreadable


def check_image_folder(root: str, batch_size: int = 1) -> dict[str, Any]:
    """Validate `root/train` and `root/val` class folders; return class names and counts.

    It counts what the training will load: files with an image extension anywhere under a
    class folder (sub-folders too, symlinks followed) whose first bytes are an image's (see
    is_readable_image); empty or corrupt ones are skipped with one warning line, here, before
    any run directory exists, rather than failing the run when a worker meets them."""
    base = Path(str(root)).expanduser()
    layout = f"{base}/train/<class>/* and {base}/val/<class>/*"
    if not base.is_dir():
        raise UserError(
            f"data.root {root} is not a directory (expected train/ and val/ with "
            f"one sub-folder per class)"
        )
    if not any(base.iterdir()):
        raise UserError(f"data.root {root} is empty (data=imagefolder needs {layout})")
    for split in ("train", "val"):
        if not (base / split).is_dir():
            raise UserError(f"{base / split} is missing (data=imagefolder needs {layout})")
    scan = _scan(base)
    if scan["train_images"] < batch_size:
        raise UserError(
            f"{base / 'train'} has {scan['train_images']} images, fewer than one "
            f"batch (train.batch_size={batch_size})"
        )
    return {k: v for k, v in scan.items() if k != "unreadable"}


def _signature(base: Path) -> tuple[Any, ...]:
    """The class folders' modification times: a file added or removed changes them."""
    out = []
    for split in ("train", "val"):
        with os.scandir(base / split) as entries:
            out += [(e.path, e.stat().st_mtime_ns) for e in entries if e.is_dir()]
    return tuple(sorted(out))


def _scan(base: Path) -> dict[str, Any]:
    """Both splits of an image folder, read once per process (see _SCANS)."""
    key, signature = os.path.normpath(base), _signature(base)
    cached = _SCANS.get(key)
    if cached is not None and cached[0] == signature:
        return cached[1]
    scan: dict[str, Any] = {"unreadable": {}}
    classes: list[str] | None = None
    for split in ("train", "val"):
        names, scan[f"{split}_images"], bad = _check_split(base / split)
        scan["unreadable"][split] = frozenset(bad)
        if classes is None:
            classes = names
        elif names != classes:
            _classes_differ(base, classes, names)
    unreadable = sorted(p for split in ("train", "val") for p in scan["unreadable"][split])
    if unreadable:
        print(
            f"warning: skipping {len(unreadable)} empty or corrupt image file(s) under {base} "
            f"(e.g. {unreadable[0]})",
            file=sys.stderr,
            flush=True,
        )
    scan["classes"], scan["num_classes"] = classes, len(classes or [])
    _SCANS[key] = (signature, scan)
    return scan


def _classes_differ(base: Path, train: list[str], val: list[str]) -> None:
    only_val = sorted(set(val) - set(train))
    only_train = sorted(set(train) - set(val))
    diff = "; ".join(
        f"only in {where}: {', '.join(n[:5])}{', ...' if len(n) > 5 else ''}"
        for where, n in (("val", only_val), ("train", only_train))
        if n
    )
    raise UserError(
        f"{base}/val classes differ from {base}/train classes ({diff}); they must be "
        f"the same folders"
    )


def _image_filter(base: Path, split: str) -> Callable[[str], bool]:
    """ImageFolder's is_valid_file: an image name, and not found unreadable by the check."""
    bad = _scan(base)["unreadable"][split]
    return lambda path: path.lower().endswith(IMAGE_EXTENSIONS) and path not in bad


def _normalise(x: Any, mode: str) -> Any:
    """uint8 [N, 3, H, W] on the device -> float, normalised: `symmetric` to [-1, 1]
    (diffusion), otherwise (`imagenet`) (x - mean) / std with ImageNet's statistics."""
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


def _mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers, the same in every process and Python version."""
    data = b"".join(int(p).to_bytes(16, "little", signed=True) for p in parts)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


class SeededImages:
    """A dataset indexed by (index, seed): the item's random transforms (crop, flip) draw from
    a CPU generator seeded with `seed` alone, never from the state a process happens to be in.

    Why: with DataLoader workers each worker's RNG advances with the items it has loaded, so a
    resumed run's fresh workers would draw other crops than the interrupted run's old ones.
    With a per-item seed the augmentation of an item depends only on (data seed, epoch,
    position), whichever process loads it, and whatever was prefetched and thrown away."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> Any:
        import torch

        index, seed = item
        saved = torch.get_rng_state()  # workers=0: the training process's RNG stays untouched
        try:
            torch.default_generator.manual_seed(seed)  # CPU only: torchvision's transforms
            return self.dataset[index]
        finally:
            torch.set_rng_state(saved)


class EpochSampler:
    """(index, seed) pairs for one epoch: a permutation drawn from (data seed, epoch), from
    position `start` on, each item with the augmentation seed of (data seed, epoch, position).

    Everything is a function of those integers, so a resume sets `epoch` and `start` from the
    checkpoint and continues exactly, without loading the skipped images again."""

    def __init__(self, n: int, data_seed: int) -> None:
        self.n, self.data_seed = n, data_seed
        self.epoch, self.start = 0, 0

    def __len__(self) -> int:
        return max(self.n - self.start, 0)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        import torch

        gen = torch.Generator().manual_seed(_mix_seed(self.data_seed, self.epoch))
        order = torch.randperm(self.n, generator=gen).tolist()
        for pos in range(self.start, self.n):
            yield order[pos], _mix_seed(self.data_seed, self.epoch, pos)


class LoaderStream:
    """Endless whole-step batches from a DataLoader over an EpochSampler (see there and at
    SeededImages why a resume is exact with any number of workers)."""

    def __init__(
        self, dataset: Any, batch_size: int, workers: int, device: Any, data_seed: int
    ) -> None:
        from torch.utils.data import DataLoader

        self.batch_size, self.device = batch_size, device
        self.epoch, self.in_epoch, self.drawn = 0, 0, 0
        self.sampler = EpochSampler(len(dataset), data_seed)
        self._it: Iterator[Any] | None = None
        self._loader = DataLoader(
            SeededImages(dataset),  # type: ignore[arg-type]
            batch_size=batch_size,
            sampler=self.sampler,  # type: ignore[arg-type]
            drop_last=True,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            persistent_workers=workers > 0,
            generator=_fixed_generator(data_seed),  # else each iter() draws from torch's RNG
        )

    def _epoch_iterator(self) -> Iterator[Any]:
        """The batches of the current epoch from batch `in_epoch` on (persistent workers keep
        running; only the sampler's position changes)."""
        self.sampler.epoch, self.sampler.start = self.epoch, self.in_epoch * self.batch_size
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
        """Resume at the checkpointed position; the next batch starts there (nothing replayed)."""
        self.epoch, self.drawn = int(state["epoch"]), int(state["drawn"])
        self.in_epoch = int(state["in_epoch"])
        self._it = None


def _fixed_generator(seed: int) -> Any:
    import torch

    return torch.Generator().manual_seed(seed)


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
            generator=_fixed_generator(eval_seed),  # evals leave the training RNG alone
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
    train = ImageFolder(
        str(base / "train"),
        transform=_transforms(resolution, True, normalise),
        is_valid_file=_image_filter(base, "train"),
    )
    val = ImageFolder(
        str(base / "val"),
        transform=_transforms(resolution, False, normalise),
        is_valid_file=_image_filter(base, "val"),
    )
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
