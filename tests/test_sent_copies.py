"""What mailbot sends is in the mailbox's sent folder, where officers look in Outlook:
filed by mailbot over IMAP, or by the provider where it keeps a copy (as Microsoft 365
does), when 'uncertain' messages are settled by looking for them there."""

from __future__ import annotations

import email
import email.policy
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mailbot.app import App
from mailbot.clock import FixedClock
from mailbot.config import load_config, provider_keeps_copy
from mailbot.devservers import Account, LocalDovecot, SmtpCapture
from mailbot.faults import ENV as CRASH_ENV
from mailbot.mailbox import sign_in
from mailbot.outbox.sending import flush
from mailbot.pipeline import ingest_mailbox
from mailbot.problems import ProblemKind, alert_due, open_problems
from mailbot.sentcopy import MAX_ATTEMPTS, CopyStatus, Uncertain, file_due, judge, retry_delay
from mailbot.store import Case, CaseEvent, OutboxMessage, SentCopy
from tests.conftest import COUNCIL, council_config, mailbot, resident_mail, to_residents

ARRIVED = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
NOW = "2026-11-03T10:00:00+00:00"
CLERK = "chris.lee@council.example.gov.uk"


# --- pure decisions ----------------------------------------------------------------------


def test_an_uncertain_message_found_in_the_sent_folder_was_sent():
    claimed = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
    grace = timedelta(minutes=10)
    assert judge(True, claimed, claimed + timedelta(minutes=1), grace) is Uncertain.FOUND
    assert judge(False, claimed, claimed + timedelta(minutes=9), grace) is Uncertain.TOO_SOON
    assert judge(False, claimed, claimed + timedelta(minutes=10), grace) is Uncertain.NEVER_TAKEN


def test_the_hand_over_s_start_is_read_from_the_outbox_s_own_lease():
    from mailbot import sentcopy
    from mailbot.outbox import delivery

    assert sentcopy.LEASE == delivery.SENDING_LEASE


def test_microsoft_365_and_google_keep_a_copy_a_relay_does_not():
    assert provider_keeps_copy("smtp.office365.com")
    assert provider_keeps_copy("SMTP.Gmail.com.")
    assert not provider_keeps_copy("council-gov-uk.mail.protection.outlook.com")
    assert not provider_keeps_copy("smtp.council.example.gov.uk")


def test_copy_filing_is_retried_after_1_2_4_minutes_at_most_an_hour():
    assert [retry_delay(n).total_seconds() / 60 for n in (1, 2, 3, 7, 8, 30)] == [
        1,
        2,
        4,
        60,
        60,
        60,
    ]


# --- against the real servers --------------------------------------------------------------


def sent_folder(account: Account, folder: str = "Sent") -> list[tuple[bytes, tuple]]:
    """Every message in the mailbox's sent folder: its bytes and flags."""
    with account.client() as imap:
        imap.select_folder(folder, readonly=True)
        found = imap.fetch(imap.search(["ALL"]), ["BODY.PEEK[]", "FLAGS"])
    return [(data[b"BODY[]"], data[b"FLAGS"]) for _, data in sorted(found.items())]


def run_once(config: Path, now: str = NOW, **env: str) -> tuple[int, str]:
    proc = mailbot(config, "run", "--once", "--now", now, env=env or None)
    _, err = proc.communicate(timeout=90)
    return proc.returncode, err.decode()


def statuses(app: App) -> list[tuple[str, str]]:
    with app.sessions() as s:
        return [
            tuple(row)
            for row in s.execute(
                select(OutboxMessage.recipient, OutboxMessage.status)
                .where(OutboxMessage.kind == "acknowledgement")
                .order_by(OutboxMessage.recipient)
            )
        ]


def history(app: App, resident: str) -> list[tuple[str, str]]:
    with app.sessions() as s:
        case = s.scalars(select(Case).where(Case.resident_email == resident)).one()
        return [(e.kind, e.detail) for e in case.events]


