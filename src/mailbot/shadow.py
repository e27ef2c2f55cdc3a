"""Shadow mode: mailbot reads the live mailbox, decides and records everything, and sends
residents and officers nothing; the clerk's digest says what would have gone, and when.

The mode is kept in the database (shadow_periods), not in one process: every command
that queues a letter (the daemon, `mailbot release`, the console) reads it there, so
nothing reaches a resident during the trial whoever queues it. `mailbot run` without
`--shadow` ends the period: that moment is when mailbot went live, and one rule keeps
the trial's letters from going afterwards — a letter that fell due before it is recorded
as shadow and never sent. Mail read in shadow is recorded like any other, so going live
never acknowledges it (the duplicate step holds), and the scheduler has already moved its
cases past what was due, so there is no backlog of holding replies at the switch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailbot.store import OutboxStatus, ShadowPeriod

log = logging.getLogger("mailbot.shadow")

# What still goes in shadow mode: the clerk's own mail about mailbot itself — the daily
# digest (how the clerk sees what would have gone), alerts that mailbot cannot read or
# send, a broken template, and the test letters a clerk sends themselves from the
# console. Everything to residents and to officers (acknowledgements, holding replies,
# reminders, breach notices, welfare alerts, confirmations) is recorded, not sent: the
# trial runs beside the council's usual handling, and officers are not disturbed by it.
SENT_IN_SHADOW = frozenset({"digest", "health", "template-problem", "test"})


@dataclass(frozen=True)
class Mode:
    """Whether mailbot is in shadow mode, and when it last went live after a trial."""

    shadow: bool = False
    since: datetime | None = None  # when the current (or last) shadow period began
    live_since: datetime | None = None  # when mailbot went live after it (None: not yet)

    def describe(self) -> str:
        if self.shadow:
            return f"shadow mode since {_iso(self.since)}"
        if self.live_since is not None:
            return f"live since {_iso(self.live_since)} (shadow trial from {_iso(self.since)})"
        return "live"


LIVE = Mode()  # never run in shadow: nothing changes


@dataclass(frozen=True)
class Decision:
    """Whether a letter goes, and why not when it does not."""

    status: OutboxStatus
    reason: str = ""

    @property
    def sent(self) -> bool:
        return self.status is OutboxStatus.PENDING


GOES = Decision(OutboxStatus.PENDING)


def decide(kind: str, due_at: datetime, mode: Mode) -> Decision:
    """Whether a letter of this kind, falling due at `due_at`, is sent or kept (pure).

    In shadow mode only the clerk's mail about mailbot goes. After a trial, a letter
    that fell due before mailbot went live (an acknowledgement of mail that arrived then,
    a holding reply for a day the trial covered) is kept too: the council was answering
    its mail by hand then, and residents must not get a backlog at the switch.
    """
    if kind in SENT_IN_SHADOW:
        return GOES
    if mode.shadow:
        return Decision(OutboxStatus.SHADOW, "shadow mode: recorded, not sent")
    if mode.live_since is not None and due_at < mode.live_since:
        return Decision(
            OutboxStatus.SHADOW,
            f"not sent: it fell due at {_iso(due_at)}, during the shadow trial, "
            f"before mailbot went live at {_iso(mode.live_since)}",
        )
    return GOES


def day_began(on: date, timezone: str) -> datetime:
    """When a scheduled day's letters fall due: the start of that day where the council is."""
    return datetime.combine(on, time(0), ZoneInfo(timezone))


def would_have_sent(kind: str, recipient: str, decision: Decision) -> str:
    """The line in a case's history for a letter kept in shadow."""
    return f"would have sent {kind} to {recipient} ({decision.reason})"


# --- the mode, as the database holds it ----------------------------------------------------

_CACHE = "mailbot.shadow.mode"


def mode_of(session: Session) -> Mode:
    """The mode, read once per session (every letter queued asks)."""
    cached = session.info.get(_CACHE)
    if cached is None:
        cached = session.info[_CACHE] = _mode(_latest(session))
    return cached


def _latest(session: Session) -> ShadowPeriod | None:
    return session.scalars(select(ShadowPeriod).order_by(ShadowPeriod.id.desc()).limit(1)).first()


def _mode(period: ShadowPeriod | None) -> Mode:
    if period is None:
        return LIVE
    return Mode(period.ended_at is None, period.began_at, period.ended_at)


def switch(sessions: sessionmaker[Session], now: datetime, shadow: bool) -> str | None:
    """Begin or end shadow mode as `mailbot run` is asked to run; what changed, for the
    log (None: live, as before)."""
    with sessions.begin() as session:
        period = _latest(session)
        running = period is not None and period.ended_at is None
        if shadow and running:
            assert period is not None
            return (
                f"shadow mode, as since {_iso(period.began_at)}: nothing is sent to "
                "residents or officers; the clerk's digest lists what would have gone"
            )
        if shadow:
            session.add(ShadowPeriod(began_at=now))
            return (
                f"shadow mode from {_iso(now)}: nothing is sent to residents or officers; "
                "the clerk's digest lists what would have gone"
            )
        if running:
            assert period is not None
            period.ended_at = now
            return (
                f"live from {_iso(now)}: the shadow trial since {_iso(period.began_at)} has "
                "ended; letters that fell due during it are not sent"
            )
    return None


def current(sessions: sessionmaker[Session]) -> Mode:
    with sessions() as session:
        return mode_of(session)


def _iso(moment: datetime | None) -> str:
    return moment.isoformat(timespec="minutes") if moment else "-"
