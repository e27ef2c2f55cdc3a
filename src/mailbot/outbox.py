"""Outbox: queue letters, then send each exactly once — retried, backed off, never repeated."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import ssl
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import aiosmtplib
from sqlalchemy import (
    JSON,
    ColumnElement,
    LargeBinary,
    String,
    bindparam,
    cast,
    column,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import Insert, ReturningInsert, Update
from sqlalchemy.sql.selectable import Select, TableValuedAlias

from mailbot import faults, sentcopy
from mailbot.addresses import domain_of, for_the_wire, needs_smtputf8, recipient_key
from mailbot.calendar import next_opening
from mailbot.clock import Clock
from mailbot.config import ConfigError, OfficerConfig, SmtpConfig
from mailbot.letters import Letter, new_message_id, render_letter
from mailbot.oauth import OAuthError, OAuthTokens
from mailbot.policy import Policy
from mailbot.problems import SENDING_KINDS, ProblemKind, open_problems, report, resolve
from mailbot.refusals import Refusal, Step, sort_refusal
from mailbot.route import holders
from mailbot.store import Case, CaseEvent, NoTurn, OutboxMessage, Problem, UTCDateTime

if TYPE_CHECKING:
    from mailbot.app import App

log = logging.getLogger("mailbot.outbox")

MAX_ATTEMPTS = 30  # about three days of retries with the backoff below
SENDING_LEASE = timedelta(minutes=10)
KEEP_IDLE = 30.0  # seconds the sending process keeps idle SMTP connections open


def queue(
    session: Session,
    items: list[tuple[str, Letter, int | None]],
    *,
    mailbox_address: str,
    now: datetime,
    send_at: datetime | None = None,
) -> set[str]:
    """Queue letters by key in one statement; a key queued before is skipped, so each
    thing happens once however often it is asked for. Returns the keys newly queued."""
    if not items:
        return set()
    rows = [
        (
            key,
            new_message_id(mailbox_address),
            case_id,
            letter.kind,
            letter.recipient,
            letter.as_json(),
            recipient_key(letter.recipient),
            domain_of(letter.recipient),
        )
        for key, letter, case_id in items
    ]
    statement = _queue_statement(session.get_bind().dialect.name)
    params = {"rows": json.dumps(rows), "now": now, "send_at": send_at or now}
    return set(session.execute(statement, params).scalars().all())


@functools.cache
def _queue_statement(dialect: str) -> ReturningInsert[tuple[str]]:
    """INSERT … SELECT from the rows sent as one JSON array, skipping keys already queued."""
    table = OutboxMessage.__table__
    row = json_rows(dialect).c.value
    # Each letter is an object inside the array; read as text (->> on PostgreSQL,
    # json_extract on SQLite) it is stored as that object's JSON.
    letter = row[5].as_string()
    if dialect == "postgresql":
        letter = cast(letter, JSON)
    values = {
        "key": row[0].as_string(),
        "message_id": row[1].as_string(),
        "case_id": row[2].as_integer(),
        "kind": row[3].as_string(),
        "recipient": row[4].as_string(),
        "recipient_key": row[6].as_string(),
        "recipient_domain": row[7].as_string(),
        "letter": letter,
        "raw": literal(b"", LargeBinary),  # written when sent
        "status": literal("pending"),
        "attempts": literal(0),
        "next_attempt_at": bindparam("send_at", type_=UTCDateTime),
        "last_error": literal(""),
        "created_at": bindparam("now", type_=UTCDateTime),
    }
    # WHERE true: SQLite would read ON CONFLICT straight after a FROM as part of a join.
    letters = select(*values.values()).where(true())
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(table)
        .from_select(list(values), letters, include_defaults=False)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(table.c.key)
    )


def json_rows(dialect: str) -> TableValuedAlias:
    """The elements of the JSON array bound as `rows`, as a table the database reads itself.

    Thousands of rows go over as one parameter: no bind processing row by row in Python,
    and no statement with thousands of placeholders for the driver to parse.
    """
    rows = bindparam("rows", type_=String)
    if dialect == "postgresql":
        # jsonb: parsed once, where a json value is parsed again for every field read
        elements = func.jsonb_array_elements(cast(rows, JSONB))
        return elements.table_valued(column("value", JSONB)).alias("item")
    return func.json_each(rows).table_valued(column("value", JSON)).alias("item")


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


@dataclass
class FlushResult:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    paused: int = 0  # waiting for sending to resume (a refusal of our account or address)


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
            _tell_case(session.connection(), now, row, "send-uncertain")
    return len(rows)


def flush(app: App, stop: StopFlag | None = None) -> FlushResult:
    """Send everything due in the outbox over one SMTP connection; with `stop`, end after
    the message in hand once it is set (a message is never abandoned half-sent)."""
    return asyncio.run(_flush(app, stop))


class SendingPaused(Exception):
    """`run --once` ended with sending refused or the SMTP server out of reach (exit 2);
    what waits is sent, once each, on a later run once it is fixed."""


class SendingStopped(Exception):
    """The daemon's sending process ended by itself (killed, or a crash)."""


