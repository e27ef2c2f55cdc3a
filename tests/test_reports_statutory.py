"""Issue 21: the figures councils publish about requests for information, from hand-built
cases (April 2026, Stafford's policy, the report run on Friday 15 May 2026 as in
test_reports.py): in time, in time with an extension, late; outcomes; exemptions cited.

FOI and EIR count every UK nation's bank holidays: Good Friday 3 Apr, Easter Monday
6 Apr, Early May bank holiday 4 May, Spring bank holiday 25 May.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date

from mailbot.deadlines import compute, extend
from mailbot.policy import Duration
from mailbot.reports import report_figures, to_csv, to_html, to_json
from tests.test_reports import COUNCIL, NOW, PERIOD, POLICY, Hand, bst

NOTE, RESPONDED = "note", "responded"


def information_cases() -> list[Hand]:
    return [
        # F1: Wed 1 Apr -> 2, 7-10, 13-17, 20-24, 27-30, 1 May (20): Fri 1 May. Answered
        # Thu 30 Apr, granted in full: in time.
        Hand(51, "FOI-2026-00011", "foi", bst(4, 1, 12), date(2026, 4, 10), date(2026, 5, 1),
             responded=bst(4, 30), status="responded", outcome="granted",
             events=[(bst(4, 30, 0, 1), NOTE, "outcome granted (stage 1) by sam")]),
        # F2: Fri 10 Apr -> 11 May; the public interest extension (20 more FOI working
        # days: 12-15, 18-22, (25 May) 26-29, 1-5 Jun, 8, 9) to Tue 9 Jun. Answered Tue 12
        # May, refused under two exemptions: in time, with an extension.
        Hand(52, "FOI-2026-00012", "foi", bst(4, 10, 15), date(2026, 4, 17), date(2026, 6, 9),
             responded=bst(5, 12), status="responded", outcome="refused",
             events=[(bst(5, 1), "extended", "2026-05-11 -> 2026-06-09 by sam"),
                     (bst(5, 12, 0, 1), NOTE,
                      "outcome refused (stage 1) by sam; exemptions: s.43(2), s.40(2)")]),
        # F3: Thu 2 Apr -> 7-10 (4), 13-17, 20-24, 27-30 (18), 1 May, (4 May) Tue 5 May (20).
        # Answered Thu 7 May, granted in part: late.
        Hand(53, "FOI-2026-00013", "foi", bst(4, 2), date(2026, 4, 10), date(2026, 5, 5),
             responded=bst(5, 7), status="responded", outcome="partly-granted",
             events=[(bst(5, 7, 0, 1), NOTE,
                      "outcome partly-granted (stage 1) by sam; exemptions: s.40(2)")]),
        # F4: Wed 1 Apr (due 1 May) answered Fri 10 Apr, refused (s.43(2)): in time. The
        # requester asks for an internal review on Mon 13 Apr: 20 working days, 14-17 (4),
        # 20-24, 27-30 (13), 1 May, 5-8 (18), 11, Tue 12 May. Answered Mon 11 May: the
        # refusal overturned, in time.
        Hand(54, "FOI-2026-00014", "foi", bst(4, 1, 9), date(2026, 4, 20), date(2026, 5, 12),
             responded=bst(5, 11), status="responded", stage=2, outcome="overturned",
             dates_for=(2, bst(4, 13)),
             events=[(bst(4, 10), RESPONDED, "reply sent by sam"),
                     (bst(4, 10, 0, 1), NOTE,
                      "outcome refused (stage 1) by sam; exemptions: s.43(2)"),
                     (bst(4, 13), "stage-changed",
                      "stage 1 -> 2; acknowledge by 2026-04-20; respond by 2026-05-12; "
                      "stage 1 was due 2026-05-01; the resident asked for an internal review"),
                     (bst(5, 11), RESPONDED, "reply sent by jordan"),
                     (bst(5, 11, 0, 1), NOTE, "outcome overturned (stage 2) by jordan")]),
        # E1: EIR Wed 8 Apr -> 9, 10, 13-17, 20-24, 27-30, 1 May, 5-7 (20): Thu 7 May.
        # Unanswered on 15 May: late.
        Hand(55, "EIR-2026-00011", "eir", bst(4, 8), date(2026, 4, 15), date(2026, 5, 7)),
        # S1: SAR Mon 13 Apr -> 13 May; extended by two months to Mon 13 Jul, answered
        # Thu 14 May: in time, with an extension.
        Hand(56, "SAR-2026-00011", "sar", bst(4, 13), date(2026, 4, 20), date(2026, 7, 13),
             responded=bst(5, 14), status="responded",
             events=[(bst(5, 1), "extended", "2026-05-13 -> 2026-07-13 by sam; reason: ...")]),
    ]  # fmt: skip


def report():
    hands = information_cases()
    return report_figures(
        [h.case() for h in hands],
        [e for h in hands for e in h.case_events()],
        [],
        POLICY,
        council=COUNCIL,
        period_from=PERIOD[0],
        period_to=PERIOD[1],
        now=NOW,
    )


def test_the_hand_built_dates_are_the_policys() -> None:
    for hand in information_cases():
        stage, start = hand.dates_for or (1, hand.received)
        dates = compute(POLICY, hand.category, start, stage=stage)
        if hand.ref in ("FOI-2026-00012", "SAR-2026-00011"):
            unit = "working_days" if hand.category == "foi" else "calendar_months"
            amount = 20 if hand.category == "foi" else 2
            dates = extend(dates, POLICY, Duration(amount=amount, unit=unit))
        assert dates.respond_by == hand.respond_by, hand.ref


def test_timeliness_outcomes_and_exemptions() -> None:
    rows = {(f.category, f.stage): f for f in report().rows}
    foi, review, eir, sar = rows["foi", 1], rows["foi", 2], rows["eir", 1], rows["sar", 1]
    # FOI: F1 and F4's first stage in time, F2 in time with its extension, F3 late.
    assert (foi.received, foi.responses_due) == (4, 4)
    assert (foi.in_time, foi.in_time_extended, foi.late) == (2, 1, 1)
    assert foi.request_outcomes == {"granted": 1, "partly-granted": 1, "refused": 2, "not-held": 0}
    # s.40(2) in F2 and F3, s.43(2) in F2 and F4: two each, by name.
    assert foi.exemptions == {"s.40(2)": 2, "s.43(2)": 2}
    assert list(foi.exemptions) == ["s.40(2)", "s.43(2)"]
    # The internal review: F4, in time, overturned.
    assert (review.received, review.in_time, review.in_time_extended, review.late) == (1, 1, 0, 0)
    assert review.request_outcomes == {"upheld": 0, "partly-upheld": 0, "overturned": 1}
    assert review.exemptions == {}
    # F4's first stage was judged by its own date (1 May), not the review's.
    assert foi.responded_on_time == 3
    # EIR: unanswered after its date; SAR: in time after two further months.
    assert (eir.responses_due, eir.in_time, eir.late) == (1, 0, 1)
    assert eir.request_outcomes == {"granted": 0, "partly-granted": 0, "refused": 0, "not-held": 0}
    assert (sar.in_time, sar.in_time_extended, sar.late) == (0, 1, 0)
    assert sar.request_outcomes == {}  # not counted for subject access
    assert (report().total.in_time, report().total.in_time_extended, report().total.late) == (
        3, 2, 2)  # fmt: skip


def test_the_new_figures_in_json_csv_and_html() -> None:
    data = json.loads(to_json(report()))
    foi = next(r for r in data["rows"] if (r["category"], r["stage"]) == ("foi", 1))
    assert (foi["in_time"], foi["in_time_extended"], foi["late"]) == (2, 1, 1)
    assert foi["exemptions"] == {"s.40(2)": 2, "s.43(2)": 2}
    rows = {(r["category"], r["stage"]): r for r in csv.DictReader(io.StringIO(to_csv(report())))}
    assert [rows["foi", "1"][k] for k in ("granted", "partly_granted", "refused", "not_held")] == [
        "1", "1", "2", "0"]  # fmt: skip
    assert rows["foi", "1"]["exemptions"] == "s.40(2): 2; s.43(2): 2"
    assert rows["foi", "2"]["review_overturned"] == "1"
    assert rows["foi", "2"]["granted"] == ""
    html = to_html(report())
    assert '<tr id="timeliness-foi-1"><th scope="row">Freedom of information requests</th>' in html
    assert "Freedom of information requests: internal reviews" in html
    assert '>Review: decision overturned</td>\n        <td class="n">1</td>' in html
    assert "s.40(2): 2, s.43(2): 2" in html
