"""Lifecycle: the changes to a case that more than one part of mailbot makes (an
officer's command, a resident's follow-up, the console), each in one place with the line
it writes in the case's history and the letters it sends."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from mailbot.app import App
from mailbot.deadlines import ClockStop, Deadlines, compute, resume
from mailbot.letters import subject_for
from mailbot.outbox import Letter, notify_officer, queue
from mailbot.planning import local_today, schedule
from mailbot.policy import Duration, Policy
from mailbot.route import choose_officer
from mailbot.store import Case, EventKind, add_event


class CommandError(Exception):
    """A command that cannot be carried out; the message goes back to the officer."""


def mark_responded(session: Session, case: Case, at: datetime, detail: str) -> None:
    if case.status == "open":
        case.status = "responded"
        case.responded_at = at
        case.next_action_on = None  # reminders and holding replies stop
        add_event(session, case, at, "responded", detail)


def case_clock(policy: Policy, case: Case) -> Deadlines:
    """The case's dates as the policy gives them now: its stage, the stage's start, the
    days its clock was paused and the officers' extensions (pure)."""
    stage = policy.stage(case.category, case.stage)
    extended = None
    if case.extended_days and stage.extension is not None:
        extended = Duration(amount=case.extended_days, unit=stage.extension.unit)
    return compute(
        policy,
        case.category,
        case.stage_started_at or case.received_at,
        stage=case.stage,
        extended_by=extended,
        paused=case.paused_days or 0,
    )


def stop_clock(session: Session, case: Case, stop: ClockStop, now: datetime, why: str) -> None:
    if case.clock_stopped:
        raise CommandError(
            f"the clock is already stopped ({case.clock_stop or 'clarification'}),"
            " waiting for the resident"
        )
    case.clock_stopped, case.clock_stopped_at, case.clock_stop = True, now, stop.value
    add_event(session, case, now, "clock-stopped", why)


def restart_clock(app: App, session: Session, case: Case, at: datetime) -> None:
    """The resident answered a clarification or sent proof of identity: start the clock
    again by the law for it (deadlines.resume). A fees notice waits for #paid instead."""
    if not case.clock_stopped or case.clock_stop == ClockStop.FEES:
        return
    stop = ClockStop(case.clock_stop or "clarification")
    resume_clock(app, session, case, stop, at, "resident replied")


def resume_clock(
    app: App, session: Session, case: Case, stop: ClockStop, at: datetime, why: str
) -> None:
    restart = resume(
        app.policy,
        case.category,
        stop,
        started_at=case.stage_started_at or case.received_at,
        paused=case.paused_days or 0,
        stopped_at=case.clock_stopped_at or at,
        resumed_at=at,
    )
    case.stage_started_at, case.paused_days = restart.started_at, restart.paused
    if not restart.keeps_extension:
        case.extended_days = 0
    dates = case_clock(app.policy, case)
    case.respond_by, case.holding_by = dates.respond_by, dates.holding_by
    case.clock_stopped, case.clock_stopped_at, case.clock_stop = False, None, None
    schedule(case, app.policy, local_today(app.policy, at))
    add_event(
        session, case, at, "clock-restarted", f"{why}; {restart.rule}; respond by {case.respond_by}"
    )


def escalate(
    app: App,
    session: Session,
    case: Case,
    now: datetime,
    why: str,
    *,
    received_at: datetime | None = None,
) -> None:
    """Move a case to its next stage: a complaint's next stage, or an FOI or EIR
    request's internal review. New handler, new dates from `received_at` (when the
    request for it arrived; else now), its own acknowledgement, reminders and breach."""
    policy = app.policy
    if policy.final_stage(case.category) == 1:
        raise CommandError(
            "only complaints have stages, and FOI and EIR requests an internal review"
        )
    if case.stage >= policy.final_stage(case.category):
        raise CommandError(
            "this is the final stage: " + policy.stage(case.category, case.stage).next_step
        )
    start = received_at or now
    old, old_due = case.stage, case.respond_by
    case.stage += 1
    stage = policy.stage(case.category, case.stage)
    dates = compute(policy, case.category, start, stage=case.stage)
    officer = choose_officer(session, app.cfg, stage.role)
    case.role = stage.role
    case.officer_email = officer.email if officer else None
    case.officer_name = officer.name if officer else None
    case.status, case.responded_at, case.breached_at, case.outcome = "open", None, None, None
    case.closed_at = None
    case.acknowledge_by, case.respond_by, case.holding_by = (
        dates.acknowledge_by,
        dates.respond_by,
        dates.holding_by,
    )
    case.stage_started_at, case.extended_days, case.paused_days = start, 0, 0
    case.clock_stopped, case.clock_stopped_at, case.clock_stop = False, None, None
    case.holding_until = case.holding_reason = None
    schedule(case, policy, local_today(policy, now))
    add_event(
        session,
        case,
        now,
        EventKind.STAGE_CHANGED,
        f"stage {old} -> {case.stage}; acknowledge by {dates.acknowledge_by}; "
        f"respond by {dates.respond_by}; stage {old} was due {old_due}; {why}",
        data={
            "from": old,
            "to": case.stage,
            "acknowledge_by": dates.acknowledge_by.isoformat(),
            "respond_by": dates.respond_by.isoformat(),
            "was_due": old_due.isoformat(),
        },
    )
    template = f"stage-change-{case.category}"
    to_resident(app, session, case, template, "stage-change", now, fallback="stage-change")
    tell_officer(app, session, case, now, f"stage:{case.ref}:{case.stage}")


# --- letters these changes send ---------------------------------------------------


def to_resident(
    app: App,
    session: Session,
    case: Case,
    template: str,
    kind: str,
    now: datetime,
    extra: dict | None = None,
    fallback: str | None = None,
) -> None:
    letter = Letter(
        kind=kind,
        template=template,
        fallback=fallback,
        recipient=case.resident_email,
        to_name=case.resident_name,
        subject=subject_for("acknowledgement", case),
        audience="resident",
        in_reply_to=case.first_message_id,
        extra=extra or {},
    )
    key = f"{kind}:{case.ref}:{case.category}:{case.stage}:{now.isoformat()}"
    queue(
        session, [(key, letter, case.id)], mailbox_address=app.cfg.council.mailbox_address, now=now
    )


def tell_officer(app: App, session: Session, case: Case, now: datetime, key: str) -> None:
    notify_officer(
        app,
        session,
        case,
        template="assigned",
        kind="assigned",
        subject=f"New case for you: {case.subject or case.ref}",
        key=key,
        now=now,
    )
