"""Loop safety: mailbot against another mailbot and against a naive auto-responder."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pytest
from sqlalchemy import select

from mailbot.app import App
from mailbot.clock import FixedClock
from mailbot.config import load_config
from mailbot.daemon import run_once
from mailbot.devservers import Account, LocalDovecot, SmtpCapture, local_config
from mailbot.migrations import upgrade
from mailbot.store import InboundMessage
from tests.conftest import START_FROM, resident_mail

pytestmark = pytest.mark.integration

ROUNDS = 6
ARRIVED = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
# Headers some gateways strip or rewrite on the way; the harsher tests remove them.
OUR_LOOP_HEADERS = ("Auto-Submitted", "X-Mailbot-Loop", "X-Auto-Response-Suppress")


@dataclass
class Instance:
    """One mailbot: its own mailbox, database and SMTP capture."""

    account: Account
    smtp: SmtpCapture
    app: App
    handed_on: int = 0  # how many captured messages the shuttle has already delivered
    delivered: list[bytes] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.account.user

    def new_mail_to(self, address: str) -> list[bytes]:
        """Messages this instance sent to `address` since the last call."""
        with self.smtp.lock:
            fresh = self.smtp.messages[self.handed_on :]
            self.handed_on = len(self.smtp.messages)
        return [m.raw for m in fresh if address in m.rcpt_tos]

    def sent_to(self, address: str) -> int:
        return len(self.smtp.to(address))

    def outcomes(self) -> list[str]:
        with self.app.sessions() as s:
            return list(s.scalars(select(InboundMessage.outcome).order_by(InboundMessage.uid)))


@pytest.fixture
def make_instance(
    dovecot_server: LocalDovecot, tmp_path: Path
) -> Iterator[Callable[[str], Instance]]:
    made: list[Instance] = []

    def make(name: str) -> Instance:
        account = dovecot_server.add_account(f"{name}-{uuid.uuid4().hex[:8]}@example.org")
        smtp = SmtpCapture().start()
        folder = tmp_path / name
        folder.mkdir()
        url = f"sqlite:///{folder / 'mailbot.db'}"
        config = local_config(folder, account, smtp, database_url=url, start_from=START_FROM)
        upgrade(url)
        clock = FixedClock(datetime(2026, 11, 3, 10, 0, tzinfo=UTC))
        instance = Instance(account, smtp, App.load(load_config(config), clock))
        made.append(instance)
        return instance

    yield make
    for instance in made:
        instance.smtp.stop()
        instance.app.engine.dispose()


def deliver(to: Instance, raw: bytes, n: int, strip: tuple[str, ...] = ()) -> None:
    """Put a message into a mailbox as its MTA would, optionally losing some headers."""
    if strip:
        msg = message_from_bytes(raw)
        for name in strip:
            del msg[name]
        raw = msg.as_bytes()
    to.account.append(raw, when=ARRIVED + timedelta(minutes=n))
    to.delivered.append(raw)


def shuttle(a: Instance, b: Instance, strip: tuple[str, ...] = ()) -> None:
    """Run both for several rounds, carrying each one's mail for the other across."""
    for n in range(ROUNDS):
        run_once(a.app)
        for raw in a.new_mail_to(b.address):
            deliver(b, raw, n, strip)
        run_once(b.app)
        for raw in b.new_mail_to(a.address):
            deliver(a, raw, n, strip)


def test_two_mailbots_exchange_one_acknowledgement(make_instance):
    a, b = make_instance("alpha"), make_instance("beta")
    # Someone at B's council writes to A from the shared mailbox, by hand.
    deliver(a, resident_mail(sender=b.address, name="Beta Council", message_id="<start@x>"), 0)

    shuttle(a, b)

    assert a.sent_to(b.address) == 1  # A acknowledges the person who wrote
    assert b.sent_to(a.address) == 0  # B sees an automatic reply and stays quiet
    assert b.outcomes() == ["suppressed"]


def test_two_mailbots_stop_even_when_a_gateway_strips_the_loop_headers(make_instance):
    a, b = make_instance("alpha"), make_instance("beta")
    deliver(a, resident_mail(sender=b.address, name="Beta Council", message_id="<start@x>"), 0)

    shuttle(a, b, strip=OUR_LOOP_HEADERS)

    # With nothing marking the mail as automatic, B takes A's acknowledgement for a
    # resident's message and answers once; A files that answer under its case.
    assert a.sent_to(b.address) <= 1
    assert b.sent_to(a.address) <= 1
    assert a.outcomes()[1:] in ([], ["follow-up"])


@dataclass
class NaiveResponder:
    """Replies to everything: its own From, "Re:" subject, no Auto-Submitted, no threading."""

    address: str
    fixed_subject: str | None = None
    replies: int = 0

    def reply_to(self, raw: bytes, mailbox: str) -> bytes:
        self.replies += 1
        original = message_from_bytes(raw)
        msg = EmailMessage()
        msg["From"] = f"Helpdesk <{self.address}>"
        msg["To"] = mailbox
        msg["Subject"] = self.fixed_subject or f"Re: {original['Subject']}"
        msg["Date"] = format_datetime(ARRIVED)
        msg["Message-ID"] = make_msgid(domain="helpdesk.example.net")
        msg.set_content("Thank you for your email. We will get back to you shortly.")
        return msg.as_bytes()


def face(bot: Instance, responder: NaiveResponder) -> None:
    for n in range(ROUNDS):
        run_once(bot.app)
        for raw in bot.new_mail_to(responder.address):
            deliver(bot, responder.reply_to(raw, bot.address), n)


@pytest.mark.parametrize(
    "fixed_subject",
    [
        # "Re: <our subject>" keeps our reference, so its reply joins the case.
        None,
        # Nothing in its reply names the case, but it comes from the address we
        # acknowledged minutes ago, so it joins that case all the same.
        "We got your email",
    ],
    ids=["keeps-subject", "drops-subject"],
)
def test_a_naive_auto_responder_gets_one_acknowledgement(make_instance, fixed_subject):
    bot = make_instance("council")
    responder = NaiveResponder("helpdesk@helpdesk.example.net", fixed_subject=fixed_subject)
    deliver(bot, resident_mail(sender=responder.address, message_id="<ask@x>"), 0)

    face(bot, responder)

    assert bot.sent_to(responder.address) == 1
    assert responder.replies == 1
    assert bot.outcomes() == ["case-opened", "follow-up"]  # a follow-up gets no reply


def test_a_slow_responder_that_drops_the_subject_is_stopped_by_the_per_sender_cap(make_instance):
    bot = make_instance("council")
    responder = NaiveResponder("desk@helpdesk.example.net", fixed_subject="We got your email")
    deliver(bot, resident_mail(sender=responder.address, message_id="<ask@x>"), 0)

    # It answers each acknowledgement after the follow-up window, so each answer looks like
    # a new resident message; only the cap (SPEC §1.3: 3 a day) ends the exchange.
    window = timedelta(minutes=bot.app.cfg.screening.follow_up_minutes + 1)
    for n in range(ROUNDS):
        run_once(bot.app)
        bot.app.clock.instant += window
        for raw in bot.new_mail_to(responder.address):
            deliver(bot, responder.reply_to(raw, bot.address), n)

    cap = bot.app.cfg.screening.acknowledgements_per_sender_per_day
    assert bot.sent_to(responder.address) == responder.replies == cap
    assert bot.outcomes() == ["case-opened"] * cap + ["suppressed"]
