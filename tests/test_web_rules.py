"""The console's decisions, without a server: roles, the sign-in limit, settings, the
policy in words and its hours edit, template checks and diffs, the audit export."""

from __future__ import annotations

import os
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailbot.config import ConfigError, load_config
from mailbot.policy import PolicyError, parse_policy
from mailbot.web import policy_page, wording
from mailbot.web.accounts import FAILURES_PER_ACCOUNT, FAILURES_PER_ADDRESS, too_many
from mailbot.web.audit import to_csv
from mailbot.web.models import AuditEntry
from mailbot.web.roles import Can, Role, can, may_read_case
from tests.console import load, offline_config

STAFFORD = Path(__file__).resolve().parents[1] / "policies" / "stafford.toml"


@pytest.fixture
def app(tmp_path: Path):
    application = load(offline_config(tmp_path, f"sqlite:///{tmp_path / 'mailbot.db'}"))
    yield application
    application.engine.dispose()


# --- roles and the sign-in limit ------------------------------------------------------


def test_each_role_may_do_what_the_issue_gives_it_and_no_more():
    assert not any(can(Role.OFFICER, p) for p in Can)
    assert can(Role.CLERK, Can.EDIT_TEMPLATES) and can(Role.CLERK, Can.EDIT_HOURS)
    assert can(Role.CLERK, Can.ACT_ON_CASES) and can(Role.CLERK, Can.HANDLE_HELD)
    assert not can(Role.CLERK, Can.EDIT_POLICY) and not can(Role.CLERK, Can.MANAGE_USERS)
    assert can(Role.MANAGER, Can.READ_REPORTS) and can(Role.MANAGER, Can.SEE_ALL_CASES)
    assert not can(Role.MANAGER, Can.EDIT_TEMPLATES) and not can(Role.MANAGER, Can.ACT_ON_CASES)
    assert all(can(Role.ADMIN, p) for p in Can)


def test_an_officer_reads_only_the_cases_that_are_with_them():
    assert may_read_case(Role.OFFICER, "Sam@council.example.gov.uk", "sam@council.example.gov.uk")
    assert not may_read_case(Role.OFFICER, "sam@council.example.gov.uk", "alex@x.gov.uk")
    assert not may_read_case(Role.OFFICER, "sam@council.example.gov.uk", None)
    assert may_read_case(Role.MANAGER, "boss@council.example.gov.uk", "alex@x.gov.uk")


def test_sign_in_is_refused_from_the_fifth_failure_for_an_account_or_twentieth_for_a_browser():
    assert FAILURES_PER_ACCOUNT == 5 and FAILURES_PER_ADDRESS == 20
    assert not too_many(4, 19)
    assert too_many(5, 0)
    assert too_many(0, 20)


# --- settings -------------------------------------------------------------------------


def _config_with(tmp_path: Path, web: str) -> Path:
    path = offline_config(tmp_path, f"sqlite:///{tmp_path / 'mailbot.db'}")
    text = path.read_text().replace("[web]\nsecure_cookies = false\n", web, 1)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("web", "message"),
    [
        (
            '[web]\nlisten = "8080"\n',
            "line 23: web.listen: '8080' is not HOST:PORT (e.g. 127.0.0.1:8080)",
        ),
        (
            '[web]\nsecret = "hunter2"\n',
            "line 23: web.secret: secrets must not be in the config file; use secret_file",
        ),
        (
            '[web]\n[web.oidc]\nissuer = "http://login.example.com"\nclient_id = "x"\n'
            'client_secret_file = "s"\nallowed_domains = ["council.example.gov.uk"]\n',
            "web.oidc.issuer: must be an https:// address",
        ),
        (
            '[web]\n[web.oidc]\nissuer = "https://accounts.google.com"\nclient_id = "x"\n'
            'client_secret = "s"\nallowed_domains = ["council.example.gov.uk"]\n',
            "client_secret: secrets must not be in the config file",
        ),
        ("[web]\npasswords = false\n", "passwords: with passwords = false, add a [web.oidc]"),
    ],
)
def test_a_bad_web_table_is_one_line_naming_the_key(tmp_path, web, message):
    path = _config_with(tmp_path, web)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_listen_defaults_to_loopback_port_8080(tmp_path):
    cfg = load_config(_config_with(tmp_path, ""))
    assert cfg.web.address == ("127.0.0.1", 8080)
    assert cfg.web.secure_cookies is True  # behind the council's TLS proxy


