"""Trust: whether mail that says it is an officer's really is (no servers)."""

from __future__ import annotations

import pytest

from mailbot.config import CommandsConfig
from mailbot.parse import parse_message
from mailbot.trust import Hop, decide, matches_relay, received_hop

ALEX = "alex.morgan@council.example.gov.uk"
DOMAIN = "council.example.gov.uk"
MX = "mx.council.example.gov.uk"
LMTP = f"from {MX} ([127.0.0.1]) by imap.{DOMAIN} with LMTP id 4k2Q; Tue, 3 Nov 2026 09:40:01 +0000"
BORDER = f"by {MX} (Postfix) with ESMTPS id 4Ql; Tue, 3 Nov 2026 09:40:00 +0000"
AUTHSERV = CommandsConfig(trust="authserv", authserv_id=MX)
GOOGLE = CommandsConfig(trust="google")
M365 = CommandsConfig(trust="microsoft365")
RELAYS = CommandsConfig(trust="relays", internal_relays=["relay.council.example.gov.uk"])


def mail(*headers: str, sender: str = f"Alex Morgan <{ALEX}>") -> bytes:
    """A message with `headers` on top (as the servers add them), then the sender's own."""
    own = [f"From: {sender}", "To: council@example.org", "Subject: Re: [Ref: ENQ-2026-00001]"]
    return ("\r\n".join([*headers, *own]) + "\r\n\r\n#close\r\n").encode()


def verdict(raw: bytes, commands: CommandsConfig, sender: str = ALEX):
    return decide(parse_message(raw), sender, commands, from_sent_folder=False)


# --- authserv: the council's border server's Authentication-Results ---------------------


@pytest.mark.parametrize(
    "results",
    [
        f"{MX}; dkim=pass header.d={DOMAIN} header.s=s1",
        f"{MX}; dmarc=pass (p=reject) header.from={DOMAIN}",
        f"MX.Council.Example.Gov.UK; DKIM=PASS header.d={DOMAIN.upper()}",  # case is not meaning
        f"{MX}; dkim=pass header.i=@evil.example header.d={DOMAIN}",  # header.d is the signer
        f"{MX}; dkim=pass header.d=mail.{DOMAIN}",  # a subdomain of the officer's domain
        f"{MX} 1; spf=pass smtp.mailfrom={DOMAIN};\r\n\tdkim=pass header.d={DOMAIN}",  # folded
    ],
)
def test_authserv_passes(results):
    decision = verdict(
        mail(f"Authentication-Results: {results}", f"Received: from x {BORDER}"), AUTHSERV
    )
    assert decision.trusted, decision.reason


@pytest.mark.parametrize(
    ("results", "why"),
    [
        # SPF says only that the envelope sender's server may send; not who wrote From.
        (f"{MX}; spf=pass smtp.mailfrom={DOMAIN}", "SPF alone is not enough"),
        (f"{MX}; dkim=pass header.d=evil.example", "no DMARC or DKIM pass"),
        (f"{MX}; dkim=pass header.d=gov.uk", "no DMARC or DKIM pass"),  # a parent is not ours
        (f"{MX}; dkim=pass header.d=evil{DOMAIN}", "no DMARC or DKIM pass"),  # whole labels
        (f"{MX}; dmarc=fail header.from={DOMAIN}", "dmarc=fail"),
        (f"{MX}; dmarc=pass header.from=evil.example", "no DMARC or DKIM pass"),
        # the HELO name is the sender's: an encoded word in it is not decoded into results
        (
            f"{MX}; spf=pass smtp.helo==?utf-8?q?x=3B_dkim=3Dpass_header.d=3D{DOMAIN}?=",
            "no DMARC or DKIM pass",
        ),
        # nor is a ; inside a comment or a quoted string a new result
        (f"{MX}; spf=pass (x; dkim=pass header.d={DOMAIN}) smtp.mailfrom=a", "SPF alone"),
        (f'{MX}; spf=pass smtp.helo="a; dkim=pass header.d={DOMAIN}"', "SPF alone"),
        # someone else's verdict
        (f"evil.example; dkim=pass header.d={DOMAIN}", f"no Authentication-Results from {MX}"),
        (f"{MX}.evil.example; dkim=pass header.d={DOMAIN}", "no Authentication-Results"),
        (f"{MX}; dkim=pass header.d=", "no DMARC or DKIM pass"),
    ],
)
def test_authserv_refuses(results, why):
    decision = verdict(
        mail(f"Authentication-Results: {results}", f"Received: from x {BORDER}"), AUTHSERV
    )
    assert not decision.trusted
    assert why in decision.reason


def test_only_the_topmost_results_of_the_border_server_count():
    """The border server adds its header above everything the sender wrote: a forged one
    lower down, however well it claims to pass, is never read."""
    raw = mail(
        f"Received: {LMTP}",
        f"Authentication-Results: {MX}; dkim=none; dmarc=fail header.from={DOMAIN}",
        f"Received: from evil.example (evil.example [203.0.113.9]) {BORDER}",
        f"Authentication-Results: {MX}; dkim=pass header.d={DOMAIN};"
        f" dmarc=pass header.from={DOMAIN}",
    )
    decision = verdict(raw, AUTHSERV)
    assert not decision.trusted
    assert "dmarc=fail" in decision.reason


