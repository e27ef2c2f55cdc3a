"""Benchmark: the memory an idle `mailbot run` holds, with its sending process.

Run: python -m bench.idle

`mailbot run` against one mailbox on a private Dovecot (password sign-in, SQLite), after
it has read one resident's message and sent its acknowledgement and has then waited on
IMAP IDLE for a while: the proportional set size (PSS) of the daemon and its sending
process together, so pages they still share since the fork count once. The baseline is
a bare Python with what any mailbot command imports (`import mailbot.cli`), in the same
run. Target: under 80 MB (issue 19).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from tests.conftest import resident_mail

from bench.common import machine, write_result
from bench.support import (
    ARRIVED,
    _children,
    daemon_memory_mb,
    mailbot_command,
    mailbot_config,
    save_json,
    servers,
)

TARGET_MB = 80.0
SETTLE_S = 20.0  # idle this long before measuring: the first passes are done by then


def _rollup_mb(pid: int) -> dict[str, float]:
    """The process's smaps_rollup, in MB: Rss, Pss, Private_Dirty …"""
    found = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        found[key] = int(value.split()[0]) / 1024
    return found


def _pss_mb(pid: int) -> float:
    return _rollup_mb(pid).get("Pss", 0.0)


# What a fresh Python holds once it has imported each library mailbot's daemon uses (the
# standard ones the project is built on), to show where a floor lies.
LIBRARIES = (
    ("a bare Python", ""),
    ("SQLAlchemy Core", "import sqlalchemy"),
    ("SQLAlchemy with its ORM", "import sqlalchemy.orm"),
    ("pydantic", "import pydantic"),
    ("Jinja2", "import jinja2"),
    ("IMAPClient", "import imapclient"),
    ("asyncio and aiosmtplib", "import aiosmtplib"),
    ("all of them and mailbot's command line", "import mailbot.cli"),
)


def import_costs() -> dict[str, float]:
    """Resident memory (MB) of a fresh Python after each import, each in its own process."""
    costs = {}
    for name, statement in LIBRARIES:
        probe = (
            f"{statement}\nimport pathlib\n"
            "line = [l for l in pathlib.Path('/proc/self/status').read_text().splitlines()"
            " if l.startswith('VmRSS')][0]\nprint(int(line.split()[1]))"
        )
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
        costs[name] = int(out.stdout.strip()) / 1024
    return costs


def baseline_mb() -> float:
    """A bare Python that has imported mailbot's command line, and nothing more."""
    probe = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import mailbot.cli, time; print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert probe.stdout is not None
        probe.stdout.readline()
        return _pss_mb(probe.pid)
    finally:
        probe.kill()
        probe.wait()


def measure() -> dict:
    with servers() as (dovecot, sink, scratch):
        account = dovecot.add_account("enquiries@council.example.gov.uk")
        config = mailbot_config(scratch / "idle", account, sink)
        account.append(resident_mail(), when=ARRIVED)
        daemon = subprocess.Popen(
            mailbot_command(config, "run"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            deadline = time.monotonic() + 60
            while not sink.count() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(SETTLE_S)
            total, peak = daemon_memory_mb(daemon.pid)
            parts = {"deciding": _pss_mb(daemon.pid)}
            detail = {"deciding": _rollup_mb(daemon.pid)}
            for child in _children(daemon.pid):
                parts["sending"] = _pss_mb(child)
                detail["sending"] = _rollup_mb(child)
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
    return {
        "pss_mb": total,
        "peak_mb": peak,
        "parts": parts,
        "detail": detail,
        "baseline_mb": baseline_mb(),
        "imports_mb": import_costs(),
    }


def report(r: dict) -> str:
    met = "met" if r["pss_mb"] < TARGET_MB else "NOT MET"
    parts = ", ".join(f"{name} {mb:.1f} MB" for name, mb in r["parts"].items())
    return "\n".join(
        [
            f"Idle `mailbot run`, one mailbox, with its sending process "
            f"({date.today()}, {machine()})",
            "",
            "| | proportional set size |",
            "|---|---|",
            f"| baseline: a bare Python with `import mailbot.cli` | {r['baseline_mb']:.1f} MB |",
            "| **mailbot run**, idle on IMAP IDLE after one acknowledgement "
            f"| {r['pss_mb']:.1f} MB |",
            "",
            f"The two processes: {parts} (peaks added: {r['peak_mb']:.0f} MB). "
            f"Ratio to the baseline {r['pss_mb'] / r['baseline_mb']:.1f}x. "
            f"Target under {TARGET_MB:.0f} MB: {met}.",
            "",
            "| process | resident (RSS) | proportional (PSS) | its own (private dirty) |",
            "|---|---|---|---|",
            *(
                f"| {name} | {d['Rss']:.1f} MB | {d['Pss']:.1f} MB | {d['Private_Dirty']:.1f} MB |"
                for name, d in r["detail"].items()
            ),
            "",
            "The deciding process alone, were there no sending process at all, would hold its "
            f"resident {r['detail']['deciding']['Rss']:.0f} MB.",
            "",
            "A fresh Python after importing each library the daemon is built on "
            "(resident, each in its own process):",
            "",
            "| imported | resident |",
            "|---|---|",
            *(f"| {name} | {mb:.1f} MB |" for name, mb in r["imports_mb"].items()),
            "",
            "Why the target is out of reach by rearranging: each process's own memory is the",
            "pages of the parent it has touched since the fork (Python writes the reference",
            "count of every object it uses, so a shared page is copied the first time it is",
            "read; `gc.freeze()` before the fork and MALLOC_ARENA_MAX changed nothing). A",
            "sending thread, or a sending process started only while there is mail to send,",
            "would leave the deciding process alone, which is itself above 80 MB resident. A",
            "slim sending process started afresh would import SQLAlchemy, pydantic, Jinja2 and",
            "IMAPClient again, unshared. Under 80 MB needs the daemon to shed libraries the",
            "project is built on (SQLAlchemy, which Alembic needs; pydantic): a decision for",
            "the owner, not made here.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="also write the figures here, for bench.run_all")
    args = parser.parse_args()
    results = measure()
    text = report(results)
    print(text)
    write_result("idle", text)
    save_json(args.json, results)


if __name__ == "__main__":
    main()
