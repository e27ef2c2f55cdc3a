"""Templates: edit with checks, preview as the reader gets it, versions and rollback,
and "send a test to me" (the rules are in mailbot.web.wording)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from markupsafe import escape
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from mailbot.letters import sample_context
from mailbot.store import Case, case_by_ref
from mailbot.templates import TemplateProblem
from mailbot.web import wording
from mailbot.web.models import TemplateVersion
from mailbot.web.request import mailbot, now, person, reading, requires, transaction
from mailbot.web.roles import Can

# A letter's HTML part as the resident's mail client shows it: its own inline styles and
# nothing else (no scripts, no forms), framed only by this console, in a sandboxed frame.
# (A "sandbox" directive here would make its origin opaque, and 'self' would then refuse
# our own page as the frame's parent.)
LETTER_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; "
    "frame-ancestors 'self'"
)


blueprint = Blueprint("wording", __name__)


def _name(name: str) -> str:
    try:
        return wording.check_name(name)
    except wording.NotEditable as exc:
        abort(404, description=str(exc))


@blueprint.get("/templates")
@requires(Can.EDIT_TEMPLATES)
def index() -> Any:
    app = mailbot()
    with reading() as db:
        latest = dict(
            db.execute(
                select(TemplateVersion.name, func.max(TemplateVersion.number)).group_by(
                    TemplateVersion.name
                )
            ).all()
        )
    groups: dict[str, list[dict[str, Any]]] = {}
    for filename in wording.template_files():
        _, own = wording.current_text(app, filename)
        groups.setdefault(wording.group_of(filename), []).append(
            {"file": filename, "own": own, "versions": latest.get(filename, 0)}
        )
    order = [title for title, _ in wording.GROUPS] + ["Other messages"]
    return render_template(
        "templates.html",
        groups=[(title, groups[title]) for title in order if title in groups],
        folder=app.cfg.council.templates,
    )


def _fields(context: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """The names a template may use, with their sample values: case.ref, officer.name ..."""
    out = []
    for key, value in context.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _fields(value, f"{name}.")
        elif not isinstance(value, list):
            out.append((name, "" if value is None else str(value)))
    return out


def _recent_cases() -> list[tuple[str, str]]:
    with reading() as db:
        rows = db.execute(select(Case.ref, Case.subject).order_by(Case.id.desc()).limit(100)).all()
    return [(ref, subject) for ref, subject in rows]


def _editor(
    name: str,
    *,
    text: str | None = None,
    ref: str = "",
    problems: list[wording.Problem] | None = None,
    preview: wording.Preview | None = None,
    previewed_draft: bool = False,
    status: int = 200,
) -> Any:
    app, me = mailbot(), person()
    current, own = wording.current_text(app, name)
    with reading() as db:
        draft = wording.draft_of(db, name, me.email)
        history = wording.version_diffs(db, name)
    if text is None:
        text = draft.text if draft is not None else current
    letter = wording.letter_name(name)
    fields = _fields(sample_context(app, letter)) if letter else []
    return render_template(
        "template_edit.html",
        name=name,
        text=text,
        own=own,
        draft=draft,
        unsaved=wording.normal(text) != current,
        ref=ref,
        cases=_recent_cases(),
        problems=problems or [],
        preview=preview,
        previewed_draft=previewed_draft,
        history=history,
        fields=fields,
        letter=letter,
        can_save=app.cfg.council.templates is not None,
    ), status


@blueprint.get("/templates/<name>")
@requires(Can.EDIT_TEMPLATES)
def edit(name: str) -> Any:
    return _editor(_name(name), ref=request.args.get("case", ""))


def _case(ref: str) -> Case | None:
    if not ref:
        return None
    with reading() as db:
        case = case_by_ref(db, ref)
        if case is not None:
            db.expunge(case)
        return case


@blueprint.post("/templates/<name>")
@requires(Can.EDIT_TEMPLATES)
def change(name: str) -> Any:
    name = _name(name)
    app, me, at = mailbot(), person(), now()
    text = wording.normal(request.form.get("text", ""))
    ref = request.form.get("case", "").strip()
    action = request.form.get("action", "preview")
    case = _case(ref)
    if ref and case is None:
        with transaction() as db:
            wording.keep_draft(db, name, me.email, text, at)
        return _editor(
            name,
            text=text,
            ref=ref,
            problems=[wording.Problem("", None, f"There is no case {ref[:40]}.")],
            status=400,
        )
    if action == "discard":
        with transaction() as db:
            wording.discard_draft(db, name, me.email)
        flash("Your draft was discarded.", "status")
        return redirect(url_for("wording.edit", name=name))
    if action == "save":
        try:
            with transaction() as db:
                version = wording.save(app, db, name, text, author=me.email, now=at, case=case)
                number = version.number
        except wording.Refused as refused:
            with transaction() as db:
                wording.keep_draft(db, name, me.email, text, at)
            return _editor(name, text=text, ref=ref, problems=refused.problems, status=400)
        except (wording.NotEditable, IntegrityError) as exc:
            why = str(exc)
            if isinstance(exc, IntegrityError):  # another save of this file just now
                why = "Someone saved this template at the same moment: check it and try again."
            with transaction() as db:
                wording.keep_draft(db, name, me.email, text, at)
            return _editor(
                name, text=text, ref=ref, problems=[wording.Problem("", None, why)], status=409
            )
        flash(
            f"Saved {name} as version {number}. mailbot uses it from the next message it writes.",
            "status",
        )
        return redirect(url_for("wording.edit", name=name, case=ref))
    # Check and preview, keeping what was typed.
    with transaction() as db:
        wording.keep_draft(db, name, me.email, text, at)
    problems = wording.check(app, name, text, case)
    if problems:
        return _editor(name, text=text, ref=ref, problems=problems, status=400)
    try:
        shown = wording.preview(app, name, text, ref or None)
    except TemplateProblem as exc:
        return _editor(
            name, text=text, ref=ref, problems=[wording.Problem("", None, str(exc))], status=400
        )
    return _editor(name, text=text, ref=ref, preview=shown, previewed_draft=True)


@blueprint.get("/templates/<name>/letter.html")
@requires(Can.EDIT_TEMPLATES)
def letter(name: str) -> Response:
    """The HTML part of a preview, for the frame on the editor page: served with its own
    strict policy, since a letter's HTML carries its own inline styles."""
    name = _name(name)
    ref = request.args.get("case", "") or None
    text = None
    if request.args.get("draft") == "1":
        with reading() as db:
            draft = wording.draft_of(db, name, person().email)
            text = draft.text if draft is not None else None
    try:
        html = wording.preview(mailbot(), name, text, ref).html
    except TemplateProblem as exc:
        html = f"<p>{escape(str(exc))}</p>"
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = LETTER_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


