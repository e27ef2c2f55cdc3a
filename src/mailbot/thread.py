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

    A reference typed in a subject only counts when the sender is the case's resident or
    staff (an officer, or the council's mailbox: a reply sent from it by Outlook carries
    only Thread-Index, no In-Reply-To): anyone can type a reference, but only the
    thread's own people follow up (and staff mail changes a case only when trust.py
    believes it).
    Message-IDs in In-Reply-To/References are not guessable, so they count from anyone.
    Mail from a per-request address (WhatDoTheyKnow's) joins that address's FOI or EIR
    case. Failing all these, the case `recently_acknowledged` (the id of the case whose
    acknowledgement went to this sender within `[screening] follow_up_minutes`) is the
    one being followed up.
    """
    for ref in references_in(msg.subject):
        case = case_by_ref(session, ref)
        if case is not None and msg.from_addr in {case.resident_email, *staff}:
            return case
    case = case_by_message_ids(session, msg.thread_ids)
    if case is None and msg.from_addr and PER_REQUEST_ADDRESS.match(msg.from_addr):
        case = latest_case_of(session, msg.from_addr, ("foi", "eir"))
    if case is None and recently_acknowledged is not None:
        case = session.get(Case, recently_acknowledged)
    return case
