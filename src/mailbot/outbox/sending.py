"""One sending pass: claim what is due, write it (from its letter, as the case stands now),
hand it over on up to `[smtp] connections` connections at once, and record it sent
together with the next claims."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Row
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import Select

from mailbot import faults, sentcopy
from mailbot.clock import Clock
from mailbot.letters import render_letter
from mailbot.outbox.delivery import ONLY_WHILE_OPEN, Claim, failed, mark_sent, take, withdraw
from mailbot.outbox.pauses import EVERY_SENDER, Pauses
from mailbot.outbox.staff import tell_clerk_about_template
from mailbot.outbox.transport import (
    CONNECT_ERRORS,
    KeptConnections,
    connect,
    connect_problem,
    quit_smtp,
    send_one,
)
from mailbot.store import Case, OutboxMessage, Sessions, UTCDateTime

if TYPE_CHECKING:
    from mailbot.app import App

log = logging.getLogger("mailbot.outbox")


@dataclass
class FlushResult:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    paused: int = 0  # waiting for sending to resume (a refusal of our account or address)


def flush(app: App, stop: StopFlag | None = None) -> FlushResult:
    """Send everything due in the outbox over one SMTP connection; with `stop`, end after
    the message in hand once it is set (a message is never abandoned half-sent)."""
    return asyncio.run(send_due(app, stop))


class SendingPaused(Exception):
    """`run --once` ended with sending refused or the SMTP server out of reach (exit 2);
    what waits is sent, once each, on a later run once it is fixed."""


class StopFlag(Protocol):
    """Set by another thread or process to end sending after the message in hand."""

    def is_set(self) -> bool: ...


def _claim_round(
    sessions: Sessions,
    clock: Clock,
    app: App | None = None,
    *,
    sent: Sequence[Claim] = (),
    want: int = 1,
    read: _Letters | None = None,
) -> list[Claim]:
    """Take the oldest `want` due messages, one for each SMTP connection, so a crash
    strands at most one a connection.

    With `app`, each message is also written (composed from its letter) first: if the
    database cannot store it, nothing is claimed and it stays due. `sent`, the messages
    just handed over, are recorded as sent in the claims' transaction (one commit a
    round, not two); with `want` 0 nothing new is claimed. `read` are the next messages
    when the caller has read and written them already.
    """
    now = clock.now()
    while True:
        # Read and compose with no lock held, then write everything in one short turn:
        # SQLite has one write lock, and the daemon's reading process needs it too.
        if read is None or not want:
            read = _run(_next_letters(sessions, app, now, want))
        ready, overtaken = read
        read = None
        with sessions.begin() as session:
            # Plain statements: this runs for every message, and the ORM's bookkeeping
            # would cost more than the statements do.
            conn = session.connection()
            for each in sent:
                mark_sent(conn, now, each)
            if app is not None:  # owed a copy in the sent folder, in the same commit
                sentcopy.owe(conn, app.cfg, now, [(c.row_id, c.sender) for c in sent])
            for row, case in overtaken:
                withdraw(conn, now, row, case)
            claims = [claim for each in ready if (claim := take(conn, now, *each))]
        sent = ()  # recorded
        # Go again only when everything read was withdrawn or taken by another process.
        if claims or not (ready or overtaken):
            return claims


# The next messages, written, each with its case, bytes, any error and the template
# version written from; and those a closed case has overtaken.
_Written = tuple[Row[Any], Row[Any] | None, bytes, str, str | None]


_Letters = tuple[list[_Written], list[tuple[Row[Any], Row[Any]]]]


def _next_letters(
    sessions: Sessions, app: App | None, now: datetime, want: int
) -> Generator[None, None, _Letters]:
    """The next `want` due messages, written; and those a closed case has overtaken.

    A generator that pauses between its steps (reading, then writing each message), so
    the sending loop can hand the server its next command in between (_read_meanwhile);
    _run() runs it straight through.
    """
    ready: list[_Written] = []
    overtaken: list[tuple[Row[Any], Row[Any]]] = []
    if not want:
        return ready, overtaken
    # A transaction of its own, committed: writing a letter may queue one to the clerk
    # about a broken template. It writes nothing otherwise, so takes no write lock.
    with sessions.begin() as session:
        conn = session.connection()
        rows = conn.execute(_next_due(), {"now": now, "want": want}).all()
        for row in rows:
            yield
            case = conn.execute(_case_of(), {"case": row.case_id}).first() if row.case_id else None
            if row.kind in ONLY_WHILE_OPEN and case is not None and case.status != "open":
                overtaken.append((row, case))
            else:
                ready.append(_write(app, session, row, case))
    return ready, overtaken


def _run(steps: Generator[None, None, _Letters]) -> _Letters:
    """Run _next_letters straight through, with no pauses."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


