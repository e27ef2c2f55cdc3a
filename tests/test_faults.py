"""Faults: dropped IMAP, Dovecot restarts, SMTP refusals and timeouts, locked or full database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import select
import signal
import socket
import sqlite3
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import event
from sqlalchemy import select as sql_select
from sqlalchemy.engine import Engine

from mailbot.app import App
from mailbot.cli import main
from mailbot.clock import FixedClock
from mailbot.config import load_config
from mailbot.daemon import run_once
from mailbot.devservers import (
    Account,
    CapturedMessage,
    LocalDovecot,
    SmtpCapture,
    free_port,
    local_config,
)
from mailbot.migrations import upgrade
from mailbot.outbox.sending import SendingPaused
from mailbot.store import CaseEvent, InboundMessage, OutboxMessage
from tests.conftest import (
    COUNCIL,
    START_FROM,
    mailbot,
    resident_mail,
    to_residents,
    wait_for,
)

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
ARRIVED = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
ACK = "acknowledgement"


# -- helpers ---------------------------------------------------------------------------


def residents(n: int, prefix: str = "r") -> list[str]:
    # Ten to a domain, as a day's mail spreads over many: more than 20 from one domain
    # would meet the per-domain cap, which is not what these tests are about.
    return [f"{prefix}{i:03d}@example{i // 10}.com" for i in range(n)]


def deliver(account: Account | LocalDovecot, who: list[str], body_kb: int = 0) -> None:
    padding = "\n" + ("Lorem ipsum dolor sit amet. " * 37 + "\n") * body_kb if body_kb else ""
    for n, sender in enumerate(who):
        raw = resident_mail(
            sender=sender,
            message_id=f"<{sender}>",
            subject=f"Question {n}",
            body="When will the pothole be fixed?" + padding,
        )
        account.append(raw, when=ARRIVED)


def run_cli(config: Path, *args: str) -> tuple[int, str]:
    proc = mailbot(config, "run", "--once", *args)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err.decode()


def inbound(app: App) -> list[InboundMessage]:
    """What was read from the inbox (not the copies of what was sent, read back from
    the sent folder as mailbot's own)."""
    with app.sessions() as s:
        return list(
            s.scalars(
                sql_select(InboundMessage)
                .where(InboundMessage.folder.endswith("/INBOX"))
                .order_by(InboundMessage.id)
            )
        )


def ack_rows(app: App) -> list[OutboxMessage]:
    with app.sessions() as s:
        return list(s.scalars(sql_select(OutboxMessage).where(OutboxMessage.kind == ACK)))


def acked(smtp: SmtpCapture) -> list[str]:
    return sorted(m.rcpt_tos[0] for m in to_residents(smtp))


def assert_exactly_once(app: App, smtp: SmtpCapture, who: list[str]) -> None:
    """Every message recorded once with a case, every resident acknowledged once."""
    assert acked(smtp) == sorted(who)
    rows = inbound(app)
    keys = [(m.uidvalidity, m.uid) for m in rows]
    assert len(keys) == len(set(keys))
    opened = sorted(m.from_addr for m in rows if m.outcome == "case-opened")
    assert opened == sorted(who)
    assert {r.status for r in ack_rows(app)} == {"sent"}


def tune(config: Path, section: str, **values: object) -> None:
    """Add settings to one table of a generated mailbot.toml (they go right under its header)."""
    lines = "".join(f"{key} = {value!r}\n".replace("'", '"') for key, value in values.items())
    text = config.read_text()
    assert f"[{section}]\n" in text
    config.write_text(text.replace(f"[{section}]\n", f"[{section}]\n{lines}", 1))


def point_smtp_at(config: Path, port: int) -> None:
    text = config.read_text()
    section = re.compile(r"(\[smtp\]\n(?:[^\[\n].*\n)*?port = )\d+")
    assert section.search(text)
    config.write_text(section.sub(rf"\g<1>{port}", text, count=1))


def load_app(config: Path, clock: FixedClock) -> App:
    return App.load(load_config(config), clock)


# -- a TCP relay in front of Dovecot that can drop its connections ---------------------


class Relay:
    """Forwards 127.0.0.1:port to an upstream port. It can cut the first connection after
    `cut_after` bytes from the server, reset or close every open connection, or go silent
    (a network black hole). Threads are daemons and it stops itself after `lifetime`."""

    def __init__(self, upstream: int, cut_after: int | None = None, lifetime: float = 180) -> None:
        self.upstream = upstream
        self.budget = cut_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.cuts = 0
        self._pairs: list[tuple[socket.socket, socket.socket, threading.Event]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()
        timer = threading.Timer(lifetime, self.close)
        timer.daemon = True
        timer.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            silent = threading.Event()
            with self._lock:
                self.accepted += 1
                self._pairs.append((client, server, silent))
            for src, dst, down in ((client, server, False), (server, client, True)):
                args = (src, dst, down, silent, client)
                threading.Thread(target=self._pump, args=args, daemon=True).start()

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        downstream: bool,
        silent: threading.Event,
        client: socket.socket,
    ) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([src], [], [], 0.2)
                if not ready:
                    continue
                data = src.recv(65536)
            except (OSError, ValueError):
                break
            if not data:
                break
            if silent.is_set():
                continue  # swallowed: neither end hears anything again
            with self._lock:
                budget = self.budget if downstream else None
                if budget is not None:
                    self.budget = budget - len(data) if len(data) < budget else None
            if budget is not None and len(data) >= budget:
                with contextlib.suppress(OSError):
                    dst.sendall(data[:budget])
                self.cuts += 1
                self._drop(client, reset=True)
                break
            try:
                dst.sendall(data)
            except OSError:
                break
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def _drop(self, client: socket.socket, reset: bool) -> None:
        with self._lock:
            pairs = [p for p in self._pairs if p[0] is client]
            self._pairs = [p for p in self._pairs if p[0] is not client]
        for c, s, _ in pairs:
            if reset:  # RST rather than FIN, as a failing router or NAT timeout gives
                with contextlib.suppress(OSError):
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            for sock in (c, s):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def drop_all(self, how: str) -> int:
        """Reset, close or silence every open connection; new ones pass as before."""
        with self._lock:
            pairs = list(self._pairs)
        for client, _, silent in pairs:
            if how == "silence":
                silent.set()
            else:
                self._drop(client, reset=how == "reset")
        return len(pairs)

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        self.drop_all("close")


@pytest.fixture
def relayed(
    tmp_path: Path, dovecot: Account, smtp: SmtpCapture, database_url: str
) -> Iterator[Callable[..., tuple[Path, App, Relay]]]:
    """mailbot configured to reach Dovecot only through a Relay."""
    made: list[tuple[App, Relay]] = []

    def make(**relay_args: object) -> tuple[Path, App, Relay]:
        relay = Relay(dovecot.port, **relay_args)  # type: ignore[arg-type]
        folder = tmp_path / f"relayed{len(made)}"
        folder.mkdir()
        through = Account(relay.port, dovecot.user, dovecot.password)
        config = local_config(
            folder,
            through,
            smtp,
            mailbox_address=COUNCIL,
            database_url=database_url,
            start_from=START_FROM,
        )
        upgrade(database_url)
        app = load_app(config, FixedClock(NOW))
        made.append((app, relay))
        return config, app, relay

    yield make
    for app, relay in made:
        relay.close()
        app.engine.dispose()


# -- IMAP ------------------------------------------------------------------------------


def test_connection_cut_mid_fetch_loses_and_repeats_nothing(relayed, dovecot, smtp):
    who = residents(80)
    deliver(dovecot, who, body_kb=24)  # ~2 MB: the first FETCH batch of 50 is ~1.2 MB
    config, app, relay = relayed(cut_after=1_600_000)  # inside the second batch

    code, err = run_cli(config, "--now", NOW.isoformat())
    assert relay.cuts == 1
    assert code == 2, err
    assert err.splitlines()[-1].startswith("mailbot: ")  # one clear line, no traceback
    assert "Traceback" not in err
    assert 0 < len(inbound(app)) < len(who)  # cut after some were committed
    # What was decided before the cut is acknowledged now, not held up by the mailbox.
    assert sorted(acked(smtp)) == sorted(m.from_addr for m in inbound(app))

    code, err = run_cli(config, "--now", NOW.isoformat())
    assert code == 0, err
    assert_exactly_once(app, smtp, who)


@pytest.mark.parametrize("how", ["reset", "close", "silence"])
def test_daemon_reconnects_after_the_connection_drops_mid_idle(how, relayed, dovecot, smtp):
    config, app, relay = relayed()
    if how == "silence":
        # A black hole is noticed only when IDLE is renewed and the answer never comes.
        tune(config, "imap", idle_seconds=10, timeout=3)
    proc = mailbot(config, "run")
    try:
        deliver(dovecot, ["before@example.com"])
        # Generous: mail that lands mid-cycle can wait for the 60 s tick (see the
        # lost-wakeup test below); this test is about the reconnection.
        wait_for(lambda: len(to_residents(smtp)) == 1, timeout=90)
        time.sleep(0.5)  # back in IDLE
        assert relay.drop_all(how) >= 1
        deliver(dovecot, ["after@example.com"])
        wait_for(lambda: len(to_residents(smtp)) == 2, timeout=90)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert "reconnecting" in err.decode()
    assert relay.accepted >= 2
    assert_exactly_once(app, smtp, ["after@example.com", "before@example.com"])


@pytest.mark.parametrize("rebuild_index", [False, True], ids=["restart", "index-rebuilt"])
def test_dovecot_restarted_between_two_runs(rebuild_index, tmp_path, smtp, database_url):
    server = LocalDovecot(user=COUNCIL).start()
    try:
        config = local_config(
            tmp_path, server, smtp, database_url=database_url, start_from=START_FROM
        )
        upgrade(database_url)
        app = load_app(config, FixedClock(NOW))
        deliver(server, ["first@example.com"])
        run_once(app)
        with server.client() as imap:
            before = imap.select_folder("INBOX")[b"UIDVALIDITY"]

        server.stop()
        if rebuild_index:  # the server forgets its UIDs: the folder is renumbered
            assert server.directory is not None
            for path in (server.directory / "mail" / COUNCIL).glob("dovecot*"):
                path.unlink()
        server.restart()
        deliver(server, ["second@example.com"])
        with server.client() as imap:
            after = imap.select_folder("INBOX")[b"UIDVALIDITY"]
        assert (after != before) is rebuild_index
        run_once(app)
        run_once(app)

        assert_exactly_once(app, smtp, ["first@example.com", "second@example.com"])
        if rebuild_index:  # the re-read finds the old message again and knows it
            assert [m.outcome for m in inbound(app)].count("duplicate") == 1
        app.engine.dispose()
    finally:
        server.cleanup()


# -- SMTP ------------------------------------------------------------------------------


def test_smtp_refusing_4xx_then_accepting_sends_each_once(app, dovecot, smtp):
    who = residents(3)
    deliver(dovecot, who)
    smtp.refuse = "451 4.3.0 Try again later"
    run_once(app)
    assert acked(smtp) == []
    assert {(r.status, r.attempts) for r in ack_rows(app)} == {("pending", 1)}

    smtp.refuse = None
    run_once(app)  # the retry is not due yet: backoff, not a hammering loop
    assert acked(smtp) == []
    app.clock.advance(timedelta(minutes=2))
    run_once(app)
    app.clock.advance(timedelta(hours=1))
    run_once(app)
    assert_exactly_once(app, smtp, who)


def test_smtp_refusing_5xx_fails_for_good_without_retrying(app, dovecot, smtp):
    deliver(dovecot, ["gone@example.com"])
    smtp.refuse = "550 5.1.1 No such user"
    run_once(app)
    smtp.refuse = None
    app.clock.advance(timedelta(days=1))
    deliver(dovecot, ["later@example.com"])
    run_once(app)

    assert acked(smtp) == ["later@example.com"]
    rows = {r.recipient: r for r in ack_rows(app)}
    assert rows["gone@example.com"].status == "failed"
    assert "550" in rows["gone@example.com"].last_error
    assert len(inbound(app)) == 2


class Silent:
    """A TCP server that accepts connections and never says a word."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        self.listener.settimeout(0.2)
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                self.held.append(self.listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:  # closed
                return

    def close(self) -> None:
        self._stop.set()
        for sock in [*self.held, self.listener]:
            sock.close()


def test_smtp_server_that_never_answers_times_out_and_is_retried(config_path, clock, dovecot, smtp):
    who = residents(2)
    deliver(dovecot, who)
    silent = Silent()
    try:
        point_smtp_at(config_path, silent.port)
        tune(config_path, "smtp", timeout=2)
        app = load_app(config_path, clock)
        with pytest.raises(SendingPaused, match="cannot reach the SMTP server"):
            run_once(app)  # exit 2: nothing could be sent
        assert len(silent.held) >= 1
        # Waiting for the server, not failed, and not charged an attempt.
        assert {(r.status, r.attempts) for r in ack_rows(app)} == {("paused", 0)}
    finally:
        silent.close()
    point_smtp_at(config_path, smtp.port)
    app = load_app(config_path, clock)
    clock.advance(timedelta(minutes=2))
    run_once(app)
    clock.advance(timedelta(hours=1))
    run_once(app)
    assert_exactly_once(app, smtp, who)


class SlowToConfirm:
    """Queues each message at once but answers the end of DATA only after `delay` seconds,
    the first `slow` times: the reply is lost on the way, the mail is delivered anyway."""

    def __init__(self, capture: SmtpCapture, delay: float, slow: int) -> None:
        self.capture, self.delay, self.slow = capture, delay, slow

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        raw = envelope.original_content or b""  # type: ignore[attr-defined]
        rcpt = list(envelope.rcpt_tos)  # type: ignore[attr-defined]
        mail_from = envelope.mail_from  # type: ignore[attr-defined]
        with self.capture.lock:
            self.capture.messages.append(CapturedMessage(mail_from, rcpt, raw))
        if self.slow > 0:
            self.slow -= 1
            await asyncio.sleep(self.delay)
        return "250 queued"


def test_smtp_timeout_after_the_message_was_queued_does_not_send_it_again(
    config_path, clock, dovecot
):
    # RFC 1047: the server has the message, its "250" does not arrive in time. The
    # acknowledgement is as uncertain as after a kill -9 mid-send, and SPEC §1.2 says
    # an uncertain message is not sent again.
    capture = SmtpCapture(port=free_port())
    controller = Controller(
        SlowToConfirm(capture, delay=4, slow=1), hostname="127.0.0.1", port=capture.port
    )
    controller.start()
    try:
        point_smtp_at(config_path, capture.port)
        tune(config_path, "smtp", timeout=2)
        deliver(dovecot, ["slow@example.com"])
        app = load_app(config_path, clock)
        run_once(app)
        clock.advance(timedelta(minutes=5))
        run_once(app)
    finally:
        controller.stop()
    assert [m.rcpt_tos[0] for m in to_residents(capture)] == ["slow@example.com"]
    # The clerk can see it: in the case's history, with how to send it again if the
    # resident says it never came.
    with app.sessions() as s:
        [event] = s.scalars(sql_select(CaseEvent).where(CaseEvent.kind == "send-uncertain"))
        [row] = s.scalars(sql_select(OutboxMessage).where(OutboxMessage.status == "uncertain"))
    assert event.detail.startswith(
        "acknowledgement to slow@example.com may not have been sent: the server did not confirm"
    )
    assert event.detail.endswith(f"(mailbot outbox resend {row.id}, or dismiss {row.id})")


# -- the database ----------------------------------------------------------------------


@contextlib.contextmanager
def database_locked(url: str) -> Iterator[None]:
    """Another client holding the write lock (SQLite) or the tables (PostgreSQL)."""
    if url.startswith("sqlite"):
        holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("COMMIT")
            holder.close()
        return
    with psycopg.connect(url.replace("+psycopg", "")) as holder:
        holder.execute("LOCK TABLE cases, messages, outbox, folder_state IN ACCESS EXCLUSIVE MODE")
        yield
        holder.rollback()


def test_database_locked_for_a_few_seconds_waits_and_loses_nothing(
    config_path, app, dovecot, smtp, database_url
):
    who = residents(3)
    deliver(dovecot, who)
    with database_locked(database_url):
        proc = mailbot(config_path, "run", "--once", "--now", NOW.isoformat())
        time.sleep(3)  # a backup, a migration, a clerk's query left open
    _, err = proc.communicate(timeout=120)
    # It may wait for the lock (0) or give up cleanly (2); either way nothing is lost.
    assert proc.returncode in (0, 2), err.decode()
    code, err2 = run_cli(config_path, "--now", NOW.isoformat())
    assert code == 0, err2
    assert_exactly_once(app, smtp, who)


def test_a_lock_that_outlasts_the_wait_leaves_the_message_waiting(
    tmp_path, dovecot, smtp, monkeypatch
):
    # The lock is taken while the first message is being decided and given up just after
    # mailbot's write fails: the transient error must not be recorded as the message's fate.
    url = f"sqlite:///{tmp_path / 'mailbot.db'}"
    config = local_config(
        tmp_path, dovecot, smtp, mailbox_address=COUNCIL, database_url=url, start_from=START_FROM
    )
    upgrade(url)
    app = load_app(config, FixedClock(NOW))

    @event.listens_for(app.engine, "connect")
    def short_wait(conn: sqlite3.Connection, _record: object) -> None:
        conn.execute("PRAGMA busy_timeout=200")  # runs after mailbot's 30 s: give up sooner

    holder = sqlite3.connect(tmp_path / "mailbot.db", isolation_level=None)

    @event.listens_for(app.engine, "handle_error")
    def release(_context: object) -> None:
        if holder.in_transaction:
            holder.execute("COMMIT")

    import mailbot.pipeline as pipeline

    real_parse = pipeline.parse_message

    def parse_then_lock(raw: bytes, **kw: object):  # type: ignore[no-untyped-def]
        if not holder.in_transaction and not inbound(app):
            holder.execute("BEGIN EXCLUSIVE")
        return real_parse(raw, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "parse_message", parse_then_lock)
    deliver(dovecot, ["locked@example.com"])
    with contextlib.suppress(Exception):  # failing the run is fine; losing the mail is not
        run_once(app)
    monkeypatch.setattr(pipeline, "parse_message", real_parse)
    run_once(app)
    holder.close()

    assert [m.outcome for m in inbound(app)] == ["case-opened"]  # not 'failed'
    assert_exactly_once(app, smtp, ["locked@example.com"])


class SmallDisk:
    """Room for the database that runs out: a 1 MB tmpfs (real ENOSPC, needs mount rights)
    or SQLite's max_page_count (the same failure without privileges, and at other points)."""

    def __init__(self, folder: Path, mode: str) -> None:
        self.path = folder
        folder.mkdir()
        tmpfs = ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)]
        self.mounted = mode == "tmpfs" and not subprocess.run(tmpfs, capture_output=True).returncode
        self.filler = folder / "filler"
        self.page_limit: int | None = None

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path / 'mailbot.db'}"

    def attach(self, engine: Engine) -> Engine:
        @event.listens_for(engine, "connect")
        def limit(conn: sqlite3.Connection, _record: object) -> None:
            if self.page_limit is not None:
                conn.execute(f"PRAGMA max_page_count={self.page_limit}")

        return engine

    def fill(self, leave_kb: int) -> None:
        """Leave about `leave_kb` free (connections opened from now on see the limit)."""
        if self.mounted:
            stat = os.statvfs(self.path)
            with contextlib.suppress(OSError), open(self.filler, "wb") as f:
                f.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave_kb * 1024))
        else:
            with contextlib.closing(sqlite3.connect(self.path / "mailbot.db")) as conn:
                self.page_limit = conn.execute("PRAGMA page_count").fetchone()[0] + leave_kb // 4

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)
        self.page_limit = None

    def cleanup(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture(params=["tmpfs", "page-limit"])
def small_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SmallDisk]:
    disk = SmallDisk(tmp_path / "disk", request.param)
    yield disk
    disk.cleanup()


