"""Bounces: which of our messages a delivery report is about, and what happened to it (pure).

A delivery status notification (RFC 3464: multipart/report with message/delivery-status)
carries the returned message's headers (text/rfc822-headers, or the whole message as
message/rfc822; RFC 6533's message/global* for international mail). Their Message-ID
names the outbox row; the status fields say whether delivery failed for good or is only
delayed. Mail servers that send no standard report (older qmail, some appliances) are
read as a bounce only when a mail system sends them and they quote a Message-ID header.

A report can be forged, but only by someone who saw the Message-ID: the recipient of our
message, whose own message it marks as bounced. Never raises.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from email.message import Message

MAX_BYTES = 2_000_000  # a report is small; the returned message's body is not needed
_RETURNED = {
    "text/rfc822-headers",
    "message/rfc822",
    "message/rfc822-headers",
    "message/global",
    "message/global-headers",
}
_MSGID_HEADER = re.compile(r"^message-id:\s*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)
_STATUS = re.compile(r"^\s*([245])\.\d{1,3}\.\d{1,3}")


@dataclass(frozen=True)
class Bounce:
    """What a delivery report says about one of our messages."""

    message_ids: tuple[str, ...]  # the returned message's Message-ID(s), first first
    failed: bool  # False: delivery is only delayed (Action: delayed, a 4.x.x status)
    recipient: str = ""  # the Final-Recipient, without its "rfc822;"
    status: str = ""  # "5.1.1"
    diagnostic: str = ""  # "smtp; 550 5.1.1 <jane@example.com>: user unknown"

    def describe(self) -> str:
        """One line for the case's history: the status and the remote server's words."""
        parts = [p for p in (self.status, self.diagnostic) if p]
        return " ".join(" ".join(parts).split())[:300] or "no reason given"


def read_bounce(raw: bytes, *, from_mail_system: bool = False) -> Bounce | None:
    """The report in `raw`, if it is one and names the message it returns.

    `from_mail_system`: the sender is a mail system (mailer-daemon, postmaster, an empty
    Return-Path): a report in plain text is read too.
    """
    try:
        msg = email.message_from_bytes(raw[:MAX_BYTES], policy=email.policy.compat32)
        return _read(msg, from_mail_system)
    except Exception:  # a damaged report is no report; the message is screened as ever
        return None


def _read(msg: Message, from_mail_system: bool) -> Bounce | None:
    is_report = msg.get_content_type() == "multipart/report"
    if not (is_report or from_mail_system):
        return None
    ids: list[str] = []
    fields: dict[str, str] = {}
    for part in _parts(msg):
        kind = part.get_content_type()
        if kind in ("message/delivery-status", "message/global-delivery-status"):
            fields = _status_fields(part)
        elif kind in _RETURNED:
            ids += _returned_ids(part)
        elif not is_report and kind == "text/plain":
            ids += _MSGID_HEADER.findall(_text(part))  # a plain-text bounce quoting it
    ids = list(dict.fromkeys(ids))
    if not ids:
        return None
    action = fields.get("action", "").lower()
    status = fields.get("status", "")
    found = _STATUS.match(status)
    delayed = action in ("delayed", "delivered", "relayed", "expanded") or (
        found is not None and found.group(1) in "24"
    )
    return Bounce(
        message_ids=tuple(ids[:5]),
        failed=not delayed,
        recipient=fields.get("final-recipient", "").partition(";")[2].strip()[:254],
        status=status.split()[0][:20] if status else "",
        diagnostic=fields.get("diagnostic-code", "")[:300],
    )


def _parts(msg: Message, limit: int = 50) -> list[Message]:
    """The report's parts, without walking into the returned message's own parts."""
    found: list[Message] = []
    stack = [msg]
    while stack and len(found) < limit:
        part = stack.pop(0)
        found.append(part)
        if part.is_multipart() and part.get_content_maintype() == "multipart":
            payload = part.get_payload()
            stack.extend(p for p in payload if isinstance(p, Message))
    return found


def _status_fields(part: Message) -> dict[str, str]:
    """The delivery-status fields, per-message and the first recipient's, lower-cased."""
    fields: dict[str, str] = {}
    payload = part.get_payload()
    groups = payload if isinstance(payload, list) else []
    if not groups:  # parsed as text: field groups, one a paragraph
        text = _text(part)
        groups = [email.message_from_string(chunk) for chunk in re.split(r"\n\s*\n", text)]
    for group in groups[:3]:
        if not isinstance(group, Message):
            continue
        for name, value in group.items():
            fields.setdefault(name.lower(), " ".join(str(value).split()))
    return fields


def _returned_ids(part: Message) -> list[str]:
    payload = part.get_payload()
    if isinstance(payload, list):  # message/rfc822, parsed into a message
        return [str(m["Message-ID"]).strip() for m in payload[:1] if m["Message-ID"]]
    return _MSGID_HEADER.findall(_text(part))


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload[:MAX_BYTES].decode("utf-8", "replace").replace("\r\n", "\n")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""
