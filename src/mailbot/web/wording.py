"""Wording: the clerk edits a template in the console (issue 20, point 3).

An edit is checked in the same sandbox the daemon renders in before it can replace the
working text: Jinja2 must read it, every name and field it uses must exist, and every
letter must still render with it in place (against sample data, and the chosen case).
Anything wrong blocks the save and names the line; what was typed is kept as a draft.

A save writes the clerk's file into `[council] templates` (the daemon notices the folder
change and reads it; see daemon.py) and keeps the text as a numbered version in the
database, with its author, time and a diff from the one before. Rolling back saves an
older text again as a new version, so the history only grows.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from jinja2 import BaseLoader, ChoiceLoader, TemplateNotFound, TemplateSyntaxError, meta, nodes
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mailbot.app import App
from mailbot.letters import check_all, preview_message, sample_context
from mailbot.outbox import Letter, queue
from mailbot.resources import builtin_dir
from mailbot.store import Case, case_by_ref
from mailbot.templates import TemplateProblem, Templates, case_context, fingerprint
from mailbot.web.audit import Action, record
from mailbot.web.models import TemplateDraft, TemplateVersion

_FILE = re.compile(r"^_?[a-z0-9][a-z0-9-]{0,80}\.(txt|html)$")
_PROBLEM = re.compile(r"^(?P<file>.*?):(?P<line>\d+|\?): (?P<message>.*)$", re.DOTALL)
MAX_TEXT = 100_000  # characters: far more than any letter, little enough to keep

# Jinja2's own names, usable in any template.
_GLOBALS = frozenset(
    {"range", "dict", "lipsum", "cycler", "joiner", "namespace", "loop", "commands"}
)

# How the console groups the files, in the clerk's words.
GROUPS = (
    ("To residents", ("acknowledgement", "holding", "clarification", "stage-change")),
    (
        "To staff",
        (
            "assigned",
            "reminder",
            "breach",
            "digest",
            "welfare-alert",
            "follow-up",
            "command-confirmation",
            "mailbot-health",
            "template-problem",
        ),
    ),
    ("Shared by every message", ("_",)),
)


class NotEditable(Exception):
    """A file the console will not write, or cannot; one line for the clerk."""


@dataclass(frozen=True)
class Problem:
    """Something wrong with an edit: where (file and line, when known) and what."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file} line {self.line}" if self.line else self.file
        return f"{where}: {self.message}"


class Refused(Exception):
    """The edit did not check out; nothing was saved (the draft is kept)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


# --- which files, and their texts -------------------------------------------------------


def builtin_folder() -> Path:
    return builtin_dir("templates")


def template_files() -> list[str]:
    """Every template file a clerk may edit, by file name (the shipped set)."""
    return sorted(p.name for p in builtin_folder().iterdir() if _FILE.match(p.name))


def check_name(filename: str) -> str:
    if not _FILE.match(filename) or filename not in template_files():
        raise NotEditable(f"{filename[:100]!r} is not one of mailbot's templates")
    return filename


def letter_name(filename: str) -> str | None:
    """The letter a file is (acknowledgement-foi.txt: acknowledgement-foi); None for the
    shared layouts, which are part of every letter."""
    if filename.startswith("_") or not filename.endswith(".txt"):
        return None
    return filename.removesuffix(".txt")


def group_of(filename: str) -> str:
    for title, starts in GROUPS:
        if any(filename.startswith(s) for s in starts):
            return title
    return "Other messages"


def builtin_text(filename: str) -> str:
    return (builtin_folder() / check_name(filename)).read_text(encoding="utf-8")


def override_path(app: App, filename: str) -> Path | None:
    folder = app.cfg.council.templates
    return folder / check_name(filename) if folder else None


def current_text(app: App, filename: str) -> tuple[str, bool]:
    """The text in use, and whether it is the council's own (else the built-in one)."""
    path = override_path(app, filename)
    if path is not None and path.is_file():
        return path.read_text(encoding="utf-8"), True
    return builtin_text(filename), False