# --- the policy in plain English, and the clerk's hours edit --------------------------


def test_the_policy_reads_as_promises_with_the_clause_each_cites(app):
    stages = {(s.category, s.number): s for s in policy_page.in_words(app)}
    foi = dict(stages["foi", 1].promises)
    assert foi["Respond"] == "within 20 working days"
    assert foi["Handled by"].endswith("(role foi-officer: Sam Patel)")
    assert "bank holidays in any part of the UK (FOIA s.10(6))" in foi["Working days"]
    assert stages["foi", 1].statute == "Freedom of Information Act 2000 s.10"
    complaint = dict(stages["complaint", 1].promises)
    assert complaint["Reminders to the officer"] == (
        "3 working days before the response date, 1 working day before the response date, "
        "on the due date"
    )
    assert complaint["Holding reply to the resident"] == (
        "1 working day before the response date, if the case is still open"
    )
    assert complaint["If the date is missed"] == "tell role head-of-service (Jordan Reid)"
    assert "LGSCO Complaint Handling Code 6.3-6.4" in stages["complaint", 1].clause
    assert policy_page.hours_in_words(app.policy) == "Monday to Friday, 9am to 5pm"
    assert policy_page.closure_day_in_words("12-24") == "24 December, every year"
    assert policy_page.closure_day_in_words("2026-12-29") == "Tuesday 29 December 2026"


def test_new_hours_and_closure_days_keep_every_comment_of_the_policy():
    text = STAFFORD.read_text()
    form = policy_page.HoursForm.read(
        ["mon", "tue", "wed", "thu"], "8:30", "16:00", "12-24\n\n2026-12-29\n"
    )
    assert form.problems() == {}
    edited = policy_page.with_hours(text, form)
    policy = parse_policy(edited)
    assert policy.business_hours.days == ["mon", "tue", "wed", "thu"]
    assert f"{policy.business_hours.opens:%H:%M}" == "08:30"
    assert policy.closure_days == ["12-24", "2026-12-29"]
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    assert comments and all(line in edited for line in comments)
    # Nothing else changed: the same categories and numbers as before.
    before, after = tomllib.loads(text), tomllib.loads(edited)
    assert before["categories"] == after["categories"]


@pytest.mark.parametrize(
    ("days", "opens", "closes", "closures", "field", "message"),
    [
        ([], "09:00", "17:00", "", "days", "Choose at least one day"),
        (["mon"], "9am", "17:00", "", "opens", "24-hour clock"),
        (["mon"], "17:00", "09:00", "", "closes", "must close after it opens"),
        (["mon"], "09:00", "17:00", "12-24\n31/12/2026", "closure_days", "Line 2, '31/12/2026'"),
        (["mon"], "09:00", "17:00", "02-30", "closure_days", "Line 1, '02-30'"),
    ],
)
def test_bad_hours_are_named_by_field(days, opens, closes, closures, field, message):
    problems = policy_page.HoursForm.read(days, opens, closes, closures).problems()
    assert list(problems) == [field]
    assert message in problems[field]


# --- templates: checks, diffs, versions -----------------------------------------------

ACK = '{% extends "_layout.txt" %}\n{% block body -%}\nDear {{ resident.name }},\n'


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("Thanks.\n{% if %}\n", 5, "Expected an expression"),
        ("Thanks.\n{{ case.reff }}\n", 5, "'case' has no field 'reff' (it has: acknowledge_by"),
        # Found though the sample data never enters the branch (reopening is None then).
        ("{% if reopening %}\n{{ residnet.name }}\n{% endif %}\n", 5, "unknown name 'residnet'"),
        (
            "{% if reopening %}{{ officer.mobile }}{% endif %}\n",
            4,
            "'officer' has no field 'mobile'",
        ),
        ("{{ ''.__class__.__mro__ }}\n", 4, "unsafe"),
    ],
)
def test_an_edit_that_would_not_render_is_refused_with_its_line(app, body, line, message):
    text = ACK + body + "{%- endblock %}\n"
    problems = wording.check(app, "acknowledgement-enquiry.txt", text)
    assert problems, "the edit was accepted"
    assert problems[0].file == "acknowledgement-enquiry.txt"
    assert problems[0].line == line
    assert message in problems[0].message


