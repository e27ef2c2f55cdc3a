"""Logging: one line per event in text and JSON, extra fields, redaction, journald."""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailbot import logs

HOSTILE = (
    "Subject: hi\r\nINFO mailbot.outbox: sent ack to attacker@example.com\n"
    "\x1b[2J\x1b[31mred\x00nul\x07bell\x0bvt\x0cff\x1c\x1d\x1e\x85nel\u2028ls\u2029ps"
    "\u202eevil\u2066\ttab\rcr\x7fdel"
)
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d INFO ")


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in logs.QUIET_LOGGERS}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in quiet.items():
        logging.getLogger(name).setLevel(old)


def capture(fmt: logs.LogFormat = "json", verbose: bool = False) -> io.StringIO:
    # Only our handler: pytest's own capture handler sees records before ours cleans them.
    logging.getLogger().handlers.clear()
    stream = io.StringIO()
    logs.setup_logging(fmt, verbose, stream=stream)
    return stream


def lines(stream: io.StringIO) -> list[str]:
    text = stream.getvalue()
    assert text.endswith("\n")
    # str.splitlines breaks on every Unicode line boundary, not just \n: the strictest test.
    return text.splitlines()


def records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in lines(stream)]


# --- JSON ------------------------------------------------------------------------------------


def test_json_line_fields() -> None:
    stream = capture("json")
    logging.getLogger("mailbot.pipeline").info(
        "acknowledged %s", "jane@example.com", extra={"case": "FOI-2026-00042", "uid": 17}
    )
    logging.getLogger("mailbot.mailbox").warning("slow", extra={"folder": "INBOX", "ok": True})
    first, second = records(stream)
    assert first["level"] == "info"
    assert first["logger"] == "mailbot.pipeline"
    assert first["message"] == "acknowledged jane@example.com"
    assert first["case"] == "FOI-2026-00042"
    assert first["uid"] == 17  # numbers stay numbers for log shippers
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", first["ts"])
    assert list(first)[:4] == ["ts", "level", "logger", "message"]
    assert (second["level"], second["folder"], second["ok"]) == ("warning", "INBOX", True)


def test_json_extra_cannot_overwrite_core_fields() -> None:
    stream = capture("json")
    logging.getLogger("mailbot").info("real", extra={"ts": "forged", "level": "forged"})
    (record,) = records(stream)
    assert record["level"] == "info" and record["ts"] != "forged"


def test_json_single_line_with_hostile_message_and_extras() -> None:
    stream = capture("json")
    log = logging.getLogger("mailbot.parse")
    log.info("subject %r", HOSTILE, extra={"subject": HOSTILE, "folder": "IN\r\nBOX"})
    log.info(HOSTILE)
    out = lines(stream)
    assert len(out) == 2
    for line in out:
        assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202e\u2066]", line)
    record = json.loads(out[1])
    assert record["message"].startswith("Subject: hi\\r\\nINFO mailbot.outbox")
    assert "\\x1b[2J" in record["message"] and "\\u2028" in record["message"]
    assert json.loads(out[0])["folder"] == "IN\\r\\nBOX"


def test_json_exception_is_one_line() -> None:
    stream = capture("json")
    try:
        raise ValueError("bad header\r\nX-Injected: yes")
    except ValueError:
        logging.getLogger("mailbot.pipeline").exception("uid=5 failed", extra={"uid": 5})
    (record,) = records(stream)
    assert record["message"] == "uid=5 failed"
    assert record["exc"].startswith("Traceback (most recent call last):\\n")
    assert "ValueError: bad header\\r\\nX-Injected: yes" in record["exc"]


# --- text ------------------------------------------------------------------------------------


def test_text_format_has_timestamp_and_extras() -> None:
    stream = capture("text")
    logging.getLogger("mailbot.pipeline").info(
        "acknowledged", extra={"case": "FOI-2026-00042", "folder": "Sent Items"}
    )
    (line,) = lines(stream)
    assert TIMESTAMP.match(line), line
    assert line.endswith('mailbot.pipeline: acknowledged case=FOI-2026-00042 folder="Sent Items"')


def test_text_single_line_with_hostile_message() -> None:
    stream = capture("text")
    logging.getLogger("mailbot.parse").warning("subject: %s", HOSTILE, extra={"s": HOSTILE})
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        logging.getLogger("mailbot").error("failed", exc_info=True)
    first, second = lines(stream)
    assert "subject: Subject: hi\\r\\nINFO mailbot.outbox: sent ack" in first
    assert "\\x00nul\\x07bell" in first and "\\u202eevil" in first and "\\ttab" in first
    assert " | Traceback (most recent call last):\\n" in second
    assert "RuntimeError: boom\\nsecond line" in second


