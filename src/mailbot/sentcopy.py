"""Sent copies: what mailbot sends is in the mailbox's sent folder, where officers look.

An officer reading the shared mailbox in Outlook should see what the resident was told,
threaded under the resident's message. Two ways to get it there:

- The provider keeps a copy of what it is handed (Microsoft 365 and Google do,
  `[smtp] provider_keeps_copy`): mailbot files nothing itself, and the copy doubles as a
  receipt. A message left 'uncertain' by a crash mid-hand-over is looked for there by its
  Message-ID: found, it was sent (recorded as sent, in its case's history); not there
  `copy_grace_minutes` after the hand-over began, the server never took it, and it is
  put back to be sent (once).
- Otherwise mailbot files a copy itself over IMAP (APPEND, marked read, the exact bytes
  sent), after the SMTP server has taken the message. The copy is owed in the same
  transaction that records the message as sent (`owe`), so a crash cannot forget it;
  filing is retried with backoff, a copy already there (filed just before a crash) is
  not filed twice, and one that keeps failing is told: a Problem for the clerk while
  filing fails, and a line in the case's history for each copy given up on.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from imapclient.exceptions import IMAPClientError
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from mailbot.config import ConfigError, ImapConfig
from mailbot.mailbox import Mailbox, MailboxError, choose_sent_folder, sign_in
from mailbot.oauth import OAuthError
from mailbot.outbox.delivery import record_sent
from mailbot.problems import ProblemKind, report, resolve
from mailbot.store import Case, CaseEvent, EventKind, OutboxMessage, SentCopy, UTCDateTime

if TYPE_CHECKING:
    from mailbot.app import App
    from mailbot.config import Config

log = logging.getLogger("mailbot.sentcopy")

# Filing is tried after 1, 2, 4 … minutes (at most an hour apart): about a day in all,
# then the copy is given up on and its case's history says so.
MAX_ATTEMPTS = 30
# An 'uncertain' message is looked for in the sent folder for this long after its
# hand-over; older ones stay for the clerk (`mailbot outbox resend` or `dismiss`), so a
# message nobody looked at for a week is never sent out of the blue.
RESOLVE_WINDOW = timedelta(days=1)
# How long a hand-over may take before its row turns 'uncertain' (outbox.delivery.SENDING_LEASE):
# the row's next_attempt_at is the claim's time plus this.
LEASE = timedelta(minutes=10)
BATCH = 200
CONNECTION_ERRORS = (MailboxError, OSError, OAuthError, ConfigError)


class CopyStatus(StrEnum):
    WAITING = "waiting"  # owed to the sent folder, not yet filed
    FILED = "filed"
    FAILED = "failed"  # tried too often; the case's history says so


class Uncertain(StrEnum):
    """What the sent folder says about a message left 'uncertain'."""

    FOUND = "found"  # the provider filed it: the server took it
    NEVER_TAKEN = "never-taken"  # not there after the grace period: send it again
    TOO_SOON = "too-soon"  # not there yet, within the grace period: look again later


def files_copies(cfg: Config, sender: str) -> bool:
    """mailbot itself files copies of what it sends as `sender`: the provider keeps no
    copy, and that mailbox has a sent folder (`sent = ""` turns it off)."""
    if cfg.smtp.keeps_copy:
        return False
    box = mailbox_for(cfg, sender)
    return box.sent != ""


def mailbox_for(cfg: Config, sender: str | None) -> ImapConfig:
    """The mailbox whose sent folder a message from `sender` belongs in (the case's
    mailbox; [imap] for the council's own address and for staff mail with no case)."""
    for box in cfg.all_mailboxes:
        if sender and cfg.address_of(box) == sender:
            return box
    return cfg.imap


def problem_key(cfg: Config, box: ImapConfig) -> str:
    return f"sent-copy:{cfg.address_of(box)}"


# --- owed: written with the record of sending --------------------------------------------


def owe(conn: Connection, cfg: Config, now: datetime, sent: Iterable[tuple[int, str]]) -> None:
    """The messages (outbox id, sender address) just recorded as sent are owed a copy
    in their mailbox's sent folder, where mailbot files it; in the caller's transaction."""
    rows = [
        {"outbox_id": row_id, "now": now}
        for row_id, sender in sent
        if files_copies(cfg, sender or cfg.council.mailbox_address)
    ]
    if rows:
        conn.execute(_owe_statement(conn.dialect.name), rows)


@functools.cache
def _owe_statement(dialect: str) -> Any:
    """One copy a message: one sent again (`mailbot outbox resend`) already has its
    copy owed or filed, and must never fail the commit that records it as sent."""
    table = SentCopy.__table__
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(table)
        .values(
            outbox_id=bindparam("outbox_id"),
            status=str(CopyStatus.WAITING),
            attempts=0,
            next_attempt_at=bindparam("now", type_=UTCDateTime),
            last_error="",
        )
        .on_conflict_do_nothing(index_elements=["outbox_id"])
    )


