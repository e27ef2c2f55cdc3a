"""Scheduler: keep the promises — officer reminders, holding replies, breaches, the daily digest."""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Integer, cast, func, insert, literal, select, update
from sqlalchemy.orm import Session

from mailbot import shadow
from mailbot.app import App
from mailbot.calendar import calendar_for, council_calendar
from mailbot.config import OfficerConfig
from mailbot.deadlines import ClockStop, fees_lapse_on
from mailbot.letters import subject_for
from mailbot.lifecycle import close, record
from mailbot.outbox import Letter, json_rows, notify_officer, notify_role, queue, staff_send_time
from mailbot.planning import (
    Action,
    actions_for,
    case_key,
    due_now,
    holding_letter,
    local_today,
    next_action_date,
    policy_holding_date,
)
from mailbot.policy import Policy
from mailbot.route import holders
from mailbot.store import Case, CaseEvent, OutboxMessage, UTCDateTime
from mailbot.templates import long_date

log = logging.getLogger("mailbot.scheduler")

BATCH = 2500  # cases per transaction: few commits, bounded memory


def run_due(app: App) -> int:
    """One pass: everything due at the clock's now, queued in the outbox.

    Returns how many letters about cases (reminders, holding replies, breach notices)
    were queued.
    Queueing writes rows only; each message is composed when the outbox sends it, so a
    pass over a large council stays quick.
    """
    now = app.clock.now()
    today = local_today(app.policy, now)
    staff_at = staff_send_time(app.policy, now)
    groups: dict[tuple, OwedToday] = {}
    mode = shadow.current(app.sessions)
    due = select(*_CASE_COLUMNS).where(*due_today(app.policy, today)).order_by(Case.id)
    with _no_collector(), _Writers(app, now, staff_at) as writers, app.sessions() as session:
        # One query, read a batch at a time (a server-side cursor on PostgreSQL): each
        # batch is stored in its own transaction while the next is decided. Plain rows,
        # not ORM objects: a busy morning can hold thousands.
        found = session.connection().execution_options(yield_per=BATCH).execute(due)
        for cases in found.partitions():
            batch = _Batch(app, mode)
            for case in cases:
                # Thousands of cases share their dates: decide once for each group.
                group = (
                    case.category,
                    case.stage,
                    case.respond_by,
                    case.no_holding_date,
                    case.next_action_on,
                )
                owed = groups.get(group)
                if owed is None:
                    owed = groups[group] = _owed_today(app, today, *group)
                batch.add(case, owed)
            writers.write(batch)
    lapsed = lapse_unpaid_fees(app, today, now)
    if _digest(app, today, now, staff_at):
        log.info("daily digest queued for the clerk role")
    return writers.queued + lapsed


def lapse_unpaid_fees(app: App, today: date, now: datetime) -> int:
    """Close FOI requests whose fees notice went unpaid for three months (FOIA s.9(2):
    the council need not answer them), telling the handling officer. Returns how many."""
    # Once a day is enough for a lapse counted in months, and spares a busy council's
    # minute-by-minute pass a look through its open cases.
    if getattr(app, "_fees_lapsed_on", None) == today:
        return 0
    closed = 0
    with app.sessions.begin() as session:
        waiting = session.scalars(
            select(Case).where(
                Case.status == "open", Case.clock_stopped, Case.clock_stop == ClockStop.FEES
            )
        ).all()
        for case in waiting:
            lapse = fees_lapse_on(app.policy, case.clock_stopped_at or now)
            if lapse > today:
                continue
            detail = (
                f"fee not paid by {lapse - timedelta(days=1)}: the request lapsed (FOIA s.9(2))"
            )
            record(app, session, case, close(case, now, detail), now)
            notify_officer(
                app,
                session,
                case,
                template="fees-lapsed",
                kind="fees-lapsed",
                subject=f"Fee not paid, request lapsed: {case.subject or case.ref}",
                key=f"fees-lapsed:{case.ref}",
                now=now,
            )
            closed += 1
    app._fees_lapsed_on = today  # type: ignore[attr-defined]
    return closed


