"""THE training loop, shared by every recipe.

Read top to bottom: `run` checks the config and finds the run directory (skipping a finished
run); `train` seeds, builds the recipe's model and data, the optimizer and the schedule, then runs
the loop. The loop never synchronizes the host per step: the train loss is summed on the device and
read once per `log_interval`, and the clock is read only at those window edges, right after a
device synchronize, so that timing excludes logging, evaluation and the warmup steps.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

import lionbench
from lionbench import checkpoint, console, distributed
from lionbench.errors import EXIT_DIVERGED, EXIT_FAILED, EXIT_OK, UserError
from lionbench.optim import build_optimizer, check_impl, state_bytes
from lionbench.optim.schedule import build_scheduler
from lionbench.recipe import Recipe, load_recipe
from lionbench.track import RunDir, WandbLogger, atomic_write_text, run_dir_path

EXIT_CODES = {
    "completed": EXIT_OK,
    "diverged": EXIT_DIVERGED,
    "failed": EXIT_FAILED,
    "interrupted": EXIT_FAILED,  # never returned: the run raises checkpoint.Interrupted
}
# Dense bf16 peak FLOP/s for MFU (vendor datasheets, SXM parts).
PEAK_BF16_FLOPS = {
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "L4": 121e12,
    "A10": 125e12,
    "4090": 165e12,
}


@dataclass
class RunResult:
    status: str  # completed | diverged | failed
    run_dir: Path
    summary: dict[str, Any]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name} but CUDA is not available here (accepted: auto, cpu)")
    return device


def derive_seed(seed: int, stream: str) -> int:
    """Independent seeds for init, data order and noise, all from the one run seed."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{stream}".encode()).digest()[:8], "little") >> 1


def run(cfg: DictConfig) -> RunResult:
    """One run of a resolved config: check, skip if finished, else train and record (or, with
    dist.nproc > 1, have torchrun's workers train it)."""
    device = resolve_device(cfg.device)
    if distributed.in_worker():
        cfg.dist.nproc = distributed.world()  # `torchrun -m lionbench run`: torchrun decides
        device = distributed.setup(device)
    try:
        return _run(cfg, device)
    finally:
        if distributed.in_worker():
            distributed.teardown()


def _run(cfg: DictConfig, device: torch.device) -> RunResult:
    recipe = load_recipe(cfg)
    recipe.check()
    check_impl(cfg.optim, device)
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    writer = distributed.rank() == 0  # the other ranks write nothing
    rundir = RunDir(run_dir_path(plain, device.type), writer=writer)
    name = rundir.path.name

    status = rundir.finished_status()
    if status is not None:
        print(f"already {status}: {rundir.path} (nothing to train)", flush=True)
        return RunResult(status, rundir.path, rundir.read_summary() or {})
    if int(cfg.dist.nproc) > 1 and not distributed.in_worker():
        return run_workers(plain, rundir)

    ckpt_path = rundir.path / checkpoint.FILENAME
    resume = checkpoint.load(ckpt_path) if ckpt_path.exists() else None
    rundir.start(
        OmegaConf.to_yaml(plain),
        keep_metrics_bytes=resume["loop"]["metrics_bytes"] if resume else None,
    )
    wandb = (
        WandbLogger(
            plain, rundir.path, name, resume_id=resume["loop"]["wandb_id"] if resume else None
        )
        if writer
        else WandbLogger.off()
    )
    started = datetime.now(timezone.utc)
    summary: dict[str, Any] = identity_fields(plain, device)
    summary.update(run_dir=str(rundir.path), started_at=started.isoformat(timespec="seconds"))
    if resume:
        summary.update(resumed_from_step=resume["step"], resumes=resume["loop"]["resumes"] + 1)
        print(f"resuming {rundir.path} from its checkpoint at step {resume['step']}", flush=True)
    wall0 = time.perf_counter()
    try:
        summary.update(train(cfg, recipe, device, rundir, wandb, resume))
    except Exception as e:
        (rundir.path / "error.log").write_text(traceback.format_exc())
        first_line = (str(e).strip().splitlines() or [""])[0]
        summary.update(status="failed", error=f"{type(e).__name__}: {first_line}")
        print(
            f"run failed: {summary['error']} (traceback in {rundir.path / 'error.log'})",
            file=sys.stderr,
            flush=True,
        )
    summary.update(
        ended_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        wall_s=time.perf_counter() - wall0,
    )
    rundir.write_summary(summary)
    rundir.close()
    if summary["status"] == "interrupted":
        wandb.preempted()
        raise checkpoint.Interrupted(summary["interrupted_by"], summary["steps"], rundir.path)
    if summary["status"] != "failed" and not cfg.checkpoint.keep and writer:
        ckpt_path.unlink(missing_ok=True)  # finished: nothing to resume
    wandb.finish(summary, EXIT_CODES[summary["status"]])
    if summary["status"] != "failed":
        console.summary_table(summary)
    return RunResult(summary["status"], rundir.path, summary)


