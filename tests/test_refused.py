"""SMTP refusals sorted by cause, against a real aiosmtpd answering as Postfix and Microsoft
365 do: a refusal of our account pauses sending, tells the clerk and heals by itself; a
refusal of one recipient fails that message alone, and the clerk can see and resend it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mailbot.app import App
from mailbot.cli import main
from mailbot.clock import FixedClock
from mailbot.config import load_config
from mailbot.daemon import run_once
from mailbot.devservers import Account, LocalDovecot, SmtpCapture, local_config
from mailbot.migrations import upgrade
from mailbot.outbox.sending import SendingPaused
from mailbot.problems import open_problems
from mailbot.store import Case, CaseEvent, OutboxMessage, Problem
from tests.conftest import COUNCIL, START_FROM, council_config, resident_mail, to_residents

pytestmark = pytest.mark.integration

ARRIVED = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
CLERK = "chris.lee@council.example.gov.uk"


def deliver(account: Account, who: list[str]) -> None:
    for n, sender in enumerate(who):
        raw = resident_mail(sender=sender, message_id=f"<{sender}>", subject=f"Question {n}")
        account.append(raw, when=ARRIVED)


def acked(smtp: SmtpCapture) -> list[str]:
    return sorted(m.rcpt_tos[0] for m in to_residents(smtp))


def rows(app: App, kind: str | None = None) -> list[OutboxMessage]:
    with app.sessions() as s:
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        if kind:
            query = query.where(OutboxMessage.kind == kind)
        return list(s.scalars(query))


def clerk_heard(smtp: SmtpCapture) -> list[str]:
    return [m.message["Subject"] for m in smtp.to(CLERK) if "mailbot" in m.message["Subject"]]


def events(app: App, kind: str) -> list[str]:
    with app.sessions() as s:
        return list(s.scalars(select(CaseEvent.detail).where(CaseEvent.kind == kind)))


# Refusals that say our account, sender address or this server is wrong, each at the
# step where its server gives it.
ACCOUNT_REFUSALS = {
    "postfix-not-owned": (
        "refuse", "553 5.7.1 <council@example.org>: Sender address rejected: not owned by user"
    ),
    "postfix-client-host": ("refuse", "554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: "
                            "Access denied"),
    "postfix-relay": ("refuse", "554 5.7.1 <r0@example.com>: Relay access denied"),
    "m365-not-authenticated": ("refuse_mail", "530 5.7.57 Client not authenticated to send mail"),
}  # fmt: skip


@pytest.mark.parametrize("refusal", ACCOUNT_REFUSALS, ids=list(ACCOUNT_REFUSALS))
def test_a_refusal_of_our_account_pauses_sending_then_everything_goes_once(
    app, dovecot, smtp, refusal, capsys
):
    who = ["r0@example.com", "r1@example.com", "r2@example.com"]
    deliver(dovecot, who)
    knob, reply = ACCOUNT_REFUSALS[refusal]
    setattr(smtp, knob, reply)

    with pytest.raises(SendingPaused, match=r"refuses to send mail from council@example\.org"):
        run_once(app)  # `run --once` exits 2

    # Nothing failed, nothing charged an attempt: every message waits for the fix.
    assert acked(smtp) == []
    assert {(r.status, r.attempts) for r in rows(app, "acknowledgement")} == {("paused", 0)}
    with app.sessions() as s:
        [problem] = open_problems(s)
    assert problem.detail.endswith(reply.split(" ", 1)[1])
    # The clerk's alert is written (it waits too: it would come from the refused address).
    assert {r.kind: r.status for r in rows(app)}["health"] == "paused"
    # And the sysadmin can see why: `mailbot outbox list` says so first.
    assert main(["--config", str(app.cfg.source), "outbox", "list"]) == 0
    listing = capsys.readouterr().out
    assert listing.startswith("Sending is paused since")
    assert reply.split(" ", 1)[1] in listing

    # Still refused an hour later: still waiting, still nothing failed.
    app.clock.advance(timedelta(hours=1))
    with pytest.raises(SendingPaused):
        run_once(app)
    assert {r.status for r in rows(app, "acknowledgement")} == {"paused"}

    setattr(smtp, knob, None)  # the sysadmin fixes it
    app.clock.advance(timedelta(minutes=1))
    run_once(app)

    assert acked(smtp) == who  # each resident once
    assert {r.status for r in rows(app)} == {"sent"}
    heard = clerk_heard(smtp)
    assert heard[0].startswith("mailbot cannot send mail: the SMTP server refuses it")
    assert heard[1].startswith("mailbot is sending mail again")
    with app.sessions() as s:
        assert open_problems(s) == []
        assert s.scalar(select(Problem.resolved_at)) == app.clock.now()


def test_a_refused_recipient_fails_that_message_alone_and_can_be_resent(
    app, config_path, dovecot, smtp, capsys
):
    deliver(dovecot, ["gone@example.com", "here@example.com"])
    smtp.refuse_rcpt["gone@example.com"] = (
        "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown in local "
        "recipient table"
    )
    run_once(app)  # nothing about our account: exit 0

    assert acked(smtp) == ["here@example.com"]
    failed = {r.recipient: r for r in rows(app, "acknowledgement")}["gone@example.com"]
    assert failed.status == "failed"
    # In the case's history, with what to do about it...
    [event] = events(app, "send-failed")
    assert event.startswith(
        "acknowledgement to gone@example.com not sent: SMTP 550 5.1.1 <gone@example.com>: "
        "Recipient address rejected"
    )
    assert f"mailbot outbox resend {failed.id}" in event
    # ... in the clerk's digest (written as it is sent, after the refusal) ...
    [digest] = [m for m in smtp.to(CLERK) if m.message["Subject"].startswith("Open cases")]
    assert (
        f"ID {failed.id}  failed  acknowledgement to gone@example.com  case ENQ-2026-0000"
        in digest.text()
    )
    # ... in `mailbot case` ...
    with app.sessions() as s:
        ref = s.scalar(select(Case.ref).where(Case.resident_email == "gone@example.com"))
    assert main(["--config", str(config_path), "case", ref]) == 0
    assert "send-failed" in capsys.readouterr().out
    # ... and in `mailbot outbox list`.
    assert main(["--config", str(config_path), "outbox", "list"]) == 0
    listing = capsys.readouterr().out
    assert f"{failed.id}" in listing and "gone@example.com" in listing and "failed" in listing

    # The resident's mailbox is back; the clerk resends it, and it goes once.
    del smtp.refuse_rcpt["gone@example.com"]
    now = app.clock.now().isoformat()
    resend = ["--config", str(config_path), "outbox", "resend", str(failed.id), "--now", now]
    assert main(resend) == 0
    run_once(app)
    assert acked(smtp) == ["gone@example.com", "here@example.com"]
    run_once(app)
    assert acked(smtp) == ["gone@example.com", "here@example.com"]


def test_a_wrong_smtp_password_pauses_sending_until_it_is_corrected(
    tmp_path, dovecot, database_url
):
    smtp = SmtpCapture(password="right").start()
    try:
        secret = tmp_path / "smtp-password"
        secret.write_text("wrong\n")
        path = council_config(
            tmp_path,
            dovecot,
            smtp,
            database_url,
            smtp_extra=f'username = "{COUNCIL}"\npassword_file = "{secret}"\n',
        )
        app = App.load(load_config(path), FixedClock(datetime(2026, 11, 3, 10, 0, tzinfo=UTC)))
        deliver(dovecot, ["r0@example.com", "r1@example.com"])
        with pytest.raises(SendingPaused, match="refuses mailbot: 535"):
            run_once(app)
        assert {(r.status, r.attempts) for r in rows(app, "acknowledgement")} == {("paused", 0)}

        secret.write_text("right\n")
        run_once(app)
        assert acked(smtp) == ["r0@example.com", "r1@example.com"]
        assert {r.status for r in rows(app)} == {"sent"}
        app.engine.dispose()
    finally:
        smtp.stop()


@pytest.fixture
def two_mailboxes(
    tmp_path: Path, dovecot: Account, dovecot_server: LocalDovecot, smtp: SmtpCapture, database_url
) -> Iterator[tuple[App, Account]]:
    foi = dovecot_server.add_account(f"foi-{uuid.uuid4().hex[:10]}@example.org")
    secret = tmp_path / "foi-password"
    secret.write_text(foi.password + "\n")
    path = local_config(
        tmp_path,
        dovecot,
        smtp,
        mailbox_address=COUNCIL,
        database_url=database_url,
        start_from=START_FROM,
        extra=f"""
