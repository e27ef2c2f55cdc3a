"""Classification: the rules one by one, hostile rule files, and the labelled corpus."""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbot.classify import (
    CATEGORIES,
    MAX_MATCHES,
    MAX_SCORED_CHARS,
    Classification,
    ClassificationRules,
    _longer_phrases,
    _phrase,
    _phrase_hits,
    _standing_alone,
    _Text,
    base_rules_path,
    classify,
    load_rules,
    resident_text,
)
from mailbot.parse import MAX_TEXT_CHARS, ParsedMessage, parse_message
from mailbot.reasons import Reason

CORPUS = Path(__file__).parent / "data" / "classify"
COUNCIL = "council.example.gov.uk"


def message(
    body: str,
    subject: str = "Hello",
    *,
    to: str = f"enquiries@{COUNCIL}",
    cc: str = "",
    sender: str = "resident@example.com",
) -> ParsedMessage:
    """A resident's email as the daemon would see it."""
    headers = [
        f"From: Resident <{sender}>",
        f"To: {to}",
        *([f"Cc: {cc}"] if cc else []),
        f"Subject: {subject}",
        "Date: Mon, 02 Mar 2026 09:00:00 +0000",
        "Message-ID: <test@example.com>",
        "Content-Type: text/plain; charset=utf-8",
    ]
    return parse_message(("\r\n".join(headers) + "\r\n\r\n" + body).encode())


@pytest.fixture(scope="module")
def rules() -> ClassificationRules:
    return load_rules()


@pytest.fixture(scope="module")
def stafford() -> ClassificationRules:
    return load_rules({"doubt_is_complaint": True})


def has_reason(result: Classification, text: str) -> bool:
    """Whether a reason says `text` (in part), as a clerk reads it ("foi: subject tag ...")."""
    return any(text in str(reason) for reason in result.reasons)


# --- the corpus --------------------------------------------------------------------------


def load_corpus() -> list[tuple[str, str, str]]:
    with open(CORPUS / "labels.csv", newline="", encoding="utf-8") as fh:
        return [(row["file"], row["category"], row["notes"]) for row in csv.DictReader(fh)]


def confusion_matrix(pairs: list[tuple[str, str]]) -> str:
    """Rows are the labels, columns what the rules said."""
    counts = Counter(pairs)
    width = max(len(c) for c in CATEGORIES) + 2
    lines = ["label \\ got".ljust(width) + "".join(c[:10].rjust(11) for c in CATEGORIES)]
    for label in CATEGORIES:
        row = "".join(str(counts[(label, got)] or ".").rjust(11) for got in CATEGORIES)
        total = sum(counts[(label, got)] for got in CATEGORIES)
        recall = counts[(label, label)] / total if total else 1.0
        lines.append(label.ljust(width) + row + f"   recall {recall:.0%} of {total}")
    return "\n".join(lines)


def test_corpus_is_labelled_and_well_formed():
    rows = load_corpus()
    files = {path.name for path in CORPUS.glob("*.eml")}
    assert {name for name, _, _ in rows} == files, "every .eml has one label and vice versa"
    assert len(rows) >= 100
    assert {category for _, category, _ in rows} == set(CATEGORIES)
    for name in files:
        parsed = parse_message((CORPUS / name).read_bytes())
        assert parsed.subject and parsed.text.strip() and parsed.from_addr, name
        assert parsed.message_id, name


def test_corpus_accuracy(rules):
    """Base rules (no "doubt is complaint") against every labelled email.

    The rules were written first. Batches 601-620, 701-720, 801-820 and 901-920 were then
    written one at a time and scored before any rule was tuned on them: 15/20, 13/20,
    11/20 and 13/20. So expect roughly two in three unseen emails right from the base
    rules alone; the misses taught the rules their wider vocabulary, and officers correct
    the rest with #category.
    """
    pairs: list[tuple[str, str]] = []
    misses: list[str] = []
    for name, label, notes in load_corpus():
        got = classify(parse_message((CORPUS / name).read_bytes()), rules)
        pairs.append((label, got.category))
        if got.category != label:
            misses.append(
                f"{name} ({notes}): {label} -> {got.category}: {'; '.join(map(str, got.reasons))}"
            )
    matrix = confusion_matrix(pairs)
    print(f"\n{matrix}\n" + "\n".join(misses))

    right = sum(label == got for label, got in pairs)
    accuracy = right / len(pairs)
    recall = {
        category: sum(1 for label, got in pairs if label == got == category)
        / sum(1 for label, _ in pairs if label == category)
        for category in CATEGORIES
    }
    report = f"accuracy {accuracy:.1%}\n{matrix}\n" + "\n".join(misses)
    assert accuracy >= 0.95, report
    assert recall["complaint"] >= 0.97, report
    assert recall["foi"] >= 0.97, report


