"""Reports: the performance report for any period, in the page and as downloads
(HTML, CSV, JSON), from the same code as `mailbot report`."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, render_template, request

from mailbot import reports
from mailbot.web.request import mailbot, now, reading, requires
from mailbot.web.roles import Can

blueprint = Blueprint("reports", __name__)

FORMATS = {
    "html": ("text/html", "html", reports.to_html),
    "csv": ("text/csv", "csv", reports.to_csv),
    "json": ("application/json", "json", reports.to_json),
    "breaches": ("text/csv", "breaches.csv", reports.breaches_to_csv),
}
# The full report page is self-contained: its own inline styles and SVG charts, no script.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"


def last_quarter(today: date) -> tuple[date, date]:
    """The last complete quarter before `today` (councils report by quarter)."""
    first_of_this = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    end = first_of_this - timedelta(days=1)
    return date(end.year, end.month - 2, 1), end


def _period() -> tuple[date, date, dict[str, str]]:
    today = now().astimezone(ZoneInfo(mailbot().policy.timezone)).date()
    start, end = last_quarter(today)
    problems = {}
    values = {}
    for field, default in (("from", start), ("to", end)):
        text = request.args.get(field, "").strip()
        values[field] = text or default.isoformat()
        try:
            parsed = date.fromisoformat(values[field])
        except ValueError:
            problems[field] = "Give a date as year-month-day, e.g. 2026-10-01."
            parsed = default
        if field == "from":
            start = parsed
        else:
            end = parsed
    if not problems and end < start:
        problems["to"] = "The end of the period must not be before its start."
    if not problems and (end - start).days > 3 * 366:
        problems["to"] = "Choose a period of three years or less."
    return start, end, problems


def _report(start: date, end: date) -> reports.Report:
    app = mailbot()
    with reading() as db:
        return reports.build_report(
            db,
            app.policy,
            council=app.cfg.council.name,
            period_from=start,
            period_to=end,
            now=now(),
        )


@blueprint.get("/reports")
@requires(Can.READ_REPORTS)
def show() -> Any:
    start, end, problems = _period()
    report = None if problems else _report(start, end)
    return render_template(
        "reports.html",
        report=report,
        start=request.args.get("from", start.isoformat()),
        end=request.args.get("to", end.isoformat()),
        problems=problems,
        name=reports.category_name,
        stage_name=reports.stage_name,
    ), (400 if problems else 200)


@blueprint.get("/reports/download")
@requires(Can.READ_REPORTS)
def download() -> Response:
    start, end, problems = _period()
    kind = request.args.get("format", "html")
    if problems or kind not in FORMATS:
        return Response("Give a valid period and format.", status=400, mimetype="text/plain")
    mimetype, suffix, write = FORMATS[kind]
    response = Response(write(_report(start, end)), mimetype=mimetype)
    filename = f"mailbot-report-{start}-to-{end}.{suffix}"
    view = kind == "html" and request.args.get("view") == "1"
    response.headers["Content-Disposition"] = (
        f'{"inline" if view else "attachment"}; filename="{filename}"'
    )
    if kind == "html":
        response.headers["Content-Security-Policy"] = REPORT_CSP
    return response
