"""Scheduler: keep the promises — officer reminders, holding replies, breaches, the daily digest."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from mailbot.app import App
from mailbot.calendar import WorkingCalendar, calendar_for, council_calendar
from mailbot.letters import Letter, subject_for
from mailbot.outbox import notify_role, queue, staff_send_time
from mailbot.policy import Policy, StagePolicy
from mailbot.route import holders
from mailbot.store import Case, CaseEvent
from mailbot.templates import long_date

log = logging.getLogger("mailbot.scheduler")

# Where the policy names no new date, a holding reply promises the reply this many
# working days after the original date (an officer's `#holding DATE` overrides it).
DEFAULT_HOLDING_DAYS = 10
BATCH = 2000  # cases per transaction: few commits, bounded memory
_ORDER = ("holding", "reminder", "breach")  # same-day actions, in the order they go


@dataclass(frozen=True)
class Action:
    """One thing the scheduler owes a case on a given day."""

    kind: str  # reminder | holding | breach
    on: date
    key: str  # the outbox key that makes it happen once


def case_actions(case: Case, stage: StagePolicy, calendar: WorkingCalendar) -> list[Action]:
    """Every dated action for the case's current stage, in date order (pure)."""
    due = case.respond_by
    plan = _plan(stage, calendar, due, case.holding_until is None)
    prefix = {"reminder": "reminder", "holding": "holding", "breach": "breach"}
    return [
        Action(kind, on, f"{prefix[kind]}:{case.ref}:{case.stage}:{due}{suffix}")
        for kind, on, suffix in plan
    ]


_PLANS: dict[tuple, tuple[tuple[str, date, str], ...]] = {}


def _plan(
    stage: StagePolicy, calendar: WorkingCalendar, due: date, with_holding: bool
) -> tuple[tuple[str, date, str], ...]:
    """The action dates for one response date. Thousands of cases share a response date,
    so the working-day arithmetic is done once per date (the cache is per policy object)."""
    key = (id(stage), id(calendar), due, with_holding)
    plan = _PLANS.get(key)
    if plan is None:
        actions = [
            (
                "reminder",
                calendar.add_working_days(due, offset.working_days),
                f":{offset.working_days}",
            )
            for offset in stage.reminders
        ]
        if stage.holding_reply is not None and with_holding:
            actions.append(
                ("holding", calendar.add_working_days(due, stage.holding_reply.working_days), "")
            )
        # The first working day past the response date is the breach.
        actions.append(("breach", calendar.add_working_days(due, 1), ""))
        plan = tuple(sorted(actions, key=lambda a: (a[1], _ORDER.index(a[0]))))
        if len(_PLANS) > 20_000:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


def due_now(actions: list[Action], today: date, after: date | None) -> list[Action]:
    """What to do today: the breach if reached, else the latest reminder and any holding reply.

    Points missed while mailbot was stopped are not all sent at once: an officer gets the
    latest reminder only, and a breached case gets no reminders at all.
    """
    reached = [a for a in actions if a.on <= today and (after is None or a.on >= after)]
    if any(a.kind == "breach" for a in reached):
        return [a for a in reached if a.kind == "breach"]
    reminders = [a for a in reached if a.kind == "reminder"]
    return [a for a in reached if a.kind == "holding"] + reminders[-1:]


def next_action_date(actions: list[Action], today: date) -> date | None:
    later = [a.on for a in actions if a.on > today]
    return min(later) if later else None


def schedule(case: Case, policy: Policy, today: date) -> None:
    """Set the day the scheduler next looks at this case (after any change to its dates)."""
    stage = policy.stage(case.category, case.stage)
    actions = case_actions(case, stage, calendar_for(policy, case.category))
    pending = [a.on for a in actions if a.on >= today]
    case.next_action_on = min(pending) if pending else None


def local_today(policy: Policy, now: datetime) -> date:
    return now.astimezone(ZoneInfo(policy.timezone)).date()


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
    done = 0
    last_id = 0
    while True:
        with app.sessions.begin() as session:
            # Only open cases whose next action is due: an index range, never a full scan.
            # Plain rows, not ORM objects: a busy morning can hold thousands.
            cases = session.execute(
                select(*_CASE_COLUMNS)
                .where(
                    Case.status == "open",
                    Case.next_action_on <= today,
                    Case.clock_stopped.is_(False),
                    Case.id > last_id,
                )
                .order_by(Case.id)
                .limit(BATCH)
            ).all()
            resident_items: list[tuple[str, Letter, int | None]] = []
            staff_items: list[tuple[str, Letter, int | None]] = []
            events: dict[str, dict] = {}
            next_dates: dict[date | None, list[int]] = {}
            newly_breached: list[int] = []
            for case in cases:
                items, next_on, breached = _act(app, case, today)
                for key, letter, event in items:
                    target = resident_items if letter.audience == "resident" else staff_items
                    target.append((key, letter, case.id))
                    events[key] = {"case_id": case.id, "at": now, **event}
                next_dates.setdefault(next_on, []).append(case.id)
                if breached and case.breached_at is None:
                    newly_breached.append(case.id)
                last_id = case.id
            queued = _queue(app, session, resident_items, now, now)
            queued |= _queue(app, session, staff_items, now, staff_at)
            # Thousands of cases share a handful of next dates: one UPDATE per date.
            table = Case.__table__
            for next_on, ids in next_dates.items():
                session.connection().execute(
                    update(table).where(table.c.id.in_(ids)).values(next_action_on=next_on)
                )
            if newly_breached:
                session.connection().execute(
                    update(table).where(table.c.id.in_(newly_breached)).values(breached_at=now)
                )
            # An event for each message really queued, not for one queued before.
            rows = [events[k] for k in sorted(queued)]
            if rows:
                session.connection().execute(insert(CaseEvent.__table__), rows)
            done += len(queued)
        if len(cases) < BATCH:
            break
    if _digest(app, today, now, staff_at):
        log.info("daily digest queued for the clerk role")
    return done


