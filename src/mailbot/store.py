"""Store: the database — cases, their events, every message seen, the outbox, folder positions."""

from __future__ import annotations

import fcntl
import hashlib
import multiprocessing
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    bindparam,
    create_engine,
    event,
    exists,
    false,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
)
from sqlalchemy.sql.dml import Insert, ReturningUpdate
from sqlalchemy.sql.selectable import Select

from mailbot.addresses import recipient_key
from mailbot.categories import PREFIXES
from mailbot.reasons import Reason


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ReasonList(TypeDecorator[list[Reason]]):
    """Reasons (reasons.py) as Reason objects in Python, {"rule", "text"} objects in a JSON
    list in the database. Rows from before migration 0014 hold "rule: text" strings, and
    read as reasons too; a string given to be stored is refused, so no producer can go
    back to writing sentences."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: list[Reason] | None, dialect: Any) -> list | None:
        if value is None:
            return None
        for reason in value:
            if not isinstance(reason, Reason):
                raise TypeError(f"reasons are stored as Reason objects, not {reason!r}")
        return [reason.to_json() for reason in value]

    def process_result_value(self, value: list | None, dialect: Any) -> list[Reason] | None:
        return None if value is None else [Reason.read(each) for each in value]


class Base(DeclarativeBase):
    pass


class FolderState(Base):
    """How far a mailbox folder has been read: the UID watermark under one UIDVALIDITY."""

    __tablename__ = "folder_state"
    id: Mapped[int] = mapped_column(primary_key=True)
    folder: Mapped[str] = mapped_column(String(255), unique=True)
    uidvalidity: Mapped[int] = mapped_column(Integer)
    last_uid: Mapped[int] = mapped_column(Integer, default=0)
    start_from: Mapped[datetime] = mapped_column(UTCDateTime)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Case(Base):
    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(32), unique=True)
    category: Mapped[str] = mapped_column(String(20))
    stage: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | responded | closed
    priority: Mapped[str] = mapped_column(String(10), default="normal")
    policy: Mapped[str] = mapped_column(String(100))
    resident_email: Mapped[str] = mapped_column(String(254))
    resident_name: Mapped[str] = mapped_column(String(100), default="")
    subject: Mapped[str] = mapped_column(String(500), default="")
    # The resident's first message, which our replies to them thread under.
    first_message_id: Mapped[str | None] = mapped_column(String(998), nullable=True)
    # The council mailbox the case came in to (foi@, enquiries@ …): our letters about it
    # come from there. None on cases from before mailbot read several mailboxes.
    mailbox: Mapped[str | None] = mapped_column(String(254), nullable=True)
    officer_email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    officer_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    role: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    acknowledge_by: Mapped[date] = mapped_column(Date)
    respond_by: Mapped[date] = mapped_column(Date)
    holding_by: Mapped[date | None] = mapped_column(Date, nullable=True)
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    clock_stopped: Mapped[bool] = mapped_column(Boolean, default=False)
    outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)
    reasons: Mapped[list[Reason]] = mapped_column(ReasonList, default=list)
    # The next day the scheduler has something to do for this case (reminder, holding
    # reply, breach). Indexed on SQLite only (see __table_args__).
    next_action_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    holding_until: Mapped[date | None] = mapped_column(Date, nullable=True)
    holding_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    clock_stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When the current complaint stage began (None: at arrival) and how far an officer
    # has extended it, so #extend stays within the policy's ceiling.
    stage_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    extended_days: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Why the clock is stopped (deadlines.ClockStop: clarification, identity, fees), and
    # the days it has been paused in this stage (deadlines.resume decides how many).
    clock_stop: Mapped[str | None] = mapped_column(String(20), nullable=True)
    paused_days: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The resident's language for letters where the policy is bilingual: "cy" (they wrote
    # in Welsh, or asked), "en" (asked for English), None (not known: bilingual).
    language: Mapped[str | None] = mapped_column(String(5), nullable=True)
    # The classifier could not tell between two categories: a person should check it.
    triage: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # What the classifier read (subject and the resident's own words, capped): an
    # officer's #category correction turns it into a training example. Removed with the
    # rest of the case's personal data by retention.
    scored_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    events: Mapped[list[CaseEvent]] = relationship(
        back_populates="case", order_by="CaseEvent.id", cascade="all, delete-orphan"
    )
    __table_args__ = (
        Index("ix_cases_status_respond_by", "status", "respond_by"),
        # SQLite finds due cases fastest by next action date. PostgreSQL goes without
        # the index, by response date: a case moved on to its next action then touches
        # no index and is rewritten in place (a HOT update), a third of the cost.
        Index("ix_cases_status_next_action", "status", "next_action_on").ddl_if(dialect="sqlite"),
    )


class EventKind(StrEnum):
    """What happened to a case: the `kind` of each line of its history (SPEC §2's list,
    and the kinds mailbot has added since)."""

    RECEIVED = "received"
    ACKNOWLEDGED = "acknowledged"
    REMINDER = "reminder"
    HOLDING = "holding"
    ESCALATED = "escalated"
    RESPONDED = "responded"
    REASSIGNED = "reassigned"
    CLOCK_STOPPED = "clock-stopped"
    CLOCK_RESTARTED = "clock-restarted"
    EXTENDED = "extended"
    STAGE_CHANGED = "stage-changed"
    CLOSED = "closed"
    NOTE = "note"
    # Added after the SPEC: what did not reach the resident (issue 18).
    SEND_FAILED = "send-failed"
    SEND_UNCERTAIN = "send-uncertain"
    BOUNCED = "bounced"
    # A letter recorded and not sent: mailbot was in shadow mode (issue 22).
    WOULD_HAVE_SENT = "would-have-sent"
    # Sent, but no copy could be filed in the mailbox's sent folder (issue 22).
    COPY_NOT_FILED = "copy-not-filed"


class CaseEvent(Base):
    """A line of a case's history: `detail` in words for people, `data` for reports.

    `data` holds what the figures need, as written ({"outcome": "upheld", ...}); reports
    read it and never the wording, which a note can imitate. Events from before it (None)
    are read by their wording, as they were written.
    """

    __tablename__ = "case_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(32))  # an EventKind
    detail: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    case: Mapped[Case] = relationship(back_populates="events")


class InboundMessage(Base):
    """Every message read from a folder, and what was decided about it."""

    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(primary_key=True)
    # The folder as FolderState names it ("account/INBOX"): two mailboxes' INBOXes differ.
    folder: Mapped[str] = mapped_column(String(255))
    uidvalidity: Mapped[int] = mapped_column(Integer)
    uid: Mapped[int] = mapped_column(Integer)
    message_id: Mapped[str | None] = mapped_column(String(998), nullable=True, index=True)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    internal_date: Mapped[datetime] = mapped_column(UTCDateTime)
    from_addr: Mapped[str | None] = mapped_column(String(254), nullable=True)
    # received | follow-up | suppressed | duplicate | failed
    outcome: Mapped[str] = mapped_column(String(20))
    reasons: Mapped[list[Reason]] = mapped_column(ReasonList, default=list)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), nullable=True, index=True)
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (UniqueConstraint("folder", "uidvalidity", "uid"),)


class OutboxStatus(StrEnum):
    """Where an outbox row stands (see OutboxMessage.status)."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    WITHDRAWN = "withdrawn"
    PAUSED = "paused"
    BOUNCED = "bounced"
    DISMISSED = "dismissed"
    # Recorded, never sent: queued while mailbot ran in shadow mode, or fell due during
    # the shadow trial before mailbot went live (shadow.py).
    SHADOW = "shadow"


