"""Commands: the table of what officers can write on a line of their own (`#close`).

The table says each command's usage and help; officers.py has one function for each,
marked `@command("close")`. This is the only list: it decides which words are commands,
what the "unknown command" reply offers, what `#help` and the help at the foot of every
message to staff say, and the README's table (tests/test_commands.py checks it). The
help is data here, not beside each function, so that the letters that print it need not
import the code that sends them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Run = Callable[..., str]  # (app, session, case, argument, officer, now) -> what was done


@dataclass(frozen=True)
class Usage:
    usage: str  # "extend N why": the word and what follows it
    help: str  # what it does, in a clerk's words
    needs_case: bool = True  # every command acts on a case but #help

    @property
    def name(self) -> str:
        return self.usage.split()[0]


@dataclass(frozen=True)
class OfficerCommand:
    name: str
    usage: Usage
    run: Run


# In the order the help lists them.
TABLE: tuple[Usage, ...] = (
    Usage(
        "responded",
        "you have sent the full reply",
    ),
    Usage(
        "extend N why",
        "extend by N working days (months for a subject access request) where "
        "the policy allows; the resident is told why",
    ),
    Usage(
        "holding DATE why",
        "tell the resident the reply is delayed until DATE",
    ),
    Usage(
        "clarify QUESTION",
        "ask the resident QUESTION (stops the clock)",
    ),
    Usage(
        "outcome WORD",
        "the outcome: for a complaint upheld, partly-upheld or not-upheld; for "
        "an FOI or EIR response granted, partly-granted, refused or not-held, "
        "with the exemptions (refused s.40(2) s.43(2)); for a review upheld, "
        "partly-upheld or overturned",
    ),
    Usage(
        "escalate",
        "the next stage, or an FOI or EIR internal review",
    ),
    Usage(
        "identity WHAT",
        "ask a subject access requester for proof of identity (the month starts"
        " again when it arrives)",
    ),
    Usage(
        "fees AMOUNT",
        "send an FOI fees notice (the clock waits for payment)",
    ),
    Usage(
        "paid",
        "the fee has arrived (the clock starts again)",
    ),
    Usage(
        "category NAME",
        "re-categorise: enquiry, complaint, foi, eir, sar or compliment (new "
        "officer and dates; the resident is told)",
    ),
    Usage(
        "reassign EMAIL",
        "give the case to another officer",
    ),
    Usage(
        "note TEXT",
        "add a note to the case history",
    ),
    Usage(
        "language cy|en|both",
        "the resident's language for letters (Welsh councils)",
    ),
    Usage(
        "close",
        "close the case",
    ),
    Usage(
        "help",
        "these lines, sent back to you",
        needs_case=False,
    ),
)
USAGES: dict[str, Usage] = {u.name: u for u in TABLE}
REGISTRY: dict[str, OfficerCommand] = {}


def command(name: str) -> Callable[[Run], Run]:
    """Make the decorated function the command `name` of the table."""

    def register(run: Run) -> Run:
        if name not in USAGES or name in REGISTRY:
            raise ValueError(f"#{name} is not in commands.TABLE, or has two functions")
        REGISTRY[name] = OfficerCommand(name, USAGES[name], run)
        return run

    return register


def registered() -> list[Usage]:
    """Every command's usage, in the table's order."""
    return list(TABLE)


class HelpLines:
    """The commands for a template (`{% for c in commands %}`)."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter([{"usage": u.usage, "help": u.help} for u in TABLE])

    def __len__(self) -> int:
        return len(TABLE)


def help_text(width: int = 20) -> str:
    """The commands as `#help` lists them: usage, then help, one a line."""
    return "\n".join(f"  {u.usage:<{width}}{u.help}" for u in TABLE)
