"""Commands: the table of what officers can write on a line of their own (`#close`).

Each command is one function in officers.py, registered here by `@command` with its
usage and help. This table is the only list: it decides which words are commands, what
the "unknown command" reply offers, what `#help` and the help at the foot of every
message to staff say, and the README's table (tests/test_commands.py checks it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Run = Callable[..., str]  # (app, session, case, argument, officer, now) -> what was done


@dataclass(frozen=True)
class OfficerCommand:
    name: str  # the word after "#"
    usage: str  # "extend N why": the word and what follows it
    help: str  # what it does, in a clerk's words
    run: Run
    needs_case: bool = True  # every command acts on a case but #help


REGISTRY: dict[str, OfficerCommand] = {}


def command(usage: str, help: str, *, needs_case: bool = True) -> Callable[[Run], Run]:
    """Register the decorated function as the command `usage` names."""

    def register(run: Run) -> Run:
        name = usage.split()[0]
        if name in REGISTRY:
            raise ValueError(f"#{name} is registered twice")
        REGISTRY[name] = OfficerCommand(name, usage, help, run, needs_case)
        return run

    return register


def registered() -> list[OfficerCommand]:
    """Every command, in the order officers.py defines them (importing it registers them)."""
    import mailbot.officers  # noqa: F401 - registers the commands

    return list(REGISTRY.values())


class HelpLines:
    """The commands for a template (`{% for c in commands %}`), read when first used: the
    templates are loaded long before, and by processes that never read officers' mail."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter([{"usage": c.usage, "help": c.help} for c in registered()])

    def __len__(self) -> int:
        return len(registered())


def help_text(width: int = 20) -> str:
    """The commands as `#help` and the README list them: usage, then help, one a line."""
    return "\n".join(f"  {c.usage:<{width}}{c.help}" for c in registered())
