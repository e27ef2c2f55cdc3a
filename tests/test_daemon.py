"""The daemon as a sysadmin runs it: IDLE, SIGTERM, reconnecting, and surviving kill -9."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from mailbot.deadlines import compute
from mailbot.devservers import LocalDovecot, local_config
from mailbot.faults import ENV as CRASH_ENV
from mailbot.faults import POINTS
from mailbot.policy import parse_policy
from mailbot.store import Case, InboundMessage, OutboxMessage, Sessions, WriteTurn, make_engine
from mailbot.templates import long_date
from tests.conftest import (
    COUNCIL,
    council_config,
    mailbot,
    resident_mail,
    stop,
    to_residents,
    wait_for,
)

pytestmark = pytest.mark.integration

ARRIVED = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
NOW = "2026-11-03T10:00:00+00:00"


def test_run_acknowledges_new_mail_under_idle_and_stops_on_sigterm(config_path, dovecot, smtp):
    proc = mailbot(config_path, "run")
    try:
        time.sleep(1.5)  # connected and idling
        dovecot.append(resident_mail(message_id="<idle-1@x>"))
        wait_for(lambda: len(to_residents(smtp)) == 1)
        dovecot.append(resident_mail(sender="b@example.com", message_id="<idle-2@x>"))
        wait_for(lambda: len(to_residents(smtp)) == 2)
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert "stopped" in err
    assert sorted(m.rcpt_tos[0] for m in to_residents(smtp)) == [
        "b@example.com",
        "jane.doe@example.com",
    ]


def test_run_keeps_one_smtp_connection_while_mail_keeps_coming(config_path, dovecot, smtp):
    proc = mailbot(config_path, "run")
    try:
        time.sleep(1.5)
        for n in range(3):  # each arrives on its own, a wake-up and a sending pass each
            dovecot.append(resident_mail(sender=f"r{n}@example.com", message_id=f"<k{n}@x>"))
            wait_for(lambda n=n: len(to_residents(smtp)) == n + 1)
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert smtp.greetings == 1  # one connection (and sign-in) for all three


def test_run_reconnects_after_the_imap_server_restarts(tmp_path, smtp):
    server = LocalDovecot(user=COUNCIL).start()
    try:
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
        config = council_config(tmp_path, server, smtp, url)
        proc = mailbot(config, "run")
        try:
            server.append(resident_mail(message_id="<before@x>"))
            wait_for(lambda: len(to_residents(smtp)) == 1)
            server.restart()
            server.append(resident_mail(sender="after@example.com", message_id="<after@x>"))
            wait_for(lambda: len(to_residents(smtp)) == 2, timeout=30)
        finally:
            code, err = stop(proc)
        assert code == 0, err
        assert "reconnecting" in err
    finally:
        server.cleanup()


def test_run_once_exits_zero_and_bad_config_exits_one(config_path, dovecot, smtp, tmp_path):
    dovecot.append(resident_mail(), when=ARRIVED)
    done = mailbot(config_path, "run", "--once", "--now", NOW)
    assert done.wait(60) == 0
    assert len(to_residents(smtp)) == 1

    bad = tmp_path / "bad.toml"
    bad.write_text(config_path.read_text().replace("port =", "prot =", 1))
    proc = mailbot(bad, "run", "--once")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.decode().strip().count("\n") == 0
    assert "imap.prot" in err.decode()


def test_run_without_schema_says_to_upgrade(tmp_path, dovecot, smtp):
    config = local_config(
        tmp_path, dovecot, smtp, database_url=f"sqlite:///{tmp_path / 'empty.db'}"
    )
    proc = mailbot(config, "run", "--once")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "mailbot db upgrade" in err.decode()


@pytest.mark.parametrize("crash_at", POINTS)
def test_kill_9_at_every_stage_never_loses_or_repeats(crash_at, app, config_path, dovecot, smtp):
    residents = ["ann@example.com", "bob@example.com", "cat@example.com"]
    for n, who in enumerate(residents):
        dovecot.append(resident_mail(sender=who, message_id=f"<m{n}@x>"), when=ARRIVED)

    crashed = mailbot(config_path, "run", "--once", "--now", NOW, env={CRASH_ENV: crash_at})
    crashed.communicate(timeout=60)
    assert crashed.returncode == -signal.SIGKILL

    for _ in range(2):  # restart, and once more for good measure
        again = mailbot(config_path, "run", "--once", "--now", NOW)
        _, err = again.communicate(timeout=60)
        assert again.returncode == 0, err.decode()

    with app.sessions() as s:
        # The residents' three (the copies of what was sent, filed in Sent and read
        # from there as mailbot's own, are not residents' mail).
        inbox = InboundMessage.folder.endswith("/INBOX")
        assert s.scalar(select(func.count()).select_from(InboundMessage).where(inbox)) == 3
        acks = s.execute(
            select(OutboxMessage.recipient, OutboxMessage.status)
            .where(OutboxMessage.kind == "acknowledgement")
            .order_by(OutboxMessage.recipient)
        ).all()
    sent = sorted(m.rcpt_tos[0] for m in to_residents(smtp))
    assert [r for r, _ in acks] == residents  # one acknowledgement each, decided once
    if POINTS.index(crash_at) <= POINTS.index("after-commit"):
        # Killed before anything went out: every message is processed and sent once.
        assert sent == residents
        assert [status for _, status in acks] == ["sent"] * 3
    elif crash_at == "after-claim":
        # Killed holding a message it had not yet handed over: nobody can tell it from a
        # kill mid-hand-over, so it waits as 'sending', never repeated (the lease then
        # makes it 'uncertain' for the clerk); the other two go once each.
        assert sent == residents[1:]
        assert [status for _, status in acks] == ["sending", "sent", "sent"]
    elif crash_at == "after-send":
        # The server accepted the first before the kill: each resident has exactly one.
        assert sent == residents
        assert [status for _, status in acks] == ["sending", "sent", "sent"]
    else:
        # "after-record": the first was recorded as sent in the same commit that claimed
        # the second, which then waits as 'sending' like any other interrupted hand-over.
        assert sent == ["ann@example.com", "cat@example.com"]
        assert [status for _, status in acks] == ["sent", "sending", "sent"]


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_the_sending_process_goes_when_the_daemon_stops(config_path, dovecot, smtp):
    proc = mailbot(config_path, "run")
    try:
        wait_for(lambda: len(children(proc.pid)) == 1)
        [sender] = children(proc.pid)
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert not Path(f"/proc/{sender}").exists()  # stopped with it, not left behind


def test_a_sending_process_that_dies_stops_the_daemon_for_a_restart(config_path, dovecot, smtp):
    proc = mailbot(config_path, "run")
    try:
        wait_for(lambda: len(children(proc.pid)) == 1)
        [sender] = children(proc.pid)
        os.kill(sender, signal.SIGKILL)
        _, err = proc.communicate(timeout=15)  # at once: no mail, no timer needed
    finally:
        if proc.poll() is None:
            proc.kill()
            _, err = proc.communicate()
    # Exit 3, which systemd's Restart=on-failure restarts; never a silent half-daemon
    # that reads mail and sends none.
    assert proc.returncode == 3, err.decode()
    assert err.decode().splitlines()[-1] == (
        "mailbot: the sending process ended unexpectedly (exit code -9)"
    )


def several_connections(tmp_path, dovecot, smtp, database_url, residents):
    """A config sending over three SMTP connections, and a mailbox with `residents`' mail."""
    config = council_config(tmp_path, dovecot, smtp, database_url, smtp_extra="connections = 3\n")
    for n, who in enumerate(residents):
        dovecot.append(resident_mail(sender=who, message_id=f"<c{n}@x>"), when=ARRIVED)
    return config