def normal(text: str) -> str:
    """As a browser's text box sends it (CR LF) made into the file's line endings."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --- checking an edit --------------------------------------------------------------------


class _Draft(BaseLoader):
    """One file's unsaved text, found before the folders' files."""

    def __init__(self, filename: str, text: str) -> None:
        self.filename, self.text = filename, text

    def get_source(self, environment: Any, template: str) -> tuple[str, str, Any]:
        if template != self.filename:
            raise TemplateNotFound(template)
        # Named by the file name, so a problem is reported as "filename:line".
        return self.text, self.filename, lambda: True

    def list_templates(self) -> list[str]:
        return [self.filename]


def with_draft(app: App, filename: str, text: str) -> Templates:
    """The council's templates with `text` in place of `filename`, in the daemon's sandbox."""
    templates = Templates(app.cfg.council.templates)
    templates.env.loader = ChoiceLoader([_Draft(filename, text), templates.env.loader])
    return templates


def _contexts(app: App, filename: str, case: Case | None) -> list[dict[str, Any]]:
    """The data the file is rendered with: its own letter's sample (and the case's), or,
    for a shared layout, every letter's."""
    name = letter_name(filename)
    names = [name] if name else sorted(n for n in app.templates.names() if not n.startswith("_"))
    found = [sample_context(app, n) for n in names]
    if case is not None and name:
        found.append(sample_context(app, name, case))
    if filename.endswith(".html"):
        found = [{**c, "paragraphs": [["A line."]]} for c in found]
    return found


def _static_problems(
    tree: nodes.Template, filename: str, contexts: list[dict[str, Any]]
) -> list[Problem]:
    """Names and fields that no letter gives this file, found without running it: a
    misspelling inside an {% if %} that the sample data never enters is found too."""
    known: dict[str, Any] = {}
    for context in contexts:
        for key, value in context.items():
            if isinstance(value, dict) and isinstance(known.get(key), dict):
                known[key] = {**known[key], **value}
            elif key not in known or known[key] is None:
                known[key] = value
    problems = []
    # A name the template itself asks about ("{% if writer is defined %}") or gives a
    # default ("{{ html_lang|default('en') }}") is optional.
    optional = {
        node.node.name
        for node in tree.find_all((nodes.Test, nodes.Filter))
        if node.name in ("defined", "default", "d") and isinstance(node.node, nodes.Name)
    }
    undeclared = meta.find_undeclared_variables(tree) - _GLOBALS - optional
    reported: set[str] = set()
    for node in tree.find_all(nodes.Name):
        unknown = node.ctx == "load" and node.name in undeclared and node.name not in known
        if unknown and node.name not in reported:
            reported.add(node.name)
            choices = ", ".join(sorted(known))
            problems.append(
                Problem(filename, node.lineno, f"unknown name '{node.name}' (known: {choices})")
            )
    for node in tree.find_all(nodes.Getattr):
        base = node.node
        if not (isinstance(base, nodes.Name) and base.name in undeclared):
            continue
        value = known.get(base.name)
        if isinstance(value, dict) and node.attr not in value and not hasattr(dict, node.attr):
            fields = ", ".join(sorted(value))
            problems.append(
                Problem(
                    filename,
                    node.lineno,
                    f"'{base.name}' has no field '{node.attr}' (it has: {fields})",
                )
            )
    return sorted(problems, key=lambda p: (p.line or 0, p.message))


def _rendering_problems(app: App, templates: Templates) -> set[str]:
    return set(check_all(dataclasses.replace(app, templates=templates)))


def _as_problem(line: str) -> Problem:
    found = _PROBLEM.match(line)
    if not found:
        return Problem("", None, line)
    number = found["line"]
    return Problem(
        Path(found["file"]).name, int(number) if number.isdigit() else None, found["message"]
    )


def check(app: App, filename: str, text: str, case: Case | None = None) -> list[Problem]:
    """Everything that stops `text` replacing `filename`; an empty list means it may."""
    check_name(filename)
    text = normal(text)
    if len(text) > MAX_TEXT:
        return [Problem(filename, None, f"too long: at most {MAX_TEXT:,} characters")]
    try:
        tree = app.templates.env.parse(text, filename, filename)
    except TemplateSyntaxError as exc:
        return [Problem(filename, exc.lineno, exc.message or "Jinja2 cannot read this")]
    problems = _static_problems(tree, filename, _contexts(app, filename, case))
    if problems:
        return problems
    draft = with_draft(app, filename, text)
    before = _rendering_problems(app, Templates(app.cfg.council.templates))
    after = _rendering_problems(app, draft)
    found = [_as_problem(p) for p in sorted(after) if p not in before or filename in p]
    name = letter_name(filename) or (f"acknowledgement-{case.category}" if case else None)
    if case is not None and name:
        try:
            draft.render(name, sample_context(app, name, case))
        except TemplateProblem as exc:
            found.append(_as_problem(str(exc)))
    return found


