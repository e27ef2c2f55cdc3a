"""Parse: raw message bytes into a plain ParsedMessage, defensively, never raising."""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.policy
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from html import unescape
from html.parser import HTMLParser
from typing import ClassVar

from mailbot.addresses import for_the_wire, valid_domain

# Limits that keep one hostile message from costing more than it is worth.
MAX_PARSE_BYTES = 4_000_000
MAX_PARTS = 500
MAX_DEPTH = 20
MAX_TEXT_CHARS = 200_000
MAX_HEADER_CHARS = 2_000
MAX_HEADERS = 500
MAX_RAW_HEADER_CHARS = 20_000  # a header is cut to this before decoding
# The stdlib parser builds every part before we can count them; a message with more
# boundary lines than this is cut there first (about 0.1 s of parsing).
MAX_BOUNDARY_LINES = 5_000

# C0 and C1 controls, DEL, Unicode line/paragraph separators and lone surrogates (which
# cannot be stored as UTF-8): none of them belong in a one-line header value.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]+")
# The same for body text, which keeps its tabs and line breaks.
_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]+")
# A practical addr-spec: no spaces or specials; the domain may be a single label
# (root@localhost is a real sender on a council's internal relay).
_ADDRESS = re.compile(
    r"^[^@\s<>()\[\],;:\"\\]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*$"
)
_MSGID = re.compile(r"<[^<>\s]+>")
_ANGLE_ADDR = re.compile(r"<([^<>\s]*)>")
_BARE_ADDR = re.compile(r"[^\s<>()\[\],;:\"\\]+@[^\s<>()\[\],;:\"\\]+")
# RFC 2047 encoded-word; the charset may carry an RFC 2231 language suffix ("utf-8*en").
# Spaces inside are not allowed by the RFC but common (and the stdlib accepts them).
_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?]*)\?=")
_FOLD = re.compile(r"\r\n|\r|\n")
_HEADER_LINE = re.compile(rb"^[\x21-\x39\x3b-\x7e]+:")
_BLANK_LINE = re.compile(rb"\r\n\r\n|\n\n|\r\r|\n\r\n")
_CONTAINER = re.compile(rb"^content-type:[ \t]*(?:multipart|message)/", re.I | re.M)
# Headers kept exactly as the servers wrote them (unfolded, never RFC 2047-decoded), for
# the decision whether an officer's mail is authentic (trust.py): decoding would let a
# sender's encoded words turn into text the decision reads.
_TRACE_HEADERS = frozenset({"authentication-results", "received"})
_TRACE_PREFIX = "x-ms-exchange-organization-"
MAX_HTML_CHARS = MAX_TEXT_CHARS * 4

# Labels that mail clients use for a wider charset than the label says (as browsers do).
_CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "x-sjis": "cp932",
    "iso-8859-9": "cp1254",
    "tis-620": "cp874",
    "unicode-1-1-utf-7": "utf-7",
}
# Python codecs that are not charsets anyone sends mail in, and would turn bytes into
# escapes, control characters or exceptions.
_NOT_CHARSETS = {"idna", "punycode", "unicode-escape", "raw-unicode-escape", "mbcs", "oem"}


def clean_text(value: str, limit: int = 200) -> str:
    """One line of text safe to put in a header: no CR, LF or control characters, capped."""
    collapsed = _CONTROL.sub(" ", value)
    collapsed = re.sub(r" {2,}", " ", collapsed).strip()
    return collapsed[:limit].rstrip()


def valid_address(addr: str | None) -> str | None:
    """The address lower-cased when it is a plausible addr-spec, else None. An
    internationalised domain (RFC 6530) counts when IDNA can write it in ASCII."""
    if not addr:
        return None
    addr = addr.strip().lower().rstrip(".")
    local, at, domain = addr.rpartition("@")
    # An international domain is kept in one form (IDNA's, in its own letters), however
    # it was written, so the same address always compares equal.
    if at and (not domain.isascii() or "xn--" in domain):
        normal = valid_domain(domain)
        if normal is None:
            return None
        addr = f"{local}@{normal}"
    return addr if len(addr) <= 254 and _ADDRESS.match(for_the_wire(addr)) else None


