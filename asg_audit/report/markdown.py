"""`report.md`: the report as Markdown, its charts as PNG files beside it.

Built in code rather than a template because every data string needs Markdown escaping, which
Jinja's autoescape (HTML only) would not do: `md_escape` escapes backslashes, `|`, backticks,
emphasis and link brackets, `<`, `>` and `&`, and turns newlines into `<br>`, so a cell stays one
cell and a label never becomes markup, a link or raw HTML. A data value in a table cell goes
through `md_cell` instead: cut when long and shown on one line with newline, tab and CR as
`\\x0a`, `\\x09`, `\\x0d`, as index.html shows it (`cells.cell_text`).
"""

from __future__ import annotations

import re
from typing import Any, Final

from asg_audit.model import printable
from asg_audit.report.cells import CELL_LIMIT, MESSAGE_LIMIT, cut_value
from asg_audit.report.content import difference_header, format_change, format_value
from asg_audit.report.empty import NO_DATA
from asg_audit.report.feature_tables import HTTP_BY_RUN
from asg_audit.report.words import counted

__all__ = ["md_cell", "md_escape", "md_table", "render_markdown"]

_SPECIAL: Final = re.compile(r"([\\`*_\[\]{}()#+!|~])")


def _literal(text: str) -> str:
    """Return `text` with everything Markdown (or the HTML in it) would act on escaped."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SPECIAL.sub(r"\\\1", text)


class _Cell(str):
    """A table cell `md_table` writes as it is: escaped already (`md_cell`)."""

    __slots__ = ()


def md_cell(value: Any, limit: int = CELL_LIMIT, *, quote_edges: bool = True) -> str:
    """Return a data value as a Markdown table cell: as `cells.cell_text` shows it in
    index.html (cut at `limit` characters, newline, tab and CR as `\\x0a`, `\\x09`, `\\x0d`,
    with `quote_edges` edge whitespace between single quotes), every Markdown character
    escaped."""
    if value is None:
        return _Cell("")
    text = _literal(cut_value(str(value), limit))
    return _Cell(printable(text, one_line=True, quote_edges=quote_edges))


def md_escape(value: Any) -> str:
    """Return our own text (a caption, a note; a data value in a sentence) as Markdown text
    that renders literally, on one line: a newline in it is `<br>`."""
    text = _literal("" if value is None else str(value))
    # printable: an escape sequence or bidi override in a label must not act on a terminal
    # showing the file (`cat report.md`); it is shown as `\x1b`, `\u202e` instead.
    return printable(re.sub(r"\r\n|\r|\n", "<br>", text))


def md_table(
    headers: list[str], rows: list[list[Any]], empty: str = NO_DATA, *, limit: int = CELL_LIMIT
) -> str:
    """Return a Markdown table; every header and cell is escaped, each cell by `md_cell` (cut
    at `limit` characters) unless it is one already. Without rows, `empty` (why there are
    none: `No data: the store holds no tasks.`)."""
    if not rows:
        return f"_{md_escape(empty)}_\n"
    lines = [
        "| " + " | ".join(md_escape(h) for h in headers) + " |",
        "|" + "|".join(" --- " for _ in headers) + "|",
    ]
    lines += [
        "| " + " | ".join(c if isinstance(c, _Cell) else md_cell(c, limit) for c in row) + " |"
        for row in rows
    ]
    return "\n".join(lines) + "\n"


def _table(t: Any, caption: str | None = None) -> str:
    out = f"\n**{md_escape(caption)}**\n\n" if caption else "\n"
    out += md_table(t.headers, t.rows, t.empty, limit=t.cut)
    if t.more:
        out += f"\n_and {counted(t.more, 'more row')}_\n"
    return out


def _not_run(note: str | None) -> str:
    """Return what a section (chain, billing) says when its command left it no table."""
    return f"\n{md_escape(note)}.\n" if note else ""


def _figure(chart: dict[str, Any] | None) -> str:
    if not chart:
        return ""
    return f"\n![{md_escape(chart['alt'])}]({chart['name']}.png)\n"


def _compare(cmp: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    rows = [
        [
            r["label"],
            format_value(r["previous"], r["kind"]),
            format_value(r["current"], r["kind"]),
            format_change(r["change"], r["kind"]),
        ]
        for r in cmp["headline"]
    ]
    note = (
        "\nOne of the two summaries lists only its worst findings, so new/resolved may be"
        " incomplete.\n"
        if cmp.get("incomplete")
        else ""
    )
    if cmp.get("store_note"):
        note += f"\n**{md_escape(cmp['store_note'])}**\n"
    windows = cmp.get("window_note")
    if windows:
        note += f"\n**Different windows.** {md_escape(windows)}\n"
    out = [
        f"\n## Compared with {md_escape(cmp['previous_run_id'])}\n\n",
        md_table(["Figure", "Previous", "Now", "Change"], rows),
        note,
        f"\n### New findings ({len(cmp['new_findings']):,})\n",
        _table(ctx["compare_new"]),
    ]
    if windows:
        found = cmp["outside_previous_window_findings"]
        out += [
            f"\n### Outside the previous report's window ({len(found):,})\n\n",
            "Findings of this report about what the previous report did not cover: not called"
            " new.\n",
            _table(ctx["compare_outside_previous"]),
        ]
    out += [
        f"\n### Resolved findings ({len(cmp['resolved_findings']):,})\n",
        _table(ctx["compare_resolved"]),
    ]
    if windows:
        gone = cmp["outside_window_findings"]
        out += [
            f"\n### Outside this report's window ({len(gone):,})\n\n",
            "Findings of the previous report about what this report does not cover: not called"
            " resolved (they may still stand).\n",
            _table(ctx["compare_outside"]),
        ]
    return out


def _proves(group: dict[str, Any]) -> str:
    """Return the line saying what a check's findings prove (`Proves: **aggregate only**`;
    with counts when its findings prove different things)."""
    parts = [
        f"**{md_escape(what)}**"
        + (f" ({counted(n, 'finding')})" if len(group["proves"]) > 1 else "")
        for what, n in group["proves"]
    ]
    return "Proves: " + " · ".join(parts)


def render_markdown(ctx: dict[str, Any]) -> str:
    """Return the Markdown report from the context `render.build_context` builds."""
    charts, tables = ctx["charts"], ctx["tables"]
    window = ""
    if ctx["since"] or ctx["until"]:
        window = f" · tasks created {ctx['since'] or '(start)'} to {ctx['until'] or '(end)'}"
    out = [
        "# ASG settlement audit\n\n",
        f"Run `{md_escape(ctx['run_id'])}` · generated {ctx['generated_at']} · data as of "
        f"{ctx['as_of']}{md_escape(window)} · all times and days UTC · worst finding: "
        f"{ctx['worst'] or 'none'}\n",
    ]
    if ctx["run_banner"]:  # a step of the audit run failed: said before any figure
        out.append(f"\n> **{md_escape(ctx['run_banner'])}**\n")
    out += [
        "\n## Headline\n\n",
        md_table(
            ["Figure", "Value"],
            [
                [h.label, format_value(h.value, h.kind) + (f" ({h.note})" if h.note else "")]
                for h in ctx["headline"]
            ],
        ),
    ]
    if ctx["run_steps"] is not None:
        out.append(_table(ctx["run_steps"], "Steps of this audit run before the report"))
    if ctx.get("compare_skipped"):  # `--compare previous` found no report of this store
        out.append(f"\n{md_escape(ctx['compare_skipped'])}\n")
    if ctx["compare"]:
        out += _compare(ctx["compare"], ctx)
    out += [
        "\n## Settlement latency\n",
        _figure(charts["latency_distribution"]),
        _figure(charts["latency_over_time"]),
        _table(tables["latency_by_threshold"], "Latency by consensus threshold"),
        "\n## Backlog and survival\n",
        _figure(charts["survival"]),
        _table(tables["ageing"], "Unsettled tasks by age and status"),
        f"\n{md_escape(ctx['backlog_note'])}\n" if ctx["backlog_note"] else "",
        "\n## Consensus and confidence\n",
        _figure(charts["confidence"]),
        _figure(charts["agreement"]),
        _table(tables["agreement_by_threshold"], "Agreement by threshold"),
        _figure(charts["formula_fit"]),
        _table(tables["invariants"], "Invariants of the documented consensus rule"),
        "\n## Costs and payments\n",
        _figure(charts["costs"]),
        _table(tables["cost_model_fit"], "Which cost model explains the reported costs"),
        _figure(charts["spend"]),
        _table(tables["spend_by_month"], ctx["spend_month_caption"]),
        _table(tables["txid_health"], "Transaction ids of settled tasks"),
    ]
    out += ["\n## Chain verification\n", _not_run(ctx["chain_note"]), _figure(charts["chain"])]
    for name, t in ctx["chain_tables"]:
        if name == "fee_coverage" and ctx["fee_line"]:
            # how many fees chain.fee_rate could check: no fee finding is not "fees fine"
            out.append(f"\n{md_escape(ctx['fee_line'])}\n")
        out.append(_table(t, t.caption))
    out += ["\n## Billing\n", _not_run(ctx["billing_note"])]
    out += [_table(t, t.caption) for _, t in ctx["billing_tables"]]
    out += [
        "\n## Collection health\n",
        _figure(charts["collection"]),
        _table(tables["collection"], "Polls per task and detection delay"),
        _table(tables["source_coverage"], "How tasks were seen"),
        _table(tables["http_by_run"], HTTP_BY_RUN),
        "\n## Findings\n",
    ]
    if not ctx["groups"]:
        out.append("\nNo findings.\n")
    for g in ctx["groups"]:
        n = g["findings"]
        out.append(
            f"\n### {md_escape(g['check_id'])} ({md_escape(g['severity'])}, "
            f"{counted(n, 'finding')})\n\n"
        )
        if g["description"]:
            out.append(md_escape(g["description"]) + "\n\n")
        if g["proves"]:
            out.append(_proves(g) + "\n\n")
        mixed = g["proves_mixed"]
        rows = [
            [
                e["severity"],
                _Cell(f"{md_cell(e['entity_type'])}: {md_cell(e['entity_id'])}"),
                e["expected"],
                e["actual"],
                format_value(e["difference"], "num"),
                *([format_value(e["proves"])] if mixed else []),
                md_cell(e["message"], MESSAGE_LIMIT, quote_edges=False),
            ]
            for e in g["worst"]
        ]
        headers = ["Severity", "Entity", "Expected", "Actual", difference_header(g["unit"])]
        out.append(md_table([*headers, *(["Proves"] if mixed else []), "Message"], rows))
        links = [e for e in g["worst"] if e["url"]]
        if links:
            out.append("\n" + "".join(f"- [{e['entity_id']}]({e['url']})\n" for e in links))
        if g["more"]:
            out.append(f"\n_{md_escape(g['more_line'])}_\n")
    out.append("\n## Methodology\n\n")
    out += [f"- {md_escape(line)}\n" for line in ctx["methodology"]]
    out.append("\n## Configuration used\n\n")
    out.append(
        md_table(["Setting", "Value"], [list(r) for r in ctx["config"]], limit=MESSAGE_LIMIT)
    )
    out.append(
        f"\nSecrets are never shown. asg_audit {ctx['tool_version']}, summary schema "
        f"{ctx['schema_version']}.\n"
    )
    return "".join(out)
