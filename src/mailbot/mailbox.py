"""Mailbox: the only module that speaks IMAP — select, find new UIDs, fetch with BODY.PEEK, IDLE."""

from __future__ import annotations

import contextlib
import imaplib
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from imapclient.imapclient import SEEN, SENT

from mailbot.config import ImapConfig

if TYPE_CHECKING:
    from mailbot.app import App

log = logging.getLogger("mailbot.mailbox")

FETCH_BATCH = 50


class MailboxError(Exception):
    """The IMAP server could not be reached, refused us, or dropped the connection."""


class FolderMissing(MailboxError):
    """A configured folder is not on the server: a setting to correct (exit 1)."""


@dataclass(frozen=True)
class SentFolder:
    """Which folder to read for officers' replies, and what is wrong with the setting."""

    name: str | None  # None: no sent folder to read
    problem: str | None = None  # for the clerk and the log, naming the setting


def choose_sent_folder(
    setting: str | None, exists: bool, marked: str | None, key: str = "imap.sent"
) -> SentFolder:
    """The sent folder from the setting `key`, whether a folder of that name `exists`, and
    the folder the server `marked` as the sent folder (RFC 6154 \\Sent, or a common name).

    Not given: the marked one. Given and there: it. Given and missing: the marked one,
    reported, so the officers' replies are still seen; with none marked, none, reported.
    """
    if setting == "":
        return SentFolder(None)  # turned off
    if setting is None:
        return SentFolder(marked)
    if exists:
        return SentFolder(setting)
    if marked is not None:
        return SentFolder(
            marked,
            f"{key}: folder {setting!r} not found; reading {marked!r}, which the server "
            f"marks as the sent folder, instead (set {key} = {marked!r} to say so)",
        )
    return SentFolder(
        None,
        f"{key}: folder {setting!r} not found, and the server marks no folder as the sent "
        "folder: officers' replies filed there are not seen",
    )


def folder_key(cfg: ImapConfig, folder: str) -> str:
    """A folder's name in the database, "account/folder": several mailboxes share it."""
    return f"{cfg.username or cfg.host}/{folder}"


@dataclass(frozen=True)
class FetchedMessage:
    """One message as the server holds it; `raw` is cut at the size cap when `truncated`."""

    folder: str  # folder_key(), e.g. "foi@council.example.gov.uk/INBOX"
    uidvalidity: int
    uid: int
    internal_date: datetime
    size: int
    raw: bytes
    truncated: bool


def tls_context(cafile: str | None = None) -> ssl.SSLContext:
    """Certificates and host names are always verified; a private CA may be added."""
    return ssl.create_default_context(cafile=cafile)