@dataclass(frozen=True)
class ParsedMessage:
    """What the rest of mailbot needs from a message; built only by `parse_message`."""

    message_id: str | None
    subject: str
    from_addr: str | None
    from_name: str
    reply_to: str | None
    to_addrs: tuple[str, ...]
    cc_addrs: tuple[str, ...]
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    content_type: str
    text: str
    content_hash: str
    truncated: bool = False
    defects: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # Every address the From headers name (one, in any message a person sent).
    from_addrs: tuple[str, ...] = ()
    # The first text/html part as written (capped), for reading quotation by its structure.
    html: str = field(default="", repr=False)
    # Authentication-Results, Received and X-MS-Exchange-Organization-* headers, top first,
    # as the servers wrote them (see _TRACE_HEADERS).
    trace: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def header(self, name: str) -> str | None:
        """The first value of a header (decoded, one line), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_names(self) -> set[str]:
        return {key for key, _ in self.headers}

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """Message-IDs this message replies to, nearest first."""
        return tuple(dict.fromkeys((*self.in_reply_to, *reversed(self.references))))


def parse_message(raw: bytes, *, truncated: bool = False) -> ParsedMessage:
    """Parse raw RFC 5322 bytes. Never raises: problems are recorded in `defects`.

    The stdlib's modern header objects can raise on malformed input when a header is
    read, so headers are read raw and decoded here one by one instead.
    """
    defects: list[str] = []
    raw = bytes(raw)
    content_hash = hashlib.sha256(raw).hexdigest()  # of the whole message, for dedupe
    if len(raw) > MAX_PARSE_BYTES:
        # What a case needs (headers, the text the resident typed) comes first; the rest
        # is attachments, which the stdlib parser would hold many times over in memory.
        raw, truncated = raw[:MAX_PARSE_BYTES], True
        defects.append(f"only the first {MAX_PARSE_BYTES // 1_000_000} MB were read")
    msg = _parse(raw, defects)
    items = _raw_items(msg)
    headers = [(key, clean_text(_decode_words(value), MAX_HEADER_CHARS)) for key, value in items]
    first = dict(reversed(headers))  # first occurrence wins
    # Addresses are split before encoded words are decoded: a decoded name may hold commas.
    raw_first: dict[str, list[str]] = {}
    for key, value in items:
        if key in {"from", "reply-to", "to", "cc"}:
            raw_first.setdefault(key, []).append(value)

    from_name, from_addr = _sender(raw_first.get("from", []))
    reply_to = _sender(raw_first.get("reply-to", [])[:1])[1]
    text, html = _body_text(msg, defects)
    trace = tuple(
        (key, clean_text(value, MAX_RAW_HEADER_CHARS))
        for key, value in items
        if key in _TRACE_HEADERS or key.startswith(_TRACE_PREFIX)
    )
    own_ids = _message_ids(first.get("message-id", ""))
    return ParsedMessage(
        message_id=own_ids[0] if own_ids else None,
        subject=clean_text(first.get("subject", ""), 500),
        from_addr=from_addr,
        from_name=from_name,
        reply_to=reply_to,
        to_addrs=_addresses(raw_first.get("to", [])),
        cc_addrs=_addresses(raw_first.get("cc", [])),
        in_reply_to=_message_ids(first.get("in-reply-to", "")),
        references=_message_ids(first.get("references", ""))[-50:],
        content_type=_content_type(msg),
        text=text,
        content_hash=content_hash,
        truncated=truncated,
        defects=tuple(dict.fromkeys(defects)),
        headers=tuple(headers),
        from_addrs=_addresses(raw_first.get("from", [])),
        html=html,
        trace=trace,
    )


def _parse(raw: bytes, defects: list[str]) -> Message:
    """The stdlib's lenient parse, with the cost bounded and broken header blocks mended."""
    raw = _cap_boundaries(raw, defects)
    if len(_CONTAINER.findall(raw, 0, 50_000_000)) > MAX_PARTS:
        # Nesting this deep costs the stdlib a second and a RecursionError; skip to headers.
        defects.append(f"more than {MAX_PARTS} nested MIME containers; headers only")
        return _header_parse(raw, defects)
    msg = _stdlib_parse(raw, defects)
    if any(type(d).__name__ == "MissingHeaderBodySeparatorDefect" for d in msg.defects):
        mended = _mend_header_block(raw)
        if mended is not None:
            defects.append("header block repaired (stray non-header lines)")
            msg = _stdlib_parse(mended, defects)
    return msg


def _stdlib_parse(raw: bytes, defects: list[str]) -> Message:
    try:
        return email.message_from_bytes(raw, policy=email.policy.compat32)
    except Exception as exc:  # RecursionError on very deep nesting, for one
        defects.append(f"unparseable MIME structure ({type(exc).__name__}); headers only")
    return _header_parse(raw, defects)


