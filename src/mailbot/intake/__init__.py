"""Intake: what mailbot does with each message it reads.

    message.py   the message, as read and as prepared before the transaction
    facts.py     what may be looked up about it (read only)
    chain.py     the steps that decide it, in order: CHAIN
    apply.py     writing what was decided, and recording the message
    casework.py  the writing for a new case or a follow-up

pipeline.py reads the mailbox and runs each message through `decide` then `apply`.
"""

from mailbot.intake.apply import apply, record
from mailbot.intake.chain import CHAIN, Disposition, Outcome, Step, decide
from mailbot.intake.facts import Facts
from mailbot.intake.message import Incoming, Prepared

__all__ = [
    "CHAIN",
    "Disposition",
    "Facts",
    "Incoming",
    "Outcome",
    "Prepared",
    "Step",
    "apply",
    "decide",
    "record",
]
