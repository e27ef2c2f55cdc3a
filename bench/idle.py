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


def _pss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


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
            for child in _children(daemon.pid):
                parts["sending"] = _pss_mb(child)
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
    return {"pss_mb": total, "peak_mb": peak, "parts": parts, "baseline_mb": baseline_mb()}


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