# --- evidence and its reasons -------------------------------------------------------------


def test_address_decides_over_casual_words(rules):
    result = classify(message("Please see attached.", "Request", to=f"foi@{COUNCIL}"), rules)
    assert result.category == "foi"
    assert has_reason(result, f'foi: sent to "foi@{COUNCIL}"')


def test_address_in_cc_counts_and_plus_addressing_is_understood(rules):
    cc = classify(message("See attached", "Request", cc=f"FOI@{COUNCIL}"), rules)
    assert cc.category == "foi"
    plus = classify(message("See attached", "Request", to=f"foi+web@{COUNCIL}"), rules)
    assert plus.category == "foi"


def test_subject_tag_reason(rules):
    result = classify(message("how many empty homes are there", "FOI - empty homes"), rules)
    assert result.category == "foi"
    assert has_reason(result, 'foi: subject tag "FOI"')


def test_subject_tags_inside_a_longer_tag_count_once(rules):
    result = classify(message("Details below.", "Freedom of Information request"), rules)
    tags = [r for r in result.reasons if "subject tag" in r.text]
    assert tags == [Reason("foi", 'subject tag "freedom of information request" (+4)')]


def test_statute_pattern_reason_shows_the_words_not_the_regex(rules):
    body = "Under the Freedom of Information Act 2000 please send me the minutes."
    result = classify(message(body), rules)
    assert result.category == "foi"
    assert has_reason(result, 'foi: "Freedom of Information" in body')


def test_phrase_reasons_body_and_subject(rules):
    body = "This is the third time I've written. Nobody cares and it is totally unacceptable."
    result = classify(message(body, "Disgraceful service"), rules)
    assert result.category == "complaint"
    assert has_reason(result, 'complaint: "This is the third time" in body')
    assert has_reason(result, 'complaint: phrase "nobody cares" in body')
    assert has_reason(result, 'complaint: phrase "disgraceful" in subject')
    # "unacceptable" sits inside "totally unacceptable": one piece of evidence, not two
    assert has_reason(result, 'phrase "totally unacceptable"')
    assert not has_reason(result, 'phrase "unacceptable"')


def test_phrases_tolerate_line_breaks_hyphens_and_apostrophes(rules):
    body = "Nobody\n   cares. The fly tipping is still there. I dont know why."
    result = classify(message(body), rules)
    assert has_reason(result, 'phrase "nobody cares"')


def test_summary_reason_comes_first(rules):
    result = classify(message("Well done to the parks team, the flowers are brilliant."), rules)
    assert result.category == "compliment"
    assert result.reasons[0].rule == "compliment"
    assert "points" in result.reasons[0].text


def test_subject_access_request(rules):
    body = "Please send me a copy of all the personal data you hold about me."
    result = classify(message(body, "My data"), rules)
    assert result.category == "sar"
    assert has_reason(result, 'sar: "personal data you hold about me" in body')


def test_environmental_information_request_is_eir_even_when_it_says_foi(rules):
    body = "Under the Freedom of Information Act, please send the air quality readings for 2025."
    result = classify(message(body), rules)
    assert result.category == "eir"
    assert has_reason(result, 'eir: environmental subject "air quality" in body')
    assert has_reason(result, "eir: it asks for information")


def test_environmental_words_alone_are_not_a_request(rules):
    body = "The tree outside my house is blocking the light. Who is responsible for cutting it?"
    result = classify(message(body), rules)
    assert result.category == "enquiry"
    assert "eir" not in {reason.rule for reason in result.reasons}


def test_eir_named_outright(rules):
    body = "I request the following under the Environmental Information Regulations 2004."
    assert classify(message(body), rules).category == "eir"


