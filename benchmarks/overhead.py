"""Harness overhead: `lionbench run` against a minimal hand-written loop on the same config.

The hand loop builds the same parts the way a user would by hand (the recipe's model class from
`lionbench.recipes`, the same seeded builtin batches, batch size, precision, torch.compile and
optimizer, the same clipping and schedule) and does forward, backward, clip, step, schedule,
zero_grad per step with nothing else: no loss accumulation, no logging, no timers. Both are timed
over the same steps after the same warmup (a device synchronize at both edges), each in a fresh
process, interleaved over repeats; the medians and their ratio are printed (docs/design.md,
metric definitions: steps/s over the timed window).

    python benchmarks/overhead.py --scale small --repeats 3 [--out overhead.json] [overrides]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def hand_loop(overrides: list[str], steps: int, warmup: int) -> float:
    """Steps/s of the minimal loop over steps warmup..steps."""
    import torch
    from omegaconf import OmegaConf

    from lionbench import config
    from lionbench.loop.device import autocast, configure, resolve_device
    from lionbench.loop.train import derive_seed
    from lionbench.optim import build_optimizer
    from lionbench.optim.schedule import build_scheduler
    from lionbench.recipe import load_recipe

    cfg = config.compose(overrides)
    OmegaConf.resolve(cfg)
    device = resolve_device(str(cfg.device))
    recipe = load_recipe(cfg)
    torch.manual_seed(derive_seed(int(cfg.seed), "init"))
    model = recipe.build_model().to(device)
    batch_size = int(cfg.train.batch_size)
    data = recipe.build_data(batch_size, batch_size, device, derive_seed(int(cfg.seed), "data"))
    configure(device)
    opt = build_optimizer(cfg.optim, model)
    sched = build_scheduler(opt, cfg.sched, steps)
    step_model = torch.compile(model) if cfg.compile else model
    amp = autocast(str(cfg.precision), device)
    clip = float(cfg.train.grad_clip)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    model.train()
    t0 = 0.0
    for step in range(steps):
        if step == warmup:
            sync()
            t0 = time.perf_counter()
        with amp:
            loss, _ = recipe.loss(step_model, data.train.next())
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    sync()
    return (steps - warmup) / (time.perf_counter() - t0)


def lionbench_run(overrides: list[str], steps: int, warmup: int) -> float:
    """Steps/s that `lionbench run` records for the same config (its timed window)."""
    with tempfile.TemporaryDirectory(prefix="lionbench-overhead-") as tmp:
        args = [
            *overrides,
            f"results_dir={tmp}",
            "logger.wandb.mode=disabled",
            f"train.eval_interval={steps}",
            f"train.log_interval={steps}",
            "train.eval_batches=1",
            f"timing.warmup_steps={warmup}",
            "checkpoint.interval=0",
        ]
        proc = subprocess.run(
            [sys.executable, "-m", "lionbench", "run", *args],
            capture_output=True,
            text=True,
            env={**os.environ, "WANDB_MODE": "disabled"},
        )
        found = list(Path(tmp).glob("*/*/summary.json"))
        if proc.returncode != 0 or not found:
            sys.exit(f"lionbench run failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        return float(json.loads(found[0].read_text())["steps_per_s"])


def hand_in_fresh_process(overrides: list[str], steps: int, warmup: int) -> float:
    cmd = [sys.executable, __file__, "--hand", "--steps", str(steps), "--warmup", str(warmup)]
    proc = subprocess.run([*cmd, *overrides], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"hand loop failed: {proc.stderr.strip()[-500:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    """Interleaved: repeat r runs both, the hand loop first on even repeats, second on odd."""
    runs: dict[str, list[float]] = {"hand": [], "lionbench": []}
    both = {"hand": hand_in_fresh_process, "lionbench": lionbench_run}
    for r in range(args.repeats):
        for name in ("hand", "lionbench") if r % 2 == 0 else ("lionbench", "hand"):
            runs[name].append(both[name](overrides, args.steps, args.warmup))
            print(f"repeat {r + 1} {name}: {runs[name][-1]:.4g} steps/s", file=sys.stderr)
    hand, lb = statistics.median(runs["hand"]), statistics.median(runs["lionbench"])
    return {
        "overrides": overrides,
        "steps": args.steps,
        "warmup_steps": args.warmup,
        "repeats": args.repeats,
        "hand_steps_per_s": hand,
        "lionbench_steps_per_s": lb,
        "ratio": lb / hand,
        "hand_runs": runs["hand"],
        "lionbench_runs": runs["lionbench"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="gpt2")
    parser.add_argument("--scale", default="small")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    parser.add_argument("--hand", action="store_true", help=argparse.SUPPRESS)
    args, overrides = parser.parse_known_args()
    if args.hand:  # the child process of one hand-loop measurement
        print(hand_loop(overrides, args.steps, args.warmup))
        return
    if args.repeats < 1 or args.steps <= args.warmup:
        parser.error("--repeats must be >= 1 and --steps above --warmup")
    overrides = [
        f"recipe={args.recipe}",
        f"scale={args.scale}",
        f"train.steps={args.steps}",
        *overrides,
    ]
    result = measure(args, overrides)
    print(
        f"{' '.join(overrides)}: hand loop {result['hand_steps_per_s']:.4g} steps/s, lionbench "
        f"{result['lionbench_steps_per_s']:.4g} steps/s (medians of {args.repeats}); "
        f"lionbench / hand = {result['ratio']:.3f}"
    )
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
