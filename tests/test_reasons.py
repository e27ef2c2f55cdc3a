"""Reasons: the rule that said so and what it found, kept apart, read as a clerk reads them."""

from __future__ import annotations

import pytest

from mailbot.reasons import Reason, first
from mailbot.store import ReasonList

SPAM = "marked as spam, phishing or forged by the council's mail servers (X-Spam-Flag: YES)"


def test_a_reason_reads_as_its_rule_then_what_it_found():
    assert str(Reason("spam", SPAM)) == f"spam: {SPAM}"
    assert str(Reason("complaint", "2 points")) == "complaint: 2 points"
    assert str(Reason("bounce-sender")) == "bounce-sender"  # as retention leaves it


def test_a_reason_is_stored_as_an_object_and_read_back():
    reason = Reason("welfare", 'phrase "lives alone" in body')
    assert reason.to_json() == {"rule": "welfare", "text": 'phrase "lives alone" in body'}
    assert Reason.read(reason.to_json()) == reason
    assert Reason.read({"rule": "sender-cap"}) == Reason("sender-cap", "")


@pytest.mark.parametrize(
    ("old", "rule", "text"),
    [
        (f"spam: {SPAM}", "spam", SPAM),  # the text's own ": " stays in the text
        ('welfare: phrase "lives alone" in body', "welfare", 'phrase "lives alone" in body'),
        ("complaint: 2 points", "complaint", "2 points"),
        ("RuntimeError: classifier fell over", "RuntimeError", "classifier fell over"),
        ("bounce-sender", "bounce-sender", ""),  # what retention kept
        ("arrived before start_from", "arrived before start_from", ""),
    ],
)
def test_a_string_from_before_migration_0014_reads_as_it_was_written(old, rule, text):
    reason = Reason.read(old)
    assert (reason.rule, reason.text) == (rule, text)
    assert str(reason) == old


@pytest.mark.parametrize("value", [None, 3, ["spam", "x"], {"text": "no rule"}])
def test_anything_else_is_not_a_reason(value):
    with pytest.raises((TypeError, KeyError)):
        Reason.read(value)


def test_first_is_the_first_reason_any_of_the_rules_gave():
    reasons = [Reason("auto-submitted", "a"), Reason("spam", "b"), Reason("spam", "c")]
    assert first(reasons, "spam") == Reason("spam", "b")
    assert first(reasons, "sender-cap", "auto-submitted") == Reason("auto-submitted", "a")
    assert first(reasons, "form") is None
    assert first(None, "spam") is None


def test_the_column_takes_reasons_only_and_reads_old_rows_too():
    column = ReasonList()
    stored = column.process_bind_param([Reason("loop", "x"), Reason("sender-cap")], None)
    assert stored == [{"rule": "loop", "text": "x"}, {"rule": "sender-cap", "text": ""}]
    with pytest.raises(TypeError):
        column.process_bind_param(["loop: x"], None)  # a producer still writing sentences
    assert column.process_result_value([{"rule": "loop", "text": "x"}, "spam: y"], None) == [
        Reason("loop", "x"),
        Reason("spam", "y"),
    ]
