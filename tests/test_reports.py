"""Reports: every figure checked against a hand-built set of cases with answers worked by hand.

The period is April 2026 under the Stafford policy (England). All of April is British Summer
Time (UTC+1). The working days that matter, England (and, for FOI, every UK nation, which in
April and May 2026 gives the same days off):

    Good Friday 3 April and Easter Monday 6 April, Early May bank holiday Monday 4 May.

    working days: Wed 1 Apr, Thu 2, Tue 7, Wed 8, Thu 9, Fri 10, Mon 13 ... Fri 17,
    Mon 20 ... Fri 24, Mon 27 ... Thu 30, Fri 1 May, Tue 5 May ... Fri 8, Mon 11 ... Fri 15

The report is run on Friday 15 May 2026 at 13:00 BST ("today" is 15 May).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from mailbot.deadlines import compute
from mailbot.migrations import upgrade
from mailbot.policy import load_policy
from mailbot.reports import (
    NO_CASES,
    CategoryFigures,
    Report,
    breaches_to_csv,
    build_report,
    nearest_rank,
    percent,
    report_figures,
    to_csv,
    to_html,
    to_json,
)
from mailbot.store import Base, Case, CaseEvent, OutboxMessage, make_engine

POLICY = load_policy("stafford")
COUNCIL = "Stafford Borough Council"
PERIOD = (date(2026, 4, 1), date(2026, 4, 30))
NOW = datetime(2026, 5, 15, 12, 0, tzinfo=UTC)  # Friday 15 May, 13:00 BST


def bst(month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    """A British Summer Time clock reading in 2026, as the aware UTC instant the store keeps."""
    return datetime(2026, month, day, hour, minute, tzinfo=UTC) - timedelta(hours=1)


@dataclass
class Hand:
    """One hand-built case: the row, its events and the holding replies sent."""

    id: int
    ref: str
    category: str
    received: datetime
    acknowledge_by: date
    respond_by: date
    acknowledged: datetime | None = None
    responded: datetime | None = None
    breached: datetime | None = None
    status: str = "open"
    stage: int = 1
    outcome: str | None = None
    closed: datetime | None = None
    clock_stopped: bool = False
    officer: str = "Sam Patel"
    subject: str = "A question"
    events: list[tuple[Any, ...]] = field(default_factory=list)
    holding: list[datetime] = field(default_factory=list)
    # (stage, stage start) the dates above are for, to check them against the policy
    dates_for: tuple[int, datetime] | None = None

    def case(self) -> Case:
        return Case(
            id=self.id,
            ref=self.ref,
            category=self.category,
            stage=self.stage,
            status=self.status,
            priority="normal",
            policy="stafford",
            resident_email=f"resident{self.id}@example.com",
            resident_name="A Resident",
            subject=self.subject,
            officer_email="officer@council.example.gov.uk",
            officer_name=self.officer,
            role="customer-services",
            received_at=self.received,
            acknowledged_at=self.acknowledged,
            acknowledge_by=self.acknowledge_by,
            respond_by=self.respond_by,
            responded_at=self.responded,
            closed_at=self.closed,
            breached_at=self.breached,
            clock_stopped=self.clock_stopped,
            outcome=self.outcome,
            reasons=[],
        )

    def case_events(self) -> list[CaseEvent]:
        received = [(self.received, "received", f"from resident{self.id}@example.com")]
        return [
            # (at, kind, detail), or with the data mailbot now writes beside the detail
            CaseEvent(case_id=self.id, at=at, kind=kind, detail=detail, data=(*more, None)[0])
            for at, kind, detail, *more in received + self.events
        ]

    def outbox(self) -> list[OutboxMessage]:
        rows = [("holding", "sent", at) for at in self.holding]
        # Noise that must not count as holding replies: the acknowledgement, a reminder to
        # the officer, and a holding reply that never went.
        rows.append(("acknowledgement", "sent", self.received))
        rows.append(("reminder", "sent", self.received + timedelta(days=1)))
        rows.append(("holding", "failed", self.received + timedelta(days=2)))
        return [
            OutboxMessage(
                key=f"{kind}:{self.id}:{i}",
                message_id=f"<{kind}.{self.id}.{i}@council.example.gov.uk>",
                case_id=self.id,
                kind=kind,
                recipient=f"resident{self.id}@example.com",
                raw=b"",
                status=status,
                attempts=1,
                next_attempt_at=at,
                created_at=at,
                sent_at=at if status == "sent" else None,
            )
            for i, (kind, status, at) in enumerate(rows)
        ]


def hand_cases() -> list[Hand]:
    ack = "acknowledged"
    return [
        # --- enquiries: acknowledge and respond in 5 working days ---------------------------
        # E1: Wed 1 Apr. 5 working days after 1 Apr: 2, 7, 8, 9, 10 (Easter skipped) -> 10 Apr.
        # Answered Thu 9 Apr: on time; working days 1 Apr -> 9 Apr: 2, 7, 8, 9 = 4.
        Hand(1, "ENQ-2026-00001", "enquiry", bst(4, 1), date(2026, 4, 10), date(2026, 4, 10),
             acknowledged=bst(4, 1, 10, 1), responded=bst(4, 9, 14), status="responded"),
        # E2: Thu 2 Apr 16:00 -> 7, 8, 9, 10, 13 -> 13 Apr. Answered Tue 14 Apr: late by 1
        # working day (14). Working days to answer: 7, 8, 9, 10, 13, 14 = 6. Breach recorded.
        Hand(2, "ENQ-2026-00002", "enquiry", bst(4, 2, 16), date(2026, 4, 13), date(2026, 4, 13),
             acknowledged=bst(4, 2, 16, 1), responded=bst(4, 14, 10), breached=bst(4, 14, 9),
             status="responded"),
        # E3: Saturday 4 Apr (Easter weekend) -> 7, 8, 9, 10, 13 -> 13 Apr. NEVER acknowledged
        # (its acknowledge-by date has passed: counts as not on time). Answered Mon 13 Apr
        # 16:30: on time, 5 working days.
        Hand(3, "ENQ-2026-00003", "enquiry", bst(4, 4, 11), date(2026, 4, 13), date(2026, 4, 13),
             responded=bst(4, 13, 16, 30), status="responded"),
        # E4: 23:30 UTC on Tue 31 Mar is 00:30 BST on Wed 1 Apr: INSIDE the period.
        # Dates as E1 (10 Apr). Answered Wed 8 Apr: 2, 7, 8 = 3 working days.
        Hand(4, "ENQ-2026-00004", "enquiry", datetime(2026, 3, 31, 23, 30, tzinfo=UTC),
             date(2026, 4, 10), date(2026, 4, 10), acknowledged=bst(4, 1, 0, 31),
             responded=bst(4, 8, 11), status="responded"),
        # E5: 23:30 UTC on Thu 30 Apr is 00:30 BST on Fri 1 May: OUTSIDE the period.
        # 5 working days after 1 May: 5, 6, 7, 8, 11 -> 11 May; breached, never counted.
        Hand(5, "ENQ-2026-00005", "enquiry", datetime(2026, 4, 30, 23, 30, tzinfo=UTC),
             date(2026, 5, 11), date(2026, 5, 11), breached=bst(5, 12, 9)),
        # E6: 22:30 UTC on Tue 31 Mar is 23:30 BST on 31 Mar: OUTSIDE the period.
        # 5 working days after 31 Mar: 1, 2, 7, 8, 9 -> 9 Apr.
        Hand(6, "ENQ-2026-00006", "enquiry", datetime(2026, 3, 31, 22, 30, tzinfo=UTC),
             date(2026, 4, 9), date(2026, 4, 9),
             acknowledged=datetime(2026, 3, 31, 22, 31, tzinfo=UTC), responded=bst(4, 20),
             status="responded"),
        # E7: Wed 29 Apr -> 30, 1 May, 5 (Early May bank holiday skipped), 6, 7 -> 7 May.
        # Still OPEN and unanswered on 15 May: breached; late so far 8, 11, 12, 13, 14, 15 = 6.
        # Holding reply sent 6 May (1 working day before). Not in the response times.
        Hand(7, "ENQ-2026-00007", "enquiry", bst(4, 29), date(2026, 5, 7), date(2026, 5, 7),
             acknowledged=bst(4, 29, 10, 1), breached=bst(5, 8, 9), holding=[bst(5, 6, 9)]),
        # --- complaints: stage 1 acknowledge in 5, respond in 10 working days -----------------
        # C1: Thu 2 Apr -> 7, 8, 9, 10, 13, 14, 15, 16, 17, 20: acknowledge by the 5th
        # (13 Apr), respond by the 10th (20 Apr). Answered Fri 17 Apr: on time, 9
        # working days. Not upheld.
        Hand(11, "COM-2026-00001", "complaint", bst(4, 2, 9, 30), date(2026, 4, 13),
             date(2026, 4, 20), acknowledged=bst(4, 2, 9, 31), responded=bst(4, 17, 12),
             status="closed", closed=bst(4, 17, 12, 5), outcome="not-upheld"),
        # C2: Tue 7 Apr -> ack by 14 Apr; respond by 8, 9, 10, 13, 14, 15, 16, 17, 20, 21
        # -> 21 Apr. Stage 1 answered Mon 20 Apr (on time, 9 working days), not upheld (an
        # event). On Thu 23 Apr the resident asks for stage 2: acknowledge by 30 Apr
        # (24, 27, 28, 29, 30); respond in 20 working days: 24, 27, 28, 29, 30, 1 May, 5,
        # 6, 7, 8, 11, 12, 13, 14, 15, 18, 19, 20, 21, 22 -> 22 May. Stage 2 acknowledged
        # 23 Apr (an event); still open, not yet due. The row keeps the stage 1
        # acknowledgement, response and outcome: they fall in stage 1, so stage 2 has none.
        Hand(12, "COM-2026-00002", "complaint", bst(4, 7), date(2026, 4, 30), date(2026, 5, 22),
             acknowledged=bst(4, 7, 10, 1), responded=bst(4, 20, 15), stage=2,
             outcome="not-upheld", dates_for=(2, bst(4, 23)),
             events=[(bst(4, 7, 10, 1), ack, "acknowledgement sent"),
                     (bst(4, 20, 15), "responded", "reply from officer"),
                     (bst(4, 20, 15, 5), "note", "outcome not-upheld"),
                     (bst(4, 23), "stage-changed",
                      "stage 1 -> 2; acknowledge by 2026-04-30; respond by 2026-05-22"),
                     (bst(4, 23, 10, 1), ack, "stage 2 acknowledgement sent")]),
        # C3: Wed 8 Apr -> ack by 15 Apr; respond by 9, 10, 13, 14, 15, 16, 17, 20, 21, 22
        # -> 22 Apr. Holding reply 21 Apr. Answered Fri 24 Apr: late by 23, 24 = 2;
        # 12 working days to answer. Breach recorded. Upheld.
        Hand(13, "COM-2026-00003", "complaint", bst(4, 8, 11), date(2026, 4, 15),
             date(2026, 4, 22), acknowledged=bst(4, 8, 11, 1), responded=bst(4, 24),
             breached=bst(4, 23, 9), status="closed", closed=bst(4, 24, 11), outcome="upheld",
             holding=[bst(4, 21, 9)]),
        # C4: Mon 27 Apr -> ack by 28, 29, 30, 1 May, 5 = 5 May; respond by 6, 7, 8, 11, 12
        # -> 12 May. Open and unanswered on 15 May and no breach recorded (the daemon was
        # down): the dates show the promise was missed, late so far 13, 14, 15 = 3.
        # Holding reply 11 May.
        Hand(14, "COM-2026-00004", "complaint", bst(4, 27, 9), date(2026, 5, 5),
             date(2026, 5, 12), acknowledged=bst(4, 27, 9, 1), holding=[bst(5, 11, 9)]),
        # C5: Tue 28 Apr -> ack by 6 May; respond by 13 May. Open, clock STOPPED
        # (clarification asked): not due, not breached, though 13 May has passed.
        Hand(15, "COM-2026-00005", "complaint", bst(4, 28, 14), date(2026, 5, 6),
             date(2026, 5, 13), acknowledged=bst(4, 28, 14, 1), clock_stopped=True),
        # C6: Thu 9 Apr -> ack by 16 Apr; respond by 10, 13, 14, 15, 16, 17, 20, 21, 22, 23
        # -> 23 Apr. Acknowledged the next day (on time), answered ON the due date 23 Apr:
        # on time, 10 working days. Partly upheld.
        Hand(16, "COM-2026-00006", "complaint", bst(4, 9), date(2026, 4, 16), date(2026, 4, 23),
             acknowledged=bst(4, 10, 9), responded=bst(4, 23, 16), status="closed",
             closed=bst(4, 23, 16, 5), outcome="partly-upheld"),
        # C7: received Mon 16 Mar (GMT, BEFORE the period); moved to stage 2 on Tue 14 Apr,
        # so only its stage 2 is in April's figures, and it is not a new case that week.
        # Stage 2: ack by 15, 16, 17, 20, 21 = 21 Apr; respond in 20 working days: 15, 16,
        # 17, 20, 21, 22, 23, 24, 27, 28, 29, 30, 1 May, 5, 6, 7, 8, 11, 12, 13 -> 13 May.
        # Acknowledged 15 Apr, answered 13 May: on time, 20 working days. Upheld (event).
        Hand(17, "COM-2026-00007", "complaint", datetime(2026, 3, 16, 10, tzinfo=UTC),
             date(2026, 4, 21), date(2026, 5, 13),
             acknowledged=datetime(2026, 3, 16, 10, 1, tzinfo=UTC), responded=bst(5, 13, 15),
             stage=2, status="responded", outcome="upheld", dates_for=(2, bst(4, 14)),
             events=[(datetime(2026, 3, 16, 10, 1, tzinfo=UTC), ack, "acknowledgement sent"),
                     (datetime(2026, 3, 27, 10, tzinfo=UTC), "responded", "reply"),
                     (bst(4, 14), "stage-changed", "stage 1 -> 2"),
                     (bst(4, 15, 9), ack, "stage 2 acknowledgement sent"),
                     (bst(5, 13, 15), "responded", "reply"),
                     (bst(5, 13, 15, 1), "note", "outcome upheld")]),
        # --- FOI: 20 working days, every UK nation's bank holidays ---------------------------
        # F1: Wed 1 Apr -> 2, 7, 8, 9, 10, 13-17, 20-24, 27, 28, 29, 30, 1 May -> 1 May.
        # Answered Thu 30 Apr: on time, 19 working days.
        Hand(21, "FOI-2026-00001", "foi", bst(4, 1, 12), date(2026, 4, 10), date(2026, 5, 1),
             acknowledged=bst(4, 1, 12, 1), responded=bst(4, 30), status="responded"),
        # F2: Fri 10 Apr -> ack by 13, 14, 15, 16, 17 = 17 Apr but acknowledged LATE on
        # Mon 20 Apr; respond by 13-17, 20-24, 27-30, 1 May, 5, 6, 7, 8, 11 -> 11 May.
        # Holding reply 8 May. Answered Tue 12 May: late by 1; 21 working days.
        Hand(22, "FOI-2026-00002", "foi", bst(4, 10, 15), date(2026, 4, 17), date(2026, 5, 11),
             acknowledged=bst(4, 20, 9), responded=bst(5, 12, 9, 30), breached=bst(5, 12, 8),
             status="responded", holding=[bst(5, 8, 9)]),
        # F3: Fri 17 Apr -> respond by 20-24, 27-30, 1 May, 5-8, 11-15, 18 -> 18 May.
        # Open, not yet due on 15 May.
        Hand(23, "FOI-2026-00003", "foi", bst(4, 17, 9), date(2026, 4, 24), date(2026, 5, 18),
             acknowledged=bst(4, 17, 9, 1)),
        # --- subject access: one calendar month, the day of arrival is day 1 -----------------
        # S1: Mon 13 Apr -> 13 May (a Wednesday). Answered Thu 7 May: on time; working days
        # 14-17 (4), 20-24 (9), 27-30 (13), 1 May (14), 5, 6, 7 (17) = 17.
        Hand(31, "SAR-2026-00001", "sar", bst(4, 13), date(2026, 4, 20), date(2026, 5, 13),
             acknowledged=bst(4, 13, 10, 1), responded=bst(5, 7, 11), status="responded"),
        # --- compliment ----------------------------------------------------------------------
        # K1: Mon 20 Apr -> 27 Apr. Closed on 21 Apr with no reply, before its date: neither
        # answered nor due, not breached.
        Hand(41, "CMP-2026-00001", "compliment", bst(4, 20, 13), date(2026, 4, 27),
             date(2026, 4, 27), acknowledged=bst(4, 20, 13, 1), status="closed",
             closed=bst(4, 21, 9)),
    ]  # fmt: skip


# The answers, worked by hand from the comments above.
#   received: enquiries E1-E4, E7 (5); complaint stage 1 C1-C6 (6); stage 2 C2, C7 (2);
#   FOI 3; SAR 1; compliment 1; EIR none. 18 stages in all.
EXPECTED = {
    # (category, stage): received, ack on time / ack due, answered, on time / due, breached,
    #                    median, p90, holding replies, outcomes
    ("enquiry", 1): (5, 4, 5, 80.0, 4, 3, 5, 60.0, 2, 4, 6, 1, {}),
    # working days answered [3, 4, 5, 6]: median rank ceil(2) -> 4; p90 rank ceil(3.6)=4 -> 6
    ("complaint", 1): (6, 6, 6, 100.0, 4, 3, 5, 60.0, 2, 9, 12, 2,
                       {"upheld": 1, "partly-upheld": 1, "not-upheld": 2}),
    # [9, 9, 10, 12]: median rank 2 -> 9; p90 rank 4 -> 12. Due: C1, C2, C3, C6 + C4 (C5 stopped)
    ("complaint", 2): (2, 2, 2, 100.0, 1, 1, 1, 100.0, 0, 20, 20, 0,
                       {"upheld": 1, "partly-upheld": 0, "not-upheld": 0}),
    ("foi", 1): (3, 2, 3, 66.7, 2, 1, 2, 50.0, 1, 19, 21, 1, {}),
    # [19, 21]: median rank 1 -> 19; p90 rank ceil(1.8)=2 -> 21; 2/3 = 66.67 -> 66.7
    ("eir", 1): (0, 0, 0, None, 0, 0, 0, None, 0, None, None, 0, {}),
    ("sar", 1): (1, 1, 1, 100.0, 1, 1, 1, 100.0, 0, 17, 17, 0, {}),
    ("compliment", 1): (1, 1, 1, 100.0, 0, 0, 0, None, 0, None, None, 0, {}),
}  # fmt: skip
# All: ack 16 of 18 = 88.9%; answered 12, 9 on time of 14 due = 64.3%; breached 5;
# days [3, 4, 5, 6, 9, 9, 10, 12, 17, 19, 20, 21]: median rank 6 -> 9, p90 rank ceil(10.8)=11
# -> 20; holding 4; outcomes over complaints: upheld C3, C7; partly C6; not upheld C1, C2.
EXPECTED_TOTAL = (18, 16, 18, 88.9, 12, 9, 14, 64.3, 5, 9, 20, 4,
                  {"upheld": 2, "partly-upheld": 1, "not-upheld": 2})  # fmt: skip
# Sorted by respond-by date: (ref, stage, respond_by, answered?, working days late)
EXPECTED_BREACHES = [
    ("ENQ-2026-00002", 1, date(2026, 4, 13), True, 1),
    ("COM-2026-00003", 1, date(2026, 4, 22), True, 2),
    ("ENQ-2026-00007", 1, date(2026, 5, 7), False, 6),
    ("FOI-2026-00002", 1, date(2026, 5, 11), True, 1),
    ("COM-2026-00004", 1, date(2026, 5, 12), False, 3),
]
# New cases by week (Monday): week of 30 Mar: E1-E4, C1, F1; 6 Apr: C2, C3, C6, F2;
# 13 Apr: F3, S1; 20 Apr: K1; 27 Apr: E7, C4, C5. C7's stage 2 is not a new case.
EXPECTED_WEEKLY = [
    (date(2026, 3, 30), {"enquiry": 4, "complaint": 1, "foi": 1}),
    (date(2026, 4, 6), {"complaint": 3, "foi": 1}),
    (date(2026, 4, 13), {"foi": 1, "sar": 1}),
    (date(2026, 4, 20), {"compliment": 1}),
    (date(2026, 4, 27), {"enquiry": 1, "complaint": 2}),
]


def as_tuple(f: CategoryFigures) -> tuple[Any, ...]:
    return (
        f.received,
        f.acknowledged_on_time,
        f.acknowledgements_due,
        f.acknowledged_on_time_pct,
        f.responded,
        f.responded_on_time,
        f.responses_due,
        f.responded_on_time_pct,
        f.breached,
        f.median_working_days,
        f.p90_working_days,
        f.holding_replies,
        f.outcomes,
    )


def pure_report(cases: list[Hand] | None = None, **kwargs: Any) -> Report:
    hands = hand_cases() if cases is None else cases
    return report_figures(
        [h.case() for h in hands],
        [e for h in hands for e in h.case_events()],
        [o for h in hands for o in h.outbox()],
        POLICY,
        council=COUNCIL,
        period_from=kwargs.get("period_from", PERIOD[0]),
        period_to=kwargs.get("period_to", PERIOD[1]),
        now=kwargs.get("now", NOW),
    )


def check_figures(report: Report) -> None:
    got = {(f.category, f.stage): as_tuple(f) for f in report.rows}
    assert got == EXPECTED
    assert [(f.category, f.stage) for f in report.rows] == list(EXPECTED)
    assert as_tuple(report.total) == EXPECTED_TOTAL
    breaches = [
        (
            b["ref"],
            b["stage"],
            b["respond_by"],
            b["responded_at"] is not None,
            b["working_days_late"],
        )
        for b in report.breaches
    ]
    assert breaches == EXPECTED_BREACHES
    assert {b["ref"]: b["officer"] for b in report.breaches}["COM-2026-00003"] == "Sam Patel"
    all_zero = dict.fromkeys(("enquiry", "complaint", "foi", "eir", "sar", "compliment"), 0)
    assert report.weekly == [(week, {**all_zero, **counts}) for week, counts in EXPECTED_WEEKLY]


# --- the hand-built dates are the policy's own -----------------------------------------


def test_hand_built_dates_are_what_the_policy_gives() -> None:
    for hand in hand_cases():
        stage, start = hand.dates_for or (1, hand.received)
        dates = compute(POLICY, hand.category, start, stage=stage)
        assert (dates.acknowledge_by, dates.respond_by) == (
            hand.acknowledge_by,
            hand.respond_by,
        ), hand.ref


# --- the figures -----------------------------------------------------------------------


def test_every_figure_from_the_hand_built_cases() -> None:
    report = pure_report()
    check_figures(report)
    assert (report.council, report.policy) == (COUNCIL, "stafford")
    assert (report.period_from, report.period_to, report.generated_at) == (*PERIOD, NOW)


def test_a_stage_the_case_has_left_without_dates_in_the_event_uses_the_policy() -> None:
    # C2 again, but the stage-changed event names only the stages: stage 1's dates are
    # those the policy gives from its arrival (respond by 21 Apr), so nothing changes.
    hands = hand_cases()
    c2 = next(h for h in hands if h.ref == "COM-2026-00002")
    c2.events = [
        (at, kind, "stage 1 -> 2" if kind == "stage-changed" else detail)
        for at, kind, detail in c2.events
    ]
    check_figures(pure_report(hands))


def test_an_officers_note_about_an_outcome_is_not_an_outcome() -> None:
    """Issue 19's miscount: "#note outcome: upheld" on an escalated complaint set the
    stage's reported outcome. The outcome is now read from the event's data (and, for
    events written before there was data, only from mailbot's own wording)."""
    hands = hand_cases()
    c2 = next(h for h in hands if h.ref == "COM-2026-00002")
    note = (bst(4, 21, 9), "note", "note by sam@council.example.gov.uk: outcome: upheld, he says")
    c2.events = [*c2.events[:3], note, *c2.events[3:]]
    check_figures(pure_report(hands))
    # The same with the data mailbot writes now: the wording no longer matters at all.
    c2.events = [
        (at, kind, "(wording)", {"outcome": "not-upheld", "stage": 1, "exemptions": []})
        if detail == "outcome not-upheld"
        else (
            at,
            kind,
            "(wording)",
            {"from": 1, "to": 2, "acknowledge_by": "2026-04-30", "respond_by": "2026-05-22"},
        )
        if kind == "stage-changed"
        else (at, kind, detail)
        for at, kind, detail in c2.events
    ]
    check_figures(pure_report(hands))


def test_a_stage_left_unanswered_after_its_date_is_a_missed_promise() -> None:
    # A complaint received Thu 2 Apr (stage 1 respond by 20 Apr) that was never answered
    # at stage 1 and moved to stage 2 on Wed 22 Apr: stage 1 is late by 21, 22 = 2.
    moved = Hand(
        99, "COM-2026-00099", "complaint", bst(4, 2), date(2026, 4, 29), date(2026, 5, 21),
        acknowledged=bst(4, 2, 10, 1), stage=2,
        events=[(bst(4, 22), "stage-changed", "stage 1 -> 2")],
    )  # fmt: skip
    report = pure_report([moved])
    stage1 = next(f for f in report.rows if (f.category, f.stage) == ("complaint", 1))
    assert (stage1.received, stage1.responses_due, stage1.responded, stage1.breached) == (
        1,
        1,
        0,
        1,
    )
    assert stage1.responded_on_time_pct == 0.0
    assert [(b["ref"], b["stage"], b["working_days_late"]) for b in report.breaches] == [
        ("COM-2026-00099", 1, 2)
    ]
    # Stage 2 (respond by 21 May) is open and not yet due.
    stage2 = next(f for f in report.rows if (f.category, f.stage) == ("complaint", 2))
    assert (stage2.received, stage2.responses_due, stage2.breached) == (1, 0, 0)
    # One new case, in the week of 30 March.
    assert report.weekly[0][1]["complaint"] == 1
    assert sum(sum(c.values()) for _, c in report.weekly) == 1


def test_a_period_with_no_cases() -> None:
    report = pure_report(period_from=date(2026, 7, 1), period_to=date(2026, 7, 31))
    assert report.empty
    assert report.total.received == 0
    assert report.total.acknowledged_on_time_pct is None
    assert report.total.responded_on_time_pct is None
    assert report.total.median_working_days is None
    assert report.breaches == []
    assert len(report.weekly) == 5  # weeks of 29 Jun, 6, 13, 20 and 27 Jul
    assert all(sum(counts.values()) == 0 for _, counts in report.weekly)
    html = to_html(report)
    assert NO_CASES in html
    assert "<svg" not in html
    assert json.loads(to_json(report))["total"]["responded_on_time_pct"] is None
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert [r["received"] for r in rows] == ["0"] * 6
    assert {r["responded_on_time_pct"] for r in rows} == {""}


def test_period_ends_are_local_dates() -> None:
    # 1 May alone: only E5 (00:30 BST on 1 May, 23:30 UTC on 30 April).
    report = pure_report(period_from=date(2026, 5, 1), period_to=date(2026, 5, 1))
    assert [(f.category, f.received) for f in report.rows if f.received] == [("enquiry", 1)]
    # 31 March alone: only E6 (23:30 BST); E4 at 00:30 BST on 1 April is not in it.
    report = pure_report(period_from=date(2026, 3, 31), period_to=date(2026, 3, 31))
    assert report.total.received == 1
    assert report.rows[0].responded == 1


def test_nearest_rank_percentiles() -> None:
    assert nearest_rank([], 50) is None
    assert nearest_rank([7], 50) == 7
    assert nearest_rank([7], 90) == 7
    assert nearest_rank([4, 3, 6, 5], 50) == 4  # rank ceil(2) = 2: the lower middle
    assert nearest_rank([4, 3, 6, 5], 90) == 6  # rank ceil(3.6) = 4
    assert nearest_rank(list(range(1, 11)), 90) == 9  # rank ceil(9.0) = 9, exactly
    assert nearest_rank(list(range(1, 21)), 90) == 18  # rank 18
    assert nearest_rank([1, 2, 3], 50) == 2  # rank ceil(1.5) = 2


def test_percentages_round_half_up_and_never_divide_by_zero() -> None:
    assert percent(0, 0) is None
    assert percent(1, 8) == 12.5
    assert percent(1, 3) == 33.3
    assert percent(2, 3) == 66.7
    assert percent(1, 16) == 6.3  # 6.25 rounds up, not to even
    assert percent(3, 3) == 100.0


# --- the database --------------------------------------------------------------------------


def fill(session: Session, hands: list[Hand]) -> None:
    for hand in hands:
        session.add(hand.case())
    session.flush()
    for hand in hands:
        session.add_all(hand.case_events())
        session.add_all(hand.outbox())
    session.commit()


def test_build_report_from_a_sqlite_database(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'mailbot.db'}")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        fill(session, hand_cases())
    with Session(engine) as session:
        report = build_report(
            session, POLICY, council=COUNCIL, period_from=PERIOD[0], period_to=PERIOD[1], now=NOW
        )
    engine.dispose()
    check_figures(report)
    assert report.generated_at == NOW


@pytest.mark.integration
def test_build_report_on_both_databases(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            fill(session, hand_cases())
        with Session(engine) as session:
            report = build_report(
                session,
                POLICY,
                council=COUNCIL,
                period_from=PERIOD[0],
                period_to=PERIOD[1],
                now=NOW,
            )
            check_figures(report)
            empty = build_report(
                session,
                POLICY,
                council=COUNCIL,
                period_from=date(2025, 1, 1),
                period_to=date(2025, 3, 31),
                now=NOW,
            )
            assert empty.empty
    finally:
        engine.dispose()


def test_build_report_refuses_a_backwards_period(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'mailbot.db'}")
    Base.metadata.create_all(engine)
    with Session(engine) as session, pytest.raises(ValueError, match="before it starts"):
        build_report(
            session,
            POLICY,
            council=COUNCIL,
            period_from=date(2026, 4, 30),
            period_to=date(2026, 4, 1),
            now=NOW,
        )
    engine.dispose()


# --- JSON and CSV ----------------------------------------------------------------------


def test_json_has_every_figure() -> None:
    data = json.loads(to_json(pure_report()))
    assert data["council"] == COUNCIL
    assert (data["period_from"], data["period_to"]) == ("2026-04-01", "2026-04-30")
    assert data["generated_at"] == "2026-05-15T12:00:00+00:00"
    rows = {(r["category"], r["stage"]): r for r in data["rows"]}
    assert list(rows) == list(EXPECTED)
    for key, row in rows.items():
        assert tuple(row[name] for name in JSON_FIELDS) == EXPECTED[key], key
    assert tuple(data["total"][name] for name in JSON_FIELDS) == EXPECTED_TOTAL
    assert [
        (
            b["ref"],
            b["stage"],
            b["respond_by"],
            b["responded_at"] is not None,
            b["working_days_late"],
        )
        for b in data["breaches"]
    ] == [
        (ref, stage, d.isoformat(), answered, late)
        for ref, stage, d, answered, late in EXPECTED_BREACHES
    ]
    assert data["breaches"][0]["responded_at"] == "2026-04-14T09:00:00+00:00"
    assert data["weekly"][0] == {
        "week_start": "2026-03-30",
        "counts": {"enquiry": 4, "complaint": 1, "foi": 1, "eir": 0, "sar": 0, "compliment": 0},
    }


JSON_FIELDS = (
    "received",
    "acknowledged_on_time",
    "acknowledgements_due",
    "acknowledged_on_time_pct",
    "responded",
    "responded_on_time",
    "responses_due",
    "responded_on_time_pct",
    "breached",
    "median_working_days",
    "p90_working_days",
    "holding_replies",
    "outcomes",
)


def test_csv_one_row_per_category_and_stage() -> None:
    text = to_csv(pure_report())
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == [
        "category", "stage", "received", "acknowledgements_due", "acknowledged_on_time",
        "acknowledged_on_time_pct", "responses_due", "responded", "responded_on_time",
        "responded_on_time_pct", "breached", "median_working_days", "p90_working_days",
        "holding_replies", "upheld", "partly_upheld", "not_upheld",
        # issue 21: the Cabinet Office's timeliness, FOI/EIR outcomes and exemptions
        "in_time", "in_time_extended", "late", "granted", "partly_granted", "refused",
        "not_held", "review_upheld", "review_partly_upheld", "review_overturned", "exemptions",
    ]  # fmt: skip
    # category, stage, received, acknowledgements due, on time, %, responses due, answered,
    # on time, %, breached, median, p90, holding replies, upheld, partly, not upheld; then
    # in time, in time with an extension, late (answered late or not by the date), and
    # for FOI and EIR the outcomes (none recorded here) and exemptions.
    none = [""] * 8
    assert rows[1:] == [
        ["enquiry", "1", "5", "5", "4", "80.0", "5", "4", "3", "60.0", "2", "4", "6", "1",
         "", "", "", "3", "0", "2", *none],
        ["complaint", "1", "6", "6", "6", "100.0", "5", "4", "3", "60.0", "2", "9", "12", "2",
         "1", "1", "2", "3", "0", "2", *none],
        ["complaint", "2", "2", "2", "2", "100.0", "1", "1", "1", "100.0", "0", "20", "20",
         "0", "1", "0", "0", "1", "0", "0", *none],
        ["foi", "1", "3", "3", "2", "66.7", "2", "2", "1", "50.0", "1", "19", "21", "1",
         "", "", "", "1", "0", "1", "0", "0", "0", "0", "", "", "", ""],
        ["eir", "1", "0", "0", "0", "", "0", "0", "0", "", "0", "", "", "0", "", "", "",
         "0", "0", "0", "0", "0", "0", "0", "", "", "", ""],
        ["sar", "1", "1", "1", "1", "100.0", "1", "1", "1", "100.0", "0", "17", "17", "0",
         "", "", "", "1", "0", "0", *none],
        ["compliment", "1", "1", "1", "1", "100.0", "0", "0", "0", "", "0", "", "", "0",
         "", "", "", "0", "0", "0", *none],
    ]  # fmt: skip
    breaches = list(csv.DictReader(io.StringIO(breaches_to_csv(pure_report()))))
    assert [(b["ref"], b["respond_by"], b["working_days_late"]) for b in breaches] == [
        (ref, d.isoformat(), str(late)) for ref, _, d, _, late in EXPECTED_BREACHES
    ]
    assert breaches[2]["responded_at"] == ""  # E7: not yet answered


# --- hostile input ---------------------------------------------------------------------

HOSTILE = '"><script>alert("officer")</script><img src=x onerror=alert(1)>'


def hostile_report() -> Report:
    hands = hand_cases()
    for hand in hands:
        hand.subject = '=HYPERLINK("http://evil.example","x") <script>alert(1)</script>'
    c3 = next(h for h in hands if h.ref == "COM-2026-00003")
    c3.officer = HOSTILE
    e2 = next(h for h in hands if h.ref == "ENQ-2026-00002")
    e2.officer = "=cmd|' /C calc'!A0"
    f2 = next(h for h in hands if h.ref == "FOI-2026-00002")
    f2.officer = "@SUM(1+1)"
    e7 = next(h for h in hands if h.ref == "ENQ-2026-00007")
    e7.officer = "+44 1785 000000"
    c4 = next(h for h in hands if h.ref == "COM-2026-00004")
    c4.officer = "-2+3"
    return pure_report(hands)


def test_html_escapes_inbound_values() -> None:
    html = to_html(hostile_report())
    assert "<script" not in html
    assert "<img" not in html
    assert "&lt;script&gt;alert(&#34;officer&#34;)&lt;/script&gt;" in html
    assert "HYPERLINK" not in html  # the subject is never shown in a report
    check_self_contained(html)


def test_csv_cannot_carry_a_formula() -> None:
    rows = list(csv.DictReader(io.StringIO(breaches_to_csv(hostile_report()))))
    officers = {row["ref"]: row["officer"] for row in rows}
    assert officers == {
        "ENQ-2026-00002": "'=cmd|' /C calc'!A0",
        "COM-2026-00003": HOSTILE,  # starts with '"': text, not a formula
        "ENQ-2026-00007": "'+44 1785 000000",
        "FOI-2026-00002": "'@SUM(1+1)",
        "COM-2026-00004": "'-2+3",
    }
    # A category that is not one of ours (a damaged row) is still only text.
    hands = hand_cases()
    hands[0].category = "=1+1"
    rows = list(csv.reader(io.StringIO(to_csv(pure_report(hands)))))
    assert rows[-1][:2] == ["'=1+1", "1"]
    for row in rows:
        assert all(not cell.startswith(("=", "+", "-", "@")) for cell in row)


# --- HTML --------------------------------------------------------------------------------


def check_self_contained(html: str) -> None:
    """Nothing fetched from elsewhere: no scripts, stylesheets, fonts or images."""
    lowered = html.lower()
    for needle in ("<script", "<link", "<img", "<iframe", "<object", "<embed", "@import", "url("):
        assert needle not in lowered, needle
    assert not re.search(r"<[a-z][^<>]*\s(src|href)\s*=", lowered)
    assert "http://" not in lowered.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in lowered


KEY_FIGURES = (
    "How quickly we answered",
    "Complaints: outcomes",
    "Promises we missed",
    "16 of 18",  # all: acknowledged on time
    "88.9%",
    "9 of 14",  # all: answered on time
    "64.3%",
    "3 of 5",  # enquiries and complaint stage 1: answered on time
    "60%",
    "2 of 3",  # FOI acknowledged on time
    "66.7%",
    "none due yet",  # EIR and compliments: no answers due
    "ENQ-2026-00002",
    "COM-2026-00003",
    "ENQ-2026-00007",
    "FOI-2026-00002",
    "COM-2026-00004",
    "Not yet answered",
    "13 Apr 2026",  # the first missed promise's date
    "Week beginning",
)


def test_html_contains_the_figures() -> None:
    html = to_html(pure_report())
    for text in KEY_FIGURES:
        assert text in html, text
    assert html.count("<svg") == 2
    assert "@media print" in html
    check_self_contained(html)
    # The rows of the main table, by id, in order, with the p90 and holding replies.
    assert '<tr id="row-complaint-2">' in html
    assert 'id="row-eir-1"' in html


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render_in_chromium(html: str, tmp_path: Path, screenshot: Path | None = None) -> str:
    browser = chromium()
    if browser is None:
        if not os.environ.get("CI"):
            pytest.skip("chromium is not installed (apt-get install chromium)")
        pytest.fail("chromium is not installed (apt-get install chromium)")
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    flags = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ]
    if screenshot is not None:
        subprocess.run(
            [*flags, f"--screenshot={screenshot}", "--window-size=1200,2000", page.as_uri()],
            check=True,
            capture_output=True,
            timeout=120,
        )
    done = subprocess.run(
        [*flags, "--dump-dom", page.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout


@pytest.mark.integration
def test_html_report_renders_in_chromium(tmp_path: Path) -> None:
    shot = Path(os.environ.get("MAILBOT_REPORT_SCREENSHOT", tmp_path / "report.png"))
    dom = render_in_chromium(to_html(pure_report()), tmp_path, screenshot=shot)
    for text in KEY_FIGURES:
        assert text in dom, text
    assert dom.count("<svg") == 2
    assert "<rect" in dom
    assert shot.stat().st_size > 10_000


@pytest.mark.integration
def test_empty_html_report_renders_in_chromium(tmp_path: Path) -> None:
    report = pure_report(period_from=date(2026, 7, 1), period_to=date(2026, 7, 31))
    dom = render_in_chromium(to_html(report), tmp_path)
    assert NO_CASES in dom
    assert "How these figures are worked out" in dom
