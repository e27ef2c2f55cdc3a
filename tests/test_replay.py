"""`mailbot replay`: past mail from every export format through a policy in a throwaway
database, the clock moved message by message, nothing sent; and the same cases and
dates as live processing of the same mail through Dovecot and SMTP."""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import threading
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from mailbot.cli import ProgressLine, main
from mailbot.config import load_config
from mailbot.devservers import Account, SmtpCapture, local_config
from mailbot.replay import replay
from mailbot.replay.sources import ArrivedBy, arrival, cut_off, read_export
from mailbot.store import Case, InboundMessage
from tests.conftest import COUNCIL, council_config, mailbot, resident_mail, to_residents
from tests.outlook_msg import outlook_msg

# --- the mail: a fortnight of a council's inbox ------------------------------------------

BST = timedelta(hours=1)  # October 2026 is British Summer Time until the 25th


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """An October 2026 moment, given in UK local time, as UTC."""
    return datetime(2026, 10, day, hour, minute, tzinfo=UTC) - BST


def arrived(raw_headers: dict[str, str], when: datetime) -> dict[str, str]:
    """The Received header the council's server wrote when the message reached it."""
    stamp = format_datetime(when)
    return {**raw_headers, "Received": f"from mx.example.com by mx.example.org; {stamp}"}


FIRST_ID = make_msgid(domain="example.com")


def fortnight() -> list[tuple[str, bytes, datetime]]:
    """(name, raw message, arrival) for each message, in the order they arrived."""
    mail = [
        (
            "foi",
            at(5, 9, 30),
            dict(
                sender="jane.doe@example.com",
                subject="Freedom of Information request: consultants",
                body="Under the Freedom of Information Act 2000 please provide the total "
                "amount the council spent on external consultants in 2025.",
                message_id=FIRST_ID,
            ),
        ),
        (
            "complaint",
            at(5, 14, 10),
            dict(
                sender="bob.smith@example.net",
                name="Bob Smith",
                subject="Formal complaint about missed bin collections",
                body="I wish to make a formal complaint. My bin has been missed three weeks "
                "running, nobody answered my calls and I am very unhappy with the service.",
            ),
        ),
        (
            "auto-reply",
            at(6, 8, 0),
            dict(
                sender="ooo@example.net",
                name="",
                subject="Out of office",
                body="I am away until Monday.",
                headers={"Auto-Submitted": "auto-replied"},
            ),
        ),
        (
            "sar",
            at(6, 11, 45),
            dict(
                sender="carol@example.org.uk",
                name="Carol White",
                subject="Subject access request",
                body="Under the UK GDPR I am making a subject access request for all the "
                "personal data the council holds about me.",
            ),
        ),
        (
            "follow-up",
            at(7, 10, 5),
            dict(
                sender="jane.doe@example.com",
                subject="Re: Freedom of Information request: consultants",
                body="To add to my request: the figures for 2024 as well, please.",
                headers={"In-Reply-To": FIRST_ID, "References": FIRST_ID},
            ),
        ),
        (
            # Sent on Friday evening by the resident's clock, reached us on Saturday:
            # its dates run from the arrival, not the Date header.
            "saturday",
            at(10, 10, 20),
            dict(
                sender="dave@example.com",
                name="Dave Green",
                subject="Streetlight out on Elm Road",
                body="The streetlight outside 12 Elm Road has been out for a week. "
                "When will it be repaired?",
                when=at(9, 23, 50),
            ),
        ),
        (
            "pothole",
            at(12, 16, 55),
            dict(sender="erin@example.com", name="Erin Black"),
        ),
        (
            # Written just before midnight, reached us just after: Wednesday's mail.
            "late-evening",
            at(14, 0, 10),
            dict(
                when=at(13, 23, 58),
                sender="frank@example.com",
                name="Frank Hill",
                subject="Noise from the new depot",
                body="Could someone tell me what hours the new depot on Station Road "
                "is allowed to operate? The lorries start very early.",
            ),
        ),
    ]
    out = []
    for name, when, fields in mail:
        fields.setdefault("when", when - timedelta(minutes=2))  # Date: when it was written
        fields["headers"] = arrived(fields.get("headers", {}), when)
        out.append((name, resident_mail(**fields), when))
    return out


