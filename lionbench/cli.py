"""The `lionbench` command: thin Typer commands that hand work to lionbench/commands/,
lionbench/run/ (`run`) and lionbench/report/ (`report`).

Nothing heavy is imported at module level, so `lionbench --help` starts instantly; each command
imports what it needs. Bad input anywhere raises `UserError`, which `main` turns into the one
error line and exit code 2.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from lionbench.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, UserError, say_error


class OverridesCommand(TyperCommand):
    """A command whose extra arguments are Hydra overrides: TAB completes them (config groups,
    their choices and dotted keys; lionbench/completion.py). Bash splits words at `=`, so
    `recipe=<TAB>` arrives as `recipe`, `=` and gets the bare choices, which bash puts after
    the `=`; zsh and fish get `recipe=gpt2` whole."""

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        items = super().shell_complete(ctx, incomplete)
        if incomplete.startswith("-"):
            return items
        from lionbench.commands.completion import complete_override

        before = list(ctx.args)
        key = None
        if len(before) >= 2 and before[-1] == "=":  # bash: `recipe` `=` `gp`
            key = before[-2]
        elif before and not incomplete and "=" not in before[-1] and before[-1][:1] != "-":
            key = before[-1]  # bash: the cursor right after `recipe=` (click drops the `=`)
        if key is None:
            words = complete_override(incomplete)
        else:
            words = [w.split("=", 1)[1] for w in complete_override(f"{key}={incomplete}")]
        return [*items, *(_completion_item()(w) for w in words)]


def _completion_item() -> type:
    """CompletionItem of the click that Typer runs on (see `_click_exception`)."""
    try:
        from typer._click.shell_completion import CompletionItem
    except ImportError:
        from click.shell_completion import CompletionItem
    return CompletionItem


app = typer.Typer(
    name="lionbench",
    help="Benchmark Lion against AdamW on standard recipes, with seeds, sweeps and reports.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs wrap to the terminal
)
prepare_app = typer.Typer(help="Turn local data into the files recipes read.", no_args_is_help=True)
app.add_typer(prepare_app, name="prepare")
bench_app = typer.Typer(
    help="Microbenchmarks of lionbench's building blocks.", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")
study_app = typer.Typer(
    help="Studies: the runs a question needs, in one command.", no_args_is_help=True
)
app.add_typer(study_app, name="study")


@app.command(
    cls=OverridesCommand,
    context_settings={
        "allow_extra_args": True,
        "ignore_unknown_options": True,
        "help_option_names": [],
    },
    add_help_option=False,
)
def run(ctx: typer.Context) -> None:
    """Train one run, or many with -m (Hydra overrides: recipe=gpt2 optim=lion seed=1 ...).

    Everything after `run` goes to Hydra: `-m` for multirun, `--cfg job` to print the config,
    `hydra/launcher=joblib` for parallel local jobs; `run --help` lists the config groups and
    `run --hydra-help` Hydra's flags.
    """
    if ctx.args and ctx.args[0] in ("--help", "-h"):
        from lionbench.commands.completion import run_help

        print(run_help())
        raise typer.Exit(EXIT_OK)
    if any(a.split("=")[0] in ("--shell-completion", "-sc") for a in ctx.args):
        raise UserError(
            "Hydra's --shell-completion does not work through lionbench (its script calls an "
            "option lionbench does not have); install lionbench's own, which completes "
            "commands, options and overrides: lionbench --install-completion"
        )
    from lionbench.run.launch import main as run_main

    raise typer.Exit(run_main(list(ctx.args)))


Ratios = Annotated[
    str, typer.Option(help="Lion lr/wd ratios r: lr = adamw.lr / r, wd = adamw.wd * r.")
]
Seeds = Annotated[str, typer.Option(help="Selection seeds, each run by every optimizer setting.")]
AdamwLrs = Annotated[
    str | None,
    typer.Option(
        help="AdamW lr multipliers of recipe.adamw.lr (wd stays the recipe's). Default: as "
        "many as --ratios, powers of 2 centred on 1 (3 -> 0.5,1,2; 2 -> 0.5,1)."
    ),
]
MaxExtend = Annotated[
    int,
    typer.Option(
        help="Extra grid points per optimizer when its optimum is at a grid edge (each a "
        "factor 2 beyond it); 0 never extends."
    ),
]
ConfirmSeeds = Annotated[
    str | None,
    typer.Option(
        help="Fresh seeds that re-run each optimizer's best setting, or none. Default: as "
        "many as --seeds, numbered after the largest."
    ),
]
Launcher = Annotated[
    str, typer.Option(help="basic (one run after another) or joblib (parallel local processes).")
]


CONFIG_DIR_FLAGS = ("--config-dir", "-cd")  # the only Hydra flag besides overrides they take


def overrides_of(ctx: typer.Context) -> list[str]:
    """The Hydra overrides after a command's own options. Anything else that looks like an
    option is a typo of one of the command's (`--ratio`): refused in one line with the closest
    option, where Hydra's parser would say `LexerNoViableAltException`."""
    import difflib

    args = list(ctx.args)
    options = sorted({o for p in ctx.command.params for o in p.opts if o.startswith("--")})
    value_next = False
    for arg in args:
        if value_next or not arg.startswith("-"):
            value_next = False
            continue
        name = arg.split("=", 1)[0]
        if name in CONFIG_DIR_FLAGS:
            value_next = "=" not in arg
            continue
        close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise UserError(
            f"no such option {name} for '{ctx.command_path}'{hint} (options: "
            f"{', '.join(options)}; the other arguments are Hydra overrides key=value)"
        )
    return args


