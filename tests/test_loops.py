"""Loop safety: mailbot against another mailbot and against a naive auto-responder."""

from __future__ import annotations

import email.policy
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

    def new_mail_to_anyone(self) -> list[bytes]:
        """Acknowledgements sent since the last call, whoever they went to."""
        with self.smtp.lock:
            fresh = self.smtp.messages[self.handed_on :]
            self.handed_on = len(self.smtp.messages)
        return [m.raw for m in fresh if m.message["Auto-Submitted"] == "auto-replied"]

    def acknowledgements(self) -> int:
        with self.smtp.lock:
            return sum(m.message["Auto-Submitted"] == "auto-replied" for m in self.smtp.messages)

    def outcomes(self) -> list[str]:
        """What was decided about the inbox's mail (the copies of what was sent, read
        back from the sent folder as mailbot's own, are left out)."""
        inbox = InboundMessage.folder.endswith("/INBOX")
        with self.app.sessions() as s:
            query = select(InboundMessage.outcome).where(inbox).order_by(InboundMessage.uid)
            return list(s.scalars(query))


@pytest.fixture
def make_instance(
    dovecot_server: LocalDovecot, tmp_path: Path
) -> Iterator[Callable[..., Instance]]:
    made: list[Instance] = []

    def make(name: str, extra: str = "") -> Instance:
        account = dovecot_server.add_account(f"{name}-{uuid.uuid4().hex[:8]}@example.org")
        smtp = SmtpCapture().start()
        folder = tmp_path / name
        folder.mkdir()
        url = f"sqlite:///{folder / 'mailbot.db'}"
        config = local_config(
            folder, account, smtp, database_url=url, start_from=START_FROM, extra=extra
        )
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
    """Replies to everything: its own From, "Re:" subject, no Auto-Submitted, no threading.

    With `new_address_each_time`, each reply comes from an address of its own (a ticket
    system's "ticket-N@"); with `quote`, it quotes the message it answers below its own
    words, as mail clients and ticket systems do.
    """

    address: str
    fixed_subject: str | None = None
    new_address_each_time: bool = False
    quote: bool = False
    replies: int = 0

    def reply_to(self, raw: bytes, mailbox: str) -> bytes:
        self.replies += 1
        original = message_from_bytes(raw, policy=email.policy.default)
        msg = EmailMessage()
        msg["From"] = f"Helpdesk <{self.sender}>"
        msg["To"] = mailbox
        msg["Subject"] = self.fixed_subject or f"Re: {original['Subject']}"
        msg["Date"] = format_datetime(ARRIVED)
        msg["Message-ID"] = make_msgid(domain="helpdesk.example.net")
        text = "Thank you for your email. We will get back to you shortly."
        if self.quote:
            body = original.get_body(("plain",))
            quoted = body.get_content() if body is not None else ""
            text += "\n\n" + "\n".join(f"> {line}" for line in quoted.splitlines())
        msg.set_content(text)
        return msg.as_bytes()

    @property
    def sender(self) -> str:
        if not self.new_address_each_time:
            return self.address
        local, _, domain = self.address.partition("@")
        return f"{local}-{self.replies}@{domain}"


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


@pytest.mark.parametrize(
    ("fixed_subject", "quote"),
    [
        (None, False),  # "Re: <our subject>": our reference in the subject
        ("Your ticket has been received", True),  # our letter quoted, reference and all
    ],
    ids=["keeps-subject", "quotes-our-letter"],
)
def test_a_helpdesk_answering_from_a_new_address_each_time_gets_one_acknowledgement(
    make_instance, fixed_subject, quote
):
    bot = make_instance("council")
    desk = NaiveResponder(
        "ticket@helpdesk.example.net",
        fixed_subject=fixed_subject,
        new_address_each_time=True,
        quote=quote,
    )
    deliver(bot, resident_mail(sender=desk.address, message_id="<ask@x>"), 0)

    # Answering after the follow-up window, from an address never seen before, each time:
    # only what it carries of ours (the reference, our letter quoted) can tie it to the case.
    window = timedelta(minutes=bot.app.cfg.screening.follow_up_minutes + 1)
    for n in range(ROUNDS):
        run_once(bot.app)
        bot.app.clock.instant += window
        for raw in bot.new_mail_to_anyone():
            deliver(bot, desk.reply_to(raw, bot.address), n)

    assert bot.acknowledgements() == 1
    assert desk.replies == 1
    assert bot.outcomes() == ["case-opened", "follow-up"]  # it joined the case, answered never


def test_a_helpdesk_that_carries_nothing_of_ours_is_stopped_by_the_per_domain_cap(make_instance):
    bot = make_instance("council", extra="[screening]\nacknowledgements_per_domain_per_day = 4\n")
    desk = NaiveResponder(
        "ticket@helpdesk.example.net", fixed_subject="We got your email", new_address_each_time=True
    )
    deliver(bot, resident_mail(sender=desk.address, message_id="<ask@x>"), 0)
    window = timedelta(minutes=bot.app.cfg.screening.follow_up_minutes + 1)
    for n in range(ROUNDS):
        run_once(bot.app)
        bot.app.clock.instant += window
        for raw in bot.new_mail_to_anyone():
            deliver(bot, desk.reply_to(raw, bot.address), n)

    assert bot.acknowledgements() == desk.replies == 4
    assert bot.outcomes() == ["case-opened"] * 4 + ["suppressed"]
    with bot.app.sessions() as s:
        last = s.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()
    assert last is not None and last.reasons[0].rule == "domain-cap"
    assert last.reasons[0].text.startswith(
        "too many acknowledgements to this domain today (4 acknowledgements to "
        "this domain in 24 hours (cap 4))"
    )


def test_tagged_addresses_cannot_get_round_the_per_address_cap(make_instance):
    # Twenty forged senders victim+0@ … victim+19@, one mailbox, a lure in each subject,
    # each after the follow-up window (within it, they would all join the first case).
    bot = make_instance("council")
    window = timedelta(minutes=bot.app.cfg.screening.follow_up_minutes + 1)
    for n in range(20):
        lure = f"Your refund is ready: http://lure.example/{n}"
        deliver(bot, resident_mail(sender=f"victim+{n}@victim.example", subject=lure), n)
        run_once(bot.app)
        bot.app.clock.instant += window
    cap = bot.app.cfg.screening.acknowledgements_per_sender_per_day
    assert bot.acknowledgements() == cap
    assert bot.outcomes() == ["case-opened"] * cap + ["suppressed"] * (20 - cap)


def test_forged_senders_at_one_domain_are_stopped_by_the_per_domain_cap(make_instance):
    bot = make_instance("council")
    for n in range(25):
        raw = resident_mail(sender=f"person{n}@victim.example", message_id=f"<{n}@x>")
        deliver(bot, raw, 0)
    run_once(bot.app)
    cap = bot.app.cfg.screening.acknowledgements_per_domain_per_day
    assert cap == 20
    assert bot.acknowledgements() == cap
    assert bot.outcomes().count("suppressed") == 25 - cap
    # The clerk's digest lists them, to release any that is a resident's.
    [digest] = bot.smtp.to("chris.lee@council.example.gov.uk")
    assert "Held by the daily limits on acknowledgements: 5." in digest.text()
    assert "from person24@victim.example" in digest.text()
    # A large mail provider's residents are many and ordinary: only their own caps count.
    other = make_instance("other")
    for n in range(25):
        deliver(other, resident_mail(sender=f"person{n}@gmail.com", message_id=f"<{n}@g>"), 0)
    run_once(other.app)
    assert other.acknowledgements() == 25