@contextmanager
def _no_collector() -> Iterator[None]:
    """Pause Python's cycle collector for the pass: a busy morning makes some 100,000
    small objects that all live until the pass ends, and the collector would walk them
    again and again for nothing (a tenth of the pass). Memory is freed as usual."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def due_today(policy: Policy, today: date) -> list[ColumnElement[bool]]:
    """Which cases have something due by today, as conditions the database can answer
    from an index (on PostgreSQL the response date's: see latest_response_date)."""
    return [
        Case.status == "open",
        Case.respond_by <= latest_response_date(policy, today),
        Case.next_action_on <= today,
        Case.clock_stopped.is_(False),
    ]


def latest_response_date(policy: Policy, today: date) -> date:
    """The latest response date that can have anything due by today (pure).

    A case's earliest action is its furthest reminder or holding reply before its
    response date, so no case with a later date than that many working days from today
    can be due.
    """
    latest = today
    for name, category in policy.categories.items():
        points = [
            point
            for stage in category.stages.values()
            for point in (*stage.reminders, stage.holding_reply)
            if point is not None
        ]
        lead = max((-point.working_days for point in points), default=0)
        if lead > 0:
            latest = max(latest, calendar_for(policy, name).add_working_days(today, lead))
    return latest


class _Writers:
    """Stores each batch in its own transaction on a worker thread, so the next batch is
    decided while the database writes this one. PostgreSQL writes two batches at once
    (each on its own connection); SQLite has one writer at a time, so one thread."""

    def __init__(self, app: App, now: datetime, staff_at: datetime) -> None:
        self.app, self.now, self.staff_at = app, now, staff_at
        self.threads = 2 if app.engine.dialect.name == "postgresql" else 1
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="mailbot-scheduler")
        self.writing: list[Future[int]] = []
        self.queued = 0

    def write(self, batch: _Batch) -> None:
        # At most one batch waiting for each thread: memory stays flat however many are due.
        while len(self.writing) >= self.threads:
            self.queued += self.writing.pop(0).result()
        self.writing.append(self.pool.submit(self._store, batch))

    def _store(self, batch: _Batch) -> int:
        with self.app.sessions.begin() as session:
            mailbox = self.app.cfg.council.mailbox_address
            queued = _queue_by_due(
                session, batch.resident, batch.fell_due, mailbox_address=mailbox, now=self.now
            )
            queued |= _queue_by_due(
                session,
                batch.staff,
                batch.fell_due,
                mailbox_address=mailbox,
                now=self.now,
                send_at=self.staff_at,
            )
            _update_cases(session, batch.moves, self.now)
            # A breach goes in the case's history when found, once. Reminders and holding
            # replies go in when they are sent (outbox), which is what the history means.
            breaches = [batch.breach_event(key) for key in sorted(queued) if key in batch.breaches]
            _add_events(session, breaches, self.now)
        return len(queued)

    def __enter__(self) -> _Writers:
        return self

    def __exit__(self, error: type[BaseException] | None, *_: object) -> None:
        try:
            for future in self.writing:  # every batch finished (or failed) before we return
                if error is None:
                    self.queued += future.result()
                else:
                    future.exception()  # waited for; the error already raised is the one told
        finally:
            self.pool.shutdown(wait=True)


@dataclass(frozen=True)
class OwedToday:
    """What today brings every open case with the same category, stage, response date,
    holding state and next action date."""

    due: tuple[Action, ...]  # each key is the part after the case reference
    next_on: date | None
    breached: bool
    reminder_extra: dict[str, int]  # shared by every reminder in the group
    new_date: date | None  # what a holding reply says
    breach_to: tuple[OfficerConfig, ...]
    breach_detail: str
    breach_kept: str  # the same, when the notice is kept in shadow mode


