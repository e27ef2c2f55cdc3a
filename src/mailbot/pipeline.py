"""Pipeline: mailbox → parse → screen → thread → classify → route → store → outbox, per message."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert, Update
from sqlalchemy.sql.selectable import Select

from mailbot import faults, systemd
from mailbot.addresses import domain_of
from mailbot.app import App
from mailbot.bounces import Bounce, read_bounce
from mailbot.classify import Classification, classify, scored_text
from mailbot.config import ImapConfig
from mailbot.deadlines import compute
from mailbot.forms import FormSubmission, read_form, with_topic
from mailbot.letters import Letter, subject_for
from mailbot.mailbox import (
    FetchedMessage,
    FolderMissing,
    Mailbox,
    choose_sent_folder,
    folder_key,
)
from mailbot.officers import (
    CommandError,
    escalate,
    handle_staff_mail,
    restart_clock,
    staff_sender,
)
from mailbot.outbox import notify_officer, notify_role, queue
from mailbot.parse import ParsedMessage, parse_message
from mailbot.problems import ProblemKind, report, resolve
from mailbot.resident import Resident, resident_of
from mailbot.route import choose_officer
from mailbot.scheduler import local_today, schedule
from mailbot.screen import (
    CAP_RULES,
    LOOP_HEADER,
    ScreenContext,
    rules_before_the_cap,
    screen,
    spam_verdict,
)
from mailbot.store import (
    Case,
    FolderState,
    InboundMessage,
    OutboxMessage,
    acknowledgements_to_domain,
    add_event,
    add_events,
    folder_lock,
    next_reference,
    recent_acknowledgements,
    seen_before,
    sent_by_us,
)
from mailbot.thread import find_case
from mailbot.welsh import is_welsh

log = logging.getLogger("mailbot.pipeline")

COMMIT_EVERY = 50  # messages decided in one transaction, at most
# Messages decided in a transaction before the sending process may have its turn: each
# commit costs the deciding process more than the message, and fewer, larger turns let
# both get on (measured on a 2,000-message backlog: one at a time was slower still).
DECIDED_BEFORE_A_TURN = 5


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
        with app.write_turn, app.sessions.begin() as session:
            recorded = _recorded_uids(session, batch)
            outcomes = []
            for fetched, each in zip(batch, ready, strict=True):
                outcomes.append(
                    "already-recorded"  # another pass (or process) got here first
                    if fetched.uid in recorded
                    else _decide(app, session, fetched, each, start_from, now, box, sent)
                )
                if len(outcomes) >= DECIDED_BEFORE_A_TURN and app.write_turn.wanted():
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
            _record(session, first, None, "failed", [f"{type(exc).__name__}: {exc}"[:500]], now)
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
    """Run for every batch or new case, built once: building costs more than running them."""

    recorded: Select[tuple[int]]
    advance: Update
    open_case: ReturningInsert[tuple[int]]


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
        open_case=insert(Case.__table__).returning(Case.__table__.c.id),
    )


def _record(
    session: Session,
    fetched: FetchedMessage,
    msg: ParsedMessage | None,
    outcome: str,
    reasons: list[str],
    now: datetime,
    case: Case | None = None,
) -> None:
    # A plain INSERT: the ORM's unit of work costs more than the row, once a message.
    session.execute(
        insert(InboundMessage.__table__),
        dict(
            folder=fetched.folder,
            uidvalidity=fetched.uidvalidity,
            uid=fetched.uid,
            message_id=msg.message_id if msg else None,
            content_hash=msg.content_hash if msg else "",
            internal_date=fetched.internal_date,
            from_addr=msg.from_addr if msg else None,
            outcome=outcome,
            reasons=reasons,
            case_id=case.id if case else None,
            processed_at=now,
        ),
    )
    detail = outcome + (f": {reasons[0]}" if reasons else "")
    log.info(
        "%s",
        detail,
        extra={"case": case.ref if case else None, "uid": fetched.uid, "folder": fetched.folder},
    )


@dataclass(frozen=True)
class Prepared:
    """A message parsed, screened and, if it may open a case, classified: the work on it
    that needs no database, done before the write transaction that decides it."""

    msg: ParsedMessage
    reasons: tuple[str, ...] = ()  # the screen's, all but the per-sender cap's
    decision: Classification | None = None
    form: FormSubmission | None = None  # a configured web form's reading of it
    bounce: Bounce | None = None  # a delivery report, perhaps about one of ours


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
        from_mail_system = any(r.startswith(("machine-", "null-return-path")) for r in reasons)
        bounce = (
            read_bounce(fetched.raw, from_mail_system=from_mail_system)
            if from_mail_system or msg.content_type == "multipart/report"
            else None
        )
        return Prepared(msg, reasons, form=form, bounce=bounce)
    decision = _classify(app, msg, box)
    return Prepared(msg, decision=with_topic(decision, form) if form else decision, form=form)


def _classify(app: App, msg: ParsedMessage, box: ImapConfig) -> Classification:
    return classify(msg, app.rules, model=app.model(), mailbox_default=box.default_category)


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
    """What to do with one message not yet recorded; its record is added to `session`."""
    msg = prepared.msg
    if fetched.internal_date < start_from:
        _record(session, fetched, msg, "historic", ["arrived before start_from"], now)
        return "historic"
    if seen_before(session, msg.message_id, msg.content_hash):
        _record(session, fetched, msg, "duplicate", ["already processed"], now)
        return "duplicate"
    if _our_own(session, msg, app):
        # Our own acknowledgement or reminder, e.g. a copy the provider kept in Sent Items.
        _record(session, fetched, msg, "own-mail", ["sent by mailbot"], now)
        return "own-mail"
    if prepared.bounce is not None and (outcome := _bounced(session, fetched, prepared, now)):
        return outcome

    sender = staff_sender(msg, app.cfg)
    resident = resident_of(msg, prepared.form)
    recipient = resident.email if resident else None
    # Acknowledgements this sender had in the last day: the cap counts them, and one
    # within the follow-up window makes this a follow-up. Staff mail joins cases only by
    # reference or thread.
    recent = (
        recent_acknowledgements(session, recipient, now - timedelta(days=1))
        if recipient and sender is None and not sent
        else None
    )
    # Each web form submission is a matter of its own, however soon after the last.
    window = app.cfg.screening.follow_up_minutes if prepared.form is None else 0
    case = find_case(
        session,
        msg,
        app.cfg.own_addresses,  # the officers and the council's mailboxes
        recently_acknowledged=recent.case_since(now - timedelta(minutes=window))
        if recent and window
        else None,
    )
    faults.crash_point("after-thread")
    if sender is not None:
        outcome, reasons = handle_staff_mail(
            app,
            session,
            msg,
            case,
            sender=sender,
            arrived=fetched.internal_date,
            from_sent_folder=sent,
            confirm_key=f"confirm:{fetched.folder}:{fetched.uidvalidity}:{fetched.uid}",
            now=now,
        )
        _record(session, fetched, msg, outcome, reasons, now, case)
        return outcome
    if sent:
        _record(session, fetched, msg, "staff-mail", ["sent folder: not from staff"], now)
        return "staff-mail"
    screening = app.cfg.screening
    domain = domain_of(recipient) if recipient else ""
    ctx = ScreenContext(
        own_addresses=app.cfg.own_addresses,
        sent_to_sender_last_day=len(recent) if recent else 0,
        cap_per_day=screening.acknowledgements_per_sender_per_day,
        sent_to_domain_last_day=acknowledgements_to_domain(session, domain, now - timedelta(days=1))
        if recent is not None and case is None and domain not in screening.large_providers
        else None,
        cap_per_domain_per_day=screening.acknowledgements_per_domain_per_day,
        form=prepared.form,
    )
    reasons = [*prepared.reasons, *screen(msg, ctx, CAP_RULES)]
    faults.crash_point("after-screen")
    if case is not None:
        # Attached even when automatic (SPEC §6), but only a person gets a reply.
        follow_up(app, session, case, msg, fetched.internal_date, now)
        if not reasons:
            tell_officer_of_follow_up(app, session, case, msg, now)
        _record(session, fetched, msg, "follow-up", reasons, now, case)
        return "follow-up"
    if reasons:
        _record(session, fetched, msg, "suppressed", reasons, now)
        return "suppressed"
    assert resident is not None  # screen() refuses mail without a valid sender or resident

    case = open_case(
        app, session, msg, fetched.internal_date, now, box, prepared.decision, resident
    )
    _record(session, fetched, msg, "case-opened", list(case.reasons), now, case)
    acknowledge(app, session, case, msg, resident.email, now)
    if case.priority == "high":
        alert_welfare(app, session, case, now)
    return "case-opened"


def _bounced(
    session: Session, fetched: FetchedMessage, prepared: Prepared, now: datetime
) -> str | None:
    """A delivery report about one of our messages: the message is marked bounced and
    the report joins its case's history (delayed delivery is a note). None if the report
    is about no message of ours."""
    bounce, msg = prepared.bounce, prepared.msg
    assert bounce is not None
    row = session.scalar(
        select(OutboxMessage).where(OutboxMessage.message_id.in_(bounce.message_ids)).limit(1)
    )
    if row is None:
        return None
    case = session.get(Case, row.case_id) if row.case_id is not None else None
    why = bounce.describe()
    if bounce.failed:
        row.status, row.last_error = "bounced", f"bounced: {why}"[:1000]
        if case is not None and row.kind == "acknowledgement":
            case.acknowledged_at = None  # it never reached them
        kind = "bounced"
        detail = (
            f"{row.kind} to {row.recipient} bounced: {why} "
            f"(mailbot outbox resend {row.id}, or dismiss {row.id})"
        )
    else:
        kind, detail = "note", f"delivery of the {row.kind} to {row.recipient} delayed: {why}"
    if case is not None:
        add_event(session, case, now, kind, detail)
    _record(session, fetched, msg, "bounce", [detail], now, case)
    return "bounce"


def _our_own(session: Session, msg: ParsedMessage, app: App) -> bool:
    if msg.header(LOOP_HEADER) in app.cfg.mailbox_addresses:
        return True
    return msg.message_id is not None and sent_by_us(session, msg.message_id)


def follow_up(
    app: App, session: Session, case: Case, msg: ParsedMessage, arrived: datetime, now: datetime
) -> None:
    """A resident's further message on a case: it may answer a clarification or send
    proof of identity, or ask for the next stage (a complaint's, or an FOI or EIR
    request's internal review) in any wording the classification rules know."""
    stranger = "" if msg.from_addr == case.resident_email else " (not the case's resident)"
    add_event(session, case, now, "note", f"follow-up received from {msg.from_addr}{stranger}")
    if stranger:
        return
    if (
        app.policy.language == "cy-en"
        and case.language != "cy"
        and is_welsh(" ".join(scored_text(msg)))
    ):
        # Welsh Language Standard 1: Welsh is answered in Welsh, from now on.
        case.language = "cy"
        add_event(session, case, now, "note", "the resident wrote in Welsh: letters now in Welsh")
    if case.clock_stopped:
        restart_clock(app, session, case, arrived)
    if app.policy.final_stage(case.category) == 1:
        return
    if not classify(msg, app.rules).escalation_requested:
        return
    what = "a review" if case.category == "complaint" else "an internal review"
    if case.category != "complaint" and not _decided(app, case, now):
        # There is no decision to review yet: the officer hears of it, nothing moves.
        add_event(session, case, now, "note", f"{what} asked for before the response was sent")
        return
    try:
        escalate(app, session, case, now, f"the resident asked for {what}", received_at=arrived)
    except CommandError as exc:
        add_event(session, case, now, "note", f"{what} asked for, but {exc}")


def _decided(app: App, case: Case, now: datetime) -> bool:
    """An FOI or EIR request has something to review: it was answered, or closed, or
    its response date has passed (a late response may be reviewed too)."""
    return case.status != "open" or case.respond_by < local_today(app.policy, now)


def open_case(
    app: App,
    session: Session,
    msg: ParsedMessage,
    received_at: datetime,
    now: datetime,
    box: ImapConfig | None = None,
    decision: Classification | None = None,
    resident: Resident | None = None,
) -> Case:
    """Classify (unless `decision` is given), route and record a new case with its
    promised dates; `box` is the mailbox it came in to ([imap] when not given), and
    `resident` whom it is for (unless given, as resident.resident_of finds them)."""
    box = box or app.cfg.imap
    resident = resident or resident_of(msg)
    decision = decision or _classify(app, msg, box)
    faults.crash_point("after-classify")
    category = decision.category
    stage = app.policy.stage(category, 1)
    # Welsh Language Standard 1: mail in Welsh is answered in Welsh (SPEC §9).
    welsh = app.policy.language == "cy-en" and is_welsh(decision.text or " ".join(scored_text(msg)))
    dates = compute(app.policy, category, received_at)
    officer = choose_officer(session, app.cfg, stage.role)
    faults.crash_point("after-route")
    year = received_at.astimezone(ZoneInfo(app.policy.timezone)).year
    case = Case(
        ref=next_reference(session, category, year),
        category=category,
        stage=1,
        status="open",
        priority=decision.priority,
        policy=app.cfg.council.policy,
        resident_email=(resident.email if resident else "").lower(),
        resident_name=resident.name if resident else msg.from_name,
        subject=msg.subject,
        first_message_id=msg.message_id,
        mailbox=app.cfg.address_of(box),
        officer_email=officer.email if officer else None,
        officer_name=officer.name if officer else None,
        role=stage.role,
        received_at=received_at,
        acknowledge_by=dates.acknowledge_by,
        respond_by=dates.respond_by,
        holding_by=dates.holding_by,
        reasons=[*decision.reasons, *decision.welfare_reasons],
        clock_stopped=False,
        triage=decision.triage,
        scored_text=decision.text or None,
        language="cy" if welsh else None,
    )
    schedule(case, app.policy, local_today(app.policy, now))
    # A plain INSERT of the values set above (the columns' defaults fill the rest): the
    # ORM's unit of work costs more than the row. The case is returned unattached.
    values = {key: value for key, value in vars(case).items() if not key.startswith("_")}
    case.id = session.execute(_statements().open_case, values).scalar_one()
    why = "; ".join(decision.reasons) or "no rule matched"
    found_in = f" ({resident.found_in})" if resident and resident.found_in != "From" else ""
    history = [
        (received_at, "received", f"from {case.resident_email}{found_in}"),
        (now, "note", f"classified as {category}: {why}"),
    ]
    if decision.doubt:
        first, second = decision.doubt
        history.append(
            (now, "note", f"flagged for triage: {first} or {second}? (#category to settle it)")
        )
    if officer:
        history.append((now, "reassigned", f"assigned to {officer.name} ({stage.role})"))
    if welsh:
        history.append((now, "note", "written in Welsh: letters in Welsh"))
    add_events(session, case, history)
    return case


def alert_welfare(app: App, session: Session, case: Case, now: datetime) -> None:
    """Welfare or vulnerability wording: tell the duty officer at once, day or night."""
    reasons = [r for r in case.reasons if r.startswith("welfare")]
    notify_role(
        app,
        session,
        case,
        role=app.policy.welfare_alert_role,
        template="welfare-alert",
        kind="welfare-alert",
        subject=subject_for("welfare-alert", case),
        key=f"welfare:{case.ref}",
        extra={"welfare_reasons": reasons},
        now=now,
        at_once=True,
    )
    add_event(session, case, now, "note", f"high priority; {app.policy.welfare_alert_role} alerted")


def tell_officer_of_follow_up(
    app: App, session: Session, case: Case, msg: ParsedMessage, now: datetime
) -> None:
    """The handling officer hears that the resident wrote again. The resident gets no
    automatic reply to a follow-up: that is how two auto-responders start a loop."""
    about, extra = case.subject or case.ref, {}
    if msg.from_addr == case.resident_email:
        subject = f"The resident wrote again: {about}"
    else:  # someone else who named the case, or quoted one of our letters
        subject = f"{msg.from_addr} wrote about this case: {about}"
        extra = {"writer": msg.from_addr}
    notify_officer(
        app,
        session,
        case,
        template="follow-up-received",
        kind="follow-up",
        subject=subject,
        key=f"follow-up:{case.ref}:{msg.message_id or msg.content_hash}",
        now=now,
        extra=extra,
    )


def acknowledge(
    app: App, session: Session, case: Case, msg: ParsedMessage, recipient: str, now: datetime
) -> None:
    """Queue the acknowledgement; the outbox sends it after this transaction commits."""
    # In doubt, an acknowledgement that promises nothing a later #category would make
    # untrue: no category, officer or date.
    letter = Letter(
        kind="acknowledgement",
        template="acknowledgement-triage" if case.triage else f"acknowledgement-{case.category}",
        recipient=recipient,
        to_name=case.resident_name,
        subject=subject_for("acknowledgement", case),
        audience="resident",
        in_reply_to=msg.message_id,
        references=msg.references,
        extra={"officer": None} if case.triage else {},
    )
    queue(
        session,
        [(f"ack:{case.ref}", letter, case.id)],
        mailbox_address=case.mailbox or app.cfg.council.mailbox_address,
        now=now,
    )