class Mailbox:
    """A logged-in IMAP connection to one council mailbox."""

    def __init__(self, cfg: ImapConfig, password: str) -> None:
        self.cfg = cfg
        self._password = password
        self._client: IMAPClient | None = None
        self.selected: str | None = None
        # The sent folder as last found (pipeline.check_folders), and when (monotonic).
        self.sent_folder: SentFolder | None = None
        self.folders_checked_at = 0.0

    def connect(self) -> None:
        cfg = self.cfg
        context = tls_context(cfg.ca_path)
        try:
            client = IMAPClient(
                cfg.host,
                port=cfg.port,
                ssl=cfg.security == "tls",
                ssl_context=context,
                timeout=cfg.timeout,
            )
            if cfg.security == "starttls":
                client.starttls(context)
            # Aware datetimes straight from the server: deadlines use INTERNALDATE (SPEC §1.6).
            client.normalise_times = False
            if cfg.auth == "xoauth2":
                client.oauth2_login(cfg.username, self._password)
            else:
                client.login(cfg.username, self._password)
        except ssl.SSLCertVerificationError as exc:
            raise MailboxError(
                f"IMAP {cfg.host}:{cfg.port}: certificate not trusted: {exc.verify_message}"
            ) from exc
        except (OSError, IMAPClientError) as exc:
            raise MailboxError(f"IMAP {cfg.host}:{cfg.port}: {exc}") from exc
        _keepalive(client)
        self._client = client
        self.selected = None

    @property
    def client(self) -> IMAPClient:
        if self._client is None:
            raise MailboxError("not connected")
        return self._client

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):  # already gone; nothing to tidy
                self._client.logout()
            self._client = None

    def select(self, folder: str) -> int:
        """Select a folder read-only (we never change flags); returns its UIDVALIDITY."""
        try:
            info = self.client.select_folder(folder, readonly=True)
        except IMAPClientError as exc:
            raise MailboxError(f"cannot open folder {folder!r}: {exc}") from exc
        self.selected = folder
        return int(info[b"UIDVALIDITY"])

    def folder_exists(self, folder: str) -> bool:
        try:
            return bool(self.client.folder_exists(folder))
        except IMAPClientError as exc:
            raise MailboxError(f"cannot list folders: {exc}") from exc

    def marked_sent_folder(self) -> str | None:
        """The folder the server marks \\Sent (RFC 6154 SPECIAL-USE), else one with a
        common sent folder's name ("Sent Items", "Sent Messages" …), else None."""
        try:
            found = self.client.find_special_folder(SENT)
        except IMAPClientError as exc:
            raise MailboxError(f"cannot list folders: {exc}") from exc
        return found.decode() if isinstance(found, bytes) else found

    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs above the watermark ("n:*" also returns the last message, so filter)."""
        uids = self.client.search(["UID", f"{last_uid + 1}:*"])
        return sorted(uid for uid in uids if uid > last_uid)

    def uids_since(self, day: datetime) -> list[int]:
        return sorted(self.client.search(["SINCE", day.date()]))

    def uids_with_message_id(self, message_id: str) -> list[int]:
        """UIDs in the selected folder of messages with this Message-ID header."""
        return sorted(self.client.search(["HEADER", "Message-ID", message_id]))

    def holds_message_id(self, folder: str, message_id: str) -> bool:
        """A message with this Message-ID is in `folder` (opened read-only to look)."""
        try:
            self.select(folder)
            return bool(self.uids_with_message_id(message_id))
        except IMAPClientError as exc:
            raise MailboxError(f"cannot search folder {folder!r}: {exc}") from exc

    def append_copy(self, folder: str, raw: bytes, when: datetime | None) -> None:
        """File `raw` in `folder` as already read (\\Seen), dated `when`: a copy of
        something sent, exactly as it went. A refusal of this message raises
        IMAPClientError; a lost connection, MailboxError."""
        try:
            self.client.append(folder, raw, flags=(SEEN,), msg_time=when)
        except (OSError, imaplib.IMAP4.abort) as exc:
            raise MailboxError(f"cannot file a copy in {folder!r}: {exc}") from exc

    def highest_uid(self) -> int:
        uids = self.client.search(["ALL"])
        return max(uids) if uids else 0

    def fetch(
        self, uidvalidity: int, uids: list[int], max_bytes: int
    ) -> Iterator[list[FetchedMessage]]:
        """Messages in UID order, FETCH_BATCH at a time; anything over `max_bytes` is
        fetched only up to the cap."""
        folder = folder_key(self.cfg, self.selected or "")
        for start in range(0, len(uids), FETCH_BATCH):
            batch = uids[start : start + FETCH_BATCH]
            fetched = []
            meta = self.client.fetch(batch, ["INTERNALDATE", "RFC822.SIZE"])
            small = [u for u in batch if u in meta and meta[u][b"RFC822.SIZE"] <= max_bytes]
            bodies = self.client.fetch(small, ["BODY.PEEK[]"]) if small else {}
            for uid in batch:
                if uid not in meta:
                    continue  # expunged meanwhile
                size = int(meta[uid][b"RFC822.SIZE"])
                if uid in bodies:
                    raw, truncated = bodies[uid].get(b"BODY[]") or b"", False
                else:
                    # A partial fetch: headers and the start of the body are enough to
                    # open the case; the 40 MB attachment is never loaded whole.
                    part = self.client.fetch([uid], [f"BODY.PEEK[]<0.{max_bytes}>"]).get(uid, {})
                    # The answer is keyed b"BODY[]<0>", beside b"SEQ".
                    found = [v for k, v in part.items() if k.startswith(b"BODY[")]
                    raw = found[0] if found and isinstance(found[0], bytes) else b""
                    truncated = True
                fetched.append(
                    FetchedMessage(
                        folder=folder,
                        uidvalidity=uidvalidity,
                        uid=uid,
                        internal_date=_aware(meta[uid][b"INTERNALDATE"]),
                        size=size,
                        raw=raw,
                        truncated=truncated,
                    )
                )
            if fetched:
                yield fetched

    def noop(self) -> None:
        self.client.noop()


class MailboxLost(MailboxError):
    """One of several mailboxes being watched dropped its connection."""

    def __init__(self, mailbox: Mailbox, reason: str) -> None:
        super().__init__(reason)
        self.mailbox = mailbox


def wait_for_mail(mailboxes: list[Mailbox], seconds: float, stop: threading.Event) -> list[Mailbox]:
    """IDLE on every mailbox at once, for up to `seconds` or until `stop` is set.

    Returns the mailboxes that may have new mail: those the server told of new mail, and
    any whose server cannot IDLE (they are polled, at least once a minute). One thread
    watches them all, so mail is still decided one message at a time. A connection that
    has died raises MailboxLost naming its mailbox.
    """
    idling: list[Mailbox] = []
    polled: list[Mailbox] = []
    for mailbox in mailboxes:
        (idling if b"IDLE" in mailbox.client.capabilities() else polled).append(mailbox)
    end = time.monotonic() + (min(seconds, 60) if polled else seconds)
    started: list[Mailbox] = []
    try:
        for mailbox in idling:
            mailbox.client.idle()
            started.append(mailbox)
        silences = dict.fromkeys(idling, 0)
        while not stop.is_set() and (left := end - time.monotonic()) > 0:
            if not idling:
                stop.wait(left)
                break
            sockets = {mailbox.client.socket(): mailbox for mailbox in idling}
            readable, _, _ = select.select(list(sockets), [], [], min(1.0, left))
            arrived = []
            for sock in readable:
                mailbox = sockets[sock]
                responses = mailbox.client.idle_check(timeout=0)
                if any(r[1] in (b"EXISTS", b"RECENT") for r in responses if len(r) > 1):
                    arrived.append(mailbox)
                # A closed socket is readable yet says nothing, again and again.
                silences[mailbox] = 0 if responses else silences[mailbox] + 1
                if silences[mailbox] >= 3:
                    raise MailboxLost(mailbox, "the IMAP server closed the connection")
            if arrived:
                return arrived + polled
        return polled
    finally:
        for mailbox in started:
            with contextlib.suppress(IMAPClientError, OSError):  # gone already: reconnect
                mailbox.client.idle_done()


def _keepalive(client: IMAPClient) -> None:
    """TCP keepalive: a connection that died silently (a firewall dropping it, say) is
    noticed within about two minutes instead of at the next IDLE renewal."""
    sock = client.socket()
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 15)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 4)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:  # servers that omit the zone mean UTC in practice
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def backoff_delays(first: float = 1.0, limit: float = 300.0) -> Iterator[float]:
    """1, 2, 4 … seconds, capped: how long to wait between reconnection attempts."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, limit)


def sign_in(app: App, box: ImapConfig) -> Mailbox:
    """A connected mailbox, signed in with its password or (xoauth2) a token renewed
    here when due: the daemon, `mailbot release` and the sent-folder copies all sign in
    this way."""
    if box.auth == "xoauth2":
        assert app.tokens is not None  # the config refuses xoauth2 without [oauth]
        secret = app.tokens.for_user(box.username).token()
    else:
        secret = box.password()
    mailbox = Mailbox(box, secret)
    mailbox.connect()
    return mailbox
