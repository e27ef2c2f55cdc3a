"""Working-day calendars (bank holidays, closure days, statutory FOI days) and office hours."""

from __future__ import annotations

import contextlib
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import holidays
from dateutil.easter import easter

from mailbot.categories import KINDS

if TYPE_CHECKING:
    from mailbot.policy import Policy

_SUBDIV = {"england": "ENG", "wales": "WLS", "scotland": "SCT", "northern-ireland": "NIR"}
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June", "July",
    "August", "September", "October", "November", "December",
)  # fmt: skip
# Years the bank-holiday tables are trusted for; beyond them there is no honest answer.
FIRST_YEAR, LAST_YEAR = 1990, 2200
# The years a date given to mailbot (an arrival, --now, a report's period) may fall in: a
# decade inside the calendars, room for the longest deadline counted from it.
USABLE_YEARS = range(FIRST_YEAR + 1, LAST_YEAR - 10 + 1)


def usable_year(day: date | datetime) -> bool:
    return day.year in USABLE_YEARS


def years_usable() -> str:
    return f"{USABLE_YEARS.start}-{USABLE_YEARS.stop - 1}"


# A working-day count beyond this is a bug or hostile input, not a deadline.
_MAX_STEP = 5000
# Working days in a year, at the least (52 weeks, less every bank holiday and closure):
# used to size the precomputed span before counting.
_MIN_WORKING_DAYS_A_YEAR = 180


class WorkingCalendar:
    """Which days count as working days, and counting in them.

    The working days of a span of years are kept as a sorted list of day numbers, so
    counting N working days is a binary search rather than a walk through the days: a
    scheduler recomputing 100,000 cases does not notice the calendar at all.
    """

    def __init__(self, name: str, holidays_in: Callable[[int], frozenset[date]]) -> None:
        self.name = name
        self._holidays_in = holidays_in
        self._years: dict[int, frozenset[date]] = {}
        self._lock = threading.Lock()
        # (first year, last year, sorted ordinals of working days): replaced whole, so a
        # reader in another thread always sees a consistent triple.
        self._span: tuple[int, int, list[int]] = (0, -1, [])

    def __repr__(self) -> str:
        return f"WorkingCalendar({self.name!r})"

    def holidays(self, year: int) -> frozenset[date]:
        """Weekdays or weekend days off in `year`: bank holidays and closure days."""
        days = self._years.get(year)
        if days is None:
            _check_year(year)
            days = self._years[year] = self._holidays_in(year)
        return days

    def is_holiday(self, d: date) -> bool:
        """A bank holiday or a closure day (whatever day of the week it falls on)."""
        return d in self.holidays(d.year)

    def is_working_day(self, d: date) -> bool:
        return d.weekday() < 5 and d not in self.holidays(d.year)

    def next_working_day(self, d: date) -> date:
        """`d` itself when it is a working day, else the first working day after it."""
        ords = self._cover(d.year, d.year + 1)
        return date.fromordinal(ords[bisect_left(ords, d.toordinal())])

    def previous_working_day(self, d: date) -> date:
        """`d` itself when it is a working day, else the last working day before it."""
        ords = self._cover(d.year - 1, d.year)
        return date.fromordinal(ords[bisect_right(ords, d.toordinal()) - 1])

    def add_working_days(self, start: date, n: int) -> date:
        """The n-th working day after `start` (start itself never counts).

        n = 0 gives `start`; a negative n gives the |n|-th working day before `start`.
        """
        if n == 0:
            return start
        if abs(n) > _MAX_STEP:
            raise ValueError(f"{n} working days is not a deadline")
        years = abs(n) // _MIN_WORKING_DAYS_A_YEAR + 1
        if n > 0:
            ords = self._cover(start.year, min(LAST_YEAR, start.year + years))
            index = bisect_right(ords, start.toordinal()) + n - 1
        else:
            ords = self._cover(max(FIRST_YEAR, start.year - years), start.year)
            index = bisect_left(ords, start.toordinal()) + n
        if not 0 <= index < len(ords):
            raise ValueError(f"{n} working days from {start} leaves the calendars")
        return date.fromordinal(ords[index])

    def working_days_between(self, a: date, b: date) -> int:
        """Working days after `a` up to and including `b`.

        When b is before a the answer is minus the working days from b up to but not
        including a, so that working_days_between(s, add_working_days(s, n)) == n for
        every n, forwards and back.
        """
        ords = self._cover(min(a, b).year, max(a, b).year)
        oa, ob = a.toordinal(), b.toordinal()
        if ob >= oa:
            return bisect_right(ords, ob) - bisect_right(ords, oa)
        return -(bisect_left(ords, oa) - bisect_left(ords, ob))

    def _cover(self, first: int, last: int) -> list[int]:
        """Working days of at least first..last (with a year's margin either side)."""
        lo, hi, ords = self._span
        if lo < first and last < hi:  # the common case, kept cheap
            return ords
        _check_year(first)
        _check_year(last)
        want_lo, want_hi = max(FIRST_YEAR, first - 1), min(LAST_YEAR, last + 1)
        if lo <= want_lo and want_hi <= hi:
            return ords
        with self._lock:
            lo, hi, ords = self._span
            if lo <= want_lo and want_hi <= hi:
                return ords
            if ords:
                want_lo, want_hi = min(want_lo, lo), max(want_hi, hi)
            ords = self._working_ordinals(want_lo, want_hi)
            self._span = (want_lo, want_hi, ords)
            return ords

    def _working_ordinals(self, first: int, last: int) -> list[int]:
        out: list[int] = []
        day = date(first, 1, 1)
        end = date(last, 12, 31).toordinal()
        off = set().union(*(self.holidays(y) for y in range(first, last + 1)))
        ordinal, weekday = day.toordinal(), day.weekday()
        while ordinal <= end:
            if weekday < 5 and date.fromordinal(ordinal) not in off:
                out.append(ordinal)
            ordinal += 1
            weekday = (weekday + 1) % 7
        return out


