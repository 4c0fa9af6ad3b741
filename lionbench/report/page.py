"""report.html as a document: print CSS, tables whose text reads left-aligned and whose numbers
line up right-aligned, verdict words in colour (better green, worse red, no significant
difference grey), figures embedded as PNG with their SVG beside them, and the opening page
(the overview). render.py decides what else goes in, in which order.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from lionbench.report.headline import headlines, overview

if TYPE_CHECKING:
    from lionbench.report.analyse import Setting
    from lionbench.report.studies import Study

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#222;
 max-width:1150px;margin:auto;padding:1em 1.5em;line-height:1.4;font-size:14px}
h1{font-size:1.7em;margin-bottom:.2em}h2{border-bottom:2px solid #ccc;padding-bottom:.15em;
 margin-top:1.8em}h3{font-size:1.05em;margin:1.2em 0 .4em}
table{border-collapse:collapse;font-size:12.5px;margin:.3em 0 1em}
th,td{padding:3px 9px;border-bottom:1px solid #e2e2e2;text-align:left;vertical-align:top}
th{background:#f3f3f3;border-bottom:1px solid #bbb;font-weight:600}
td{white-space:nowrap}td.wrap{white-space:normal;min-width:12em}
th.num,td.num{text-align:right;font-variant-numeric:tabular-nums}td.num{white-space:nowrap}
td.lines{white-space:pre-line;min-width:24em}
.better{color:#1a7f37;font-weight:600}.worse{color:#c62828;font-weight:600}
.nsd{color:#777}.warn{color:#a60}.meta{color:#555}
figure{margin:.6em 0 1.2em;break-inside:avoid}figure img{max-width:100%;height:auto}
figcaption{font-size:12px;color:#555}figcaption a{margin-left:.6em}
nav.toc a{margin-right:1em}
@media print{body{max-width:none;font-size:11px;padding:0}a{color:inherit;text-decoration:none}
 h2{break-before:page}h2.first{break-before:auto}table,figure,tr{break-inside:avoid}
 th{background:#eee !important;-webkit-print-color-adjust:exact;print-color-adjust:exact}
 .better,.worse,.nsd{-webkit-print-color-adjust:exact;print-color-adjust:exact}
 figcaption a,nav.toc{display:none}}
@page{size:A4;margin:14mm}
"""
# verdict words and the class that colours them; the longest first so "does not hold" wins
VERDICT_CLASSES = {
    "no significant difference": "nsd",
    "not enough data": "nsd",
    "does not hold": "worse",
    "mixed": "nsd",
    "better": "better",
    "worse": "worse",
    "holds": "better",
}
VERDICT_RE = re.compile(r"\b(" + "|".join(map(re.escape, VERDICT_CLASSES)) + r")\b")
NUMBER_RE = re.compile(r"^(?:[-+]?(?:\d|\.\d|inf\b)|<0\.)")


def colour(text: str) -> str:
    """Escaped text with every verdict word wrapped in its colour class."""
    return VERDICT_RE.sub(
        lambda m: f"<span class={VERDICT_CLASSES[m.group(1)]}>{m.group(1)}</span>",
        html.escape(text),
    )


def numeric_columns(df: pd.DataFrame) -> set[str]:
    """Columns whose every cell is a number (`4.12 ± 0.03`, `0.82x`, `<0.001`, `3/3`) or `-`."""
    out = set()
    for col in df.columns:
        cells = [str(v) for v in df[col]]
        known = [c for c in cells if c not in ("-", "", "nan", "None")]
        # a list of seeds (`0,1,2`) is text, not a number
        if known and all(NUMBER_RE.match(c) and not re.search(r"\d,\d", c) for c in known):
            out.add(str(col))
    return out


