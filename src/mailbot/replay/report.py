"""The rehearsal's report: a summary for the terminal, or a file (HTML, CSV or JSON) with
every message, why it was decided so, its case and dates, the letters that would have
gone and when, the files left out, and the period's figures (reports.py's)."""

from __future__ import annotations

import enum
import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from jinja2 import Environment

from mailbot import reports
from mailbot.errors import UsageError
from mailbot.replay.run import MessageRecord, Replay


class ReportFormat(enum.StrEnum):
    TEXT = "text"
    HTML = "html"
    CSV = "csv"
    JSON = "json"


def format_for(path: Path | None, given: str | None) -> ReportFormat:
    """--format if given, else the report file's extension, else the summary."""
    if given:
        return ReportFormat(given)
    if path is None:
        return ReportFormat.TEXT
    by_suffix = {".html": "html", ".htm": "html", ".csv": "csv", ".json": "json", ".txt": "text"}
    try:
        return ReportFormat(by_suffix[path.suffix.lower()])
    except KeyError:
        raise UsageError(
            f"--report {path}: say --format html, csv or json (or end the name so)"
        ) from None


def outputs(result: Replay, fmt: ReportFormat, path: Path | None) -> list[tuple[Path | None, str]]:
    """What to write where: CSV is a table per file (messages; letters and figures
    beside it, as `mailbot report` puts its breaches beside its figures)."""
    if fmt is ReportFormat.CSV:
        if path is None:
            return [(None, messages_csv(result))]  # on standard output: the messages alone
        written = [
            (path, messages_csv(result)),
            (path.with_suffix(".letters.csv"), letters_csv(result)),
        ]
        if result.figures is not None:
            written.append((path.with_suffix(".figures.csv"), reports.to_csv(result.figures)))
        return written
    writer = {ReportFormat.TEXT: summary, ReportFormat.HTML: to_html, ReportFormat.JSON: to_json}
    return [(path, writer[fmt](result))]


# --- the summary ----------------------------------------------------------------------