def _check_year(year: int) -> None:
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise ValueError(f"year {year} is outside the calendars ({FIRST_YEAR}-{LAST_YEAR})")


# --- where the days off come from -----------------------------------------------------


@lru_cache(maxsize=2048)
def _bank_holidays(nation: str, year: int) -> frozenset[date]:
    # Without subdiv, holidays.UK() gives only the days common to all four nations.
    return frozenset(holidays.UK(subdiv=_SUBDIV[nation], years=year))


def _closure_dates(closure_days: tuple[str, ...], year: int) -> frozenset[date]:
    out = set()
    for text in closure_days:
        if len(text) == 5:  # "MM-DD": every year
            with contextlib.suppress(ValueError):  # 02-29 in a common year
                out.add(date(year, int(text[:2]), int(text[3:])))
        else:
            d = date.fromisoformat(text)
            if d.year == year:
                out.add(d)
    return frozenset(out)


def _always_off(year: int) -> frozenset[date]:
    # FOIA s.10(6) and FOISA s.73 name Christmas Day (and FOIA Good Friday) outright,
    # not only as bank holidays, so they are off even if a table ever left them out.
    return frozenset({date(year, 12, 25), easter(year) - timedelta(days=2)})


@lru_cache(maxsize=64)
def _calendar(kind: str, nation: str, closure_days: tuple[str, ...]) -> WorkingCalendar:
    if kind == "foia":
        return WorkingCalendar(
            "uk-all-nations (FOIA s.10(6))",
            lambda y: _always_off(y).union(*(_bank_holidays(n, y) for n in _SUBDIV)),
        )
    if kind == "foisa":
        return WorkingCalendar(
            "scotland (FOISA s.73)",
            lambda y: _bank_holidays("scotland", y) | {date(y, 12, 25)},
        )
    if closure_days:
        return WorkingCalendar(
            f"{nation} + council closure days",
            lambda y: _bank_holidays(nation, y) | _closure_dates(closure_days, y),
        )
    return WorkingCalendar(nation, lambda y: _bank_holidays(nation, y))


