"""`check --connect` diagnosis: each failing step is named, worded plainly, and has a hint."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailbot.config import ImapConfig, SmtpConfig, load_config
from mailbot.devservers import Account, SmtpCapture, free_port, local_config
from mailbot.diagnose import (
    Finding,
    check_connection,
    check_imap,
    check_smtp,
    failed,
    format_findings,
)
from tests.tlsservers import SmtpTest

MAILBOX = "council@example.org"


def imap_cfg(tmp_path: Path, port: int, password: str = "secret", **kw: object) -> ImapConfig:
    secret = tmp_path / "imap-password"
    secret.write_text(password + "\n")
    data: dict = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "username": MAILBOX,
        "password_file": secret,
        "timeout": 5,
    }
    return ImapConfig.model_validate({**data, **kw})


def smtp_cfg(tmp_path: Path, port: int, password: str = "secret", **kw: object) -> SmtpConfig:
    secret = tmp_path / "smtp-password"
    secret.write_text(password + "\n")
    data: dict = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "username": MAILBOX,
        "password_file": secret,
        "timeout": 5,
    }
    return SmtpConfig.model_validate({**data, **kw})


def test_unknown_host_fails_at_dns(tmp_path: Path) -> None:
    found = check_imap(imap_cfg(tmp_path, 993, host="no-such-host.invalid", security="tls"))
    assert [(f.step, f.ok) for f in found] == [("imap dns", False)]
    assert found[0].message.startswith("cannot find no-such-host.invalid: ")
    assert "imap.host" in found[0].hint or "resolv.conf" in found[0].hint


def test_closed_port_fails_at_tcp(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    found = check_smtp(smtp_cfg(tmp_path, port), MAILBOX)
    assert [(f.step, f.ok) for f in found] == [("smtp dns", True), ("smtp tcp", False)]
    assert found[1].message == f"127.0.0.1 refused the connection on port {port}"
    assert "usually 587 with starttls or 465 with tls" in found[1].hint


def test_missing_password_file_is_a_finding(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        cfg = imap_cfg(tmp_path, listener.getsockname()[1])
        (tmp_path / "imap-password").unlink()
        last = check_imap(cfg)[-1]
    assert (last.step, last.ok) == ("imap login", False)
    assert last.message.startswith("imap.password_file: cannot read")


@pytest.mark.integration
def test_imap_wrong_password_and_missing_folder(dovecot: Account, tmp_path: Path) -> None:
    found = check_imap(imap_cfg(tmp_path, dovecot.port, password="wrong", username=dovecot.user))
    last = found[-1]
    assert (last.step, last.ok) == ("imap login", False)
    assert last.message.startswith(f"the server refused the login for {dovecot.user}: ")
    assert "AUTHENTICATIONFAILED" in last.message
    assert "imap.password_file" in last.hint

    cfg = imap_cfg(tmp_path, dovecot.port, username=dovecot.user, sent="Sent Itmes")
    found = check_imap(cfg)
    assert [(f.step, f.ok) for f in found][-3:] == [
        ("imap login", True),
        ("imap folder inbox", True),
        ("imap folder sent", False),
    ]
    assert found[-1].message == "folder 'Sent Itmes' not found"
    assert "set imap.sent to one of the folders on the server:" in found[-1].hint
    assert "'Sent Items'" in found[-1].hint
    assert found[-1].hint.endswith(
        "meanwhile mailbot reads 'Sent', which the server marks as the sent folder"
    )


@pytest.fixture
def refusing_smtp() -> Iterator[SmtpTest]:
    server = SmtpTest("none").start()
    yield server
    server.stop()


@pytest.mark.integration
def test_smtp_wrong_password(refusing_smtp: SmtpTest, tmp_path: Path) -> None:
    last = check_smtp(smtp_cfg(tmp_path, refusing_smtp.port, password="wrong"), MAILBOX)[-1]
    assert (last.step, last.ok) == ("smtp login", False)
    assert last.message.startswith(f"the SMTP server refused the login for {MAILBOX}: 535")
    assert "smtp.password_file" in last.hint


@pytest.mark.integration
def test_smtp_relay_refusals(refusing_smtp: SmtpTest, tmp_path: Path) -> None:
    cfg = smtp_cfg(tmp_path, refusing_smtp.port)
    refusing_smtp.refuse_rcpt = "554 5.7.1 <council@example.org>: Relay access denied"
    last = check_smtp(cfg, MAILBOX)[-1]
    assert (last.step, last.ok) == ("smtp relay", False)
    assert last.message == (
        f"the server refused to take mail for {MAILBOX}: 554 "
        "5.7.1 <council@example.org>: Relay access denied"
    )
    assert "relay" in last.hint
    assert refusing_smtp.commands[-1] == "RSET"  # left tidy

    refusing_smtp.refuse_rcpt = None
    refusing_smtp.refuse_mail = "550 5.7.60 SMTP; Client does not have permissions to send as"
    last = check_smtp(cfg, MAILBOX)[-1]
    assert last.message.startswith(f"the server refused {MAILBOX} as sender: 550 5.7.60")
    assert "Send As" in last.hint
    assert "DATA" not in refusing_smtp.commands


@pytest.mark.integration
def test_smtp_without_starttls_on_offer(refusing_smtp: SmtpTest, tmp_path: Path) -> None:
    last = check_smtp(smtp_cfg(tmp_path, refusing_smtp.port, host="localhost",
                               security="starttls"), MAILBOX)[-1]  # fmt: skip
    assert (last.step, last.ok) == ("smtp tls", False)
    assert last.message == "STARTTLS failed: the server does not offer STARTTLS"


@pytest.mark.integration
def test_whole_config_all_good(
    dovecot: Account, smtp: SmtpCapture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = local_config(tmp_path, dovecot, smtp, database_url="sqlite://")
    found = check_connection(load_config(path))
    assert not failed(found)
    assert [f.step for f in found] == [
        "imap dns",
        "imap tcp",
        "imap tls",
        "imap login",
        "imap folder inbox",
        "smtp dns",
        "smtp tcp",
        "smtp tls",
        "smtp relay",
    ]
    assert smtp.messages == []  # the relay test sent nothing


def test_each_further_mailbox_is_checked_and_named(
    dovecot: Account, smtp: SmtpCapture, tmp_path: Path
) -> None:
    foi = "foi@example.org"
    path = local_config(
        tmp_path,
        dovecot,
        smtp,
        database_url="sqlite://",
        extra=f'[[mailboxes]]\naddress = "{foi}"\ninbox = "FOI requests"\n',
    )
    found = check_connection(load_config(path))
    steps = [(f.step, f.ok) for f in found]
    assert steps[5:10] == [
        (f"imap dns ({foi})", True),
        (f"imap tcp ({foi})", True),
        (f"imap tls ({foi})", True),
        (f"imap login ({foi})", True),
        (f"imap folder inbox ({foi})", False),
    ]
    assert found[9].message == "folder 'FOI requests' not found"
    # The hint names the entry's own key, not [imap]'s.
    assert "set mailboxes.0.inbox to one of the folders on the server: 'INBOX'" in found[9].hint


def test_findings_print_as_aligned_lines_with_hints() -> None:
    text = format_findings(
        [
            Finding("imap dns", True, "imap.example.gov.uk is 192.0.2.1"),
            Finding("imap tls", False, "the certificate has expired", "renew it"),
        ]
    )
    assert text.splitlines() == [
        "ok    imap dns  imap.example.gov.uk is 192.0.2.1",
        "FAIL  imap tls  the certificate has expired",
        "                hint: renew it",
    ]