@blueprint.post("/templates/<name>/rollback")
@requires(Can.EDIT_TEMPLATES)
def rollback(name: str) -> Any:
    name = _name(name)
    number = request.form.get("number", "")
    if not number.isdigit():
        abort(400, description="Choose a version to roll back to.")
    try:
        with transaction() as db:
            version = wording.roll_back(
                mailbot(), db, name, int(number), author=person().email, now=now()
            )
            saved = version.number
    except wording.Refused as refused:
        return _editor(name, problems=refused.problems, status=400)
    except wording.NotEditable as exc:
        return _editor(name, problems=[wording.Problem("", None, str(exc))], status=400)
    what = "the built-in text" if number == "0" else f"version {number}"
    flash(f"{name} is back to {what} (saved as version {saved}).", "status")
    return redirect(url_for("wording.edit", name=name))


@blueprint.post("/templates/<name>/test")
@requires(Can.EDIT_TEMPLATES)
def test(name: str) -> Any:
    name = _name(name)
    ref = request.form.get("case", "").strip()
    me = person()
    try:
        with transaction() as db:
            letter = wording.send_test(mailbot(), db, name, to=me.email, ref=ref or None, now=now())
    except wording.NotEditable as exc:
        return _editor(name, ref=ref, problems=[wording.Problem("", None, str(exc))], status=400)
    flash(
        f"A test of {letter} (as saved) is queued to {me.email}; mailbot run sends it within "
        "a minute.",
        "status",
    )
    return redirect(url_for("wording.edit", name=name, case=ref))
