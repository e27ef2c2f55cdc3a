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
"""

from __future__ import annotations

import calendar as _months
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from mailbot.calendar import WorkingCalendar, calendar_for, council_calendar
from mailbot.policy import STATUTORY, Duration, Offset, Policy


class ExtensionRefused(ValueError):
    """An officer's #extend the policy does not allow (none, wrong unit, or too long)."""


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

    def as_json(self) -> dict[str, str | None]:
        """The `mailbot deadline --json` shape (SPEC §2)."""
        return {
            "category": self.category,
            "received_at": self.received_at.isoformat(),
            "day_one": self.day_one.isoformat(),
            "acknowledge_by": self.acknowledge_by.isoformat(),
            "respond_by": self.respond_by.isoformat(),
            "holding_by": self.holding_by.isoformat() if self.holding_by else None,
            "calendar": self.calendar,
        }


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


def compute(policy: Policy, category: str, received_at: datetime, *, stage: int = 1) -> Deadlines:
    """The dates a message of `category` arriving at `received_at` gets."""
    return _compute(policy, category, received_at, stage, None)


def extend(deadlines: Deadlines, policy: Policy, amount: Duration) -> Deadlines:
    """The dates after an officer's #extend by `amount`, within the stage's extension.

    Extensions add up: two #extend 5 under a 10-working-day extension are allowed, a
    third is refused. The dates are recomputed from the arrival time, so an extension
    never compounds a closure-day adjustment.
    """
    stage = policy.stage(deadlines.category, deadlines.stage)
    allowed = stage.extension
    if allowed is None:
        raise ExtensionRefused(
            f"{deadlines.category} stage {deadlines.stage} has no extension in the"
            f" {policy.name} policy"
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
    return _compute(policy, deadlines.category, deadlines.received_at, deadlines.stage, total)


def _compute(
    policy: Policy,
    category: str,
    received_at: datetime,
    stage_number: int,
    extended_by: Duration | None,
) -> Deadlines:
    stage = policy.stage(category, stage_number)
    cal = calendar_for(policy, category)
    arrival = arrival_date(policy, received_at)

    if category == "sar":
        # UK GDPR art. 12(3): day one is the day of arrival; one calendar month.
        day_one = arrival
        statutory = _after(cal, arrival, Duration(amount=1, unit="calendar_months"))
        respond_by = min(_after(cal, arrival, stage.respond), statutory)
    else:
        day_one = cal.add_working_days(arrival, 1)
        respond_by = _after(cal, arrival, stage.respond)
    if extended_by is not None:
        respond_by = _extended(cal, category, arrival, respond_by, extended_by)
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
    )


def _after(cal: WorkingCalendar, arrival: date, limit: Duration) -> date:
    if limit.unit == "working_days":
        return cal.add_working_days(arrival, limit.amount)
    if limit.unit == "calendar_days":
        return cal.next_working_day(arrival + timedelta(days=limit.amount))
    return cal.next_working_day(add_months(arrival, limit.amount))


def _extended(
    cal: WorkingCalendar, category: str, arrival: date, respond_by: date, extra: Duration
) -> date:
    if extra.unit == "working_days":
        return cal.add_working_days(respond_by, extra.amount)
    if extra.unit == "calendar_days":
        return cal.next_working_day(respond_by + timedelta(days=extra.amount))
    if category == "sar":
        # Art. 12(3): "extended by two further months" runs from arrival, so a response
        # date already moved past a weekend is not moved again.
        return cal.next_working_day(add_months(arrival, 1 + extra.amount))
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