async def _read_meanwhile(app: App, want: int) -> _Letters | None:
    """The next messages, read and written while the server takes the current ones: the
    event loop carries their SMTP conversation on between the steps, so our work and the
    server's overlap. None if the database could not be read (the claim reads again)."""
    steps = _next_letters(app.sessions, app, app.clock.now(), want)
    try:
        while True:
            await asyncio.sleep(0)
            try:
                next(steps)
            except StopIteration as done:
                return done.value
    except OperationalError:
        return None


def _write(app: App | None, session: Session, row: Row[Any], case: Row[Any] | None) -> _Written:
    """A due message's bytes, composed from its letter and its case as it stands now
    (kept, as the record of what was sent), or the error that stopped it."""
    raw, error, version = row.raw, "", None
    if app is not None and not raw:
        try:
            written = render_letter(app, session, row, case)
            raw, version = written.raw, written.version
            if written.problem:
                tell_clerk_about_template(
                    app, session, written.template, written.problem, app.clock.now()
                )
        except OperationalError:
            raise
        except Exception as exc:  # a bug in one letter must not block the rest
            log.exception("cannot write %s %s", row.kind, row.key)
            error = f"cannot write the message: {type(exc).__name__}: {exc}"
    return row, case, raw, error, version


@functools.cache
def _case_of() -> Select:
    cases = Case.__table__
    return select(cases).where(cases.c.id == bindparam("case"))


@functools.cache
def _next_due() -> Select:
    """The oldest messages due to go, locked against other processes (PostgreSQL)."""
    table = OutboxMessage.__table__
    return (
        select(
            table.c.id,
            table.c.key,
            table.c.kind,
            table.c.recipient,
            table.c.message_id,
            table.c.case_id,
            table.c.letter,
            table.c.raw,
        )
        .where(
            table.c.status == "pending",
            table.c.next_attempt_at <= bindparam("now", type_=UTCDateTime),
        )
        .order_by(table.c.id)
        .limit(bindparam("want"))
        .with_for_update(skip_locked=True)  # other processes skip them
    )


def _count_due(sessions: Sessions, clock: Clock, *, limit: int) -> int:
    """How many messages are due to go, counting no further than `limit`."""
    table = OutboxMessage.__table__
    with sessions() as session:
        due = (
            select(table.c.id)
            .where(table.c.status == "pending", table.c.next_attempt_at <= clock.now())
            .limit(limit)
            .subquery()
        )
        return session.scalar(select(func.count()).select_from(due)) or 0


