"""The daemon's sending process: forked when `mailbot run` starts, woken when mail is
queued, stopped after the message in hand, and killed with the daemon."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from mailbot import sentcopy
from mailbot.outbox.delivery import SENDING_LEASE, recover_interrupted
from mailbot.outbox.sending import send_due
from mailbot.outbox.transport import KeptConnections
from mailbot.problems import SENDING_KINDS, open_problems
from mailbot.store import OutboxMessage

if TYPE_CHECKING:
    from mailbot.app import App

log = logging.getLogger("mailbot.outbox")


KEEP_IDLE = 30.0  # seconds the sending process keeps idle SMTP connections open


class SendingStopped(Exception):
    """The daemon's sending process ended by itself (killed, or a crash)."""


class _Flag:
    """A yes/no shared with the sending process: a byte of shared memory, no lock."""

    def __init__(self) -> None:
        self._value = multiprocessing.get_context("fork").Value("b", 0, lock=False)

    def set(self) -> None:
        self._value.value = 1

    def clear(self) -> None:
        self._value.value = 0

    def is_set(self) -> bool:
        return bool(self._value.value)


class _Doorbell:
    """Wakes the sending process: a byte down a pipe. A process killed while waiting
    cannot leave the daemon stuck ringing, as it can with a multiprocessing.Event, whose
    set() waits for every waiter to wake."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def ring(self) -> None:
        with contextlib.suppress(BlockingIOError):  # full of rings already: it will wake
            os.write(self._write, b"!")

    def wait(self, seconds: float) -> bool:
        """Up to `seconds` for a ring; True if there was one (all are answered at once)."""
        ready = multiprocessing.connection.wait([self._read], max(0.0, seconds))
        if ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._read, 4096):
                    pass
        return bool(ready)


class Sender:
    """The daemon's sending process: mail goes out as soon as it is queued, while the
    main process reads the next message, and again when a deferred message's retry is due.

    A process, not a thread: Python runs one thread at a time, and composing and sending
    a busy morning's acknowledgements would otherwise take turns with reading the mail.
    It is forked when the daemon starts, before any other thread, so it has the loaded
    config, policy, templates and clock; it opens its own database connections. It
    leaves signals to the daemon, which stops it (after the message in hand) and tells
    it to reload; it dies with the daemon if that is killed.
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self._doorbell = _Doorbell()
        self._stopping = _Flag()
        self._reloading = _Flag()
        # time.monotonic() (one clock for every process) while a pass is under way, else 0
        ctx = multiprocessing.get_context("fork")
        self._busy_since = ctx.Value("d", 0.0, lock=False)
        # When the SMTP server last took mail or our sign-in (the app's clock, Unix
        # time; 0: not yet): the daemon's metrics read it.
        self._smtp_contact = ctx.Value("d", 0.0, lock=False)
        self._parent = os.getpid()
        self._process = ctx.Process(target=self._main, name="mailbot-outbox", daemon=True)

    def start(self) -> None:
        self._process.start()

    def wake(self) -> None:
        """Something was queued: send it now."""
        self._doorbell.ring()

    def reload(self) -> None:
        """SIGHUP reached the daemon: read the policy and templates again."""
        self._reloading.set()
        self._doorbell.ring()

    def stop(self, timeout: float = 60.0) -> None:
        """Finish the message in hand, then end the process."""
        self._stopping.set()
        self._doorbell.ring()
        self._process.join(timeout)
        if self._process.is_alive():
            log.error("outbox: the sending process did not stop in %.0f s; killed", timeout)
            self._process.kill()
            self._process.join()

    def on_end(self, call: Callable[[], None]) -> None:
        """Have a watching thread call `call` when the sending process ends, however it
        ends (its sentinel: nothing is reaped here, so ended() still reads the code)."""

        def watch() -> None:
            multiprocessing.connection.wait([self._process.sentinel])
            call()

        threading.Thread(target=watch, name="outbox-watch", daemon=True).start()

    def ended(self) -> int | None:
        """The sending process's exit code if it has ended (it should not, until stopped)."""
        return None if self._process.is_alive() else self._process.exitcode

    @property
    def smtp_contact(self) -> datetime | None:
        """When the SMTP server last took mail or our sign-in (None: not since start)."""
        stamp = self._smtp_contact.value
        return datetime.fromtimestamp(stamp, UTC) if stamp else None

    def stuck(self, limit: timedelta = SENDING_LEASE) -> bool:
        """One pass of sending has run longer than `limit` (each step times out sooner):
        the daemon then stops feeding systemd's watchdog, which restarts it."""
        busy = self._busy_since.value
        return busy > 0 and time.monotonic() - busy > limit.total_seconds()

    def _main(self) -> None:
        """The sending process."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # the daemon decides when we stop
        _die_with_parent(self._parent)
        self.app.engine.dispose(close=False)  # the daemon's connections stay the daemon's
        # One event loop for the process's life, so the SMTP connection can outlive a pass.
        with asyncio.Runner() as runner:
            kept = KeptConnections()
            try:
                self._serve(runner, kept)
            finally:
                runner.run(kept.close())

    def _serve(self, runner: asyncio.Runner, kept: KeptConnections) -> None:
        failures = 0
        again = False  # straight round again, without waiting for a ring
        while not self._stopping.is_set():
            woken = again or self._doorbell.wait(self._seconds_to_next(KEEP_IDLE if kept else 60.0))
            again = False
            if self._stopping.is_set():
                break
            if self._reloading.is_set():
                self._reloading.clear()
                self._reload_app()
            if not woken:
                runner.run(kept.close())  # nothing new for a while: let the server go
            self._busy_since.value = time.monotonic()
            try:
                # Another process on the same database may have died mid-send.
                recover_interrupted(self.app.sessions, self.app.clock)
                sentcopy.settle_uncertain(self.app)  # where the provider keeps a copy
                sent = runner.run(send_due(self.app, self._stopping, kept))
                if sent.sent or kept:  # the server answered: taken, or kept open
                    self._smtp_contact.value = self.app.clock.now().timestamp()
                sentcopy.file_due(self.app)  # copies of what just went, in the sent folder
                failures = 0
            except Exception as exc:  # the database, say: try again, never let it die
                failures += 1
                delay = min(2.0**failures, 300.0)
                log.error("outbox: cannot send now (%s); trying again in %.0f s", exc, delay)
                self._doorbell.wait(delay)  # a stop rings too
                again = True
            finally:
                self._busy_since.value = 0.0

    def _reload_app(self) -> None:
        try:
            self.app.reload()
        except Exception as exc:  # the daemon logs the same problem; keep what we had
            log.debug("outbox: reload failed, keeping the previous policy: %s", exc)

    def _seconds_to_next(self, limit: float) -> float:
        """Until the earliest deferred message, or paused sending, is due another try (at
        most `limit`; 0 if one is due)."""
        try:
            with self.app.sessions() as session:
                due = session.scalar(
                    select(func.min(OutboxMessage.next_attempt_at)).where(
                        OutboxMessage.status == "pending"
                    )
                )
                retries = [p.retry_at for p in open_problems(session, SENDING_KINDS)]
        except OperationalError:
            return 5.0
        times = [t for t in (due, *retries) if t is not None]
        if not times:
            return limit
        return max(0.0, min(limit, (min(times) - self.app.clock.now()).total_seconds()))


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when the daemon dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before we asked
        os._exit(0)


PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
