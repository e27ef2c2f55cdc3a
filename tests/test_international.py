"""International addresses (RFC 6530-6533): acknowledged through SMTPUTF8 where the server
offers it, with an international domain written in ASCII, and a recorded reason where the
server cannot take an address at all. Against aiosmtpd with and without SMTPUTF8."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from mailbot.addresses import domain_of, for_the_wire, needs_smtputf8, recipient_key
from mailbot.app import App
from mailbot.config import load_config
from mailbot.daemon import run_once
from mailbot.devservers import SmtpCapture
from mailbot.parse import parse_message, valid_address
from mailbot.store import Case, CaseEvent, OutboxMessage
from tests.conftest import COUNCIL, council_config, to_residents

ARRIVED = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)


def raw_mail(sender: str, name: str, n: int = 0) -> bytes:
    """As an SMTPUTF8 mail system delivers it: UTF-8 in the headers (RFC 6532)."""
    return (
        f'From: "{name}" <{sender}>\r\nTo: {COUNCIL}\r\nSubject: Bins {n}\r\n'
        f"Date: Tue, 03 Nov 2026 09:00:00 +0000\r\nMessage-ID: <intl{n}@example.net>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "When will my bin be emptied?\r\n"
    ).encode()


# -- pure -------------------------------------------------------------------------------


def test_international_addresses_are_valid_and_written_as_a_server_takes_them():
    assert valid_address("JDÖE@MÄCHINE.EXAMPLE") == "jdöe@mächine.example"
    assert valid_address("x@xn--mchine-bua.example") == "x@mächine.example"  # one form
    assert valid_address("zoë@example.net") == "zoë@example.net"
    assert valid_address("x@bad..example") is None
    assert valid_address("x@xn--zz.example") is None  # not a valid IDNA label
    assert for_the_wire("jane@mächine.example") == "jane@xn--mchine-bua.example"
    assert needs_smtputf8("zoë@example.net") and not needs_smtputf8("jane@mächine.example")
    assert domain_of("a@Mächine.Example") == domain_of("b@xn--mchine-bua.example")

    # One person however their address is tagged (RFC 5233), for the caps.
    assert recipient_key("Jane+Bins@Mächine.Example") == "jane@xn--mchine-bua.example"
    assert recipient_key("+x@example.com") == "+x@example.com"

    msg = parse_message(raw_mail("jdöe@mächine.example", "Jürgen Döe"))
    assert (msg.from_addr, msg.from_name) == ("jdöe@mächine.example", "Jürgen Döe")


# -- against aiosmtpd ---------------------------------------------------------------------


def make_app(tmp_path, dovecot, database_url, clock, smtputf8: bool) -> tuple[App, SmtpCapture]:
    smtp = SmtpCapture(smtputf8=smtputf8).start()
    app = App.load(load_config(council_config(tmp_path, dovecot, smtp, database_url)), clock)
    return app, smtp


@pytest.mark.integration
def test_international_residents_are_acknowledged_through_smtputf8(
    tmp_path, dovecot, database_url, clock
):
    app, smtp = make_app(tmp_path, dovecot, database_url, clock, smtputf8=True)
    try:
        for n, (sender, name) in enumerate(
            [
                ("zoë@example.net", "Zoë Brontë"),
                ("jdöe@mächine.example", "Jürgen Döe"),
                ("jane@mächine.example", "Jane"),
            ]
        ):
            dovecot.append(raw_mail(sender, name, n), when=ARRIVED)
        run_once(app)
        with app.sessions() as s:
            residents = sorted(s.scalars(select(Case.resident_email)))
        assert residents == ["jane@mächine.example", "jdöe@mächine.example", "zoë@example.net"]
        got = {m.rcpt_tos[0]: m for m in to_residents(smtp)}
        # Only where the part before the @ needs it is SMTPUTF8 used; a domain alone goes
        # in ASCII.
        assert sorted(got) == [
            "jane@xn--mchine-bua.example",
            "jdöe@mächine.example",
            "zoë@example.net",
        ]
        assert got["zoë@example.net"].message["To"] == "Zoë Brontë <zoë@example.net>"
        assert "Dear Zoë Brontë" in got["zoë@example.net"].text()
        assert got["jane@xn--mchine-bua.example"].raw.isascii()
    finally:
        smtp.stop()
        app.engine.dispose()


@pytest.mark.integration
def test_a_server_without_smtputf8_gives_a_clear_recorded_reason(
    tmp_path, dovecot, database_url, clock
):
    app, smtp = make_app(tmp_path, dovecot, database_url, clock, smtputf8=False)
    try:
        dovecot.append(raw_mail("zoë@example.net", "Zoë", 0), when=ARRIVED)
        dovecot.append(raw_mail("jane@mächine.example", "Jane", 1), when=ARRIVED)
        run_once(app)  # exit 0: nothing about our account
        assert [m.rcpt_tos[0] for m in to_residents(smtp)] == ["jane@xn--mchine-bua.example"]
        with app.sessions() as s:
            row = s.scalar(select(OutboxMessage).where(OutboxMessage.status == "failed"))
            event = s.scalar(select(CaseEvent.detail).where(CaseEvent.kind == "send-failed"))
        assert row is not None and row.recipient == "zoë@example.net"
        assert row.last_error == (
            "the SMTP server does not take international addresses (no SMTPUTF8, RFC 6531), "
            "and zoë@example.net has letters outside ASCII before the @"
        )
        assert event is not None and event.startswith("acknowledgement to zoë@example.net not sent")
    finally:
        smtp.stop()
        app.engine.dispose()
