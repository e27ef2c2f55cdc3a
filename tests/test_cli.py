"""The command line as a sysadmin and a clerk use it: demo, db upgrade, deadline, check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from mailbot.cli import main
from mailbot.devservers import local_config


@pytest.mark.integration
def test_demo_prints_cases_officers_due_dates_and_an_acknowledgement():
    done = subprocess.run(
        [sys.executable, "-m", "mailbot", "demo"], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "REF             CATEGORY    STATUS  OFFICER      DUE" in out
    for row in ("FOI-", "COM-", "ENQ-", "SAR-", "CMP-"):
        assert row in out
    assert "Sam Patel" in out and "Jordan Reid" in out
    assert "suppressed" in out  # the out-of-office reply and the newsletter
    assert "Acknowledgements accepted by the SMTP server: 5" in out
    assert "Subject: Re: Spending on consultants [Ref: FOI-" in out
    assert "Dear Jane Doe," in out


@pytest.mark.integration
def test_db_upgrade_creates_the_schema(tmp_path, dovecot, smtp, database_url, capsys):
    config = local_config(tmp_path, dovecot, smtp, database_url=database_url)
    assert main(["--config", str(config), "db", "upgrade"]) == 0
    assert main(["--config", str(config), "db", "upgrade"]) == 0  # twice is harmless
    engine = create_engine(database_url)
    tables = set(inspect(engine).get_table_names())
    named = [index["name"] for index in inspect(engine).get_indexes("cases")]
    indexes = {name for name in named if name.startswith("ix_")}
    engine.dispose()
    assert {"cases", "case_events", "messages", "outbox", "folder_state", "counters"} <= tables
    assert {"alembic_version"} <= tables
    # The scheduler's search: by next action date on SQLite; by response date alone on
    # PostgreSQL, where moving a case on must touch no index.
    expected = {"ix_cases_status_respond_by"}
    if engine.dialect.name == "sqlite":
        expected.add("ix_cases_status_next_action")
    assert indexes == expected

    # The migrations build exactly what the models describe (no forgotten migration).
    from alembic import command

    from mailbot.migrations import alembic_config

    command.check(alembic_config(database_url))


@pytest.mark.integration
def test_upgrade_to_several_mailboxes_keeps_what_was_read(database_url):
    # A database from before several mailboxes: messages under the bare folder name.
    from sqlalchemy import text

    from mailbot.migrations import upgrade

    upgrade(database_url, "0004")
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO folder_state (folder, uidvalidity, last_uid, start_from) "
                "VALUES ('enquiries@x.gov.uk/INBOX', 7, 2, '2026-11-01 00:00:00+00:00'), "
                "('enquiries@x.gov.uk/Sent Items', 8, 1, '2026-11-01 00:00:00+00:00')"
            )
        )
        for folder, uid in (("INBOX", 1), ("INBOX", 2), ("Sent Items", 1)):
            conn.execute(
                text(
                    "INSERT INTO messages (folder, uidvalidity, uid, content_hash, internal_date, "
                    "outcome, reasons, processed_at) VALUES (:f, 7, :u, 'h', "
                    "'2026-11-02 09:00:00+00:00', 'suppressed', '[]', '2026-11-02 09:00:00+00:00')"
                ),
                {"f": folder, "u": uid},
            )
    upgrade(database_url)
    with engine.connect() as conn:
        folders = sorted(conn.execute(text("SELECT folder, uid FROM messages")).all())
        mailbox = conn.execute(text("SELECT mailbox FROM cases")).all()
    engine.dispose()
    # Now keyed as folder_state is, so the same UIDs in foi@'s INBOX cannot clash.
    assert folders == [
        ("enquiries@x.gov.uk/INBOX", 1),
        ("enquiries@x.gov.uk/INBOX", 2),
        ("enquiries@x.gov.uk/Sent Items", 1),
    ]
    assert mailbox == []


def test_deadline_json_for_an_foi_request(capsys):
    # Fri 18 Dec 2026 16:00 GMT. Day 1 Mon 21 Dec. Not counted: Fri 25 Dec, Mon 28 Dec
    # (Boxing Day substitute), Fri 1 Jan, and Mon 4 Jan 2027 (Scotland's 2 January
    # substitute: FOIA s.10(6) counts every nation's). Day 20 is Thu 21 Jan 2027.
    code = main(
        [
            "deadline",
            "--category",
            "foi",
            "--received",
            "2026-12-18T16:00:00Z",
            "--policy",
            "stafford",
            "--json",
        ]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    # SPEC §2's keys, and (issue 21) the stage and the extension's dates added.
    assert set(data) == {
        "category",
        "received_at",
        "day_one",
        "acknowledge_by",
        "respond_by",
        "holding_by",
        "calendar",
        "stage",
        "extension_notice_by",
        "latest_respond_by",
    }
    assert data["category"] == "foi"
    assert data["day_one"] == "2026-12-21"
    assert data["respond_by"] == "2027-01-21"
    # The public-interest extension: notified by the 20th day; 20 more working days:
    # 22 Jan (1), 25-29 (6), 1-5 Feb (11), 8-12 (16), 15-18 (20): Thu 18 Feb 2027.
    assert (data["extension_notice_by"], data["latest_respond_by"]) == ("2027-01-21", "2027-02-18")


def test_deadline_of_an_internal_review(capsys):
    # A request for an FOI internal review on Thu 10 Dec 2026: the s.45 code's 20
    # working days end Wed 13 Jan 2027 (25 and 28 Dec, 1 and 4 Jan not counted), and
    # 20 more in a complex case Wed 10 Feb (test_deadlines.REVIEW_CASES).
    args = ["deadline", "--category", "foi", "--received", "2026-12-10T10:00:00Z"]
    assert main([*args, "--policy", "stafford", "--stage", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["stage"], data["respond_by"], data["latest_respond_by"]) == (
        2, "2027-01-13", "2027-02-10")  # fmt: skip
    assert main([*args, "--policy", "stafford", "--stage", "2"]) == 0
    assert "latest_respond_by: 2027-02-10" in capsys.readouterr().out
    # A stage the category does not have: exit 1, one line.
    assert main([*args, "--policy", "stafford", "--stage", "3"]) == 1
    assert "foi has stages 1 to 2 in the stafford policy" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deadline", "--category", "foi", "--received", "yesterday"], "not an ISO 8601 time"),
        (["deadline", "--category", "foi", "--received", "2026-12-18T16:00"], "give a timezone"),
        (["deadline", "--category", "gripe", "--received", "2026-12-18T16:00Z"], "invalid choice"),
        (["cases", "--now", "soon"], "not an ISO 8601 time"),
        (["nonsense"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_1_with_a_clear_message(args, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 1
    assert message in capsys.readouterr().err


def minimal_config(folder: Path, policy: str) -> Path:
    """A config that loads (no servers needed) with `policy`."""
    config = folder / "mailbot.toml"
    config.write_text(
        f"""[council]
