"""Deadline computation (SPEC §4), with every date counted by hand on a 2025-2027 calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbot.calendar import calendar_for, council_calendar
from mailbot.deadlines import (
    ClockStop,
    Deadlines,
    ExtensionRefused,
    add_months,
    compute,
    extend,
    fees_lapse_on,
    resume,
)
from mailbot.planning import actions_for
from mailbot.policy import (
    Duration,
    Policy,
    builtin_policy_dir,
    list_policies,
    load_policy,
    parse_policy,
)
from mailbot.scheduler import latest_response_date

D = date


def variant(name: str, *swaps: tuple[str, str]) -> Policy:
    """A shipped policy with some text replaced (each swap must hit exactly once)."""
    text = (builtin_policy_dir() / f"{name}.toml").read_text(encoding="utf-8")
    for old, new in swaps:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return parse_policy(text, f"{name}-variant.toml")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


STAFFORD = load_policy("stafford")  # enquiry 5 wd; complaints 5/10, 5/20, 5/15
STAMFORD = load_policy("stamford")  # enquiry 5/20, holding reply before day 20
STOTFOLD = load_policy("stotfold")  # 3/5
SHAFTESBURY = load_policy("shaftesbury")  # 3/10
DRAFT = load_policy("draft-customer-promise")  # e-mail 1/10; complaints 3/10 (+10)
CLOSED_XMAS = variant(
    "stafford", ("closure_days = []", 'closure_days = ["12-29", "12-30", "12-31"]')
)
_NO_FOISA_EXTENSION = (
    'extension = "20 working days"\n# Reminders: the Framework',
    "# Reminders: the Framework",
)
# FOISA s.21(1) and EISR reg 16(4): a Scottish review has 20 working days and no extension.
_SCOTTISH_REVIEWS = (
    ('extension = "20 working days"\n# Reminders: as for the request itself.',
     "# Reminders: as for the request itself."),
    ('respond = "40 working days"', 'respond = "20 working days"'),
)  # fmt: skip
SCOTTISH = variant(
    "stafford",
    ('nation = "england"', 'nation = "scotland"'),
    _NO_FOISA_EXTENSION,
    *_SCOTTISH_REVIEWS,
)
NORTHERN_IRISH = variant("stafford", ('nation = "england"', 'nation = "northern-ireland"'))

# (policy, category, stage, received_at, day_one, respond_by, why)
RESPOND_CASES = [
    (STAFFORD, "enquiry", 1, utc(2025, 12, 19, 14), D(2025, 12, 22), D(2025, 12, 30),
     "Fri 19 Dec 2025 14:00 GMT, 5 wd England: Mon 22, Tue 23, Wed 24, (25, 26 BH, "
     "weekend) Mon 29, Tue 30"),
    (CLOSED_XMAS, "enquiry", 1, utc(2025, 12, 19, 14), D(2025, 12, 22), D(2026, 1, 5),
     "as above with closure days 29-31 Dec: 22, 23, 24, (1 Jan BH) Fri 2, Mon 5 Jan"),
    (STAFFORD, "enquiry", 1, utc(2026, 1, 3, 10), D(2026, 1, 5), D(2026, 1, 9),
     "Sat 3 Jan 2026: the weekend day is the arrival date; 5, 6, 7, 8, Fri 9 Jan"),
    (STAFFORD, "enquiry", 1, utc(2026, 1, 5, 23, 30), D(2026, 1, 6), D(2026, 1, 12),
     "Mon 5 Jan 2026 23:30 GMT is still Monday: 6, 7, 8, 9, Mon 12 Jan"),
    (STAFFORD, "enquiry", 1, utc(2026, 1, 6, 0, 0), D(2026, 1, 7), D(2026, 1, 13),
     "midnight GMT is Tue 6 Jan: 7, 8, 9, 12, Tue 13 Jan"),
    (STAFFORD, "enquiry", 1, utc(2026, 6, 30, 23, 0), D(2026, 7, 2), D(2026, 7, 8),
     "2026-06-30T23:00Z is Wed 1 Jul 00:00 BST: 2, 3, 6, 7, Wed 8 Jul"),
    (STAFFORD, "enquiry", 1, utc(2026, 6, 30, 22, 59, 59), D(2026, 7, 1), D(2026, 7, 7),
     "2026-06-30T22:59:59Z is Tue 30 Jun 23:59:59 BST: 1, 2, 3, 6, Tue 7 Jul"),
    (STAFFORD, "enquiry", 1, datetime(2026, 1, 15, 0, 30, tzinfo=timezone(timedelta(hours=1))),
     D(2026, 1, 15), D(2026, 1, 21),
     "00:30+01:00 on 15 Jan is 23:30 GMT Wed 14 Jan in London (the sender's offset is "
     "ignored): 15, 16, 19, 20, Wed 21 Jan"),
    (STAFFORD, "enquiry", 1, utc(2026, 4, 2, 10), D(2026, 4, 7), D(2026, 4, 13),
     "Thu 2 Apr 2026: Good Friday 3, Easter Monday 6 off; 7, 8, 9, 10, Mon 13 Apr"),
    (SCOTTISH, "enquiry", 1, utc(2026, 4, 2, 10), D(2026, 4, 6), D(2026, 4, 10),
     "Scotland works Easter Monday: 6, 7, 8, 9, Fri 10 Apr 2026"),
    (SCOTTISH, "enquiry", 1, utc(2025, 12, 31, 15), D(2026, 1, 5), D(2026, 1, 9),
     "Scotland Wed 31 Dec 2025: 1 and 2 Jan off; 5, 6, 7, 8, Fri 9 Jan"),
    (STAFFORD, "enquiry", 1, utc(2025, 12, 31, 15), D(2026, 1, 2), D(2026, 1, 8),
     "England Wed 31 Dec 2025: 2, 5, 6, 7, Thu 8 Jan"),
    (SCOTTISH, "enquiry", 1, utc(2025, 11, 28, 10), D(2025, 12, 2), D(2025, 12, 8),
     "St Andrew's Day (Sun 30 Nov 2025) kept Mon 1 Dec: 2, 3, 4, 5, Mon 8 Dec"),
    (SCOTTISH, "enquiry", 1, utc(2026, 6, 12, 10), D(2026, 6, 16), D(2026, 6, 22),
     "one-off Scottish holiday Mon 15 Jun 2026: 16, 17, 18, 19, Mon 22 Jun"),
    (NORTHERN_IRISH, "enquiry", 1, utc(2026, 3, 16, 10), D(2026, 3, 18), D(2026, 3, 24),
     "NI: St Patrick's Day Tue 17 Mar 2026: 18, 19, 20, 23, Tue 24 Mar"),
    (NORTHERN_IRISH, "enquiry", 1, utc(2027, 7, 9, 10), D(2027, 7, 13), D(2027, 7, 19),
     "NI: Battle of the Boyne Mon 12 Jul 2027: 13, 14, 15, 16, Mon 19 Jul"),
    (STAFFORD, "enquiry", 1, utc(2027, 12, 23, 12), D(2027, 12, 24), D(2028, 1, 4),
     "Thu 23 Dec 2027: Fri 24, (25-28 off: weekend, Mon 27 and Tue 28 kept), 29, 30, 31, "
     "(1 Jan 2028 Sat kept Mon 3) Tue 4 Jan 2028"),
    (STAMFORD, "enquiry", 1, utc(2025, 12, 1, 10), D(2025, 12, 2), D(2025, 12, 31),
     "20 wd from Mon 1 Dec 2025: 2-5 (4), 8-12 (9), 15-19 (14), 22-24 (17), 29-31 (20)"),
    (STAMFORD, "enquiry", 1, utc(2026, 3, 16, 10), D(2026, 3, 17), D(2026, 4, 15),
     "20 wd England from Mon 16 Mar 2026: 17-20 (4), 23-27 (9), 30 Mar-2 Apr (13), "
     "(GF, EM) 7-10 (17), 13, 14, 15 (20)"),
    (STOTFOLD, "enquiry", 1, utc(2025, 12, 24, 16), D(2025, 12, 29), D(2026, 1, 5),
     "Stotfold 5 wd from Wed 24 Dec 2025: 29, 30, 31, (1 Jan) 2, Mon 5 Jan"),
    (SHAFTESBURY, "enquiry", 1, utc(2026, 5, 22, 11), D(2026, 5, 26), D(2026, 6, 8),
     "Shaftesbury 10 wd from Fri 22 May 2026 (Spring BH Mon 25): 26-29 (4), 1-5 Jun (9), "
     "Mon 8 Jun (10)"),
    (DRAFT, "enquiry", 1, utc(2026, 8, 28, 16, 45), D(2026, 9, 1), D(2026, 9, 14),
     "Fri 28 Aug 2026 17:45 BST, Mon 31 Aug BH: 1-4 Sep (4), 7-11 (9), Mon 14 Sep"),
    (STAFFORD, "complaint", 2, utc(2026, 2, 2, 9), D(2026, 2, 3), D(2026, 3, 2),
     "Stafford stage 2, 20 wd from Mon 2 Feb 2026: 3-6 (4), 9-13, 16-20, 23-27 (19), Mon 2 Mar"),
    (STAFFORD, "complaint", 3, utc(2026, 3, 2, 9), D(2026, 3, 3), D(2026, 3, 23),
     "Stafford stage 3, 15 wd from Mon 2 Mar 2026: 3-6 (4), 9-13 (9), 16-20 (14), Mon 23"),
    (DRAFT, "complaint", 1, utc(2026, 12, 24, 10), D(2026, 12, 29), D(2027, 1, 12),
     "10 wd from Thu 24 Dec 2026: (25, 28 BH) 29, 30, 31, (1 Jan) 4-8 (8), 11, Tue 12 Jan"),
    (STAFFORD, "foi", 1, utc(2026, 3, 16, 10), D(2026, 3, 18), D(2026, 4, 16),
     "FOI, UK calendar: as Stamford's 20 wd above, but St Patrick's Day (NI) is off too, "
     "so Thu 16 Apr, a day later than England's Wed 15 Apr"),
    (STAFFORD, "foi", 1, utc(2025, 12, 19, 14), D(2025, 12, 22), D(2026, 1, 22),
     "FOI from Fri 19 Dec 2025: 22-24 (3), 29-31 (6), (1 Jan; 2 Jan Scotland) 5-9 (11), "
     "12-16 (16), 19-22 (20): Thu 22 Jan (England alone: Wed 21)"),
    (STAFFORD, "foi", 1, utc(2026, 7, 10, 10), D(2026, 7, 14), D(2026, 8, 11),
     "FOI from Fri 10 Jul 2026: Boyne Mon 13 Jul (NI) off; 14-17 (4), 20-24, 27-31 (14), "
     "(Scottish Mon 3 Aug off) 4-7 (18), 10, Tue 11 Aug"),
    (STAFFORD, "foi", 1, utc(2026, 6, 12, 10), D(2026, 6, 16), D(2026, 7, 14),
     "FOI from Fri 12 Jun 2026: Scotland's one-off Mon 15 Jun and NI's Mon 13 Jul are both "
     "off: 16-19 (4), 22-26, 29-3 Jul, 6-10 (19), Tue 14 Jul (20)"),
    (STAFFORD, "foi", 1, utc(2026, 4, 19, 10), D(2026, 4, 20), D(2026, 5, 18),
     "FOI arriving Sun 19 Apr 2026: 20-24 (5), 27-1 May (10), (4 May BH) 5-8 (14), "
     "11-15 (19), Mon 18 May"),
    (SCOTTISH, "foi", 1, utc(2026, 3, 16, 10), D(2026, 3, 17), D(2026, 4, 14),
     "FOISA: Scottish days only: 17-20 (4), 23-27 (9), 30-2 Apr (13), (GF) 6-10 (18), "
     "13, Tue 14 Apr"),
    (STAFFORD, "foi", 1, utc(2026, 11, 27, 10), D(2026, 12, 1), D(2026, 12, 30),
     "FOI from Fri 27 Nov 2026: St Andrew's Mon 30 Nov off; 1-4 (4), 7-11, 14-18 (14), "
     "21-24 (18), (25, 28 BH) 29, Wed 30 Dec"),
    (CLOSED_XMAS, "foi", 1, utc(2026, 11, 27, 10), D(2026, 12, 1), D(2026, 12, 24),
     "... and when the office is closed 29-31 Dec the statutory Wed 30 Dec is brought "
     "forward to the last open day, Thu 24 Dec"),
    (STAFFORD, "eir", 1, utc(2026, 3, 16, 10), D(2026, 3, 18), D(2026, 4, 16),
     "EIR uses the FOI calendar (reg 2(1)): as the FOI row, Thu 16 Apr 2026"),
    (STAFFORD, "sar", 1, utc(2026, 1, 31, 10), D(2026, 1, 31), D(2026, 3, 2),
     "SAR Sat 31 Jan 2026: no 31 Feb, so Sat 28 Feb, next working day Mon 2 Mar"),
    (STAFFORD, "sar", 1, utc(2025, 1, 31, 10), D(2025, 1, 31), D(2025, 2, 28),
     "SAR Fri 31 Jan 2025: Fri 28 Feb 2025 is a working day"),
    (STAFFORD, "sar", 1, utc(2027, 1, 31, 10), D(2027, 1, 31), D(2027, 3, 1),
     "SAR Sun 31 Jan 2027: Sun 28 Feb, next working day Mon 1 Mar"),
    (STAFFORD, "sar", 1, utc(2026, 3, 31, 10), D(2026, 3, 31), D(2026, 4, 30),
     "SAR Tue 31 Mar 2026: no 31 Apr, so Thu 30 Apr"),
    (STAFFORD, "sar", 1, utc(2025, 11, 26, 10), D(2025, 11, 26), D(2025, 12, 29),
     "SAR Wed 26 Nov 2025: Fri 26 Dec is Boxing Day, weekend, Mon 29 Dec"),
    (CLOSED_XMAS, "sar", 1, utc(2025, 11, 26, 10), D(2025, 11, 26), D(2025, 12, 24),
     "... but the office is closed 29-31 Dec, so the answer is due Wed 24 Dec"),
    (STAFFORD, "sar", 1, utc(2026, 4, 30, 23, 30), D(2026, 5, 1), D(2026, 6, 1),
     "SAR 2026-04-30T23:30Z is Fri 1 May 00:30 BST: same date next month, Mon 1 Jun"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("policy", "category", "stage", "received", "day_one", "respond_by", "why"), RESPOND_CASES
)
def test_respond_by_by_hand(
    policy: Policy,
    category: str,
    stage: int,
    received: datetime,
    day_one: date,
    respond_by: date,
    why: str,
) -> None:
    got = compute(policy, category, received, stage=stage)
    assert (got.day_one, got.respond_by) == (day_one, respond_by), why


def test_acknowledgement_holding_and_reminders_stafford_christmas() -> None:
    # Fri 19 Dec 2025, enquiry, 5 wd: due Tue 30 Dec (see the table above).
    got = compute(STAFFORD, "enquiry", utc(2025, 12, 19, 14))
    assert got.acknowledge_by == D(2025, 12, 30)  # also 5 working days
    assert got.holding_by == D(2025, 12, 29)  # 1 working day before: Mon 29 Dec
    # 3 before: Mon 29 (1), Wed 24 (2), Tue 23 (3); 1 before: Mon 29; on the day: Tue 30.
    assert got.reminders == (D(2025, 12, 23), D(2025, 12, 29), D(2025, 12, 30))
    assert got.calendar == "england"


def test_stamford_holding_reply_comes_before_day_twenty() -> None:
    # Standards 4.5. Mon 1 Dec 2025: due Wed 31 Dec; acknowledge 5 wd: 2, 3, 4, 5, Mon 8.
    got = compute(STAMFORD, "enquiry", utc(2025, 12, 1, 10))
    assert got.acknowledge_by == D(2025, 12, 8)
    assert got.holding_by == D(2025, 12, 30)


def test_short_acknowledgements() -> None:
    # Stotfold 3 wd from Wed 24 Dec 2025: 29, 30, Wed 31 Dec.
    assert compute(STOTFOLD, "enquiry", utc(2025, 12, 24, 16)).acknowledge_by == D(2025, 12, 31)
    # Draft: e-mails acknowledged in 1 working day; Fri 28 Aug 2026, BH Mon 31 -> Tue 1 Sep.
    assert compute(DRAFT, "enquiry", utc(2026, 8, 28, 16, 45)).acknowledge_by == D(2026, 9, 1)
    # Shaftesbury 3 wd from Fri 22 May 2026 (BH Mon 25): 26, 27, Thu 28 May.
    assert compute(SHAFTESBURY, "enquiry", utc(2026, 5, 22, 11)).acknowledge_by == D(2026, 5, 28)


def test_sar_acknowledgement_in_working_days_from_arrival() -> None:
    # Sat 31 Jan 2026, acknowledge 5 wd: 2, 3, 4, 5, Fri 6 Feb.
    got = compute(STAFFORD, "sar", utc(2026, 1, 31, 10))
    assert got.acknowledge_by == D(2026, 2, 6)
    assert got.calendar == "england"


def test_reminders_never_before_day_one() -> None:
    # A one-day promise: the 3-days-before reminder and the holding reply would fall
    # before day one, so they are moved to day one (Tue 6 Jan 2026).
    policy = variant(
        "stotfold",
        (
            'acknowledge = "3 working days"\n# Policy 3: "provide',
            'acknowledge = "1 working day"\n# Policy 3: "provide',
        ),
        ('respond = "5 working days"\n# No extension: the Policy sets none (section 4',
         'respond = "1 working day"\n# No extension: the Policy sets none (section 4'),
    )  # fmt: skip
    got = compute(policy, "enquiry", utc(2026, 1, 5, 10))
    assert got.respond_by == D(2026, 1, 6)
    assert got.holding_by == D(2026, 1, 6)
    assert got.reminders == (D(2026, 1, 6),)


def test_as_json_shape() -> None:
    got = compute(STAFFORD, "foi", utc(2026, 11, 20, 16, 45))
    assert got.as_json() == {
        "category": "foi",
        "received_at": "2026-11-20T16:45:00+00:00",
        # Fri 20 Nov 2026: Mon 23 is day one; St Andrew's Day Mon 30 Nov is off for FOI.
        # 23-27 (5), 1-4 Dec (9), 7-11 (14), 14-18 (19), Mon 21 Dec (20).
        "day_one": "2026-11-23",
        "acknowledge_by": "2026-11-27",
        "respond_by": "2026-12-21",
        "holding_by": "2026-12-18",
        "calendar": "uk-all-nations (FOIA s.10(6))",
        # Added to the SPEC's keys: the stage, and the public-interest extension. Its
        # notice goes by the 20th day; 20 more FOI working days from Mon 21 Dec: 22-24
        # (3), (25, 28 Dec) 29-31 (6), (1 Jan; Mon 4 Jan, Scotland's 2 Jan) 5-8 (10),
        # 11-15 (15), 18-22 (20): Fri 22 Jan 2027.
        "stage": 1,
        "extension_notice_by": "2026-12-21",
        "latest_respond_by": "2027-01-22",
    }
    # No holding reply for compliments: null in JSON.
    assert compute(STAFFORD, "compliment", utc(2026, 11, 20, 16)).as_json()["holding_by"] is None


# --- extensions ------------------------------------------------------------------------


def test_complaint_extension_adds_up_to_the_ceiling() -> None:
    # Stafford stage 1: 10 wd from Mon 2 Feb 2026 = Mon 16 Feb (3-6, 9-13, 16).
    base = compute(STAFFORD, "complaint", utc(2026, 2, 2, 9))
    assert base.respond_by == D(2026, 2, 16)
    # +10 working days: 17-20 (4), 23-27 (9), Mon 2 Mar (10).
    longer = extend(base, STAFFORD, Duration.parse("10 working days"))
    assert longer.respond_by == D(2026, 3, 2)
    assert longer.holding_by == D(2026, 2, 27)
    with pytest.raises(ExtensionRefused, match="at most 10 working days"):
        extend(longer, STAFFORD, Duration.parse("1 working day"))
    # Two steps of 5 reach the same date as one of 10.
    twice = extend(extend(base, STAFFORD, Duration.parse("5 working days")), STAFFORD,
                   Duration.parse("5 working days"))  # fmt: skip
    assert twice.respond_by == D(2026, 3, 2)


def test_draft_complex_complaint_twenty_days() -> None:
    # Draft: 10 wd, "complex" 20: from Thu 24 Dec 2026, Tue 12 Jan 2027 + 10 wd:
    # 13-15 (3), 18-22 (8), 25, Tue 26 Jan 2027.
    base = compute(DRAFT, "complaint", utc(2026, 12, 24, 10))
    assert extend(base, DRAFT, Duration.parse("10 working days")).respond_by == D(2027, 1, 26)


def test_foi_public_interest_extension() -> None:
    # Thu 16 Apr 2026 (see table) + 20 UK working days: 17 (1), 20-24 (6), 27-1 May (11),
    # (Mon 4 May BH) 5-8 (15), 11-15 (20): Fri 15 May 2026.
    base = compute(STAFFORD, "foi", utc(2026, 3, 16, 10))
    assert extend(base, STAFFORD, Duration.parse("20 working days")).respond_by == D(2026, 5, 15)


def test_sar_extension_two_months_from_arrival() -> None:
    # Sat 31 Jan 2026 + 3 months = Thu 30 Apr 2026 (no 31 April).
    base = compute(STAFFORD, "sar", utc(2026, 1, 31, 10))
    assert extend(base, STAFFORD, Duration.parse("2 calendar months")).respond_by == D(2026, 4, 30)
    with pytest.raises(ExtensionRefused, match="calendar months"):
        extend(base, STAFFORD, Duration.parse("10 working days"))


def test_no_extension_where_the_standard_sets_none() -> None:
    base = compute(STAFFORD, "complaint", utc(2026, 2, 2, 9), stage=2)
    with pytest.raises(ExtensionRefused, match="no extension"):
        extend(base, STAFFORD, Duration.parse("5 working days"))
    with pytest.raises(ExtensionRefused, match="no extension"):
        extend(
            compute(SCOTTISH, "foi", utc(2026, 3, 16)), SCOTTISH, Duration.parse("5 working days")
        )


# --- input errors ------------------------------------------------------------------------


def test_naive_arrival_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        compute(STAFFORD, "enquiry", datetime(2026, 1, 5, 10))


def test_unknown_category_or_stage() -> None:
    with pytest.raises(KeyError):
        compute(STAFFORD, "parking", utc(2026, 1, 5, 10))
    with pytest.raises(KeyError):
        compute(STAFFORD, "complaint", utc(2026, 1, 5, 10), stage=4)


def test_add_months_keeps_month_ends() -> None:
    assert add_months(D(2026, 1, 31), 1) == D(2026, 2, 28)
    assert add_months(D(2028, 1, 31), 1) == D(2028, 2, 29)  # leap year
    assert add_months(D(2026, 11, 30), 3) == D(2027, 2, 28)
    assert add_months(D(2026, 12, 15), 1) == D(2027, 1, 15)


# --- properties --------------------------------------------------------------------------

POLICIES = [load_policy(name) for name in list_policies()] + [CLOSED_XMAS, SCOTTISH, NORTHERN_IRISH]
CATEGORY_STAGES = [("enquiry", 1), ("complaint", 1), ("foi", 1), ("eir", 1), ("sar", 1),
                   ("compliment", 1), ("foi", 2), ("eir", 2)]  # fmt: skip
instants = st.datetimes(
    min_value=datetime(2025, 1, 1),
    max_value=datetime(2027, 12, 31, 23, 59, 59),
    timezones=st.just(UTC),
)


def _arrival(policy: Policy, instant: datetime) -> date:
    from zoneinfo import ZoneInfo

    return instant.astimezone(ZoneInfo(policy.timezone)).date()


@settings(max_examples=400, deadline=None)
@given(policy=st.sampled_from(POLICIES), cs=st.sampled_from(CATEGORY_STAGES), instant=instants)
def test_dates_are_working_days_and_in_order(
    policy: Policy, cs: tuple[str, int], instant: datetime
) -> None:
    category, stage = cs
    got = compute(policy, category, instant, stage=stage)
    cal = calendar_for(policy, category)
    arrival = _arrival(policy, instant)
    assert cal.is_working_day(got.respond_by)
    if category in ("foi", "eir", "sar"):
        # Brought forward off closure days: the office is open on the date.
        assert council_calendar(policy).is_working_day(got.respond_by)
    assert got.respond_by >= arrival
    assert got.day_one >= arrival
    assert got.acknowledge_by >= arrival
    if got.holding_by is not None:
        assert got.day_one <= got.holding_by <= got.respond_by
    assert list(got.reminders) == sorted(set(got.reminders))
    assert all(r >= got.day_one for r in got.reminders)


@settings(max_examples=300, deadline=None)
@given(
    policy=st.sampled_from(POLICIES),
    cs=st.sampled_from([*CATEGORY_STAGES, ("complaint", 2)]),
    a=instants,
    b=instants,
)
def test_later_arrival_never_gives_an_earlier_date(
    policy: Policy, cs: tuple[str, int], a: datetime, b: datetime
) -> None:
    category, stage = cs
    if stage > policy.final_stage(category):
        stage = 1
    early, late = min(a, b), max(a, b)
    first = compute(policy, category, early, stage=stage)
    second = compute(policy, category, late, stage=stage)
    assert first.respond_by <= second.respond_by
    assert first.acknowledge_by <= second.acknowledge_by
    assert first.day_one <= second.day_one


@settings(max_examples=200, deadline=None)
@given(policy=st.sampled_from(POLICIES), instant=instants)
def test_working_day_limits_count_exactly(policy: Policy, instant: datetime) -> None:
    # For a non-statutory category, day one to the response date is exactly the promise.
    got = compute(policy, "enquiry", instant)
    promise = policy.stage("enquiry").respond
    cal = calendar_for(policy, "enquiry")
    assert cal.working_days_between(_arrival(policy, instant), got.respond_by) == promise.amount
    assert cal.working_days_between(_arrival(policy, instant), got.day_one) == 1


def test_deadlines_are_immutable_values() -> None:
    got = compute(STAFFORD, "enquiry", utc(2026, 1, 5, 10))
    assert isinstance(got, Deadlines)
    with pytest.raises(AttributeError):
        got.respond_by = D(2030, 1, 1)  # type: ignore[misc]
    assert got == compute(STAFFORD, "enquiry", utc(2026, 1, 5, 10))


@settings(max_examples=300, deadline=None)
@given(
    policy=st.sampled_from(POLICIES),
    category=st.sampled_from(["enquiry", "complaint", "foi", "eir", "sar", "compliment"]),
    stage_no=st.integers(1, 3),
    today=st.dates(D(2026, 1, 1), D(2029, 12, 31)),
    days_away=st.integers(-40, 80),
    with_holding=st.booleans(),
)
def test_no_case_with_something_due_lies_beyond_the_scheduler_search(
    policy: Policy,
    category: str,
    stage_no: int,
    today: date,
    days_away: int,
    with_holding: bool,
) -> None:
    # The scheduler finds due cases by response date (PostgreSQL): any case with a
    # reminder, holding reply or breach on or before today must fall inside its range.
    stages = policy.categories[category].stages
    stage = stages[min(stage_no, max(stages))]
    respond_by = today + timedelta(days=days_away)
    calendar = calendar_for(policy, category)
    actions = actions_for(stage, calendar, stage.number, respond_by, with_holding)
    if any(action.on <= today for action in actions):
        assert respond_by <= latest_response_date(policy, today)


# --- issue 21: internal reviews, extensions notified in time, clocks stopped by law ------

# (policy, category, review received, respond_by, latest with the extension, why)
REVIEW_CASES = [
    (STAFFORD, "foi", utc(2026, 12, 10, 10), D(2027, 1, 13), D(2027, 2, 10),
     "FOI internal review (s.45 code 5.4) from Thu 10 Dec 2026: 11 (1), 14-18 (6), 21-24 "
     "(10), (25 Dec, Mon 28 for Boxing Day) 29-31 (13), (1 Jan, Mon 4 Jan for Scotland's "
     "2 Jan) 5-8 (17), 11-13 (20): Wed 13 Jan; code 5.5's 20 more: 14-15, 18-22, 25-29, "
     "1-5 Feb, 8-10: Wed 10 Feb"),
    (STAFFORD, "eir", utc(2026, 3, 16, 10), D(2026, 5, 15), None,
     "EIR reg 11(4), 40 working days from Mon 16 Mar 2026: (St Patrick's Day Tue 17, NI) "
     "18-20 (3), 23-27 (8), 30 Mar-2 Apr (12), (Good Friday, Easter Monday) 7-10 (16), "
     "13-17 (21), 20-24 (26), 27 Apr-1 May (31), (4 May BH) 5-8 (35), 11-15 (40); no "
     "extension"),
    (SCOTTISH, "foi", utc(2026, 12, 10, 10), D(2027, 1, 13), None,
     "FOISA s.21(1), Scottish days: as the FOI review above (Scotland's 28 Dec and 4 Jan "
     "are off) and no extension"),
    (SCOTTISH, "eir", utc(2026, 11, 27, 10), D(2026, 12, 30), None,
     "EISR reg 16(4), 20 working days from Fri 27 Nov 2026: (St Andrew's Day Mon 30 Nov) "
     "1-4 Dec (4), 7-11 (9), 14-18 (14), 21-24 (18), (25 Dec, Mon 28 for Boxing Day) "
     "29 (19), Wed 30 Dec (20)"),
]  # fmt: skip


@pytest.mark.parametrize(("policy", "category", "at", "respond_by", "latest", "why"), REVIEW_CASES)
def test_review_stage_dates(
    policy: Policy, category: str, at: datetime, respond_by: date, latest: date | None, why: str
) -> None:
    got = compute(policy, category, at, stage=2)
    assert got.respond_by == respond_by, why
    assert got.latest_respond_by == latest, why
    assert got.stage == 2


def test_foi_extension_notified_in_time_and_out_of_time() -> None:
    # FOIA s.17(2): the public-interest extension is notified within the 20 days, which
    # end on Mon 21 Dec 2026 for a request of Fri 20 Nov (test_as_json_shape).
    base = compute(STAFFORD, "foi", utc(2026, 11, 20, 16, 45))
    assert base.extension_notice_by == D(2026, 12, 21)
    twenty = Duration.parse("20 working days")
    assert extend(base, STAFFORD, twenty, notified_on=D(2026, 12, 21)).respond_by == D(2027, 1, 22)
    with pytest.raises(ExtensionRefused, match=r"too late: .* by 2026-12-21 .*FOIA 2000 s\.17"):
        extend(base, STAFFORD, twenty, notified_on=D(2026, 12, 22))
    # Over the limit, even in time.
    with pytest.raises(ExtensionRefused, match="at most 20 working days"):
        extend(base, STAFFORD, Duration.parse("21 working days"), notified_on=D(2026, 12, 1))
    # A second extension by the date the first one set.
    ten = extend(base, STAFFORD, Duration.parse("10 working days"), notified_on=D(2026, 12, 1))
    assert ten.respond_by == D(2027, 1, 8)  # 22-24, 29-31, 5-8 (Scotland's 4 Jan off)
    assert ten.extension_notice_by == D(2027, 1, 8)
    again = extend(ten, STAFFORD, Duration.parse("10 working days"), notified_on=D(2027, 1, 8))
    assert again.respond_by == D(2027, 1, 22)


def test_eir_complex_and_voluminous_extension_to_forty_days() -> None:
    # EIR reg 7(1) and (3): to 40 working days, the requester told within the first 20.
    base = compute(STAFFORD, "eir", utc(2026, 11, 20, 16, 45))
    forty = extend(base, STAFFORD, Duration.parse("20 working days"), notified_on=D(2026, 12, 21))
    assert (base.respond_by, forty.respond_by) == (D(2026, 12, 21), D(2027, 1, 22))
    with pytest.raises(ExtensionRefused, match=r"EIR 2004 reg 7"):
        extend(base, STAFFORD, Duration.parse("1 working day"), notified_on=D(2026, 12, 22))


def test_sar_extension_notified_within_the_first_month_at_a_month_end() -> None:
    # Sat 31 Jan 2026: the month ends on 28 Feb, a Saturday: due Mon 2 Mar. Two further
    # months run from arrival: Thu 30 Apr. The notice goes by Mon 2 Mar (art. 12A).
    base = compute(STAFFORD, "sar", utc(2026, 1, 31, 11))
    assert (base.respond_by, base.extension_notice_by) == (D(2026, 3, 2), D(2026, 3, 2))
    months = Duration.parse("2 calendar months")
    one = extend(base, STAFFORD, Duration.parse("1 calendar month"), notified_on=D(2026, 2, 20))
    assert one.respond_by == D(2026, 3, 31)
    # A second month later, still notified within the first month: allowed; after it, not.
    assert one.extension_notice_by == D(2026, 3, 2)
    assert extend(one, STAFFORD, Duration.parse("1 calendar month"), notified_on=D(2026, 3, 2)
                  ).respond_by == D(2026, 4, 30)  # fmt: skip
    with pytest.raises(ExtensionRefused, match=r"UK GDPR art\. 12A"):
        extend(base, STAFFORD, months, notified_on=D(2026, 3, 3))


def test_northern_irish_sar_lands_after_the_boyne() -> None:
    # Fri 12 Jun 2026: 12 Jul is a Sunday; Northern Ireland keeps the Battle of the Boyne
    # on Mon 13 Jul, so the response is due Tue 14 Jul (England: Mon 13 Jul).
    assert compute(NORTHERN_IRISH, "sar", utc(2026, 6, 12, 10)).respond_by == D(2026, 7, 14)
    assert compute(STAFFORD, "sar", utc(2026, 6, 12, 10)).respond_by == D(2026, 7, 13)


def test_sar_clarification_pauses_the_month() -> None:
    # Art. 12A(3): asked Tue 10 Feb 2026, answered Fri 13 Feb: 10-13 Feb (4 days) do not
    # count. 28 Feb + 4 days: Wed 4 Mar. The extension notice moves with it.
    start = utc(2026, 1, 31, 11)
    restart = resume(
        STAFFORD,
        "sar",
        ClockStop.CLARIFICATION,
        started_at=start,
        paused=0,
        stopped_at=utc(2026, 2, 10, 10),
        resumed_at=utc(2026, 2, 13, 10),
    )
    assert (restart.started_at, restart.paused, restart.keeps_extension) == (start, 4, True)
    got = compute(STAFFORD, "sar", restart.started_at, paused=restart.paused)
    assert (got.respond_by, got.extension_notice_by) == (D(2026, 3, 4), D(2026, 3, 4))
    # With the two further months: 30 Apr + 4 days is Mon 4 May, the Early May bank
    # holiday, so Tue 5 May.
    assert got.latest_respond_by == D(2026, 5, 5)


def test_sar_identity_check_starts_the_month_again() -> None:
    # Art. 12A(2)(b): the month begins when the proof of identity arrives, Tue 31 Mar 2026:
    # 30 Apr (April has no 31st).
    restart = resume(
        STAFFORD,
        "sar",
        ClockStop.IDENTITY,
        started_at=utc(2026, 3, 2, 10),
        paused=0,
        stopped_at=utc(2026, 3, 3, 10),
        resumed_at=utc(2026, 3, 31, 15),
    )
    assert (restart.started_at, restart.paused, restart.keeps_extension) == (
        utc(2026, 3, 31, 15), 0, False)  # fmt: skip
    assert compute(STAFFORD, "sar", restart.started_at).respond_by == D(2026, 4, 30)


def test_foi_fees_notice_disregards_the_working_days_until_payment() -> None:
    # Mon 2 Nov 2026: due Tue 1 Dec (St Andrew's Day Mon 30 Nov is off for FOI). Fees
    # notice Mon 9 Nov, paid Wed 18 Nov: 9-13, 16-18 Nov, 8 working days disregarded
    # (FOIA s.10(2)): 2-4 Dec, 7-11 Dec: Fri 11 Dec.
    start = utc(2026, 11, 2, 10)
    assert compute(STAFFORD, "foi", start).respond_by == D(2026, 12, 1)
    restart = resume(
        STAFFORD,
        "foi",
        ClockStop.FEES,
        started_at=start,
        paused=0,
        stopped_at=utc(2026, 11, 9, 10),
        resumed_at=utc(2026, 11, 18, 15),
    )
    assert (restart.paused, restart.keeps_extension) == (8, True)
    assert compute(STAFFORD, "foi", start, paused=8).respond_by == D(2026, 12, 11)
    # Unpaid, it lapses at the end of three months beginning with the notice (s.9(2)).
    assert fees_lapse_on(STAFFORD, utc(2026, 11, 9, 10)) == D(2027, 2, 9)
    assert fees_lapse_on(STAFFORD, utc(2026, 11, 30, 23, 30)) == D(2027, 2, 28)


def test_foi_clarification_starts_from_day_one_at_christmas() -> None:
    # FOIA s.1(3): the answer of Wed 23 Dec 2026 starts the 20 days again: 24 (1), (25,
    # 28) 29-31 (4), (1, 4 Jan) 5-8 (8), 11-15 (13), 18-22 (18), 25, 26 (20): Tue 26 Jan.
    restart = resume(
        STAFFORD,
        "foi",
        ClockStop.CLARIFICATION,
        started_at=utc(2026, 12, 1, 10),
        paused=3,
        stopped_at=utc(2026, 12, 2, 10),
        resumed_at=utc(2026, 12, 23, 12),
    )
    assert (restart.paused, restart.keeps_extension) == (0, False)
    assert compute(STAFFORD, "foi", restart.started_at).respond_by == D(2027, 1, 26)


@settings(max_examples=300, deadline=None)
@given(
    policy=st.sampled_from(POLICIES),
    cs=st.sampled_from([("foi", 1), ("eir", 1), ("sar", 1), ("foi", 2), ("complaint", 1)]),
    instant=instants,
    paused=st.integers(0, 60),
)
def test_pauses_and_extensions_only_ever_move_dates_later(
    policy: Policy, cs: tuple[str, int], instant: datetime, paused: int
) -> None:
    category, stage = cs
    if stage > policy.final_stage(category):
        return
    plain = compute(policy, category, instant, stage=stage)
    held = compute(policy, category, instant, stage=stage, paused=paused)
    assert held.respond_by >= plain.respond_by
    if held.extension_notice_by is not None:
        assert held.extension_notice_by == held.respond_by
        assert held.latest_respond_by is not None
        assert held.respond_by <= held.latest_respond_by
    if category != "sar":
        # A pause of N working days moves the date by exactly N working days (before any
        # closure-day adjustment, which statutory categories do not have here).
        cal = calendar_for(policy, category)
        if category not in ("foi", "eir") or not policy.closure_days:
            assert cal.working_days_between(plain.respond_by, held.respond_by) == paused
