"""Response dates for a message: pure arithmetic on a policy and an arrival time (SPEC §4).

No clock is read and nothing is stored: the same policy and arrival time always give the
same dates, which is what lets `mailbot deadline` rehearse a policy and tests pin dates.

Rules, in the words a clerk would use:

- All dates are in the council's timezone; the arrival date is the local calendar date
  of the server's arrival time, whatever the hour, weekday or holiday.
- Day one is the first working day after the arrival date; "N working days" is the N-th
  working day after the arrival date. (Subject access requests: day one is the arrival
  date itself and the response is due on the same date next month.)
- "N calendar days" and "N calendar months" are counted on the calendar and then moved
  to the next working day.
- Reminder points and the holding reply are counted back in working days from the
  response date. A point that would fall before day one is moved to day one: the
  officer is told at once rather than never. Reminders landing on the same day merge.
- In a statutory category (foi, eir, sar) the clock runs on the statutory calendar, which
  ignores council closure days. A date that lands on a closure day is brought forward
  to the last day the office is open, because the law does not wait for the office to
  reopen.
- A stage's clock starts at its start time (the arrival, the request for a review, or a
  restart after a clarification or identity check) and is pushed back by the days it
  was paused (`paused`: working days, or calendar days for a subject access request)
  and by officers' extensions. An extension must be notified by the first response
  date (`extension_notice_by`); a later one by the date it moves, except a subject
  access request's, which the law wants within the first month.
- Clock stops and how each restarts are in `resume` (the law for each is cited there).
"""

from __future__ import annotations

import calendar as _months
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from mailbot.calendar import WorkingCalendar, calendar_for, council_calendar
from mailbot.categories import KINDS
from mailbot.policy import STATUTORY, Duration, Offset, Policy


class ExtensionRefused(ValueError):
    """An officer's #extend the policy does not allow (none, wrong unit, too long or too late)."""


class ClockStop(StrEnum):
    """Why a case's clock is stopped, which decides how it starts again (`resume`)."""

    CLARIFICATION = "clarification"  # #clarify: the resident is asked what they mean
    IDENTITY = "identity"  # #identity: a subject access requester is asked to prove who they are
    FEES = "fees"  # #fees: an FOI fees notice waits for payment


@dataclass(frozen=True)
class Deadlines:
    """The dates one message (or one complaint stage) gets under a policy."""

    category: str
    stage: int
    received_at: datetime
    day_one: date
    acknowledge_by: date
    respond_by: date
    holding_by: date | None
    reminders: tuple[date, ...]
    calendar: str
    extended_by: Duration | None = None  # the total of officers' extensions so far
    paused: int = 0  # days the clock was stopped (calendar days for sar, else working days)
    # The last day an extension may be notified (None: the stage allows none).
    extension_notice_by: date | None = None
    # The response date with the whole extension the stage allows (None: none allowed).
    latest_respond_by: date | None = None

    def as_json(self) -> dict[str, str | int | None]:
        """The `mailbot deadline --json` shape (SPEC §2), with the stage and its extension."""
        return {
            "category": self.category,
            "received_at": self.received_at.isoformat(),
            "day_one": self.day_one.isoformat(),
            "acknowledge_by": self.acknowledge_by.isoformat(),
            "respond_by": self.respond_by.isoformat(),
            "holding_by": self.holding_by.isoformat() if self.holding_by else None,
            "calendar": self.calendar,
            "stage": self.stage,
            "extension_notice_by": _iso(self.extension_notice_by),
            "latest_respond_by": _iso(self.latest_respond_by),
        }


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def add_months(d: date, months: int) -> date:
    """The same day of the month `months` later, or the month's last day if it has none."""
    year, month = divmod(d.month - 1 + months, 12)
    year += d.year
    return date(year, month + 1, min(d.day, _months.monthrange(year, month + 1)[1]))


def arrival_date(policy: Policy, received_at: datetime) -> date:
    """The council-local calendar date of an arrival time."""
    if received_at.tzinfo is None or received_at.utcoffset() is None:
        raise ValueError("received_at must be timezone-aware (the server's arrival time)")
    return received_at.astimezone(ZoneInfo(policy.timezone)).date()


def compute(
    policy: Policy,
    category: str,
    received_at: datetime,
    *,
    stage: int = 1,
    extended_by: Duration | None = None,
    paused: int = 0,
) -> Deadlines:
    """The dates a message of `category` arriving (or a stage starting) at `received_at`
    gets, after `extended_by` of officers' extensions and `paused` days of stopped clock."""
    return _compute(policy, category, received_at, stage, extended_by, paused)


# Who says an extension must be notified in time, per category.
_NOTICE_LAW = {
    "foi": "FOIA 2000 s.17(2): the notice goes within the 20 working days",
    "eir": "EIR 2004 reg 7(3): the requester is told within the 20 working days",
    "sar": "UK GDPR art. 12A: the notice, with reasons, goes within the first month",
}


