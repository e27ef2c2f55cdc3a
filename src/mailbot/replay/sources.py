"""Reading an export of past mail: mbox, Maildir, .eml and Outlook .msg files, and PST
(through readpst, from Debian's pst-utils). Each message comes out as its bytes and the
moment it arrived; each file that cannot be read is named, with why, and left out.
"""

from __future__ import annotations

import email
import email.errors
import email.policy
import enum
import logging
import mailbox
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

from mailbot.errors import UsageError

log = logging.getLogger("mailbot.replay")

READPST = "readpst"
READPST_SECONDS = 1800  # a large PST takes minutes; one that takes hours is stuck
OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # an Outlook .msg is an OLE2 file
PST_SIGNATURE = b"!BDN"


class Format(enum.StrEnum):
    MBOX = "mbox"
    MAILDIR = "maildir"
    EML = "eml"
    MSG = "msg"
    PST = "pst"


class ArrivedBy(enum.StrEnum):
    """Where a message's arrival time was read from, best first. Live processing uses
    the server's arrival time (SPEC §1.6), which an export keeps only in these."""

    DELIVERY_TIME = "Outlook delivery time"
    RECEIVED = "Received header"
    DATE = "Date header (no Received header)"


@dataclass(frozen=True)
class PastMessage:
    """One message from an export: where it was, when it arrived, and its bytes, kept
    in a file of the rehearsal's own (an export can be far larger than the memory)."""

    source: str  # the file, and the message's place in it
    file: Path  # its bytes, spooled while the export is open
    arrived: datetime
    arrived_by: ArrivedBy
    order: int = 0  # its place in the export, for messages that arrived together
    sent: bool = False  # from the mailbox's sent folder (officers' replies)

    @property
    def raw(self) -> bytes:
        return self.file.read_bytes()


@dataclass(frozen=True)
class _Read:
    """A message as a reader found it, before it is spooled."""

    source: str
    raw: bytes
    arrived: datetime
    arrived_by: ArrivedBy


@dataclass(frozen=True)
class Skipped:
    """A file, or a message in one, that could not be read: named for the clerk."""

    source: str
    reason: str

    def line(self) -> str:
        return f"skipped {self.source}: {self.reason}"


@dataclass
class Export:
    """The messages read, spooled to a folder removed when the export is closed (it is
    a context manager), and what could not be read."""

    messages: list[PastMessage] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    spool: tempfile.TemporaryDirectory[str] = field(
        default_factory=lambda: tempfile.TemporaryDirectory(prefix="mailbot-replay-mail-")
    )

    def __enter__(self) -> Export:
        return self

    def __exit__(self, *_: object) -> None:
        self.spool.cleanup()

    def add(self, found: _Read, sent: bool) -> None:
        file = Path(self.spool.name) / f"{len(self.messages) + 1}.eml"
        file.write_bytes(found.raw)
        self.messages.append(
            PastMessage(
                found.source, file, found.arrived, found.arrived_by, len(self.messages), sent
            )
        )

    def in_order(self) -> list[PastMessage]:
        """The messages in the order they arrived (the export's order for a tie)."""
        return sorted(self.messages, key=lambda m: (m.arrived, m.order))


# --- what a message says about itself ------------------------------------------------------


def cut_off(raw: bytes) -> str | None:
    """Why a message is evidently incomplete (a file cut short, an mbox entry broken
    off), or None. Only what cannot be a whole message counts: a message that is merely
    odd is read as live processing would read it."""
    if not raw.strip():
        return "empty"
    if b"\n\n" not in raw.replace(b"\r\n", b"\n"):
        return "cut off inside its headers (no blank line before the body)"
    parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
    for part in parsed.walk():
        for defect in part.defects:
            if isinstance(defect, email.errors.CloseBoundaryNotFoundDefect):
                return "cut off in its body (a MIME part never ends)"
    return None


