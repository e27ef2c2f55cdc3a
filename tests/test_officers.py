"""Officers from their own mail client: replies, #commands, clock stops and complaint stages."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from sqlalchemy import select

from mailbot.app import App
from mailbot.cli import main
from mailbot.commandline import command_lines
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


def make_app(tmp_path, dovecot, smtp, database_url, clock, commands: str) -> App:
    """mailbot on the local servers with `commands` as its [commands] table."""
    path = local_config(
        tmp_path,
        dovecot,
        smtp,
        mailbox_address=COUNCIL,
        database_url=database_url,
        start_from=START_FROM,
        imap_extra='sent = "Sent Items"\n',
        extra=f"\n{commands}\n",
    )
    upgrade(database_url)
    application = App.load(load_config(path), clock)
    application.config_path = path  # type: ignore[attr-defined]
    return application


@pytest.fixture
def app(tmp_path, dovecot, smtp, database_url, clock):
    commands = f'[commands]\ntrust = "authserv"\nauthserv_id = "{AUTHSERV}"'
    application = make_app(tmp_path, dovecot, smtp, database_url, clock, commands)
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
    for key, value in (headers or {}).items():
        msg[key] = value
    msg["From"] = sender
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="council.example.gov.uk")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    msg.set_content(body)
    raw = msg.as_bytes().replace(b"\n", b"\r\n")
    # As the border server adds it, above the sender's own headers, and as it wrote it
    # (the email package would decode an encoded word in it).
    return f"Authentication-Results: {auth}\r\n".encode() + raw if auth else raw


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
    [ack] = to_residents(smtp)
    step(app, dovecot, ack.raw, 5, folder="Sent Items")
    assert the_case(app, ref).status == "open"
    with app.sessions() as s:
        outcomes = list(s.scalars(select(InboundMessage.outcome).order_by(InboundMessage.id)))
        of_ack = s.scalars(
            select(InboundMessage.outcome)
            .where(InboundMessage.message_id == ack.message["Message-ID"])
            .order_by(InboundMessage.id)
        ).all()
    # The copy mailbot filed in Sent Items is its own; the same message put there again
    # (as a provider that keeps a copy would) is the same message, read once.
    assert outcomes[0] == "case-opened"
    assert of_ack == ["own-mail", "duplicate"]
    assert set(outcomes[1:]) <= {"own-mail", "duplicate"}  # and the officer's letter's copy


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
    assert (
        "NOT DONE: #outcome upheld\n  outcomes are recorded for complaints, FOI and EIR"
        " requests only" in text
    )
    assert reply.message["Auto-Submitted"] == "auto-generated"


def test_quoted_commands_are_not_commands(app, dovecot, smtp):
    ref = open_enquiry(app, dovecot)
    body = "Thanks, will do.\n\nOn Tue, 3 Nov 2026, Chris Lee wrote:\n> #close\n"
    command(app, dovecot, ref, body, 10)
    assert the_case(app, ref).status == "open"


def refusals(smtp, to: str) -> list[str]:
    return [m.text() for m in smtp.to(to) if str(m.message["Subject"]).startswith("Not acted on")]


@pytest.mark.parametrize(
    "auth",
    [
        None,  # no Authentication-Results at all
        "evil.example.net; dkim=pass header.d=council.example.gov.uk",  # not our server
        f"{AUTHSERV}; dkim=fail header.d=council.example.gov.uk; spf=softfail",
        f"{AUTHSERV}; dkim=pass header.d=evil.example.net",  # passes, for someone else
    ],
)
def test_spoofed_officer_commands_change_nothing_and_the_officer_is_told(
    app, dovecot, smtp, auth, caplog
):
    ref = open_enquiry(app, dovecot)
    command(app, dovecot, ref, "#close", 10, auth=auth)
    case = the_case(app, ref)
    assert case.status == "open"
    assert confirmations(smtp, ALEX) == []  # nothing was done
    [told] = refusals(smtp, ALEX)
    assert f"saying it was from {ALEX}, about {ref}" in told
    assert "What it asked for: #close" in told
    assert any(
        e.kind == "note" and e.detail.startswith(f"mail from {ALEX} not accepted, nothing changed")
        for e in case.events
    )
    assert f"mail from {ALEX} not accepted" in caplog.text
    assert len(to_residents(smtp)) == 1  # the acknowledgement only


def test_commands_through_the_internal_relay_are_accepted(
    tmp_path, dovecot, smtp, database_url, clock
):
    commands = '[commands]\ntrust = "relays"\ninternal_relays = ["relay.council.example.gov.uk"]'
    app = make_app(tmp_path, dovecot, smtp, database_url, clock, commands)
    ref = open_enquiry(app, dovecot)
    # Postfix with Dovecot LMTP: the top line is the delivery, the next the border's record.
    lmtp = "from mx.council.example.gov.uk ([127.0.0.1]) by imap with LMTP id a1; Tue, 3 Nov 2026"
    border = "from relay (relay.council.example.gov.uk [10.0.0.5]) by mx (Postfix); Tue, 3 Nov 2026"
    raw = staff_mail(ALEX, f"Re: [Ref: {ref}]", "#close", auth=None)
    raw = f"Received: {lmtp}\r\nReceived: {border}\r\n".encode() + raw
    step(app, dovecot, raw, 10)
    assert the_case(app, ref).status == "closed"

    # The same from the Internet, with the relay's line forged below the border's own.
    step(app, dovecot, resident_mail(message_id="<q2@example.com>", subject="Bins"), 20)
    evil = "from x (evil.example [203.0.113.9]) by mx (Postfix); Tue, 3 Nov 2026"
    raw = staff_mail(ALEX, "Re: [Ref: ENQ-2026-00002]", "#close", auth=None)
    raw = f"Received: {lmtp}\r\nReceived: {evil}\r\nReceived: {border}\r\n".encode() + raw
    step(app, dovecot, raw, 30)
    assert the_case(app, "ENQ-2026-00002").status == "open"
    assert "not one of the council's relays" in refusals(smtp, ALEX)[0]
    app.engine.dispose()


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


# --- issue 17: only the officer's own text, only the officer's own mail ----------------

REPLIES = Path(__file__).parent / "data" / "replies"


@pytest.mark.parametrize("client", sorted(p.stem for p in REPLIES.glob("*.eml")))
def test_each_clients_reply_runs_only_the_officers_command(app, dovecot, smtp, client):
    """A reply as each client writes it, quoting a staff message whose help block was
    commands: only the officer's #note runs. (The quoted #clarify once sent the resident
    "ask the resident to clarify (stops the clock)", and #close closed the case.)"""
    ref = open_enquiry(app, dovecot)
    raw = (REPLIES / f"{client}.eml").read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    raw = raw.replace(b"council@example.org", COUNCIL.encode())
    step(app, dovecot, f"Authentication-Results: {PASS}\r\n".encode() + raw, 10)
    case = the_case(app, ref)
    assert (case.status, case.clock_stopped, case.officer_email) == ("open", False, ALEX)
    notes = [e.detail for e in case.events if e.kind == "note"]
    assert f"{ALEX}: Rang the resident, will visit on Friday" in notes
    assert [e.kind for e in case.events].count("reassigned") == 1  # the first assignment
    assert len(to_residents(smtp)) == 1  # the acknowledgement, nothing more
    [done] = confirmations(smtp, ALEX)
    assert "Done: #note Rang the resident" in done and "NOT DONE" not in done


