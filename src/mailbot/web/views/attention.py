"""Messages that need the clerk (failed or uncertain sends, held mail, template problems)
and each mailbox's health."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

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


# TODO(outbox resend/dismiss): `mailbot outbox resend ID` and `mailbot outbox dismiss ID`
# are being built in the outbox (another branch). Once they land, add two POST routes here
# that call them (with an audit entry each, Action.RESENT / Action.DISMISSED) and the
# buttons in pages/attention.html where its TODO is. Until then the page says which
# command to run.


@blueprint.get("/health")
@requires(Can.SEE_HEALTH)
def health() -> Any:
    with reading() as db:
        boxes = rules.mailbox_health(mailbot(), db, now())
        notices = rules.health_notices(db)
    return render_template("health.html", boxes=boxes, notices=notices)
