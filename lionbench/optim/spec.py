"""The registry's vocabulary: an optimizer (`OptimizerSpec`), its implementations (`Impl`), a
composite's split (`Partition`) and state-size models. registry.py holds the table built from
them, libraries.py the optimizer libraries' entries; neither imports the other's table here, and
nothing here imports torch at module level.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lionbench import checks

if TYPE_CHECKING:
    import torch

Groups = list[dict[str, Any]]
Shape = tuple[int, ...]
# What a sweep varies per optimizer (`OptimizerSpec.tuning_axis`; docs/design.md, "Sweep
# manifest"): the lr/wd ratio to another optimizer's baseline, or a multiplier of its own lr.
RATIO = "ratio"
LR_MULTIPLIER = "lr_multiplier"


@dataclass(frozen=True)
class Impl:
    """One implementation of an optimizer.

    `bytes_moved` is the memory traffic of one step per fp32 parameter under the streaming model
    (read p, g and each state buffer; write p and each state buffer; Adafactor's factored state
    is negligible), what `bench optim` divides by the step time; `state_bytes` what the
    implementation should hold for one tensor."""

    build: Callable[[Groups, Mapping[str, Any]], torch.optim.Optimizer]
    state_bytes: Callable[[Shape], int]
    bytes_moved: int | None = None
    # what must be present: "cuda", "triton", "torch>=2.9", a library ("timm"), a DeepSpeed op
    # ("deepspeed:cpu_lion"); registry.missing_needs says which this machine lacks
    needs: tuple[str, ...] = ()
    partition: Partition | None = None  # a composite: one optimizer per part of the parameters


@dataclass(frozen=True)
class Partition:
    """How a composite optimizer divides the parameters (optim/partition.py: `matrix`, the
    hidden 2-D weights, and `rest`): which optimizer takes each part, and the state bytes each
    holds per tensor. Its `Impl.build` gets groups tagged with their `part`."""

    optimizers: Mapping[str, str]  # part -> the name of the optimizer that updates it
    state_bytes: Mapping[str, Callable[[Shape], int]]


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer: its hyperparameters (key -> check) and its implementations (the first one
    is the default). `ratio_of` names the optimizer whose recipe baseline this one's lr and wd
    derive from through `optim.ratio` (Lion: lr = adamw.lr / r, wd = adamw.wd * r). `defaults`
    are the hyperparameters used where no config gives them (`bench optim`'s timed steps, whose
    cost does not depend on their values); runs take theirs from `conf/optim/<name>.yaml`."""

    name: str
    title: str  # how prose names it: "AdamW"
    description: str
    hyperparams: Mapping[str, Callable[[Any, str], None]]
    impls: Mapping[str, Impl]
    ratio_of: str | None = None
    target: str | None = None  # the class path of a user `_target_` or a library's optimizer
    defaults: Mapping[str, Any] = field(default_factory=dict)
    also_reads: tuple[str, ...] = ()  # other recipe blocks its config reads (Muon: adamw)

    @property
    def baselines(self) -> set[str]:
        """The recipe blocks (`recipe.<name>`) a run of it reads: part of its identity."""
        return {self.name, *([self.ratio_of] if self.ratio_of else []), *self.also_reads}

    @property
    def tuning_axis(self) -> str:
        """What a sweep varies: `ratio` for an optimizer linked to another's baseline (Lion:
        lr = base lr / r, wd = base wd * r), else `lr_multiplier`: its lr over the recipe's,
        the recipe's wd kept."""
        return RATIO if self.ratio_of else LR_MULTIPLIER

    @property
    def baseline_block(self) -> str:
        """The recipe block (`recipe.<name>`) its lr and weight decay derive from."""
        return self.ratio_of or self.name

    def impl(self, name: str) -> Impl:
        checks.choice(name, f"optim.impl (for optim={self.name})", self.impls)
        return self.impls[name]

    def expected_state_bytes(self, impl: str, shapes: list[Shape]) -> int:
        """The optimizer-state bytes the implementation should hold for these parameters."""
        return sum(self.impl(impl).state_bytes(s) for s in shapes)


def per_element(n_bytes: float, extra: int = 0) -> Callable[[Shape], int]:
    """State of `n_bytes` per element plus `extra` bytes per tensor (a step counter)."""
    return lambda shape: int(n_bytes * math.prod(shape)) + extra
