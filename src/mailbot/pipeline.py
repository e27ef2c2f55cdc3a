"""Pipeline: reading a mailbox's folders, in batches, each message through the intake
chain (intake/) in the transaction that records it."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Update
from sqlalchemy.sql.selectable import Select

from mailbot import faults, systemd
from mailbot.app import App
from mailbot.bounces import read_bounce
from mailbot.config import ImapConfig
from mailbot.forms import read_form, with_topic
from mailbot.intake import Facts, Incoming, Prepared, apply, decide, record
from mailbot.intake.casework import classify_for
from mailbot.mailbox import (
    FetchedMessage,
    FolderMissing,
    Mailbox,
    choose_sent_folder,
    folder_key,
)
from mailbot.parse import parse_message
from mailbot.problems import ProblemKind, report, resolve
from mailbot.reasons import Reason
from mailbot.screen import (
    ScreenContext,
    rules_before_the_cap,
    screen,
    spam_verdict,
)
from mailbot.store import (
    FolderState,
    InboundMessage,
    folder_lock,
)

log = logging.getLogger("mailbot.pipeline")

COMMIT_EVERY = 50  # messages decided in one transaction, at most
# Messages decided in a transaction before the sending process may have its turn: each
# commit costs the deciding process more than the message, and fewer, larger turns let
# both get on (measured on a 2,000-message backlog: one at a time was slower still).
DECIDED_BEFORE_A_TURN = 5
# The screen rules that say a mail system sent it: its bounce may be about one of ours.
_MAIL_SYSTEM_RULES = ("machine-sender", "machine-name", "null-return-path")


def ingest_mailbox(app: App, mailbox: Mailbox, progress: Callable[[], None] | None = None) -> int:
    """Read one mailbox: its sent folder for officers' replies, then its inbox (left
    selected, for IDLE). Returns how many new messages the inbox had."""
    sent = check_folders(app, mailbox)
    if sent is not None:
        ingest_folder(app, mailbox, sent, sent=True, progress=progress)
    return ingest_folder(app, mailbox, mailbox.cfg.inbox, progress=progress)


FOLDERS_CHECKED_EVERY = 900.0  # seconds: a folder created or renamed meanwhile is noticed


def check_folders(app: App, mailbox: Mailbox) -> str | None:
    """The sent folder to read (the setting's, else the one the server marks as sent),
    checked on connecting and every quarter of an hour after.

    A folder that is not there is a Problem (the clerk hears once, the digest lists it)
    and is closed once it is there; a missing sent folder never stops the inbox, and a
    missing inbox raises FolderMissing.
    """
    found = mailbox.sent_folder
    if found is not None and time.monotonic() - mailbox.folders_checked_at < FOLDERS_CHECKED_EVERY:
        return found.name
    box, now = mailbox.cfg, app.clock.now()
    where, account = box.key_prefix, box.username or box.host
    inbox_missing = (
        None
        if mailbox.folder_exists(box.inbox)
        else f"{where}.inbox: folder {box.inbox!r} not found on {box.host}: no mail is read "
        f"from {app.cfg.address_of(box)}"
    )
    named = bool(box.sent) and mailbox.folder_exists(box.sent or "")
    marked = None if named or box.sent == "" else mailbox.marked_sent_folder()
    found = choose_sent_folder(box.sent, named, marked, f"{where}.sent")
    with app.sessions.begin() as session:
        for folder, problem in (("inbox", inbox_missing), ("sent", found.problem)):
            key = f"folder:{account}:{folder}"
            if problem is None:
                resolve(app, session, key, now)
            else:
                report(session, key, ProblemKind.FOLDER_MISSING, problem, now)
    if inbox_missing is not None:
        raise FolderMissing(inbox_missing)
    if found.problem is not None:
        log.warning("%s", found.problem)
    mailbox.sent_folder, mailbox.folders_checked_at = found, time.monotonic()
    return found.name


def ingest_folder(
    app: App,
    mailbox: Mailbox,
    folder: str,
    *,
    sent: bool = False,
    progress: Callable[[], None] | None = None,
) -> int:
    """Process every message that arrived since the folder was last read; returns the count.

    `sent` marks the mailbox's sent folder: read for officers' replies and commands only,
    it never opens a case or sends an acknowledgement. `progress` is called after each
    batch is recorded (the daemon wakes its sending process with it).
    """
    key = folder_key(mailbox.cfg, folder)
    uidvalidity = mailbox.select(folder)  # selected either way: the daemon IDLEs on it
    with folder_lock(app.engine, key) as ours:
        if not ours:
            log.debug("folder %s is being read by another mailbot process", key)
            return 0
        return _ingest(app, mailbox, key, uidvalidity, sent, progress)


def _ingest(
    app: App,
    mailbox: Mailbox,
    key: str,
    uidvalidity: int,
    sent: bool,
    progress: Callable[[], None] | None,
) -> int:
    now = app.clock.now()
    with app.sessions.begin() as session:
        state = session.scalar(select(FolderState).where(FolderState.folder == key))
        if state is None:
            state = _first_visit(app, mailbox, key, uidvalidity, now)
            session.add(state)
        elif state.uidvalidity != uidvalidity:
            # The server renumbered the folder: read it again; Message-IDs stop repeats.
            log.warning("folder %s: UIDVALIDITY changed; re-reading it", key)
            state.uidvalidity, state.last_uid = uidvalidity, 0
        state.checked_at = now
        last_uid, start_from = state.last_uid, state.start_from
    box = mailbox.cfg
    max_bytes = box.max_message_mb * 1024 * 1024
    count = 0
    # Ask again until nothing is new: mail that arrives while we work is read now, not
    # left for an IDLE that may never mention it.
    while uids := mailbox.uids_after(last_uid):
        for fetched in mailbox.fetch(uidvalidity, uids, max_bytes):
            faults.crash_point("after-fetch")
            # Prepared before any transaction: SQLite has one write lock, held from the
            # first write to the commit, and the sending process waits for it meanwhile.
            prepared = [_prepare_ahead(app, box, each, sent) for each in fetched]
            at = 0
            while at < len(fetched):
                part = slice(at, at + COMMIT_EVERY)
                decided = process_batch(
                    app, fetched[part], start_from, box, sent=sent, prepared=prepared[part]
                )
                at += len(decided)
                if progress is not None:
                    progress()
            systemd.keepalive()  # a long backlog after an outage is work, not a hang
        last_uid, count = max(uids), count + len(uids)
    return count


def _first_visit(
    app: App, mailbox: Mailbox, key: str, uidvalidity: int, now: datetime
) -> FolderState:
    """Historic mail is never acknowledged (SPEC §1.4): start after what is already there.

    Messages from more than a day before start_from are skipped without being fetched;
    the day either side is fetched and judged by its exact arrival time.
    """
    start_from = mailbox.cfg.start_from or now
    recent = mailbox.uids_since(start_from - timedelta(days=1))
    watermark = min(recent) - 1 if recent else mailbox.highest_uid()
    log.info("folder %s: first visit; acting on mail from %s", key, start_from.isoformat())
    return FolderState(
        folder=key, uidvalidity=uidvalidity, last_uid=watermark, start_from=start_from
    )


def process_batch(
    app: App,
    batch: list[FetchedMessage],
    start_from: datetime,
    box: ImapConfig,
    *,
    sent: bool = False,
    prepared: list[Prepared | None] | None = None,
) -> list[str]:
    """Decide messages from the start of a batch and commit the decisions with the folder
    position, all together: one commit for many messages, and a crash before it leaves
    them all waiting. Returns their outcomes, first first.

    It stops early, after DECIDED_BEFORE_A_TURN messages, when the sending process is
    waiting for its turn at the database (SQLite has one writer, and the sending process
    records each message it sends): the caller passes the rest again. `prepared` are the
    messages prepared already (_prepare_ahead). Should one message trip over a bug, the
    batch is decided again one message at a time, so that only that one is recorded as
    failed.
    """
    now = app.clock.now()
    first, last = batch[0], batch[-1]
    try:
        ahead = prepared or [None] * len(batch)
        ready = [
            each or _prepare(app, box, fetched, sent)
            for fetched, each in zip(batch, ahead, strict=True)
        ]
        with app.sessions.begin() as session:
            recorded = _recorded_uids(session, batch)
            outcomes = []
            for fetched, each in zip(batch, ready, strict=True):
                outcomes.append(
                    "already-recorded"  # another pass (or process) got here first
                    if fetched.uid in recorded
                    else _decide(app, session, fetched, each, start_from, now, box, sent)
                )
                if len(outcomes) >= DECIDED_BEFORE_A_TURN and app.sessions.wanted():
                    break
            last = batch[len(outcomes) - 1]
            _advance(session, last.folder, last.uid)
            faults.crash_point("before-commit")
    except OperationalError:
        # The database is locked, full or gone: nothing was written, and the messages are
        # still waiting in the mailbox. Stop this pass; the next one reads them again.
        log.error(
            "database unavailable at uid=%s-%s in %s; will retry", first.uid, last.uid, last.folder
        )
        raise
    except Exception as exc:  # a bug or bad data must not stop the rest of the mailbox
        if len(batch) > 1:
            log.warning(
                "a message among uid=%s-%s in %s could not be processed; deciding them one by one",
                first.uid,
                last.uid,
                last.folder,
            )
            return [
                outcome
                for fetched in batch
                for outcome in process_batch(app, [fetched], start_from, box, sent=sent)
            ]
        log.exception("message uid=%s in %s could not be processed", first.uid, first.folder)
        with app.sessions.begin() as session:
            failed = Reason("error", f"{type(exc).__name__}: {exc}"[:500])
            record(session, first, None, "failed", [failed], now)
            _advance(session, first.folder, first.uid)
        return ["failed"]
    faults.crash_point("after-commit")
    return outcomes


def _advance(session: Session, key: str, uid: int) -> None:
    session.execute(_statements().advance, {"key": key, "up_to": uid})


def _recorded_uids(session: Session, batch: list[FetchedMessage]) -> set[int]:
    """Which of these messages (one folder, one UIDVALIDITY) are recorded already."""
    first = batch[0]
    params = {
        "folder": first.folder,
        "uidvalidity": first.uidvalidity,
        "uids": [fetched.uid for fetched in batch],
    }
    return set(session.scalars(_statements().recorded, params))


@dataclass(frozen=True)
class _Statements:
    """Run for every batch, built once: building costs more than running them."""

    recorded: Select[tuple[int]]
    advance: Update


@functools.cache
def _statements() -> _Statements:
    messages, folders = InboundMessage.__table__, FolderState.__table__
    return _Statements(
        recorded=select(messages.c.uid).where(
            messages.c.folder == bindparam("folder"),
            messages.c.uidvalidity == bindparam("uidvalidity"),
            messages.c.uid.in_(bindparam("uids", expanding=True)),
        ),
        advance=update(folders)
        .where(folders.c.folder == bindparam("key"), folders.c.last_uid < bindparam("up_to"))
        .values(last_uid=bindparam("up_to")),
    )


def _prepare_ahead(
    app: App, box: ImapConfig, fetched: FetchedMessage, sent: bool = False
) -> Prepared | None:
    """Prepared ahead of deciding; None if that failed, to be prepared again in
    process_batch, which records such a message as failed and goes on with the rest."""
    try:
        return _prepare(app, box, fetched, sent)
    except Exception:
        return None


def _prepare(app: App, box: ImapConfig, fetched: FetchedMessage, sent: bool) -> Prepared:
    msg = parse_message(fetched.raw, truncated=fetched.truncated)
    faults.crash_point("after-parse")
    if sent:  # read for officers' replies and commands only
        return Prepared(msg)
    cfg = app.cfg
    form = read_form(msg, cfg.forms, cfg.own_addresses)
    context = ScreenContext(
        cfg.own_addresses, scl_threshold=cfg.spam.scl_threshold, commands=cfg.commands, form=form
    )
    for problem in spam_verdict(msg, cfg.spam.scl_threshold).unreadable:
        log.warning(
            "spam verdict not understood, so not obeyed: %s",
            problem,
            extra={"uid": fetched.uid, "folder": fetched.folder},
        )
    reasons = tuple(screen(msg, context, rules_before_the_cap(context)))
    # Only a message the screen lets through can open a case (staff mail is screened
    # out as the council's own).
    if reasons:
        # A delivery report, or a mail system's plain-text bounce, may be about one of ours.
        from_mail_system = any(r.rule in _MAIL_SYSTEM_RULES for r in reasons)
        bounce = (
            read_bounce(fetched.raw, from_mail_system=from_mail_system)
            if from_mail_system or msg.content_type == "multipart/report"
            else None
        )
        return Prepared(msg, reasons, form=form, bounce=bounce)
    decision = classify_for(app, msg, box)
    return Prepared(msg, decision=with_topic(decision, form) if form else decision, form=form)


def _decide(
    app: App,
    session: Session,
    fetched: FetchedMessage,
    prepared: Prepared,
    start_from: datetime,
    now: datetime,
    box: ImapConfig,
    sent: bool,
) -> str:
    """One message not yet recorded, through the intake chain: decided, then written."""
    incoming = Incoming(fetched, prepared, box, start_from, sent)
    decided = decide(incoming, Facts(app, session, incoming, now))
    faults.crash_point("after-decide")
    outcome = apply(app, session, incoming, decided, now)
    faults.crash_point("after-apply")
    return outcome