class StopFlag(Protocol):
    """Set by another thread or process to end sending after the message in hand."""

    def is_set(self) -> bool: ...


class _Flag:
    """A yes/no shared with the sending process: a byte of shared memory, no lock."""

    def __init__(self) -> None:
        self._value = multiprocessing.get_context("fork").Value("b", 0, lock=False)

    def set(self) -> None:
        self._value.value = 1

    def clear(self) -> None:
        self._value.value = 0

    def is_set(self) -> bool:
        return bool(self._value.value)


class _Doorbell:
    """Wakes the sending process: a byte down a pipe. A process killed while waiting
    cannot leave the daemon stuck ringing, as it can with a multiprocessing.Event, whose
    set() waits for every waiter to wake."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def ring(self) -> None:
        with contextlib.suppress(BlockingIOError):  # full of rings already: it will wake
            os.write(self._write, b"!")

    def wait(self, seconds: float) -> bool:
        """Up to `seconds` for a ring; True if there was one (all are answered at once)."""
        ready = multiprocessing.connection.wait([self._read], max(0.0, seconds))
        if ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._read, 4096):
                    pass
        return bool(ready)


class Sender:
    """The daemon's sending process: mail goes out as soon as it is queued, while the
    main process reads the next message, and again when a deferred message's retry is due.

    A process, not a thread: Python runs one thread at a time, and composing and sending
    a busy morning's acknowledgements would otherwise take turns with reading the mail.
    It is forked when the daemon starts, before any other thread, so it has the loaded
    config, policy, templates and clock; it opens its own database connections. It
    leaves signals to the daemon, which stops it (after the message in hand) and tells
    it to reload; it dies with the daemon if that is killed.
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self._doorbell = _Doorbell()
        self._stopping = _Flag()
        self._reloading = _Flag()
        # time.monotonic() (one clock for every process) while a pass is under way, else 0
        ctx = multiprocessing.get_context("fork")
        self._busy_since = ctx.Value("d", 0.0, lock=False)
        # When the SMTP server last took mail or our sign-in (the app's clock, Unix
        # time; 0: not yet): the daemon's metrics read it.
        self._smtp_contact = ctx.Value("d", 0.0, lock=False)
        self._parent = os.getpid()
        self._process = ctx.Process(target=self._main, name="mailbot-outbox", daemon=True)

    def start(self) -> None:
        self._process.start()

    def wake(self) -> None:
        """Something was queued: send it now."""
        self._doorbell.ring()

    def reload(self) -> None:
        """SIGHUP reached the daemon: read the policy and templates again."""
        self._reloading.set()
        self._doorbell.ring()

    def stop(self, timeout: float = 60.0) -> None:
        """Finish the message in hand, then end the process."""
        self._stopping.set()
        self._doorbell.ring()
        self._process.join(timeout)
        if self._process.is_alive():
            log.error("outbox: the sending process did not stop in %.0f s; killed", timeout)
            self._process.kill()
            self._process.join()

    def on_end(self, call: Callable[[], None]) -> None:
        """Have a watching thread call `call` when the sending process ends, however it
        ends (its sentinel: nothing is reaped here, so ended() still reads the code)."""

        def watch() -> None:
            multiprocessing.connection.wait([self._process.sentinel])
            call()

        threading.Thread(target=watch, name="outbox-watch", daemon=True).start()

    def ended(self) -> int | None:
        """The sending process's exit code if it has ended (it should not, until stopped)."""
        return None if self._process.is_alive() else self._process.exitcode

    @property
    def smtp_contact(self) -> datetime | None:
        """When the SMTP server last took mail or our sign-in (None: not since start)."""
        stamp = self._smtp_contact.value
        return datetime.fromtimestamp(stamp, UTC) if stamp else None

    def stuck(self, limit: timedelta = SENDING_LEASE) -> bool:
        """One pass of sending has run longer than `limit` (each step times out sooner):
        the daemon then stops feeding systemd's watchdog, which restarts it."""
        busy = self._busy_since.value
        return busy > 0 and time.monotonic() - busy > limit.total_seconds()

    def _main(self) -> None:
        """The sending process."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # the daemon decides when we stop
        _die_with_parent(self._parent)
        self.app.engine.dispose(close=False)  # the daemon's connections stay the daemon's
        # One event loop for the process's life, so the SMTP connection can outlive a pass.
        with asyncio.Runner() as runner:
            kept = _KeptConnections()
            try:
                self._serve(runner, kept)
            finally:
                runner.run(kept.close())

    def _serve(self, runner: asyncio.Runner, kept: _KeptConnections) -> None:
        failures = 0
        again = False  # straight round again, without waiting for a ring
        while not self._stopping.is_set():
            woken = again or self._doorbell.wait(self._seconds_to_next(KEEP_IDLE if kept else 60.0))
            again = False
            if self._stopping.is_set():
                break
            if self._reloading.is_set():
                self._reloading.clear()
                self._reload_app()
            if not woken:
                runner.run(kept.close())  # nothing new for a while: let the server go
            self._busy_since.value = time.monotonic()
            try:
                # Another process on the same database may have died mid-send.
                recover_interrupted(self.app.sessions, self.app.clock)
                sentcopy.settle_uncertain(self.app)  # where the provider keeps a copy
                sent = runner.run(_flush(self.app, self._stopping, kept))
                if sent.sent or kept:  # the server answered: taken, or kept open
                    self._smtp_contact.value = self.app.clock.now().timestamp()
                sentcopy.file_due(self.app)  # copies of what just went, in the sent folder
                failures = 0
            except Exception as exc:  # the database, say: try again, never let it die
                failures += 1
                delay = min(2.0**failures, 300.0)
                log.error("outbox: cannot send now (%s); trying again in %.0f s", exc, delay)
                self._doorbell.wait(delay)  # a stop rings too
                again = True
            finally:
                self._busy_since.value = 0.0

    def _reload_app(self) -> None:
        try:
            self.app.reload()
        except Exception as exc:  # the daemon logs the same problem; keep what we had
            log.debug("outbox: reload failed, keeping the previous policy: %s", exc)

    def _seconds_to_next(self, limit: float) -> float:
        """Until the earliest deferred message, or paused sending, is due another try (at
        most `limit`; 0 if one is due)."""
        try:
            with self.app.sessions() as session:
                due = session.scalar(
                    select(func.min(OutboxMessage.next_attempt_at)).where(
                        OutboxMessage.status == "pending"
                    )
                )
                retries = [p.retry_at for p in open_problems(session, SENDING_KINDS)]
        except OperationalError:
            return 5.0
        times = [t for t in (due, *retries) if t is not None]
        if not times:
            return limit
        return max(0.0, min(limit, (min(times) - self.app.clock.now()).total_seconds()))


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when the daemon dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before we asked
        os._exit(0)


PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


@dataclass(frozen=True)
class _Claim:
    row_id: int
    raw: bytes
    recipient: str
    kind: str
    error: str = ""
    case_id: int | None = None
    ref: str | None = None
    said: str = ""  # for the case's history: the new date, the working days left
    sender: str = ""  # the case's mailbox it comes from ("": the council's)


def _claim_round(
    sessions: sessionmaker[Session],
    clock: Clock,
    app: App | None = None,
    *,
    sent: Sequence[_Claim] = (),
    want: int = 1,
    read: _Letters | None = None,
) -> list[_Claim]:
    """Take the oldest `want` due messages, one for each SMTP connection, so a crash
    strands at most one a connection.

    With `app`, each message is also written (composed from its letter) first: if the
    database cannot store it, nothing is claimed and it stays due. `sent`, the messages
    just handed over, are recorded as sent in the claims' transaction (one commit a
    round, not two); with `want` 0 nothing new is claimed. `read` are the next messages
    when the caller has read and written them already.
    """
    now = clock.now()
    turn = app.write_turn if app else NoTurn()
    while True:
        # Read and compose with no lock held, then write everything in one short turn:
        # SQLite has one write lock, and the daemon's reading process needs it too.
        if read is None or not want:
            read = _run(_next_letters(sessions, app, now, want))
        ready, overtaken = read
        read = None
        with turn, sessions.begin() as session:
            # Plain statements: this runs for every message, and the ORM's bookkeeping
            # would cost more than the statements do.
            conn = session.connection()
            for each in sent:
                _mark_sent(conn, now, each)
            if app is not None:  # owed a copy in the sent folder, in the same commit
                sentcopy.owe(conn, app.cfg, now, [(c.row_id, c.sender) for c in sent])
            for row, case in overtaken:
                _withdraw(conn, now, row, case)
            claims = [claim for each in ready if (claim := _take(conn, now, *each))]
        sent = ()  # recorded
        # Go again only when everything read was withdrawn or taken by another process.
        if claims or not (ready or overtaken):
            return claims


# The next messages, written, each with its case, bytes, any error and the template
# version written from; and those a closed case has overtaken.
_Written = tuple[Row[Any], Row[Any] | None, bytes, str, str | None]
_Letters = tuple[list[_Written], list[tuple[Row[Any], Row[Any]]]]


def _next_letters(
    sessions: sessionmaker[Session], app: App | None, now: datetime, want: int
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


def _take(
    conn: Connection,
    now: datetime,
    row: Row[Any],
    case: Row[Any] | None,
    raw: bytes,
    error: str,
    version: str | None = None,
) -> _Claim | None:
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
    return _Claim(row.id, raw, row.recipient, row.kind, error, row.case_id, ref, said, sender)


def _write(app: App | None, session: Session, row: Row[Any], case: Row[Any] | None) -> _Written:
    """A due message's bytes, composed from its letter and its case as it stands now
    (kept, as the record of what was sent), or the error that stopped it."""
    raw, error, version = row.raw, "", None
    if app is not None and not raw:
        try:
            raw, version = render_letter(app, session, row, case)
        except OperationalError:
            raise
        except Exception as exc:  # a bug in one letter must not block the rest
            log.exception("cannot write %s %s", row.kind, row.key)
            error = f"cannot write the message: {type(exc).__name__}: {exc}"
    return row, case, raw, error, version


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


def _what_it_said(letter: dict | None) -> str:
    """The part of a letter worth a line in the case's history."""
    extra = (letter or {}).get("extra") or {}
    if extra.get("new_date"):
        return f"; new date {extra['new_date']}"
    if "working_days_left" in extra:
        return f"; {extra['working_days_left']} working day(s) left"
    return ""


