"""Refusals: what an SMTP server's "no" is about — this recipient, this message, or our account.

A refusal about the recipient (`550 5.1.1 no such user`) is that one message's failure.
A refusal about the account or this server's right to send (`553 5.7.1 Sender address
rejected: not owned by user`, `554 5.7.1 Client host rejected`, `535 5.7.8` bad
password) says nothing about the message: every other message would meet the same
answer, so sending pauses until someone fixes it, and nothing is failed meanwhile.

Sorted by the enhanced status code (RFC 3463, and Microsoft 365's own) where the server
gives one, by the words Postfix, Exim and Exchange use where it does not, and otherwise
by the step that was refused (MAIL FROM: the sender; RCPT TO: the recipient; DATA: the
message). Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class About(StrEnum):
    """What a refusal is about, and so what happens next."""

    RECIPIENT = "recipient"  # this address: the message fails (5xx) or waits (4xx)
    MESSAGE = "message"  # this message as written: it fails (5xx) or waits (4xx)
    ACCOUNT = "account"  # our sign-in, sender address or server: sending pauses


class Step(StrEnum):
    """The SMTP step a server refused."""

    CONNECT = "connect"  # the greeting, EHLO, STARTTLS or AUTH
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"


@dataclass(frozen=True)
class Refusal:
    about: About
    permanent: bool  # 5xx; a 4xx means "not now"
    reply: str  # the server's words, one line: "553 5.7.1 Sender address rejected: …"
    why: str  # what decided it, for the log

    @property
    def pauses_sending(self) -> bool:
        return self.about is About.ACCOUNT


@dataclass(frozen=True)
class _Rule:
    """One way of telling what a refusal is about; the first that matches decides."""

    about: About
    description: str
    codes: frozenset[str] = frozenset()  # enhanced status codes without their class: "1.1"
    words: re.Pattern[str] | None = None  # in the server's text

    def matches(self, detail: str, text: str) -> bool:
        if detail in self.codes:
            return True
        return self.words is not None and self.words.search(text) is not None


def _words(*phrases: str) -> re.Pattern[str]:
    return re.compile("|".join(phrases), re.IGNORECASE)


# In order: the server's words about the sender or this client outrank a code that could
# be about either (5.7.1 is "not authorised", for the sender or the recipient alike).
RULES: tuple[_Rule, ...] = (
    _Rule(
        About.ACCOUNT,
        "the sender address, the sign-in or this server's address was refused",
        codes=frozenset(
            {
                "1.7",  # bad sender's mailbox address syntax
                "1.8",  # bad sender's system address
                "7.8",  # authentication credentials invalid
                "7.9",  # authentication mechanism too weak
                "7.11",  # encryption required
                "7.25",  # reverse DNS of this server failed
                "7.57",  # Microsoft 365: client not authenticated to send
                "7.60",  # Microsoft 365: no Send As permission
                "7.64",  # Microsoft 365: tenant attribution (relay not allowed)
                "7.708",  # Microsoft 365: the tenant may not send for now
                "7.750",  # Microsoft 365: unregistered domain or tenant blocked
            }
        ),
        words=_words(
            r"sender address rejected",
            r"not owned by user",
            r"client host rejected",
            r"relay(ing)? (access )?(denied|not permitted)",
            r"authentication (is )?required",
            r"not authenticated",
            r"must (be authenticated|authenticate)",
            r"send ?as",
            r"helo command rejected",
            r"sender verify failed",
            r"sender (domain|address) (not|is not|must)",
            r"banned sending ip",
        ),
    ),
    _Rule(
        About.RECIPIENT,
        "the recipient's address or mailbox was refused",
        codes=frozenset(
            {
                "1.1",  # bad destination mailbox
                "1.2",  # bad destination system
                "1.3",  # bad destination address syntax
                "1.4",  # ambiguous destination
                "1.6",  # mailbox has moved
                "1.10",  # the recipient's domain takes no mail (null MX)
                "2.1",  # mailbox disabled
                "2.2",  # mailbox full
                "2.4",  # mailing list expansion problem
                "4.4",  # no route to the recipient's domain
            }
        ),
        words=_words(r"recipient address rejected", r"user unknown", r"no such (user|mailbox)"),
    ),
    _Rule(
        About.MESSAGE,
        "the message itself was refused (its size, content or encoding)",
        codes=frozenset({"2.3", "3.4", "6.0", "6.3", "6.5", "6.7", "6.8", "6.9"}),
    ),
)
# SMTP reply codes that are about the session whatever the text: the server is going
# away (421), or the sign-in is missing or wrong (530, 534, 535, 538).
_ACCOUNT_CODES = frozenset({421, 454, 530, 534, 535, 538})
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3}\.\d{1,3})\b")
# What each step refuses when nothing else says: MAIL is about the sender.
_BY_STEP = {
    Step.CONNECT: About.ACCOUNT,
    Step.MAIL: About.ACCOUNT,
    Step.RCPT: About.RECIPIENT,
    Step.DATA: About.MESSAGE,
}


def sort_refusal(code: int, message: str, step: Step) -> Refusal:
    """What a server's refusal at `step` is about."""
    text = " ".join(message.split())[:300]
    reply = f"{code} {text}".strip()
    permanent = code >= 500
    if code in _ACCOUNT_CODES or step in (Step.CONNECT, Step.MAIL):
        why = f"a {code} refusal" if code in _ACCOUNT_CODES else f"refused at {step.upper()}"
        return Refusal(About.ACCOUNT, permanent, reply, why)
    found = _ENHANCED.match(text)
    detail = found.group(2) if found else ""
    for rule in RULES:
        if rule.matches(detail, text):
            return Refusal(rule.about, permanent, reply, rule.description)
    return Refusal(_BY_STEP[step], permanent, reply, f"refused at {step.upper()}")