class OutboxMessage(Base):
    """A message to send: written before sending, so a crash can neither lose nor repeat it."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(primary_key=True)
    # One key per thing that must happen once, e.g. "ack:42" for the reply to message 42.
    key: Mapped[str] = mapped_column(String(200), unique=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(254))
    # The recipient as the daily caps count it (addresses.recipient_key, domain_of): the
    # caps and the follow-up window look acknowledgements up by these.
    recipient_key: Mapped[str | None] = mapped_column(String(254), nullable=True, index=True)
    recipient_domain: Mapped[str | None] = mapped_column(String(254), nullable=True)
    # What to write (template, subject, extra wording): composed into `raw` when sent.
    letter: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    # OutboxStatus: where a row stands; outbox.delivery.MOVES lists the moves between them
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The template text it was written from, "name@fingerprint" (templates.Rendered.version):
    # the console names the saved version. Set when the message is written, before sending.
    template_version: Mapped[str | None] = mapped_column(String(120), nullable=True)
    __table_args__ = (
        Index("ix_outbox_status_next", "status", "next_attempt_at"),
        Index("ix_outbox_recipient_domain", "recipient_domain", "created_at"),
    )


class ShadowPeriod(Base):
    """A time mailbot ran in shadow mode (`mailbot run --shadow`): it read and decided
    everything, and sent residents and officers nothing. Open while `ended_at` is None;
    `ended_at` is when mailbot went live, and letters that fell due before it are never
    sent (shadow.py)."""

    __tablename__ = "shadow_periods"
    id: Mapped[int] = mapped_column(primary_key=True)
    began_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SentCopy(Base):
    """A copy of a sent message owed to the mailbox's sent folder (sentcopy.py), so an
    officer in Outlook sees what the resident was told. Written in the transaction that
    records the message as sent; filed over IMAP afterwards, retried until it is."""

    __tablename__ = "sent_copies"
    id: Mapped[int] = mapped_column(primary_key=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id"), unique=True)
    # waiting -> filed; failed once it has been tried too often (the clerk is told)
    status: Mapped[str] = mapped_column(String(20), default="waiting")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")
    filed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    __table_args__ = (Index("ix_sent_copies_status_next", "status", "next_attempt_at"),)


class Problem(Base):
    """Something wrong with the setup that stops mail and only a person can fix: sending
    refused for our account, a folder that does not exist. Open while `resolved_at` is
    None (at most one open row per `key`); the log, the clerk's email, the digest and the
    systemd status all tell of it, and it closes by itself once the cause is fixed."""

    __tablename__ = "problems"
    id: Mapped[int] = mapped_column(primary_key=True)
    # What it is about: "sending" (every message), "sending:foi@…" (one sender address),
    # "folder:enquiries@…/Sent Items".
    key: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(32))  # problems.ProblemKind
    detail: Mapped[str] = mapped_column(Text)  # one line, as the clerk and the log read it
    since: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    # Sending: when to try again, and how often it has been tried since it began.
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    tries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    __table_args__ = (
        Index(
            "ix_problems_open_key",
            "key",
            unique=True,
            sqlite_where=text("resolved_at IS NULL"),
            postgresql_where=text("resolved_at IS NULL"),
        ),
    )


class CategoryCorrection(Base):
    """An officer's #category: the classifier was wrong about this case. With the case's
    scored text it is a labelled example for `mailbot classify retrain`."""

    __tablename__ = "category_corrections"
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    from_category: Mapped[str] = mapped_column(String(20))
    to_category: Mapped[str] = mapped_column(String(20))


class CouncilModel(Base):
    """The council's own layer of the classifier, learnt from its corrections; the newest
    row is the one in use."""

    __tablename__ = "council_models"
    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    examples: Mapped[int] = mapped_column(Integer)
    layer: Mapped[str] = mapped_column(Text)  # JSON, as mailbot.model.Layer.to_json


class Counter(Base):
    """Named counters: case reference numbers per prefix and year, round-robin positions."""

    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


def make_engine(url: str) -> Engine:
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        _private_file(engine.url.database)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers don't block the daemon
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

    return engine


def _private_file(database: str | None) -> None:
    """Create a new SQLite database readable by its owner alone, whatever the umask: it
    holds residents' names and mail. SQLite gives its -wal and -shm files the database
    file's permissions, so they are private too."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass  # an existing database keeps the permissions its owner gave it
    except OSError:
        pass  # a folder that is not there: SQLite says so when it opens it


