"""The recipe interface: what a workload supplies, and nothing else (AlgoPerf's split).

A recipe is `recipes/<name>.py` (shipped as `lionbench.recipes.<name>`) defining `RECIPE`, a
`Recipe` subclass, plus `conf/recipe/<name>.yaml` and `conf/recipe_scale/<name>_<scale>.yaml`.
A recipe of the user's own lives in any importable module named by `recipe.module`
(`recipe.module=mypkg.mlp`), with its YAMLs in the user's `--config-dir`.
It builds the model, the data and the loss. The harness (the loop, loop/train.py, and the run
around it) owns seeding, the optimizer, the schedule, precision, compilation, timing, logging
and the run directory. `training_flops_per_example` counts a model's FLOPs for recipes' MFU.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig


class BatchStream(Protocol):
    """Training batches in the run's data order; its state is the data position."""

    def next(self) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class Data:
    train: BatchStream
    eval: Iterable[Any]  # fixed eval batches (re-iterable): the same for every run and optimizer
    loss_floor: float | None = None  # best achievable loss on this data, when known exactly
    info: dict[str, Any] = field(default_factory=dict)  # recorded in the summary


class Recipe:
    """Base class of recipes. `cfg` is the whole resolved run config (read `cfg.recipe`,
    `cfg.data`); subclasses override the methods below."""

    #: tokens in one example (sequence models), for tokens/s; None when not meaningful
    tokens_per_example: int | None = None
    #: the eval metrics the recipe reports (`train.target_metric` must be one of them)
    metrics: frozenset[str] = frozenset({"loss"})
    #: eval metrics where higher is better (for steps-to-target), e.g. {"top1"}
    higher_is_better: frozenset[str] = frozenset()
    #: whether channels-last memory format suits the model (convolutional nets); the run's
    #: `channels_last` setting decides whether it is used (`auto`: on CUDA only)
    channels_last: bool = False

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

    def check(self) -> None:
        """Reject bad recipe settings or data paths with `UserError`, before any work starts."""

    def check_target(self) -> None:
        """`train.target_metric` must be a metric this recipe reports (or its EMA twin when the
        run keeps an EMA): a typo would leave steps-to-target null without an error."""
        from lionbench.checks import choice

        names = set(self.metrics)
        if self.cfg.train.get("ema_decay"):
            names |= {f"ema_{m}" for m in self.metrics}
        choice(self.cfg.train.target_metric, "train.target_metric", sorted(names))

    def uses_channels_last(self, device_type: str) -> bool:
        """Channels-last for this run: the recipe wants it and `channels_last` is true, or `auto`
        on CUDA (where it is fast; on a CPU, `true` exercises the same code path in tests)."""
        setting = self.cfg.get("channels_last", "auto")
        return self.channels_last and (
            setting is True or (setting == "auto" and device_type == "cuda")
        )

    def build_model(self) -> torch.nn.Module:
        """The model, initialised from torch's global RNG (seeded by the harness), on the CPU."""
        raise NotImplementedError

    def build_data(
        self, batch_size: int, micro_batch: int, device: torch.device, data_seed: int
    ) -> Data:
        """Train stream of whole optimizer-step batches (`batch_size` examples, a tuple of
        tensors the harness splits into micro-batches), and `train.eval_batches * batch_size`
        eval examples in batches of `micro_batch`, all on `device`. Drawing whole steps keeps the
        data order independent of gradient accumulation."""
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        """Mean loss of a batch and extra metrics (0-d tensors, averaged over eval batches)."""
        raise NotImplementedError

    def eval_metrics(self, means: dict[str, float]) -> dict[str, float]:
        """Metrics derived from the eval means (for example perplexity from the loss)."""
        return {}

    def train_data_size(self) -> int | None:
        """Tokens (sequence models) or examples in the training split, when known without
        loading it: a data budget then says how many times it passes over them. None: unknown."""
        return None

    def flops_per_example(self, model: torch.nn.Module) -> float | None:
        """Training FLOPs (forward + backward) per example, for MFU; None when unknown."""
        return None

    def finalize(
        self, model: torch.nn.Module, run_dir: Path, device: torch.device
    ) -> dict[str, Path]:
        """After a completed run (untimed): write artifacts such as sample images into run_dir;
        returns {name: path}. Images are also logged to W&B."""
        return {}


def load_recipe(cfg: DictConfig) -> Recipe:
    """The recipe of a config: `recipe.module` when set, else lionbench's own module."""
    from lionbench.errors import UserError

    name = cfg.recipe.get("module") or f"lionbench.recipes.{cfg.recipe.name}"
    try:
        module = importlib.import_module(name)
    except ImportError as e:
        missing = getattr(e, "name", None)
        if missing and not name.startswith(missing) and missing.split(".")[0] != "lionbench":
            raise UserError(
                f"recipe '{cfg.recipe.name}' needs the Python package '{missing.split('.')[0]}' "
                f"(pip install {missing.split('.')[0]})"
            ) from None
        where = (
            "set recipe.module to an importable module"
            if "module" not in cfg.recipe
            else ("is its package on PYTHONPATH?")
        )
        raise UserError(
            f"recipe '{cfg.recipe.name}': cannot import {name} ({e}); {where}"
        ) from None
    except Exception as e:  # a compiled extension built for another torch (torchvision's ops)
        line = torchvision_mismatch(e)
        if line is None:
            raise
        raise UserError(f"recipe '{cfg.recipe.name}': {line}") from None
    recipe_cls = getattr(module, "RECIPE", None)
    if not (isinstance(recipe_cls, type) and issubclass(recipe_cls, Recipe)):
        raise UserError(
            f"recipe module {name} must define RECIPE, a subclass of lionbench.recipe.Recipe"
        )
    return recipe_cls(cfg)


def torchvision_mismatch(e: BaseException) -> str | None:
    """One line for torchvision built against another torch (its C++ operators, such as
    torchvision::nms, then fail to register: a 30-line traceback at import), naming the fix;
    None for any other error."""
    from importlib import metadata

    from lionbench.errors import first_line

    if "torchvision" not in str(e):
        return None
    try:
        torch_v, vision_v = metadata.version("torch"), metadata.version("torchvision")
    except metadata.PackageNotFoundError:
        return None
    major, minor = [*torch_v.split("+")[0].split("."), "0"][:2]
    want = f"torchvision==0.{int(minor) + 15}.*" if major == "2" and minor.isdigit() else None
    fix = f"pip install '{want}'" if want else "install the torchvision built for this torch"
    return (
        f"torchvision {vision_v} does not match torch {torch_v} ({first_line(e)}): {fix} "
        f"(torch 2.N pairs with torchvision 0.(N+15))"
    )


def training_flops_per_example(model: torch.nn.Module, example: Any) -> float:
    """3x the forward FLOPs of `model(*example)` for a batch of one (forward + backward, the
    usual 6N rule for dense layers), counted by torch's FlopCounterMode: what MFU compares with
    the device's peak."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(*example)
    model.train(was_training)
    return 3.0 * counter.get_total_flops()