# --- filing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Owed:
    """A copy waiting to be filed, with what filing it needs."""

    copy_id: int
    outbox_id: int
    attempts: int
    raw: bytes
    message_id: str
    kind: str
    recipient: str
    case_id: int | None
    sender: str | None  # the case's mailbox address (None: the council's)
    sent_at: datetime | None


@dataclass
class Filed:
    """What one filing pass did."""

    filed: int = 0
    deferred: int = 0
    failed: int = 0


def waiting(app: App, limit: int = BATCH) -> list[Owed]:
    """Copies due to be filed now, oldest first."""
    copies, outbox, cases = SentCopy.__table__, OutboxMessage.__table__, Case.__table__
    query = (
        select(
            copies.c.id,
            copies.c.outbox_id,
            copies.c.attempts,
            outbox.c.raw,
            outbox.c.message_id,
            outbox.c.kind,
            outbox.c.recipient,
            outbox.c.case_id,
            cases.c.mailbox,
            outbox.c.sent_at,
        )
        .join(outbox, outbox.c.id == copies.c.outbox_id)
        .outerjoin(cases, cases.c.id == outbox.c.case_id)
        .where(
            copies.c.status == str(CopyStatus.WAITING),
            copies.c.next_attempt_at <= app.clock.now(),
        )
        .order_by(copies.c.id)
        .limit(limit)
    )
    with app.engine.connect() as conn:
        return [Owed(*row) for row in conn.execute(query)]


def file_due(app: App) -> Filed:
    """File every copy that is due, one IMAP connection a mailbox."""
    result = Filed()
    owed = waiting(app)
    for box, items in _by_mailbox(app.cfg, owed):
        _file_in(app, box, items, result)
    return result


def _by_mailbox(cfg: Config, items: Sequence[Any]) -> list[tuple[ImapConfig, list[Any]]]:
    groups: dict[int, tuple[ImapConfig, list[Any]]] = {}
    for item in items:
        box = mailbox_for(cfg, item.sender)
        groups.setdefault(id(box), (box, []))[1].append(item)
    return list(groups.values())


def _file_in(app: App, box: ImapConfig, items: list[Owed], result: Filed) -> None:
    try:
        mailbox = _connect(app, box)
    except CONNECTION_ERRORS as exc:
        _cannot(app, box, items, f"cannot reach the mailbox: {exc}", result)
        return
    try:
        folder = _sent_folder(mailbox, box)
        for index, item in enumerate(items):
            if not item.raw:
                # Emptied by the retention purge before it could be filed.
                _give_up(app, item, "the message was purged before its copy was filed")
                result.failed += 1
                continue
            if not _claim(app, item):
                continue  # another process is filing it
            tries = item.attempts + 1
            try:
                # Tried before: it may have been filed just before a crash.
                if item.attempts == 0 or not mailbox.holds_message_id(folder, item.message_id):
                    mailbox.append_copy(folder, item.raw, item.sent_at)
            except MailboxError as exc:  # the connection went: the rest wait too
                _not_filed(app, item, tries, str(exc), result)
                _cannot(app, box, items[index + 1 :], str(exc), result)
                return
            except IMAPClientError as exc:  # this message refused; the connection is fine
                _not_filed(app, item, tries, f"the IMAP server refused the copy: {exc}", result)
                continue
            _filed(app, item, folder)
            result.filed += 1
        with app.sessions.begin() as session:
            resolve(app, session, problem_key(app.cfg, box), app.clock.now())
    except (_NoSentFolder, *CONNECTION_ERRORS) as exc:
        _cannot(app, box, items, str(exc), result)
    finally:
        mailbox.close()


class _NoSentFolder(Exception):
    """The mailbox has no sent folder to file copies in (a setting to correct)."""