[[mailboxes]]
address = "{foi.user}"
username = "{foi.user}"
password_file = "{secret}"
default_category = "foi"
""",
    )
    upgrade(database_url)
    app = App.load(load_config(path), FixedClock(datetime(2026, 11, 3, 10, 0, tzinfo=UTC)))
    yield app, foi
    app.engine.dispose()


def test_send_as_refused_for_one_mailbox_pauses_only_its_mail_and_the_clerk_hears_at_once(
    two_mailboxes, dovecot, smtp
):
    app, foi = two_mailboxes
    deliver(dovecot, ["enquirer@example.com"])
    deliver(foi, ["requester@example.com"])
    # Microsoft 365 refuses a From it may not send as, after DATA.
    smtp.refuse_data_from[foi.user] = (
        "550 5.7.60 SMTP; Client does not have permissions to send as this sender"
    )
    with pytest.raises(SendingPaused, match=f"refuses to send mail from {foi.user}"):
        run_once(app)

    assert acked(smtp) == ["enquirer@example.com"]  # enquiries@ mail goes on
    # The clerk is told while it lasts: their mail comes from enquiries@, which works.
    assert clerk_heard(smtp) == ["mailbot cannot send mail: the SMTP server refuses it"]
    told = next(m for m in smtp.to(CLERK) if "refuses it" in m.message["Subject"])
    assert f"send mail from {foi.user}: 550 5.7.60" in " ".join(told.text().split())

    del smtp.refuse_data_from[foi.user]  # Send As granted
    app.clock.advance(timedelta(minutes=5))
    run_once(app)
    assert acked(smtp) == ["enquirer@example.com", "requester@example.com"]
    assert clerk_heard(smtp)[-1] == "mailbot is sending mail again"
    assert {r.status for r in rows(app)} == {"sent"}


def digest_with_problem(app, key: str, kind: str, detail: str) -> str:
    """The clerk's digest once one problem is open."""
    from mailbot.letters import digest_context
    from mailbot.problems import ProblemKind, report

    now = app.clock.now()
    with app.sessions.begin() as session:
        report(session, key, ProblemKind(kind), detail, now)
    with app.sessions() as session:
        context = digest_context(app, session, now.date())
    return app.templates.render("digest", context).text


