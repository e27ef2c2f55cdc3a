"""The fault run: `mailbot run` as systemd runs it, against one misconfiguration at a time.
While it lasts the clerk (or, where the fault is the mail server itself, the sysadmin's
systemd status and log) is told; once it is fixed, every resident has exactly one
acknowledgement."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailbot.devservers import Account, SmtpCapture
from tests.conftest import COUNCIL, council_config, resident_mail, stop, to_residents, wait_for

pytestmark = pytest.mark.integration

CLERK = "chris.lee@council.example.gov.uk"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mailbot.db'}"  # the faults are the mail servers'


class Notify:
    """A pretend systemd: the STATUS lines `mailbot run` sends it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.statuses: list[str] = []
        self._done = threading.Event()
        threading.Thread(target=self._listen, daemon=True).start()

    def _listen(self) -> None:
        while not self._done.is_set():
            try:
                datagram = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            except OSError:
                return
            self.statuses += [f[7:] for f in datagram.split("\n") if f.startswith("STATUS=")]

    def said(self, words: str) -> bool:
        return any(words in status for status in self.statuses)

    def close(self) -> None:
        self._done.set()
        self.sock.close()


@dataclass
class Run:
    """One council's mailbot under a pretend systemd, and the residents who wrote."""

    config: Path
    dovecot: Account
    smtp: SmtpCapture
    notify: Notify
    residents: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    logs: str = ""

    def start(self) -> None:
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify.path)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailbot", "--config", str(self.config), "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_for(lambda: self.notify.said("open case"), timeout=60)

    def stop(self) -> None:
        assert self.proc is not None
        code, err = stop(self.proc)
        self.logs += err
        assert code == 0, err

    def reload(self) -> None:
        """`systemctl reload mailbot`, as a sysadmin does after fixing something."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def restart(self) -> None:
        self.stop()
        self.start()

    def write(self, n: int) -> None:
        """A resident writes; the daemon, idling, wakes for it."""
        address = f"resident{n}@example.com"
        self.residents.append(address)
        self.dovecot.append(resident_mail(sender=address, message_id=f"<fault-{n}@x>"))

    def acknowledged(self) -> list[str]:
        return sorted(m.rcpt_tos[0] for m in to_residents(self.smtp))

    def clerk_heard(self, subject: str) -> bool:
        return any(subject in str(m.message["Subject"]) for m in self.smtp.to(CLERK))

    def peek_logs(self) -> str:
        """What the daemon has logged so far, read without stopping it."""
        assert self.proc is not None and self.proc.stderr is not None
        os.set_blocking(self.proc.stderr.fileno(), False)
        chunk = self.proc.stderr.read()
        if chunk:
            self.logs += chunk.decode(errors="replace")
        return self.logs


@dataclass(frozen=True)
class Fault:
    """A misconfiguration: how to make it, whether its being told has happened, how to
    fix it, and whether the fix needs a restart (a config file) or a reload (a server)."""

    make: Callable[[Run], None]
    told: Callable[[Run], bool]
    fix: Callable[[Run], None]
    then: str  # "restart" | "reload" | "nothing"
    # What the clerk has read once it is fixed (mail held up with the rest, and the news
    # that it is over).
    afterwards: tuple[str, ...] = ()


def edit_config(old: str, new: str) -> Callable[[Run], None]:
    def edit(run: Run) -> None:
        text = run.config.read_text()
        assert old in text
        run.config.write_text(text.replace(old, new, 1))

    return edit


def set_smtp(**values: object) -> Callable[[Run], None]:
    def change(run: Run) -> None:
        for key, value in values.items():
            setattr(run.smtp, key, value)

    return change


def paused(run: Run) -> bool:
    """Told while sending is refused: systemd's status leads with it and the log says it
    at CRITICAL. (The clerk's email waits with everything else from this address; the
    test with two mailboxes shows it going at once when only one address is refused.)"""
    return run.notify.said("SENDING PAUSED") and "CRITICAL" in run.peek_logs()


REFUSED = "mailbot cannot send mail: the SMTP server refuses it"
AGAIN = "mailbot is sending mail again"

FAULTS = {
    "sent-folder-misspelt": Fault(
        make=edit_config("[imap]\n", '[imap]\nsent = "Sent Itmes"\n'),
        told=lambda run: run.clerk_heard("mailbot cannot find a mail folder"),
        fix=edit_config('sent = "Sent Itmes"\n', 'sent = "Sent"\n'),
        then="restart",
        afterwards=("mailbot can read the folder again",),
    ),
    "inbox-misspelt": Fault(
        make=edit_config("[imap]\n", '[imap]\ninbox = "Enquries"\n'),
        told=lambda run: run.clerk_heard("mailbot cannot find a mail folder")
        and run.notify.said("FOLDER MISSING"),
        fix=edit_config('inbox = "Enquries"\n', ""),
        then="restart",
        afterwards=("mailbot can read the folder again",),
    ),
    "send-as-not-owned": Fault(
        make=set_smtp(refuse="553 5.7.1 <council@example.org>: Sender address rejected: "
                      "not owned by user council@example.org"),
        told=paused,
        fix=set_smtp(refuse=None),
        then="reload",
        afterwards=(REFUSED, AGAIN),
    ),
    "client-host-rejected": Fault(
        make=set_smtp(refuse="554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: "
                      "Access denied"),
        told=paused,
        fix=set_smtp(refuse=None),
        then="reload",
        afterwards=(REFUSED, AGAIN),
    ),
    "smtp-password-changed": Fault(
        make=set_smtp(password="rotated"),
        told=paused,
        fix=lambda run: (run.config.parent / "smtp-password").write_text("rotated\n"),
        then="reload",
        afterwards=(REFUSED, AGAIN),
    ),
    "smtp-server-down": Fault(
        make=lambda run: run.smtp.stop(),
        # No email can tell of this one: systemd's status does, at once.
        told=lambda run: run.notify.said("SENDING PAUSED: cannot reach the SMTP server"),
        fix=lambda run: run.smtp.start(),
        then="reload",
    ),
    "template-crashes": Fault(
        make=lambda run: (run.config.parent / "ours" / "acknowledgement-enquiry.txt").write_text(
            "{{ 1 / 0 }}"
        ),
        told=lambda run: run.clerk_heard("A template needs fixing: acknowledgement-enquiry"),
        fix=lambda run: (run.config.parent / "ours" / "acknowledgement-enquiry.txt").unlink(),
        then="nothing",
    ),
}  # fmt: skip


@pytest.fixture
def council(tmp_path: Path, dovecot: Account, database_url: str) -> Iterator[Run]:
    smtp = SmtpCapture(password="secret").start()  # sign-in required, as a real relay does
    (tmp_path / "smtp-password").write_text("secret\n")
    (tmp_path / "ours").mkdir()  # the clerk's templates folder
    config = council_config(
        tmp_path,
        dovecot,
        smtp,
        database_url,
        smtp_extra=f'username = "{COUNCIL}"\npassword_file = "smtp-password"\n',
    )
    config.write_text(config.read_text().replace("[imap]\n", 'templates = "ours"\n\n[imap]\n', 1))
    notify = Notify(tmp_path / "notify")
    run = Run(config, dovecot, smtp, notify)
    try:
        yield run
    finally:
        if run.proc is not None and run.proc.poll() is None:
            run.proc.kill()
            run.proc.communicate()
        notify.close()
        with contextlib.suppress(Exception):
            smtp.stop()


@pytest.mark.parametrize("name", list(FAULTS))
def test_after_any_one_fault_is_fixed_every_resident_has_one_acknowledgement(council, name):
    fault = FAULTS[name]
    run = council
    fault.make(run)
    run.write(0)
    run.start()
    run.write(1)  # mail keeps coming while the fault lasts

    wait_for(lambda: fault.told(run), timeout=90)
    during = run.acknowledged()
    assert len(during) == len(set(during))  # never twice, even now

    fault.fix(run)
    if fault.then == "restart":
        run.restart()
    elif fault.then == "reload":
        run.reload()
    run.write(2)  # and after
    wait_for(lambda: run.acknowledged() == sorted(run.residents), timeout=90)
    wait_for(lambda: all(run.clerk_heard(subject) for subject in fault.afterwards), timeout=90)
    run.stop()  # a clean stop: whatever was in hand is finished first

    assert run.acknowledged() == sorted(run.residents)  # each exactly once
    assert "Traceback" not in run.logs
