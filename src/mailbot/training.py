"""Training: build the classifier's model from labelled mail, and measure it honestly.

scikit-learn does the learning (a tf-idf of words and word pairs, and a ridge classifier:
a linear model that stays sensible on a few hundred examples); `mailbot.model` reads the
result without it. Imported only by `mailbot classify ...`, never by the daemon.

A labelled corpus is a folder with a `labels.csv` (`file,category,...`) and the messages
it names, beside it or in a `corpus/` folder: the shape of `shared/corpora/council-mail`.
"""

from __future__ import annotations

import csv
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailbot.classify import CATEGORIES, Category, Classification, scored_text
from mailbot.model import Layer, Model, fingerprint, model_text
from mailbot.parse import ParsedMessage, parse_message
from mailbot.store import Case, CategoryCorrection

# Chosen by cross-validation on the shared corpus (bench/results.md): words that occur in
# one message only teach nothing, and a firm ridge penalty keeps a few hundred examples
# from being learnt by heart.
MIN_MESSAGES_PER_TERM = 2
RIDGE_ALPHA = 3.0
# The council's own corrections are few; they nudge the shipped model rather than
# replace it, and one officer's odd correction cannot swing a category.
CORRECTION_ALPHA = 10.0
FOLDS = 5


class CorpusError(ValueError):
    """A labelled corpus that cannot be read, worded as one line naming the file."""


@dataclass(frozen=True)
class Example:
    """One labelled message, as the model reads it."""

    name: str  # where it came from, e.g. "council-mail/017.eml"
    category: Category
    text: str  # model_text(subject, body)
    message: ParsedMessage | None = None  # for evaluating the whole classifier, rules too

    @classmethod
    def of(cls, name: str, category: Category, message: ParsedMessage) -> Example:
        return cls(name, category, model_text(*scored_text(message)), message)


