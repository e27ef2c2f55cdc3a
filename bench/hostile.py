"""Benchmark: deciding on hostile 1 MB message bodies, against an ordinary message.

Run: python -m bench.hostile

Each body is built to make a careless regular expression backtrack: a phrase repeated
17,000 times, a million of one character, lines that each look like a quote or an
"On ... wrote:" header, and runs of the characters the classification patterns look for
(hyphens, years, brackets). The figure is the median of three runs of parse, screen and
classify on the whole message, in this process; the baseline is the same for an ordinary
resident's message. Target: under 2 s each, so that one hostile message cannot hold up
the mail behind it. (tests/test_classify.py checks, without a clock, that only the first
part of a long body is read at all.)
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date

from bench.common import machine, write_result
from bench.support import COUNCIL, save_json
from mailbot.classify import classify, load_rules
from mailbot.parse import parse_message
from mailbot.screen import ScreenContext, screen

TARGET_S = 2.0

BODIES = {
    "a phrase, 17,000 times": "how do I complain about the bins missed again, nobody cares "
    * 17_000,
    "a million letters": "a" * 1_000_000,
    "a million spaces": " " * 1_000_000,
    "a million line breaks": "\n" * 1_000_000,
    "110,000 quoted lines": "> quoted\n" * 110_000,
    '100,000 "On ... wrote:" openings': "On Monday\n" * 100_000,
    "250,000 hyphens": "fly-" * 250_000,
    "80,000 years": "between 2020 " * 80_000,
    "90,000 runs of brackets": "(((((((((( " * 90_000,
}
# Hostile structure rather than text: the MIME bomb and the deep nesting that
# tests/test_parse.py shows are cut short with a defect (those tests use no clock).
MIME_BOMB = (
    b'From: a@b.com\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
    + b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(10_000))
    + b"--b--"
)


def nested(depth: int) -> bytes:
    head = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    tail = b"".join(b"\r\n--b%d--" % i for i in reversed(range(depth)))
    return (
        b"From: a@b.com\r\nSubject: deep\r\n" + head + b"Content-Type: text/plain\r\n\r\nx" + tail
    )


STRUCTURES = {
    "10,000 MIME parts": MIME_BOMB,
    "MIME nested 200 deep": nested(200),
    "MIME nested 5,000 deep": nested(5000),
}
ORDINARY = "My bins were missed on Tuesday. Could someone collect them please?\n"


def raw_message(body: str) -> bytes:
    return (
        f"From: Jane Doe <jane@residents.example.net>\r\nTo: {COUNCIL}\r\n"
        "Subject: Bins not collected\r\nMessage-ID: <hostile@residents.example.net>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body
    ).encode()


def decide_seconds(raw: bytes, repeat: int) -> float:
    """Median seconds to parse, screen and classify this message."""
    rules = load_rules()
    context = ScreenContext(own_addresses=frozenset({COUNCIL}))
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        msg = parse_message(raw)
        screen(msg, context)
        classify(msg, rules)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure() -> dict:
    ordinary = decide_seconds(raw_message(ORDINARY), 201)
    bodies = {name: decide_seconds(raw_message(body), 3) for name, body in BODIES.items()}
    bodies |= {name: decide_seconds(raw, 3) for name, raw in STRUCTURES.items()}
    return {"ordinary_s": ordinary, "bodies_s": bodies}


def report(results: dict) -> str:
    ordinary = results["ordinary_s"]
    lines = [
        f"Hostile 1 MB bodies: parse, screen and classify ({date.today()}, {machine()})",
        "",
        "| body | time (median of 3) | against an ordinary message | under 2 s |",
        "|---|---|---|---|",
    ]
    for name, seconds in results["bodies_s"].items():
        lines.append(
            f"| {name} | {seconds * 1000:,.0f} ms | {seconds / ordinary:,.0f}x "
            f"| {'yes' if seconds < TARGET_S else '**no**'} |"
        )
    worst = max(results["bodies_s"].values())
    lines += [
        "",
        f"Baseline: an ordinary resident's message, {ordinary * 1000:.2f} ms (median of 201). "
        f"Slowest hostile body {worst:.2f} s: target under {TARGET_S:.0f} s "
        f"{'met' if worst < TARGET_S else 'NOT MET'}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="also write the figures here, for bench.run_all")
    args = parser.parse_args()
    results = measure()
    text = report(results)
    print(text)
    write_result("hostile", text)
    save_json(args.json, results)


if __name__ == "__main__":
    main()