def _count_due(sessions: sessionmaker[Session], clock: Clock, *, limit: int) -> int:
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


@dataclass
class _KeptConnections:
    """The sending process's SMTP connections, kept between passes while mail keeps
    coming, so a busy morning is not a new connection (and sign-in) for every batch."""

    lanes: list[aiosmtplib.SMTP] = field(default_factory=list)

    async def take(self) -> list[aiosmtplib.SMTP]:
        """The kept connections the server still answers on."""
        lanes, self.lanes = self.lanes, []
        alive = []
        for smtp in lanes:
            try:
                await smtp.noop()  # servers drop idle connections; find out first
            except (aiosmtplib.SMTPException, OSError):
                smtp.close()
                continue
            alive.append(smtp)
        return alive

    def keep(self, lanes: list[aiosmtplib.SMTP]) -> None:
        self.lanes = lanes

    async def close(self) -> None:
        lanes, self.lanes = self.lanes, []
        for smtp in lanes:
            await _quit(smtp)

    def __bool__(self) -> bool:
        return bool(self.lanes)


async def _quit(smtp: aiosmtplib.SMTP) -> None:
    try:
        await smtp.quit()
    except (aiosmtplib.SMTPException, OSError):
        smtp.close()


async def _flush(
    app: App, stop: StopFlag | None = None, kept: _KeptConnections | None = None
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
            lanes.append(await _connect(cfg.smtp, app.tokens))
    except CONNECT_ERRORS as exc:
        if not lanes:
            pauses.pause(EVERY_SENDER, *_connect_problem(cfg.smtp, exc))
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
            sending = asyncio.gather(*(_send_one(app, lane, c, pauses) for lane, c in handed))
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
            await _quit(lane)
    return result


async def _connect(cfg: SmtpConfig, tokens: OAuthTokens | None = None) -> aiosmtplib.SMTP:
    context = ssl.create_default_context(cafile=cfg.ca_path)
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
        if tokens is None:
            raise OAuthError('smtp.auth = "xoauth2" needs an [oauth] table')
        # msal and google-auth block on HTTP: keep the event loop free while they renew.
        token = await asyncio.to_thread(tokens.for_user(cfg.username).token)
        await smtp.auth_xoauth2(cfg.username, token)
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


async def _send_one(app: App, smtp: aiosmtplib.SMTP, claim: _Claim, pauses: Pauses) -> str:
    sessions, cfg, clock = app.sessions, app.cfg, app.clock
    row_id, raw, recipient = claim.row_id, claim.raw, claim.recipient
    if claim.error or not raw:
        return _failed(sessions, clock, row_id, claim.error or "empty message", permanent=True)
    sender = claim.sender or cfg.council.mailbox_address
    if pauses.waiting(sender):
        return _hold(sessions, row_id, pauses.reason(sender))
    step = Step.MAIL
    try:
        options, encoding = await _international(smtp, recipient)
        if encoding is None:
            why = (
                f"the SMTP server does not take international addresses (no SMTPUTF8, RFC "
                f"6531), and {recipient} has letters outside ASCII before the @"
            )
            return _failed(sessions, clock, row_id, why, permanent=True)
        # MAIL and RCPT first: a failure there means the server has nothing, so it is
        # safe to try again later.
        await smtp.mail(cfg.council.mailbox_address, options=options, encoding=encoding)
        step = Step.RCPT
        address = recipient if options else for_the_wire(recipient)
        await smtp.rcpt(address, encoding=encoding)
    except aiosmtplib.SMTPResponseException as exc:
        await _reset(smtp)
        return _refused(app, row_id, sender, sort_refusal(exc.code, exc.message, step), pauses)
    except (aiosmtplib.SMTPException, OSError) as exc:
        return _failed(sessions, clock, row_id, f"SMTP error: {exc}", permanent=False)
    try:
        await smtp.data(raw)
    except aiosmtplib.SMTPResponseException as exc:
        # The server answered "no" to the message itself: it does not have it.
        refusal = sort_refusal(exc.code, exc.message, Step.DATA)
        return _refused(app, row_id, sender, refusal, pauses)
    except (aiosmtplib.SMTPException, OSError) as exc:
        # No answer after the whole message went over: the server may have queued it
        # (RFC 1047), so it is as uncertain as a kill -9 mid-send and is not sent again.
        return _uncertain(sessions, clock, row_id, f"the server did not confirm the message: {exc}")
    faults.crash_point("after-send")
    pauses.resume(sender)  # taken: if sending as this address was refused, it is not now
    return "sent"  # recorded by the caller, with the claim of the next message


async def _international(smtp: aiosmtplib.SMTP, recipient: str) -> tuple[list[str], str | None]:
    """MAIL FROM's options and the envelope's encoding for this recipient: SMTPUTF8 and
    UTF-8 where letters outside ASCII come before the @ (None: the server cannot take
    it), else none and ASCII (an international domain goes as IDNA's ASCII form)."""
    if not needs_smtputf8(recipient):
        return [], "ascii"
    if smtp.is_ehlo_or_helo_needed:
        await smtp.ehlo()
    if not smtp.supports_extension("smtputf8"):
        return [], None
    options = ["SMTPUTF8"] + (["BODY=8BITMIME"] if smtp.supports_extension("8bitmime") else [])
    return options, "utf-8"


def _refused(app: App, row_id: int, sender: str, refusal: Refusal, pauses: Pauses) -> str:
    """A refusal about our account pauses sending as `sender` (this message waits with
    the rest); one about the recipient or the message is this message's alone."""
    if refusal.pauses_sending:
        detail = f"the SMTP server refuses to send mail from {sender}: {refusal.reply}"
        # "Not now" (4xx) may pass by itself, like a server out of reach: the clerk hears
        # only if it lasts. A permanent refusal will not, and is told at once.
        kind = ProblemKind.SENDING_REFUSED if refusal.permanent else ProblemKind.SMTP_UNREACHABLE
        pauses.pause(sender, kind, detail)
        return _hold(app.sessions, row_id, pauses.reason(sender))
    return _failed(app.sessions, app.clock, row_id, f"SMTP {refusal.reply}", refusal.permanent)


async def _reset(smtp: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(aiosmtplib.SMTPException, OSError):
        await smtp.rset()


def _uncertain(sessions: sessionmaker[Session], clock: Clock, row_id: int, error: str) -> str:
    with sessions.begin() as session:
        row = session.get(OutboxMessage, row_id)
        assert row is not None
        row.status, row.last_error = "uncertain", error[:1000]
        log.error("outbox %s to %s: %s; not re-sent", row.kind, row.recipient, error)
        _tell_case(session.connection(), clock.now(), row, "send-uncertain")
    return "failed"


def _record_sent(
    app: App, sent: Sequence[_Claim], want: int, read: _Letters | None = None
) -> list[_Claim]:
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


# Letters about a case still waiting for its answer. One queued before the officer
# answered or closed the case (a reminder queued at night for opening time, say) would
# tell the resident or the officer something no longer true, so it is withdrawn unsent.
ONLY_WHILE_OPEN = frozenset({"reminder", "holding", "breach"})


def _withdraw(conn: Connection, now: datetime, row: Row[Any], case: Row[Any]) -> None:
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


def _mark_sent(conn: Connection, now: datetime, sent: _Claim) -> None:
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
    _mark_sent(conn, now, _Claim(row_id, b"", recipient, kind, case_id=case_id, said=said))


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
            _tell_case(session.connection(), now, row, "send-failed")
            return "failed"
        row.status = "pending"
        row.next_attempt_at = now + retry_delay(row.attempts)
        log.warning("outbox %s to %s deferred: %s", row.kind, row.recipient, error)
        return "deferred"


def _hold(sessions: sessionmaker[Session], row_id: int, reason: str) -> str:
    """Keep a claimed message waiting while sending as its sender is paused: the attempt
    is not counted (the message is not at fault), and it goes when sending resumes."""
    with sessions.begin() as session:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == row_id)
            .values(status="paused", attempts=OutboxMessage.attempts - 1, last_error=reason[:1000])
        )
    return "paused"


