"""Held: messages that were not acknowledged and that the clerk should see — held as spam,
or a web form's with no address to answer — and the name `mailbot release` knows each by."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailbot.config import Config
from mailbot.mailbox import folder_key
from mailbot.reasons import first
from mailbot.store import InboundMessage

# The screen rules whose messages the digest lists (screen.MESSAGE_RULES, FORM_RULES),
# and the daily caps (screen.CAP_RULES), listed together: a resident held by a cap is
# released like one held as spam.
SPAM_RULE, FORM_RULE, CAPS = "spam", "form", "caps"
CAP_RULES = ("sender-cap", "domain-cap")


@dataclass(frozen=True)
class HeldMessage:
    """One held message, as the digest lists it."""

    name: str  # what to give `mailbot release`
    received_at: datetime
    sender: str
    reason: str  # the rule's reason, as a clerk reads it: "spam: ... (X-Spam-Flag: YES)"


def held_name(cfg: Config, folder: str, uid: int) -> str:
    """The message's UID, with its mailbox's address in front where mailbot reads more
    than one mailbox ("foi@council.example.gov.uk:4711")."""
    if len(cfg.all_mailboxes) == 1:
        return str(uid)
    for box in cfg.all_mailboxes:
        if folder_key(box, box.inbox) == folder:
            return f"{cfg.address_of(box)}:{uid}"
    return f"{folder}:{uid}"


@dataclass
class HeldList:
    """The first of the messages one rule held, and how many it held in all."""

    messages: list[HeldMessage] = field(default_factory=list)
    total: int = 0


def held_since(session: Session, cfg: Config, since: datetime, limit: int) -> dict[str, HeldList]:
    """What SPAM_RULE, FORM_RULE and the caps held since `since` and is held still (a
    released message is not), oldest first, at most `limit` of each listed."""
    rows = session.execute(
        select(
            InboundMessage.folder,
            InboundMessage.uid,
            InboundMessage.internal_date,
            InboundMessage.from_addr,
            InboundMessage.reasons,
        )
        .where(InboundMessage.outcome == "suppressed", InboundMessage.processed_at >= since)
        .order_by(InboundMessage.id)
    )
    found = {SPAM_RULE: HeldList(), FORM_RULE: HeldList(), CAPS: HeldList()}
    for folder, uid, received_at, sender, reasons in rows:
        for rule, held in found.items():
            rules = CAP_RULES if rule == CAPS else (rule,)
            reason = first(reasons, *rules)
            if reason is None or (rule == CAPS and len(reasons or []) > 1):
                continue  # held by a cap alone: anything else held it for good reason
            held.total += 1
            if len(held.messages) < limit:
                name = held_name(cfg, folder, uid)
                held.messages.append(HeldMessage(name, received_at, sender or "-", str(reason)))
            break  # spam from a form is listed once, as spam
    return found
