"""`lionbench bench optim`: the time of one `optimizer.step()`, per implementation.

Parameters are shaped like a real model's (every tensor of GPT-2 124M, ResNet-50 or ViT-B/16,
built on the meta device for their shapes) or one flat tensor, in fp32 on the device, with two
sets of random gradients used in turn (so caches do not flatter); all implementations share them
and each builds a fresh optimizer (fresh state) per repeat. A repeat warms each implementation up
(compilation, state allocation: excluded), then times steps between device synchronizations
until its share of the time budget is spent (at least `--steps`). Repeats take the
implementations in a rotated order after a bandwidth probe, so a slow spell of a shared machine
lands on all of them. The table gives the median of the repeats' medians and their spread, the
effective bandwidth under each implementation's bytes-moved model (docs/references.md: Lion
reads p, g, m and writes p, m: 20 bytes per parameter, 16 with bf16 momentum; AdamW also reads
and writes v: 28) and that as a fraction of the measured ceiling.

The ceiling is the best of every probe pass: in-place streaming passes over flat fp32 arrays as
large as the parameter set, on the same threads (what an optimizer step does: several streams
read, the parameter and state streams written back), taking the best pass, since noise only
slows a pass down. If an implementation still moves data faster than the probe did, the ceiling
is raised to its bandwidth and the row is flagged, never shown above 100%.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from lionbench import checks
from lionbench.errors import UserError
from lionbench.files import atomic_write_json, atomic_write_text
from lionbench.loop.device import resolve_device
from lionbench.optim import build_from_groups, check_impl
from lionbench.optim.registry import OPTIMIZERS, Impl, all_impls, missing_needs

PARAM_SETS = ("gpt2-124m", "resnet50", "vit-b16", "flat:N")
BASELINE = "adamw:fused"
ALL = "all"  # --impls all: every implementation that runs here
# Without --steps and --budget: at least 2 timed steps per repeat, more while 30 s of timed
# steps last. With 3 repeats and one warm-up step each, the default run of GPT-2 124M (8
# implementations) takes about a minute and a half on a quiet 2-core CPU.
MIN_STEPS, DEFAULT_BUDGET_S = 2, 30.0
MAX_STEPS = 200  # per repeat: plenty for a median; tiny parameter sets stop here
PROBE_PASSES = 5  # timed passes of each probe pattern per probe (after one untimed)
# Paths left out of the default on a CPU: per-parameter Python loops, the eager reference and
# torch's multi-tensor Adafactor take 2-5 s a step for GPT-2 124M on 2 cores (10-60x torch's
# fused AdamW), Muon's bf16 Newton-Schulz far more, beyond what a two-minute default can give
# them with warm-ups and repeats.
# `--impls all` (or naming them) times them.
SLOW_ON_CPU = (
    "lion:lionbench_eager",
    "lion:lion_pytorch",
    "adamw:loop",
    "sgd:loop",
    "adafactor:foreach",
    "muon:torch",  # Newton-Schulz in bf16: CPU matmuls, minutes a step at GPT-2 size
    "muon:lionbench",
    "lion:deepspeed_cpu",  # its C++ op builds on first use (about 70 s here)
    "timm:library",  # the libraries' default optimizers: timm's and pytorch_optimizer's Lion,
    "pytorch_optimizer:library",  # heavyball's AdamW, about 90 s more at GPT-2 size, with
    "heavyball:library",  # heavyball's compilation (about 45 s)
)


def counts(steps: int | None, budget_s: float | None) -> tuple[int, float]:
    """(minimum timed steps per repeat, budget in seconds) from `--steps` and `--budget`:
    `--steps N` alone times exactly N steps (reproducible counts), `--budget S` alone at least
    MIN_STEPS, more while S seconds last; neither, the default budget."""
    if steps is None:
        return MIN_STEPS, DEFAULT_BUDGET_S if budget_s is None else budget_s
    return steps, 0.0 if budget_s is None else budget_s


def impl_spec(impl: str) -> Impl:
    """`optim:impl` -> the registry's implementation, or one line listing the accepted ones."""
    name, _, variant = impl.partition(":")
    if name not in OPTIMIZERS or variant not in OPTIMIZERS[name].impls:
        raise UserError(f"unknown --impls '{impl}' (accepted: {', '.join(all_impls())}, all)")
    return OPTIMIZERS[name].impls[variant]