# --- previews -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    """A message as its reader gets it: the headers that matter, and both parts."""

    letter: str
    headers: list[tuple[str, str]]
    text: str
    html: str


PREVIEW_HEADERS = ("From", "To", "Subject", "Date", "Reply-To", "Auto-Submitted", "In-Reply-To")


def preview(app: App, filename: str, text: str | None, ref: str | None) -> Preview:
    """The message the file (as saved, or with `text` in place) writes, with sample data or
    about the case `ref`. A shared layout is shown in a letter that uses it."""
    templates = with_draft(app, filename, normal(text)) if text is not None else None
    drafted = dataclasses.replace(app, templates=templates) if templates else app
    name = letter_name(filename)
    if name is None:
        category = _category_of(app, ref) if ref else "enquiry"
        name = "assigned" if filename == "_staff.txt" else f"acknowledgement-{category}"
    message: EmailMessage = preview_message(drafted, name, ref)
    text_part = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    return Preview(
        letter=name,
        headers=[(h, str(message[h])) for h in PREVIEW_HEADERS if message[h] is not None],
        text=text_part.get_content() if text_part is not None else "",
        html=html_part.get_content() if html_part is not None else "",
    )


def _category_of(app: App, ref: str) -> str:
    with app.sessions() as session:
        case = case_by_ref(session, ref)
        if case is None:
            raise TemplateProblem(f"no case {ref}")
        return case.category


# --- drafts, versions, saving -----------------------------------------------------------


def draft_of(session: Session, filename: str, author: str) -> TemplateDraft | None:
    return session.scalar(
        select(TemplateDraft).where(TemplateDraft.name == filename, TemplateDraft.author == author)
    )


def keep_draft(session: Session, filename: str, author: str, text: str, now: datetime) -> None:
    draft = draft_of(session, filename, author)
    if draft is None:
        session.add(TemplateDraft(name=filename, author=author, text=normal(text), at=now))
    else:
        draft.text, draft.at = normal(text), now


def discard_draft(session: Session, filename: str, author: str) -> None:
    session.execute(
        delete(TemplateDraft).where(TemplateDraft.name == filename, TemplateDraft.author == author)
    )


def versions(session: Session, filename: str) -> list[TemplateVersion]:
    """Newest first."""
    return list(
        session.scalars(
            select(TemplateVersion)
            .where(TemplateVersion.name == filename)
            .order_by(TemplateVersion.number.desc())
        )
    )


def _add_version(
    session: Session, filename: str, text: str, author: str, now: datetime, note: str
) -> TemplateVersion:
    number = (
        session.scalar(
            select(func.max(TemplateVersion.number)).where(TemplateVersion.name == filename)
        )
        or 0
    ) + 1
    version = TemplateVersion(
        name=filename,
        number=number,
        text=text,
        fingerprint=fingerprint(text),
        author=author,
        at=now,
        note=note,
    )
    session.add(version)
    session.flush()
    return version


def _write(path: Path, text: str | None) -> None:
    """Replace the clerk's file in one step (the daemon never reads half a file);
    None removes it, so the built-in text is used again."""
    if text is None:
        path.unlink(missing_ok=True)
        return
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.chmod(temporary, 0o640)
    os.replace(temporary, path)


def _writable_path(app: App, filename: str) -> Path:
    path = override_path(app, filename)
    if path is None:
        raise NotEditable(
            "templates cannot be saved: set [council] templates in mailbot.toml to a folder "
            "mailbot can write, e.g. /etc/mailbot/templates"
        )
    if not path.parent.is_dir():
        raise NotEditable(f"templates cannot be saved: the folder {path.parent} does not exist")
    return path


def save(
    app: App,
    session: Session,
    filename: str,
    text: str,
    *,
    author: str,
    now: datetime,
    note: str = "",
    case: Case | None = None,
    action: Action = Action.TEMPLATE_SAVED,
) -> TemplateVersion:
    """Check and save a new text; Refused (with the problems) if it does not check out.

    The version and its audit entry are in the caller's transaction; the file is written
    last, so a refused or failed save leaves the working text as it was.
    """
    text = normal(text)
    path = _writable_path(app, filename)
    problems = check(app, filename, text, case)
    if problems:
        raise Refused(problems)
    before, own = current_text(app, filename)
    history = versions(session, filename)
    if own and (not history or history[0].text != before):
        # Changed on the server by hand since the console last saved it: keep that too.
        _add_version(session, filename, before, "(changed outside the console)", now, "")
    version = _add_version(session, filename, text, author, now, note)
    record(
        session,
        actor=author,
        action=action,
        target=filename,
        now=now,
        before=before,
        after=text + (f"\n[{note}]" if note else ""),
    )
    discard_draft(session, filename, author)
    _write(path, text)
    return version


