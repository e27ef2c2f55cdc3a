"""Benchmark: a backlog of mixed mail through the mailbot daemon, against a bare floor.

Run: python -m bench.ingest [--messages 5000] [--quick] [--database sqlite|postgresql]

The floor, measured in the same run on the same servers, is what any program must do
for the same work: a bare imapclient FETCH of every message (BODY.PEEK[], 50 at a time,
as mailbot fetches) plus a bare aiosmtplib send of as many acknowledgements as mailbot
sent, over one connection. mailbot is `mailbot run` started on the full mailbox and timed
until the SMTP server has accepted its last acknowledgement; its resident memory is read
from /proc then. mailbot runs twice: as installed (one SMTP connection), then with
`[smtp] connections = 3`. Target: mailbot at least half the floor's throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from datetime import date
from pathlib import Path

import aiosmtplib
import psycopg
from sqlalchemy import Engine, create_engine, func, select

from bench.common import machine, write_result
from bench.support import (
    COUNCIL,
    NOW,
    ROOT,
    SmtpSink,
    daemon_cpu_seconds,
    daemon_memory_mb,
    fill,
    mailbot_command,
    mailbot_config,
    mixed_corpus,
    save_json,
    servers,
)
from mailbot.devservers import Account
from mailbot.store import InboundMessage, OutboxMessage

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET_RATIO = 0.5


def floor_fetch(account: Account) -> tuple[float, int]:
    """Seconds to fetch every message whole, and the bytes read."""
    with account.client() as imap:
        imap.select_folder("INBOX", readonly=True)
        uids = imap.search(["ALL"])
        start = time.perf_counter()
        size = 0
        for at in range(0, len(uids), 50):
            for data in imap.fetch(uids[at : at + 50], ["BODY.PEEK[]"]).values():
                size += len(data[b"BODY[]"])
        return time.perf_counter() - start, size


async def floor_send(port: int, messages: list[tuple[str, bytes]]) -> float:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
    start = time.perf_counter()
    await smtp.connect()
    for recipient, raw in messages:
        await smtp.sendmail(COUNCIL, [recipient], raw)
    await smtp.quit()
    return time.perf_counter() - start


def done(engine: Engine, expected: int) -> tuple[bool, Counter]:
    """Every message decided and nothing left to send (read beside the running daemon)."""
    try:
        with engine.connect() as conn:
            outcomes = Counter(
                dict(
                    conn.execute(
                        select(InboundMessage.outcome, func.count()).group_by(
                            InboundMessage.outcome
                        )
                    ).all()
                )
            )
            waiting = conn.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.status.in_(["pending", "sending"]))
            )
    except Exception:  # the schema is there; a busy moment is simply "not yet"
        return False, Counter()
    return sum(outcomes.values()) == expected and waiting == 0, outcomes


def run_mailbot(config: Path, url: str, sink: SmtpSink, count: int, timeout: float) -> dict:
    """Start the daemon on the backlog; time it until its last acknowledgement is accepted."""
    start, bench_cpu = time.monotonic(), time.process_time()
    proc = subprocess.Popen(
        mailbot_command(config, "run", "--now", NOW.isoformat()),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    decided = None  # when every message had been decided (to the 0.2 s poll)
    # One engine for every poll: this process is also the SMTP server, and building an
    # engine each time would take its share of the interpreter from the server.
    engine = create_engine(url)
    try:
        while True:
            finished, outcomes = done(engine, count)
            if decided is None and sum(outcomes.values()) == count:
                decided = time.monotonic()
            if finished:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"mailbot exited with {proc.returncode}")
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"mailbot did not finish in {timeout:.0f} s: {outcomes}")
            time.sleep(0.2)
        arrivals = sink.arrivals()
        end = max(arrivals.values()) if arrivals else time.monotonic()
        deciding_cpu, sending_cpu = daemon_cpu_seconds(proc.pid)
        # This process is the SMTP server (a thread) and the poll above: mostly the server.
        sink_cpu = time.process_time() - bench_cpu
        time.sleep(1)  # settled: what it holds after the backlog, not mid-transaction
        rss, hwm = daemon_memory_mb(proc.pid)
    finally:
        engine.dispose()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    decided = decided or end
    return {
        "seconds": end - start,
        "decided_s": decided - start,
        "first_ack_s": min(arrivals.values(), default=end) - start,
        "acked_while_reading": sum(at <= decided for at in arrivals.values()),
        "acknowledgements": len(arrivals),
        "outcomes": dict(outcomes),
        "rss_mb": rss,
        "hwm_mb": hwm,
        "cpu_s": {"deciding": deciding_cpu, "sending": sending_cpu, "smtp_sink": sink_cpu},
    }


def measure(count: int, database: str) -> dict:
    corpus = mixed_corpus(count)
    with servers() as (dovecot, sink, scratch):
        account = dovecot.add_account(f"backlog-{uuid.uuid4().hex[:8]}@example.org")
        started = time.perf_counter()
        fill(account, corpus.messages)
        fill_s = time.perf_counter() - started
        floor_fetch(account)  # warm Dovecot's caches for both contenders alike
        fetch_s, size = floor_fetch(account)

        # mailbot as installed ([smtp] connections = 1), then with three connections;
        # each starts afresh (its own database and SMTP sink) on the same mailbox.
        runs = {}
        for connections in CONNECTIONS:
            run_sink = sink if connections == 1 else SmtpSink().start()
            try:
                runs[connections] = _mailbot_run(
                    scratch / f"connections-{connections}",
                    account,
                    run_sink,
                    database,
                    count,
                    connections,
                )
            finally:
                if run_sink is not sink:
                    run_sink.stop()

        with sink.lock:
            acks = [(r[0], raw) for _, r, raw in sink.received if b"auto-replied" in raw]
        floor_sink = SmtpSink().start()
        try:
            send_s = asyncio.run(floor_send(floor_sink.port, acks))
        finally:
            floor_sink.stop()
    floor_s = fetch_s + send_s
    result = runs[1]
    return {
        "messages": count,
        "database": database,
        "mix": corpus.kinds,
        "expected_acknowledgements": corpus.to_acknowledge,
        "mailbox_mb": size / 1e6,
        "fill_s": fill_s,
        "floor_fetch_s": fetch_s,
        "floor_send_s": send_s,
        "floor_s": floor_s,
        "mailbot_s": result["seconds"],
        "ratio": floor_s / result["seconds"],
        **{f"mailbot_{k}": v for k, v in result.items() if k != "seconds"},
        "more_connections": {
            str(n): {"seconds": r["seconds"], "ratio": floor_s / r["seconds"], **r}
            for n, r in runs.items()
            if n != 1
        },
    }


CONNECTIONS = (1, 3)  # [smtp] connections: the default, and Microsoft 365's limit


def _mailbot_run(
    folder: Path,
    account: Account,
    sink: SmtpSink,
    database: str,
    count: int,
    connections: int,
) -> dict:
    pg_name = None
    if database == "postgresql":
        pg_name = f"mailbot_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{pg_name}"')
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_name}"
    else:
        folder.mkdir(parents=True)
        url = f"sqlite:///{folder / 'mailbot.db'}"
    try:
        config = mailbot_config(folder, account, sink, database_url=url)
        if connections != 1:
            text = config.read_text().replace("[smtp]\n", f"[smtp]\nconnections = {connections}\n")
            config.write_text(text)
        return run_mailbot(config, url, sink, count, timeout=max(600, count * 0.5))
    finally:
        if pg_name:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


def _cpu(run: dict, floor_s: float) -> str:
    """The CPU each process used, and the best time that much CPU allows on this machine:
    every core busy from start to end, the work shared out perfectly."""
    cpu, cores = run["cpu_s"], os.cpu_count() or 1
    at_best = sum(cpu.values()) / cores
    return (
        f"{cpu['deciding']:.1f} s deciding, {cpu['sending']:.1f} s sending, "
        f"{cpu['smtp_sink']:.1f} s in the SMTP server (of {cores * run['seconds']:.1f} s on "
        f"{cores} cores), so at best {at_best:.1f} s, a ratio of {floor_s / at_best:.2f}"
    )


def r_run(r: dict) -> dict:
    """The as-installed run's own figures, as the other runs keep theirs."""
    return {k.removeprefix("mailbot_"): v for k, v in r.items() if k.startswith("mailbot_")}


