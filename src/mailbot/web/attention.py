"""What needs the clerk, and whether mailbot is reading its mailboxes (issue 20, point 5).

Read from the database the daemon writes: outbox rows that failed, bounced or may not
have gone (the same list as `mailbot outbox list`),
mail held as spam or from a web form with no address (the digest's list), template
problems the daemon reported, each mailbox's last successful check, and the daemon's
alerts about signing in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailbot.app import App
from mailbot.held import FORM_RULE, SPAM_RULE, HeldMessage, held_since
from mailbot.mailbox import folder_key
from mailbot.store import FolderState, OutboxMessage
from mailbot.unsent import Unsent, unsent

LOOK_BACK = timedelta(days=30)
LIMIT = 200


@dataclass(frozen=True)
class TemplateTrouble:
    at: datetime
    template: str
    problem: str


@dataclass(frozen=True)
class Attention:
    unsent: list[Unsent]
    spam: list[HeldMessage]
    forms: list[HeldMessage]
    templates: list[TemplateTrouble]

    @property
    def count(self) -> int:
        return len(self.unsent) + len(self.spam) + len(self.forms) + len(self.templates)


def needing_attention(app: App, session: Session, now: datetime) -> Attention:
    not_sent, _ = unsent(session, since=now - LOOK_BACK, limit=LIMIT)
    held = held_since(session, app.cfg, now - LOOK_BACK, LIMIT)
    problems = session.execute(
        select(OutboxMessage.created_at, OutboxMessage.letter)
        .where(
            OutboxMessage.kind == "template-problem",
            OutboxMessage.created_at >= now - LOOK_BACK,
        )
        .order_by(OutboxMessage.id.desc())
        .limit(LIMIT)
    ).all()
    seen: set[tuple[str, str]] = set()
    troubles = []
    for at, letter in problems:  # one letter per clerk: list each problem once
        extra = (letter or {}).get("extra") or {}
        key = (extra.get("template_name", "?"), extra.get("problem", ""))
        if key not in seen:
            seen.add(key)
            troubles.append(TemplateTrouble(at, *key))
    return Attention(
        unsent=not_sent,
        spam=held[SPAM_RULE].messages,
        forms=held[FORM_RULE].messages,
        templates=troubles,
    )


@dataclass(frozen=True)
class MailboxHealth:
    address: str
    folder: str
    checked_at: datetime | None
    minutes_since: int | None
    ok: bool

    @property
    def state(self) -> str:
        if self.checked_at is None:
            return "never checked: is mailbot run going?"
        if self.ok:
            return "reading mail"
        return f"not checked for {self.minutes_since} minutes"


@dataclass(frozen=True)
class Notice:
    """The daemon's email to the clerk about a mailbox or its sign-in."""

    at: datetime
    subject: str
    trouble: bool  # an alert, not a "working again"


def mailbox_health(app: App, session: Session, now: datetime) -> list[MailboxHealth]:
    out = []
    for box in app.cfg.all_mailboxes:
        key = folder_key(box, box.inbox)
        checked = session.scalar(select(FolderState.checked_at).where(FolderState.folder == key))
        minutes = int((now - checked) / timedelta(minutes=1)) if checked else None
        ok = minutes is not None and minutes < box.alert_after_minutes
        out.append(MailboxHealth(app.cfg.address_of(box), key, checked, minutes, ok))
    return out


def health_notices(session: Session, limit: int = 10) -> list[Notice]:
    """The daemon's latest alerts (sign-in failing, not checked) and all-clears, newest
    first; one row for each, however many people in the clerk role were sent it."""
    rows = session.execute(
        select(OutboxMessage.created_at, OutboxMessage.letter, OutboxMessage.key)
        .where(OutboxMessage.kind == "health")
        .order_by(OutboxMessage.id.desc())
        .limit(limit * 5)
    ).all()
    seen: set[str] = set()
    notices = []
    for at, letter, key in rows:
        once = key.rsplit(":", 1)[0]  # the key names each recipient last
        if once in seen:
            continue
        seen.add(once)
        subject = (letter or {}).get("subject", "")
        notices.append(Notice(at, subject, trouble=key.startswith("health:alert:")))
        if len(notices) == limit:
            break
    return notices
