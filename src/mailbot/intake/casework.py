"""Casework: what intake writes for a resident's message: a new case with its dates,
officer and acknowledgement, or a follow-up to a case it already has."""

from __future__ import annotations

import functools
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert

from mailbot import faults, lifecycle
from mailbot.app import App
from mailbot.classify import WELFARE, Classification, classify, scored_text
from mailbot.config import ImapConfig
from mailbot.letters import subject_for
from mailbot.lifecycle import (
    CommandError,
    choosing,
    escalate,
    record,
    resident_replied,
    set_language,
)
from mailbot.outbox import Letter, notify_officer, notify_role, queue
from mailbot.parse import ParsedMessage
from mailbot.planning import local_today
from mailbot.resident import Resident, resident_of
from mailbot.route import choose_officer
from mailbot.store import Case, add_event, next_reference
from mailbot.welsh import is_welsh


def classify_for(app: App, msg: ParsedMessage, box: ImapConfig) -> Classification:
    """The category of a message to `box`, by the policy's rules and the model."""
    return classify(msg, app.rules, model=app.model(), mailbox_default=box.default_category)


@functools.cache
def _open_case_statement() -> ReturningInsert[tuple[int]]:
    # Built once: building costs more than running it.
    return insert(Case.__table__).returning(Case.__table__.c.id)


def open_case(
    app: App,
    session: Session,
    msg: ParsedMessage,
    received_at: datetime,
    now: datetime,
    box: ImapConfig | None = None,
    decision: Classification | None = None,
    resident: Resident | None = None,
) -> Case:
    """Classify (unless `decision` is given), route and record a new case with its
    promised dates; `box` is the mailbox it came in to ([imap] when not given), and
    `resident` whom it is for (unless given, as resident.resident_of finds them)."""
    box = box or app.cfg.imap
    resident = resident or resident_of(msg)
    decision = decision or classify_for(app, msg, box)
    faults.crash_point("after-classify")
    stage = app.policy.stage(decision.category, 1)
    welsh = app.policy.language == "cy-en" and is_welsh(decision.text or " ".join(scored_text(msg)))
    officer = choose_officer(session, app.cfg, stage.role)
    faults.crash_point("after-route")
    year = received_at.astimezone(ZoneInfo(app.policy.timezone)).year
    case, opened = lifecycle.open_case(
        app.policy,
        next_reference(session, decision.category, year),
        msg,
        resident,
        decision,
        officer,
        received_at,
        now,
        policy_name=app.cfg.council.policy,
        mailbox=app.cfg.address_of(box),
        welsh=welsh,
    )
    # A plain INSERT of the values set above (the columns' defaults fill the rest): the
    # ORM's unit of work costs more than the row. The case is returned unattached.
    values = {key: value for key, value in vars(case).items() if not key.startswith("_")}
    case.id = session.execute(_open_case_statement(), values).scalar_one()
    record(app, session, case, opened, now)
    return case


def follow_up(
    app: App, session: Session, case: Case, msg: ParsedMessage, arrived: datetime, now: datetime
) -> None:
    """A resident's further message on a case: it may answer a clarification or send
    proof of identity, or ask for the next stage (a complaint's, or an FOI or EIR
    request's internal review) in any wording the classification rules know."""
    stranger = "" if msg.from_addr == case.resident_email else " (not the case's resident)"
    add_event(session, case, now, "note", f"follow-up received from {msg.from_addr}{stranger}")
    if stranger:
        return
    if (
        app.policy.language == "cy-en"
        and case.language != "cy"
        and is_welsh(" ".join(scored_text(msg)))
    ):
        # Welsh Language Standard 1: Welsh is answered in Welsh, from now on.
        why = "the resident wrote in Welsh: letters now in Welsh"
        record(app, session, case, set_language(case, "cy", "Welsh", why), now)
    if case.clock_stopped:
        record(app, session, case, resident_replied(app.policy, case, arrived), arrived)
    if app.policy.final_stage(case.category) == 1:
        return
    if not classify(msg, app.rules).escalation_requested:
        return
    what = "a review" if case.category == "complaint" else "an internal review"
    if case.category != "complaint" and not _decided(app, case, now):
        # There is no decision to review yet: the officer hears of it, nothing moves.
        add_event(session, case, now, "note", f"{what} asked for before the response was sent")
        return
    try:
        why = f"the resident asked for {what}"
        change = escalate(app.policy, case, choosing(app, session), now, why, received_at=arrived)
        record(app, session, case, change, now)
    except CommandError as exc:
        add_event(session, case, now, "note", f"{what} asked for, but {exc}")


def _decided(app: App, case: Case, now: datetime) -> bool:
    """An FOI or EIR request has something to review: it was answered, or closed, or
    its response date has passed (a late response may be reviewed too)."""
    return case.status != "open" or case.respond_by < local_today(app.policy, now)


def alert_welfare(app: App, session: Session, case: Case, now: datetime) -> None:
    """Welfare or vulnerability wording: tell the duty officer at once, day or night."""
    # As the letter shows them (its extra is kept with the outbox row, as JSON).
    reasons = [str(r) for r in case.reasons if r.rule == WELFARE]
    notify_role(
        app,
        session,
        case,
        role=app.policy.welfare_alert_role,
        template="welfare-alert",
        kind="welfare-alert",
        subject=subject_for("welfare-alert", case),
        key=f"welfare:{case.ref}",
        extra={"welfare_reasons": reasons},
        now=now,
        at_once=True,
    )
    add_event(session, case, now, "note", f"high priority; {app.policy.welfare_alert_role} alerted")


def tell_officer_of_follow_up(
    app: App, session: Session, case: Case, msg: ParsedMessage, now: datetime
) -> None:
    """The handling officer hears that the resident wrote again. The resident gets no
    automatic reply to a follow-up: that is how two auto-responders start a loop."""
    about, extra = case.subject or case.ref, {}
    if msg.from_addr == case.resident_email:
        subject = f"The resident wrote again: {about}"
    else:  # someone else who named the case, or quoted one of our letters
        subject = f"{msg.from_addr} wrote about this case: {about}"
        extra = {"writer": msg.from_addr}
    notify_officer(
        app,
        session,
        case,
        template="follow-up-received",
        kind="follow-up",
        subject=subject,
        key=f"follow-up:{case.ref}:{msg.message_id or msg.content_hash}",
        now=now,
        extra=extra,
    )


def acknowledge(
    app: App,
    session: Session,
    case: Case,
    msg: ParsedMessage,
    recipient: str,
    now: datetime,
    due_at: datetime | None = None,
) -> None:
    """Queue the acknowledgement; the outbox sends it after this transaction commits.

    `due_at`: when it fell due (default now); intake gives the message's arrival, so mail
    that arrived during a shadow trial is not acknowledged once mailbot is live."""
    # In doubt, an acknowledgement that promises nothing a later #category would make
    # untrue: no category, officer or date.
    letter = Letter(
        kind="acknowledgement",
        template="acknowledgement-triage" if case.triage else f"acknowledgement-{case.category}",
        recipient=recipient,
        to_name=case.resident_name,
        subject=subject_for("acknowledgement", case),
        audience="resident",
        in_reply_to=msg.message_id,
        references=msg.references,
        extra={"officer": None} if case.triage else {},
    )
    queue(
        session,
        [(f"ack:{case.ref}", letter, case.id)],
        mailbox_address=case.mailbox or app.cfg.council.mailbox_address,
        now=now,
        due_at=due_at,
    )
