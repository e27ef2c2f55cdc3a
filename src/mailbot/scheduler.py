"""Scheduler: keep the promises — officer reminders, holding replies, breaches, the daily digest."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailbot.app import App
from mailbot.calendar import WorkingCalendar, calendar_for, council_calendar, next_opening
from mailbot.outbox import compose, enqueue
from mailbot.policy import Policy, StagePolicy
from mailbot.route import holders
from mailbot.store import Case, InboundMessage, add_event
from mailbot.templates import case_context, long_date

log = logging.getLogger("mailbot.scheduler")

# Where the policy names no new date, a holding reply promises the reply this many
# working days after the original date (an officer's `#holding DATE` overrides it).
DEFAULT_HOLDING_DAYS = 10
BATCH = 500
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
    actions = [
        Action(
            "reminder",
            calendar.add_working_days(due, offset.working_days),
            f"reminder:{case.ref}:{case.stage}:{due}:{offset.working_days}",
        )
        for offset in stage.reminders
    ]
    if stage.holding_reply is not None and case.holding_until is None:
        actions.append(
            Action(
                "holding",
                calendar.add_working_days(due, stage.holding_reply.working_days),
                f"holding:{case.ref}:{case.stage}:{due}",
            )
        )
    # The first working day past the response date is the breach.
    actions.append(
        Action("breach", calendar.add_working_days(due, 1), f"breach:{case.ref}:{case.stage}:{due}")
    )
    return sorted(actions, key=lambda a: (a.on, _ORDER.index(a.kind)))


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

    Returns how many case actions (reminders, holding replies, breaches) were queued.
    """
    now = app.clock.now()
    today = local_today(app.policy, now)
    done = 0
    last_id = 0
    while True:
        with app.sessions.begin() as session:
            # Only open cases whose next action is due: an index range, never a full scan.
            cases = session.scalars(
                select(Case)
                .where(
                    Case.status == "open",
                    Case.next_action_on <= today,
                    Case.clock_stopped.is_(False),
                    Case.id > last_id,
                )
                .order_by(Case.id)
                .limit(BATCH)
            ).all()
            for case in cases:
                done += _act(app, session, case, today, now)
                last_id = case.id
        if len(cases) < BATCH:
            break
    if _digest(app, today, now):
        log.info("daily digest queued for the clerk role")
    return done


def _act(app: App, session: Session, case: Case, today: date, now: datetime) -> int:
    policy = app.policy
    stage = policy.stage(case.category, case.stage)
    actions = case_actions(case, stage, calendar_for(policy, case.category))
    todo = due_now(actions, today, case.next_action_on)
    for action in todo:
        if action.kind == "reminder":
            _remind(app, session, case, action, today, now)
        elif action.kind == "holding":
            _holding_reply(app, session, case, stage, action, now)
        else:
            _breach(app, session, case, stage, action, now)
    case.next_action_on = next_action_date(actions, today)
    return len(todo)


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
    subject: str,
    key: str,
    kind: str,
    context: dict,
    now: datetime,
    at_once: bool = False,
) -> int:
    """Mail every holder of a role (the clerk standing in); once per key and officer."""
    _, officers = holders(app.cfg, role)
    rendered, problem = app.templates.render_safe(template, context)
    if problem:
        log.error("template problem, used a fallback: %s", problem)
    queued = 0
    for officer in officers:
        message = compose(
            app.cfg,
            to=officer.email,
            to_name=officer.name,
            subject=subject,
            rendered=rendered,
            audience="staff",
            ref=case.ref if case else None,
            now=now,
        )
        row = enqueue(
            session,
            key=f"{key}:{officer.email}",
            kind=kind,
            message=message,
            recipient=officer.email,
            case=case,
            now=now,
        )
        if row is not None:
            if not at_once:
                row.next_attempt_at = staff_send_time(app.policy, now)
            queued += 1
    return queued


