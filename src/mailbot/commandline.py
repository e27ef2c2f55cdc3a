"""The shape of a #command line: what an officer writes, and what mail to staff never holds.

An officer acts on a case with a line of its own such as `#close` or `#extend 10`.
Mail that mailbot sends to staff is quoted in their replies; should a client quote it in
a way quotation.py does not recognise, no line of it may read as a command. So staff
mail explains commands without writing any at the start of a line, and `defuse` breaks
any line that would still read as one (a resident's name or subject printed there).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# "#name" then, after a space, the argument: "#extend 10". "#close." or "#close)" is not
# a command, so a sentence that a client rewraps to start with "#close)" is not one.
COMMAND_LINE = re.compile(r"^[ \t]*#([A-Za-z][A-Za-z-]*)(?:[ \t]+(.*?))?[ \t]*$")
# What `defuse` writes before a line that would read as a command.
DEFUSED = "(#)"


@dataclass(frozen=True)
class CommandLine:
    name: str  # lower case
    argument: str
    line: str  # as written, stripped


def command_lines(text: str) -> list[CommandLine]:
    """Every line of `text` that is a command, first first."""
    found = []
    for raw in text.splitlines():
        match = COMMAND_LINE.match(raw)
        if match:
            found.append(
                CommandLine(match.group(1).lower(), (match.group(2) or "").strip(), raw.strip())
            )
    return found


def defuse(text: str) -> str:
    """`text` with each line that would read as a command made into one that does not."""
    return "\n".join(
        DEFUSED + line.lstrip(" \t")[1:] if COMMAND_LINE.match(line) else line
        for line in text.split("\n")
    )
