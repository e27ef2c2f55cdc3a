"""Residents' real mail through the whole daemon: the shared corpus delivered to a real
Dovecot and read by `mailbot run --once`, as the issue measured it from outside. Every
message must open a case, and each case's category must be the one `mailbot classify
evaluate` reports for that message (so its figures are the daemon's figures)."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mailbot.classify import classify
from mailbot.parse import parse_message
from mailbot.store import Case, InboundMessage
from tests.conftest import mailbot, to_residents

pytestmark = pytest.mark.integration

SHARED = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "council-mail"
ARRIVED = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
EVERY = 5  # one message in five: 50 messages, each category represented


def corpus_sample() -> list[tuple[str, str]]:
    if not SHARED.is_dir():
        pytest.skip(f"the shared corpus is not here ({SHARED})")
    with (SHARED / "labels.csv").open(newline="", encoding="utf-8") as fh:
        rows = [(row["file"], row["category"]) for row in csv.DictReader(fh)]
    return rows[::EVERY]


def test_real_residents_mail_opens_one_case_each_as_evaluate_says(app, config_path, dovecot, smtp):
    sample = corpus_sample()
    raws = {name: (SHARED / "corpus" / name).read_bytes() for name, _ in sample}
    for n, (name, _) in enumerate(sample):
        dovecot.append(raws[name], when=ARRIVED + timedelta(minutes=n))

    proc = mailbot(config_path, "run", "--once", "--now", "2026-11-03T10:00:00+00:00")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()

    with app.sessions() as s:
        outcomes = s.execute(
            select(InboundMessage.message_id, InboundMessage.outcome, Case.category).outerjoin(
                Case, Case.id == InboundMessage.case_id
            )
        ).all()
    got = {message_id: (outcome, category) for message_id, outcome, category in outcomes}
    model = app.model()
    assert len(got) == len(sample)
    for name, _label in sample:
        msg = parse_message(raws[name])
        expected = classify(msg, app.rules, model=model).category
        assert got[msg.message_id] == ("case-opened", expected), name
    # Every resident was acknowledged, once.
    residents = [m.rcpt_tos[0] for m in to_residents(smtp)]
    assert len(residents) == len(set(residents)) == len(sample)
