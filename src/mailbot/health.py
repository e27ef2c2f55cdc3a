"""Health: notice when mailbot has silently stopped reading mail, and tell the clerk once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

DEFAULT_ALERT_AFTER = timedelta(minutes=30)


@dataclass(frozen=True)
class Alert:
    """What to log loudly and email to the clerk role."""

    kind: Literal["alert", "recovered"]
    subject: str
    text: str


def check_health(
    *,
    now: datetime,
    started_at: datetime,
    last_success: datetime | None,
    token_failing_since: datetime | None,
    token_error: str = "",
    alert_after: timedelta = DEFAULT_ALERT_AFTER,
    alerted_at: datetime | None,
    mailbox: str,
    timezone: str = "Europe/London",
) -> Alert | None:
    """Decide whether the clerk must be told something now.

    `last_success` is the last successful mailbox check (None if there has been none since
    `started_at`); `token_failing_since` is the first failed token renewal not yet followed
    by a good one; `alerted_at` is when this outage's alert went out (None if not yet).
    One alert per outage, then one "working again" note once a check succeeds after it.
    """
    zone = ZoneInfo(timezone)

    def local(at: datetime) -> str:
        return f"{at.astimezone(zone):%H:%M on %A %-d %B %Y}"

    if alerted_at is not None:
        if last_success is not None and last_success > alerted_at and token_failing_since is None:
            return Alert(
                "recovered",
                f"mailbot is reading {mailbox} again",
                f"mailbot checked {mailbox} successfully at {local(last_success)}.\n"
                "Mail that arrived during the outage is being processed now; nothing is "
                "lost, but acknowledgements for it went out late.",
            )
        return None  # already told; no email every minute of an outage

    if token_failing_since is not None:
        return Alert(
            "alert",
            f"mailbot cannot sign in to {mailbox}",
            f"Since {local(token_failing_since)} mailbot has not been able to get a sign-in "
            f"token for {mailbox}:\n\n  {token_error or 'unknown error'}\n\n"
            + _CONSEQUENCES.format(mailbox=mailbox),
        )

    quiet_since = last_success or started_at
    if now - quiet_since >= alert_after:
        minutes = int((now - quiet_since) / timedelta(minutes=1))
        if last_success is None:
            opening = (
                f"mailbot started at {local(started_at)} and has not managed to check "
                f"{mailbox} since ({minutes} minutes)."
            )
        else:
            opening = (
                f"mailbot last checked {mailbox} successfully at {local(last_success)}, "
                f"{minutes} minutes ago."
            )
        return Alert(
            "alert",
            f"mailbot has not checked {mailbox} for {minutes} minutes",
            opening + "\n\n" + _CONSEQUENCES.format(mailbox=mailbox),
        )
    return None


_CONSEQUENCES = """\
Until this is fixed, new mail to {mailbox} is not acknowledged and no new cases are
opened. mailbot keeps retrying by itself and will email again when it is working.

Please ask whoever looks after the mailbot server to run:

  mailbot check --connect
  journalctl -u mailbot --since today

The first says which step fails (name lookup, connection, certificate, sign-in, folder)
and what to do about it."""


@dataclass
class HealthWatch:
    """The daemon's side: remembers the facts check_health needs between cycles."""

    started_at: datetime
    alert_after: timedelta = DEFAULT_ALERT_AFTER
    last_success: datetime | None = None
    alerted_at: datetime | None = None

    def succeeded(self, at: datetime) -> None:
        self.last_success = at

    def check(
        self,
        now: datetime,
        *,
        mailbox: str,
        token_failing_since: datetime | None = None,
        token_error: str = "",
        timezone: str = "Europe/London",
    ) -> Alert | None:
        alert = check_health(
            now=now,
            started_at=self.started_at,
            last_success=self.last_success,
            token_failing_since=token_failing_since,
            token_error=token_error,
            alert_after=self.alert_after,
            alerted_at=self.alerted_at,
            mailbox=mailbox,
            timezone=timezone,
        )
        if alert is not None:
            self.alerted_at = now if alert.kind == "alert" else None
        return alert
