"""Letters to council staff: to every holder of a role, or to a case's officer, once
per key each, and (unless urgent) at opening time on a working day."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from mailbot.calendar import next_opening
from mailbot.config import OfficerConfig
from mailbot.outbox.queue import Letter, queue
from mailbot.policy import Policy
from mailbot.route import holders
from mailbot.store import Case

if TYPE_CHECKING:
    from mailbot.app import App

log = logging.getLogger("mailbot.outbox")


def staff_send_time(policy: Policy, now: datetime) -> datetime:
    """Staff mail waits for opening time on a working day (no escalations at 2 am)."""
    return next_opening(policy, now)


def notify_role(
    app: App,
    session: Session,
    case: Case | None,
    *,
    role: str,
    template: str,
    kind: str,
    subject: str,
    key: str,
    now: datetime,
    extra: dict | None = None,
    at_once: bool = False,
) -> set[str]:
    """Mail every holder of a role (the clerk standing in), once per key and officer."""
    _, officers = holders(app.cfg, role)
    return _to_staff(
        app, session, case, officers, template, kind, subject, key, now, extra, at_once
    )


def notify_officer(
    app: App,
    session: Session,
    case: Case,
    *,
    template: str,
    kind: str,
    subject: str,
    key: str,
    now: datetime,
    extra: dict | None = None,
) -> set[str]:
    """Mail the case's handling officer, if there is one, once per key."""
    officer = app.cfg.officer(case.officer_email) if case.officer_email else None
    officers = [officer] if officer else []
    return _to_staff(app, session, case, officers, template, kind, subject, key, now, extra, False)


def _to_staff(
    app: App,
    session: Session,
    case: Case | None,
    officers: list[OfficerConfig],
    template: str,
    kind: str,
    subject: str,
    key: str,
    now: datetime,
    extra: dict | None,
    at_once: bool,
) -> set[str]:
    items = [
        (
            f"{key}:{officer.email}",
            Letter(
                kind=kind,
                template=template,
                recipient=officer.email,
                to_name=officer.name,
                subject=subject,
                audience="staff",
                extra=extra or {},
            ),
            case.id if case else None,
        )
        for officer in officers
    ]
    send_at = now if at_once else staff_send_time(app.policy, now)
    return queue(
        session, items, mailbox_address=app.cfg.council.mailbox_address, now=now, send_at=send_at
    )


def tell_clerk_about_template(
    app: App, session: Session, name: str, problem: str, now: datetime
) -> None:
    """Email the clerk role once about each distinct template problem (a letter written
    with the built-in wording instead: letters.Written.problem)."""
    notify_role(
        app,
        session,
        None,
        role="clerk",
        template="template-problem",
        kind="template-problem",
        subject=f"A template needs fixing: {name}",
        key=f"template-problem:{name}:{hashlib.sha256(problem.encode()).hexdigest()[:16]}",
        now=now,
        extra={"problem": problem, "template_name": name},
        at_once=True,
    )
