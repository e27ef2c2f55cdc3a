"""Thread: find the case a message belongs to — by reference in the subject or by Message-IDs."""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from mailbot.parse import ParsedMessage
from mailbot.store import (
    PREFIXES,
    Case,
    case_by_message_ids,
    case_by_ref,
    latest_case_of,
)

REFERENCE = re.compile(rf"\b(?:{'|'.join(PREFIXES.values())})-\d{{4}}-\d{{5}}\b", re.IGNORECASE)
# Services that give each request its own address, so that everything from it is about
# that one request: WhatDoTheyKnow writes from request-NNN-xxxxxxxx@whatdotheyknow.com,
# often with no reference and no In-Reply-To (an internal review request, say).
PER_REQUEST_ADDRESS = re.compile(r"^request-\d+-[0-9a-z]+@whatdotheyknow\.com$", re.IGNORECASE)


def references_in(text: str) -> list[str]:
    """Case references written in a subject line, upper-cased, first first."""
    return list(dict.fromkeys(match.upper() for match in REFERENCE.findall(text)))


def find_case(
    session: Session,
    msg: ParsedMessage,
    staff: frozenset[str],
    recently_acknowledged: int | None = None,
) -> Case | None:
    """The case this message follows up, or None for a new matter.

    In order: a reference typed in the subject; In-Reply-To/References naming any message
    of the case (not guessable, so from anyone); a reference in the body, which quoting
    one of our letters puts there, when the sender is neither the case's resident (their
    own new matter may mention an old case) nor staff; mail from a per-request address
    (WhatDoTheyKnow's) joins that address's FOI or EIR case; and failing all of those, the
    case `recently_acknowledged` (the id of the case whose acknowledgement went to this
    sender within `[screening] follow_up_minutes`).

    A message from someone who is not the case's resident joins the case as a note, with
    no acknowledgement: this is how a reply forwarded on, a helpdesk answering our letter
    from a new address each time, or a stranger quoting a reference to lure the council
    into writing to a third party, ends there instead of opening a case of its own.
    Staff (an officer, or the council's mailbox: a reply sent from it by Outlook carries
    only Thread-Index, no In-Reply-To) are found by the subject too; their mail changes a
    case only when trust.py believes it.
    """
    for ref in references_in(msg.subject):
        case = case_by_ref(session, ref)
        if case is not None:
            return case
    case = case_by_message_ids(session, msg.thread_ids)
    if case is not None:
        return case
    for ref in references_in(msg.text[:BODY_SEARCHED])[:5]:
        case = case_by_ref(session, ref)
        if case is not None and msg.from_addr not in {case.resident_email, *staff}:
            return case
    if msg.from_addr and PER_REQUEST_ADDRESS.match(msg.from_addr):
        case = latest_case_of(session, msg.from_addr, ("foi", "eir"))
        if case is not None:
            return case
    if recently_acknowledged is not None:
        return session.get(Case, recently_acknowledged)
    return None


BODY_SEARCHED = 50_000  # characters of the body searched for a reference: quotes come early
