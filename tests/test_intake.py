"""The intake chain decides each message without a server or a database: the facts it
reads are given here, and the first step that decides wins (chain.py's CHAIN)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from mailbot.config import ImapConfig
from mailbot.intake import CHAIN, Incoming, Outcome, Prepared, decide
from mailbot.mailbox import FetchedMessage
from mailbot.parse import parse_message
from mailbot.reasons import Reason
from mailbot.resident import Resident

START = datetime(2026, 11, 1, tzinfo=UTC)
RAW = b"From: Jane <jane@example.com>\r\nSubject: Bins\r\nMessage-ID: <a@b>\r\n\r\nHello\r\n"
README = Path(__file__).resolve().parents[1] / "README.md"
CASE = SimpleNamespace(ref="ENQ-2026-00001")
JANE = Resident("jane@example.com", "Jane", "From")


def incoming(*, arrived: datetime = START, sent: bool = False, reasons=()) -> Incoming:
    fetched = FetchedMessage("box/INBOX", 1, 7, arrived, len(RAW), RAW, False)
    box = ImapConfig(host="127.0.0.1", port=143, security="none")
    return Incoming(fetched, Prepared(parse_message(RAW), tuple(reasons)), box, START, sent)


def facts(**given) -> SimpleNamespace:
    """A new resident's message unless told otherwise."""
    known = dict(
        seen_before=False,
        ours=False,
        bounced=None,
        staff=None,
        resident=JANE,
        case=None,
        screened=(),
    )
    return SimpleNamespace(**{**known, **given})


def test_a_new_residents_message_opens_a_case():
    decided = decide(incoming(), facts())
    assert (decided.outcome, decided.step, decided.resident) == (
        Outcome.CASE_OPENED,
        "new-case",
        JANE,
    )


@pytest.mark.parametrize(
    ("situation", "given", "outcome", "reasons"),
    [
        ("historic", dict(arrived=datetime(2026, 10, 31, tzinfo=UTC)), "historic",
         (Reason("historic", "arrived before start_from"),)),
        ("duplicate", dict(seen_before=True), "duplicate",
         (Reason("duplicate", "already processed"),)),
        ("ours", dict(ours=True), "own-mail", (Reason("own-mail", "sent by mailbot"),)),
        ("a bounce of ours", dict(bounced="row"), "bounce", ()),
        ("staff", dict(staff="sam@council.example.gov.uk"), "staff", ()),
        ("sent folder", dict(sent=True), "staff-mail", (Reason("sent-folder", "not from staff"),)),
        ("follow-up", dict(case=CASE), "follow-up", ()),
        ("automatic follow-up", dict(case=CASE, screened=(Reason("loop", "x"),)), "follow-up",
         (Reason("loop", "x"),)),
        ("screened", dict(screened=(Reason("spam", "x"),)), "suppressed", (Reason("spam", "x"),)),
    ],
)  # fmt: skip
def test_each_step_decides_its_own_messages(situation, given, outcome, reasons):
    arrived = given.pop("arrived", START)
    sent = given.pop("sent", False)
    decided = decide(incoming(arrived=arrived, sent=sent), facts(**given))
    assert (decided.outcome, decided.reasons) == (outcome, reasons), situation


def test_the_first_step_wins():
    # Historic and a duplicate and ours and staff: historic, the first in the chain.
    old = incoming(arrived=datetime(2020, 1, 1, tzinfo=UTC))
    everything = facts(
        seen_before=True, ours=True, staff="sam@x", case=CASE, screened=(Reason("spam", "x"),)
    )
    assert decide(old, everything).step == "historic"
    assert decide(incoming(), replace_ns(everything, seen_before=False)).step == "own-mail"
    # Staff mail about a case is staff mail, not a resident's follow-up.
    staff = decide(incoming(), facts(staff="sam@x", case=CASE))
    assert (staff.step, staff.case) == ("staff", CASE)


def replace_ns(ns: SimpleNamespace, **changes) -> SimpleNamespace:
    return SimpleNamespace(**{**vars(ns), **changes})


def test_facts_not_needed_are_never_read():
    """A duplicate is decided without looking up its case or counting the caps."""

    class Tripwire(SimpleNamespace):
        def __getattribute__(self, name):
            if name in ("case", "screened", "staff", "resident"):
                raise AssertionError(f"read {name}")
            return super().__getattribute__(name)

    assert decide(incoming(), Tripwire(seen_before=True)).step == "duplicate"


def test_the_readme_tells_the_chain_as_the_code_runs_it():
    readme = README.read_text(encoding="utf-8")
    table = readme[readme.index("## What happens to a message") :]
    table = table[: table.index("\n\n", table.index("| step |"))]
    steps = re.findall(r"^\| `([a-z-]+)` \|", table, re.M)
    assert steps == [step.name for step in CHAIN]


def test_every_step_says_what_it_means():
    assert len({step.name for step in CHAIN}) == len(CHAIN)
    assert all(step.description for step in CHAIN)
    assert replace(CHAIN[0], name="x").name == "x"  # steps are plain data
