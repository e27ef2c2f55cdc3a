"""The trained half of classification: the shipped model, its file, its training and its
measurement. No servers: decisions and numbers only."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mailbot.classify import CATEGORIES, classify, load_rules
from mailbot.cli import main
from mailbot.model import (
    SHIPPED,
    Layer,
    Model,
    ModelError,
    fingerprint,
    model_from_json,
    read_model,
)
from mailbot.reasons import Reason
from mailbot.training import (
    MIN_MESSAGES_PER_TERM,
    RIDGE_ALPHA,
    CorpusError,
    Example,
    cross_validate,
    read_corpus,
    stratified_folds,
    train_corrections,
    train_layer,
)
from tests.test_classify import message

FIXTURES = Path(__file__).parent / "data" / "classify"
# Written by someone who had not seen the rules or the model; measured before the model
# learnt from them (81.9%, see the README), then added to its training.
NEW_FIXTURES = Path(__file__).parent / "data" / "classify-new"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "council-mail"


@pytest.fixture(scope="module")
def rules():
    return load_rules()


@pytest.fixture(scope="module")
def model():
    return read_model()


@pytest.fixture(scope="module")
def fixtures():
    return read_corpus(FIXTURES)


def shared_corpus() -> list[Example]:
    if not SHARED.is_dir():
        pytest.skip(f"the shared corpus is not here ({SHARED}): nothing to measure on")
    return read_corpus(SHARED)


# --- the scorer is scikit-learn's arithmetic, without scikit-learn ------------------------


def test_scores_are_exactly_what_scikit_learn_computes(fixtures):
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
    from sklearn.linear_model import RidgeClassifier

    layer = train_layer(fixtures)
    vectorizer = TfidfVectorizer(
        ngram_range=(1, 2),
        sublinear_tf=True,
        stop_words=sorted(ENGLISH_STOP_WORDS),
        min_df=MIN_MESSAGES_PER_TERM,
    )
    matrix = vectorizer.fit_transform([e.text for e in fixtures])
    ridge = RidgeClassifier(alpha=RIDGE_ALPHA, class_weight="balanced")
    ridge.fit(matrix, [e.category for e in fixtures])
    # Messages it learnt from and one it never saw, with words it does not know.
    texts = [e.text for e in fixtures[:40]] + ["Zebras\n\nquantum flux of the bins, please"]
    expected = ridge.decision_function(vectorizer.transform(texts))
    for text, row in zip(texts, expected, strict=True):
        got = layer.scores(layer.features(text))
        for category, value in zip(ridge.classes_, row, strict=True):
            assert got[category] == pytest.approx(value, abs=1e-9), (text[:40], category)


def test_the_shipped_model_covers_every_category_and_learnt_from_the_fixtures(model, fixtures):
    assert set(model.layers[0].categories) == set(CATEGORIES)
    assert [layer.name for layer in model.layers] == ["shipped"]
    assert {fingerprint(e.text) for e in fixtures} <= model.fingerprints


def test_the_shipped_model_is_what_the_documented_command_builds(tmp_path, fixtures):
    """`scripts/build-model` rebuilds src/mailbot/data/classifier-model.json from the
    shared corpus and the fixtures; a fixture added without rebuilding fails here."""
    shared_corpus()
    out = tmp_path / "model.json"
    args = ["classify", "train", "--corpus", str(SHARED), "--corpus", str(FIXTURES)]
    args += ["--corpus", str(NEW_FIXTURES)]
    assert main([*args, "--output", str(out)]) == 0
    rebuilt, shipped = json.loads(out.read_text()), json.loads(SHIPPED.read_text())
    assert rebuilt["fingerprints"] == shipped["fingerprints"]
    assert rebuilt["layers"][0]["vocabulary"] == shipped["layers"][0]["vocabulary"]
    assert rebuilt["layers"][0]["coef"] == shipped["layers"][0]["coef"]


# --- every decision says why ------------------------------------------------------------


def test_a_decision_names_the_models_strongest_words(rules, model):
    body = (
        "Please could you send me the number of parking fines issued in each ward in 2025, "
        "and the total income from them."
    )
    result = classify(message(body, "Parking fines by ward"), rules, model=model)
    assert result.category == "foi"
    assert result.reasons[0].rule == "foi" and result.reasons[0].text.startswith("score ")
    words = next(r for r in result.reasons if "model's strongest words" in r.text)
    assert words.rule == "foi" and words.text.startswith("model's strongest words \"")


def test_an_address_still_outweighs_the_model(rules, model):
    body = "My bins were missed again and nobody has called me back. Not good enough."
    result = classify(message(body, to="foi@council.example.gov.uk"), rules, model=model)
    assert result.category == "foi"
    assert any('sent to "foi@council.example.gov.uk"' in r.text for r in result.reasons)


def test_without_any_rule_the_mailbox_default_still_wins(rules, model):
    result = classify(message("Hello", "Hi"), rules, model=model, mailbox_default="sar")
    assert result.category == "sar"
    assert result.reasons == (Reason("sar", "no rule matched; the mailbox default"),)


# --- doubt ------------------------------------------------------------------------------


def handmade(weights: dict[str, dict[str, float]]) -> Model:
    """A one-word-each model: `weights[word][category]`, idf 1, no stop words."""
    words = sorted(weights)
    layer = Layer(
        name="shipped",
        vocabulary={w: i for i, w in enumerate(words)},
        idf=tuple(1.0 for _ in words),
        stop_words=frozenset(),
        ngrams=(1, 1),
        categories=CATEGORIES,
        coef=tuple(tuple(weights[w].get(c, 0.0) for w in words) for c in CATEGORIES),
        intercept=tuple(0.0 for _ in CATEGORIES),
        examples=0,
    )
    return Model((layer,))


def test_doubt_takes_the_statutory_reading_and_flags_triage(rules):
    # One word alone has weight 1 after normalising: complaint 0.30 against sar 0.25.
    model = handmade({"zebra": {"complaint": 0.30, "sar": 0.25, "enquiry": 0.1}})
    result = classify(message("zebra", "Zebra"), rules, model=model)
    assert result.doubt == ("complaint", "sar")
    assert result.triage
    assert result.category == "sar"
    assert result.reasons[0] == Reason(
        "sar",
        "in doubt between complaint (0.30) and sar (0.25); the protective reading is"
        " sar (the law sets its clock); flagged for triage",
    )


def test_far_apart_is_not_doubt(rules):
    model = handmade({"zebra": {"complaint": 0.40, "sar": 0.25}})
    result = classify(message("zebra", "Zebra"), rules, model=model)
    assert (result.category, result.doubt) == ("complaint", None)
    assert result.reasons[0] == Reason(
        "complaint", "score 0.40 (model 0.40, rules 0 points); then sar 0.25, foi 0.00"
    )


def test_rule_points_add_to_the_models_score(rules):
    # "Freedom of Information Act" in the body: a pattern, 4 points, 0.20 of score.
    model = handmade({"zebra": {"complaint": 0.05}})
    body = "zebra. I ask this under the Freedom of Information Act."
    result = classify(message(body, "Zebra"), rules, model=model)
    assert result.category == "foi"
    assert result.reasons[0].rule == "foi" and result.reasons[0].text.startswith("score ")


def test_close_complaint_and_enquiry_stay_as_scored_unless_the_policy_says_doubt_is_complaint():
    rules = load_rules(
        {"categories": {"enquiry": {"phrases": ["zebra"]}, "complaint": {"phrases": ["giraffe"]}}}
    )
    plain = classify(message("zebra zebra giraffe", "Zebra"), rules)
    assert (plain.category, plain.doubt) == ("enquiry", ("enquiry", "complaint"))
    stafford = rules.model_copy(update={"doubt_is_complaint": True})
    doubtful = classify(message("zebra zebra giraffe", "Zebra"), stafford)
    assert doubtful.category == "complaint"
    assert "this council's policy treats doubt as a complaint" in doubtful.reasons[0].text


def test_foi_against_eir_is_not_doubt(rules):
    body = "Under the Freedom of Information Act, please send the air quality readings for 2025."
    result = classify(message(body), rules)
    assert (result.category, result.triage) == ("eir", False)


def test_a_clear_decision_is_not_flagged(rules, model):
    body = (
        "Under the Freedom of Information Act 2000 please provide the council's spending on "
        "agency staff in 2024/25 and 2025/26."
    )
    result = classify(message(body, "FOI request: agency staff"), rules, model=model)
    assert (result.category, result.triage) == ("foi", False)


# --- bad input: a clear line, nothing lost ----------------------------------------------


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"{not json", "is not valid JSON"),
        (b'{"format": 99, "layers": []}', "not a format-1 mailbot classifier model"),
        (b'{"format": 1, "layers": []}', "it has no layers"),
        (b'{"format": 1}', "missing 'layers'"),
        (b"\xff\xfe", "is not valid JSON"),
    ],
)
def test_a_broken_model_file_is_one_line_naming_it(tmp_path, content, says):
    path = tmp_path / "model.json"
    path.write_bytes(content)
    with pytest.raises(ModelError) as err:
        read_model(path)
    assert str(err.value).startswith(f"{path}: ")
    assert says in str(err.value)
    assert "\n" not in str(err.value)


def test_weights_that_do_not_fit_the_vocabulary_are_refused(model):
    data = model.to_json()
    data["layers"][0]["coef"][2] = data["layers"][0]["coef"][2][:-1]
    with pytest.raises(ModelError, match="the weights do not match"):
        model_from_json(data, "model.json")


def test_a_missing_model_file_is_named(tmp_path):
    with pytest.raises(ModelError, match=r"cannot read the classifier model: No such file"):
        read_model(tmp_path / "absent.json")


def test_the_app_classifies_by_the_rules_alone_when_the_model_is_broken(
    tmp_path, monkeypatch, caplog
):
    """A damaged model file in an installation: logged with its name; every message is
    still classified (by the rules) and nothing stops."""
    from mailbot import app as app_module

    broken = tmp_path / "classifier-model.json"
    broken.write_text("{}")
    monkeypatch.setattr(app_module, "read_model", lambda: read_model(broken))
    fake = app_module.App.__new__(app_module.App)
    fake._model, fake._model_read = None, False
    with caplog.at_level(logging.ERROR, logger="mailbot.app"):
        assert fake.model() is None
    assert f"{broken}: the classifier model is damaged" in caplog.text
    assert "classifying by the rules alone" in caplog.text


def write_corpus(folder: Path, labels: str, files: dict[str, bytes]) -> Path:
    folder.mkdir()
    (folder / "labels.csv").write_text(labels)
    for name, raw in files.items():
        (folder / name).write_bytes(raw)
    return folder


MAIL = b"From: a@example.com\r\nSubject: Bins\r\n\r\nWhen is my bin day?\r\n"


@pytest.mark.parametrize(
    ("labels", "says"),
    [
        ("file,category\nm1.eml,enquiry\nm2.eml,grumble\n", "line 3: 'grumble' is not a category"),
        ("file,category\nm1.eml,enquiry\nabsent.eml,enquiry\n", "line 3: no message file"),
        ("file,category\n../m1.eml,enquiry\n", "line 2: no message file '../m1.eml'"),
        ("name,label\nm1.eml,enquiry\n", "line 1: expected the columns file,category"),
        ("", "line 1: expected the columns file,category"),
    ],
)
def test_a_broken_corpus_is_one_line_naming_the_file_and_line(tmp_path, labels, says):
    folder = write_corpus(tmp_path / "corpus", labels, {"m1.eml": MAIL, "m2.eml": MAIL})
    with pytest.raises(CorpusError) as err:
        read_corpus(folder)
    assert str(err.value).startswith(f"{folder / 'labels.csv'}: ")
    assert says in str(err.value)


def test_evaluate_on_a_broken_corpus_exits_1_with_one_line(tmp_path, capsys):
    folder = write_corpus(tmp_path / "c", "file,category\nm.eml,nonsense\n", {"m.eml": MAIL})
    assert main(["classify", "evaluate", "--corpus", str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0
    assert "labels.csv: line 2: 'nonsense' is not a category" in err


# --- measuring honestly -----------------------------------------------------------------


def test_folds_spread_each_category_and_hold_every_message_once():
    labels = ["foi"] * 10 + ["sar"] * 3 + ["enquiry"] * 7
    folds = stratified_folds(labels, 5, seed=1)
    assert sorted(i for fold in folds for i in fold) == list(range(20))
    for fold in folds:
        assert sum(labels[i] == "foi" for i in fold) == 2
    assert folds == stratified_folds(labels, 5, seed=1)


def test_evaluating_on_what_the_model_learnt_cross_validates(capsys):
    """The shipped model learnt the fixtures: scoring it on them would flatter it, so the
    command judges each one by a model trained without it."""
    assert main(["classify", "evaluate", "--corpus", str(FIXTURES), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["method"].startswith("cross-validated (5 folds")
    assert "the shipped model was trained on 180 of these" in result["method"]
    assert result["messages"] == 180
    assert set(result["confusion"]) == set(CATEGORIES)
    assert sum(sum(row.values()) for row in result["confusion"].values()) == 180


def test_evaluating_on_new_mail_uses_the_model_as_it_is(tmp_path, capsys):
    mail = MAIL.replace(b"When is my bin day?", b"Under the Freedom of Information Act 2000")
    folder = write_corpus(tmp_path / "new", "file,category\nm.eml,foi\n", {"m.eml": mail})
    assert main(["classify", "evaluate", "--corpus", str(folder)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 messages, the model as it is")
    assert "accuracy 100.0%" in out


def test_the_shared_corpus_cross_validated(rules):
    """The figures in the README, per category, on 250 real texts the project did not
    write: each judged by a model trained on the other four fifths and the fixtures. A
    floor, so that a change that makes it worse fails; the issue's targets (95%) are far
    above it (see the README)."""
    corpus = shared_corpus()
    result = cross_validate(
        corpus,
        lambda msg, model: classify(msg, rules, model=model),
        also_train_on=read_corpus(FIXTURES) + read_corpus(NEW_FIXTURES),
    )
    print("\n" + result.report())
    assert result.accuracy >= 0.72
    info = [(a, b) for a, b in result.pairs if a in ("foi", "eir")]
    assert sum(b in ("foi", "eir") for _, b in info) / len(info) >= 0.95
    assert result.recall("complaint") >= 0.55
    assert result.recall("sar") == 1.0


# --- the council's own corrections ------------------------------------------------------


def test_corrections_teach_the_council_layer(model):
    """This council's officers file suggestions as compliments ("comments, compliments and
    suggestions"): after retraining on their corrections, a new suggestion follows."""
    assert model.score("Suggestion: more benches by the pond").ranking()[0] != "compliment"
    examples = [
        Example(f"case-{n}", "compliment", f"Suggestion: {idea}")
        for n, idea in enumerate(
            [
                "more benches in the park",
                "a bench by the pond",
                "more flower beds",
                "a water fountain in the park",
                "more bins by the pond",
            ]
        )
    ]
    layer = train_corrections(model, examples)
    council = model.with_layer(layer)
    assert council.score("Suggestion: more benches by the pond").ranking()[0] == "compliment"
    assert [each.name for each in council.layers] == ["shipped", "council"]
    # Mail unlike the corrections is judged as before.
    request = "Under the Freedom of Information Act please send the contracts register"
    assert council.score(request).ranking()[0] == model.score(request).ranking()[0]