# --- sending paused -------------------------------------------------------------------------
#
# A refusal of our account, our sender address or this server (mailbot.refusals) is not
# any message's fault: every message from that address would meet it. Sending as that
# address pauses (its messages turn 'paused', none is failed or charged an attempt), a
# Problem tells the clerk, and after 1, 2, 4 … minutes (at most 10; at once after a reload
# or on `run --once`) its messages are put back in line: the first the server takes ends
# the pause, and the rest follow; the first it refuses pauses them all again.

EVERY_SENDER = "*"  # a refusal of the connection or the sign-in: nothing can be sent
CONNECT_ERRORS = (aiosmtplib.SMTPException, OSError, ssl.SSLError, OAuthError, ConfigError)


def pause_key(sender: str) -> str:
    return "sending" if sender == EVERY_SENDER else f"sending:{sender}"


def _connect_problem(cfg: SmtpConfig, exc: BaseException) -> tuple[ProblemKind, str]:
    """What a failure to connect and sign in says: an answer about the sign-in, a
    certificate or a setting will not mend itself; no answer at all may."""
    where = f"{cfg.host}:{cfg.port}"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        refusal = sort_refusal(exc.code, exc.message, Step.CONNECT)
        return (
            ProblemKind.SENDING_REFUSED,
            f"the SMTP server {where} refuses mailbot: {refusal.reply}",
        )
    if isinstance(exc, ssl.SSLCertVerificationError | OAuthError | ConfigError):
        return ProblemKind.SENDING_REFUSED, f"cannot sign in to the SMTP server {where}: {exc}"
    return ProblemKind.SMTP_UNREACHABLE, f"cannot reach the SMTP server {where}: {exc}"


