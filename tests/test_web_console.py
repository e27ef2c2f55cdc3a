"""The console's pages through Flask's client, on SQLite and PostgreSQL: who may see and
do what, CSRF, the sign-in limit, bad input refused with nothing lost, every change in
the audit log, and `mailbot users`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailbot.cli import main
from mailbot.daemon import run_once
from mailbot.store import Case, CaseEvent, OutboxMessage
from mailbot.web import wording
from mailbot.web.models import AuditEntry, ConsoleUser, SignInAttempt, TemplateDraft
from mailbot.web.roles import Role
from mailbot.web.server import create_app
from tests.conftest import council_config, resident_mail, to_residents
from tests.console import (
    ADMIN,
    ALEX,
    CLERK,
    MANAGER,
    PASSWORD,
    SAM,
    add_user,
    load,
    make_case,
    offline_config,
    post,
    sign_in,
    token,
    with_console,
)

pytestmark = pytest.mark.integration  # PostgreSQL


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Path:
    return offline_config(tmp_path, database_url)


@pytest.fixture
def app(config: Path):
    application = load(config)
    yield application
    application.engine.dispose()


@pytest.fixture
def client(app):
    for email, role in ((CLERK, Role.CLERK), (ADMIN, Role.ADMIN), (MANAGER, Role.MANAGER)):
        add_user(app, email, role)
    add_user(app, SAM, Role.OFFICER)
    make_case(app, "ENQ-2026-00001", officer=ALEX)
    make_case(app, "FOI-2026-00001", officer=SAM, category="foi")
    return create_app(app, key=b"k" * 32).test_client()


def audit(app) -> list[AuditEntry]:
    """The changes in the audit log (sign-ins left out)."""
    with app.sessions() as session:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.action != "signed in").order_by(AuditEntry.id)
        )
        return list(rows)


def the_case(app, ref: str) -> Case:
    with app.sessions() as session:
        case = session.scalar(select(Case).where(Case.ref == ref))
        session.expunge(case)
        return case


# --- signing in --------------------------------------------------------------------------


def test_every_page_needs_a_signed_in_person(client):
    for path in ("/cases", "/cases/ENQ-2026-00001", "/templates", "/policy", "/audit.csv"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.location.startswith("/sign-in?next=")


def test_a_password_sign_in_lands_on_the_page_asked_for_and_never_another_site(client):
    page = client.get("/sign-in?next=/policy").get_data(as_text=True)
    response = client.post(
        "/sign-in",
        data={"email": CLERK, "password": PASSWORD, "next": "/policy", "csrf_token": token(page)},
    )
    assert (response.status_code, response.location) == (302, "/policy")
    client.post(
        "/sign-out", data={"csrf_token": token(client.get("/policy").get_data(as_text=True))}
    )
    page = client.get("/sign-in").get_data(as_text=True)
    response = client.post(
        "/sign-in",
        data={
            "email": CLERK,
            "password": PASSWORD,
            "next": "//evil.example/phish",
            "csrf_token": token(page),
        },
    )
    assert response.location == "/cases"


def test_sign_in_is_refused_after_five_wrong_passwords_even_with_the_right_one(client, app):
    for _ in range(5):
        response = sign_in(client, CLERK, "not the password at all")
        assert response.status_code == 400
        assert "The email address or password is not right." in response.get_data(as_text=True)
    response = sign_in(client, CLERK, PASSWORD)
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.get_data(as_text=True)
    assert client.get("/cases").status_code == 302  # still not signed in
    with app.sessions() as session:
        tries = session.scalar(select(func.count()).select_from(SignInAttempt))
    assert tries == 5  # the refused sixth was not even checked
    # Another account from the same browser is not locked out by this one's failures.
    assert sign_in(client, ADMIN, PASSWORD).status_code == 302


def test_an_unknown_account_is_refused_in_the_same_words(client):
    response = sign_in(client, "nobody@council.example.gov.uk", PASSWORD)
    assert response.status_code == 400
    assert "The email address or password is not right." in response.get_data(as_text=True)


def test_a_removed_account_is_signed_out_at_its_next_request(client, app):
    sign_in(client, CLERK)
    assert client.get("/cases").status_code == 200
    with app.sessions.begin() as session:
        session.delete(session.scalar(select(ConsoleUser).where(ConsoleUser.email == CLERK)))
    assert client.get("/cases").status_code == 302


def test_every_response_carries_the_security_headers(client):
    sign_in(client, CLERK)
    response = client.get("/cases")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    cookie = client.get_cookie("mailbot_console")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"


# --- who sees what ------------------------------------------------------------------------


def test_an_officer_sees_only_their_own_cases(client):
    sign_in(client, SAM)
    listing = client.get("/cases").get_data(as_text=True)
    assert "FOI-2026-00001" in listing and "ENQ-2026-00001" not in listing
    assert client.get("/cases/FOI-2026-00001").status_code == 200
    refused = client.get("/cases/ENQ-2026-00001")
    assert refused.status_code == 403
    assert "ENQ-2026-00001 is not one of your cases." in refused.get_data(as_text=True)
    for path in ("/templates", "/reports", "/attention", "/users", "/audit"):
        assert client.get(path).status_code == 403, path


def test_a_manager_reads_every_case_and_the_reports_but_changes_nothing(client, app):
    sign_in(client, MANAGER)
    assert client.get("/cases/ENQ-2026-00001").status_code == 200
    assert client.get("/reports").status_code == 200
    response = post(
        client, "/cases/ENQ-2026-00001/act", {"action": "close"}, "/cases/ENQ-2026-00001"
    )
    assert response.status_code == 403
    assert the_case(app, "ENQ-2026-00001").status == "open"
    assert client.get("/templates").status_code == 403


def test_the_worklist_filters_and_searches(client):
    sign_in(client, CLERK)
    assert "FOI-2026-00001" not in client.get("/cases?category=enquiry").get_data(as_text=True)
    found = client.get(f"/cases?officer={SAM}").get_data(as_text=True)
    assert "FOI-2026-00001" in found and "ENQ-2026-00001" not in found
    found = client.get("/cases?q=enq-2026").get_data(as_text=True)
    assert "ENQ-2026-00001" in found and "FOI-2026-00001" not in found
    assert "2 cases" in client.get("/cases?q=jane").get_data(as_text=True)
    assert "0 cases" in client.get("/cases?triage=1").get_data(as_text=True)


# --- acting on a case -----------------------------------------------------------------------


def test_a_console_action_runs_the_officers_command_and_is_audited(client, app):
    sign_in(client, CLERK)
    response = post(
        client,
        "/cases/ENQ-2026-00001/act",
        {"action": "reassign", "officer": "jordan.reid@council.example.gov.uk"},
        "/cases/ENQ-2026-00001",
    )
    assert response.status_code == 302
    case = the_case(app, "ENQ-2026-00001")
    assert case.officer_email == "jordan.reid@council.example.gov.uk"
    with app.sessions() as session:
        events = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id)).all()
        told = session.scalars(
            select(OutboxMessage.recipient).where(OutboxMessage.kind == "assigned")
        )
        told = list(told)
    assert [e.detail for e in events] == [f"from Alex Morgan to Jordan Reid by {CLERK}"]
    assert told == ["jordan.reid@council.example.gov.uk"]  # as #reassign tells them
    [entry] = audit(app)
    assert (entry.actor, entry.action, entry.target) == (CLERK, "case action", "ENQ-2026-00001")
    assert json.loads(entry.before)["officer"] == ALEX
    after = json.loads(entry.after)
    assert after["officer"] == "jordan.reid@council.example.gov.uk"
    assert after["command"] == "#reassign jordan.reid@council.example.gov.uk"


def test_an_action_the_policy_refuses_changes_nothing_and_keeps_what_was_typed(client, app):
    sign_in(client, CLERK)
    before = the_case(app, "ENQ-2026-00001")
    response = post(
        client,
        "/cases/ENQ-2026-00001/act",
        {"action": "extend", "days": "5"},
        "/cases/ENQ-2026-00001",
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "#extend 5: the policy allows no extension for enquiry cases" in page
    assert 'value="5"' in page  # the form still holds it
    assert the_case(app, "ENQ-2026-00001").respond_by == before.respond_by
    assert audit(app) == []


def test_a_form_without_its_csrf_token_is_refused(client, app):
    sign_in(client, CLERK)
    response = client.post("/cases/ENQ-2026-00001/act", data={"action": "close"})
    assert response.status_code == 400
    assert "The form was refused" in response.get_data(as_text=True)
    assert the_case(app, "ENQ-2026-00001").status == "open"
    response = client.post(
        "/cases/ENQ-2026-00001/act", data={"action": "close", "csrf_token": "forged"}
    )
    assert response.status_code == 400
    assert the_case(app, "ENQ-2026-00001").status == "open"


# --- templates ---------------------------------------------------------------------------

NAME = "acknowledgement-enquiry.txt"


def test_a_template_that_does_not_check_out_is_not_saved_and_the_typing_is_kept(client, app):
    sign_in(client, CLERK)
    broken = wording.builtin_text(NAME).replace("{{ case.ref }}", "{{ case.reff }}")
    response = post(client, f"/templates/{NAME}", {"text": broken, "action": "save"})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Not saved: 1 problem" in page
    assert "Line 11: &#39;case&#39; has no field &#39;reff&#39;" in page
    path = app.cfg.council.templates / NAME
    assert not path.exists()  # the built-in text is still the one in use
    with app.sessions() as session:
        draft = session.scalar(select(TemplateDraft))
    assert (draft.name, draft.author, draft.text) == (NAME, CLERK, broken)
    # The draft is what the editor shows next time.
    assert "{{ case.reff }}" in client.get(f"/templates/{NAME}").get_data(as_text=True)


def test_saving_rolling_back_and_the_versions_each_message_records(client, app):
    sign_in(client, CLERK)
    first = wording.builtin_text(NAME).replace(
        "Thank you for your email", "Many thanks for your email"
    )
    second = first.replace("Many thanks", "Thanks a lot")
    for text in (first, second):
        response = post(
            client, f"/templates/{NAME}", {"text": text.replace("\n", "\r\n"), "action": "save"}
        )
        assert response.status_code == 302
    path = app.cfg.council.templates / NAME
    assert path.read_text() == second  # the browser's CR LF made the file's LF
    response = post(client, f"/templates/{NAME}/rollback", {"number": "1"}, f"/templates/{NAME}")
    assert response.status_code == 302
    assert path.read_text() == first
    with app.sessions() as session:
        history = [(v.number, v.author, v.note) for v in wording.versions(session, NAME)]
        assert wording.version_label(
            session, f"acknowledgement-enquiry@{wording.fingerprint(first)}"
        ) == (f"{NAME} version 3")
        builtin = wording.fingerprint(wording.builtin_text(NAME))
        assert wording.version_label(session, f"acknowledgement-enquiry@{builtin}") == (
            f"{NAME}, built-in text"
        )
    assert history == [(3, CLERK, "rolled back to version 1"), (2, CLERK, ""), (1, CLERK, "")]
    actions = [(e.action, e.target) for e in audit(app)]
    assert actions == [
        ("template saved", NAME),
        ("template saved", NAME),
        ("template rolled back", NAME),
    ]
    assert audit(app)[1].before == first and audit(app)[1].after == second
    # Back to the built-in text: the council's file goes.
    post(client, f"/templates/{NAME}/rollback", {"number": "0"}, f"/templates/{NAME}")
    assert not path.exists()


def test_a_hand_edit_on_the_server_is_kept_as_a_version_before_the_next_save(client, app):
    sign_in(client, CLERK)
    path = app.cfg.council.templates / NAME
    by_hand = wording.builtin_text(NAME).replace("Thank you", "Ta")
    path.write_text(by_hand)
    new = by_hand.replace("Ta", "Cheers")
    assert post(client, f"/templates/{NAME}", {"text": new, "action": "save"}).status_code == 302
    with app.sessions() as session:
        history = [(v.number, v.author, v.text) for v in wording.versions(session, NAME)]
    assert history == [(2, CLERK, new), (1, "(changed outside the console)", by_hand)]


def test_send_a_test_to_me_queues_the_saved_wording_without_touching_the_case(client, app):
    sign_in(client, CLERK)
    response = post(
        client, f"/templates/{NAME}/test", {"case": "ENQ-2026-00001"}, f"/templates/{NAME}"
    )
    assert response.status_code == 302
    with app.sessions() as session:
        [row] = session.scalars(select(OutboxMessage)).all()
        events = session.scalar(select(func.count()).select_from(CaseEvent))
    assert (row.kind, row.recipient, row.case_id, row.status) == ("test", CLERK, None, "pending")
    assert row.letter["template"] == "acknowledgement-enquiry"
    assert row.letter["extra"]["case"]["ref"] == "ENQ-2026-00001"
    assert events == 0


# --- policy --------------------------------------------------------------------------------


def test_bad_hours_are_refused_and_the_policy_file_is_left_alone(client, app):
    sign_in(client, CLERK)
    path = Path(app.cfg.council.policy)
    before = path.read_text()
    response = post(
        client,
        "/policy/hours",
        {
            "days": ["mon", "tue"],
            "opens": "17:00",
            "closes": "09:00",
            "closure_days": "12-24\nsoon",
        },
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "The office must close after it opens." in page
    assert "Line 2, &#39;soon&#39;" in page
    assert "12-24\nsoon" in page  # what was typed is still in the form
    assert path.read_text() == before
    assert audit(app) == []


def test_new_hours_are_saved_audited_and_used_at_once(client, app):
    sign_in(client, CLERK)
    path = Path(app.cfg.council.policy)
    before = path.read_text()
    response = post(
        client,
        "/policy/hours",
        {
            "days": ["mon", "tue", "wed", "thu"],
            "opens": "08:30",
            "closes": "16:00",
            "closure_days": "12-24",
        },
    )
    assert response.status_code == 302
    assert app.policy.business_hours.days == ["mon", "tue", "wed", "thu"]  # reloaded here
    assert app.policy.closure_days == ["12-24"]
    [entry] = audit(app)
    assert (entry.actor, entry.action) == (CLERK, "office hours and closure days changed")
    assert entry.before == before and entry.after == path.read_text()
    assert "Monday to Thursday, 8:30am to 4pm" in client.get("/policy").get_data(as_text=True)


def test_only_an_admin_edits_the_whole_policy_and_a_mistake_keeps_the_old_one(client, app):
    sign_in(client, CLERK)
    assert client.get("/policy/edit").status_code == 403
    client.post(
        "/sign-out", data={"csrf_token": token(client.get("/policy").get_data(as_text=True))}
    )
    sign_in(client, ADMIN)
    path = Path(app.cfg.council.policy)
    before = path.read_text()
    broken = before.replace('nation = "england"', 'nation = "mercia"', 1)
    response = post(client, "/policy/edit", {"text": broken})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    line = before[: before.index('nation = "england"')].count("\n") + 1
    assert f"policy.toml:{line}: nation:" in page
    assert "mercia" in page  # kept in the text box
    assert path.read_text() == before
    fixed = before.replace('welfare_alert_role = "duty-officer"', 'welfare_alert_role = "clerk"', 1)
    assert post(client, "/policy/edit", {"text": fixed}).status_code == 302
    assert path.read_text() == fixed
    assert app.policy.welfare_alert_role == "clerk"
    assert [e.action for e in audit(app)][-1] == "policy changed"


# --- reports, audit, users -----------------------------------------------------------------


def test_reports_for_a_period_with_downloads(client):
    sign_in(client, MANAGER)
    page = client.get("/reports?from=2026-11-01&to=2026-11-30").get_data(as_text=True)
    assert "1 November 2026 to 30 November 2026" in page
    csv = client.get("/reports/download?from=2026-11-01&to=2026-11-30&format=csv")
    assert csv.headers["Content-Disposition"].startswith("attachment;")
    rows = csv.get_data(as_text=True).splitlines()
    assert rows[0].startswith("category,stage,received")
    assert any(r.startswith("enquiry,1,1,") for r in rows)
    assert any(r.startswith("foi,1,1,") for r in rows)
    data = json.loads(
        client.get("/reports/download?from=2026-11-01&to=2026-11-30&format=json").data
    )
    assert (data["period_from"], data["period_to"]) == ("2026-11-01", "2026-11-30")
    assert data["total"]["received"] == 2
    shown = client.get("/reports/download?from=2026-11-01&to=2026-11-30&format=html&view=1")
    assert shown.headers["Content-Disposition"].startswith("inline;")
    # The report's own page: its inline styles and charts, still no script.
    assert "style-src 'unsafe-inline'" in shown.headers["Content-Security-Policy"]
    assert "script" not in shown.headers["Content-Security-Policy"]
    assert "<svg" in shown.get_data(as_text=True)
    bad = client.get("/reports?from=2026-11-30&to=2026-11-01")
    assert bad.status_code == 400
    assert "The end of the period must not be before its start." in bad.get_data(as_text=True)


def test_the_admin_reads_and_exports_the_audit_log(client, app):
    sign_in(client, ADMIN)
    post(
        client,
        "/cases/ENQ-2026-00001/act",
        {"action": "note", "note": "=1+1 rang the resident"},
        "/cases/ENQ-2026-00001",
    )
    page = client.get("/audit").get_data(as_text=True)
    assert "case action" in page and "ENQ-2026-00001" in page
    export = client.get("/audit.csv")
    assert export.headers["Content-Disposition"] == 'attachment; filename="mailbot-audit-log.csv"'
    lines = export.get_data(as_text=True).splitlines()
    assert lines[0] == "at,who,action,what,before,after"
    assert any(",case action,ENQ-2026-00001," in line for line in lines)


def test_the_admin_adds_a_user_and_the_user_can_sign_in(client, app):
    sign_in(client, ADMIN)
    short = post(
        client,
        "/users",
        {"email": "new@council.example.gov.uk", "role": "clerk", "password": "short"},
    )
    assert short.status_code == 400
    assert "too short: use at least 12 characters" in short.get_data(as_text=True)
    ok = post(
        client,
        "/users",
        {"email": "new@council.example.gov.uk", "role": "clerk", "password": PASSWORD},
    )
    assert ok.status_code == 302
    assert [(e.action, e.target) for e in audit(app)][-1] == (
        "user added",
        "new@council.example.gov.uk",
    )
    other = create_app(app, key=b"k" * 32).test_client()
    assert sign_in(other, "new@council.example.gov.uk").status_code == 302


def test_users_add_reads_the_password_from_a_file_never_an_argument(config, app, tmp_path, capsys):
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    args = ["--config", str(config), "users", "add"]
    assert (
        main(
            [
                *args,
                "Clerk2@Council.Example.gov.uk",
                "--role",
                "clerk",
                "--password-file",
                str(secret),
            ]
        )
        == 0
    )
    assert "added clerk2@council.example.gov.uk: clerk:" in capsys.readouterr().out
    client = create_app(app, key=b"k" * 32).test_client()
    assert sign_in(client, "clerk2@council.example.gov.uk").status_code == 302
    assert (
        main(
            [
                *args,
                "clerk2@council.example.gov.uk",
                "--role",
                "clerk",
                "--password-file",
                str(secret),
            ]
        )
        == 1
    )
    assert "already has a console account" in capsys.readouterr().err
    assert main([*args, "x@council.example.gov.uk", "--role", "clerk", "--password", PASSWORD]) == 1
    err = capsys.readouterr().err
    assert "passwords are never taken as arguments" in err
    assert PASSWORD not in err
    with pytest.raises(SystemExit) as exited:  # argparse's own refusal
        main([*args, "x@council.example.gov.uk", "--role", "king", "--no-password"])
    assert exited.value.code == 1
    secret.write_text("short\n")
    assert (
        main([*args, "y@council.example.gov.uk", "--role", "clerk", "--password-file", str(secret)])
        == 1
    )
    assert "too short" in capsys.readouterr().err


def test_the_clerk_releases_mail_held_as_spam(tmp_path, dovecot, smtp, database_url):
    config = with_console(council_config(tmp_path, dovecot, smtp, database_url))
    app = load(config)
    add_user(app, CLERK, Role.CLERK)
    uid = dovecot.append(
        resident_mail(message_id="<held@example.com>", headers={"X-Spam-Flag": "YES"})
    )
    run_once(app)
    assert to_residents(smtp) == []
    client = create_app(app, key=b"k" * 32).test_client()
    sign_in(client, CLERK)
    listed = client.get("/attention").get_data(as_text=True)
    assert f"Release {uid}" in listed
    assert "spam: marked as spam" in listed and "(X-Spam-Flag: YES)" in listed
    response = post(client, "/attention/release", {"message": str(uid)}, "/attention")
    assert response.status_code == 302
    [ack] = to_residents(smtp)
    assert ack.rcpt_tos == ["jane.doe@example.com"]
    ref = the_case_of(app).ref
    assert f"Released {uid} as {ref}" in client.get("/attention").get_data(as_text=True)
    assert f"Release {uid}" not in client.get("/attention").get_data(as_text=True)
    [entry] = audit(app)
    assert (entry.actor, entry.action, entry.target) == (CLERK, "held message released", str(uid))
    # Again: said, and nothing sent.
    post(client, "/attention/release", {"message": str(uid)}, "/attention")
    assert len(to_residents(smtp)) == 1


def the_case_of(app) -> Case:
    with app.sessions() as session:
        [case] = session.scalars(select(Case)).all()
        session.expunge(case)
        return case


def test_the_clerk_sends_a_refused_message_again_or_dismisses_it(
    tmp_path, dovecot, smtp, database_url
):
    config = with_console(council_config(tmp_path, dovecot, smtp, database_url))
    app = load(config)
    add_user(app, CLERK, Role.CLERK)
    for who in ("gone@example.com", "away@example.com"):
        dovecot.append(resident_mail(sender=who, message_id=f"<{who}>"))
        smtp.refuse_rcpt[who] = "550 5.1.1 Recipient address rejected: User unknown"
    run_once(app)
    assert to_residents(smtp) == []
    with app.sessions() as session:
        refused = session.scalars(select(OutboxMessage).where(OutboxMessage.status == "failed"))
        failed = {row.recipient: row.id for row in refused}
    gone, away = failed["gone@example.com"], failed["away@example.com"]
    client = create_app(app, key=b"k" * 32).test_client()
    sign_in(client, CLERK)
    listed = client.get("/attention").get_data(as_text=True)
    assert f"Send {gone} again" in listed and f"Dismiss {away}" in listed

    del smtp.refuse_rcpt["gone@example.com"]
    assert post(client, "/attention/resend", {"id": str(gone)}, "/attention").status_code == 302
    assert post(client, "/attention/dismiss", {"id": str(away)}, "/attention").status_code == 302
    run_once(app)
    assert [m.rcpt_tos for m in to_residents(smtp)] == [["gone@example.com"]]
    listed = client.get("/attention").get_data(as_text=True)
    assert f"Send {gone} again" not in listed and f"Dismiss {away}" not in listed
    assert [(e.action, e.target) for e in audit(app)] == [
        ("unsent message sent again", str(gone)),
        ("unsent message dismissed", str(away)),
    ]
    # A second click on a message that went is refused in words, and sends nothing.
    post(client, "/attention/resend", {"id": str(gone)}, "/attention")
    assert "it was sent" in client.get("/attention").get_data(as_text=True)
    run_once(app)
    assert len(to_residents(smtp)) == 1
