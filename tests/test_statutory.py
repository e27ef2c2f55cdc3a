"""Issue 21: the statutory processes after the first clock, as officers and residents meet
them by mail (real Dovecot and aiosmtpd, SQLite and PostgreSQL).

Every date is counted by hand in the comments; T0 is Tuesday 3 November 2026.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from mailbot.daemon import run_once
from mailbot.store import Case
from tests.conftest import COUNCIL, resident_mail, to_residents
from tests.test_officers import JORDAN, SAM, T0, command, make_app, step, the_case

pytestmark = pytest.mark.integration

AUTHSERV = "mx.council.example.gov.uk"
WDTK = "request-812345-4f1e9c2a@whatdotheyknow.com"
FOI_TEXT = (
    "Under the Freedom of Information Act 2000 please provide the council's spending on "
    "consultants in each of the last three financial years."
)


@pytest.fixture
def app(tmp_path, dovecot, smtp, database_url, clock):
    commands = f'[commands]\ntrust = "authserv"\nauthserv_id = "{AUTHSERV}"'
    application = make_app(tmp_path, dovecot, smtp, database_url, clock, commands)
    yield application
    application.engine.dispose()


def at(app, dovecot, raw: bytes, when: datetime) -> None:
    """Deliver `raw` at `when` and run one cycle five minutes later."""
    dovecot.append(raw, when=when)
    app.clock.instant = when + timedelta(minutes=5)
    run_once(app)


def wdtk_mail(body: str, subject: str, message_id: str) -> bytes:
    """Mail as WhatDoTheyKnow sends it: its per-request address, no In-Reply-To."""
    msg = EmailMessage()
    msg["From"] = f"Jane Doe <{WDTK}>"
    msg["To"] = COUNCIL
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    msg.set_content(body)
    return msg.as_bytes().replace(b"\n", b"\r\n")


def minutes_to(when: datetime) -> int:
    """`when` as minutes after T0, for step() and command()."""
    return int((when - T0).total_seconds() // 60)


def letters_to(smtp, address: str) -> list[str]:
    return [m.text() for m in to_residents(smtp) if m.rcpt_tos == [address]]


def history(case: Case) -> list[tuple[str, str]]:
    return [(e.kind, e.detail) for e in case.events]


def test_an_internal_review_asked_for_on_whatdotheyknow_moves_the_case(app, dovecot, smtp):
    request = wdtk_mail(
        FOI_TEXT, "Freedom of Information request - Consultants", "<wdtk-1@whatdotheyknow.com>"
    )
    step(app, dovecot, request, 0)
    ref = "FOI-2026-00001"
    assert the_case(app, ref).respond_by == date(2026, 12, 2)
    # The officer answers, refusing under the commercial interests exemption.
    command(app, dovecot, ref, "#outcome refused s43(2)", 60, sender=SAM)
    case = the_case(app, ref)
    assert (case.status, case.outcome) == ("responded", "refused")
    assert ("note", f"outcome refused (stage 1) by {SAM}; exemptions: s.43(2)") in history(case)

    # WhatDoTheyKnow's standard wording, from the same address: no reference, no
    # In-Reply-To, a new subject. Fri 20 Nov 2026 10:00.
    review = wdtk_mail(
        "Dear Stafford Borough Council,\n\nPlease pass this on to the person who conducts "
        "Freedom of Information reviews.\n\nI am writing to request an internal review of "
        "Stafford Borough Council's handling of my FOI request 'Consultants'.\n\nYours "
        "faithfully,\nJane Doe",
        "Internal review of Freedom of Information request - Consultants",
        "<wdtk-2@whatdotheyknow.com>",
    )
    at(app, dovecot, review, datetime(2026, 11, 20, 10, 0, tzinfo=UTC))
    case = the_case(app, ref)
    with app.sessions() as s:
        assert s.scalar(select(Case.ref).where(Case.ref == "FOI-2026-00002")) is None
    # Stage 2, the review: Stafford's Head of Service (Jordan Reid). 20 FOI working days
    # from Fri 20 Nov: 23-27 (5), (St Andrew's Day 30 Nov) 1-4 Dec (9), 7-11 (14), 14-18
    # (19), Mon 21 Dec (20).
    assert (case.stage, case.status, case.officer_email) == (2, "open", JORDAN)
    assert case.respond_by == date(2026, 12, 21)
    assert case.outcome is None
    [change] = [d for k, d in history(case) if k == "stage-changed"]
    assert change.startswith("stage 1 -> 2; acknowledge by 2026-11-27; respond by 2026-12-21;")
    assert "stage 1 was due 2026-12-02; the resident asked for an internal review" in change
    # Its own acknowledgement, to the per-request address, with the review's own date.
    ack, review_ack = letters_to(smtp, WDTK)
    assert "Freedom of Information Act 2000" in ack
    assert "internal review on Friday 20 November 2026" in review_ack
    assert "outcome by Monday 21 December 2026" in review_ack
    assert "#" not in review_ack
    # Its own reminders and breach: the review's reminder goes to the reviewer.
    app.clock.instant = datetime(2026, 12, 14, 10, 0, tzinfo=UTC)  # 5 working days before
    run_once(app)
    assert any(
        "Reminder" in m.message["Subject"] and ref in m.message["Subject"] for m in smtp.to(JORDAN)
    )
    app.clock.instant = datetime(2026, 12, 22, 10, 0, tzinfo=UTC)
    run_once(app)
    assert the_case(app, ref).breached_at is not None


def test_a_review_asked_for_before_any_response_moves_nothing(app, dovecot, smtp):
    step(app, dovecot, resident_mail(subject="FOI request", message_id="<f1@x>", body=FOI_TEXT), 0)
    ref = "FOI-2026-00001"
    early = resident_mail(
        subject=f"Re: FOI request [Ref: {ref}]",
        message_id="<f2@x>",
        body="If I do not hear soon I will ask for an internal review.",
    )
    step(app, dovecot, early, 30)
    case = the_case(app, ref)
    assert (case.stage, case.respond_by) == (1, date(2026, 12, 2))
    assert ("note", "an internal review asked for before the response was sent") in history(case)
    assert len(letters_to(smtp, "jane.doe@example.com")) == 1  # the acknowledgement only


def test_eir_reconsideration_has_forty_working_days(app, dovecot, smtp):
    body = (
        "Please provide the air quality monitoring results for Mill Lane for 2025 under the "
        "Environmental Information Regulations."
    )
    step(app, dovecot, resident_mail(subject="Air quality", message_id="<e1@x>", body=body), 0)
    ref = "EIR-2026-00001"
    command(app, dovecot, ref, "#outcome not-held", 60, sender=SAM)
    assert the_case(app, ref).status == "responded"
    again = resident_mail(
        subject=f"Re: Air quality [Ref: {ref}]",
        message_id="<e2@x>",
        body="I do not accept that you hold nothing. Please reconsider.",
    )
    at(app, dovecot, again, datetime(2026, 11, 20, 10, 0, tzinfo=UTC))
    case = the_case(app, ref)
    # EIR reg 11(4): 40 working days from Fri 20 Nov: 23-27 (5), 1-4 Dec (9), 7-11 (14),
    # 14-18 (19), 21-24 (23), (25, 28) 29-31 (26), (1, 4 Jan) 5-8 (30), 11-15 (35), 18-22
    # (40): Fri 22 Jan 2027.
    assert (case.stage, case.respond_by) == (2, date(2027, 1, 22))
    assert "decision by Friday 22 January 2027" in letters_to(smtp, "jane.doe@example.com")[-1]
    # An EIR reconsideration has no extension (reg 11(4)).
    command(app, dovecot, ref, "#extend 5", 60 * 24 * 17 + 30, sender=JORDAN)
    assert the_case(app, ref).respond_by == date(2027, 1, 22)
    assert any(
        "NOT DONE: #extend 5\n  the policy allows no extension for eir cases at stage 2" in m.text()
        for m in smtp.to(JORDAN)
    )


def test_foi_public_interest_extension_is_notified_and_refused_when_late(app, dovecot, smtp):
    step(app, dovecot, resident_mail(subject="FOI request", message_id="<f1@x>", body=FOI_TEXT), 0)
    ref = "FOI-2026-00001"
    command(app, dovecot, ref, "#extend 25", 10, sender=SAM)  # over the 20 allowed
    assert the_case(app, ref).respond_by == date(2026, 12, 2)
    command(
        app, dovecot, ref, "#extend 10 We are weighing the public interest in s.43(2).", 20,
        sender=SAM,
    )  # fmt: skip
    case = the_case(app, ref)
    # 10 FOI working days after Wed 2 Dec: 3, 4 (2), 7-11 (7), 14-16 (10): Wed 16 Dec.
    assert (case.respond_by, case.extended_days) == (date(2026, 12, 16), 10)
    [detail] = [d for k, d in history(case) if k == "extended"]
    assert detail.startswith(f"2026-12-02 -> 2026-12-16 by {SAM}; reason: We are weighing")
    notice = letters_to(smtp, "jane.doe@example.com")[-1]
    assert "by Wednesday 16 December 2026, instead of Wednesday 2 December 2026" in notice
    assert "section 10(3)" in notice and "s.43(2)" in notice
    texts = [m.text() for m in smtp.to(SAM)]
    assert any("NOT DONE: #extend 25\n  at most 20 working days in all" in t for t in texts)

    # Thu 17 Dec, after the extended date: a further extension is out of time.
    sent = len(letters_to(smtp, "jane.doe@example.com"))
    app.clock.instant = datetime(2026, 12, 17, 9, 0, tzinfo=UTC)
    late = datetime(2026, 12, 17, 9, 0, tzinfo=UTC) - T0
    command(
        app, dovecot, ref, "#extend 5 still weighing", int(late.total_seconds() // 60), sender=SAM
    )
    assert the_case(app, ref).respond_by == date(2026, 12, 16)
    assert len(letters_to(smtp, "jane.doe@example.com")) == sent  # no notice
    assert any(
        "NOT DONE: #extend 5 still weighing\n  too late: an extension had to be notified by"
        " 2026-12-16" in m.text()
        for m in smtp.to(SAM)
    )


def test_sar_identity_check_and_extension_with_reasons(app, dovecot, smtp):
    body = (
        "Under the Data Protection Act please send me a copy of the personal data you hold on me."
    )
    step(app, dovecot, resident_mail(subject="SAR", message_id="<s1@x>", body=body), 0)
    ref = "SAR-2026-00001"
    assert the_case(app, ref).respond_by == date(2026, 12, 3)  # one month from Tue 3 Nov
    command(
        app, dovecot, ref, "#identity a copy of your passport or driving licence", 10, sender=SAM
    )
    case = the_case(app, ref)
    assert (case.clock_stopped, case.clock_stop) == (True, "identity")
    asked = letters_to(smtp, "jane.doe@example.com")[-1]
    assert "a copy of your passport or driving licence" in asked
    assert "#" not in asked
    # The proof arrives Tue 10 Nov: the month starts again (art. 12A): Thu 10 Dec.
    proof = resident_mail(subject=f"Re: SAR [Ref: {ref}]", message_id="<s2@x>", body="Attached.")
    at(app, dovecot, proof, datetime(2026, 11, 10, 11, 0, tzinfo=UTC))
    case = the_case(app, ref)
    assert (case.clock_stopped, case.clock_stop, case.respond_by) == (
        False, None, date(2026, 12, 10))  # fmt: skip
    assert any(
        k == "clock-restarted" and "art. 12A(2)" in d and "respond by 2026-12-10" in d
        for k, d in history(case)
    )
    # An extension without its reasons is refused (art. 12(3)); with them, the notice goes.
    minutes = minutes_to(datetime(2026, 11, 11, 10, 0, tzinfo=UTC))
    command(app, dovecot, ref, "#extend 2", minutes, sender=SAM)
    assert the_case(app, ref).respond_by == date(2026, 12, 10)
    assert any("NOT DONE: #extend 2\n  say why" in m.text() for m in smtp.to(SAM))
    command(
        app, dovecot, ref, "#extend 1 Your records are held in three archives.", minutes + 10,
        sender=SAM,
    )  # fmt: skip
    # One further month from the new start (10 Nov): 10 Jan 2027 is a Sunday: Mon 11 Jan.
    assert the_case(app, ref).respond_by == date(2027, 1, 11)
    notice = letters_to(smtp, "jane.doe@example.com")[-1]
    assert "Your records are held in three archives." in notice
    assert "by Monday 11 January 2027, instead of Thursday 10 December 2026" in notice


def test_foi_fees_notice_waits_for_payment_then_lapses(app, dovecot, smtp):
    step(app, dovecot, resident_mail(subject="FOI request", message_id="<f1@x>", body=FOI_TEXT), 0)
    other = resident_mail(
        sender="amir.khan@example.net", subject="FOI two", message_id="<f2@x>", body=FOI_TEXT
    )
    step(app, dovecot, other, 1)
    paid, unpaid = "FOI-2026-00001", "FOI-2026-00002"
    command(app, dovecot, paid, "#fees £25", 10, sender=SAM)
    command(app, dovecot, unpaid, "#fees 40.00", 12, sender=SAM)
    case = the_case(app, paid)
    assert (case.clock_stopped, case.clock_stop) == (True, "fees")
    notice = letters_to(smtp, "jane.doe@example.com")[-1]
    assert "a fee of £25.00" in notice
    # Three months beginning with Tue 3 Nov end on Tue 2 Feb 2027.
    assert "by Tuesday 2 February 2027" in notice
    # The resident's reply does not restart a fees clock; #paid does.
    reply = resident_mail(subject=f"Re: FOI request [Ref: {paid}]", message_id="<f3@x>", body="OK.")
    step(app, dovecot, reply, 20)
    assert the_case(app, paid).clock_stopped
    # Paid Thu 12 Nov: 3-6 and 9-12 Nov, 8 working days, disregarded (FOIA s.10(2)):
    # Wed 2 Dec + 8: 3, 4, 7-11, Mon 14 Dec.
    # Recorded the next morning, Fri 13 Nov, with the day it arrived.
    friday = minutes_to(datetime(2026, 11, 13, 9, 0, tzinfo=UTC))
    command(app, dovecot, paid, "#paid 2026-11-14", friday, sender=SAM)  # not yet
    assert the_case(app, paid).clock_stopped
    command(app, dovecot, paid, "#paid 2026-11-12", friday + 1, sender=SAM)
    case = the_case(app, paid)
    assert (case.clock_stopped, case.respond_by) == (False, date(2026, 12, 14))

    # The other is never paid: on Wed 3 Feb 2027 it lapses and its officer is told.
    app.clock.instant = datetime(2027, 2, 2, 10, 0, tzinfo=UTC)
    run_once(app)
    assert the_case(app, unpaid).status == "open"
    app.clock.instant = datetime(2027, 2, 3, 10, 0, tzinfo=UTC)
    run_once(app)
    case = the_case(app, unpaid)
    assert case.status == "closed"
    assert (
        "closed",
        "fee not paid by 2027-02-02: the request lapsed (FOIA s.9(2))",
    ) in history(case)
    assert any("Fee not paid, request lapsed" in m.message["Subject"] for m in smtp.to(SAM))
    assert the_case(app, paid).status == "open"


def test_outcome_of_a_withholding_response_must_cite_exemptions(app, dovecot, smtp):
    step(app, dovecot, resident_mail(subject="FOI request", message_id="<f1@x>", body=FOI_TEXT), 0)
    ref = "FOI-2026-00001"
    command(app, dovecot, ref, "#outcome partly-granted", 10, sender=SAM)
    command(app, dovecot, ref, "#outcome upheld", 11, sender=SAM)
    case = the_case(app, ref)
    assert (case.status, case.outcome) == ("open", None)
    texts = "\n".join(m.text() for m in smtp.to(SAM))
    assert "NOT DONE: #outcome partly-granted\n  cite the exemptions relied on" in texts
    assert (
        "NOT DONE: #outcome upheld\n  give one of: granted, partly-granted, refused, not-held"
        in texts
    )
    command(app, dovecot, ref, "#outcome partly-granted section 40(2), s.21", 12, sender=SAM)
    case = the_case(app, ref)
    assert (case.status, case.outcome) == ("responded", "partly-granted")
    assert (
        "note",
        f"outcome partly-granted (stage 1) by {SAM}; exemptions: s.40(2), s.21",
    ) in history(case)
