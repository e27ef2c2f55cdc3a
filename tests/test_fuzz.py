"""Hostile mail fuzzed through parse, screen and the acknowledgement headers (bounded for CI)."""

from __future__ import annotations

import base64
import email
import quopri
from collections import Counter
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.policy import compat32

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mailbot.config import Config
from mailbot.letters import _WIRE, compose
from mailbot.parse import ParsedMessage, parse_message
from mailbot.reasons import Reason
from mailbot.screen import ScreenContext, screen
from mailbot.templates import Rendered

COUNCIL = "enquiries@council.example.gov.uk"
NOW = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
CFG = Config.model_validate(
    {
        "council": {"name": "Fuzz Borough Council", "mailbox_address": COUNCIL},
        "imap": {"host": "127.0.0.1", "security": "none"},
        "smtp": {"host": "127.0.0.1", "security": "none"},
        "officers": [{"name": "Sam", "email": "sam@council.example.gov.uk", "roles": ["clerk"]}],
    }
)
# What compose() writes for a resident; anything else in the header block was injected.
SET_BY_US = Counter(
    h.lower()
    for h in (
        "From",
        "Reply-To",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "X-Mailbot-Loop",
        "Auto-Submitted",
        "X-Auto-Response-Suppress",
        "MIME-Version",
        "Content-Type",
    )
)
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Payloads an attacker wants to smuggle into one of our headers.
INJECTIONS = [
    "\r\nBcc: victim@example.net",
    "\nX-Injected: yes",
    "\rTo: other@example.net",
    "\r\n\r\n<html>body takeover",
    "\u2028Bcc: ls@example.net",
    "\x85Bcc: nel@example.net",
    "\x00\x07\x1b[31m",
    "plain words",
]


def word(text: str, charset: str = "utf-8", kind: str = "b") -> str:
    """One RFC 2047 encoded-word; an unknown charset label lies about UTF-8 bytes."""
    try:
        data = text.encode(charset, "replace")
    except LookupError:
        data = text.encode("utf-8", "surrogatepass")
    if kind in "bB":
        payload = base64.b64encode(data).decode()
    else:
        payload = quopri.encodestring(data, header=True).decode().replace("?", "=3F")
    return f"=?{charset}?{kind}?{payload}?="


@st.composite
def encoded_tricks(draw: st.DrawFn) -> str:
    """Encoded-words hiding CR/LF, encoded twice, split across words, or broken."""
    payload = draw(st.one_of(st.sampled_from(INJECTIONS), st.text(max_size=40)))
    charset = draw(st.sampled_from(["utf-8", "UTF-8", "iso-8859-1", "x-unknown", "utf-7"]))
    kind = draw(st.sampled_from(["b", "q", "B", "Q"]))
    style = draw(st.sampled_from(["once", "twice", "split", "broken", "unicode-escape"]))
    if style == "once":
        return word(payload, charset, kind)
    if style == "twice":  # decoded once by us, leaving an encoded-word for the next reader
        return word(word(payload, "utf-8", kind), "utf-8", draw(st.sampled_from("bq")))
    if style == "split":
        cut = draw(st.integers(0, len(payload)))
        return word(payload[:cut], charset, kind) + " " + word(payload[cut:], charset, kind)
    if style == "broken":
        return f"=?{charset}?{kind}?{payload}"
    return f"=?unicode-escape?q?{payload.encode('unicode-escape').decode()}?="


SAFE_TEXT = st.text(st.characters(codec="utf-8"), max_size=60)
HEADER_TEXT = st.lists(
    st.one_of(SAFE_TEXT, encoded_tricks(), st.sampled_from(['"', ",", "<", ">", "\\", ";"])),
    max_size=5,
).map(" ".join)


@st.composite
def addresses(draw: st.DrawFn) -> str:
    name = draw(HEADER_TEXT)
    addr = draw(
        st.sampled_from(
            [
                "jane@example.com",
                "Jane.Doe+tag@Example.COM",
                "jö@exämple.com",
                "a!#$%&'*+/=?^_`{|}~@example.com",
                "noreply@example.com",
                "x@localhost",
                "not an address",
                "",
            ]
        )
    )
    shape = draw(st.sampled_from(["{n} <{a}>", '"{n}" <{a}>', "{a} ({n})", "{a}", "{n}"]))
    return shape.format(n=name, a=addr)


