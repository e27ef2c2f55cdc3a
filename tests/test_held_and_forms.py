"""Web forms answered, spam held, the clerk told and able to release: real Dovecot, aiosmtpd
and both databases, through `mailbot run --once` and `mailbot release`."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mailbot.app import App
from mailbot.cli import main
from mailbot.config import load_config
from mailbot.daemon import run_once
from mailbot.reasons import Reason
from mailbot.store import Case, CaseEvent, InboundMessage
from tests.conftest import council_config, resident_mail, to_residents
from tests.test_forms import FORMS_DIR, FORMS_TOML, SKIPPED

pytestmark = pytest.mark.integration

ARRIVED = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)  # Tuesday 3 November 2026
CHRIS = "chris.lee@council.example.gov.uk"  # the clerk: gets the digest


@pytest.fixture
def config(tmp_path: Path, dovecot, smtp, database_url: str) -> Path:
    return council_config(tmp_path, dovecot, smtp, database_url, extra=FORMS_TOML)


@pytest.fixture
def app(config: Path, clock):
    application = App.load(load_config(config), clock)
    yield application
    application.engine.dispose()


def crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def form_mail(name: str, replace: tuple[bytes, bytes] | None = None) -> bytes:
    raw = (FORMS_DIR / name).read_bytes()
    return crlf(raw.replace(*replace) if replace else raw)


def rows(app: App) -> list[InboundMessage]:
    """What was read from the inbox (not mailbot's copies read back from the sent folder)."""
    inbox = InboundMessage.folder.endswith("/INBOX")
    with app.sessions() as s:
        return list(s.scalars(select(InboundMessage).where(inbox).order_by(InboundMessage.uid)))


def cases(app: App) -> list[Case]:
    with app.sessions() as s:
        return list(s.scalars(select(Case).order_by(Case.id)))


def history(app: App, ref: str) -> list[tuple[str, str]]:
    with app.sessions() as s:
        case = s.scalar(select(Case).where(Case.ref == ref))
        events = s.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id))
        return [(e.kind, e.detail) for e in events]


# --- web forms -----------------------------------------------------------------------


def test_each_form_product_opens_a_case_for_its_resident(app, dovecot, smtp):
    names = [
        "council-cms-webform.eml",
        "govuk-forms.eml",
        "microsoft-forms-power-automate.eml",
        "granicus-govservice.eml",
    ]
    for n, name in enumerate(names):
        dovecot.append(form_mail(name), when=ARRIVED + timedelta(minutes=n))

    assert run_once(app) == 4

    assert [m.outcome for m in rows(app)] == ["case-opened"] * 4
    found = [(c.resident_email, c.resident_name, c.category) for c in cases(app)]
    # With no topic field the classifier decides, as for any message (tests/test_model.py).
    found[1] = (*found[1][:2], "(the classifier's)")
    assert found == [
        ("priya.sharma@example.net", "Priya Sharma", "enquiry"),  # topic "Noise nuisance"
        ("tom.okafor@example.org", "Tom Okafor", "(the classifier's)"),  # no topic
        ("gareth.le@example.co.uk", "Gareth Lloyd-Evans", "complaint"),  # topic "Complaint"
        ("h.marsh@example.com", "Mrs Helen Marsh", "foi"),  # "Freedom of information"
    ]
    # Each acknowledgement went to the resident, never to the form's no-reply sender.
    sent = sorted((m.rcpt_tos[0], m.message["To"]) for m in to_residents(smtp))
    assert sent == [
        ("gareth.le@example.co.uk", "Gareth Lloyd-Evans <gareth.le@example.co.uk>"),
        ("h.marsh@example.com", "Mrs Helen Marsh <h.marsh@example.com>"),
        ("priya.sharma@example.net", "Priya Sharma <priya.sharma@example.net>"),
        ("tom.okafor@example.org", "Tom Okafor <tom.okafor@example.org>"),
    ]
    [cms, govuk, *_] = cases(app)
    # The case history says where the resident was found and why the category.
    assert history(app, cms.ref)[:2] == [
        (
            "received",
            'from priya.sharma@example.net (web form "Contact us", field "Email address")',
        ),
        (
            "note",
            'classified as enquiry: form-topic: form "Contact us" topic "Noise nuisance" -> '
            "enquiry; form-topic: the classifier alone would say complaint",
        ),
    ]
    assert history(app, govuk.ref)[0] == (
        "received",
        'from tom.okafor@example.org (web form "Report a missed bin collection", '
        'field "What is your email address?")',
    )


