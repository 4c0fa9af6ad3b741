"""Honest clocks: training time between synchronized window edges, the optimizer step alone,
peak memory and the device's peak FLOP/s for MFU.

Nothing here synchronizes per step: the window clock reads the host clock only at window edges,
right after a device synchronize, and CUDA events of the optimizer step are read there too.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Iterator
from typing import Any

import torch

# Dense bf16 peak FLOP/s for MFU (vendor datasheets; docs/references.md). Matched against the
# device name longest key first, so that "H100 PCIe" and "L40S" are not read as "H100" or "L4".
PEAK_BF16_FLOPS = {
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L40": 181e12,
    "L4": 121e12,
    "A10": 125e12,
    "4090": 165e12,
}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock:
    """Training time measured between window edges, each after a device synchronize.

    `train_s` counts every training step (what time-to-target uses, as AlgoPerf); `window_s`
    and `window_steps` only count steps after `warmup_steps` (what steps/s uses)."""

    def __init__(self, device: torch.device, warmup_steps: int) -> None:
        self.device = device
        self.warmup_steps = warmup_steps
        self.train_s = self.window_s = 0.0
        self.window_steps = 0
        self._t0 = 0.0
        self._step0 = 0

    def resume(self, step: int) -> None:
        synchronize(self.device)
        self._t0, self._step0 = time.perf_counter(), step

    def pause(self, step: int) -> None:
        synchronize(self.device)
        elapsed = time.perf_counter() - self._t0
        self.train_s += elapsed
        if self._step0 >= self.warmup_steps:
            self.window_s += elapsed
            self.window_steps += step - self._step0

    def steps_per_s(self, steps: int) -> float | None:
        """Over the timed window; over all training time when the run was shorter than the
        warmup (better than nothing, and the summary's `timed_steps` says so)."""
        if self.window_s:
            return self.window_steps / self.window_s
        return steps / self.train_s if self.train_s else None

    def state_dict(self) -> dict[str, Any]:
        return {"train_s": self.train_s, "window_s": self.window_s, "steps": self.window_steps}

    def load_state_dict(self, state: dict[str, Any], step: int) -> None:
        """Continue the totals; the steps after a resume are warmed up again (caches and
        compilation are cold in the new process)."""
        self.train_s, self.window_s = state["train_s"], state["window_s"]
        self.window_steps = state["steps"]
        self.warmup_steps = step + self.warmup_steps


class OptStepTimer:
    """Times optimizer.step() alone: CUDA events (read at window edges), or the host clock on
    CPU, where kernels run synchronously."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.pending: list[tuple[Any, Any]] = []
        self.ms: list[float] = []

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self.pending.append((start, end))
        else:
            t0 = time.perf_counter()
            yield
            self.ms.append((time.perf_counter() - t0) * 1e3)

    def collect(self) -> None:
        """Call after a synchronize: the recorded events are complete."""
        self.ms.extend(s.elapsed_time(e) for s, e in self.pending)
        self.pending.clear()


def peak_memory(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss * (1 if sys.platform == "darwin" else 1024), "cpu_max_rss"


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    keys = sorted(PEAK_BF16_FLOPS, key=len, reverse=True)
    return next((PEAK_BF16_FLOPS[k] for k in keys if k in name), None)
