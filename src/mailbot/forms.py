"""Forms: a council web form's message, read for the resident who filled it in (SPEC §3, §6).

A form product mails the inbox from a no-reply address of its own; the resident is in
`Reply-To` or in a labelled field of the body. The labels are read from the text as a
person reads them, whatever the product's layout:

    Email address: jane@example.com           (text, or "<b>Email address:</b> ...")
    Email address<TAB>jane@example.com       (an HTML table's row: see parse.html_to_text)
    What is your email address?               (a heading with the answer below it,
                                               as GOV.UK Forms writes)
    jane@example.com
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from mailbot.classify import Category, Classification
from mailbot.config import FormConfig
from mailbot.parse import ParsedMessage, clean_text, valid_address
from mailbot.reasons import Reason
from mailbot.screen import is_machine_address

_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"'\\]+@[^\s<>()\[\],;:\"'\\]+")
_RULE_LINE = re.compile(r"^\s*(?:-{3,}|_{3,}|\*{3,}|={3,})\s*$")
_LOOK_AHEAD = 4  # lines after a label that its answer may be on (GOV.UK: a blank, then it)
TOPIC_RULE = "form-topic"  # the rule of the reasons the topic gives a category decision


@dataclass(frozen=True)
class FormSubmission:
    """What a configured form's message says about its resident."""

    form: str  # the form's name, as the clerk knows it
    resident: str | None  # the address to acknowledge; None when none is usable
    found_in: str  # where it was: "Reply-To" or 'field "Email address"'
    name: str  # the resident's name, from a name field ("" when there is none)
    topic: str | None  # the category field's answer
    category: Category | None  # what the topic maps to in [forms.categories]
    topic_reason: Reason | None  # the topic's part in the category decision
    no_resident: str = ""  # why no address is usable, when resident is None


def form_of(msg: ParsedMessage, forms: Sequence[FormConfig]) -> FormConfig | None:
    """The first [[forms]] entry whose sender (and subject pattern, if it has one) this
    message has."""
    for form in forms:
        if msg.from_addr != form.sender:
            continue
        if form.subject is None or _subject_pattern(form.subject).search(msg.subject):
            return form
    return None


@lru_cache(maxsize=256)
def _subject_pattern(source: str) -> re.Pattern[str]:
    return re.compile(source, re.IGNORECASE)


def read_form(
    msg: ParsedMessage, forms: Sequence[FormConfig], own_addresses: frozenset[str]
) -> FormSubmission | None:
    """A configured form's message read for its resident; None for any other message.

    The resident is Reply-To if that is a usable address, else the first usable address
    in a resident field, in the order the fields are configured. Usable: a valid address
    that is not the council's own or an officer's, not a robot's and not the form's.
    """
    form = form_of(msg, forms)
    if form is None:
        return None
    text = msg.text
    rejected: list[str] = []
    resident, found_in = None, ""
    candidates: list[tuple[str, str]] = []
    if msg.reply_to:
        candidates.append(("Reply-To", msg.reply_to))
    for label in form.resident_fields:
        found = field_value(text, label)
        if found is not None:
            candidates.append((f'field "{label}"', found))
    for where, value in candidates:
        address = _address_in(value)
        problem = _unusable(address, value, own_addresses, form.sender)
        if problem is None:
            resident, found_in = address, where
            break
        rejected.append(f"{where} {problem}")
    name = next(
        (clean_text(v, 100) for label in form.name_fields if (v := field_value(text, label))), ""
    )
    topic, category, topic_reason = _topic(form, text)
    no_resident = ""
    if resident is None:
        fields = ", ".join(form.resident_fields)
        why = "; ".join(rejected) if rejected else f"no Reply-To and no field {fields}"
        no_resident = f'form "{form.title}": {why}'
    return FormSubmission(
        form=form.title,
        resident=resident,
        found_in=found_in,
        name=name,
        topic=topic,
        category=category,
        topic_reason=topic_reason,
        no_resident=no_resident,
    )


def field_value(text: str, label: str) -> str | None:
    """The answer after the first line labelled `label` ("Email address", "Email
    address:", "What is your email address?"), on that line or the next one with text;
    None if no line has that label or no answer follows it."""
    pattern = _label_pattern(label)
    lines = text.split("\n")
    for index, line in enumerate(lines):
        found = pattern.match(line)
        if found is None:
            continue
        value = found.group(1).strip()
        if value:
            return value
        for following in lines[index + 1 : index + 1 + _LOOK_AHEAD]:
            following = following.strip()
            if not following:
                continue
            # A rule or another label: this field was left empty.
            if _RULE_LINE.match(following) or following.endswith(":"):
                break
            return following
    return None


@lru_cache(maxsize=256)
def _label_pattern(label: str) -> re.Pattern[str]:
    """A line that starts with the label: after it a ':' or a table cell's tab and the
    answer, or nothing (the answer is below). Bullets and '*' (required) are allowed."""
    words = label.strip().rstrip(" :?*").split()
    spelled = r"\s+".join(re.escape(word) for word in words)
    return re.compile(rf"^[\s>*#•\-]*{spelled}[\s?*]*(?::|\t|$)[\s:]*(.*)$", re.IGNORECASE)


def _address_in(value: str) -> str | None:
    found = _ADDRESS.search(value)
    return valid_address(found.group(0)) if found else None


def _unusable(
    address: str | None, value: str, own_addresses: frozenset[str], form_sender: str
) -> str | None:
    """Why an address cannot be the resident's, or None if it can."""
    if address is None:
        return f"{clean_text(value, 60)!r} is not an email address"
    if address in own_addresses:
        return f"{address} is the council's own address"
    if address == form_sender:
        return f"{address} is the form's own address"
    if is_machine_address(address):
        return f"{address} is a no-reply or robot address"
    return None


def _topic(form: FormConfig, text: str) -> tuple[str | None, Category | None, Reason | None]:
    if form.category_field is None:
        return None, None, None
    answer = field_value(text, form.category_field)
    if answer is None:
        reason = f'form "{form.title}" has no "{form.category_field}" answer; the rules decide'
        return None, None, Reason(TOPIC_RULE, reason)
    topic = clean_text(answer, 200)
    wanted = _folded(topic)
    category = next((c for t, c in form.categories.items() if _folded(t) == wanted), None)
    if category is None:
        reason = f'form "{form.title}" topic "{topic}" is not in its categories; the rules decide'
        return topic, None, Reason(TOPIC_RULE, reason)
    return topic, category, Reason(TOPIC_RULE, f'form "{form.title}" topic "{topic}" -> {category}')


def _folded(text: str) -> str:
    return " ".join(text.casefold().split())


def with_topic(decision: Classification, submission: FormSubmission) -> Classification:
    """The category decision for a form's message: its topic's category where the form
    maps it, else the classifier's (its welfare and escalation findings stand)."""
    if submission.topic_reason is None:
        return decision
    if submission.category is None:
        return replace(decision, reasons=(submission.topic_reason, *decision.reasons))
    # The resident chose the topic: no doubt for a person to settle.
    return replace(
        decision,
        category=submission.category,
        reasons=(
            submission.topic_reason,
            Reason(TOPIC_RULE, f"the classifier alone would say {decision.category}"),
        ),
        doubt=None,
    )