def arrival(raw: bytes) -> tuple[datetime, ArrivedBy] | None:
    """When the message reached the council: the newest Received header (the last
    server's, at the top), else its Date header; None when it has neither."""
    headers = email.message_from_bytes(raw, policy=email.policy.compat32)
    for value in headers.get_all("Received") or []:
        stamp = str(value).rpartition(";")[2].strip()
        when = _instant(stamp)
        if when is not None:
            return when, ArrivedBy.RECEIVED
        break  # the top one only: older hops say when it was sent, not received
    when = _instant(str(headers.get("Date") or ""))
    return (when, ArrivedBy.DATE) if when is not None else None


def _instant(text: str) -> datetime | None:
    if not text:
        return None
    try:
        when = parsedate_to_datetime(" ".join(text.split()))
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


# --- formats -------------------------------------------------------------------------


def sniff(path: Path) -> Format | None:
    """A file's format, from its name, else its first bytes."""
    by_name = {
        ".mbox": Format.MBOX, ".mbx": Format.MBOX, ".eml": Format.EML,
        ".msg": Format.MSG, ".pst": Format.PST, ".ost": Format.PST,
    }  # fmt: skip
    if path.suffix.lower() in by_name:
        return by_name[path.suffix.lower()]
    with path.open("rb") as handle:
        start = handle.read(8)
    if start.startswith(OLE_SIGNATURE):
        return Format.MSG
    if start.startswith(PST_SIGNATURE):
        return Format.PST
    if start.startswith(b"From "):
        return Format.MBOX
    return None


def is_maildir(path: Path) -> bool:
    return all((path / sub).is_dir() for sub in ("cur", "new", "tmp"))


def needs_readpst(paths: list[Path]) -> list[Path]:
    """The PST files among the sources (in folders too): checked before anything runs."""
    found = []
    for path in paths:
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        found += [f for f in files if f.is_file() and f.suffix.lower() in (".pst", ".ost")]
    return found


def check_readpst(paths: list[Path]) -> None:
    pst = needs_readpst(paths)
    if pst and shutil.which(READPST) is None:
        raise UsageError(
            f"{pst[0]}: PST files are read with readpst, which is not installed "
            "(apt-get install pst-utils)"
        )


def read_export(paths: list[Path], sent: list[Path] | None = None) -> Export:
    """Every message in the sources, which may be files or folders of any of the formats,
    mixed; what cannot be read is in `skipped`. Those in `sent` are the mailbox's sent
    folder, read as live processing reads it (for officers' replies)."""
    sent = sent or []
    check_readpst([*paths, *sent])
    for path in [*paths, *sent]:
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
    export = Export()
    try:
        for path, from_sent in [(p, False) for p in paths] + [(p, True) for p in sent]:
            for found in _read_path(path):
                if isinstance(found, Skipped):
                    log.warning("%s", found.line())
                    export.skipped.append(found)
                else:
                    export.add(found, from_sent)
    except BaseException:
        export.spool.cleanup()
        raise
    return export


Found = _Read | Skipped


def _read_path(path: Path) -> Iterator[Found]:
    if path.is_dir():
        if is_maildir(path):
            yield from _read_maildir(path)
            return
        try:
            children = sorted(path.iterdir())
        except OSError as exc:
            yield Skipped(str(path), f"cannot read: {exc.strerror}")
            return
        for child in children:
            if not child.name.startswith("."):
                yield from _read_path(child)
        return
    try:
        kind = sniff(path)
    except OSError as exc:
        yield Skipped(str(path), f"cannot read: {exc.strerror}")
        return
    if kind is None:
        yield Skipped(str(path), "not a mail file (mbox, .eml, .msg or .pst)")
        return
    readers = {
        Format.MBOX: _read_mbox,
        Format.EML: _read_eml,
        Format.MSG: _read_msg,
        Format.PST: _read_pst,
    }
    yield from readers[kind](path)


def _message(source: str, raw: bytes, delivered: datetime | None = None) -> Found:
    """A message read from a file, or why it cannot be used."""
    broken = cut_off(raw)
    if broken:
        return Skipped(source, broken)
    if delivered is not None:
        return _Read(source, raw, delivered.astimezone(UTC), ArrivedBy.DELIVERY_TIME)
    arrived = arrival(raw)
    if arrived is None:
        return Skipped(source, "no Received or Date header: when it arrived is unknown")
    return _Read(source, raw, *arrived)


