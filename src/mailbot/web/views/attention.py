"""Messages that need the clerk (failed or uncertain sends, held mail, template problems)
and each mailbox's health."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from mailbot import unsent
from mailbot.app import App
from mailbot.web import attention as rules
from mailbot.web.audit import Action, record
from mailbot.web.request import mailbot, now, person, reading, requires, transaction
from mailbot.web.roles import Can

log = logging.getLogger("mailbot.web")
blueprint = Blueprint("attention", __name__)


@blueprint.get("/attention")
@requires(Can.HANDLE_HELD)
def show() -> Any:
    with reading() as db:
        found = rules.needing_attention(mailbot(), db, now())
    return render_template("attention.html", found=found, error=request.args.get("error", ""))


@blueprint.post("/attention/release")
@requires(Can.HANDLE_HELD)
def release() -> Any:
    """Open and acknowledge the case of a held message: `mailbot release`'s own code."""
    from mailbot.daemon import CONNECTION_ERRORS
    from mailbot.release import ReleaseError
    from mailbot.release import release as release_message

    name = request.form.get("message", "").strip()[:300]
    try:
        said = release_message(mailbot(), name)
    except ReleaseError as exc:
        flash(str(exc), "error")
        return redirect(url_for("attention.show"))
    except CONNECTION_ERRORS as exc:  # the mailbox could not be reached to read it again
        log.error("release %s: %s", name, exc)
        flash(f"The mailbox cannot be reached to read {name} again: {exc}", "error")
        return redirect(url_for("attention.show"))
    with transaction() as db:
        record(db, actor=person().email, action=Action.RELEASED, target=name, now=now(), after=said)
    flash(said[:1].upper() + said[1:] + ".", "status")
    return redirect(url_for("attention.show"))


@blueprint.post("/attention/resend")
@requires(Can.HANDLE_HELD)
def resend() -> Any:
    """Send a message that did not go again, once: `mailbot outbox resend`'s own code."""
    return _on_unsent(unsent.resend, Action.RESENT)


@blueprint.post("/attention/dismiss")
@requires(Can.HANDLE_HELD)
def dismiss() -> Any:
    """Put a message that did not go aside: `mailbot outbox dismiss`'s own code."""
    return _on_unsent(unsent.dismiss, Action.DISMISSED)


def _on_unsent(act: Callable[[App, int], str], action: Action) -> Any:
    given = request.form.get("id", "").strip()[:20]
    if not given.isdigit():
        flash(f"No outbox message {given!r}.", "error")
        return redirect(url_for("attention.show"))
    try:
        said = act(mailbot(), int(given))
    except unsent.UnsentError as exc:
        flash(str(exc)[:1].upper() + str(exc)[1:] + ".", "error")
        return redirect(url_for("attention.show"))
    with transaction() as db:
        record(db, actor=person().email, action=action, target=given, now=now(), after=said)
    flash(said[:1].upper() + said[1:].rstrip(".") + ".", "status")
    return redirect(url_for("attention.show"))


@blueprint.get("/health")
@requires(Can.SEE_HEALTH)
def health() -> Any:
    with reading() as db:
        boxes = rules.mailbox_health(mailbot(), db, now())
        notices = rules.health_notices(db)
    return render_template("health.html", boxes=boxes, notices=notices)
