"""Quotation: only the writer's own new text is read for #commands (no servers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbot.commandline import COMMAND_LINE, command_lines, defuse
from mailbot.officers import find_commands
from mailbot.parse import parse_message
from mailbot.quotation import html_own_text, own_text, plain_own_text

TALON = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "replies" / "talon"
OURS = Path(__file__).parent / "data" / "replies"
OWN_COMMAND = "#note Rang the resident, will visit on Friday"

# What the writer typed in each of talon's fixtures (the rest is what they quoted).
TALON_OWN = {
    "android.eml": "Hello",
    "aol.eml": "Hello",
    "apple_mail.eml": "Hello",
    "apple_mail_2.eml": "Hello",
    "comcast.eml": "Hello",
    "gmail.eml": "Hello",
    "hotmail.eml": "Hello",
    "iphone.eml": "Hello\n\nSent from my iPhone",
    "outlook.eml": "Allo! Follow up MIME!",
    "sparrow.eml": "Hello\n\n--\n\nxxx\n\nSent with Sparrow",
    "thunderbird.eml": "Hello",  # written below the quote
    "yahoo.eml": "Hello",
    "OLK_SRC_BODY_SECTION.html": "Reply",
    "gmail.html": "Hi. I am fine.\n\nThanks,\n\nAlex",
    "hotmail.html": "Hi. I am fine.\n\nThanks,\n\nAlex",
    "mail_ru.html": "Hi. I am fine.\n\nThanks,\nAlex",
    "ms_outlook_2003.html": "Hi. I am fine.\n\nThanks,\n\nAlex",
    "ms_outlook_2007.html": "Hi. I am fine.\n\nThanks,\n\nAlex",
    "ms_outlook_2010.html": "Hi. I am fine.\n\nThanks,\n\nAlex",
    "reply-separated-by-hr.html": "Hi\n\nthere\n\nBob",
    "thunderbird.html": "Hi. I am fine.\n\nThanks,\n\nAlex",
    "windows_mail.html": "Hi. I am fine.\n\nThanks,\n\nAlex",
    "yandex_ru.html": "Hi. I am fine.\n\nThanks,\n\nAlex",
}


def _talon(name: str) -> Path:
    if not TALON.is_dir():
        pytest.skip(f"{TALON} is absent: the talon reply corpus is read in place")
    return TALON / name


@pytest.mark.parametrize("name", sorted(TALON_OWN))
def test_the_writers_own_text_in_real_clients_replies(name):
    path = _talon(name)
    if path.suffix == ".eml":
        msg = parse_message(path.read_bytes())
        found = own_text(msg.text, msg.html)
    else:
        found = own_text("", path.read_text(encoding="utf-8", errors="replace"))
    assert found == TALON_OWN[name]


def test_every_talon_fixture_is_covered():
    folder = _talon("COMMIT").parent
    fixtures = {p.name for p in folder.iterdir() if p.suffix in (".eml", ".html")}
    assert fixtures == set(TALON_OWN)


REPLIES = sorted(p.stem for p in OURS.glob("*.eml"))


def test_the_clients_we_promise_have_a_fixture():
    assert set(REPLIES) >= {
        "apple-mail-html",
        "apple-mail-html-only",
        "outlook-2003",
        "outlook-2010",
        "outlook-2010-only",
        "outlook-2016",
        "outlook-web",
        "gmail",
        "iphone",
        "outlook-german",
        "outlook-welsh",
        "mutt-forward",
        "thunderbird-forward",
        "thunderbird-below",
    }


@pytest.mark.parametrize("name", REPLIES)
def test_only_the_officers_command_is_read_from_each_client(name):
    """Each quotes the staff mail mailbot used to send, whose help block was commands
    (#responded, #clarify ..., #close, #reassign ...); only the officer's #note counts."""
    raw = (OURS / f"{name}.eml").read_bytes()
    assert b"#close" in raw and b"#clarify" in raw  # the quotation holds command lines
    msg = parse_message(raw)
    assert [c.line for c in find_commands(msg.text, msg.html)] == [OWN_COMMAND]


WITH_HTML = [n for n in REPLIES if b"text/html" in (OURS / f"{n}.eml").read_bytes()]


@pytest.mark.parametrize("name", WITH_HTML)
def test_the_html_structure_alone_finds_the_quotation(name):
    msg = parse_message((OURS / f"{name}.eml").read_bytes())
    assert [c.line for c in command_lines(plain_own_text(html_own_text(msg.html)))] == [OWN_COMMAND]


@pytest.mark.parametrize(
    ("text", "own"),
    [
        # a command below a quotation marked line by line is the writer's (Thunderbird)
        ("On Tue, Chris wrote:\n> #close\n> more\n\n#note ok", "#note ok"),
        # inline replies between quoted paragraphs
        ("> question one\n#note answer one\n> #close\n#extend 5", "#note answer one\n#extend 5"),
        # an attribution not followed by > lines: everything after it is quoted
        ("#note ok\nOn Tue, Chris wrote:\n#close", "#note ok"),
        (
            "#note ok\n\nAm 03.11.2026 um 09:31 schrieb Stafford Borough Council:\n#close",
            "#note ok",
        ),
        ("#note ok\n\nLe mar. 3 nov. 2026 à 09:31, Jane a écrit :\n#close", "#note ok"),
        ("#note ok\n\nOp di 3 nov. 2026 om 09:31 schreef Jane:\n#close", "#note ok"),
        ("#note ok\n\nEl mar, 3 nov 2026 a las 9:31, Jane escribió:\n#close", "#note ok"),
        ("#note ok\n\nAr ddydd Mawrth, 3 Tach 2026, ysgrifennodd Jane:\n#close", "#note ok"),
        # an attribution wrapped over two lines
        (
            "#note ok\nOn Tue, 3 Nov 2026 at 09:31, Jane Doe <jane@example.com>\nwrote:\n#close",
            "#note ok",
        ),
        # Outlook header blocks in other languages
        ("#note ok\nDe : Jane\nEnvoyé : mardi\nÀ : Alex\nObjet : x\n#close", "#note ok"),
        ("#note ok\nVan: Jane\nVerzonden: dinsdag\nAan: Alex\n#close", "#note ok"),
        ("#note ok\nDe: Jane\nEnviado el: martes\nPara: Alex\nAsunto: x\n#close", "#note ok"),
        ("#note ok\n*From:* Jane\n*Sent:* Tuesday\n#close", "#note ok"),
        # forward and original-message separators
        ("#note ok\n---------- Forwarded message ---------\n#close", "#note ok"),
        ("#note ok\nBegin forwarded message:\n\n#close", "#note ok"),
        ("#note ok\n-----Ursprüngliche Nachricht-----\n#close", "#note ok"),
        # an officer's own "From:" sentence is not a header block
        (
            "From: tomorrow the road is shut.\n#note ok",
            "From: tomorrow the road is shut.\n#note ok",
        ),
    ],
)
def test_plain_text_quotation(text, own):
    assert plain_own_text(text) == own


@pytest.mark.parametrize(
    ("html", "own"),
    [
        # hidden elements are never read
        ('<div>#note ok</div><div style="display: none">#close</div>', "#note ok"),
        ("<div>#note ok</div><span hidden>#close</span>", "#note ok"),
        ('<p>#note ok</p><p style="mso-hide:all">#close</p>', "#note ok"),
        # Outlook on the web writes x_ before ids when it shows a message again
        ('<div>#note ok</div><div id="x_divRplyFwdMsg">From: x</div><div>#close</div>', "#note ok"),
        # nested blockquotes are skipped whole; what follows is the writer's
        (
            "<blockquote>a<blockquote>#close</blockquote>#responded</blockquote><p>#note ok</p>",
            ">\n\n#note ok",  # the > line stands for the quotation; plain_own_text drops it
        ),
        # an unclosed blockquote hides the rest rather than showing it
        ("<p>#note ok</p><blockquote><p>#close", "#note ok"),
        # an unclosed <head> does not hide the body
        ("<head><title>x</title><body><p>#note ok</p>", "#note ok"),
    ],
)
def test_html_quotation(html, own):
    assert html_own_text(html) == own


def test_the_html_part_is_read_rather_than_a_plain_part_without_quote_marks():
    plain = "#note ok\n\nOn Tue, Council wrote:\n#close\n"  # no > on the quoted line
    html = "<p>#note ok</p><blockquote>#close</blockquote>"
    assert own_text(plain, html) == "#note ok"


def test_a_forwarded_messages_html_is_not_the_writers():
    """HTML further down a message (a forwarded one's) is not the alternative of its text."""
    raw = (
        b"From: alex.morgan@council.example.gov.uk\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\n"
        b"#note ok\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: y\r\n"
        b"Content-Type: text/html\r\n\r\n<p>#close</p>\r\n--b--\r\n"
    )
    msg = parse_message(raw)
    assert msg.html == ""
    assert [c.line for c in find_commands(msg.text, msg.html)] == ["#note ok"]


def test_a_line_that_looks_like_a_command_is_reported_not_dropped():
    found = find_commands("#close.\n#note fine")
    assert [(c.name, c.line) for c in found] == [("", "#close."), ("note", "#note fine")]


@pytest.mark.parametrize(
    "text",
    ["#close", "  #responded  you have sent the full reply", "#note hi", "\t#extend 5"],
)
def test_defuse_leaves_no_command_line(text):
    assert COMMAND_LINE.match(text)
    defused = defuse(f"Dear officer,\n{text}\nthanks")
    assert command_lines(defused) == []
    assert defused.splitlines()[0] == "Dear officer,"
