"""TLS: IMAP and SMTP certificates are verified against a private CA; failures say what is wrong."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailbot.config import ImapConfig, SmtpConfig
from mailbot.diagnose import Finding, check_imap, check_smtp
from mailbot.mailbox import Mailbox, MailboxError
from mailbot.outbox.transport import smtp_login_check
from tests.tlsservers import ConfiguredDovecot, ServerCert, SmtpTest, TestCA

pytestmark = pytest.mark.integration

USER, PASSWORD = "council@example.org", "secret"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def certs(ca: TestCA) -> dict[str, ServerCert]:
    return {"good": ca.good(), "expired": ca.expired(), "wrong-host": ca.wrong_host()}


@pytest.fixture(scope="module")
def dovecots(certs: dict[str, ServerCert]) -> Iterator[dict[str, ConfiguredDovecot]]:
    """One Dovecot with `ssl = required` per certificate."""
    servers = {name: ConfiguredDovecot(user=USER, cert=cert) for name, cert in certs.items()}
    try:
        for server in servers.values():
            server.start()
        yield servers
    finally:
        for server in servers.values():
            server.cleanup()


def imap(
    server: ConfiguredDovecot, security: str, ca_file: Path | None, **kw: object
) -> ImapConfig:
    port = server.tls_port if security == "tls" else server.port
    assert server.directory is not None
    secret = server.directory / "imap-password"
    secret.write_text(PASSWORD + "\n")
    return ImapConfig.model_validate(
        {
            "host": "127.0.0.1",
            "port": port,
            "security": security,
            "username": USER,
            "password_file": secret,
            "ca_file": ca_file,
            "timeout": 10,
            **kw,
        }
    )


def steps(findings: list[Finding]) -> list[tuple[str, bool]]:
    return [(f.step, f.ok) for f in findings]


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_imap_verified_with_the_ca_and_refused_without(
    dovecots: dict[str, ConfiguredDovecot], ca: TestCA, security: str
) -> None:
    server = dovecots["good"]
    mailbox = Mailbox(imap(server, security, ca.path), PASSWORD)
    mailbox.connect()
    try:
        assert mailbox.select("INBOX") > 0
    finally:
        mailbox.close()

    with pytest.raises(MailboxError, match="certificate not trusted: unable to get local issuer"):
        Mailbox(imap(server, security, None), PASSWORD).connect()

    found = check_imap(imap(server, security, ca.path))
    assert steps(found) == [
        ("imap dns", True),
        ("imap tcp", True),
        ("imap tls", True),
        ("imap login", True),
        ("imap folder inbox", True),
    ]
    assert "certificate for good from Mailbot Test CA" in found[2].message

    found = check_imap(imap(server, security, None))
    assert steps(found)[-1] == ("imap tls", False)
    assert found[-1].message.startswith(
        "the certificate of 127.0.0.1 is not signed by an authority this machine trusts "
        "(for localhost, 127.0.0.1, issued by Mailbot Test CA)"
    )
    assert "set imap.ca_file" in found[-1].hint


def test_expired_certificate_is_named_with_its_date(
    dovecots: dict[str, ConfiguredDovecot], ca: TestCA, certs: dict[str, ServerCert]
) -> None:
    server = dovecots["expired"]
    with pytest.raises(MailboxError, match="certificate has expired"):
        Mailbox(imap(server, "tls", ca.path), PASSWORD).connect()
    last = check_imap(imap(server, "starttls", ca.path))[-1]
    assert (last.step, last.ok) == ("imap tls", False)
    assert last.message.startswith("the certificate of 127.0.0.1 has expired (on 20")
    assert "renew" in last.hint


def test_certificate_for_another_host(dovecots: dict[str, ConfiguredDovecot], ca: TestCA) -> None:
    server = dovecots["wrong-host"]
    with pytest.raises(MailboxError, match="certificate not trusted: IP address mismatch"):
        Mailbox(imap(server, "tls", ca.path), PASSWORD).connect()
    last = check_imap(imap(server, "tls", ca.path))[-1]
    assert last.message == "the certificate is for mail.example.net, not 127.0.0.1"
    assert "set imap.host to a name the certificate covers" in last.hint


def test_a_ca_file_from_another_authority_is_named(
    dovecots: dict[str, ConfiguredDovecot], tmp_path: Path
) -> None:
    other = TestCA(tmp_path / "other", name="Some Other CA")
    last = check_imap(imap(dovecots["good"], "tls", other.path))[-1]
    assert not last.ok and "issued by Mailbot Test CA" in last.message
    assert last.hint.startswith(f"imap.ca_file ({other.path}) does not hold the authority")


def test_tls_to_a_starttls_port_says_which_to_use(
    dovecots: dict[str, ConfiguredDovecot], ca: TestCA
) -> None:
    server = dovecots["good"]
    config = imap(server, "tls", ca.path, port=server.port)  # the STARTTLS port
    last = check_imap(config)[-1]
    assert (last.step, last.ok) == ("imap tls", False)
    assert f"port {server.port} did not answer in TLS" in last.message
    assert 'use security = "starttls"' in last.hint


def test_unreadable_ca_file(dovecots: dict[str, ConfiguredDovecot], tmp_path: Path) -> None:
    last = check_imap(imap(dovecots["good"], "tls", tmp_path / "missing.pem"))[-1]
    assert last.message.startswith(f"cannot read imap.ca_file {tmp_path / 'missing.pem'}")


# --- SMTP --------------------------------------------------------------------------------


@pytest.fixture
def smtp_servers(certs: dict[str, ServerCert]) -> Iterator[dict[str, SmtpTest]]:
    servers = {
        "tls": SmtpTest("tls", certs["good"]).start(),
        "starttls": SmtpTest("starttls", certs["good"]).start(),
        "expired": SmtpTest("tls", certs["expired"]).start(),
        "wrong-host": SmtpTest("starttls", certs["wrong-host"]).start(),
    }
    yield servers
    for server in servers.values():
        server.stop()


def smtp(server: SmtpTest, ca_file: Path | None, tmp_path: Path) -> SmtpConfig:
    secret = tmp_path / "smtp-password"
    secret.write_text(PASSWORD + "\n")
    return SmtpConfig.model_validate(
        {
            "host": "127.0.0.1",
            "port": server.port,
            "security": server.mode,
            "username": USER,
            "password_file": secret,
            "ca_file": ca_file,
            "timeout": 10,
        }
    )


@pytest.mark.parametrize("mode", ["tls", "starttls"])
def test_smtp_verified_with_the_ca_and_refused_without(
    smtp_servers: dict[str, SmtpTest], ca: TestCA, tmp_path: Path, mode: str
) -> None:
    server = smtp_servers[mode]
    found = check_smtp(smtp(server, ca.path, tmp_path), USER)
    assert steps(found) == [
        ("smtp dns", True),
        ("smtp tcp", True),
        ("smtp tls", True),
        ("smtp login", True),
        ("smtp relay", True),
    ]
    # The relay test never sends anything.
    assert server.commands[-3:] == [f"MAIL {USER}", f"RCPT {USER}", "RSET"]
    assert "DATA" not in server.commands

    # The outbox's own connection checks the same way.
    asyncio.run(smtp_login_check(smtp(server, ca.path, tmp_path)))
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(smtp_login_check(smtp(server, None, tmp_path)))

    last = check_smtp(smtp(server, None, tmp_path), USER)[-1]
    assert (last.step, last.ok) == ("smtp tls", False)
    assert "not signed by an authority this machine trusts" in last.message
    assert "smtp.ca_file" in last.hint


def test_smtp_expired_and_wrong_host(
    smtp_servers: dict[str, SmtpTest], ca: TestCA, tmp_path: Path
) -> None:
    last = check_smtp(smtp(smtp_servers["expired"], ca.path, tmp_path), USER)[-1]
    assert last.message.startswith("the certificate of 127.0.0.1 has expired")
    last = check_smtp(smtp(smtp_servers["wrong-host"], ca.path, tmp_path), USER)[-1]
    assert last.message == "the certificate is for mail.example.net, not 127.0.0.1"
