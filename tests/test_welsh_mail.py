"""Welsh by mail (SPEC §9, issue 21): a council with language = "cy-en" on a real Dovecot
and aiosmtpd, SQLite and PostgreSQL. T0 is Tuesday 3 November 2026, 09:30 GMT."""

from __future__ import annotations

from datetime import date

import pytest

from mailbot.app import App
from mailbot.config import load_config
from mailbot.devservers import local_config
from mailbot.migrations import upgrade
from mailbot.welsh import DIVIDER, ENGLISH_BELOW
from tests.conftest import COUNCIL, START_FROM, resident_mail, to_residents
from tests.test_officers import ALEX, AUTHSERV, command, step, the_case

pytestmark = pytest.mark.integration

RESIDENT = "jane.doe@example.com"


@pytest.fixture
def app(tmp_path, dovecot, smtp, database_url, clock):
    path = local_config(
        tmp_path,
        dovecot,
        smtp,
        mailbox_address=COUNCIL,
        database_url=database_url,
        start_from=START_FROM,
        policy="vale-of-glamorgan",
        extra=f'\n[commands]\ntrust = "authserv"\nauthserv_id = "{AUTHSERV}"\n',
    )
    upgrade(database_url)
    application = App.load(load_config(path), clock)
    yield application
    application.engine.dispose()


def letters(smtp) -> list[str]:
    return [m.text() for m in to_residents(smtp) if m.rcpt_tos == [RESIDENT]]


def test_mail_in_welsh_is_answered_in_welsh(app, dovecot, smtp):
    welsh = resident_mail(
        subject="Twll yn y ffordd",
        message_id="<w1@example.com>",
        body="Bore da, mae twll mawr yn y ffordd tu allan i'm tŷ ers tair wythnos. Allwch chi "
        "ei drwsio os gwelwch yn dda?",
    )
    step(app, dovecot, welsh, 0)
    case = the_case(app, "ENQ-2026-00001")
    assert case.language == "cy"
    assert ("note", "written in Welsh: letters in Welsh") in [
        (e.kind, e.detail) for e in case.events
    ]
    [ack] = letters(smtp)
    assert ack.startswith("Annwyl Jane Doe,")
    assert "Dear" not in ack and DIVIDER not in ack
    # Vale: e-mails answered within five working days: Wed 4 to Tue 10 Nov.
    assert "erbyn dydd Mawrth 10 Tachwedd 2026" in ack
    assert "a byddwch yn cael ateb llawn" in ack
    assert "Rydym yn croesawu gohebiaeth yn Gymraeg" in ack
    assert "Cyngor Bro Morgannwg" in ack


def test_mail_in_english_gets_both_welsh_first_until_the_resident_writes_welsh(app, dovecot, smtp):
    step(app, dovecot, resident_mail(message_id="<e1@example.com>"), 0)
    ref = "ENQ-2026-00001"
    assert the_case(app, ref).language is None
    [ack] = letters(smtp)
    welsh, english = ack.split(DIVIDER)
    assert welsh.startswith(ENGLISH_BELOW + "\n\nAnnwyl Jane Doe,")
    assert "erbyn dydd Mawrth 10 Tachwedd 2026" in welsh
    assert "by Tuesday 10 November 2026" in english
    assert "We welcome correspondence in Welsh" in english
    # The officer's clarification is bilingual too (Welsh Language Standard 5).
    command(app, dovecot, ref, "#clarify Which end of Mill Lane?", 10)
    question = letters(smtp)[-1]
    assert question.startswith(ENGLISH_BELOW) and "Which end of Mill Lane?" in question
    # The resident answers in Welsh: from then on, Welsh only.
    answer = resident_mail(
        subject=f"Re: Pothole on Mill Lane [Ref: {ref}]",
        message_id="<e2@example.com>",
        body="Y pen agosaf at yr ysgol, wrth ymyl y siop bapurau newydd.",
    )
    step(app, dovecot, answer, 20)
    case = the_case(app, ref)
    assert (case.language, case.clock_stopped) == ("cy", False)
    command(app, dovecot, ref, "#holding 2026-11-20 rydym yn aros am y contractwr", 30)
    holding = letters(smtp)[-1]
    assert holding.startswith("Annwyl Jane Doe,") and DIVIDER not in holding
    assert "erbyn dydd Gwener 20 Tachwedd 2026" in holding
    assert "rydym yn aros am y contractwr" in holding


def test_an_officer_records_that_the_resident_wants_english(app, dovecot, smtp):
    step(app, dovecot, resident_mail(message_id="<e1@example.com>"), 0)
    ref = "ENQ-2026-00001"
    command(app, dovecot, ref, "#language en", 10)
    assert the_case(app, ref).language == "en"
    command(app, dovecot, ref, "#holding 2026-11-20 waiting for the contractor", 20)
    holding = letters(smtp)[-1]
    assert holding.startswith("Dear Jane Doe,") and "Annwyl" not in holding
    assert "by Friday 20 November 2026" in holding
    assert "We welcome correspondence in Welsh" in holding  # standard 7, always
    assert any("Done: #language en" in m.text() for m in smtp.to(ALEX))
    # "both" goes back to bilingual letters.
    command(app, dovecot, ref, "#language both", 30)
    assert the_case(app, ref).language is None
    assert the_case(app, ref).respond_by == date(2026, 11, 10)
