"""Retention: anonymise the personal data of long-closed cases, keeping anonymous figures."""

from __future__ import annotations

import calendar
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, null, or_, select, update
from sqlalchemy.orm import Session

from mailbot.policy import Duration, Policy
from mailbot.reasons import Reason
from mailbot.store import Case, CaseEvent, InboundMessage, OutboxMessage

log = logging.getLogger("mailbot.retention")

# Six years after closure when a policy names no period: the Limitation Act 1980 (s.2,
# s.5) lets a claim about a case be brought for six years, and most councils' retention
# schedules keep complaint and FOI correspondence for "closure + 6 years" for that reason.
DEFAULT_RETENTION = Duration(amount=72, unit="calendar_months")

REMOVED_SUBJECT = "(removed)"
# Outbox rows still waiting to go are left alone: emptying one would break its sending.
_UNSENT = ("pending", "sending")


@dataclass
class PurgeResult:
    cutoff: datetime
    retention: str
    dry_run: bool
    cases: int = 0
    events: int = 0
    outbox: int = 0
    messages: int = 0

    def summary(self) -> str:
        verb = "would anonymise" if self.dry_run else "anonymised"
        return (
            f"{verb} {self.cases} case(s) closed before {self.cutoff:%Y-%m-%d} "
            f"({self.retention} retention): {self.events} event(s), "
            f"{self.outbox} sent message(s), {self.messages} received message(s)"
        )


def retention_cutoff(retention: Duration, now: datetime) -> datetime:
    """Cases closed before this instant have been kept long enough."""
    if retention.unit == "calendar_months":
        return _months_before(now, retention.amount)
    if retention.unit == "calendar_days":
        return now - timedelta(days=retention.amount)
    # Working days only ever round up to whole weeks here: keeping a little longer is safe,
    # deleting early is not.
    return now - timedelta(days=math.ceil(retention.amount / 5) * 7)


def _months_before(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def purge(session: Session, policy: Policy, now: datetime, *, dry_run: bool = False) -> PurgeResult:
    """Anonymise cases closed longer ago than the policy's retention, in the caller's
    transaction. Category, stage, dates, outcome and breaches stay, so reports still add
    up; names, addresses, subjects and message text go. Running it again changes nothing.
    """
    retention = policy.retention or DEFAULT_RETENTION
    cutoff = retention_cutoff(retention, now)
    result = PurgeResult(cutoff=cutoff, retention=str(retention), dry_run=dry_run)
    old_cases = select(Case.id).where(
        Case.status == "closed", Case.closed_at.is_not(None), Case.closed_at < cutoff
    )

    result.cases = _apply(
        session,
        dry_run,
        Case,
        and_(
            Case.id.in_(old_cases),
            or_(
                Case.resident_email != "",
                Case.resident_name != "",
                Case.subject != REMOVED_SUBJECT,
                Case.holding_reason.is_not(None),
                Case.first_message_id.is_not(None),
                Case.scored_text.is_not(None),
            ),
        ),
        {
            "resident_email": "",
            "resident_name": "",
            "subject": REMOVED_SUBJECT,
            "holding_reason": None,  # an officer's free text about the resident
            # Some mail programs build Message-IDs from the sender's address.
            "first_message_id": None,
            # The resident's words the classifier read; an officer's correction of the
            # case stops being a training example with it.
            "scored_text": None,
        },
    )
    # Event details name residents and quote officers' notes; the kind and time stay.
    result.events = _apply(
        session,
        dry_run,
        CaseEvent,
        and_(CaseEvent.case_id.in_(old_cases), CaseEvent.detail != ""),
        {"detail": ""},
    )
    # What we sent, to whom. Staff mail without a case (digests list residents' names and
    # subjects) goes by its own age.
    result.outbox = _apply(
        session,
        dry_run,
        OutboxMessage,
        and_(
            OutboxMessage.status.not_in(_UNSENT),
            or_(
                OutboxMessage.case_id.in_(old_cases),
                and_(OutboxMessage.case_id.is_(None), OutboxMessage.created_at < cutoff),
            ),
            or_(
                func.length(OutboxMessage.raw) > 0,
                OutboxMessage.recipient != "",
                OutboxMessage.letter.is_not(None),
                OutboxMessage.last_error != "",
            ),
        ),
        # null(), not None: None in a JSON column is stored as the JSON text "null".
        {"raw": b"", "recipient": "", "letter": null(), "last_error": ""},
    )
    # Who wrote in. Message-ID and content hash stay: they are what stops an old message
    # being taken as new if the folder is ever re-read (SPEC §1.1).
    result.messages = _purge_messages(
        session,
        dry_run,
        and_(
            InboundMessage.from_addr.is_not(None),
            or_(
                InboundMessage.case_id.in_(old_cases),
                and_(InboundMessage.case_id.is_(None), InboundMessage.internal_date < cutoff),
            ),
        ),
    )
    if not dry_run and (result.cases or result.events or result.outbox or result.messages):
        log.info("retention: %s", result.summary())
    return result


def _apply(session: Session, dry_run: bool, model: type, where: object, values: dict) -> int:
    if dry_run:
        return session.scalar(select(func.count()).select_from(model).where(where)) or 0
    done = session.execute(
        update(model).where(where).values(**values).execution_options(synchronize_session=False)
    )
    return done.rowcount or 0


def _purge_messages(session: Session, dry_run: bool, where: object) -> int:
    if dry_run:
        return session.scalar(select(func.count()).select_from(InboundMessage).where(where)) or 0
    count = 0
    while True:
        rows = session.execute(
            select(InboundMessage.id, InboundMessage.reasons).where(where).limit(1000)
        ).all()
        if not rows:
            return count
        for row_id, reasons in rows:
            session.execute(
                update(InboundMessage)
                .where(InboundMessage.id == row_id)
                .values(from_addr=None, reasons=_rule_names(reasons))
                .execution_options(synchronize_session=False)
            )
        count += len(rows)


def _rule_names(reasons: list[Reason] | None) -> list[Reason]:
    """Reasons quote the sender's headers and address; keep only the rule's name."""
    return [Reason(r.rule) for r in reasons or []]