def _header_parse(raw: bytes, defects: list[str]) -> Message:
    try:
        return BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    except Exception as exc:
        defects.append(f"unparseable: {type(exc).__name__}")
        return Message()


def _cap_boundaries(raw: bytes, defects: list[str]) -> bytes:
    if raw.count(b"\n--") <= MAX_BOUNDARY_LINES:
        return raw
    position = -1
    for _ in range(MAX_BOUNDARY_LINES):
        position = raw.index(b"\n--", position + 1)
    defects.append(f"more than {MAX_BOUNDARY_LINES} MIME boundaries; the rest ignored")
    return raw[: position + 1]


def _mend_header_block(raw: bytes) -> bytes | None:
    """Headers with stray lines: a junk first line dropped, broken folds re-indented.

    Only when real headers follow the stray lines; a message whose body starts straight
    after its headers (no blank line) keeps that body as body.
    """
    end = _BLANK_LINE.search(raw)
    head, body = (raw[: end.start()], raw[end.end() :]) if end else (raw, b"")
    lines = re.split(rb"\r\n|\r|\n", head)[:5_000]
    header_at = [i for i, line in enumerate(lines) if _HEADER_LINE.match(line)]
    if not header_at or header_at[0] > 3:
        return None  # not a header block with junk in it: leave the message as it is
    last = header_at[-1]
    out = lines[:1] if lines[0].startswith(b"From ") else []  # an mbox "From " line
    for line in lines[header_at[0] : last + 1]:
        ok = _HEADER_LINE.match(line) or line[:1] in (b" ", b"\t")
        out.append(line if ok else b" " + line)
    rest = lines[last + 1 :]
    # Continuation lines right after the last header still belong to it.
    while rest and rest[0][:1] in (b" ", b"\t"):
        out.append(rest.pop(0))
    mended = b"\r\n".join(out) + b"\r\n\r\n" + b"\r\n".join(rest)  # rest: the body's start
    return mended + (b"\r\n\r\n" if rest else b"") + body if end else mended


def _raw_items(msg: Message) -> list[tuple[str, str]]:
    """(lower-case name, value) pairs: 8-bit bytes read as text, folding undone."""
    out: list[tuple[str, str]] = []
    try:
        items = list(msg.raw_items())[:MAX_HEADERS]
    except Exception:
        return out
    for name, value in items:
        key = clean_text(str(name), 100).lower()
        out.append((key, _unfold(_header_text(value))))
    return out


def _header_text(value: object) -> str:
    """A raw header value as text; undeclared 8-bit bytes read as UTF-8, else Windows-1252."""
    if not isinstance(value, str):
        try:
            value = str(value)
        except Exception:
            return ""
    value = value[:MAX_RAW_HEADER_CHARS]
    try:
        value.encode("ascii")
        return value
    except UnicodeEncodeError:
        pass
    return _utf8_or_cp1252(value.encode("utf-8", "surrogateescape"))


def _unfold(value: str) -> str:
    return _FOLD.sub("", value)


def _decode_bytes(data: bytes, charset: str | None) -> tuple[str, bool]:
    """Bytes in a declared charset; an unknown one falls back to UTF-8, else Windows-1252.

    Returns the text and whether the charset was understood.
    """
    name = (charset or "").strip().strip("\"'").lower()
    name = _CHARSET_ALIASES.get(name, name)
    if name in {"us-ascii", "ascii", "utf-8", "utf8", ""}:
        return _utf8_or_cp1252(data), True  # 8-bit text labelled ASCII, or not at all
    try:
        info = codecs.lookup(name)
        if not info._is_text_encoding or info.name in _NOT_CHARSETS:
            raise LookupError(name)
        return data.decode(info.name, "replace"), True
    except Exception:
        return _utf8_or_cp1252(data), False


