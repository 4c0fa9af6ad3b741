"""The report's tables as LaTeX for a paper: `<table>_<slug>.tex` beside each CSV, a booktabs
`tabular` only (no float), so that users `\\input` it inside their own `table` with their own
caption; a `% caption:` line above it says what the table holds and the legend of its marks.

Pure rendering: every number comes from the tables analyse.py, verdicts.py and claims.py built;
the one interval computed from a table's columns (a mean's 95% t-interval from its std and n)
is `stats.t_half`, the plots' bands' own. The output compiles with `booktabs` and `amssymb`
only; every label is escaped (`_ % & # $ { } ~ ^ \\`), numbers are in math mode (a real minus).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

import pandas as pd

from lionbench.console import fmt
from lionbench.files import atomic_write_text
from lionbench.report.stats import t_half
from lionbench.report.verdicts import NOT_INTERLEAVED, p_text

PACKAGES = r"\usepackage{booktabs,amssymb}"
SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
}  # fmt: skip
SPECIAL_RE = re.compile("|".join(re.escape(c) for c in SPECIAL))
# a comparison's verdict -> its mark (the legend every comparisons caption states)
MARKS = {
    "better": r"$\blacktriangle$ better",
    "worse": r"$\blacktriangledown$ worse",
    "no significant difference": r"$\circ$ n.s.",
    "not enough data": "-- (too few pairs)",
    NOT_INTERLEAVED: "-- (not interleaved)",
}
MARK_LEGEND = (
    r"$\blacktriangle$ better, $\blacktriangledown$ worse than the baseline (Holm-adjusted "
    r"$p < 0.05$; estimate in bold), $\circ$ no significant difference (n.s.), -- not decided; "
    r"$^\dagger$ median and order-statistic interval (sign test: a diverged seed or a target "
    r"not reached)"
)
CLAIM_MARKS = (("holds", r"\checkmark{} "), ("does not hold", r"$\times$ "), ("mixed", "? "),
               ("no significant", r"$\circ$ "))  # fmt: skip
# narrow text columns read better unjustified (rows then end in \tabularnewline, not \\)
RAGGED = r"\raggedright "
CI_NOTE = r"mean $\pm$ half-width of the 95\% t-interval of the mean over the $n$ seeds"


def escape(text: object) -> str:
    """Text as LaTeX typesets it literally: an arm label's `_`, `%`, `&`... escaped."""
    return SPECIAL_RE.sub(lambda m: SPECIAL[m.group()], str(text))


def number(v: object, digits: int = 4) -> str:
    """A number in math mode (`fmt`'s significant digits; 1.2e+04 as 1.2\\times10^{4}), `--`
    for none, `\\infty` for a run that never got there."""
    x = float(v)  # type: ignore[arg-type]
    if math.isnan(x):
        return "--"
    if math.isinf(x):
        return r"$\infty$" if x > 0 else r"$-\infty$"
    return f"${sci(fmt(x, digits))}$"


def sci(text: str) -> str:
    """`1.2e+04` -> `1.2\\times10^{4}` (inside math mode); anything else as it is."""
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}\\times10^{{{int(exponent)}}}" if e else text


def mean_ci(mean: object, std: object, n: object) -> str:
    """`$4.352 \\pm 0.022$`: the mean to the decimal of the half-width's second significant
    digit; one seed (no interval): the mean alone; no value: `--`."""
    m, sd, k = float(mean), float(std), int(n)  # type: ignore[arg-type]
    if math.isnan(m):
        return "--"
    if k < 2 or math.isnan(sd):
        return number(m)
    half = t_half(sd, k)
    if half == 0.0:
        return f"${sci(fmt(m))} \\pm 0$"
    decimals = min(max(0, 1 - math.floor(math.log10(half))), 8)
    return f"${m:.{decimals}f} \\pm {half:.{decimals}f}$"


def ratio(v: object) -> str:
    """A ratio to the baseline as `$1.03\\times$` (3 significant digits, as the verdicts give
    them, zeros kept: 1.00), `--` where there is none."""
    x = float(v)  # type: ignore[arg-type]
    return "--" if math.isnan(x) else f"${sci(f'{x:#.3g}')}{{\\times}}$"


def effect(v: object, kind: str) -> str:
    """A comparison's estimate or bound inside math mode: `+0.021` (a difference), `0.82\\times`
    (a ratio), `\\infty`."""
    x = float(v)  # type: ignore[arg-type]
    if math.isinf(x):
        return r"\infty" if x > 0 else r"-\infty"
    return sci(f"{x:#.3g}") + "{\\times}" if kind == "ratio" else sci(f"{x:+#.3g}")


