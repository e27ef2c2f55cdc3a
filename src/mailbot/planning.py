"""Planning: what a case is owed, and when — reminders to the officer, a holding reply to
the resident, the breach — worked out from its dates and its stage's policy (pure).

Everything that changes a case's dates (intake, officers' commands, the lifecycle) calls
`schedule` to set the day the scheduler next looks at it; the scheduler (`run_due`) acts
on what `due_now` says is owed that day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from mailbot.calendar import WorkingCalendar, calendar_for
from mailbot.letters import subject_for
from mailbot.outbox import Letter
from mailbot.policy import Policy, StagePolicy
from mailbot.store import Case
from mailbot.templates import long_date

# Where the policy names no new date, a holding reply promises the reply this many
# working days after the original date (an officer's `#holding DATE` overrides it).
DEFAULT_HOLDING_DAYS = 10
_ORDER = ("holding", "reminder", "breach")  # same-day actions, in the order they go


@dataclass(frozen=True)
class Action:
    """One thing the scheduler owes a case on a given day."""

    kind: str  # reminder | holding | breach
    on: date
    key: str  # the outbox key that makes it happen once


def case_actions(case: Case, stage: StagePolicy, calendar: WorkingCalendar) -> list[Action]:
    """Every dated action for the case's current stage, in date order (pure)."""
    actions = actions_for(stage, calendar, case.stage, case.respond_by, case.holding_until is None)
    return [Action(a.kind, a.on, case_key(a, case.ref)) for a in actions]


def actions_for(
    stage: StagePolicy, calendar: WorkingCalendar, stage_no: int, due: date, with_holding: bool
) -> list[Action]:
    """The same actions for any case with these dates, keyed by what follows its reference."""
    return [
        Action(kind, on, f":{stage_no}:{due}{suffix}")
        for kind, on, suffix in _plan(stage, calendar, due, with_holding)
    ]


def case_key(action: Action, ref: str) -> str:
    return f"{action.kind}:{ref}{action.key}"


_Plan = tuple[tuple[str, date, str], ...]
_PLANS: dict[tuple, tuple[StagePolicy, WorkingCalendar, _Plan]] = {}


def _plan(stage: StagePolicy, calendar: WorkingCalendar, due: date, with_holding: bool) -> _Plan:
    """The action dates for one response date. Thousands of cases share a response date,
    so the working-day arithmetic is done once per date (the cache is per policy object)."""
    key = (id(stage), id(calendar), due, with_holding)
    cached = _PLANS.get(key)
    # An id is only an address: after a policy reload a new stage may have the old one's.
    if cached is not None and cached[0] is stage and cached[1] is calendar:
        return cached[2]
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
    _PLANS[key] = (stage, calendar, plan)
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


def policy_holding_date(respond_by: date, stage: StagePolicy, calendar: WorkingCalendar) -> date:
    if stage.extension is not None and stage.extension.unit == "working_days":
        return calendar.add_working_days(respond_by, stage.extension.amount)
    return calendar.add_working_days(respond_by, DEFAULT_HOLDING_DAYS)


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
