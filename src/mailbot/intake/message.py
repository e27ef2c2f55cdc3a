"""The message intake decides about: as read from the mailbox, and what was worked out
from it before the database transaction (pipeline._prepare)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mailbot.bounces import Bounce
from mailbot.classify import Classification
from mailbot.config import ImapConfig
from mailbot.forms import FormSubmission
from mailbot.mailbox import FetchedMessage
from mailbot.parse import ParsedMessage
from mailbot.reasons import Reason


@dataclass(frozen=True)
class Prepared:
    """A message parsed, screened and, if it may open a case, classified: the work on it
    that needs no database, done before the write transaction that decides it."""

    msg: ParsedMessage
    reasons: tuple[Reason, ...] = ()  # the screen's, all but the caps'
    decision: Classification | None = None
    form: FormSubmission | None = None  # a configured web form's reading of it
    bounce: Bounce | None = None  # a delivery report, perhaps about one of ours


@dataclass(frozen=True)
class Incoming:
    """One message to decide about, and where it came from."""

    fetched: FetchedMessage
    prepared: Prepared
    box: ImapConfig  # the mailbox it is in
    start_from: datetime  # mail that arrived earlier is historic (SPEC §1.4)
    sent: bool  # read from the sent folder: for officers' replies and commands only

    @property
    def msg(self) -> ParsedMessage:
        return self.prepared.msg