def roll_back(
    app: App, session: Session, filename: str, number: int, *, author: str, now: datetime
) -> TemplateVersion:
    """Save version `number`'s text again (0: the built-in text, the clerk's file removed)."""
    if number == 0:
        text, note = builtin_text(filename), "back to the built-in text"
    else:
        old = session.scalar(
            select(TemplateVersion).where(
                TemplateVersion.name == filename, TemplateVersion.number == number
            )
        )
        if old is None:
            raise NotEditable(f"{filename} has no version {number}")
        text, note = old.text, f"rolled back to version {number}"
    if number != 0:
        return save(
            app,
            session,
            filename,
            text,
            author=author,
            now=now,
            note=note,
            action=Action.TEMPLATE_ROLLED_BACK,
        )
    path = _writable_path(app, filename)
    before, _ = current_text(app, filename)
    version = _add_version(session, filename, text, author, now, note)
    record(
        session,
        actor=author,
        action=Action.TEMPLATE_ROLLED_BACK,
        target=filename,
        now=now,
        before=before,
        after=note,
    )
    _write(path, None)
    return version


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "added" | "removed" | "same" | "where"
    text: str


def diff(old: str, new: str) -> list[DiffLine]:
    """What changed, line by line, with three lines around each change."""
    kinds = {"+": "added", "-": "removed", " ": "same", "@": "where"}
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=3)
    return [DiffLine(kinds[line[0]], line) for line in list(lines)[2:] if line]


def version_diffs(session: Session, filename: str) -> list[tuple[TemplateVersion, list[DiffLine]]]:
    """Each version with its changes from the one before it (the first: from built-in)."""
    history = versions(session, filename)
    out = []
    for index, version in enumerate(history):
        before = history[index + 1].text if index + 1 < len(history) else builtin_text(filename)
        out.append((version, diff(before, version.text)))
    return out


def version_label(session: Session, template_version: str | None) -> str:
    """What an outbox row's template version was, in the clerk's words."""
    if not template_version or "@" not in template_version:
        return "not recorded"
    name, _, mark = template_version.rpartition("@")
    if mark == "none":
        return "plain wording (the template could not be used)"
    filename = f"{name}.txt"
    saved = session.scalar(
        select(TemplateVersion.number)
        .where(TemplateVersion.name == filename, TemplateVersion.fingerprint == mark)
        .order_by(TemplateVersion.number.desc())
        .limit(1)
    )
    if saved is not None:
        return f"{filename} version {saved}"
    try:
        if fingerprint(builtin_text(filename)) == mark:
            return f"{filename}, built-in text"
    except (NotEditable, OSError):
        pass
    return f"{filename}, a text not saved in the console ({mark})"


# --- "send a test to me" ------------------------------------------------------------------


def send_test(
    app: App, session: Session, filename: str, *, to: str, ref: str | None, now: datetime
) -> str:
    """Queue the saved letter to `to`, written as for the case `ref` or the sample case.

    The letter carries its data with it rather than pointing at the case, so the case's
    history and dates are not touched by a test.
    """
    name = letter_name(filename)
    if name is None:
        name = "acknowledgement-enquiry"
    case = None
    if ref:
        case = case_by_ref(session, ref)
        if case is None:
            raise NotEditable(f"no case {ref}")
    context = (
        case_context(app.cfg, app.policy, case, now)
        if case is not None
        else sample_context(app, name)
    )
    context = {k: v for k, v in context.items() if k != "council"}
    letter = Letter(
        kind="test",
        template=name,
        recipient=to,
        subject=f"Test of {filename}" + (f" about {case.ref}" if case else " with sample data"),
        audience="staff",
        extra=context,
    )
    queue(
        session,
        [(f"test:{filename}:{to}:{now.isoformat()}", letter, None)],
        mailbox_address=app.cfg.council.mailbox_address,
        now=now,
    )
    record(session, actor=to, action=Action.TEST_SENT, target=filename, now=now, after=ref or "")
    return name
