"""Do not acknowledge (SPEC §6): each rule with the exact reason a clerk will read."""

from __future__ import annotations

import pytest

from mailbot.config import CommandsConfig
from mailbot.parse import ParsedMessage, parse_message
from mailbot.reasons import Reason
from mailbot.screen import (
    FORM_RULES,
    LOOP_HEADER,
    RULES,
    ScreenContext,
    SpamVerdict,
    screen,
    spam_verdict,
)

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


SPAM = "marked as spam, phishing or forged by the council's mail servers"


def spam(detail: str) -> Reason:
    return Reason("spam", f"{SPAM} ({detail})")


# Each case: the message, and the one reason it must get (no other rule may fire).
CASES: list[tuple[str, ParsedMessage, Reason]] = [
    # Auto-Submitted present and not "no"
    *[
        (
            f"auto-submitted {value}",
            mail(f"Auto-Submitted: {value}"),
            Reason(
                "auto-submitted",
                f"automatic mail (RFC 3834 Auto-Submitted) (Auto-Submitted: {value})",
            ),
        )
        for value in ("auto-generated", "auto-replied", "auto-notified", "Auto-Replied; x=1")
    ],
    # Precedence / X-Precedence
    *[
        (
            f"{header} {value}",
            mail(f"{header}: {value}"),
            Reason(
                "precedence",
                f"bulk, list, junk or auto-reply precedence ({header.lower()}: {value.lower()})",
            ),
        )
        for header in ("Precedence", "X-Precedence")
        for value in ("bulk", "list", "junk", "auto_reply", "Bulk")
    ],
    # X-Auto-Response-Suppress: All, OOF or AutoReply
    *[
        (
            f"suppress {value}",
            mail(f"X-Auto-Response-Suppress: {value}"),
            Reason(
                "suppress-autoresponse",
                f"sender asked for no automatic replies (X-Auto-Response-Suppress: {value})",
            ),
        )
        for value in ("All", "OOF", "AutoReply", "DR, RN, NRN, OOF, AutoReply", "dr,oof")
    ],
    # Auto-responder headers
    *[
        (
            f"autoreply header {name}",
            mail(f"{name}: yes"),
            Reason("autoreply-header", f"auto-responder header (header {name.lower()})"),
        )
        for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder")
    ],
    # Any List-* header
    *[
        (
            f"list header {name}",
            mail(f"{name}: <x>"),
            Reason("mailing-list", f"mailing-list header (header {name.lower()})"),
        )
        for name in ("List-Id", "List-Unsubscribe", "List-Post", "List-Archive")
    ],
    # Loop headers: another system's and ours
    *[
        (
            f"loop {name}",
            mail(f"{name}: {COUNCIL}"),
            Reason(
                "loop", f"loop-detection header (ours or another system's) (header {name.lower()})"
            ),
        )
        for name in ("X-Loop", LOOP_HEADER)
    ],
    (
        "null return path",
        mail("Return-Path: <>"),
        Reason("null-return-path", "bounce or notification (empty Return-Path) (Return-Path: <>)"),
    ),
    (
        "multipart/report",
        mail(content_type="multipart/report; report-type=disposition-notification; boundary=x"),
        Reason("report", "delivery or read report (multipart/report) (multipart/report)"),
    ),
    # Robot senders by local part
    *[
        (
            f"machine sender {local}",
            mail(sender=f"{local}@example.com"),
            Reason(
                "machine-sender",
                f"no-reply, bounce or list-robot sender (sender {local.lower()}@example.com)",
            ),
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
        Reason(
            "machine-sender",
            "no-reply, bounce or list-robot sender (reply-to no-reply@forms.example.com)",
        ),
    ),
    # The council's own mailbox, an officer, or an acknowledgement that would go to us
    (
        "own mailbox",
        mail(sender=f"Enquiries <{COUNCIL.upper()}>"),
        Reason(
            "own-address", f"sent by the council's own mailbox or an officer (sender {COUNCIL})"
        ),
    ),
    (
        "officer",
        mail(sender=f"Sam Patel <{OFFICER}>"),
        Reason(
            "own-address", f"sent by the council's own mailbox or an officer (sender {OFFICER})"
        ),
    ),
    (
        "reply-to council",
        mail(f"Reply-To: {COUNCIL}"),
        Reason(
            "own-address", f"sent by the council's own mailbox or an officer (reply-to {COUNCIL})"
        ),
    ),
    # No valid sender
    *[
        (
            f"no sender {sender!r}",
            mail(sender=sender),
            Reason("no-sender", "sender address missing or invalid (no valid From address)"),
        )
        for sender in (None, "", "Jane Doe", "jane@", "<>", "undisclosed-recipients:;")
    ],
    # Beyond SPEC §6: mail systems that send auto-replies without the RFC 3834 header
    (
        "mail system name",
        mail(sender="Mail Delivery Subsystem <mds@example.com>"),
        Reason(
            "machine-name", "sender named as a mail system (sender name 'Mail Delivery Subsystem')"
        ),
    ),
    (
        "auto-reply subject",
        mail(subject="Automatic reply: Pothole on Mill Lane"),
        Reason(
            "auto-reply-subject",
            "subject of an automatic reply or bounce "
            "(subject 'Automatic reply: Pothole on Mill Lane')",
        ),
    ),
    (
        "out of office subject",
        mail(subject="Out of Office"),
        Reason(
            "auto-reply-subject",
            "subject of an automatic reply or bounce (subject 'Out of Office')",
        ),
    ),
    (
        "apple vacation",
        mail("X-Apple-Action: VACATION"),
        Reason(
            "vendor-auto-reply", "mail system's own automatic-reply header (header x-apple-action)"
        ),
    ),
    (
        "failed recipients",
        mail("X-Failed-Recipients: someone@example.org"),
        Reason(
            "vendor-auto-reply",
            "mail system's own automatic-reply header (header x-failed-recipients)",
        ),
    ),
    # Marked as spam or phishing by the council's mail servers: each verdict's shape
    *[
        (f"spam {name}", mail(*headers), spam(detail))
        for name, headers, detail in [
            (
                "exchange scl 9",
                ["X-MS-Exchange-Organization-SCL: 9"],
                "X-MS-Exchange-Organization-SCL: 9",
            ),
            (
                "exchange scl at the threshold",
                ["X-MS-Exchange-Organization-SCL: 5"],
                "X-MS-Exchange-Organization-SCL: 5",
            ),
            (
                "exchange content filter",  # as Exchange Online writes it, SCL and all
                [
                    "X-Forefront-Antispam-Report: CIP:198.51.100.7;CTRY:NL;LANG:en;SCL:1;"
                    "SRV:;IPV:NLI;SFV:SPM;H:mail.example.net;PTR:mail.example.net;CAT:SPM;"
                    "SFS:(13230040)(4022899009);DIR:INB;"
                ],
                "X-Forefront-Antispam-Report: SFV:SPM, CAT:SPM (spam)",
            ),
            (
                "exchange mail flow rule",
                ["X-Forefront-Antispam-Report: SFV:SKS;SCL:1;CAT:NONE;DIR:INB;"],
                "X-Forefront-Antispam-Report: SFV:SKS",
            ),
            (
                "exchange blocked sender",
                ["X-Forefront-Antispam-Report: SFV:BLK;DIR:INB;"],
                "X-Forefront-Antispam-Report: SFV:BLK",
            ),
            (
                "exchange phishing",
                ["X-Forefront-Antispam-Report: SFV:NSPM;CAT:PHSH;DIR:INB;"],
                "X-Forefront-Antispam-Report: CAT:PHSH (phishing)",
            ),
            (
                "exchange high confidence phishing",
                ["X-Forefront-Antispam-Report: CAT:HPHSH;SFV:SPM;SCL:9"],
                "X-Forefront-Antispam-Report: CAT:HPHSH (high confidence phishing), SFV:SPM, SCL:9",
            ),
            (
                "exchange HPHISH spelling",
                ["X-Forefront-Antispam-Report: CAT:HPHISH;DIR:INB"],
                "X-Forefront-Antispam-Report: CAT:HPHISH (high confidence phishing)",
            ),
            (
                "microsoft antispam header",
                ["X-Microsoft-Antispam: BCL:0;SFV:SPM;"],
                "X-Microsoft-Antispam: SFV:SPM",
            ),
            ("spamassassin flag", ["X-Spam-Flag: YES"], "X-Spam-Flag: YES"),
            (
                "spamassassin status",
                ["X-Spam-Status: Yes, score=9.4 required=5.0 tests=BAYES_99,HELO_DYNAMIC"],
                "X-Spam-Status: Yes, score=9.4 required=5.0 tests=BAYES_99,HELO_DYNAMIC",
            ),
            ("rspamd milter", ["X-Spam: Yes"], "X-Spam: Yes"),
            *[
                (f"rspamd {action}", [f"X-Rspamd-Action: {action}"], f"X-Rspamd-Action: {action}")
                for action in ("add header", "rewrite subject", "reject", "soft reject")
            ],
            ("rspamd underscores", ["X-Rspamd-Action: add_header"], "X-Rspamd-Action: add header"),
        ]
    ],
]


@pytest.mark.parametrize(("msg", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_rule_gives_its_exact_reason(msg: ParsedMessage, expected: Reason) -> None:
    assert screen(msg, CTX) == [expected]


def test_every_rule_has_a_case() -> None:
    # The "form" rule's cases are in test_forms.py, with real form products' messages.
    covered = {expected.rule for _, _, expected in CASES} | {
        "sender-cap",
        "domain-cap",
        "form",
    }
    assert covered == {rule.name for rule in (*RULES, *FORM_RULES)}


def test_sender_cap() -> None:
    msg = mail()
    assert screen(msg, ScreenContext(frozenset({COUNCIL}), sent_to_sender_last_day=2)) == []
    assert screen(msg, ScreenContext(frozenset({COUNCIL}), sent_to_sender_last_day=3)) == [
        Reason(
            "sender-cap",
            "too many acknowledgements to this sender today "
            "(3 acknowledgements in 24 hours (cap 3))",
        )
    ]
    tight = ScreenContext(frozenset({COUNCIL}), sent_to_sender_last_day=1, cap_per_day=1)
    assert screen(msg, tight) == [
        Reason(
            "sender-cap",
            "too many acknowledgements to this sender today "
            "(1 acknowledgements in 24 hours (cap 1))",
        )
    ]


def test_domain_cap() -> None:
    msg = mail()
    # None: a large provider's domain, which the per-domain cap leaves alone.
    for sent in (None, 19):
        ctx = ScreenContext(frozenset({COUNCIL}), sent_to_domain_last_day=sent)
        assert screen(msg, ctx) == []
    assert screen(msg, ScreenContext(frozenset({COUNCIL}), sent_to_domain_last_day=20)) == [
        Reason(
            "domain-cap",
            "too many acknowledgements to this domain today "
            "(20 acknowledgements to this domain in 24 hours (cap 20))",
        )
    ]


def test_several_reasons_are_all_recorded_in_rule_order() -> None:
    bounce = mail(
        "Auto-Submitted: auto-replied",
        "Return-Path: <>",
        sender="MAILER-DAEMON@example.com",
        content_type="multipart/report; report-type=delivery-status; boundary=x",
    )
    assert [r.rule for r in screen(bounce, CTX)] == [
        "auto-submitted",
        "null-return-path",
        "report",
        "machine-sender",
    ]


def test_reason_details_are_one_short_line() -> None:
    msg = mail("Auto-Submitted: auto-generated " + "x" * 1000)
    [only] = screen(msg, CTX)
    said = str(only)
    assert "\n" not in said and len(said) < 200


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
    # Spam filters that looked and found nothing, in each one's words
    ("exchange scl below threshold", mail("X-MS-Exchange-Organization-SCL: 4")),
    ("exchange scl -1 (bypassed)", mail("X-MS-Exchange-Organization-SCL: -1")),
    (
        "exchange clean",
        mail("X-Forefront-Antispam-Report: CIP:192.0.2.1;SCL:1;SFV:NSPM;CAT:NONE;DIR:INB;"),
    ),
    ("exchange bulk grade only", mail("X-Forefront-Antispam-Report: SFV:NSPM;CAT:BULK;")),
    ("exchange released from quarantine", mail("X-Forefront-Antispam-Report: SFV:SKQ;")),
    ("microsoft antispam bulk level", mail("X-Microsoft-Antispam: BCL:0;")),
    ("spamassassin no", mail("X-Spam-Flag: NO", "X-Spam-Status: No, score=-2.4 required=5.0")),
    ("rspamd no action", mail("X-Rspamd-Action: no action", "X-Spam-Status: No, score=1.20")),
    ("rspamd greylist", mail("X-Rspamd-Action: greylist")),
]


@pytest.mark.parametrize("msg", [m for _, m in RESIDENTS], ids=[n for n, _ in RESIDENTS])
def test_residents_are_acknowledged(msg: ParsedMessage) -> None:
    assert screen(msg, CTX) == []


def test_bounce_star_is_a_prefix_as_the_spec_writes_it() -> None:
    # SPEC §6 lists `bounce*`: any local part starting "bounce" is a robot, even "bouncer".
    assert screen(mail(sender="bouncer@example.com"), CTX) == [
        Reason(
            "machine-sender", "no-reply, bounce or list-robot sender (sender bouncer@example.com)"
        )
    ]


# --- upstream spam verdicts: trust, and values nobody knows ------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        ("X-Spam-Flag: NO", "X-Spam-Flag: YES"),  # the sender's copy on top of the server's
        ("X-Spam-Flag: YES", "X-Spam-Flag: NO"),
        ("X-Spam-Status: No, score=-100", "X-Spam-Status: Yes, score=12.1 required=5.0"),
        ("X-MS-Exchange-Organization-SCL: -1", "X-MS-Exchange-Organization-SCL: 9"),
        ("X-MS-Exchange-Organization-SCL: -1", "X-Spam: Yes"),
        ("X-Rspamd-Action: no action", "X-Rspamd-Action: reject"),
        ("X-Forefront-Antispam-Report: SFV:SKA;SCL:-1", "X-Forefront-Antispam-Report: SFV:SPM"),
        ("X-Forefront-Antispam-Report: SFV:SKQ;CAT:NONE", "X-Forefront-Antispam-Report: CAT:PHSH"),
    ],
)
def test_a_forged_not_spam_never_overrides_a_spam_verdict(headers: tuple[str, str]) -> None:
    [reason] = screen(mail(*headers), CTX)
    assert reason.rule == "spam" and reason.text.startswith(SPAM)


