"""The officers' commands come from one table (commands.py): what counts as a command,
the help in staff mail, the "unknown command" reply, #help and the README all read it."""

from __future__ import annotations

import re
from pathlib import Path

from mailbot.commandline import command_lines
from mailbot.commands import REGISTRY, help_text, registered
from mailbot.officers import Command, apply
from mailbot.templates import Templates

README = Path(__file__).resolve().parents[1] / "README.md"
STAFF_FOOT = "{% block body %}{% endblock %}"


def staff_help() -> str:
    layout = Templates().folders[-1] + "/_staff.txt"
    text = Path(layout).read_text(encoding="utf-8").replace(STAFF_FOOT, "")
    return (
        Templates()
        .env.from_string(text)
        .render(case={"ref": "ENQ-2026-00001"}, council={"name": "Council", "email": "e@x"})
    )


def test_every_command_is_in_the_help_of_staff_mail_and_none_is_a_command_line():
    text = staff_help()
    for usage in registered():
        assert re.search(rf"^  {re.escape(usage.usage)}\s", text, re.M), usage.usage
    assert command_lines(text) == []  # explaining them writes none


def test_the_readme_lists_exactly_the_registered_commands():
    readme = README.read_text(encoding="utf-8")
    listed = set(re.findall(r"^\s*\| `#([a-z-]+)", readme, re.M))
    assert listed == set(REGISTRY)


def test_unknown_and_help_replies_come_from_the_table():
    registered()
    unknown = apply(
        None, None, None, Command("frobnicate", "", "#frobnicate"), sender="a", now=None
    )
    assert not unknown.ok
    assert unknown.detail == "unknown command; known: #" + ", #".join(REGISTRY)
    helped = apply(None, None, None, Command("help", "", "#help"), sender="a", now=None)
    assert helped.ok
    assert helped.detail.endswith(help_text())
    assert "  close" in helped.detail and "  help" in helped.detail