def nation_calendar(nation: str) -> WorkingCalendar:
    """Weekends and the nation's bank holidays only."""
    return _calendar("nation", nation, ())


def council_calendar(policy: Policy) -> WorkingCalendar:
    """The council's own working days: weekends, its nation's bank holidays, closure days."""
    return _calendar("nation", policy.nation, tuple(policy.closure_days))


def calendar_for(policy: Policy, category: str) -> WorkingCalendar:
    """The calendar a category's clock runs on; statute decides for foi, eir and sar.

    - foi, eir: FOIA s.10(6) (and EIR reg 2(1), which borrows it): weekends, Christmas
      Day, Good Friday and a bank holiday in any part of the UK. A Scottish council
      answers under FOISA s.73 (and EISR reg 2(1)): weekends, Christmas Day and Scottish
      bank holidays. Council closure days never stop a statutory clock.
    - sar: UK GDPR art. 12(3) as the ICO reads it: a date falling on a weekend or bank
      holiday moves to the next working day; a council closure day is not a public
      holiday, so it does not (deadlines.py brings such a date forward instead).
    - everything else: the council calendar.
    """
    kind = KINDS[category].calendar if category in KINDS else "council"
    if kind == "any-uk-nation":
        return _calendar("foisa" if policy.nation == "scotland" else "foia", "", ())
    if kind == "nation":
        return nation_calendar(policy.nation)
    return council_calendar(policy)


# --- office hours ----------------------------------------------------------------------


def _open_on(policy: Policy, d: date) -> bool:
    opening_day = _WEEKDAYS[d.weekday()] in policy.business_hours.days
    return opening_day and not council_calendar(policy).is_holiday(d)


def _local(policy: Policy, instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("a timezone-aware instant is needed")
    return instant.astimezone(ZoneInfo(policy.timezone))


def is_open(policy: Policy, instant: datetime) -> bool:
    """Within business hours on a day the office opens, in the council's timezone."""
    local = _local(policy, instant)
    hours = policy.business_hours
    return _open_on(policy, local.date()) and hours.opens <= local.time() < hours.closes


def next_opening(policy: Policy, instant: datetime) -> datetime:
    """`instant` itself when the office is open, else when it next opens (council time)."""
    local = _local(policy, instant)
    hours, tz = policy.business_hours, ZoneInfo(policy.timezone)
    day = local.date()
    if _open_on(policy, day) and local.time() < hours.closes:
        if local.time() >= hours.opens:
            return instant
        return datetime.combine(day, hours.opens, tzinfo=tz)
    for _ in range(400):  # a year of closure days is a broken policy, not a loop forever
        day += timedelta(days=1)
        if _open_on(policy, day):
            return datetime.combine(day, hours.opens, tzinfo=tz)
    raise ValueError(f"policy {policy.name!r}: the office never opens in the next year")


def _clock_words(t: datetime) -> str:
    hour = t.hour % 12 or 12
    minutes = f":{t.minute:02d}" if t.minute else ""
    return f"{hour}{minutes}{'am' if t.hour < 12 else 'pm'}"


def reopening_phrase(policy: Policy, instant: datetime) -> str | None:
    """ "we are closed until Monday 5 January at 9am" when closed; None when open."""
    if is_open(policy, instant):
        return None
    opens = next_opening(policy, instant)
    year = f" {opens.year}" if opens.year != _local(policy, instant).year else ""
    return (
        f"we are closed until {_DAY_NAMES[opens.weekday()]} {opens.day}"
        f" {_MONTH_NAMES[opens.month - 1]}{year} at {_clock_words(opens)}"
    )