def test_a_form_with_no_resident_address_is_held_and_the_clerk_told(app, dovecot, smtp):
    uid = dovecot.append(form_mail("govuk-forms.eml", SKIPPED), when=ARRIVED)

    run_once(app)

    [row] = rows(app)
    assert (row.outcome, row.case_id) == ("suppressed", None)
    assert row.reasons[0].rule == "form"
    assert row.reasons[0].text.startswith(
        "web form message with no resident address to acknowledge "
        '(form "Report a missed bin collection": Reply-To no-reply@forms.service.gov.uk is '
        "the form's own address;"
    )
    assert to_residents(smtp) == []
    [digest] = smtp.to(CHRIS)
    text = digest.text()
    assert "Web form messages with no address to acknowledge: 1." in text
    assert f"ID {uid}  Tue 03 Nov 09:30  from no-reply@forms.service.gov.uk" in text


def test_a_no_reply_sender_that_is_not_a_form_is_still_suppressed(app, dovecot, smtp):
    dovecot.append(
        resident_mail(
            sender="no-reply@forms.service.gov.uk",
            name="GOV.UK Forms",
            subject="Form submission: Apply for a skip - reference: X1",  # not configured
            body="What is your email address?\n\njane@example.com\n",
        ),
        when=ARRIVED,
    )
    run_once(app)
    [row] = rows(app)
    assert row.outcome == "suppressed"
    assert row.reasons[0].rule == "machine-sender"
    assert to_residents(smtp) == []


def test_a_reply_to_on_another_domain_is_not_where_the_acknowledgement_goes(app, dovecot, smtp):
    dovecot.append(
        resident_mail(headers={"Reply-To": "someone.else@elsewhere.example"}), when=ARRIVED
    )
    run_once(app)
    [case] = cases(app)
    assert case.resident_email == "jane.doe@example.com"
    assert [m.rcpt_tos for m in to_residents(smtp)] == [["jane.doe@example.com"]]


# --- spam held, told and released ----------------------------------------------------

VERDICTS = {
    "exchange scl": {"X-MS-Exchange-Organization-SCL": "9"},
    "exchange content filter": {
        "X-Forefront-Antispam-Report": "CIP:198.51.100.7;CTRY:NL;LANG:en;SCL:5;SRV:;IPV:NLI;"
        "SFV:SPM;H:mail.example.net;PTR:;CAT:SPM;SFS:(13230040);DIR:INB;"
    },
    "exchange phishing": {
        "X-Forefront-Antispam-Report": "SFV:NSPM;CAT:HPHSH;DIR:INB;",
        "X-MS-Exchange-Organization-SCL": "1",
    },
    "spamassassin flag": {"X-Spam-Flag": "YES"},
    "spamassassin status": {"X-Spam-Status": "Yes, score=9.4 required=5.0 tests=BAYES_99"},
    "rspamd": {"X-Spam": "Yes", "X-Rspamd-Action": "add header"},
    "rspamd rewrite": {"X-Rspamd-Action": "rewrite subject"},
}