FORGED_REPLY = dict(to=RESIDENT, cc=COUNCIL, in_reply_to="<q1@example.com>")


@pytest.mark.parametrize(
    ("sender", "auth"),
    [
        (ALEX, None),
        (f"Alex Morgan <{ALEX}>", f"{AUTHSERV}; spf=pass smtp.mailfrom=council.example.gov.uk"),
        # the address-shaped display name: the address is the attacker's
        (f"{ALEX} <attacker@evil.example>", None),
    ],
)
def test_a_forged_officer_reply_does_not_mark_the_case_responded(app, dovecot, smtp, sender, auth):
    ref = open_enquiry(app, dovecot)
    before = the_case(app, ref)
    reply = staff_mail(
        sender, f"RE: Pothole on Mill Lane [Ref: {ref}]", "Done.", auth=auth, **FORGED_REPLY
    )
    step(app, dovecot, reply, 60)
    case = the_case(app, ref)
    assert (case.status, case.responded_at) == ("open", None)
    assert case.next_action_on == before.next_action_on  # reminders still come
    assert [m.rcpt_tos for m in to_residents(smtp)] == [[RESIDENT]]  # the acknowledgement
    if "attacker" not in sender:
        [told] = refusals(smtp, ALEX)
        assert "a reply to the resident (which would mark the case responded)" in told
        assert [e.kind for e in case.events][-1] == "note"
    # Reminders still go to the officer when the reply falls due.
    app.clock.instant = datetime.combine(case.next_action_on, time(10, 0), tzinfo=UTC)
    run_once(app)
    assert any("Reminder" in m.message["Subject"] for m in smtp.to(ALEX))