def tabular(
    spec: str, header: list[str], rows: list[list[str]], caption: str, gaps: Collection[int] = ()
) -> str:
    """A booktabs tabular with its `% caption:` line; `gaps`: rows that start a group (an
    \\addlinespace before them)."""
    body = [  # `{}`: a row starting with `[` would be read as the `\\[dim]` before it
        ("\\addlinespace\n" if i in gaps else "") + ("{}" if r[0].startswith("[") else "")
        + " & ".join(r) + (r" \tabularnewline" if r[-1].startswith(RAGGED) else r" \\")
        for i, r in enumerate(rows)
    ]  # fmt: skip
    return "\n".join([
        f"% caption: {caption}",
        f"% lionbench report: \\input this inside a table float; needs {PACKAGES}",
        f"\\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule",
        *body, r"\bottomrule", r"\end{tabular}", "",
    ])  # fmt: skip


def grouped(
    t: pd.DataFrame,
    key: str,
    heading: Callable[[object], str],
    width: int,
    cells: Callable[[pd.Series], list[str]],
) -> tuple[list[list[str]], set[int]]:
    """(rows, gaps): a heading row (in italics, over `width` columns) per run of equal `key`
    values (an arm, a target, a family), its rows indented below it, a little space before
    each heading but the first; narrower than repeating the key in a column of its own."""
    rows: list[list[str]] = []
    gaps: set[int] = set()
    last: object = None
    for i, (_, r) in enumerate(t.iterrows()):
        if i == 0 or r[key] != last:
            gaps |= {len(rows)} if rows else set()
            rows.append([f"\\multicolumn{{{width}}}{{l}}{{\\emph{{{heading(r[key])}}}}}"])
            last = r[key]
        first, *rest = cells(r)
        rows.append(["\\quad " + first, *rest])
    return rows, gaps


def optimizers_tex(t: pd.DataFrame, where: str, baseline: str | None) -> str:
    """One row per arm: label, n seeds, final val loss mean ± CI, speed and memory as ratios to
    the baseline (its own row reads 1.00: the caption names it)."""
    ratios = [
        (c, head) for c, head in (
            ("steps_per_s_vs_baseline", "steps/s"), ("optimizer_state_mb_vs_baseline", "state"),
            ("peak_mem_mb_vs_baseline", "memory"),
        ) if c in t and pd.to_numeric(t[c], errors="coerce").notna().any()
    ]  # fmt: skip
    diverged = "diverged" in t and bool((pd.to_numeric(t["diverged"]) > 0).any())
    header = ["optimizer", "$n$", "final val loss", *(h for _, h in ratios)]
    header += ["diverged"] if diverged else []
    rows = []
    for _, r in t.iterrows():
        loss = mean_ci(r["final_val_loss"], r["final_val_loss_std"], r["n"])
        rows.append([escape(r["arm"]), str(int(r["n"])), loss, *(ratio(r[c]) for c, _ in ratios)])
        rows[-1] += [str(int(r["diverged"]))] if diverged else []
    caption = f"{where}: final val loss, {CI_NOTE} (completed seeds)"
    if ratios:
        caption += (
            "; steps/s, optimizer state and peak memory as ratios to the baseline "
            f"{escape(baseline)} (means over seeds)"
        )
    spec = "lrr" + "r" * (len(ratios) + diverged)
    return tabular(spec, header, rows, caption)


def comparison_cells(r: pd.Series) -> list[str]:
    """One comparison: metric, n pairs, the difference or ratio with its CI (bold when
    decided), the Holm-adjusted p and the verdict's mark."""
    verdict = str(r["verdict"])
    est = "--"
    if verdict not in ("not enough data", NOT_INTERLEAVED) and int(r["n"]) > 0:
        e = effect(r["estimate"], r["kind"])
        e = f"\\mathbf{{{e}}}" if verdict in ("better", "worse") else e
        bounds = f"[{effect(r['low'], r['kind'])}, {effect(r['high'], r['kind'])}]"
        est = f"${e}\\ {bounds}" + ("^\\dagger" if r["method"] == "sign test" else "") + "$"
    p = p_text(r["p_holm"])
    p = "--" if p == "-" else f"${p}$"
    return [escape(r["name"]), str(int(r["n"])), est, p, MARKS.get(verdict, escape(verdict))]


def comparisons_tex(c: pd.DataFrame, where: str, baseline: str | None) -> str:
    """Per candidate arm (a heading row, arms in the table's order), one row per metric in the
    table's order (`comparison_cells`); the table itself runs metric by metric."""
    first = {arm: i for i, arm in reversed(list(enumerate(c["arm"])))}
    c = c.sort_values("arm", key=lambda arms: arms.map(first), kind="stable")
    rows, gaps = grouped(c, "arm", escape, 5, comparison_cells)
    against = f"the baseline {escape(baseline)}" if baseline else "the baseline"
    caption = (
        f"{where}: paired comparisons of each arm with {against}, seed by seed ($n$ pairs): "
        r"difference (losses) or ratio (speeds, steps and time to a target) with its 95\% "
        r"interval, simultaneous over the candidate arms; $p$ Holm-adjusted per metric. "
        + MARK_LEGEND
    )
    header = ["metric", "$n$", r"estimate [95\% CI]", r"$p_{\mathrm{Holm}}$", "verdict"]
    return tabular("lrlrl", header, rows, caption, gaps)