def test_each_spam_verdict_is_held_and_never_acknowledged(app, dovecot, smtp):
    for n, headers in enumerate(VERDICTS.values()):
        dovecot.append(
            resident_mail(
                sender=f"sender{n}@example.net",
                message_id=f"<spam{n}@example.net>",
                headers=headers,
            ),
            when=ARRIVED,
        )
    # A sender's own "not spam" on top of the server's verdict changes nothing.
    dovecot.append(
        crlf(
            b"X-Spam-Flag: NO\r\nX-MS-Exchange-Organization-SCL: -1\r\n"
            + resident_mail(
                sender="forger@example.net",
                message_id="<forged@example.net>",
                headers={"X-Spam-Flag": "YES"},
            )
        ),
        when=ARRIVED,
    )

    run_once(app)

    found = rows(app)
    assert [m.outcome for m in found] == ["suppressed"] * (len(VERDICTS) + 1)
    assert all(m.reasons[0].rule == "spam" for m in found), [m.reasons for m in found]
    assert found[0].reasons == [
        Reason(
            "spam",
            "marked as spam, phishing or forged by the council's mail servers "
            "(X-MS-Exchange-Organization-SCL: 9)",
        )
    ]
    assert cases(app) == []
    assert to_residents(smtp) == []
    # The clerk's digest lists each, with the ID to release it by.
    [digest] = smtp.to(CHRIS)
    text = digest.text()
    assert f"Held as spam since the last digest: {len(VERDICTS) + 1}." in text
    assert "mailbot release ID" in text
    for m in found:
        assert f"ID {m.uid}  Tue 03 Nov 09:30  from {m.from_addr}" in text
    assert "(X-Spam-Status: Yes, score=9.4 required=5.0 tests=BAYES_99)" in text


def test_a_garbled_verdict_is_logged_and_read_as_no_verdict(app, dovecot, smtp, caplog):
    uid = dovecot.append(
        resident_mail(headers={"X-MS-Exchange-Organization-SCL": "banana"}), when=ARRIVED
    )
    with caplog.at_level(logging.WARNING, logger="mailbot.pipeline"):
        run_once(app)
    [row] = rows(app)
    assert row.outcome == "case-opened"
    assert [m.rcpt_tos for m in to_residents(smtp)] == [["jane.doe@example.com"]]
    [warning] = [r for r in caplog.records if "spam verdict" in r.getMessage()]
    assert warning.getMessage() == (
        "spam verdict not understood, so not obeyed: X-MS-Exchange-Organization-SCL: "
        "'banana' is not a spam confidence level (-1 to 9)"
    )
    assert warning.uid == uid


def release(config: Path, ident: str, capsys) -> tuple[int, str, str]:
    """The exit status, what it printed, and the last line on stderr (after any log lines)."""
    code = main(["--config", str(config), "release", ident, "--now", "2026-11-03T11:00:00Z"])
    out = capsys.readouterr()
    errors = [line for line in out.err.splitlines() if line.startswith("mailbot: ")]
    return code, out.out.strip(), errors[-1] if errors else ""


def test_release_opens_and_acknowledges_a_held_message_exactly_once(
    app, config, dovecot, smtp, capsys
):
    uid = dovecot.append(
        resident_mail(
            message_id="<held@example.com>",
            headers={"X-Spam-Flag": "YES"},
        ),
        when=ARRIVED,
    )
    run_once(app)
    assert to_residents(smtp) == []

    code, out, err = release(config, str(uid), capsys)
    assert (code, err) == (0, "")
    assert out == f"released {uid} as ENQ-2026-00001; acknowledgement to jane.doe@example.com"
    [ack] = to_residents(smtp)
    assert ack.rcpt_tos == ["jane.doe@example.com"]
    assert ack.message["Subject"] == "Re: Pothole on Mill Lane [Ref: ENQ-2026-00001]"
    assert ack.message["In-Reply-To"] == "<held@example.com>"
    [case] = cases(app)
    # Its dates run from when it arrived, not from the release.
    assert case.received_at == ARRIVED and case.respond_by.isoformat() == "2026-11-10"
    assert (
        "note",
        "released by the clerk from spam (spam: marked as spam, phishing or forged by the "
        "council's mail servers (X-Spam-Flag: YES))",
    ) in history(app, case.ref)
    [row] = rows(app)
    assert (row.outcome, row.case_id) == ("released", case.id)

    # Twice, by ID or by the case it became: a clear message, nothing sent.
    assert release(config, str(uid), capsys) == (
        0,
        f"{uid} was released already, as ENQ-2026-00001; nothing sent",
        "",
    )
    assert release(config, "enq-2026-00001", capsys)[:2] == (
        0,
        f"{uid} was released already, as ENQ-2026-00001; nothing sent",
    )
    run_once(app)  # and the daemon does not take it up again
    assert len(to_residents(smtp)) == 1
    assert len(cases(app)) == 1