def _owed_today(
    app: App,
    today: date,
    category: str,
    stage_no: int,
    respond_by: date,
    with_holding: bool,
    after: date | None,
) -> OwedToday:
    """Decided once for the whole group, from the policy and the officers alone (pure)."""
    policy = app.policy
    stage = policy.stage(category, stage_no)
    calendar = calendar_for(policy, category)
    actions = actions_for(stage, calendar, stage_no, respond_by, with_holding)
    due = tuple(due_now(actions, today, after))
    kinds = {a.kind for a in due}
    left = calendar.working_days_between(today, respond_by) if today < respond_by else 0
    new_date = None
    if "holding" in kinds:  # only planned while the case has no officer's date
        new_date = policy_holding_date(respond_by, stage, calendar)
    _, breach_to = holders(app.cfg, stage.on_breach)
    return OwedToday(
        due=due,
        next_on=next_action_date(actions, today),
        breached="breach" in kinds,
        reminder_extra={"working_days_left": left},
        new_date=new_date,
        breach_to=tuple(breach_to),
        breach_detail=f"response date {respond_by} missed; told {stage.on_breach}",
        breach_kept=f"response date {respond_by} missed; {stage.on_breach} not told (shadow)",
    )


def _queue_by_due(
    session: Session,
    items: list[tuple[str, Letter, int | None]],
    fell_due: dict[str, datetime],
    **how: Any,
) -> set[str]:
    """Queue letters, each group that fell due during a shadow trial with its time (so
    it is kept, not sent: shadow.decide); in one statement when there is none."""
    groups: dict[datetime | None, list[tuple[str, Letter, int | None]]] = {}
    for item in items:
        groups.setdefault(fell_due.get(item[0]), []).append(item)
    queued: set[str] = set()
    for due_at, group in groups.items():
        queued |= queue(session, group, due_at=due_at, **how)
    return queued


class _Batch:
    """One batch's letters, the history line each breach records if newly queued, and
    the cases' moves."""

    def __init__(self, app: App, mode: shadow.Mode = shadow.LIVE) -> None:
        self.cfg = app.cfg
        self.resident: list[tuple[str, Letter, int | None]] = []
        self.staff: list[tuple[str, Letter, int | None]] = []
        # After a shadow trial: letters whose day began before mailbot went live, by key,
        # with that moment. A stop between the trial and going live leaves them due at
        # once; they are recorded as shadow, never sent (no backlog at the switch).
        self.fell_due: dict[str, datetime] = {}
        self._shadow = mode.shadow
        self._live_since = None if mode.shadow else mode.live_since
        self._timezone = app.policy.timezone
        self._day_began: dict[date, datetime | None] = {}
        # key -> (case id, the history line when sent, when kept in shadow)
        self.breaches: dict[str, tuple[int, str, str]] = {}
        # Case ids by (next action date as read, new one, breached today): one UPDATE each.
        self.moves: dict[tuple[date, date | None, bool], list[int]] = {}
        self._officers: dict[str, OfficerConfig | None] = {}

    def add(self, case: Any, owed: OwedToday) -> None:
        for action in owed.due:
            key = case_key(action, case.ref)
            had = len(self.resident), len(self.staff)
            if action.kind == "reminder":
                self._reminder(case, owed, key)
            elif action.kind == "holding":
                self._holding(case, owed, key)
            else:
                self._breach(case, owed, key)
            began = self._before_live(action.on)
            if began is not None:
                for item in (*self.resident[had[0] :], *self.staff[had[1] :]):
                    self.fell_due[item[0]] = began
        newly_breached = owed.breached and case.not_breached
        move = (case.next_action_on, owed.next_on, newly_breached)
        self.moves.setdefault(move, []).append(case.id)

    def _before_live(self, on: date) -> datetime | None:
        """When a day's letters fell due, if that was before mailbot went live after a
        shadow trial; None otherwise (and always when there was no trial)."""
        if self._live_since is None:
            return None
        if on not in self._day_began:
            began = shadow.day_began(on, self._timezone)
            self._day_began[on] = began if began < self._live_since else None
        return self._day_began[on]

    def _reminder(self, case: Any, owed: OwedToday, key: str) -> None:
        email = case.officer_email
        if email not in self._officers:
            self._officers[email] = self.cfg.officer(email) if email else None
        officer = self._officers[email]
        if officer is None:
            return  # nobody to remind; the breach will reach the manager
        letter = Letter(
            kind="reminder",
            template="reminder",
            recipient=officer.email,
            to_name=officer.name,
            subject=subject_for("reminder", case),
            audience="staff",
            extra=owed.reminder_extra,
        )
        self.staff.append((key, letter, case.id))

    def _holding(self, case: Any, owed: OwedToday, key: str) -> None:
        assert owed.new_date is not None
        letter = holding_letter(case, owed.new_date, case.holding_reason)
        self.resident.append((key, letter, case.id))

    def _breach(self, case: Any, owed: OwedToday, key: str) -> None:
        subject = subject_for("breach", case)
        for officer in owed.breach_to:
            letter = Letter(
                kind="breach",
                template="breach",
                recipient=officer.email,
                to_name=officer.name,
                subject=subject,
                audience="staff",
            )
            self.staff.append((f"{key}:{officer.email}", letter, case.id))
            self.breaches[f"{key}:{officer.email}"] = (
                case.id,
                owed.breach_detail,
                owed.breach_kept,
            )

    def breach_event(self, key: str) -> tuple[int, str, str]:
        """The history line of a breach queued under `key`: who was told, or that the
        notice was kept (shadow mode, or it fell due during the trial)."""
        case_id, told, kept = self.breaches[key]
        return case_id, "escalated", kept if self._shadow or key in self.fell_due else told