def officer_reply() -> tuple[bytes, datetime]:
    """Sam Patel's answer to the FOI request, filed in the mailbox's sent folder."""
    when = at(8, 15, 0)
    raw = resident_mail(
        sender="sam.patel@council.example.gov.uk",
        name="Sam Patel",
        subject="RE: Freedom of Information request: consultants [Ref: FOI-2026-00001]",
        body="Dear Ms Doe, the council spent £1.2m on consultants in 2025 and £0.9m in "
        "2024. Regards, Sam Patel",
        when=when,
        headers={"In-Reply-To": FIRST_ID, "References": FIRST_ID},
    )
    raw = raw.replace(f"To: {COUNCIL}".encode(), b"To: Jane Doe <jane.doe@example.com>")
    return raw, when


def write_sent(folder: Path) -> Path:
    sent = folder / "Sent Items.mbox"
    sent.write_bytes(mbox_entry(*officer_reply()))
    return sent


# --- the export: every format, and broken files ------------------------------------------


def mbox_entry(raw: bytes, when: datetime) -> bytes:
    text = raw.replace(b"\r\n", b"\n")
    text = b"\n".join(
        b">" + line if line.startswith(b"From ") else line for line in text.split(b"\n")
    )
    return f"From MAILER-DAEMON {when:%a %b %d %H:%M:%S %Y}\n".encode() + text + b"\n"


def as_outlook(raw: bytes, when: datetime) -> bytes:
    """The message as Outlook saves it: the header block it arrived with, its text."""
    message = message_from_bytes(raw, policy=default_policy)
    headers = raw.split(b"\r\n\r\n", 1)[0].decode() + "\r\n\r\n"
    return outlook_msg(
        subject=str(message["Subject"]),
        body=message.get_body(("plain",)).get_content(),
        sender=message["From"].addresses[0].addr_spec,
        sender_name=message["From"].addresses[0].display_name,
        headers=headers,
        message_id=str(message["Message-ID"]),
        delivered=when,
    )


BROKEN = {
    "mbox (message 5)": "cut off inside its headers (no blank line before the body)",
    "broken.msg": "not a readable Outlook message",
    "broken.pst": "readpst could not read it",
    "empty.eml": "empty",
    "notes.txt": "not a mail file",
}


def write_export(folder: Path, mail: list[tuple[str, bytes, datetime]]) -> Path:
    """The fortnight spread over every format, mixed in one folder, with broken files."""
    by_name = {name: (raw, when) for name, raw, when in mail}
    export = folder / "export"
    export.mkdir()
    # An mbox (from an older system), its last entry cut off mid-way.
    mbox = b"".join(
        mbox_entry(*by_name[n]) for n in ("foi", "complaint", "pothole", "late-evening")
    )
    mbox += b"From MAILER-DAEMON Mon Oct 12 09:00:00 2026\nFrom: cut@example.com\nSubject: Half"
    (export / "old-system.mbox").write_bytes(mbox)
    # A Maildir.
    for sub in ("cur", "new", "tmp"):
        (export / "Maildir" / sub).mkdir(parents=True)
    for number, name in enumerate(("auto-reply", "sar"), 1):
        raw, _ = by_name[name]
        (export / "Maildir" / "cur" / f"17000000{number}.M1P1.host:2,S").write_bytes(raw)
    # Loose .eml files, one of them empty, and a file that is no mail at all.
    (export / "eml").mkdir()
    (export / "eml" / "follow-up.eml").write_bytes(by_name["follow-up"][0])
    (export / "eml" / "empty.eml").write_bytes(b"")
    (export / "eml" / "notes.txt").write_text("export made by the IT team\n")
    # Outlook: a .msg saved from Outlook, and one that is not an Outlook file.
    (export / "outlook").mkdir()
    (export / "outlook" / "streetlight.msg").write_bytes(as_outlook(*by_name["saturday"]))
    (export / "outlook" / "broken.msg").write_bytes(
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"x" * 600
    )
    # A PST that readpst cannot read (no tool on Debian writes a PST: see test_pst_*).
    (export / "broken.pst").write_bytes(b"!BDN" + b"\0" * 1000)
    return export