def run_workers(plain: dict[str, Any], rundir: RunDir) -> RunResult:
    """The orchestrator's side of dist.nproc > 1: torchrun's workers read the resolved config
    from the run directory and rank 0 writes the results there; this reads them back."""
    rundir.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(rundir.config, OmegaConf.to_yaml(plain))
    code = distributed.launch(rundir.config, int(plain["dist"]["nproc"]))
    summary = rundir.read_summary()
    if summary is None or summary.get("status") not in EXIT_CODES:
        summary = {
            **(summary or {}),
            "status": "failed",
            "error": f"torchrun exited with code {code} before rank 0 wrote a summary",
            "run_dir": str(rundir.path),
        }
        rundir.write_summary(summary)
        print(f"run failed: {summary['error']}", file=sys.stderr, flush=True)
    if summary["status"] == "interrupted":
        raise checkpoint.Interrupted(summary["interrupted_by"], summary["steps"], rundir.path)
    return RunResult(summary["status"], rundir.path, summary)


def identity_fields(cfg: dict[str, Any], device: torch.device) -> dict[str, Any]:
    o = cfg["optim"]
    baseline = cfg["recipe"]["adamw"]
    return {
        "status": "running",
        "recipe": cfg["recipe"]["name"],
        "scale": cfg["scale"],
        "data": cfg["data"]["source"],
        "optim": o["name"],
        "impl": o["impl"],
        "lr": o["lr"],
        "weight_decay": o["weight_decay"],
        # Lion's effective ratio to the AdamW baseline (lr and wd can be overridden directly).
        "ratio": baseline["lr"] / o["lr"] if o["name"] == "lion" else None,
        "wd_ratio": (
            o["weight_decay"] / baseline["weight_decay"]
            if o["name"] == "lion" and baseline["weight_decay"]
            else None
        ),
        "betas": list(o["betas"]),
        "seed": cfg["seed"],
        "sched": cfg["sched"]["name"],
        "batch_size": cfg["train"]["batch_size"],
        "grad_accum": cfg["train"]["grad_accum"],
        "planned_steps": cfg["train"]["steps"],
        "precision": cfg["precision"],
        "compile": cfg["compile"],
        "sweep_name": cfg.get("sweep_name"),
        "device": device.type,
        "device_name": device_name(device),
        "torch_version": torch.__version__,
        "lionbench_version": lionbench.__version__,
        "git_rev": git_revision(),
        "hostname": platform.node(),
        "pid": os.getpid(),
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def git_revision() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        if out.returncode == 0:
            return out.stdout.strip()
    return None


def tensor_hash(tensors: list[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class Clock:
    """Training time measured between window edges, each after a device synchronize.

    `train_s` counts every training step (what time-to-target uses, as AlgoPerf); `window_s`
    and `window_steps` only count steps after `timing.warmup_steps` (what steps/s uses).
    """

    def __init__(self, device: torch.device, warmup_steps: int) -> None:
        self.device = device
        self.warmup_steps = warmup_steps
        self.train_s = self.window_s = 0.0
        self.window_steps = 0
        self._t0 = 0.0
        self._step0 = 0

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def resume(self, step: int) -> None:
        self.sync()
        self._t0, self._step0 = time.perf_counter(), step

    def pause(self, step: int) -> None:
        self.sync()
        elapsed = time.perf_counter() - self._t0
        self.train_s += elapsed
        if self._step0 >= self.warmup_steps:
            self.window_s += elapsed
            self.window_steps += step - self._step0


class OptStepTimer:
    """Times optimizer.step() alone: CUDA events (read at window edges), or the host clock on
    CPU, where kernels run synchronously."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.pending: list[tuple[Any, Any]] = []
        self.ms: list[float] = []

    @contextlib.contextmanager
    def measure(self):
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
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


class EMA:
    """Exponential moving average of the weights (DDPM-style), updated on the device after each
    optimizer step with one foreach lerp and evaluated separately from the raw weights."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._src = [p.detach() for p in model.parameters()]  # views of the live weights
        self._dst = [p for p in self.model.parameters()]
        self._source_model = model

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self._dst, self._src, 1.0 - self.decay)

    @torch.no_grad()
    def synced(self) -> torch.nn.Module:
        """The averaged model, with buffers (e.g. BatchNorm statistics) copied from the source."""
        for dst, src in zip(self.model.buffers(), self._source_model.buffers(), strict=True):
            dst.copy_(src)
        return self.model


@torch.no_grad()
def evaluate(model: torch.nn.Module, recipe: Recipe, batches: Any, autocast: Any) -> dict:
    """Mean loss and metrics over the fixed eval batches; one host sync per metric at the end."""
    was_training = model.training
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    n = 0
    with autocast:
        for batch in batches:
            loss, metrics = recipe.loss(model, batch)
            for k, v in {"loss": loss, **metrics}.items():
                sums[k] = sums.get(k, 0) + v.detach().float()
            n += 1
    model.train(was_training)
    means = {k: float(v) / n for k, v in sums.items()}
    return {**means, **recipe.eval_metrics(means)}


class Target:
    """Steps- and time-to-target on one eval metric (lower is better unless the recipe says)."""

    def __init__(self, metric: str, value: float | None, higher_is_better: bool) -> None:
        self.metric, self.value, self.higher = metric, value, higher_is_better
        self.step: int | None = None
        self.time_s: float | None = None

    def observe(self, metrics: dict[str, float], step: int, time_s: float) -> None:
        if self.value is None or self.step is not None or self.metric not in metrics:
            return
        x = metrics[self.metric]
        if math.isfinite(x) and (x >= self.value if self.higher else x <= self.value):
            self.step, self.time_s = step, time_s


def train(
    cfg: DictConfig,
    recipe: Recipe,
    device: torch.device,
    rundir: RunDir,
    wandb: WandbLogger,
    resume: dict[str, Any] | None = None,
) -> dict[str, Any]:
    t = cfg.train
    steps, accum = int(t.steps), int(t.grad_accum)
    micro_batch = int(t.batch_size) // accum  # the eval batch size, as on one process
    world, rank = distributed.world(), distributed.rank()
    rank_batch = int(t.batch_size) // world  # this rank's share of every step's batch
    rank_micro = rank_batch // accum
    seed = int(cfg.seed)

    # Seeds: the same seed gives the same initial weights and batches for every optimizer.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        model = recipe.build_model()
    init_hash = tensor_hash(list(model.state_dict().values()))
    n_params = sum(p.numel() for p in model.parameters())
    channels_last = device.type == "cuda" and recipe.channels_last
    model.to(device, memory_format=torch.channels_last if channels_last else None)
    data = recipe.build_data(int(t.batch_size), micro_batch, device, derive_seed(seed, "data"))
    torch.manual_seed(derive_seed(seed, "noise"))  # dropout, diffusion noise: in-loss randomness

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(device)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    )
    optimizer = build_optimizer(cfg.optim, model)
    scheduler = build_scheduler(optimizer, cfg.sched, steps)
    train_model = distributed.wrap(model, device) if world > 1 else model
    step_model = torch.compile(train_model) if cfg.compile else train_model
    eval_model = step_model if world == 1 else model  # DDP's forward is for training
    ema = EMA(model, float(t.ema_decay)) if t.ema_decay else None
    flops = recipe.flops_per_example(model)

    label = f"{cfg.recipe.name}/{cfg.optim.name}"
    progress = console.Progress(steps, label)
    progress.print(
        f"{label}: scale={cfg.scale} data={cfg.data.source} params={n_params:,} "
        f"impl={cfg.optim.impl} lr={cfg.optim.lr:.3g} wd={cfg.optim.weight_decay:.3g} "
        f"seed={seed} batch={t.batch_size} device={device} -> {rundir.path}"
    )
    floor_note = f" (floor {data.loss_floor:.4f})" if data.loss_floor is not None else ""

    clock = Clock(device, int(cfg.timing.warmup_steps))
    opt_timer = OptStepTimer(device)
    opt_every = int(cfg.timing.opt_step_every)
    target = Target(str(t.target_metric), t.target, str(t.target_metric) in recipe.higher_is_better)
    diverge_loss = t.diverge_loss
    loss_sum = torch.zeros((), device=device)
    micro_in_window = 0
    first_batch_hash = None
    status, diverged_at = "completed", None
    final_train = None

    def log_eval(step: int) -> dict[str, float]:
        ev = evaluate(eval_model, recipe, data.eval, autocast)
        if ema is not None:
            ev.update(
                {
                    f"ema_{k}": v
                    for k, v in evaluate(ema.synced(), recipe, data.eval, autocast).items()
                }
            )
        record = {
            "step": step,
            "split": "val",
            **ev,
            "time_s": clock.train_s,
            "examples": step * int(t.batch_size),
        }
        rundir.log(record)
        wandb.log(record)
        shown = "  ".join(f"{k} {v:.4g}" for k, v in ev.items() if k != "loss")
        progress.print(f"step {step}: val loss {ev['loss']:.4f}{floor_note}  {shown}".rstrip())
        return ev

    ckpt_every = int(cfg.checkpoint.interval)
    resumes = 0
    last_lr = optimizer.param_groups[0]["lr"]
    if resume is None:
        history = [(0, log_eval(0))]  # (step, metrics); step 0: where every curve starts
        step = 0
    else:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        if ema is not None:
            ema.model.load_state_dict(resume["ema"])
        data.train.load_state_dict(resume["data"])
        checkpoint.set_rng_state(resume["rng"])
        loop = resume["loop"]
        step, history, resumes = resume["step"], loop["history"], loop["resumes"] + 1
        loss_sum.fill_(loop["loss_sum"])
        micro_in_window, final_train = loop["micro_in_window"], loop["final_train"]
        diverge_loss, first_batch_hash, last_lr = (
            loop["diverge_loss"],
            loop["first_batch_hash"],
            loop["last_lr"],
        )
        clock.train_s, clock.window_s, clock.window_steps = loop["clock"]
        clock.warmup_steps = step + clock.warmup_steps  # caches and compilation are cold again
        opt_timer.ms = loop["opt_step_ms"]
        target.step, target.time_s = loop["target"]

    def save_checkpoint() -> None:
        loop = {
            "history": history,
            "resumes": resumes,
            "loss_sum": float(loss_sum),
            "micro_in_window": micro_in_window,
            "final_train": final_train,
            "diverge_loss": diverge_loss,
            "first_batch_hash": first_batch_hash,
            "last_lr": last_lr,
            "clock": (clock.train_s, clock.window_s, clock.window_steps),
            "opt_step_ms": opt_timer.ms,
            "target": (target.step, target.time_s),
            "metrics_bytes": rundir.metrics_bytes(),
            "wandb_id": wandb.run_id,
        }
        checkpoint.save(
            rundir.path / checkpoint.FILENAME,
            {
                "step": step,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "ema": ema.model.state_dict() if ema is not None else None,
                "rng": checkpoint.rng_state(),
                "data": data.train.state_dict(),
                "loop": loop,
            },
        )

    model.train()
    interrupted_by = None
    with checkpoint.StopFlag() as stop:
        clock.resume(step)
        while step < steps:
            batch = data.train.next()
            if first_batch_hash is None:
                first_batch_hash = tensor_hash(list(batch))
            if world > 1:  # every rank draws the whole step and keeps its own slice
                batch = tuple(x[rank * rank_batch : (rank + 1) * rank_batch] for x in batch)
            for i in range(accum):
                micro = tuple(x[i * rank_micro : (i + 1) * rank_micro] for x in batch)
                sync = i == accum - 1 or world == 1  # DDP all-reduces on the last micro-batch
                with contextlib.nullcontext() if sync else train_model.no_sync():
                    with autocast:
                        loss, _ = recipe.loss(step_model, micro)
                    (loss / accum).backward()
                loss_sum += loss.detach().float()
            micro_in_window += accum
            if t.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(t.grad_clip))
            if step >= clock.warmup_steps and step % opt_every == 0:
                with opt_timer.measure():
                    optimizer.step()
            else:
                optimizer.step()
            if ema is not None:
                ema.update()
            last_lr = optimizer.param_groups[0]["lr"]  # the lr this update used
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1

            do_log = step % t.log_interval == 0 or step == steps
            do_eval = step % t.eval_interval == 0 or step == steps
            # One process acts on a signal at the next step; ranks agree at a log step, where
            # they synchronize anyway, so that all of them stop at the same step.
            stop_now = stop.signum is not None and world == 1
            if world > 1 and (step % t.log_interval == 0 or step == steps):
                stop.signum = distributed.agree_on_signal(stop.signum, device)
                stop_now = stop.signum is not None
            do_ckpt = (ckpt_every and step % ckpt_every == 0 and step < steps) or stop_now
            if not (do_log or do_eval or do_ckpt or step == clock.warmup_steps):
                continue
            clock.pause(step)  # --- window edge: everything until resume() is untimed ---
            opt_timer.collect()
            if do_log:
                if world > 1:  # the mean over every rank's micro-batches, the same on all ranks
                    distributed.all_reduce_mean(loss_sum)
                final_train = loss_sum.item() / micro_in_window
                loss_sum.zero_()
                micro_in_window = 0
                if diverge_loss is None:
                    diverge_loss = 3.0 * final_train if math.isfinite(final_train) else math.inf
                record = {
                    "step": step,
                    "split": "train",
                    "loss": final_train,
                    "lr": last_lr,
                    "time_s": clock.train_s,
                    "examples": step * int(t.batch_size),
                }
                rundir.log(record)
                wandb.log(record)
                rate = clock.window_steps / clock.window_s if clock.window_s else None
                progress.update(step, loss=final_train, lr=last_lr, steps_per_s=rate)
                if not math.isfinite(final_train) or final_train > diverge_loss:
                    status, diverged_at = "diverged", step
            if do_eval and status != "diverged":
                history.append((step, log_eval(step)))
                target.observe(history[-1][1], step, clock.train_s)
                if not math.isfinite(history[-1][1]["loss"]):
                    status, diverged_at = "diverged", step
            if status == "diverged":
                progress.print(f"diverged at step {step}: train loss {final_train}")
                break
            if do_ckpt and step < steps:
                if rank == 0:
                    save_checkpoint()
                if stop_now:
                    status, interrupted_by = "interrupted", stop.signum
                    progress.print(
                        f"interrupted at step {step} by signal {stop.signum}: checkpoint "
                        f"saved; the same command resumes it"
                    )
                    break
            clock.resume(step)
    progress.close()
    if status == "interrupted":
        return {"status": status, "steps": step, "interrupted_by": interrupted_by}

    final_model = ema.synced() if ema is not None else model  # samples from the EMA weights
    artifacts = recipe.finalize(final_model, rundir.path, device) if status == "completed" else {}
    for name, path in artifacts.items():
        wandb.log_image(name, path, step)
    last_eval = history[-1][1]
    finite = [(ev["loss"], s) for s, ev in history if math.isfinite(ev["loss"])]
    best_val, best_step = min(finite) if finite else (None, None)
    steps_per_s = (
        clock.window_steps / clock.window_s
        if clock.window_s
        else step / clock.train_s
        if clock.train_s
        else None
    )
    examples_per_s = steps_per_s * int(t.batch_size) if steps_per_s else None
    peak_mem, peak_kind = peak_memory(device)
    peak = peak_flops(device)
    mfu = examples_per_s * flops / peak if examples_per_s and flops and peak else None
    final_val = last_eval["loss"]
    return {
        "status": status,
        "steps": step,
        "diverged_at_step": diverged_at,
        "final_train_loss": final_train,
        "final_val_loss": final_val,
        "best_val_loss": best_val,
        "best_val_step": best_step,
        "final_val_metrics": {k: v for k, v in last_eval.items() if not k.startswith("ema_")},
        "final_ema_val_metrics": {k[4:]: v for k, v in last_eval.items() if k.startswith("ema_")}
        or None,
        "loss_floor": data.loss_floor,
        "gap_to_floor": final_val - data.loss_floor if data.loss_floor is not None else None,
        "target_metric": target.metric,
        "target": target.value,
        "steps_to_target": target.step,
        "time_to_target_s": target.time_s,
        "steps_per_s": steps_per_s,
        "examples_per_s": examples_per_s,
        "tokens_per_s": (
            examples_per_s * recipe.tokens_per_example
            if examples_per_s and recipe.tokens_per_example
            else None
        ),
        "flops_per_example": flops,
        "mfu": mfu,
        "opt_step_ms": statistics.median(opt_timer.ms) if opt_timer.ms else None,
        "opt_step_ms_samples": len(opt_timer.ms),
        "train_time_s": clock.train_s,
        "timed_steps": clock.window_steps,
        "peak_mem_bytes": peak_mem,
        "peak_mem_kind": peak_kind,
        "optimizer_state_bytes": state_bytes(optimizer),
        "n_params": n_params,
        "init_state_hash": init_hash,
        "first_batch_hash": first_batch_hash,
        "artifacts": {k: str(v) for k, v in artifacts.items()},
        "data_info": data.info,
    }
