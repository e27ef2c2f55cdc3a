"""Mail in, case recorded, acknowledgement out: real Dovecot, aiosmtpd and both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from mailbot.cli import main
from mailbot.daemon import run_once
from mailbot.mailbox import FetchedMessage
from mailbot.outbox.sending import SendingPaused
from mailbot.pipeline import DECIDED_BEFORE_A_TURN, process_batch
from mailbot.reasons import Reason
from mailbot.store import Case, FolderState, InboundMessage, NoTurn, OutboxMessage
from tests.conftest import COUNCIL, START_FROM, resident_mail, to_residents

pytestmark = pytest.mark.integration

ACK = "acknowledgement"
ARRIVED = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)  # Tuesday 3 November 2026
ALEX = "alex.morgan@council.example.gov.uk"  # customer-services: handles enquiries


def cases(app) -> list[Case]:
    with app.sessions() as s:
        return list(s.scalars(select(Case).order_by(Case.id)))


def inbound(app) -> list[InboundMessage]:
    """What was read from the inbox (mailbot's copies of what it sent are read back
    from the sent folder as its own, and left out here)."""
    inbox = InboundMessage.folder.endswith("/INBOX")
    with app.sessions() as s:
        return list(s.scalars(select(InboundMessage).where(inbox).order_by(InboundMessage.uid)))


def test_acknowledgement_headers_recipient_and_due_date(app, dovecot, smtp):
    raw = resident_mail(
        message_id="<first@example.com>",
        headers={"Reply-To": "jane.private@example.com", "References": "<older@example.com>"},
    )
    dovecot.append(raw, when=ARRIVED)

    assert run_once(app) == 1

    [case] = cases(app)
    assert case.ref == "ENQ-2026-00001"
    assert case.category == "enquiry"
    # Stafford: enquiries answered within 5 working days; day 1 is Wed 4 Nov -> Tue 10 Nov.
    assert case.respond_by.isoformat() == "2026-11-10"
    assert case.officer_email == "alex.morgan@council.example.gov.uk"
    assert case.acknowledged_at == app.clock.now()

    [sent] = to_residents(smtp)
    # Reply-To on the sender's own domain wins over From (SPEC §5; test_held_and_forms.py
    # has a Reply-To elsewhere, which does not).
    assert sent.rcpt_tos == ["jane.private@example.com"]
    assert sent.mail_from == COUNCIL
    msg = sent.message
    assert msg["From"] == f"Stafford Borough Council <{COUNCIL}>"
    assert msg["Reply-To"] == COUNCIL
    assert msg["Subject"] == "Re: Pothole on Mill Lane [Ref: ENQ-2026-00001]"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["X-Mailbot-Loop"] == COUNCIL
    assert msg["In-Reply-To"] == "<first@example.com>"
    assert msg["References"] == "<older@example.com> <first@example.com>"
    assert msg["Message-ID"].endswith("@example.org>")
    assert msg["Date"]
    assert [p.get_content_type() for p in msg.walk()] == [
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]
    text = sent.text()
    assert "Tuesday 10 November 2026" in text
    assert "Alex Morgan" in text and "01785 619001" in text
    assert "ENQ-2026-00001" in text


def test_historic_mail_is_never_acknowledged(app, dovecot, smtp):
    old = START_FROM - timedelta(days=30)
    with dovecot.client() as imap:
        for n in range(1000):
            imap.append("INBOX", resident_mail(message_id=f"<old{n}@example.com>"), msg_time=old)
    dovecot.append(resident_mail(message_id="<new@example.com>"), when=ARRIVED)

    run_once(app)

    assert len(cases(app)) == 1
    assert [m.rcpt_tos for m in to_residents(smtp)] == [["jane.doe@example.com"]]
    with app.sessions() as s:
        state = s.scalar(select(FolderState).where(FolderState.folder.endswith("/INBOX")))
        assert state.last_uid == 1001


def test_start_from_is_exact_to_the_second(app, dovecot, smtp):
    start = START_FROM
    dovecot.append(resident_mail(message_id="<before@x>"), when=start - timedelta(seconds=1))
    dovecot.append(resident_mail(message_id="<after@x>"), when=start + timedelta(seconds=1))

    run_once(app)

    assert [(m.message_id, m.outcome) for m in inbound(app)] == [
        ("<before@x>", "historic"),
        ("<after@x>", "case-opened"),
    ]
    assert len(to_residents(smtp)) == 1


def test_run_once_twice_sends_nothing_more(app, dovecot, smtp):
    dovecot.append(resident_mail(), when=ARRIVED)
    run_once(app)
    run_once(app)
    assert len(to_residents(smtp)) == 1
    assert len(inbound(app)) == 1


def test_mail_is_read_with_peek_and_flags_are_untouched(app, dovecot, smtp):
    uid = dovecot.append(resident_mail(), when=ARRIVED)
    run_once(app)
    with dovecot.client() as imap:
        imap.select_folder("INBOX")
        assert b"\\Seen" not in imap.get_flags([uid])[uid]  # still unread for staff


def test_follow_up_by_reference_joins_the_case(app, dovecot, smtp):
    dovecot.append(resident_mail(message_id="<one@x>"), when=ARRIVED)
    run_once(app)
    dovecot.append(
        resident_mail(subject="More detail [Ref: ENQ-2026-00001]", message_id="<two@x>"),
        when=ARRIVED + timedelta(hours=1),
    )
    run_once(app)

    assert len(cases(app)) == 1
    assert [m.outcome for m in inbound(app)] == ["case-opened", "follow-up"]
    # The resident gets no second automatic reply; the handling officer is told.
    assert len(to_residents(smtp)) == 1
    [told] = [
        m
        for m in smtp.to("alex.morgan@council.example.gov.uk")
        if "wrote again" in str(m.message["Subject"])
    ]
    assert "has written again about ENQ-2026-00001" in told.text()


def test_automatic_follow_up_is_attached_without_a_reply(app, dovecot, smtp):
    dovecot.append(resident_mail(message_id="<one@x>"), when=ARRIVED)
    run_once(app)
    dovecot.append(
        resident_mail(
            subject="Automatic reply: Re: Pothole [Ref: ENQ-2026-00001]",
            message_id="<ooo@x>",
            headers={"Auto-Submitted": "auto-replied"},
        ),
        when=ARRIVED + timedelta(hours=1),
    )
    run_once(app)
    assert len(to_residents(smtp)) == 1
    [_, follow] = inbound(app)
    assert (follow.outcome, follow.case_id is not None) == ("follow-up", True)
    assert follow.reasons[0].rule == "auto-submitted"


def test_follow_up_by_in_reply_to_our_acknowledgement_joins_the_case(app, dovecot, smtp):
    dovecot.append(resident_mail(message_id="<one@x>"), when=ARRIVED)
    run_once(app)
    ack_id = to_residents(smtp)[0].message["Message-ID"]
    dovecot.append(
        resident_mail(subject="thanks", message_id="<two@x>", headers={"In-Reply-To": ack_id}),
        when=ARRIVED + timedelta(hours=1),
    )
    run_once(app)

    assert len(cases(app)) == 1
    assert len(to_residents(smtp)) == 1


def test_reference_typed_by_a_stranger_joins_the_case_with_no_acknowledgement(app, dovecot, smtp):
    # Issue 18: a stranger naming a case (a forwarded reply, a helpdesk answering from a
    # new address, a lure with a reference in it) must not open a case and make the
    # council write to whomever the message names.
    dovecot.append(resident_mail(message_id="<one@x>"), when=ARRIVED)
    run_once(app)
    dovecot.append(
        resident_mail(
            sender="someone.else@example.net",
            subject="Re [Ref: ENQ-2026-00001] claim your refund at http://lure.example",
            message_id="<x@y>",
        ),
        when=ARRIVED + timedelta(hours=1),
    )
    run_once(app)
    assert [c.ref for c in cases(app)] == ["ENQ-2026-00001"]
    assert [m.rcpt_tos for m in to_residents(smtp)] == [["jane.doe@example.com"]]
    assert [m.outcome for m in inbound(app)] == ["case-opened", "follow-up"]


def test_duplicate_message_id_gets_no_second_acknowledgement(app, dovecot, smtp):
    dovecot.append(resident_mail(message_id="<same@x>"), when=ARRIVED)
    dovecot.append(resident_mail(message_id="<same@x>"), when=ARRIVED)
    run_once(app)
    assert len(to_residents(smtp)) == 1
    assert [m.outcome for m in inbound(app)] == ["case-opened", "duplicate"]


def test_uidvalidity_change_rereads_without_repeating(app, dovecot, smtp):
    dovecot.append(resident_mail(message_id="<a@x>"), when=ARRIVED)
    run_once(app)
    with app.sessions.begin() as s:  # as if the server had renumbered the folder
        s.execute(update(FolderState).values(uidvalidity=1))
    dovecot.append(resident_mail(message_id="<b@x>", sender="b@example.com"), when=ARRIVED)
    run_once(app)

    assert sorted(m.rcpt_tos[0] for m in to_residents(smtp)) == [
        "b@example.com",
        "jane.doe@example.com",
    ]


def test_automatic_mail_is_recorded_but_not_acknowledged(app, dovecot, smtp):
    dovecot.append(resident_mail(headers={"Auto-Submitted": "auto-replied"}), when=ARRIVED)
    dovecot.append(resident_mail(sender="noreply@example.com", message_id="<n@x>"), when=ARRIVED)
    run_once(app)

    assert to_residents(smtp) == []
    assert cases(app) == []
    reasons = [m.reasons[0] for m in inbound(app)]
    assert reasons[0].rule == "auto-submitted"
    assert reasons[1].rule == "machine-sender"


def test_per_sender_cap_stops_a_fourth_acknowledgement(app, dovecot, smtp):
    # Twenty minutes apart, past the follow-up window: each looks like a new matter.
    for n in range(5):
        dovecot.append(resident_mail(subject=f"Question {n}", message_id=f"<q{n}@x>"), when=ARRIVED)
        run_once(app)
        app.clock.instant += timedelta(minutes=20)

    assert len(to_residents(smtp)) == 3
    outcomes = [m.outcome for m in inbound(app)]
    assert outcomes == ["case-opened"] * 3 + ["suppressed"] * 2
    assert inbound(app)[3].reasons[0].rule == "sender-cap"


def test_a_second_message_soon_after_the_acknowledgement_joins_the_case(app, dovecot, smtp):
    # "Sorry, forgot the photo": a fresh message, not a reply, ten minutes after the first.
    dovecot.append(resident_mail(message_id="<one@x>"), when=ARRIVED)
    run_once(app)
    app.clock.instant += timedelta(minutes=10)
    dovecot.append(
        resident_mail(subject="Photo of the pothole", message_id="<two@x>"),
        when=ARRIVED + timedelta(minutes=10),
    )
    run_once(app)

    assert [c.ref for c in cases(app)] == ["ENQ-2026-00001"]
    first, second = inbound(app)
    assert (second.outcome, second.case_id) == ("follow-up", first.case_id)
    assert [m.rcpt_tos for m in to_residents(smtp)] == [["jane.doe@example.com"]]
    assert any("wrote again" in str(m.message["Subject"]) for m in smtp.to(ALEX))

    # Past the window (15 minutes by default) the same resident opens a new case.
    app.clock.instant += timedelta(minutes=16)
    dovecot.append(
        resident_mail(subject="Street light out", message_id="<three@x>"),
        when=ARRIVED + timedelta(minutes=26),
    )
    run_once(app)
    assert [c.ref for c in cases(app)] == ["ENQ-2026-00001", "ENQ-2026-00002"]
    assert len(to_residents(smtp)) == 2


def test_follow_up_window_off_opens_a_case_for_each_message(app, dovecot, smtp):
    app.cfg = app.cfg.model_copy(
        update={"screening": app.cfg.screening.model_copy(update={"follow_up_minutes": 0})}
    )
    for n in range(2):
        dovecot.append(resident_mail(subject=f"Question {n}", message_id=f"<q{n}@x>"), when=ARRIVED)
    run_once(app)
    assert [m.outcome for m in inbound(app)] == ["case-opened", "case-opened"]
    assert len(to_residents(smtp)) == 2


def test_huge_message_is_fetched_only_up_to_the_cap(app, dovecot, smtp):
    big = resident_mail(body="Please see attached.\n" + "A" * (2 * 1024 * 1024))
    dovecot.append(big, when=ARRIVED)
    app.cfg = app.cfg.model_copy(
        update={"imap": app.cfg.imap.model_copy(update={"max_message_mb": 1})}
    )
    run_once(app)

    [case] = cases(app)
    assert case.subject == "Pothole on Mill Lane"
    assert len(to_residents(smtp)) == 1


def test_broken_message_is_recorded_and_not_retried(app, dovecot, smtp, monkeypatch):
    import mailbot.intake.casework as casework

    def explode(*args, **kwargs):
        raise RuntimeError("classifier fell over")

    monkeypatch.setattr(casework, "classify", explode)
    dovecot.append(resident_mail(), when=ARRIVED)
    run_once(app)
    monkeypatch.undo()
    run_once(app)

    [msg] = inbound(app)
    assert msg.outcome == "failed"
    assert msg.reasons == [Reason("error", "RuntimeError: classifier fell over")]
    assert to_residents(smtp) == []


def test_one_broken_message_in_a_batch_does_not_hold_up_the_rest(app, dovecot, smtp, monkeypatch):
    import mailbot.intake.casework as casework

    real = casework.classify

    def explode_on_one(msg, *args, **kwargs):
        if msg.from_addr == "bob@example.com":
            raise RuntimeError("classifier fell over")
        return real(msg, *args, **kwargs)

    monkeypatch.setattr(casework, "classify", explode_on_one)
    _only_bobs_fails(app, dovecot, smtp, "RuntimeError: classifier fell over")


def _only_bobs_fails(app, dovecot, smtp, reason: str) -> None:
    """Ann's, Bob's and Cat's mail, fetched and decided together in one transaction: only
    Bob's is recorded as failed, with its reason (not retried for ever)."""
    for who in ("ann@example.com", "bob@example.com", "cat@example.com"):
        dovecot.append(resident_mail(sender=who, message_id=f"<{who}>"), when=ARRIVED)
    run_once(app)

    assert [(m.uid, m.outcome) for m in inbound(app)] == [
        (1, "case-opened"),
        (2, "failed"),
        (3, "case-opened"),
    ]
    assert inbound(app)[1].reasons == [Reason("error", reason)]
    assert [c.ref for c in cases(app)] == ["ENQ-2026-00001", "ENQ-2026-00002"]
    assert sorted(m.rcpt_tos[0] for m in to_residents(smtp)) == [
        "ann@example.com",
        "cat@example.com",
    ]


