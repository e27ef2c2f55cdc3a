"""Do not acknowledge (SPEC §6): each rule with the exact reason a clerk will read."""

from __future__ import annotations

import pytest

from mailbot.parse import ParsedMessage, parse_message
from mailbot.screen import LOOP_HEADER, RULES, ScreenContext, screen

COUNCIL = "enquiries@council.example.gov.uk"
OFFICER = "sam.patel@council.example.gov.uk"
CTX = ScreenContext(own_addresses=frozenset({COUNCIL, OFFICER}), cap_per_day=3)
RESIDENT = "Jane Doe <jane.doe@example.com>"


def mail(
    *headers: str,
    sender: str | None = RESIDENT,
    subject: str = "Pothole on Mill Lane",
    content_type: str = "text/plain",
) -> ParsedMessage:
    lines = [f"From: {sender}"] if sender is not None else []
    lines += [f"To: {COUNCIL}", f"Subject: {subject}", *headers, f"Content-Type: {content_type}"]
    return parse_message(("\r\n".join(lines) + "\r\n\r\nThe pothole is deep.\r\n").encode())


# Each case: the message, and the one reason it must get (no other rule may fire).
CASES: list[tuple[str, ParsedMessage, str]] = [
    # Auto-Submitted present and not "no"
    *[
        (
            f"auto-submitted {value}",
            mail(f"Auto-Submitted: {value}"),
            f"auto-submitted: automatic mail (RFC 3834 Auto-Submitted) (Auto-Submitted: {value})",
        )
        for value in ("auto-generated", "auto-replied", "auto-notified", "Auto-Replied; x=1")
    ],
    # Precedence / X-Precedence
    *[
        (
            f"{header} {value}",
            mail(f"{header}: {value}"),
            "precedence: bulk, list, junk or auto-reply precedence "
            f"({header.lower()}: {value.lower()})",
        )
        for header in ("Precedence", "X-Precedence")
        for value in ("bulk", "list", "junk", "auto_reply", "Bulk")
    ],
    # X-Auto-Response-Suppress: All, OOF or AutoReply
    *[
        (
            f"suppress {value}",
            mail(f"X-Auto-Response-Suppress: {value}"),
            "suppress-autoresponse: sender asked for no automatic replies "
            f"(X-Auto-Response-Suppress: {value})",
        )
        for value in ("All", "OOF", "AutoReply", "DR, RN, NRN, OOF, AutoReply", "dr,oof")
    ],
    # Auto-responder headers
    *[
        (
            f"autoreply header {name}",
            mail(f"{name}: yes"),
            f"autoreply-header: auto-responder header (header {name.lower()})",
        )
        for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder")
    ],
    # Any List-* header
    *[
        (
            f"list header {name}",
            mail(f"{name}: <x>"),
            f"mailing-list: mailing-list header (header {name.lower()})",
        )
        for name in ("List-Id", "List-Unsubscribe", "List-Post", "List-Archive")
    ],
    # Loop headers: another system's and ours
    *[
        (
            f"loop {name}",
            mail(f"{name}: {COUNCIL}"),
            f"loop: loop-detection header (ours or another system's) (header {name.lower()})",
        )
        for name in ("X-Loop", LOOP_HEADER)
    ],
    (
        "null return path",
        mail("Return-Path: <>"),
        "null-return-path: bounce or notification (empty Return-Path) (Return-Path: <>)",
    ),
    (
        "multipart/report",
        mail(content_type="multipart/report; report-type=disposition-notification; boundary=x"),
        "report: delivery or read report (multipart/report) (multipart/report)",
    ),
    # Robot senders by local part
    *[
        (
            f"machine sender {local}",
            mail(sender=f"{local}@example.com"),
            "machine-sender: no-reply, bounce or list-robot sender "
            f"(sender {local.lower()}@example.com)",
        )
        for local in (
            "MAILER-DAEMON",
            "postmaster",
            "noreply",
            "no-reply",
            "no_reply",
            "donotreply",
            "do-not-reply",
            "bounce",
            "bounces+jane=example.com",
            "owner-planning-list",
            "planning-request",
            "github-noreply",
            "noreply+alerts",
            "notifications.no-reply",
        )
    ],
    (
        "machine reply-to",
        mail("Reply-To: no-reply@forms.example.com"),
        "machine-sender: no-reply, bounce or list-robot sender "
        "(reply-to no-reply@forms.example.com)",
    ),
    # The council's own mailbox, an officer, or an acknowledgement that would go to us
    (
        "own mailbox",
        mail(sender=f"Enquiries <{COUNCIL.upper()}>"),
        f"own-address: sent by the council's own mailbox or an officer (sender {COUNCIL})",
    ),
    (
        "officer",
        mail(sender=f"Sam Patel <{OFFICER}>"),
        f"own-address: sent by the council's own mailbox or an officer (sender {OFFICER})",
    ),
    (
        "reply-to council",
        mail(f"Reply-To: {COUNCIL}"),
        f"own-address: sent by the council's own mailbox or an officer (reply-to {COUNCIL})",
    ),
    # No valid sender
    *[
        (
            f"no sender {sender!r}",
            mail(sender=sender),
            "no-sender: sender address missing or invalid (no valid From address)",
        )
        for sender in (None, "", "Jane Doe", "jane@", "<>", "undisclosed-recipients:;")
    ],
    # Beyond SPEC §6: mail systems that send auto-replies without the RFC 3834 header
    (
        "mail system name",
        mail(sender="Mail Delivery Subsystem <mds@example.com>"),
        "machine-name: sender named as a mail system (sender name 'Mail Delivery Subsystem')",
    ),
    (
        "auto-reply subject",
        mail(subject="Automatic reply: Pothole on Mill Lane"),
        "auto-reply-subject: subject of an automatic reply or bounce "
        "(subject 'Automatic reply: Pothole on Mill Lane')",
    ),
    (
        "out of office subject",
        mail(subject="Out of Office"),
        "auto-reply-subject: subject of an automatic reply or bounce (subject 'Out of Office')",
    ),
    (
        "apple vacation",
        mail("X-Apple-Action: VACATION"),
        "vendor-auto-reply: mail system's own automatic-reply header (header x-apple-action)",
    ),
    (
        "failed recipients",
        mail("X-Failed-Recipients: someone@example.org"),
        "vendor-auto-reply: mail system's own automatic-reply header (header x-failed-recipients)",
    ),
]