def read_corpus(folder: Path) -> list[Example]:
    """Every message a corpus's labels.csv names, labelled."""
    labels = folder / "labels.csv"
    messages = folder / "corpus" if (folder / "corpus").is_dir() else folder
    try:
        with labels.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        raise CorpusError(f"{labels}: no such file (a corpus needs a labels.csv)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CorpusError(f"{labels}: cannot read it: {exc}") from None
    if not rows or not {"file", "category"} <= set(rows[0]):
        raise CorpusError(f"{labels}: line 1: expected the columns file,category")
    examples = []
    for line, row in enumerate(rows, start=2):
        name, category = (row.get("file") or "").strip(), (row.get("category") or "").strip()
        if category not in CATEGORIES:
            raise CorpusError(
                f"{labels}: line {line}: {category!r} is not a category;"
                f" expected one of {', '.join(CATEGORIES)}"
            )
        path = messages / name
        if not name or "/" in name or not path.is_file():
            raise CorpusError(f"{labels}: line {line}: no message file {name!r} in {messages}")
        message = parse_message(path.read_bytes())
        examples.append(Example.of(f"{folder.name}/{name}", category, message))  # type: ignore[arg-type]
    return examples


def train_layer(examples: Sequence[Example], name: str = "shipped") -> Layer:
    """A tf-idf + ridge layer learnt from the examples."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
    from sklearn.linear_model import RidgeClassifier

    if len({e.category for e in examples}) < 2:
        raise CorpusError("training needs examples of at least two categories")
    vectorizer = TfidfVectorizer(
        ngram_range=(1, 2),
        sublinear_tf=True,
        stop_words=sorted(ENGLISH_STOP_WORDS),
        min_df=min(MIN_MESSAGES_PER_TERM, len(examples)),
    )
    matrix = vectorizer.fit_transform([e.text for e in examples])
    ridge = RidgeClassifier(alpha=RIDGE_ALPHA, class_weight="balanced")
    ridge.fit(matrix, [e.category for e in examples])
    coef, intercept = ridge.coef_, ridge.intercept_
    if len(ridge.classes_) == 2:  # scikit-learn keeps one row for two classes: +x for one, -x
        coef, intercept = [-coef[0], coef[0]], [-intercept[0], intercept[0]]
    return _layer(name, vectorizer, ridge.classes_, coef, intercept, len(examples))


def _layer(name: str, vectorizer: Any, classes: Any, coef: Any, intercept: Any, n: int) -> Layer:
    return Layer(
        name=name,
        vocabulary={str(k): int(v) for k, v in vectorizer.vocabulary_.items()},
        idf=tuple(float(v) for v in vectorizer.idf_),
        stop_words=frozenset(vectorizer.get_stop_words() or ()),
        ngrams=tuple(vectorizer.ngram_range),  # type: ignore[arg-type]
        categories=tuple(str(c) for c in classes),
        coef=tuple(tuple(float(v) for v in row) for row in coef),
        intercept=tuple(float(v) for v in intercept),
        examples=n,
    )


def train_model(examples: Sequence[Example], sources: Sequence[str]) -> Model:
    """The model to ship: one layer, and the fingerprints of what it learnt from (so an
    evaluation on the same messages knows to cross-validate)."""
    return Model(
        (train_layer(examples),),
        frozenset(fingerprint(e.text) for e in examples),
        tuple(sources),
    )


def train_corrections(base: Model, examples: Sequence[Example]) -> Layer:
    """The council's layer: what the shipped model got wrong on the council's own mail,
    learnt as a correction to its scores (ridge regression on the difference between the
    officers' category and the model's scores)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
    from sklearn.linear_model import Ridge

    if not examples:
        raise CorpusError("there are no corrections to learn from yet")
    categories = base.layers[0].categories
    vectorizer = TfidfVectorizer(
        ngram_range=(1, 2), sublinear_tf=True, stop_words=sorted(ENGLISH_STOP_WORDS)
    )
    matrix = vectorizer.fit_transform([e.text for e in examples])
    # RidgeClassifier's targets: +1 for the right category, -1 for the others.
    wanted = [[1.0 if c == e.category else -1.0 for c in categories] for e in examples]
    base_only = base.with_layer(None)
    have = [[base_only.score(e.text).scores[c] for c in categories] for e in examples]
    residual = [
        [w - h for w, h in zip(ws, hs, strict=True)] for ws, hs in zip(wanted, have, strict=True)
    ]
    # No intercept: a correction is about words, never a pull on every message alike.
    ridge = Ridge(alpha=CORRECTION_ALPHA, fit_intercept=False).fit(matrix, residual)
    zero = [0.0] * len(categories)
    return _layer("council", vectorizer, categories, ridge.coef_, zero, len(examples))


def corrected_examples(session: Session) -> list[Example]:
    """The council's own labelled mail: every case an officer re-categorised (or confirmed
    after triage), labelled with the category it has now. Cases whose text retention has
    removed are gone from here too."""
    rows = session.execute(
        select(Case.ref, Case.category, Case.scored_text)
        .where(
            Case.id.in_(select(CategoryCorrection.case_id)),
            Case.scored_text.is_not(None),
        )
        .order_by(Case.id)
    ).all()
    return [Example(ref, category, text) for ref, category, text in rows if category in CATEGORIES]


# --- measuring -----------------------------------------------------------------------


@dataclass
class Evaluation:
    """How often the classifier agreed with the labels, overall and per category."""

    method: str  # "cross-validated (5 folds)" or "the model as it is"
    pairs: list[tuple[Category, Category]] = field(default_factory=list)  # (label, got)
    misses: list[str] = field(default_factory=list)
    triage: int = 0  # decisions flagged as in doubt

    @property
    def accuracy(self) -> float:
        return sum(a == b for a, b in self.pairs) / len(self.pairs) if self.pairs else 0.0

    def recall(self, category: Category) -> float | None:
        got = [b for a, b in self.pairs if a == category]
        return sum(b == category for b in got) / len(got) if got else None

    def precision(self, category: Category) -> float | None:
        labels = [a for a, b in self.pairs if b == category]
        return sum(a == category for a in labels) / len(labels) if labels else None

    def to_json(self) -> dict[str, Any]:
        counts = Counter(self.pairs)
        return {
            "method": self.method,
            "messages": len(self.pairs),
            "accuracy": round(self.accuracy, 4),
            "triage": self.triage,
            "categories": {
                c: {
                    "messages": sum(1 for a, _ in self.pairs if a == c),
                    "precision": _rounded(self.precision(c)),
                    "recall": _rounded(self.recall(c)),
                }
                for c in CATEGORIES
            },
            # confusion[label][got]
            "confusion": {a: {b: counts[(a, b)] for b in CATEGORIES} for a in CATEGORIES},
            "misses": self.misses,
        }

    def report(self) -> str:
        counts = Counter(self.pairs)
        width = max(len(c) for c in CATEGORIES) + 2
        lines = [
            f"{len(self.pairs)} messages, {self.method}",
            f"accuracy {self.accuracy:.1%}; {self.triage} flagged for triage (in doubt)",
            "",
            "category".ljust(width) + "messages  precision  recall",
        ]
        for c in CATEGORIES:
            n = sum(1 for a, _ in self.pairs if a == c)
            lines.append(
                c.ljust(width)
                + f"{n:8}  {_percent(self.precision(c)):>9}  {_percent(self.recall(c)):>6}"
            )
        lines += ["", "confusion (rows: the label; columns: what mailbot said)"]
        lines.append("".ljust(width) + "".join(c[:10].rjust(11) for c in CATEGORIES))
        for a in CATEGORIES:
            lines.append(
                a.ljust(width) + "".join(str(counts[(a, b)] or ".").rjust(11) for b in CATEGORIES)
            )
        return "\n".join(lines)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


Classifier = Callable[[ParsedMessage, Model | None], Classification]


def evaluate(
    examples: Sequence[Example], classifier: Classifier, model: Model | None
) -> Evaluation:
    """The classifier, with this model as it is, on the examples."""
    result = Evaluation("the model as it is" if model else "the rules alone (no model)")
    for example in examples:
        _score(result, example, classifier, model)
    return result


def cross_validate(
    examples: Sequence[Example],
    classifier: Classifier,
    *,
    folds: int = FOLDS,
    seed: int = 0,
    also_train_on: Sequence[Example] = (),
) -> Evaluation:
    """Each example judged by a model that never saw it: the examples are split into
    `folds` parts (each category spread evenly) and each part is classified by a model
    trained on the others (plus `also_train_on`)."""
    parts = stratified_folds([e.category for e in examples], folds, seed)
    result = Evaluation(
        f"cross-validated ({folds} folds, each judged by a model that never saw it)"
    )
    for held_out in parts:
        train = [e for i, e in enumerate(examples) if i not in held_out] + list(also_train_on)
        model = train_model(train, ())
        for i in sorted(held_out):
            _score(result, examples[i], classifier, model)
    return result


def stratified_folds(labels: Sequence[str], folds: int, seed: int = 0) -> list[set[int]]:
    """Positions split into `folds` sets, each category dealt out evenly (round robin
    after a seeded shuffle, so the same seed gives the same folds)."""
    parts: list[set[int]] = [set() for _ in range(folds)]
    dealt = 0
    for category in sorted(set(labels)):
        members = [i for i, label in enumerate(labels) if label == category]
        random.Random(f"{seed}:{category}").shuffle(members)
        for i in members:
            parts[dealt % folds].add(i)
            dealt += 1
    return [part for part in parts if part]


def _score(
    result: Evaluation, example: Example, classifier: Classifier, model: Model | None
) -> None:
    assert example.message is not None, "evaluating needs the whole message"
    got = classifier(example.message, model)
    result.pairs.append((example.category, got.category))
    result.triage += got.triage
    if got.category != example.category:
        result.misses.append(f"{example.name}: {example.category} -> {got.category}")