def _read_eml(path: Path) -> Iterator[Found]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        yield Skipped(str(path), f"cannot read: {exc.strerror}")
        return
    yield _message(str(path), raw)


def _read_mbox(path: Path) -> Iterator[Found]:
    try:
        box = mailbox.mbox(path, factory=None, create=False)
        keys = box.keys()
    except (OSError, mailbox.Error) as exc:
        yield Skipped(str(path), f"cannot read: {getattr(exc, 'strerror', None) or exc}")
        return
    try:
        for number, key in enumerate(keys, 1):
            source = f"{path} (message {number})"
            try:
                raw = box.get_bytes(key)
            except (OSError, KeyError) as exc:
                yield Skipped(source, f"cannot read: {exc}")
                continue
            yield _message(source, raw)
    finally:
        box.close()


def _read_maildir(path: Path) -> Iterator[Found]:
    """A Maildir: each file in new/ and cur/ is one message (tmp/ holds deliveries
    never finished)."""
    for sub in ("new", "cur"):
        try:
            files = sorted(f for f in (path / sub).iterdir() if not f.name.startswith("."))
        except OSError as exc:
            yield Skipped(str(path / sub), f"cannot read: {exc.strerror}")
            continue
        for file in files:
            yield from _read_eml(file)


def _read_msg(path: Path) -> Iterator[Found]:
    """An Outlook .msg file through extract-msg: its message as MIME, and the time
    Exchange delivered it (PR_MESSAGE_DELIVERY_TIME) when it has one."""
    import extract_msg  # only for exports with .msg files: it is slow to import

    logging.getLogger("extract_msg").setLevel(logging.CRITICAL)  # we say what is wrong
    try:
        msg = extract_msg.openMsg(str(path), delayAttachments=True)
    except Exception as exc:
        yield Skipped(str(path), f"not a readable Outlook message ({_why(exc)})")
        return
    try:
        if not hasattr(msg, "asEmailMessage"):
            yield Skipped(str(path), f"an Outlook {type(msg).__name__}, not a message")
            return
        mime = msg.asEmailMessage()
        if mime.get("Content-Transfer-Encoding") and mime.is_multipart():
            del mime["Content-Transfer-Encoding"]  # the original's, not the container's
        raw = mime.as_bytes(policy=email.policy.SMTP)
        delivered = getattr(msg, "receivedTime", None)
    except Exception as exc:
        yield Skipped(str(path), f"not a readable Outlook message ({_why(exc)})")
        return
    finally:
        msg.close()
    if isinstance(delivered, datetime) and delivered.tzinfo is None:
        delivered = delivered.replace(tzinfo=UTC)
    yield _message(str(path), raw, delivered if isinstance(delivered, datetime) else None)


def _read_pst(path: Path) -> Iterator[Found]:
    """A PST file, written out by readpst as one .eml file per message in a folder of
    ours, read as .eml files and removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="mailbot-pst-") as out:
        try:
            done = subprocess.run(
                [READPST, "-e", "-q", "-b", "-8", "-te", "-o", out, str(path)],
                capture_output=True,
                timeout=READPST_SECONDS,
                check=False,
                env={**os.environ, "LC_ALL": "C.UTF-8"},
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            yield Skipped(str(path), f"readpst could not read it: {exc}")
            return
        said = " ".join(done.stderr.decode("utf-8", "replace").split())[:200]
        if done.returncode != 0:
            why = f"exit {done.returncode}" + (f": {said}" if said else "")
            yield Skipped(str(path), f"readpst could not read it ({why})")
            return
        for eml in sorted(Path(out).rglob("*")):
            if eml.is_file() and not eml.name.startswith("."):
                inside = eml.relative_to(out)
                raw = eml.read_bytes()
                yield _message(f"{path} ({inside})", raw)


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