@contextmanager
def folder_lock(engine: Engine, key: str) -> Iterator[bool]:
    """Hold the right to read one mailbox folder; yields False if another process has it.

    Several `mailbot run` processes may share one PostgreSQL database: a session-level
    advisory lock makes sure only one of them reads a folder at a time. SQLite is used by
    a single process, so there it always succeeds.
    """
    if engine.dialect.name != "postgresql":
        yield True
        return
    lock_id = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
    with engine.connect() as conn:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:id)"), {"id": lock_id}).scalar()
        try:
            yield bool(got)
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
            conn.commit()


class NoTurn:
    """No turns to take: PostgreSQL locks rows, not the database, and a lone process
    (a command, a test) has no one to take turns with."""

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        pass

    def wanted(self) -> bool:
        return False


class WriteTurn(NoTurn):
    """Turns at SQLite's one write lock for the daemon's two processes (and any command or
    console run beside them), through an flock on a file beside the database.

    SQLite's own wait for its write lock is a sleep that lengthens with each try, so a
    busy reader of mail could keep the sending process out for long stretches; a process
    waiting on this lock gets its turn as soon as the other lets go. The kernel lets go
    of a process's flock when it dies, so a killed process never leaves the other stuck.

    Threads of one process take turns through a lock of their own (flock does not tell
    them apart), and a transaction opened inside another on the same thread keeps the
    turn it already has.

    A process that has to wait says so in memory shared with the other (made before the
    daemon forks its sending process), so a holder with a long run of work can pause it
    for the other's turn: see `wanted`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = 0
        self._creator = os.getpid()
        self._threads = threading.RLock()
        self._depth = 0
        # One byte each: the creating process's, and the other's (its forked child).
        self._waiting = multiprocessing.get_context("fork").Array("b", 2, lock=False)

    def __enter__(self) -> None:
        if self._pid != os.getpid():  # a forked child: its own file (flock is per file)
            # and its own thread lock (another thread may have held the parent's).
            self._threads, self._depth = threading.RLock(), 0
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o660)
            self._pid = os.getpid()
        self._threads.acquire()
        self._depth += 1
        if self._depth > 1:
            return
        assert self._fd is not None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            mine = self._mine()
            self._waiting[mine] = 1
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._depth -= 1
                self._threads.release()
                raise
            finally:
                self._waiting[mine] = 0

    def __exit__(self, *exc: object) -> None:
        assert self._fd is not None
        self._depth -= 1
        if self._depth == 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()

    def wanted(self) -> bool:
        """The other process is waiting for its turn."""
        return bool(self._waiting[1 - self._mine()])

    def _mine(self) -> int:
        return 0 if os.getpid() == self._creator else 1

    @classmethod
    def for_database(cls, engine: Engine) -> WriteTurn | None:
        """One for a SQLite database file; None for PostgreSQL, whose locks are per row."""
        database = engine.url.database
        if engine.dialect.name != "sqlite" or not database or database == ":memory:":
            return None
        return cls(Path(f"{database}.lock"))


class Sessions:
    """The one door to the database: `sessions()` opens a session to read,
    `sessions.begin()` a transaction to write, committed when its block ends.

    Every write goes through `begin`, so every write takes the write turn first (on a
    SQLite file; there is nothing to take on PostgreSQL): no writer can forget it.
    """

    def __init__(self, engine: Engine) -> None:
        self._maker = sessionmaker(engine, expire_on_commit=False)
        self.turn: NoTurn = WriteTurn.for_database(engine) or NoTurn()

    def __call__(self) -> Session:
        return self._maker()

    @contextmanager
    def begin(self) -> Iterator[Session]:
        with self.turn, self._maker.begin() as session:
            yield session

    def wanted(self) -> bool:
        """Another process waits for the write turn: a long run of writes should pause."""
        return self.turn.wanted()


def session_factory(engine: Engine) -> Sessions:
    return Sessions(engine)


def bump_counter(session: Session, name: str) -> int:
    """Increment and return a counter inside the caller's transaction.

    One UPDATE … RETURNING: it takes the row's lock (other processes wait their turn) and
    reads the new value in the same step. A counter's first use inserts it.
    """
    bump, first = _counter_statements()
    value = session.execute(bump, {"counter": name}).scalar()
    if value is None:
        session.execute(first, {"counter": name})
        value = session.execute(bump, {"counter": name}).scalar()
    assert value is not None
    return value


@cache
def _counter_statements() -> tuple[ReturningUpdate[tuple[int]], Insert]:
    counters = Counter.__table__
    bump = (
        update(counters)
        .where(counters.c.name == bindparam("counter"))
        .values(value=counters.c.value + 1)
        .returning(counters.c.value)
    )
    # Two processes may both find it missing: the second insert is then skipped.
    first = insert(counters).from_select(
        ["name", "value"],
        select(bindparam("counter", type_=String), literal(0)).where(
            ~exists().where(counters.c.name == bindparam("counter"))
        ),
    )
    return bump, first


def next_reference(session: Session, category: str, year: int) -> str:
    """PREFIX-YYYY-NNNNN, unique and never reused (the counter only goes up)."""
    prefix = PREFIXES[category]
    return f"{prefix}-{year}-{bump_counter(session, f'ref:{prefix}-{year}'):05d}"


def add_event(
    session: Session,
    case: Case,
    at: datetime,
    kind: str,
    detail: str = "",
    data: dict[str, Any] | None = None,
) -> None:
    """A line in the case's history, written at once (the case must have its id).

    A plain INSERT, not an ORM object: every message adds several, and the unit of work
    would cost more than the row. A `case.events` already loaded does not show it.
    """
    add_events(session, case, [(at, kind, detail)], data=[data])


def add_events(
    session: Session,
    case: Case,
    events: list[tuple[datetime, str, str]],
    data: list[dict[str, Any] | None] | None = None,
) -> None:
    """Several lines in the case's history, (at, kind, detail) each, in one statement;
    `data`, if given, one for each."""
    extra = data or [None] * len(events)
    rows = [
        {"case": case.id, "at": at, "kind": kind, "detail": detail, "data": more}
        for (at, kind, detail), more in zip(events, extra, strict=True)
    ]
    session.execute(_add_event(), rows)


def add_events_by_id(session: Session, events: list[tuple[int, datetime, str, str]]) -> None:
    """Lines in several cases' histories, (case id, at, kind, detail) each, in one statement."""
    if events:
        rows = [
            {"case": case, "at": at, "kind": str(kind), "detail": detail, "data": None}
            for case, at, kind, detail in events
        ]
        session.execute(_add_event(), rows)