class Pauses:
    """The senders whose sending is paused, as one pass of the outbox sees them."""

    def __init__(self, app: App, waiting: dict[str, tuple[datetime, str]], trying: set[str]):
        self.app = app
        self._waiting = waiting  # sender -> (when to try again, why)
        self._trying = trying  # senders whose retry is under way in this pass

    @classmethod
    def load(cls, app: App) -> Pauses:
        """The open pauses; those whose retry is due have their messages put back in
        line, to be tried once more in this pass."""
        now = app.clock.now()
        waiting: dict[str, tuple[datetime, str]] = {}
        trying: set[str] = set()
        # A plain query, in no transaction: this runs at every pass, and nearly always
        # finds nothing.
        with app.engine.connect() as conn:
            found = conn.execute(_open_pauses()).all()
        for key, retry_at, detail in found:
            sender = _sender_of(key)
            if retry_at is not None and retry_at > now:
                waiting[sender] = (retry_at, detail)
            else:
                trying.add(sender)
        if trying:
            with app.sessions.begin() as session:
                for sender in trying:
                    session.execute(
                        update(OutboxMessage)
                        .where(OutboxMessage.status == "paused", _of_sender(app, sender))
                        .values(status="pending", next_attempt_at=now)
                    )
        return cls(app, waiting, trying)

    def waiting(self, sender: str) -> bool:
        return sender in self._waiting or EVERY_SENDER in self._waiting

    def reason(self, sender: str) -> str:
        paused = self._waiting.get(sender) or self._waiting.get(EVERY_SENDER)
        return f"waiting: sending is paused ({paused[1] if paused else 'refused'})"

    def pause(self, sender: str, kind: ProblemKind, detail: str) -> None:
        """Sending as `sender` is refused: record it, and pause its waiting messages."""
        now = self.app.clock.now()
        with self.app.sessions.begin() as session:
            problem = report(session, pause_key(sender), kind, detail, now, retry=True)
            assert problem.retry_at is not None
            self._waiting[sender] = (problem.retry_at, detail)
            reason = self.reason(sender)
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.status == "pending", _of_sender(self.app, sender))
                .values(status="paused", last_error=reason[:1000])
            )
        self._trying.discard(sender)
        log.error("outbox: sending paused, retry at %s: %s", problem.retry_at.isoformat(), detail)

    def resume(self, sender: str) -> None:
        """A message from `sender` went (or the server took our sign-in): if sending had
        been paused, it is not now."""
        if sender not in self._trying:
            return
        self._trying.discard(sender)
        with self.app.sessions.begin() as session:
            resolve(self.app, session, pause_key(sender), self.app.clock.now())
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.status == "paused", _of_sender(self.app, sender))
                .values(status="pending", next_attempt_at=self.app.clock.now())
            )


