"""Folders found, not guessed: the sent folder by its RFC 6154 \\Sent mark when it is not named
or not there; a missing folder told to the clerk and never stopping the inbox; backoff that
grows when the server lets mailbot in and then fails."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from sqlalchemy import select

from mailbot.app import App
from mailbot.cli import main
from mailbot.config import load_config
from mailbot.daemon import Daemon, Watched, run_once
from mailbot.health import HealthWatch
from mailbot.mailbox import FolderMissing, Mailbox, SentFolder, choose_sent_folder
from mailbot.problems import open_problems
from mailbot.store import Case
from tests.conftest import council_config, resident_mail, to_residents

ALEX = "alex.morgan@council.example.gov.uk"
CLERK = "chris.lee@council.example.gov.uk"
ARRIVED = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)


# -- the choice, without a server ----------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "exists", "marked", "expected"),
    [
        (None, False, "Sent", SentFolder("Sent")),  # not given: the server's sent folder
        (None, False, None, SentFolder(None)),  # and none marked: none to read
        ("Sent Items", True, None, SentFolder("Sent Items")),  # given and there
        ("", False, "Sent", SentFolder(None)),  # "" turns it off
        (
            "Sent Itmes",
            False,
            "Sent Items",
            SentFolder(
                "Sent Items",
                "imap.sent: folder 'Sent Itmes' not found; reading 'Sent Items', which the "
                "server marks as the sent folder, instead (set imap.sent = 'Sent Items' to say so)",
            ),
        ),
        (
            "INBOX.Sent",
            False,
            None,
            SentFolder(
                None,
                "imap.sent: folder 'INBOX.Sent' not found, and the server marks no folder as "
                "the sent folder: officers' replies filed there are not seen",
            ),
        ),
    ],
)
def test_the_sent_folder_is_the_setting_else_the_one_the_server_marks(
    setting, exists, marked, expected
):
    assert choose_sent_folder(setting, exists, marked) == expected


# -- against Dovecot, whose "Sent" is marked \Sent and "Sent Items" is not ------------------


def officer_reply(ref: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Alex Morgan <{ALEX}>"
    msg["To"] = "jane.doe@example.com"
    msg["Subject"] = f"RE: Pothole on Mill Lane [Ref: {ref}]"
    msg["Message-ID"] = make_msgid(domain="council.example.gov.uk")
    msg.set_content("It was filled in this morning.")
    return msg.as_bytes()


def make_app(tmp_path, dovecot, smtp, database_url, clock, imap_extra: str) -> App:
    path = council_config(tmp_path, dovecot, smtp, database_url, imap_extra=imap_extra)
    return App.load(load_config(path), clock)


def case_status(app: App) -> str:
    with app.sessions() as s:
        return s.scalar(select(Case.status).where(Case.ref == "ENQ-2026-00001")) or ""


@pytest.mark.integration
@pytest.mark.parametrize("setting", ['sent = "Sent Itmes"\n', ""], ids=["misspelt", "not-given"])
def test_the_marked_sent_folder_is_read_and_the_inbox_too(
    tmp_path, dovecot, smtp, database_url, clock, setting
):
    app = make_app(tmp_path, dovecot, smtp, database_url, clock, setting)
    dovecot.append(resident_mail(), when=ARRIVED)
    run_once(app)  # exit 0: the inbox was read, and the sent folder found
    assert [m.rcpt_tos for m in to_residents(smtp)] == [["jane.doe@example.com"]]

    dovecot.append(officer_reply("ENQ-2026-00001"), when=ARRIVED, folder="Sent")
    app.clock.advance(timedelta(minutes=20))
    run_once(app)
    assert case_status(app) == "responded"  # the officer's reply in "Sent" was seen

    with app.sessions() as s:
        problems = [p.detail for p in open_problems(s)]
    if setting:  # the misspelling is reported, once, to the clerk
        assert problems == [
            "imap.sent: folder 'Sent Itmes' not found; reading 'Sent', which the server marks "
            "as the sent folder, instead (set imap.sent = 'Sent' to say so)"
        ]
        told = [m for m in smtp.to(CLERK) if "folder" in m.message["Subject"]]
        assert [m.message["Subject"] for m in told] == ["mailbot cannot find a mail folder"]
    else:
        assert problems == []
    app.engine.dispose()


@pytest.mark.integration
def test_a_sent_folder_nowhere_to_be_found_never_stops_the_inbox(
    tmp_path, dovecot, smtp, database_url, clock, monkeypatch
):
    # Dovecot here always has a \Sent folder; pretend this server has none.
    monkeypatch.setattr(Mailbox, "marked_sent_folder", lambda self: None)
    app = make_app(tmp_path, dovecot, smtp, database_url, clock, 'sent = "INBOX.Sent"\n')
    dovecot.append(resident_mail(), when=ARRIVED)
    with pytest.raises(FolderMissing, match=r"imap\.sent: folder 'INBOX\.Sent' not found"):
        run_once(app)  # exit 1, naming the setting: but only after the inbox was read
    assert [m.rcpt_tos for m in to_residents(smtp)] == [["jane.doe@example.com"]]
    assert [m.message["Subject"] for m in smtp.to(CLERK) if "folder" in m.message["Subject"]] == [
        "mailbot cannot find a mail folder"
    ]
    app.engine.dispose()


@pytest.mark.integration
def test_a_missing_inbox_is_reported_and_once_corrected_everything_is_answered(
    tmp_path, dovecot, smtp, database_url, clock, capsys
):
    path = council_config(tmp_path, dovecot, smtp, database_url, imap_extra='inbox = "Enquiries"\n')
    dovecot.append(resident_mail(), when=ARRIVED)
    args = ["--config", str(path), "run", "--once", "--now", clock.now().isoformat()]
    assert main(args) == 1
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "mailbot: imap.inbox: folder 'Enquiries' not found on 127.0.0.1: no mail is read from "
            "council@example.org"
        )
    )
    assert [m.message["Subject"] for m in smtp.to(CLERK) if "folder" in m.message["Subject"]] == [
        "mailbot cannot find a mail folder"
    ]

    path.write_text(path.read_text().replace('inbox = "Enquiries"\n', ""))
    assert main(args) == 0
    assert [m.rcpt_tos for m in to_residents(smtp)] == [["jane.doe@example.com"]]
    assert [m.message["Subject"] for m in smtp.to(CLERK) if "folder" in m.message["Subject"]] == [
        "mailbot cannot find a mail folder",
        "mailbot can read the folder again",
    ]


@pytest.mark.integration
def test_reconnection_backs_off_when_the_server_lets_us_in_and_then_fails(
    tmp_path, dovecot, smtp, database_url, clock, caplog
):
    app = make_app(tmp_path, dovecot, smtp, database_url, clock, 'inbox = "Enquiries"\n')
    daemon = Daemon(app)
    daemon.sender = type("NoSender", (), {"wake": lambda self: None})()  # read only
    watched = Watched(app.cfg.imap, "council@example.org", HealthWatch(started_at=clock.now()))
    caplog.set_level(logging.WARNING, "mailbot.daemon")
    for _ in range(5):
        watched.retry_at = 0.0  # as if each wait were over: no time passes in the test
        daemon._read(watched)
    lines = [r.getMessage() for r in caplog.records if "reconnecting in" in r.getMessage()]
    delays = [line.rsplit("reconnecting in ", 1)[1] for line in lines]
    # It logs in fine each time, then finds no inbox: 1, 2, 4 … seconds, not every second.
    assert delays == ["1 s", "2 s", "4 s", "8 s", "16 s"]
    app.engine.dispose()
