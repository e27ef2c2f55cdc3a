"""Outbox: compose outgoing mail with the SPEC §5 headers, queue it, and send it exactly once."""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, formataddr, make_msgid
from typing import Literal

import aiosmtplib
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailbot import faults
from mailbot.clock import Clock
from mailbot.config import Config, SmtpConfig
from mailbot.parse import clean_text
from mailbot.screen import LOOP_HEADER
from mailbot.store import Case, OutboxMessage, add_event
from mailbot.templates import Rendered

log = logging.getLogger("mailbot.outbox")

MAX_ATTEMPTS = 30  # about three days of retries with the backoff below
SENDING_LEASE = timedelta(minutes=10)


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
    msg["Message-ID"] = new_message_id(council.mailbox_address)
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


def enqueue(
    session: Session,
    *,
    key: str,
    kind: str,
    message: EmailMessage,
    recipient: str,
    case: Case | None,
    now: datetime,
) -> OutboxMessage | None:
    """Queue a message unless one with this key was ever queued (that is what makes it once)."""
    if session.scalar(select(OutboxMessage.id).where(OutboxMessage.key == key)) is not None:
        return None
    row = OutboxMessage(
        key=key,
        message_id=message["Message-ID"],
        case_id=case.id if case else None,
        kind=kind,
        recipient=recipient,
        raw=message.as_bytes(),
        status="pending",
        attempts=0,
        next_attempt_at=now,
        last_error="",
        created_at=now,
    )
    session.add(row)
    return row


@dataclass
class FlushResult:
    sent: int = 0
    deferred: int = 0
    failed: int = 0


def retry_delay(attempts: int) -> timedelta:
    """1, 2, 4 … minutes after each failed attempt, at most an hour."""
    return timedelta(minutes=min(2 ** (attempts - 1), 60))


def recover_interrupted(sessions: sessionmaker[Session], clock: Clock) -> int:
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
    return len(rows)


def flush(sessions: sessionmaker[Session], cfg: Config, clock: Clock) -> FlushResult:
    """Send everything due in the outbox over one SMTP connection."""
    return asyncio.run(_flush(sessions, cfg, clock))


def _claim_next(sessions: sessionmaker[Session], clock: Clock) -> int | None:
    """Take the oldest due message, one at a time, so a crash strands at most one."""
    now = clock.now()
    with sessions.begin() as session:
        query = (
            select(OutboxMessage)
            .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now)
            .order_by(OutboxMessage.id)
            .limit(1)
            .with_for_update(skip_locked=True)  # several processes never take the same row
        )
        row = session.scalars(query).first()
        if row is None:
            return None
        # Claimed before sending: if we die after the server accepts it, the row
        # says 'sending' and is never sent again.
        row.status = "sending"
        row.attempts += 1
        row.next_attempt_at = now + SENDING_LEASE
        return row.id


def _has_due(sessions: sessionmaker[Session], clock: Clock) -> bool:
    with sessions() as session:
        return (
            session.scalar(
                select(OutboxMessage.id)
                .where(
                    OutboxMessage.status == "pending",
                    OutboxMessage.next_attempt_at <= clock.now(),
                )
                .limit(1)
            )
            is not None
        )


async def _flush(sessions: sessionmaker[Session], cfg: Config, clock: Clock) -> FlushResult:
    result = FlushResult()
    if not _has_due(sessions, clock):
        return result  # no SMTP connection when there is nothing to send
    try:
        smtp = await _connect(cfg.smtp)
    except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
        result.deferred = _defer_all_due(sessions, clock, f"cannot reach SMTP server: {exc}")
        return result
    try:
        claimed: set[int] = set()
        while (row_id := _claim_next(sessions, clock)) is not None and row_id not in claimed:
            claimed.add(row_id)
            outcome = await _send_one(sessions, cfg, clock, smtp, row_id)
            setattr(result, outcome, getattr(result, outcome) + 1)
    finally:
        try:
            await smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            smtp.close()
    return result