def test_nothing_matched_gives_the_default_or_the_mailbox_default(rules):
    plain = classify(message("Hello", ""), rules)
    assert plain.category == "enquiry"
    assert plain.reasons == (Reason("enquiry", "no rule matched; the default category"),)
    mailbox = classify(message("Hello", ""), rules, mailbox_default="foi")
    assert mailbox.category == "foi"
    assert mailbox.reasons[0].rule == "foi" and "mailbox default" in mailbox.reasons[0].text
    # the mailbox default is only for when nothing matched
    complaint = classify(
        message("Totally unacceptable, nobody has replied."), rules, mailbox_default="foi"
    )
    assert complaint.category == "complaint"


def test_policy_default_applies(rules):
    custom = load_rules({"default": "complaint"})
    assert classify(message("Hello", ""), custom).category == "complaint"


def test_tie_goes_to_the_statutory_category(rules):
    custom = load_rules(
        {"categories": {"foi": {"phrases": ["zebra"]}, "complaint": {"phrases": ["giraffe"]}}}
    )
    result = classify(message("zebra giraffe", ""), custom)
    assert result.category == "foi"
    assert result.reasons[0].rule == "foi"
    assert result.reasons[0].text.startswith("in doubt between foi (0.05) and complaint (0.05)")
    assert result.doubt == ("foi", "complaint")


# --- quoted text -----------------------------------------------------------------------


ACK = (
    "On Mon, 2 Mar 2026 at 09:14, Council <enquiries@council.example.gov.uk> wrote:\n"
    "> Your complaint has been logged. Freedom of Information requests go to foi@.\n"
    "> Subject access requests: one calendar month.\n"
)


def test_quoted_acknowledgement_is_not_scored(rules):
    body = "Can you also tell me when the pool reopens?\n\n" + ACK
    result = classify(message(body, "Re: [Ref: FOI-2026-00042] Pool"), rules)
    assert result.category == "enquiry"
    assert not has_reason(result, "foi:")


def test_outlook_quote_is_not_scored():
    text = (
        "When is my bin day?\n\n-----Original Message-----\nFrom: Council\n"
        "Sent: 2 March 2026\nSubject: complaint\n\nYour FOI request is logged.\n"
    )
    assert resident_text(text).strip() == "When is my bin day?"
    outlook = "When?\n\nFrom: Council <a@b>\nSent: Monday\nTo: me\n\nFOI request logged.\n"
    assert resident_text(outlook).strip() == "When?"


def test_interleaved_reply_keeps_the_residents_lines():
    text = (
        "On Mon, Council <enquiries@council.example.gov.uk> wrote:\n> What is your address?\n"
        "It is 4 Mill Lane.\n> And your account number?\n40012345\n"
    )
    kept = resident_text(text)
    assert "4 Mill Lane" in kept and "40012345" in kept
    assert "What is your address" not in kept


def test_residents_own_quoted_message_still_counts(rules):
    body = (
        "and again this week.\n\n"
        "On Tue, 10 Mar 2026, Kev <kev@example.com> wrote:\n"
        "> Bins missed AGAIN. Three weeks running and nobody cares.\n"
    )
    result = classify(message(body, "Re: bins", sender="kev@example.com"), rules)
    assert result.category == "complaint"
    # the same words quoted from somebody else are not the resident's
    other = classify(message(body, "Re: bins", sender="someone.else@example.com"), rules)
    assert not has_reason(other, "nobody cares")


def test_signature_disclaimer_and_sign_off_are_not_scored():
    text = (
        "Thanks for your reply. Where do I send the form?\nThanks,\nMark\n\n"
        "This email and any attachments are confidential. We process personal data "
        "in accordance with the Data Protection Act 2018.\n"
    )
    kept = resident_text(text)
    assert "Data Protection" not in kept
    assert "Thanks" not in kept
    assert "Where do I send the form?" in kept
    assert "Mark" in kept
    assert resident_text("Question?\n-- \nJo Bloggs\nFOI officer, elsewhere").strip() == "Question?"


def test_thank_you_to_someone_is_kept_as_a_compliment(rules):
    result = classify(message("Thank you to the bin crew on Tuesday, they were brilliant."), rules)
    assert result.category == "compliment"


# --- welfare, escalation, doubt ---------------------------------------------------------


@pytest.mark.parametrize(
    "wording",
    [
        "I'm disabled and housebound",
        "we have no heating and a newborn",
        "honestly I feel suicidal",
        "my elderly mother living alone",
    ],
)
def test_welfare_wording_raises_priority(rules, wording):
    result = classify(message(f"The bins were missed. {wording}."), rules)
    assert result.priority == "high"
    assert result.welfare_reasons
    assert all(r.rule == "welfare" and r.text.startswith("phrase") for r in result.welfare_reasons)


