"""Release: `mailbot release ID` — open and acknowledge the case of a message that was held
as spam or as automatic mail by mistake (SPEC §2).

The database keeps where each message is (mailbox folder, UIDVALIDITY, UID) and its
Message-ID, not the message, so a release reads it again from the mailbox. The release
is recorded on the message's row in the same transaction as its case: a second release,
however soon, finds it released and sends nothing.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from mailbot import shadow
from mailbot.app import App
from mailbot.classify import classify
from mailbot.config import Config, ImapConfig
from mailbot.forms import read_form, with_topic
from mailbot.held import SPAM_RULE, held_name
from mailbot.intake.casework import acknowledge, alert_welfare, open_case
from mailbot.mailbox import FetchedMessage, Mailbox, folder_key, sign_in
from mailbot.outbox import sending
from mailbot.parse import clean_text, parse_message, valid_address
from mailbot.reasons import Reason, first
from mailbot.resident import resident_of
from mailbot.store import Case, InboundMessage, add_event, case_by_ref, recent_acknowledgements
from mailbot.thread import REFERENCE

log = logging.getLogger("mailbot.release")

_ID = re.compile(r"(?:(?P<mailbox>[^\s:]+@[^\s:]+):)?(?P<uid>\d{1,10})")
# What a message that was never held became, in the clerk's words.
_NOT_HELD = {
    "case-opened": "it opened a case when it arrived",
    "follow-up": "it was attached to a case as a follow-up",
    "duplicate": "it repeated a message already read",
    "historic": "it arrived before mailbot started on this mailbox",
    "own-mail": "mailbot sent it",
    "staff-mail": "it is staff mail",
    "failed": "it could not be read (see the log); nothing was decided about it",
}


class ReleaseError(Exception):
    """The message cannot be released; one line for the clerk (exit 1)."""


@dataclass(frozen=True)
class _Held:
    """The recorded facts about one message, read before the mailbox is asked for it."""

    id: int
    name: str  # as the digest gives it
    folder: str
    uidvalidity: int
    uid: int
    message_id: str | None
    content_hash: str
    internal_date: datetime
    outcome: str
    reasons: list[Reason]
    case_ref: str | None


def release(app: App, identifier: str) -> str:
    """Open and acknowledge the case of the held message `identifier` (a UID as the digest
    gives it, or the case reference of one released already); returns what was done.

    The per-sender cap is not applied: it stops loops between machines, and a release is
    one person's decision about one message. The acknowledgement still counts towards the
    cap for whatever arrives next.
    """
    held = _find(app, identifier)
    if held.outcome == "released":
        return f"{held.name} was released already, as {held.case_ref}; nothing sent"
    if held.outcome != "suppressed":
        why = _NOT_HELD.get(held.outcome, f"its outcome is {held.outcome!r}")
        raise ReleaseError(f"{held.name} was not held: {why}; nothing to release")
    box = _mailbox_of(app.cfg, held.folder)
    fetched = _fetch_again(app, box, held)
    if fetched is None:
        raise ReleaseError(
            f"{held.name} is no longer in {box.inbox} of {app.cfg.address_of(box)} (deleted or "
            "moved since it arrived); nothing sent"
        )
    msg = parse_message(fetched.raw, truncated=fetched.truncated)
    cfg = app.cfg
    form = read_form(msg, cfg.forms, cfg.own_addresses)
    resident = resident_of(msg, form)
    if resident is None or resident.email in cfg.own_addresses:
        why = form.no_resident if form and form.no_resident else "no resident's address in it"
        raise ReleaseError(f"{held.name} cannot be acknowledged: {why}; nothing sent")
    decision = classify(msg, app.rules, mailbox_default=box.default_category)
    decision = with_topic(decision, form) if form else decision
    now = app.clock.now()
    with app.sessions.begin() as session:
        # Claimed first: a release running at the same moment waits here, then finds it taken.
        claimed = session.execute(
            update(InboundMessage)
            .where(InboundMessage.id == held.id, InboundMessage.outcome == "suppressed")
            .values(outcome="released")
        )
        if claimed.rowcount != 1:
            return f"{held.name} was released already, just now; nothing sent"
        recent = recent_acknowledgements(session, resident.email, now - timedelta(days=1))
        case = open_case(app, session, msg, held.internal_date, now, box, decision, resident)
        session.execute(
            update(InboundMessage).where(InboundMessage.id == held.id).values(case_id=case.id)
        )
        spam = first(held.reasons, SPAM_RULE)
        why = (
            f"from spam ({spam})" if spam else f"(held: {held.reasons[0] if held.reasons else '-'})"
        )
        add_event(session, case, now, "note", clean_text(f"released by the clerk {why}", 500))
        acknowledge(app, session, case, msg, resident.email, now)
        if case.priority == "high":
            alert_welfare(app, session, case, now)
        ref = case.ref
        kept = not shadow.decide("acknowledgement", now, shadow.mode_of(session)).sent
    log.info("released %s as %s", held.name, ref, extra={"case": ref, "uid": held.uid})
    sending.flush(app)  # the acknowledgement goes now (or waits in the outbox for the daemon)
    said = f"released {held.name} as {ref}; acknowledgement to {resident.email}"
    if kept:
        said += " recorded, not sent (shadow mode)"
    if len(recent) >= cfg.screening.acknowledgements_per_sender_per_day:
        said += (
            f" (it had {len(recent)} acknowledgements in the last 24 hours; the cap is not "
            "applied to a release)"
        )
    return said


def _find(app: App, identifier: str) -> _Held:
    """The message a clerk names: a UID as the digest gives it, or a released case's reference."""
    cfg = app.cfg
    text = identifier.strip()
    with app.sessions() as session:
        if REFERENCE.fullmatch(text):
            case = case_by_ref(session, text)
            if case is None:
                raise ReleaseError(f"no case {text.upper()}")
            row = session.scalar(
                select(InboundMessage).where(
                    InboundMessage.case_id == case.id, InboundMessage.outcome == "released"
                )
            )
            if row is None:
                raise ReleaseError(f"{case.ref} was not held: {_NOT_HELD['case-opened']}")
            return _held(cfg, row, case.ref)
        found = _ID.fullmatch(text)
        if found is None:
            raise ReleaseError(
                f"{clean_text(text, 60)!r} is not a held message's ID as the digest gives it "
                "(e.g. 4711, or foi@council.example.gov.uk:4711)"
            )
        boxes = cfg.all_mailboxes
        if found["mailbox"]:
            wanted = valid_address(found["mailbox"])
            boxes = [box for box in boxes if cfg.address_of(box) == wanted]
            if not boxes:
                raise ReleaseError(f"no mailbox {found['mailbox']} in the config")
        folders = [folder_key(box, box.inbox) for box in boxes]
        uid = int(found["uid"])
        rows = session.scalars(
            select(InboundMessage)
            .where(InboundMessage.folder.in_(folders), InboundMessage.uid == uid)
            .order_by(InboundMessage.id.desc())
        ).all()
        latest = {row.folder: row for row in reversed(rows)}  # the newest for each folder
        if not latest:
            raise ReleaseError(f"no message with ID {uid} has been read")
        if len(latest) > 1:
            names = " or ".join(held_name(cfg, folder, uid) for folder in sorted(latest))
            raise ReleaseError(f"ID {uid} is in more than one mailbox: give {names}")
        [row] = latest.values()
        ref = (
            session.scalar(select(Case.ref).where(Case.id == row.case_id)) if row.case_id else None
        )
        return _held(cfg, row, ref)


