"""Data-parallel training with PyTorch's own DDP: this process's rank, joining the process
group, the wrapped model and the few collectives the loop uses (run/torchrun.py starts the
workers; docs/design.md, "Several processes").

Every rank draws the whole step batch from the same seeded stream and trains on its slice, so the
global batch and the data order equal a single process's; DDP averages the gradients, the logged
loss is reduced across ranks, and rank 0 alone writes the run directory, checkpoints and W&B.
"""

from __future__ import annotations

import datetime
import os
import sys

import torch


def world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def in_worker() -> bool:
    return world() > 1


def setup(device: torch.device) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo on CPU); returns this rank's device."""
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if rank() != 0:  # one voice: rank 0 prints progress; every rank still prints errors
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            timeout=datetime.timedelta(minutes=30),
        )
    return device


def teardown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def all_reduce_mean(t: torch.Tensor) -> None:
    import torch.distributed as dist

    dist.all_reduce(t)
    t.div_(world())


def agree_on_signal(signum: int | None, device: torch.device) -> int | None:
    """The signal any rank received (0: none), the same answer on every rank."""
    import torch.distributed as dist

    flag = torch.tensor([signum or 0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item()) or None
