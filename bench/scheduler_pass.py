"""Benchmark: one scheduler pass over 100,000 open cases, on SQLite and PostgreSQL.

Run: .venv/bin/python -m bench.scheduler_pass [--cases 100000]

The baseline, measured in the same run on the same database, is the bare indexed query
that finds the cases with something due today; the pass finds them the same way, then
decides and queues each action (reminders, holding replies, breaches) in the outbox.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy import insert, select, text

from bench.common import machine, write_result
from mailbot.app import App
from mailbot.calendar import calendar_for
from mailbot.clock import FixedClock
from mailbot.config import Config
from mailbot.migrations import upgrade
from mailbot.scheduler import run_due, schedule
from mailbot.store import Case

NOW = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)  # a Tuesday morning
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def config(url: str) -> Config:
    return Config.model_validate(
        {
            "council": {"name": "Bench Council", "mailbox_address": "council@example.gov.uk"},
            "imap": {"host": "127.0.0.1", "security": "none"},
            "smtp": {"host": "127.0.0.1", "security": "none"},
            "database": {"url": url},
            "officers": [
                {"name": f"Officer {n}", "email": f"o{n}@example.gov.uk", "roles": [role]}
                for n, role in enumerate(
                    [
                        "customer-services",
                        "complaints-officer",
                        "foi-officer",
                        "clerk",
                        "customer-services-manager",
                        "head-of-service",
                        "data-protection-officer",
                    ]
                )
            ],
        }
    )


def fill(app: App, count: int) -> None:
    """Open cases received over the last six weeks, as a busy council would have."""
    rng = random.Random(42)
    categories = ["enquiry"] * 6 + ["complaint"] * 2 + ["foi", "sar"]
    today = NOW.date()
    rows = []
    for n in range(count):
        category = rng.choice(categories)
        received = NOW - timedelta(days=rng.uniform(0, 42))
        calendar = calendar_for(app.policy, category)
        respond_by = calendar.add_working_days(received.date(), rng.randint(5, 25))
        case = Case(
            ref=f"B-{n:07d}", category=category, stage=1, respond_by=respond_by, holding_until=None
        )
        schedule(case, app.policy, today)
        rows.append(
            {
                "ref": case.ref,
                "category": category,
                "stage": 1,
                "status": "open",
                "priority": "normal",
                "policy": "stafford",
                "resident_email": f"r{n}@example.com",
                "resident_name": "",
                "subject": "Bench",
                "officer_email": "o0@example.gov.uk",
                "officer_name": "Officer 0",
                "role": "customer-services",
                "received_at": received,
                "acknowledge_by": respond_by,
                "respond_by": respond_by,
                "holding_by": None,
                "clock_stopped": False,
                "reasons": [],
                "next_action_on": case.next_action_on,
            }
        )
    with app.sessions.begin() as session:
        for start in range(0, len(rows), 5000):
            session.execute(insert(Case), rows[start : start + 5000])


def measure(url: str, count: int) -> dict:
    upgrade(url)
    app = App.load(config(url), FixedClock(NOW))
    fill(app, count)
    with app.engine.connect() as conn:
        if app.engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE cases"))
            plan = (
                conn.execute(
                    text(
                        "EXPLAIN SELECT id FROM cases WHERE status='open' AND next_action_on <= :d "
                        "AND NOT clock_stopped"
                    ),
                    {"d": NOW.date()},
                )
                .scalars()
                .all()
            )
        else:
            plan = [
                " ".join(map(str, r))
                for r in conn.execute(
                    text(
                        "EXPLAIN QUERY PLAN SELECT id FROM cases WHERE status='open' AND "
                        "next_action_on <= :d AND clock_stopped = 0"
                    ),
                    {"d": NOW.date()},
                )
            ]
    start = time.perf_counter()
    with app.sessions() as session:
        due = session.scalars(
            select(Case.id).where(
                Case.status == "open",
                Case.next_action_on <= NOW.date(),
                Case.clock_stopped.is_(False),
            )
        ).all()
    baseline = time.perf_counter() - start
    start = time.perf_counter()
    actions = run_due(app)
    elapsed = time.perf_counter() - start
    again = time.perf_counter()
    repeat_actions = run_due(app)  # the same instant again: finds nothing left to do
    repeat = time.perf_counter() - again
    app.engine.dispose()
    return {
        "cases": count,
        "due_cases": len(due),
        "actions": actions,
        "baseline_s": baseline,
        "pass_s": elapsed,
        "repeat_pass_s": repeat,
        "repeat_actions": repeat_actions,
        "plan": " | ".join(plan)[:300],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=100_000)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = measure(f"sqlite:///{Path(tmp) / 'bench.db'}", args.cases)
    name = f"mailbot_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        results["postgresql"] = measure(
            f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", args.cases
        )
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    lines = [f"Scheduler pass over {args.cases:,} open cases ({date.today()}, {machine()})", ""]
    lines.append(
        "| database | due cases | actions queued | find (baseline) | whole pass | "
        "ratio | repeat pass |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for db, r in results.items():
        lines.append(
            f"| {db} | {r['due_cases']:,} | {r['actions']:,} | {r['baseline_s'] * 1000:.1f} ms | "
            f"{r['pass_s']:.2f} s | {r['pass_s'] / r['baseline_s']:.0f}x | "
            f"{r['repeat_pass_s'] * 1000:.1f} ms ({r['repeat_actions']} actions) |"
        )
    lines.append("")
    for db, r in results.items():
        lines.append(f"- {db} query plan: `{r['plan']}`")
    print("\n".join(lines))
    write_result("scheduler_pass", "\n".join(lines))


if __name__ == "__main__":
    main()