name = "Test"
policy = "{policy}"
mailbox_address = "council@example.gov.uk"
[imap]
host = "127.0.0.1"
security = "none"
[smtp]
host = "127.0.0.1"
security = "none"
[[officers]]
name = "Ann"
email = "ann@example.gov.uk"
roles = ["clerk"]
"""
    )
    return config


def test_check_names_file_line_and_key_of_a_policy_typo(tmp_path, capsys):
    from mailbot.resources import builtin_dir

    policy = tmp_path / "ours.toml"
    text = (builtin_dir("policies") / "stafford.toml").read_text()
    policy.write_text(text.replace("respond =", "respnd =", 1))
    line = next(n for n, row in enumerate(policy.read_text().splitlines(), 1) if "respnd" in row)
    config = minimal_config(tmp_path, str(policy))
    assert main(["--config", str(config), "check"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"ours.toml:{line}:" in err
    assert "respnd" in err


def test_check_names_a_damaged_classifier_model(tmp_path, capsys, monkeypatch):
    from mailbot import model

    damaged = tmp_path / "classifier-model.json"
    damaged.write_text('{"format": 1, "layers": [{"name": "shipped"}]}')
    monkeypatch.setattr(model, "SHIPPED", damaged)
    monkeypatch.setattr(model.read_model, "__defaults__", (damaged,))
    config = minimal_config(tmp_path, "stafford")
    assert main(["--config", str(config), "check"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"mailbot: {damaged}: the classifier model is damaged: missing 'vocabulary'"
