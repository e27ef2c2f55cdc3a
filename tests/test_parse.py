"""Parsing hostile and broken mail: never raises, always readable, never unsafe in a header."""

from __future__ import annotations

import base64
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailbot.parse import MAX_DEPTH, MAX_PARTS, clean_text, parse_message, valid_address


def b64word(text: str, charset: str = "utf-8") -> bytes:
    return f"=?{charset}?b?{base64.b64encode(text.encode(charset)).decode()}?=".encode()


def unsafe_chars(value: str) -> list[str]:
    """Characters that must never reach an outgoing header (SPEC §5)."""
    return [
        c
        for c in value
        if unicodedata.category(c) in {"Cc", "Cs", "Zl", "Zp"}  # controls, CR/LF, surrogates
    ]


def test_an_ordinary_message() -> None:
    msg = parse_message(
        b"From: Jane Doe <Jane.Doe@Example.com>\r\n"
        b"Reply-To: jane.home@example.com\r\n"
        b"To: Enquiries <enquiries@council.example.gov.uk>, b@example.com\r\n"
        b"Cc: c@example.com\r\n"
        b"Subject: Bins not collected\r\n"
        b"Message-ID: <abc@example.com>\r\n"
        b"In-Reply-To: <prev@council.example.gov.uk>\r\n"
        b"References: <first@x> <prev@council.example.gov.uk>\r\n"
        b"\r\n"
        b"My bins were not collected on Tuesday.\r\n"
    )
    assert (msg.from_name, msg.from_addr, msg.reply_to) == (
        "Jane Doe",
        "jane.doe@example.com",
        "jane.home@example.com",
    )
    assert msg.to_addrs == ("enquiries@council.example.gov.uk", "b@example.com")
    assert msg.cc_addrs == ("c@example.com",)
    assert msg.subject == "Bins not collected"
    assert msg.message_id == "<abc@example.com>"
    assert msg.thread_ids == ("<prev@council.example.gov.uk>", "<first@x>")
    assert msg.text == "My bins were not collected on Tuesday.\n"
    assert msg.defects == ()


# -- headers the stdlib would choke on -----------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        b"From: <<<@@>>>",
        b"From: , , ,,,@,",
        b"From: =?utf-8?q?broken",
        b"From: <power quadrant system@example.com>",  # spaces in the local part
        b"From: undisclosed-recipients:;",
    ],
)
def test_malformed_from_gives_no_address_and_no_exception(header: bytes) -> None:
    msg = parse_message(header + b"\r\nTo: ,,<>,@\r\nSubject: hi\r\n\r\nbody")
    assert msg.from_addr is None
    assert msg.to_addrs == ()
    assert msg.subject == "hi" and msg.text == "body"


def test_broken_and_unknown_encoded_words() -> None:
    msg = parse_message(
        b"From: =?x-unknown?B?SGVsbG8=?= <a@b.com>\r\n"
        b"Subject: =?utf-8?q?broken and =?x-unknown?B?SGVsbG8=?= =?utf-8?q?_w=C3=B6rld?=\r\n"
        b"\r\nhi"
    )
    # An unterminated word stays as written; an unknown charset is read as UTF-8.
    assert msg.subject == "=?utf-8?q?broken and Hello wörld"
    assert (msg.from_name, msg.from_addr) == ("Hello", "a@b.com")


def test_encoded_words_split_mid_character_and_wide_charsets() -> None:
    euro = base64.b64encode("€".encode()).decode()
    msg = parse_message(
        f"Subject: =?utf-8?b?{euro[:4]}?= =?utf-8?b?{euro[4:]}?=\r\n".encode()
        + b"From: =?GB2312?B?"
        + base64.b64encode("\u7dd2".encode("gbk"))  # a GBK character under a GB2312 label
        + b"?= <a@b.com>\r\n\r\n"
    )
    assert msg.subject == "€"
    assert msg.from_name == "\u7dd2"


def test_raw_8bit_headers_read_as_utf8_else_windows_1252() -> None:
    utf8 = parse_message("From: José <a@b.com>\r\nSubject: Café €\r\n\r\nx".encode())
    assert (utf8.subject, utf8.from_name) == ("Café €", "José")
    legacy = parse_message("From: José <a@b.com>\r\nSubject: Café\r\n\r\nx".encode("cp1252"))
    assert (legacy.subject, legacy.from_name) == ("Café", "José")


def test_commas_inside_an_encoded_name_do_not_split_the_address() -> None:
    msg = parse_message(b"From: =?iso-8859-1?Q?B=FCrling,=20Andreas?= <smith@example.com>\r\n\r\n")
    assert (msg.from_name, msg.from_addr) == ("Bürling, Andreas", "smith@example.com")