def default_impls(device_name: str) -> list[str]:
    """Every implementation that can run on this device (`--impls all`; Triton's need CUDA)."""
    cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    device_type = "cuda" if cuda else "cpu"
    return [i for i in all_impls() if not missing_needs(impl_spec(i), device_type)]


def pick_impls(chosen: list[str], device_name: str) -> list[str]:
    """What `--impls` means here: none given, every runnable implementation but the slow CPU
    paths (a default that fits two minutes); `all` anywhere in the list, every runnable one."""
    runnable = default_impls(device_name)
    if ALL in chosen:
        return runnable
    if chosen:
        return list(dict.fromkeys(chosen))
    on_cpu = resolve_device(device_name).type == "cpu"
    return [i for i in runnable if not (on_cpu and i in SLOW_ON_CPU)]


@cache
def _shapes(name: str) -> tuple[tuple[int, ...], ...]:
    return tuple(_build_shapes(name))


def param_shapes(name: str) -> list[tuple[int, ...]]:
    """The parameter shapes of a model (built once per process on the meta device)."""
    return list(_shapes(name))


def _build_shapes(name: str) -> list[tuple[int, ...]]:
    """The parameter shapes of a model, built on the meta device: no memory, no init."""
    with torch.device("meta"):
        if name == "gpt2-124m":
            from lionbench.recipes.gpt2 import GPT

            model: torch.nn.Module = GPT(12, 12, 768, 1024, 50304)
        elif name == "resnet50":
            from torchvision.models import resnet50

            model = resnet50()
        elif name == "vit-b16":
            from torchvision.models import vit_b_16

            model = vit_b_16()
        elif name.startswith("flat:"):
            try:
                size = float(name.split(":", 1)[1])
            except ValueError:
                size = 0.0
            n = int(size) if math.isfinite(size) else 0
            if n < 1:
                raise UserError(
                    f"--params {name}: flat:N needs a finite size N >= 1 (e.g. flat:1e8)"
                )
            return [(n,)]
        else:
            raise UserError(f"unknown --params '{name}' (accepted: {', '.join(PARAM_SETS)})")
    return [tuple(p.shape) for p in model.parameters()]


def say(text: str) -> None:
    """A progress line on stderr, at once: stdout keeps only the table (pipes, --out scripts)."""
    print(text, file=sys.stderr, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# In-place streaming passes and the bytes each moves per element under the same streaming model
# as the optimizers' (every written stream is also read, as p and the state are in a step, so no
# write-allocate traffic goes uncounted): two, three and four streams.
PROBE_PATTERNS: dict[str, tuple[int, Callable[..., Any]]] = {
    "scale": (8, lambda a, b, c: a.mul_(0.999999)),
    "add": (12, lambda a, b, c: a.add_(b, alpha=1e-6)),
    "addcmul": (16, lambda a, b, c: a.addcmul_(b, c, value=1e-6)),
}


def probe_bandwidth(n: int, device: torch.device, passes: int = PROBE_PASSES) -> dict[str, float]:
    """Bytes per second of each probe pattern over flat fp32 arrays of `n` elements (the
    parameter set's size, so the same caches are outrun; on torch's threads, which the
    optimizers use too): the best of `passes` timed passes, since noise only slows a pass."""
    a = torch.full((n,), 1.0, device=device)
    b = torch.full((n,), 0.5, device=device)
    c = torch.full((n,), 0.5, device=device)
    best = {}
    for name, (moved, op) in PROBE_PATTERNS.items():
        times = []
        for _ in range(passes + 1):  # the first pass is untimed (first touch, dispatch caches)
            sync(device)
            t0 = time.perf_counter()
            op(a, b, c)
            sync(device)
            times.append(time.perf_counter() - t0)
        best[name] = moved * n / max(min(times[1:]), 1e-9)
    del a, b, c
    return best


Tensors = tuple[list[torch.nn.Parameter], list[list[torch.Tensor]]]


def make_tensors(shapes: list[tuple[int, ...]], device: torch.device, seed: int = 0) -> Tensors:
    """fp32 parameters and two gradient sets: made once and shared by every implementation
    (each builds its own state), since drawing them costs seconds at GPT-2 size."""
    gen = torch.Generator(device=device).manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, device=device, generator=gen)) for s in shapes]
    grads = [[torch.randn(s, device=device, generator=gen) for s in shapes] for _ in range(2)]
    return params, grads


