"""Classify: which of the six kinds of case a resident's message is, by rules a clerk can read."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError, field_validator

from mailbot.categories import CATEGORIES, STATUTORY, Category
from mailbot.model import Model, Scored, model_text
from mailbot.quotation import parts
from mailbot.reasons import Reason
from mailbot.resources import builtin_dir

if TYPE_CHECKING:
    from mailbot.parse import ParsedMessage

# Points per piece of evidence. Kept here, not in the policy, so every council's
# decisions stay comparable; the base rules file explains them to the clerk.
ADDRESS_POINTS = 10  # sent to foi@ etc.: outweighs anything but a pile of other evidence
SUBJECT_TAG_POINTS = 4  # "FOI request" in the subject line
PATTERN_POINTS = 4  # patterns name the law or an unmistakable form of words
SUBJECT_PHRASE_POINTS = 2
BODY_PHRASE_POINTS = 1
ESCALATION_POINTS = 2  # asking to escalate is itself dissatisfaction: counts for complaint
# A rule's point is worth this much of the model's score. Cross-validated on the shared
# corpus (bench/results.md): the rules add about two points of accuracy to the model at
# 0.04-0.08, and an address (10 points) still outweighs the model's widest margins.
RULE_WEIGHT = 0.05
# "Doubt": the best two categories are this close (two rule points without a model). On
# the shared corpus, cross-validated, about one message in six is this close.
DOUBT_MARGIN = 0.1
# Ties, and doubt, go to the reading whose mistake costs the resident least (SPEC §4):
# their own data, then recorded information (FOI first: a request that turns out to be
# environmental keeps the same clock), then the resident's grievance, then a question (an
# enquiry taken for a compliment would go unanswered).
PROTECTIVE_ORDER: tuple[Category, ...] = ("sar", "foi", "eir", "complaint", "enquiry", "compliment")
# Only the resident's first words are scored: a 1 MB paste says nothing the first 50,000
# characters don't, and it keeps every rule's cost bounded.
MAX_SCORED_CHARS = 50_000
MAX_MATCHES = 50  # places one phrase is looked at, enough to tell if it stands on its own


def _no_blank(values: list[str]) -> list[str]:
    for value in values:
        if not value.strip():
            raise ValueError("an empty phrase would match every message")
    return values


# strict: a clerk's doubt_is_complaint = "yes" is an error, not quietly True.
class CategoryRules(BaseModel, extra="forbid", strict=True):
    """The evidence for one category."""

    phrases: list[str] = []
    patterns: list[str] = []
    subject_tags: list[str] = []
    addresses: list[str] = []

    _no_blank_phrases = field_validator("phrases", "subject_tags", "addresses")(_no_blank)

    @field_validator("patterns")
    @classmethod
    def _valid_patterns(cls, values: list[str]) -> list[str]:
        for value in values:
            compiled = _pattern(value)  # raises ValueError naming the pattern
            if compiled.search(""):
                raise ValueError(f"pattern {value!r} matches empty text, so every message")
        return values


class ClassificationRules(BaseModel, extra="forbid", strict=True):
    """A council's whole rule set: the base file plus its policy's [classification] table."""

    default: Category = "enquiry"
    doubt_is_complaint: bool = False
    categories: dict[Category, CategoryRules]
    welfare: list[str] = []
    escalation: list[str] = []

    _no_blank_phrases = field_validator("welfare", "escalation")(_no_blank)


WELFARE = "welfare"  # the rule of the reasons welfare wording gives (the duty officer's alert)


@dataclass(frozen=True)
class Classification:
    """The decision and, in plain words, why."""

    category: Category
    reasons: tuple[Reason, ...]  # each given by a category (or the web form's topic)
    priority: Literal["normal", "high"]
    welfare_reasons: tuple[Reason, ...]  # rule WELFARE
    escalation_requested: bool
    doubt: tuple[Category, Category] | None = None  # the two too close to call
    text: str = ""  # what was read (model_text): kept with the case for corrections

    @property
    def triage(self) -> bool:
        """In doubt: a person should check the category (`mailbot cases --triage`)."""
        return self.doubt is not None


def base_rules_path() -> Path:
    return builtin_dir("policies") / "_classification.toml"


def load_rules(override: dict | None = None) -> ClassificationRules:
    """The base rules merged with a policy's raw [classification] table.

    Lists extend the base lists, scalars replace them. Any problem raises ValueError
    with one line naming the key, e.g. `classification.categories.foi.patterns: bad
    regular expression '(unclosed': ...`.
    """
    path = base_rules_path()
    try:
        base = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if override is not None:
        if not isinstance(override, dict):
            raise ValueError("classification: expected a table")
        base = _merge(base, override, "classification")
    try:
        return ClassificationRules.model_validate(base)
    except ValidationError as exc:
        raise ValueError(_one_line(exc)) from None


def _merge(base: dict[str, Any], extra: dict[str, Any], where: str) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        name = f"{where}.{key}"
        if key not in merged:
            merged[key] = value  # unknown keys are reported by validation, with their name
        elif isinstance(merged[key], list):
            if not isinstance(value, list):
                raise ValueError(f"{name}: expected a list, got {type(value).__name__}")
            merged[key] = [*merged[key], *(v for v in value if v not in merged[key])]
        elif isinstance(merged[key], dict):
            if not isinstance(value, dict):
                raise ValueError(f"{name}: expected a table, got {type(value).__name__}")
            merged[key] = _merge(merged[key], value, name)
        else:
            merged[key] = value
    return merged


def _one_line(exc: ValidationError) -> str:
    """The first validation error as one line a clerk can act on."""
    error = exc.errors()[0]
    # List positions are left out: after merging they count from the base file's list.
    keys = [str(part) for part in error["loc"] if isinstance(part, str) and part != "[key]"]
    name = ".".join(["classification", *keys])
    value = error.get("input")
    messages = {
        "extra_forbidden": "unknown key",
        "literal_error": f"{value!r} is not a category; expected one of {', '.join(CATEGORIES)}",
        "string_type": f"{value!r} is not text; put it in quotes",
        "bool_type": f"{value!r} should be true or false",
        "list_type": f"expected a list, got {type(value).__name__}",
        "dict_type": f"expected a table, got {type(value).__name__}",
    }
    message = messages.get(error["type"], error["msg"].removeprefix("Value error, "))
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{name}: {message}{more}"


@lru_cache(maxsize=4096)
def _pattern(source: str) -> re.Pattern[str]:
    try:
        return re.compile(source, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"bad regular expression {source!r}: {exc}") from None


@lru_cache(maxsize=8192)
def _phrase(phrase: str) -> re.Pattern[str]:
    """A phrase as a forgiving whole-word regex: any spacing or line break between words,
    hyphens optional ("fly-tipping", "fly tipping", "flytipping"), apostrophes optional
    ("don't", "dont", "don’t")."""
    out = []
    for char in phrase.strip():
        if char.isspace():
            if out and out[-1] != r"[\s\-]+":
                out.append(r"[\s\-]+")
        elif char == "-":
            out.append(r"[\s\-]?")
        elif char in "'’":
            out.append("['’]?")
        else:
            out.append(re.escape(char))
    return re.compile(r"(?<!\w)" + "".join(out) + r"(?!\w)", re.IGNORECASE)


@dataclass(frozen=True)
class _PhraseList:
    """One list of phrases, indexed by the letters every match of each must contain.

    Each run of letters in a phrase appears as it is in every match (only the spaces,
    hyphens and apostrophes between them vary), so the longest run, the rarest in
    ordinary mail, rules out most messages without running the regex at all. Where that
    run stands between spaces or at an end of the phrase, a match holds it as a whole
    word, so one set lookup per word of the message finds every candidate; where a hyphen
    or apostrophe joins it to the next ("flytipping", "dont") it may be part of a word,
    and a substring test is needed.
    """

    phrases: tuple[tuple[str, re.Pattern[str]], ...]  # in the list's order
    by_word: dict[str, tuple[int, ...]]  # whole word -> phrases (positions) that need it
    within_words: tuple[tuple[int, str], ...]  # (position, letters) tested as substrings

    def candidates(self, text: _Text) -> list[tuple[str, re.Pattern[str]]]:
        """The phrases that may occur in `text`, in the list's order."""
        found = [at for word in text.words.intersection(self.by_word) for at in self.by_word[word]]
        found += [at for at, letters in self.within_words if letters in text.lowered]
        return [self.phrases[at] for at in sorted(found)]


