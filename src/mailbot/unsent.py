"""Unsent: the messages that did not go, or may not have — listed, resent or dismissed by the clerk.

A message fails when its recipient or the message itself is refused, or after three days
of "try later"; it is uncertain when mailbot stopped while the SMTP server had it; it
bounced when a delivery report came back for it. Each is a line in its case's history,
in the clerk's digest and in `mailbot outbox list`, until someone resends it (`mailbot
outbox resend ID`: it goes again, once) or dismisses it (`mailbot outbox dismiss ID`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailbot.store import Case, OutboxMessage, OutboxStatus, add_event

if TYPE_CHECKING:
    from mailbot.app import App

log = logging.getLogger("mailbot.unsent")

# What the clerk must look at; `paused` messages wait for a Problem to be fixed instead.
NEEDS_ATTENTION = (OutboxStatus.FAILED, OutboxStatus.UNCERTAIN, OutboxStatus.BOUNCED)
# What may be sent again: it did not go, or may not have, or it was put aside.
RESENDABLE = (*NEEDS_ATTENTION, OutboxStatus.DISMISSED)


class UnsentError(Exception):
    """An outbox ID that cannot be resent or dismissed (exit 1, with the reason)."""


@dataclass(frozen=True)
class Unsent:
    """One message that did not go, as the clerk reads it."""

    id: int
    status: str
    kind: str
    recipient: str
    case_ref: str | None
    created_at: datetime
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "kind": self.kind,
            "recipient": self.recipient,
            "case": self.case_ref,
            "created_at": self.created_at.isoformat(),
            "reason": self.reason,
        }


def unsent(
    session: Session,
    *,
    statuses: tuple[str, ...] = NEEDS_ATTENTION,
    since: datetime | None = None,
    limit: int = 200,
) -> tuple[list[Unsent], int]:
    """The first `limit` messages in `statuses` (oldest first), and how many there are."""
    where = [OutboxMessage.status.in_(statuses)]
    if since is not None:
        where.append(OutboxMessage.created_at >= since)
    total = session.scalar(select(func.count()).select_from(OutboxMessage).where(*where)) or 0
    rows = session.execute(
        select(OutboxMessage, Case.ref)
        .outerjoin(Case, Case.id == OutboxMessage.case_id)
        .where(*where)
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    found = [
        Unsent(row.id, row.status, row.kind, row.recipient, ref, row.created_at, row.last_error)
        for row, ref in rows
    ]
    return found, total


def waiting(session: Session) -> int:
    """How many messages wait for paused sending to resume."""
    paused = select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "paused")
    return session.scalar(paused) or 0


def resend(app: App, outbox_id: int) -> str:
    """Send a message that did not go (or may not have) again, once: the same message,
    with its Message-ID, to the same address. Returns what was done, for the clerk."""
    now = app.clock.now()
    with app.sessions.begin() as session:
        row, case = _find(session, outbox_id)
        if row.status not in RESENDABLE:
            raise UnsentError(_why_not(row, "resend"))
        was = row.status
        row.status, row.attempts, row.next_attempt_at, row.last_error = (
            OutboxStatus.PENDING,
            0,
            now,
            "",
        )
        what = f"{row.kind} to {row.recipient} ({was}) sent again by the clerk, outbox ID {row.id}"
        if case is not None:
            add_event(session, case, now, "note", what)
        log.info("%s", what, extra={"case": case.ref if case else None})
    warning = (
        " If the first copy did arrive after all, the resident now has two."
        if was == "uncertain"
        else ""
    )
    return f"{what}: it goes with the next sending pass.{warning}"


def dismiss(app: App, outbox_id: int) -> str:
    """Put a message that did not go aside: it leaves the digest and the list."""
    now = app.clock.now()
    with app.sessions.begin() as session:
        row, case = _find(session, outbox_id)
        if row.status not in NEEDS_ATTENTION:
            raise UnsentError(_why_not(row, "dismiss"))
        row.status = OutboxStatus.DISMISSED
        what = f"{row.kind} to {row.recipient} dismissed by the clerk, unsent; outbox ID {row.id}"
        if case is not None:
            add_event(session, case, now, "note", what)
        log.info("%s", what, extra={"case": case.ref if case else None})
    return what


def _find(session: Session, outbox_id: int) -> tuple[OutboxMessage, Case | None]:
    row = session.get(OutboxMessage, outbox_id)
    if row is None:
        raise UnsentError(f"no outbox message {outbox_id} (see mailbot outbox list)")
    case = session.get(Case, row.case_id) if row.case_id is not None else None
    return row, case


def _why_not(row: OutboxMessage, action: str) -> str:
    reasons = {
        "sent": "it was sent",
        "pending": "it is waiting to be sent already",
        "sending": "it is being sent now",
        "paused": "it is waiting for sending to resume (see mailbot outbox list)",
        "withdrawn": "it was withdrawn because the case was answered first",
        "dismissed": "it was dismissed already",
    }
    return f"cannot {action} outbox message {row.id}: {reasons.get(row.status, row.status)}"
