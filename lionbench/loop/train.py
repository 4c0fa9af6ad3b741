"""THE training loop, shared by every recipe.

`train` builds the parts (model, data, optimizer, schedule), starts or resumes, then loops: one
`train_step`, and at window edges the host-side work (log, eval, checkpoint) with the clock
paused. The loop never synchronizes the host per step: the train loss is summed on the device
and read once per `log_interval`, and the clock is read only at window edges, right after a
device synchronize, so that timing excludes logging and evaluation, and the warmup steps are
charged at the steady rate (compilation is `compile_s`, never training time; docs/design.md).
Records, checkpoints and artifacts go to a `RunSink` (run/outputs.py): the loop knows no file.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from omegaconf import DictConfig

from lionbench import console
from lionbench.loop import ddp
from lionbench.loop import device as devices
from lionbench.loop.ema import EMA
from lionbench.loop.evaluation import Target, evaluate
from lionbench.loop.exposure import Exposure
from lionbench.loop.state import LoopState, rng_state, set_rng_state
from lionbench.loop.timing import Clock, OptStepTimer, PeakMemory, peak_flops
from lionbench.optim import build_optimizer, state_bytes
from lionbench.optim.registry import impl_of, spec_of
from lionbench.optim.schedule import build_scheduler
from lionbench.recipe import Data, Recipe
from lionbench.record import Status
from lionbench.signals import StopFlag


class RunSink(Protocol):
    """Where the loop's records, checkpoints and artifacts go (run/outputs.py `RunOutputs`)."""

    path: Path  # the run directory: recipes write their artifacts there

    def record(self, record: dict[str, Any]) -> None: ...

    def started(self) -> None: ...

    def checkpoint(self, content: dict[str, Any]) -> None: ...

    def artifact(self, name: str, path: Path, step: int) -> None: ...


def derive_seed(seed: int, stream: str) -> int:
    """Independent seeds for init, data order and noise, all from the one run seed."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{stream}".encode()).digest()[:8], "little") >> 1


def tensor_hash(tensors: list[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Plan:
    """The loop's numbers, read from the config once (not per step)."""

    steps: int
    batch_size: int
    accum: int
    world: int
    rank: int
    grad_clip: float
    opt_every: int
    log_every: int
    eval_every: int
    ckpt_every: int

    @classmethod
    def of(cls, cfg: DictConfig) -> Plan:
        t = cfg.train
        return cls(
            int(t.steps), int(t.batch_size), int(t.grad_accum), ddp.world(),
            ddp.rank(), float(t.grad_clip), int(cfg.timing.opt_step_every),
            int(t.log_interval), int(t.eval_interval), int(cfg.checkpoint.interval),
        )  # fmt: skip

    @property
    def rank_batch(self) -> int:
        return self.batch_size // self.world  # this rank's share of every step's batch

    @property
    def rank_micro(self) -> int:
        return self.rank_batch // self.accum


@dataclass
class Parts:
    """What a run trains with. `model` is the raw module (state dicts, clipping, EMA source);
    `train_model` wraps it in DDP when there are several ranks; `step_model` is what the step
    calls (compiled with `compile=true`); `eval_model` is what evaluation calls."""

    recipe: Recipe
    model: torch.nn.Module
    train_model: Any
    step_model: Any
    eval_model: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    ema: EMA | None
    data: Data
    autocast: Any
    init_hash: str
    n_params: int
    peak_memory: PeakMemory
    expected_state_bytes: int | None


def build(cfg: DictConfig, recipe: Recipe, device: torch.device, plan: Plan) -> Parts:
    """The same seed gives the same initial weights and batches for every optimizer."""
    seed = int(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        model = recipe.build_model()
    init_hash = tensor_hash(list(model.state_dict().values()))
    channels_last = recipe.uses_channels_last(device.type)
    model.to(device, memory_format=torch.channels_last if channels_last else None)
    micro_batch = plan.batch_size // plan.accum  # the eval batch size, as on one process
    data = recipe.build_data(plan.batch_size, micro_batch, device, derive_seed(seed, "data"))
    torch.manual_seed(derive_seed(seed, "noise"))  # dropout, diffusion noise: in-loss randomness
    devices.configure(device)
    peak = PeakMemory(device)  # this run's peak, from here (model and data in place)
    optimizer = build_optimizer(cfg.optim, model)
    train_model = ddp.wrap(model, device) if plan.world > 1 else model
    step_model = torch.compile(train_model) if cfg.compile else train_model
    return Parts(
        recipe=recipe,
        model=model,
        train_model=train_model,
        step_model=step_model,
        eval_model=step_model if plan.world == 1 else model,  # DDP's forward is for training
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg.sched, plan.steps),
        ema=EMA(model, float(cfg.train.ema_decay)) if cfg.train.ema_decay else None,
        data=data,
        autocast=devices.autocast(str(cfg.precision), device),
        init_hash=init_hash,
        n_params=sum(p.numel() for p in model.parameters()),
        peak_memory=peak,
        expected_state_bytes=expected_state_bytes(cfg.optim, model),
    )


