"""Several mailboxes in one configuration: enquiries@ and foi@, each read and answered as itself."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mailbot.app import App
from mailbot.clock import FixedClock
from mailbot.config import load_config
from mailbot.daemon import run_once
from mailbot.devservers import Account, LocalDovecot, SmtpCapture, local_config
from mailbot.migrations import upgrade
from mailbot.reasons import Reason
from mailbot.scheduler import run_due
from mailbot.store import Case, FolderState, InboundMessage
from tests.conftest import (
    COUNCIL,
    START_FROM,
    mailbot,
    resident_mail,
    stop,
    to_residents,
    wait_for,
)

pytestmark = pytest.mark.integration

ARRIVED = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)  # Tuesday 3 November 2026
NOW = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
# Nothing in it that a classification rule recognises: the mailbox's default decides.
PLAIN = "Hello,\n\nPlease see the question below.\n\nRegards"


@pytest.fixture
def foi(dovecot_server: LocalDovecot) -> Account:
    return dovecot_server.add_account(f"foi-{uuid.uuid4().hex[:10]}@example.org")


def two_mailbox_config(
    tmp_path: Path,
    enquiries: Account,
    foi: Account,
    smtp: SmtpCapture,
    database_url: str,
    *,
    foi_password: str | None = None,
) -> Path:
    secret = tmp_path / "foi-password"
    secret.write_text((foi_password or foi.password) + "\n")
    path = local_config(
        tmp_path,
        enquiries,
        smtp,
        mailbox_address=COUNCIL,
        database_url=database_url,
        start_from=START_FROM,
        # Host, port, security and start_from come from [imap]; the sign-in is its own.
        extra=f"""
