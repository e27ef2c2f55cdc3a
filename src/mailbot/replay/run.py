"""The rehearsal: past mail through a policy in a throwaway database, the clock moved from
one message to the next, nothing sent.

Each message goes through pipeline.process_batch, the function that decides and records
mail read live from the mailbox, with the clock at the moment it arrived. Between
messages the clock stops where the daemon would have acted on its own: each midnight
and the digest time (the scheduler: reminders, holding replies, breaches, the digest),
and whenever a letter waiting in the outbox falls due. The outbox is never handed to an
SMTP server: outbox.sending.rehearse_sending writes each letter and records it as sent, so the
cases, their histories and the figures are those live processing would have left.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import event, func, select

from mailbot import reports, scheduler
from mailbot.app import App
from mailbot.clock import FixedClock
from mailbot.config import Config, DatabaseConfig
from mailbot.mailbox import FetchedMessage, folder_key
from mailbot.migrations import upgrade
from mailbot.outbox import sending
from mailbot.pipeline import process_batch
from mailbot.policy import Policy, load_policy
from mailbot.reasons import Reason
from mailbot.replay.sources import Export, PastMessage, Skipped, read_export
from mailbot.store import Case, InboundMessage, OutboxMessage, case_json

log = logging.getLogger("mailbot.replay")

UIDVALIDITY = 1  # the rehearsal's one folder, numbered in the order mail arrived
# What the live daemon logs as it works ("sent acknowledgement to …") would read as if
# the rehearsal had sent it: kept to warnings while it runs.
QUIETENED = ("mailbot.outbox", "mailbot.pipeline", "mailbot.scheduler", "mailbot.intake",
             "mailbot.lifecycle", "mailbot.problems", "alembic")  # fmt: skip

Progress = Callable[[int, int], None]  # messages done, of how many


@dataclass(frozen=True)
class LetterRecord:
    """One letter the rehearsal would have sent (or held back), and when."""

    kind: str  # acknowledgement | holding | reminder | breach | digest | …
    recipient: str
    audience: str  # resident | staff
    subject: str
    status: str  # sent (would have been) | pending (after the period) | withdrawn | failed
    at: datetime  # when it would have gone (pending: when it was due to)
    case_ref: str | None
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "to": self.recipient,
            "audience": self.audience,
            "subject": self.subject,
            "status": self.status,
            "at": self.at.isoformat(),
            "case": self.case_ref,
            "note": self.note,
        }


@dataclass(frozen=True)
class MessageRecord:
    """One message as the rehearsal decided it."""

    source: str
    arrived: datetime
    arrived_by: str
    sender: str
    subject: str
    outcome: str  # as live processing records it: case-opened, follow-up, suppressed, …
    reasons: tuple[Reason, ...]  # why (the screen's, the steps'), then the classification's
    case_ref: str | None = None
    category: str | None = None
    stage: int | None = None
    triage: bool = False
    acknowledge_by: date | None = None
    respond_by: date | None = None
    holding_by: date | None = None
    letters: tuple[LetterRecord, ...] = ()  # its case's letters, on the message that opened it

    def as_json(self) -> dict[str, Any]:
        def day(value: date | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "source": self.source,
            "arrived": self.arrived.isoformat(),
            "arrived_by": self.arrived_by,
            "from": self.sender,
            "subject": self.subject,
            "outcome": self.outcome,
            "reasons": [str(r) for r in self.reasons],
            "case": self.case_ref,
            "category": self.category,
            "stage": self.stage,
            "triage": self.triage,
            "acknowledge_by": day(self.acknowledge_by),
            "respond_by": day(self.respond_by),
            "holding_by": day(self.holding_by),
            "letters": [letter.as_json() for letter in self.letters],
        }


@dataclass
class Replay:
    """What a rehearsal found: every message, every letter, the files left out, the
    cases as `mailbot cases --all --json` would show them, and the period's figures."""

    council: str
    policy: str
    sources: list[str]
    period_from: date | None
    period_to: date | None
    ended_at: datetime | None
    messages: list[MessageRecord] = field(default_factory=list)
    other_letters: list[LetterRecord] = field(default_factory=list)  # the digest, alerts
    skipped: list[Skipped] = field(default_factory=list)
    cases: list[dict[str, Any]] = field(default_factory=list)
    figures: reports.Report | None = None
    timezone: str = "Europe/London"

    @property
    def letters(self) -> list[LetterRecord]:
        every = [letter for m in self.messages for letter in m.letters] + self.other_letters
        return sorted(every, key=lambda letter: letter.at)


