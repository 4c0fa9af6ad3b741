"""The device a run trains on, what it is called, and how it is set up.

Small and torch-only, so that the commands (`bench`, `run`'s precheck) can resolve a device
without importing the training loop.
"""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path
from typing import Any

import torch

from lionbench.errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name} but CUDA is not available here (accepted: auto, cpu)")
    return device


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def configure(device: torch.device) -> None:
    """Fast math where it is the field's norm on GPUs (TF32 matmuls, cuDNN autotuning), and a
    fresh peak-memory counter for this run."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(device)


def autocast(precision: str, device: torch.device) -> Any:
    """bf16 autocast when asked, or by default on CUDA; a no-op context otherwise."""
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
