"""Keeping promises: reminders, holding replies, breaches and the digest, as the clock moves."""

from __future__ import annotations

from datetime import UTC, date, datetime
from email import message_from_bytes as _parse
from email.message import EmailMessage
from email.policy import default as modern

import pytest
from sqlalchemy import select

from mailbot.daemon import run_once
from mailbot.letters import render
from mailbot.outbox import flush
from mailbot.parse import parse_message
from mailbot.pipeline import open_case
from mailbot.scheduler import Action, case_actions, due_now, run_due
from mailbot.store import Case, OutboxMessage
from tests.conftest import resident_mail, to_residents

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
        raw = render(app, session, session.get(OutboxMessage, row.id)).as_bytes()
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


def test_each_point_fires_once_to_the_right_people_at_the_right_time(app):
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
    assert "#responded" in text and "#extend N" in text

    # Run again, and again after a "restart": nothing new.
    assert at(app, datetime(2026, 4, 1, 8, 30, tzinfo=UTC)) == 0
    assert at(app, datetime(2026, 4, 2, 12, 0, tzinfo=UTC)) == 0
    assert len(outbox(app, "reminder")) == 1

    # Tue 7 Apr (after Easter): the holding reply to the resident and the second reminder.
    assert at(app, datetime(2026, 4, 7, 10, 0, tzinfo=UTC)) == 2
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
    assert at(app, datetime(2026, 4, 9, 10, 0, tzinfo=UTC)) == 1
    assert at(app, datetime(2026, 4, 10, 10, 0, tzinfo=UTC)) == 0
    [breach] = outbox(app, "breach")
    assert breach.recipient == JORDAN
    with app.sessions() as s:
        case = s.scalar(select(Case).where(Case.ref == ref))
        assert case.breached_at == datetime(2026, 4, 9, 10, 0, tzinfo=UTC)
        assert case.next_action_on is None
        kinds = [e.kind for e in case.events]
    assert kinds.count("reminder") == 3
    assert kinds.count("escalated") == 1


def test_missed_points_while_stopped_send_only_the_latest(app):
    new_case(app, datetime(2026, 3, 30, 9, 0, tzinfo=UTC))
    # mailbot was down from Mon 30 Mar until Wed 8 Apr: one reminder (the due-date one)
    # and the holding reply, not three reminders at once.
    assert at(app, datetime(2026, 4, 8, 10, 0, tzinfo=UTC)) == 2
    assert [r.key.split(":")[-1] for r in outbox(app, "reminder")] == ["0"]
    assert len(outbox(app, "holding")) == 1


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