def build_impl(impl: str, params: list[torch.nn.Parameter], device: torch.device) -> Any:
    """A fresh optimizer over `params` with the registry's defaults (a step's cost does not
    depend on the hyperparameters' values)."""
    optim, _, variant = impl.partition(":")
    cfg = {"name": optim, "impl": variant, "weight_decay": 0.1}
    check_impl(cfg, device.type)
    return build_from_groups(cfg, [{"params": params, "weight_decay": 0.1}])


def time_steps(
    opt: Any, tensors: Tensors, device: torch.device, steps: int, warmup: int, seconds: float = 0.0
) -> tuple[float, list[float]]:
    """(seconds of the `warmup` untimed steps, seconds of each timed step): at least `steps`
    timed steps, more while their sum is under `seconds` (at most MAX_STEPS)."""
    params, grads = tensors

    def step(i: int) -> float:
        for p, g in zip(params, grads[i % 2], strict=True):
            p.grad = g
        sync(device)
        t0 = time.perf_counter()
        opt.step()
        sync(device)
        return time.perf_counter() - t0

    warm_s = sum(step(i) for i in range(warmup))
    times: list[float] = []
    while len(times) < steps or (sum(times) < seconds and len(times) < MAX_STEPS):
        times.append(step(warmup + len(times)))
    return warm_s, times


def time_impl(
    impl: str,
    shapes: list[tuple[int, ...]],
    device: torch.device,
    steps: int,
    warmup: int,
    seed: int = 0,
) -> list[float]:
    """Seconds of each of `steps` timed optimizer.step() on fresh tensors of these shapes."""
    tensors = make_tensors(shapes, device, seed)
    return time_steps(build_impl(impl, tensors[0], device), tensors, device, steps, warmup)[1]


def _ms(seconds: float) -> str:
    from lionbench.console import short

    return short(seconds * 1e3)


def _header(params: str, impls: list[str], n: int, device: torch.device, cfg: dict) -> None:
    """The plan, before anything is allocated: what runs, how long each part is timed."""
    from lionbench.loop.device import device_name

    where = f"{device} ({device_name(device)}, {torch.get_num_threads()} threads)"
    say(f"bench optim: {params}, {n:,} parameters in {cfg['tensors']} tensors, on {where}")
    budget = cfg["budget_s"]
    more = f", more while a {budget:g} s budget lasts (at most {MAX_STEPS})" if budget else ""
    say(
        f"plan: {len(impls)} implementations x {cfg['repeats']} repeats (order rotated), each "
        f"{cfg['warmup']} warm-up step(s) then >= {cfg['steps']} timed steps{more}; a bandwidth "
        "probe before each repeat"
    )
    if impls == pick_impls([], str(device)) and device.type == "cpu":
        say(f"left out (slow on a CPU, or building first): {', '.join(SLOW_ON_CPU)}; "
            "--impls all times them")  # fmt: skip


@dataclass(frozen=True)
class Options:
    """What `bench optim` was asked for (`counts` turns --steps/--budget into steps, budget_s)."""

    params: str
    impls: list[str]
    steps: int
    warmup: int
    repeats: int
    device: str = "auto"
    budget_s: float = 0.0
    out: Path | None = None


