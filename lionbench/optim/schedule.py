"""Learning-rate schedules: linear warmup, then cosine / linear / rsqrt decay or constant.

One multiplier function of the step, applied the same way to every optimizer, so Lion and AdamW
always share the schedule's shape (docs/design.md).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any


def lr_factor(step: int, *, name: str, total: int, warmup: int, final: float) -> float:
    """Multiplier of the base lr for the update with 0-based index `step`.

    Endpoints (docs/design.md, section 5): step 0 gets 1 / warmup, never 0 (1 without warmup);
    the warmup reaches 1 at step warmup - 1 and the decay starts from 1 at step warmup, so the
    peak serves two updates; the last step (total - 1) gets `final` with cosine (exactly) and
    linear (1 - (1 - final): `final` up to one rounding), max(final, sqrt(warmup / total)) with
    rsqrt, 1 with constant. nanoGPT's get_lr warms up over one more step, (it + 1) /
    (warmup + 1), and then decays by the same cosine (lr_decay_iters = max_iters = total - 1):
    the warmup is a step shorter here, not wrong, so runs keep their schedule."""
    if step < warmup:
        return (step + 1) / warmup
    if name == "constant":
        return 1.0
    if name == "rsqrt":
        return max(final, math.sqrt(max(warmup, 1) / (step + 1)))
    progress = min(1.0, (step - warmup) / max(1, total - warmup - 1))
    if name == "cosine":
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if name == "linear":
        return 1.0 - (1.0 - final) * progress
    raise ValueError(f"unknown schedule {name!r}")


def build_scheduler(optimizer: Any, sched_cfg: Any, total_steps: int) -> Any:
    import torch

    fn = partial(
        lr_factor,
        name=str(sched_cfg.name),
        total=int(total_steps),
        warmup=int(sched_cfg.warmup_steps),
        final=float(sched_cfg.final_lr_frac),
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
