"""Config (SPEC §3): a good file loads; every mistake is one line naming file, line and key."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailbot import config as config_module
from mailbot.cli import main
from mailbot.config import ConfigError, find_config, line_of_key, load_config

GOOD = """\
[council]
name = "Stafford Borough Council"
policy = "stafford"
mailbox_address = "Enquiries@Council.Example.gov.uk"
timezone = "Europe/London"

[imap]
host = "imap.example.gov.uk"
port = 993
security = "tls"
username = "enquiries@council.example.gov.uk"
password_file = "{imap_secret}"
start_from = "2026-11-01T00:00:00Z"

[smtp]
host = "smtp.example.gov.uk"
port = 587
security = "starttls"
username = "enquiries@council.example.gov.uk"
password_env = "MAILBOT_TEST_SMTP_PASSWORD"

[database]
url = "sqlite:///mailbot.db"

[[officers]]
name = "Sam Patel"
email = "sam.patel@council.example.gov.uk"
phone = "01785 000000"
roles = ["foi-officer"]

[[officers]]
name = "Alex Morgan"
email = "alex.morgan@council.example.gov.uk"
roles = ["customer-services"]
"""


@pytest.fixture
def good_text(tmp_path: Path) -> str:
    secret = tmp_path / "imap-password"
    secret.write_text("  s3cret\n", encoding="utf-8")
    return GOOD.format(imap_secret=secret)


def write(tmp_path: Path, text: str, name: str = "mailbot.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def edited(good: str, old: str, new: str) -> str:
    assert good.count(old) == 1, old
    return good.replace(old, new)


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the n-th occurrence of needle."""
    at = -1
    for _ in range(occurrence):
        at = text.index(needle, at + 1)
    return text[:at].count("\n") + 1


