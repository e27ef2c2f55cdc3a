"""Problems: what stops mail until a person fixes it — recorded, told at once, closed by itself.

A refusal of our SMTP account, an SMTP server out of reach, a folder that is not there:
each is one open `Problem` row while it lasts. `report` opens it (or notes it again),
`resolve` closes it once things work; `alert_due` tells the clerk role by email and the
log at CRITICAL, once per problem (an unreachable server only once it has lasted), and
again when it is fixed. The digest lists what is open, and `mailbot run` shows it in its
systemd status.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailbot.outbox import notify_role
from mailbot.store import Problem

if TYPE_CHECKING:
    from mailbot.app import App

log = logging.getLogger("mailbot.problems")


class ProblemKind(StrEnum):
    SENDING_REFUSED = "sending-refused"  # the SMTP server refuses our account or address
    SMTP_UNREACHABLE = "smtp-unreachable"  # no connection to the SMTP server
    FOLDER_MISSING = "folder-missing"  # a configured folder is not on the IMAP server
    # copies of what mailbot sent cannot be filed in the sent folder (sentcopy.py)
    SENT_COPY_FAILING = "sent-copy-failing"


# How long a problem lasts before the clerk is emailed: a server restarting for a minute
# is not worth an email; a refused account or a missing folder will not mend itself.
ALERT_AFTER = {
    ProblemKind.SENDING_REFUSED: timedelta(0),
    ProblemKind.SMTP_UNREACHABLE: timedelta(minutes=30),
    ProblemKind.FOLDER_MISSING: timedelta(0),
    # Nothing waits on it but officers' view in Outlook; a mailbox out of reach for a
    # while is told by the health check anyway.
    ProblemKind.SENT_COPY_FAILING: timedelta(hours=1),
}
SENDING_KINDS = frozenset({ProblemKind.SENDING_REFUSED, ProblemKind.SMTP_UNREACHABLE})
# The problems that stop mail going out or being read; a copy not filed in the sent
# folder stops nothing, and the digest must not say it does.
HOLDS_MAIL = frozenset({*SENDING_KINDS, ProblemKind.FOLDER_MISSING})
# Sending is tried again after 1, 2, 4 … minutes, at most this often once it is fixed.
RETRY_LIMIT = timedelta(minutes=10)


def retry_after(tries: int) -> timedelta:
    return min(timedelta(minutes=2 ** max(tries - 1, 0)), RETRY_LIMIT)


def report(
    session: Session,
    key: str,
    kind: ProblemKind,
    detail: str,
    now: datetime,
    *,
    retry: bool = False,
) -> Problem:
    """Open the problem `key`, or note that it is still there (with the latest detail).

    With `retry`, count a failed try and set when to try again (sending).
    """
    problem = open_problem(session, key)
    if problem is None:
        problem = Problem(key=key, kind=kind, detail=detail, since=now, last_seen=now, tries=0)
        session.add(problem)
        log.error("problem: %s", detail)
    problem.kind, problem.detail, problem.last_seen = kind, detail[:2000], now
    if retry:
        problem.tries += 1
        problem.retry_at = now + retry_after(problem.tries)
    session.flush()
    return problem


def resolve(app: App, session: Session, key: str, now: datetime) -> Problem | None:
    """Close the problem `key` if it is open; the clerk hears if they heard of it."""
    problem = open_problem(session, key)
    if problem is None:
        return None
    problem.resolved_at = now
    log.warning("fixed: %s (since %s)", problem.detail, problem.since.isoformat())
    if problem.alerted_at is not None:
        _tell_clerk(app, session, problem, now, fixed=True)
    session.flush()
    return problem


def open_problem(session: Session, key: str) -> Problem | None:
    return session.scalar(select(Problem).where(Problem.key == key, Problem.resolved_at.is_(None)))


def open_problems(session: Session, kinds: Sequence[ProblemKind] = ()) -> list[Problem]:
    """What is wrong now, oldest first."""
    query = select(Problem).where(Problem.resolved_at.is_(None)).order_by(Problem.id)
    if kinds:
        query = query.where(Problem.kind.in_([str(k) for k in kinds]))
    return list(session.scalars(query))


def alert_due(app: App, session: Session, now: datetime) -> list[Problem]:
    """Tell the clerk role of every open problem that has lasted long enough and that
    they have not heard of; the log hears at CRITICAL. Returns those told of."""
    told = []
    for problem in open_problems(session):
        if problem.alerted_at is not None:
            continue
        if now - problem.since < ALERT_AFTER.get(ProblemKind(problem.kind), timedelta(0)):
            continue
        log.critical("%s", problem.detail)
        _tell_clerk(app, session, problem, now, fixed=False)
        problem.alerted_at = now
        told.append(problem)
    return told


def _tell_clerk(app: App, session: Session, problem: Problem, now: datetime, fixed: bool) -> None:
    notify_role(
        app,
        session,
        None,
        role="clerk",
        template="mailbot-health",
        kind="health",
        subject=subject(problem, fixed),
        key=f"problem:{problem.id}:{'fixed' if fixed else 'open'}",
        now=now,
        extra={"text": letter_text(problem, app.cfg.council.timezone, fixed)},
        at_once=True,
    )


def headline(problem: Problem) -> str:
    """For the systemd status line: what is wrong, in capitals, then the detail."""
    label = {
        ProblemKind.FOLDER_MISSING: "FOLDER MISSING",
        ProblemKind.SENT_COPY_FAILING: "SENT COPIES WAITING",
    }.get(ProblemKind(problem.kind), "SENDING PAUSED")
    return f"{label}: {problem.detail[:200]}"


def subject(problem: Problem, fixed: bool = False) -> str:
    kind = ProblemKind(problem.kind)
    if fixed:
        return {
            ProblemKind.FOLDER_MISSING: "mailbot can read the folder again",
            ProblemKind.SENT_COPY_FAILING: "mailbot is filing copies in the sent folder again",
        }.get(kind, "mailbot is sending mail again")
    return {
        ProblemKind.SENDING_REFUSED: "mailbot cannot send mail: the SMTP server refuses it",
        ProblemKind.SMTP_UNREACHABLE: "mailbot cannot send mail: the SMTP server is out of reach",
        ProblemKind.FOLDER_MISSING: "mailbot cannot find a mail folder",
        ProblemKind.SENT_COPY_FAILING: "mailbot cannot file copies of its mail in the sent folder",
    }[kind]


def letter_text(problem: Problem, timezone: str, fixed: bool = False) -> str:
    """What the clerk reads about a problem (and the sysadmin they pass it to)."""
    since = f"{problem.since.astimezone(ZoneInfo(timezone)):%H:%M on %A %-d %B %Y}"
    if fixed:
        return (
            f"Fixed: {problem.detail}\n\nThis had been so since {since}. Everything that "
            "waited meanwhile is being sent now; nothing was lost."
        )
    kind = ProblemKind(problem.kind)
    if kind is ProblemKind.FOLDER_MISSING:
        consequence = (
            "Officers' replies filed in that folder are not seen until it is fixed, so "
            "their cases are not marked responded. New mail in the inbox is still answered."
        )
        fix = "set the folder's name in [imap] (mailbot check --connect lists the folders)"
    elif kind is ProblemKind.SENT_COPY_FAILING:
        consequence = (
            "Residents and officers are getting mailbot's messages; only the copies "
            "officers would see in the mailbox's sent folder are missing. mailbot keeps "
            "them and files them as soon as it can; each case's history says what was sent."
        )
        fix = "check the [imap] settings and the sent folder's name (mailbot check --connect)"
    else:
        consequence = (
            "This is about mailbot's account or the server, not about any one message, so "
            "mailbot has paused sending and keeps every message waiting: nothing has "
            "failed and nothing is lost. It tries again every few minutes and sends "
            "everything, once each, as soon as the server takes mail again."
        )
        fix = (
            "check the [smtp] settings: the user name and password, and that the account "
            "may send as this address (Microsoft 365: Send As permission); "
            "then run mailbot check --connect"
        )
    return (
        f"Since {since}: {problem.detail}\n\n{consequence}\n\nPlease ask whoever looks "
        f"after the mailbot server to {fix}. `mailbot outbox list` shows what is waiting."
    )