def test_smtp_down_then_back_sends_exactly_once(app, dovecot, smtp):
    smtp.stop()
    dovecot.append(resident_mail(), when=ARRIVED)
    with pytest.raises(SendingPaused, match="cannot reach the SMTP server"):
        run_once(app)  # exit 2: a cron job's owner hears of it
    with app.sessions() as s:
        [row] = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == ACK)).all()
        # Waiting for the server, with no attempt counted against the message.
        assert (row.status, row.attempts) == ("paused", 0)
        assert "cannot reach the SMTP server" in row.last_error

    smtp.start()
    run_once(app)  # a complete cycle tries paused sending again at once
    run_once(app)
    assert len(to_residents(smtp)) == 1


def test_smtp_refusing_with_4xx_is_retried(app, dovecot, smtp):
    smtp.refuse = "451 4.3.0 Try again later"
    dovecot.append(resident_mail(), when=ARRIVED)
    run_once(app)
    assert to_residents(smtp) == []
    smtp.refuse = None
    app.clock.advance(timedelta(minutes=2))
    run_once(app)
    assert len(to_residents(smtp)) == 1


def test_smtp_rejecting_with_5xx_is_given_up(app, dovecot, smtp):
    smtp.refuse = "550 5.1.1 No such user"
    dovecot.append(resident_mail(), when=ARRIVED)
    run_once(app)
    smtp.refuse = None
    app.clock.advance(timedelta(hours=2))
    run_once(app)
    assert to_residents(smtp) == []
    with app.sessions() as s:
        assert s.scalar(select(OutboxMessage.status).where(OutboxMessage.kind == ACK)) == "failed"