def test_sender_found_in_unusual_but_common_forms() -> None:
    first_empty = parse_message(b'From: "Shop" <>, "Sales" <ly@example.com>\r\n\r\n')
    assert first_empty.from_addr == "ly@example.com"
    bare = parse_message(b"From: Test test@example.com\r\n\r\n")  # a fax gateway's From
    assert bare.from_addr == "test@example.com"
    # An address in angle brackets is unambiguous even when the rest is garbled.
    for garbled in (b'"unterminated <a@b.com>', b"(comment (nested (deeper) <a@b.com>"):
        assert parse_message(b"From: " + garbled + b"\r\n\r\n").from_addr == "a@b.com"
    comment = parse_message(b"From: MAILER-DAEMON@Example.com (Mail Delivery System)\r\n\r\n")
    assert (comment.from_name, comment.from_addr) == (
        "Mail Delivery System",
        "mailer-daemon@example.com",
    )


def test_header_block_with_stray_lines_is_mended() -> None:
    junk_first = parse_message(
        b"---- Original email message ----\r\nFrom: a@b.cz\r\nSubject: Contact\r\n\r\nHello"
    )
    assert (junk_first.from_addr, junk_first.subject, junk_first.text) == (
        "a@b.cz",
        "Contact",
        "Hello",
    )
    broken_fold = parse_message(
        b"Received: from x\nX-Tracker: AAAA\nBBBBunindented\nFrom: k@example.com\n"
        b"Subject: AW: Business\n\nBody"
    )
    assert (broken_fold.from_addr, broken_fold.subject) == ("k@example.com", "AW: Business")
    assert "header block repaired (stray non-header lines)" in broken_fold.defects
    # A body that starts straight after the headers stays the body.
    no_blank = parse_message(b"From: a@b.com\nSubject: x\nHello there\nmore\n")
    assert (no_blank.subject, no_blank.text) == ("x", "Hello there\nmore\n")


# -- header injection ----------------------------------------------------------------------


def test_encoded_crlf_in_subject_and_name_is_flattened() -> None:
    msg = parse_message(
        b"From: " + b64word("Evil\r\nBcc: victim@x") + b" <a@b.com>\r\n"
        b"Subject: " + b64word("Hi\r\nBcc: x@y") + b"\r\n\r\nbody"
    )
    assert msg.subject == "Hi Bcc: x@y"
    assert msg.from_name == "Evil Bcc: victim@x"
    assert msg.from_addr == "a@b.com"
    assert all("\r" not in v and "\n" not in v for _, v in msg.headers)


def test_folded_quoted_name_keeps_its_address() -> None:
    msg = parse_message(b'From: "Evil\r\n Bcc: x" <a@b.com>\r\n\r\n')
    assert (msg.from_name, msg.from_addr) == ("Evil Bcc: x", "a@b.com")


def test_subject_is_capped_at_500() -> None:
    msg = parse_message(b"Subject: " + b64word("A" * 3000) + b"\r\n\r\n")
    assert msg.subject == "A" * 500


def test_clean_text() -> None:
    assert clean_text("a\r\nb\tc\x00d\x1b[31me\x7f\x85f\u2028g\ud800h") == "a b c d [31me f g h"
    assert clean_text("  many     spaces  ") == "many spaces"
    assert clean_text("x" * 300) == "x" * 200
    assert clean_text("word " * 100, 12) == "word word wo"
    assert clean_text("ab  ", 3) == "ab"  # no trailing space left by the cap


@pytest.mark.parametrize(
    "junk",
    [
        None,
        "",
        "plainword",
        "@example.com",
        "jane@",
        "jane@@example.com",
        "jane doe@example.com",
        "<jane@example.com>",
        "jane@example.com>",
        "jane@exa mple.com",
        "jane@-example.com",
        "jane@example.com\r\nBcc: x@y",
        "a,b@example.com",
        '"quoted"@example.com',
        "x" * 250 + "@example.com",
    ],
)
def test_valid_address_rejects_junk(junk: str | None) -> None:
    assert valid_address(junk) is None


def test_valid_address_accepts_and_lowercases() -> None:
    assert valid_address(" Jane.Doe+bins@Example.CO.UK ") == "jane.doe+bins@example.co.uk"
    assert valid_address("root@localhost") == "root@localhost"
    assert valid_address("claudia@yahoo.com.") == "claudia@yahoo.com"  # trailing root dot


# -- bodies --------------------------------------------------------------------------------


def test_unknown_charset_in_body_is_read_and_recorded() -> None:
    msg = parse_message(
        b'From: a@b.com\r\nContent-Type: text/plain; charset="x-no-such"\r\n\r\nCaf\xc3\xa9'
    )
    assert msg.text == "Café"
    assert msg.defects == ("unknown charset 'x-no-such'",)


