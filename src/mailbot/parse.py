"""Parse: raw message bytes into a plain ParsedMessage, defensively, never raising."""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parseaddr
from html.parser import HTMLParser
from typing import ClassVar

# Limits that keep one hostile message from costing more than it is worth.
MAX_PARTS = 500
MAX_DEPTH = 20
MAX_TEXT_CHARS = 200_000
MAX_HEADER_CHARS = 2_000

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# A practical addr-spec: no spaces or specials; the domain may be a single label
# (root@localhost is a real sender on a council's internal relay).
_ADDRESS = re.compile(
    r"^[^@\s<>()\[\],;:\"\\]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*$"
)
_MSGID = re.compile(r"<[^<>\s]+>")


def clean_text(value: str, limit: int = 200) -> str:
    """One line of text safe to put in a header: no CR, LF or control characters, capped."""
    collapsed = _CONTROL.sub(" ", value).strip()
    collapsed = re.sub(r" {2,}", " ", collapsed)
    return collapsed[:limit]


def valid_address(addr: str | None) -> str | None:
    """The address lower-cased when it is a plausible addr-spec, else None."""
    if not addr:
        return None
    addr = addr.strip().lower().rstrip(".")
    return addr if len(addr) <= 254 and _ADDRESS.match(addr) else None


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
    read, so headers are decoded here one by one inside try blocks instead.
    """
    defects: list[str] = []
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    except Exception as exc:  # the parser is lenient; this is a last resort
        defects.append(f"unparseable: {type(exc).__name__}")
        msg = Message()
    headers = _decoded_headers(msg, defects)
    first = dict(reversed(headers))  # first occurrence wins
    # Addresses are split before decoding: a decoded display name may hold commas.
    raw_first = _raw_headers(msg)

    from_name, from_addr = _sender(raw_first.get("from", []))
    reply_to = next(iter(_addresses(raw_first.get("reply-to", [""])[0])), None)
    text = _body_text(msg, defects)
    own_ids = _message_ids(first.get("message-id", ""))
    return ParsedMessage(
        message_id=own_ids[0] if own_ids else None,
        subject=clean_text(first.get("subject", ""), 500),
        from_addr=from_addr,
        from_name=from_name,
        reply_to=reply_to,
        to_addrs=_addresses(",".join(raw_first.get("to", []))),
        cc_addrs=_addresses(",".join(raw_first.get("cc", []))),
        in_reply_to=_message_ids(first.get("in-reply-to", "")),
        references=_message_ids(first.get("references", ""))[-50:],
        content_type=_content_type(msg),
        text=text,
        content_hash=hashlib.sha256(raw).hexdigest(),
        truncated=truncated,
        defects=tuple(defects),
        headers=tuple(headers),
    )


def _decoded_headers(msg: Message, defects: list[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, value in msg.items()[:500]:
        key = str(name).strip().lower()
        decoded = _decode(str(value))
        out.append((key, clean_text(decoded, MAX_HEADER_CHARS)))
    return out


def _raw_headers(msg: Message) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in msg.items()[:500]:
        key = str(name).strip().lower()
        if key in {"from", "reply-to", "to", "cc"}:
            out.setdefault(key, []).append(str(value)[: MAX_HEADER_CHARS * 5])
    return out


def _decode(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except Exception:
        return value


def _sender(values: list[str]) -> tuple[str, str | None]:
    """Display name and address of the first From header that holds a valid address."""
    for value in values[:5]:
        try:
            name, addr = parseaddr(value)
        except Exception:
            continue
        if valid_address(addr):
            return clean_text(_decode(name), 100), valid_address(addr)
    return "", None


def _addresses(value: str) -> tuple[str, ...]:
    try:
        pairs = getaddresses([value])
    except Exception:
        return ()
    found = (valid_address(addr) for _, addr in pairs[:100])
    return tuple(addr for addr in found if addr)


def _message_ids(value: str) -> tuple[str, ...]:
    return tuple(_MSGID.findall(value)[:100])


def _content_type(msg: Message) -> str:
    try:
        return msg.get_content_type()
    except Exception:
        return "text/plain"


def _body_text(msg: Message, defects: list[str]) -> str:
    """Readable text: the first text/plain part, else HTML turned into text."""
    plain: str | None = None
    html: str | None = None
    for part, depth in _walk(msg, defects):
        if depth > MAX_DEPTH:
            defects.append("MIME nesting too deep")
            break
        if part.is_multipart() or _is_attachment(part):
            continue
        ctype = _content_type(part)
        if ctype == "text/plain" and plain is None:
            plain = _decode_part(part, defects)
        elif ctype == "text/html" and html is None:
            html = _decode_part(part, defects)
        if plain is not None:
            break
    if plain is not None and plain.strip():
        return plain[:MAX_TEXT_CHARS]
    if html is not None:
        return html_to_text(html)[:MAX_TEXT_CHARS]
    return (plain or "")[:MAX_TEXT_CHARS]


def _walk(msg: Message, defects: list[str]):
    """Depth-first parts with their depth, stopping at MAX_PARTS."""
    stack: list[tuple[Message, int]] = [(msg, 0)]
    seen = 0
    while stack:
        part, depth = stack.pop()
        seen += 1
        if seen > MAX_PARTS:
            defects.append(f"more than {MAX_PARTS} MIME parts; the rest ignored")
            return
        yield part, depth
        if part.is_multipart() and depth <= MAX_DEPTH:
            payload = part.get_payload()
            if isinstance(payload, list):
                stack.extend((child, depth + 1) for child in reversed(payload))


def _is_attachment(part: Message) -> bool:
    try:
        disposition = (part.get("Content-Disposition") or "").lower()
    except Exception:
        return False
    return disposition.startswith("attachment")


def _decode_part(part: Message, defects: list[str]) -> str:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        defects.append("undecodable body part")
        return ""
    if not isinstance(data, bytes):
        return ""
    try:
        charset = part.get_content_charset() or "utf-8"
    except Exception:
        charset = "utf-8"
    try:
        return data.decode(charset, errors="replace")
    except (LookupError, ValueError):
        defects.append(f"unknown charset {clean_text(charset, 40)!r}; read as UTF-8")
        return data.decode("utf-8", errors="replace")


class _TextExtractor(HTMLParser):
    _BLOCK: ClassVar[set[str]] = {"p", "div", "br", "li", "tr", "blockquote", "h1", "h2", "h3"}
    _SKIP: ClassVar[set[str]] = {"script", "style", "head", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Readable text from HTML: tags dropped, scripts and styles skipped, blocks on new lines."""
    extractor = _TextExtractor()
    try:
        extractor.feed(html[: MAX_TEXT_CHARS * 4])
        extractor.close()
    except Exception:
        return re.sub(r"<[^>]*>", " ", html)
    text = "".join(extractor.parts)
    lines = (re.sub(r"[ \t\xa0]+", " ", line).strip() for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
