"""Shared fixtures: real Dovecot, real aiosmtpd, SQLite and PostgreSQL databases."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mailbot.app import App
from mailbot.clock import FixedClock
from mailbot.config import load_config
from mailbot.devservers import Account, LocalDovecot, SmtpCapture, local_config
from mailbot.migrations import upgrade

PG_ADMIN = os.environ.get("MAILBOT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
COUNCIL = "council@example.org"
START_FROM = datetime(2026, 10, 1, tzinfo=UTC)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """In CI a skipped integration test is a failure: a missing server must not pass quietly."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") and item.get_closest_marker("integration"):
        report.outcome = "failed"
        report.longrepr = f"integration test skipped in CI: {report.longrepr}"


@pytest.fixture(scope="session")
def dovecot_server() -> Iterator[LocalDovecot]:
    """One real Dovecot for the session; each test gets a mailbox of its own on it."""
    server = LocalDovecot(user="admin@example.org").start()
    yield server
    server.cleanup()


@pytest.fixture
def dovecot(dovecot_server: LocalDovecot) -> Account:
    return dovecot_server.add_account(f"council-{uuid.uuid4().hex[:10]}@example.org")


@pytest.fixture
def smtp() -> Iterator[SmtpCapture]:
    server = SmtpCapture().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test runs on both databases; PostgreSQL gets a fresh database per test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mailbot.db'}"
        return
    name = f"mailbot_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def clock() -> FixedClock:
    # Tuesday 3 November 2026, 10:00 GMT: an ordinary working morning. Test mail is
    # dated in the past because Dovecot ignores APPEND dates in the future.
    return FixedClock(datetime(2026, 11, 3, 10, 0, tzinfo=UTC))


def council_config(
    folder: Path,
    dovecot: LocalDovecot | Account,
    smtp: SmtpCapture,
    database_url: str,
    **extra: Any,
) -> Path:
    """A mailbot.toml for the council's mailbox on the local servers (`extra` as for
    local_config), with the database's schema made."""
    path = local_config(
        folder,
        dovecot,
        smtp,
        mailbox_address=COUNCIL,
        database_url=database_url,
        start_from=START_FROM,
        **extra,
    )
    upgrade(database_url)
    return path


@pytest.fixture
def config_path(tmp_path: Path, dovecot: Account, smtp: SmtpCapture, database_url: str) -> Path:
    return council_config(tmp_path, dovecot, smtp, database_url)


@pytest.fixture
def app(config_path: Path, clock: FixedClock) -> Iterator[App]:
    application = App.load(load_config(config_path), clock)
    yield application
    application.engine.dispose()


def resident_mail(
    *,
    sender: str = "jane.doe@example.com",
    name: str = "Jane Doe",
    subject: str = "Pothole on Mill Lane",
    body: str = "Could you tell me when the pothole outside 4 Mill Lane will be repaired?",
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
    when: datetime | None = None,
) -> bytes:
    """A plain message from a resident to the council mailbox, as CRLF bytes."""
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>" if name else sender
    msg["To"] = COUNCIL
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when or datetime(2026, 11, 3, 9, 0, tzinfo=UTC))
    msg["Message-ID"] = message_id or make_msgid(domain="example.com")
    for key, value in (headers or {}).items():
        msg[key] = value
    msg.set_content(body)
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def to_residents(smtp: SmtpCapture) -> list:
    """What residents received (auto-replies), leaving out staff mail such as the digest."""
    with smtp.lock:
        return [m for m in smtp.messages if m.message["Auto-Submitted"] == "auto-replied"]


def mailbot(config: Path, *args: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    """`mailbot --config CONFIG ARGS...` as its own process, as a sysadmin would run it."""
    return subprocess.Popen(
        [sys.executable, "-m", "mailbot", "--config", str(config), *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def stop(proc: subprocess.Popen, timeout: float = 15) -> tuple[int, str]:
    """SIGTERM, as systemd stops the service; the exit status and what it logged."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, err.decode()


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")