def extend(
    deadlines: Deadlines, policy: Policy, amount: Duration, *, notified_on: date | None = None
) -> Deadlines:
    """The dates after an officer's #extend by `amount`, within the stage's extension.

    Extensions add up: two #extend 5 under a 10-working-day extension are allowed, a
    third is refused. The dates are recomputed from the stage's start, so an extension
    never compounds a closure-day adjustment. In a statutory category an extension the
    resident is told of (`notified_on`, a local date) after `extension_notice_by` is too
    late, and is refused.
    """
    stage = policy.stage(deadlines.category, deadlines.stage)
    allowed = stage.extension
    if allowed is None:
        raise ExtensionRefused(
            f"{deadlines.category} stage {deadlines.stage} has no extension in the"
            f" {policy.name} policy"
        )
    notice_by = deadlines.extension_notice_by
    if (
        deadlines.category in STATUTORY
        and notified_on is not None
        and notice_by is not None
        and notified_on > notice_by
    ):
        raise ExtensionRefused(
            f"too late: an extension had to be notified by {notice_by}"
            f" ({_NOTICE_LAW[deadlines.category]})"
        )
    if amount.unit != allowed.unit:
        raise ExtensionRefused(
            f"the {deadlines.category} extension is counted in {allowed.unit.replace('_', ' ')}"
        )
    if amount.amount < 1:
        raise ExtensionRefused("an extension must be at least 1")
    used = deadlines.extended_by.amount if deadlines.extended_by else 0
    if used + amount.amount > allowed.amount:
        left = Duration(amount=allowed.amount - used, unit=allowed.unit)
        raise ExtensionRefused(
            f"at most {allowed} in all may be added ({left} left); {stage.clause}"
        )
    total = Duration(amount=used + amount.amount, unit=allowed.unit)
    return _compute(
        policy, deadlines.category, deadlines.received_at, deadlines.stage, total, deadlines.paused
    )


def _compute(
    policy: Policy,
    category: str,
    received_at: datetime,
    stage_number: int,
    extended_by: Duration | None,
    paused: int = 0,
) -> Deadlines:
    stage = policy.stage(category, stage_number)
    dates = _dates(policy, category, stage_number, received_at, extended_by, paused)
    if stage.extension is None:
        return dates
    first = (
        dates
        if extended_by is None
        else _dates(policy, category, stage_number, received_at, None, paused)
    )
    # A subject access request's extension is notified within the first month (art. 12A);
    # an FOI or EIR one within the 20 days, and a further one by the date it moves.
    notice_by = first.respond_by if category == "sar" else dates.respond_by
    latest = _dates(policy, category, stage_number, received_at, stage.extension, paused)
    return replace(dates, extension_notice_by=notice_by, latest_respond_by=latest.respond_by)


def _dates(
    policy: Policy,
    category: str,
    stage_number: int,
    received_at: datetime,
    extended_by: Duration | None,
    paused: int,
) -> Deadlines:
    stage = policy.stage(category, stage_number)
    cal = calendar_for(policy, category)
    arrival = arrival_date(policy, received_at)

    if category == "sar":
        # UK GDPR art. 12(3) and 12A: day one is the day of arrival; one calendar month,
        # and the days paused for a clarification are not counted (art. 12A).
        day_one = arrival
        month = add_months(arrival, 1)
        own = arrival + timedelta(days=stage.respond.amount)
        if stage.respond.unit == "calendar_months":
            own = add_months(arrival, stage.respond.amount)
        respond_by = cal.next_working_day(min(own, month) + timedelta(days=paused))
    else:
        day_one = cal.add_working_days(arrival, 1)
        respond_by = cal.add_working_days(_after(cal, arrival, stage.respond), paused)
    if extended_by is not None:
        respond_by = _extended(cal, category, arrival, respond_by, extended_by, paused)
    acknowledge_by = _after(cal, arrival, stage.acknowledge)

    earliest = cal.next_working_day(day_one)
    holding_by = None
    if stage.holding_reply is not None:
        holding_by = max(earliest, _offset(cal, respond_by, stage.holding_reply))
    reminders = sorted({max(earliest, _offset(cal, respond_by, r)) for r in stage.reminders})

    if category in STATUTORY:
        office = _OfficeDays(cal, council_calendar(policy), floor=arrival)
        respond_by = office.open_on_or_before(respond_by)
        acknowledge_by = office.open_on_or_before(acknowledge_by)
        holding_by = office.open_on_or_before(holding_by) if holding_by else None
        reminders = sorted({office.open_on_or_before(r) for r in reminders})

    return Deadlines(
        category=category,
        stage=stage_number,
        received_at=received_at,
        day_one=day_one,
        acknowledge_by=acknowledge_by,
        respond_by=respond_by,
        holding_by=holding_by,
        reminders=tuple(reminders),
        calendar=cal.name,
        extended_by=extended_by,
        paused=paused,
    )


