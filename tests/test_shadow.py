"""Shadow mode: a trial on the live mailbox that sends residents and officers nothing,
then going live without a backlog (issue 22, point 1)."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, update

from mailbot.cli import main
from mailbot.shadow import (
    LIVE,
    SENT_IN_SHADOW,
    Mode,
    day_began,
    decide,
    switch,
    would_have_sent,
)
from mailbot.store import (
    Case,
    CaseEvent,
    FolderState,
    InboundMessage,
    OutboxMessage,
    OutboxStatus,
    ShadowPeriod,
)
from tests.conftest import COUNCIL, council_config, resident_mail, to_residents

ALEX = "alex.morgan@council.example.gov.uk"  # customer-services: handles enquiries
JORDAN = "jordan.reid@council.example.gov.uk"  # customer-services-manager: told on breach
CHRIS = "chris.lee@council.example.gov.uk"  # clerk: gets the digest

TRIAL = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
LIVE_AT = datetime(2026, 11, 9, 10, 0, tzinfo=UTC)  # Monday, after a weekend's gap


# --- the decision, without servers -----------------------------------------------------------

RESIDENT_AND_OFFICER_KINDS = (
    "acknowledgement",
    "holding",
    "reminder",
    "breach",
    "welfare-alert",
    "follow-up",
    "assigned",
    "refused",
    "command-confirmation",
    "fees-lapsed",
    "clarification",
    "extension",
    "stage-change",
)


@pytest.mark.parametrize("kind", RESIDENT_AND_OFFICER_KINDS)
def test_in_shadow_nothing_to_residents_or_officers_is_sent(kind):
    decision = decide(kind, TRIAL, Mode(shadow=True, since=TRIAL))
    assert decision.status is OutboxStatus.SHADOW
    assert not decision.sent
    assert decision.reason == "shadow mode: recorded, not sent"


@pytest.mark.parametrize("kind", sorted(SENT_IN_SHADOW))
def test_in_shadow_the_clerks_mail_about_mailbot_still_goes(kind):
    assert decide(kind, TRIAL, Mode(shadow=True, since=TRIAL)).status is OutboxStatus.PENDING


def test_the_clerks_mail_that_goes_in_shadow_is_exactly_the_digest_alerts_and_tests():
    assert {"digest", "health", "template-problem", "test"} == SENT_IN_SHADOW


@pytest.mark.parametrize("kind", RESIDENT_AND_OFFICER_KINDS)
def test_never_in_shadow_everything_goes(kind):
    assert decide(kind, TRIAL, LIVE).status is OutboxStatus.PENDING


def test_after_the_trial_what_fell_due_before_going_live_is_kept_and_the_rest_goes():
    mode = Mode(shadow=False, since=TRIAL, live_since=LIVE_AT)
    before = decide("holding", LIVE_AT - timedelta(seconds=1), mode)
    assert before.status is OutboxStatus.SHADOW
    assert before.reason == (
        "not sent: it fell due at 2026-11-09T09:59+00:00, during the shadow trial, "
        "before mailbot went live at 2026-11-09T10:00+00:00"
    )
    assert decide("holding", LIVE_AT, mode).status is OutboxStatus.PENDING
    assert decide("acknowledgement", LIVE_AT + timedelta(days=3), mode).sent
    # The digest of the first live day goes whenever it fell due.
    assert decide("digest", LIVE_AT - timedelta(days=1), mode).sent


def test_a_scheduled_day_falls_due_at_its_start_where_the_council_is():
    # Winter: midnight in London is midnight UTC; summer: 23:00 UTC the day before.
    assert day_began(date(2026, 11, 9), "Europe/London") == datetime(2026, 11, 9, 0, 0, tzinfo=UTC)
    assert day_began(date(2026, 7, 1), "Europe/London") == datetime(2026, 6, 30, 23, 0, tzinfo=UTC)


def test_the_history_line_says_what_would_have_gone_and_why_not():
    decision = decide("acknowledgement", TRIAL, Mode(shadow=True, since=TRIAL))
    assert would_have_sent("acknowledgement", "jane@example.com", decision) == (
        "would have sent acknowledgement to jane@example.com (shadow mode: recorded, not sent)"
    )


def test_mode_descriptions():
    assert LIVE.describe() == "live"
    assert Mode(True, TRIAL).describe() == "shadow mode since 2026-11-02T10:00+00:00"
    assert Mode(False, TRIAL, LIVE_AT).describe() == (
        "live since 2026-11-09T10:00+00:00 (shadow trial from 2026-11-02T10:00+00:00)"
    )


# --- a week in shadow, then live: real Dovecot, real SMTP, both databases ---------------------

RESIDENTS = {
    # name: (arrived, subject, body): plain enquiries, each to Alex Morgan
    "alice": (
        datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
        "Broken street light on Elm Road",
        "The street light outside 12 Elm Road has not worked for a week. When will it be repaired?",
    ),
    "bob": (
        datetime(2026, 11, 3, 9, 0, tzinfo=UTC),
        "Pothole on Mill Lane",
        "Could you tell me when the pothole outside 4 Mill Lane will be repaired?",
    ),
    "carol": (
        datetime(2026, 11, 4, 9, 0, tzinfo=UTC),
        "Graffiti on the bus shelter",
        "When will the graffiti on the bus shelter in Park Road be removed?",
    ),
    "dave": (
        datetime(2026, 11, 5, 9, 0, tzinfo=UTC),
        "Parking permit renewal",
        "How do I renew my residents' parking permit?",
    ),
    "erin": (
        datetime(2026, 11, 6, 9, 0, tzinfo=UTC),
        "Allotment waiting list",
        "How do I join the waiting list for an allotment?",
    ),
}
FRANK = (
    datetime(2026, 11, 7, 12, 0, tzinfo=UTC),  # Saturday: nothing runs
    "Bulky waste collection",
    "How do I book a bulky waste collection for an old sofa?",
)
GRACE = (
    datetime(2026, 11, 9, 10, 30, tzinfo=UTC),  # Monday, after going live
    "Dropped kerb",
    "How do I apply for a dropped kerb outside my house?",
)


def address(name: str) -> str:
    return f"{name}@example.com"


def deliver(dovecot, name: str, arrived: datetime, subject: str, body: str) -> None:
    raw = resident_mail(
        sender=address(name),
        name=name.title(),
        subject=subject,
        body=body,
        message_id=f"<{name}.{arrived:%Y%m%d%H%M}@example.com>",
        when=arrived,
    )
    dovecot.append(raw, arrived)


def run(config, when: datetime, *flags: str) -> None:
    assert main(["--config", str(config), "run", "--once", *flags, "--now", when.isoformat()]) == 0


def captured(smtp) -> list[tuple[str, str]]:
    """(recipient, subject) of every message the SMTP server has taken, in order."""
    with smtp.lock:
        return [(m.rcpt_tos[0], m.message["Subject"]) for m in smtp.messages]


def cases_by_resident(app) -> dict[str, Case]:
    with app.sessions() as s:
        return {c.resident_email.split("@")[0]: c for c in s.scalars(select(Case))}


def outbox_rows(app) -> list[OutboxMessage]:
    with app.sessions() as s:
        return list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def digest_text(smtp, index: int = -1) -> str:
    with smtp.lock:
        digests = [m for m in smtp.messages if m.rcpt_tos == [CHRIS]]
    return digests[index].text()


@pytest.mark.integration
def test_a_week_in_shadow_then_live_sends_nothing_for_the_shadow_week_and_everything_after(
    app, config_path, dovecot, smtp, capsys
):
    # Mon 2 to Fri 6 November: a resident writes each morning; mailbot runs at 10:00 in
    # shadow, as `mailbot run --once --shadow` from cron would.
    days = [TRIAL + timedelta(days=n) for n in range(5)]
    for day, (name, mail) in zip(days, RESIDENTS.items(), strict=True):
        deliver(dovecot, name, *mail)
        run(config_path, day, "--shadow")
        # Each working morning the clerk's digest, and nothing else, reaches anyone.
        assert [to for to, _ in captured(smtp)] == [CHRIS] * (days.index(day) + 1)
    assert to_residents(smtp) == []
    assert (
        captured(smtp)[0][1]
        == "Shadow mode: Open cases on Monday 2 November 2026: 1 open, 0 overdue"
    )

    # Everything was decided and recorded: five cases, each acknowledgement kept unsent.
    cases = cases_by_resident(app)
    assert sorted(cases) == sorted(RESIDENTS)
    assert all(c.acknowledged_at is None for c in cases.values())
    rows = outbox_rows(app)
    kept = [(r.kind, r.recipient) for r in rows if r.status == OutboxStatus.SHADOW]
    assert sorted(kept) == sorted(
        [("acknowledgement", address(name)) for name in RESIDENTS]
        + [("reminder", ALEX)] * 4  # alice Wed 4 and Fri 6, bob Thu 5, carol Fri 6
        + [("holding", address("alice"))]  # Fri 6, one working day before Mon 9
    )
    assert {r.status for r in rows if r.kind == "digest"} == {OutboxStatus.SENT}
    assert all(r.raw == b"" and r.sent_at is None for r in rows if r.status == "shadow")

    # Friday's digest says what would have gone since Thursday's, and when.
    friday = digest_text(smtp)
    assert (
        "SHADOW MODE: mailbot reads the mailbox and records everything, but sends nothing to\n"
        "residents or officers. Since the last digest it would have sent 4 messages:\n"
    ) in friday
    refs = {name: case.ref for name, case in cases.items()}
    for line in (
        f"  Fri 06 Nov 10:00  acknowledgement       to erin@example.com  case {refs['erin']}",
        f"  Fri 06 Nov 10:00  holding               to alice@example.com  case {refs['alice']}",
        f"  Fri 06 Nov 10:00  reminder              to {ALEX}  case {refs['alice']}",
        f"  Fri 06 Nov 10:00  reminder              to {ALEX}  case {refs['carol']}",
    ):
        assert line in friday

    # The case says what would have gone, on the command line and as JSON.
    capsys.readouterr()
    assert main(["--config", str(config_path), "case", refs["alice"]]) == 0
    shown = capsys.readouterr().out
    assert (
        "  2026-11-02T10:00:00+00:00  would-have-sent  would have sent acknowledgement to "
        "alice@example.com (shadow mode: recorded, not sent)"
    ) in shown
    assert main(["--config", str(config_path), "case", refs["alice"], "--json"]) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    assert [e["detail"] for e in events if e["kind"] == "would-have-sent"] == [
        "would have sent acknowledgement to alice@example.com (shadow mode: recorded, not sent)",
        f"would have sent reminder to {ALEX} (shadow mode: recorded, not sent)",
        "would have sent holding to alice@example.com (shadow mode: recorded, not sent)",
        f"would have sent reminder to {ALEX} (shadow mode: recorded, not sent)",
    ]
    assert [e["kind"] for e in events].count("acknowledged") == 0

    # Nothing runs over the weekend; Frank writes on Saturday, while the trial still stands.
    deliver(dovecot, "frank", *FRANK)
    # The server renumbers the folder before going live (a new UIDVALIDITY: what the trial
    # read was recorded under the old one), so live reads it all again: what the trial
    # read must be found a duplicate, by Message-ID, not acknowledged now.
    with app.sessions.begin() as s:
        s.execute(update(FolderState).values(uidvalidity=FolderState.uidvalidity - 1))
        s.execute(update(InboundMessage).values(uidvalidity=InboundMessage.uidvalidity - 1))
    before = len(captured(smtp))

    # Monday 9 November, 10:00: live.
    run(config_path, LIVE_AT)
    with app.sessions() as s:
        [period] = s.scalars(select(ShadowPeriod)).all()
        assert (period.began_at, period.ended_at) == (TRIAL, LIVE_AT)
        reread = s.execute(
            select(InboundMessage.from_addr, InboundMessage.outcome)
            .where(InboundMessage.processed_at == LIVE_AT, InboundMessage.folder.endswith("INBOX"))
            .order_by(InboundMessage.uid)
        ).all()
    assert [tuple(row) for row in reread] == [
        *((address(name), "duplicate") for name in RESIDENTS),
        (address("frank"), "case-opened"),
    ]
    # Only the digest went: Frank's acknowledgement fell due on Saturday, in the trial,
    # and Monday's holding reply and reminders fell due at midnight, before going live.
    assert captured(smtp)[before:] == [
        (CHRIS, "Open cases on Monday 9 November 2026: 6 open, 0 overdue")
    ]
    monday = digest_text(smtp)
    assert (
        "Not sent, because they fell due during the shadow trial, before mailbot went live: 5."
        in monday
    )
    cases = cases_by_resident(app)
    refs = {name: case.ref for name, case in cases.items()}
    for line in (
        f"  Mon 09 Nov 10:00  acknowledgement       to frank@example.com  case {refs['frank']}",
        f"  Mon 09 Nov 10:00  holding               to bob@example.com  case {refs['bob']}",
        f"  Mon 09 Nov 10:00  reminder              to {ALEX}  case {refs['alice']}",
        f"  Mon 09 Nov 10:00  reminder              to {ALEX}  case {refs['bob']}",
        f"  Mon 09 Nov 10:00  reminder              to {ALEX}  case {refs['dave']}",
    ):
        assert line in monday
    assert "SHADOW MODE" not in monday
    with app.sessions() as s:
        frank_event = s.scalar(
            select(CaseEvent.detail).where(
                CaseEvent.case_id == cases["frank"].id, CaseEvent.kind == "would-have-sent"
            )
        )
    assert frank_event == (
        "would have sent acknowledgement to frank@example.com (not sent: it fell due at "
        "2026-11-07T12:00+00:00, during the shadow trial, before mailbot went live at "
        "2026-11-09T10:00+00:00)"
    )

    # New mail after going live is acknowledged, once.
    deliver(dovecot, "grace", *GRACE)
    run(config_path, datetime(2026, 11, 9, 11, 0, tzinfo=UTC))
    run(config_path, datetime(2026, 11, 9, 11, 5, tzinfo=UTC))  # and again: nothing new
    grace_ref = cases_by_resident(app)["grace"].ref
    assert captured(smtp)[before + 1 :] == [
        (address("grace"), f"Re: Dropped kerb [Ref: {grace_ref}]")
    ]

    # Tuesday 10 November: what falls due now goes, to the right people, once each.
    run(config_path, datetime(2026, 11, 10, 10, 0, tzinfo=UTC))
    tuesday = captured(smtp)[before + 2 :]
    recipients = sorted(to for to, _ in tuesday)
    assert recipients == sorted(
        [
            address("carol"),  # her holding reply, one working day before Wed 11
            JORDAN,  # alice's response date (Mon 9) missed
            ALEX,  # reminders on the due date: bob (Tue 10)
            ALEX,  # carol: one working day before
            ALEX,  # erin: three working days before Fri 13
            ALEX,  # frank: three working days before Fri 13
            CHRIS,  # the digest
        ]
    )
    assert (address("carol"), f"Re: Graffiti on the bus shelter [Ref: {refs['carol']}]") in tuesday
    # In all, residents got exactly two messages: Grace's acknowledgement and Carol's
    # holding reply; no one from the shadow week was acknowledged.
    assert sorted(m.rcpt_tos[0] for m in to_residents(smtp)) == [
        address("carol"),
        address("grace"),
    ]
    with app.sessions() as s:
        breaches = s.scalars(
            select(CaseEvent.detail).where(
                CaseEvent.case_id == cases["alice"].id, CaseEvent.kind == "escalated"
            )
        ).all()
    assert breaches == ["response date 2026-11-09 missed; told customer-services-manager"]
    acks = [r for r in outbox_rows(app) if r.kind == "acknowledgement"]
    assert sorted((r.recipient, r.status) for r in acks) == sorted(
        [(address(n), "shadow") for n in (*RESIDENTS, "frank")] + [(address("grace"), "sent")]
    )

    # The month's report leaves out the six cases the trial recorded (mailbot sent them
    # nothing: counted, each would be a promise to acknowledge broken) and says so.
    capsys.readouterr()
    assert (
        main(
            [
                "--config",
                str(config_path),
                "report",
                "--from",
                "2026-11-01",
                "--to",
                "2026-11-30",
                "--format",
                "json",
                "--now",
                "2026-11-10T12:00:00+00:00",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["left_out_shadow"] == 6
    assert report["total"]["received"] == 1  # Grace's
    assert report["total"]["acknowledged_on_time"] == 1
    assert report["total"]["acknowledged_on_time_pct"] == 100.0
    assert (
        main(
            [
                "--config",
                str(config_path),
                "report",
                "--from",
                "2026-11-01",
                "--to",
                "2026-11-30",
                "--now",
                "2026-11-10T12:00:00+00:00",
            ]
        )
        == 0
    )
    page = " ".join(capsys.readouterr().out.split())
    assert (
        "6 cases read during mailbot's shadow trial, when it sent nothing, are left out: "
        "they were answered the council's usual way."
    ) in page


@pytest.mark.integration
def test_the_config_switch_puts_mailbot_in_shadow_and_no_shadow_on_the_command_line_wins(
    tmp_path, dovecot, smtp, database_url
):
    config = council_config(tmp_path, dovecot, smtp, database_url)
    text = config.read_text().replace(
        'mailbox_address = "council@example.org"',
        'mailbox_address = "council@example.org"\nshadow = true',
    )
    config.write_text(text)
    arrived = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
    deliver(dovecot, "alice", arrived, *RESIDENTS["alice"][1:])
    run(config, datetime(2026, 11, 3, 10, 0, tzinfo=UTC))
    assert to_residents(smtp) == []
    assert [to for to, _ in captured(smtp)] == [CHRIS]

    # The command line wins over the config: live from 10:20. Bob writes after that.
    run(config, datetime(2026, 11, 3, 10, 20, tzinfo=UTC), "--no-shadow")
    deliver(dovecot, "bob", datetime(2026, 11, 3, 10, 30, tzinfo=UTC), *RESIDENTS["bob"][1:])
    run(config, datetime(2026, 11, 3, 11, 0, tzinfo=UTC), "--no-shadow")
    assert [m.rcpt_tos for m in to_residents(smtp)] == [[address("bob")]]

    from mailbot.app import App
    from mailbot.clock import FixedClock
    from mailbot.config import load_config

    app = App.load(load_config(config), FixedClock(arrived))
    try:
        with app.sessions() as s:
            periods = [(p.began_at, p.ended_at) for p in s.scalars(select(ShadowPeriod))]
            statuses = dict(
                s.execute(
                    select(OutboxMessage.recipient, OutboxMessage.status).where(
                        OutboxMessage.kind == "acknowledgement"
                    )
                ).all()
            )
    finally:
        app.engine.dispose()
    assert periods == [
        (datetime(2026, 11, 3, 10, 0, tzinfo=UTC), datetime(2026, 11, 3, 10, 20, tzinfo=UTC))
    ]
    assert statuses == {address("alice"): "shadow", address("bob"): "sent"}


def test_switching_records_each_trial_once(app):
    sessions, day = app.sessions, TRIAL
    assert switch(sessions, day, shadow=False) is None  # live, never in shadow
    assert switch(sessions, day, shadow=True).startswith("shadow mode from 2026-11-02T10:00")
    assert switch(sessions, day + timedelta(hours=1), shadow=True).startswith(
        "shadow mode, as since 2026-11-02T10:00"
    )
    assert switch(sessions, LIVE_AT, shadow=False) == (
        "live from 2026-11-09T10:00+00:00: the shadow trial since 2026-11-02T10:00+00:00 has "
        "ended; letters that fell due during it are not sent"
    )
    assert switch(sessions, LIVE_AT + timedelta(days=1), shadow=False) is None
    with app.sessions() as s:
        assert [(p.began_at, p.ended_at) for p in s.scalars(select(ShadowPeriod))] == [
            (TRIAL, LIVE_AT)
        ]


def release(config, ident: str, when: datetime, capsys) -> str:
    capsys.readouterr()
    code = main(["--config", str(config), "release", ident, "--now", when.isoformat()])
    assert code == 0
    return capsys.readouterr().out.strip()


@pytest.mark.integration
def test_a_release_in_shadow_sends_nothing_and_one_after_going_live_goes(
    app, config_path, dovecot, smtp, capsys
):
    # Two residents' messages held as spam during the trial.
    spam = {"X-Spam-Flag": "YES"}
    first = dovecot.append(
        resident_mail(sender=address("alice"), message_id="<a@example.com>", headers=spam),
        datetime(2026, 11, 3, 9, 0, tzinfo=UTC),
    )
    second = dovecot.append(
        resident_mail(sender=address("bob"), message_id="<b@example.com>", headers=spam),
        datetime(2026, 11, 3, 9, 5, tzinfo=UTC),
    )
    run(config_path, datetime(2026, 11, 3, 10, 0, tzinfo=UTC), "--shadow")

    # The clerk releases one during the trial: its case opens, nothing is sent.
    said = release(config_path, str(first), datetime(2026, 11, 3, 10, 30, tzinfo=UTC), capsys)
    assert said == (
        f"released {first} as ENQ-2026-00001; acknowledgement to alice@example.com "
        "recorded, not sent (shadow mode)"
    )
    assert to_residents(smtp) == []

    # Live from 11:00; a release now is the clerk's decision now, and its letter goes.
    run(config_path, datetime(2026, 11, 3, 11, 0, tzinfo=UTC))
    said = release(config_path, str(second), datetime(2026, 11, 3, 11, 30, tzinfo=UTC), capsys)
    assert said == f"released {second} as ENQ-2026-00002; acknowledgement to bob@example.com"
    assert [m.rcpt_tos for m in to_residents(smtp)] == [[address("bob")]]
    acks = {r.recipient: r.status for r in outbox_rows(app) if r.kind == "acknowledgement"}
    assert acks == {address("alice"): "shadow", address("bob"): "sent"}


@pytest.mark.integration
def test_the_console_shows_a_letter_kept_in_shadow_as_would_have_sent(tmp_path, database_url):
    from mailbot.outbox import Letter, queue
    from mailbot.web.roles import Role
    from mailbot.web.server import create_app
    from tests.console import CLERK, add_user, load, make_case, offline_config, sign_in

    app = load(offline_config(tmp_path, database_url))
    try:
        add_user(app, CLERK, Role.CLERK)
        make_case(app, "ENQ-2026-00001")
        at = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
        switch(app.sessions, at, shadow=True)
        with app.sessions.begin() as session:
            case = session.scalar(select(Case).where(Case.ref == "ENQ-2026-00001"))
            letter = Letter(
                kind="holding",
                template="holding",
                recipient="jane.doe@example.com",
                subject="Re: Bins",
                audience="resident",
            )
            queued = queue(
                session, [("holding:test", letter, case.id)], mailbox_address=COUNCIL, now=at
            )
        assert queued == {"holding:test"}
        client = create_app(app, key=b"k" * 32).test_client()
        sign_in(client, CLERK)
        page = client.get("/cases/ENQ-2026-00001").get_data(as_text=True)
    finally:
        app.engine.dispose()
    assert "holding to jane.doe@example.com: would have sent 3 Nov 2026 10:00 (not sent)" in page
    assert "<dt>Not sent</dt><dd>shadow mode: recorded, not sent</dd>" in page
    assert "Never sent: mailbot recorded it in shadow mode." in page
    assert (
        "<td>would-have-sent</td><td>would have sent holding to jane.doe@example.com "
        "(shadow mode: recorded, not sent)</td>"
    ) in page


@pytest.mark.integration
def test_a_breach_found_in_shadow_says_nobody_was_told_and_tells_nobody(app, smtp):
    from mailbot.intake.casework import open_case
    from mailbot.outbox.sending import flush
    from mailbot.parse import parse_message
    from mailbot.scheduler import run_due

    arrived = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # due Mon 9 November
    switch(app.sessions, arrived, shadow=True)
    with app.sessions.begin() as session:
        ref = open_case(app, session, parse_message(resident_mail()), arrived, arrived).ref
    app.clock.instant = datetime(2026, 11, 10, 11, 0, tzinfo=UTC)  # Tue 10: breached
    assert run_due(app) == 1  # the breach notice, queued (and the digest)
    flush(app)
    assert [m.rcpt_tos for m in smtp.messages] == [[CHRIS]]  # the digest alone
    with app.sessions() as s:
        case = s.scalar(select(Case).where(Case.ref == ref))
        history = [(e.kind, e.detail) for e in case.events if e.kind != "received"]
        assert case.breached_at == app.clock.instant
    assert history[-2:] == [
        (
            "would-have-sent",
            f"would have sent breach to {JORDAN} (shadow mode: recorded, not sent)",
        ),
        (
            "escalated",
            "response date 2026-11-09 missed; customer-services-manager not told (shadow)",
        ),
    ]


@pytest.mark.integration
def test_the_daemon_in_shadow_records_new_mail_and_sends_only_the_digest(
    app, config_path, dovecot, smtp
):
    from tests.conftest import mailbot, stop, wait_for

    proc = mailbot(config_path, "run", "--shadow", "--now", "2026-11-03T10:00:00+00:00")
    try:
        deliver(dovecot, "alice", *RESIDENTS["alice"])
        wait_for(lambda: any(r.kind == "acknowledgement" for r in outbox_rows(app)))
        wait_for(lambda: len(smtp.messages) == 1)  # the digest
        deliver(dovecot, "bob", *RESIDENTS["bob"])
        wait_for(lambda: len([r for r in outbox_rows(app) if r.kind == "acknowledgement"]) == 2)
        time.sleep(1.0)  # time for anything wrongly queued to go
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert "shadow mode from 2026-11-03T10:00" in err
    assert [m.rcpt_tos for m in smtp.messages] == [[CHRIS]]
    acks = {r.recipient: r.status for r in outbox_rows(app) if r.kind == "acknowledgement"}
    assert acks == {address("alice"): "shadow", address("bob"): "shadow"}
