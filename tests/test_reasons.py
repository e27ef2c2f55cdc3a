"""Reasons: the rule that said so and what it found, kept apart, read as a clerk reads them;
and migration 0014, which took the old "rule: text" strings apart once."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
from alembic import command

from mailbot.migrations import alembic_config, upgrade
from mailbot.reasons import Reason, first
from mailbot.store import Case, InboundMessage, ReasonList, make_engine, session_factory

SPAM = "marked as spam, phishing or forged by the council's mail servers (X-Spam-Flag: YES)"


def test_a_reason_reads_as_its_rule_then_what_it_found():
    assert str(Reason("spam", SPAM)) == f"spam: {SPAM}"
    assert str(Reason("complaint", "2 points")) == "complaint: 2 points"
    assert str(Reason("bounce-sender")) == "bounce-sender"  # as retention leaves it


def test_a_reason_is_stored_as_an_object_and_read_back():
    reason = Reason("welfare", 'phrase "lives alone" in body')
    assert reason.to_json() == {"rule": "welfare", "text": 'phrase "lives alone" in body'}
    assert Reason.read(reason.to_json()) == reason
    assert Reason.read({"rule": "sender-cap"}) == Reason("sender-cap", "")


@pytest.mark.parametrize(
    ("old", "rule", "text"),
    [
        (f"spam: {SPAM}", "spam", SPAM),  # the text's own ": " stays in the text
        ('welfare: phrase "lives alone" in body', "welfare", 'phrase "lives alone" in body'),
        ("complaint: 2 points", "complaint", "2 points"),
        ("RuntimeError: classifier fell over", "RuntimeError", "classifier fell over"),
        ("bounce-sender", "bounce-sender", ""),  # what retention kept
        # No rule named: nothing of it may pass for one (retention keeps rules).
        ("arrived before start_from", "", "arrived before start_from"),
        (
            "acknowledgement to jane@example.com bounced: 550 no such user",
            "",
            "acknowledgement to jane@example.com bounced: 550 no such user",
        ),
        ("sent folder: not from staff", "", "sent folder: not from staff"),
    ],
)
def test_a_string_from_before_migration_0014_reads_as_it_was_written(old, rule, text):
    reason = Reason.read(old)
    assert (reason.rule, reason.text) == (rule, text)
    assert str(reason) == old


@pytest.mark.parametrize("value", [None, 3, ["spam", "x"], {"text": "no rule"}])
def test_anything_else_is_not_a_reason(value):
    with pytest.raises((TypeError, KeyError)):
        Reason.read(value)


def test_first_is_the_first_reason_any_of_the_rules_gave():
    reasons = [Reason("auto-submitted", "a"), Reason("spam", "b"), Reason("spam", "c")]
    assert first(reasons, "spam") == Reason("spam", "b")
    assert first(reasons, "sender-cap", "auto-submitted") == Reason("auto-submitted", "a")
    assert first(reasons, "form") is None
    assert first(None, "spam") is None


def test_the_column_takes_reasons_only_and_reads_old_rows_too():
    column = ReasonList()
    stored = column.process_bind_param([Reason("loop", "x"), Reason("sender-cap")], None)
    assert stored == [{"rule": "loop", "text": "x"}, {"rule": "sender-cap", "text": ""}]
    with pytest.raises(TypeError):
        column.process_bind_param(["loop: x"], None)  # a producer still writing sentences
    assert column.process_result_value([{"rule": "loop", "text": "x"}, "spam: y"], None) == [
        Reason("loop", "x"),
        Reason("spam", "y"),
    ]


# --- migration 0014 ----------------------------------------------------------------------

BEFORE = "0013_sent_copies"
AT = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
OLD_CASE = ["complaint: 2 points", 'welfare: phrase "lives alone" in body']
OLD_MESSAGES = [
    [f"spam: {SPAM}"],
    ["RuntimeError: classifier fell over"],
    ["bounce-sender"],
    [],
    OLD_CASE,
]


def _tables() -> tuple[sa.TableClause, sa.TableClause]:
    """The two tables as they were at 0013 (only what these rows need)."""
    cases = sa.table(
        "cases",
        *(sa.column(name, sa.String) for name in ("ref", "category", "status", "priority")),
        *(sa.column(name, sa.String) for name in ("policy", "resident_email", "resident_name")),
        *(sa.column(name, sa.String) for name in ("subject", "role")),
        sa.column("stage", sa.Integer),
        sa.column("received_at", sa.DateTime(timezone=True)),
        sa.column("acknowledge_by", sa.Date),
        sa.column("respond_by", sa.Date),
        sa.column("clock_stopped", sa.Boolean),
        sa.column("reasons", sa.JSON),
    )
    messages = sa.table(
        "messages",
        sa.column("id", sa.Integer),
        sa.column("folder", sa.String),
        sa.column("uidvalidity", sa.Integer),
        sa.column("uid", sa.Integer),
        sa.column("content_hash", sa.String),
        sa.column("internal_date", sa.DateTime(timezone=True)),
        sa.column("outcome", sa.String),
        sa.column("reasons", sa.JSON),
        sa.column("processed_at", sa.DateTime(timezone=True)),
    )
    return cases, messages


def _raw(engine: sa.Engine) -> tuple[list, list]:
    """The reasons as the database holds them: the case's, then each message's."""

    def decoded(value):  # SQLite hands JSON back as text, PostgreSQL decoded
        return json.loads(value) if isinstance(value, str) else value

    with engine.connect() as conn:
        case = conn.execute(sa.text("SELECT reasons FROM cases")).scalar_one()
        messages = conn.execute(sa.text("SELECT reasons FROM messages ORDER BY id")).scalars()
        return decoded(case), [decoded(m) for m in messages]


@pytest.mark.integration
def test_migration_0014_takes_old_reasons_apart_once_and_puts_them_back(database_url):
    upgrade(database_url, BEFORE)
    engine = make_engine(database_url)
    cases, messages = _tables()
    with engine.begin() as conn:
        conn.execute(
            cases.insert().values(
                ref="COM-2026-00001", category="complaint", status="open", priority="high",
                policy="stafford", resident_email="jane@example.com", resident_name="Jane",
                subject="Bins", role="complaints-officer", stage=1, received_at=AT,
                acknowledge_by=date(2026, 11, 4), respond_by=date(2026, 12, 1),
                clock_stopped=False, reasons=OLD_CASE,
            )
        )  # fmt: skip
        conn.execute(
            messages.insert(),
            [
                dict(
                    folder="box/INBOX", uidvalidity=7, uid=uid, content_hash="h",
                    internal_date=AT, outcome="suppressed", reasons=reasons, processed_at=AT,
                )
                for uid, reasons in enumerate(OLD_MESSAGES, start=1)
            ],
        )  # fmt: skip

    upgrade(database_url)
    case, rows = _raw(engine)
    assert case == [
        {"rule": "complaint", "text": "2 points"},
        {"rule": "welfare", "text": 'phrase "lives alone" in body'},
    ]
    assert rows == [
        [{"rule": "spam", "text": SPAM}],
        [{"rule": "RuntimeError", "text": "classifier fell over"}],
        [{"rule": "bounce-sender", "text": ""}],
        [],
        case,
    ]
    with session_factory(engine)() as session:
        [read] = session.scalars(sa.select(Case)).all()
        assert read.reasons == [
            Reason("complaint", "2 points"),
            Reason("welfare", 'phrase "lives alone" in body'),
        ]
        spam = session.scalars(sa.select(InboundMessage).where(InboundMessage.uid == 1)).one()
        assert spam.reasons == [Reason("spam", SPAM)]

    command.downgrade(alembic_config(database_url), BEFORE)
    assert _raw(engine) == (OLD_CASE, OLD_MESSAGES)
    engine.dispose()