def test_no_welfare_wording_is_normal_priority(rules):
    result = classify(message("When is my bin day?"), rules)
    assert result.priority == "normal"
    assert result.welfare_reasons == ()


def test_escalation_requested(rules):
    body = (
        "I am not satisfied with your response and want it reviewed. "
        "Please escalate my complaint to stage 2."
    )
    result = classify(message(body, "Re: my complaint"), rules)
    assert result.escalation_requested
    assert result.category == "complaint"
    assert has_reason(result, 'complaint: escalation wording "stage 2" in body')


def test_no_escalation_in_an_ordinary_complaint(rules):
    result = classify(message("My bin was missed again. Not good enough."), rules)
    assert not result.escalation_requested


BORDERLINE = "Where can I find out when my bin day is? Your website is useless."


def test_doubt_is_complaint_flips_a_borderline_message(rules, stafford):
    plain = classify(message(BORDERLINE), rules)
    assert plain.category == "enquiry"
    doubtful = classify(message(BORDERLINE), stafford)
    assert doubtful.category == "complaint"
    assert "treats doubt as a complaint" in doubtful.reasons[0].text


def test_doubt_does_not_take_a_clear_statutory_request(stafford):
    body = "Under the Freedom of Information Act, how much did the council spend? Useless."
    assert classify(message(body), stafford).category == "foi"


def test_doubt_needs_some_complaint_evidence(stafford):
    assert classify(message("When is my bin day?"), stafford).category == "enquiry"


# --- loading and merging rules ------------------------------------------------------------


def test_base_rules_file_loads_and_covers_every_category():
    assert base_rules_path().name == "_classification.toml"
    base = load_rules()
    assert set(base.categories) == set(CATEGORIES)
    assert base.default == "enquiry" and base.doubt_is_complaint is False
    assert base.welfare and base.escalation


def test_policy_lists_extend_and_scalars_override():
    base = load_rules()
    merged = load_rules(
        {
            "doubt_is_complaint": True,
            "welfare": ["food parcel"],
            "categories": {"complaint": {"phrases": ["not impressed"]}},
        }
    )
    assert merged.doubt_is_complaint is True
    assert merged.welfare[: len(base.welfare)] == base.welfare
    assert merged.welfare[-1] == "food parcel"
    assert "not impressed" in merged.categories["complaint"].phrases
    assert merged.categories["complaint"].patterns == base.categories["complaint"].patterns
    assert merged.categories["foi"] == base.categories["foi"]


def test_empty_policy_table_is_the_base():
    assert load_rules({}) == load_rules()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            {"categories": {"foi": {"patterns": ["(unclosed"]}}},
            "classification.categories.foi.patterns: bad regular expression '(unclosed'",
        ),
        (
            {"categories": {"sar": {"patterns": ["a*"]}}},
            "classification.categories.sar.patterns: pattern 'a*' matches empty text",
        ),
        (
            {"categories": {"complaints": {"phrases": ["x"]}}},
            "classification.categories.complaints: 'complaints' is not a category",
        ),
        ({"default": "spam"}, "classification.default: 'spam' is not a category"),
        (
            {"doubt_is_complaint": "yes"},
            "classification.doubt_is_complaint: 'yes' should be true or false",
        ),
        (
            {"categories": {"foi": {"phrases": "FOI"}}},
            "classification.categories.foi.phrases: expected a list, got str",
        ),
        (
            {"categories": {"foi": {"phrases": [3]}}},
            "classification.categories.foi.phrases: 3 is not text",
        ),
        (
            {"categories": {"foi": {"colour": ["red"]}}},
            "classification.categories.foi.colour: unknown key",
        ),
        ({"colour": "red"}, "classification.colour: unknown key"),
        ({"categories": "foi"}, "classification.categories: expected a table, got str"),
        ({"welfare": ["  "]}, "classification.welfare: an empty phrase would match every message"),
        ({"escalation": ["fine", None]}, "classification.escalation: None is not text"),
    ],
)
def test_hostile_rules_give_one_clear_line(override, expected):
    with pytest.raises(ValueError) as caught:
        load_rules(override)
    text = str(caught.value)
    assert text.startswith(expected), text
    assert "\n" not in text


