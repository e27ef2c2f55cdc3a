"""The policy: read in plain English; office hours and closure days (clerk); the whole
file (admin). The rules are in mailbot.web.policy_page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from mailbot.policy import PolicyError
from mailbot.web import policy_page as rules
from mailbot.web.audit import Action
from mailbot.web.request import mailbot, now, person, requires, transaction
from mailbot.web.roles import Can

blueprint = Blueprint("policy", __name__)


def _editable() -> tuple[bool, str]:
    try:
        rules.editable_path(mailbot())
    except rules.NotEditable as exc:
        return False, str(exc)
    return True, ""


@blueprint.get("/policy")
def show() -> Any:
    app = mailbot()
    editable, why = _editable()
    return render_template(
        "policy.html",
        policy=app.policy,
        stages=rules.in_words(app),
        hours=rules.hours_in_words(app.policy),
        closures=[(d, rules.closure_day_in_words(d)) for d in app.policy.closure_days],
        editable=editable,
        why=why,
        path=rules.policy_path(app),
    )


def _hours_page(form: rules.HoursForm, problems: dict[str, str], status: int = 200) -> Any:
    editable, why = _editable()
    return render_template(
        "policy_hours.html",
        form=form,
        problems=problems,
        days=rules.DAY_NAMES,
        editable=editable,
        why=why,
    ), status


@blueprint.get("/policy/hours")
@requires(Can.EDIT_HOURS)
def hours() -> Any:
    return _hours_page(rules.HoursForm.of(mailbot().policy), {})


def _saved(action: Action, text: str) -> None:
    """Write the checked policy, audited, and use it here at once."""
    app = mailbot()
    with transaction() as db:
        rules.save_policy(app, db, text, actor=person().email, now=now(), action=action)
    app.reload()


@blueprint.post("/policy/hours")
@requires(Can.EDIT_HOURS)
def save_hours() -> Any:
    form = rules.HoursForm.read(
        request.form.getlist("days"),
        request.form.get("opens", ""),
        request.form.get("closes", ""),
        request.form.get("closure_days", ""),
    )
    problems = form.problems()
    if problems:
        return _hours_page(form, problems, 400)
    app = mailbot()
    try:
        path = rules.editable_path(app)
        text = rules.with_hours(path.read_text(encoding="utf-8"), form)
        _saved(Action.HOURS_CHANGED, text)
    except rules.NotEditable as exc:
        return _hours_page(form, {"": str(exc)}, 400)
    except PolicyError as exc:
        return _hours_page(form, {"": str(exc)}, 400)
    flash(
        f"Office hours are now {rules.hours_in_words(app.policy)}, with "
        f"{len(app.policy.closure_days)} closure day(s). mailbot run uses them from its next "
        "check of the mailbox.",
        "status",
    )
    return redirect(url_for("policy.show"))


def _file_page(text: str, error: PolicyError | str | None = None, status: int = 200) -> Any:
    editable, why = _editable()
    line = error.line if isinstance(error, PolicyError) else None
    return render_template(
        "policy_edit.html",
        text=text,
        error=str(error) if error else "",
        line=line,
        editable=editable,
        why=why,
        path=rules.policy_path(mailbot()),
    ), status


@blueprint.get("/policy/edit")
@requires(Can.EDIT_POLICY)
def edit() -> Any:
    return _file_page(rules.policy_path(mailbot()).read_text(encoding="utf-8"))


@blueprint.post("/policy/edit")
@requires(Can.EDIT_POLICY)
def save_file() -> Any:
    text = request.form.get("text", "")
    try:
        _saved(Action.POLICY_CHANGED, text)
    except rules.NotEditable as exc:
        return _file_page(text, str(exc), 400)
    except PolicyError as exc:
        return _file_page(text, exc, 400)
    flash("The policy is saved. mailbot run uses it from its next check of the mailbox.", "status")
    return redirect(url_for("policy.show"))