@pytest.mark.parametrize(("msg", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_rule_gives_its_exact_reason(msg: ParsedMessage, expected: str) -> None:
    assert screen(msg, CTX) == [expected]


def test_every_rule_has_a_case() -> None:
    covered = {expected.split(":")[0] for _, _, expected in CASES} | {"sender-cap"}
    assert covered == {rule.name for rule in RULES}


def test_sender_cap() -> None:
    msg = mail()
    assert screen(msg, ScreenContext(frozenset({COUNCIL}), sent_to_sender_last_day=2)) == []
    assert screen(msg, ScreenContext(frozenset({COUNCIL}), sent_to_sender_last_day=3)) == [
        "sender-cap: too many acknowledgements to this sender today "
        "(3 acknowledgements in 24 hours (cap 3))"
    ]
    tight = ScreenContext(frozenset({COUNCIL}), sent_to_sender_last_day=1, cap_per_day=1)
    assert screen(msg, tight) == [
        "sender-cap: too many acknowledgements to this sender today "
        "(1 acknowledgements in 24 hours (cap 1))"
    ]


def test_several_reasons_are_all_recorded_in_rule_order() -> None:
    bounce = mail(
        "Auto-Submitted: auto-replied",
        "Return-Path: <>",
        sender="MAILER-DAEMON@example.com",
        content_type="multipart/report; report-type=delivery-status; boundary=x",
    )
    assert [r.split(":")[0] for r in screen(bounce, CTX)] == [
        "auto-submitted",
        "null-return-path",
        "report",
        "machine-sender",
    ]


def test_reason_details_are_one_short_line() -> None:
    msg = mail("Auto-Submitted: auto-generated " + "x" * 1000)
    [only] = screen(msg, CTX)
    assert "\n" not in only and len(only) < 200


RESIDENTS = [
    ("ordinary", mail()),
    ("auto-submitted no", mail("Auto-Submitted: no")),
    ("auto-submitted No with comment", mail("Auto-Submitted: No (this is a person)")),
    ("precedence first-class", mail("Precedence: first-class")),
    ("suppress only receipts", mail("X-Auto-Response-Suppress: DR, RN, NRN")),
    ("return path set", mail("Return-Path: <jane.doe@example.com>")),
    ("reply-to elsewhere", mail("Reply-To: Jane at home <jane.home@example.com>")),
    ("multipart/mixed", mail(content_type="multipart/mixed; boundary=x")),
    # SPEC §6 says "sender local part *like* noreply": we read that as the word standing on
    # its own in the local part (noreply, github-noreply, noreply+x). A resident whose name
    # merely starts with those letters is a person and is acknowledged.
    ("noreplyjones", mail(sender="noreplyjones@example.com")),
    ("replyno", mail(sender="replyno@example.com")),
    ("postmasters-daughter", mail(sender="postmasters.daughter@example.com")),
    ("owner without dash", mail(sender="owner@example.com")),
    ("requestor", mail(sender="requestor@example.com")),
    ("daemon in domain", mail(sender="jane@mailer-daemon.example.com")),
    # Residents write "Out of office hours ..." and "Delivery failure of ..." too.
    ("out of office hours", mail(subject="Out of office hours noise from the pub")),
    ("delivery failure of bins", mail(subject="Delivery failure of my new recycling bin")),
    ("auto reply in the middle", mail(subject="Re: your automatic reply did not help")),
    ("postmaster as a name", mail(sender="The Postmaster General <pmg@example.com>")),
]


@pytest.mark.parametrize("msg", [m for _, m in RESIDENTS], ids=[n for n, _ in RESIDENTS])
def test_residents_are_acknowledged(msg: ParsedMessage) -> None:
    assert screen(msg, CTX) == []


def test_bounce_star_is_a_prefix_as_the_spec_writes_it() -> None:
    # SPEC §6 lists `bounce*`: any local part starting "bounce" is a robot, even "bouncer".
    assert screen(mail(sender="bouncer@example.com"), CTX) == [
        "machine-sender: no-reply, bounce or list-robot sender (sender bouncer@example.com)"
    ]
