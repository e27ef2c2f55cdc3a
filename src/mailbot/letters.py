"""Letters: each message mailbot writes — queued as template and recipient, composed when sent."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, formataddr, make_msgid
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailbot.calendar import calendar_for
from mailbot.config import Config
from mailbot.parse import clean_text
from mailbot.screen import LOOP_HEADER
from mailbot.store import Case
from mailbot.templates import Rendered, case_context, long_date

if TYPE_CHECKING:
    from mailbot.app import App
    from mailbot.store import OutboxMessage

log = logging.getLogger("mailbot.letters")

DIGEST_LIMIT = 200  # cases listed in one digest; the counts cover the rest


@dataclass(frozen=True)
class Letter:
    """A message to send: which template, to whom, about what. Rendered at sending time."""

    kind: str  # acknowledgement | reminder | holding | breach | digest | welfare-alert
    template: str
    recipient: str
    subject: str
    audience: Literal["resident", "staff"]
    to_name: str = ""
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    fallback: str | None = None  # the general template when no specific one exists

    def as_json(self) -> dict[str, Any]:
        # By hand, not dataclasses.asdict: a busy scheduler pass writes thousands.
        return {
            "kind": self.kind,
            "template": self.template,
            "recipient": self.recipient,
            "subject": self.subject,
            "audience": self.audience,
            "to_name": self.to_name,
            "in_reply_to": self.in_reply_to,
            "references": list(self.references),
            "extra": dict(self.extra),
            "fallback": self.fallback,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Letter:
        return cls(**{**data, "references": tuple(data.get("references", ()))})


def new_message_id(mailbox_address: str) -> str:
    return make_msgid(domain=mailbox_address.rsplit("@", 1)[1])


def compose(
    cfg: Config,
    *,
    to: str,
    to_name: str = "",
    subject: str,
    rendered: Rendered,
    audience: Literal["resident", "staff"],
    ref: str | None,
    now: datetime,
    in_reply_to: str | None = None,
    references: tuple[str, ...] = (),
    message_id: str | None = None,
) -> EmailMessage:
    """A complete message. Anything taken from inbound mail is cleaned before it is a header."""
    council = cfg.council
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = formataddr((clean_text(council.name, 100), council.mailbox_address))
    msg["Reply-To"] = council.mailbox_address
    msg["To"] = formataddr((clean_text(to_name, 100), to))
    subject = clean_text(subject, 150) or "Your message"
    if ref and ref not in subject:
        subject = f"{subject} [Ref: {ref}]"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id or new_message_id(council.mailbox_address)
    msg[LOOP_HEADER] = council.mailbox_address
    if audience == "resident":
        msg["Auto-Submitted"] = "auto-replied"
        msg["X-Auto-Response-Suppress"] = "All"
        if in_reply_to:
            msg["In-Reply-To"] = in_reply_to
            msg["References"] = " ".join((*references[-10:], in_reply_to))
    else:
        msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(rendered.text, charset="utf-8")
    msg.add_alternative(rendered.html, subtype="html", charset="utf-8")
    return msg


def render(app: App, session: Session, row: OutboxMessage) -> EmailMessage:
    """Compose a queued letter from the case as it stands now, with its recorded Message-ID."""
    letter = Letter.from_json(row.letter or {})
    now = app.clock.now()
    case = session.get(Case, row.case_id) if row.case_id else None
    if letter.template == "digest":
        today = now.astimezone(ZoneInfo(app.policy.timezone)).date()
        context = digest_context(app, session, today)
    elif case is not None:
        context = case_context(app.cfg, app.policy, case, now, **letter.extra)
    else:
        context = {"council": council_context(app.cfg), "case": {}, **letter.extra}
    name = letter.template
    if letter.fallback and name not in app.templates.names():
        name = letter.fallback
    rendered, problem = app.templates.render_safe(name, context)
    if problem:
        log.error("template problem, used a fallback: %s", problem)
    return compose(
        app.cfg,
        to=row.recipient,
        to_name=letter.to_name,
        subject=letter.subject,
        rendered=rendered,
        audience=letter.audience,
        ref=case.ref if case else None,
        now=now,
        in_reply_to=letter.in_reply_to,
        references=letter.references,
        message_id=row.message_id,
    )


def council_context(cfg: Config) -> dict[str, str]:
    return {"name": cfg.council.name, "email": cfg.council.mailbox_address}


def digest_context(app: App, session: Session, today: date) -> dict[str, Any]:
    """Open cases for the clerk: overdue first, then soonest due, with working days left."""
    policy = app.policy
    cases = session.scalars(
        select(Case)
        .where(Case.status == "open")
        .order_by(Case.respond_by, Case.id)
        .limit(DIGEST_LIMIT)
    ).all()
    rows = []
    for case in cases:
        calendar = calendar_for(policy, case.category)
        if case.respond_by < today:
            left = -calendar.working_days_between(case.respond_by, today)
        else:
            left = calendar.working_days_between(today, case.respond_by)
        rows.append(
            {
                "ref": case.ref,
                "category": case.category,
                "officer": case.officer_name or "unassigned",
                "respond_by": long_date(case.respond_by),
                "days_left": left,
                "subject": case.subject,
                "clock_stopped": case.clock_stopped,
            }
        )
    rows.sort(key=lambda r: r["days_left"])  # overdue first
    from sqlalchemy import func

    total = session.scalar(select(func.count()).select_from(Case).where(Case.status == "open"))
    overdue = session.scalar(
        select(func.count()).select_from(Case).where(Case.status == "open", Case.respond_by < today)
    )
    return {
        "council": council_context(app.cfg),
        "today": long_date(today),
        "cases": rows,
        "total": total,
        "overdue": overdue,
        "officer": None,
        "case": {"ref": ""},
    }