async def send_due(
    app: App, stop: StopFlag | None = None, kept: KeptConnections | None = None
) -> FlushResult:
    """Send what is due over up to `[smtp] connections` SMTP connections at once: `kept`'s
    while they still answer (left there afterwards), new ones otherwise, closed at the end.

    Each connection carries one message at a time; the messages of one round are claimed
    together, and recorded as sent together with the next round's claims.
    """
    sessions, cfg, clock = app.sessions, app.cfg, app.clock
    result = FlushResult()
    pauses = Pauses.load(app)
    if pauses.waiting(EVERY_SENDER):
        return result  # nothing goes until the server takes our account again
    due = _count_due(sessions, clock, limit=cfg.smtp.connections)
    if not due:
        return result  # no SMTP connection when there is nothing to send
    lanes = await kept.take() if kept is not None else []
    try:
        while len(lanes) < due:
            lanes.append(await connect(cfg.smtp, app.tokens))
    except CONNECT_ERRORS as exc:
        if not lanes:
            pauses.pause(EVERY_SENDER, *connect_problem(cfg.smtp, exc))
            return result
        log.warning("outbox: sending over %d connection(s) for now: %s", len(lanes), exc)
    pauses.resume(EVERY_SENDER)  # connected and signed in
    try:
        seen: set[int] = set()
        claims = _claim_round(sessions, clock, app, want=len(lanes))
        while claims := [c for c in claims if c.row_id not in seen]:
            seen.update(c.row_id for c in claims)
            faults.crash_point("after-claim")
            handed = zip(lanes, claims, strict=False)  # at times fewer due than connections
            sending = asyncio.gather(*(send_one(app, lane, c, pauses) for lane, c in handed))
            more = not (stop and stop.is_set())
            try:
                # Nothing is claimed until these are recorded, so reading the next ones
                # now still strands at most one message a connection.
                upcoming = await _read_meanwhile(app, len(lanes) if more else 0)
            finally:
                outcomes = await sending
            for outcome in outcomes:
                setattr(result, outcome, getattr(result, outcome) + 1)
            sent = [c for c, outcome in zip(claims, outcomes, strict=True) if outcome == "sent"]
            claims = _record_sent(app, sent, len(lanes) if more else 0, upcoming)
    except BaseException:
        for lane in lanes:
            lane.close()  # in an unknown state: never reused
        raise
    if kept is not None:
        kept.keep([lane for lane in lanes if lane.is_connected])
    for lane in lanes:
        if kept is None or not lane.is_connected:
            await quit_smtp(lane)
    return result


def _record_sent(
    app: App, sent: Sequence[Claim], want: int, read: _Letters | None = None
) -> list[Claim]:
    """Record messages as sent and claim the next ones, in one transaction.

    The server has the messages now, so recording them comes first: if the database
    refuses the pair (full, say: the next messages are written into their rows), the
    record is tried alone, waiting out a briefly full or locked database. If it never
    recovers, the rows stay 'sending' and are never sent again (they turn 'uncertain'
    once their lease runs out).
    """
    try:
        claims = _claim_round(app.sessions, app.clock, app, sent=sent, want=want, read=read)
    except OperationalError:
        for attempt in range(3):
            try:
                _claim_round(app.sessions, app.clock, app, sent=sent, want=0)
                break
            except OperationalError:
                if attempt == 2:
                    for each in sent:
                        log.critical(
                            "%s to %s was sent but could not be recorded",
                            each.kind,
                            each.recipient,
                        )
                    raise
                time.sleep(1 + attempt)
        raise  # recorded; the rest waits until the database has room again
    faults.crash_point("after-record")
    return claims


REHEARSAL_ROUND = 100  # messages written and recorded in one transaction


def rehearse_sending(app: App) -> FlushResult:
    """Everything due, written and recorded as sent at the clock's now, over no
    connection at all: `mailbot replay`'s stand-in for flush, so that a rehearsal's
    cases, histories and figures are what live sending would leave. Nothing leaves the
    machine; a letter that cannot be written fails, as it would live."""
    result = FlushResult()
    claims = _claim_round(app.sessions, app.clock, app, want=REHEARSAL_ROUND)
    while claims:
        taken = []
        for claim in claims:
            if claim.error or not claim.raw:
                why = claim.error or "empty message"
                failed(app.sessions, app.clock, claim.row_id, why, permanent=True)
                result.failed += 1
            else:
                taken.append(claim)
        result.sent += len(taken)
        claims = _claim_round(app.sessions, app.clock, app, sent=taken, want=REHEARSAL_ROUND)
    return result
