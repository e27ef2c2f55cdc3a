"""Demo: a self-contained run on sample council mail, with a throwaway Dovecot and SMTP capture."""

from __future__ import annotations

import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from mailbot.app import App
from mailbot.cli import format_cases
from mailbot.clock import Clock
from mailbot.config import load_config
from mailbot.daemon import run_once
from mailbot.devservers import DovecotMissing, LocalDovecot, SmtpCapture, local_config
from mailbot.migrations import upgrade
from mailbot.store import Case, InboundMessage, case_json

SAMPLES = Path(__file__).resolve().parent / "demo_mail"


def crlf(raw: bytes) -> bytes:
    """IMAP wants CRLF line endings; sample files are written with plain newlines."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def run_demo(keep: bool = False) -> int:
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
        upgrade(db_url)
        app = App.load(load_config(config_path), clock)
        run_once(app)
        _report(app, smtp)
        if keep:
            print(f"\nThe demo's files are in {workdir} (config: {config_path})")
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
            print(f"  {case.ref}: {'; '.join(case.reasons) or 'no rule matched (default)'}")
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