def error_for(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message  # one line, always
    assert message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ")


def test_valid_config_loads(tmp_path: Path, good_text: str) -> None:
    cfg = load_config(write(tmp_path, good_text))
    assert cfg.council.mailbox_address == "enquiries@council.example.gov.uk"  # lower-cased
    assert cfg.imap.port == 993 and cfg.smtp.security == "starttls"
    assert cfg.imap.start_from == datetime(2026, 11, 1, tzinfo=UTC)
    assert [o.email for o in cfg.officers_with("foi-officer")] == [
        "sam.patel@council.example.gov.uk"
    ]
    assert cfg.officer("Alex.Morgan@council.example.gov.uk").name == "Alex Morgan"
    assert cfg.own_addresses == {
        "enquiries@council.example.gov.uk",
        "sam.patel@council.example.gov.uk",
        "alex.morgan@council.example.gov.uk",
    }
    assert cfg.screening.acknowledgements_per_sender_per_day == 3  # SPEC §1.3 default


def test_byte_order_mark_from_windows_notepad_is_accepted(tmp_path: Path, good_text: str) -> None:
    path = tmp_path / "mailbot.toml"
    path.write_bytes(b"\xef\xbb\xbf" + good_text.encode())
    assert load_config(path).council.name == "Stafford Borough Council"


@pytest.mark.parametrize(
    ("old", "new", "needle", "expected"),
    [
        # unknown keys: at the top level, in a table, in an [[officers]] entry
        (
            "[council]\n",
            "councl_name = 1\n[council]\n",
            "councl_name",
            "councl_name: unknown key (check the spelling)",
        ),
        (
            'security = "tls"',
            'securty = "tls"',
            "securty",
            "imap.securty: unknown key (check the spelling)",
        ),
        (
            'timezone = "Europe/London"',
            'timezon = "Europe/London"',
            "timezon",
            "council.timezon: unknown key (check the spelling)",
        ),
        (
            'phone = "01785 000000"',
            'phon = "01785 000000"',
            "phon =",
            "officers.0.phon: unknown key (check the spelling)",
        ),
        (
            'roles = ["customer-services"]',
            'roles = ["customer-services"]\nphon = "01785 000001"',
            "phon =",
            "officers.1.phon: unknown key (check the spelling)",
        ),
        # ports
        ("port = 993", "port = 0", "port = 0", "imap.port: must be at least 1 (got 0)"),
        (
            "port = 993",
            "port = 70000",
            "port = 70000",
            "imap.port: must be at most 65535 (got 70000)",
        ),
        (
            "port = 587",
            'port = "abc"',
            'port = "abc"',
            "smtp.port: must be a whole number (got 'abc')",
        ),
        # secrets never in the file
        (
            'security = "tls"',
            'security = "tls"\npassword = "hunter2"',
            "password =",
            "imap.password: passwords must not be in the config file; "
            "use password_file or password_env",
        ),
        (
            'security = "starttls"',
            'security = "starttls"\npassword = "hunter2"',
            "password =",
            "smtp.password: passwords must not be in the config file; "
            "use password_file or password_env",
        ),
        (
            'security = "tls"',
            'security = "none"',
            'security = "none"',
            'imap.security: "none" sends passwords in clear text; only allowed for loopback hosts',
        ),
        (
            'username = "enquiries@council.example.gov.uk"\npassword_env',
            'username = "enquiries@council.example.gov.uk"\npassword_file = "/x"\npassword_env',
            'password_file = "/x"',
            "smtp.password_file: give password_file or password_env, not both",
        ),
        # values
        (
            'timezone = "Europe/London"',
            'timezone = "Europe/Londn"',
            "timezone",
            "council.timezone: unknown timezone 'Europe/Londn' (e.g. Europe/London)",
        ),
        (
            'start_from = "2026-11-01T00:00:00Z"',
            'start_from = "2026-11-01T00:00:00"',
            "start_from",
            "imap.start_from: start_from needs a timezone, e.g. 2026-11-01T00:00:00Z",
        ),
        (
            'start_from = "2026-11-01T00:00:00Z"',
            "start_from = 2026-11-01T00:00:00",  # a TOML local date-time: naive too
            "start_from",
            "imap.start_from: start_from needs a timezone, e.g. 2026-11-01T00:00:00Z",
        ),
        (
            'email = "alex.morgan@council.example.gov.uk"',
            'email = "Sam.Patel@council.example.gov.uk"',
            'email = "Sam.Patel',
            "officers.1.email: sam.patel@council.example.gov.uk is listed twice (also officer 1)",
        ),
        (
            'email = "alex.morgan@council.example.gov.uk"',
            'email = "alex.morgan"',
            'email = "alex.morgan"',
            "officers.1.email: not an email address: 'alex.morgan'",
        ),
        (
            'mailbox_address = "Enquiries@Council.Example.gov.uk"',
            'mailbox_address = "enquiries at council"',
            "mailbox_address",
            "council.mailbox_address: not an email address: 'enquiries at council'",
        ),
        (
            'roles = ["customer-services"]',
            "roles = []",
            "roles = []",
            "officers.1.roles: needs at least 1 entry",
        ),
    ],
)
def test_each_mistake_names_its_key_and_line(
    tmp_path: Path, good_text: str, old: str, new: str, needle: str, expected: str
) -> None:
    text = edited(good_text, old, new)
    line = line_of(text, needle)
    assert error_for(tmp_path, text) == f"line {line}: {expected}"


def test_missing_required_key_points_at_its_table(tmp_path: Path, good_text: str) -> None:
    text = edited(good_text, 'mailbox_address = "Enquiries@Council.Example.gov.uk"\n', "")
    assert error_for(tmp_path, text) == "line 1: council.mailbox_address: required key is missing"


def test_missing_table_and_single_bracket_officers(tmp_path: Path, good_text: str) -> None:
    no_officers = good_text[: good_text.index("[[officers]]")]
    assert error_for(tmp_path, no_officers) == "officers: required key is missing"
    one_bracket = no_officers + '[officers]\nname = "A"\nemail = "a@x.org"\nroles = ["r"]\n'
    assert error_for(tmp_path, one_bracket) == (
        f"line {line_of(one_bracket, '[officers]')}: officers: "
        "must be a list: write [[officers]] (double brackets) before each officer"
    )


def test_loopback_hosts_may_use_plain_connections(tmp_path: Path, good_text: str) -> None:
    for host in ("127.0.0.1", "localhost", "::1"):
        text = edited(good_text, 'host = "imap.example.gov.uk"', f'host = "{host}"')
        text = edited(text, 'security = "tls"', 'security = "none"')
        assert load_config(write(tmp_path, text)).imap.security == "none"


def test_toml_syntax_error_gives_the_line(tmp_path: Path, good_text: str) -> None:
    text = edited(good_text, "port = 993", "port = = 993")
    line = line_of(text, "port = = 993")
    assert error_for(tmp_path, text) == f"line {line}: TOML syntax error: Invalid value (column 8)"


def test_non_utf8_file_gives_the_line(tmp_path: Path, good_text: str) -> None:
    path = tmp_path / "mailbot.toml"
    path.write_bytes(good_text.replace("Stafford Borough", "Staff\xf6rd Borough").encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: line 2: not UTF-8 text (save the file as UTF-8)"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: cannot read: No such file or directory"


def test_source_is_not_a_setting(tmp_path: Path, good_text: str) -> None:
    # Config.source is filled in by load_config; writing it in the file is a mistake.
    assert error_for(tmp_path, 'source = "x"\n' + good_text) == (
        "line 1: source: unknown key (check the spelling)"
    )


def test_line_of_key_counts_array_entries_and_skips_comments() -> None:
    text = (
        "[imap]  # the shared mailbox\n"
        "# port = 1\n"
        "'port' = 993\n"
        "[[officers]]\n"
        'email = "a@x"\n'
        "[[officers]]\n"
        'name = "B"\n'
        "[database]\n"
        "[[officers]]\n"
        'email = "c@x"\n'
    )
    assert line_of_key(text, ["imap", "port"]) == 3
    assert line_of_key(text, ["officers", "0", "email"]) == 5
    assert line_of_key(text, ["officers", "1", "email"]) == 6  # not written: its entry
    assert line_of_key(text, ["officers", "2", "email"]) == 10
    assert line_of_key(text, ["smtp", "host"]) is None


# -- secrets -------------------------------------------------------------------------------


def test_password_from_file_is_stripped(tmp_path: Path, good_text: str) -> None:
    cfg = load_config(write(tmp_path, good_text))
    assert cfg.imap.password() == "s3cret"
    assert "s3cret" not in repr(cfg)  # read when needed, never held in the config


def test_password_from_env(tmp_path: Path, good_text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(write(tmp_path, good_text))
    monkeypatch.setenv("MAILBOT_TEST_SMTP_PASSWORD", "from-env")
    assert cfg.smtp.password() == "from-env"
    monkeypatch.delenv("MAILBOT_TEST_SMTP_PASSWORD")
    with pytest.raises(ConfigError) as caught:
        cfg.smtp.password()
    assert str(caught.value) == (
        "smtp.password_env: variable MAILBOT_TEST_SMTP_PASSWORD is not set"
    )
    monkeypatch.setenv("MAILBOT_TEST_SMTP_PASSWORD", "")
    with pytest.raises(ConfigError, match=r"^smtp\.password_env: variable \S+ is empty$"):
        cfg.smtp.password()


def test_relative_password_file_comes_from_systemd_credentials(
    tmp_path: Path, good_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "imap-password").write_text("from-systemd\n")
    text = edited(good_text, f'password_file = "{tmp_path / "imap-password"}"', "")
    text = edited(text, 'security = "tls"', 'security = "tls"\npassword_file = "imap-password"')
    cfg = load_config(write(tmp_path, text))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert cfg.imap.password() == "from-systemd"


def test_relative_password_file_outside_systemd_is_beside_the_config(
    tmp_path: Path, good_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc-mailbot"
    folder.mkdir()
    (folder / "imap-password").write_text("beside-the-config\n")
    text = edited(good_text, f'password_file = "{tmp_path / "imap-password"}"', "")
    text = edited(text, 'security = "tls"', 'security = "tls"\npassword_file = "imap-password"')
    cfg = load_config(write(folder, text))
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.chdir(tmp_path)  # not where the config is
    assert cfg.imap.password() == "beside-the-config"


def test_unreadable_or_empty_password_file_names_the_key(tmp_path: Path, good_text: str) -> None:
    secret = tmp_path / "imap-password"
    cfg = load_config(write(tmp_path, good_text))
    secret.unlink()
    with pytest.raises(ConfigError) as caught:
        cfg.imap.password()
    assert str(caught.value) == (
        f"imap.password_file: cannot read {secret}: No such file or directory"
    )
    secret.write_text("\n")
    with pytest.raises(ConfigError) as caught:
        cfg.imap.password()
    assert str(caught.value) == f"imap.password_file: {secret} is empty"
    secret.write_bytes(b"caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        cfg.imap.password()
    assert str(caught.value) == f"imap.password_file: {secret} is not UTF-8 text"


# -- finding the file and the CLI ----------------------------------------------------------


def test_find_config_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    etc = tmp_path / "etc-mailbot.toml"
    monkeypatch.setattr(config_module, "SEARCH_PATHS", (Path("mailbot.toml"), etc))
    monkeypatch.delenv("MAILBOT_CONFIG", raising=False)
    with pytest.raises(ConfigError, match=r"^no config file: give --config, set MAILBOT_CONFIG"):
        find_config(None)
    etc.write_text("")
    assert find_config(None) == etc
    Path("mailbot.toml").write_text("")
    assert find_config(None) == Path("mailbot.toml")
    monkeypatch.setenv("MAILBOT_CONFIG", "/srv/env.toml")
    assert find_config(None) == Path("/srv/env.toml")
    assert find_config("/srv/explicit.toml") == Path("/srv/explicit.toml")


def test_cli_check_accepts_a_good_config(
    tmp_path: Path, good_text: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("MAILBOT_TEST_SMTP_PASSWORD", "x")
    path = write(tmp_path, good_text)
    assert main(["--config", str(path), "check"]) == 0
    out = capsys.readouterr()
    assert out.out == (
        f"ok: {path} (policy stafford)\n"
        "officers' mail is trusted by: nothing (only the sent folder)\n"
    )
    assert out.err.startswith("warning: commands.trust: not set")


@pytest.mark.parametrize(
    ("table", "mode", "warning"),
    [
        ('trust = "microsoft365"', "microsoft365", ""),
        ('trust = "google"', "google", ""),
        ('authserv_id = "mx.council.example.gov.uk"', "authserv", 'implies trust = "authserv"'),
        ('internal_relays = ["10.0.0.5"]', "relays", 'implies trust = "relays"'),
    ],
)
def test_cli_check_says_which_trust_mode_is_in_force(
    tmp_path, good_text, monkeypatch, capsys, table, mode, warning
):
    monkeypatch.setenv("MAILBOT_TEST_SMTP_PASSWORD", "x")
    path = write(tmp_path, good_text + f"\n[commands]\n{table}\n")
    assert main(["--config", str(path), "check"]) == 0
    out = capsys.readouterr()
    assert f"officers' mail is trusted by: {mode}\n" in out.out
    assert (warning in out.err) if warning else out.err == ""


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('internal_relays = [""]', "commands.internal_relays: an empty name would match nothing"),
        ('internal_relays = ["*.council.example.gov.uk"]', "not an IP address, network or whole"),
        ('trust = "relays"', 'commands.internal_relays: trust = "relays" needs at least one'),
        ('trust = "authserv"', 'commands.authserv_id: trust = "authserv" needs'),
        ('trust = "exchange"', "commands.trust: must be"),
        ('trust = "google"\nauthserv_id = "mx.x.example"', "commands.authserv_id: not used with"),
        (
            'authserv_id = "mx.x.example"\ninternal_relays = ["10.0.0.5"]',
            "commands.trust: authserv_id and internal_relays are both set",
        ),
    ],
)
def test_cli_check_refuses_a_commands_table_that_trusts_wrongly(
    tmp_path, good_text, monkeypatch, capsys, table, expected
):
    monkeypatch.setenv("MAILBOT_TEST_SMTP_PASSWORD", "x")
    path = write(tmp_path, good_text + f"\n[commands]\n{table}\n")
    assert main(["--config", str(path), "check"]) == 1
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('security = "tls"', 'securty = "tls"', "imap.securty: unknown key (check the spelling)"),
        ("port = 587", "port = 0", "smtp.port: must be at least 1 (got 0)"),
        ('policy = "stafford"', 'policy = "no-such-policy"', "no-such-policy"),
    ],
)
def test_cli_check_exits_1_with_one_line_naming_the_key(
    tmp_path: Path,
    good_text: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    old: str,
    new: str,
    expected: str,
) -> None:
    monkeypatch.setenv("MAILBOT_TEST_SMTP_PASSWORD", "x")
    path = write(tmp_path, edited(good_text, old, new))
    assert main(["--config", str(path), "check"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mailbot: ")
    assert expected in err


def test_cli_check_reads_the_password_files(
    tmp_path: Path, good_text: str, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAILBOT_TEST_SMTP_PASSWORD", raising=False)
    path = write(tmp_path, good_text)
    assert main(["--config", str(path), "check"]) == 1
    assert capsys.readouterr().err == (
        "mailbot: smtp.password_env: variable MAILBOT_TEST_SMTP_PASSWORD is not set\n"
    )


def test_cli_uses_mailbot_config_env(
    tmp_path: Path, good_text: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    path = write(tmp_path, edited(good_text, "port = 993", "port = 0"), name="elsewhere.toml")
    monkeypatch.setenv("MAILBOT_CONFIG", str(path))
    assert main(["check"]) == 1
    line = line_of(path.read_text(), "port = 0")
    assert capsys.readouterr().err == (
        f"mailbot: {path}: line {line}: imap.port: must be at least 1 (got 0)\n"
    )


# -- several mailboxes ---------------------------------------------------------------------

FOI_MAILBOX = """
[[mailboxes]]
address = "FOI@council.example.gov.uk"
username = "foi@council.example.gov.uk"
password_env = "MAILBOT_TEST_FOI_PASSWORD"
sent = "Sent Items"
default_category = "foi"

[[mailboxes]]
address = "planning@council.example.gov.uk"
inbox = "Planning"
"""


def with_mailboxes(good_text: str, tables: str = FOI_MAILBOX) -> str:
    at = good_text.index("[[officers]]")
    return good_text[:at] + tables.lstrip("\n") + "\n" + good_text[at:]


def test_further_mailboxes_take_the_server_from_imap_and_their_own_sign_in(
    tmp_path: Path, good_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_config(write(tmp_path, with_mailboxes(good_text)))
    main_box, foi, planning = cfg.all_mailboxes
    assert main_box is cfg.imap
    assert [cfg.address_of(b) for b in cfg.all_mailboxes] == [
        "enquiries@council.example.gov.uk",
        "foi@council.example.gov.uk",
        "planning@council.example.gov.uk",
    ]
    # The server and start date come from [imap]; the folders never do.
    assert {(b.host, b.port, b.security, b.start_from) for b in cfg.all_mailboxes} == {
        ("imap.example.gov.uk", 993, "tls", datetime(2026, 11, 1, tzinfo=UTC))
    }
    assert (foi.inbox, foi.sent, foi.default_category) == ("INBOX", "Sent Items", "foi")
    assert (planning.inbox, planning.sent, planning.default_category) == ("Planning", None, None)
    # foi@ signs in as itself; planning is a folder of the [imap] account, with its password.
    assert (foi.username, foi.password_file, foi.password_env) == (
        "foi@council.example.gov.uk",
        None,
        "MAILBOT_TEST_FOI_PASSWORD",
    )
    assert (planning.username, planning.password_file) == (
        cfg.imap.username,
        cfg.imap.password_file,
    )
    assert planning.password() == "s3cret"
    # Every mailbox is the council's own: mail from one is never acknowledged by another.
    assert {"foi@council.example.gov.uk", "planning@council.example.gov.uk"} < cfg.own_addresses
    # A secret problem names the entry it belongs to.
    monkeypatch.delenv("MAILBOT_TEST_FOI_PASSWORD", raising=False)
    with pytest.raises(ConfigError) as err:
        foi.password()
    assert str(err.value) == (
        "mailboxes.0.password_env: variable MAILBOT_TEST_FOI_PASSWORD is not set"
    )


@pytest.mark.parametrize(
    ("old", "new", "needle", "expected"),
    [
        (
            'address = "FOI@council.example.gov.uk"\n',
            "",
            "[[mailboxes]]",
            "mailboxes.0.address: required key is missing",
        ),
        (
            'address = "planning@council.example.gov.uk"',
            'address = "foi@council.example.gov.uk"',
            'address = "foi@council.example.gov.uk"',
            "mailboxes.1.address: foi@council.example.gov.uk is already the address of "
            "[[mailboxes]] 1",
        ),
        (
            'address = "planning@council.example.gov.uk"',
            'address = "enquiries@council.example.gov.uk"',
            'address = "enquiries@council.example.gov.uk"',
            "mailboxes.1.address: enquiries@council.example.gov.uk is already the address of "
            "[imap]",
        ),
        (
            'inbox = "Planning"',
            'inbox = "INBOX"',
            'inbox = "INBOX"',
            "mailboxes.1.inbox: 'INBOX' of enquiries@council.example.gov.uk is already read by "
            "[imap]",
        ),
        (
            'default_category = "foi"',
            'default_category = "fio"',
            "default_category",
            "mailboxes.0.default_category: must be 'enquiry', 'complaint', 'foi', 'eir', 'sar' "
            "or 'compliment'",
        ),
        (
            'inbox = "Planning"',
            'inbox = "Planning"\nprot = 993',
            "prot =",
            "mailboxes.1.prot: unknown key (check the spelling)",
        ),
        (
            'inbox = "Planning"',
            'inbox = "Planning"\npassword = "hunter2"',
            "password =",
            "mailboxes.1.password: passwords must not be in the config file; "
            "use password_file or password_env",
        ),
        (
            'address = "planning@council.example.gov.uk"',
            'address = "planning"',
            'address = "planning"',
            "mailboxes.1.address: not an email address: 'planning'",
        ),
    ],
)
def test_each_mailbox_mistake_names_its_entry_and_line(
    tmp_path: Path, good_text: str, old: str, new: str, needle: str, expected: str
) -> None:
    text = edited(with_mailboxes(good_text), old, new)
    line = line_of(text, needle)
    assert error_for(tmp_path, text) == f"line {line}: {expected}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("-1", "screening.follow_up_minutes: must be at least 0 (got -1)"),
        ("1441", "screening.follow_up_minutes: must be at most 1440 (got 1441)"),
        ('"soon"', "screening.follow_up_minutes: must be a whole number (got 'soon')"),
    ],
)
def test_follow_up_window_must_be_minutes(
    tmp_path: Path, good_text: str, value: str, expected: str
) -> None:
    text = good_text.replace(
        "[database]", f"[screening]\nfollow_up_minutes = {value}\n\n[database]"
    )
    assert error_for(tmp_path, text) == f"line {line_of(text, 'follow_up_minutes')}: {expected}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "smtp.connections: must be at least 1 (got 0)"),
        ("11", "smtp.connections: must be at most 10 (got 11)"),
        ('"three"', "smtp.connections: must be a whole number (got 'three')"),
    ],
)
def test_smtp_connections_must_be_a_small_count(
    tmp_path: Path, good_text: str, value: str, expected: str
) -> None:
    text = good_text.replace("port = 587", f"port = 587\nconnections = {value}")
    assert error_for(tmp_path, text) == f"line {line_of(text, 'connections = ')}: {expected}"


def test_smtp_connections_default_to_one(tmp_path: Path, good_text: str) -> None:
    path = tmp_path / "mailbot.toml"
    path.write_text(good_text)
    assert load_config(path).smtp.connections == 1
