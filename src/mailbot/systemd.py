"""A dependency-free sd_notify client: READY, WATCHDOG, STATUS, STOPPING, RELOADING."""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time

log = logging.getLogger("mailbot.systemd")

# systemd reads one datagram of newline-separated KEY=VALUE assignments.
_KEY = re.compile(r"[A-Z][A-Z0-9_]*\Z")
_LINE_BREAKS = re.compile(r"[\r\n\x00]+")
MAX_STATUS = 500  # STATUS shows in `systemctl status`; keep it one short line


def _address() -> bytes | None:
    """$NOTIFY_SOCKET as a socket address, or None when not under systemd (or unsupported)."""
    path = os.environ.get("NOTIFY_SOCKET", "")
    if path.startswith("/"):
        return os.fsencode(path)
    if path.startswith("@") and len(path) > 1:
        return b"\0" + os.fsencode(path[1:])  # Linux abstract namespace
    return None  # unset, or a vsock: address that a service on a host never gets


def _value(value: object) -> str:
    if value is True:
        return "1"
    if value is False:
        return "0"
    # A value may come from mail (a folder name in STATUS); a newline would forge a field.
    return _LINE_BREAKS.sub(" ", str(value))[:MAX_STATUS]


def message(**fields: object) -> bytes:
    """The datagram for these fields: b"READY=1\\nSTATUS=..."; None values are left out."""
    lines = []
    for key, value in fields.items():
        if not _KEY.match(key):
            raise ValueError(f"not an sd_notify field name: {key!r}")
        if value is not None:
            lines.append(f"{key}={_value(value)}")
    return "\n".join(lines).encode("utf-8")


def notify(**fields: object) -> bool:
    """Send fields to systemd, e.g. notify(READY=1, STATUS="3 open cases").

    True when a datagram was sent; False (never an exception) when not under systemd or
    the socket is gone: losing a status update must not stop the mailbox being served.
    """
    address = _address()
    if address is None:
        return False
    data = message(**fields)
    if not data:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(data, address)  # type: ignore[arg-type]  # bytes addresses are valid
    except OSError as exc:
        log.debug("sd_notify to %s failed: %s", os.environ.get("NOTIFY_SOCKET"), exc)
        return False
    return True


def ready(status: str | None = None) -> bool:
    """The service has started: systemd stops waiting and `systemctl start` returns."""
    return notify(READY=1, STATUS=status)


def stopping(status: str | None = "stopping") -> bool:
    return notify(STOPPING=1, STATUS=status)


def reloading(status: str | None = "reloading policy and templates") -> bool:
    """Before a reload; follow it with ready(). MONOTONIC_USEC lets systemd ≥ 253 match them."""
    monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(RELOADING=1, MONOTONIC_USEC=monotonic_usec, STATUS=status)


def status(text: str) -> bool:
    return notify(STATUS=text)


def watchdog_interval() -> float | None:
    """How often to send WATCHDOG=1, in seconds: half of WatchdogSec, as sd_watchdog_enabled(3)
    advises. None when the watchdog is off or meant for another process ($WATCHDOG_PID)."""
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid is not None:
        try:
            if int(pid) != os.getpid():
                return None  # inherited from a parent that systemd watches, not us
        except ValueError:
            return None
    return usec / 2 / 1_000_000


class Watchdog:
    """Keeps systemd's watchdog fed from the main loop and shows a one-line STATUS.

    Ping from the loop that does the work (not a side thread), so a wedged loop really
    does get the service restarted. ping() is cheap and rate-limited: call it as often as
    you like, e.g. after every message.
    """

    def __init__(self) -> None:
        self.interval = watchdog_interval()
        self._last_ping = float("-inf")
        self._last_status: str | None = None

    def ping(self, status: str | None = None, *, force: bool = False) -> bool:
        """WATCHDOG=1 when due (every interval/2, for slack) and STATUS when it has changed."""
        now = time.monotonic()
        due = self.interval is not None and (force or now - self._last_ping >= self.interval / 2)
        changed = status is not None and status != self._last_status
        if not (due or changed):
            return False
        sent = notify(WATCHDOG=1 if due else None, STATUS=status if changed else None)
        if sent and due:
            self._last_ping = now
        if sent and changed:
            self._last_status = status
        return sent

    def cap(self, seconds: float) -> float:
        """Shorten a blocking wait (IMAP IDLE) so the loop comes round to ping in time."""
        return seconds if self.interval is None else min(seconds, self.interval)

    def wait(self, event: threading.Event, seconds: float, status: str | None = None) -> bool:
        """event.wait(seconds), pinging meanwhile (a long reconnect backoff is not a hang)."""
        end = time.monotonic() + seconds
        while True:
            self.ping(status)
            left = end - time.monotonic()
            if left <= 0:
                return event.is_set()
            if event.wait(self.cap(left)):
                return True


_shared: Watchdog | None = None
_shared_lock = threading.Lock()


def watchdog() -> Watchdog:
    """The process's one Watchdog, so a long loop deep in the code can keep it fed too."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Watchdog()
        return _shared


def keepalive() -> None:
    """Call inside long loops (say, per message of a big backlog): a ping when one is due,
    otherwise nothing, so a slow but working pass is not killed as a hang."""
    watchdog().ping()