def test_the_border_servers_results_unreadable_are_not_skipped_for_a_forged_pair():
    raw = mail(
        f"Authentication-Results: {MX}; dkim=pass header.d={DOMAIN}; =",
        f"Authentication-Results: {MX}; dkim=pass header.d={DOMAIN}",
    )
    decision = verdict(raw, AUTHSERV)
    assert not decision.trusted
    assert "could not be read" in decision.reason


def test_results_of_a_later_hop_inside_the_council_are_passed_over():
    raw = mail(
        "Authentication-Results: imap.council.example.gov.uk; none",
        f"Authentication-Results: {MX}; dkim=pass header.d={DOMAIN}",
    )
    assert verdict(raw, AUTHSERV).trusted


# --- google -------------------------------------------------------------------------------

GMAIL = (
    "Authentication-Results: mx.google.com;\r\n"
    f"       dkim=pass header.i=@{DOMAIN} header.s=google header.b=Xa1b2c3d;\r\n"
    f"       spf=pass (google.com: domain of {ALEX} designates 209.85.220.41 as permitted"
    f" sender) smtp.mailfrom={ALEX};\r\n"
    f"       dmarc=pass (p=QUARANTINE sp=QUARANTINE dis=NONE) header.from={DOMAIN}"
)


def test_google_workspace_results_pass():
    raw = mail(
        "Received: from mail-sor-f41.google.com (mail-sor-f41.google.com. [209.85.220.41])"
        " by mx.google.com with SMTPS id a1; Tue, 03 Nov 2026 01:40:00 -0800 (PST)",
        GMAIL,
    )
    decision = verdict(raw, GOOGLE)
    assert decision.trusted
    assert decision.reason == f"DKIM signature of {DOMAIN} verified (mx.google.com)"


def test_google_dkim_alone_counts_by_header_i():
    raw = mail(f"Authentication-Results: mx.google.com; dkim=pass header.i=@{DOMAIN}")
    assert verdict(raw, GOOGLE).trusted


def test_google_refuses_a_forged_pass_under_its_real_fail():
    raw = mail(
        f"Authentication-Results: mx.google.com; dkim=none; spf=softfail; dmarc=fail"
        f" (p=NONE) header.from={DOMAIN}",
        GMAIL,
    )
    assert not verdict(raw, GOOGLE).trusted


def test_google_mode_does_not_trust_the_council_servers_results():
    raw = mail(f"Authentication-Results: {MX}; dmarc=pass header.from={DOMAIN}")
    assert "no Authentication-Results from mx.google.com" in verdict(raw, GOOGLE).reason


# --- Microsoft 365 ------------------------------------------------------------------------

INTERNAL = [
    "X-MS-Exchange-Organization-AuthSource: AM0PR01MB1234.eurprd01.prod.exchangelabs.com",
    "X-MS-Exchange-Organization-AuthAs: Internal",
    "X-MS-Exchange-Organization-AuthMechanism: 04",
    "X-MS-Exchange-Organization-MessageDirectionality: Originating",
    f"Authentication-Results: dkim=none (message not signed) header.d=none;dmarc=none"
    f" action=none header.from={DOMAIN};",
]


def test_microsoft365_trusts_the_tenants_internal_mark():
    decision = verdict(mail(*INTERNAL), M365)
    assert decision.trusted
    assert "AuthAs: Internal" in decision.reason
    assert "AM0PR01MB1234" in decision.reason


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ([], "did not record it as sent from inside"),
        # from the Internet: Exchange stamps Anonymous (and strips any the sender wrote)
        (
            [
                "X-MS-Exchange-Organization-AuthAs: Anonymous",
                "X-MS-Exchange-Organization-MessageDirectionality: Incoming",
            ],
            "AuthAs: Anonymous",
        ),
        # another tenant: its own CrossTenant mark says Internal; ours says Anonymous
        (
            [
                "X-MS-Exchange-CrossTenant-AuthAs: Internal",
                "X-MS-Exchange-CrossTenant-Id: 00000000-0000-0000-0000-000000000001",
                "X-MS-Exchange-Organization-AuthAs: Anonymous",
                "X-MS-Exchange-Organization-AuthSource: DB5PEPF0000ABCD.eurprd01.prod.outlook.com",
                "X-MS-Exchange-Organization-MessageDirectionality: Incoming",
            ],
            "outside the council's tenant",
        ),
        (["X-MS-Exchange-CrossTenant-AuthAs: Internal"], "did not record"),
        (
            [
                "X-MS-Exchange-Organization-AuthAs: Internal",
                "X-MS-Exchange-Organization-MessageDirectionality: Incoming",
            ],
            "Incoming",
        ),
        # Exchange read From as another domain than we did
        (
            [
                "Authentication-Results: dkim=none header.d=none;dmarc=none action=none"
                " header.from=evil.example;",
                "X-MS-Exchange-Organization-AuthAs: Internal",
            ],
            "read the sender's domain as evil.example",
        ),
    ],
)
def test_microsoft365_refuses(headers, why):
    decision = verdict(mail(*headers), M365)
    assert not decision.trusted
    assert why in decision.reason