def assert_skipped(skipped: list, export: Path) -> None:
    """Exactly the broken files, each named with why."""
    assert len(skipped) == len(BROKEN), skipped
    for (name, why), entry in zip(
        sorted(BROKEN.items()), sorted(skipped, key=_skip_key), strict=True
    ):
        assert entry.source.endswith(name.replace("mbox", "old-system.mbox")), (name, entry)
        assert entry.reason.startswith(why), (name, entry)


def _skip_key(entry) -> str:
    source = entry.source
    for name in BROKEN:
        if source.endswith(name.replace("mbox", "old-system.mbox")):
            return name
    return source


# --- reading exports (no server) --------------------------------------------------------


def test_arrival_is_the_newest_received_header_then_the_date_header() -> None:
    raw = (
        b"Received: from b by mx.council; Mon, 05 Oct 2026 09:30:02 +0100\r\n"
        b"Received: from a by b; Sun, 04 Oct 2026 23:00:00 +0000\r\n"
        b"Date: Sun, 04 Oct 2026 22:59:00 +0000\r\nFrom: a@example.com\r\n\r\nhi\r\n"
    )
    assert arrival(raw) == (datetime(2026, 10, 5, 8, 30, 2, tzinfo=UTC), ArrivedBy.RECEIVED)
    no_trace = b"Date: Sun, 04 Oct 2026 22:59:00 -0000\r\nFrom: a@example.com\r\n\r\nhi\r\n"
    assert arrival(no_trace) == (datetime(2026, 10, 4, 22, 59, tzinfo=UTC), ArrivedBy.DATE)
    assert arrival(b"From: a@example.com\r\n\r\nhi\r\n") is None


def test_cut_off_names_what_cannot_be_a_whole_message() -> None:
    assert cut_off(b"") == "empty"
    assert cut_off(b"From: a@example.com\nSubject: Hal").startswith("cut off inside its headers")
    multipart = (
        b"From: a@example.com\nContent-Type: multipart/mixed; boundary=X\n\n--X\n"
        b"Content-Type: text/plain\n\nhello, and then noth"
    )
    assert cut_off(multipart).startswith("cut off in its body")
    assert cut_off(multipart + b"ing\n--X--\n") is None
    assert cut_off(b"From: a@example.com\n\n") is None  # odd, but whole: read as live reads it


def test_a_mixed_export_is_read_in_arrival_order_and_broken_files_are_named(tmp_path: Path) -> None:
    mail = fortnight()
    export = write_export(tmp_path, mail)
    with read_export([export]) as found:
        ordered = found.in_order()
        # Every message, once, in the order it reached the council, whatever its file.
        subjects = [message_from_bytes(m.raw)["Subject"] for m in ordered]
    assert not ordered[0].file.exists()  # the spooled copies go with the export
    assert_skipped(found.skipped, export)
    assert subjects == [message_from_bytes(raw)["Subject"] for _, raw, _ in mail]
    assert [m.arrived for m in ordered] == [when for _, _, when in mail]
    outlook = next(m for m in ordered if m.source.endswith("streetlight.msg"))
    assert outlook.arrived_by is ArrivedBy.DELIVERY_TIME
    assert outlook.arrived == at(10, 10, 20)
    assert {m.arrived_by for m in ordered if m is not outlook} == {ArrivedBy.RECEIVED}


def test_an_unreadable_file_is_named_and_the_rest_are_read(tmp_path: Path) -> None:
    (tmp_path / "a.eml").write_bytes(fortnight()[0][1])
    gone = tmp_path / "b.eml"  # a link to a file the copy left behind
    gone.symlink_to(tmp_path / "elsewhere" / "b.eml")
    odd = tmp_path / "c"
    odd.symlink_to(tmp_path / "elsewhere" / "c")
    with read_export([tmp_path]) as found:
        pass
    assert [s.line() for s in found.skipped] == [
        f"skipped {gone}: cannot read: No such file or directory",
        f"skipped {odd}: cannot read: No such file or directory",
    ]
    assert len(found.messages) == 1


