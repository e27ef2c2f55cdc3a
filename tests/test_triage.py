"""Doubt, triage and the council's own corrections, end to end: a real Dovecot, aiosmtpd,
SQLite and PostgreSQL, the way a clerk and an officer meet them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from mailbot.cli import main
from mailbot.daemon import run_once
from mailbot.model import Layer, Model
from mailbot.store import Case, CategoryCorrection, CouncilModel
from tests import test_officers
from tests.conftest import resident_mail, to_residents
from tests.test_officers import ALEX, CHRIS, RESIDENT, T0, staff_mail, step, the_case

pytestmark = pytest.mark.integration

app = test_officers.app  # the officers' fixture: the council's mailbox and its officers

CATEGORIES = ("enquiry", "complaint", "foi", "eir", "sar", "compliment")


def one_word_model(word: str, scores: dict[str, float]) -> Model:
    """A model that knows one word: the doubt is ours to set, whatever the shipped model
    would make of the message."""
    layer = Layer(
        name="shipped",
        vocabulary={word: 0},
        idf=(1.0,),
        stop_words=frozenset(),
        ngrams=(1, 1),
        categories=CATEGORIES,
        coef=tuple((scores.get(c, 0.0),) for c in CATEGORIES),
        intercept=(0.0,) * len(CATEGORIES),
        examples=0,
    )
    return Model((layer,))


def in_doubt(app) -> None:
    # Stafford's policy: doubt is a complaint.
    app._model = one_word_model("zebra", {"enquiry": 0.30, "complaint": 0.25})
    app._model_read = True


def open_doubtful_case(app, dovecot) -> str:
    in_doubt(app)
    step(app, dovecot, resident_mail(subject="Zebra", body="Zebra.", message_id="<z@e>"), 0)
    return "COM-2026-00001"


def test_a_doubtful_message_is_acknowledged_without_promises_and_flagged(
    app, dovecot, smtp, capsys
):
    ref = open_doubtful_case(app, dovecot)
    case = the_case(app, ref)
    assert (case.category, case.triage) == ("complaint", True)
    assert case.reasons[0].rule == "complaint"
    assert case.reasons[0].text.startswith("in doubt between enquiry (0.30) and complaint")
    assert "flagged for triage: enquiry or complaint?" in [e.detail for e in case.events][2]

    [ack] = to_residents(smtp)
    assert ack.message["To"] == f"Jane Doe <{RESIDENT}>"
    text = ack.text()
    assert f"Your reference: {ref}" in text
    assert "we will write to you again to tell you who is dealing with it" in text
    # Nothing a #category could make untrue: no type of case, officer or date.
    assert "We are treating it as" not in text and "complaints procedure" not in text
    assert "Alex Morgan" not in text and "Jordan Reid" not in text
    assert "by " + "Tuesday" not in text

    config = ["--config", str(app.config_path)]
    assert main([*config, "cases", "--triage", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(c["ref"], c["triage"]) for c in listed] == [(ref, True)]
    other = resident_mail(
        sender="sam@example.net",
        subject="FOI request: potholes",
        body="Under the Freedom of Information Act, how many potholes were repaired in 2025?",
        message_id="<p@e>",
    )
    step(app, dovecot, other, 5)
    assert main([*config, "cases", "--triage"]) == 0
    out = capsys.readouterr().out
    assert f"{ref}  complaint (triage)" in out
    assert "FOI-2026-00001" not in out  # not in doubt: not listed

    # The clerk's digest (on the next working morning) says what to do.
    app.clock.instant = datetime(2026, 11, 4, 9, 0, tzinfo=UTC)
    run_once(app)
    *_, digest = [m for m in smtp.to(CHRIS) if m.message["Subject"].startswith("Open cases")]
    assert "1 needs triage: mailbot could not tell what kind of message it is" in digest.text()
    assert "(clock stopped)" not in digest.text()
    line = next(li for li in digest.text().splitlines() if li.startswith(ref))
    assert line.endswith("TRIAGE")


def test_an_officers_category_settles_the_doubt_and_becomes_a_lesson(app, dovecot, smtp, capsys):
    ref = open_doubtful_case(app, dovecot)
    command = staff_mail(ALEX, f"RE: Zebra [Ref: {ref}]", "#category enquiry\n")
    step(app, dovecot, command, 30)

    case = the_case(app, ref)
    assert (case.category, case.triage) == ("enquiry", False)
    with app.sessions() as s:
        [correction] = s.scalars(select(CategoryCorrection)).all()
        assert (correction.from_category, correction.to_category) == ("complaint", "enquiry")
        assert correction.at == T0 + timedelta(minutes=31)
    # Now the resident hears who has it and by when.
    _, second = to_residents(smtp)
    assert "Alex Morgan" in second.text()
    assert "Tuesday 10 November 2026" in second.text()  # 5 working days, enquiry

    # Retraining learns from it; the report counts it.
    config = ["--config", str(app.config_path), "--now", "2026-11-04T10:00:00+00:00"]
    assert main([*config[:2], "classify", "retrain", *config[2:]]) == 0
    out = capsys.readouterr().out
    assert out.startswith("learnt from 1 corrected case(s): 1 enquiry")
    with app.sessions() as s:
        [stored] = s.scalars(select(CouncilModel)).all()
        assert stored.examples == 1
        assert json.loads(stored.layer)["name"] == "council"
    report = ["report", "--from", "2026-11-01", "--to", "2026-11-30", "--format", "json"]
    assert main([*config[:2], *report, *config[2:]]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["corrections"] == [{"from": "complaint", "to": "enquiry", "cases": 1}]

    # The running daemon picks the council's layer up on reload.
    app.reload()
    assert [layer.name for layer in app.model().layers] == ["shipped", "council"]


def test_confirming_the_category_clears_triage_without_a_correction(app, dovecot, smtp):
    ref = open_doubtful_case(app, dovecot)
    step(app, dovecot, staff_mail(ALEX, f"RE: Zebra [Ref: {ref}]", "#category complaint\n"), 30)
    case = the_case(app, ref)
    assert (case.category, case.triage) == ("complaint", False)
    assert "category complaint confirmed by " + ALEX in [e.detail for e in case.events]
    _, second = to_residents(smtp)
    assert "complaints procedure" in second.text()
    with app.sessions() as s:
        [row] = s.scalars(select(CategoryCorrection)).all()
        assert (row.from_category, row.to_category) == ("complaint", "complaint")


def test_retrain_with_no_corrections_says_so(app, capsys):
    assert main(["--config", str(app.config_path), "classify", "retrain"]) == 1
    assert "there are no corrections to learn from yet" in capsys.readouterr().err


def test_retention_takes_the_scored_text_and_the_lesson_with_the_rest(app, dovecot, smtp):
    ref = open_doubtful_case(app, dovecot)
    step(app, dovecot, staff_mail(ALEX, f"RE: Zebra [Ref: {ref}]", "#category enquiry\n"), 30)
    with app.sessions.begin() as s:
        case = s.scalar(select(Case))
        assert case.scored_text == "Zebra\nZebra\nZebra.\n"
        case.status, case.closed_at = "closed", datetime(2019, 1, 1, tzinfo=UTC)
    assert main(["--config", str(app.config_path), "purge", "--now", "2026-11-20T12:00:00Z"]) == 0
    with app.sessions() as s:
        assert s.scalar(select(Case.scored_text)) is None
    assert main(["--config", str(app.config_path), "classify", "retrain"]) == 1
