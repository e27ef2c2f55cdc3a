"""Audit: every change made in the console — who, when, what, before and after — written
in the same transaction as the change itself, so neither is ever without the other."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailbot.reports import safe_cell
from mailbot.web.models import AuditEntry


class Action(StrEnum):
    SIGNED_IN = "signed in"
    CASE_ACTION = "case action"
    TEMPLATE_SAVED = "template saved"
    TEMPLATE_ROLLED_BACK = "template rolled back"
    TEST_SENT = "test message queued"
    HOURS_CHANGED = "office hours and closure days changed"
    POLICY_CHANGED = "policy changed"
    RELEASED = "held message released"
    RESENT = "unsent message sent again"
    DISMISSED = "unsent message dismissed"
    USER_ADDED = "user added"
    USER_CHANGED = "user role changed"
    USER_REMOVED = "user removed"
    PASSWORD_SET = "password set"


COLUMNS = ("at", "who", "action", "what", "before", "after")


def record(
    session: Session,
    *,
    actor: str,
    action: Action,
    target: str,
    now: datetime,
    before: str = "",
    after: str = "",
) -> None:
    session.add(
        AuditEntry(
            at=now,
            actor=actor,
            action=action.value,
            target=target[:200],
            before=before,
            after=after,
        )
    )


def entries(session: Session, *, limit: int | None = None, offset: int = 0) -> list[AuditEntry]:
    """Newest first."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def to_csv(rows: Iterable[AuditEntry]) -> str:
    """The log for a spreadsheet; a cell that starts like a formula is shown as text."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(
            [
                safe_cell(value)
                for value in (
                    row.at.isoformat(),
                    row.actor,
                    row.action,
                    row.target,
                    row.before,
                    row.after,
                )
            ]
        )
    return out.getvalue()