def summary(result: Replay) -> str:
    zone = ZoneInfo(result.timezone)
    lines = [
        f"Replay of {len(result.messages)} message(s) under the {result.policy} policy"
        + (f", {result.period_from} to {result.period_to}" if result.period_from else ""),
        "Nothing was sent; the database was a temporary one, now deleted.",
        "",
    ]
    outcomes = Counter(m.outcome for m in result.messages)
    lines.append("Messages: " + ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())))
    categories = Counter(m.category for m in result.messages if m.outcome == "case-opened")
    if categories:
        lines.append(
            "Cases opened: " + ", ".join(f"{n} {c}" for c, n in sorted(categories.items()))
        )
    kinds = Counter(letter.kind for letter in result.letters if letter.status == "sent")
    if kinds:
        lines.append("Would have sent: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    lines.append("")
    for m in result.messages:
        when = f"{m.arrived.astimezone(zone):%Y-%m-%d %H:%M}"
        case = f"{m.case_ref} {m.category} due {m.respond_by}" if m.case_ref else "-"
        lines.append(f"{when}  {m.outcome:<12} {case}  {m.subject[:50]}")
        if m.outcome != "case-opened" and m.reasons:
            lines.append(f"{'':18}why: {'; '.join(map(str, m.reasons))[:150]}")
    if result.figures is not None and not result.figures.empty:
        total = result.figures.total
        lines += [
            "",
            f"Figures for the period: {total.received} case(s) received, "
            f"{total.acknowledged_on_time} acknowledged on time, "
            f"{total.responded} responded, {total.breached} breached, "
            f"{total.holding_replies} holding replies",
        ]
    if result.skipped:
        lines += ["", f"Skipped {len(result.skipped)} file(s) or message(s):"]
        lines += [f"  {s.source}: {s.reason}" for s in result.skipped]
    return "\n".join(lines) + "\n"


# --- JSON -----------------------------------------------------------------------------


def to_json(result: Replay) -> str:
    data = {
        "council": result.council,
        "policy": result.policy,
        "sources": result.sources,
        "period_from": result.period_from.isoformat() if result.period_from else None,
        "period_to": result.period_to.isoformat() if result.period_to else None,
        "messages": [m.as_json() for m in result.messages],
        "other_letters": [letter.as_json() for letter in result.other_letters],
        "skipped": [{"source": s.source, "reason": s.reason} for s in result.skipped],
        "cases": result.cases,
        "figures": json.loads(reports.to_json(result.figures)) if result.figures else None,
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


# --- CSV ------------------------------------------------------------------------------

MESSAGE_COLUMNS = (
    "arrived", "arrived_by", "source", "from", "subject", "outcome", "reasons", "case",
    "category", "stage", "triage", "acknowledge_by", "respond_by", "holding_by", "letters",
)  # fmt: skip
LETTER_COLUMNS = ("at", "status", "kind", "to", "audience", "case", "subject", "note")


def _letters_cell(m: MessageRecord) -> str:
    return "; ".join(f"{x.kind} to {x.recipient} {x.status} {x.at.isoformat()}" for x in m.letters)


def messages_csv(result: Replay) -> str:
    """One row per message, then one per file left out (outcome "skipped")."""
    rows: list[list[object]] = [
        [
            m.arrived.isoformat(), m.arrived_by, m.source, m.sender, m.subject, m.outcome,
            "; ".join(map(str, m.reasons)), m.case_ref, m.category, m.stage, m.triage,
            m.acknowledge_by, m.respond_by, m.holding_by, _letters_cell(m),
        ]
        for m in result.messages
    ]  # fmt: skip
    rest = [None] * (len(MESSAGE_COLUMNS) - 7)
    rows += [[None, None, s.source, None, None, "skipped", s.reason, *rest] for s in result.skipped]
    return reports._csv(MESSAGE_COLUMNS, rows)


def letters_csv(result: Replay) -> str:
    return reports._csv(
        LETTER_COLUMNS,
        (
            [
                x.at.isoformat(),
                x.status,
                x.kind,
                x.recipient,
                x.audience,
                x.case_ref,
                x.subject,
                x.note,
            ]
            for x in result.letters
        ),
    )


# --- HTML -----------------------------------------------------------------------------

_HTML = Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Replay: {{ r.council }}, {{ r.policy }} policy</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;color:#111}
table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #999;padding:.25rem .5rem;
text-align:left;vertical-align:top;font-size:.9rem}th{background:#eee}
.why{color:#333;font-size:.85rem}
</style></head><body>
<h1>Replay of past mail: {{ r.council }}</h1>
<p>{{ r.messages|length }} message(s) under the <strong>{{ r.policy }}</strong> policy
{% if r.period_from %}from {{ r.period_from }} to {{ r.period_to }}{% endif %}.
Nothing was sent; the rehearsal's database was a temporary one, now deleted.</p>
<h2>Messages</h2>
<table><thead><tr><th scope="col">Arrived</th><th scope="col">From</th><th scope="col">Subject</th>
<th scope="col">Outcome and why</th><th scope="col">Case</th><th scope="col">Respond by</th>
<th scope="col">Letters</th></tr></thead><tbody>
{% for m in r.messages %}<tr>
<td>{{ local(m.arrived) }}<br><span class="why">{{ m.source }}</span></td>
<td>{{ m.sender }}</td><td>{{ m.subject }}</td>
<td>{{ m.outcome }}{% if m.reasons %}<br>
<span class="why">{{ m.reasons|join("; ") }}</span>{% endif %}</td>
<td>{% if m.case_ref %}{{ m.case_ref }}
({{ m.category }}{% if m.triage %}, triage{% endif %}){% endif %}</td>
<td>{{ m.respond_by or "" }}</td>
<td>{% for x in m.letters %}{{ x.kind }} to {{ x.recipient }}, {{ local(x.at) }}
{%- if x.status != "sent" %} ({{ x.status }}){% endif %}<br>{% endfor %}</td></tr>
{% endfor %}</tbody></table>
{% if r.other_letters %}<h2>Other letters</h2><ul>
{% for x in r.other_letters %}
<li>{{ local(x.at) }}: {{ x.kind }} to {{ x.recipient }}: {{ x.subject }}</li>{% endfor %}
</ul>{% endif %}
{% if f %}<h2>Figures for the period</h2>
<table><thead><tr><th scope="col">Category</th><th scope="col">Stage</th>
<th scope="col">Received</th>
<th scope="col">Acknowledged on time</th><th scope="col">Responded on time</th>
<th scope="col">Breached</th><th scope="col">Holding replies</th></tr></thead><tbody>
{% for row in f.rows + [f.total] %}<tr><td>{{ row.category }}</td><td>{{ row.stage or "" }}</td>
<td>{{ row.received }}</td><td>{{ row.acknowledged_on_time }} of {{ row.acknowledgements_due }}</td>
<td>{{ row.responded_on_time }} of {{ row.responses_due }}</td><td>{{ row.breached }}</td>
<td>{{ row.holding_replies }}</td></tr>{% endfor %}</tbody></table>{% endif %}
{% if r.skipped %}<h2>Files left out</h2><ul>
{% for s in r.skipped %}<li>{{ s.source }}: {{ s.reason }}</li>{% endfor %}</ul>{% endif %}
</body></html>
"""
)


def to_html(result: Replay) -> str:
    zone = ZoneInfo(result.timezone)

    def local(at: datetime) -> str:
        return f"{at.astimezone(zone):%a %d %b %Y %H:%M}"

    return _HTML.render(r=result, f=result.figures, local=local)
