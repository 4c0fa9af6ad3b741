"""Honest clocks: training time between synchronized window edges, the optimizer step alone,
peak memory and the device's peak FLOP/s for MFU.

Nothing here synchronizes per step: the window clock reads the host clock only at window edges,
right after a device synchronize, and CUDA events of the optimizer step are read there too.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import resource
import sys
import time
from collections.abc import Iterator
from typing import Any

import torch

from lionbench.loop.exposure import Exposure

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
    """Training time measured between window edges, each after a device synchronize, under the
    timing rule of docs/design.md ("Training time"): compilation never enters training time.

    The first `warmup_steps` steps of every process (compilation, autotuning, allocator growth)
    are *warm* steps: they are not charged their measured time but the per-step time of the
    process's first timed segment (the steps from the end of the warmup to the next window
    edge), and what they took beyond that is `compile_s`. `window_s` and `window_steps` count
    the timed steps (what steps/s uses); `train_s` is the measured time of every step."""

    def __init__(
        self, device: torch.device, warmup_steps: int, exposure: Exposure | None = None
    ) -> None:
        self.device = device
        self.warmup_steps = warmup_steps
        self.exposure = exposure  # what the timed segments shared the machine with
        self.train_s = self.window_s = 0.0
        self.window_steps = 0
        self.warm_charged_s = 0.0  # warm steps of earlier warmups, at their process's rate
        self.warm_pending = 0  # warm steps not yet charged (no timed segment since)
        self.warm_pending_s = 0.0  # their measured time
        self.compile_s = 0.0  # measured warm time beyond the charge, summed over processes
        self._t0 = 0.0
        self._step0 = 0

    def resume(self, step: int) -> None:
        if self.exposure is not None:  # read before the clock starts: never timed
            self.exposure.start(timed=step >= self.warmup_steps)
        synchronize(self.device)
        self._t0, self._step0 = time.perf_counter(), step

    def pause(self, step: int) -> None:
        synchronize(self.device)
        self.add(step - self._step0, time.perf_counter() - self._t0)
        if self.exposure is not None:  # read after the clock stopped
            self.exposure.stop(timed=self._step0 >= self.warmup_steps)

    def add(self, steps: int, elapsed: float) -> None:
        """Book one segment of `steps` steps that took `elapsed` seconds, started at the step
        `resume` was given: warm, or timed (the first timed one charges the pending warm)."""
        self.train_s += elapsed
        if self._step0 < self.warmup_steps:
            self.warm_pending += steps
            self.warm_pending_s += elapsed
            return
        self.window_s += elapsed
        self.window_steps += steps
        if self.warm_pending and steps:
            charge = self.warm_pending * elapsed / steps
            self.warm_charged_s += charge
            self.compile_s += max(0.0, self.warm_pending_s - charge)
            self.warm_pending, self.warm_pending_s = 0, 0.0

    def charged_s(self) -> float | None:
        """Training time so far under the rule; None while warm steps await their charge (the
        steady rate of this process is not measured yet)."""
        return None if self.warm_pending else self.window_s + self.warm_charged_s

    def total_s(self) -> float:
        """The run's training time: `charged_s`, or, for warm steps never followed by a timed
        segment (a run shorter than its warmup), their charge at the timed window's rate, else
        their measured time (no rate to charge them at)."""
        rate = self.window_steps / self.window_s if self.window_s else None
        pending = self.warm_pending / rate if rate else self.warm_pending_s
        return self.window_s + self.warm_charged_s + (pending if self.warm_pending else 0.0)

    def steps_per_s(self) -> float | None:
        """Over the timed window; None when no step was timed (a run shorter than its timing
        warmup measured compilation and warmup, not its speed)."""
        return self.window_steps / self.window_s if self.window_s else None

    def state_dict(self) -> dict[str, Any]:
        return {
            "train_s": self.train_s,
            "window_s": self.window_s,
            "steps": self.window_steps,
            "warm_charged_s": self.warm_charged_s,
            "warm_pending": self.warm_pending,
            "warm_pending_s": self.warm_pending_s,
            "compile_s": self.compile_s,
            "exposure": self.exposure.state_dict() if self.exposure is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any], step: int) -> None:
        """Continue the totals; the steps after a resume are warmed up again (caches and
        compilation are cold in the new process). A checkpoint written before the timing rule
        charged its warm steps their measured time."""
        self.train_s, self.window_s = state["train_s"], state["window_s"]
        self.window_steps = state["steps"]
        self.warm_charged_s = state.get("warm_charged_s", self.train_s - self.window_s)
        self.warm_pending = state.get("warm_pending", 0)
        self.warm_pending_s = state.get("warm_pending_s", 0.0)
        self.compile_s = state.get("compile_s", 0.0)
        if self.exposure is not None and state.get("exposure") is not None:
            self.exposure.load_state_dict(state["exposure"])
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


def release_free_memory() -> None:
    """Collect garbage and hand the C heap's free pages back to the system (glibc's
    malloc_trim), so that a run's high-water mark starts from what is live, not from what an
    earlier run of the same process freed but the allocator kept."""
    gc.collect()
    with contextlib.suppress(AttributeError, OSError):  # not glibc: nothing to trim
        ctypes.CDLL(None).malloc_trim(0)


class PeakMemory:
    """The peak memory of one run (docs/design.md, "Peak memory"), reset when the run's model
    and data are in place. On CUDA, the caching allocator's peak. On Linux CPUs, the process's
    resident high-water mark (VmHWM), reset by writing 5 to /proc/self/clear_refs, so that runs
    of one multirun process are measured each on their own; elsewhere (or when that write is
    refused) the process's lifetime maximum RSS, which only grows from run to run."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = self._reset()

    def _reset(self) -> str:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return "cuda_max_allocated"
        if sys.platform.startswith("linux"):
            release_free_memory()
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
                return "cpu_vmhwm_run"
            except OSError:
                pass
        return "cpu_max_rss_process"

    def read(self) -> int:
        """Bytes."""
        if self.kind == "cuda_max_allocated":
            return torch.cuda.max_memory_allocated(self.device)
        if self.kind == "cpu_vmhwm_run":
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024  # kB
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss * (1 if sys.platform == "darwin" else 1024)


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    keys = sorted(PEAK_BF16_FLOPS, key=len, reverse=True)
    return next((PEAK_BF16_FLOPS[k] for k in keys if k in name), None)
