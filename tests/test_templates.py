"""Templates: sandboxed, strict about variables, overridable, never stopping an acknowledgement."""

from __future__ import annotations

import os
import time
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


# -- a clerk's template cannot stop mail, however it goes wrong ---------------------------

COSTLY = [
    # arithmetic that would run for minutes or fill the memory
    ("{{ (9**(9**9)) % 7 }}", "a number too large for a letter"),
    ("{{ 2 ** 100000 }}", "a number too large for a letter"),
    ("{{ 'x' * 10**9 }}", "text longer than 200,000 characters"),
    ("{{ [1] * 10**9 }}", "a list of more than 100,000 items"),
    ("{{ '%999999999d' % 1 }}", "a width of 999999999 characters is too large"),
    ("{{ '%999999999d'|format(1) }}", "a width of 999999999 characters is too large"),
    ("{{ '{:>999999999}'.format(1) }}", "a width of 999999999 characters is too large"),
    ("{{ 'x'.center(10**9) }}", "the number 1000000000 is too large here"),
    ("{{ 'x'|center(10**9) }}", "the number 1000000000 is too large here"),
    # text that grows in one step from pieces that are each allowed
    ("{% set s = 'x' * 1000 %}{{ s.replace('x', s).replace('x', s) }}", "text longer than"),
    ("{% set s = 'x' * 1000 %}{{ (s|replace('x', s))|replace('x', s) }}", "text longer than"),
    ("{% set s = 'x' * 100000 %}{{ ''.join([s] * 100000) }}", "text longer than"),
    ("{% set s = 'x' * 100000 %}{{ ([s] * 100000)|join }}", "text longer than"),
    ("{% set s = 'x' * 100000 %}{{ s ~ s ~ s }}", "text longer than"),
    ("{% set s = 'x' * 100000 %}{{ s + s + s }}", "text longer than"),
    ("{% set s = 'x\\n' * 50000 %}{{ s|indent(100000) }}", "text longer than"),
    ("{% set s = '\t' * 10000 %}{{ s.expandtabs(100000) }}", "text longer than"),
    # a doubling that would fill the memory before any clock ran out
    (
        "{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        "text longer than",
    ),
    # loops: Jinja's own limit, and output without end
    ("{% for i in range(10**7) %}{% endfor %}", "Range too big"),
    # (the whole message is too long: no one line is to blame)
    ("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", "longer than 200,000 characters"),
    # Python errors of every kind, not only Jinja's
    ("{{ 1 / 0 }}", "ZeroDivisionError: division by zero"),
    ('{% include "acknowledgement-foi.txt" %}', "includes or calls itself without end"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "includes or calls itself without end"),
    ("{{ ''.translate({}) }}", "str.translate is not available"),
    ("{{ {'a': 1}|tojson }}", "No filter named 'tojson'"),
    ("{{ lipsum(10**5) }}", "'lipsum' is undefined"),
    ("{% set l = [] %}{{ l.append(1) }}", "unsafe"),
]


@pytest.mark.parametrize(("source", "complaint"), COSTLY)
def test_costly_or_failing_templates_are_problems_with_file_and_line(tmp_path, source, complaint):
    (tmp_path / "acknowledgement-foi.txt").write_text("Dear resident,\n" + source)
    templates = Templates(tmp_path)
    with pytest.raises(TemplateProblem) as caught:
        templates.render("acknowledgement-foi", CONTEXT)
    where = "" if "{% for i in range(100000) %}" in source else "2:"
    assert str(caught.value).startswith(f"{tmp_path}/acknowledgement-foi.txt:{where} ")
    assert complaint in str(caught.value)

    rendered, problem = templates.render_safe("acknowledgement-foi", CONTEXT)
    assert problem == str(caught.value)
    assert "Friday 18 December 2026" in rendered.text  # the built-in wording went instead


def test_a_template_that_runs_past_its_time_is_stopped(tmp_path):
    from mailbot.sandbox import Budget

    # Loops that write nothing and call nothing: only the loop itself can notice the
    # clock. No time is measured here: a budget of nothing stops it at its first turn.
    (tmp_path / "acknowledgement-foi.txt").write_text(
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
    )
    templates = Templates(tmp_path, budget=Budget(seconds=0))
    with pytest.raises(TemplateProblem, match=r"acknowledgement-foi\.txt:1: took longer than 0 s"):
        templates.render("acknowledgement-foi", CONTEXT)


def test_the_budget_leaves_ordinary_templates_alone(tmp_path):
    (tmp_path / "acknowledgement-foi.txt").write_text(
        '{% extends "_layout.txt" %}{% block body %}'
        "{% for word in case.subject.split() %}{{ loop.index }}. {{ word|upper }}\n{% endfor %}"
        "{{ '%-8s|' % 'ref' ~ case.ref }} {{ '{:>5}'.format(7) }} {{ 2 ** 10 }}"
        "{{ ', '.join(['a', 'b']) }} {{ 'x' * 3 }} {{ case.ref|replace('-', '/') }}"
        "{% endblock %}"
    )
    text = Templates(tmp_path).render("acknowledgement-foi", CONTEXT).text
    assert text.startswith("1. SPENDING\n2. <SCRIPT>ALERT(1)</SCRIPT>\n")
    assert "ref     |FOI-2026-00042     7 1024a, b xxx FOI/2026/00042" in text
    assert "large print" in text  # the shared layout, from the built-in folder


def test_a_template_that_ran_out_of_time_is_not_tried_again_until_it_changes(tmp_path):
    from mailbot.sandbox import Budget

    slow = tmp_path / "acknowledgement-foi.txt"
    slow.write_text("{% for a in range(100000) %}{% endfor %}")
    templates = Templates(tmp_path, budget=Budget(seconds=0))
    first = templates.render_safe("acknowledgement-foi", CONTEXT)
    assert "acknowledgement-foi.txt:1: took longer than" in (first[1] or "")
    templates.env.budget = Budget()  # time enough now, but the template is not tried again
    assert templates.render_safe("acknowledgement-foi", CONTEXT) == first

    slow.write_text("Fixed for {{ case.ref }}")  # the clerk corrects it
    os.utime(slow, ns=(time.time_ns() + 10**9,) * 2)
    rendered, problem = templates.render_safe("acknowledgement-foi", CONTEXT)
    assert (rendered.text, problem) == ("Fixed for FOI-2026-00042\n", None)