@pytest.mark.parametrize(
    ("header", "unreadable"),
    [
        (
            "X-MS-Exchange-Organization-SCL: banana",
            "X-MS-Exchange-Organization-SCL: 'banana' is not a spam confidence level (-1 to 9)",
        ),
        (
            "X-MS-Exchange-Organization-SCL: 42",
            "X-MS-Exchange-Organization-SCL: '42' is not a spam confidence level (-1 to 9)",
        ),
        (
            "X-Forefront-Antispam-Report: SCL:high;SFV:NSPM",
            "X-Forefront-Antispam-Report SCL: 'HIGH' is not a spam confidence level (-1 to 9)",
        ),
        (
            "X-Forefront-Antispam-Report: SFV:WHAT;CAT:XYZ",
            "X-Forefront-Antispam-Report: unknown verdict SFV:WHAT",
        ),
        ("X-Spam-Flag: maybe", "X-Spam-Flag: 'maybe' is neither Yes nor No"),
        ("X-Spam: undefined", "X-Spam: 'undefined' is neither Yes nor No"),  # peer corpus
        ("X-Spam-Status: ", "X-Spam-Status: '' is neither Yes nor No"),
        ("X-Rspamd-Action: shred", "X-Rspamd-Action: 'shred' is not an action Rspamd takes"),
    ],
)
def test_a_garbled_verdict_is_no_verdict_and_is_reported(header: str, unreadable: str) -> None:
    verdict = spam_verdict(mail(header))
    assert verdict.held == ()
    assert verdict.unreadable[0] == unreadable
    assert screen(mail(header), CTX) == []