@lru_cache(maxsize=256)
def _compiled(phrases: tuple[str, ...]) -> _PhraseList:
    """A list of phrases made ready to search, once per list."""
    by_word: dict[str, list[int]] = {}
    within_words = []
    for at, phrase in enumerate(phrases):
        lowered = phrase.strip().lower()
        runs = list(_WORD.finditer(lowered))
        if not runs:
            within_words.append((at, ""))  # no letters to go on: always tried
            continue
        run = max(runs, key=lambda m: len(m.group(0)))
        joined = lowered[run.start() - 1 : run.start()] + lowered[run.end() : run.end() + 1]
        if any(mark in joined for mark in _JOINERS):
            within_words.append((at, run.group(0)))
        else:
            by_word.setdefault(run.group(0), []).append(at)
    return _PhraseList(
        phrases=tuple((p, _phrase(p)) for p in phrases),
        by_word={word: tuple(ats) for word, ats in by_word.items()},
        within_words=tuple(within_words),
    )


_WORD = re.compile(r"\w+")
_JOINERS = "-'’"  # optional in a match (see _phrase), so they can join two runs of letters


@dataclass(frozen=True)
class _Text:
    """A subject or body as the phrase search reads it: as written, lower-cased, and its
    words (worked out once per message, not once per phrase list)."""

    text: str
    lowered: str
    words: frozenset[str]

    @classmethod
    def of(cls, text: str) -> _Text:
        lowered = text.lower()
        return cls(text, lowered, frozenset(_WORD.findall(lowered)))