def sweep_request(
    ctx: typer.Context,
    ratios: str,
    seeds: str,
    adamw_lrs: str | None,
    confirm_seeds: str | None,
    optims: str = "lion",
    lrs: str | None = None,
    **rest: Any,
) -> Any:
    """The sweep options shared by `sweep` and the studies, parsed: a `sweep.Request`."""
    from lionbench.commands.grid import parse_confirm, parse_list
    from lionbench.commands.sweep import Request

    grids = {
        "ratios": parse_list(ratios, "--ratios", float),
        "seeds": parse_list(seeds, "--seeds", int),
        "adamw_lrs": None if adamw_lrs is None else parse_list(adamw_lrs, "--adamw-lrs", float),
        "confirm_seeds": parse_confirm(confirm_seeds),
        "optims": [o.strip() for o in optims.split(",") if o.strip()],
        "lrs": None if lrs is None else parse_list(lrs, "--lrs", float),
    }
    return Request(**grids, overrides=overrides_of(ctx), **rest)


@app.command(
    cls=OverridesCommand,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def sweep(
    ctx: typer.Context,
    ratios: Ratios = "3,5,10",
    seeds: Seeds = "0,1,2",
    adamw_lrs: AdamwLrs = None,
    max_extend: MaxExtend = 2,
    confirm_seeds: ConfirmSeeds = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="Sweep name: W&B group, report label and manifest name "
            "(default RECIPE-SCALE-ratio-sweep; with other --optims RECIPE-SCALE-OPTIMS-sweep)."
        ),
    ] = None,
    launcher: Launcher = "basic",
    optims: Annotated[
        str,
        typer.Option(
            help="Candidates tuned against AdamW, comma-separated: each along its registry "
            "axis (Lion: --ratios; others: lr multipliers of their recipe lr, --lrs)."
        ),
    ] = "lion",
    lrs: Annotated[
        str | None,
        typer.Option(
            help="lr multipliers of each lr-axis candidate's recipe lr (wd stays the recipe's). "
            "Default: AdamW's grid (the same budget)."
        ),
    ] = None,
) -> None:
    """Candidates (default Lion) against AdamW, each tuned along its own axis with an equal
    budget, then confirmation on fresh seeds.

    Extra arguments are Hydra overrides for every run (recipe=vit scale=smoke ...), including
    hydra/launcher=submitit_slurm for clusters. Finished runs are skipped; the exit code is 1
    only when a run failed. The manifest is RESULTS_DIR/_sweeps/NAME.json.
    """
    from lionbench.commands.sweep import run_sweep

    req = sweep_request(ctx, ratios, seeds, adamw_lrs, confirm_seeds, optims, lrs, name=name,
                        launcher=launcher, max_extend=max_extend)  # fmt: skip
    raise typer.Exit(run_sweep(req))