@cache
def _add_event() -> Insert:
    return insert(CaseEvent.__table__).values(
        case_id=bindparam("case"),
        at=bindparam("at", type_=UTCDateTime),
        kind=bindparam("kind"),
        detail=bindparam("detail"),
        data=bindparam("data", type_=JSON),
    )


def case_by_ref(session: Session, ref: str) -> Case | None:
    return session.scalar(select(Case).where(Case.ref == ref.upper()))


def latest_case_of(session: Session, resident: str, categories: Iterable[str]) -> Case | None:
    """The newest case of these categories for this resident address."""
    return session.scalar(
        select(Case)
        .where(Case.resident_email == resident.lower(), Case.category.in_(list(categories)))
        .order_by(Case.id.desc())
        .limit(1)
    )


def case_by_message_ids(session: Session, ids: Iterable[str]) -> Case | None:
    """The case any of these Message-IDs belongs to, inbound or sent by us."""
    ids = list(ids)[:100]
    if not ids:
        return None
    inbound, ours = _lookups().case_by_message_ids
    case_id = session.scalar(inbound, {"ids": ids})
    if case_id is None:
        case_id = session.scalar(ours, {"ids": ids})
    return session.get(Case, case_id) if case_id is not None else None


def seen_before(session: Session, message_id: str | None, content_hash: str) -> bool:
    """True when this message was already processed (dedupe on Message-ID, else content)."""
    lookups = _lookups()
    if message_id:
        return session.scalar(lookups.seen_message_id, {"message_id": message_id}) is not None
    return session.scalar(lookups.seen_content, {"content_hash": content_hash}) is not None