def bench_optim(o: Options) -> list[dict[str, Any]]:
    """Time every implementation (progress on stderr); one row per implementation."""
    for impl in o.impls:
        impl_spec(impl)
    checks.bench_counts(o.steps, o.warmup, o.repeats)
    params, impls, steps, warmup, repeats, budget_s = (
        o.params, o.impls, o.steps, o.warmup, o.repeats, o.budget_s
    )  # fmt: skip
    start = time.perf_counter()
    device = resolve_device(o.device)
    shapes = param_shapes(params)
    n = sum(math.prod(s) for s in shapes)
    cfg = {"tensors": len(shapes), "steps": steps, "warmup": warmup, "repeats": repeats}
    cfg["budget_s"] = budget_s
    _header(params, impls, n, device, cfg)
    tensors = make_tensors(shapes, device)
    say(f"setup: parameters and 2 gradient sets ({3 * 4 * n / 1e9:.2f} GB) made in "
        f"{time.perf_counter() - start:.1f} s")  # fmt: skip
    medians: dict[str, list[float]] = {impl: [] for impl in impls}
    counts: dict[str, list[int]] = {impl: [] for impl in impls}
    probes: list[dict[str, float]] = []
    spent, blocks = 0.0, len(impls) * repeats
    for r in range(repeats):
        t_repeat = time.perf_counter()
        probes.append(probe_bandwidth(n, device))
        parts = ", ".join(f"{k} {v / 1e9:.1f}" for k, v in probes[-1].items())
        say(f"repeat {r + 1}/{repeats}: probe best {max(probes[-1].values()) / 1e9:.1f} GB/s "
            f"({parts} GB/s) [{time.perf_counter() - start:.0f} s]")  # fmt: skip
        for impl in impls[r % len(impls) :] + impls[: r % len(impls)]:
            done = sum(map(len, medians.values()))
            tag = f"[{done + 1:>{len(str(blocks))}}/{blocks}] {impl}, repeat {r + 1}/{repeats}"
            say(f"{tag} ...")
            share = max(budget_s - spent, 0.0) / (blocks - done)
            opt = build_impl(impl, tensors[0], device)
            warm_s, times = time_steps(opt, tensors, device, steps, warmup, share)
            del opt
            spent += sum(times)
            medians[impl].append(statistics.median(times))
            counts[impl].append(len(times))
            moved = impl_spec(impl).bytes_moved
            gbps = f", {moved * n / medians[impl][-1] / 1e9:.1f} GB/s" if moved else ""
            say(
                f"{tag}: {len(times)} steps, median {_ms(medians[impl][-1])} ms (min "
                f"{_ms(min(times))}, max {_ms(max(times))}){gbps}, warm-up {warm_s:.1f} s; "
                f"median so far {_ms(statistics.median(medians[impl]))} ms "
                f"[{time.perf_counter() - start:.0f} s]"
            )
        left = (time.perf_counter() - t_repeat) * (repeats - r - 1)
        if left:
            say(f"repeat {r + 1}/{repeats} done; about {left:.0f} s to go")
    del tensors
    settings = {**cfg, "device": device, "n": n, "params": params}
    rows = summarize(medians, counts, probes, settings)
    say(f"done in {time.perf_counter() - start:.0f} s")
    return rows


