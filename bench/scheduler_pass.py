"""Benchmark: one scheduler pass over 100,000 open cases, on SQLite and PostgreSQL.

Run: .venv/bin/python -m bench.scheduler_pass [--cases 100000] [--samples 3]

The baseline, measured in the same run on the same database, is the bare indexed query
that finds the cases with something due today; the pass finds them the same way, then
decides and queues each action (reminders, holding replies, breaches) in the outbox.
The database is filled once; each pass runs on a fresh copy of it, and the medians are
reported.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
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
from mailbot.planning import schedule
from mailbot.scheduler import due_today, run_due
from mailbot.store import Case

NOW = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)  # a Tuesday morning
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_BENCH = "postgresql+psycopg://postgres@127.0.0.1:5432"


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


def query_plan(app: App) -> list[str]:
    """How the database finds today's due cases: the pass's own conditions, explained."""
    query = select(Case.id).where(*due_today(app.policy, NOW.date()))
    explain = "EXPLAIN" if app.engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN"
    compiled = query.compile(app.engine, compile_kwargs={"literal_binds": True})
    with app.engine.connect() as conn:
        rows = conn.exec_driver_sql(f"{explain} {compiled}").all()
    return [" ".join(str(value) for value in row) for row in rows]


def one_pass(url: str) -> dict:
    """The bare indexed find, then the pass, then the same pass again, on a fresh copy."""
    app = App.load(config(url), FixedClock(NOW))
    if app.engine.dialect.name == "postgresql":
        with app.engine.begin() as conn:
            conn.execute(text("ANALYZE cases"))
    plan = query_plan(app)
    start = time.perf_counter()
    with app.sessions() as session:
        due = session.scalars(select(Case.id).where(*due_today(app.policy, NOW.date()))).all()
    baseline = time.perf_counter() - start
    start = time.perf_counter()
    actions = run_due(app)
    elapsed = time.perf_counter() - start
    again = time.perf_counter()
    repeat_actions = run_due(app)  # the same instant again: finds nothing left to do
    repeat = time.perf_counter() - again
    app.engine.dispose()
    return {
        "due_cases": len(due),
        "actions": actions,
        "baseline_s": baseline,
        "pass_s": elapsed,
        "repeat_pass_s": repeat,
        "repeat_actions": repeat_actions,
        "plan": " | ".join(plan)[:300],
    }


def summarise(count: int, passes: list[dict]) -> dict:
    """Medians over the passes; every pass must have done the same work."""
    assert len({(p["due_cases"], p["actions"], p["repeat_actions"]) for p in passes}) == 1
    result = {"cases": count, **passes[0], "pass_samples_s": [p["pass_s"] for p in passes]}
    for key in ("baseline_s", "pass_s", "repeat_pass_s"):
        result[key] = statistics.median(p[key] for p in passes)
    return result


def measure_sqlite(directory: Path, count: int, samples: int) -> dict:
    template = directory / "filled.db"
    url = f"sqlite:///{template}"
    upgrade(url)
    app = App.load(config(url), FixedClock(NOW))
    fill(app, count)
    with app.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # all of it in the file
    app.engine.dispose()
    passes = []
    for n in range(samples):
        copy = directory / f"pass-{n}.db"
        shutil.copyfile(template, copy)
        passes.append(one_pass(f"sqlite:///{copy}"))
    return summarise(count, passes)


def measure_postgresql(count: int, samples: int) -> dict:
    name = f"mailbot_bench_{uuid.uuid4().hex[:8]}"
    names = [name] + [f"{name}_{n}" for n in range(samples)]
    try:
        admin(f'CREATE DATABASE "{name}"')
        url = f"{PG_BENCH}/{name}"
        upgrade(url)
        app = App.load(config(url), FixedClock(NOW))
        fill(app, count)
        app.engine.dispose()
        passes = []
        for copy in names[1:]:
            admin(f'CREATE DATABASE "{copy}" TEMPLATE "{name}"')
            passes.append(one_pass(f"{PG_BENCH}/{copy}"))
        return summarise(count, passes)
    finally:
        for db in names:
            admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=3, help="passes, each on a fresh copy")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = measure_sqlite(Path(tmp), args.cases, args.samples)
    results["postgresql"] = measure_postgresql(args.cases, args.samples)
    lines = [
        f"Scheduler pass over {args.cases:,} open cases ({date.today()}, {machine()})",
        "",
        f"Each figure is the median of {args.samples} passes, each on a fresh copy of the "
        "filled database (the machine is shared, so single runs wander).",
        "",
        "| database | due cases | actions queued | find (baseline) | whole pass | "
        "ratio | repeat pass |",
        "|---|---|---|---|---|---|---|",
    ]
    for db, r in results.items():
        lines.append(
            f"| {db} | {r['due_cases']:,} | {r['actions']:,} | {r['baseline_s'] * 1000:.1f} ms | "
            f"{r['pass_s']:.2f} s | {r['pass_s'] / r['baseline_s']:.0f}x | "
            f"{r['repeat_pass_s'] * 1000:.1f} ms ({r['repeat_actions']} actions) |"
        )
    lines.append("")
    for db, r in results.items():
        samples = ", ".join(f"{s:.2f}" for s in r["pass_samples_s"])
        lines.append(f"- {db} passes: {samples} s")
    for db, r in results.items():
        lines.append(f"- {db} query plan: `{r['plan']}`")
    print("\n".join(lines))
    write_result("scheduler_pass", "\n".join(lines))


if __name__ == "__main__":
    main()