def test_not_a_table_at_all():
    with pytest.raises(ValueError, match="classification: expected a table"):
        load_rules(["foi"])  # type: ignore[arg-type]


# --- awkward input --------------------------------------------------------------------


def test_empty_subject_and_body(rules):
    result = classify(message("", ""), rules)
    assert result.category == "enquiry"
    assert result.priority == "normal"


def test_message_with_nothing_in_it_at_all(rules):
    bare = parse_message(b"")
    assert classify(bare, rules).category == "enquiry"


@pytest.mark.parametrize(
    "body",
    [
        "how do I complain about the bins missed again, nobody cares " * 17_000,
        "a" * 1_000_000,
        " " * 1_000_000,
        "\n" * 1_000_000,
        "> quoted\n" * 110_000,
        "On Monday\n" * 100_000,
        "fly-" * 250_000,
        "between 2020 " * 80_000,
        "(((((((((( " * 90_000,
    ],
    ids=[
        "words",
        "letters",
        "spaces",
        "newlines",
        "quotes",
        "on-wrote",
        "hyphens",
        "years",
        "brackets",
    ],
)
def test_only_the_start_of_a_one_megabyte_body_is_read(rules, body):
    """Hostile bodies built to make a pattern backtrack: parsing keeps at most
    MAX_TEXT_CHARS of a body and classifying reads at most MAX_SCORED_CHARS * 2 of that,
    so however long a message is, the work on it is bounded (bench/hostile.py times
    these same bodies)."""
    assert len(message(body).text) <= MAX_TEXT_CHARS
    cut = MAX_SCORED_CHARS * 2
    late = f"{body[: cut + 1000]} I wish to make a formal complaint. {body[cut + 1000 :]}"
    big = replace(message("Hello", "x" * 500), text=late[:MAX_TEXT_CHARS])
    complaint = replace(big, text="I wish to make a formal complaint.")
    assert classify(complaint, rules).category == "complaint"  # were it read
    assert classify(big, rules) == classify(replace(big, text=big.text[:cut]), rules)


def _every_phrase_list(rules: ClassificationRules) -> list[list[str]]:
    lists = [rules.escalation, rules.welfare]
    for evidence in rules.categories.values():
        lists += [evidence.phrases, evidence.subject_tags]
    return lists


def _hits_by_regex_alone(phrases: list[str], subject: str, body: str) -> list[tuple[str, str]]:
    """What _phrase_hits must find, with every phrase's regex run on every text."""
    key = tuple(phrases)
    longer = _longer_phrases(key)
    hits = []
    for where, text in (("subject", subject), ("body", body)):
        spans = {}
        for phrase in phrases:
            if found := [m.span() for m in _phrase(phrase).finditer(text)][:MAX_MATCHES]:
                spans[phrase] = found
        hits += [(phrase, where) for phrase in _standing_alone(spans, longer)]
    return hits


_RULES = load_rules()
_PHRASE_WORDS = sorted(
    {w for lst in _every_phrase_list(_RULES) for p in lst for w in re.findall(r"\w+", p)}
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(_PHRASE_WORDS),
            st.sampled_from([" ", "  ", "-", "'", "’", "\n", ".", ", ", "x", "É", "_"]),
            st.text(max_size=3),
        ),
        max_size=40,
    ),
    st.integers(min_value=0, max_value=2 * len(_every_phrase_list(_RULES)) - 1),
)
def test_the_word_index_finds_exactly_what_the_regexes_find(pieces, which):
    """The index only skips phrases that cannot match: running every regex finds the same."""
    text = "".join(pieces)
    phrases = _every_phrase_list(_RULES)[which // 2]
    subject, body = (text, text.upper()) if which % 2 else (text.title(), text)
    assert _phrase_hits(phrases, _Text.of(subject), _Text.of(body)) == _hits_by_regex_alone(
        phrases, subject, body
    )


def test_the_word_index_finds_words_joined_by_a_hyphen_or_apostrophe(rules):
    """ "fly-tipping" is also written "flytipping"; "don't" is written "dont"."""
    phrases = ["fly-tipping", "don't care", "bins"]
    found = _phrase_hits(phrases, _Text.of(""), _Text.of("Flytipping again; I dont care"))
    assert found == [("fly-tipping", "body"), ("don't care", "body")]