def test_release_of_a_message_no_longer_in_the_mailbox_is_a_clear_error(
    app, config, dovecot, smtp, capsys
):
    uid = dovecot.append(resident_mail(headers={"X-Spam": "Yes"}), when=ARRIVED)
    run_once(app)
    with dovecot.client() as imap:
        imap.select_folder("INBOX")
        imap.delete_messages([uid])
        imap.expunge()

    code, out, err = release(config, str(uid), capsys)
    assert (code, out) == (1, "")
    assert err == (
        f"mailbot: {uid} is no longer in INBOX of council@example.org (deleted or moved since "
        "it arrived); nothing sent"
    )
    assert to_residents(smtp) == [] and cases(app) == []
    assert rows(app)[0].outcome == "suppressed"  # still held: nothing changed


def test_release_refuses_what_was_never_held(app, config, dovecot, smtp, capsys):
    uid = dovecot.append(resident_mail(), when=ARRIVED)
    run_once(app)
    assert release(config, str(uid), capsys) == (
        1,
        "",
        f"mailbot: {uid} was not held: it opened a case when it arrived; nothing to release",
    )
    assert release(config, "ENQ-2026-00001", capsys)[0] == 1
    assert release(config, "99", capsys) == (
        1,
        "",
        "mailbot: no message with ID 99 has been read",
    )
    assert release(config, "last tuesday", capsys)[2].startswith(
        "mailbot: 'last tuesday' is not a held message's ID as the digest gives it"
    )
    assert len(to_residents(smtp)) == 1


def test_mail_whose_domain_failed_dmarc_at_the_border_is_held_as_forged(
    tmp_path, dovecot, smtp, database_url, clock
):
    """Microsoft 365 recorded that bank.example disowns the message: answering it would
    mail whoever it pretends to be (or the address it forged), so it is held, listed for
    the clerk and can be released like spam."""
    extra = FORMS_TOML + '\n[commands]\ntrust = "microsoft365"\n'
    config = council_config(tmp_path, dovecot, smtp, database_url, extra=extra)
    app = App.load(load_config(config), clock)
    exchange = (
        "spf=fail (sender IP is 192.0.2.7) smtp.mailfrom=bank.example; dkim=none "
        "(message not signed) header.d=none;dmarc=fail action=oreject "
        "header.from=bank.example;compauth=fail reason=000"
    )
    forged = resident_mail(
        sender="alerts@bank.example",
        message_id="<f@bank.example>",
        headers={"Authentication-Results": exchange},
    )
    honest = resident_mail(
        message_id="<h@example.com>",
        headers={"Authentication-Results": "dmarc=pass action=none header.from=example.com"},
    )
    dovecot.append(forged, when=ARRIVED)
    dovecot.append(honest, when=ARRIVED)
    run_once(app)

    held, answered = rows(app)
    assert held.outcome == "suppressed"
    assert held.reasons == [
        Reason(
            "spam",
            "marked as spam, phishing or forged by the council's mail servers "
            "(DMARC failed for bank.example (Microsoft 365))",
        )
    ]
    assert answered.outcome == "case-opened"
    assert [m.rcpt_tos for m in to_residents(smtp)] == [["jane.doe@example.com"]]
    [digest] = smtp.to(CHRIS)
    assert f"ID {held.uid}  Tue 03 Nov 09:30  from alerts@bank.example" in digest.text()
    app.engine.dispose()