@study_app.command(
    cls=OverridesCommand,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def claims(
    ctx: typer.Context,
    ratios: Ratios = "1.5,3,6",
    seeds: Seeds = "0,1,2",
    adamw_lrs: AdamwLrs = None,
    max_extend: MaxExtend = 1,
    confirm_seeds: Annotated[
        str | None,
        typer.Option(
            help="Fresh seeds that re-run each optimizer's best setting and carry the claims, "
            "or none. Default: the 6 seeds after the largest --seeds (3,4,5,6,7,8 for 0,1,2): "
            "the paired tests need 6 pairs to reach p < 0.05."
        ),
    ] = None,
    small_batch: Annotated[
        int | None,
        typer.Option(help="The batch claim's smaller batch (default: a quarter of the recipe's)."),
    ] = None,
    aggressive: Annotated[
        float,
        typer.Option(help="The betas claim runs Lion at this multiple of its best lr."),
    ] = 2.0,
    name: Annotated[
        str | None,
        typer.Option(
            help="Study name: sweep name and manifest name (default RECIPE-SCALE-claims)."
        ),
    ] = None,
    launcher: Launcher = "basic",
) -> None:
    """The runs the paper's six Lion claims need, judged by `lionbench report`.

    A sweep (equal budgets, confirmation on 6 fresh seeds: the paired tests need 6 pairs to
    reach p < 0.05), then on the confirmation seeds: a smaller batch, the other schedule, and
    Lion's betas (0.95, 0.98) at an aggressive lr. Extra arguments are Hydra overrides for every
    run (recipe=gpt2 scale=small ...). The manifest is RESULTS_DIR/_studies/NAME.json.
    """
    from lionbench.commands.study import run_study

    req = sweep_request(ctx, ratios, seeds, adamw_lrs, confirm_seeds, name=name,
                        launcher=launcher, max_extend=max_extend)  # fmt: skip
    raise typer.Exit(run_study(req, small_batch=small_batch, aggressive=aggressive))


@study_app.command(
    cls=OverridesCommand,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def scaling(
    ctx: typer.Context,
    sizes: Annotated[str, typer.Option(help="Model sizes of the recipe's ladder (lionbench "
                     "list), comma-separated.")] = "l2w32,l2w48,l3w64",
    budgets: Annotated[str, typer.Option(help="Data budgets, multiples of "
                       "recipe.data_per_param per parameter (gpt2: 20 tokens).")] = "1,2",
    optims: Annotated[str, typer.Option(help="Candidates tuned against AdamW at every point.")]
    = "lion",
    ratios: Ratios = "1.5,3,6",
    seeds: Seeds = "0",
    adamw_lrs: AdamwLrs = None,
    lrs: Annotated[str | None, typer.Option(help="lr multipliers of lr-axis candidates.")] = None,
    max_extend: MaxExtend = 1,
    confirm_seeds: Annotated[str | None, typer.Option(help="Fresh seeds that re-run every "
                             "best setting and carry the statistics. Default: the 4 after "
                             "the largest --seeds.")] = None,
    name: Annotated[str | None, typer.Option(help="Study name (default RECIPE-SCALE-scaling)."
                    )] = None,
    launcher: Launcher = "basic",
    dry_run: Annotated[bool, typer.Option(help="Print the plan and its cost, train nothing.")]
    = False,
    probe_steps: Annotated[int, typer.Option(help="Steps of the probe run per size that times "
                           "this device; 0: no time estimate.")] = 40,
) -> None:  # fmt: skip
    """Does the advantage survive scale? Every size x budget, each optimizer tuned there with
    the same budget, confirmed on fresh seeds; `lionbench report` gives the speedups and their
    trend. Extra arguments are Hydra overrides for every run. Manifest: RESULTS_DIR/_studies/."""
    from lionbench.commands.grid import parse_list
    from lionbench.commands.scaling import Request, run_scaling
    from lionbench.commands.scaling_grid import parse_sizes

    req = sweep_request(ctx, ratios, seeds, adamw_lrs, confirm_seeds, optims, lrs, name=name,
                        launcher=launcher, max_extend=max_extend)  # fmt: skip
    grid = parse_sizes(sizes), parse_list(budgets, "--budgets", float)
    raise typer.Exit(run_scaling(Request(req, *grid, dry_run, probe_steps)))


@app.command()
def report(
    results: Annotated[
        list[Path] | None, typer.Argument(help="Results directories (default: results).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Write report.md, report.html, CSV, Parquet and PNG+SVG plots here."),
    ] = None,
    target: Annotated[
        list[float] | None,
        typer.Option(help="Val-loss target for steps- and time-to-target (repeatable)."),
    ] = None,
    by: Annotated[
        list[str] | None,
        typer.Option(
            help="Config key (dotted) that also distinguishes optimizer arms (repeatable)."
        ),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(
            help="Optimizer whose recipe-baseline arm every other arm is compared with "
            "(default: adamw)."
        ),
    ] = None,
) -> None:
    """Tables, plots and a verdict on the paper's claims from run directories."""
    from lionbench.report import report as make_report

    make_report(
        results or [Path("results")], out, list(target or []), list(by or []), baseline=baseline
    )
    if out is not None:
        print(f"wrote {out}/report.md, {out}/report.html, CSV/Parquet tables and PNG/SVG plots")


@app.command()
def plan(
    results: Annotated[
        list[Path] | None, typer.Argument(help="Results directories (default: results).")
    ] = None,
    metric: Annotated[
        str,
        typer.Option(help="final_val_loss, best_val_loss, steps_to_target, steps_per_s, ..."),
    ] = "final_val_loss",
    effect: Annotated[
        list[float] | None,
        typer.Option(
            help="Effect to resolve, in the metric's units: a loss difference (0.01) or a ratio "
            "(1.05 for speeds and steps; repeatable). Default: 0.5, 1, 2 sds of the differences."
        ),
    ] = None,
    arms: Annotated[
        int | None,
        typer.Option(help="Candidate arms compared with the baseline (Holm). Default: as run."),
    ] = None,
    baseline: Annotated[
        str | None, typer.Option(help="Optimizer of the baseline arm (default: adamw).")
    ] = None,
) -> None:
    """How many seeds a comparison needs to resolve an effect (80% power, Holm over the arms),
    from the seed-to-seed spread of the paired runs already in RESULTS."""
    from lionbench.report import seeds_plan
    from lionbench.report.terminal import print_plan

    print_plan(seeds_plan(results or [Path("results")], metric, list(effect or []), arms, baseline))


@bench_app.command("optim")
def bench_optim(
    params: Annotated[
        str,
        typer.Option(
            help="gpt2-124m, resnet50, vit-b16 (every tensor of the "
            "model) or flat:N (one tensor of N)."
        ),
    ] = "gpt2-124m",
    impls: Annotated[
        str,
        typer.Option(
            help="Comma-separated optim:impl list, or all. Default: all that run here but the "
            "slow CPU paths (Python loops, eager Lion, foreach Adafactor)."
        ),
    ] = "",
    steps: Annotated[
        int | None,
        typer.Option(
            help="Timed steps per repeat: exactly N, or at least N with --budget. Default: at "
            "least 2, more while the budget lasts."
        ),
    ] = None,
    budget: Annotated[
        float | None,
        typer.Option(
            help="Seconds of timed steps in all, shared by implementations x repeats (the "
            "default without --steps: 30)."
        ),
    ] = None,
    warmup: Annotated[int, typer.Option(help="Untimed steps first (compilation, state).")] = 1,
    repeats: Annotated[
        int,
        typer.Option(help="Repeats; the table gives the median and the spread of their medians."),
    ] = 3,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")] = "auto",
    out: Annotated[
        Path | None, typer.Option(help="Also write the rows to a .csv or .json.")
    ] = None,
) -> None:
    """Time optimizer.step() for every registered implementation on real model shapes."""
    from lionbench.commands import bench_optim as bench

    chosen = [i for i in impls.split(",") if i]
    steps, budget = bench.counts(steps, budget)
    options = bench.Options(params, chosen, steps, warmup, repeats, device, budget, out)
    bench.check_options(options)
    rows = bench.bench_optim(dataclasses.replace(options, impls=bench.pick_impls(chosen, device)))
    bench.print_table(rows)
    bench.write(rows, out)


@bench_app.command(
    "train",
    cls=OverridesCommand,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def bench_train(
    ctx: typer.Context,
    recipes: Annotated[
        str, typer.Option(help="Comma-separated recipes.")
    ] = "gpt2,resnet50,vit,unet",
    optims: Annotated[str, typer.Option(help="Comma-separated optimizers.")] = "lion,adamw",
    scale: Annotated[str, typer.Option(help="smoke, small or full.")] = "small",
    data: Annotated[
        str, typer.Option(help="builtin or synthetic (one batch, repeated).")
    ] = "builtin",
    compile_: Annotated[
        str, typer.Option("--compile", help="Comma-separated: off, on (torch.compile).")
    ] = "off",
    steps: Annotated[int, typer.Option(help="Training steps per run.")] = 30,
    warmup: Annotated[int, typer.Option(help="First steps left out of the timing.")] = 10,
    repeats: Annotated[
        int, typer.Option(help="Runs of every configuration (median and min-max over them).")
    ] = 1,
    out: Annotated[
        Path | None, typer.Option(help="Also write the rows to a .csv or .json.")
    ] = None,
) -> None:
    """Training throughput of recipes x optimizers x compile, each run in a fresh process.

    Extra arguments are Hydra overrides for every run (device=cpu precision=bf16 ...).
    """
    from lionbench.commands import bench_train as bt
    from lionbench.commands.bench_optim import write

    plan = bt.check_options(
        recipes, optims, scale, data, compile_, steps, warmup, repeats, out, overrides_of(ctx)
    )
    rows = bt.bench_train(plan)
    bt.print_table(rows)
    write(rows, out)
    raise typer.Exit(EXIT_FAILED if any(r["error"] for r in rows) else EXIT_OK)


@app.command("list")
def list_() -> None:
    """Show the recipes and their size ladders, optimizers and implementations, scales, data
    sources and schedules."""
    from lionbench.commands.listing import print_choices

    print_choices()


@prepare_app.command("text")
def prepare_text(
    files: Annotated[list[Path], typer.Argument(help="Text (.txt, .md, ...) or JSONL files.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory for the token files.")],
    tokenizer: Annotated[
        str,
        typer.Option(help="bytes (UTF-8 bytes, vocab 257) or gpt2 (tiktoken BPE, vocab 50257)."),
    ] = "bytes",
    val_fraction: Annotated[float, typer.Option(help="Share of documents for val.bin.")] = 0.1,
    jsonl_field: Annotated[str, typer.Option(help="Text field of JSONL records.")] = "text",
) -> None:
    """Tokenize local text into train.bin / val.bin (uint16) and meta.json for data=tokens."""
    from lionbench.commands.prepare import prepare_text as do_prepare

    meta = do_prepare(files, out, tokenizer, val_fraction, jsonl_field)
    print(
        f"wrote {out}/train.bin ({meta['train_tokens']:,} tokens), {out}/val.bin "
        f"({meta['val_tokens']:,} tokens), tokenizer {meta['tokenizer']}, vocab "
        f"{meta['vocab_size']}; train with: lionbench run data=tokens data.dir={out}"
    )


def main(args: list[str] | None = None) -> None:
    """Console-script entry point. Usage errors (a missing argument, an unknown option, a value
    of the wrong type) are bad input like any other: one `error:` line on stderr, exit code 2,
    instead of Click's usage panel."""
    from lionbench.errors import click_exception, usage_line

    click_type = click_exception()
    try:
        code = app(args=args, prog_name="lionbench", standalone_mode=False)
    except UserError as e:  # bad input, from any command
        say_error(e)
        sys.exit(EXIT_BAD_INPUT)
    except click_type as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # `lionbench`, `lionbench bench`: the help
            print(e.format_message(), end="")  # Typer's rich help has printed itself already
            sys.exit(EXIT_BAD_INPUT)
        say_error(usage_line(e))
        sys.exit(EXIT_BAD_INPUT)
    except typer.Abort:
        say_error("aborted")
        sys.exit(EXIT_FAILED)
    sys.exit(code if isinstance(code, int) else EXIT_OK)


if __name__ == "__main__":
    main()