def test_the_shipped_templates_pass_the_checks_unchanged(app):
    for filename in wording.template_files():
        assert wording.check(app, filename, wording.builtin_text(filename)) == [], filename


def test_a_layout_edit_that_breaks_a_letter_is_refused(app):
    broken = wording.builtin_text("_layout.txt").replace("{{ case.ref }}", "{{ case.reference }}")
    problems = wording.check(app, "_layout.txt", broken)
    assert problems and all(p.file == "_layout.txt" for p in problems)
    assert "'case' has no field 'reference'" in problems[0].message


def test_a_file_the_console_does_not_know_is_not_editable(app):
    for name in ("../mailbot.toml", "acknowledgement-foi.py", "new-letter.txt"):
        with pytest.raises(wording.NotEditable):
            wording.check(app, name, "text")


def test_the_diff_shows_lines_added_and_removed():
    changes = wording.diff("Dear resident,\nThanks.\n", "Dear resident,\nMany thanks.\n")
    assert [(c.kind, c.text) for c in changes if c.kind in ("added", "removed")] == [
        ("removed", "-Thanks."),
        ("added", "+Many thanks."),
    ]


def test_the_preview_is_the_letter_as_the_resident_gets_it(app):
    text = wording.builtin_text("acknowledgement-foi.txt").replace(
        "Thank you for your request", "Thank you very much for your request"
    )
    shown = wording.preview(app, "acknowledgement-foi.txt", text, None)
    headers = dict(shown.headers)
    assert headers["To"] == "Jane Doe <jane.doe@example.com>"
    assert headers["Auto-Submitted"] == "auto-replied"
    assert headers["Subject"] == "Re: Spending on consultants [Ref: FOI-2026-00042]"
    assert "Thank you very much for your request" in shown.text
    assert "Thank you very much for your request" in shown.html
    assert '<body style="font-family' in shown.html  # the HTML part, as sent


def test_the_audit_export_shows_a_formula_as_text():
    row = AuditEntry(
        at=datetime(2026, 11, 3, 10, 0, tzinfo=UTC),
        actor="clerk@council.example.gov.uk",
        action="case action",
        target="ENQ-2026-00001",
        before='=HYPERLINK("http://evil")',
        after="+1",
    )
    lines = to_csv([row]).splitlines()
    assert lines[0] == "at,who,action,what,before,after"
    assert lines[1].endswith(",'+1")
    assert "'=HYPERLINK" in lines[1]


def test_a_policy_that_does_not_check_out_names_its_line(app):
    text = STAFFORD.read_text()
    foi = text.index("[categories.foi.stages.1]")
    text = text[:foi] + text[foi:].replace('"20 working days"', '"25 working days"', 1)
    line = text[: text.index('"25 working days"')].count("\n") + 1
    with pytest.raises(PolicyError) as caught:
        policy_page.check_text(app, text, "policy.toml")
    assert caught.value.line == line
    assert str(caught.value).startswith(f"policy.toml:{line}: categories.foi.stages.1.respond: ")
    assert "longer than statute" in str(caught.value)


def test_the_daemon_notices_a_change_to_the_policy_or_the_templates_folder(tmp_path):
    from mailbot.daemon import ChangeWatch

    policy, folder = tmp_path / "policy.toml", tmp_path / "templates"
    policy.write_text("a")
    folder.mkdir()
    watch = ChangeWatch((policy, folder))
    assert not watch.changed()  # how they are at the start
    assert not watch.changed()
    (folder / "acknowledgement-foi.txt").write_text("new")  # a file saved into the folder
    assert watch.changed()
    assert not watch.changed()  # once for each change
    os.utime(policy, ns=(1, 1))
    assert watch.changed()
    policy.unlink()
    assert watch.changed()
