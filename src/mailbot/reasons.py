"""Reasons: why a message or a case was decided as it was — the rule that said so and what
it found, kept apart so that code reads the rule and never takes a sentence apart.

A clerk reads a reason as "rule: text" ("spam: marked as spam ... (X-Spam-Flag: YES)"),
the form every reason was stored in before migration 0014.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# What a rule's name looks like ("spam", "machine-sender", "RuntimeError"): an old
# string whose first part is not one ("acknowledgement to jane@example.com bounced: ...")
# had no rule, and that part must not be kept as if it were one (retention keeps rules).
_RULE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Reason:
    """One reason: `rule` is the screen rule, intake step or category that said so ("spam",
    "machine-sender", "welfare", "complaint", "historic", "error" ...), a name from a short
    list that never quotes the message; `text` is what it found, for a person, and may be
    empty. Retention keeps the rule and drops the text, which may quote the sender."""

    rule: str
    text: str = ""

    def __str__(self) -> str:
        if not self.rule:  # an old reason that named no rule
            return self.text
        return f"{self.rule}: {self.text}" if self.text else self.rule

    def to_json(self) -> dict[str, str]:
        return {"rule": self.rule, "text": self.text}

    @classmethod
    def read(cls, value: Any) -> Reason:
        """A reason as the database holds it: {"rule": ..., "text": ...}."""
        if isinstance(value, dict):
            return cls(str(value["rule"]), str(value.get("text") or ""))
        if isinstance(value, str):
            # Written before migration 0014 (or by hand since), as "rule: text". The one
            # place such a string is taken apart: the migration rewrites old rows with it.
            rule, _, text = value.partition(": ")
            if not _RULE_NAME.fullmatch(rule):
                return cls("", value)
            return cls(rule, text)
        raise TypeError(f"not a reason: {value!r}")


def first(reasons: Iterable[Reason] | None, *rules: str) -> Reason | None:
    """The first of `reasons` that one of `rules` gave, if any did."""
    return next((r for r in reasons or () if r.rule in rules), None)