@pytest.fixture
def on_small_disk(
    small_disk: SmallDisk, tmp_path: Path, dovecot: Account, smtp: SmtpCapture, monkeypatch
) -> tuple[Path, App]:
    """A config and app whose database lives on the small disk (the CLI's engines too)."""
    import mailbot.app

    real = mailbot.app.make_engine
    monkeypatch.setattr(mailbot.app, "make_engine", lambda url: small_disk.attach(real(url)))
    config = local_config(
        tmp_path,
        dovecot,
        smtp,
        mailbox_address=COUNCIL,
        database_url=small_disk.url,
        start_from=START_FROM,
    )
    upgrade(small_disk.url)
    return config, load_app(config, FixedClock(NOW))


@pytest.mark.parametrize("leave_kb", [0, 16, 32, 48, 64, 80, 96, 128])
def test_disk_full_at_any_point_loses_nothing(leave_kb, small_disk, on_small_disk, dovecot, smtp):
    _, app = on_small_disk
    run_once(app)  # the first visit is made with room to spare
    who = residents(3)
    deliver(dovecot, who)

    app.engine.dispose()
    small_disk.fill(leave_kb)
    with contextlib.suppress(Exception):  # failing is fine: the disk is full
        run_once(app)
    app.engine.dispose()
    small_disk.free()  # the sysadmin makes room
    run_once(app)
    app.clock.advance(timedelta(minutes=11))  # past the sending lease of anything stranded
    run_once(app)

    assert [m.outcome for m in inbound(app)] == ["case-opened"] * len(who)  # none "failed"
    assert {r.recipient: r.status for r in ack_rows(app)} == dict.fromkeys(who, "sent")
    assert_exactly_once(app, smtp, who)
    app.engine.dispose()