def ack_statuses(database_url: str) -> list[tuple[str, str]]:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(OutboxMessage.recipient, OutboxMessage.status)
            .where(OutboxMessage.kind == "acknowledgement")
            .order_by(OutboxMessage.recipient)
        ).all()
    engine.dispose()
    return [tuple(row) for row in rows]


def test_three_smtp_connections_send_each_message_once(tmp_path, dovecot, smtp, database_url):
    residents = [f"r{n}@example.com" for n in range(7)]
    config = several_connections(tmp_path, dovecot, smtp, database_url, residents)

    done = mailbot(config, "run", "--once", "--now", NOW)
    _, err = done.communicate(timeout=60)

    assert done.returncode == 0, err.decode()
    assert sorted(m.rcpt_tos[0] for m in to_residents(smtp)) == residents
    assert smtp.greetings == 3  # three connections, each carrying several messages
    assert ack_statuses(database_url) == [(who, "sent") for who in residents]


def test_a_kill_strands_at_most_one_message_a_connection(tmp_path, dovecot, smtp, database_url):
    residents = [f"r{n}@example.com" for n in range(5)]
    config = several_connections(tmp_path, dovecot, smtp, database_url, residents)

    crashed = mailbot(config, "run", "--once", "--now", NOW, env={CRASH_ENV: "after-claim"})
    crashed.communicate(timeout=60)
    assert crashed.returncode == -signal.SIGKILL
    for _ in range(2):
        again = mailbot(config, "run", "--once", "--now", NOW)
        _, err = again.communicate(timeout=60)
        assert again.returncode == 0, err.decode()

    # The first three were claimed, one for each connection, when it was killed: they
    # wait as 'sending', never repeated; the other two went once each.
    assert sorted(m.rcpt_tos[0] for m in to_residents(smtp)) == residents[3:]
    assert ack_statuses(database_url) == [
        *((who, "sending") for who in residents[:3]),
        *((who, "sent") for who in residents[3:]),
    ]