def _queue(
    app: App,
    session: Session,
    items: list[tuple[str, Letter, int | None]],
    now: datetime,
    send_at: datetime,
) -> set[str]:
    return queue(
        session, items, mailbox_address=app.cfg.council.mailbox_address, now=now, send_at=send_at
    )


Item = tuple[str, Letter, dict]


_CASE_COLUMNS = (
    Case.id,
    Case.ref,
    Case.category,
    Case.stage,
    Case.respond_by,
    Case.holding_until,
    Case.holding_reason,
    Case.next_action_on,
    Case.breached_at,
    Case.officer_email,
    Case.resident_email,
    Case.resident_name,
    Case.subject,
    Case.first_message_id,
)


def _act(app: App, case: Any, today: date) -> tuple[list[Item], date | None, bool]:
    """The letters this case is owed today (key, letter, event), its next action date,
    and whether today brought its breach."""
    policy = app.policy
    stage = policy.stage(case.category, case.stage)
    calendar = calendar_for(policy, case.category)
    actions = case_actions(case, stage, calendar)
    items: list[Item] = []
    breached = False
    for action in due_now(actions, today, case.next_action_on):
        if action.kind == "reminder":
            items += _reminder(app, case, action, today, calendar)
        elif action.kind == "holding":
            items += _holding_reply(case, stage, action, calendar)
        else:
            breached = True
            items += _breach(app, case, stage, action)
    return items, next_action_date(actions, today), breached


def _reminder(
    app: App, case: Case, action: Action, today: date, calendar: WorkingCalendar
) -> list[Item]:
    officer = app.cfg.officer(case.officer_email) if case.officer_email else None
    if officer is None:
        return []  # nobody to remind; the breach will reach the manager
    left = calendar.working_days_between(today, case.respond_by) if today < case.respond_by else 0
    letter = Letter(
        kind="reminder",
        template="reminder",
        recipient=officer.email,
        to_name=officer.name,
        subject=subject_for("reminder", case),
        audience="staff",
        extra={"working_days_left": left},
    )
    event = {"kind": "reminder", "detail": f"{left} working day(s) left; to {officer.email}"}
    return [(action.key, letter, event)]


def holding_date(case: Case, stage: StagePolicy, calendar: WorkingCalendar) -> date:
    """The new date a holding reply gives: the officer's, else the policy's extension."""
    if case.holding_until:
        return case.holding_until
    if stage.extension is not None and stage.extension.unit == "working_days":
        return calendar.add_working_days(case.respond_by, stage.extension.amount)
    return calendar.add_working_days(case.respond_by, DEFAULT_HOLDING_DAYS)


def holding_letter(case: Case, new_date: date, reason: str | None) -> Letter:
    """The resident's holding reply, threaded to their first message (used by #holding too)."""
    return Letter(
        kind="holding",
        template=f"holding-{case.category}",
        fallback="holding",
        recipient=case.resident_email,
        to_name=case.resident_name,
        subject=subject_for("holding", case),
        audience="resident",
        in_reply_to=case.first_message_id,
        extra={"new_date": long_date(new_date), "reason": reason},
    )


def _holding_reply(
    case: Case, stage: StagePolicy, action: Action, calendar: WorkingCalendar
) -> list[Item]:
    new_date = holding_date(case, stage, calendar)
    event = {"kind": "holding", "detail": f"holding reply; new date {new_date}"}
    return [(action.key, holding_letter(case, new_date, case.holding_reason), event)]


def _breach(app: App, case: Case, stage: StagePolicy, action: Action) -> list[Item]:
    _, officers = holders(app.cfg, stage.on_breach)
    detail = f"response date {case.respond_by} missed; told {stage.on_breach}"
    return [
        (
            f"{action.key}:{officer.email}",
            Letter(
                kind="breach",
                template="breach",
                recipient=officer.email,
                to_name=officer.name,
                subject=subject_for("breach", case),
                audience="staff",
            ),
            {"kind": "escalated", "detail": detail},
        )
        for officer in officers
    ]


def _digest(app: App, today: date, now: datetime, send_at: datetime) -> bool:
    """The clerk's list of open cases, once on each working day at the digest time."""
    policy = app.policy
    local_now = now.astimezone(ZoneInfo(policy.timezone))
    at = policy.digest_at or policy.business_hours.opens
    if not council_calendar(policy).is_working_day(today) or local_now.time() < at:
        return False
    with app.sessions.begin() as session:
        open_cases = session.scalar(
            select(func.count()).select_from(Case).where(Case.status == "open")
        )
        overdue = session.scalar(
            select(func.count())
            .select_from(Case)
            .where(Case.status == "open", Case.respond_by < today)
        )
        return bool(
            notify_role(
                app,
                session,
                None,
                role="clerk",
                template="digest",
                kind="digest",
                subject=f"Open cases on {long_date(today)}: {open_cases} open, {overdue} overdue",
                key=f"digest:{today}",
                now=now,
            )
        )