def test_disk_full_exits_2_with_one_line_then_recovers(
    small_disk, on_small_disk, dovecot, smtp, capsys
):
    config, app = on_small_disk
    who = residents(2)
    deliver(dovecot, who)
    argv = ["--config", str(config), "run", "--once", "--now", NOW.isoformat()]

    small_disk.fill(0)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("mailbot: ")
    assert "Traceback" not in err
    small_disk.free()
    assert main(argv) == 0
    assert_exactly_once(app, smtp, who)
    app.engine.dispose()


# -- kill -9 ---------------------------------------------------------------------------


def test_kill_9_at_arbitrary_moments_never_repeats(app, config_path, dovecot, smtp):
    # test_daemon kills at the two named hooks; this kills wherever the process happens to
    # be (fetching, deciding, committing, sending) and keeps going until all is done.
    who = residents(40)
    deliver(dovecot, who)
    kills = 0
    for delay in (0.6, 0.9, 1.2, 1.5, 1.8, 2.1, 2.4, 2.7):
        proc = mailbot(config_path, "run", "--once", "--now", NOW.isoformat())
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=60)
    assert kills >= 1  # it was interrupted at least once, or this proves nothing
    later = (NOW + timedelta(minutes=11)).isoformat()  # past the sending lease
    for _ in range(2):
        code, err = run_cli(config_path, "--now", later)
        assert code == 0, err

    rows = inbound(app)
    assert len({(m.uidvalidity, m.uid) for m in rows}) == len(rows) == len(who)
    assert sorted(m.from_addr for m in rows if m.outcome == "case-opened") == sorted(who)
    acks = ack_rows(app)
    assert sorted(r.recipient for r in acks) == sorted(who)  # one acknowledgement each
    sent = Counter(m.rcpt_tos[0] for m in to_residents(smtp))
    assert max(sent.values(), default=0) == 1  # nobody twice
    for row in acks:
        # 'uncertain': killed between claiming and recording; sent at most once, never again.
        assert row.status in ("sent", "uncertain")
        if row.status == "sent":
            assert sent[row.recipient] == 1
    assert sum(r.status == "uncertain" for r in acks) <= kills  # a kill strands at most one
