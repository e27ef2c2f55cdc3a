"""The clerk's commands: templates check and preview, and the performance report."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from mailbot.cli import main
from mailbot.daemon import run_once
from tests.conftest import resident_mail

pytestmark = pytest.mark.integration


def override(config_path, folder) -> None:
    text = config_path.read_text()
    config_path.write_text(text.replace("[imap]", f'templates = "{folder}"\n\n[imap]', 1))


def test_templates_check_passes_on_the_shipped_templates(config_path, capsys):
    assert main(["--config", str(config_path), "templates", "check"]) == 0
    assert "every template renders" in capsys.readouterr().out


def test_templates_check_names_file_and_line_of_each_problem(config_path, tmp_path, capsys):
    folder = tmp_path / "ours"
    folder.mkdir()
    (folder / "acknowledgement-enquiry.txt").write_text(
        '{% extends "_layout.txt" %}{% block body %}\nDear {{ resident.nmae }}{% endblock %}'
    )
    (folder / "reminder.txt").write_text("{% if %}")
    (folder / "breach.txt").write_text("{{ ''.__class__.__mro__ }}")
    override(config_path, folder)

    assert main(["--config", str(config_path), "templates", "check"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"{folder}/acknowledgement-enquiry.txt:2: 'dict object' has no attribute 'nmae'",
        f"{folder}/breach.txt:1: access to attribute '__class__' of 'str' object is unsafe.",
        f"{folder}/reminder.txt:1: Expected an expression, got 'end of statement block'",
    ]


def test_templates_check_reports_costly_and_crashing_templates_with_exit_1(
    config_path, tmp_path, capsys
):
    folder = tmp_path / "ours"
    folder.mkdir()
    (folder / "acknowledgement-enquiry.txt").write_text("Dear {{ resident.name }}\n{{ 9**(9**9) }}")
    (folder / "holding.txt").write_text("{{ range(10**6)|list }}")
    (folder / "reminder.txt").write_text('{% include "reminder.txt" %}')
    override(config_path, folder)

    for command in (["templates", "check"], ["check"]):
        assert main(["--config", str(config_path), *command]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert f"{folder}/acknowledgement-enquiry.txt:2: a number too large for a letter" in err
    # `templates check` lists every problem, one a line
    main(["--config", str(config_path), "templates", "check"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"{folder}/acknowledgement-enquiry.txt:2: a number too large for a letter (over 4096 bits)",
        f"{folder}/holding.txt:1: Range too big. The sandbox blocks ranges larger than "
        "MAX_RANGE (100000).",
        f"{folder}/reminder.txt:1: the template includes or calls itself without end",
    ]


def test_a_template_that_fails_at_sending_time_falls_back_and_tells_the_clerk(
    app, config_path, dovecot, smtp, tmp_path
):
    from mailbot.app import App
    from mailbot.config import load_config
    from tests.conftest import to_residents

    folder = tmp_path / "ours"
    folder.mkdir()
    # Passes `templates check` (the sample subject is short) and fails on a real one.
    (folder / "acknowledgement-enquiry.txt").write_text(
        '{% extends "_layout.txt" %}{% block body %}\n'
        "{{ 10 ** (case.subject|length * 1000) }}{% endblock %}"
    )
    override(config_path, folder)
    ours = App.load(load_config(config_path), app.clock)
    dovecot.append(resident_mail(), when=datetime(2026, 11, 3, 9, 30, tzinfo=UTC))
    run_once(ours)

    [ack] = to_residents(smtp)
    assert ack.rcpt_tos == ["jane.doe@example.com"]
    assert "you will have a full reply by" in ack.text()  # the built-in wording
    [told] = [
        m
        for m in smtp.to("chris.lee@council.example.gov.uk")  # the clerk
        if m.message["Subject"].startswith("A template")
    ]
    assert told.message["Subject"].startswith("A template needs fixing: acknowledgement-enquiry")
    assert f"{folder}/acknowledgement-enquiry.txt:2: a number too large" in told.text()
    ours.engine.dispose()


def test_preview_prints_the_exact_message_for_a_real_case(app, config_path, dovecot, capsys):
    dovecot.append(resident_mail(), when=datetime(2026, 11, 3, 9, 30, tzinfo=UTC))
    run_once(app)
    capsys.readouterr()
    args = ["--config", str(config_path), "templates", "preview", "reminder"]
    assert main([*args, "--case", "ENQ-2026-00001", "--now", "2026-11-06T10:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert "To: Alex Morgan <alex.morgan@council.example.gov.uk>" in out or (
        "To: alex.morgan@council.example.gov.uk" in out
    )
    assert (
        "Subject: Reminder: reply due Tuesday 10 November 2026: Pothole on Mill Lane "
        "[Ref: ENQ-2026-00001]" in out
    )
    assert "Auto-Submitted: auto-generated" in out
    assert main(["--config", str(config_path), "templates", "preview", "nonsense"]) == 1


def test_report_in_every_format(app, config_path, dovecot, tmp_path, capsys):
    dovecot.append(resident_mail(), when=datetime(2026, 11, 3, 9, 30, tzinfo=UTC))
    run_once(app)
    base = ["--config", str(config_path), "report", "--from", "2026-11-01", "--to", "2026-11-30"]
    capsys.readouterr()

    assert main([*base, "--format", "json", "--now", "2026-11-20T12:00:00Z"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert json.dumps(data).count("ENQ-2026-00001") == 1  # the one breach listed

    out = tmp_path / "q4.csv"
    assert main([*base, "--format", "csv", "--output", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert rows and (tmp_path / "q4.breaches.csv").exists()

    html = tmp_path / "q4.html"
    assert main([*base, "--output", str(html)]) == 0
    assert html.read_text().startswith("<!DOCTYPE html>")

    assert main([*base[:3], "--from", "2026-12-01", "--to", "2026-11-01"]) == 1
    assert "--to is before --from" in capsys.readouterr().err


def test_a_template_broken_while_running_never_stops_acknowledgements(
    config_path, dovecot, smtp, tmp_path, clock
):
    from mailbot.app import App
    from mailbot.config import load_config
    from tests.conftest import to_residents

    folder = tmp_path / "ours"
    folder.mkdir()
    ours = folder / "acknowledgement-enquiry.txt"
    ours.write_text(
        '{% extends "_layout.txt" %}{% block body %}Our own words for {{ case.ref }}.{% endblock %}'
    )
    override(config_path, folder)
    app = App.load(load_config(config_path), clock)
    arrived = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
    dovecot.append(resident_mail(message_id="<a@x>"), when=arrived)
    run_once(app)
    assert to_residents(smtp)[0].text().startswith("Our own words for ENQ-2026-00001.")

    # The clerk saves a broken edit while the daemon runs: two more residents write.
    ours.write_text('{% extends "_layout.txt" %}{% block body %}{{ case.nmae }}{% endblock %}')
    for n, who in enumerate(["b@example.com", "c@example.com"]):
        dovecot.append(resident_mail(sender=who, message_id=f"<b{n}@x>"), when=arrived)
    run_once(app)
    later = to_residents(smtp)[1:]
    assert [m.rcpt_tos for m in later] == [["b@example.com"], ["c@example.com"]]
    assert all("Thank you for your email about" in m.text() for m in later)  # built-in
    [alert] = [
        m
        for m in smtp.to("chris.lee@council.example.gov.uk")
        if "template needs fixing" in str(m.message["Subject"])
    ]
    assert "acknowledgement-enquiry.txt:1: 'dict object' has no attribute 'nmae'" in alert.text()
    app.engine.dispose()


def test_purge_anonymises_long_closed_cases_and_keeps_the_figures(
    app, config_path, dovecot, capsys
):
    from sqlalchemy import select

    from mailbot.store import Case

    dovecot.append(resident_mail(), when=datetime(2026, 11, 3, 9, 30, tzinfo=UTC))
    run_once(app)
    with app.sessions.begin() as s:
        case = s.scalar(select(Case))
        case.status, case.closed_at = "closed", datetime(2019, 1, 1, tzinfo=UTC)
    args = ["--config", str(config_path), "purge", "--now", "2026-11-20T12:00:00Z"]
    capsys.readouterr()
    assert main([*args, "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("would anonymise 1 case(s)")
    with app.sessions() as s:
        assert s.scalar(select(Case.resident_email)) == "jane.doe@example.com"
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("anonymised 1 case(s)")
    with app.sessions() as s:
        case = s.scalar(select(Case))
        assert (case.resident_email, case.resident_name) == ("", "")
        assert (case.category, case.respond_by.isoformat()) == ("enquiry", "2026-11-10")
