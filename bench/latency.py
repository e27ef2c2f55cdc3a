"""Benchmark: acknowledgement latency under IDLE, from APPEND to the SMTP server's "250".

Run: python -m bench.latency [--messages 200] [--quick]

`mailbot run` idles on an empty mailbox; each message is APPENDed over a connection kept
open (as an MTA's delivery agent would) and the clock stops when the SMTP server has
accepted its acknowledgement. One message at a time, with a random pause of up to 0.2 s
between them so arrivals do not fall into step with the daemon's loop. The baseline, in
the same run on the same server, is a bare imapclient in IDLE: APPEND until it hears
EXISTS (Dovecot batches IDLE notifications for about half a second, so no client can be
told sooner). Target: p95 under 2 s.
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import subprocess
import time
import uuid
from datetime import date

from sqlalchemy import create_engine, func, select

from bench.common import machine, write_result
from bench.support import (
    COUNCIL,
    ROOT,
    mailbot_command,
    mailbot_config,
    percentile,
    save_json,
    servers,
)
from mailbot.devservers import Account
from mailbot.store import FolderState

TARGET_P95_S = 2.0
WAIT_LIMIT_S = 120.0  # longer than the daemon's own 60 s tick: a missed wake-up shows


def resident(n: int) -> str:
    # Ten to a domain: more than 20 from one would meet the per-domain cap.
    return f"latency{n:04d}@residents{n // 10}.example.net"


def message(n: int) -> bytes:
    return (
        f"From: Resident {n} <{resident(n)}>\r\n"
        f"To: {COUNCIL}\r\nSubject: Street light out on Elm Road ({n})\r\n"
        f"Message-ID: <latency-{n}-{uuid.uuid4().hex}@residents.example.net>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "The street light outside number 12 has been out for a week.\r\n"
    ).encode()


def idle_floor(account: Account, count: int) -> list[float]:
    """APPEND to EXISTS as a bare IDLE client sees it, one message at a time."""
    rng = random.Random(11)
    found: list[float] = []
    with account.client() as watcher, account.client() as writer:
        watcher.select_folder("INBOX", readonly=True)
        for n in range(count):
            watcher.idle()
            time.sleep(rng.uniform(0.05, 0.2))  # settled into IDLE
            start = time.monotonic()
            writer.append("INBOX", message(10_000 + n))
            while not any(r[1] == b"EXISTS" for r in watcher.idle_check(timeout=5) if len(r) > 1):
                if time.monotonic() - start > WAIT_LIMIT_S:
                    raise RuntimeError("the IDLE client was never told")
            found.append(time.monotonic() - start)
            watcher.idle_done()
    return found


def measure(count: int) -> dict:
    rng = random.Random(7)
    with servers() as (dovecot, sink, scratch):
        floor = idle_floor(dovecot.add_account(f"idle-{uuid.uuid4().hex[:8]}@example.org"), 30)
        account = dovecot.add_account(f"latency-{uuid.uuid4().hex[:8]}@example.org")
        config = mailbot_config(scratch, account, sink)
        engine = create_engine(f"sqlite:///{scratch / 'mailbot.db'}")
        proc = subprocess.Popen(
            mailbot_command(config, "run"),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        latencies: list[float] = []
        appends: list[float] = []
        try:
            with account.client() as imap:
                deadline = time.monotonic() + 60
                while True:  # its first visit to the folder is done: it is idling
                    with engine.connect() as conn:
                        if conn.scalar(select(func.count()).select_from(FolderState)):
                            break
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("mailbot did not start")
                    time.sleep(0.1)
                time.sleep(1)
                for n in range(count):
                    recipient = resident(n)
                    start = time.monotonic()
                    imap.append("INBOX", message(n))
                    appends.append(time.monotonic() - start)
                    while (arrived := sink.arrivals().get(recipient)) is None:
                        if time.monotonic() - start > WAIT_LIMIT_S:
                            raise RuntimeError(f"no acknowledgement for message {n}")
                        time.sleep(0.002)
                    latencies.append(arrived - start)
                    time.sleep(rng.uniform(0, 0.2))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            engine.dispose()
    return {
        "messages": count,
        "median_s": statistics.median(latencies),
        "p95_s": percentile(latencies, 95),
        "max_s": max(latencies),
        "over_target": sum(v > TARGET_P95_S for v in latencies),
        "append_median_s": statistics.median(appends),
        "append_p95_s": percentile(appends, 95),
        "idle_floor_median_s": statistics.median(floor),
        "idle_floor_p95_s": percentile(floor, 95),
        "idle_floor_messages": len(floor),
        "latencies": latencies,
    }


def report(r: dict) -> str:
    met = "met" if r["p95_s"] < TARGET_P95_S else "NOT MET"
    ms = 1000
    return "\n".join(
        [
            f"Acknowledgement latency under IDLE, {r['messages']} messages one at a time "
            f"({date.today()}, {machine()})",
            "",
            "| measured | median | p95 | max |",
            "|---|---|---|---|",
            f"| APPEND to acknowledgement accepted | {r['median_s'] * ms:.0f} ms | "
            f"{r['p95_s'] * ms:.0f} ms | {r['max_s'] * ms:.0f} ms |",
            f"| baseline: a bare IDLE client told of the APPEND ({r['idle_floor_messages']}) | "
            f"{r['idle_floor_median_s'] * ms:.0f} ms | {r['idle_floor_p95_s'] * ms:.0f} ms | |",
            f"| the APPEND round trip alone | {r['append_median_s'] * ms:.1f} ms | "
            f"{r['append_p95_s'] * ms:.1f} ms | |",
            "",
            f"p95 target under {TARGET_P95_S:.0f} s: {met} "
            f"({r['over_target']} of {r['messages']} over {TARGET_P95_S:.0f} s); "
            f"median ratio to the IDLE baseline {r['median_s'] / r['idle_floor_median_s']:.1f}x.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="50 messages")
    parser.add_argument("--json", help="also write the numbers here (for bench.run_all)")
    args = parser.parse_args()
    result = measure(50 if args.quick else args.messages)
    text = report(result)
    print(text)
    write_result("latency", text)
    save_json(args.json, result)


if __name__ == "__main__":
    main()