def _update_cases(
    session: Session, moves: dict[tuple[date, date | None, bool], list[int]], now: datetime
) -> None:
    """Move each case on to its next action date, and mark today's breaches.

    Only a case whose date is still the one read: an officer's command (a new date, a
    holding reply) that changed it meanwhile is not undone.
    """
    table = Case.__table__
    dialect = session.get_bind().dialect.name
    for (read_on, next_on, breached), ids in moves.items():
        values: dict[str, Any] = {"next_action_on": next_on}
        if breached:
            values["breached_at"] = now
        listed = select(cast(json_rows(dialect).c.value, Integer))
        session.execute(
            update(table)
            .where(table.c.id.in_(listed), table.c.next_action_on == read_on)
            .values(values),
            {"rows": json.dumps(ids)},
        )


def _add_events(session: Session, events: list[tuple[int, str, str]], now: datetime) -> None:
    if not events:
        return
    table = CaseEvent.__table__
    row = json_rows(session.get_bind().dialect.name).c.value
    rows = select(
        row[0].as_integer(), literal(now, UTCDateTime), row[1].as_string(), row[2].as_string()
    )
    session.execute(
        insert(table).from_select(["case_id", "at", "kind", "detail"], rows),
        {"rows": json.dumps(events)},
    )


_CASE_COLUMNS = (
    Case.id,
    Case.ref,
    Case.category,
    Case.stage,
    Case.respond_by,
    # Whether, not when: a busy morning's rows are read faster without the dates.
    Case.holding_until.is_(None).label("no_holding_date"),
    Case.holding_reason,
    Case.next_action_on,
    Case.breached_at.is_(None).label("not_breached"),
    Case.officer_email,
    Case.resident_email,
    Case.resident_name,
    Case.subject,
    Case.first_message_id,
)


def _digest(app: App, today: date, now: datetime, send_at: datetime) -> bool:
    """The clerk's list of open cases, once on each working day at the digest time."""
    policy = app.policy
    local_now = now.astimezone(ZoneInfo(policy.timezone))
    at = policy.digest_at or policy.business_hours.opens
    if not council_calendar(policy).is_working_day(today) or local_now.time() < at:
        return False
    key = f"digest:{today}"
    with app.sessions.begin() as session:
        queued = session.scalar(
            select(OutboxMessage.id).where(OutboxMessage.key.startswith(f"{key}:")).limit(1)
        )
        if queued is not None:
            return False  # today's went already: no need to count every case again
        open_cases = session.scalar(
            select(func.count()).select_from(Case).where(Case.status == "open")
        )
        overdue = session.scalar(
            select(func.count())
            .select_from(Case)
            .where(Case.status == "open", Case.respond_by < today)
        )
        trial = "Shadow mode: " if shadow.mode_of(session).shadow else ""
        return bool(
            notify_role(
                app,
                session,
                None,
                role="clerk",
                template="digest",
                kind="digest",
                subject=trial
                + f"Open cases on {long_date(today)}: {open_cases} open, {overdue} overdue",
                key=key,
                now=now,
            )
        )