def test_a_garbled_verdict_does_not_hide_a_readable_one() -> None:
    verdict = spam_verdict(mail("X-MS-Exchange-Organization-SCL: banana", "X-Spam-Flag: YES"))
    assert verdict == SpamVerdict(
        held=("X-Spam-Flag: YES",),
        unreadable=(
            "X-MS-Exchange-Organization-SCL: 'banana' is not a spam confidence level (-1 to 9)",
        ),
    )


def test_scl_threshold_is_the_councils() -> None:
    strict, lenient = (
        ScreenContext(frozenset({COUNCIL}), scl_threshold=3),
        ScreenContext(frozenset({COUNCIL}), scl_threshold=7),
    )
    six = mail("X-MS-Exchange-Organization-SCL: 6")
    assert screen(six, strict) == [spam("X-MS-Exchange-Organization-SCL: 6")]
    assert screen(six, lenient) == []
    inside = mail("X-Forefront-Antispam-Report: SCL:7;SFV:NSPM")
    assert screen(inside, lenient) == [spam("X-Forefront-Antispam-Report: SCL:7")]


# --- DMARC failed at the council's border (SPEC §6) --------------------------------------

MX = "mx.council.example.gov.uk"
FAIL = "dmarc=fail (p=REJECT sp=REJECT dis=NONE) header.from=bank.example"