def _after(cal: WorkingCalendar, arrival: date, limit: Duration) -> date:
    if limit.unit == "working_days":
        return cal.add_working_days(arrival, limit.amount)
    if limit.unit == "calendar_days":
        return cal.next_working_day(arrival + timedelta(days=limit.amount))
    return cal.next_working_day(add_months(arrival, limit.amount))


def _extended(
    cal: WorkingCalendar,
    category: str,
    arrival: date,
    respond_by: date,
    extra: Duration,
    paused: int = 0,
) -> date:
    if extra.unit == "working_days":
        return cal.add_working_days(respond_by, extra.amount)
    if extra.unit == "calendar_days":
        return cal.next_working_day(respond_by + timedelta(days=extra.amount))
    if category == "sar":
        # Art. 12(3): "extended by two further months" runs from arrival, so a response
        # date already moved past a weekend is not moved again.
        months = add_months(arrival, 1 + extra.amount)
        return cal.next_working_day(months + timedelta(days=paused))
    return cal.next_working_day(add_months(respond_by, extra.amount))


def _offset(cal: WorkingCalendar, respond_by: date, point: Offset) -> date:
    return cal.add_working_days(respond_by, point.working_days)


class _OfficeDays:
    """Brings a statutory date off a council closure day to the office's last open day."""

    def __init__(self, statutory: WorkingCalendar, council: WorkingCalendar, floor: date):
        self.statutory, self.council, self.floor = statutory, council, floor

    def open_on_or_before(self, d: date) -> date:
        if self.council.is_working_day(d) or not self.statutory.is_working_day(d):
            return d  # open, or a day the statute itself skips (weekend, bank holiday)
        day = d
        for _ in range(60):  # closures longer than this are a broken policy: keep the date
            day -= timedelta(days=1)
            if day < self.floor:
                break
            if self.council.is_working_day(day) and self.statutory.is_working_day(day):
                return day
        return d


# --- stopping the clock and starting it again ------------------------------------------


@dataclass(frozen=True)
class Restart:
    """Where a stage's clock stands after a stop: its start, the days paused, and whether
    officers' extensions still count (a restart from day one starts them afresh)."""

    started_at: datetime
    paused: int
    keeps_extension: bool
    rule: str  # the law or policy, for the case history


# The longest a fees notice waits for payment: "three months beginning with the day on
# which the fees notice is given" (FOIA s.9(2); FOISA s.9(4)); after it the request lapses.
FEES_WAIT_MONTHS = 3


def resume(
    policy: Policy,
    category: str,
    stop: ClockStop,
    *,
    started_at: datetime,
    paused: int,
    stopped_at: datetime,
    resumed_at: datetime,
) -> Restart:
    """How the clock starts again when the resident answers (pure).

    - FOI or EIR clarification: from day one again, after the answer arrives (FOIA
      s.1(3) and s.10(1); EIR reg 9(4); FOISA s.1(3)).
    - Subject access identity check: from day one again, as "the relevant time" is when
      the information arrives (UK GDPR art. 12A(2)(b)).
    - Subject access clarification: paused; "the period beginning with the day on which
      the controller makes the request and ending with the day on which the controller
      receives the information" is not counted (art. 12A(3)-(4)), in calendar days.
    - FOI fees notice: the working days from the notice to the payment, both included,
      are disregarded (FOIA s.10(2); FOISA s.10(2)).
    - Any other clarification (the council's own promise): paused for the working days
      after the question up to the answer.
    """
    stopped_on = arrival_date(policy, stopped_at)
    resumed_on = arrival_date(policy, resumed_at)
    cal = calendar_for(policy, category)
    restart = KINDS[category].restart
    if stop is ClockStop.IDENTITY or (stop is ClockStop.CLARIFICATION and restart == "day-one"):
        rule = (
            "UK GDPR art. 12A(2): the month runs from the day the proof of identity arrived"
            if stop is ClockStop.IDENTITY
            else "FOIA s.1(3): the 20 working days run again from the day after the answer"
        )
        return Restart(resumed_at, 0, keeps_extension=False, rule=rule)
    if stop is ClockStop.FEES:
        days = cal.working_days_between(stopped_on - timedelta(days=1), resumed_on)
        rule = f"FOIA s.10(2): {days} working days from the fees notice to payment disregarded"
        return Restart(started_at, paused + days, keeps_extension=True, rule=rule)
    if restart == "pause-calendar-days":
        days = (resumed_on - stopped_on).days + 1
        rule = f"UK GDPR art. 12A(3): {days} days waiting for the answer not counted"
        return Restart(started_at, paused + days, keeps_extension=True, rule=rule)
    days = cal.working_days_between(stopped_on, resumed_on)
    rule = f"{days} working days waiting for the answer added"
    return Restart(started_at, paused + days, keeps_extension=True, rule=rule)


def fees_lapse_on(policy: Policy, notice_at: datetime) -> date:
    """The first day after the three months a fees notice waits for payment: an unpaid
    request lapses that day (FOIA s.9(2))."""
    return add_months(arrival_date(policy, notice_at), FEES_WAIT_MONTHS)