def test_text_under_journald_has_no_timestamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open(tmp_path / "stderr", "w+", encoding="utf-8") as stream:
        st_ = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st_.st_dev}:{st_.st_ino}")
        logs.setup_logging("text", stream=stream)
        logging.getLogger("mailbot.daemon").info("connected", extra={"folder": "INBOX"})
        logging.getLogger("mailbot.daemon").warning("lost")
        logging.getLogger("mailbot.daemon").error("gone")
        stream.seek(0)
        out = stream.read().splitlines()
    # journald stamps each line itself and reads "<N>" as its priority.
    assert out == [
        "<6>INFO mailbot.daemon: connected folder=INBOX",
        "<4>WARNING mailbot.daemon: lost",
        "<3>ERROR mailbot.daemon: gone",
    ]


def test_journal_stream_of_another_file_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shell started from a journald-logged session inherits JOURNAL_STREAM: a terminal
    or a redirected file is not the journal and keeps its timestamps."""
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    with open(tmp_path / "stderr", "w+", encoding="utf-8") as stream:
        assert not logs.is_journal(stream)
        logs.setup_logging("text", stream=stream)
        logging.getLogger("mailbot").info("hello")
        stream.seek(0)
        assert TIMESTAMP.match(stream.read())
    assert not logs.is_journal(io.StringIO())  # no file descriptor at all


def test_json_under_journald_carries_priority(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open(tmp_path / "stderr", "w+", encoding="utf-8") as stream:
        st_ = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st_.st_dev}:{st_.st_ino}")
        logs.setup_logging("json", stream=stream)
        logging.getLogger("mailbot").warning("w")
        stream.seek(0)
        line = stream.read().rstrip("\n")
    assert line.startswith("<4>{")
    assert json.loads(line[3:])["message"] == "w"


# --- redaction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("login password=hunter2 user=x", "login password=*** user=x"),
        ("PGPASSWORD=s3cr3t psql", "PGPASSWORD=*** psql"),
        ('{"client_secret": "abc def", "id": 1}', '{"client_secret": "***", "id": 1}'),
        ("refresh_token: 0.AAA-bbb_ccc", "refresh_token: ***"),
        ("api-key='k-123'", "api-key='***'"),
        ("X-Api-Key: k-123", "X-Api-Key: ***"),
        ("C: AUTH PLAIN AGphbmUAaHVudGVyMg==", "C: AUTH PLAIN ***"),
        ("> a001 AUTHENTICATE XOAUTH2 dXNlcj1qYW5lAWF1dGg9", "> a001 AUTHENTICATE XOAUTH2 ***"),
        ('> a001 LOGIN "jane@example.org" "pa ss\\"word"', '> a001 LOGIN "jane@example.org" ***'),
        ("a002 LOGIN jane hunter2", "a002 LOGIN jane ***"),
        (
            "user=jane\x01auth=Bearer eyJ0eXAi.eyJzdWIi.sig\x01\x01",
            "user=jane\x01auth=Bearer ***\x01\x01",
        ),
        ("Authorization: Basic amFuZTpodW50ZXIy", "Authorization: Basic ***"),
        (
            "cannot connect to postgresql+psycopg://mailbot:Pa55w0rd@db.local/mailbot",
            "cannot connect to postgresql+psycopg://mailbot:***@db.local/mailbot",
        ),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert logs.redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "imap.password_file: cannot read /etc/mailbot/imap-password: No such file",
        "smtp.password_file: cannot read smtp.password: Permission denied",
        "case FOI-2026-00042 acknowledged to jane@example.com",
        "tokens refreshed; next refresh in 3000 s",
        "connected to imaps://imap.example.gov.uk:993/INBOX",
        "postgresql+psycopg://mailbot@db.local/mailbot",
        "login failed for enquiries@council.example.gov.uk",
    ],
)
def test_redact_leaves_ordinary_text(text: str) -> None:
    assert logs.redact(text) == text


def _every_pattern(text: str) -> str:
    for pattern, replacement in logs._REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


_SECRETS = st.sampled_from(
    [
        *("password=x", "passwd: 'y'", "pwd=z", "client_secret: s", "refresh_token=t"),
        *("api_key=k", "X-Api-Key: k", "credentials=c", "AUTH PLAIN AGph", "LOGIN jane pw"),
        *("AUTHENTICATE XOAUTH2 dXNl", "Bearer ey.J0", "Authorization: Basic amFu"),
        "postgresql://mailbot:pw@db",
        # Unicode's case rules take these for "s" and "k" (long s, Kelvin sign).
        *("pa\u017f\u017fword=x", "api-\u212aey: k-1", "to\u212aen=t"),
    ]
)
_ORDINARY = st.sampled_from(["case", " ", "=", ": ", '"', "sent to", "jane@example.com", "\u0131"])


@given(
    st.lists(_ORDINARY, max_size=5),
    _SECRETS,
    st.sampled_from([str, str.upper, str.lower, str.title]),
    st.lists(_ORDINARY, max_size=5),
)
def test_redact_finds_what_every_pattern_finds(
    before: list[str], secret: str, case: Callable[[str], str], after: list[str]
) -> None:
    """The quick look for a clue never lets a line past that one of the patterns would
    change, whatever the case or the look-alike letters."""
    text = "".join(before) + case(secret) + "".join(after)
    assert logs.redact(text) == _every_pattern(text)


def test_secrets_redacted_in_every_part_of_a_record() -> None:
    stream = capture("json")
    try:
        raise ConnectionError("AUTH PLAIN AGphbmUAaHVudGVyMg== refused")
    except ConnectionError:
        logging.getLogger("mailbot.outbox").exception(
            "smtp %s", "password=hunter2", extra={"url": "postgresql://u:hunter2@h/d"}
        )
    (line,) = lines(stream)
    assert "hunter2" not in line and "AGphbmUAaHVudGVyMg" not in line
    record = json.loads(line)
    assert record["message"] == "smtp password=***"
    assert record["url"] == "postgresql://u:***@h/d"


# --- robustness and setup --------------------------------------------------------------------


def test_bad_format_arguments_still_one_line() -> None:
    stream = capture("text")
    logging.getLogger("mailbot").info("%d cases\n", "not a number")
    (line,) = lines(stream)
    assert "'%d cases\\n' % ('not a number',)" in line


def test_stack_info_is_one_line() -> None:
    stream = capture("json")
    logging.getLogger("mailbot").info("where", stack_info=True)
    (record,) = records(stream)
    assert record["stack"].startswith("Stack (most recent call last):\\n")


def test_setup_twice_keeps_one_handler_and_levels() -> None:
    first = capture("text")
    second = capture("json", verbose=True)
    ours = [h for h in logging.getLogger().handlers if isinstance(h, logs._Handler)]
    assert len(ours) == 1
    logging.getLogger("mailbot").debug("debug shown with --verbose")
    logging.getLogger("imapclient.imaplib").debug("> a001 FETCH 1 (BODY[] ...)")
    logging.getLogger("alembic.runtime").info("Context impl SQLiteImpl.")
    assert first.getvalue() == ""
    assert [r["message"] for r in records(second)] == ["debug shown with --verbose"]


def test_default_level_hides_debug() -> None:
    stream = capture("text")
    logging.getLogger("mailbot").debug("hidden")
    logging.getLogger("mailbot").info("shown")
    assert [line.split(": ", 1)[1] for line in lines(stream)] == ["shown"]


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="text, json"):
        logs.setup_logging("xml")  # type: ignore[arg-type]


def test_default_stream_follows_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup_logging("text")
    logging.getLogger("mailbot").warning("to stderr\nsecond")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("mailbot: to stderr\\nsecond\n")


def test_a_broken_stream_reports_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    stream = io.StringIO()
    logs.setup_logging("text", stream=stream)
    stream.close()
    logging.getLogger("mailbot").info("lost")
    err = capsys.readouterr().err
    assert err.startswith("mailbot: could not write a log line: ValueError(")
    assert err.count("\n") == 1


def test_long_message_is_capped() -> None:
    stream = capture("json")
    logging.getLogger("mailbot").info("x" * 100_000)
    (record,) = records(stream)
    assert len(record["message"]) < logs.MAX_MESSAGE + 50
    assert record["message"].endswith("… [96000 more characters]")


@given(st.text())
def test_clean_is_always_one_line(text: str) -> None:
    cleaned = logs.clean(text)
    assert len(cleaned.splitlines()) <= 1
    assert logs.clean(cleaned) == cleaned  # cleaning twice changes nothing
