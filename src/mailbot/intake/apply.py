"""Apply: write what the intake chain decided about a message (chain.py), and record the
message with its outcome, in the transaction that reads it."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.orm import Session

from mailbot import lifecycle
from mailbot.app import App
from mailbot.intake.casework import (
    acknowledge,
    alert_welfare,
    follow_up,
    open_case,
    tell_officer_of_follow_up,
)
from mailbot.intake.chain import Disposition, Outcome
from mailbot.intake.message import Incoming
from mailbot.mailbox import FetchedMessage
from mailbot.officers import handle_staff_mail
from mailbot.parse import ParsedMessage
from mailbot.reasons import Reason
from mailbot.store import Case, InboundMessage

log = logging.getLogger("mailbot.pipeline")


def apply(
    app: App, session: Session, incoming: Incoming, decided: Disposition, now: datetime
) -> str:
    """Carry out `decided`; returns the outcome recorded with the message."""
    fetched, msg = incoming.fetched, incoming.msg
    outcome, reasons, case = decided.outcome, list(decided.reasons), decided.case
    if outcome is Outcome.BOUNCE:
        return _bounced(app, session, incoming, decided, now)
    if outcome is Outcome.STAFF:
        assert decided.staff is not None
        staff_outcome, reasons = handle_staff_mail(
            app,
            session,
            msg,
            case,
            sender=decided.staff,
            arrived=fetched.internal_date,
            from_sent_folder=incoming.sent,
            confirm_key=f"confirm:{fetched.folder}:{fetched.uidvalidity}:{fetched.uid}",
            now=now,
        )
        record(session, fetched, msg, staff_outcome, reasons, now, case)
        return staff_outcome
    if outcome is Outcome.FOLLOW_UP:
        assert case is not None
        follow_up(app, session, case, msg, fetched.internal_date, now)
        if not reasons:  # a person wrote it, not a machine: the officer hears
            tell_officer_of_follow_up(app, session, case, msg, now)
    elif outcome is Outcome.CASE_OPENED:
        assert decided.resident is not None
        box, decision = incoming.box, incoming.prepared.decision
        received = fetched.internal_date
        case = open_case(app, session, msg, received, now, box, decision, decided.resident)
        reasons = list(case.reasons)
        record(session, fetched, msg, outcome, reasons, now, case)
        acknowledge(app, session, case, msg, decided.resident.email, now, due_at=received)
        if case.priority == "high":
            alert_welfare(app, session, case, now)
        return outcome
    record(session, fetched, msg, outcome, reasons, now, case)
    return outcome


def _bounced(
    app: App, session: Session, incoming: Incoming, decided: Disposition, now: datetime
) -> str:
    """A delivery report about one of our messages: the message is marked bounced and
    the report joins its case's history (delayed delivery is a note)."""
    row, bounce = decided.bounced, incoming.prepared.bounce
    assert row is not None and bounce is not None
    case = session.get(Case, row.case_id) if row.case_id is not None else None
    why = bounce.describe()
    if bounce.failed:
        row.status, row.last_error = "bounced", f"bounced: {why}"[:1000]
        detail = (
            f"{row.kind} to {row.recipient} bounced: {why} "
            f"(mailbot outbox resend {row.id}, or dismiss {row.id})"
        )
    else:
        detail = f"delivery of the {row.kind} to {row.recipient} delayed: {why}"
    if case is not None:
        if bounce.failed:
            change = lifecycle.bounced(case, row.kind, detail)
        else:
            change = lifecycle.note(detail)
        lifecycle.record(app, session, case, change, now)
    reasons = [Reason(decided.step, detail)]
    record(session, incoming.fetched, incoming.msg, Outcome.BOUNCE, reasons, now, case)
    return Outcome.BOUNCE


def record(
    session: Session,
    fetched: FetchedMessage,
    msg: ParsedMessage | None,
    outcome: str,
    reasons: list[Reason],
    now: datetime,
    case: Case | None = None,
) -> None:
    # A plain INSERT: the ORM's unit of work costs more than the row, once a message.
    session.execute(
        insert(InboundMessage.__table__),
        dict(
            folder=fetched.folder,
            uidvalidity=fetched.uidvalidity,
            uid=fetched.uid,
            message_id=msg.message_id if msg else None,
            content_hash=msg.content_hash if msg else "",
            internal_date=fetched.internal_date,
            from_addr=msg.from_addr if msg else None,
            outcome=outcome,
            reasons=reasons,
            case_id=case.id if case else None,
            processed_at=now,
        ),
    )
    detail = outcome + (f": {reasons[0]}" if reasons else "")
    log.info(
        "%s",
        detail,
        extra={"case": case.ref if case else None, "uid": fetched.uid, "folder": fetched.folder},
    )
