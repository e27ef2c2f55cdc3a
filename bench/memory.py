"""Benchmark: peak memory for a 25 MB attachment and a 10,000-part MIME bomb.

Run: python -m bench.memory

Each figure comes from a process of its own, so one peak cannot hide another: the
parser alone (parse, screen, classify) on the raw bytes, read as peak RSS and as the
Python heap peak from tracemalloc; and `mailbot run --once` on a mailbox holding just
that message. Peaks are the process's own VmHWM (rusage's ru_maxrss would include the
size of the process that started it). The baseline is the same run on a mailbox
holding one ordinary message. Target: peak resident memory under 150 MB. (The daemon's
memory after 5,000 messages is measured by bench.ingest.)
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
import tracemalloc
import uuid
from datetime import date
from pathlib import Path

from bench.common import machine, write_result
from bench.support import (
    ARRIVED,
    COUNCIL,
    NOW,
    mailbot_command,
    mailbot_config,
    rss_mb,
    run_child,
    save_json,
    servers,
)

TARGET_MB = 150.0


def ordinary() -> bytes:
    return (
        f"From: Jane Doe <jane@residents.example.net>\r\nTo: {COUNCIL}\r\n"
        "Subject: Bins not collected\r\nMessage-ID: <ordinary@residents.example.net>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nMy bins were missed on Tuesday.\r\n"
    ).encode()


def attachment(megabytes: int = 25) -> bytes:
    """A resident's letter with a scanned document: 25 MB of PDF, base64 in 76-char lines."""
    data = os.urandom(megabytes * 1024 * 1024)
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (
        (
            f"From: Jane Doe <jane@residents.example.net>\r\nTo: {COUNCIL}\r\n"
            "Subject: Planning objection with survey\r\n"
            "Message-ID: <big@residents.example.net>\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "Please find my objection and the survey attached.\r\n"
            '--b\r\nContent-Type: application/pdf; name="survey.pdf"\r\n'
            'Content-Disposition: attachment; filename="survey.pdf"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
        ).encode()
        + encoded
        + b"--b--\r\n"
    )


def bomb(parts: int = 10_000) -> bytes:
    """A flat multipart with ten thousand tiny parts (a nested one is cut far sooner)."""
    head = (
        f"From: Jane Doe <jane@residents.example.net>\r\nTo: {COUNCIL}\r\n"
        "Subject: Lots of parts\r\nMessage-ID: <bomb@residents.example.net>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
    ).encode()
    part = b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    return head + part * parts + b"--b--\r\n"


def child(mode: str, path: str) -> None:
    """In a fresh process: parse one message and print what it cost."""
    from mailbot.classify import classify, load_rules
    from mailbot.parse import parse_message
    from mailbot.policy import load_policy
    from mailbot.screen import ScreenContext, screen

    rules = load_rules(load_policy("stafford").classification)
    raw = Path(path).read_bytes()
    before = rss_mb(os.getpid())[1]
    if mode == "tracemalloc":
        tracemalloc.start()
    msg = parse_message(raw)
    screen(msg, ScreenContext(own_addresses=frozenset({COUNCIL})))
    classify(msg, rules)
    peak = tracemalloc.get_traced_memory()[1] / 1e6 if mode == "tracemalloc" else None
    after = rss_mb(os.getpid())[1]
    print(json.dumps({"rss_before_mb": before, "rss_peak_mb": after, "heap_peak_mb": peak}))


def parse_costs(raw: bytes) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".eml") as f:
        f.write(raw)
        f.flush()
        out = {}
        for mode in ("rss", "tracemalloc"):
            result = run_child(
                [sys.executable, "-m", "bench.memory", "--child", mode, f.name], timeout=300
            )
            if result.returncode != 0:
                raise RuntimeError(result.stderr[-2000:])
            answer = [line for line in result.stderr.splitlines() if line.startswith("{")]
            out[mode] = json.loads(answer[-1])
    return {
        "rss_before_mb": out["rss"]["rss_before_mb"],
        "rss_peak_mb": out["rss"]["rss_peak_mb"],
        "heap_peak_mb": out["tracemalloc"]["heap_peak_mb"],
    }


def run_once_peak(raw: bytes) -> dict:
    """`mailbot run --once` on a mailbox holding just this message."""
    with servers() as (dovecot, sink, scratch):
        account = dovecot.add_account(f"memory-{uuid.uuid4().hex[:8]}@example.org")
        account.append(raw, when=ARRIVED)
        config = mailbot_config(scratch, account, sink)
        result = run_child(mailbot_command(config, "run", "--once", "--now", NOW.isoformat()))
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-2000:])
        return {"rss_peak_mb": result.peak_rss_mb, "seconds": result.seconds, "sent": sink.count()}


def measure() -> dict:
    cases = {
        "ordinary message": ordinary(),
        "25 MB attachment": attachment(25),
        "10,000-part MIME bomb": bomb(),
    }
    results = {}
    for name, raw in cases.items():
        results[name] = {
            "raw_mb": len(raw) / 1e6,
            "parse": parse_costs(raw),
            "run_once": run_once_peak(raw),
        }
    return results


def report(results: dict) -> str:
    lines = [
        f"Peak memory, one process per figure ({date.today()}, {machine()})",
        "",
        "| message | raw size | parse+screen+classify: peak RSS (heap peak) | "
        "`mailbot run --once`: peak RSS | under 150 MB |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        parse, run = r["parse"], r["run_once"]
        worst = max(parse["rss_peak_mb"], run["rss_peak_mb"])
        lines.append(
            f"| {name} | {r['raw_mb']:.1f} MB | {parse['rss_peak_mb']:.0f} MB "
            f"(+{parse['rss_peak_mb'] - parse['rss_before_mb']:.0f} MB over the "
            f"{parse['rss_before_mb']:.0f} MB start; heap {parse['heap_peak_mb']:.1f} MB) | "
            f"{run['rss_peak_mb']:.0f} MB | {'yes' if worst < TARGET_MB else 'NO'} |"
        )
    lines += [
        "",
        "The attachment is larger than `[imap] max_message_mb` (10 by default), "
        "so `run --once` fetches only that much of it, as configured.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="accepted; this one is quick")
    parser.add_argument("--json", help="also write the numbers here (for bench.run_all)")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        # stdout is not kept by run_child: the answer goes to stderr.
        sys.stdout = sys.stderr
        child(*args.child)
        return
    results = measure()
    text = report(results)
    print(text)
    write_result("memory", text)
    save_json(args.json, results)


if __name__ == "__main__":
    main()
