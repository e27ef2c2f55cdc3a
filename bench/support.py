"""Bench helpers: local servers, a mixed mail corpus, a timing SMTP sink, child memory."""

from __future__ import annotations

import contextlib
import email
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from aiosmtpd.controller import Controller

from mailbot.devservers import Account, LocalDovecot, free_port, local_config

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "classify"
COUNCIL = "enquiries@council.example.gov.uk"
START_FROM = datetime(2026, 10, 1, tzinfo=UTC)
ARRIVED = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # past: Dovecot ignores future dates
NOW = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)


# -- servers ---------------------------------------------------------------------------


@dataclass
class SmtpSink:
    """An aiosmtpd server that accepts everything and notes when each message arrived."""

    port: int = field(default_factory=free_port)
    received: list[tuple[float, list[str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        rcpt = list(envelope.rcpt_tos)  # type: ignore[attr-defined]
        raw = envelope.original_content or b""  # type: ignore[attr-defined]
        with self.lock:
            self.received.append((time.monotonic(), rcpt, raw))
        return "250 OK"

    def start(self) -> SmtpSink:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def arrivals(self, marker: bytes = b"Auto-Submitted: auto-replied") -> dict[str, float]:
        """When each recipient's first message carrying `marker` arrived."""
        with self.lock:
            found: dict[str, float] = {}
            for at, rcpt, raw in self.received:
                if marker in raw:
                    found.setdefault(rcpt[0], at)
            return found


@contextlib.contextmanager
def servers() -> Iterator[tuple[LocalDovecot, SmtpSink, Path]]:
    """A private Dovecot, an SMTP sink and a scratch folder, all gone afterwards."""
    dovecot = LocalDovecot(user="bench-admin@example.org").start()
    sink = SmtpSink().start()
    try:
        with tempfile.TemporaryDirectory(prefix="mailbot-bench-") as scratch:
            yield dovecot, sink, Path(scratch)
    finally:
        sink.stop()
        dovecot.cleanup()


def mailbot_config(folder: Path, account: Account, sink: SmtpSink, **kw: object) -> Path:
    """A mailbot.toml for the local servers with a fresh SQLite database, schema made."""
    from mailbot.migrations import upgrade

    folder.mkdir(parents=True, exist_ok=True)
    url = str(kw.pop("database_url", f"sqlite:///{folder / 'mailbot.db'}"))
    config = local_config(
        folder,
        account,
        sink,  # type: ignore[arg-type]  # only .port is read
        mailbox_address=COUNCIL,
        database_url=url,
        start_from=START_FROM,
        **kw,  # type: ignore[arg-type]
    )
    upgrade(url)
    return config


def mailbot_command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "mailbot", "--config", str(config), *args]


def fill(account: Account, messages: list[bytes], chunk: int = 250) -> None:
    """Deliver a backlog quickly: MULTIAPPEND in chunks over one connection."""
    with account.client() as imap:
        for start in range(0, len(messages), chunk):
            batch = messages[start : start + chunk]
            imap.multiappend(
                "INBOX",
                [
                    {"msg": raw, "date": ARRIVED + timedelta(seconds=start + n)}
                    for n, raw in enumerate(batch)
                ],
            )


# -- a mixed corpus --------------------------------------------------------------------


@dataclass
class Corpus:
    messages: list[bytes]
    kinds: dict[str, int]

    @property
    def to_acknowledge(self) -> int:
        return self.kinds.get("resident", 0)


def _resident(template: bytes, n: int) -> tuple[bytes, str, str]:
    """A real-looking resident message from the classification corpus, made unique."""
    msg = email.message_from_bytes(template)
    # Ten residents to a domain, as a day's mail spreads over many (more than 20 from one
    # domain would meet the per-domain cap on acknowledgements).
    sender = f"resident{n:05d}@residents{n // 10}.example.net"
    message_id = f"<bench-{n:05d}@residents.example.net>"
    for name in ("From", "Reply-To", "Message-ID", "Date", "To"):
        del msg[name]
    msg["From"] = f"Resident {n} <{sender}>"
    msg["To"] = COUNCIL
    msg["Message-ID"] = message_id
    msg["Date"] = format_datetime(ARRIVED)
    return msg.as_bytes(), sender, message_id


def _simple(headers: dict[str, str], body: str) -> bytes:
    msg = EmailMessage()
    for name, value in headers.items():
        msg[name] = value
    msg["To"] = COUNCIL
    msg["Date"] = format_datetime(ARRIVED)
    msg.set_content(body)
    return msg.as_bytes()


def _bounce(n: int) -> bytes:
    return (
        f"From: Mail Delivery System <MAILER-DAEMON@mx{n}.example.net>\r\n"
        f"To: {COUNCIL}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <bounce-{n}@mx.example.net>\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nThis is the mail system.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nStatus: 5.1.1\r\n--b--\r\n"
    ).encode()


def _names_a_case(raw: bytes) -> bool:
    from mailbot.parse import parse_message
    from mailbot.thread import references_in

    msg = parse_message(raw)
    return bool(references_in(msg.subject) or references_in(msg.text))


def mixed_corpus(count: int, seed: int = 42) -> Corpus:
    """Per hundred: ~75 residents, 8 follow-ups, 7 auto-replies, 5 newsletters,
    3 bounces, 2 duplicates, in a random order as a real mailbox has them."""
    rng = random.Random(seed)
    # First messages only: a template that quotes a case's reference is a reply, and
    # would join whichever bench case happens to have that reference.
    templates = [
        raw for p in sorted(CORPUS.glob("*.eml")) if not _names_a_case(raw := p.read_bytes())
    ]
    weights = {
        "resident": 75,
        "follow-up": 8,
        "auto-reply": 7,
        "newsletter": 5,
        "bounce": 3,
        "duplicate": 2,
    }
    kinds: dict[str, int] = dict.fromkeys(weights, 0)
    earlier: list[tuple[bytes, str, str, str]] = []  # raw, sender, message-id, subject
    out: list[bytes] = []
    for n in range(count):
        kind = rng.choices(list(weights), list(weights.values()))[0]
        if kind in ("follow-up", "duplicate") and not earlier:
            kind = "resident"
        if kind == "resident":
            raw, sender, mid = _resident(templates[n % len(templates)], n)
            subject = " ".join(str(email.message_from_bytes(raw)["Subject"] or "").split())
            earlier.append((raw, sender, mid, subject))
        elif kind == "follow-up":
            _, sender, mid, subject = rng.choice(earlier)
            raw = _simple(
                {
                    "From": sender,
                    "Subject": f"Re: {subject}",
                    "Message-ID": f"<followup-{n}@residents.example.net>",
                    "In-Reply-To": mid,
                    "References": mid,
                },
                "Any news on this please?",
            )
        elif kind == "duplicate":
            raw = rng.choice(earlier)[0]  # the same message delivered twice
        elif kind == "auto-reply":
            raw = _simple(
                {
                    "From": f"staff{n}@company.example.com",
                    "Subject": "Automatic reply: Council tax",
                    "Message-ID": f"<ooo-{n}@company.example.com>",
                    "Auto-Submitted": "auto-replied",
                },
                "I am out of the office until Monday.",
            )
        elif kind == "newsletter":
            raw = _simple(
                {
                    "From": "Local Gov Digest <news@digest.example.com>",
                    "Subject": f"This week in local government ({n})",
                    "Message-ID": f"<digest-{n}@digest.example.com>",
                    "List-Id": "<weekly.digest.example.com>",
                    "Precedence": "bulk",
                },
                "Ten things every council should know.\n" * 20,
            )
        else:
            raw = _bounce(n)
        kinds[kind] += 1
        out.append(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    return Corpus(out, kinds)


# -- processes and memory ----------------------------------------------------------------


@dataclass
class ChildResult:
    returncode: int
    seconds: float
    peak_rss_mb: float
    stderr: str


# Peak RSS has to come from the child's own /proc entry: rusage's ru_maxrss survives exec
# on Linux, so a child forked from this (large) process would report our size as its own.
_PEAK_AT_EXIT = """\
import atexit, runpy, sys
def _peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            print("BENCH_PEAK_KB", line.split()[1], file=sys.stderr, flush=True)
atexit.register(_peak)
runpy.run_module(sys.argv.pop(1), run_name="__main__", alter_sys=True)
"""


def run_child(cmd: list[str], timeout: float = 1800) -> ChildResult:
    """Run `python -m MODULE ARGS` to the end and report its peak resident memory."""
    assert cmd[1] == "-m", "run_child runs python -m MODULE ..."
    wrapped = [cmd[0], "-c", _PEAK_AT_EXIT, *cmd[2:]]
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(wrapped, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        seconds = time.perf_counter() - start
        err.seek(0)
        text = err.read().decode(errors="replace")
    peaks = [line.split()[1] for line in text.splitlines() if line.startswith("BENCH_PEAK_KB")]
    return ChildResult(proc.returncode, seconds, int(peaks[-1]) / 1024 if peaks else 0.0, text)


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a live process, in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def daemon_memory_mb(pid: int) -> tuple[float, float]:
    """(resident, peak) of the daemon and its sending process, in MB. Resident is the
    proportional set size, so pages the two still share since the fork count once; the
    peak is the sum of each one's VmHWM (an upper bound)."""
    resident = peak = 0.0
    for each in (pid, *_children(pid)):
        for line in Path(f"/proc/{each}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                resident += int(line.split()[1]) / 1024
        peak += rss_mb(each)[1]
    return resident, peak


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a live process has used so far."""
    # Fields after the command name, which is in brackets and may hold spaces.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def daemon_cpu_seconds(pid: int) -> tuple[float, float]:
    """(deciding, sending): CPU time of the daemon and of its sending process."""
    return cpu_seconds(pid), sum(cpu_seconds(child) for child in _children(pid))


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank, as service-level targets are read."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def save_json(path: str | None, data: dict) -> None:
    """Numbers for bench.run_all's summary (each benchmark runs in its own process)."""
    if path:
        Path(path).write_text(json.dumps(data, indent=2, default=str))
