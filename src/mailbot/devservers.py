"""Throwaway local mail servers for the demo and the tests: a real Dovecot and an SMTP capture."""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from imapclient import IMAPClient


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DovecotMissing(RuntimeError):
    """Dovecot is not installed (apt-get install dovecot-imapd)."""


_CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
info_log_path = {dir}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{dir}/mail/%u
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = {uid}
mail_max_userip_connections = 50
imap_idle_notify_interval = 1 secs
shutdown_clients = yes
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
# Any user name logs in with the one password: each test gets a fresh mailbox by name.
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={dir}/home/%u
}}
namespace inbox {{
  inbox = yes
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox "Sent Items" {{
    auto = subscribe
  }}
}}
"""


def _dovecot_binary() -> str:
    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if not Path(binary).exists():
        raise DovecotMissing("dovecot is not installed: apt-get install dovecot-imapd")
    return binary


@dataclass
class LocalDovecot:
    """A private Dovecot on 127.0.0.1 with one mailbox account (user/password)."""

    user: str = "council@example.org"
    password: str = "secret"
    port: int = field(default_factory=free_port)
    # Dovecot's unprivileged processes must be able to reach every folder on the way:
    # keep the default (a fresh folder in /tmp) unless the given one is world-traversable.
    directory: Path | None = None
    _owned_dir: bool = False

    def start(self) -> LocalDovecot:
        binary = _dovecot_binary()
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="mailbot-dovecot-"))
            self._owned_dir = True
        d = self.directory
        for sub in ("run", "state", "mail", "home"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        dovecot = pwd.getpwnam("dovecot")
        os.chmod(d, 0o755)
        for sub in ("mail", "home"):
            os.chown(d / sub, dovecot.pw_uid, dovecot.pw_gid)
        (d / "dovecot.conf").write_text(self._config(d, dovecot.pw_uid))
        subprocess.run([binary, "-c", str(d / "dovecot.conf")], check=True)
        self._wait_ready()
        return self

    def _config(self, d: Path, uid: int) -> str:
        """The dovecot.conf text; a subclass may change it (TLS, another passdb)."""
        return _CONFIG.format(dir=d, port=self.port, uid=uid, password=self.password)

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.05)
        raise RuntimeError(f"dovecot did not start; see {self.directory}/dovecot.log")

    def stop(self) -> None:
        if self.directory is None:
            return
        children = self._children()
        subprocess.run(
            ["doveadm", "-c", str(self.directory / "dovecot.conf"), "stop"],
            check=False,
            capture_output=True,
        )
        # Wait for the master to go: it takes the client sessions down with it, so a
        # restart really drops every connection, as a real server restart would.
        pid_file = self.directory / "run" / "master.pid"
        deadline = time.monotonic() + 15
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        # Dovecot lets logged-in imap processes outlive the master; a restarted server
        # must drop its clients, so end them too.
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _children(self) -> list[int]:
        assert self.directory is not None
        try:
            master = (self.directory / "run" / "master.pid").read_text().strip()
        except OSError:
            return []
        found = subprocess.run(["pgrep", "-P", master], capture_output=True, text=True)
        return [int(pid) for pid in found.stdout.split()]

    def cleanup(self) -> None:
        self.stop()
        if self._owned_dir and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    def restart(self) -> None:
        self.stop()
        subprocess.run([_dovecot_binary(), "-c", str(self.directory / "dovecot.conf")], check=True)
        self._wait_ready()

    @property
    def account(self) -> Account:
        return Account(self.port, self.user, self.password)

    def add_account(self, user: str) -> Account:
        """Another mailbox on the running server (created on first login)."""
        return Account(self.port, user, self.password)

    def client(self) -> IMAPClient:
        return self.account.client()

    def append(self, raw: bytes, when: datetime | None = None, folder: str = "INBOX") -> int:
        return self.account.append(raw, when, folder)


@dataclass(frozen=True)
class Account:
    """One mailbox on a LocalDovecot: enough to log in and deliver test mail."""

    port: int
    user: str
    password: str

    def client(self) -> IMAPClient:
        imap = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=10)
        imap.login(self.user, self.password)
        return imap

    def append(self, raw: bytes, when: datetime | None = None, folder: str = "INBOX") -> int:
        """Deliver a message as if it arrived at `when` (IMAP INTERNALDATE); returns its UID.

        Dovecot ignores dates in the future and uses the real time instead.
        """
        with self.client() as imap:
            result = imap.append(folder, raw, msg_time=when)
        # UIDPLUS answers "[APPENDUID <uidvalidity> <uid>] ..."
        text = result.decode() if isinstance(result, bytes) else str(result)
        return int(text.split("]")[0].split()[-1]) if "APPENDUID" in text else 0


class _CaptureHandler:
    def __init__(self, capture: SmtpCapture) -> None:
        self.capture = capture

    async def handle_EHLO(  # aiosmtpd calls hooks by these names
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list,
    ) -> list:
        with self.capture.lock:
            self.capture.greetings += 1  # one a connection (and again after STARTTLS)
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if self.capture.refuse_mail:
            return self.capture.refuse_mail
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        refusal = self.capture.refuse or self.capture.refuse_rcpt.get(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        sender = message_from_bytes(content, policy=email.policy.default)["From"]
        for address, refusal in self.capture.refuse_data_from.items():
            if sender is not None and address in str(sender):
                return refusal
        with self.capture.lock:
            self.capture.messages.append(
                CapturedMessage(envelope.mail_from, list(envelope.rcpt_tos), content)
            )
        if self.capture.keeps_copy_in is not None:
            # As Microsoft 365 does: what it takes is filed in the sender's Sent Items
            # before it answers.
            copy_to = self.capture.keeps_copy_in
            await asyncio.to_thread(copy_to.append, content, None, self.capture.copy_folder)
        return "250 Message accepted for delivery"


@dataclass
class CapturedMessage:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> Message:
        """Parsed as a mail client shows it: headers unfolded and decoded."""
        return message_from_bytes(self.raw, policy=email.policy.default)

    def text(self) -> str:
        """The text/plain part, decoded."""
        for part in self.message.walk():
            if part.get_content_type() == "text/plain":
                payload = part.get_payload(decode=True) or b""
                text = payload.decode(part.get_content_charset() or "utf-8")
                return text.replace("\r\n", "\n")
        return ""


@dataclass
class SmtpCapture:
    """An aiosmtpd server on 127.0.0.1 that keeps every message it accepts.

    Set `refuse` to an SMTP reply such as "451 4.3.0 try later" to make it refuse every
    recipient; `refuse_mail` to refuse at MAIL FROM, `refuse_rcpt` to refuse some
    recipients, `refuse_data_from` to refuse messages from some From addresses after
    DATA (as Microsoft 365 refuses Send As), each with a reply as Postfix would give it.
    With a `password`, logging in is required and any other password is refused (535).
    `smtputf8` offers international addresses (RFC 6531). With `keeps_copy_in`, each
    message taken is also filed in that Dovecot mailbox's `copy_folder`.
    """

    port: int = field(default_factory=free_port)
    messages: list[CapturedMessage] = field(default_factory=list)
    refuse: str | None = None
    refuse_mail: str | None = None
    refuse_rcpt: dict[str, str] = field(default_factory=dict)
    refuse_data_from: dict[str, str] = field(default_factory=dict)
    password: str | None = None
    smtputf8: bool = False
    greetings: int = 0  # EHLOs seen: how many connections mailbot opened
    # A mailbox to file a copy of every message taken in, as Microsoft 365 files what
    # it is handed in the sender's sent folder.
    keeps_copy_in: Account | None = None
    copy_folder: str = "Sent"
    lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    def start(self) -> SmtpCapture:
        options: dict = {"enable_SMTPUTF8": self.smtputf8}
        if self.password is not None:
            options.update(
                authenticator=self._authenticate, auth_required=True, auth_require_tls=False
            )
        self._controller = Controller(
            _CaptureHandler(self), hostname="127.0.0.1", port=self.port, **options
        )
        self._controller.start()
        return self

    def _authenticate(
        self, server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password.decode() == self.password
        return AuthResult(success=ok, handled=False)

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def to(self, address: str) -> list[CapturedMessage]:
        with self.lock:
            return [m for m in self.messages if address in m.rcpt_tos]


SAMPLE_OFFICERS = """\
[[officers]]
name = "Sam Patel"
email = "sam.patel@council.example.gov.uk"
phone = "01785 619000"
roles = ["foi-officer", "data-protection-officer"]

