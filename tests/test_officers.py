"""Officers from their own mail client: replies, #commands, clock stops and complaint stages."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from sqlalchemy import select

from mailbot.app import App
from mailbot.cli import main
from mailbot.config import load_config
from mailbot.daemon import run_once
from mailbot.devservers import local_config
from mailbot.migrations import upgrade
from mailbot.store import Case, InboundMessage
from tests.conftest import COUNCIL, START_FROM, resident_mail, to_residents

pytestmark = pytest.mark.integration

AUTHSERV = "mx.council.example.gov.uk"
ALEX = "alex.morgan@council.example.gov.uk"  # customer-services, duty-officer
JORDAN = "jordan.reid@council.example.gov.uk"  # complaints-officer, head-of-service
SAM = "sam.patel@council.example.gov.uk"  # foi-officer
CHRIS = "chris.lee@council.example.gov.uk"  # clerk, chief-executive
RESIDENT = "jane.doe@example.com"
T0 = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)  # Tuesday 3 November 2026
PASS = (
    f"{AUTHSERV}; dkim=pass header.d=council.example.gov.uk;"
    " spf=pass smtp.mailfrom=council.example.gov.uk"
)
COMPLAINT = (
    "This is the third week running my green bin has not been emptied. I have rung twice "
    "and nobody has called back. Frankly it is not good enough."
)


@pytest.fixture
def app(tmp_path, dovecot, smtp, database_url, clock):
    path = local_config(
        tmp_path,
        dovecot,
        smtp,
        mailbox_address=COUNCIL,
        database_url=database_url,
        start_from=START_FROM,
        imap_extra='sent = "Sent Items"\n',
        extra=f'\n[commands]\nauthserv_id = "{AUTHSERV}"\n',
    )
    upgrade(database_url)
    application = App.load(load_config(path), clock)
    application.config_path = path  # type: ignore[attr-defined]
    yield application
    application.engine.dispose()


def staff_mail(
    sender: str,
    subject: str,
    body: str,
    *,
    to: str = COUNCIL,
    cc: str | None = None,
    auth: str | None = PASS,
    in_reply_to: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="council.example.gov.uk")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if auth:
        msg["Authentication-Results"] = auth
    for key, value in (headers or {}).items():
        msg[key] = value
    msg.set_content(body)
    return msg.as_bytes().replace(b"\n", b"\r\n")


def step(app, dovecot, raw: bytes, minutes: int, folder: str = "INBOX") -> None:
    """Deliver `raw` `minutes` after T0 and run one cycle a minute later."""
    dovecot.append(raw, when=T0 + timedelta(minutes=minutes), folder=folder)
    app.clock.instant = T0 + timedelta(minutes=minutes + 1)
    run_once(app)


def the_case(app, ref: str) -> Case:
    with app.sessions() as s:
        case = s.scalar(select(Case).where(Case.ref == ref))
        case.events  # noqa: B018 (load them before the session closes)
        return case


def confirmations(smtp, to: str) -> list[str]:
    return [
        m.text()
        for m in smtp.to(to)
        if "command" in (m.message["Subject"] or "").lower()
        or str(m.message["Subject"]).strip().startswith(("Done", "1 command", "2 command"))
    ]


def open_enquiry(app, dovecot) -> str:
    step(app, dovecot, resident_mail(message_id="<q1@example.com>"), 0)
    return "ENQ-2026-00001"


@pytest.mark.parametrize("copy", ["cc", "bcc"])
def test_officer_reply_copied_to_the_mailbox_marks_the_case_responded(app, dovecot, smtp, copy):
    ref = open_enquiry(app, dovecot)
    # A BCC'd copy reaches the mailbox with only the resident in its headers.
    reply = staff_mail(
        ALEX,
        f"RE: Pothole on Mill Lane [Ref: {ref}]",
        "It will be fixed on Friday.",
        to=RESIDENT,
        cc=COUNCIL if copy == "cc" else None,
        auth=None,
        in_reply_to="<q1@example.com>",
    )
    step(app, dovecot, reply, 60)

    case = the_case(app, ref)
    assert case.status == "responded"
    assert case.responded_at == T0 + timedelta(minutes=60)
    assert [e.kind for e in case.events][-1] == "responded"
    # No acknowledgement of the officer's own mail, and no reminders after it.
    assert len(to_residents(smtp)) == 1
    app.clock.instant = datetime(2026, 11, 10, 10, 0, tzinfo=UTC)
    run_once(app)
    assert [m for m in smtp.to(ALEX) if "Reminder" in m.message["Subject"]] == []


def test_officer_reply_found_in_the_sent_folder(app, dovecot, smtp):
    ref = open_enquiry(app, dovecot)
    reply = staff_mail(
        ALEX, f"RE: Pothole on Mill Lane [Ref: {ref}]", "Fixed today.", to=RESIDENT, auth=None
    )
    step(app, dovecot, reply, 30, folder="Sent Items")
    assert the_case(app, ref).status == "responded"

    # Anything else in the sent folder never opens a case or gets an acknowledgement.
    other = resident_mail(sender="someone@example.net", message_id="<x@y>")
    step(app, dovecot, other, 40, folder="Sent Items")
    with app.sessions() as s:
        assert s.scalar(select(Case).where(Case.ref == "ENQ-2026-00002")) is None
    assert len(to_residents(smtp)) == 1


def test_our_own_acknowledgement_in_sent_items_is_not_an_officer_reply(app, dovecot, smtp):
    ref = open_enquiry(app, dovecot)
    step(app, dovecot, to_residents(smtp)[0].raw, 5, folder="Sent Items")
    assert the_case(app, ref).status == "open"
    with app.sessions() as s:
        outcomes = list(s.scalars(select(InboundMessage.outcome).order_by(InboundMessage.id)))
    assert outcomes == ["case-opened", "own-mail"]


def command(app, dovecot, ref: str, body: str, minutes: int, sender: str = ALEX, **kw) -> None:
    step(app, dovecot, staff_mail(sender, f"Re: [Ref: {ref}]", body, **kw), minutes)


def test_note_close_and_responded_are_confirmed_to_the_officer(app, dovecot, smtp):
    ref = open_enquiry(app, dovecot)
    command(app, dovecot, ref, "#note Rang the resident\nThanks,\nAlex", 10)
    command(app, dovecot, ref, "#responded", 20)
    command(app, dovecot, ref, "#close", 30)
    case = the_case(app, ref)
    assert case.status == "closed"
    assert case.responded_at == T0 + timedelta(minutes=21)
    details = [(e.kind, e.detail) for e in case.events]
    assert ("note", f"{ALEX}: Rang the resident") in details
    assert ("closed", f"closed by {ALEX}") in details
    texts = [m.text() for m in smtp.to(ALEX)]
    assert sum("Done: #note Rang the resident" in t for t in texts) == 1
    assert sum("Done: #close" in t for t in texts) == 1


def test_bad_and_unknown_commands_get_an_error_reply(app, dovecot, smtp):
    ref = open_enquiry(app, dovecot)
    command(app, dovecot, ref, "#extend lots\n#frobnicate\n#outcome upheld", 10)
    [reply] = [
        m for m in smtp.to(ALEX) if str(m.message["Subject"]).strip().startswith("3 command")
    ]
    text = reply.text()
    assert "NOT DONE: #extend lots\n  give a number, e.g. #extend 10" in text
    assert "NOT DONE: #frobnicate\n  unknown command" in text
    assert "NOT DONE: #outcome upheld\n  outcomes are recorded for complaints only" in text
    assert reply.message["Auto-Submitted"] == "auto-generated"


def test_quoted_commands_are_not_commands(app, dovecot, smtp):
    ref = open_enquiry(app, dovecot)
    body = "Thanks, will do.\n\nOn Tue, 3 Nov 2026, Chris Lee wrote:\n> #close\n"
    command(app, dovecot, ref, body, 10)
    assert the_case(app, ref).status == "open"


@pytest.mark.parametrize(
    "auth",
    [
        None,  # no Authentication-Results at all
        "evil.example.net; dkim=pass header.d=council.example.gov.uk",  # not our server
        f"{AUTHSERV}; dkim=fail header.d=council.example.gov.uk; spf=softfail",
        f"{AUTHSERV}; dkim=pass header.d=evil.example.net",  # passes, for someone else
    ],
)
def test_spoofed_officer_commands_are_logged_and_ignored(app, dovecot, smtp, auth, caplog):
    ref = open_enquiry(app, dovecot)
    command(app, dovecot, ref, "#close", 10, auth=auth)
    assert the_case(app, ref).status == "open"
    assert smtp.to(ALEX) == []  # no confirmation either
    assert f"commands from {ALEX} ignored: not authenticated" in caplog.text


def test_commands_through_the_internal_relay_are_accepted(tmp_path, dovecot, smtp, clock):
    path = local_config(
        tmp_path,
        dovecot,
        smtp,
        mailbox_address=COUNCIL,
        database_url=f"sqlite:///{tmp_path / 'r.db'}",
        start_from=START_FROM,
        extra='\n[commands]\ninternal_relays = ["relay.council.example.gov.uk"]\n',
    )
    upgrade(f"sqlite:///{tmp_path / 'r.db'}")
    app = App.load(load_config(path), clock)
    ref = open_enquiry(app, dovecot)
    received = "from relay.council.example.gov.uk (10.0.0.5) by mx (Postfix); Tue, 3 Nov 2026"
    command(app, dovecot, ref, "#close", 10, auth=None, headers={"Received": received})
    assert the_case(app, ref).status == "closed"


def test_reassign_tells_the_new_officer(app, dovecot, smtp):
    ref = open_enquiry(app, dovecot)
    command(app, dovecot, ref, f"#reassign {JORDAN}", 10)
    case = the_case(app, ref)
    assert (case.officer_email, case.officer_name) == (JORDAN, "Jordan Reid")
    [assigned] = [
        m for m in smtp.to(JORDAN) if str(m.message["Subject"]).strip().startswith("New case")
    ]
    assert ref in assigned.message["Subject"]
    assert "This case is now yours." in assigned.text()
    command(app, dovecot, ref, "#reassign nobody@example.com", 20)
    assert any("not a configured officer: nobody@example.com" in m.text() for m in smtp.to(ALEX))


def test_category_change_reroutes_and_follows_the_new_rules(app, dovecot, smtp):
    ref = open_enquiry(app, dovecot)
    command(app, dovecot, ref, "#category foi", 10)
    case = the_case(app, ref)
    assert (case.category, case.officer_email) == ("foi", SAM)
    # FOI: day 1 is Wed 4 Nov 2026; Mon 30 Nov (St Andrew's Day, a Scottish bank holiday)
    # does not count, as FOIA s.10(6) takes every nation's: day 20 is Wed 2 Dec.
    assert case.respond_by == date(2026, 12, 2)
    assert any(
        e.kind == "reassigned" and "category enquiry -> foi" in e.detail for e in case.events
    )
    letters = to_residents(smtp)
    assert len(letters) == 2
    assert "Freedom of Information Act 2000" in letters[1].text()
    assert "Wednesday 2 December 2026" in letters[1].text()
    assert any(str(m.message["Subject"]).strip().startswith("New case") for m in smtp.to(SAM))


def test_clarify_stops_the_clock_and_the_reply_restarts_foi_from_day_one(app, dovecot, smtp):
    step(
        app,
        dovecot,
        resident_mail(
            subject="FOI request",
            message_id="<f1@example.com>",
            body="Under the Freedom of Information Act 2000 please provide the council's spending "
            "on consultants in each of the last three years.",
        ),
        0,
    )
    ref = "FOI-2026-00001"
    command(app, dovecot, ref, "#clarify Which three years do you mean?", 10, sender=SAM)
    case = the_case(app, ref)
    assert case.clock_stopped
    question = to_residents(smtp)[-1]
    assert "Which three years do you mean?" in question.text()
    assert question.message["In-Reply-To"] == "<f1@example.com>"
    assert "#clarify" not in question.text()  # command lines never reach residents

    # The resident answers on Monday 9 November: day 1 is Tue 10 Nov and, with St Andrew's
    # Day (30 Nov) not counted, day 20 is Tue 8 Dec 2026.
    answer = resident_mail(
        subject=f"Re: FOI request [Ref: {ref}]",
        message_id="<f2@x>",
        body="The financial years 2023-24, 2024-25 and 2025-26.",
    )
    dovecot.append(answer, when=datetime(2026, 11, 9, 11, 0, tzinfo=UTC))
    app.clock.instant = datetime(2026, 11, 9, 11, 5, tzinfo=UTC)
    run_once(app)
    case = the_case(app, ref)
    assert not case.clock_stopped
    assert case.respond_by == date(2026, 12, 8)
    kinds = [e.kind for e in case.events]
    assert kinds.index("clock-stopped") < kinds.index("clock-restarted")


def test_extend_and_holding_on_a_complaint(app, dovecot, smtp):
    step(app, dovecot, resident_mail(subject="bins", message_id="<c1@x>", body=COMPLAINT), 0)
    ref = "COM-2026-00001"
    # Stage 1 (10 working days, extension up to 10): due Tue 17 Nov 2026.
    assert the_case(app, ref).respond_by == date(2026, 11, 17)
    command(app, dovecot, ref, "#extend 5", 10, sender=JORDAN)
    assert the_case(app, ref).respond_by == date(2026, 11, 24)
    command(app, dovecot, ref, "#extend 6", 20, sender=JORDAN)  # 11 > 10: refused
    assert the_case(app, ref).respond_by == date(2026, 11, 24)
    assert any("NOT DONE: #extend 6" in m.text() for m in smtp.to(JORDAN))

    command(
        app,
        dovecot,
        ref,
        "#holding 2026-12-04 we are waiting for the contractor's report",
        30,
        sender=JORDAN,
    )
    holding = to_residents(smtp)[-1]
    assert "we are waiting for the contractor's report" in holding.text()
    assert "Friday 4 December 2026" in holding.text()
    assert holding.message["In-Reply-To"] == "<c1@x>"
    assert the_case(app, ref).holding_until == date(2026, 12, 4)


def test_a_stafford_complaint_through_every_stage(app, dovecot, smtp, capsys):
    step(app, dovecot, resident_mail(subject="bins", message_id="<c1@x>", body=COMPLAINT), 0)
    ref = "COM-2026-00001"
    case = the_case(app, ref)
    assert (case.stage, case.officer_email) == (1, JORDAN)
    command(app, dovecot, ref, "#outcome not-upheld\n#responded", 60, sender=JORDAN)

    # The resident is not satisfied: stage 2, the Head of Service, 20 working days.
    app.clock.instant = datetime(2026, 11, 5, 10, 0, tzinfo=UTC)
    unhappy = resident_mail(
        subject=f"Re: bins [Ref: {ref}]",
        message_id="<c2@x>",
        body="I am not satisfied with your response and I want my complaint reviewed.",
    )
    dovecot.append(unhappy, when=datetime(2026, 11, 5, 9, 55, tzinfo=UTC))
    run_once(app)
    case = the_case(app, ref)
    assert (case.stage, case.status) == (2, "open")
    # Fri 6 Nov is day 1; 20 working days end on Thu 3 Dec 2026.
    assert case.respond_by == date(2026, 12, 3)
    stage2 = to_residents(smtp)[-1].text()
    assert "Stage 2" in stage2 and "Head of Service" in stage2
    assert "Thursday 3 December 2026" in stage2

    # Still unhappy: the officer escalates to stage 3, the Chief Executive, 15 days.
    app.clock.instant = datetime(2026, 11, 6, 10, 0, tzinfo=UTC)
    dovecot.append(
        staff_mail(JORDAN, f"Re: [Ref: {ref}]", "#escalate"),
        when=datetime(2026, 11, 6, 9, 55, tzinfo=UTC),
    )
    run_once(app)
    case = the_case(app, ref)
    assert (case.stage, case.officer_email) == (3, CHRIS)
    assert case.respond_by == date(2026, 11, 27)  # Mon 9 Nov is day 1
    stage3 = to_residents(smtp)[-1].text()
    assert "Chief Executive" in stage3
    assert "Local Government and Social Care Ombudsman" in stage3

    # No stage after the Chief Executive: the officer is told, nothing changes.
    app.clock.instant = datetime(2026, 11, 6, 11, 0, tzinfo=UTC)
    dovecot.append(
        staff_mail(CHRIS, f"Re: [Ref: {ref}]", "#escalate"),
        when=datetime(2026, 11, 6, 10, 55, tzinfo=UTC),
    )
    run_once(app)
    assert the_case(app, ref).stage == 3
    assert any("NOT DONE: #escalate\n  this is the final stage" in m.text() for m in smtp.to(CHRIS))

    assert main(["--config", str(app.config_path), "case", ref, "--json"]) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    changes = [e["detail"] for e in events if e["kind"] == "stage-changed"]
    assert changes[0].startswith("stage 1 -> 2; acknowledge by 2026-11-12; respond by 2026-12-03")
    assert changes[1].startswith("stage 2 -> 3;")
    assert any(e["kind"] == "note" and e["detail"].startswith("outcome not-upheld") for e in events)
    for letter in to_residents(smtp):
        assert "#" not in letter.text()
