"""Demo: a self-contained run on sample council mail, with a throwaway Dovecot and SMTP capture."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import tempfile
import threading
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from mailbot.app import App
from mailbot.clock import Clock
from mailbot.config import load_config
from mailbot.daemon import run_once
from mailbot.devservers import DovecotMissing, LocalDovecot, SmtpCapture, local_config
from mailbot.migrations import upgrade
from mailbot.policy import policy_file
from mailbot.store import Case, InboundMessage, case_json, format_cases

SAMPLES = Path(__file__).resolve().parent / "demo_mail"


def crlf(raw: bytes) -> bytes:
    """IMAP wants CRLF line endings; sample files are written with plain newlines."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def run_demo(keep: bool = False, console: bool = False, port: int = 8080) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="mailbot-demo-"))
    dovecot = LocalDovecot(user="enquiries@council.example.gov.uk")
    smtp = SmtpCapture()
    try:
        try:
            dovecot.start()
        except DovecotMissing as exc:
            print(f"mailbot demo: {exc}")
            return 2
        smtp.start()
        clock = Clock()
        now = clock.now()
        # One message from before mailbot started: it must be left alone.
        dovecot.append(
            crlf((SAMPLES / "03-enquiry.eml").read_bytes()).replace(b"demo-enquiry-1", b"old-1"),
            when=now - timedelta(days=3),
        )
        samples = sorted(SAMPLES.glob("*.eml"))
        for minutes, path in enumerate(samples):
            dovecot.append(crlf(path.read_bytes()), when=now - timedelta(minutes=30 - minutes))

        db_url = f"sqlite:///{workdir / 'mailbot.db'}"
        config_path = local_config(
            workdir, dovecot, smtp, database_url=db_url, start_from=now - timedelta(hours=1)
        )
        if console:
            _make_editable(config_path)
        upgrade(db_url)
        app = App.load(load_config(config_path), clock)
        run_once(app)
        _report(app, smtp)
        if keep or console:
            print(f"\nThe demo's files are in {workdir} (config: {config_path})")
        if console:
            _serve_console(app, port)
        return 0
    finally:
        smtp.stop()
        dovecot.cleanup()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _report(app: App, smtp: SmtpCapture) -> None:
    with app.sessions() as session:
        messages = session.scalars(select(InboundMessage).order_by(InboundMessage.uid)).all()
        refs = {c.id: c.ref for c in session.scalars(select(Case))}
        print("Received\n--------")
        for m in messages:
            what = refs.get(m.case_id) if m.case_id else (m.reasons[0] if m.reasons else "")
            print(f"  uid {m.uid:<3} {m.from_addr or '-':<36} {m.outcome:<12} {what}")
        cases = session.scalars(select(Case).order_by(Case.respond_by, Case.id)).all()
        print("\nCases\n-----")
        print(format_cases([case_json(c) for c in cases]))
        print("\nWhy each was classified as it was\n---------------------------------")
        for case in cases:
            why = "; ".join(map(str, case.reasons)) or "no rule matched (default)"
            print(f"  {case.ref}: {why}")
    # The daily digest goes to the clerk too when the demo runs after its time of day;
    # only the residents' acknowledgements are counted and shown here.
    with smtp.lock:
        acknowledgements = [
            m for m in smtp.messages if m.message["Auto-Submitted"] == "auto-replied"
        ]
        to_staff = len(smtp.messages) - len(acknowledgements)
    print(f"\nAcknowledgements accepted by the SMTP server: {len(acknowledgements)}")
    if to_staff:
        print(f"Mail to staff (the clerk's daily digest, alerts): {to_staff}")
    if acknowledgements:
        first = acknowledgements[0]
        msg = first.message
        print("\nOne of them, as the resident sees it\n------------------------------------")
        for header in ("From", "To", "Subject", "Auto-Submitted", "In-Reply-To"):
            print(f"{header}: {msg[header]}")
        print()
        print(first.text())


DEMO_ADMIN = "admin@council.example.gov.uk"


def _make_editable(config_path: Path) -> None:
    """What the console writes, made the demo's own: a templates folder and a copy of
    the policy; cookies over plain http on 127.0.0.1."""
    folder = config_path.parent
    (folder / "templates").mkdir()
    policy = folder / "policy.toml"
    shutil.copy(policy_file("stafford"), policy)
    text = config_path.read_text().replace(
        'policy = "stafford"', f'policy = "{policy}"\ntemplates = "{folder / "templates"}"', 1
    )
    text = text.replace("\n[[officers]]", "\n[web]\nsecure_cookies = false\n\n[[officers]]", 1)
    config_path.write_text(text)


def _serve_console(app: App, port: int) -> None:
    """The console on the demo's data until Ctrl-C, with an admin account to sign in as."""
    from mailbot.web.accounts import add_user
    from mailbot.web.roles import Role
    from mailbot.web.server import Background

    password = secrets.token_urlsafe(12)
    with app.sessions.begin() as session:
        add_user(session, DEMO_ADMIN, Role.ADMIN, password, by="mailbot demo", now=app.clock.now())
    key = secrets.token_bytes(32)  # the demo's sessions end with it
    try:
        server = Background(app, port=port, key=key)
    except OSError:  # the port is taken: any free one
        server = Background(app, port=0, key=key)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with server:
        print("\nThe clerk's console\n-------------------")
        print(f"  {server.url}/")
        print(f"  sign in as {DEMO_ADMIN} with the password {password}")
        print("  (Ctrl-C stops the console and the demo's mail servers)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stopped.wait()