def test_interrupted_send_is_marked_uncertain_after_its_lease(app, config_path, dovecot, smtp):
    dovecot.append(resident_mail(), when=ARRIVED)
    crashed = mailbot(config_path, "run", "--once", "--now", NOW, env={CRASH_ENV: "after-send"})
    crashed.communicate(timeout=60)
    later = (datetime.fromisoformat(NOW) + timedelta(minutes=11)).isoformat()
    again = mailbot(config_path, "run", "--once", "--now", later)
    _, err = again.communicate(timeout=60)
    assert again.returncode == 0
    assert "not re-sent to avoid a duplicate" in err.decode()
    assert len(to_residents(smtp)) == 1
    with app.sessions() as s:
        assert (
            s.scalar(select(OutboxMessage.status).where(OutboxMessage.kind == "acknowledgement"))
            == "uncertain"
        )


def test_three_processes_on_one_postgresql_database_never_repeat(tmp_path, dovecot, smtp):
    """Several `mailbot run --once` at once on one mailbox and database: each message is
    processed once and each resident acknowledged once (folder lock, SKIP LOCKED outbox)."""
    import uuid

    import psycopg

    from tests.conftest import PG_ADMIN

    name = f"mailbot_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + "/" + name
    try:
        config = council_config(tmp_path, dovecot, smtp, url)
        # Ten to a domain: more than 20 from one would meet the per-domain cap.
        residents = [f"resident{n}@example{n // 10}.com" for n in range(30)]
        for n, who in enumerate(residents):
            dovecot.append(resident_mail(sender=who, message_id=f"<p{n}@x>"), when=ARRIVED)
        procs = [mailbot(config, "run", "--once", "--now", NOW) for _ in range(3)]
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()
        again = mailbot(config, "run", "--once", "--now", NOW)
        again.communicate(timeout=120)
        assert sorted(m.rcpt_tos[0] for m in to_residents(smtp)) == sorted(residents)
        engine = create_engine(url)
        with engine.connect() as conn:
            inbox = "FROM messages WHERE folder LIKE '%/INBOX'"  # not the copies in Sent
            assert conn.execute(text(f"SELECT count(*) {inbox}")).scalar() == 30
            assert conn.execute(text(f"SELECT count(DISTINCT uid) {inbox}")).scalar() == 30
        engine.dispose()
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _take_the_turn(turn: WriteTurn) -> None:
    with turn:
        pass


