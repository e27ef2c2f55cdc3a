"""Delivery: the states a queued message passes through, and every move between them.

    pending ──claim──▶ sending ──handed over──▶ sent
       │                  │
       │                  ├─ "try later" ──▶ pending (again, after a back-off)
       │                  ├─ refused, or too many tries ──▶ failed
       │                  ├─ sending as its sender is refused ──▶ paused ──▶ pending
       │                  └─ no answer after the whole message, or a crash ──▶ uncertain
       └─ the case answered first (reminders, holding replies, breaches) ──▶ withdrawn

    shadow: recorded in shadow mode, or due before mailbot went live: never sent

and later: sent ──delivery report──▶ bounced (mailbot.bounces); failed, uncertain or
bounced ──the clerk──▶ pending again or dismissed (mailbot.unsent).

A message is claimed (marked `sending`, with a lease) in a committed transaction before
it is handed over, so one that dies mid-hand-over is never sent twice: it turns
`uncertain` and the clerk decides. Each move that the clerk must hear of is a line in
the case's history.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import LargeBinary, String, bindparam, func, insert, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.sql.dml import Insert, Update

from mailbot.clock import Clock
from mailbot.store import Case, CaseEvent, OutboxMessage, OutboxStatus, Sessions, UTCDateTime

log = logging.getLogger("mailbot.outbox")


# Every move a message may make (see the diagram above); anything else is a bug.
MOVES: dict[OutboxStatus, frozenset[OutboxStatus]] = {
    OutboxStatus.PENDING: frozenset(
        {OutboxStatus.SENDING, OutboxStatus.WITHDRAWN, OutboxStatus.PAUSED}
    ),
    OutboxStatus.SENDING: frozenset(
        {
            OutboxStatus.SENT,
            OutboxStatus.PENDING,
            OutboxStatus.FAILED,
            OutboxStatus.PAUSED,
            OutboxStatus.UNCERTAIN,
        }
    ),
    OutboxStatus.PAUSED: frozenset({OutboxStatus.PENDING}),
    OutboxStatus.SENT: frozenset({OutboxStatus.BOUNCED}),
    OutboxStatus.FAILED: frozenset({OutboxStatus.PENDING, OutboxStatus.DISMISSED}),
    OutboxStatus.UNCERTAIN: frozenset(
        {OutboxStatus.PENDING, OutboxStatus.DISMISSED, OutboxStatus.SENT}
    ),
    OutboxStatus.BOUNCED: frozenset({OutboxStatus.PENDING, OutboxStatus.DISMISSED}),
    OutboxStatus.DISMISSED: frozenset({OutboxStatus.PENDING}),
    OutboxStatus.WITHDRAWN: frozenset(),
    OutboxStatus.SHADOW: frozenset(),  # recorded in shadow mode: never sent (shadow.py)
}
# Where a message begins: queued to go, or kept from the start (shadow.decide).
BEGINS = frozenset({OutboxStatus.PENDING, OutboxStatus.SHADOW})


def may_move(before: str, after: str) -> bool:
    """Whether a message in `before` may move to `after`."""
    return OutboxStatus(after) in MOVES[OutboxStatus(before)]


MAX_ATTEMPTS = 30  # about three days of retries with the backoff below


SENDING_LEASE = timedelta(minutes=10)


def retry_delay(attempts: int) -> timedelta:
    """1, 2, 4 … minutes after each failed attempt, at most an hour."""
    return timedelta(minutes=min(2 ** (attempts - 1), 60))


@dataclass(frozen=True)
class Claim:
    row_id: int
    raw: bytes
    recipient: str
    kind: str
    error: str = ""
    case_id: int | None = None
    ref: str | None = None
    said: str = ""  # for the case's history: the new date, the working days left
    sender: str = ""  # the case's mailbox it comes from ("": the council's)


def take(
    conn: Connection,
    now: datetime,
    row: Row[Any],
    case: Row[Any] | None,
    raw: bytes,
    error: str,
    version: str | None = None,
) -> Claim | None:
    """Claim a message before sending it: if we die after the server accepts it, the row
    says 'sending' and it is never sent again. None if another process claimed it first
    (the status check makes the claim safe where FOR UPDATE does nothing: SQLite)."""
    claimed = conn.execute(
        _claim(),
        {"row_id": row.id, "lease": now + SENDING_LEASE, "raw": raw, "version": version},
    )
    if claimed.rowcount != 1:
        return None
    ref = case.ref if case is not None else None
    said = _what_it_said(row.letter)
    sender = (case.mailbox if case is not None else None) or ""
    return Claim(row.id, raw, row.recipient, row.kind, error, row.case_id, ref, said, sender)


@functools.cache
def _claim() -> Update:
    outbox = OutboxMessage.__table__
    return (
        update(outbox)
        .where(outbox.c.id == bindparam("row_id"), outbox.c.status == "pending")
        .values(
            status="sending",
            attempts=outbox.c.attempts + 1,
            next_attempt_at=bindparam("lease", type_=UTCDateTime),
            raw=bindparam("raw", type_=LargeBinary),
            # Written once, with the message (a retry sends the same bytes).
            template_version=func.coalesce(
                bindparam("version", type_=String), outbox.c.template_version
            ),
        )
    )


def _what_it_said(letter: dict | None) -> str:
    """The part of a letter worth a line in the case's history."""
    extra = (letter or {}).get("extra") or {}
    if extra.get("new_date"):
        return f"; new date {extra['new_date']}"
    if "working_days_left" in extra:
        return f"; {extra['working_days_left']} working day(s) left"
    return ""