_SIGNATURE = re.compile(r"^--\s?$")
# Business and solicitors' footers talk of "personal data", "disclosure" and the Data
# Protection Act in every email they send; they are not the resident's request.
_DISCLAIMER = re.compile(
    r"^(?:disclaimer\b|confidentiality\s+notice\b|"
    r"this\s+e-?mail(?:\s+message)?\s+(?:and\s+any\s+(?:files|attachments)\s+)?"
    r"(?:transmitted\s+with\s+it\s+)?(?:is|are|may\s+be|contains?)\s+(?:strictly\s+)?"
    r"(?:confidential|privileged|intended))",
    re.IGNORECASE,
)
# "Thanks," or "Thank you for your help." opening or closing a line is manners, not a
# compliment, so it is taken off before scoring. "Thank you to the bin crew" is kept.
_MANNERS = re.compile(
    r"^(?:many\s+|big\s+|kind\s+)?(?:thanks|thank\s*you|thx|ta|cheers)"
    r"(?:\s+(?:so|very)\s+much)?(?:\s+(?:again|in\s+advance))?"
    r"(?:\s+for\s+(?:your|the|any)\s+(?:quick\s+|prompt\s+|kind\s+)?"
    r"(?:help|time|assistance|reply|response|email|message|letter)(?:\s+in\s+advance)?"
    r"|\s+for\s+getting\s+back\s+to\s+(?:me|us))?"
    r"(?:\s*[,.!]+|\s*$)",
    re.IGNORECASE,
)
_SUBJECT_NOISE = re.compile(
    r"\[Ref:\s*[A-Z]{3}-\d{4}-\d+\]|^\s*(?:(?:re|fwd?|aw|sv)\s*:\s*)+", re.IGNORECASE
)