def _sent_folder(mailbox: Mailbox, box: ImapConfig) -> str:
    """The folder officers' replies are read from (`[imap] sent`, else the one the
    server marks \\Sent): copies go where Outlook shows what the mailbox sent."""
    exists = bool(box.sent) and mailbox.folder_exists(box.sent or "")
    marked = None if exists else mailbox.marked_sent_folder()
    chosen = choose_sent_folder(box.sent, exists, marked, key=f"{box.key_prefix}.sent")
    if chosen.name is None:
        raise _NoSentFolder(
            chosen.problem
            or f"{box.key_prefix}.sent: not set, and the server marks no folder as the "
            "sent folder: set it to the folder Outlook shows as Sent Items"
        )
    return chosen.name


def _connect(app: App, box: ImapConfig) -> Mailbox:
    return sign_in(app, box)  # the daemon's sign-in, OAuth included


def _claim(app: App, item: Owed) -> bool:
    """Count the try and set the next one before filing: a crash after the APPEND then
    finds the copy there on the next try instead of filing it again."""
    now, tries = app.clock.now(), item.attempts + 1
    copies = SentCopy.__table__
    with app.sessions.begin() as session:
        claimed = session.execute(
            update(copies)
            .where(
                copies.c.id == item.copy_id,
                copies.c.status == str(CopyStatus.WAITING),
                copies.c.attempts == item.attempts,
            )
            .values(attempts=tries, next_attempt_at=now + retry_delay(tries))
        )
    return claimed.rowcount == 1


def retry_delay(attempts: int) -> timedelta:
    """1, 2, 4 … minutes after each failed try, at most an hour."""
    return timedelta(minutes=min(2 ** max(attempts - 1, 0), 60))


def _filed(app: App, item: Owed, folder: str) -> None:
    with app.sessions.begin() as session:
        session.execute(
            update(SentCopy)
            .where(SentCopy.id == item.copy_id)
            .values(status=str(CopyStatus.FILED), filed_at=app.clock.now(), last_error="")
        )
    log.info("filed a copy of %s to %s in %s", item.kind, item.recipient, folder)


def _cannot(app: App, box: ImapConfig, items: list[Owed], error: str, result: Filed) -> None:
    """Filing in this mailbox failed as a whole: each copy still waiting counts a try and
    waits for its next, and the clerk hears once it has lasted (a Problem)."""
    now = app.clock.now()
    address = app.cfg.address_of(box)
    detail = f"copies of what mailbot sends cannot be filed in {address}'s sent folder: {error}"
    with app.sessions.begin() as session:
        report(session, problem_key(app.cfg, box), ProblemKind.SENT_COPY_FAILING, detail, now)
    for item in items:
        if item.raw and _claim(app, item):
            _not_filed(app, item, item.attempts + 1, error, result)


def _not_filed(app: App, item: Owed, tries: int, error: str, result: Filed) -> None:
    """One copy could not be filed after `tries` tries: it waits for its next, or after
    too many is given up on."""
    if tries >= MAX_ATTEMPTS:
        _give_up(app, item, error)
        result.failed += 1
        return
    with app.sessions.begin() as session:
        session.execute(
            update(SentCopy).where(SentCopy.id == item.copy_id).values(last_error=error[:1000])
        )
    log.warning("copy of %s to %s not filed yet: %s", item.kind, item.recipient, error)
    result.deferred += 1


def _give_up(app: App, item: Owed, error: str) -> None:
    now = app.clock.now()
    with app.sessions.begin() as session:
        session.execute(
            update(SentCopy)
            .where(SentCopy.id == item.copy_id)
            .values(status=str(CopyStatus.FAILED), last_error=error[:1000])
        )
        if item.case_id is not None:
            session.execute(
                insert(CaseEvent).values(
                    case_id=item.case_id,
                    at=now,
                    kind=str(EventKind.COPY_NOT_FILED),
                    detail=(
                        f"{item.kind} to {item.recipient} was sent, but no copy could be "
                        f"filed in the mailbox's sent folder: {error}"
                    )[:2000],
                )
            )
    log.error("gave up filing a copy of %s to %s: %s", item.kind, item.recipient, error)


# --- uncertain messages, where the provider keeps a copy ---------------------------------


