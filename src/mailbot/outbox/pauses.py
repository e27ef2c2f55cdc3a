"""Sending paused: a refusal of our account, our sender address or this server
(mailbot.refusals) is not any message's fault: every message from that address would meet
it. Sending as that address pauses (its messages turn 'paused', none is failed or charged
an attempt), a Problem tells the clerk, and after 1, 2, 4 … minutes (at most 10; at once
after a reload or on `run --once`) its messages are put back in line: the first the
server takes ends the pause, and the rest follow; the first it refuses pauses them all
again.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, or_, select, true, update
from sqlalchemy.sql.selectable import Select

from mailbot.problems import SENDING_KINDS, ProblemKind, open_problems, report, resolve
from mailbot.store import Case, OutboxMessage, Problem

if TYPE_CHECKING:
    from mailbot.app import App

log = logging.getLogger("mailbot.outbox")


EVERY_SENDER = "*"  # a refusal of the connection or the sign-in: nothing can be sent


def pause_key(sender: str) -> str:
    return "sending" if sender == EVERY_SENDER else f"sending:{sender}"


class Pauses:
    """The senders whose sending is paused, as one pass of the outbox sees them."""

    def __init__(self, app: App, waiting: dict[str, tuple[datetime, str]], trying: set[str]):
        self.app = app
        self._waiting = waiting  # sender -> (when to try again, why)
        self._trying = trying  # senders whose retry is under way in this pass

    @classmethod
    def load(cls, app: App) -> Pauses:
        """The open pauses; those whose retry is due have their messages put back in
        line, to be tried once more in this pass."""
        now = app.clock.now()
        waiting: dict[str, tuple[datetime, str]] = {}
        trying: set[str] = set()
        # A plain query, in no transaction: this runs at every pass, and nearly always
        # finds nothing.
        with app.engine.connect() as conn:
            found = conn.execute(_open_pauses()).all()
        for key, retry_at, detail in found:
            sender = _sender_of(key)
            if retry_at is not None and retry_at > now:
                waiting[sender] = (retry_at, detail)
            else:
                trying.add(sender)
        if trying:
            with app.sessions.begin() as session:
                for sender in trying:
                    session.execute(
                        update(OutboxMessage)
                        .where(OutboxMessage.status == "paused", _of_sender(app, sender))
                        .values(status="pending", next_attempt_at=now)
                    )
        return cls(app, waiting, trying)

    def waiting(self, sender: str) -> bool:
        return sender in self._waiting or EVERY_SENDER in self._waiting

    def reason(self, sender: str) -> str:
        paused = self._waiting.get(sender) or self._waiting.get(EVERY_SENDER)
        return f"waiting: sending is paused ({paused[1] if paused else 'refused'})"

    def pause(self, sender: str, kind: ProblemKind, detail: str) -> None:
        """Sending as `sender` is refused: record it, and pause its waiting messages."""
        now = self.app.clock.now()
        with self.app.sessions.begin() as session:
            problem = report(session, pause_key(sender), kind, detail, now, retry=True)
            assert problem.retry_at is not None
            self._waiting[sender] = (problem.retry_at, detail)
            reason = self.reason(sender)
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.status == "pending", _of_sender(self.app, sender))
                .values(status="paused", last_error=reason[:1000])
            )
        self._trying.discard(sender)
        log.error("outbox: sending paused, retry at %s: %s", problem.retry_at.isoformat(), detail)

    def resume(self, sender: str) -> None:
        """A message from `sender` went (or the server took our sign-in): if sending had
        been paused, it is not now."""
        if sender not in self._trying:
            return
        self._trying.discard(sender)
        with self.app.sessions.begin() as session:
            resolve(self.app, session, pause_key(sender), self.app.clock.now())
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.status == "paused", _of_sender(self.app, sender))
                .values(status="pending", next_attempt_at=self.app.clock.now())
            )


@functools.cache
def _open_pauses() -> Select:
    problems = Problem.__table__
    return select(problems.c.key, problems.c.retry_at, problems.c.detail).where(
        problems.c.resolved_at.is_(None),
        problems.c.kind.in_([str(kind) for kind in SENDING_KINDS]),
    )


def _sender_of(key: str) -> str:
    return key.partition(":")[2] or EVERY_SENDER


def _of_sender(app: App, sender: str) -> ColumnElement[bool]:
    """Outbox rows whose letters come from `sender` (the case's mailbox, else the
    council's): the rows a refusal of that sender holds up."""
    if sender == EVERY_SENDER:
        return true()
    cases = Case.__table__
    rows = OutboxMessage.case_id.in_(select(cases.c.id).where(cases.c.mailbox == sender))
    if sender != app.cfg.council.mailbox_address:
        return rows
    unmarked = select(cases.c.id).where(cases.c.mailbox.is_(None))
    return or_(rows, OutboxMessage.case_id.is_(None), OutboxMessage.case_id.in_(unmarked))


def retry_paused_now(app: App) -> None:
    """Try paused sending at once (after a reload: the sysadmin may have fixed it)."""
    now = app.clock.now()
    with app.sessions.begin() as session:
        for problem in open_problems(session, SENDING_KINDS):
            problem.retry_at = now


def sending_problems(app: App) -> list[str]:
    """Why sending is paused, one line each (empty when it is not)."""
    with app.sessions() as session:
        return [p.detail for p in open_problems(session, SENDING_KINDS)]