def sent_by_us(session: Session, message_id: str) -> bool:
    """True when this Message-ID is one of the outbox's."""
    return session.scalar(_lookups().sent_by_us, {"message_id": message_id}) is not None


@dataclass(frozen=True)
class RecentAcknowledgements:
    """The acknowledgements one address was sent since a moment, newest first: the daily
    cap counts them, and the follow-up window looks at the newest (one query for both)."""

    sent: list[tuple[int | None, datetime]]  # (case id, queued at)

    def __len__(self) -> int:
        return len(self.sent)

    def case_since(self, since: datetime) -> int | None:
        """The case whose acknowledgement most recently went, if it went since `since`."""
        if self.sent and self.sent[0][1] >= since:
            return self.sent[0][0]
        return None


def recent_acknowledgements(
    session: Session, recipient: str, since: datetime
) -> RecentAcknowledgements:
    """Acknowledgements to this address (however it is tagged) since a moment."""
    rows = session.execute(
        _lookups().acknowledgements_since, {"key": recipient_key(recipient), "since": since}
    )
    return RecentAcknowledgements([(case_id, at) for case_id, at in rows])


def acknowledgements_to_domain(session: Session, domain: str, since: datetime) -> int:
    """How many acknowledgements went to addresses at `domain` (ASCII form) since a moment."""
    counted = session.scalar(_lookups().domain_since, {"domain": domain, "since": since})
    return counted or 0