@pytest.mark.parametrize("charset", ["rot13", "base64", "unicode_escape", "idna", "zlib"])
def test_codecs_that_are_not_charsets_are_not_used(charset: str) -> None:
    msg = parse_message(
        f"Content-Type: text/plain; charset={charset}\r\n\r\n".encode() + b"hello \\n there"
    )
    assert msg.text == "hello \\n there"
    assert msg.defects == (f"unknown charset '{charset}'",)


def test_undeclared_8bit_body_and_control_characters() -> None:
    msg = parse_message(b"Subject: x\r\n\r\nCaf\xe9\x00 \x01bell\x07 tab\there")
    assert msg.text == "Café bell tab\there"  # NUL and controls gone: PostgreSQL refuses NUL


def test_html_only_mail_becomes_readable_text() -> None:
    msg = parse_message(
        b"From: a@b.com\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><head><title>Title</title><style>p { color: red }</style>"
        b"<script>alert('x')</script></head><body>"
        b"<p>Hello &amp; welcome</p><p>Second&nbsp;para &lt;b&gt; &#163;5 &eacute;</p>"
        b"<ul><li>one</li><li>two</li></ul>line<br>break"
        b"<table><tr><td>a</td><td>b</td></tr></table>"
        b"<!-- hidden comment --></body></html>"
    )
    # Table cells are a tab apart, so a form's "label | answer" rows stay readable as such.
    assert msg.text == (
        "Hello & welcome\n\nSecond para <b> £5 é\n\none\n\ntwo\n\nline\nbreak\n\na\tb"
    )


def test_html_with_unclosed_head_still_shows_the_body() -> None:
    msg = parse_message(
        b"Content-Type: text/html\r\n\r\n<html><head><title>T</title><body><p>Hello</p>"
    )
    assert msg.text == "Hello"


def test_multipart_alternative_prefers_plain_text() -> None:
    msg = parse_message(
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/html\r\n\r\n<p>html version</p>\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nplain version\r\n--b--\r\n"
    )
    assert msg.text == "plain version"
    assert msg.content_type == "multipart/alternative"


def test_empty_plain_part_falls_back_to_html() -> None:
    msg = parse_message(
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\n \r\n"
        b"--b\r\nContent-Type: text/html\r\n\r\n<p>the real text</p>\r\n--b--\r\n"
    )
    assert msg.text == "the real text"


@pytest.mark.parametrize(
    "attachment_headers",
    [
        b'Content-Type: text/plain\r\nContent-Disposition: attachment; filename="notes.txt"',
        b'Content-Type: text/plain; name="notes.txt"',
        b'Content-Type: text/html\r\nContent-Disposition: inline; filename="page.html"',
    ],
)
def test_attachments_are_not_read_as_the_body(attachment_headers: bytes) -> None:
    msg = parse_message(
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\n" + attachment_headers + b"\r\n\r\nATTACHMENT TEXT\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nthe message\r\n--b--\r\n"
    )
    assert msg.text == "the message"


def test_attached_message_is_not_the_body() -> None:
    msg = parse_message(
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/html\r\n\r\n<p>Please see the attached.</p>\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n"
        b"Subject: old\r\nContent-Type: text/plain\r\n\r\nthe old message\r\n--b--\r\n"
    )
    assert msg.text == "Please see the attached."


# How long these take is measured in bench/hostile.py (no clocks in tests): here, that
# the work is cut short, with the defect saying where.
def test_mime_bomb_of_10000_parts_is_cut_short_with_a_defect() -> None:
    parts = b"".join(
        b"--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(10_000)
    )
    raw = b'From: a@b.com\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + b"--b--"
    msg = parse_message(raw)
    assert msg.from_addr == "a@b.com"
    assert msg.text == "part 0"
    assert f"more than {MAX_PARTS} MIME parts; the rest ignored" in msg.defects


def nested(depth: int) -> bytes:
    head = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    tail = b"".join(b"\r\n--b%d--" % i for i in reversed(range(depth)))
    return (
        b"From: a@b.com\r\nSubject: deep\r\n" + head + b"Content-Type: text/plain\r\n\r\nx" + tail
    )


def test_200_deep_nesting_is_cut_short_with_a_defect() -> None:
    msg = parse_message(nested(200))
    assert (msg.from_addr, msg.subject, msg.text) == ("a@b.com", "deep", "")
    assert msg.defects == (f"MIME nesting deeper than {MAX_DEPTH}; the rest ignored",)


def test_5000_deep_nesting_keeps_the_headers() -> None:
    # The stdlib parser recurses per level; this deep it would raise RecursionError.
    msg = parse_message(nested(5000))
    assert (msg.from_addr, msg.subject) == ("a@b.com", "deep")
    assert f"more than {MAX_PARTS} nested MIME containers; headers only" in msg.defects