def _utf8_or_cp1252(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")  # legacy 8-bit text is likelier than bad UTF-8


def _word_bytes(encoding: str, text: str) -> bytes | None:
    try:
        if encoding in "bB":
            text = text.rstrip("=")
            if len(text) % 4 == 1:
                text = text[:-1]  # a stray character cannot be decoded; drop it
            return base64.b64decode(text + "=" * (-len(text) % 4))
        data = text.replace("_", " ").encode("utf-8", "surrogateescape")
        return re.sub(rb"=([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), data)
    except (binascii.Error, ValueError):
        return None


def _decode_words(value: str) -> str:
    """RFC 2047 encoded-words decoded, leniently: whitespace between words dropped,
    adjacent words in one charset joined before decoding (a character may be split
    across them), unknown charsets read as UTF-8, broken words left as they are."""
    if "=?" not in value:
        return value
    out: list[str] = []
    pending = b""
    pending_charset: str | None = None
    position = 0

    def flush() -> None:
        nonlocal pending, pending_charset
        if pending_charset is not None:
            out.append(_decode_bytes(pending, pending_charset)[0])
        pending, pending_charset = b"", None

    for match in _ENCODED_WORD.finditer(value):
        gap = value[position : match.start()]
        data = _word_bytes(match.group(2), match.group(3))
        follows_word = pending_charset is not None and not gap.strip()
        if data is None:
            flush()
            out.append(gap + match.group(0))
        else:
            charset = match.group(1).lower()
            if not follows_word or charset != pending_charset:
                flush()
            if not follows_word:
                out.append(gap)  # whitespace between two encoded-words is dropped
            pending += data
            pending_charset = charset
        position = match.end()
    flush()
    out.append(value[position:])
    return "".join(out)


def _protect_words(value: str) -> tuple[str, list[str]]:
    """Encoded-words swapped for placeholders, so commas inside them do not split addresses."""
    words: list[str] = []

    def swap(match: re.Match[str]) -> str:
        words.append(match.group(0))
        return f"EncodedWord{len(words) - 1}X"

    return _ENCODED_WORD.sub(swap, value), words


def _restore_words(value: str, words: list[str]) -> str:
    def restore(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return words[index] if index < len(words) else match.group(0)  # the sender's own text

    return re.sub(r"EncodedWord(\d{1,4})X", restore, value)


def _pairs(value: str) -> list[tuple[str, str]]:
    """(display name, address) pairs of an address header, names decoded."""
    protected, words = _protect_words(value[: MAX_HEADER_CHARS * 5])
    try:
        pairs = getaddresses([protected])[:100]
    except Exception:
        pairs = []
    out = [(_decode_words(_restore_words(name, words)), addr) for name, addr in pairs]
    if not any(valid_address(addr) for _, addr in out):
        # An address in angle brackets is unambiguous even where the rest is garbled
        # ("Name, unquoted <a@b>"); a bare address is used only when there are none.
        angles = _ANGLE_ADDR.findall(protected)
        found = angles if "<" in protected else _BARE_ADDR.findall(protected)
        name = _decode_words(_restore_words(protected.split("<")[0], words)) if angles else ""
        out = [(name.strip().strip('"'), addr) for addr in found[:100]]
    return out


def _sender(values: list[str]) -> tuple[str, str | None]:
    """Display name and address: the first valid address in the first From headers.

    An address in angle brackets is the address: in `alex@council.example <x@evil.example>`
    the first part is a display name (unquoted, so malformed), however it looks.
    """
    for value in values[:5]:
        pairs = [(name, valid_address(addr)) for name, addr in _pairs(value)]
        angles = {valid_address(a) for a in _ANGLE_ADDR.findall(_protect_words(value)[0])}
        angled = [(name, addr) for name, addr in pairs if addr and addr in angles]
        for name, addr in angled or pairs:
            if addr:
                if not name and angled and "<" in value:
                    name = _decode_words(value.split("<")[0].strip().strip('"'))
                return clean_text(name, 100), addr
    return "", None


def _addresses(values: list[str]) -> tuple[str, ...]:
    found: list[str] = []
    for value in values[:20]:
        found.extend(a for a in (valid_address(addr) for _, addr in _pairs(value)) if a)
    return tuple(dict.fromkeys(found))[:100]


def _message_ids(value: str) -> tuple[str, ...]:
    return tuple(_MSGID.findall(value)[:100])


def _content_type(msg: Message) -> str:
    try:
        return clean_text(msg.get_content_type(), 100)
    except Exception:
        return "text/plain"


def _body_text(msg: Message, defects: list[str]) -> tuple[str, str]:
    """Readable text (the first text/plain part, else HTML turned into text) and the HTML
    the sender wrote it in: the HTML alternative of that plain part, or the HTML body.

    Only an alternative of the same text counts: HTML further on (a forwarded message's,
    say) is not what the sender wrote.
    """
    plain: str | None = None
    html: str | None = None
    plain_parent: Message | None = None
    html_parent: Message | None = None
    for part, _depth, parent in _walk(msg, defects):
        if plain is not None and html is not None:
            continue  # keep walking only to count parts and depth
        if part.is_multipart() or _is_attachment(part):
            continue
        ctype = _content_type(part)
        if ctype == "text/plain" and plain is None:
            plain = _decode_part(part, defects)
            plain_parent = parent
            if not plain.strip():
                plain = None  # an empty plain part in front of a real HTML one
        elif ctype == "text/html" and html is None:
            html, html_parent = _decode_part(part, defects), parent
    if plain is not None:
        alternative = (
            html is not None
            and plain_parent is not None
            and plain_parent is html_parent
            and _content_type(plain_parent) == "multipart/alternative"
        )
        return _clean_body(plain), _clean_html(html) if alternative else ""
    if html is not None:
        return _clean_body(html_to_text(html)), _clean_html(html)
    return "", ""


def _clean_html(html: str | None) -> str:
    return _BODY_CONTROL.sub("", (html or "")[:MAX_HTML_CHARS])


def _clean_body(text: str) -> str:
    """Line breaks as LF; no NULs or other controls (PostgreSQL refuses NUL in text)."""
    text = text[: MAX_TEXT_CHARS * 2].replace("\r\n", "\n").replace("\r", "\n")
    return _BODY_CONTROL.sub("", text)[:MAX_TEXT_CHARS]


def _walk(msg: Message, defects: list[str]) -> Iterator[tuple[Message, int, Message | None]]:
    """Depth-first parts with their depth and container, stopping at MAX_PARTS and
    MAX_DEPTH."""
    stack: list[tuple[Message, int, Message | None]] = [(msg, 0, None)]
    seen = 0
    while stack:
        part, depth, parent = stack.pop()
        seen += 1
        if seen > MAX_PARTS:
            defects.append(f"more than {MAX_PARTS} MIME parts; the rest ignored")
            return
        if depth > MAX_DEPTH:
            defects.append(f"MIME nesting deeper than {MAX_DEPTH}; the rest ignored")
            continue
        yield part, depth, parent
        if depth and _is_attachment(part):
            continue  # a forwarded message sent as an attachment is not this message's body
        try:
            payload = part.get_payload() if part.is_multipart() else None
        except Exception:
            payload = None
        if isinstance(payload, list):
            stack.extend((child, depth + 1, part) for child in reversed(payload))


def _is_attachment(part: Message) -> bool:
    """An attachment is not the body, even when it is text."""
    try:
        disposition = str(part.get("Content-Disposition") or "").strip().lower()
        named = part.get_filename() is not None
    except Exception:
        return False
    return disposition.startswith("attachment") or named


def _decode_part(part: Message, defects: list[str]) -> str:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        defects.append("undecodable body part")
        return ""
    if not isinstance(data, bytes):
        return ""
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    text, known = _decode_bytes(data[: MAX_TEXT_CHARS * 8], charset)
    if not known:
        defects.append(f"unknown charset {clean_text(str(charset), 40)!r}")
    return text


class _TextExtractor(HTMLParser):
    _BLOCK: ClassVar[set[str]] = {
        "p", "div", "br", "li", "tr", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6",
        "ul", "ol", "table", "hr", "pre", "section", "article", "header", "footer",
    }  # fmt: skip
    _CELL: ClassVar[set[str]] = {"td", "th"}
    _SKIP: ClassVar[set[str]] = {"script", "style", "head", "title", "template"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._skipping = 0  # an unclosed <head> must not hide the whole body
        elif tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")
        elif tag in self._CELL:
            # A tab between cells, so a table's "Email address | jane@..." row keeps its
            # label apart from its answer (forms.field_value reads such rows).
            self.parts.append("\t")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data.replace("\t", " "))  # a tab is only ever a cell's edge


def html_to_text(html: str) -> str:
    """Readable text from HTML: tags dropped, scripts and styles skipped, blocks on new lines."""
    extractor = _TextExtractor()
    try:
        extractor.feed(html[: MAX_TEXT_CHARS * 4])
        extractor.close()
        text = "".join(extractor.parts)
    except Exception:
        text = unescape(re.sub(r"<[^>]*>", " ", html[: MAX_TEXT_CHARS * 4]))
    lines = (
        re.sub(r" *\t[ \t]*", "\t", re.sub(r"[ \xa0]+", " ", line)).strip()
        for line in text.splitlines()
    )
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
