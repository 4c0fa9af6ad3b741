"""Training FLOPs per example, counted by torch's FlopCounterMode on one forward pass.

Training is counted as 3x the forward FLOPs (forward + backward, the usual 6N rule for dense
layers), which is what MFU compares against the device's peak.
"""

from __future__ import annotations

from typing import Any

import torch


@torch.no_grad()
def training_flops_per_example(model: torch.nn.Module, example: Any) -> float:
    """3x the forward FLOPs of `model(*example)` for a batch of one."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(*example)
    model.train(was_training)
    return 3.0 * counter.get_total_flops()