def test_a_directory_that_cannot_be_listed_is_named(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "new").write_text("not a folder")  # what a broken copy can leave
    with read_export([maildir]) as found:
        pass
    assert [s.source for s in found.skipped] == [str(maildir / "new")]
    assert found.messages == []


def test_progress_is_a_line_a_tenth_in_a_log_and_one_line_kept_up_on_a_terminal() -> None:
    log = io.StringIO()
    show = ProgressLine(log)
    for done in range(1, 201):
        show(done, 200)
    lines = log.getvalue().splitlines()
    assert lines[0] == "replay: 1 of 200 messages (0%)"
    assert lines[-1] == "replay: 200 of 200 messages (100%)"
    assert len(lines) == 11  # 0%, 10%, … 100%
    small = io.StringIO()
    for done in range(1, 51):
        ProgressLine(small)(done, 50)
    assert small.getvalue() == ""  # a short run in a log says nothing

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    show = ProgressLine(screen)
    for done in range(1, 1001):
        show(done, 1000)
    text = screen.getvalue()
    assert text.count("\r") == 101 and text.endswith("replay: 1,000 of 1,000 messages (100%)\n")


# --- the rehearsal, in this process (no mail server needed) --------------------------------


class Listener:
    """A TCP port that counts every connection made to it (the config's SMTP server)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def offline_config(tmp_path: Path):
    """A council's config whose IMAP port is closed, whose SMTP port counts connections
    and whose database does not exist: a rehearsal needs none of them."""
    smtp = Listener()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    imap = Account(closed.getsockname()[1], "council@example.org", "secret")
    closed.close()
    live_db = tmp_path / "live" / "mailbot.db"
    path = local_config(
        tmp_path,
        imap,
        SmtpCapture(port=smtp.port),
        mailbox_address=COUNCIL,
        database_url=f"sqlite:///{live_db}",
        start_from=datetime(2026, 11, 1, tzinfo=UTC),  # after the mail: replay ignores it
    )
    yield path, smtp, live_db
    smtp.close()


def test_replay_of_a_mixed_export_decides_every_message_and_sends_nothing(
    tmp_path: Path, offline_config, capsys: pytest.CaptureFixture[str]
) -> None:
    config, smtp, live_db = offline_config
    export = write_export(tmp_path, fortnight())
    report = tmp_path / "replay.json"
    code = main(["--config", str(config), "replay", str(export), "--report", str(report)])
    err = capsys.readouterr().err
    assert code == 0, err
    data = json.loads(report.read_text())
    # Nothing was sent, nor even connected to; the live database was never made.
    assert smtp.connections == 0
    assert not live_db.exists() and not live_db.parent.exists()

    got = [(m["subject"], m["outcome"], m["case"], m["category"]) for m in data["messages"]]
    assert got == [
        ("Freedom of Information request: consultants", "case-opened", "FOI-2026-00001", "foi"),
        (
            "Formal complaint about missed bin collections",
            "case-opened",
            "COM-2026-00001",
            "complaint",
        ),
        ("Out of office", "suppressed", None, None),
        ("Subject access request", "case-opened", "SAR-2026-00001", "sar"),
        ("Re: Freedom of Information request: consultants", "follow-up", "FOI-2026-00001", "foi"),
        ("Streetlight out on Elm Road", "case-opened", "ENQ-2026-00001", "enquiry"),
        ("Pothole on Mill Lane", "case-opened", "ENQ-2026-00002", "enquiry"),
        # Noise from a depot is environmental information: the EIR, not an enquiry.
        ("Noise from the new depot", "case-opened", "EIR-2026-00001", "eir"),
    ]
    by_subject = {m["subject"]: m for m in data["messages"]}
    # Why: the screen's reason for the auto-reply, the classifier's for a case.
    assert any("auto-submitted" in r.lower() for r in by_subject["Out of office"]["reasons"])
    assert by_subject["Freedom of Information request: consultants"]["reasons"]
    # Dates: FOI, 20 working days from the day after arrival (Monday 5 October).
    foi = by_subject["Freedom of Information request: consultants"]
    assert foi["respond_by"] == "2026-11-02"
    # The Saturday message's clock runs from its arrival (Saturday 10th), not its Date
    # header (Friday 9th): day one is Monday 12th, as live processing would have it.
    streetlight = next(c for c in data["cases"] if c["ref"] == "ENQ-2026-00001")
    assert streetlight["received_at"] == at(10, 10, 20).isoformat()
    depot = next(c for c in data["cases"] if c["ref"] == "EIR-2026-00001")
    assert depot["received_at"] == at(14, 0, 10).isoformat()  # not its Date, on the 13th
    # Letters: each case's acknowledgement, to the resident, when the message arrived.
    acks = {
        (x["case"], x["to"], x["at"])
        for m in data["messages"]
        for x in m["letters"]
        if x["kind"] == "acknowledgement"
    }
    assert acks == {
        ("FOI-2026-00001", "jane.doe@example.com", at(5, 9, 30).isoformat()),
        ("COM-2026-00001", "bob.smith@example.net", at(5, 14, 10).isoformat()),
        ("SAR-2026-00001", "carol@example.org.uk", at(6, 11, 45).isoformat()),
        ("ENQ-2026-00001", "dave@example.com", at(10, 10, 20).isoformat()),
        ("ENQ-2026-00002", "erin@example.com", at(12, 16, 55).isoformat()),
        ("EIR-2026-00001", "frank@example.com", at(14, 0, 10).isoformat()),
    }
    ack_subjects = [
        x["subject"]
        for m in data["messages"]
        for x in m["letters"]
        if x["kind"] == "acknowledgement"
    ]
    assert all("[Ref: " in s for s in ack_subjects)
    # The figures for the period, from reports.py, and the files left out.
    assert data["period_from"] == "2026-10-05" and data["period_to"] == "2026-10-14"
    assert data["figures"]["total"]["received"] == 6
    assert data["figures"]["total"]["acknowledged_on_time"] == 6
    assert_skipped([_Skip(**s) for s in data["skipped"]], export)
    for name in BROKEN:
        assert f"skipped {export}" in err and name.split(" ")[0] in err
    assert "skipped 5 file(s) or message(s); listed in the report" in err


class _Skip:
    def __init__(self, source: str, reason: str) -> None:
        self.source, self.reason = source, reason


def test_the_scheduler_runs_between_messages_and_until(tmp_path: Path, offline_config) -> None:
    """Carried on to the end of the month, the FOI case's reminders and its breach fall
    due and are recorded, on the days the daemon would have acted."""
    config, smtp, _ = offline_config
    raw = fortnight()[0][1]
    (tmp_path / "one.eml").write_bytes(raw)
    until = datetime(2026, 11, 6, 12, 0, tzinfo=UTC)
    result = replay(load_config(config), [tmp_path / "one.eml"], until=until)
    assert smtp.connections == 0
    assert [c["ref"] for c in result.cases] == ["FOI-2026-00001"]
    kinds = [(x.kind, x.audience, x.status) for x in result.letters]
    assert ("acknowledgement", "resident", "sent") in kinds
    breach = [x for x in result.letters if x.kind == "breach"]
    assert breach, kinds
    # Staff mail waits for opening time on a working day: the breach of a case due on
    # Monday 2 November is noticed at midnight and goes to staff at opening on Tuesday.
    assert {x.at.date() for x in breach} == {datetime(2026, 11, 3).date()}
    assert all(x.at <= until for x in result.letters if x.status == "sent")
    assert result.period_to.isoformat() == "2026-11-06"


def test_a_policy_can_be_chosen_and_a_bad_one_is_one_line(
    tmp_path: Path, offline_config, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, _ = offline_config
    (tmp_path / "one.eml").write_bytes(fortnight()[1][1])
    code = main(["--config", str(config), "replay", str(tmp_path / "one.eml"), "--policy", "nope"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "no such policy" in err
    code = main(
        ["--config", str(config), "replay", str(tmp_path / "one.eml"), "--policy", "lgsco-code"]
    )
    out = capsys.readouterr().out
    assert code == 0 and "under the lgsco-code policy" in out.lower().replace("“", "")


def test_the_report_formats(tmp_path: Path, offline_config, capsys) -> None:
    config, _, _ = offline_config
    export = write_export(tmp_path, fortnight())
    base = ["--config", str(config), "replay", str(export)]
    assert main([*base, "--report", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert "FOI-2026-00001" in html and "Figures for the period" in html
    assert "broken.pst" in html and "<script" not in html
    assert main([*base, "--report", str(tmp_path / "r.csv")]) == 0
    rows = (tmp_path / "r.csv").read_text().splitlines()
    assert rows[0].startswith("arrived,arrived_by,source,from,subject,outcome")
    assert len(rows) == 1 + 8 + 5  # a row per message, then per file left out
    assert sum(",skipped," in row for row in rows) == 5
    letters = (tmp_path / "r.letters.csv").read_text().splitlines()
    assert sum(",acknowledgement," in row for row in letters) == 6
    assert (tmp_path / "r.figures.csv").read_text().startswith("category,stage,received")
    capsys.readouterr()
    assert main(base) == 0  # no --report: the summary
    out = capsys.readouterr().out
    assert "Replay of 8 message(s)" in out and "Nothing was sent" in out
    assert "Skipped 5 file(s)" in out
    assert main([*base, "--report", str(tmp_path / "r.docx")]) == 1
    assert "--format" in capsys.readouterr().err


# --- PST ------------------------------------------------------------------------------
# No tool on Debian writes a PST (pst-utils only reads them), and the tests ship no
# third-party file: a PST that readpst cannot read is run through the real readpst
# above, and here readpst's absence, and its output (a folder of .eml files) as a
# stand-in readpst writes it.


def test_pst_without_readpst_is_one_line_and_exit_1(
    tmp_path: Path, offline_config, monkeypatch, capsys
) -> None:
    config, _, _ = offline_config
    (tmp_path / "archive.pst").write_bytes(b"!BDN" + b"\0" * 100)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    code = main(["--config", str(config), "replay", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert err == (
        f"mailbot: {tmp_path / 'archive.pst'}: PST files are read with readpst, which is not "
        "installed (apt-get install pst-utils)\n"
    )


def test_pst_messages_are_read_from_what_readpst_writes(
    tmp_path: Path, offline_config, monkeypatch
) -> None:
    config, _, _ = offline_config
    mail = fortnight()
    tools = tmp_path / "bin"
    tools.mkdir()
    for name, raw, _ in mail[:2]:
        (tools / f"{name}.eml").write_bytes(raw)
    # readpst -e -o OUT FILE writes OUT/<folder>/<n>.eml; this one copies ready files.
    fake = tools / "readpst"
    fake.write_text(
        "#!/bin/sh\n"
        'for a; do case "$prev" in -o) out="$a";; esac; prev="$a"; done\n'
        f'mkdir -p "$out/Inbox" && cp "{tools}/foi.eml" "$out/Inbox/1.eml" '
        f'&& cp "{tools}/complaint.eml" "$out/Inbox/2.eml"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    (tmp_path / "archive.pst").write_bytes(b"!BDN" + b"\0" * 100)
    result = replay(load_config(config), [tmp_path / "archive.pst"])
    assert [m.source for m in result.messages] == [
        f"{tmp_path / 'archive.pst'} (Inbox/1.eml)",
        f"{tmp_path / 'archive.pst'} (Inbox/2.eml)",
    ]
    assert [m.case_ref for m in result.messages] == ["FOI-2026-00001", "COM-2026-00001"]


# --- the same as live processing ----------------------------------------------------------


@pytest.mark.integration
def test_replay_gives_the_same_cases_and_dates_as_live_processing(
    tmp_path: Path, dovecot: Account, smtp: SmtpCapture, database_url: str
) -> None:
    """The fortnight, replayed from a mixed export (and the officer's reply from the sent
    folder), then processed live: each message delivered to Dovecot as it arrived and
    `mailbot run --once --now` run at that moment, with real SMTP. The cases, their
    categories and dates, what each message became and the acknowledgements residents
    got are the same, exactly."""
    mail = fortnight()
    config = council_config(tmp_path, dovecot, smtp, database_url, imap_extra='sent = "Sent"\n')
    export = write_export(tmp_path, mail)
    report = tmp_path / "replay.json"
    sent = write_sent(tmp_path)
    proc = mailbot(config, "replay", str(export), "--sent", str(sent), "--report", str(report))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    replayed = json.loads(report.read_text())
    # The rehearsal sent nothing and left the live database (schema made, empty) alone.
    assert smtp.greetings == 0 and smtp.messages == []
    engine = create_engine(database_url)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(InboundMessage)) == 0
        assert conn.scalar(select(func.count()).select_from(Case)) == 0

    with dovecot.client() as imap:
        imap.create_folder("Sent")
    reply, replied = officer_reply()
    deliveries = [(raw, when, "INBOX") for _, raw, when in mail] + [(reply, replied, "Sent")]
    for raw, when, folder in sorted(deliveries, key=lambda d: d[1]):
        dovecot.append(raw, when=when, folder=folder)
        proc = mailbot(config, "run", "--once", "--now", when.isoformat())
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    proc = mailbot(config, "cases", "--all", "--json")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    live_cases = json.loads(out)

    def key(case: dict) -> str:
        return case["ref"]

    assert sorted(replayed["cases"], key=key) == sorted(live_cases, key=key)
    assert len(live_cases) == 6
    assert [c["status"] for c in live_cases if c["ref"] == "FOI-2026-00001"] == ["responded"]
    with engine.connect() as conn:
        # Live, mailbot files a copy of what it sends in the sent folder and reads it
        # back as its own mail; an export of past mail holds no such copies.
        live_outcomes = conn.execute(
            select(InboundMessage.outcome, Case.ref)
            .outerjoin(Case, Case.id == InboundMessage.case_id)
            .where(InboundMessage.outcome != "own-mail")
            .order_by(InboundMessage.internal_date)
        ).all()
    engine.dispose()
    assert [(m["outcome"], m["case"]) for m in replayed["messages"]] == [
        tuple(row) for row in live_outcomes
    ]
    sent_live = sorted((m.rcpt_tos[0], str(m.message["Subject"])) for m in to_residents(smtp))
    sent_replayed = sorted(
        (x["to"], x["subject"])
        for m in replayed["messages"]
        for x in m["letters"]
        if x["audience"] == "resident" and x["status"] == "sent"
    )
    assert sent_replayed == sent_live and len(sent_live) == 6


def test_officers_replies_in_the_sent_folder_mark_cases_responded(
    tmp_path: Path, offline_config
) -> None:
    config, smtp, _ = offline_config
    export = write_export(tmp_path, fortnight())
    result = replay(load_config(config), [export], sent=[write_sent(tmp_path)])
    reply = next(m for m in result.messages if m.source.endswith("Sent Items.mbox (message 1)"))
    assert (reply.outcome, reply.case_ref, reply.arrived_by) == (
        "officer-reply",
        "FOI-2026-00001",
        "Date header (no Received header)",  # a sent item has no Received header
    )
    assert reply.reasons[0].rule == "staff"
    assert "found in the mailbox's sent folder" in reply.reasons[0].text
    foi = next(c for c in result.cases if c["ref"] == "FOI-2026-00001")
    assert foi["status"] == "responded"
    assert foi["responded_at"] == at(8, 15, 0).isoformat()
    assert result.figures.total.responded == 1
    assert smtp.connections == 0
