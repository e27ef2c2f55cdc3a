"""Quotation: the text the writer of a reply typed, without what they quoted.

Mail clients mark quotation in two ways. Some mark where it ends as well as where it
starts: a `>` before every quoted line, an HTML <blockquote>. Those are skipped and
reading goes on after them, because Thunderbird writes its replies below the quote by
default. The rest mark only where it starts (Outlook's From:/Sent: block, "-----Original
Message-----", a forward separator, Gmail's `gmail_quote`, Outlook on the web's
`divRplyFwdMsg`): everything from the first such sign on is quotation. An attribution
line ("On ... wrote:") followed by `>` lines introduces the first kind; followed by
anything else, the second.

When a message has HTML, its structure is read (it says what is quoted more reliably
than the plain-text alternative, which some clients write without any `>`); the text
that is left is then read as plain text, so the Outlook header block is found in both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import ClassVar

MAX_LINES = 5_000  # own text is at the top; a reply longer than this is read this far
_JOIN = 3  # an attribution line wrapped over at most this many lines

_QUOTED = re.compile(r"^[ \t]*>")
# "On Tue, 3 Nov 2026 at 10:00, Jane <jane@example.com> wrote:", in the languages the
# common clients write it in (English, German, French, Dutch, Spanish, Welsh, Italian,
# Portuguese, Scandinavian, Polish, Czech, Finnish, Hungarian, Russian), or a date and
# an address alone ("26.06.2014, 14:41, Jane <jane@example.com>:").
_WROTE = re.compile(
    r"(?:wrote|schrieb|a\s+écrit|schreef|escribió|ysgrifennodd|ha\s+scritto|escreveu|"
    r"skrev|napisał\w*|pisze|napsal\w*|kirjoitti|írta|написал\w*"
    r"|<[^<>\s]+@[^<>\s]+>)\s*:\s*$",
    re.IGNORECASE,
)
# German, Dutch, Welsh and Scandinavian clients name the writer after the verb:
# "Am 03.11.2026 um 09:31 schrieb Jane Doe:" (counted only after an opener, below).
_WROTE_THEN_NAME = re.compile(
    r"\b(?:schrieb|schreef|ysgrifennodd|skrev|napsal\w*|pisze)\s[^:]{1,200}:\s*$",
    re.IGNORECASE,
)
_OPENER = re.compile(r"^\s*(?:On|Am|Le|Op|El|Ar|Il|Em|Den|Dne|W\s+dniu|Pe)\b", re.IGNORECASE)
# Labels of the header block Outlook (and others) put above a quoted or forwarded message.
_FROM_LABELS = r"from|von|de|oddi\s+wrth|van|da|från|fra|od|от"
_OTHER_LABELS = (
    r"sent|to|cc|subject|date|gesendet|an|betreff|datum|envoyé|à|a|objet|anfonwyd|at|pwnc|"
    r"dyddiad|verzonden|aan|onderwerp|enviado(?:\s+el)?|enviada|para|asunto|fecha|inviato|"
    r"oggetto|data|assunto|skickat|till|kopia|ämne|sendt|til|emne|dato|wysłano|do|temat|"
    r"отправлено|кому|копия|тема|дата"
)
_LABEL = re.compile(rf"^\s*\*?(?:(?P<from>{_FROM_LABELS})|{_OTHER_LABELS})\*?\s*:", re.IGNORECASE)
_HEADER_BLOCK_WINDOW = 7  # lines within which a second label makes a header block
# "-----Original Message-----", "-------- Forwarded Message --------", mutt's
# "----- Forwarded message from ... -----", and their translations: words between dashes.
_SEPARATOR = re.compile(r"^\s*-{2,}\s*\S.{0,120}?\s*-{2,}\s*$")
_RULE = re.compile(r"^\s*_{10,}\s*$")  # Outlook on the web's line above its header block
_FORWARD = re.compile(
    r"^\s*(?:begin\s+forwarded\s+message|anfang\s+der\s+weitergeleiteten\s+nachricht|"
    r"début\s+du\s+message\s+réexpédié|begin\s+doorgestuurd\s+bericht|"
    r"inicio\s+del\s+mensaje\s+reenviado)\s*:",
    re.IGNORECASE,
)


def own_text(text_plain: str, html: str = "") -> str:
    """The writer's own new text: from the HTML's structure when there is HTML, else
    from the plain text; nothing from the first sign of open-ended quotation on."""
    text = html_own_text(html) if html.strip() else text_plain
    return plain_own_text(text)


def plain_own_text(text: str) -> str:
    """Own text of a plain-text reply (see the module's description)."""
    own = [line for part in parts(text) if not part.quoted for line in part.lines]
    return "\n".join(own).strip()


@dataclass(frozen=True)
class Part:
    """A run of a message's lines: the writer's own, or quoted (without its `>` marks)."""

    lines: tuple[str, ...]
    quoted: bool
    # The attribution ("On ..., Jane <jane@example.com> wrote:") or header block that
    # introduced a quotation: whose words these are, as far as the writer's client says.
    introduced_by: str = ""


def parts(text: str) -> list[Part]:
    """A plain-text message split into its own and quoted runs, in order. Quotation
    marked line by line is one part and reading goes on after it; open-ended quotation
    is the last part."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")[:MAX_LINES]
    found: list[Part] = []
    own: list[str] = []
    introduced_by = ""

    def close_own() -> None:
        if own:
            found.append(Part(tuple(own), quoted=False))
            own.clear()

    i = 0
    while i < len(lines):
        if _QUOTED.match(lines[i]):
            close_own()
            start = i
            while i < len(lines) and _QUOTED.match(lines[i]):
                i += 1
            quoted = tuple(
                _QUOTED.sub("", line, count=1).removeprefix(" ") for line in lines[start:i]
            )
            found.append(Part(quoted, quoted=True, introduced_by=introduced_by))
            introduced_by = ""
            continue
        if _starts_quotation(lines, i):
            close_own()
            block = " ".join(lines[i : i + _HEADER_BLOCK_WINDOW])
            found.append(Part(tuple(lines[i:]), quoted=True, introduced_by=block))
            return found
        span = _attribution(lines, i)
        if span:
            attribution = " ".join(line.strip() for line in lines[i : i + span])
            after = i + span
            while after < len(lines) and not lines[after].strip():
                after += 1
            if after < len(lines) and _QUOTED.match(lines[after]):
                introduced_by, i = attribution, after  # quotation marked line by line
                continue
            # Quotation not marked line by line: the rest is quoted.
            close_own()
            found.append(Part(tuple(lines[after:]), quoted=True, introduced_by=attribution))
            return found
        own.append(lines[i])
        i += 1
    close_own()
    return found


def _starts_quotation(lines: list[str], i: int) -> bool:
    """An open-ended sign at line i: a separator or an Outlook-style header block."""
    line = lines[i]
    if _SEPARATOR.match(line) or _RULE.match(line) or _FORWARD.match(line):
        return True
    first = _LABEL.match(line)
    if not first:
        return False
    window = lines[i + 1 : i + _HEADER_BLOCK_WINDOW]
    labels = [match for match in map(_LABEL.match, window) if match]
    if not labels:
        return False
    # "From: X [mailto:x]" alone is Outlook 2010's; otherwise a From label among two.
    return any(m.group("from") for m in (first, *labels))


def _attribution(lines: list[str], i: int) -> int:
    """How many lines an attribution ("On ... wrote:") starting at line i takes, or 0."""
    # Every attribution ends with a colon: a cheap test before the patterns.
    if lines[i].rstrip().endswith(":") and len(lines[i]) <= 400 and _WROTE.search(lines[i]):
        return 1
    if not _OPENER.match(lines[i]):
        return 0
    for span in range(1, _JOIN + 1):
        last = lines[i + span - 1 : i + span]
        if not last:
            return 0
        if not last[0].rstrip().endswith(":"):
            continue
        joined = " ".join(line.strip() for line in lines[i : i + span])
        if len(joined) > 400:
            return 0
        if _WROTE.search(joined) or _WROTE_THEN_NAME.search(joined):
            return span
    return 0


# --- HTML ------------------------------------------------------------------------------

# ids and classes that open quotation to the end of the message, as the clients write
# them; Outlook on the web prefixes "x_" to both when it shows a message again.
_STOP_MARKERS = frozenset(
    {
        "divrplyfwdmsg",  # Outlook on the web, new Outlook
        "appendonsend",  # Outlook on the web: just above its header block
        "gmail_quote",  # Gmail
        "gmail_extra",  # Gmail, before 2016
        "moz-forward-container",  # Thunderbird's inline forward
        "olk_src_body_section",  # Outlook for Mac
        "outlookmessageheader",  # Outlook 2003
        "mail-editor-reference-message-container",  # Outlook for Mac, new
        "ms-outlook-mobile-reference-message",  # Outlook for iOS and Android
        "yahoo_quoted",  # Yahoo
        "zwchr",  # Zimbra
        "stopspelling",  # Hotmail
    }
)
_HIDDEN_STYLE = re.compile(r"display:none|visibility:hidden|mso-hide:all")
_OUTLOOK_HEADER_STYLE = "border:none;border-top:solid"  # Outlook 2007 and later
_STOP = "\x00"  # where the first open-ended sign was found


class _Reader(HTMLParser):
    """HTML to text, leaving out hidden elements, marking each <blockquote> as one `>`
    line and stopping at the first open-ended sign of quotation."""

    _BLOCK: ClassVar[set[str]] = {
        "p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol",
        "table", "hr", "pre", "section", "article", "header", "footer", "dl", "dt", "dd",
    }  # fmt: skip
    _VOID: ClassVar[set[str]] = {
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
        "source", "track", "wbr",
    }  # fmt: skip
    _UNREAD: ClassVar[set[str]] = {"script", "style", "head", "title", "template"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.stopped = False
        self._region: str | None = None  # the element being left out, if any
        self._depth = 0
        self._mark = False  # whether the element left out is a quotation

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.stopped:
            return
        if self._region is not None:
            if tag == "body" and self._region == "head":
                self._region = None  # an unclosed <head> must not hide the whole body
            elif tag == self._region and tag not in self._VOID:
                self._depth += 1
            return
        values = {name: (value or "") for name, value in attrs}
        if _opens_quotation(tag, values):
            self.parts.append(_STOP)
            self.stopped = True
        elif tag in self._VOID:
            if tag in ("br", "hr"):
                self.parts.append("\n")
        elif tag in self._UNREAD or _hidden(values):
            self._leave_out(tag, mark=False)
        elif tag == "blockquote":
            self._leave_out(tag, mark=True)
        elif tag in self._BLOCK:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def _leave_out(self, tag: str, *, mark: bool) -> None:
        self._region, self._depth, self._mark = tag, 1, mark

    def handle_endtag(self, tag: str) -> None:
        if self.stopped:
            return
        if self._region is not None:
            if tag == self._region:
                self._depth -= 1
                if self._depth == 0:
                    if self._mark:
                        self.parts.append("\n>\n")
                    self._region = None
            return
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.stopped and self._region is None:
            self.parts.append(data)


def _tokens(attrs: dict[str, str]) -> set[str]:
    words = f"{attrs.get('id', '')} {attrs.get('class', '')}".lower().split()
    return {word.removeprefix("x_") for word in words}


def _opens_quotation(tag: str, attrs: dict[str, str]) -> bool:
    if _tokens(attrs) & _STOP_MARKERS:
        return True
    if tag == "hr" and attrs.get("tabindex") == "-1":  # Outlook's rule above the header
        return True
    style = re.sub(r"\s+", "", attrs.get("style", "").lower())
    return tag == "div" and _OUTLOOK_HEADER_STYLE in style


def _hidden(attrs: dict[str, str]) -> bool:
    style = re.sub(r"\s+", "", attrs.get("style", "").lower())
    return "hidden" in attrs or bool(_HIDDEN_STYLE.search(style))


def html_own_text(html: str) -> str:
    """The text of an HTML reply before its first open-ended quotation, with each
    blockquote as a `>` line and hidden elements left out."""
    reader = _Reader()
    try:
        reader.feed(html)
        reader.close()
    except Exception:  # HTMLParser is lenient; this is for what it still refuses
        reader.parts.append(_STOP)
    text = "".join(reader.parts).split(_STOP, 1)[0]
    lines = (re.sub(r"[ \t\xa0\u200b]+", " ", line).strip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