def report(r: dict) -> str:
    n, acks = r["messages"], r["mailbot_acknowledgements"]
    mix = ", ".join(f"{v} {k}" for k, v in r["mix"].items())
    best = max([r["ratio"], *(m["ratio"] for m in r["more_connections"].values())])
    met = "met" if best >= TARGET_RATIO else "NOT MET"
    lines = [
        f"Backlog ingest: {n:,} mixed messages ({r['mailbox_mb']:.1f} MB) on "
        f"{r['database']} ({date.today()}, {machine()})",
        "",
        f"Mix: {mix}.",
        "",
        "| contender | work | time | throughput |",
        "|---|---|---|---|",
        f"| floor: imapclient FETCH BODY.PEEK[], 50 a time | {n:,} messages | "
        f"{r['floor_fetch_s']:.2f} s | |",
        f"| floor: aiosmtplib send, one connection | {acks:,} messages | "
        f"{r['floor_send_s']:.2f} s | |",
        f"| **floor total** | | {r['floor_s']:.2f} s | {n / r['floor_s']:,.0f} msg/s |",
        f"| **mailbot run** (backlog to last acknowledgement accepted) | {n:,} decided, "
        f"{acks:,} acknowledged | {r['mailbot_s']:.2f} s | {n / r['mailbot_s']:,.0f} msg/s |",
        *(
            f"| mailbot run, `[smtp] connections = {c}` | {n:,} decided, "
            f"{more['acknowledgements']:,} acknowledged | {more['seconds']:.2f} s | "
            f"{n / more['seconds']:,.0f} msg/s |"
            for c, more in r["more_connections"].items()
        ),
        "",
        f"Ratio mailbot/floor throughput: **{r['ratio']:.2f}** as installed (one SMTP "
        "connection); "
        + "; ".join(
            f"{more['ratio']:.2f} with {c} connections" for c, more in r["more_connections"].items()
        )
        + f" (target >= {TARGET_RATIO}: {met}).",
        "Where the time goes: "
        + "; ".join(
            f"{label}: first acknowledgement at {run['first_ack_s']:.1f} s, every message "
            f"decided by {run['decided_s']:.1f} s with {run['acked_while_reading']:,} "
            f"acknowledged by then, the last acknowledgement at {run['seconds']:.1f} s; "
            f"CPU used: {_cpu(run, r['floor_s'])}"
            for label, run in (
                ("as installed", {**r_run(r), "seconds": r["mailbot_s"]}),
                *((f"{c} connections", m) for c, m in r["more_connections"].items()),
            )
        )
        + ".",
        f"Acknowledgements: {acks:,} sent, {r['expected_acknowledgements']:,} expected. "
        f"Outcomes: {r['mailbot_outcomes']}.",
        f"Daemon resident memory after the backlog, with its sending process: "
        f"{r['mailbot_rss_mb']:.0f} MB proportional set size "
        f"(peaks {r['mailbot_hwm_mb']:.0f} MB, the two processes' high-water marks added).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="1,000 messages")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--json", help="also write the numbers here (for bench.run_all)")
    args = parser.parse_args()
    count = 1000 if args.quick else args.messages
    result = measure(count, args.database)
    text = report(result)
    print(text)
    write_result(f"ingest_{args.database}", text)
    save_json(args.json, result)


if __name__ == "__main__":
    main()
