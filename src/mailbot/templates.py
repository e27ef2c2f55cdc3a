"""Templates: render the clerk's Jinja2 templates in a sandbox into a subject, text and HTML."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import escape

from mailbot.calendar import reopening_phrase
from mailbot.commandline import defuse
from mailbot.resources import builtin_dir

if TYPE_CHECKING:
    from sqlalchemy import Row

    from mailbot.config import Config
    from mailbot.policy import Policy
    from mailbot.store import Case


class TemplateProblem(Exception):
    """A template that will not render, worded as 'file:line: what is wrong'."""


@dataclass(frozen=True)
class Rendered:
    text: str
    html: str


class Templates:
    """The built-in templates, with the clerk's folder of overrides searched first."""

    def __init__(self, override_dir: Path | None = None) -> None:
        folders = [str(override_dir)] if override_dir else []
        folders.append(str(builtin_dir("templates")))
        self.folders = folders
        self.env = SandboxedEnvironment(
            loader=ChoiceLoader([FileSystemLoader(f) for f in folders]),
            undefined=StrictUndefined,  # a misspelt variable is an error, not a blank
            autoescape=lambda name: bool(name and name.endswith(".html")),
            keep_trailing_newline=False,
        )

    def render(self, name: str, context: dict[str, Any], *, staff: bool = False) -> Rendered:
        """Render `name`.txt; the HTML part is the same text in the shared HTML layout.

        `staff`: for council staff, whose replies are read for #commands; no line of it
        may read as one (commandline.defuse), whatever a resident's name or subject says.
        """
        try:
            text = self.env.get_template(f"{name}.txt").render(context).strip() + "\n"
            if staff:
                text = defuse(text)
            paragraphs = [p.splitlines() for p in text.split("\n\n") if p.strip()]
            html = self.env.get_template("_layout.html").render(
                {**context, "paragraphs": paragraphs}
            )
        except TemplateError as exc:
            raise TemplateProblem(_where(exc, name)) from exc
        return Rendered(text=text, html=html)

    def names(self) -> set[str]:
        """Template names (without .txt) available from any folder."""
        return {n.removesuffix(".txt") for n in self.env.list_templates() if n.endswith(".txt")}

    def render_safe(
        self, name: str, context: dict[str, Any], *, staff: bool = False
    ) -> tuple[Rendered, str | None]:
        """Render, falling back to the built-in template and then to plain wording.

        A clerk's broken edit must never stop acknowledgements; the problem is returned
        so the caller can log it and tell the clerk.
        """
        try:
            return self.render(name, context, staff=staff), None
        except TemplateProblem as exc:
            problem = str(exc)
        if len(self.folders) > 1:
            try:
                return Templates(None).render(name, context, staff=staff), problem
            except TemplateProblem:
                pass
        case = context.get("case", {})
        text = (
            f"Thank you for your message. Your reference is {case.get('ref', '')}.\n"
            f"We will reply by {case.get('respond_by', '')}.\n"
        )
        return Rendered(text=text, html=f"<p>{escape(text)}</p>"), problem


def _where(exc: TemplateError, name: str) -> str:
    """'file:line: message'. Syntax errors carry their line; errors while rendering are
    found in the traceback, where Jinja2 puts a frame for the template's own line."""
    filename = getattr(exc, "filename", None)
    lineno = getattr(exc, "lineno", None)
    if lineno is None:
        tb = exc.__traceback__
        while tb is not None:
            frame_file = tb.tb_frame.f_code.co_filename
            if frame_file.endswith((".txt", ".html")):
                filename, lineno = frame_file, tb.tb_lineno
            tb = tb.tb_next
    return f"{filename or name + '.txt'}:{lineno or '?'}: {exc.message or type(exc).__name__}"


@lru_cache(maxsize=4096)  # a scheduler pass writes the same few dates thousands of times
def long_date(day: date) -> str:
    """'Friday 18 December 2026', as letters write dates."""
    return f"{day:%A} {day.day} {day:%B %Y}"


CATEGORY_NAMES = {
    "enquiry": "enquiry",
    "complaint": "complaint",
    "foi": "Freedom of Information request",
    "eir": "Environmental Information request",
    "sar": "subject access request",
    "compliment": "compliment",
}


def case_context(
    cfg: Config, policy: Policy, case: Case | Row[Any], now: datetime, **extra: Any
) -> dict[str, Any]:
    """Everything a template may use about a case; the names are the clerk's vocabulary."""
    stage = policy.stage(case.category, case.stage)
    officer = cfg.officer(case.officer_email) if case.officer_email else None
    local = case.received_at.astimezone(ZoneInfo(policy.timezone))
    return {
        "council": {"name": cfg.council.name, "email": case.mailbox or cfg.council.mailbox_address},
        "case": {
            "ref": case.ref,
            "category": case.category,
            "category_name": CATEGORY_NAMES[case.category],
            "stage": case.stage,
            "status": case.status,
            "subject": case.subject or "(no subject)",
            "received_on": long_date(local.date()),
            # When this stage began: the review request's arrival, for an internal review.
            "stage_started_on": long_date(
                (getattr(case, "stage_started_at", None) or case.received_at)
                .astimezone(ZoneInfo(policy.timezone))
                .date()
            ),
            "respond_by": long_date(case.respond_by),
            "acknowledge_by": long_date(case.acknowledge_by),
            "priority": case.priority,
        },
        "resident": {"name": case.resident_name, "email": case.resident_email},
        "officer": {"name": officer.name, "email": officer.email, "phone": officer.phone}
        if officer
        else None,
        "stage": {"name": stage.name, "handler": stage.handler, "next_step": stage.next_step},
        "reopening": reopening_phrase(policy, now),
        **extra,
    }