# --- relays -------------------------------------------------------------------------------


def relay_mail(border: str, *below: str) -> bytes:
    return mail(f"Received: {LMTP}", f"Received: {border}", *(f"Received: {b}" for b in below))


@pytest.mark.parametrize(
    ("border", "relays"),
    [
        (
            f"from relay (relay.council.example.gov.uk [10.0.0.5]) {BORDER}",
            ["relay.council.example.gov.uk"],
        ),
        (f"from relay (relay.council.example.gov.uk [10.0.0.5]) {BORDER}", ["10.0.0.5"]),
        (f"from pc42 (unknown [10.1.2.3]) {BORDER}", ["10.0.0.0/8"]),
        (f"from relay (relay [IPv6:2001:db8::5]) {BORDER}", ["2001:db8::/64"]),
        # Exim writes the verified name outside the parentheses
        (
            f"from relay.council.example.gov.uk ([10.0.0.5] helo=x) {BORDER}",
            ["relay.council.example.gov.uk"],
        ),
        # Exchange writes the address in parentheses without brackets
        ("from EXCH01.council.local (10.0.0.7) by EXCH02.council.local (10.0.0.8)", ["10.0.0.7"]),
    ],
)
def test_relays_pass(border, relays):
    commands = CommandsConfig(trust="relays", internal_relays=relays)
    assert verdict(relay_mail(border), commands).trusted


@pytest.mark.parametrize(
    "border",
    [
        # the HELO name is the client's own claim
        f"from relay.council.example.gov.uk (evil.example [203.0.113.9]) {BORDER}",
        f"from relay.council.example.gov.uk (unknown [203.0.113.9]) {BORDER}",
        # whole names only
        f"from x (evilrelay.council.example.gov.uk [203.0.113.9]) {BORDER}",
        f"from x (relay.council.example.gov.uk.evil.example [203.0.113.9]) {BORDER}",
        # an address outside the list
        f"from x (mail.example.net [198.51.100.7]) {BORDER}",
    ],
)
def test_relays_refuse(border):
    assert not verdict(relay_mail(border), RELAYS).trusted


def test_relays_read_the_border_servers_record_not_the_senders():
    """Postfix with Dovecot LMTP: the top line is always the LMTP hop; a Received the
    sender wrote below the border's own names the relay, but is never read."""
    raw = relay_mail(
        f"from evil.example (evil.example [203.0.113.9]) {BORDER}",
        f"from relay (relay.council.example.gov.uk [10.0.0.5]) by {MX} (Postfix)",
    )
    decision = verdict(raw, RELAYS)
    assert not decision.trusted
    assert decision.reason == (
        "received from evil.example [203.0.113.9], not one of the council's relays"
    )


def test_relays_need_a_received_header():
    assert "no Received header" in verdict(mail(), RELAYS).reason


def test_received_hop_reads_postfix():
    hop = received_hop(f"from helo.example (relay.example [10.0.0.5]) {BORDER}")
    assert hop == Hop(name="relay.example", ip="10.0.0.5", protocol="esmtps")
    assert matches_relay(hop, "RELAY.example.")
    assert not matches_relay(hop, "example")


# --- the sender -------------------------------------------------------------------------


def test_an_address_shaped_display_name_is_not_the_sender():
    msg = parse_message(mail(sender=f"{ALEX} <attacker@evil.example>"))
    assert msg.from_addr == "attacker@evil.example"


@pytest.mark.parametrize(
    "sender",
    [f"{ALEX}, attacker@evil.example", f"<{ALEX}> attacker@evil.example"],
)
def test_a_from_with_two_addresses_is_refused(sender):
    raw = mail(f"Authentication-Results: {MX}; dkim=pass header.d={DOMAIN}", sender=sender)
    msg = parse_message(raw)
    assert msg.from_addr == ALEX
    decision = decide(msg, ALEX, AUTHSERV, from_sent_folder=False)
    assert not decision.trusted
    assert "attacker@evil.example" in decision.reason


def test_two_from_headers_are_refused():
    raw = mail(f"Authentication-Results: {MX}; dkim=pass header.d={DOMAIN}", "From: x@evil.example")
    assert not verdict(raw, AUTHSERV).trusted


def test_nothing_is_trusted_without_a_mode_but_the_sent_folder():
    raw = mail(*INTERNAL, f"Authentication-Results: {MX}; dkim=pass header.d={DOMAIN}")
    decision = verdict(raw, CommandsConfig())
    assert not decision.trusted
    assert "[commands] trust is not set" in decision.reason
    sent = decide(parse_message(raw), ALEX, CommandsConfig(), from_sent_folder=True)
    assert sent.trusted
