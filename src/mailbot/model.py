"""Model: the trained half of classification, read from a file of numbers, with no
machine-learning library at run time.

scikit-learn trains it (`mailbot.training`, `mailbot classify train`); what it learns is a
linear model over the words and word pairs of a message, so scoring a message is a sum of
weights. Doing that sum here, exactly as scikit-learn's TfidfVectorizer and
RidgeClassifier would, keeps the daemon small (scikit-learn and SciPy cost tens of MB
once imported) and lets every decision name the words that weighed most.

A model is one or more layers whose scores add up: the one shipped in the package, and
the council's own, learnt from its officers' `#category` corrections
(`mailbot classify retrain`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = 1
SHIPPED = Path(__file__).resolve().parent / "data" / "classifier-model.json"
# scikit-learn's default token pattern: runs of two or more word characters.
_TOKEN = re.compile(r"(?u)\b\w\w+\b")
# Only the start of a message is scored: enough to tell, and a bounded cost.
MAX_MODEL_CHARS = 20_000


class ModelError(ValueError):
    """A model file that cannot be used, worded as one line naming the file."""


def model_text(subject: str, body: str) -> str:
    """What the model reads: the subject twice (it is the resident's own summary), then
    their words. Training and scoring both go through here."""
    return f"{subject}\n{subject}\n{body}"[:MAX_MODEL_CHARS]


@dataclass(frozen=True)
class Layer:
    """One linear model over word and word-pair frequencies (tf-idf)."""

    name: str
    vocabulary: dict[str, int]
    idf: tuple[float, ...]
    stop_words: frozenset[str]
    ngrams: tuple[int, int]
    categories: tuple[str, ...]
    coef: tuple[tuple[float, ...], ...]  # per category, per feature
    intercept: tuple[float, ...]
    examples: int
    terms: dict[int, str] = field(default_factory=dict, repr=False, compare=False)

    def features(self, text: str) -> dict[int, float]:
        """The message as scikit-learn's TfidfVectorizer(sublinear_tf=True) sees it:
        feature index -> weight, L2-normalised."""
        tokens = [t for t in _TOKEN.findall(text.lower()) if t not in self.stop_words]
        low, high = self.ngrams
        counts: Counter[str] = Counter()
        for n in range(low, high + 1):
            counts.update(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        weights = {
            self.vocabulary[term]: (1.0 + math.log(count)) * self.idf[self.vocabulary[term]]
            for term, count in counts.items()
            if term in self.vocabulary
        }
        norm = math.sqrt(sum(w * w for w in weights.values()))
        return {i: w / norm for i, w in weights.items()} if norm else {}

    def scores(self, features: dict[int, float]) -> dict[str, float]:
        return {
            category: self.intercept[at] + sum(w * self.coef[at][i] for i, w in features.items())
            for at, category in enumerate(self.categories)
        }

    def contributions(self, features: dict[int, float], category: str) -> dict[str, float]:
        """How much each word or pair in the message added to `category`'s score."""
        at = self.categories.index(category)
        terms = self._terms()
        return {terms[i]: w * self.coef[at][i] for i, w in features.items()}

    def _terms(self) -> dict[int, str]:
        if not self.terms:  # worked out once, the first time a decision needs its words
            object.__setattr__(self, "terms", {i: t for t, i in self.vocabulary.items()})
        return self.terms

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "examples": self.examples,
            "ngrams": list(self.ngrams),
            "stop_words": sorted(self.stop_words),
            "categories": list(self.categories),
            "vocabulary": self.vocabulary,
            "idf": [round(v, 6) for v in self.idf],
            "coef": [[round(v, 6) for v in row] for row in self.coef],
            "intercept": [round(v, 6) for v in self.intercept],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Layer:
        vocabulary = {str(k): int(v) for k, v in data["vocabulary"].items()}
        idf = tuple(float(v) for v in data["idf"])
        categories = tuple(str(c) for c in data["categories"])
        coef = tuple(tuple(float(v) for v in row) for row in data["coef"])
        intercept = tuple(float(v) for v in data["intercept"])
        low, high = (int(n) for n in data["ngrams"])
        size = len(idf)
        if sorted(vocabulary.values()) != list(range(size)):
            raise ValueError("the vocabulary does not number the features 0..n-1")
        if len(coef) != len(categories) or any(len(row) != size for row in coef):
            raise ValueError("the weights do not match the categories and vocabulary")
        if len(intercept) != len(categories) or not 1 <= low <= high <= 3:
            raise ValueError("bad intercepts or word-group sizes")
        return cls(
            name=str(data["name"]),
            vocabulary=vocabulary,
            idf=idf,
            stop_words=frozenset(str(w) for w in data["stop_words"]),
            ngrams=(low, high),
            categories=categories,
            coef=coef,
            intercept=intercept,
            examples=int(data.get("examples", 0)),
        )


@dataclass(frozen=True)
class Scored:
    """A message's score per category (layers added up) and the words behind each."""

    scores: dict[str, float]
    layers: tuple[tuple[Layer, dict[int, float]], ...]

    def ranking(self) -> list[str]:
        return sorted(self.scores, key=lambda c: -self.scores[c])

    def strongest_terms(self, category: str, n: int = 5) -> list[str]:
        """The words or pairs that pushed hardest towards `category`."""
        total: Counter[str] = Counter()
        for layer, features in self.layers:
            if category in layer.categories:
                total.update(layer.contributions(features, category))
        return [term for term, weight in total.most_common(n) if weight > 0]


@dataclass(frozen=True)
class Model:
    """The shipped layer, plus the council's own when it has one."""

    layers: tuple[Layer, ...]
    fingerprints: frozenset[str] = frozenset()  # the examples it was trained on (hashed)
    sources: tuple[str, ...] = ()

    def score(self, text: str) -> Scored:
        scores: dict[str, float] = {}
        seen = []
        for layer in self.layers:
            features = layer.features(text)
            seen.append((layer, features))
            for category, value in layer.scores(features).items():
                scores[category] = scores.get(category, 0.0) + value
        return Scored(scores, tuple(seen))

    def with_layer(self, layer: Layer | None) -> Model:
        """This model with the council's layer (replacing any it had)."""
        base = tuple(each for each in self.layers if each.name == "shipped")
        return Model(base + ((layer,) if layer else ()), self.fingerprints, self.sources)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "sources": list(self.sources),
            "fingerprints": sorted(self.fingerprints),
            "layers": [layer.to_json() for layer in self.layers],
        }


def read_model(path: Path = SHIPPED) -> Model:
    """The model in a file; ModelError (one line, naming the file) if it is unusable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the classifier model: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: the classifier model is not valid JSON: {exc}") from None
    return model_from_json(data, str(path))


def model_from_json(data: Any, where: str) -> Model:
    try:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a format-{FORMAT} mailbot classifier model")
        layers = tuple(Layer.from_json(each) for each in data["layers"])
        if not layers:
            raise ValueError("it has no layers")
        return Model(
            layers,
            frozenset(str(f) for f in data.get("fingerprints", ())),
            tuple(str(s) for s in data.get("sources", ())),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ModelError(f"{where}: the classifier model is damaged: {detail}") from None


def layer_from_json(text: str, where: str) -> Layer:
    """The council's layer as stored in the database."""
    try:
        return Layer.from_json(json.loads(text))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelError(f"{where}: the council's classifier layer is damaged: {exc}") from None


def fingerprint(text: str) -> str:
    """A short hash of a training text: enough to know a message was trained on, without
    keeping what it said."""
    return hashlib.sha256(" ".join(text.split()).lower().encode()).hexdigest()[:16]