def replay(
    cfg: Config,
    paths: list[Path],
    *,
    policy: str | None = None,
    until: datetime | None = None,
    progress: Progress | None = None,
    sent: list[Path] | None = None,
) -> Replay:
    """Rehearse the mail in `paths` (and the sent folder's in `sent`) under `policy`
    (default: the config's), with the clock carried on to `until` (default: the last
    message's arrival)."""
    chosen = load_policy(policy or cfg.council.policy)  # a bad name: exit 1, before reading
    with (
        read_export(paths, sent) as export,
        tempfile.TemporaryDirectory(prefix="mailbot-replay-") as folder,
    ):
        url = f"sqlite:///{Path(folder) / 'replay.db'}"
        quiet = [(logging.getLogger(name), logging.getLogger(name).level) for name in QUIETENED]
        for logger, _ in quiet:
            logger.setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
        try:
            upgrade(url)
            return _rehearse(
                cfg, chosen, policy, url, export, [*paths, *(sent or [])], until, progress
            )
        finally:
            for logger, level in quiet:
                logger.setLevel(level)


def rehearsal_config(cfg: Config, url: str, policy: str | None) -> Config:
    """The council's config with the throwaway database and the chosen policy. Its
    servers are never contacted: nothing in a rehearsal reads IMAP or sends SMTP."""
    council = cfg.council.model_copy(update={"policy": policy}) if policy else cfg.council
    return cfg.model_copy(update={"database": DatabaseConfig(url=url), "council": council})


def _rehearse(
    cfg: Config,
    policy: Policy,
    policy_name: str | None,
    url: str,
    export: Export,
    paths: list[Path],
    until: datetime | None,
    progress: Progress | None,
) -> Replay:
    ordered = export.in_order()
    first = ordered[0].arrived if ordered else None
    end = max([m.arrived for m in ordered] + ([until] if until else []), default=None)
    clock = FixedClock(first) if first else FixedClock()  # no mail: the clock is never read
    app = App.load(rehearsal_config(cfg, url, policy_name), clock)
    app.policy = policy  # the one loaded (and checked) above
    event.listen(app.engine, "connect", _throwaway)
    result = Replay(
        council=cfg.council.name,
        policy=policy.name,
        sources=[str(p) for p in paths],
        period_from=None,
        period_to=None,
        ended_at=end,
        skipped=list(export.skipped),
        timezone=policy.timezone,
    )
    try:
        if first is not None and end is not None:
            _run(app, clock, ordered, end, progress)
            result.period_from = scheduler.local_today(policy, first)
            result.period_to = scheduler.local_today(policy, end)
            _collect(app, ordered, result)
    finally:
        app.engine.dispose()
    return result


def _throwaway(conn: Any, _record: Any) -> None:
    """The rehearsal's database is deleted at the end: no waiting for the disk on each
    commit (a live database's safeguard, and most of a long replay's time)."""
    conn.execute("PRAGMA synchronous=OFF")


def scheduler_times(policy: Policy, first: datetime, end: datetime) -> list[datetime]:
    """When the daemon's scheduler would have found something new to do between `first`
    and `end`: each local midnight (a new day's reminders, holding replies, breaches)
    and the digest time (the clerk's digest, and staff mail held for opening time)."""
    zone = ZoneInfo(policy.timezone)
    at = policy.digest_at or policy.business_hours.opens
    day, last = scheduler.local_today(policy, first), scheduler.local_today(policy, end)
    times = []
    while day <= last:
        for moment in (time(0, 0), at):
            instant = datetime.combine(day, moment, tzinfo=zone)
            if first < instant <= end:
                times.append(instant)
        day += timedelta(days=1)
    return sorted(set(times))