def test_a_process_waiting_for_its_write_turn_is_seen_by_the_one_holding_it(tmp_path):
    """The deciding process pauses a long run of work when the sending process waits."""
    turn = WriteTurn(tmp_path / "mailbot.db.lock")
    with turn:
        assert not turn.wanted()
        other = multiprocessing.get_context("fork").Process(target=_take_the_turn, args=(turn,))
        other.start()
        wait_for(turn.wanted, timeout=10)
        assert other.is_alive()  # still waiting: the turn is ours until we let go
    other.join(10)
    assert other.exitcode == 0
    assert not turn.wanted()


def test_a_transaction_inside_another_keeps_the_turn_and_other_threads_wait_for_it(tmp_path):
    """Every write takes the turn (store.Sessions): a nested one on the same thread must
    not let go of it early, and another thread of the same process must wait."""
    turn = WriteTurn(tmp_path / "mailbot.db.lock")
    entered = threading.Event()

    def other_thread() -> None:
        with turn:
            entered.set()

    with turn:
        with turn:  # nested: no deadlock, and the turn is still held after it
            pass
        thread = threading.Thread(target=other_thread)
        thread.start()
        assert not entered.wait(0.3)
        probe = multiprocessing.get_context("fork").Process(target=_take_the_turn, args=(turn,))
        probe.start()
        wait_for(turn.wanted, timeout=10)  # the flock is still ours after the nested exit
        assert probe.is_alive()
    thread.join(10)
    probe.join(10)
    assert entered.is_set() and probe.exitcode == 0


def test_every_write_on_a_sqlite_file_takes_the_turn(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'mailbot.db'}")
    sessions = Sessions(engine)
    assert isinstance(sessions.turn, WriteTurn)
    with sessions.begin():
        probe = multiprocessing.get_context("fork").Process(
            target=_take_the_turn, args=(sessions.turn,)
        )
        probe.start()
        wait_for(sessions.wanted, timeout=10)
    probe.join(10)
    assert probe.exitcode == 0
    engine.dispose()


def test_sighup_changes_the_dates_and_wording_of_the_next_acknowledgement(
    tmp_path, dovecot, smtp, database_url
):
    """A clerk edits the policy and the sysadmin reloads: the deciding process gives the
    next case the new dates, and the sending process writes the new wording."""
    stafford = (Path(__file__).parents[1] / "policies" / "stafford.toml").read_text()
    old_step = "the appropriate Head of Service will investigate your complaint"
    new_step = "Reply to this message to ask for a review by the Head of Service."
    stage_1 = stafford.index("[categories.complaint.stages.1]")
    old_line = next(
        line for line in stafford[stage_1:].splitlines() if line.startswith("next_step")
    )
    edited = stafford[:stage_1] + stafford[stage_1:].replace(
        'respond = "10 working days"', 'respond = "5 working days"', 1
    ).replace(old_line, f'next_step = "{new_step}"', 1)
    policy = tmp_path / "council.toml"
    policy.write_text(stafford)
    config = council_config(tmp_path, dovecot, smtp, database_url, policy=str(policy))
    complaint = "I wish to make a formal complaint about my bins"

    proc = mailbot(config, "run")
    try:
        dovecot.append(resident_mail(subject=complaint, message_id="<before@x>"))
        wait_for(lambda: len(to_residents(smtp)) == 1)
        policy.write_text(edited)
        proc.send_signal(signal.SIGHUP)
        dovecot.append(
            resident_mail(sender="b@example.com", subject=complaint, message_id="<after@x>")
        )
        wait_for(lambda: len(to_residents(smtp)) == 2)
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert "reloaded policy and templates" in err

    engine = create_engine(database_url)
    with engine.connect() as conn:
        cases = conn.execute(select(Case.received_at, Case.respond_by).order_by(Case.id)).all()
    engine.dispose()
    before, after = (m.text() for m in to_residents(smtp))
    for (received, respond_by), text_then, letter in zip(
        cases, (stafford, edited), (before, after), strict=True
    ):
        assert respond_by == compute(parse_policy(text_then), "complaint", received).respond_by
        assert long_date(respond_by) in letter
    assert cases[1].respond_by < cases[0].respond_by  # 5 working days, not 10
    assert old_step in before and new_step not in before
    assert new_step in after and old_step not in after