def _remind(
    app: App, session: Session, case: Case, action: Action, today: date, now: datetime
) -> None:
    calendar = calendar_for(app.policy, case.category)
    left = calendar.working_days_between(today, case.respond_by) if today < case.respond_by else 0
    context = case_context(app.cfg, app.policy, case, now, working_days_left=left)
    if not case.officer_email:
        return
    officer = app.cfg.officer(case.officer_email)
    if officer is None:
        return
    message = compose(
        app.cfg,
        to=officer.email,
        to_name=officer.name,
        subject=f"Reminder: reply due {long_date(case.respond_by)}: {case.subject}",
        rendered=_render(app, "reminder", context),
        audience="staff",
        ref=case.ref,
        now=now,
    )
    row = enqueue(
        session,
        key=action.key,
        kind="reminder",
        message=message,
        recipient=officer.email,
        case=case,
        now=now,
    )
    if row is not None:
        row.next_attempt_at = staff_send_time(app.policy, now)
        add_event(session, case, now, "reminder", f"{left} working day(s) left; to {officer.email}")


def holding_date(case: Case, stage: StagePolicy, calendar: WorkingCalendar) -> date:
    """The new date a holding reply gives: the officer's, else the policy's extension."""
    if case.holding_until:
        return case.holding_until
    if stage.extension is not None and stage.extension.unit == "working_days":
        return calendar.add_working_days(case.respond_by, stage.extension.amount)
    return calendar.add_working_days(case.respond_by, DEFAULT_HOLDING_DAYS)


def _holding_reply(
    app: App, session: Session, case: Case, stage: StagePolicy, action: Action, now: datetime
) -> None:
    calendar = calendar_for(app.policy, case.category)
    new_date = holding_date(case, stage, calendar)
    first = session.scalar(
        select(InboundMessage)
        .where(InboundMessage.case_id == case.id)
        .order_by(InboundMessage.id)
        .limit(1)
    )
    context = case_context(
        app.cfg,
        app.policy,
        case,
        now,
        new_date=long_date(new_date),
        reason=case.holding_reason,
    )
    message = compose(
        app.cfg,
        to=case.resident_email,
        to_name=case.resident_name,
        subject=f"Re: {case.subject}" if case.subject else "Your message to the council",
        rendered=_render(app, f"holding-{case.category}", context, fallback="holding"),
        audience="resident",
        ref=case.ref,
        now=now,
        in_reply_to=first.message_id if first else None,
    )
    row = enqueue(
        session,
        key=action.key,
        kind="holding",
        message=message,
        recipient=case.resident_email,
        case=case,
        now=now,
    )
    if row is not None:
        add_event(session, case, now, "holding", f"holding reply queued; new date {new_date}")


def _breach(
    app: App, session: Session, case: Case, stage: StagePolicy, action: Action, now: datetime
) -> None:
    if case.breached_at is None:
        case.breached_at = now
    context = case_context(app.cfg, app.policy, case, now)
    queued = notify_role(
        app,
        session,
        case,
        role=stage.on_breach,
        template="breach",
        subject=f"Response date missed: {case.subject}",
        key=action.key,
        kind="breach",
        context=context,
        now=now,
    )
    detail = f"response date {case.respond_by} missed; told {stage.on_breach}"
    add_event(session, case, now, "escalated", detail if queued else detail + " (nobody holds it)")


def _render(app: App, name: str, context: dict, fallback: str | None = None):
    """A category-specific template when the clerk wrote one, else the general one."""
    if fallback and name not in app.templates.names():
        name = fallback
    rendered, problem = app.templates.render_safe(name, context)
    if problem:
        log.error("template problem, used a fallback: %s", problem)
    return rendered


def _digest(app: App, today: date, now: datetime) -> int:
    """The clerk's list of open cases, once on each working day at the digest time."""
    policy = app.policy
    local_now = now.astimezone(ZoneInfo(policy.timezone))
    at = policy.digest_at or policy.business_hours.opens
    if not council_calendar(policy).is_working_day(today) or local_now.time() < at:
        return 0
    with app.sessions.begin() as session:
        cases = session.scalars(
            select(Case).where(Case.status == "open").order_by(Case.respond_by, Case.id)
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
        context = {
            "council": {"name": app.cfg.council.name, "email": app.cfg.council.mailbox_address},
            "today": long_date(today),
            "cases": rows,
            "overdue": sum(1 for r in rows if r["days_left"] < 0),
            "officer": None,
            "case": {"ref": f"digest {today}"},
        }
        return notify_role(
            app,
            session,
            None,
            role="clerk",
            template="digest",
            subject=f"Open cases on {long_date(today)}: {len(rows)} open, "
            f"{context['overdue']} overdue",
            key=f"digest:{today}",
            kind="digest",
            context=context,
            now=now,
        )
