"""Daemon: the run loop — IDLE on the inbox, process new mail, send the outbox, stop cleanly."""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from imapclient.exceptions import IMAPClientError
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from mailbot import outbox, scheduler, systemd
from mailbot.app import App
from mailbot.health import Alert, HealthWatch
from mailbot.mailbox import Mailbox, MailboxError, backoff_delays
from mailbot.oauth import OAuthError
from mailbot.pipeline import ingest_folder
from mailbot.store import Case, OutboxMessage

log = logging.getLogger("mailbot.daemon")


def connect(app: App) -> Mailbox:
    imap = app.cfg.imap
    if imap.auth == "xoauth2":
        assert app.tokens is not None  # the config refuses xoauth2 without [oauth]
        secret = app.tokens.for_user(imap.username).token()  # renewed here when due
    else:
        secret = imap.password()
    mailbox = Mailbox(imap, secret)
    mailbox.connect()
    return mailbox


def cycle(app: App, mailbox: Mailbox) -> int:
    """One pass: read new mail, queue what the promises make due now, send the outbox."""
    if app.cfg.imap.sent:
        # Officers' replies kept in the sent folder; the inbox is read last so that it is
        # the folder selected for IDLE.
        ingest_folder(app, mailbox, app.cfg.imap.sent, sent=True)
    count = ingest_folder(app, mailbox, app.cfg.imap.inbox)
    scheduler.run_due(app)
    outbox.flush(app)
    return count


def run_once(app: App) -> int:
    """`mailbot run --once`: everything new, everything due, then return."""
    outbox.recover_interrupted(app.sessions, app.clock)
    mailbox = connect(app)
    try:
        return cycle(app, mailbox)
    finally:
        mailbox.close()


@dataclass
class Daemon:
    """`mailbot run`: keeps going until SIGTERM/SIGINT; SIGHUP reloads policy and templates."""

    app: App
    stop: threading.Event = field(default_factory=threading.Event)
    reload: threading.Event = field(default_factory=threading.Event)
    # Set to end an IDLE early: a signal, or the timer saying reminders may be due.
    wake: threading.Event = field(default_factory=threading.Event)
    purge_due: threading.Event = field(default_factory=threading.Event)
    health: HealthWatch | None = None
    tick_seconds: float = 60.0
    watchdog: systemd.Watchdog = field(default_factory=systemd.watchdog)

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
        # APScheduler keeps time; the work itself stays on this thread, one database
        # writer at a time, so a reminder pass never races an acknowledgement.
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
        timer.start()
        self.health = HealthWatch(
            started_at=self.app.clock.now(),
            alert_after=timedelta(minutes=self.app.cfg.imap.alert_after_minutes),
        )
        try:
            self._run()
        finally:
            timer.shutdown(wait=False)

    def _run(self) -> None:
        # READY before connecting: an unreachable mail server is retried here, with
        # backoff, rather than by systemd restarting us.
        systemd.ready(f"connecting to {self.app.cfg.imap.host}")
        delays = backoff_delays()
        while not self.stop.is_set():
            mailbox: Mailbox | None = None
            try:
                mailbox = connect(self.app)
                log.info(
                    "connected to %s; watching %s", self.app.cfg.imap.host, self.app.cfg.imap.inbox
                )
                delays = backoff_delays()  # a good connection resets the backoff
                self._serve(mailbox)
            except (MailboxError, IMAPClientError, OSError, OAuthError, OperationalError) as exc:
                delay = next(delays)
                if isinstance(exc, OperationalError):
                    log.error("database unavailable (%s); trying again in %.0f s", exc, delay)
                else:
                    log.warning("mailbox connection lost (%s); reconnecting in %.0f s", exc, delay)
                self._check_health()
                self.wake.clear()
                self.watchdog.wait(
                    self.wake, delay, f"mailbox unreachable; retrying in {delay:.0f} s"
                )
            finally:
                if mailbox is not None:
                    mailbox.close()
        log.info("stopped")

    def _serve(self, mailbox: Mailbox) -> None:
        outbox.recover_interrupted(self.app.sessions, self.app.clock)
        while not self.stop.is_set():
            if self.reload.is_set():
                self.reload.clear()
                self._reload()
            if self.purge_due.is_set():
                self.purge_due.clear()
                self._purge()
            count = cycle(self.app, mailbox)
            if self.health is not None:
                self.health.succeeded(self.app.clock.now())
            self._check_health()
            self.watchdog.ping(self._status(count))
            if not self.stop.is_set():
                mailbox.wait_for_mail(self.watchdog.cap(self._idle_seconds()), self.wake)
            self.wake.clear()

    def _reload(self) -> None:
        systemd.reloading()
        try:
            self.app.reload()
            log.info("reloaded policy and templates")
        except Exception as exc:  # keep serving with what we had
            log.error("reload failed, keeping the previous policy: %s", exc)
        finally:
            systemd.ready("reloaded")

    def _check_health(self) -> None:
        """The silent-stop guard: log loudly and email the clerk role once per outage."""
        if self.health is None:
            return
        cfg, tokens = self.app.cfg, self.app.tokens
        alert = self.health.check(
            self.app.clock.now(),
            mailbox=cfg.imap.username or cfg.council.mailbox_address,
            token_failing_since=tokens.failing_since if tokens else None,
            token_error=tokens.last_error if tokens else "",
            timezone=cfg.council.timezone,
        )
        if alert is not None:
            self._tell_clerk(alert)

    def _tell_clerk(self, alert: Alert) -> None:
        if alert.kind == "alert":
            log.critical("%s: %s", alert.subject, alert.text.splitlines()[0])
        else:
            log.warning("%s", alert.subject)
        now = self.app.clock.now()
        # Queued, then sent now: if SMTP shares the failing sign-in it goes once that is
        # fixed; the critical log line above is the alarm that gets out regardless.
        with self.app.sessions.begin() as session:
            outbox.notify_role(
                self.app,
                session,
                None,
                role="clerk",
                template="mailbot-health",
                kind="health",
                subject=alert.subject,
                key=f"health:{alert.kind}:{now.isoformat()}",
                now=now,
                extra={"text": alert.text},
                at_once=True,
            )
        try:
            outbox.flush(self.app)
        except Exception as exc:  # an alert must never stop the daemon
            log.error("could not send the alert now: %s", exc)

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
                .where(OutboxMessage.status == "pending")
            )
        now = self.app.clock.now().astimezone(ZoneInfo(self.app.cfg.council.timezone))
        cases = "case" if open_cases == 1 else "cases"
        checked = f"{now:%H:%M:%S %Z}"
        return f"{open_cases} open {cases}, {to_send} to send; {new} new at last check {checked}"

    def _idle_seconds(self) -> float:
        """IDLE until mail arrives, but wake for the next outbox retry (RFC 2177: < 29 min)."""
        limit = float(self.app.cfg.imap.idle_seconds)
        with self.app.sessions() as session:
            due = session.scalar(
                select(func.min(OutboxMessage.next_attempt_at)).where(
                    OutboxMessage.status == "pending"
                )
            )
        if due is None:
            return limit
        wait = (due - self.app.clock.now()) / timedelta(seconds=1)
        return max(1.0, min(limit, wait))