def recover_interrupted(sessions: Sessions, clock: Clock) -> int:
    """Rows left 'sending' by a process that died mid-send are not sent again.

    The SMTP server may already have accepted them, and a resident must never get the
    same message twice (SPEC §1.2); they are marked 'uncertain' for the clerk to see.
    """
    now = clock.now()
    with sessions.begin() as session:
        rows = session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.status == "sending", OutboxMessage.next_attempt_at <= now
            )
        ).all()
        for row in rows:
            row.status = "uncertain"
            row.last_error = "the process stopped while sending; not re-sent to avoid a duplicate"
            log.error("outbox %s to case %s: %s", row.kind, row.case_id, row.last_error)
            tell_case(session.connection(), now, row, "send-uncertain")
    return len(rows)


# Letters about a case still waiting for its answer. One queued before the officer
# answered or closed the case (a reminder queued at night for opening time, say) would
# tell the resident or the officer something no longer true, so it is withdrawn unsent.
ONLY_WHILE_OPEN = frozenset({"reminder", "holding", "breach"})


def withdraw(conn: Connection, now: datetime, row: Row[Any], case: Row[Any]) -> None:
    outbox = OutboxMessage.__table__
    why = f"not sent: the case was {case.status} first"
    withdrawn = conn.execute(
        update(outbox)
        .where(outbox.c.id == row.id, outbox.c.status == "pending")
        .values(status="withdrawn", last_error=why)
    )
    if withdrawn.rowcount != 1:
        return  # another process got to it first
    _, _, history = _sent_statements()
    detail = f"{row.kind} to {row.recipient} {why}"
    conn.execute(history, {"case": case.id, "now": now, "kind": "note", "detail": detail})
    log.info("%s to %s %s", row.kind, row.recipient, why, extra={"case": case.ref})