def test_cases_and_case_json_shapes(app, config_path, dovecot, smtp, capsys):
    dovecot.append(resident_mail(message_id="<j@x>"), when=ARRIVED)
    run_once(app)
    now = ["--now", "2026-11-03T10:00:00+00:00"]

    assert main(["--config", str(config_path), "cases", "--json", *now]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed == {
        "ref": "ENQ-2026-00001",
        "category": "enquiry",
        "stage": 1,
        "status": "open",
        "resident": {"name": "Jane Doe", "email": "jane.doe@example.com"},
        "subject": "Pothole on Mill Lane",
        "officer": {"name": "Alex Morgan", "email": "alex.morgan@council.example.gov.uk"},
        "received_at": "2026-11-03T09:30:00+00:00",
        "acknowledged_at": "2026-11-03T10:00:00+00:00",
        "respond_by": "2026-11-10",
        "responded_at": None,
        "clock_stopped": False,
        "clock_stop": None,  # issue 21: why it is stopped (clarification, identity, fees)
        "language": None,  # issue 21: the resident's language, for a Welsh council
        "priority": "normal",
        "triage": False,
    }

    assert main(["--config", str(config_path), "case", "ENQ-2026-00001", "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert {k: v for k, v in one.items() if k != "events"} == listed
    assert [e["kind"] for e in one["events"]] == ["received", "note", "reassigned", "acknowledged"]
    assert all(set(e) == {"at", "kind", "detail"} for e in one["events"])

    assert main(["--config", str(config_path), "case", "ENQ-2026-99999"]) == 1
    assert "no case ENQ-2026-99999" in capsys.readouterr().err


class _SendingProcessWaiting(NoTurn):
    def wanted(self) -> bool:
        return True


def _fetched(uids: range) -> list[FetchedMessage]:
    return [
        FetchedMessage(
            "test/INBOX",
            1,
            uid,
            ARRIVED,
            0,
            resident_mail(sender=f"r{uid}@example.com", message_id=f"<{uid}@example.com>"),
            False,
        )
        for uid in uids
    ]


def _position(app) -> int:
    with app.sessions() as s:
        return s.scalar(select(FolderState.last_uid).where(FolderState.folder == "test/INBOX"))


@pytest.mark.parametrize("waiting", [False, True])
def test_deciding_pauses_for_the_sending_process_and_commits_what_it_decided(app, waiting):
    """SQLite has one writer: while the sending process waits to record a message, the
    deciding process commits after a few messages, and the caller passes the rest again."""
    with app.sessions.begin() as s:
        s.add(FolderState(folder="test/INBOX", uidvalidity=1, last_uid=0, start_from=START_FROM))
    if waiting:
        app.sessions.turn = _SendingProcessWaiting()
    batch = _fetched(range(1, 9))

    outcomes = process_batch(app, batch, START_FROM, app.cfg.imap)

    decided = DECIDED_BEFORE_A_TURN if waiting else len(batch)
    assert outcomes == ["case-opened"] * decided
    assert _position(app) == decided  # the folder position moves with what was committed
    assert [m.uid for m in inbound(app)] == list(range(1, decided + 1))
    if waiting:  # the rest, fewer than DECIDED_BEFORE_A_TURN, go in one
        rest = process_batch(app, batch[decided:], START_FROM, app.cfg.imap)
        assert rest == ["case-opened"] * (len(batch) - decided)
        assert _position(app) == len(batch)
    assert [c.ref for c in cases(app)][-1] == "ENQ-2026-00008"


def test_a_message_that_breaks_the_parser_is_recorded_as_failed(app, dovecot, smtp, monkeypatch):
    import mailbot.pipeline as pipeline

    real = pipeline.parse_message

    def explode_on_one(raw, *args, **kwargs):
        if b"bob@example.com" in raw:
            raise RuntimeError("parser fell over")
        return real(raw, *args, **kwargs)

    monkeypatch.setattr(pipeline, "parse_message", explode_on_one)
    _only_bobs_fails(app, dovecot, smtp, "RuntimeError: parser fell over")


class _TurnWatch(NoTurn):
    """A write turn that notes when it is held."""

    held = False

    def __enter__(self) -> None:
        self.held = True

    def __exit__(self, *exc: object) -> None:
        self.held = False


def test_classifying_is_done_before_the_write_turn_and_only_where_a_case_may_open(
    app, dovecot, smtp, monkeypatch
):
    """Classifying is the costliest step and needs no database: done inside the turn it
    would keep the sending process from SQLite's one write lock for that long."""
    import mailbot.intake.casework as casework

    real = casework.classify
    calls = []

    def watched(msg, *args, **kwargs):
        calls.append((msg.from_addr, app.sessions.turn.held))
        return real(msg, *args, **kwargs)

    monkeypatch.setattr(casework, "classify", watched)
    app.sessions.turn = _TurnWatch()
    dovecot.append(resident_mail(subject="I wish to make a formal complaint"), when=ARRIVED)
    out_of_office = resident_mail(
        sender="away@example.com", headers={"Auto-Submitted": "auto-replied"}
    )
    dovecot.append(out_of_office, when=ARRIVED)
    run_once(app)

    assert calls == [("jane.doe@example.com", False)]  # not the automatic reply
    assert [(c.ref, c.category) for c in cases(app)] == [("COM-2026-00001", "complaint")]
    assert [m.outcome for m in inbound(app)] == ["case-opened", "suppressed"]
    assert [m.rcpt_tos for m in to_residents(smtp)] == [["jane.doe@example.com"]]
