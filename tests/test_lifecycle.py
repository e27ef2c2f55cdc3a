"""Each change to a case, without a server: the case as it is after, the history lines
and letters the change returns, and the changes that are refused."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from mailbot import lifecycle
from mailbot.config import OfficerConfig
from mailbot.deadlines import ClockStop, compute
from mailbot.lifecycle import CommandError, Composed, Happened, ToOfficer, ToResident
from mailbot.policy import load_policy
from mailbot.store import Case, EventKind

STAFFORD = load_policy("stafford")  # complaints 5/10 then 5/20; FOI extension 20 wd
RECEIVED = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)  # a Monday
NOW = datetime(2026, 11, 4, 14, 0, tzinfo=UTC)  # the Wednesday after
SAM = OfficerConfig(name="Sam Patel", email="sam.patel@council.example.gov.uk", roles=["x"])
JO = OfficerConfig(name="Jo Reid", email="jo.reid@council.example.gov.uk", roles=["x"])


def a_case(category: str = "complaint", **fields) -> Case:
    """A case as intake opens it, not in any database."""
    dates = compute(STAFFORD, category, RECEIVED)
    values = {
        "id": 7,
        "ref": "CMP-2026-0007",
        "category": category,
        "stage": 1,
        "status": "open",
        "policy": "stafford",
        "resident_email": "ann@example.com",
        "resident_name": "Ann Jones",
        "subject": "Bins",
        "role": STAFFORD.stage(category, 1).role,
        "officer_email": JO.email,
        "officer_name": JO.name,
        "received_at": RECEIVED,
        "acknowledge_by": dates.acknowledge_by,
        "respond_by": dates.respond_by,
        "holding_by": dates.holding_by,
        "clock_stopped": False,
        "extended_days": 0,
        "paused_days": 0,
        "triage": False,
    }
    return Case(**{**values, **fields})


def kinds(change: lifecycle.Change) -> list[EventKind]:
    return [e.kind for e in change.events]


def test_respond_stops_reminders_and_only_once():
    case = a_case()
    case.next_action_on = date(2026, 11, 6)
    change = lifecycle.respond(case, NOW, "reply sent by jo.reid@council.example.gov.uk")
    assert (case.status, case.responded_at, case.next_action_on) == ("responded", NOW, None)
    assert change.events == [
        Happened(EventKind.RESPONDED, "reply sent by jo.reid@council.example.gov.uk")
    ]
    assert change.letters == []
    again = lifecycle.respond(case, NOW, "a second reply")
    assert (again.events, case.responded_at) == ([], NOW)


def test_close_and_a_second_close_is_refused():
    case = a_case()
    change = lifecycle.close(case, NOW, "closed by jo")
    assert (case.status, case.closed_at, change.said) == ("closed", NOW, "closed")
    assert kinds(change) == [EventKind.CLOSED]
    with pytest.raises(CommandError, match="already closed"):
        lifecycle.close(case, NOW, "again")


def test_escalate_gives_the_next_stage_its_own_officer_dates_and_letters():
    case = a_case(outcome="not-upheld", status="responded", responded_at=NOW)
    roles = []

    def choose(role):
        roles.append(role)
        return SAM

    change = lifecycle.escalate(STAFFORD, case, choose, NOW, "by ann")
    stage2 = STAFFORD.stage("complaint", 2)
    dates = compute(STAFFORD, "complaint", NOW, stage=2)
    assert roles == [stage2.role]
    assert (case.stage, case.status, case.outcome, case.responded_at) == (2, "open", None, None)
    assert (case.officer_email, case.role) == (SAM.email, stage2.role)
    assert (case.acknowledge_by, case.respond_by) == (dates.acknowledge_by, dates.respond_by)
    [event] = change.events
    assert event.kind == EventKind.STAGE_CHANGED
    assert event.data == {
        "from": 1,
        "to": 2,
        "acknowledge_by": dates.acknowledge_by.isoformat(),
        "respond_by": dates.respond_by.isoformat(),
        "was_due": "2026-11-16",
    }
    assert change.letters == [
        ToResident("stage-change-complaint", "stage-change", fallback="stage-change"),
        ToOfficer("stage:CMP-2026-0007:2"),
    ]
    assert change.said == "now stage 2, with Sam Patel"


def test_escalate_past_the_final_stage_or_without_stages_is_refused():
    final = a_case(stage=STAFFORD.final_stage("complaint"))
    with pytest.raises(CommandError, match="this is the final stage"):
        lifecycle.escalate(STAFFORD, final, lambda role: SAM, NOW, "by ann")
    with pytest.raises(CommandError, match="only complaints have stages"):
        lifecycle.escalate(STAFFORD, a_case("enquiry"), lambda role: SAM, NOW, "by ann")
    assert final.officer_email == JO.email  # nothing changed


def test_a_clarification_stops_the_clock_and_the_residents_reply_starts_it_again():
    case = a_case("foi")
    due = case.respond_by
    letter = ToResident("clarification", "clarification", {"question": "Which year?"})
    change = lifecycle.ask_resident(case, ClockStop.CLARIFICATION, NOW, "asked by jo", letter)
    assert (case.clock_stopped, case.clock_stop, case.clock_stopped_at) == (
        True,
        "clarification",
        NOW,
    )
    assert (kinds(change), change.letters) == ([EventKind.CLOCK_STOPPED], [letter])
    with pytest.raises(CommandError, match="already stopped"):
        lifecycle.stop_clock(case, ClockStop.CLARIFICATION, NOW, "again")

    replied = datetime(2026, 11, 9, 10, 0, tzinfo=UTC)
    restarted = lifecycle.resident_replied(STAFFORD, case, replied)
    assert not case.clock_stopped and case.clock_stop is None
    # FOIA s.1(3): a clarified request is a new request, 20 working days from the reply.
    assert case.respond_by == compute(STAFFORD, "foi", replied).respond_by
    assert case.respond_by > due
    assert kinds(restarted) == [EventKind.CLOCK_RESTARTED]
    assert restarted.events[0].detail.startswith("resident replied; ")


def test_a_fees_notice_waits_for_payment_not_for_a_reply():
    case = a_case("foi")
    lifecycle.stop_clock(case, ClockStop.FEES, NOW, "fees notice")
    assert lifecycle.resident_replied(STAFFORD, case, NOW).events == []
    assert case.clock_stopped


def test_an_extension_is_noticed_to_the_resident_only_where_the_law_asks():
    foi = a_case("foi")
    old = foi.respond_by
    change = lifecycle.extend_response(STAFFORD, foi, 20, "public interest test", "jo", NOW)
    assert foi.extended_days == 20 and foi.respond_by > old
    assert kinds(change) == [EventKind.EXTENDED]
    [letter] = change.letters
    assert (letter.template, letter.kind, letter.extra["reason"]) == (
        "extension-foi",
        "extension",
        "public interest test",
    )
    assert change.said.endswith("the resident has been sent the notice of the extension")

    complaint = a_case()
    assert lifecycle.extend_response(STAFFORD, complaint, 5, "", "jo", NOW).letters == []
    assert complaint.extended_days == 5


def test_extensions_the_policy_or_the_law_does_not_allow_are_refused():
    with pytest.raises(CommandError, match="allows no extension for enquiry"):
        lifecycle.extend_response(STAFFORD, a_case("enquiry"), 5, "", "jo", NOW)
    with pytest.raises(CommandError, match="say why"):
        lifecycle.extend_response(STAFFORD, a_case("sar"), 2, "", "jo", NOW)
    case = a_case()
    lifecycle.extend_response(STAFFORD, case, 10, "", "jo", NOW)
    due = case.respond_by
    with pytest.raises(CommandError):  # the stage allows 10 working days in all
        lifecycle.extend_response(STAFFORD, case, 1, "", "jo", NOW)
    assert (case.respond_by, case.extended_days) == (due, 10)


def test_a_holding_reply_names_the_new_date_and_is_composed_under_its_own_key():
    case = a_case()
    change = lifecycle.hold(STAFFORD, case, date(2026, 12, 1), "waiting for a report", "jo", NOW)
    assert (case.holding_until, case.holding_reason) == (date(2026, 12, 1), "waiting for a report")
    [letter] = change.letters
    assert isinstance(letter, Composed)
    assert letter.key == "holding:CMP-2026-0007:1:officer:2026-12-01"
    assert letter.letter.recipient == "ann@example.com"
    assert change.events == [
        Happened(EventKind.HOLDING, "holding reply by jo; new date 2026-12-01")
    ]


def test_an_outcome_is_data_for_the_reports_and_answers_an_information_request():
    complaint = a_case()
    change = lifecycle.record_outcome(complaint, "upheld", [], "jo", NOW)
    assert complaint.status == "open"  # a complaint is answered by its reply, not its outcome
    assert change.events == [
        Happened(
            EventKind.NOTE,
            "outcome upheld (stage 1) by jo",
            {"outcome": "upheld", "stage": 1, "exemptions": []},
        )
    ]
    foi = a_case("foi")
    change = lifecycle.record_outcome(foi, "refused", ["s.40(2)"], "jo", NOW)
    assert (foi.status, foi.outcome) == ("responded", "refused")
    assert kinds(change) == [EventKind.NOTE, EventKind.RESPONDED]
    assert change.events[0].data == {"outcome": "refused", "stage": 1, "exemptions": ["s.40(2)"]}
    assert change.said == "outcome refused recorded; the request is marked responded"


def test_a_new_category_restarts_the_case_under_its_rules_and_teaches_the_classifier():
    case = a_case("enquiry", triage=True)
    change = lifecycle.recategorise(STAFFORD, case, "foi", lambda role: SAM, "jo", NOW)
    dates = compute(STAFFORD, "foi", RECEIVED)
    assert (case.category, case.stage, case.triage) == ("foi", 1, False)
    assert (case.respond_by, case.officer_email) == (dates.respond_by, SAM.email)
    assert change.corrections == [("enquiry", "foi")]
    assert kinds(change) == [EventKind.REASSIGNED]
    assert change.letters == [
        ToResident("acknowledgement-foi", "acknowledgement"),
        ToOfficer("recategorised:CMP-2026-0007:foi"),
    ]


def test_the_same_category_settles_a_triage_doubt_and_is_otherwise_refused():
    doubtful = a_case(triage=True)
    change = lifecycle.recategorise(STAFFORD, doubtful, "complaint", lambda role: SAM, "jo", NOW)
    assert (doubtful.triage, doubtful.officer_email) == (False, JO.email)
    assert change.corrections == [("complaint", "complaint")]
    assert change.letters == [ToResident("acknowledgement-complaint", "acknowledgement")]
    with pytest.raises(CommandError, match="already complaint"):
        lifecycle.recategorise(STAFFORD, doubtful, "complaint", lambda role: SAM, "jo", NOW)


def test_reassign_tells_the_new_officer():
    case = a_case()
    change = lifecycle.reassign(case, SAM, "jo", NOW)
    assert (case.officer_email, case.officer_name) == (SAM.email, SAM.name)
    assert change.events == [Happened(EventKind.REASSIGNED, "from Jo Reid to Sam Patel by jo")]
    assert change.letters == [ToOfficer(f"reassigned:CMP-2026-0007:{NOW.isoformat()}")]


def test_changes_made_one_after_another_keep_their_order():
    case = a_case("foi")
    change = lifecycle.note("asked by jo").then(lifecycle.respond(case, NOW, "reply sent"))
    assert kinds(change) == [EventKind.NOTE, EventKind.RESPONDED]
    assert change.said == "marked as responded"


def test_a_bounced_acknowledgement_leaves_the_case_unacknowledged():
    case = a_case(acknowledged_at=RECEIVED)
    change = lifecycle.bounced(case, "acknowledgement", "acknowledgement bounced: 550")
    assert case.acknowledged_at is None
    assert change.events == [Happened(EventKind.BOUNCED, "acknowledgement bounced: 550")]
    reminder = a_case(acknowledged_at=RECEIVED)
    lifecycle.bounced(reminder, "holding", "holding bounced: 550")
    assert reminder.acknowledged_at == RECEIVED


def test_the_residents_language_is_kept_with_why():
    case = a_case()
    change = lifecycle.set_language(case, "cy", "Welsh", "the resident wrote in Welsh")
    assert (case.language, change.said) == ("cy", "letters to the resident now in Welsh")
    assert change.events == [Happened(EventKind.NOTE, "the resident wrote in Welsh")]


def test_a_new_case_has_its_dates_its_officer_and_a_history_that_says_why():
    from mailbot.classify import Classification
    from mailbot.parse import parse_message
    from mailbot.reasons import Reason
    from mailbot.resident import Resident

    msg = parse_message(
        b"From: Ann Jones <Ann@Example.com>\r\nTo: council@example.gov.uk\r\n"
        b"Subject: Bins not emptied\r\nMessage-ID: <bins@example.com>\r\n\r\nAgain!\r\n"
    )
    decision = Classification(
        category="complaint",
        reasons=(Reason("complaint", "2 points"),),
        priority="high",
        welfare_reasons=(Reason("welfare", 'phrase "lives alone" in body'),),
        escalation_requested=False,
        doubt=("complaint", "enquiry"),
    )
    resident = Resident("Ann@Example.com", "Ann Jones", "Reply-To")
    case, change = lifecycle.open_case(
        STAFFORD,
        "COM-2026-00001",
        msg,
        resident,
        decision,
        JO,
        RECEIVED,
        NOW,
        policy_name="stafford",
        mailbox="complaints@council.example.gov.uk",
        welsh=False,
    )
    dates = compute(STAFFORD, "complaint", RECEIVED)
    assert (case.ref, case.category, case.stage, case.status) == (
        "COM-2026-00001",
        "complaint",
        1,
        "open",
    )
    assert (case.resident_email, case.officer_email, case.priority) == (
        "ann@example.com",
        JO.email,
        "high",
    )
    assert (case.acknowledge_by, case.respond_by) == (dates.acknowledge_by, dates.respond_by)
    assert case.triage is True and case.language is None
    assert case.reasons == [decision.reasons[0], decision.welfare_reasons[0]]
    assert case.next_action_on is not None
    assert [(e.kind, e.detail, e.at) for e in change.events] == [
        (EventKind.RECEIVED, "from ann@example.com (Reply-To)", RECEIVED),
        (EventKind.NOTE, "classified as complaint: complaint: 2 points", None),
        (
            EventKind.NOTE,
            "flagged for triage: complaint or enquiry? (#category to settle it)",
            None,
        ),
        (
            EventKind.REASSIGNED,
            f"assigned to Jo Reid ({STAFFORD.stage('complaint', 1).role})",
            None,
        ),
    ]
