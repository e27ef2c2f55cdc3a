"""sd_notify client against sockets we listen on, and the shipped systemd unit file."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailbot import systemd
from tests.conftest import resident_mail

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "mailbot.service"
SYSUSERS = ROOT / "deploy" / "mailbot.sysusers"


@pytest.fixture(autouse=True)
def _no_systemd_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The test run itself may be under systemd (a CI runner's unit): start from nothing.
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(systemd, "_shared", None)


@pytest.fixture
def listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd's notify socket, as a path."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting on the socket."""
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096))
    except BlockingIOError:
        return out
    finally:
        sock.settimeout(5)


# --- sd_notify -------------------------------------------------------------------------


def test_notify_sends_exact_datagram(listener: socket.socket) -> None:
    assert systemd.notify(READY=1, STATUS="3 open cases") is True
    assert listener.recv(4096) == b"READY=1\nSTATUS=3 open cases"


def test_notify_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"mailbot-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify(READY=1, STATUS="3 open cases") is True
        assert sock.recv(4096) == b"READY=1\nSTATUS=3 open cases"


@pytest.mark.parametrize("value", [None, "", "@", "vsock:2:1234", "relative/path"])
def test_no_usable_socket_is_a_quiet_no_op(monkeypatch: pytest.MonkeyPatch, value) -> None:
    if value is not None:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert systemd.notify(READY=1) is False
    assert systemd.ready("x") is False
    assert systemd.stopping() is False
    assert systemd.reloading() is False
    assert systemd.Watchdog().ping("x", force=True) is False


def test_socket_gone_returns_false(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert systemd.notify(READY=1, STATUS="3 open cases") is False


def test_status_cannot_forge_fields(listener: socket.socket) -> None:
    """A folder name or subject in STATUS must not add a line such as STOPPING=1."""
    systemd.notify(STATUS="INBOX\nSTOPPING=1\r\nWATCHDOG=trigger\0x")
    assert listener.recv(4096) == b"STATUS=INBOX STOPPING=1 WATCHDOG=trigger x"


def test_values_and_field_names(listener: socket.socket) -> None:
    systemd.notify(READY=True, STATUS=None, ERRNO=5, X_MAILBOT="é")
    assert listener.recv(4096) == "READY=1\nERRNO=5\nX_MAILBOT=é".encode()
    with pytest.raises(ValueError):
        systemd.notify(**{"ready": 1})
    with pytest.raises(ValueError):
        systemd.message(**{"A=B": 1})
    assert systemd.notify(STATUS=None) is False  # nothing to say, nothing sent
    assert len(systemd.message(STATUS="x" * 10_000)) <= len("STATUS=") + systemd.MAX_STATUS


def test_lifecycle_messages(listener: socket.socket) -> None:
    systemd.ready("watching INBOX")
    systemd.reloading()
    systemd.ready("reloaded")
    systemd.stopping()
    got = received(listener)
    assert got[0] == b"READY=1\nSTATUS=watching INBOX"
    lines = got[1].split(b"\n")
    assert lines[0] == b"RELOADING=1"
    assert lines[1].startswith(b"MONOTONIC_USEC=") and int(lines[1].split(b"=")[1]) > 0
    assert lines[2] == b"STATUS=reloading policy and templates"
    assert got[2:] == [b"READY=1\nSTATUS=reloaded", b"STOPPING=1\nSTATUS=stopping"]


# --- watchdog --------------------------------------------------------------------------


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    assert systemd.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "120000000")
    assert systemd.watchdog_interval() == 60.0  # no WATCHDOG_PID: it is for us
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval() == 60.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert systemd.watchdog_interval() is None
    for bad_pid in ("", "abc"):
        monkeypatch.setenv("WATCHDOG_PID", bad_pid)
        assert systemd.watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_PID")
    for bad in ("", "0", "-5", "soon"):
        monkeypatch.setenv("WATCHDOG_USEC", bad)
        assert systemd.watchdog_interval() is None


def test_watchdog_pings_when_due_and_status_when_changed(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "120000000")
    clock = [1000.0]
    monkeypatch.setattr(systemd.time, "monotonic", lambda: clock[0])
    dog = systemd.Watchdog()
    assert dog.interval == 60.0

    assert dog.ping("2 open cases") is True
    assert dog.ping("2 open cases") is False  # neither due nor changed: no datagram
    clock[0] += 10
    assert dog.ping("3 open cases") is True  # status changed, watchdog not yet due
    clock[0] += 25
    assert dog.ping("3 open cases") is True  # 35 s since the last ping: more than half
    assert dog.ping(force=True) is True
    assert received(listener) == [
        b"WATCHDOG=1\nSTATUS=2 open cases",
        b"STATUS=3 open cases",
        b"WATCHDOG=1",
        b"WATCHDOG=1",
    ]


def test_watchdog_without_watchdog_still_reports_status(listener: socket.socket) -> None:
    dog = systemd.Watchdog()
    assert dog.interval is None
    assert dog.cap(540.0) == 540.0
    assert dog.ping() is False
    assert dog.ping("1 open case") is True
    assert received(listener) == [b"STATUS=1 open case"]


