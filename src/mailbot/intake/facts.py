"""Facts: what the intake chain may look up about a message, read from the database.

Each fact is read the first time a step asks for it and kept: most messages are decided
by the first few steps and never pay for the rest. Nothing here writes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cached_property

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailbot import faults
from mailbot.addresses import domain_of
from mailbot.app import App
from mailbot.intake.message import Incoming
from mailbot.officers import staff_sender
from mailbot.reasons import Reason
from mailbot.resident import Resident, resident_of
from mailbot.screen import CAP_RULES, LOOP_HEADER, ScreenContext, screen
from mailbot.store import (
    Case,
    OutboxMessage,
    RecentAcknowledgements,
    acknowledgements_to_domain,
    recent_acknowledgements,
    seen_before,
    sent_by_us,
)
from mailbot.thread import find_case


class Facts:
    """Read-only lookups about one message, for the steps of the chain (chain.py)."""

    def __init__(self, app: App, session: Session, incoming: Incoming, now: datetime) -> None:
        self.app, self.session, self.incoming, self.now = app, session, incoming, now

    @cached_property
    def seen_before(self) -> bool:
        """The same message (Message-ID, or content when it has none) was processed."""
        msg = self.incoming.msg
        return seen_before(self.session, msg.message_id, msg.content_hash)

    @cached_property
    def ours(self) -> bool:
        """mailbot sent it: our loop header naming one of our mailboxes, or our Message-ID
        (a copy the provider kept in Sent Items, say)."""
        msg = self.incoming.msg
        if msg.header(LOOP_HEADER) in self.app.cfg.mailbox_addresses:
            return True
        return msg.message_id is not None and sent_by_us(self.session, msg.message_id)

    @cached_property
    def bounced(self) -> OutboxMessage | None:
        """The message of ours a delivery report is about, if it is about one."""
        bounce = self.incoming.prepared.bounce
        if bounce is None:
            return None
        return self.session.scalar(
            select(OutboxMessage).where(OutboxMessage.message_id.in_(bounce.message_ids)).limit(1)
        )

    @cached_property
    def staff(self) -> str | None:
        """The officer's (or the council mailbox's) address, when staff wrote it."""
        return staff_sender(self.incoming.msg, self.app.cfg)

    @cached_property
    def resident(self) -> Resident | None:
        """Whom a reply would go to (resident.py: Reply-To where it belongs, a form's field)."""
        return resident_of(self.incoming.msg, self.incoming.prepared.form)

    @cached_property
    def recent(self) -> RecentAcknowledgements | None:
        """Acknowledgements this resident had in the last day: the cap counts them, and one
        within the follow-up window makes this a follow-up. None for staff mail and the
        sent folder, which join cases only by reference or thread."""
        if self.resident is None or self.staff is not None or self.incoming.sent:
            return None
        return recent_acknowledgements(
            self.session, self.resident.email, self.now - timedelta(days=1)
        )

    @cached_property
    def case(self) -> Case | None:
        """The case this message follows up (thread.py), or None for a new matter."""
        # Each web form submission is a matter of its own, however soon after the last.
        form = self.incoming.prepared.form
        window = self.app.cfg.screening.follow_up_minutes if form is None else 0
        recent = self.recent
        found = find_case(
            self.session,
            self.incoming.msg,
            self.app.cfg.own_addresses,  # the officers and the council's mailboxes
            recently_acknowledged=recent.case_since(self.now - timedelta(minutes=window))
            if recent and window
            else None,
        )
        faults.crash_point("after-thread")
        return found

    @cached_property
    def screened(self) -> tuple[Reason, ...]:
        """Every reason not to acknowledge: the screen's, found before the transaction,
        and the caps, which count what was sent (screen.py)."""
        prepared, screening = self.incoming.prepared, self.app.cfg.screening
        recent = self.recent
        domain = domain_of(self.resident.email) if self.resident else ""
        context = ScreenContext(
            own_addresses=self.app.cfg.own_addresses,
            sent_to_sender_last_day=len(recent) if recent else 0,
            cap_per_day=screening.acknowledgements_per_sender_per_day,
            sent_to_domain_last_day=acknowledgements_to_domain(
                self.session, domain, self.now - timedelta(days=1)
            )
            if recent is not None and self.case is None and domain not in screening.large_providers
            else None,
            cap_per_domain_per_day=screening.acknowledgements_per_domain_per_day,
            form=prepared.form,
        )
        reasons = (*prepared.reasons, *screen(self.incoming.msg, context, CAP_RULES))
        faults.crash_point("after-screen")
        return reasons
