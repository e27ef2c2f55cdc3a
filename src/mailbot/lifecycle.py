"""Lifecycle: every change to a case's state, each in one place.

A change takes the case and what it must know (the policy, the officer chosen, the time),
changes the case, and returns what happened: the lines for its history, typed, and the
letters it owes. It touches no database and sends nothing, so each one is tested without
a server (tests/test_lifecycle.py); `record` writes what a change returned. Officers'
commands, a resident's follow-up, the scheduler and the console all change a case through
these functions, so the same change reads the same in every case's history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from mailbot.app import App
from mailbot.config import OfficerConfig
from mailbot.deadlines import ClockStop, Deadlines, ExtensionRefused, compute, extend, resume
from mailbot.letters import subject_for
from mailbot.outbox import Letter, notify_officer, queue
from mailbot.planning import holding_letter, local_today, schedule
from mailbot.policy import STATUTORY, Duration, Policy
from mailbot.route import choose_officer
from mailbot.store import Case, CategoryCorrection, EventKind, add_events
from mailbot.templates import long_date

if TYPE_CHECKING:
    from mailbot.classify import Classification
    from mailbot.parse import ParsedMessage
    from mailbot.resident import Resident

# Who would handle a role: the caller's choice (route.choose_officer takes turns, which
# needs the database), so that a change itself stays pure.
Chooser = Callable[[str], OfficerConfig | None]


class CommandError(Exception):
    """A change that cannot be made; the message goes back to whoever asked."""


# --- what a change returns ------------------------------------------------------------


@dataclass(frozen=True)
class Happened:
    """One line in the case's history: `detail` for people, `data` for the reports; `at`
    when it happened, if not when the change was made (a message's arrival)."""

    kind: EventKind
    detail: str
    data: dict[str, Any] | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class ToResident:
    """A letter to the case's resident from one of the council's templates."""

    template: str
    kind: str
    extra: dict[str, Any] = field(default_factory=dict)
    fallback: str | None = None


@dataclass(frozen=True)
class ToOfficer:
    """The case's officer hears it is theirs (`key` keeps it to once)."""

    key: str


@dataclass(frozen=True)
class Composed:
    """A letter the change wrote itself (an officer's holding reply), under its key."""

    key: str
    letter: Letter


Owed = ToResident | ToOfficer | Composed


@dataclass
class Change:
    """What one change did: for the history, the letters, and the officer's confirmation."""

    said: str = ""
    events: list[Happened] = field(default_factory=list)
    letters: list[Owed] = field(default_factory=list)
    # (mailbot's category, the officer's): a labelled example for `classify retrain`
    corrections: list[tuple[str, str]] = field(default_factory=list)

    def then(self, other: Change) -> Change:
        """This change followed by `other` (what `other` said, if it said anything)."""
        return Change(
            other.said or self.said,
            [*self.events, *other.events],
            [*self.letters, *other.letters],
            [*self.corrections, *other.corrections],
        )


def note(detail: str) -> Change:
    """A line in the history that changes nothing else."""
    return Change(events=[Happened(EventKind.NOTE, detail)])


# --- the changes ----------------------------------------------------------------------


def open_case(
    policy: Policy,
    ref: str,
    msg: ParsedMessage,
    resident: Resident | None,
    decision: Classification,
    officer: OfficerConfig | None,
    received_at: datetime,
    now: datetime,
    *,
    policy_name: str,
    mailbox: str,
    welsh: bool = False,
) -> tuple[Case, Change]:
    """A new case for a resident's message, with its promised dates and the officer the
    routing chose; the history says whom it is from, why it is this kind of case, and
    whether a person must settle that (triage)."""
    category = decision.category
    stage = policy.stage(category, 1)
    dates = compute(policy, category, received_at)
    case = Case(
        ref=ref,
        category=category,
        stage=1,
        status="open",
        priority=decision.priority,
        policy=policy_name,
        resident_email=(resident.email if resident else "").lower(),
        resident_name=resident.name if resident else msg.from_name,
        subject=msg.subject,
        first_message_id=msg.message_id,
        mailbox=mailbox,
        officer_email=officer.email if officer else None,
        officer_name=officer.name if officer else None,
        role=stage.role,
        received_at=received_at,
        acknowledge_by=dates.acknowledge_by,
        respond_by=dates.respond_by,
        holding_by=dates.holding_by,
        reasons=[*decision.reasons, *decision.welfare_reasons],
        clock_stopped=False,
        triage=decision.triage,
        scored_text=decision.text or None,
        # Welsh Language Standard 1: mail in Welsh is answered in Welsh (SPEC §9).
        language="cy" if welsh else None,
    )
    schedule(case, policy, local_today(policy, now))
    why = "; ".join(map(str, decision.reasons)) or "no rule matched"
    found_in = f" ({resident.found_in})" if resident and resident.found_in != "From" else ""
    events = [
        Happened(EventKind.RECEIVED, f"from {case.resident_email}{found_in}", at=received_at),
        Happened(EventKind.NOTE, f"classified as {category}: {why}"),
    ]
    if decision.doubt:
        first, second = decision.doubt
        events.append(
            Happened(
                EventKind.NOTE,
                f"flagged for triage: {first} or {second}? (#category to settle it)",
            )
        )
    if officer:
        events.append(Happened(EventKind.REASSIGNED, f"assigned to {officer.name} ({stage.role})"))
    if welsh:
        events.append(Happened(EventKind.NOTE, "written in Welsh: letters in Welsh"))
    return case, Change(f"opened {case.ref}", events)


def respond(case: Case, at: datetime, detail: str) -> Change:
    """The full reply went: reminders and holding replies stop. Only an open case."""
    if case.status != "open":
        return Change()
    case.status, case.responded_at = "responded", at
    case.next_action_on = None
    return Change("marked as responded", [Happened(EventKind.RESPONDED, detail)])


def close(case: Case, now: datetime, detail: str) -> Change:
    if case.status == "closed":
        raise CommandError("the case is already closed")
    case.status, case.closed_at, case.next_action_on = "closed", now, None
    return Change("closed", [Happened(EventKind.CLOSED, detail)])


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


def stop_clock(case: Case, stop: ClockStop, now: datetime, why: str) -> Change:
    if case.clock_stopped:
        raise CommandError(
            f"the clock is already stopped ({case.clock_stop or 'clarification'}),"
            " waiting for the resident"
        )
    case.clock_stopped, case.clock_stopped_at, case.clock_stop = True, now, stop.value
    return Change(events=[Happened(EventKind.CLOCK_STOPPED, why)])


def resume_clock(policy: Policy, case: Case, stop: ClockStop, at: datetime, why: str) -> Change:
    """Start a stopped clock again by the law for `stop` (deadlines.resume)."""
    restart = resume(
        policy,
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
    dates = case_clock(policy, case)
    case.respond_by, case.holding_by = dates.respond_by, dates.holding_by
    case.clock_stopped, case.clock_stopped_at, case.clock_stop = False, None, None
    schedule(case, policy, local_today(policy, at))
    detail = f"{why}; {restart.rule}; respond by {case.respond_by}"
    return Change(
        f"clock started again; response now due {long_date(case.respond_by)}",
        [Happened(EventKind.CLOCK_RESTARTED, detail)],
    )


def resident_replied(policy: Policy, case: Case, at: datetime) -> Change:
    """The resident answered a clarification or sent proof of identity: the clock starts
    again. A fees notice waits for #paid instead."""
    if not case.clock_stopped or case.clock_stop == ClockStop.FEES:
        return Change()
    stop = ClockStop(case.clock_stop or "clarification")
    return resume_clock(policy, case, stop, at, "resident replied")


def ask_resident(
    case: Case, stop: ClockStop, now: datetime, why: str, letter: ToResident
) -> Change:
    """Stop the clock and ask the resident for something: clarification, proof of
    identity, a fee."""
    change = stop_clock(case, stop, now, why)
    change.letters.append(letter)
    return change


def extend_response(
    policy: Policy, case: Case, amount: int, reason: str, by: str, now: datetime
) -> Change:
    """An officer's extension, where the policy allows one; in a statutory category the
    resident is sent the notice the law requires, with the new date (FOIA s.17(2), EIR
    reg 7(3), UK GDPR art. 12(3))."""
    stage = policy.stage(case.category, case.stage)
    if stage.extension is None:
        at_stage = f" at stage {case.stage}" if case.stage > 1 else ""
        raise CommandError(f"the policy allows no extension for {case.category} cases{at_stage}")
    if case.category == "sar" and not reason:
        raise CommandError(
            f"say why, e.g. #extend 2 the records are in three archives ({SAR_REASONS})"
        )
    try:
        extended = extend(
            case_clock(policy, case),
            policy,
            Duration(amount=amount, unit=stage.extension.unit),
            notified_on=local_today(policy, now),
        )
    except ExtensionRefused as exc:
        raise CommandError(str(exc)) from exc
    old = case.respond_by
    case.respond_by = max(extended.respond_by, case.respond_by)
    case.extended_days = (case.extended_days or 0) + amount
    schedule(case, policy, local_today(policy, now))
    detail = f"{old} -> {case.respond_by} by {by}" + (f"; reason: {reason[:500]}" if reason else "")
    change = Change(
        f"response date now {long_date(case.respond_by)}",
        [Happened(EventKind.EXTENDED, detail)],
    )
    if case.category in STATUTORY:
        extra = {"old_date": long_date(old), "reason": reason[:500] or None}
        change.letters.append(ToResident(f"extension-{case.category}", "extension", extra))
        change.said += "; the resident has been sent the notice of the extension"
    return change


# Who says how an extension is notified, for the officer told it was refused.
SAR_REASONS = "UK GDPR art. 12(3): the notice gives the reasons for the delay"


def hold(policy: Policy, case: Case, day: date, reason: str, by: str, now: datetime) -> Change:
    """An officer's holding reply: the resident hears the full reply will come by `day`."""
    case.holding_until, case.holding_reason = day, reason or None
    letter = holding_letter(case, day, case.holding_reason)
    schedule(case, policy, local_today(policy, now))
    return Change(
        f"holding reply sent; new date {long_date(day)}",
        [Happened(EventKind.HOLDING, f"holding reply by {by}; new date {day}")],
        [Composed(f"holding:{case.ref}:{case.stage}:officer:{day}", letter)],
    )


def record_outcome(case: Case, value: str, exemptions: list[str], by: str, now: datetime) -> Change:
    """A complaint's outcome, or an FOI or EIR response's with the exemptions it relied
    on; the reports read `data`, never the wording, which a #note can imitate."""
    case.outcome = value
    detail = f"outcome {value} (stage {case.stage}) by {by}"
    if exemptions:
        detail += f"; exemptions: {', '.join(exemptions)}"
    data = {"outcome": value, "stage": case.stage, "exemptions": exemptions}
    change = Change(f"outcome {value} recorded", [Happened(EventKind.NOTE, detail, data)])
    if case.category != "complaint" and case.status == "open":
        # The response went with this outcome: the request is answered.
        change = change.then(respond(case, now, f"response with outcome {value}, by {by}"))
        change.said = f"outcome {value} recorded; the request is marked responded"
    return change


def escalate(
    policy: Policy,
    case: Case,
    choose: Chooser,
    now: datetime,
    why: str,
    *,
    received_at: datetime | None = None,
) -> Change:
    """Move a case to its next stage: a complaint's next stage, or an FOI or EIR
    request's internal review. New handler, new dates from `received_at` (when the
    request for it arrived; else now), its own acknowledgement, reminders and breach."""
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
    officer = choose(stage.role)
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
    detail = (
        f"stage {old} -> {case.stage}; acknowledge by {dates.acknowledge_by}; "
        f"respond by {dates.respond_by}; stage {old} was due {old_due}; {why}"
    )
    data = {
        "from": old,
        "to": case.stage,
        "acknowledge_by": dates.acknowledge_by.isoformat(),
        "respond_by": dates.respond_by.isoformat(),
        "was_due": old_due.isoformat(),
    }
    return Change(
        f"now stage {case.stage}, with {case.officer_name or 'nobody'}",
        [Happened(EventKind.STAGE_CHANGED, detail, data)],
        [
            ToResident(f"stage-change-{case.category}", "stage-change", fallback="stage-change"),
            ToOfficer(f"stage:{case.ref}:{case.stage}"),
        ],
    )


def recategorise(
    policy: Policy, case: Case, new: str, choose: Chooser, by: str, now: datetime
) -> Change:
    """An officer says what kind of message it is. The same category settles a triage
    doubt; another restarts the case under that category's rules, with a new officer.
    Either way the resident now hears who has it and by when."""
    if new == case.category and case.triage:
        case.triage = False
        return Change(
            f"confirmed as {new}, due {long_date(case.respond_by)}",
            [Happened(EventKind.NOTE, f"category {new} confirmed by {by}")],
            [ToResident(f"acknowledgement-{new}", "acknowledgement")],
            [(new, new)],
        )
    if new == case.category:
        raise CommandError(f"the case is already {new}")
    old = case.category
    case.triage = False
    stage = policy.stage(new, 1)
    dates = compute(policy, new, case.received_at)
    officer = choose(stage.role)
    case.category, case.stage, case.role = new, 1, stage.role
    case.acknowledge_by, case.respond_by, case.holding_by = (
        dates.acknowledge_by,
        dates.respond_by,
        dates.holding_by,
    )
    case.extended_days = case.paused_days = 0
    case.stage_started_at = None
    if officer:
        case.officer_email, case.officer_name = officer.email, officer.name
    schedule(case, policy, local_today(policy, now))
    detail = (
        f"category {old} -> {new} by {by}; respond by {dates.respond_by}; "
        f"officer {case.officer_name or 'nobody'}"
    )
    return Change(
        f"now {new}, due {long_date(dates.respond_by)}, with {case.officer_name or 'nobody'}",
        [Happened(EventKind.REASSIGNED, detail)],
        [
            ToResident(f"acknowledgement-{new}", "acknowledgement"),
            ToOfficer(f"recategorised:{case.ref}:{new}"),
        ],
        # The classifier was wrong: a labelled example for `mailbot classify retrain`.
        [(old, new)],
    )


def reassign(case: Case, officer: OfficerConfig, by: str, now: datetime) -> Change:
    old = case.officer_name or "nobody"
    case.officer_email, case.officer_name = officer.email, officer.name
    return Change(
        f"now with {officer.name}",
        [Happened(EventKind.REASSIGNED, f"from {old} to {officer.name} by {by}")],
        [ToOfficer(f"reassigned:{case.ref}:{now.isoformat()}")],
    )


def set_language(case: Case, language: str | None, name: str, why: str) -> Change:
    """The resident's language for letters: "cy", "en", or None for both."""
    case.language = language
    return Change(f"letters to the resident now in {name}", [Happened(EventKind.NOTE, why)])


def bounced(case: Case, kind: str, detail: str) -> Change:
    """A letter of ours came back undelivered. An acknowledgement that never reached the
    resident is not one: the case counts as not acknowledged until one is resent."""
    if kind == "acknowledgement":
        case.acknowledged_at = None
    return Change(events=[Happened(EventKind.BOUNCED, detail)])


# --- writing what happened (the only I/O here) -----------------------------------------


def record(app: App, session: Session, case: Case, change: Change, now: datetime) -> str:
    """Write a change: its history lines, its corrections, then its letters, queued to go.
    Returns what it said, for the officer's confirmation."""
    if change.events:
        add_events(
            session,
            case,
            [(e.at or now, str(e.kind), e.detail) for e in change.events],
            data=[e.data for e in change.events],
        )
    for was, now_is in change.corrections:
        session.add(
            CategoryCorrection(case_id=case.id, at=now, from_category=was, to_category=now_is)
        )
    for owed in change.letters:
        if isinstance(owed, ToResident):
            to_resident(app, session, case, owed, now)
        elif isinstance(owed, ToOfficer):
            tell_officer(app, session, case, now, owed.key)
        else:
            queue(
                session,
                [(owed.key, owed.letter, case.id)],
                mailbox_address=app.cfg.council.mailbox_address,
                now=now,
            )
    return change.said


def choosing(app: App, session: Session) -> Chooser:
    """Officers chosen as the council's routing says (turns kept in the database)."""
    return lambda role: choose_officer(session, app.cfg, role)


def to_resident(app: App, session: Session, case: Case, owed: ToResident, now: datetime) -> None:
    letter = Letter(
        kind=owed.kind,
        template=owed.template,
        fallback=owed.fallback,
        recipient=case.resident_email,
        to_name=case.resident_name,
        subject=subject_for("acknowledgement", case),
        audience="resident",
        in_reply_to=case.first_message_id,
        extra=owed.extra,
    )
    key = f"{owed.kind}:{case.ref}:{case.category}:{case.stage}:{now.isoformat()}"
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
