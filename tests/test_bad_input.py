"""Bad input gets one clear line, the SPEC's exit code and no traceback; nothing private is
left readable (issue 18, finding 7: each "lesser" item as it was found)."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text

from mailbot.cli import main
from mailbot.config import ConfigError, load_config
from mailbot.daemon import run_once
from mailbot.devservers import Account, SmtpCapture, local_config
from mailbot.officers import Command, apply
from mailbot.store import Case, make_engine
from tests.conftest import resident_mail

# A config that needs no server to be checked: nothing listens on these ports.
NOWHERE = Account(port=1, user="council@example.org", password="secret")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return local_config(
        tmp_path,
        NOWHERE,
        SmtpCapture(port=2),
        database_url=f"sqlite:///{tmp_path / 'mailbot.db'}",
    )


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's errors end the program from inside main()
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.strip()


def edit(path: Path, old: str, new: str) -> Path:
    content = path.read_text()
    assert old in content
    path.write_text(content.replace(old, new, 1))
    return path


def test_the_sqlite_database_and_its_journal_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        engine = make_engine(f"sqlite:///{tmp_path / 'mailbot.db'}")
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.glob("mailbot.db*")}
        engine.dispose()
    finally:
        os.umask(old)
    assert modes == {"mailbot.db": 0o600, "mailbot.db-wal": 0o600, "mailbot.db-shm": 0o600}


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        (
            "postgresql+psycopg://mailbot:hunter2@db.example/mailbot",
            "database.url: a password must not be in the config file: take it out of the URL "
            "and use database.password_file or database.password_env",
        ),
        ("not a url", "database.url: not a database URL: use sqlite:////var/lib/mailbot/"),
        ("mysql://mailbot@db.example/mailbot", "database.url: 'mysql': mailbot runs on sqlite"),
        ("postgresql+nosuchdriver://m@db/m", "database.url: driver 'postgresql+nosuchdriver'"),
    ],
)
def test_a_bad_or_secret_bearing_database_url_is_one_line_and_exit_1(
    config: Path, capsys, url: str, complaint: str
) -> None:
    edit(config, f'url = "sqlite:///{config.parent / "mailbot.db"}"', f'url = "{url}"')
    code, err = run(capsys, "--config", str(config), "check")
    assert code == 1
    assert f"line 19: {complaint}" in err
    assert "hunter2" not in err


def test_the_database_password_comes_from_its_own_file(config: Path) -> None:
    secret = config.parent / "db-password"
    secret.write_text("s3cret/with%chars\n")
    edit(
        config,
        f'url = "sqlite:///{config.parent / "mailbot.db"}"',
        'url = "postgresql+psycopg://mailbot@db.example/mailbot"\npassword_file = "db-password"',
    )
    url = load_config(config).database.connection_url()
    assert url == "postgresql+psycopg://mailbot:s3cret%2Fwith%25chars@db.example/mailbot"


def test_deeply_nested_toml_is_a_syntax_error(tmp_path: Path, capsys) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    code, err = run(capsys, "--config", str(deep), "check")
    assert (code, err) == (1, f"mailbot: {deep}: TOML syntax error: nested too deeply")


def test_a_device_given_as_the_config_is_refused_at_once(capsys) -> None:
    code, err = run(capsys, "--config", "/dev/zero", "check")  # used to read for ever
    assert (code, err) == (1, "mailbot: /dev/zero: not a regular file")


def test_an_oversized_config_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * 1_000_100 + "\n")
    with pytest.raises(ConfigError, match="too large for a config file"):
        load_config(big)


@pytest.mark.parametrize(
    "args",
    [
        ["deadline", "--category", "foi", "--received", "2300-01-01T00:00:00Z"],
        ["cases", "--now", "2250-01-01T00:00:00Z"],
        ["report", "--from", "2201-01-01", "--to", "2201-12-31"],
    ],
)
def test_a_date_past_the_calendars_is_refused_with_one_line(config: Path, capsys, args) -> None:
    code, err = run(capsys, "--config", str(config), *args)
    assert code == 1
    assert "is outside the years mailbot's calendars cover (1991-2190)" in err
    assert len(err.splitlines()) == 1


def test_start_from_past_the_calendars_is_refused(config: Path) -> None:
    edit(config, "[imap]\n", '[imap]\nstart_from = "2500-01-01T00:00:00Z"\n')
    with pytest.raises(ConfigError, match=r"imap\.start_from: start_from must be in the years"):
        load_config(config)


def test_report_output_to_a_missing_folder_is_exit_1(config: Path, tmp_path: Path, capsys) -> None:
    from mailbot.migrations import upgrade

    upgrade(f"sqlite:///{tmp_path / 'mailbot.db'}")
    target = tmp_path / "no-such-folder" / "q4.html"
    code, err = run(
        capsys,
        "--config",
        str(config),
        "report",
        "--from",
        "2026-10-01",
        "--to",
        "2026-12-31",
        "--output",
        str(target),
    )
    assert (code, err) == (
        1,
        f"mailbot: --output: cannot write {target}: No such file or directory",
    )


def test_a_mistyped_ca_file_names_the_key_and_the_path(config: Path, capsys) -> None:
    edit(config, "[smtp]\n", '[smtp]\nca_file = "council-ca.pme"\n')
    code, err = run(capsys, "--config", str(config), "check")
    assert code == 1
    assert err.endswith(f"smtp.ca_file: no such file: {config.parent / 'council-ca.pme'}")


def test_check_refuses_a_missing_templates_folder(config: Path, capsys) -> None:
    edit(config, "[imap]\n", 'templates = "/etc/mailbot/tempaltes"\n\n[imap]\n')
    code, err = run(capsys, "--config", str(config), "check")
    assert code == 1
    assert err.endswith("council.templates: no such folder: /etc/mailbot/tempaltes")


def test_check_refuses_an_officer_with_the_mailboxs_own_address(config: Path, capsys) -> None:
    edit(config, 'email = "chris.lee@council.example.gov.uk"', 'email = "council@example.org"')
    code, err = run(capsys, "--config", str(config), "check")
    assert code == 1
    assert "officers.3.email: council@example.org is a council mailbox's own address" in err


def test_argument_errors_are_one_line(config: Path, capsys) -> None:
    for args in (["cases", "--bogus"], ["deadline", "--category", "parking"], ["nonsense"]):
        code, err = run(capsys, "--config", str(config), *args)
        assert code == 1
        assert len(err.splitlines()) == 1 and err.startswith("mailbot: ")
        assert "usage:" not in err


def test_a_bad_classification_pattern_names_the_policy_file_and_line(
    config: Path, tmp_path: Path, capsys
) -> None:
    from mailbot.resources import builtin_dir

    policy = tmp_path / "ours.toml"
    policy.write_text(
        (builtin_dir("policies") / "stafford.toml").read_text()
        + '\n[classification.categories.foi]\npatterns = ["(unclosed"]\n'
    )
    edit(config, 'policy = "stafford"', f'policy = "{policy}"')
    code, err = run(capsys, "--config", str(config), "check")
    line = policy.read_text().splitlines().index('patterns = ["(unclosed"]') + 1
    assert code == 1
    assert err.startswith(
        f"mailbot: {policy}:{line}: classification.categories.foi.patterns: bad regular "
        "expression '(unclosed'"
    )


# -- with servers --------------------------------------------------------------------------


@pytest.mark.integration
def test_run_once_with_the_smtp_server_down_exits_2(config_path, dovecot, smtp, capsys) -> None:
    dovecot.append(resident_mail(), when=datetime(2026, 11, 3, 9, 0, tzinfo=UTC))
    smtp.stop()
    code, err = run(
        capsys, "--config", str(config_path), "run", "--once", "--now", "2026-11-03T10:00:00Z"
    )
    assert code == 2  # was 0: a cron job's owner never heard
    assert err.splitlines()[-1].startswith("mailbot: cannot reach the SMTP server 127.0.0.1:")


@pytest.mark.integration
def test_a_holding_date_years_away_is_refused(app, dovecot, smtp) -> None:
    dovecot.append(resident_mail(), when=datetime(2026, 11, 3, 9, 0, tzinfo=UTC))
    run_once(app)
    sent = len(smtp.messages)
    with app.sessions.begin() as session:
        case = session.scalar(select(Case))
        far = apply(
            app,
            session,
            case,
            Command("holding", "9999-12-31 waiting", "#holding 9999-12-31 waiting"),
            sender="alex.morgan@council.example.gov.uk",
            now=app.clock.now(),
        )
        assert case.holding_until is None
    assert (far.ok, far.detail) == (
        False,
        "9999-12-31 is more than a year away: give the date the reply is due",
    )
    run_once(app)
    assert len(smtp.messages) == sent  # no holding reply went
