"""Daemon: the run loop — IDLE on every mailbox, process new mail, send the outbox, stop cleanly."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from imapclient.exceptions import IMAPClientError
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from mailbot import deadlines, metrics, problems, scheduler, sentcopy, systemd
from mailbot.app import App
from mailbot.config import ImapConfig
from mailbot.health import Alert, HealthWatch
from mailbot.mailbox import (
    FolderMissing,
    Mailbox,
    MailboxError,
    MailboxLost,
    backoff_delays,
    sign_in,
    wait_for_mail,
)
from mailbot.oauth import OAuthError
from mailbot.outbox import delivery, notify_role, pauses, process, sending
from mailbot.pipeline import ingest_mailbox
from mailbot.policy import policy_file
from mailbot.shadow import mode_of
from mailbot.store import Case, OutboxMessage

log = logging.getLogger("mailbot.daemon")


# What a broken connection to one mailbox looks like; the others carry on meanwhile.
CONNECTION_ERRORS = (MailboxError, IMAPClientError, OSError, OAuthError)


def run_once(app: App) -> int:
    """`mailbot run --once`: everything new in every mailbox, everything due, then return.

    A mailbox that cannot be reached does not hold up the others; its error is raised
    once they are done (exit 2), as is sending that could not be done (exit 2), once
    everything else is.
    """
    delivery.recover_interrupted(app.sessions, app.clock)
    sentcopy.settle_uncertain(app)  # where the provider keeps a copy of what it took
    pauses.retry_paused_now(app)  # one complete cycle: paused sending is tried again too
    count = 0
    unreachable: Exception | None = None
    for box in app.cfg.all_mailboxes:
        try:
            mailbox = sign_in(app, box)
            try:
                count += ingest_mailbox(app, mailbox)
            finally:
                mailbox.close()
            sent = mailbox.sent_folder
            if sent is not None and sent.name is None and sent.problem:
                unreachable = unreachable or FolderMissing(sent.problem)  # read the rest
        except CONNECTION_ERRORS as exc:
            log.error("mailbox %s: %s", app.cfg.address_of(box), exc)
            unreachable = unreachable or exc
    scheduler.run_due(app)
    sending.flush(app)
    with app.sessions.begin() as session:
        problems.alert_due(app, session, app.clock.now())
    # What the first pass queued (the clerk hearing of a problem, or that it is fixed)
    # goes now too, unless it is what is refused.
    sending.flush(app)
    sentcopy.file_due(app)  # copies of what went, in the sent folder
    if unreachable is not None:
        raise unreachable
    stuck = pauses.sending_problems(app)
    if stuck:
        raise sending.SendingPaused("; ".join(stuck))
    return count


@dataclass
class Watched:
    """One mailbox as the daemon keeps it: its connection (None while down), when to try
    again, and its silent-stop guard."""

    box: ImapConfig
    address: str
    health: HealthWatch
    mailbox: Mailbox | None = None
    retry_at: float = 0.0  # time.monotonic()
    delays: Iterator[float] = field(default_factory=backoff_delays)


@dataclass
class ChangeWatch:
    """The files the clerk's console writes: the policy file and the templates folder
    (a saved template is renamed into it). A change to either is a reload, as SIGHUP is,
    so an edit takes effect with nobody on the server."""

    paths: tuple[Path, ...]
    seen: tuple[int | None, ...] | None = None

    @classmethod
    def for_app(cls, app: App) -> ChangeWatch:
        council = app.cfg.council
        paths = [policy_file(council.policy)]
        if council.templates is not None:
            paths.append(council.templates)
        watch = cls(tuple(paths))
        watch.changed()  # as they are now
        return watch

    def changed(self) -> bool:
        now = tuple(_modified(path) for path in self.paths)
        before, self.seen = self.seen, now
        return before is not None and now != before


def _modified(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


@dataclass
class Daemon:
    """`mailbot run`: keeps going until SIGTERM/SIGINT; SIGHUP reloads policy and templates.

    One thread decides (reads every mailbox, keeps the promises), so a reminder pass never
    races an acknowledgement; a second process sends what it queues (outbox.process.Sender).
    """

    app: App
    stop: threading.Event = field(default_factory=threading.Event)
    reload: threading.Event = field(default_factory=threading.Event)
    # Set to end an IDLE early: a signal, or the timer saying reminders may be due.
    wake: threading.Event = field(default_factory=threading.Event)
    purge_due: threading.Event = field(default_factory=threading.Event)
    tick_seconds: float = 60.0
    watchdog: systemd.Watchdog = field(default_factory=systemd.watchdog)
    watched: list[Watched] = field(default_factory=list)
    sender: process.Sender | None = None
    watch: ChangeWatch | None = None
    # What the metrics endpoint reads of the daemon ([metrics] listen).
    figures: metrics.DaemonFigures = field(default_factory=metrics.DaemonFigures)

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self._stop())
        signal.signal(signal.SIGINT, lambda *_: self._stop())
        signal.signal(signal.SIGHUP, lambda *_: self._set(self.reload))

    def _stop(self) -> None:
        systemd.stopping()  # systemd shows "deactivating" at once, not after the IDLE ends
        self._set(self.stop)

    def _set(self, event: threading.Event) -> None:
        event.set()
        self.wake.set()

    def run(self) -> None:
        # APScheduler keeps time; the work itself stays on this thread.
        timer = BackgroundScheduler(timezone="UTC")
        timer.add_job(self.wake.set, "interval", seconds=self.tick_seconds, id="due-actions")
        # Personal data of long-closed cases goes once a night (the policy's retention).
        timer.add_job(
            lambda: self._set(self.purge_due),
            "cron",
            hour=2,
            minute=30,
            timezone=self.app.cfg.council.timezone,
            id="retention",
        )
        now = self.app.clock.now()
        self.watched = [
            Watched(
                box,
                self.app.cfg.address_of(box),
                HealthWatch(started_at=now, alert_after=timedelta(minutes=box.alert_after_minutes)),
            )
            for box in self.app.cfg.all_mailboxes
        ]
        self.watch = ChangeWatch.for_app(self.app)
        # A date for each category before the sending process is forked: the bank-holiday
        # tables (slow to load) then load once for both, and not in the first write turn.
        for category in self.app.policy.categories:
            deadlines.compute(self.app.policy, category, now)
        self.sender = process.Sender(self.app)
        self.sender.start()
        self.sender.on_end(self.wake.set)  # a turn at once, which sees it has gone
        timer.start()
        endpoint = None
        try:
            # A thread, so after the sending process is forked (it never carries it).
            self.figures.contacts = self._contacts
            endpoint = metrics.serve(self.app, self.figures)
            self._run()
        finally:
            if endpoint is not None:
                endpoint.stop()
            timer.shutdown(wait=False)
            self.sender.stop()
            for watched in self.watched:
                self._disconnect(watched)
            log.info("stopped")

    def _run(self) -> None:
        # READY before connecting: an unreachable mail server is retried here, with
        # backoff, rather than by systemd restarting us.
        hosts = ", ".join(sorted({w.box.host for w in self.watched}))
        systemd.ready(f"connecting to {hosts}")
        database_delays = backoff_delays()
        while not self.stop.is_set():
            try:
                self._turn()
                database_delays = backoff_delays()
            except OperationalError as exc:
                delay = next(database_delays)
                log.error("database unavailable (%s); trying again in %.0f s", exc, delay)
                self.wake.clear()
                self.watchdog.wait(self.wake, delay, "database unavailable")
                continue
            if not self.stop.is_set():
                self._wait()
            self.wake.clear()

    def _turn(self) -> None:
        """Read every mailbox that is up, queue what is due, hand the outbox to the sender."""
        if self.watch is not None and self.watch.changed():
            log.info("the policy or templates changed on disk")
            self.reload.set()
        if self.reload.is_set():
            self.reload.clear()
            self._reload()
        if self.purge_due.is_set():
            self.purge_due.clear()
            self._purge()
        assert self.sender is not None
        code = self.sender.ended()
        if code is not None:  # systemd restarts us (exit 3); stranded mail turns 'uncertain'
            raise process.SendingStopped(
                f"the sending process ended unexpectedly (exit code {code})"
            )
        new = sum(self._read(watched) for watched in self.watched)
        began = time.monotonic()
        scheduler.run_due(self.app)
        self.figures.last_pass_at = self.app.clock.now()
        self.figures.last_pass_seconds = time.monotonic() - began
        self.sender.wake()
        self._check_health()
        if not self.sender.stuck():  # a wedged sender gets the service restarted
            self.watchdog.ping(self._status(new))

    def _read(self, watched: Watched) -> int:
        if watched.mailbox is None:
            if time.monotonic() < watched.retry_at:
                return 0
            try:
                watched.mailbox = sign_in(self.app, watched.box)
            except CONNECTION_ERRORS as exc:
                self._lost(watched, exc)
                return 0
            log.info(
                "connected to %s; watching %s for %s",
                watched.box.host,
                watched.box.inbox,
                watched.address,
            )
        assert self.sender is not None
        try:
            count = ingest_mailbox(self.app, watched.mailbox, progress=self.sender.wake)
        except CONNECTION_ERRORS as exc:
            self._lost(watched, exc)
            return 0
        # Only mail read resets the backoff: a server that lets us log in and then fails
        # (a missing folder, say) is not tried again every second.
        watched.delays = backoff_delays()
        watched.health.succeeded(self.app.clock.now())
        return count

    def _contacts(self) -> list[metrics.Contact]:
        """When each mailbox and the SMTP server last answered (for the metrics)."""
        found = [
            metrics.Contact("imap", w.address, w.health.last_success, w.mailbox is not None)
            for w in self.watched
        ]
        smtp = self.app.cfg.smtp
        sent = self.sender.smtp_contact if self.sender is not None else None
        found.append(metrics.Contact("smtp", smtp.username or smtp.host, sent))
        return found

    def _lost(self, watched: Watched, exc: Exception) -> None:
        delay = next(watched.delays)
        log.warning(
            "mailbox %s: connection lost (%s); reconnecting in %.0f s", watched.address, exc, delay
        )
        self._disconnect(watched)
        watched.retry_at = time.monotonic() + delay

    def _disconnect(self, watched: Watched) -> None:
        if watched.mailbox is not None:
            watched.mailbox.close()
            watched.mailbox = None

    def _wait(self) -> None:
        """IDLE on every connected mailbox until mail comes, the timer or a signal wakes
        us, or a mailbox that is down is due another try."""
        seconds = float(min(w.box.idle_seconds for w in self.watched))
        retries = [w.retry_at for w in self.watched if w.mailbox is None]
        if retries:
            seconds = max(0.0, min(seconds, min(retries) - time.monotonic()))
        seconds = self.watchdog.cap(seconds)
        by_mailbox = {id(w.mailbox): w for w in self.watched if w.mailbox is not None}
        try:
            wait_for_mail([w.mailbox for w in self.watched if w.mailbox], seconds, self.wake)
        except MailboxLost as exc:
            self._lost(by_mailbox[id(exc.mailbox)], exc)
        except CONNECTION_ERRORS as exc:  # which one is unknown: reconnect them all
            for watched in by_mailbox.values():
                self._lost(watched, exc)

    def _reload(self) -> None:
        systemd.reloading()
        try:
            self.app.reload()
            pauses.retry_paused_now(self.app)  # the sysadmin may have fixed what refused it
            if self.sender is not None:
                self.sender.reload()
            log.info("reloaded policy and templates")
        except Exception as exc:  # keep serving with what we had
            log.error("reload failed, keeping the previous policy: %s", exc)
        finally:
            systemd.ready("reloaded")

    def _check_health(self) -> None:
        """The silent-stop guard: log loudly and email the clerk role once per outage."""
        cfg, tokens = self.app.cfg, self.app.tokens
        for watched in self.watched:
            alert = watched.health.check(
                self.app.clock.now(),
                mailbox=watched.box.username or watched.address,
                token_failing_since=tokens.failing_since if tokens else None,
                token_error=tokens.last_error if tokens else "",
                timezone=cfg.council.timezone,
            )
            if alert is not None:
                self._tell_clerk(alert)
        # Sending refused, a folder missing: the clerk hears once each, at once (an SMTP
        # server out of reach once it has lasted).
        with self.app.sessions.begin() as session:
            told = problems.alert_due(self.app, session, self.app.clock.now())
        if told and self.sender is not None:
            self.sender.wake()

    def _tell_clerk(self, alert: Alert) -> None:
        if alert.kind == "alert":
            log.critical("%s: %s", alert.subject, alert.text.splitlines()[0])
        else:
            log.warning("%s", alert.subject)
        now = self.app.clock.now()
        # Queued, then sent at once: if SMTP shares the failing sign-in it goes once that
        # is fixed; the critical log line above is the alarm that gets out regardless.
        with self.app.sessions.begin() as session:
            notify_role(
                self.app,
                session,
                None,
                role="clerk",
                template="mailbot-health",
                kind="health",
                subject=alert.subject,
                key=f"health:{alert.kind}:{alert.subject}:{now.isoformat()}",
                now=now,
                extra={"text": alert.text},
                at_once=True,
            )
        if self.sender is not None:
            self.sender.wake()

    def _purge(self) -> None:
        from mailbot.retention import purge

        try:
            with self.app.sessions.begin() as session:
                result = purge(session, self.app.policy, self.app.clock.now())
            log.info("retention: %s", result.summary())
        except Exception:  # a failed purge is retried tomorrow; mail keeps flowing
            log.exception("retention purge failed")

    def _status(self, new: int) -> str:
        """STATUS for `systemctl status`: open cases, mail waiting to go, the last check."""
        with self.app.sessions() as session:
            open_cases = session.scalar(
                select(func.count()).select_from(Case).where(Case.status == "open")
            )
            to_send = session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.status.in_(("pending", "paused")))
            )
            wrong = problems.open_problems(session)
            trial = "SHADOW MODE (nothing sent to residents); " if mode_of(session).shadow else ""
        now = self.app.clock.now().astimezone(ZoneInfo(self.app.cfg.council.timezone))
        cases = "case" if open_cases == 1 else "cases"
        checked = f"{now:%H:%M:%S %Z}"
        status = f"{open_cases} open {cases}, {to_send} to send; {new} new at last check {checked}"
        down = [w.address for w in self.watched if w.mailbox is None]
        status += f"; cannot reach {', '.join(down)}" if down else ""
        # What a sysadmin must fix shows first in `systemctl status`, whatever is cut off.
        return "".join(f"{problems.headline(p)}; " for p in wrong) + trial + status