def test_each_message_sent_is_filed_in_the_sent_folder_read_and_threaded(
    app, config_path, dovecot, smtp
):
    dovecot.append(resident_mail(message_id="<pothole-1@example.com>"), when=ARRIVED)
    code, err = run_once(config_path)
    assert code == 0, err

    [ack] = to_residents(smtp)
    filed = sent_folder(dovecot)
    # Everything that went, staff mail too, once each, exactly as it went.
    assert sorted(raw for raw, _ in filed) == sorted(m.raw for m in smtp.messages)
    [(raw, flags)] = [(raw, flags) for raw, flags in filed if raw == ack.raw]
    copy = email.message_from_bytes(raw, policy=email.policy.default)
    assert copy["Message-ID"] == ack.message["Message-ID"]
    assert copy["In-Reply-To"] == "<pothole-1@example.com>"  # threads under hers
    assert "<pothole-1@example.com>" in copy["References"]
    assert b"\\Seen" in flags
    assert all(b"\\Seen" in flags for _, flags in filed)
    with app.sessions() as s:
        rows = s.scalars(select(SentCopy)).all()
        assert len(rows) == len(smtp.messages)
        assert {(r.status, r.attempts, r.last_error) for r in rows} == {("filed", 1, "")}
    sent_before = len(smtp.messages)

    # The next run reads the copy in the sent folder as mailbot's own: nothing opened,
    # nothing sent, and it is not filed again.
    code, err = run_once(config_path)
    assert code == 0, err
    assert len(smtp.messages) == sent_before
    assert len(sent_folder(dovecot)) == sent_before
    with app.sessions() as s:
        assert len(s.scalars(select(Case)).all()) == 1


def test_where_the_provider_keeps_a_copy_mailbot_files_none(tmp_path, dovecot, database_url):
    smtp = SmtpCapture(keeps_copy_in=dovecot).start()
    try:
        config = council_config(
            tmp_path, dovecot, smtp, database_url, smtp_extra="provider_keeps_copy = true\n"
        )
        dovecot.append(resident_mail(message_id="<kept-1@example.com>"), when=ARRIVED)
        code, err = run_once(config)
        assert code == 0, err
        # The provider's copy of each message, and no second one.
        assert sorted(raw for raw, _ in sent_folder(dovecot)) == sorted(
            m.raw for m in smtp.messages
        )
        assert len(to_residents(smtp)) == 1
        app = App.load(load_config(config), FixedClock(ARRIVED))
        with app.sessions() as s:
            assert s.scalars(select(SentCopy)).all() == []
        app.engine.dispose()
    finally:
        smtp.stop()


@pytest.mark.parametrize("crash_at", ["after-claim", "after-send", "after-record"])
def test_after_a_kill_mid_send_to_a_server_that_keeps_a_copy_each_resident_has_one(
    crash_at, tmp_path, dovecot, database_url
):
    """SIGKILL around the hand-over, against a server that files what it takes (as
    Microsoft 365 does): the sent folder says which 'uncertain' message went."""
    smtp = SmtpCapture(keeps_copy_in=dovecot).start()
    try:
        config = council_config(
            tmp_path, dovecot, smtp, database_url, smtp_extra="provider_keeps_copy = true\n"
        )
        residents = ["ann@example.com", "bob@example.com", "cat@example.com"]
        for n, who in enumerate(residents):
            dovecot.append(resident_mail(sender=who, message_id=f"<k{n}@x>"), when=ARRIVED)

        code, _ = run_once(config, **{CRASH_ENV: crash_at})
        assert code == -signal.SIGKILL
        # Once the hand-over's lease has run out (10 minutes) and with it the grace
        # period for the provider's copy to show (10 minutes from the hand-over).
        later = (datetime.fromisoformat(NOW) + timedelta(minutes=11)).isoformat()
        for _ in range(2):
            code, err = run_once(config, later)
            assert code == 0, err

        assert sorted(m.rcpt_tos[0] for m in to_residents(smtp)) == residents  # once each
        app = App.load(load_config(config), FixedClock(ARRIVED))
        assert statuses(app) == [(who, "sent") for who in residents]
        # The provider's copies, one of each message taken.
        assert len(sent_folder(dovecot)) == len(smtp.messages)
        stranded = "bob@example.com" if crash_at == "after-record" else "ann@example.com"
        said = [detail for kind, detail in history(app, stranded)]
        if crash_at == "after-send":  # the server had it: found, recorded, not resent
            assert any("found in the sent folder 'Sent'" in d for d in said), said
        else:  # never handed over: not there after the grace period, sent once
            assert any("was not in the sent folder 'Sent' 10 minutes after" in d for d in said)
        app.engine.dispose()
    finally:
        smtp.stop()