def targets_tex(t: pd.DataFrame, where: str, baseline: str | None) -> str:
    """Per target (a heading row) and arm: seeds that reached it, steps (mean ± CI over those
    seeds), time, steps as a ratio to the baseline's."""
    reached = "n_reached" if "n_reached" in t else "reached"
    rows, gaps = grouped(
        t, "target", lambda v: f"val loss {number(v)}", 5,
        lambda r: [
            escape(r["arm"]), f"{int(r[reached])}/{int(r['n_seeds'])}",
            mean_ci(r["steps_to_target"], r["steps_to_target_std"], r[reached])
            if r[reached] else "not reached",
            number(r["time_to_target_s"], 3), ratio(r.get("steps_vs_baseline", math.nan)),
        ],
    )  # fmt: skip
    caption = (
        f"{where}: steps and time to each target val loss; steps: {CI_NOTE} that reached it; "
        f"vs baseline: steps over the baseline's ({escape(baseline or 'none')}), where every "
        "seed of both reached the target"
    )
    header = ["optimizer", "reached", "steps", "time (s)", "vs baseline"]
    return tabular("lrrrr", header, rows, caption, gaps)


def ratio_sweep_tex(t: pd.DataFrame, where: str, baseline: str | None) -> str:
    """Per family (a heading row) and ratio r: lr, wd, n, final val loss mean ± CI, the best
    starred."""
    rows, gaps = grouped(
        t, "family", escape, 6,
        lambda r: [
            number(r["ratio"]), number(r["lr"], 3), number(r["weight_decay"], 3),
            str(int(r["n"])), str(int(r["diverged"])),
            mean_ci(r["final_val_loss"], r["final_val_loss_std"], r["n"])
            + (r" $\star$" if pd.notna(r["best"]) and bool(r["best"]) else ""),
        ],
    )  # fmt: skip
    caption = (
        f"{where}: ratio sweep (lr = base lr / $r$, wd = base wd $\\times\\,r$); final val "
        f"loss, {CI_NOTE}; $\\star$ the lowest mean of each family without a diverged seed"
    )
    header = ["$r$", "lr", "wd", "$n$", "diverged", "final val loss"]
    return tabular("rrrrrr", header, rows, caption, gaps)


def claims_tex(t: pd.DataFrame, where: str, baseline: str | None) -> str:
    """One row per claim: the claim, its verdict (marked), the evidence in words."""
    rows = []
    for _, r in t.iterrows():
        verdict = str(r["verdict"])
        mark = next((m for word, m in CLAIM_MARKS if verdict.startswith(word)), "")
        cells = (escape(r["claim"]), mark + escape(verdict), escape(r["evidence"]))
        rows.append([RAGGED + c for c in cells])
    caption = (
        f"{where}: the Lion paper's claims, each decided by paired tests (Holm across the Lion "
        r"arms). \checkmark{} holds, $\times$ does not hold, ? mixed, $\circ$ no significant "
        "difference; the rest undecided"
    )
    spec = r"p{0.25\linewidth}p{0.17\linewidth}p{0.46\linewidth}"
    return tabular(spec, ["claim", "verdict", "evidence"], rows, caption, range(1, len(rows)))


# table kind (the file name's prefix, longest first) -> its LaTeX
RENDERERS: dict[str, Callable[[pd.DataFrame, str, str | None], str]] = {
    "study_comparisons": comparisons_tex,
    "study_claims": claims_tex,
    "optimizers": optimizers_tex,
    "comparisons": comparisons_tex,
    "ratio_sweep": ratio_sweep_tex,
    "targets": targets_tex,
    "claims": claims_tex,
}


def kind_of(name: str) -> str | None:
    """The kind of table a file name holds (`comparisons_gpt2-smoke` -> `comparisons`), or None
    for the tables that get no LaTeX (runs, problems, curves: data, not paper tables)."""
    return next((k for k in RENDERERS if name.startswith(f"{k}_")), None)


def write_latex(
    tables: Mapping[str, pd.DataFrame], out: Path, baselines: Mapping[str, str | None]
) -> None:
    """`<name>.tex` of every table that has a LaTeX form (`kind_of`), beside its CSV; the
    baseline named by setting label (`baselines`; a sweep's own: AdamW's best)."""
    for name, df in tables.items():
        kind = kind_of(name)
        if kind is None or df.empty:
            continue
        if kind.startswith("study_"):
            where = f"sweep {escape(df['sweep'].iloc[0])} (confirmation seeds)"
            baseline: str | None = "AdamW's best setting"
        else:
            label = str(df["setting"].iloc[0])
            where, baseline = escape(label), baselines.get(label)
        atomic_write_text(out / f"{name}.tex", RENDERERS[kind](df, where, baseline))