def expected_state_bytes(optim_cfg: DictConfig, model: torch.nn.Module) -> int | None:
    """What the registry says the optimizer should hold for the trainable parameters (None for
    a user `_target_` optimizer): recorded next to the measured state bytes."""
    spec = spec_of(optim_cfg)
    if spec.target is not None:
        return None
    impl = spec.impl(impl_of(optim_cfg))
    if impl.partition is not None:  # per part: Muon's momentum on matrices, AdamW's on the rest
        from lionbench.optim.partition import assign

        part = assign(model, list(optim_cfg.get("exclude") or []))
        named = dict(model.named_parameters())
        return sum(impl.partition.state_bytes[part[n]](tuple(named[n].shape)) for n in part)
    shapes = [tuple(p.shape) for p in model.parameters() if p.requires_grad]
    return spec.expected_state_bytes(impl_of(optim_cfg), shapes)


def train(
    cfg: DictConfig,
    recipe: Recipe,
    device: torch.device,
    sink: RunSink,
    resume: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one run; returns the result fields of its summary."""
    plan = Plan.of(cfg)
    parts = build(cfg, recipe, device, plan)
    state = LoopState(
        clock=Clock(device, int(cfg.timing.warmup_steps), Exposure(device)),
        opt_timer=OptStepTimer(device),
        target=Target(
            str(cfg.train.target_metric),
            cfg.train.target,
            str(cfg.train.target_metric) in recipe.higher_is_better,
        ),
        loss_sum=torch.zeros((), device=device),
        diverge_loss=cfg.train.diverge_loss,
    )
    out = Output(cfg, sink, parts, device)
    if resume is None:
        evaluate_and_log(parts, state, out)  # step 0: where every curve starts
    else:
        restore(parts, state, resume)
    parts.model.train()
    first = True  # the first step done: the run directory holds a trained step
    with StopFlag() as stop:
        state.clock.resume(state.step)
        while state.step < plan.steps:
            train_step(parts, state, plan)
            if first:
                sink.started()
                first = False
            edge = window_edge(plan, state, stop)
            if edge is None:
                continue
            state.clock.pause(state.step)  # --- window edge: untimed until resume() ---
            state.opt_timer.collect()
            if edge.log:
                log_train(state, out)
            if edge.eval and state.status != Status.DIVERGED:
                evaluate_and_log(parts, state, out)
            if state.status == Status.DIVERGED:
                out.progress.print(f"diverged at step {state.step}: train loss {state.final_train}")
                break
            if edge.checkpoint and plan.rank == 0:
                sink.checkpoint(checkpoint_content(parts, state))
            if edge.stop:
                state.status, state.interrupted_by = Status.INTERRUPTED, stop.signum
                break  # the command says it once, with the run directory (run/launch.py)
            state.clock.resume(state.step)
    out.progress.close()
    if state.status == Status.INTERRUPTED:
        return {"status": state.status, "steps": state.step, "interrupted_by": stop.signum}
    return results(parts, state, out, device, plan)


def train_step(parts: Parts, state: LoopState, plan: Plan) -> None:
    """One optimizer update: this rank's slice of the step's batch in micro-batches (DDP
    all-reduces on the last), clipping, the update (timed on every `opt_every`-th step after
    the warmup), EMA and the schedule."""
    batch = parts.data.train.next()
    if state.first_batch_hash is None:
        state.first_batch_hash = tensor_hash(list(batch))
    if plan.world > 1:  # every rank draws the whole step and keeps its own slice
        lo = plan.rank * plan.rank_batch
        batch = tuple(x[lo : lo + plan.rank_batch] for x in batch)
    micro = plan.rank_micro
    for i in range(plan.accum):
        sync = i == plan.accum - 1 or plan.world == 1
        with contextlib.nullcontext() if sync else parts.train_model.no_sync():
            with parts.autocast:
                loss, _ = parts.recipe.loss(
                    parts.step_model, tuple(x[i * micro : (i + 1) * micro] for x in batch)
                )
            (loss / plan.accum).backward()
        state.loss_sum += loss.detach().float()
    state.micro_in_window += plan.accum
    if plan.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(parts.model.parameters(), plan.grad_clip)
    timed = state.step >= state.clock.warmup_steps and state.step % plan.opt_every == 0
    with state.opt_timer.measure() if timed else contextlib.nullcontext():
        parts.optimizer.step()
    if parts.ema is not None:
        parts.ema.update()
    state.last_lr = parts.optimizer.param_groups[0]["lr"]  # the lr this update used
    parts.scheduler.step()
    parts.optimizer.zero_grad(set_to_none=True)
    state.step += 1


@dataclass(frozen=True)
class Edge:
    """What a window edge does: log the train loss, evaluate, checkpoint, stop on a signal."""

    log: bool
    eval: bool
    checkpoint: bool
    stop: bool


def window_edge(plan: Plan, state: LoopState, stop: StopFlag) -> Edge | None:
    """None between edges (the common case: no host work at all). A signal stops the run at a
    step boundary (`StopFlag.stop_now`: DDP ranks agree at a log step)."""
    step, last = state.step, state.step == plan.steps
    do_log = step % plan.log_every == 0 or last
    do_eval = step % plan.eval_every == 0 or last
    stop_now = stop.stop_now(
        plan.world, do_log, lambda signum: ddp.agree_on_signal(signum, state.loss_sum.device)
    )
    do_ckpt = bool(plan.ckpt_every and step % plan.ckpt_every == 0) or stop_now
    if not (do_log or do_eval or do_ckpt or step == state.clock.warmup_steps):
        return None
    return Edge(do_log, do_eval, do_ckpt and not last, stop_now and not last)


class Output:
    """Where records go: the run's sink (metrics.jsonl, W&B) and the console."""

    def __init__(self, cfg: DictConfig, sink: RunSink, parts: Parts, device: torch.device) -> None:
        self.sink, self.batch_size = sink, int(cfg.train.batch_size)
        label = f"{cfg.recipe.name}/{cfg.optim.name}"
        self.progress = console.Progress(int(cfg.train.steps), label)
        o = cfg.optim
        self.progress.print(
            f"{label}: scale={cfg.scale} data={cfg.data.source} params={parts.n_params:,} "
            f"impl={o.get('impl', 'target')} lr={o.lr:.3g} wd={o.weight_decay:.3g} "
            f"seed={cfg.seed} batch={cfg.train.batch_size} device={device} -> {sink.path}"
        )
        floor = parts.data.loss_floor
        self.floor_note = f" (floor {floor:.4f})" if floor is not None else ""

    def record(self, record: dict[str, Any]) -> None:
        self.sink.record(record)


def log_train(state: LoopState, out: Output) -> None:
    """The window's mean train loss (reduced over ranks): one host sync; divergence check."""
    if ddp.world() > 1:
        ddp.all_reduce_mean(state.loss_sum)
    state.final_train = loss = state.loss_sum.item() / state.micro_in_window
    state.loss_sum.zero_()
    state.micro_in_window = 0
    if state.diverge_loss is None:
        state.diverge_loss = 3.0 * loss if math.isfinite(loss) else math.inf
    out.record(
        {
            "step": state.step,
            "split": "train",
            "loss": loss,
            "lr": state.last_lr,
            "time_s": state.clock.charged_s(),
            "examples": state.step * out.batch_size,
        }
    )
    rate = state.clock.window_steps / state.clock.window_s if state.clock.window_s else None
    out.progress.update(state.step, loss=loss, lr=state.last_lr, steps_per_s=rate)
    if not math.isfinite(loss) or loss > state.diverge_loss:
        state.status, state.diverged_at = Status.DIVERGED, state.step


def evaluate_and_log(parts: Parts, state: LoopState, out: Output) -> None:
    """Evaluate the raw (and EMA) weights on the fixed eval set, record, check the target."""
    ev = evaluate(parts.eval_model, parts.recipe, parts.data.eval, parts.autocast)
    if parts.ema is not None:
        averaged = evaluate(parts.ema.synced(), parts.recipe, parts.data.eval, parts.autocast)
        ev.update({f"ema_{k}": v for k, v in averaged.items()})
    out.record(
        {
            "step": state.step,
            "split": "val",
            **ev,
            "time_s": state.clock.charged_s(),
            "examples": state.step * out.batch_size,
        }
    )
    shown = "  ".join(f"{k} {v:.4g}" for k, v in ev.items() if k != "loss")
    out.progress.print(
        f"step {state.step}: val loss {ev['loss']:.4f}{out.floor_note}  {shown}".rstrip()
    )
    state.history.append((state.step, ev))
    state.target.observe(ev, state.step, state.clock.charged_s())
    if not math.isfinite(ev["loss"]):
        state.status, state.diverged_at = Status.DIVERGED, state.step


def checkpoint_content(parts: Parts, state: LoopState) -> dict[str, Any]:
    """Everything the loop needs to continue bit for bit (run/checkpoint.py writes the file)."""
    return {
        "step": state.step,
        "model": parts.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "ema": parts.ema.model.state_dict() if parts.ema is not None else None,
        "rng": rng_state(),
        "data": parts.data.train.state_dict(),
        "loop": state.state_dict(),
    }


def restore(parts: Parts, state: LoopState, resume: dict[str, Any]) -> None:
    parts.model.load_state_dict(resume["model"])
    parts.optimizer.load_state_dict(resume["optimizer"])
    parts.scheduler.load_state_dict(resume["scheduler"])
    if parts.ema is not None:
        parts.ema.model.load_state_dict(resume["ema"])
    parts.data.train.load_state_dict(resume["data"])
    set_rng_state(resume["rng"])
    state.load_state_dict(resume["loop"])


def results(
    parts: Parts, state: LoopState, out: Output, device: torch.device, plan: Plan
) -> dict[str, Any]:
    """The summary fields of a finished loop (completed or diverged)."""
    ema = parts.ema
    final_model = ema.synced() if ema is not None else parts.model  # samples from EMA weights
    completed = state.status == Status.COMPLETED
    artifacts = parts.recipe.finalize(final_model, out.sink.path, device) if completed else {}
    for name, path in artifacts.items():
        out.sink.artifact(name, path, state.step)
    last_eval = state.history[-1][1]
    finite = [(ev["loss"], s) for s, ev in state.history if math.isfinite(ev["loss"])]
    best_val, best_step = min(finite) if finite else (None, None)
    steps_per_s = state.clock.steps_per_s()
    examples_per_s = steps_per_s * plan.batch_size if steps_per_s else None
    flops = parts.recipe.flops_per_example(parts.model)
    peak = peak_flops(device)
    peak = peak * plan.world if peak else None  # examples/s is over every rank's device
    floor, tokens = parts.data.loss_floor, parts.recipe.tokens_per_example
    clock = state.clock
    return {
        "status": state.status,
        "steps": state.step,
        "diverged_at_step": state.diverged_at,
        "final_train_loss": state.final_train,
        "final_val_loss": last_eval["loss"],
        "best_val_loss": best_val,
        "best_val_step": best_step,
        "final_val_metrics": {k: v for k, v in last_eval.items() if not k.startswith("ema_")},
        "final_ema_val_metrics": {k[4:]: v for k, v in last_eval.items() if k.startswith("ema_")}
        or None,
        "loss_floor": floor,
        "loss_floor_process": parts.data.info.get("loss_floor_process"),
        "gap_to_floor": last_eval["loss"] - floor if floor is not None else None,
        "target_metric": state.target.metric,
        "target": state.target.value,
        "steps_to_target": state.target.step,
        "time_to_target_s": time_to_target(state, steps_per_s),
        "steps_per_s": steps_per_s,
        "examples_per_s": examples_per_s,
        "tokens_per_s": examples_per_s * tokens if examples_per_s and tokens else None,
        "flops_per_example": flops,
        "mfu": examples_per_s * flops / peak if examples_per_s and flops and peak else None,
        "opt_step_ms": statistics.median(state.opt_timer.ms) if state.opt_timer.ms else None,
        "opt_step_ms_samples": len(state.opt_timer.ms),
        "train_time_s": clock.total_s(),
        "compile_s": clock.compile_s if clock.window_steps else None,
        "timed_steps": clock.window_steps,
        **(clock.exposure.record() if clock.exposure is not None else {}),
        "peak_mem_bytes": parts.peak_memory.read(),
        "peak_mem_kind": parts.peak_memory.kind,
        "optimizer_state_bytes": state_bytes(parts.optimizer),
        "expected_state_bytes": parts.expected_state_bytes,
        "optimizer_parts": getattr(parts.optimizer, "assignment", None),
        "n_params": parts.n_params,
        "init_state_hash": parts.init_hash,
        "first_batch_hash": state.first_batch_hash,
        "artifacts": {k: str(v) for k, v in artifacts.items()},
        "data_info": parts.data.info,
    }


def time_to_target(state: LoopState, steps_per_s: float | None) -> float | None:
    """The training time of the eval that reached the target (the `time_s` of its record); a
    target reached while that time was not known yet (inside a warmup), at the steady rate
    (docs/design.md, "Steps-to-target and time-to-target")."""
    step, time_s = state.target.step, state.target.time_s
    if step is None or time_s is not None:
        return time_s
    return step / steps_per_s if steps_per_s else None