def test_an_uncertain_message_not_yet_in_the_sent_folder_waits_out_the_grace_period(
    tmp_path, dovecot, database_url
):
    smtp = SmtpCapture(keeps_copy_in=dovecot).start()
    try:
        config = council_config(
            tmp_path,
            dovecot,
            smtp,
            database_url,
            smtp_extra="provider_keeps_copy = true\ncopy_grace_minutes = 30\n",
        )
        dovecot.append(resident_mail(message_id="<g@x>"), when=ARRIVED)
        code, _ = run_once(config, **{CRASH_ENV: "after-claim"})
        assert code == -signal.SIGKILL
        start = datetime.fromisoformat(NOW)
        code, err = run_once(config, (start + timedelta(minutes=11)).isoformat())
        assert code == 0, err
        assert to_residents(smtp) == []  # may yet show: not sent, not given up
        app = App.load(load_config(config), FixedClock(ARRIVED))
        assert statuses(app) == [("jane.doe@example.com", "uncertain")]
        code, err = run_once(config, (start + timedelta(minutes=31)).isoformat())
        assert code == 0, err
        assert [m.rcpt_tos[0] for m in to_residents(smtp)] == ["jane.doe@example.com"]
        assert statuses(app) == [("jane.doe@example.com", "sent")]
        app.engine.dispose()
    finally:
        smtp.stop()