async def _connect(cfg: SmtpConfig) -> aiosmtplib.SMTP:
    context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
    smtp = aiosmtplib.SMTP(
        hostname=cfg.host,
        port=cfg.port,
        use_tls=cfg.security == "tls",
        start_tls=cfg.security == "starttls",
        tls_context=context,
        timeout=cfg.timeout,
    )
    await smtp.connect()
    if cfg.auth == "xoauth2":
        await smtp.execute_command(b"AUTH", b"XOAUTH2", _xoauth2(cfg.username, cfg.password()))
    elif cfg.username:
        await smtp.login(cfg.username, cfg.password())
    return smtp


async def smtp_login_check(cfg: SmtpConfig) -> None:
    """Connect and log in, then leave: `mailbot check --connect`."""
    try:
        smtp = await _connect(cfg)
    except (aiosmtplib.SMTPException, ssl.SSLError) as exc:
        raise OSError(f"SMTP {cfg.host}:{cfg.port}: {exc}") from exc
    await smtp.quit()


def _xoauth2(user: str, token: str) -> bytes:
    import base64

    return base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode())


async def _send_one(
    sessions: sessionmaker[Session], cfg: Config, clock: Clock, smtp: aiosmtplib.SMTP, row_id: int
) -> str:
    with sessions() as session:
        row = session.get(OutboxMessage, row_id)
        assert row is not None
        raw, recipient, kind = row.raw, row.recipient, row.kind
    try:
        await smtp.sendmail(cfg.council.mailbox_address, [recipient], raw)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        permanent = all(r.code >= 500 for r in exc.recipients)  # 4xx means "try later"
        return _failed(sessions, clock, row_id, f"recipient refused: {exc}", permanent)
    except aiosmtplib.SMTPResponseException as exc:
        permanent = exc.code >= 500
        return _failed(sessions, clock, row_id, f"SMTP {exc.code} {exc.message}", permanent)
    except (aiosmtplib.SMTPException, OSError) as exc:
        return _failed(sessions, clock, row_id, f"SMTP error: {exc}", permanent=False)
    faults.crash_point("after-send")
    now = clock.now()
    with sessions.begin() as session:
        row = session.get(OutboxMessage, row_id)
        assert row is not None
        row.status, row.sent_at, row.last_error = "sent", now, ""
        case = session.get(Case, row.case_id) if row.case_id else None
        if case is not None:
            if kind == "acknowledgement" and case.acknowledged_at is None:
                case.acknowledged_at = now
            add_event(
                session, case, now, _EVENT_KIND.get(kind, "note"), f"{kind} sent to {recipient}"
            )
        log.info("sent %s to %s case=%s", kind, recipient, case.ref if case else "-")
    return "sent"


_EVENT_KIND = {"acknowledgement": "acknowledged", "holding": "holding", "reminder": "reminder"}


def _failed(
    sessions: sessionmaker[Session], clock: Clock, row_id: int, error: str, permanent: bool
) -> str:
    now = clock.now()
    with sessions.begin() as session:
        row = session.get(OutboxMessage, row_id)
        assert row is not None
        row.last_error = error[:1000]
        if permanent or row.attempts >= MAX_ATTEMPTS:
            row.status = "failed"
            log.error("outbox %s to %s failed for good: %s", row.kind, row.recipient, error)
            return "failed"
        row.status = "pending"
        row.next_attempt_at = now + retry_delay(row.attempts)
        log.warning("outbox %s to %s deferred: %s", row.kind, row.recipient, error)
        return "deferred"


def _defer_all_due(sessions: sessionmaker[Session], clock: Clock, error: str) -> int:
    """The server is unreachable: count an attempt on everything due and back off."""
    count = 0
    while (row_id := _claim_next(sessions, clock)) is not None:
        _failed(sessions, clock, row_id, error, permanent=False)
        count += 1
    return count
