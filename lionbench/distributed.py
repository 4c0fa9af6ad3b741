"""Data-parallel training with PyTorch's own DDP, started by PyTorch's own `torchrun`.

Two ways in, one code path:

- `lionbench run ... dist.nproc=N`: the Hydra job (the orchestrator) writes the resolved config
  into the run directory and starts `torchrun --standalone --nproc_per_node N -m
  lionbench.worker <run dir>/config.yaml`; the workers read that config, so every rank trains
  the same run in the same directory.
- `torchrun ... -m lionbench run ...` (multi-node: torchrun's own --nnodes/--rdzv-* flags): every
  rank runs the Hydra app itself; `dist.nproc` is taken from torchrun's WORLD_SIZE.

Every rank draws the whole step batch from the same seeded stream and trains on its slice, so the
global batch and the data order equal a single process's; DDP averages the gradients, the logged
loss is reduced across ranks, and rank 0 alone writes the run directory, checkpoints and W&B.
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from lionbench.lock import HELD_ENV


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


def launch(config_file: Path, nproc: int) -> int:
    """Run the workers under torchrun and wait; SIGTERM/SIGINT reach them once, through
    torchrun, which forwards them to every worker (they checkpoint and stop)."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "lionbench.worker",
        str(config_file),
    ]
    # A session of their own: a terminal's Ctrl-C reaches the workers once (forwarded), not
    # twice (directly and from torchrun).
    # The orchestrator holds the run directory's lock; its workers train under it.
    env = {**os.environ, HELD_ENV: str(config_file.parent)}
    proc = subprocess.Popen(cmd, start_new_session=True, env=env)
    forwarded: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        if not forwarded:
            forwarded.append(signum)
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