@functools.cache
def _open_pauses() -> Select:
    problems = Problem.__table__
    return select(problems.c.key, problems.c.retry_at, problems.c.detail).where(
        problems.c.resolved_at.is_(None),
        problems.c.kind.in_([str(kind) for kind in SENDING_KINDS]),
    )


def _sender_of(key: str) -> str:
    return key.partition(":")[2] or EVERY_SENDER


def _of_sender(app: App, sender: str) -> ColumnElement[bool]:
    """Outbox rows whose letters come from `sender` (the case's mailbox, else the
    council's): the rows a refusal of that sender holds up."""
    if sender == EVERY_SENDER:
        return true()
    cases = Case.__table__
    rows = OutboxMessage.case_id.in_(select(cases.c.id).where(cases.c.mailbox == sender))
    if sender != app.cfg.council.mailbox_address:
        return rows
    unmarked = select(cases.c.id).where(cases.c.mailbox.is_(None))
    return or_(rows, OutboxMessage.case_id.is_(None), OutboxMessage.case_id.in_(unmarked))


def retry_paused_now(app: App) -> None:
    """Try paused sending at once (after a reload: the sysadmin may have fixed it)."""
    now = app.clock.now()
    with app.sessions.begin() as session:
        for problem in open_problems(session, SENDING_KINDS):
            problem.retry_at = now


def sending_problems(app: App) -> list[str]:
    """Why sending is paused, one line each (empty when it is not)."""
    with app.sessions() as session:
        return [p.detail for p in open_problems(session, SENDING_KINDS)]


def _tell_case(conn: Connection, now: datetime, row: Any, event: str) -> None:
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