def test_a_copy_that_cannot_be_filed_waits_is_retried_and_reaches_the_clerk(
    tmp_path, smtp, database_url
):
    server = LocalDovecot(user=COUNCIL).start()
    try:
        config = council_config(tmp_path, server, smtp, database_url)
        clock = FixedClock(datetime.fromisoformat(NOW))
        app = App.load(load_config(config), clock)
        server.append(resident_mail(message_id="<lost@x>"), when=ARRIVED)
        mailbox = sign_in(app, app.cfg.imap)
        ingest_mailbox(app, mailbox)
        mailbox.close()
        assert flush(app).sent == 1  # the acknowledgement went; its copy is owed
        server.stop()  # and the mailbox is out of reach

        result = file_due(app)
        assert (result.filed, result.deferred, result.failed) == (0, 1, 0)
        with app.sessions() as s:
            copy = s.scalars(select(SentCopy)).one()
            assert (copy.status, copy.attempts) == ("waiting", 1)
            assert "cannot reach the mailbox" in copy.last_error
            [problem] = open_problems(s)
            assert problem.kind == ProblemKind.SENT_COPY_FAILING
            assert problem.key == f"sent-copy:{COUNCIL}"
        assert file_due(app).deferred == 0  # not due again for a minute
        # The clerk hears once it has lasted an hour.
        clock.advance(timedelta(minutes=59))
        with app.sessions.begin() as s:
            assert alert_due(app, s, clock.now()) == []
        clock.advance(timedelta(minutes=1))
        with app.sessions.begin() as s:
            assert len(alert_due(app, s, clock.now())) == 1
        assert flush(app).sent == 1
        [told] = smtp.to(CLERK)
        assert told.message["Subject"] == (
            "mailbot cannot file copies of its mail in the sent folder"
        )
        assert "cannot reach the mailbox" in told.text()

        # Tried again and again, then given up: the case's history says so.
        for _ in range(MAX_ATTEMPTS):
            clock.advance(timedelta(hours=1))
            file_due(app)
        with app.sessions() as s:
            copy = s.scalars(select(SentCopy).order_by(SentCopy.id).limit(1)).one()
            assert (copy.status, copy.attempts) == (str(CopyStatus.FAILED), MAX_ATTEMPTS)
            kinds = s.scalars(select(CaseEvent.kind).order_by(CaseEvent.id)).all()
            assert kinds.count("copy-not-filed") == 1

        # Mended: the next copy is filed, and the clerk hears that it is fixed.
        server.restart()
        server.append(resident_mail(sender="b@example.com", message_id="<back@x>"))
        mailbox = sign_in(app, app.cfg.imap)
        ingest_mailbox(app, mailbox)
        mailbox.close()
        flush(app)
        with app.sessions() as s:
            owed = s.scalars(select(SentCopy).where(SentCopy.status == "waiting")).all()
        result = file_due(app)
        assert len(owed) >= 1
        assert (result.filed, result.deferred, result.failed) == (len(owed), 0, 0)
        assert [m.rcpt_tos[0] for m in to_residents(smtp)] == [
            "jane.doe@example.com",
            "b@example.com",
        ]
        # The health letter's copy and the first acknowledgement's were given up on;
        # the rest are filed (the new acknowledgement's among them).
        filed = [raw for raw, _ in sent_folder(server.account)]
        assert to_residents(smtp)[1].raw in filed
        assert to_residents(smtp)[0].raw not in filed
        with app.sessions() as s:
            assert open_problems(s) == []
        flush(app)
        assert [m.message["Subject"] for m in smtp.to(CLERK)][-1] == (
            "mailbot is filing copies in the sent folder again"
        )
        app.engine.dispose()
    finally:
        server.cleanup()


def test_a_mailbox_with_no_sent_folder_set_gets_no_copies(tmp_path, dovecot, smtp, database_url):
    config = council_config(tmp_path, dovecot, smtp, database_url, imap_extra='sent = ""\n')
    dovecot.append(resident_mail(message_id="<off@x>"), when=ARRIVED)
    code, err = run_once(config)
    assert code == 0, err
    assert len(to_residents(smtp)) == 1
    assert sent_folder(dovecot) == []
    app = App.load(load_config(config), FixedClock(ARRIVED))
    with app.sessions() as s:
        assert s.scalars(select(SentCopy)).all() == []
    app.engine.dispose()


def test_a_message_sent_again_by_the_clerk_keeps_its_one_copy(app, dovecot, smtp):
    """`mailbot outbox resend` of a bounced letter: recording it as sent again must not
    fail for the copy it already has (one copy a message)."""
    from sqlalchemy import update

    from mailbot.unsent import resend

    dovecot.append(resident_mail(message_id="<again@x>"), when=ARRIVED)
    mailbox = sign_in(app, app.cfg.imap)
    ingest_mailbox(app, mailbox)
    mailbox.close()
    assert flush(app).sent >= 1
    file_due(app)
    with app.sessions.begin() as s:
        ack = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "acknowledgement")).one()
        s.execute(update(OutboxMessage).where(OutboxMessage.id == ack.id).values(status="bounced"))
        ack_id = ack.id
    resend(app, ack_id)
    assert flush(app).sent == 1
    assert [m.rcpt_tos[0] for m in to_residents(smtp)] == ["jane.doe@example.com"] * 2
    with app.sessions() as s:
        copies = s.scalars(select(SentCopy).where(SentCopy.outbox_id == ack_id)).all()
        assert [(c.status, c.attempts) for c in copies] == [("filed", 1)]