def _run(
    app: App,
    clock: FixedClock,
    ordered: list[PastMessage],
    end: datetime,
    progress: Progress | None,
) -> None:
    box = app.cfg.imap
    inbox = folder_key(box, box.inbox)
    sent_folder = folder_key(box, box.sent or "Sent Items")
    max_bytes = box.max_message_mb * 1024 * 1024
    # Everything in the export is acted on: none of it is "historic" here (SPEC §1.4
    # guards a live mailbox's first start, not a rehearsal).
    start_from = ordered[0].arrived - timedelta(seconds=1)
    ticks = scheduler_times(app.policy, ordered[0].arrived, end)
    done, total = 0, len(ordered)
    while True:
        arriving = ordered[done].arrived if done < total else None
        tick = ticks[0] if ticks else None
        letter = _next_letter_due(app, clock.now())
        candidates = [t for t in (arriving, tick, letter) if t is not None and t <= end]
        if not candidates:
            break
        at = min(candidates)
        clock.instant = max(clock.instant, at)  # the clock never runs backwards
        if at == arriving:
            past = ordered[done]
            raw = past.raw
            done += 1
            fetched = FetchedMessage(
                folder=sent_folder if past.sent else inbox,
                uidvalidity=UIDVALIDITY,
                uid=done,
                internal_date=past.arrived,
                size=len(raw),
                raw=raw[:max_bytes],
                truncated=len(raw) > max_bytes,
            )
            # As `mailbot run --once` does: the message, then what is due, then sending.
            process_batch(app, [fetched], start_from, box, sent=past.sent)
            if progress is not None:
                progress(done, total)
        elif at == tick:
            ticks.pop(0)
        while ticks and ticks[0] <= clock.now():
            ticks.pop(0)
        scheduler.run_due(app)
        sending.rehearse_sending(app)


def _next_letter_due(app: App, now: datetime) -> datetime | None:
    """When the next letter waiting in the outbox falls due (after now)."""
    with app.sessions() as session:
        return session.scalar(
            select(func.min(OutboxMessage.next_attempt_at)).where(
                OutboxMessage.status == "pending", OutboxMessage.next_attempt_at > now
            )
        )


def _collect(app: App, ordered: list[PastMessage], result: Replay) -> None:
    parse = BytesHeaderParser(policy=default_policy)
    with app.sessions() as session:
        cases = {c.id: c for c in session.scalars(select(Case).order_by(Case.id))}
        letters: dict[int | None, list[LetterRecord]] = {}
        for row in session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)):
            case = cases.get(row.case_id) if row.case_id else None
            letters.setdefault(row.case_id, []).append(_letter(row, case, parse))
        recorded = {
            m.uid: m
            for m in session.scalars(
                select(InboundMessage).where(InboundMessage.uidvalidity == UIDVALIDITY)
            )
        }
        opened: set[int] = set()
        for uid, past in enumerate(ordered, 1):
            row = recorded.get(uid)
            with past.file.open("rb") as handle:
                head = parse.parsebytes(handle.read(65536))
            case = cases.get(row.case_id) if row is not None and row.case_id else None
            first_of_case = case is not None and case.id not in opened
            if case is not None:
                opened.add(case.id)
            result.messages.append(
                _message(past, row, case, head, letters.get(case.id, []) if first_of_case else [])
            )
        result.other_letters = letters.get(None, [])
        result.cases = [case_json(c) for c in cases.values()]
        result.figures = reports.build_report(
            session,
            app.policy,
            council=app.cfg.council.name,
            period_from=result.period_from,
            period_to=result.period_to,
            now=app.clock.now(),
        )


def _message(
    past: PastMessage,
    row: InboundMessage | None,
    case: Case | None,
    head: Any,
    letters: list[LetterRecord],
) -> MessageRecord:
    reasons = tuple(row.reasons or []) if row is not None else ()
    if case is not None and row is not None and row.outcome == "case-opened":
        reasons += tuple(r for r in case.reasons or [] if r not in reasons)
    return MessageRecord(
        source=past.source,
        arrived=past.arrived,
        arrived_by=str(past.arrived_by),
        sender=_header(head, "From"),
        subject=_header(head, "Subject"),
        outcome=row.outcome if row is not None else "not-recorded",
        reasons=reasons,
        case_ref=case.ref if case else None,
        category=case.category if case else None,
        stage=case.stage if case else None,
        triage=bool(case.triage) if case else False,
        acknowledge_by=case.acknowledge_by if case else None,
        respond_by=case.respond_by if case else None,
        holding_by=case.holding_by if case else None,
        letters=tuple(letters),
    )


def _letter(row: OutboxMessage, case: Case | None, parse: BytesHeaderParser) -> LetterRecord:
    letter = row.letter or {}
    subject = letter.get("subject") or ""
    if row.raw:
        subject = _header(parse.parsebytes(row.raw), "Subject") or subject
    at = row.sent_at if row.status == "sent" and row.sent_at else row.next_attempt_at
    return LetterRecord(
        kind=row.kind,
        recipient=row.recipient,
        audience=letter.get("audience") or "",
        subject=subject,
        status=row.status,
        at=at,
        case_ref=case.ref if case else None,
        note=row.last_error or "",
    )


def _header(head: Any, name: str) -> str:
    try:
        value = head.get(name)
    except Exception:
        return ""
    return " ".join(str(value).split())[:200] if value is not None else ""