[[officers]]
name = "Alex Morgan"
email = "alex.morgan@council.example.gov.uk"
phone = "01785 619001"
roles = ["customer-services", "duty-officer"]

[[officers]]
name = "Jordan Reid"
email = "jordan.reid@council.example.gov.uk"
phone = "01785 619002"
roles = ["complaints-officer", "head-of-service", "customer-services-manager"]

[[officers]]
name = "Chris Lee"
email = "chris.lee@council.example.gov.uk"
phone = "01785 619003"
roles = ["clerk", "chief-executive", "town-clerk", "mayor"]
"""


def local_config(
    directory: Path,
    dovecot: LocalDovecot | Account,
    smtp: SmtpCapture,
    *,
    mailbox_address: str | None = None,
    database_url: str,
    policy: str = "stafford",
    start_from: datetime | None = None,
    extra: str = "",
    imap_extra: str = "",
    smtp_extra: str = "",
    officers: str = SAMPLE_OFFICERS,
) -> Path:
    """Write a mailbot.toml for the local servers (password in a file beside it)."""
    secret = directory / "imap-password"
    secret.write_text(dovecot.password + "\n")
    secret.chmod(0o600)
    start = f'start_from = "{start_from.isoformat()}"\n' if start_from else ""
    path = directory / "mailbot.toml"
    path.write_text(
        f"""\
[council]
name = "Stafford Borough Council"
policy = "{policy}"
mailbox_address = "{mailbox_address or dovecot.user}"

[imap]
host = "127.0.0.1"
port = {dovecot.port}
security = "none"
username = "{dovecot.user}"
password_file = "{secret}"
{start}{imap_extra}
[smtp]
host = "127.0.0.1"
port = {smtp.port}
security = "none"
{smtp_extra}
[database]
url = "{database_url}"
{extra}
{officers}"""
    )
    return path