@pytest.mark.parametrize(
    ("commands", "header", "by"),
    [
        (CommandsConfig(trust="authserv", authserv_id=MX), f"{MX}; {FAIL}", MX),
        (
            CommandsConfig(trust="authserv", authserv_id=MX),
            f"MX.Council.Example.Gov.UK; {FAIL}",
            MX,
        ),
        (CommandsConfig(trust="google"), f"mx.google.com; {FAIL}", "mx.google.com"),
        (
            CommandsConfig(trust="microsoft365"),
            "spf=fail (sender IP is 192.0.2.7) smtp.mailfrom=bank.example; dkim=none "
            "(message not signed) header.d=none;dmarc=fail action=oreject "
            "header.from=bank.example;compauth=fail reason=000",
            "Microsoft 365",
        ),
    ],
)
def test_mail_whose_domain_failed_dmarc_at_the_border_is_held(commands, header, by) -> None:
    ctx = ScreenContext(frozenset({COUNCIL}), commands=commands)
    forged = mail(f"Authentication-Results: {header}", sender="Your Bank <alerts@bank.example>")
    assert screen(forged, ctx) == [spam(f"DMARC failed for bank.example ({by})")]


def test_only_the_borders_own_dmarc_verdict_counts() -> None:
    ctx = ScreenContext(
        frozenset({COUNCIL}), commands=CommandsConfig(trust="authserv", authserv_id=MX)
    )
    passed = mail(
        f"Authentication-Results: {MX}; dmarc=pass header.from=example.com",
        f"Authentication-Results: other.example; {FAIL}",
    )
    assert screen(passed, ctx) == []
    # With no border named (relays, or no trust mode) there is no verdict to read.
    for commands in (None, CommandsConfig(trust="relays", internal_relays=["192.0.2.1"])):
        ctx = ScreenContext(frozenset({COUNCIL}), commands=commands)
        assert screen(mail(f"Authentication-Results: {MX}; {FAIL}"), ctx) == []


def test_an_unreadable_border_verdict_is_no_verdict() -> None:
    ctx = ScreenContext(
        frozenset({COUNCIL}), commands=CommandsConfig(trust="authserv", authserv_id=MX)
    )
    assert screen(mail(f"Authentication-Results: {MX}; dmarc=((("), ctx) == []
