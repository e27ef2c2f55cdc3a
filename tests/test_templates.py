"""Templates: sandboxed, strict about variables, overridable, never stopping an acknowledgement."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbot.templates import TemplateProblem, Templates

CONTEXT = {
    "council": {"name": "Stafford Borough Council", "email": "council@example.gov.uk"},
    "case": {
        "ref": "FOI-2026-00042",
        "category": "foi",
        "category_name": "Freedom of Information request",
        "stage": 1,
        "subject": "Spending <script>alert(1)</script>",
        "received_on": "Friday 20 November 2026",
        "respond_by": "Friday 18 December 2026",
        "acknowledge_by": "Monday 23 November 2026",
        "priority": "normal",
    },
    "resident": {"name": "Jane Doe", "email": "jane@example.com"},
    "officer": {"name": "Sam Patel", "email": "sam@example.gov.uk", "phone": "01785 000000"},
    "stage": {"name": "Stage 1", "handler": "the FOI officer", "next_step": "Ask for a review."},
    "reopening": None,
}


def test_every_acknowledgement_renders_text_and_escaped_html():
    templates = Templates()
    for category in ("enquiry", "complaint", "foi", "eir", "sar", "compliment"):
        rendered = templates.render(f"acknowledgement-{category}", CONTEXT)
        assert "FOI-2026-00042" in rendered.text
        assert "large print" in rendered.text
        assert "Sam Patel" in rendered.text
        assert "<script>" not in rendered.html
    foi = templates.render("acknowledgement-foi", CONTEXT)
    assert "Friday 18 December 2026" in foi.text
    assert "&lt;script&gt;" in foi.html


def test_an_override_folder_replaces_only_the_files_it_holds(tmp_path: Path):
    (tmp_path / "acknowledgement-foi.txt").write_text(
        '{% extends "_layout.txt" %}{% block body %}Our own words for {{ case.ref }}.{% endblock %}'
    )
    templates = Templates(tmp_path)
    assert templates.render("acknowledgement-foi", CONTEXT).text.startswith(
        "Our own words for FOI-2026-00042."
    )
    assert "Thank you for your email" in templates.render("acknowledgement-enquiry", CONTEXT).text


@pytest.mark.parametrize(
    ("source", "complaint"),
    [
        ("{{ case.nonexistent }}", "has no attribute 'nonexistent'"),
        ("{{ misspelt }}", "'misspelt' is undefined"),
        ("{% if %}", "acknowledgement-foi.txt:1:"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe"),
    ],
)
def test_broken_or_hostile_templates_are_reported_with_file_and_line(tmp_path, source, complaint):
    (tmp_path / "acknowledgement-foi.txt").write_text(source)
    templates = Templates(tmp_path)
    with pytest.raises(TemplateProblem) as caught:
        templates.render("acknowledgement-foi", CONTEXT)
    assert "acknowledgement-foi.txt:" in str(caught.value)
    assert complaint in str(caught.value)

    # The daemon's path: the built-in template is used instead, and the problem returned.
    rendered, problem = templates.render_safe("acknowledgement-foi", CONTEXT)
    assert problem is not None
    assert "Friday 18 December 2026" in rendered.text


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Bins not collected", "Re: Bins not collected"),
        ("RE: Bins not collected", "RE: Bins not collected"),  # Outlook's reply
        ("Re:Bins", "Re:Bins"),
        ("AW: Mülltonne", "AW: Mülltonne"),  # a German client's reply
        ("Return of my deposit", "Re: Return of my deposit"),  # "Re" inside a word
        ("", "Your message to the council"),
    ],
)
def test_acknowledgement_subject_adds_one_re(subject: str, expected: str) -> None:
    from mailbot.letters import sample_case, subject_for

    case = sample_case("enquiry")
    case.subject = subject
    assert subject_for("acknowledgement", case) == expected
    assert subject_for("holding", case) == expected