def _held(cfg: Config, row: InboundMessage, case_ref: str | None) -> _Held:
    return _Held(
        id=row.id,
        name=held_name(cfg, row.folder, row.uid),
        folder=row.folder,
        uidvalidity=row.uidvalidity,
        uid=row.uid,
        message_id=row.message_id,
        content_hash=row.content_hash,
        internal_date=row.internal_date,
        outcome=row.outcome,
        reasons=list(row.reasons or []),
        case_ref=case_ref,
    )


def _mailbox_of(cfg: Config, folder: str) -> ImapConfig:
    for box in cfg.all_mailboxes:
        if folder_key(box, box.inbox) == folder:
            return box
    raise ReleaseError(f"the mailbox it came from ({folder}) is no longer in the config")


def _fetch_again(app: App, box: ImapConfig, held: _Held) -> FetchedMessage | None:
    """The message from the mailbox: by its UID while the folder keeps its numbering, else
    (renumbered, or moved out and back) by its Message-ID; None if it is not there."""
    mailbox = sign_in(app, box)
    try:
        uidvalidity = mailbox.select(box.inbox)
        if uidvalidity == held.uidvalidity:
            found = _fetch_one(mailbox, box, uidvalidity, held.uid)
            if found is not None and _same(found, held):
                return found
        if held.message_id:
            for uid in mailbox.uids_with_message_id(held.message_id):
                found = _fetch_one(mailbox, box, uidvalidity, uid)
                if found is not None and _same(found, held):
                    return found
        return None
    finally:
        mailbox.close()


def _fetch_one(
    mailbox: Mailbox, box: ImapConfig, uidvalidity: int, uid: int
) -> FetchedMessage | None:
    for batch in mailbox.fetch(uidvalidity, [uid], box.max_message_mb * 1024 * 1024):
        return batch[0]
    return None


def _same(fetched: FetchedMessage, held: _Held) -> bool:
    msg = parse_message(fetched.raw, truncated=fetched.truncated)
    if held.message_id:
        return msg.message_id == held.message_id
    return msg.content_hash == held.content_hash