@dataclass(frozen=True)
class _Lookups:
    """The questions asked of every message, built once: building a statement costs more
    than running one of these."""

    seen_message_id: Select[tuple[int]]
    seen_content: Select[tuple[int]]
    sent_by_us: Select[tuple[int]]
    case_by_message_ids: tuple[Select[tuple[int]], Select[tuple[int]]]
    acknowledgements_since: Select[tuple[int, datetime]]
    domain_since: Select[tuple[int]]


@cache
def _lookups() -> _Lookups:
    messages, outbox = InboundMessage.__table__, OutboxMessage.__table__
    ids = bindparam("ids", expanding=True)
    since = outbox.c.created_at >= bindparam("since", type_=UTCDateTime)
    to_sender_since = (
        outbox.c.recipient_key == bindparam("key"),
        outbox.c.kind == "acknowledgement",
        since,
    )
    return _Lookups(
        seen_message_id=select(messages.c.id)
        .where(messages.c.message_id == bindparam("message_id"))
        .limit(1),
        seen_content=select(messages.c.id)
        .where(messages.c.content_hash == bindparam("content_hash"))
        .limit(1),
        sent_by_us=select(outbox.c.id).where(outbox.c.message_id == bindparam("message_id")),
        case_by_message_ids=(
            select(messages.c.case_id)
            .where(messages.c.message_id.in_(ids), messages.c.case_id.is_not(None))
            .limit(1),
            select(outbox.c.case_id)
            .where(outbox.c.message_id.in_(ids), outbox.c.case_id.is_not(None))
            .limit(1),
        ),
        acknowledgements_since=select(outbox.c.case_id, outbox.c.created_at)
        .where(*to_sender_since)
        .order_by(outbox.c.id.desc()),
        domain_since=select(func.count()).where(
            outbox.c.recipient_domain == bindparam("domain"),
            outbox.c.kind == "acknowledgement",
            since,
        ),
    )


def case_json(case: Case, *, with_events: bool = False) -> dict[str, Any]:
    """The SPEC §2 shape of a case."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    out: dict[str, Any] = {
        "ref": case.ref,
        "category": case.category,
        "stage": case.stage,
        "status": case.status,
        "resident": {"name": case.resident_name, "email": case.resident_email},
        "subject": case.subject,
        "officer": {"name": case.officer_name, "email": case.officer_email}
        if case.officer_email
        else None,
        "received_at": iso(case.received_at),
        "acknowledged_at": iso(case.acknowledged_at),
        "respond_by": case.respond_by.isoformat(),
        "responded_at": iso(case.responded_at),
        "clock_stopped": case.clock_stopped,
        "clock_stop": case.clock_stop,
        "language": case.language,
        "priority": case.priority,
        "triage": case.triage,
    }
    if with_events:
        out["events"] = [
            {"at": iso(e.at), "kind": e.kind, "detail": e.detail}
            | ({"data": e.data} if e.data else {})
            for e in case.events
        ]
    return out


def format_cases(rows: list[dict]) -> str:
    """`mailbot cases` as a table: case_json rows, one line each."""
    header = ("REF", "CATEGORY", "STATUS", "OFFICER", "DUE", "SUBJECT")
    table = [header] + [
        (
            r["ref"],
            r["category"] + (" (triage)" if r.get("triage") else ""),
            r["status"],
            (r["officer"] or {}).get("name") or "-",
            r["respond_by"],
            (r["subject"] or "")[:40],
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)) for row in table]
    return "\n".join(line.rstrip() for line in lines) if rows else "no cases"