HEADER_NAMES = st.one_of(
    st.sampled_from(
        [
            "Subject",
            "From",
            "Reply-To",
            "Message-ID",
            "In-Reply-To",
            "References",
            "Return-Path",
            "Auto-Submitted",
            "Precedence",
            "X-Auto-Response-Suppress",
            "List-Id",
            "X-Mailbot-Loop",
            "Content-Type",
            "Content-Transfer-Encoding",
        ]
    ),
    st.from_regex(r"[!-9;-~]{1,20}", fullmatch=True),  # any legal field name
    st.sampled_from(["", " Subject", "Sub ject", "Subject\x00", "Ünïcode"]),  # illegal ones
)
CHARSETS = st.sampled_from(
    ["utf-8", "us-ascii", "x-no-such", "utf-7", "utf-16", "unicode-escape", "idna", "'", ""]
)


@st.composite
def bodies(draw: st.DrawFn, depth: int = 0) -> bytes:
    """A leaf text part, or multipart nesting that may go far deeper than real mail does."""
    if depth < 40 and draw(st.integers(0, 3)) == 0:
        boundary = f"b{depth}"
        children = draw(st.lists(st.deferred(lambda: bodies(depth + 1)), min_size=1, max_size=3))
        subtype = draw(st.sampled_from(["mixed", "alternative", "report", "digest"]))
        inner = b"".join(b"--" + boundary.encode() + b"\r\n" + c + b"\r\n" for c in children)
        closing = b"--" + boundary.encode() + b"--\r\n" if draw(st.booleans()) else b""
        head = f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode()
        return head + inner + closing
    ctype = draw(st.sampled_from(["text/plain", "text/html", "message/rfc822", "application/x"]))
    charset = draw(CHARSETS)
    cte = draw(st.sampled_from(["7bit", "8bit", "base64", "quoted-printable", "x-uuencode"]))
    text = draw(st.one_of(st.binary(max_size=200), SAFE_TEXT.map(str.encode)))
    if draw(st.integers(0, 9)) == 0:
        text += b"A" * draw(st.integers(998, 200_000))  # an oversized line
    head = f"Content-Type: {ctype}; charset={charset}\r\nContent-Transfer-Encoding: {cte}\r\n"
    return head.encode("utf-8", "replace") + b"\r\n" + text


@st.composite
def hostile_mail(draw: st.DrawFn) -> bytes:
    headers = [
        ("From", draw(addresses())),
        ("Subject", draw(HEADER_TEXT)),
        ("Message-ID", draw(st.sampled_from(["<m1@example.com>", "<jö@x>", "", "<a b@c>"]))),
    ]
    headers += draw(st.lists(st.tuples(HEADER_NAMES, HEADER_TEXT), max_size=8))
    if draw(st.booleans()):
        headers.append(("Reply-To", draw(addresses())))
    eol = draw(st.sampled_from([b"\r\n", b"\n", b"\r"]))
    lines = [f"{name}: {value}".encode("utf-8", "surrogatepass") for name, value in headers]
    if draw(st.booleans()):  # a raw 8-bit or NUL-laden header line
        lines.append(
            b"X-Raw: " + draw(st.binary(max_size=80)).replace(b"\n", b"").replace(b"\r", b"")
        )
    body = draw(bodies())
    head_end = body.index(b"\r\n\r\n")
    lines.append(body[:head_end])
    return eol.join(lines).replace(b"\r\n", eol) + eol + eol + body[head_end + 4 :]


def acknowledgement_for(msg: ParsedMessage) -> bytes:
    """The acknowledgement pipeline.acknowledge() would queue, as the SMTP server gets it."""
    letter = compose(
        CFG,
        to=msg.reply_to or msg.from_addr or "resident@example.com",
        to_name=msg.from_name,
        subject="Re: " + msg.subject,
        rendered=Rendered(text="x", html="<p>x</p>"),
        audience="resident",
        ref="ENQ-2026-00001",
        now=NOW,
        in_reply_to=msg.message_id,
        references=msg.references,
    )
    return letter


