"""The intake chain: what happens to one message, as named steps tried in order.

The first step whose check says so decides the message (its outcome, with the reasons);
the rest are not asked. The chain only reads (facts.py); apply.py writes what it decided.
Read CHAIN from top to bottom for the whole story of a message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from mailbot.intake.facts import Facts
from mailbot.intake.message import Incoming
from mailbot.reasons import Reason
from mailbot.resident import Resident
from mailbot.store import Case, OutboxMessage


class Outcome(StrEnum):
    """What becomes of a message (the `outcome` recorded with it, but for STAFF: the
    officers' reading says "command", "officer-reply", "refused" or "staff-mail")."""

    HISTORIC = "historic"
    DUPLICATE = "duplicate"
    OWN_MAIL = "own-mail"
    BOUNCE = "bounce"
    STAFF = "staff"
    SENT_FOLDER = "staff-mail"
    FOLLOW_UP = "follow-up"
    SUPPRESSED = "suppressed"
    CASE_OPENED = "case-opened"


@dataclass(frozen=True)
class Disposition:
    """A step's decision: the outcome, why, and what it concerns."""

    outcome: Outcome
    step: str  # the step that decided
    reasons: tuple[Reason, ...] = ()
    case: Case | None = None  # the case it joins
    bounced: OutboxMessage | None = None  # our message a delivery report is about
    staff: str | None = None  # the officer (or council mailbox) who wrote it
    resident: Resident | None = None  # whom a new case is for


Check = Callable[[Incoming, Facts], Disposition | None]


def _because(outcome: Outcome, step: str, text: str) -> Disposition:
    """A step's decision with its one reason, which the step gives."""
    return Disposition(outcome, step, (Reason(step, text),))


@dataclass(frozen=True)
class Step:
    """One decision about a message: its name, what it means, and its check."""

    name: str
    description: str
    check: Check


def _historic(incoming: Incoming, facts: Facts) -> Disposition | None:
    if incoming.fetched.internal_date < incoming.start_from:
        return _because(Outcome.HISTORIC, "historic", "arrived before start_from")
    return None


def _duplicate(incoming: Incoming, facts: Facts) -> Disposition | None:
    if facts.seen_before:
        return _because(Outcome.DUPLICATE, "duplicate", "already processed")
    return None


def _own_mail(incoming: Incoming, facts: Facts) -> Disposition | None:
    if facts.ours:
        return _because(Outcome.OWN_MAIL, "own-mail", "sent by mailbot")
    return None


def _bounce(incoming: Incoming, facts: Facts) -> Disposition | None:
    row = facts.bounced
    if row is None:
        return None
    return Disposition(Outcome.BOUNCE, "bounce", bounced=row)


def _staff(incoming: Incoming, facts: Facts) -> Disposition | None:
    if facts.staff is None:
        return None
    return Disposition(Outcome.STAFF, "staff", case=facts.case, staff=facts.staff)


def _sent_folder(incoming: Incoming, facts: Facts) -> Disposition | None:
    if incoming.sent:
        return _because(Outcome.SENT_FOLDER, "sent-folder", "not from staff")
    return None


def _follow_up(incoming: Incoming, facts: Facts) -> Disposition | None:
    if facts.case is None:
        return None
    # Attached even when automatic (SPEC §6): the reasons say whether a person wrote it.
    return Disposition(Outcome.FOLLOW_UP, "follow-up", facts.screened, case=facts.case)


def _screened(incoming: Incoming, facts: Facts) -> Disposition | None:
    if facts.screened:
        return Disposition(Outcome.SUPPRESSED, "screened", facts.screened)
    return None


def _new_case(incoming: Incoming, facts: Facts) -> Disposition:
    # The screen refuses mail without a valid sender or resident, so there is one.
    assert facts.resident is not None
    return Disposition(Outcome.CASE_OPENED, "new-case", resident=facts.resident)


CHAIN: tuple[Step, ...] = (
    Step("historic", "arrived before the mailbox's start_from: never acted on", _historic),
    Step("duplicate", "the same message was processed already", _duplicate),
    Step("own-mail", "mailbot sent it (a copy kept in a folder, say)", _own_mail),
    Step("bounce", "a delivery report about a message of ours: joins its case", _bounce),
    Step("staff", "an officer or the council's mailbox wrote it: replies and commands", _staff),
    Step("sent-folder", "in the sent folder, not from staff: read, never answered", _sent_folder),
    Step("follow-up", "about a case it names or replies to: joins that case", _follow_up),
    Step("screened", "automatic mail, spam, or over a cap (screen.py): recorded only", _screened),
    Step("new-case", "a resident's new matter: a case, an acknowledgement", _new_case),
)


def decide(incoming: Incoming, facts: Facts) -> Disposition:
    """The first step of the chain that decides this message."""
    for step in CHAIN:
        decided = step.check(incoming, facts)
        if decided is not None:
            return decided
    raise AssertionError("the last step decides every message")
