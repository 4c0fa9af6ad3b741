"""What a run's timing was exposed to: the machine it shared with other processes.

A steps/s measured while other processes took the CPU (or the GPU) is the machine's, not the
optimizer's. At every window edge, outside the timed interval, the run reads how much CPU time
its CPUs spent busy (/proc/stat, the hypervisor's steal included) and how much of it was its
own (this process, its children such as DataLoader workers, and under torchrun its sibling
ranks); the difference over the timed segments is what other processes took. A run whose
threads lost more than 10% of the cores they need, or that shared its GPU with another process,
is *contended*: the report leaves it out of speed verdicts with one line saying why
(docs/design.md, "Timing exposure"). Standard library and torch only; NVML where installed.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from typing import Any

import torch

# What share of the cores a run's threads need may other processes take before its speed is
# no longer its own: 10% (on 2 cores with 2 threads, a fifth of a core).
CONTENTION_SHARE = 0.1
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_CHILDREN_EVERY_S = 30.0  # how often the list of this process's children is read again


def usable_cpus() -> set[int]:
    """The CPUs this process may run on (its affinity; every CPU where that is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def _busy_s(cpus: set[int]) -> float | None:
    """CPU-seconds the process's CPUs have spent busy since boot (user, nice, system, irq,
    softirq and the hypervisor's steal: time its threads could not have), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    total = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        ticks = [int(x) for x in rest.split()[:8]]  # user nice system idle iowait irq softirq steal
        total += sum(ticks) - ticks[3] - ticks[4]
    return total / CLK_TCK if total else None


def _process_cpu_s(pid: int) -> float:
    """utime + stime of another process (a child: DataLoader workers, DDP ranks), or 0."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Exposure:
    """What a run's timed window shared its machine with (docs/design.md, "Timing exposure"):
    the CPU time that other processes, and the hypervisor's steal, took while it trained, the
    load average, and on CUDA other processes on the device and the SM clock.

    The CPU counters tick at 10 ms, so they are read over one span per process, from the start
    of its first timed segment to the end of its last (evaluations in between are the run's own
    CPU time, so they do not count as others'), not summed over many short segments, whose
    rounding would add up. Read at window edges only, outside the timed interval. "Ours" is this
    process, its children (DataLoader workers) and, under torchrun, its sibling ranks."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpus = usable_cpus()
        # the cores the run's threads would use: torch's intra-op threads on a CPU, the one
        # launching thread on a GPU
        threads = torch.get_num_threads() if device.type == "cpu" else 1
        self.needed_cores = float(min(threads, len(self.cpus)))
        self.others_s = 0.0  # CPU-seconds others took in the spans of earlier processes
        self.wall_s = 0.0  # wall seconds of those spans
        self.load: list[float] = []  # 1-minute load average at timed segments' ends
        self.gpu_others: int | None = 0 if device.type == "cuda" else None  # most seen at once
        self.sm_clock: list[float] = []  # SM clock (MHz) at timed segments' ends
        self._first: tuple[float, float, float] | None = None  # this process's span: start
        self._last: tuple[float, float, float] | None = None  # and its latest timed end
        self._family: list[int] = []
        self._family_read = -math.inf

    def _ours_s(self) -> float:
        """CPU-seconds of this process, its children and (under torchrun) its sibling ranks."""
        from lionbench.signals import child_pids

        now = time.monotonic()
        if now - self._family_read > _CHILDREN_EVERY_S:
            parent = os.getppid() if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
            siblings = [p for p in child_pids(parent) if p != os.getpid()] if parent else []
            self._family = [*child_pids(), *siblings]
            self._family_read = now
        own = time.process_time()  # every thread of this process, to the nanosecond
        return own + sum(_process_cpu_s(pid) for pid in self._family)

    def _snapshot(self) -> tuple[float, float, float] | None:
        busy = _busy_s(self.cpus)
        return None if busy is None else (time.perf_counter(), busy, self._ours_s())

    def start(self, timed: bool) -> None:
        """A segment begins: the first timed one opens this process's span."""
        if timed and self._first is None:
            self._first = self._snapshot()

    def stop(self, timed: bool) -> None:
        """A segment ended: a timed one moves the span's end here."""
        if not timed or self._first is None:
            return
        self._last = self._snapshot()
        with contextlib.suppress(OSError):
            self.load.append(os.getloadavg()[0])
        if self.device.type == "cuda":
            self._read_gpu()

    def totals(self) -> tuple[float, float]:
        """(CPU-seconds others took, wall seconds) over every process's span so far."""
        if self._first is None or self._last is None:
            return self.others_s, self.wall_s
        (w0, b0, o0), (w1, b1, o1) = self._first, self._last
        return self.others_s + max(0.0, (b1 - b0) - (o1 - o0)), self.wall_s + (w1 - w0)

    def _read_gpu(self) -> None:
        """Other processes on the device and its SM clock, through NVML when it is there."""
        try:
            import pynvml

            pynvml.nvmlInit()
            index = self.device.index if self.device.index is not None else 0
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            pids = {p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)}
            self.gpu_others = max(self.gpu_others or 0, len(pids - {os.getpid()}))
            self.sm_clock.append(float(pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)))
        except Exception:  # no NVML (not installed, not NVIDIA, no permission): unknown
            self.gpu_others = None

    def record(self) -> dict[str, Any]:
        """The summary's `timing_exposure`, `timing_contended` and `timing_note`."""
        others_s, wall_s = self.totals()
        if wall_s <= 0:
            return {"timing_exposure": None, "timing_contended": None, "timing_note": None}
        cpus = len(self.cpus)
        others = others_s / wall_s
        exposure = {
            "others_cpu_cores": round(others, 3),
            "cpu_count": cpus,
            "needed_cores": self.needed_cores,
            "load_avg": round(sum(self.load) / len(self.load), 2) if self.load else None,
            "window_s": round(wall_s, 3),
            "gpu_other_processes": self.gpu_others,
            "gpu_sm_clock_mhz": [min(self.sm_clock), max(self.sm_clock)] if self.sm_clock else None,
        }
        notes = []
        if cpus - others < self.needed_cores * (1 - CONTENTION_SHARE):
            notes.append(
                f"other processes used {others:.2f} of {cpus} cores while it trained (its "
                f"threads need {self.needed_cores:g})"
            )
        if self.gpu_others:
            notes.append(f"{self.gpu_others} other process(es) on the GPU")
        return {
            "timing_exposure": exposure,
            "timing_contended": bool(notes),
            "timing_note": "; ".join(notes) or None,
        }

    def state_dict(self) -> dict[str, Any]:
        """The totals so far (a resumed process opens a span of its own)."""
        others_s, wall_s = self.totals()
        return {"others_s": others_s, "wall_s": wall_s, "load": list(self.load),
                "gpu_others": self.gpu_others, "sm_clock": list(self.sm_clock)}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.others_s, self.wall_s = state["others_s"], state["wall_s"]
        self.load, self.sm_clock = list(state["load"]), list(state["sm_clock"])
        self.gpu_others = state["gpu_others"]