[[mailboxes]]
address = "{foi.user}"
username = "{foi.user}"
password_file = "{secret}"
default_category = "foi"
""",
    )
    upgrade(database_url)
    return path


@pytest.fixture
def app(tmp_path, dovecot, foi, smtp, database_url) -> Iterator[App]:
    path = two_mailbox_config(tmp_path, dovecot, foi, smtp, database_url)
    application = App.load(load_config(path), FixedClock(NOW))
    yield application
    application.engine.dispose()


def inbound(app: App) -> list[InboundMessage]:
    """What was read from the inboxes (not the copies of what was sent, read back from
    the sent folders as mailbot's own)."""
    with app.sessions() as s:
        inbox = InboundMessage.folder.endswith("/INBOX")
        return list(s.scalars(select(InboundMessage).where(inbox).order_by(InboundMessage.id)))


def sent_copies(account: Account) -> list[str]:
    """The Message-IDs of the copies in a mailbox's sent folder."""
    with account.client() as imap:
        imap.select_folder("Sent", readonly=True)
        found = imap.fetch(imap.search(["ALL"]), ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
    return sorted(
        data[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].decode().split(":", 1)[1].strip()
        for data in found.values()
    )


def cases(app: App) -> dict[str, Case]:
    with app.sessions() as s:
        return {c.ref: c for c in s.scalars(select(Case))}


def test_each_mailbox_opens_cases_and_answers_from_its_own_address(app, dovecot, foi, smtp):
    dovecot.append(resident_mail(body="Could you tell me when the library opens?"), when=ARRIVED)
    foi.append(
        resident_mail(sender="bob@example.net", name="Bob Hall", subject="Minutes", body=PLAIN),
        when=ARRIVED,
    )

    assert run_once(app) == 2

    found = cases(app)
    assert sorted(found) == ["ENQ-2026-00001", "FOI-2026-00001"]
    assert found["ENQ-2026-00001"].mailbox == COUNCIL
    request = found["FOI-2026-00001"]
    assert request.mailbox == foi.user
    assert request.reasons[0] == Reason("foi", "no rule matched; the mailbox default")
    assert request.officer_email == "sam.patel@council.example.gov.uk"  # foi-officer

    by_recipient = {m.rcpt_tos[0]: m.message for m in to_residents(smtp)}
    assert set(by_recipient) == {"jane.doe@example.com", "bob@example.net"}
    enquiry, answer = by_recipient["jane.doe@example.com"], by_recipient["bob@example.net"]
    assert enquiry["From"].addresses[0].addr_spec == COUNCIL
    assert answer["From"].addresses[0].addr_spec == foi.user
    assert answer["Reply-To"] == foi.user
    assert answer["X-Mailbot-Loop"] == foi.user
    assert answer["Subject"] == "Re: Minutes [Ref: FOI-2026-00001]"

    # Both messages are UID 1 of their own INBOX: recorded apart, each read once.
    rows = inbound(app)
    assert sorted((m.folder, m.uid) for m in rows) == [
        (f"{dovecot.user}/INBOX", 1),
        (f"{foi.user}/INBOX", 1),
    ]
    with app.sessions() as s:
        # Each mailbox's own folders: its inbox, and the folder its server marks as the
        # sent folder (read for officers' replies).
        assert sorted(s.scalars(select(FolderState.folder))) == [
            f"{dovecot.user}/INBOX",
            f"{dovecot.user}/Sent",
            f"{foi.user}/INBOX",
            f"{foi.user}/Sent",
        ]
    assert run_once(app) == 0
    assert len(to_residents(smtp)) == 2


def test_follow_ups_and_later_letters_stay_with_the_mailbox(app, dovecot, foi, smtp):
    foi.append(
        resident_mail(sender="bob@example.net", subject="Minutes", body=PLAIN, message_id="<q@x>"),
        when=ARRIVED,
    )
    run_once(app)
    # Bob writes again the next day, to foi@, quoting the reference.
    app.clock.instant = NOW + timedelta(days=1)
    foi.append(
        resident_mail(
            sender="bob@example.net", subject="Re: Minutes [Ref: FOI-2026-00001]", body="And 2025?"
        ),
        when=ARRIVED + timedelta(days=1),
    )
    run_once(app)
    assert [m.outcome for m in inbound(app)] == ["case-opened", "follow-up"]
    assert len(to_residents(smtp)) == 1  # no second acknowledgement

    # The officer's reminder before the response date comes from foi@ too, so a reply to
    # it (with a #command) reaches the mailbox that holds the case.
    request = cases(app)["FOI-2026-00001"]
    with app.sessions() as s:
        reminder_day = s.get(Case, request.id).next_action_on
    app.clock.instant = datetime.combine(reminder_day, NOW.timetz())
    assert run_due(app) >= 1
    run_once(app)
    to_sam = smtp.to("sam.patel@council.example.gov.uk")
    assert [m.message["From"].addresses[0].addr_spec for m in to_sam] == [foi.user] * len(to_sam)
    # (Python folds a 78-character subject onto its own line: hence the strip.)
    [reminder] = [m for m in to_sam if m.message["Subject"].strip().startswith("Reminder")]
    assert reminder.message["From"].addresses[0].addr_spec == foi.user
    assert "[Ref: FOI-2026-00001]" in reminder.message["Subject"]
    assert f"Stafford Borough Council ({foi.user})" in reminder.text()


def test_our_own_letter_from_one_mailbox_arriving_in_the_other_is_not_answered(
    app, dovecot, foi, smtp
):
    foi.append(resident_mail(sender="bob@example.net", subject="Minutes", body=PLAIN), when=ARRIVED)
    run_once(app)
    [answer] = to_residents(smtp)

    # Bob forwards nothing; a misdirected copy of foi@'s letter lands in enquiries@.
    # Its copy is in foi@'s sent folder, not enquiries@'s: each mailbox's officers see
    # what was sent about its own cases.
    def sent_from(address: str) -> list[str]:
        return sorted(
            m.message["Message-ID"]
            for m in smtp.messages
            if m.message["From"].addresses[0].addr_spec == address
        )

    assert answer.message["Message-ID"] in sent_from(foi.user)
    assert sent_copies(foi) == sent_from(foi.user)
    assert sent_copies(dovecot) == sent_from(COUNCIL)  # the council's own letters
    dovecot.append(answer.raw, when=ARRIVED + timedelta(minutes=5))
    run_once(app)
    assert [m.outcome for m in inbound(app)] == ["case-opened", "own-mail"]
    assert len(to_residents(smtp)) == 1


def test_an_unreachable_mailbox_does_not_hold_up_the_others(
    tmp_path, dovecot, foi, smtp, database_url
):
    path = two_mailbox_config(
        tmp_path, dovecot, foi, smtp, database_url, foi_password="not the password"
    )
    dovecot.append(resident_mail(), when=ARRIVED)
    proc = mailbot(path, "run", "--once", "--now", NOW.isoformat())
    _, err = proc.communicate(timeout=120)
    stderr = err.decode()
    assert proc.returncode == 2  # cannot reach a server
    assert stderr.splitlines()[-1].startswith("mailbot: IMAP 127.0.0.1")
    assert f"mailbox {foi.user}:" in stderr  # which one, in the log
    # The reachable mailbox was read and its resident acknowledged all the same.
    assert [m.rcpt_tos for m in to_residents(smtp)] == [["jane.doe@example.com"]]


# -- the daemon ---------------------------------------------------------------------------


def test_run_idles_on_both_mailboxes_at_once(tmp_path, dovecot, foi, smtp):
    path = two_mailbox_config(tmp_path, dovecot, foi, smtp, f"sqlite:///{tmp_path / 'db'}")
    proc = mailbot(path, "run")
    try:
        time.sleep(1.5)  # connected to both and idling
        foi.append(resident_mail(sender="bob@example.net", subject="Minutes", body=PLAIN))
        wait_for(lambda: len(to_residents(smtp)) == 1)
        dovecot.append(resident_mail(sender="ann@example.com", message_id="<ann@x>"))
        wait_for(lambda: len(to_residents(smtp)) == 2)
    finally:
        code, err = stop(proc, timeout=30)
    assert code == 0, err
    senders = {m.rcpt_tos[0]: m.message["From"].addresses[0].addr_spec for m in to_residents(smtp)}
    assert senders == {"bob@example.net": foi.user, "ann@example.com": COUNCIL}
    assert f"watching INBOX for {foi.user}" in err
    assert f"watching INBOX for {COUNCIL}" in err


def test_run_keeps_serving_one_mailbox_while_the_other_cannot_sign_in(tmp_path, dovecot, foi, smtp):
    path = two_mailbox_config(
        tmp_path, dovecot, foi, smtp, f"sqlite:///{tmp_path / 'db'}", foi_password="wrong"
    )
    proc = mailbot(path, "run")
    try:
        time.sleep(1.5)
        dovecot.append(resident_mail(sender="ann@example.com", message_id="<ann@x>"))
        wait_for(lambda: len(to_residents(smtp)) == 1)
    finally:
        code, err = stop(proc, timeout=30)
    assert code == 0, err
    assert f"mailbox {foi.user}: connection lost" in err
    assert "reconnecting in" in err