@pytest.mark.parametrize("eol", [b"\r", b"\n", b"\r\n"])
def test_any_line_ending(eol: bytes) -> None:
    raw = eol.join([b"From: a@b.com", b"Subject: line endings", b"", b"one", b"two"])
    msg = parse_message(raw)
    assert (msg.from_addr, msg.subject, msg.text) == ("a@b.com", "line endings", "one\ntwo")


def test_no_headers_at_all() -> None:
    msg = parse_message(b"just some text with no headers\nmore\n\npara")
    assert (msg.from_addr, msg.subject) == (None, "")
    assert msg.text == "just some text with no headers\nmore\n\npara"


def test_empty_bytes() -> None:
    msg = parse_message(b"")
    assert (msg.from_addr, msg.subject, msg.text, msg.message_id) == (None, "", "", None)
    assert msg.content_hash == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_truncated_message() -> None:
    raw = (
        b'From: a@b.com\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nthe start of a long message that was cut"
    )
    msg = parse_message(raw, truncated=True)
    assert msg.truncated is True
    assert msg.text == "the start of a long message that was cut"
    assert parse_message(raw).truncated is False


# -- properties ----------------------------------------------------------------------------


def check_safe(msg) -> None:  # type: ignore[no-untyped-def]
    assert unsafe_chars(msg.subject) == []
    assert unsafe_chars(msg.from_name) == []
    assert len(msg.subject) <= 500 and len(msg.from_name) <= 100
    assert msg.from_addr is None or valid_address(msg.from_addr) == msg.from_addr
    assert msg.reply_to is None or valid_address(msg.reply_to) == msg.reply_to
    assert all(unsafe_chars(value) == [] for _, value in msg.headers)
    assert "\r" not in msg.text and "\x00" not in msg.text
    assert not any(unicodedata.category(c) == "Cs" for c in msg.text)  # storable as UTF-8


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    check_safe(parse_message(raw))


HEADER_NAMES = st.sampled_from(
    [
        "From",
        "To",
        "Cc",
        "Reply-To",
        "Subject",
        "Message-ID",
        "In-Reply-To",
        "References",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Content-Disposition",
        "Auto-Submitted",
        "X-Weird",
    ]
)
CHARSETS = st.sampled_from(["utf-8", "iso-8859-1", "gb2312", "x-no-such", "utf-7", "rot13", ""])
ENCODED_WORD = st.builds(
    lambda charset, kind, payload: f"=?{charset}?{kind}?{payload}?=",
    CHARSETS,
    st.sampled_from(["b", "Q", "x"]),
    st.text(max_size=30),
)
HEADER_VALUE = st.lists(
    st.one_of(
        st.text(max_size=60), ENCODED_WORD, st.sampled_from(["<a@b.com>", '"', ",", "\r\n "])
    ),
    max_size=6,
).map("".join)
CONTENT_TYPES = st.sampled_from(
    [
        "text/plain",
        "text/html",
        "multipart/mixed; boundary=b",
        "multipart/alternative; boundary=b",
        "message/rfc822",
        "text/plain; charset=x-no-such",
        "multipart/report; report-type=delivery-status; boundary=b",
    ]
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    eol = draw(st.sampled_from(["\r\n", "\n", "\r"]))
    headers = draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUE), max_size=10))
    lines = [f"{name}: {value}" for name, value in headers]
    lines.append(f"Content-Type: {draw(CONTENT_TYPES)}")
    parts = draw(st.lists(st.tuples(CONTENT_TYPES, st.text(max_size=200)), max_size=4))
    body = draw(st.text(max_size=300))
    for ctype, text in parts:
        body += f"{eol}--b{eol}Content-Type: {ctype}{eol}{eol}{text}"
    if draw(st.booleans()):
        body += f"{eol}--b--{eol}"
    text = eol.join(lines) + eol + eol + body
    return text.encode("utf-8", "surrogatepass")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(), st.booleans())
def test_assembled_messages_never_raise_and_stay_header_safe(raw: bytes, truncated: bool) -> None:
    msg = parse_message(raw, truncated=truncated)
    check_safe(msg)
    assert msg.truncated is truncated


def test_a_huge_message_is_read_only_as_far_as_a_case_needs():
    import hashlib

    from mailbot.parse import MAX_PARSE_BYTES

    attachment = b"QUFB" * (8_000_000 // 4)  # 8 MB of base64
    raw = (
        b"From: Jane Doe <jane@example.com>\r\nSubject: Planning objection\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nPlease see my objection attached.\r\n"
        b"--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + attachment
        + b"\r\n--b--\r\n"
    )
    msg = parse_message(raw)
    assert len(raw) > MAX_PARSE_BYTES
    assert (msg.from_addr, msg.subject) == ("jane@example.com", "Planning objection")
    assert msg.text.strip() == "Please see my objection attached."
    assert msg.truncated
    assert "only the first 4 MB were read" in msg.defects
    assert msg.content_hash == hashlib.sha256(raw).hexdigest()  # dedupe sees it all