def judge(found: bool, claimed_at: datetime, now: datetime, grace: timedelta) -> Uncertain:
    """What to do with an 'uncertain' message: the sent folder is the provider's
    receipt, and its copy may take a while to appear."""
    if found:
        return Uncertain.FOUND
    return Uncertain.NEVER_TAKEN if now >= claimed_at + grace else Uncertain.TOO_SOON


@dataclass(frozen=True)
class Doubtful:
    row_id: int
    message_id: str
    kind: str
    recipient: str
    case_id: int | None
    sender: str | None
    lease_ended: datetime  # the claim's time plus the lease

    @property
    def claimed_at(self) -> datetime:
        return self.lease_ended - LEASE


def doubtful(app: App) -> list[Doubtful]:
    """'uncertain' messages recent enough to settle by the sent folder."""
    outbox, cases = OutboxMessage.__table__, Case.__table__
    query = (
        select(
            outbox.c.id,
            outbox.c.message_id,
            outbox.c.kind,
            outbox.c.recipient,
            outbox.c.case_id,
            cases.c.mailbox,
            outbox.c.next_attempt_at,
        )
        .outerjoin(cases, cases.c.id == outbox.c.case_id)
        .where(
            outbox.c.status == "uncertain",
            outbox.c.next_attempt_at >= app.clock.now() - RESOLVE_WINDOW,
        )
        .order_by(outbox.c.id)
        .limit(BATCH)
    )
    with app.engine.connect() as conn:
        return [Doubtful(*row) for row in conn.execute(query)]


def settle_uncertain(app: App) -> int:
    """Where the provider keeps a copy, settle 'uncertain' messages by looking for them
    in the sent folder. Returns how many were settled (put back to send, or sent)."""
    if not app.cfg.smtp.keeps_copy:
        return 0
    settled = 0
    grace = timedelta(minutes=app.cfg.smtp.copy_grace_minutes)
    for box, rows in _by_mailbox(app.cfg, doubtful(app)):
        try:
            mailbox = _connect(app, box)
        except CONNECTION_ERRORS as exc:
            # They stay 'uncertain' (their cases say so) and are looked at next time.
            log.warning("cannot look in %s's sent folder: %s", app.cfg.address_of(box), exc)
            continue
        try:
            folder = _sent_folder(mailbox, box)
            for row in rows:
                found = mailbox.holds_message_id(folder, row.message_id)
                verdict = judge(found, row.claimed_at, app.clock.now(), grace)
                settled += _settle(app, row, verdict, folder, grace)
        except (_NoSentFolder, *CONNECTION_ERRORS) as exc:
            log.warning("cannot look in %s's sent folder: %s", app.cfg.address_of(box), exc)
        finally:
            mailbox.close()
    return settled


def _settle(app: App, row: Doubtful, verdict: Uncertain, folder: str, grace: timedelta) -> int:
    if verdict is Uncertain.TOO_SOON:
        return 0
    now = app.clock.now()
    outbox = OutboxMessage.__table__
    with app.sessions.begin() as session:
        conn = session.connection()
        if verdict is Uncertain.FOUND:
            said = f" (found in the sent folder {folder!r} after mailbot stopped mid-send)"
            changed = conn.execute(
                update(outbox)
                .where(outbox.c.id == row.row_id, outbox.c.status == "uncertain")
                .values(status="sent", sent_at=now, last_error="")
            )
            if changed.rowcount == 1:
                record_sent(conn, now, row.row_id, row.recipient, row.kind, row.case_id, said)
                log.info("%s to %s was sent after all%s", row.kind, row.recipient, said)
            return changed.rowcount
        minutes = int(grace.total_seconds() // 60)
        why = (
            f"{row.kind} to {row.recipient} was not in the sent folder {folder!r} "
            f"{minutes} minutes after it was handed over: the server never took it, so it "
            "is sent now (once)"
        )
        changed = conn.execute(
            update(outbox)
            .where(outbox.c.id == row.row_id, outbox.c.status == "uncertain")
            .values(status="pending", next_attempt_at=now, last_error="")
        )
        if changed.rowcount == 1 and row.case_id is not None:
            conn.execute(
                insert(CaseEvent).values(
                    case_id=row.case_id, at=now, kind=str(EventKind.NOTE), detail=why
                )
            )
        if changed.rowcount == 1:
            log.warning("%s", why)
        return changed.rowcount
