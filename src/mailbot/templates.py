"""Templates: render the clerk's Jinja2 templates in a sandbox into a subject, text and HTML."""

from __future__ import annotations

import hashlib
import os
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
from mailbot.categories import KINDS
from mailbot.commandline import defuse
from mailbot.commands import HelpLines
from mailbot.parse import clean_text
from mailbot.resources import builtin_dir
from mailbot.sandbox import BoundedSandbox, Budget, TemplateTooCostly

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
    # Which text of the template wrote it, "name@fingerprint" (see `fingerprint`); the
    # outbox keeps it with the message and the console names the saved version.
    version: str = ""


def fingerprint(source: str) -> str:
    """A short name for one text of a template: the same text always gets the same one."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


@lru_cache(maxsize=256)
def _file_fingerprint(path: str, mtime_ns: int, size: int) -> str:
    """A template file's fingerprint, read again only when the file changes."""
    return fingerprint(Path(path).read_text(encoding="utf-8"))


def _version_of(name: str, filename: str | None) -> str:
    try:
        stat = os.stat(filename) if filename else None
    except OSError:
        stat = None
    if stat is None:
        return f"{name}@unknown"
    return f"{name}@{_file_fingerprint(filename, stat.st_mtime_ns, stat.st_size)}"


class Templates:
    """The built-in templates, with the clerk's folder of overrides searched first.

    The built-in templates are ours and run in Jinja2's plain sandbox. Once a clerk's
    folder is in play, every template runs in the bounded one (mailbot.sandbox), which
    also limits the time, text and arithmetic a template may use.
    """

    def __init__(self, override_dir: Path | None = None, budget: Budget | None = None) -> None:
        folders = [str(override_dir)] if override_dir else []
        folders.append(str(builtin_dir("templates")))
        self.folders = folders
        options: dict[str, Any] = {
            "loader": ChoiceLoader([FileSystemLoader(f) for f in folders]),
            "undefined": StrictUndefined,  # a misspelt variable is an error, not a blank
            "autoescape": lambda name: bool(name and name.endswith(".html")),
            "keep_trailing_newline": False,
        }
        self.env: SandboxedEnvironment = (
            BoundedSandbox(budget, **options) if override_dir else SandboxedEnvironment(**options)
        )
        # The officers' commands, for the help in staff mail: from their one table.
        self.env.globals["commands"] = HelpLines()
        # Templates of the clerk's that ran out of time, with the problem and the folder's
        # state then: each would cost the whole time budget again for every message, so
        # the built-in one is used straight away until the folder changes.
        self._too_slow: dict[str, tuple[str, int]] = {}

    def render(self, name: str, context: dict[str, Any], *, staff: bool = False) -> Rendered:
        """Render `name`.txt; the HTML part is the same text in the shared HTML layout.

        `staff`: for council staff, whose replies are read for #commands; no line of it
        may read as one (commandline.defuse), whatever a resident's name or subject says.
        Anything that goes wrong, Jinja's errors or any other (a number too large, a
        template that includes itself), is a TemplateProblem naming the file and line.
        """
        try:
            template = self.env.get_template(f"{name}.txt")
            text = self._render(f"{name}.txt", context).strip() + "\n"
            if staff:
                text = defuse(text)
            paragraphs = [p.splitlines() for p in text.split("\n\n") if p.strip()]
            html = self._render("_layout.html", {**context, "paragraphs": paragraphs})
        except Exception as exc:
            raise TemplateProblem(_where(exc, name)) from exc
        return Rendered(text=text, html=html, version=_version_of(name, template.filename))

    def _render(self, file: str, context: dict[str, Any]) -> str:
        if isinstance(self.env, BoundedSandbox):
            return self.env.render_template(file, context)
        return self.env.get_template(file).render(context)

    def names(self) -> set[str]:
        """Template names (without .txt) available from any folder."""
        return {n.removesuffix(".txt") for n in self.env.list_templates() if n.endswith(".txt")}

    def render_safe(
        self, name: str, context: dict[str, Any], *, staff: bool = False
    ) -> tuple[Rendered, str | None]:
        """Render, falling back to the built-in template and then to plain wording.

        A clerk's broken edit must never stop acknowledgements; the problem is returned
        so the caller can log it and tell the clerk. This never raises.
        """
        slow = self._too_slow.get(name)
        if slow is not None and slow[1] == self._folder_stamp():
            problem = slow[0]
        else:
            try:
                return self.render(name, context, staff=staff), None
            except TemplateProblem as exc:
                problem = str(exc)
                if isinstance(exc.__cause__, TemplateTooCostly) and "took longer" in problem:
                    self._too_slow[name] = (problem, self._folder_stamp())
        if len(self.folders) > 1:
            try:
                return builtin_templates().render(name, context, staff=staff), problem
            except TemplateProblem:
                pass
        case = context.get("case") or {}
        text = (
            f"Thank you for your message. Your reference is {case.get('ref', '')}.\n"
            f"We will reply by {case.get('respond_by', '')}.\n"
        )
        return Rendered(text=text, html=f"<p>{escape(text)}</p>", version=f"{name}@none"), problem

    def _folder_stamp(self) -> int:
        """The latest change to the clerk's folder (0 if it cannot be read)."""
        try:
            with os.scandir(self.folders[0]) as entries:
                return max((e.stat().st_mtime_ns for e in entries), default=0)
        except OSError:
            return 0


@lru_cache(maxsize=1)
def builtin_templates() -> Templates:
    """The built-in templates alone: what a clerk's broken template falls back to."""
    return Templates(None)


# What a clerk reads for the errors that are not Jinja's own.
_PLAIN_ERRORS = {
    RecursionError: "the template includes or calls itself without end",
    MemoryError: "the template needs more memory than a letter can",
}


def _where(exc: Exception, name: str) -> str:
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
    if isinstance(exc, TemplateError | TemplateTooCostly | OverflowError):
        message = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    else:
        plain = next((text for kind, text in _PLAIN_ERRORS.items() if isinstance(exc, kind)), "")
        message = plain or f"{type(exc).__name__}: {exc}"
    where = f"{filename or name + '.txt'}:" + (f"{lineno}:" if lineno else "")
    return clean_text(f"{where} {message}", 500)


@lru_cache(maxsize=4096)  # a scheduler pass writes the same few dates thousands of times
def long_date(day: date) -> str:
    """'Friday 18 December 2026', as letters write dates."""
    return f"{day:%A} {day.day} {day:%B %Y}"


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
            "category_name": KINDS[case.category].name,
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
