"""Thread: find the case a message belongs to — by reference in the subject or by Message-IDs."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy.orm import Session

from mailbot.parse import ParsedMessage
from mailbot.store import (
    PREFIXES,
    Case,
    case_by_message_ids,
    case_by_ref,
    last_acknowledgement_since,
)

REFERENCE = re.compile(rf"\b(?:{'|'.join(PREFIXES.values())})-\d{{4}}-\d{{5}}\b", re.IGNORECASE)


def references_in(text: str) -> list[str]:
    """Case references written in a subject line, upper-cased, first first."""
    return list(dict.fromkeys(match.upper() for match in REFERENCE.findall(text)))


def find_case(
    session: Session,
    msg: ParsedMessage,
    officers: frozenset[str],
    acknowledged_since: datetime | None = None,
) -> Case | None:
    """The case this message follows up, or None for a new matter.

    A reference typed in a subject only counts when the sender is the case's resident or
    an officer: anyone can type a reference, but only the thread's own people follow up.
    Message-IDs in In-Reply-To/References are not guessable, so they count from anyone.
    Failing both, a sender acknowledged since `acknowledged_since` is following up the
    case we acknowledged (see `[screening] follow_up_minutes`).
    """
    for ref in references_in(msg.subject):
        case = case_by_ref(session, ref)
        if case is not None and msg.from_addr in {case.resident_email, *officers}:
            return case
    case = case_by_message_ids(session, msg.thread_ids)
    if case is None and acknowledged_since is not None:
        case = _recently_acknowledged(session, msg.reply_to or msg.from_addr, acknowledged_since)
    return case


def _recently_acknowledged(session: Session, sender: str | None, since: datetime) -> Case | None:
    """The case whose acknowledgement most recently went to `sender`, if one went since."""
    if not sender:
        return None
    case_id = last_acknowledgement_since(session, sender, since)
    return session.get(Case, case_id) if case_id is not None else None