def test_watchdog_caps_idle_and_pings_while_waiting(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # 0.2 s: ping every 0.1 s
    dog = systemd.Watchdog()
    assert dog.cap(540.0) == pytest.approx(0.1)
    stop = threading.Event()
    assert dog.wait(stop, 0.5, status="reconnecting") is False
    pings = [d for d in received(listener) if b"WATCHDOG=1" in d]
    assert len(pings) >= 4  # a long reconnect backoff is not mistaken for a hang

    threading.Timer(0.05, stop.set).start()
    assert dog.wait(stop, 30.0) is True  # returns as soon as the event is set


def test_shared_watchdog_and_keepalive(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "120000000")
    assert systemd.watchdog() is systemd.watchdog()
    systemd.keepalive()
    systemd.keepalive()  # not due again yet: a per-message call costs nothing
    assert received(listener) == [b"WATCHDOG=1"]


# --- the unit file ---------------------------------------------------------------------


class _MultiDict(dict):
    """configparser keeps only the last of repeated keys; systemd keeps all of them."""

    def __setitem__(self, key: str, value: object) -> None:
        if isinstance(value, list) and key in self:
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    parser = configparser.ConfigParser(
        strict=False, interpolation=None, dict_type=_MultiDict, empty_lines_in_values=False
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(path.read_text(encoding="utf-8"))
    return {
        name: {key: value.split("\n") for key, value in parser.items(name, raw=True)}
        for name in parser.sections()
    }


REQUIRED = {
    "Type": "notify",
    "NotifyAccess": "main",
    "WatchdogSec": "120",
    "Restart": "on-failure",
    "RestartSec": "10",
    "User": "mailbot",
    "Group": "mailbot",
    "StateDirectory": "mailbot",
    "ConfigurationDirectory": "mailbot",
    "ExecStartPre": "/opt/mailbot/bin/mailbot db upgrade",
    "ExecStart": "/opt/mailbot/bin/mailbot run",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "NoNewPrivileges": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RestrictRealtime": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "UMask": "0077",
}


@pytest.mark.parametrize(("key", "value"), REQUIRED.items())
def test_unit_has_directive(key: str, value: str) -> None:
    service = read_unit(UNIT)["Service"]
    assert service.get(key) == [value], f"[Service] {key}={value}"


def test_unit_repeated_directives() -> None:
    unit = read_unit(UNIT)
    assert unit["Service"]["LoadCredential"] == [
        "imap-password:/etc/mailbot/imap-password",
        "smtp-password:/etc/mailbot/smtp-password",
    ]
    assert unit["Service"]["SystemCallFilter"][0] == "@system-service"
    assert "DynamicUser" not in unit["Service"]  # a fixed user owns /var/lib/mailbot
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert "network-online.target" in unit["Unit"]["After"][0].split()


def test_sysusers_creates_the_unit_user() -> None:
    lines = [
        line.split()
        for line in SYSUSERS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert [fields[:3] for fields in lines] == [["u", "mailbot", "-"]]


@pytest.mark.skipif(
    shutil.which("systemd-sysusers") is None, reason="systemd-sysusers is not installed"
)
def test_sysusers_file_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    passwd = (tmp_path / "etc" / "passwd").read_text()
    assert re.search(r"^mailbot:x:\d+:\d+:[^:]*:/var/lib/mailbot:/usr/sbin/nologin$", passwd, re.M)


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (apt-get install systemd)",
)
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify insists the commands exist; mailbot is not installed in /opt here, so point
    # them at a stand-in and check every other line exactly as shipped.
    stand_in = tmp_path / "mailbot"
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    unit = tmp_path / "mailbot.service"
    unit.write_text(UNIT.read_text().replace("/opt/mailbot/bin/mailbot", str(stand_in)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
    # verify exits 0 even for unknown keys or bad values; those are warnings on stderr.
    complaints = [line for line in result.stderr.splitlines() if "mailbot.service" in line]
    assert result.returncode == 0 and not complaints, result.stderr


# --- `mailbot run` under a pretend systemd ------------------------------------------------------


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mailbot.db'}"  # the protocol, not the database, is tested


def collect_until(
    sock: socket.socket, seen: list[bytes], done: Callable[[], bool], timeout: float = 30.0
) -> None:
    end = time.monotonic() + timeout
    while not done():
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out; systemd was told: {seen}")
        sock.settimeout(left)
        seen.append(sock.recv(4096))


def fields(seen: list[bytes]) -> list[str]:
    return [line for datagram in seen for line in datagram.decode().split("\n")]


@pytest.mark.integration
@pytest.mark.skipif(
    "systemd" not in (ROOT / "src" / "mailbot" / "daemon.py").read_text(),
    reason="daemon.py does not speak sd_notify yet (wiring pending, issue 7)",
)
def test_run_speaks_sd_notify(config_path: Path, dovecot, smtp, tmp_path: Path) -> None:
    dovecot.append(resident_mail(), when=datetime(2026, 11, 3, 9, 30, tzinfo=UTC))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(tmp_path / "notify"),
        "WATCHDOG_USEC": "2000000",  # ping at least every second
    }
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailbot", "--config", str(config_path), "run"],
        env=env,
        stderr=subprocess.PIPE,
    )
    seen: list[bytes] = []
    try:
        collect_until(sock, seen, lambda: "READY=1" in fields(seen))
        collect_until(sock, seen, lambda: any("1 open case" in f for f in fields(seen)))
        pings = fields(seen).count("WATCHDOG=1")
        collect_until(sock, seen, lambda: fields(seen).count("WATCHDOG=1") >= pings + 3)

        mark = len(seen)
        proc.send_signal(signal.SIGHUP)
        collect_until(sock, seen, lambda: "READY=1" in fields(seen[mark + 1 :]))
        assert fields(seen[mark:])[0] == "RELOADING=1"

        mark = len(seen)
        proc.send_signal(signal.SIGTERM)
        collect_until(sock, seen, lambda: "STOPPING=1" in fields(seen[mark:]))
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        sock.close()
    assert proc.returncode == 0, err.decode()
    statuses = [f for f in fields(seen) if f.startswith("STATUS=")]
    assert statuses and all("\r" not in s for s in statuses)
