"""Training batch streams: a seeded draw function plus the state needed to resume it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class RandomBatches:
    """Batches drawn by `draw(generator)`; the generator alone decides the data order.

    The generator lives on the CPU so that a seed gives the same batches on every device, and its
    state is the data position saved in checkpoints.
    """

    def __init__(self, draw: Callable[[torch.Generator], Any], seed: int) -> None:
        self._draw = draw
        self.generator = torch.Generator().manual_seed(seed)
        self.drawn = 0

    def next(self) -> Any:
        self.drawn += 1
        return self._draw(self.generator)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "drawn": self.drawn}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.drawn = int(state["drawn"])


class RepeatedBatch:
    """The same batch every step (synthetic data): no input pipeline at all."""

    def __init__(self, batch: Any) -> None:
        self.batch = batch
        self.drawn = 0

    def next(self) -> Any:
        self.drawn += 1
        return self.batch

    def state_dict(self) -> dict[str, Any]:
        return {"drawn": self.drawn}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.drawn = int(state["drawn"])