def mark_sent(conn: Connection, now: datetime, sent: Claim) -> None:
    mark, acknowledged, history = _sent_statements()
    conn.execute(mark, {"row_id": sent.row_id, "now": now})
    if sent.case_id is not None:
        if sent.kind == "acknowledgement":
            conn.execute(acknowledged, {"case": sent.case_id, "now": now})
        conn.execute(
            history,
            {
                "case": sent.case_id,
                "now": now,
                "kind": _EVENT_KIND.get(sent.kind, "note"),
                "detail": f"{sent.kind} sent to {sent.recipient}{sent.said}",
            },
        )
    log.info("sent %s to %s", sent.kind, sent.recipient, extra={"case": sent.ref})


def record_sent(
    conn: Connection,
    now: datetime,
    row_id: int,
    recipient: str,
    kind: str,
    case_id: int | None,
    said: str = "",
) -> None:
    """Record a message as sent that was found to have gone after all (sentcopy: in
    the sent folder, after a crash mid-hand-over): the case's history says so."""
    mark_sent(conn, now, Claim(row_id, b"", recipient, kind, case_id=case_id, said=said))


@functools.cache
def _sent_statements() -> tuple[Update, Update, Insert]:
    """Built once: the sending process runs them for every message it sends."""
    outbox, cases, events = OutboxMessage.__table__, Case.__table__, CaseEvent.__table__
    now = bindparam("now", type_=UTCDateTime)
    mark = (
        update(outbox)
        .where(outbox.c.id == bindparam("row_id"))
        .values(status="sent", sent_at=now, last_error="")
    )
    acknowledged = (
        update(cases)
        .where(cases.c.id == bindparam("case"), cases.c.acknowledged_at.is_(None))
        .values(acknowledged_at=now)
    )
    history = insert(events).values(
        case_id=bindparam("case"), at=now, kind=bindparam("kind"), detail=bindparam("detail")
    )
    return mark, acknowledged, history


_EVENT_KIND = {"acknowledgement": "acknowledged", "holding": "holding", "reminder": "reminder"}


def failed(sessions: Sessions, clock: Clock, row_id: int, error: str, permanent: bool) -> str:
    now = clock.now()
    with sessions.begin() as session:
        row = session.get(OutboxMessage, row_id)
        assert row is not None
        row.last_error = error[:1000]
        if permanent or row.attempts >= MAX_ATTEMPTS:
            row.status = "failed"
            log.error("outbox %s to %s failed for good: %s", row.kind, row.recipient, error)
            tell_case(session.connection(), now, row, "send-failed")
            return "failed"
        row.status = "pending"
        row.next_attempt_at = now + retry_delay(row.attempts)
        log.warning("outbox %s to %s deferred: %s", row.kind, row.recipient, error)
        return "deferred"


def hold(sessions: Sessions, row_id: int, reason: str) -> str:
    """Keep a claimed message waiting while sending as its sender is paused: the attempt
    is not counted (the message is not at fault), and it goes when sending resumes."""
    with sessions.begin() as session:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == row_id)
            .values(status="paused", attempts=OutboxMessage.attempts - 1, last_error=reason[:1000])
        )
    return "paused"


def uncertain(sessions: Sessions, clock: Clock, row_id: int, error: str) -> str:
    with sessions.begin() as session:
        row = session.get(OutboxMessage, row_id)
        assert row is not None
        row.status, row.last_error = "uncertain", error[:1000]
        log.error("outbox %s to %s: %s; not re-sent", row.kind, row.recipient, error)
        tell_case(session.connection(), clock.now(), row, "send-uncertain")
    return "failed"


def tell_case(conn: Connection, now: datetime, row: Any, event: str) -> None:
    """A message that did not go (or may not have) is a line in its case's history,
    with what the clerk can do about it."""
    if row.case_id is None:
        return
    _, _, history = _sent_statements()
    why = {"send-failed": "not sent", "send-uncertain": "may not have been sent"}[event]
    detail = (
        f"{row.kind} to {row.recipient} {why}: {row.last_error} "
        f"(mailbot outbox resend {row.id}, or dismiss {row.id})"
    )
    conn.execute(history, {"case": row.case_id, "now": now, "kind": event, "detail": detail})