def summarize(
    medians: dict[str, list[float]],
    counts: dict[str, list[int]],
    probes: list[dict[str, float]],
    settings: dict[str, Any],
) -> list[dict[str, Any]]:
    """One row per implementation. The ceiling is the best probe pass, raised to the fastest
    implementation's bandwidth where that is higher (flagged `above_probe`), so that no
    fraction of it exceeds 1."""
    n = settings["n"]
    probe = max(max(p.values()) for p in probes)
    pattern = max(((k, v) for p in probes for k, v in p.items()), key=lambda kv: kv[1])[0]
    effective = {}
    for impl, ms in medians.items():
        moved = impl_spec(impl).bytes_moved
        effective[impl] = moved * n / statistics.median(ms) if moved else math.nan
    ceiling = max([probe, *(v for v in effective.values() if not math.isnan(v))])
    rows = []
    for impl, ms in medians.items():
        rows.append(
            {
                "params": settings["params"],
                "n_params": n,
                "n_tensors": settings["tensors"],
                "impl": impl,
                "ms_per_step": statistics.median(ms) * 1e3,
                "ms_min": min(ms) * 1e3,
                "ms_max": max(ms) * 1e3,
                "repeats": settings["repeats"],
                "steps": min(counts[impl]),
                "timed_steps": sum(counts[impl]),
                "warmup": settings["warmup"],
                "budget_s": settings["budget_s"],
                "bytes_per_param": impl_spec(impl).bytes_moved,
                "effective_gb_s": effective[impl] / 1e9,
                "bandwidth_gb_s": ceiling / 1e9,
                "fraction_of_bandwidth": effective[impl] / ceiling,
                "probe_gb_s": probe / 1e9,
                "probe_pattern": pattern,
                "above_probe": bool(effective[impl] > probe),
                "device": str(settings["device"]),
                "threads": torch.get_num_threads(),
                "torch_version": torch.__version__,
            }
        )
    base = next((r["ms_per_step"] for r in rows if r["impl"] == BASELINE), None)
    for r in rows:
        r["vs_adamw_fused"] = r["ms_per_step"] / base if base else None
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from lionbench.console import make_console, short

    first = rows[0]
    raised = [r["impl"] for r in rows if r["above_probe"]]
    ceiling = f"ceiling {first['bandwidth_gb_s']:.1f} GB/s" + (
        f" (probe {first['probe_gb_s']:.1f}, raised)" if raised else " (probe's best pass)"
    )
    table = Table(
        title=f"optimizer.step() on {first['params']} ({first['n_params']:,} params in "
        f"{first['n_tensors']} tensors), {first['device']} x{first['threads']} threads; {ceiling}",
        title_justify="left",
        caption="ms/step: median over repeats of each repeat's median step; range: min-max of "
        "those medians; steps: timed steps over all repeats (warm-up excluded); GB/s: the "
        "bytes-moved model over the time; of bw: that over the ceiling (the best in-place "
        "streaming pass of the probe); vs fused: time over torch AdamW fused's",
        caption_justify="left",
    )
    table.add_column("impl", no_wrap=True)
    for col in ("ms/step", "range", "steps", "GB/s", "of bw", "vs fused"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in sorted(rows, key=lambda r: r["ms_per_step"]):
        table.add_row(
            r["impl"],
            short(r["ms_per_step"]),
            f"{short(r['ms_min'])}-{short(r['ms_max'])}",
            str(r["timed_steps"]),
            f"{r['effective_gb_s']:.1f}",
            f"{r['fraction_of_bandwidth']:.0%}" + ("*" if r["above_probe"] else ""),
            "-" if r["vs_adamw_fused"] is None else f"{r['vs_adamw_fused']:.2f}",
        )
    console = make_console()
    console.print(table)
    if raised:
        console.print(
            f"* {', '.join(raised)} moved more bytes per second than the probe's best pass "
            f"({first['probe_gb_s']:.1f} GB/s): the probe is not a ceiling on this machine, so "
            "the ceiling shown is the fastest implementation's bandwidth",
            highlight=False,
        )


def check_options(o: Options) -> None:
    """Every option of `bench optim`, checked before the bandwidth probe and the first timed
    step, so that a typo costs no benchmark time."""
    check_out(o.out)
    if not (math.isfinite(o.budget_s) and o.budget_s >= 0):
        raise UserError(f"--budget must be a finite number of seconds >= 0, got {o.budget_s}")
    if o.params.startswith("flat:"):
        param_shapes(o.params)  # parses N; allocates nothing
    elif o.params not in PARAM_SETS:
        raise UserError(f"unknown --params '{o.params}' (accepted: {', '.join(PARAM_SETS)})")
    for impl in o.impls:
        if impl != ALL:
            impl_spec(impl)
    checks.bench_counts(o.steps, o.warmup, o.repeats)
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", o.device):
        raise UserError(f"unknown --device '{o.device}' (accepted: auto, cpu, cuda, cuda:N)")
    device = resolve_device(o.device)
    check_fits(o.params, device)
    for impl in (i for i in o.impls if i != ALL):
        missing = missing_needs(impl_spec(impl), device.type)
        if missing:
            raise UserError(
                f"--impls {impl} needs {' and '.join(missing)} (accepted here: "
                f"{', '.join(default_impls(device.type))})"
            )


# float32 tensors per parameter at the peak: the parameter and two gradient sets (the steps
# alternate between them), then either up to two state tensors (AdamW's moments) or, between
# repeats, the probe's three flat arrays.
TENSORS_PER_PARAM = 6


def device_memory(device: torch.device) -> int:
    """The device's total memory in bytes (RAM for the CPU)."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(params: str, device: torch.device) -> None:
    """A parameter set the device cannot hold is one line now, not an allocator error later."""
    n = sum(math.prod(s) for s in param_shapes(params))
    need, have = n * 4 * TENSORS_PER_PARAM, device_memory(device)
    if need > have:
        raise UserError(
            f"--params {params} needs about {need / 1e9:,.0f} GB ({n:,} parameters x "
            f"{TENSORS_PER_PARAM} float32 tensors), more than the {device.type} memory of "
            f"{have / 1e9:,.0f} GB (accepted: a smaller flat:N)"
        )


def check_out(out: Path | None) -> None:
    if out is not None and (out.suffix not in (".csv", ".json") or not out.parent.is_dir()):
        raise UserError(f"--out {out}: give a .csv or .json file in an existing directory")
    if out is not None and out.is_dir():
        raise UserError(f"--out {out} is a directory (give a .csv or .json file)")


def write(rows: list[dict[str, Any]], out: Path | None) -> None:
    """The table's rows as a .json list or a .csv table (`bench optim` and `bench train`), when
    asked for (`out`), and a line saying so."""
    if out is None:
        return
    if out.suffix == ".json":
        atomic_write_json(out, rows)
    else:
        import pandas as pd

        atomic_write_text(out, pd.DataFrame(rows).to_csv(index=False))
    print(f"wrote {out}")
