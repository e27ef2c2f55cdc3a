"""Keeping promises: reminders, holding replies, breaches and the digest, as the clock moves."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes as _parse
from email.message import EmailMessage
from email.policy import default as modern

import pytest
from sqlalchemy import select

from mailbot import planning, scheduler
from mailbot.calendar import calendar_for
from mailbot.commandline import command_lines
from mailbot.daemon import run_once
from mailbot.intake.casework import open_case
from mailbot.letters import render, subject_for
from mailbot.lifecycle import close, record, respond
from mailbot.outbox import Letter, queue
from mailbot.outbox.sending import flush
from mailbot.parse import parse_message
from mailbot.planning import Action, case_actions, due_now, next_action_date, schedule
from mailbot.policy import Offset, load_policy
from mailbot.route import holders
from mailbot.scheduler import run_due
from mailbot.store import Case, OutboxMessage
from tests.conftest import COUNCIL, resident_mail, to_residents

pytestmark = pytest.mark.integration

ALEX = "alex.morgan@council.example.gov.uk"  # customer-services: handles enquiries
JORDAN = "jordan.reid@council.example.gov.uk"  # customer-services-manager: told on breach
CHRIS = "chris.lee@council.example.gov.uk"  # clerk: gets the digest


def new_case(app, received: datetime, *, category_words: str = "") -> str:
    """Open an enquiry as the pipeline would, received at `received`."""
    raw = resident_mail(body=category_words or "Could you tell me when the library opens?")
    with app.sessions.begin() as session:
        case = open_case(app, session, parse_message(raw), received, received)
        return case.ref


def outbox(app, kind: str | None = None) -> list[OutboxMessage]:
    with app.sessions() as s:
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        if kind:
            query = query.where(OutboxMessage.kind == kind)
        return list(s.scalars(query))


def written(app, row: OutboxMessage) -> EmailMessage:
    """The message as the outbox will write it, with headers unfolded as a client shows them."""
    with app.sessions() as session:
        raw = render(app, session, session.get(OutboxMessage, row.id))
    return _parse(raw, policy=modern)


def text_of(msg: EmailMessage) -> str:
    return msg.get_body(("plain",)).get_content()


def at(app, when: datetime) -> int:
    app.clock.instant = when
    return run_due(app)


def test_actions_for_an_enquiry_over_easter_2026(app):
    # Mon 30 Mar 2026 10:00 BST. Day 1 Tue 31 Mar; Good Friday 3 Apr and Easter Monday
    # 6 Apr are not working days: 31, 1, 2, 7, 8 -> reply due Wed 8 Apr 2026.
    ref = new_case(app, datetime(2026, 3, 30, 9, 0, tzinfo=UTC))
    with app.sessions() as s:
        case = s.scalar(select(Case).where(Case.ref == ref))
        assert case.respond_by == date(2026, 4, 8)
        assert case.next_action_on == date(2026, 4, 1)
        stage = app.policy.stage("enquiry", 1)
        from mailbot.calendar import calendar_for

        actions = case_actions(case, stage, calendar_for(app.policy, "enquiry"))
    assert [(a.kind, a.on) for a in actions] == [
        ("reminder", date(2026, 4, 1)),  # 3 working days before: 7, 2, 1 April
        ("holding", date(2026, 4, 7)),  # 1 working day before (over Easter)
        ("reminder", date(2026, 4, 7)),
        ("reminder", date(2026, 4, 8)),  # on the due date
        ("breach", date(2026, 4, 9)),  # the first working day past it
    ]


def test_each_point_fires_once_to_the_right_people_at_the_right_time(app, smtp):
    ref = new_case(app, datetime(2026, 3, 30, 9, 0, tzinfo=UTC))

    # Wed 1 Apr, 02:00 BST: the reminder is queued for opening time, 09:00 BST = 08:00 UTC.
    assert at(app, datetime(2026, 4, 1, 1, 0, tzinfo=UTC)) == 1
    [reminder] = outbox(app, "reminder")
    assert reminder.recipient == ALEX
    assert reminder.next_attempt_at == datetime(2026, 4, 1, 8, 0, tzinfo=UTC)
    msg = written(app, reminder)
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Subject"] == (
        f"Reminder: reply due Wednesday 8 April 2026: Pothole on Mill Lane [Ref: {ref}]"
    )
    text = text_of(msg)
    assert "3 working days left" in text
    # How to act by email, without a line that a reply quoting it could run as a command.
    assert "a line of its own: # and one of these words." in text
    assert "\n  responded " in text and "\n  extend N " in text
    assert command_lines(text) == []

    # Run again, and again after a "restart": nothing new.
    assert at(app, datetime(2026, 4, 1, 8, 30, tzinfo=UTC)) == 0
    flush(app)  # what is due now goes, as the daemon would send it
    assert at(app, datetime(2026, 4, 2, 12, 0, tzinfo=UTC)) == 0
    assert len(outbox(app, "reminder")) == 1

    # Tue 7 Apr (after Easter): the holding reply to the resident and the second reminder.
    assert at(app, datetime(2026, 4, 7, 10, 0, tzinfo=UTC)) == 2
    flush(app)  # what is due now goes, as the daemon would send it
    [holding] = outbox(app, "holding")
    assert holding.recipient == "jane.doe@example.com"
    held = written(app, holding)
    assert held["Auto-Submitted"] == "auto-replied"
    assert held["Subject"] == f"Re: Pothole on Mill Lane [Ref: {ref}]"
    with app.sessions() as s:
        first = s.scalar(select(Case.first_message_id).where(Case.ref == ref))
    assert first and held["In-Reply-To"] == first  # threaded under the resident's message
    assert held["X-Auto-Response-Suppress"] == "All"
    body = text_of(held)
    # No extension in the policy: the default 10 working days after Wed 8 Apr.
    assert "by Wednesday 22 April 2026" in body
    assert len(outbox(app, "reminder")) == 2

    # Wed 8 Apr: the due-date reminder. Thu 9 Apr: the breach, to the manager, once.
    assert at(app, datetime(2026, 4, 8, 10, 0, tzinfo=UTC)) == 1
    flush(app)  # what is due now goes, as the daemon would send it
    assert at(app, datetime(2026, 4, 9, 10, 0, tzinfo=UTC)) == 1
    flush(app)  # what is due now goes, as the daemon would send it
    assert at(app, datetime(2026, 4, 10, 10, 0, tzinfo=UTC)) == 0
    [breach] = outbox(app, "breach")
    assert breach.recipient == JORDAN
    with app.sessions() as s:
        case = s.scalar(select(Case).where(Case.ref == ref))
        assert case.breached_at == datetime(2026, 4, 9, 10, 0, tzinfo=UTC)
        assert case.next_action_on is None

    # The case's history: each letter when it went, the breach when found.
    with app.sessions() as s:
        case = s.scalar(select(Case).where(Case.ref == ref))
        history = [(e.kind, e.detail) for e in case.events if e.kind != "received"]
    assert [h for h in history if h[0] in ("reminder", "holding", "escalated")] == [
        ("reminder", f"reminder sent to {ALEX}; 3 working day(s) left"),
        ("holding", "holding sent to jane.doe@example.com; new date Wednesday 22 April 2026"),
        ("reminder", f"reminder sent to {ALEX}; 1 working day(s) left"),
        ("reminder", f"reminder sent to {ALEX}; 0 working day(s) left"),
        ("escalated", "response date 2026-04-08 missed; told customer-services-manager"),
    ]


def test_missed_points_while_stopped_send_only_the_latest(app):
    new_case(app, datetime(2026, 3, 30, 9, 0, tzinfo=UTC))
    # mailbot was down from Mon 30 Mar until Wed 8 Apr: one reminder (the due-date one)
    # and the holding reply, not three reminders at once.
    assert at(app, datetime(2026, 4, 8, 10, 0, tzinfo=UTC)) == 2
    assert [r.key.split(":")[-1] for r in outbox(app, "reminder")] == ["0"]
    assert len(outbox(app, "holding")) == 1


def test_an_officers_new_date_given_during_a_pass_is_not_undone(app, monkeypatch):
    ref = new_case(app, datetime(2026, 3, 30, 9, 0, tzinfo=UTC))
    later = date(2026, 4, 20)
    decide = scheduler._owed_today

    def officer_moves_the_case_meanwhile(*args):
        # As '#extend' would, after the pass has read the case and before it writes.
        with app.sessions.begin() as s:
            s.scalar(select(Case).where(Case.ref == ref)).next_action_on = later
        return decide(*args)

    monkeypatch.setattr(scheduler, "_owed_today", officer_moves_the_case_meanwhile)
    assert at(app, datetime(2026, 4, 1, 10, 0, tzinfo=UTC)) == 1
    with app.sessions() as s:
        assert s.scalar(select(Case.next_action_on).where(Case.ref == ref)) == later


def test_staff_mail_due_on_a_sunday_night_waits_for_monday_opening(app, smtp):
    # Thu 5 Nov 2026 14:00 GMT: day 1 Fri 6 Nov; due Thu 12 Nov; 3 days before = Mon 9 Nov.
    new_case(app, datetime(2026, 11, 5, 14, 0, tzinfo=UTC))
    app.clock.instant = datetime(2026, 11, 6, 12, 0, tzinfo=UTC)
    run_due(app)
    # mailbot catches up at 02:00 on Sunday 8 Nov: nothing is due yet (Mon 9 is the day).
    assert at(app, datetime(2026, 11, 8, 2, 0, tzinfo=UTC)) == 0
    # Monday 9 Nov 00:30: queued for 09:00 GMT, and not sent before then.
    assert at(app, datetime(2026, 11, 9, 0, 30, tzinfo=UTC)) == 1
    flush(app)
    assert smtp.to(ALEX) == []
    app.clock.instant = datetime(2026, 11, 9, 9, 0, tzinfo=UTC)
    flush(app)
    assert len(smtp.to(ALEX)) == 1


def test_opening_time_follows_british_summer_time(app):
    # Tue 7 Apr 2026 is in BST: the office opens at 09:00 BST, which is 08:00 UTC.
    new_case(app, datetime(2026, 3, 30, 9, 0, tzinfo=UTC))
    at(app, datetime(2026, 4, 1, 10, 0, tzinfo=UTC))
    at(app, datetime(2026, 4, 7, 6, 59, tzinfo=UTC))
    second = outbox(app, "reminder")[1]
    assert second.next_attempt_at == datetime(2026, 4, 7, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("change", ["responded", "closed", "clock-stopped"])
def test_nothing_fires_for_a_responded_closed_or_stopped_case(app, change):
    ref = new_case(app, datetime(2026, 3, 30, 9, 0, tzinfo=UTC))
    with app.sessions.begin() as s:
        case = s.scalar(select(Case).where(Case.ref == ref))
        if change == "clock-stopped":
            case.clock_stopped = True
        else:
            case.status = change
    for day in range(1, 12):
        at(app, datetime(2026, 4, day, 10, 0, tzinfo=UTC))
    assert [r.kind for r in outbox(app) if r.kind != "digest"] == []


@pytest.mark.parametrize("change", ["responded", "closed"])
def test_a_letter_queued_before_the_case_was_answered_is_withdrawn(app, smtp, change):
    ref = new_case(app, datetime(2026, 3, 30, 9, 0, tzinfo=UTC))
    # Tue 7 Apr, 02:00 BST: the holding reply and a reminder are queued for opening time.
    assert at(app, datetime(2026, 4, 7, 1, 0, tzinfo=UTC)) == 2
    # 07:30 BST, before either went: the officer answers (or closes) the case.
    app.clock.instant = datetime(2026, 4, 7, 6, 30, tzinfo=UTC)
    with app.sessions.begin() as s:
        case = s.scalar(select(Case).where(Case.ref == ref))
        now = app.clock.now()
        if change == "responded":
            record(app, s, case, respond(case, now, "reply sent by Alex"), now)
        else:
            record(app, s, case, close(case, now, "closed by Alex"), now)

    app.clock.instant = datetime(2026, 4, 7, 8, 0, tzinfo=UTC)  # opening time
    flush(app)

    assert smtp.messages == []  # neither the resident nor the officer hears of a due date
    rows = [(r.kind, r.status) for r in outbox(app) if r.kind != "digest"]
    assert sorted(rows) == [("holding", "withdrawn"), ("reminder", "withdrawn")]
    with app.sessions() as s:
        case = s.scalar(select(Case).where(Case.ref == ref))
        notes = sorted(e.detail for e in case.events if "not sent" in e.detail)
    assert notes == [
        f"holding to jane.doe@example.com not sent: the case was {change} first",
        f"reminder to {ALEX} not sent: the case was {change} first",
    ]


def test_digest_on_working_days_at_opening_overdue_first(app, smtp):
    late = new_case(app, datetime(2026, 3, 16, 10, 0, tzinfo=UTC))  # due Mon 23 Mar
    soon = new_case(app, datetime(2026, 3, 30, 9, 0, tzinfo=UTC))  # due Wed 8 Apr
    # Good Friday 3 Apr 2026: no digest. Tue 7 Apr 08:59 BST: not yet; 09:00 BST: yes.
    at(app, datetime(2026, 4, 3, 12, 0, tzinfo=UTC))
    at(app, datetime(2026, 4, 7, 7, 59, tzinfo=UTC))
    assert outbox(app, "digest") == []
    at(app, datetime(2026, 4, 7, 8, 0, tzinfo=UTC))
    at(app, datetime(2026, 4, 7, 15, 0, tzinfo=UTC))
    [digest] = outbox(app, "digest")
    assert digest.recipient == CHRIS
    msg = written(app, digest)
    assert msg["Subject"] == "Open cases on Tuesday 7 April 2026: 2 open, 1 overdue"
    text = text_of(msg)
    assert text.index(late) < text.index(soon)
    # Due Mon 23 Mar; working days after it up to Tue 7 Apr: 24-27, 30, 31, 1, 2, 7 = 9.
    assert "OVERDUE by 9 working days" in text
    assert "1 working day left" in text
    assert msg.get_body(("html",)) is not None


def test_welfare_wording_alerts_the_duty_officer_at_once(app, dovecot, smtp):
    app.clock.instant = datetime(2026, 11, 7, 23, 0, tzinfo=UTC)  # Saturday night
    dovecot.append(
        resident_mail(body="My elderly mother lives alone and has had no heating for a week."),
        when=datetime(2026, 11, 7, 22, 30, tzinfo=UTC),
    )
    run_once(app)
    [alert] = smtp.to(ALEX)  # Alex holds duty-officer
    msg = alert.message
    assert msg["Subject"].startswith("Priority: welfare concern: Pothole on Mill Lane [Ref: ")
    assert "welfare" in alert.text()
    # Each reason as the clerk reads it everywhere: "rule: what it found".
    assert '  - welfare: phrase "lives alone" in body\n' in alert.text()
    with app.sessions() as s:
        assert s.scalar(select(Case.priority)) == "high"
    assert len(to_residents(smtp)) == 1


def test_due_now_keeps_a_breach_alone():
    actions = [
        Action("reminder", date(2026, 4, 7), "r1"),
        Action("reminder", date(2026, 4, 8), "r0"),
        Action("breach", date(2026, 4, 9), "b"),
    ]
    assert due_now(actions, date(2026, 4, 20), None) == [actions[2]]
    assert due_now(actions, date(2026, 4, 8), None) == [actions[1]]
    assert due_now(actions, date(2026, 4, 8), date(2026, 4, 9)) == []
    assert due_now(actions, date(2026, 4, 6), None) == []


def test_a_pass_over_many_cases_owes_each_what_it_would_owe_alone(app, monkeypatch):
    """Cases sharing their dates are decided together and written in batches; each case
    still gets exactly what deciding it on its own gives, and a letter queued before is
    neither counted nor recorded again."""
    monkeypatch.setattr(scheduler, "BATCH", 7)  # several batches, groups split across them
    now = app.clock.now()
    today = date(2026, 11, 3)
    policy = app.policy
    subjects = ["", 'Bins "again" \\ café', "Pothole"]
    names = ["", "Zoë O'Brien", 'Sam "Sammy" Smith']
    officers = [ALEX, None, "left.in.june@council.example.gov.uk"]  # known, none, unknown
    # Response dates from a week ago to a week ahead, each with the scheduler last having
    # looked at the case today, yesterday or days ago (as if mailbot had been stopped).
    grid = [(due, back) for due in range(-5, 8) for back in (0, 1, 2, 4, 7)]
    with app.sessions.begin() as s:
        for n, (due_in, looked_back) in enumerate(grid * 2):
            category = ("enquiry", "complaint", "foi")[n % 3]
            respond_by = calendar_for(policy, category).add_working_days(today, due_in)
            case = Case(
                ref=f"T-{n:04d}",
                category=category,
                stage=1,
                status="closed" if n % 17 == 0 else "open",
                priority="normal",
                policy="stafford",
                resident_email=f"r{n}@example.com",
                resident_name=names[n % 3],
                subject=subjects[n % 3],
                first_message_id=f"<m{n}@example.com>",
                officer_email=officers[n % 3 if n < len(grid) else 0],
                officer_name="Alex Morgan",
                role="customer-services",
                received_at=now - timedelta(days=30),
                acknowledge_by=respond_by,
                respond_by=respond_by,
                holding_until=respond_by + timedelta(days=15) if n % 7 == 0 else None,
                holding_reason="we are waiting for a contractor" if n % 5 == 0 else None,
                breached_at=now - timedelta(days=30) if n % 4 == 0 else None,
                clock_stopped=n % 13 == 0,
                reasons=[],
            )
            schedule(case, policy, today - timedelta(days=looked_back))
            s.add(case)
    with app.sessions() as s:
        before = {c.ref: c for c in s.scalars(select(Case))}
        for c in before.values():
            s.expunge(c)

    # What each case is owed, decided case by case.
    expected: dict[str, tuple[str, str, str]] = {}  # key -> (ref, kind, recipient)
    next_on, breached_at = {}, {}
    for ref, case in before.items():
        next_on[ref], breached_at[ref] = case.next_action_on, case.breached_at
        due = case.next_action_on is not None and case.next_action_on <= today
        if case.status != "open" or case.clock_stopped or not due:
            continue
        stage = policy.stage(case.category, case.stage)
        actions = case_actions(case, stage, calendar_for(policy, case.category))
        for action in due_now(actions, today, case.next_action_on):
            if action.kind == "reminder" and case.officer_email == ALEX:
                expected[action.key] = (ref, "reminder", ALEX)
            elif action.kind == "holding":
                expected[action.key] = (ref, "holding", case.resident_email)
            elif action.kind == "breach":
                for officer in holders(app.cfg, stage.on_breach)[1]:
                    expected[f"{action.key}:{officer.email}"] = (ref, "breach", officer.email)
                breached_at[ref] = case.breached_at or now
        next_on[ref] = next_action_date(actions, today)
    assert {kind for _, kind, _ in expected.values()} == {"reminder", "holding", "breach"}

    # One letter was queued before (say, by a pass that stopped just after): not again.
    first = min(expected)
    ref, kind, to = expected[first]
    with app.sessions.begin() as s:
        case_id = s.scalar(select(Case.id).where(Case.ref == ref))
        letter = Letter(kind=kind, template=kind, recipient=to, subject="", audience="staff")
        queue(s, [(first, letter, case_id)], mailbox_address=COUNCIL, now=now)

    assert run_due(app) == len(expected) - 1
    rows = [r for r in outbox(app) if r.kind != "digest"]
    assert {r.key: (r.kind, r.recipient) for r in rows} == {
        key: (kind, to) for key, (_, kind, to) in expected.items()
    }
    with app.sessions() as s:
        after = {c.ref: c for c in s.scalars(select(Case))}
        for ref, case in after.items():
            assert case.next_action_on == next_on[ref], ref
            assert case.breached_at == breached_at[ref], ref
            owed = [kind for key, (r, kind, _) in expected.items() if r == ref and key != first]
            # Only a breach goes in the history when queued; letters go in when sent.
            recorded = [e.kind for e in case.events]
            assert recorded == ["escalated" for kind in owed if kind == "breach"], ref
    assert run_due(app) == 0

    # The resident's own words come back from the outbox exactly: quotes, accents and all.
    for row in rows:
        if row.key == first:
            continue
        case = before[expected[row.key][0]]
        letter = Letter.from_json(row.letter)
        assert letter.subject == subject_for(row.kind, case)
        if row.kind == "holding":
            assert (letter.to_name, letter.in_reply_to) == (
                case.resident_name,
                case.first_message_id,
            )
            assert letter.extra["reason"] == case.holding_reason
            msg = written(app, row)
            assert msg["To"].addresses[0].display_name == case.resident_name
            assert msg["In-Reply-To"] == case.first_message_id


def test_a_reloaded_policy_is_never_read_through_the_old_ones_dates():
    """The plan cache is keyed by object id; a stage that takes a freed stage's address
    after a policy reload must get its own dates, not the old stage's."""
    policy = load_policy("stafford")
    calendar = calendar_for(policy, "enquiry")
    old = policy.stage("enquiry")
    new = old.model_copy(update={"reminders": [Offset.parse("5 working days before")]})
    due = date(2026, 11, 20)
    # What a freed stage at `new`'s address would have left behind.
    planning._PLANS[(id(new), id(calendar), due, True)] = (
        old,
        calendar,
        planning._plan(old, calendar, due, True),
    )
    reminders = [
        on for kind, on, _ in planning._plan(new, calendar, due, True) if kind == "reminder"
    ]
    assert reminders == [date(2026, 11, 13)]  # five working days before Friday 20 November