def resident_text(text: str, own_address: str | None = None) -> str:
    """The resident's own words, for scoring.

    Left out: the council's earlier messages quoted in a reply (they say "Freedom of
    Information" and "complaint" in every acknowledgement), sign-off lines, signatures
    and disclaimers. Quotation is recognised as officers' replies are (mailbot.quotation),
    with one difference: the resident's own earlier message, quoted under "On ..., <their
    address> wrote:" or a header block naming them, is kept: "and again this week" means
    nothing without it.
    """
    own = (own_address or "").lower()
    kept: list[str] = []
    for part in parts(text[: MAX_SCORED_CHARS * 2]):
        if part.quoted and not (own and own in part.introduced_by.lower()):
            continue
        for line in part.lines:
            stripped = line.strip()
            if _SIGNATURE.match(line) or _DISCLAIMER.match(stripped):
                return "\n".join(kept)[:MAX_SCORED_CHARS]
            if manners := _MANNERS.match(stripped):
                line = stripped[manners.end() :]
            kept.append(line)
    return "\n".join(kept)[:MAX_SCORED_CHARS]


def _clean_subject(subject: str) -> str:
    return _SUBJECT_NOISE.sub(" ", subject).strip()


def _normalise(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2018", "'").replace("\xa0", " ")


@dataclass
class _Tally:
    category: Category
    points: int = 0
    strong: bool = False  # an address, subject tag or pattern: not "casual words"
    reasons: list[Reason] = field(default_factory=list)

    def add(self, points: int, found: str, *, strong: bool = False) -> None:
        self.points += points
        self.strong = self.strong or strong
        self.reasons.append(Reason(self.category, f"{found} (+{points})"))


@lru_cache(maxsize=256)
def _longer_phrases(phrases: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """For each phrase, the longer phrases in the same list that contain its words."""
    words = {p: " " + " ".join(re.sub(r"['’-]", " ", p.lower()).split()) + " " for p in phrases}
    return {
        p: tuple(q for q in phrases if len(words[q]) > len(words[p]) and words[p] in words[q])
        for p in phrases
    }


def _phrase_hits(phrases: list[str], subject: _Text, body: _Text) -> list[tuple[str, str]]:
    """(phrase, "subject"|"body") for each phrase found, each place counted once.

    A phrase found only inside a longer phrase that also matched is not counted again:
    "how do I make a complaint" is one piece of evidence, not that plus "how do I".
    """
    key = tuple(phrases)
    longer = _longer_phrases(key)
    compiled = _compiled(key)
    hits = []
    for where, text in (("subject", subject), ("body", body)):
        spans: dict[str, list[tuple[int, int]]] = {}
        for phrase, pattern in compiled.candidates(text):
            if found := [m.span() for m in islice(pattern.finditer(text.text), MAX_MATCHES)]:
                spans[phrase] = found
        hits += [(phrase, where) for phrase in _standing_alone(spans, longer)]
    return hits


def _standing_alone(
    spans: dict[str, list[tuple[int, int]]], longer: dict[str, tuple[str, ...]]
) -> list[str]:
    """The phrases found at least once outside every longer phrase also found."""
    alone = []
    for phrase, found in spans.items():
        outer = [span for q in longer[phrase] for span in spans.get(q, ())]
        if not all(any(a <= x and y <= b for a, b in outer) for x, y in found):
            alone.append(phrase)
    return alone


def scored_text(message: ParsedMessage) -> tuple[str, str]:
    """(subject, body) as the rules and the model read them: the subject without "Re:" or
    our reference, the body without quoted replies, signatures and manners."""
    subject = _normalise(_clean_subject(message.subject or ""))
    body = _normalise(resident_text(message.text or "", message.from_addr))
    return subject, body


def classify(
    message: ParsedMessage,
    rules: ClassificationRules,
    *,
    model: Model | None = None,
    mailbox_default: Category | None = None,
) -> Classification:
    """Score every category on the evidence in the message and pick the best.

    Every piece of evidence becomes a reason, so a clerk can see why a message landed
    where it did and which rule to edit if it was wrong. The rules' points and, when there
    is one, the trained model's score add up; where the best two are close, the
    protective reading wins and the case is flagged for triage.
    """
    subject, body = scored_text(message)
    tallies = _rule_tallies(message, rules, subject, body)
    scored = model.score(model_text(subject, body)) if model is not None else None
    category, reasons, doubt = _decide(tallies, rules, scored, mailbox_default)

    subject_words, body_words = _Text.of(subject), _Text.of(body)
    welfare = tuple(
        Reason(WELFARE, f'phrase "{phrase}" in {where}')
        for phrase, where in _phrase_hits(rules.welfare, subject_words, body_words)
    )
    escalation = bool(_phrase_hits(rules.escalation, subject_words, body_words))
    return Classification(
        category=category,
        reasons=tuple(reasons),
        priority="high" if welfare else "normal",
        welfare_reasons=welfare,
        escalation_requested=escalation,
        doubt=doubt,
        text=model_text(subject, body),
    )


def _rule_tallies(
    message: ParsedMessage, rules: ClassificationRules, subject: str, body: str
) -> dict[Category, _Tally]:
    """The policy's rules: points per category, each with its reason."""
    # Read once for the phrase search, which looks through them for every phrase list.
    subject_words, body_words, nothing = _Text.of(subject), _Text.of(body), _Text.of("")
    recipients = [a.lower() for a in (*message.to_addrs, *message.cc_addrs)]
    tallies = {category: _Tally(category) for category in CATEGORIES}
    environmental: list[str] = []
    for category, evidence in rules.categories.items():
        tally = tallies[category]
        for address in evidence.addresses:
            wanted = address.lower()
            for recipient in recipients:
                local = recipient.split("@")[0].split("+")[0]
                if recipient == wanted or local == wanted:
                    tally.add(ADDRESS_POINTS, f'sent to "{recipient}"', strong=True)
                    break
        for tag, _ in _phrase_hits(evidence.subject_tags, subject_words, nothing):
            tally.add(SUBJECT_TAG_POINTS, f'subject tag "{tag}"', strong=True)
        for source in evidence.patterns:
            pattern = _pattern(source)
            for where, text in (("subject", subject), ("body", body)):
                if found := pattern.search(text):
                    # The words that matched, not the regex: that is what a clerk recognises.
                    words = " ".join(found.group(0).split())[:60]
                    tally.add(PATTERN_POINTS, f'"{words}" in {where}', strong=True)
                    break
        for phrase, where in _phrase_hits(evidence.phrases, subject_words, body_words):
            if category == "eir":
                # Environmental subject matter alone (a tree, a flood) is not a request;
                # it decides FOI versus EIR once the message asks for information.
                environmental.append(f'environmental subject "{phrase}" in {where}')
                continue
            points = SUBJECT_PHRASE_POINTS if where == "subject" else BODY_PHRASE_POINTS
            tally.add(points, f'phrase "{phrase}" in {where}')

    for phrase, where in _phrase_hits(rules.escalation, subject_words, body_words):
        found = f'escalation wording "{phrase}" in {where}'
        tallies["complaint"].add(ESCALATION_POINTS, found)
    _environmental_requests(tallies, environmental)
    return tallies


def _ranking(tallies: dict[Category, _Tally]) -> list[Category]:
    """Categories that scored, most points first; ties in PROTECTIVE_ORDER (sorted() is stable)."""
    scored = [c for c in PROTECTIVE_ORDER if tallies[c].points > 0]
    return sorted(scored, key=lambda c: -tallies[c].points)


def _environmental_requests(tallies: dict[Category, _Tally], environmental: list[str]) -> None:
    """A request for information about the environment is an EIR request (EIR 2004 reg 2),
    even when the resident says "Freedom of Information". So once the message reads as a
    request for information (foi or eir is winning), environmental subjects count for
    EIR and the FOI evidence moves across with them."""
    ranking = _ranking(tallies)
    if not (environmental and ranking and ranking[0] in ("foi", "eir")):
        return
    foi, eir = tallies["foi"], tallies["eir"]
    for found in environmental:
        eir.add(BODY_PHRASE_POINTS, found)
    if foi.points:
        eir.add(foi.points, "it asks for information (the foi evidence counts here)")
        eir.strong = eir.strong or foi.strong


def _decide(
    tallies: dict[Category, _Tally],
    rules: ClassificationRules,
    scored: Scored | None,
    mailbox_default: Category | None,
) -> tuple[Category, list[Reason], tuple[Category, Category] | None]:
    """The category, the reasons (summary first) and, when in doubt, the two categories
    that were too close to call."""
    rule_reasons = [r for c in _ranking(tallies) for r in tallies[c].reasons]
    if not rule_reasons and (scored is None or mailbox_default is not None):
        # Nothing in the policy's rules: the council's own default for this mailbox wins
        # over a guess, and without a model there is nothing else to go on.
        default = mailbox_default or rules.default
        where = "the mailbox default" if mailbox_default else "the default category"
        return default, [Reason(default, f"no rule matched; {where}")], None

    total = {
        c: RULE_WEIGHT * tallies[c].points + (scored.scores.get(c, 0.0) if scored else 0.0)
        for c in CATEGORIES
    }
    # Without a model only the categories with evidence are in the running.
    running = [c for c in PROTECTIVE_ORDER if scored is not None or tallies[c].points > 0]
    ranking = sorted(running, key=lambda c: -total[c])
    winner, runner_up = ranking[0], (ranking[1] if len(ranking) > 1 else None)
    reasons = [_summary(ranking, total, tallies, scored), *rule_reasons]
    if scored is not None:
        words = ", ".join(f'"{t}"' for t in scored.strongest_terms(winner))
        reasons.append(Reason(winner, f"model's strongest words {words or '(none)'}"))

    if (
        runner_up is None
        or total[winner] - total[runner_up] > DOUBT_MARGIN + 1e-9  # 3 points - 1 is 2
        # Either way the law's 20-working-day clock runs, so nothing is at stake that a
        # person must settle at once; the environmental rules above tell them apart.
        or {winner, runner_up} == {"foi", "eir"}
    ):
        return winner, reasons, None
    protective = _protective(winner, runner_up, tallies, rules)
    doubt = Reason(
        protective,
        f"in doubt between {winner} ({total[winner]:.2f}) and {runner_up}"
        f" ({total[runner_up]:.2f}); {_why(protective, winner, rules)}; flagged for triage",
    )
    return protective, [doubt, *reasons], (winner, runner_up)


def _protective(
    first: Category, second: Category, tallies: dict[Category, _Tally], rules: ClassificationRules
) -> Category:
    """Of two categories too close to call, the one whose mistake costs the resident least
    (SPEC §4): a clock the law sets (their own data, recorded information) over one the
    council sets. A council whose policy says doubt is a complaint puts the grievance
    first, unless a statutory request is plain (an address, a subject tag, the Act named).
    Otherwise the better score stands, except over a compliment, and a person checks it
    (triage)."""
    pair = (first, second)
    if rules.doubt_is_complaint and "complaint" in pair:
        other = second if first == "complaint" else first
        if not (other in STATUTORY and tallies[other].strong):
            return "complaint"
    statutory = [c for c in pair if c in STATUTORY]
    if statutory:
        return min(statutory, key=PROTECTIVE_ORDER.index)
    # A question or grievance taken for thanks would go unanswered.
    return second if first == "compliment" else first


def _why(category: Category, first: Category, rules: ClassificationRules) -> str:
    if category == "complaint" and rules.doubt_is_complaint:
        return "this council's policy treats doubt as a complaint"
    if category in STATUTORY and category != first:
        return f"the protective reading is {category} (the law sets its clock)"
    if category != first:
        return f"{category}, not {first}: thanks need no answer, and this may"
    return f"{category} scored higher"


def _points(n: int) -> str:
    return f"{n} point" if n == 1 else f"{n} points"


def _summary(
    ranking: list[Category],
    total: dict[Category, float],
    tallies: dict[Category, _Tally],
    scored: Scored | None,
) -> Reason:
    """One line: the winner's score and how it was made, then the others'."""
    winner = ranking[0]
    if scored is None:
        behind = ", ".join(f"{c} {tallies[c].points}" for c in ranking[1:])
        then = f" (then {behind})" if behind else ""
        return Reason(winner, f"{tallies[winner].points} points{then}")
    behind = ", ".join(f"{c} {total[c]:.2f}" for c in ranking[1:3])
    return Reason(
        winner,
        f"score {total[winner]:.2f} (model {scored.scores[winner]:.2f},"
        f" rules {_points(tallies[winner].points)}); then {behind}",
    )
