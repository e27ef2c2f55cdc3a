"""Working-day calendars and office hours, checked by hand against the 2025-2027 calendars."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbot.calendar import (
    WorkingCalendar,
    calendar_for,
    council_calendar,
    is_open,
    nation_calendar,
    next_opening,
    reopening_phrase,
)
from mailbot.policy import Policy, builtin_policy_dir, load_policy, parse_policy

BST = timezone(timedelta(hours=1))


def variant(name: str, *swaps: tuple[str, str]) -> Policy:
    """A shipped policy with some text replaced (each swap must hit exactly once)."""
    text = (builtin_policy_dir() / f"{name}.toml").read_text(encoding="utf-8")
    for old, new in swaps:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return parse_policy(text, f"{name}-variant.toml")


STAFFORD = load_policy("stafford")
STAMFORD = load_policy("stamford")  # open 9am-4pm (Standards 3 table)
WITH_CLOSURES = variant(
    "stafford", ("closure_days = []", 'closure_days = ["12-29", "12-30", "12-31", "2026-12-24"]')
)
ENGLAND = nation_calendar("england")
WALES = nation_calendar("wales")
SCOTLAND = nation_calendar("scotland")
NI = nation_calendar("northern-ireland")
FOIA = calendar_for(STAFFORD, "foi")
FOISA = calendar_for(
    variant(
        "stafford",
        ('nation = "england"', 'nation = "scotland"'),
        ('extension = "20 working days"\n# Reminders: the Framework', "# Reminders: the Framework"),
        # FOISA s.21(1), EISR reg 16(4): Scottish reviews have 20 days and no extension.
        ('extension = "20 working days"\n# Reminders: as for the request itself.', "#"),
        ('respond = "40 working days"', 'respond = "20 working days"'),
    ),
    "foi",
)

D = date

# (calendar, start, n, expected, why) — each row counted by hand on a printed calendar.
ADD_CASES = [
    (ENGLAND, D(2025, 4, 17), 1, D(2025, 4, 22),
     "Thu 17 Apr 2025: Fri 18 Good Friday, Sat, Sun, Mon 21 Easter Monday -> Tue 22"),
    (SCOTLAND, D(2025, 4, 17), 1, D(2025, 4, 21),
     "Scotland has Good Friday but no Easter Monday -> Mon 21 Apr 2025"),
    (ENGLAND, D(2025, 12, 31), 1, D(2026, 1, 2),
     "Wed 31 Dec 2025: Thu 1 Jan New Year's Day -> Fri 2 Jan 2026"),
    (SCOTLAND, D(2025, 12, 31), 1, D(2026, 1, 5),
     "Scotland: Thu 1 Jan and Fri 2 Jan both off, then the weekend -> Mon 5 Jan 2026"),
    (ENGLAND, D(2025, 11, 28), 1, D(2025, 12, 1),
     "Fri 28 Nov 2025 -> Mon 1 Dec (no St Andrew's Day in England)"),
    (SCOTLAND, D(2025, 11, 28), 1, D(2025, 12, 2),
     "St Andrew's Day Sun 30 Nov 2025 is kept on Mon 1 Dec in Scotland -> Tue 2 Dec"),
    (SCOTLAND, D(2027, 11, 29), 1, D(2027, 12, 1),
     "St Andrew's Day 2027 is Tue 30 Nov -> Mon 29 Nov + 1 = Wed 1 Dec"),
    (NI, D(2026, 3, 16), 1, D(2026, 3, 18),
     "Northern Ireland: St Patrick's Day Tue 17 Mar 2026 -> Wed 18 Mar"),
    (ENGLAND, D(2026, 3, 16), 1, D(2026, 3, 17),
     "England works on St Patrick's Day: Mon 16 Mar 2026 -> Tue 17 Mar"),
    (NI, D(2025, 7, 11), 1, D(2025, 7, 15),
     "Battle of the Boyne Sat 12 Jul 2025 kept on Mon 14 Jul in NI: Fri 11 -> Tue 15 Jul"),
    (NI, D(2027, 7, 9), 1, D(2027, 7, 13),
     "Battle of the Boyne Mon 12 Jul 2027 in NI: Fri 9 -> Tue 13 Jul"),
    (ENGLAND, D(2026, 12, 24), 1, D(2026, 12, 29),
     "Thu 24 Dec 2026: Fri 25 Christmas, Sat 26 Boxing Day kept Mon 28 -> Tue 29 Dec"),
    (ENGLAND, D(2027, 12, 24), 1, D(2027, 12, 29),
     "Christmas 2027 on Sat/Sun is kept Mon 27 and Tue 28 -> Fri 24 + 1 = Wed 29 Dec"),
    (SCOTLAND, D(2026, 12, 31), 1, D(2027, 1, 5),
     "Scotland 2027: Fri 1 Jan, 2 Jan (Sat) kept Mon 4 Jan -> Thu 31 Dec + 1 = Tue 5 Jan"),
    (ENGLAND, D(2026, 12, 31), 1, D(2027, 1, 4),
     "England 2027: Fri 1 Jan off, weekend -> Mon 4 Jan"),
    (SCOTLAND, D(2026, 6, 12), 1, D(2026, 6, 16),
     "one-off Scottish holiday Mon 15 Jun 2026 (World Cup, in holidays 0.109) -> Tue 16 Jun"),
    (WALES, D(2026, 8, 28), 1, D(2026, 9, 1),
     "Wales: Late Summer Bank Holiday Mon 31 Aug 2026 -> Fri 28 + 1 = Tue 1 Sep"),
    (ENGLAND, D(2025, 12, 19), 5, D(2025, 12, 30),
     "Fri 19 Dec 2025 + 5: Mon 22, Tue 23, Wed 24, (25, 26 BH, weekend) Mon 29, Tue 30"),
    (ENGLAND, D(2025, 12, 27), 0, D(2025, 12, 27), "n = 0 is the start itself, even a Saturday"),
    (ENGLAND, D(2025, 12, 29), -1, D(2025, 12, 24),
     "Mon 29 Dec 2025 - 1: Sun, Sat, Fri 26 and Thu 25 are off -> Wed 24 Dec"),
    (ENGLAND, D(2026, 4, 7), -2, D(2026, 4, 1),
     "Tue 7 Apr 2026 - 2: Mon 6 Easter Monday, Fri 3 Good Friday off -> Thu 2, Wed 1 Apr"),
    (FOIA, D(2026, 3, 16), 1, D(2026, 3, 18),
     "FOIA s.10(6): St Patrick's Day (NI) is not a working day for an English council either"),
    (FOIA, D(2025, 12, 31), 1, D(2026, 1, 5),
     "FOIA s.10(6): Scotland's 2 January is off for every UK authority -> Mon 5 Jan 2026"),
    (FOIA, D(2026, 4, 2), 1, D(2026, 4, 7),
     "FOIA s.10(6): Good Friday 3 Apr and Easter Monday 6 Apr 2026 (England) -> Tue 7 Apr"),
    (FOISA, D(2026, 4, 2), 1, D(2026, 4, 6),
     "FOISA s.73: Scottish holidays only, Easter Monday is a working day -> Mon 6 Apr 2026"),
    (FOISA, D(2026, 3, 16), 1, D(2026, 3, 17),
     "FOISA s.73: St Patrick's Day is a working day in Scotland -> Tue 17 Mar 2026"),
    (council_calendar(WITH_CLOSURES), D(2025, 12, 24), 1, D(2026, 1, 2),
     "closure days 29-31 Dec every year: Wed 24 Dec 2025 -> (25-31, 1 Jan) Fri 2 Jan 2026"),
    (council_calendar(WITH_CLOSURES), D(2026, 12, 23), 1, D(2027, 1, 4),
     "one-off closure Thu 24 Dec 2026, 25, 28 BH, 29-31 closed, 1 Jan BH -> Mon 4 Jan 2027"),
]  # fmt: skip


@pytest.mark.parametrize(("cal", "start", "n", "expected", "why"), ADD_CASES)
def test_add_working_days_by_hand(
    cal: WorkingCalendar, start: date, n: int, expected: date, why: str
) -> None:
    assert cal.add_working_days(start, n) == expected, why


@pytest.mark.parametrize(
    ("cal", "day", "working"),
    [
        (ENGLAND, D(2025, 4, 18), False),  # Good Friday 2025
        (SCOTLAND, D(2025, 4, 21), True),  # Easter Monday is not a Scottish bank holiday
        (ENGLAND, D(2026, 12, 28), False),  # Boxing Day (Sat 26) kept on Mon 28 Dec 2026
        (SCOTLAND, D(2026, 1, 2), False),  # 2 January, Scotland
        (ENGLAND, D(2026, 1, 2), True),
        (SCOTLAND, D(2026, 11, 30), False),  # St Andrew's Day on a Monday
        (ENGLAND, D(2026, 11, 30), True),
        (NI, D(2026, 7, 13), False),  # Boyne (Sun 12 Jul 2026) kept on Mon 13
        (FOIA, D(2026, 7, 13), False),  # ... and so off for FOI everywhere in the UK
        (FOIA, D(2026, 8, 3), False),  # Scottish summer holiday, off for FOI
        (FOIA, D(2026, 8, 31), False),  # England's late summer holiday
        (FOIA, D(2026, 6, 15), False),  # the one-off Scottish day, off for FOI
        (FOISA, D(2026, 8, 31), True),  # not a Scottish holiday
        (FOIA, D(2026, 12, 24), True),  # council closure days never stop a statutory clock
        (council_calendar(WITH_CLOSURES), D(2026, 12, 24), False),  # one-off closure day
        (council_calendar(WITH_CLOSURES), D(2027, 12, 30), False),  # recurring closure day
        (ENGLAND, D(2027, 1, 2), False),  # a Saturday
    ],
)
def test_is_working_day(cal: WorkingCalendar, day: date, working: bool) -> None:
    assert cal.is_working_day(day) is working


def test_next_and_previous_working_day() -> None:
    assert ENGLAND.next_working_day(D(2025, 12, 27)) == D(2025, 12, 29)  # Sat -> Mon
    assert ENGLAND.next_working_day(D(2025, 12, 29)) == D(2025, 12, 29)  # itself
    assert ENGLAND.previous_working_day(D(2025, 12, 28)) == D(2025, 12, 24)  # Sun -> Wed
    assert SCOTLAND.next_working_day(D(2027, 1, 1)) == D(2027, 1, 5)  # Fri 1, Mon 4 off


def test_working_days_between_by_hand() -> None:
    # Fri 19 Dec 2025 to Fri 2 Jan 2026: 22, 23, 24, 29, 30, 31 Dec and 2 Jan.
    assert ENGLAND.working_days_between(D(2025, 12, 19), D(2026, 1, 2)) == 7
    # Scotland loses 2 January.
    assert SCOTLAND.working_days_between(D(2025, 12, 19), D(2026, 1, 2)) == 6
    assert ENGLAND.working_days_between(D(2026, 1, 5), D(2026, 1, 5)) == 0
    # Backwards: minus the working days from b up to (not including) a: Wed 24 Dec only.
    assert ENGLAND.working_days_between(D(2025, 12, 29), D(2025, 12, 24)) == -1


def test_calendar_names() -> None:
    assert council_calendar(STAFFORD).name == "england"
    assert council_calendar(WITH_CLOSURES).name == "england + council closure days"
    assert FOIA.name == "uk-all-nations (FOIA s.10(6))"
    assert calendar_for(STAFFORD, "eir") is FOIA  # EIR reg 2(1) borrows FOIA s.10(6)
    assert FOISA.name == "scotland (FOISA s.73)"
    assert calendar_for(STAFFORD, "enquiry").name == "england"
    # SAR: the nation's calendar, closure days do not move a statutory date.
    assert calendar_for(WITH_CLOSURES, "sar").name == "england"
    assert calendar_for(WITH_CLOSURES, "complaint").name == "england + council closure days"


def test_leap_day_closure_is_skipped_in_common_years() -> None:
    policy = variant("stafford", ("closure_days = []", 'closure_days = ["02-29"]'))
    cal = council_calendar(policy)
    assert cal.is_working_day(D(2027, 3, 1))
    assert not cal.is_working_day(D(2028, 2, 29))


def test_out_of_range_and_absurd_counts_are_errors() -> None:
    with pytest.raises(ValueError):
        ENGLAND.add_working_days(D(2026, 1, 1), 10**9)
    with pytest.raises(ValueError):
        ENGLAND.next_working_day(D(9999, 12, 31))


# --- office hours ----------------------------------------------------------------------


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_open_within_hours_on_a_working_day() -> None:
    assert is_open(STAMFORD, utc(2026, 1, 5, 10, 0))  # Mon 5 Jan 2026, 10am GMT
    assert is_open(STAMFORD, utc(2026, 1, 5, 15, 59))
    assert not is_open(STAMFORD, utc(2026, 1, 5, 16, 0))  # Stamford closes at 4pm
    assert not is_open(STAMFORD, utc(2026, 1, 5, 8, 59))
    # 15:30 UTC in July is 16:30 BST: closed, although 15:30 would be open in winter.
    assert not is_open(STAMFORD, utc(2026, 7, 3, 15, 30))
    assert is_open(STAMFORD, utc(2026, 7, 3, 14, 30))  # 15:30 BST


def test_next_opening_is_the_instant_itself_when_open() -> None:
    instant = utc(2026, 1, 5, 10, 0)
    assert next_opening(STAMFORD, instant) == instant
    assert reopening_phrase(STAMFORD, instant) is None


@pytest.mark.parametrize(
    ("policy", "instant", "opens", "phrase"),
    [
        # Sat 3 Jan 2026 -> Monday.
        (STAMFORD, utc(2026, 1, 3, 10), utc(2026, 1, 5, 9),
         "we are closed until Monday 5 January at 9am"),
        # New Year's Day 2026 is a Thursday bank holiday -> Friday 2 January.
        (STAMFORD, utc(2026, 1, 1, 10), utc(2026, 1, 2, 9),
         "we are closed until Friday 2 January at 9am"),
        # Christmas Eve 2025 after 4pm: 25, 26 BH, weekend -> Monday 29 December.
        (STAMFORD, utc(2025, 12, 24, 17, 30), utc(2025, 12, 29, 9),
         "we are closed until Monday 29 December at 9am"),
        # ... but with closure days 29-31 Dec and New Year's Day -> Friday 2 January 2026.
        (WITH_CLOSURES, utc(2025, 12, 24, 17, 30), utc(2026, 1, 2, 9),
         "we are closed until Friday 2 January 2026 at 9am"),
        # Fri 3 Jul 2026 16:30 BST -> Monday 6 July at 9am BST (08:00 UTC).
        (STAMFORD, utc(2026, 7, 3, 15, 30), utc(2026, 7, 6, 8),
         "we are closed until Monday 6 July at 9am"),
        # Mon 6 Jul 2026 08:30 BST: opens later the same day.
        (STAMFORD, utc(2026, 7, 6, 7, 30), utc(2026, 7, 6, 8),
         "we are closed until Monday 6 July at 9am"),
        # Thu 31 Dec 2026 6pm: Fri 1 Jan 2027 BH, weekend -> Monday 4 January 2027.
        (STAFFORD, utc(2026, 12, 31, 18), utc(2027, 1, 4, 9),
         "we are closed until Monday 4 January 2027 at 9am"),
    ],
)  # fmt: skip
def test_reopening(policy: Policy, instant: datetime, opens: datetime, phrase: str) -> None:
    assert not is_open(policy, instant)
    got = next_opening(policy, instant)
    assert got == opens
    assert got.tzinfo is not None
    assert reopening_phrase(policy, instant) == phrase


def test_reopening_at_half_past() -> None:
    policy = variant("stamford", ('opens = "09:00"', 'opens = "09:30"'))
    assert reopening_phrase(policy, utc(2026, 1, 3, 10)) == (
        "we are closed until Monday 5 January at 9:30am"
    )


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError):
        is_open(STAMFORD, datetime(2026, 1, 5, 10))


# --- properties ------------------------------------------------------------------------

CALENDARS = [ENGLAND, WALES, SCOTLAND, NI, FOIA, FOISA, council_calendar(WITH_CLOSURES)]


@settings(max_examples=300, deadline=None)
@given(
    cal=st.sampled_from(CALENDARS),
    start=st.dates(min_value=D(2024, 1, 1), max_value=D(2028, 12, 31)),
    n=st.integers(min_value=-300, max_value=300),
)
def test_add_then_count_gives_n(cal: WorkingCalendar, start: date, n: int) -> None:
    end = cal.add_working_days(start, n)
    assert cal.working_days_between(start, end) == n
    if n != 0:
        assert cal.is_working_day(end)
        assert (end > start) == (n > 0)


@settings(max_examples=200, deadline=None)
@given(
    cal=st.sampled_from(CALENDARS),
    a=st.dates(min_value=D(2024, 1, 1), max_value=D(2028, 12, 31)),
    b=st.dates(min_value=D(2024, 1, 1), max_value=D(2028, 12, 31)),
)
def test_add_working_days_is_monotonic(cal: WorkingCalendar, a: date, b: date) -> None:
    a, b = min(a, b), max(a, b)
    for n in (1, 5, 20):
        assert cal.add_working_days(a, n) <= cal.add_working_days(b, n)


@settings(max_examples=200, deadline=None)
@given(
    cal=st.sampled_from(CALENDARS),
    day=st.dates(min_value=D(2024, 1, 1), max_value=D(2028, 12, 31)),
)
def test_counting_agrees_with_walking_day_by_day(cal: WorkingCalendar, day: date) -> None:
    # The binary search must agree with the obvious slow walk.
    walk, found = day, 0
    while found < 7:
        walk += timedelta(days=1)
        found += cal.is_working_day(walk)
    assert cal.add_working_days(day, 7) == walk