def table(df: pd.DataFrame, lines: tuple[str, ...] = ()) -> str:
    """A table of strings: text left, numbers right, verdict columns (and the `lines`
    columns, one item per line) coloured by their verdict words."""
    nums = numeric_columns(df)
    long = {str(c) for c in df.columns if df[c].astype(str).str.len().max() > 40}
    head = "".join(
        f"<th{' class=num' if str(c) in nums else ''}>{html.escape(str(c))}</th>"
        for c in df.columns
    )
    rows = []
    for _, r in df.iterrows():
        cells = []
        for col, v in zip(df.columns, r, strict=True):
            col = str(col)
            text = str(v)
            cls = "num" if col in nums else "lines" if col in lines else ""
            cls = cls or ("wrap" if col in long else "")
            body = colour(text) if ("verdict" in col or col in lines) else html.escape(text)
            cells.append(f"<td{f' class={cls}' if cls else ''}>{body}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def figure(title: str, png: Path) -> str:
    """The PNG embedded (the page stays one file), its SVG linked beside it for papers."""
    data = base64.b64encode(png.read_bytes()).decode()
    svg = png.with_name(png.name[: -len(".png")] + ".svg")
    link = f"<a href='{html.escape(svg.name)}'>SVG</a>" if svg.exists() else ""
    return (
        f"<figure><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{html.escape(title)} ({html.escape(png.name)}){link}</figcaption></figure>"
    )


def overview_table(rows: pd.DataFrame, anchors: list[str]) -> str:
    """The overview table, each setting linked to its section."""
    shown = rows.copy()
    table_html = table(shown, lines=("verdict",))
    for label, anchor in zip(rows["setting"], anchors, strict=True):
        cell = f"<td>{html.escape(str(label))}</td>"
        table_html = table_html.replace(
            cell, f"<td><a href='#{anchor}'>{html.escape(str(label))}</a></td>", 1
        )
    return table_html


def opening(
    settings: list[Setting],
    runs: pd.DataFrame,
    found: Sequence[Study],
    anchors: list[str],
    profiles: bool = False,
    scaling: Sequence[tuple[str, list[str]]] = (),
) -> tuple[list[str], list[str]]:
    """The first page: every verdict in one line (markdown) or one overview table (HTML), the
    confirmed sweep verdicts first: they are the ones free of the winner's curse, then the
    scaling studies' (name, verdict lines); `profiles`: the contents link the performance
    profiles too."""
    counts = f"{len(runs)} run directories: " + ", ".join(
        f"{n} {k}" for k, n in runs["status"].value_counts().items()
    )
    said = [f"scaling {name}: {v}" for name, verdicts in scaling for v in verdicts]
    lines = [st.headline for st in found] + said + [h for s in settings for h in headlines(s)]
    repeated = list(runs.attrs.get("warnings", []))  # copies of one run, counted once
    md = ["# lionbench report", "", *[f"- {line}" for line in lines], "", counts, ""]
    md += [f"> warning: {w}\n" for w in repeated]
    body = ["<h1>lionbench report</h1>", f"<p class=meta>{html.escape(counts)}</p>"]
    body += [f"<p class=warn>warning: {html.escape(w)}</p>" for w in repeated]
    if found:
        body.append("<h3>Confirmed verdicts (fresh seeds)</h3><ul>")
        body += [f"<li>{colour(st.headline)}</li>" for st in found]
        body.append("</ul>")
    if said:
        body.append("<h3>Scaling studies (fresh seeds)</h3><ul>")
        body += [f"<li>{html.escape(line)}</li>" for line in said]
        body.append("</ul>")
    if settings:
        body.append(
            "<h3>Overview: each setting's arms against its baseline (95% CI, Holm-adjusted p)</h3>"
        )
        body.append(overview_table(overview(settings), anchors))
    toc = [f"<a href='#sweep-{html.escape(st.name)}'>{html.escape(st.name)}</a>" for st in found]
    toc += [f"<a href='#scaling-{html.escape(n)}'>scaling {html.escape(n)}</a>" for n, _ in scaling]
    toc += [
        f"<a href='#{a}'>{html.escape(s.label)}</a>" for s, a in zip(settings, anchors, strict=True)
    ]
    toc += ["<a href='#profiles'>performance profiles</a>"] if profiles else []
    body.append(
        "<nav class=toc>Sections: " + " ".join(toc) + " <a href='#problems'>problems</a></nav>"
    )
    return md, body


def document(body: list[str]) -> str:
    """The whole page."""
    return (
        "<!doctype html><html lang=en><head><meta charset='utf-8'>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>lionbench report</title><style>{STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