def assert_headers_are_ours(raw: bytes, msg: ParsedMessage) -> None:
    head = raw.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[0]
    # Every physical line starts a header we set or continues one (folding whitespace).
    for line in head.splitlines():
        assert line[:1] in (b" ", b"\t") or line.split(b":", 1)[0].lower().decode() in {
            *SET_BY_US,
            "in-reply-to",
            "references",
        }, line
    expected = SET_BY_US + (Counter(["in-reply-to", "references"]) if msg.message_id else Counter())
    back = email.message_from_bytes(raw)
    assert Counter(k.lower() for k in back) == expected
    for name, value in back.items():
        # Decoded as a mail client would show it: no line breaks smuggled in by encoding.
        # (A header in UTF-8, to an international address, comes back as a Header.)
        text = value if isinstance(value, str) else str(value)
        shown = str(make_header(decode_header(text.replace("\r\n", ""))))
        assert not set(shown) & {"\r", "\n", "\x00", "\u2028", "\u2029", "\x85"}, name


@FUZZ
@given(raw=hostile_mail(), truncated=st.booleans(), sent=st.integers(0, 5))
@example(  # the Subject decodes (once) to an encoded-word that decodes to CRLF + Bcc
    raw=b"From: jane@example.com\r\nSubject: "
    + word(word("\r\nBcc: v@example.net")).encode()
    + b"\r\nMessage-ID: <m1@example.com>\r\n\r\nhello\r\n",
    truncated=False,
    sent=0,
)
def test_hostile_mail_never_raises_and_never_shapes_our_headers(
    raw: bytes, truncated: bool, sent: int
) -> None:
    msg = parse_message(raw, truncated=truncated)
    reasons = screen(
        msg, ScreenContext(own_addresses=frozenset({COUNCIL}), sent_to_sender_last_day=sent)
    )
    assert all(isinstance(r, Reason) and "\n" not in str(r) for r in reasons)
    assert_headers_are_ours(acknowledgement_for(msg), msg)


def test_a_twice_encoded_subject_cannot_add_a_header() -> None:
    raw = (
        b"From: Jane <jane@example.com>\r\nSubject: Bins "
        + word(word("\r\nBcc: victim@example.net"), kind="q").encode()
        + b"\r\nMessage-ID: <s@example.com>\r\n\r\nMy bins.\r\n"
    )
    msg = parse_message(raw)
    assert_headers_are_ours(acknowledgement_for(msg), msg)


def test_a_twice_encoded_display_name_still_gets_an_acknowledgement() -> None:
    # One decode leaves '=?utf-8?b?...?=' in the name; the email package decodes it again
    # when the To header is built and must not see CR/LF (it raises ValueError today).
    raw = (
        b"From: "
        + word(word("Jane\r\nBcc: victim@example.net")).encode()
        + b" <jane@example.com>\r\nSubject: Bins\r\nMessage-ID: <n@example.com>\r\n\r\nHi\r\n"
    )
    msg = parse_message(raw)
    assert_headers_are_ours(acknowledgement_for(msg), msg)


def test_a_mime_bomb_and_deep_nesting_parse_and_screen() -> None:
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(10_000))
    bomb = b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" + parts
    nested = b"From: a@example.com\r\n"
    for depth in range(200):
        nested += (
            f'Content-Type: multipart/mixed; boundary="d{depth}"\r\n\r\n--d{depth}\r\n'.encode()
        )
    for raw in (bomb, nested + b"Content-Type: text/plain\r\n\r\ndeep\r\n"):
        msg = parse_message(raw)
        assert msg.from_addr == "a@example.com"
        assert screen(msg, ScreenContext(own_addresses=frozenset({COUNCIL}))) == []
        assert_headers_are_ours(acknowledgement_for(msg), msg)


_HEADER_TEXT = st.text(
    st.characters(codec="ascii", exclude_categories=["Cs"]) | st.sampled_from(" \t\r\n=?é"),
    max_size=90,
)


@settings(max_examples=500, deadline=None)
@given(name=st.sampled_from(["Subject", "To", "X-Mailbot-Loop", "In-Reply-To"]), value=_HEADER_TEXT)
def test_the_wire_writes_a_header_exactly_as_the_email_package_does(name: str, value: str) -> None:
    """Short plain headers skip the Header class; what goes out is the same either way,
    and a line break is refused either way."""
    wire, standard = _WIRE, compat32.clone(linesep="\r\n", max_line_length=78)
    try:
        expected = standard.fold_binary(name, value)
    except HeaderParseError:
        with pytest.raises(HeaderParseError):
            wire.fold_binary(name, value)
        return
    assert wire.fold_binary(name, value) == expected