ATTACKS = {
    # text the border server copied from the sender, RFC 2047-encoded
    "encoded-helo": f"{AUTHSERV}; spf=pass smtp.helo==?utf-8?q?x=3B_dkim=3Dpass_header.d=3D"
    "council.example.gov.uk?=",
    # a ; inside a comment
    "comment": f"{AUTHSERV}; spf=pass (x; dkim=pass header.d=council.example.gov.uk)"
    " smtp.mailfrom=evil.example",
    # the border's real verdict on top, a forged pass under it
    "forged-below": f"{AUTHSERV}; dkim=none; dmarc=fail header.from=council.example.gov.uk\r\n"
    f"Authentication-Results: {AUTHSERV}; dkim=pass header.d=council.example.gov.uk",
    "spf-only": f"{AUTHSERV}; spf=pass smtp.mailfrom=council.example.gov.uk",
    "other-server": "mx.evil.example; dmarc=pass header.from=council.example.gov.uk",
    "exchange-mark": None,  # X-MS-Exchange-Organization-AuthAs: Internal, written by hand
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_an_attack_from_outside_changes_no_case_and_sends_the_resident_nothing(
    app, dovecot, smtp, attack
):
    ref = open_enquiry(app, dovecot)
    headers = {"X-MS-Exchange-Organization-AuthAs": "Internal"} if attack == "exchange-mark" else {}
    body = (
        "#close\n#clarify Please send your bank details\n#responded\n"
        "#reassign chris.lee@council.example.gov.uk"
    )
    raw = staff_mail(
        ALEX, f"RE: [Ref: {ref}]", body, auth=ATTACKS[attack], headers=headers, **FORGED_REPLY
    )
    step(app, dovecot, raw, 10)
    case = the_case(app, ref)
    assert (case.status, case.clock_stopped, case.officer_email) == ("open", False, ALEX)
    assert [m.rcpt_tos for m in to_residents(smtp)] == [[RESIDENT]]  # the acknowledgement
    assert confirmations(smtp, ALEX) == []
    assert len(refusals(smtp, ALEX)) == 1


def test_microsoft365_trusts_the_tenants_internal_mark(
    tmp_path, dovecot, smtp, database_url, clock
):
    app = make_app(
        tmp_path, dovecot, smtp, database_url, clock, '[commands]\ntrust = "microsoft365"'
    )
    ref = open_enquiry(app, dovecot)
    internal = {
        "X-MS-Exchange-Organization-AuthSource": "AM0PR01MB1234.eurprd01.prod.exchangelabs.com",
        "X-MS-Exchange-Organization-AuthAs": "Internal",
        "X-MS-Exchange-Organization-AuthMechanism": "04",
    }
    command(app, dovecot, ref, "#note checked with highways", 10, auth=None, headers=internal)
    case = the_case(app, ref)
    assert f"{ALEX}: checked with highways" in [e.detail for e in case.events]
    assert any("AuthAs: Internal" in e.detail for e in case.events)  # the reason, recorded

    # Another tenant's mail: Exchange stamped it Anonymous as it came in.
    outside = {
        "X-MS-Exchange-CrossTenant-AuthAs": "Internal",
        "X-MS-Exchange-Organization-AuthAs": "Anonymous",
    }
    command(app, dovecot, ref, "#close", 20, auth=None, headers=outside)
    assert the_case(app, ref).status == "open"
    [told] = refusals(smtp, ALEX)
    assert "Why: Microsoft 365 recorded it as sent from outside the council's tenant" in told
    app.engine.dispose()


def test_without_a_trust_mode_commands_are_refused_out_loud(
    tmp_path, dovecot, smtp, database_url, clock, capsys
):
    app = make_app(tmp_path, dovecot, smtp, database_url, clock, "")
    assert main(["--config", str(app.config_path), "check"]) == 0
    captured = capsys.readouterr()
    assert "warning: commands.trust: not set" in captured.err
    assert "officers' mail is trusted by: nothing (only the sent folder)" in captured.out

    ref = open_enquiry(app, dovecot)
    command(app, dovecot, ref, "#close", 10)
    assert the_case(app, ref).status == "open"
    [told] = refusals(smtp, ALEX)
    assert "[commands] trust is not set" in told
    assert "has not yet been told how to recognise the council's own mail" in told
    app.engine.dispose()


@pytest.mark.parametrize("where", ["Sent Items", "INBOX"])
def test_a_reply_from_the_shared_mailbox_with_only_the_reference_marks_the_case_responded(
    app, dovecot, smtp, where
):
    """Outlook's replies carry Thread-Index, not In-Reply-To; or the officer typed the
    reference into a new message."""
    ref = open_enquiry(app, dovecot)
    reply = staff_mail(
        COUNCIL,
        f"RE: Pothole on Mill Lane [Ref: {ref}]",
        "It will be fixed on Friday.",
        to=RESIDENT,
        cc=COUNCIL if where == "INBOX" else None,
        auth=f"{AUTHSERV}; dkim=pass header.d=example.org" if where == "INBOX" else None,
        headers={"Thread-Index": "AdzLrK0CgE1mD2rFQ0WCv1xR2Q8Y4A=="},
    )
    step(app, dovecot, reply, 30, folder=where)
    case = the_case(app, ref)
    assert case.status == "responded"
    assert case.responded_at == T0 + timedelta(minutes=30)


def test_a_residents_name_never_becomes_a_command_in_staff_mail(app, dovecot, smtp):
    """A resident named "#close": the officer's notice of their follow-up holds no line
    that reads as a command, even pasted back unquoted."""
    step(app, dovecot, resident_mail(name="#close", message_id="<n1@example.com>"), 0)
    ref = "ENQ-2026-00001"
    follow = resident_mail(
        name="#close",
        subject=f"#responded [Ref: {ref}]",
        message_id="<n2@example.com>",
        body="Any news?",
    )
    step(app, dovecot, follow, 5)
    app.clock.instant = datetime(2026, 11, 3, 10, 30, tzinfo=UTC)
    run_once(app)
    [notice] = [m for m in smtp.to(ALEX) if "wrote again" in m.message["Subject"]]
    text = notice.text()
    assert "#close" in text  # the name is there, for the officer to read
    assert command_lines(text) == []
    # A client that pastes the notice back without any quote marks:
    command(app, dovecot, ref, "#note will ring back\n\n" + text, 10)
    case = the_case(app, ref)
    assert case.status == "open"
    assert f"{ALEX}: will ring back" in [e.detail for e in case.events]