def test_the_digest_leads_with_what_stops_mail(app):
    detail = "the SMTP server refuses to send mail from foi@example.org: 550 5.7.60 denied"
    text = digest_with_problem(app, "sending:foi@example.org", "sending-refused", detail)
    assert text.startswith(
        "MAILBOT NEEDS ATTENTION: until this is fixed, mail is held up.\n"
        f"  Since Tue 03 Nov 10:00: {detail}\n"
        "Please pass this to whoever looks after the mailbot server.\n"
    )


def test_the_digest_does_not_say_mail_is_held_up_when_only_copies_are_not_filed(app):
    detail = "copies of sent mail cannot be filed in Sent: cannot reach the mailbox"
    text = digest_with_problem(app, "sent-copy:foi@example.org", "sent-copy-failing", detail)
    assert text.startswith(f"MAILBOT NEEDS ATTENTION.\n  Since Tue 03 Nov 10:00: {detail}\n")
    assert "held up" not in text


def test_a_bounce_of_our_acknowledgement_joins_its_case(app, config_path, dovecot, smtp, capsys):
    from tests.test_bounces import OURS, POSTFIX

    deliver(dovecot, ["gone@example.com"])
    run_once(app)
    [ack] = rows(app, "acknowledgement")
    assert ack.status == "sent"
    report = POSTFIX.replace(OURS, ack.message_id).replace("\n", "\r\n").encode()
    dovecot.append(report, when=ARRIVED + timedelta(minutes=5))
    app.clock.advance(timedelta(minutes=10))
    run_once(app)

    [ack] = rows(app, "acknowledgement")
    assert (ack.status, ack.last_error) == (
        "bounced",
        "bounced: 5.1.1 smtp; 550 5.1.1 <gone@example.com>: Recipient address rejected: User "
        "unknown in virtual mailbox table",
    )
    with app.sessions() as s:
        case = s.scalar(select(Case))
        assert case.acknowledged_at is None  # the case no longer reads "acknowledged"
        ref = case.ref
    [event] = events(app, "bounced")
    assert event.startswith("acknowledgement to gone@example.com bounced: 5.1.1 smtp; 550")
    assert main(["--config", str(config_path), "case", ref]) == 0
    assert "bounced" in capsys.readouterr().out
    assert main(["--config", str(config_path), "outbox", "list"]) == 0
    assert f"\n{ack.id}   bounced  acknowledgement  {ref}" in capsys.readouterr().out
    assert acked(smtp) == ["gone@example.com"]  # and nothing was sent to the report

    # The clerk has the right address from elsewhere and gives up on this one.
    now = ["--now", app.clock.now().isoformat()]
    assert main(["--config", str(config_path), "outbox", "dismiss", str(ack.id), *now]) == 0
    assert main(["--config", str(config_path), "outbox", "list"]) == 0
    assert "no messages that failed" in capsys.readouterr().out


def test_paused_sending_heals_by_itself_at_its_next_try(app, dovecot, smtp):
    from mailbot.outbox import sending

    deliver(dovecot, ["r0@example.com"])
    smtp.refuse = "554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access denied"
    with pytest.raises(SendingPaused):
        run_once(app)
    smtp.refuse = None  # fixed, and nobody reloads anything

    # The daemon's sending process calls flush whenever it wakes: not before the next try
    # is due (one minute after the first refusal) ...
    assert sending.flush(app).sent == 0
    assert acked(smtp) == []
    # ... and then by itself.
    app.clock.advance(timedelta(minutes=1))
    assert sending.flush(app).sent >= 1
    assert acked(smtp) == ["r0@example.com"]


def test_a_server_out_of_reach_is_told_once_it_has_lasted(app, dovecot, smtp, caplog):
    import logging

    deliver(dovecot, ["r0@example.com"])
    smtp.stop()
    caplog.set_level(logging.CRITICAL, "mailbot.problems")
    with pytest.raises(SendingPaused):
        run_once(app)
    assert caplog.records == []  # a restart of a few minutes is not worth an alarm
    app.clock.advance(timedelta(minutes=31))
    with pytest.raises(SendingPaused):
        run_once(app)
    [alarm] = caplog.records
    assert alarm.getMessage().startswith("cannot reach the SMTP server 127.0.0.1:")

    smtp.start()
    run_once(app)
    assert acked(smtp) == ["r0@example.com"]
    assert clerk_heard(smtp) == [
        "mailbot cannot send mail: the SMTP server is out of reach",
        "mailbot is sending mail again",
    ]
