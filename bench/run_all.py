"""Every benchmark in one command, each in its own process, then a summary in results.md.

Run (as root, from the checkout; Dovecot and PostgreSQL as for the tests):

    .venv/bin/python -m bench.run_all            # about 5 minutes on 2 cores
    .venv/bin/python -m bench.run_all --quick    # about 3 minutes: smaller backlog and runs

Runs bench.ingest (5,000 messages, as installed and with three SMTP connections;
--quick 1,000), bench.latency (200; --quick 50), bench.memory, bench.hostile,
bench.classifier, bench.idle and bench.scheduler_pass (100,000 cases; --quick 20,000).
Each writes its own section of bench/results.md; this adds a summary of every figure
against its target.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from bench.common import RESULTS, machine, write_result
from bench.support import ROOT


def run(module: str, *args: str) -> bool:
    print(f"\n== {module} {' '.join(args)}", flush=True)
    started = time.monotonic()
    code = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT).returncode
    print(f"== {module}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
    return code == 0


def load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def scheduler_rows() -> dict[str, tuple[str, str, str]]:
    """(baseline, whole pass, ratio) per database, from scheduler_pass's own section."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    section = re.search(r"<!-- scheduler_pass -->(.*?)<!-- /scheduler_pass -->", text, re.S)
    rows = {}
    for line in (section.group(1) if section else "").splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 7 and cells[0] in ("sqlite", "postgresql"):
            rows[cells[0]] = (cells[3], cells[4], cells[5])
    return rows


def yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def summary(
    ingest: dict | None,
    latency: dict | None,
    memory: dict | None,
    hostile: dict | None,
    cases: int,
) -> str:
    lines = [
        f"Summary ({date.today()}, {machine()})",
        "",
        "| benchmark | mailbot | baseline in the same run | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    if ingest:
        n = ingest["messages"]
        lines.append(
            f"| backlog ingest, {n:,} mixed messages ({ingest['database']}) | "
            f"{n / ingest['mailbot_s']:,.0f} msg/s ({ingest['mailbot_s']:.1f} s) | "
            f"floor {n / ingest['floor_s']:,.0f} msg/s ({ingest['floor_s']:.1f} s) | "
            f"{ingest['ratio']:.2f} | >= 0.5 | {yes(ingest['ratio'] >= 0.5)} |"
        )
        for connections, more in ingest.get("more_connections", {}).items():
            lines.append(
                f"| backlog ingest, the same, `[smtp] connections = {connections}` | "
                f"{n / more['seconds']:,.0f} msg/s ({more['seconds']:.1f} s) | "
                f"floor {n / ingest['floor_s']:,.0f} msg/s ({ingest['floor_s']:.1f} s) | "
                f"{more['ratio']:.2f} | >= 0.5 | {yes(more['ratio'] >= 0.5)} |"
            )
    if latency:
        lines.append(
            f"| acknowledgement latency under IDLE, {latency['messages']} messages | "
            f"median {latency['median_s'] * 1000:.0f} ms, p95 {latency['p95_s'] * 1000:.0f} ms | "
            f"bare IDLE client median {latency['idle_floor_median_s'] * 1000:.0f} ms | "
            f"{latency['median_s'] / latency['idle_floor_median_s']:.1f}x | p95 < 2 s | "
            f"{yes(latency['p95_s'] < 2)} |"
        )
    if memory:
        base = memory["ordinary message"]["run_once"]["rss_peak_mb"]
        for name in ("25 MB attachment", "10,000-part MIME bomb"):
            r = memory[name]
            peak = max(r["parse"]["rss_peak_mb"], r["run_once"]["rss_peak_mb"])
            lines.append(
                f"| peak memory, {name} | {peak:.0f} MB | ordinary message {base:.0f} MB | "
                f"{peak / base:.1f}x | < 150 MB | {yes(peak < 150)} |"
            )
    if hostile:
        name, worst = max(hostile["bodies_s"].items(), key=lambda item: item[1])
        ordinary = hostile["ordinary_s"]
        lines.append(
            f"| hostile 1 MB bodies, the slowest ({name}) | {worst * 1000:,.0f} ms | "
            f"ordinary message {ordinary * 1000:.2f} ms | {worst / ordinary:,.0f}x | < 2 s | "
            f"{yes(worst < 2)} |"
        )
    for db, (find, whole, ratio) in scheduler_rows().items():
        seconds = float(whole.removesuffix(" s")) if whole.endswith(" s") else float("inf")
        lines.append(
            f"| scheduler pass, {cases:,} open cases ({db}) | {whole} | "
            f"indexed find {find} | {ratio} | < 1 s | {yes(seconds < 1)} |"
        )
    if ingest:
        lines.append(
            f"| daemon resident memory after {ingest['messages']:,} messages, with its "
            f"sending process | {ingest['mailbot_rss_mb']:.0f} MB proportional (peaks "
            f"{ingest['mailbot_hwm_mb']:.0f} MB added) | "
            "| | — | — |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs, about 3 minutes")
    args = parser.parse_args()
    quick = ["--quick"] if args.quick else []
    cases = 20_000 if args.quick else 100_000
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        ok = [
            run("bench.ingest", *quick, "--json", str(out / "ingest.json")),
            run("bench.latency", *quick, "--json", str(out / "latency.json")),
            run("bench.memory", "--json", str(out / "memory.json")),
            run("bench.hostile", "--json", str(out / "hostile.json")),
            run("bench.classifier", "--json", str(out / "classifier.json")),
            run("bench.idle", "--json", str(out / "idle.json")),
            run("bench.scheduler_pass", "--cases", str(cases)),
        ]
        text = summary(
            load(out / "ingest.json"),
            load(out / "latency.json"),
            load(out / "memory.json"),
            load(out / "hostile.json"),
            cases,
        )
    text += f"\n\nAll benchmarks took {(time.monotonic() - started) / 60:.1f} minutes."
    if not all(ok):
        text += " Some did not finish; see above."
    print("\n" + text)
    write_result("summary", text)
    sys.exit(0 if all(ok) else 1)


if __name__ == "__main__":
    main()
