"""Logging: one line per event, text or JSON, with secrets redacted and hostile text defused."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any, Literal

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")

# Libraries whose chatter is not mailbot's log; imapclient at DEBUG would log whole
# message bodies and AUTHENTICATE lines, so it stays quiet even with --verbose.
QUIET_LOGGERS = (
    "alembic",
    "mail.log",
    "imapclient",
    "aiosmtpd",
    "aiosmtplib",
    "sqlalchemy",
    "apscheduler",
)

MAX_MESSAGE = 4000  # journald splits lines over 48 KiB into several entries
MAX_EXCEPTION = 12000
MAX_EXTRA = 500

# --- one line ---------------------------------------------------------------------------

# Anything a terminal, journald or a log shipper might take as a line break or a control:
# C0/C1 controls, DEL, Unicode line/paragraph separators, and bidi overrides (which can
# make a line read differently from what it says).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: str, limit: int | None = None) -> str:
    """text with every line break and control character shown as an escape, e.g. \\r\\n."""
    text = _UNSAFE.sub(_escape, text)
    if limit is not None and len(text) > limit:
        text = f"{text[:limit]}… [{len(text) - limit} more characters]"
    return text


# --- redaction ----------------------------------------------------------------------------

_SECRET_WORDS = r"password|passwd|passphrase|pwd|secret|token|api[_-]?key|credentials?"


def _keep_quotes(match: re.Match[str]) -> str:
    value = match.group(2)
    quote = value[0] if value[0] in "\"'" else ""
    return f"{match.group(1)}{quote}***{quote}"


_REDACTIONS: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    # password=..., "client_secret": "...", refresh_token: ..., PGPASSWORD=...; a key
    # must not follow / . or - so that a path such as /etc/mailbot/imap-password: is kept.
    (
        re.compile(
            rf"""(?ix)
            ((?<![\w/.-])[\w-]*?(?:{_SECRET_WORDS})["']?\s*[:=]\s*)
            ("[^"]*"|'[^']*'|[^\s,;&"'}}\]]+)
            """
        ),
        _keep_quotes,
    ),
    # SMTP "AUTH PLAIN <base64>", IMAP "AUTHENTICATE XOAUTH2 <base64>", and the like.
    (
        re.compile(
            r"(?i)\b(AUTH(?:ENTICATE)?\s+(?:PLAIN|LOGIN|XOAUTH2|OAUTHBEARER|CRAM-MD5)\s+)\S+"
        ),
        r"\1***",
    ),
    # IMAP LOGIN user "password" (protocol traces only: the command is upper case).
    (re.compile(r'\b(LOGIN\s+(?:"(?:[^"\\]|\\.)*"|\S+)\s+)(?:"(?:[^"\\]|\\.)*"|\S+)'), r"\1***"),
    (re.compile(r"(?i)\b(Bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    (re.compile(r"(?i)\b(Authorization:\s*\w+\s+)\S+"), r"\1***"),
    # postgresql+psycopg://user:secret@host/db
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+(@)"), r"\1***\2"),
]


# A word every redaction above needs, in some case. Most log lines hold none of them, and
# looking for them costs a sixth of trying each pattern: every line is logged through here.
_CLUES = ("pass", "pwd", "secret", "token", "key", "credential", "auth", "login", "bearer", "://")


def redact(text: str) -> str:
    """text with anything that looks like a password, token or credential replaced by ***."""
    # Only for ASCII: the patterns ignore case by Unicode's rules, under which "ſ" is an
    # "s" and "K" (Kelvin) a "k", while str.lower() leaves them as they are.
    if text.isascii() and not any(clue in text.lower() for clue in _CLUES):
        return text
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def clean(text: str, limit: int | None = None) -> str:
    """Redacted and on one line: safe to write to any log or stderr."""
    return one_line(redact(text), limit)


# --- the filter ------------------------------------------------------------------------------

# Attributes every LogRecord has; anything else came from extra={...}.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The record's extra={...} fields, such as case, uid and folder."""
    return {
        k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
    }


class OneLineFilter(logging.Filter):
    """Renders, redacts and escapes each record in place, so no handler after it can write
    a second line, a forged line or a secret — whatever a hostile message put in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_mailbot_clean", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format must still give one line, not a traceback
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = clean(message, MAX_MESSAGE)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = clean(record.exc_text, MAX_EXCEPTION)
        if record.stack_info:
            record.stack_info = clean(record.stack_info, MAX_EXCEPTION)
        for key, value in extras(record).items():
            if not isinstance(value, bool | int | float | type(None)):
                setattr(record, key, clean(str(value), MAX_EXTRA))
        record._mailbot_clean = True
        return True


# --- formatters ------------------------------------------------------------------------------

# journald reads a "<N>" prefix as the syslog priority (SyslogLevelPrefix=, on by default).
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def _priority(levelno: int) -> int:
    for level, priority in _PRIORITY.items():
        if levelno >= level:
            return priority
    return 7


def _extra_text(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="'):
        return json.dumps(text, ensure_ascii=False)
    return text


class TextFormatter(logging.Formatter):
    """`2026-11-20T16:45:03.120+00:00 INFO mailbot.pipeline: acknowledged case=FOI-2026-00042`.

    Under journald the timestamp is left out (the journal stamps every line itself) and a
    priority prefix lets `journalctl -p warning` pick out problems.
    """

    def __init__(self, journal: bool = False) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        parts = [f"<{_priority(record.levelno)}>{record.levelname}"] if self.journal else []
        if not self.journal:
            stamp = datetime.fromtimestamp(record.created).astimezone()
            parts += [stamp.isoformat(timespec="milliseconds"), record.levelname]
        parts.append(f"{record.name}: {record.getMessage()}")
        parts += [f"{key}={_extra_text(value)}" for key, value in extras(record).items()]
        if record.exc_text:
            parts.append(f"| {record.exc_text}")
        if record.stack_info:
            parts.append(f"| {record.stack_info}")
        return one_line(" ".join(parts))  # belt and braces, in case the filter was bypassed


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, then extra= fields, exc."""

    def __init__(self, journal: bool = False) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extras(record).items():
            data.setdefault(key, value)  # an extra can never overwrite ts, level, ...
        if record.exc_text:
            data["exc"] = record.exc_text
        if record.stack_info:
            data["stack"] = record.stack_info
        # json.dumps escapes \n and controls; U+2028/2029 are escaped by the filter.
        line = json.dumps(data, ensure_ascii=False, default=str, separators=(", ", ": "))
        return f"<{_priority(record.levelno)}>{line}" if self.journal else line


# --- setup -----------------------------------------------------------------------------------


def is_journal(stream: IO[str]) -> bool:
    """True when stream is journald: $JOURNAL_STREAM names this very file (a child whose
    stderr was redirected inherits the variable, so matching device:inode matters)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the stream given, or to whatever sys.stderr is at the time."""

    def __init__(self, stream: IO[str] | None) -> None:
        super().__init__(stream or sys.stderr)
        self._fixed = stream

    def emit(self, record: logging.LogRecord) -> None:
        if self._fixed is None:
            self.stream = sys.stderr  # follows redirection (and pytest's capture)
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        # logging's own report is a multi-line traceback; keep even this to one line.
        exc = sys.exc_info()[1]
        with contextlib.suppress(Exception):
            sys.stderr.write(f"mailbot: could not write a log line: {clean(repr(exc), 500)}\n")


def setup_logging(
    fmt: LogFormat = "text", verbose: bool = False, stream: IO[str] | None = None
) -> logging.Handler:
    """Send every log record to stderr (or stream), one line each; safe to call again."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    handler = _Handler(stream)
    journal = is_journal(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(journal) if fmt == "json" else TextFormatter(journal))
    handler.addFilter(OneLineFilter())  # on the handler, so library records are caught too
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler
