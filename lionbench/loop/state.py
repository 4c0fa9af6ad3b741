"""The training loop's state between steps, as one object that a checkpoint saves whole, and
the RNG states a resumed run restores."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import torch

from lionbench.loop.evaluation import Target
from lionbench.loop.timing import Clock, OptStepTimer
from lionbench.record import Status


@dataclass
class LoopState:
    """Counters, clocks and the eval history. `loss_sum` stays on the device (summed every
    step, read once per log window); everything else is host-side."""

    clock: Clock
    opt_timer: OptStepTimer
    target: Target
    loss_sum: torch.Tensor
    step: int = 0
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)  # (step, eval)
    resumes: int = 0
    micro_in_window: int = 0  # micro-batches summed into loss_sum since the last log
    final_train: float | None = None  # the last logged mean train loss
    diverge_loss: float | None = None  # train loss above this ends the run as diverged
    first_batch_hash: str | None = None
    last_lr: float | None = None  # the lr the last update used
    # Outcome of this process's loop; never checkpointed (a checkpoint is of a running loop).
    status: Status = Status.COMPLETED
    diverged_at: int | None = None
    interrupted_by: int | None = None

    def state_dict(self) -> dict[str, Any]:
        """Plain values only (loadable with torch.load(weights_only=True)); one host sync for
        the loss sum, taken at a window edge."""
        return {
            "step": self.step,
            "history": self.history,
            "resumes": self.resumes,
            "loss_sum": float(self.loss_sum),
            "micro_in_window": self.micro_in_window,
            "final_train": self.final_train,
            "diverge_loss": self.diverge_loss,
            "first_batch_hash": self.first_batch_hash,
            "last_lr": self.last_lr,
            "clock": self.clock.state_dict(),
            "opt_step_ms": list(self.opt_timer.ms),
            "target": self.target.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where the checkpointed loop stopped; this is one more resume."""
        self.step = state["step"]
        self.history = [(int(s), dict(ev)) for s, ev in state["history"]]
        self.resumes = state["resumes"] + 1
        self.loss_sum.fill_(state["loss_sum"])
        self.micro_in_window = state["micro_in_window"]
        self.final_train = state["final_train"]
        self.diverge_loss = state["diverge_loss"]
        self.first_batch_hash = state["first_batch_hash"]
        self.last_lr = state["last_lr"]
        self.clock.load_state_dict(state["clock"], self.step)
        self.opt_timer.ms = list(state["opt_step_ms"])
        self.target.load_state_dict(state["target"])


def rng_state() -> dict[str, Any]:
    """Every RNG a run draws from: torch's CPU generator, Python's, and CUDA's when in use."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x: Any) -> Any:
    """random.setstate wants the tuples it gave; a round trip may have made them lists."""
    return tuple(_as_tuple(v) for v in x) if isinstance(x, list | tuple) else x
