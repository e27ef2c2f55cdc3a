"""Web forms (SPEC §3, §5, §6): whose message a form's is, read from real products' shapes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mailbot.classify import Classification
from mailbot.config import ConfigError, FormConfig, load_config
from mailbot.forms import field_value, read_form, with_topic
from mailbot.parse import parse_message
from mailbot.reasons import Reason
from mailbot.resident import Resident, resident_of
from mailbot.screen import FORM_RULES, MESSAGE_RULES, ScreenContext, screen

FORMS_DIR = Path(__file__).parent / "data" / "forms"
COUNCIL = "enquiries@council.example.gov.uk"
OFFICER = "sam.patel@council.example.gov.uk"
OWN = frozenset({COUNCIL, OFFICER})

# The council's [[forms]] for the fixtures, as a sysadmin writes them.
FORMS_TOML = """
[[forms]]
name = "Contact us"
from = "noreply@council.example.gov.uk"
subject = "^Webform submission from: Contact us"
category_field = "Enquiry type"

[forms.categories]
"Noise nuisance" = "enquiry"
"Make a complaint" = "complaint"
"Freedom of Information request" = "foi"

[[forms]]
name = "Report a missed bin collection"
from = "no-reply@forms.service.gov.uk"
subject = "^Form submission: Report a missed bin collection - reference:"

[[forms]]
name = "Tell us what you think"
from = "forms.noreply@council.example.gov.uk"
category_field = "What is your feedback about?"

[forms.categories]
Complaint = "complaint"
Compliment = "compliment"
Suggestion = "enquiry"

[[forms]]
name = "Request for information"
from = "noreply@forms.council.example.gov.uk"
category_field = "Service area"

[forms.categories]
"Freedom of information" = "foi"
"Environmental information" = "eir"
"My own personal data" = "sar"
"""

CONFIG_HEAD = f"""\
[council]
name = "Stafford Borough Council"
mailbox_address = "{COUNCIL}"

[imap]
host = "imap.example.gov.uk"
username = "{COUNCIL}"

[smtp]
host = "smtp.example.gov.uk"

[[officers]]
name = "Sam Patel"
email = "{OFFICER}"
roles = ["foi-officer"]
"""


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "mailbot.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


@pytest.fixture(scope="module")
def forms(tmp_path_factory: pytest.TempPathFactory) -> list[FormConfig]:
    return load(tmp_path_factory.mktemp("cfg"), CONFIG_HEAD + FORMS_TOML).forms


def fixture(name: str, *, replace_text: tuple[bytes, bytes] | None = None, headers: bytes = b""):
    raw = (FORMS_DIR / name).read_bytes()
    if replace_text:
        assert raw.count(replace_text[0]) >= 1
        raw = raw.replace(*replace_text)
    return parse_message(headers + raw)


# fixture: (resident, where it was found, name, topic, category)
EXPECTED = {
    "council-cms-webform.eml": (
        "priya.sharma@example.net",
        'field "Email address"',
        "Priya Sharma",
        "Noise nuisance",
        "enquiry",
    ),
    "govuk-forms.eml": (
        "tom.okafor@example.org",
        'field "What is your email address?"',
        "Tom Okafor",
        None,
        None,
    ),
    "microsoft-forms-power-automate.eml": (
        "gareth.le@example.co.uk",
        "Reply-To",
        "Gareth Lloyd-Evans",
        "Complaint",
        "complaint",
    ),
    "granicus-govservice.eml": (
        "h.marsh@example.com",
        'field "Your email"',
        "Mrs Helen Marsh",
        "Freedom of information",
        "foi",
    ),
}


def test_every_fixture_is_checked() -> None:
    assert sorted(p.name for p in FORMS_DIR.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_form_product_names_its_resident(name: str, forms: list[FormConfig]) -> None:
    resident, found_in, person, topic, category = EXPECTED[name]
    msg = fixture(name)
    form = read_form(msg, forms, OWN)
    assert form is not None
    assert (form.resident, form.found_in, form.name) == (resident, found_in, person)
    assert (form.topic, form.category) == (topic, category)
    # The resident is whom the case is for and whom the acknowledgement goes to.
    assert resident_of(msg, form) == Resident(
        resident, person, f'web form "{form.form}", {found_in}'
    )
    # Nothing about the form's own no-reply sender holds it back.
    context = ScreenContext(OWN, form=form)
    assert screen(msg, context) == []


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_without_its_forms_entry_each_is_machine_mail(name: str) -> None:
    # What happened before [[forms]]: the form's no-reply sender is suppressed.
    msg = fixture(name)
    assert read_form(msg, [], OWN) is None
    assert any(r.rule == "machine-sender" for r in screen(msg, ScreenContext(OWN)))


def test_topic_decides_the_category_and_says_so(forms: list[FormConfig]) -> None:
    msg = fixture("council-cms-webform.eml")
    form = read_form(msg, forms, OWN)
    assert form is not None
    rules_said = Classification(
        category="complaint",
        reasons=(Reason("complaint", "2 points"),),
        priority="high",
        welfare_reasons=(Reason("welfare", 'phrase "cannot sleep" in body'),),
        escalation_requested=False,
    )
    decided = with_topic(rules_said, form)
    assert decided.category == "enquiry"
    assert decided.reasons == (
        Reason("form-topic", 'form "Contact us" topic "Noise nuisance" -> enquiry'),
        Reason("form-topic", "the classifier alone would say complaint"),
    )
    # What the rules found about the resident's welfare still stands.
    assert (decided.priority, decided.welfare_reasons) == ("high", rules_said.welfare_reasons)


def test_a_topic_with_no_category_leaves_it_to_the_rules(forms: list[FormConfig]) -> None:
    msg = fixture(
        "council-cms-webform.eml",
        replace_text=(b"Enquiry type: Noise nuisance", b"Enquiry type: Parking"),
    )
    form = read_form(msg, forms, OWN)
    assert form is not None and (form.topic, form.category) == ("Parking", None)
    no_rule = Reason("enquiry", "no rule matched")
    rules_said = Classification("enquiry", (no_rule,), "normal", (), False)
    assert with_topic(rules_said, form).reasons == (
        Reason(
            "form-topic",
            'form "Contact us" topic "Parking" is not in its categories; the rules decide',
        ),
        no_rule,
    )
    assert with_topic(rules_said, form).category == "enquiry"


def test_topic_matching_ignores_case_and_spacing(forms: list[FormConfig]) -> None:
    msg = fixture(
        "council-cms-webform.eml",
        replace_text=(b"Enquiry type: Noise nuisance", b"Enquiry type:  make A   complaint "),
    )
    form = read_form(msg, forms, OWN)
    assert form is not None and form.category == "complaint"


SKIPPED = (b"\ntom.okafor@example.org\n", b"\n[This question was skipped]\n")


def test_a_form_with_no_resident_address_is_held_with_its_reason(forms: list[FormConfig]) -> None:
    # GOV.UK Forms writes this when an optional question is not answered; its Reply-To is
    # its own no-reply address.
    msg = fixture("govuk-forms.eml", replace_text=SKIPPED)
    form = read_form(msg, forms, OWN)
    assert form is not None and form.resident is None
    assert resident_of(msg, form) is None
    assert form.no_resident == (
        'form "Report a missed bin collection": Reply-To no-reply@forms.service.gov.uk is the '
        'form\'s own address; field "What is your email address?" '
        "'[This question was skipped]' is not an email address"
    )
    [reason] = screen(msg, ScreenContext(OWN, form=form))
    assert reason.rule == "form"
    assert reason.text.startswith(
        "web form message with no resident address to acknowledge "
        '(form "Report a missed bin collection": Reply-To no-reply@'
    )


def test_a_form_with_no_resident_field_at_all_says_which_fields_it_looked_for(
    forms: list[FormConfig],
) -> None:
    msg = fixture(
        "council-cms-webform.eml",
        replace_text=(b"Email address: priya.sharma@example.net\n", b""),
    )
    form = read_form(msg, forms, OWN)
    assert form is not None and form.resident is None
    assert form.no_resident == (
        'form "Contact us": no Reply-To and no field Email, Email address, Your email, '
        "Your email address, E-mail, E-mail address, What is your email address?"
    )


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (COUNCIL, f"{COUNCIL} is the council's own address"),
        (OFFICER.upper(), f"{OFFICER} is the council's own address"),
        ("noreply@example.net", "noreply@example.net is a no-reply or robot address"),
        ("noreply@council.example.gov.uk", "noreply@council.example.gov.uk is the form's own"),
        ("priya at example dot net", "'priya at example dot net' is not an email address"),
    ],
)
def test_an_unusable_address_is_passed_over_for_the_next(
    answer: str, why: str, forms: list[FormConfig]
) -> None:
    # The CMS form with a second email field: the first answer is unusable.
    msg = fixture(
        "council-cms-webform.eml",
        replace_text=(
            b"Email address: priya.sharma@example.net",
            f"Email: {answer}\nYour email: priya.sharma@example.net".encode(),
        ),
    )
    form = read_form(msg, forms, OWN)
    assert form is not None
    assert (form.resident, form.found_in) == ("priya.sharma@example.net", 'field "Your email"')
    no_second = fixture(
        "council-cms-webform.eml",
        replace_text=(b"Email address: priya.sharma@example.net", f"Email: {answer}".encode()),
    )
    held = read_form(no_second, forms, OWN)
    assert held is not None and held.resident is None
    assert held.no_resident.startswith(f'form "Contact us": field "Email" {why}')


def test_reply_to_comes_first_when_usable(forms: list[FormConfig]) -> None:
    msg = fixture("council-cms-webform.eml", headers=b"Reply-To: Priya <p.sharma@example.org>\r\n")
    form = read_form(msg, forms, OWN)
    assert form is not None and (form.resident, form.found_in) == (
        "p.sharma@example.org",
        "Reply-To",
    )


def test_the_forms_own_machine_headers_do_not_hold_it_but_spam_and_loops_do(
    forms: list[FormConfig],
) -> None:
    msg = fixture("granicus-govservice.eml")  # it says Auto-Submitted: auto-generated
    form = read_form(msg, forms, OWN)
    assert form is not None and screen(msg, ScreenContext(OWN, form=form)) == []
    assert [r.rule for r in screen(msg, ScreenContext(OWN), MESSAGE_RULES)] == [
        "auto-submitted",
        "machine-sender",
    ]
    for header, rule in (
        (b"X-Spam-Flag: YES\r\n", "spam"),
        (b"X-Loop: forms@council.example.gov.uk\r\n", "loop"),
        (b"List-Unsubscribe: <https://forms.council.example.gov.uk/u>\r\n", "mailing-list"),
        (b"Return-Path: <>\r\n", "null-return-path"),
    ):
        held = fixture("granicus-govservice.eml", headers=header)
        reading = read_form(held, forms, OWN)
        assert reading is not None
        assert [r.rule for r in screen(held, ScreenContext(OWN, form=reading))] == [rule]


def test_a_form_resident_is_capped_like_anyone() -> None:
    msg = fixture("govuk-forms.eml")
    ctx = ScreenContext(OWN, sent_to_sender_last_day=3, cap_per_day=3)
    form = read_form(msg, [FormConfig(**{"from": "no-reply@forms.service.gov.uk"})], OWN)
    assert form is not None and form.resident == "tom.okafor@example.org"
    assert [r.rule for r in screen(msg, replace(ctx, form=form))] == ["sender-cap"]


def test_subject_pattern_tells_forms_from_the_same_sender_apart(forms: list[FormConfig]) -> None:
    other = fixture(
        "govuk-forms.eml",
        replace_text=(
            b"Report a missed bin collection - reference",
            b"Apply for a skip - reference",
        ),
    )
    assert read_form(other, forms, OWN) is None  # not a form this council configured
    assert "machine-sender" in [r.rule for r in screen(other, ScreenContext(OWN))]


def test_every_other_no_reply_sender_is_still_suppressed(forms: list[FormConfig]) -> None:
    msg = parse_message(
        b"From: Parcel Co <no-reply@parcels.example.com>\r\nReply-To: jane@example.com\r\n"
        b"Subject: Your parcel\r\n\r\nEmail address: jane@example.com\r\n"
    )
    assert read_form(msg, forms, OWN) is None
    assert [r.rule for r in screen(msg, ScreenContext(OWN))] == ["machine-sender"]


def test_form_rules_are_the_ones_that_judge_the_message_not_the_sender() -> None:
    assert {rule.name for rule in FORM_RULES} == {
        "spam",
        "form",
        "mailing-list",
        "loop",
        "null-return-path",
        "report",
        "auto-reply-subject",
    }


# --- labelled fields, whatever the layout ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "label", "expected"),
    [
        ("Name: Jane Doe\nEmail address: jane@example.com", "Email address", "jane@example.com"),
        ("email ADDRESS:jane@example.com", "Email address", "jane@example.com"),
        ("Email address:\tjane@example.com", "Email address", "jane@example.com"),
        ("Email address\tjane@example.com", "Email address", "jane@example.com"),  # table row
        ("Email address\n\njane@example.com", "Email address", "jane@example.com"),
        ("What is your email address?\n\njane@x.org", "What is your email address?", "jane@x.org"),
        ("What is your email address\njane@x.org", "What is your email address?", "jane@x.org"),
        ("* Email address *: jane@x.org", "Email address", "jane@x.org"),
        ("Email  address : jane@x.org", "Email address:", "jane@x.org"),
        ("Email address\n\n---\n\nMessage", "Email address", None),  # left empty
        ("Email address:\nMessage:\nHello", "Email address", None),  # left empty
        ("Email address jane@example.com", "Email address", None),  # no separator: unclear
        ("Email address: jane@example.com", "Email", None),  # a longer label is another field
        ("My email address: jane@example.com", "Email address", None),
        ("Message:\nmy neighbour's email: x@y.com", "Email", None),
        ("", "Email", None),
    ],
)
def test_field_value(text: str, label: str, expected: str | None) -> None:
    assert field_value(text, label) == expected


# --- the acknowledgement's address for any message (SPEC §5) ----------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ("From: Jane <jane@example.com>", Resident("jane@example.com", "Jane", "From")),
        (
            "From: Jane <jane@example.com>\r\nReply-To: jane.doe@Example.COM",
            Resident("jane.doe@example.com", "Jane", "Reply-To"),
        ),
        (
            "From: Jane <jane@example.com>\r\nReply-To: someone@elsewhere.example",
            Resident("jane@example.com", "Jane", "From"),
        ),
        (  # a subdomain is another domain
            "From: Jane <jane@example.com>\r\nReply-To: jane@mail.example.com",
            Resident("jane@example.com", "Jane", "From"),
        ),
        ("Reply-To: jane@example.com", None),
    ],
)
def test_reply_to_only_where_it_belongs_with_the_sender(
    headers: str, expected: Resident | None
) -> None:
    msg = parse_message(f"{headers}\r\nSubject: x\r\n\r\nHello\r\n".encode())
    assert resident_of(msg) == expected


# --- [[forms]] in the config: one line naming the key ----------------------------------


def config_error(tmp_path: Path, forms_toml: str) -> str:
    text = CONFIG_HEAD + forms_toml
    path = tmp_path / "mailbot.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value).removeprefix(f"{path}: ")
    assert "\n" not in message
    return message


def line_in(forms_toml: str, needle: str) -> int:
    text = CONFIG_HEAD + forms_toml
    return text[: text.index(needle)].count("\n") + 1


def test_forms_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, CONFIG_HEAD + '[[forms]]\nfrom = "NoReply@Forms.Example.gov.uk"\n')
    [form] = cfg.forms
    assert form.sender == "noreply@forms.example.gov.uk"
    assert form.title == "noreply@forms.example.gov.uk"
    assert "Email address" in form.resident_fields and "E-mail" in form.resident_fields
    assert "Name" in form.name_fields
    assert (form.category_field, form.categories, cfg.spam.scl_threshold) == (None, {}, 5)


@pytest.mark.parametrize(
    ("forms_toml", "needle", "expected"),
    [
        (
            '[[forms]]\nfrom = "not an address"\n',
            "from =",
            "forms.0.from: not an email address: 'not an address'",
        ),
        (
            '[[forms]]\nfrom = "a@b.example"\n\n[[forms]]\nfrom = "c@d.example"\nsubjct = "x"\n',
            "subjct",
            "forms.1.subjct: unknown key (check the spelling)",
        ),
        (
            '[[forms]]\nfrom = "a@b.example"\nsubject = "Form (submission"\n',
            "subject =",
            "forms.0.subject: not a regular expression: missing ), unterminated subpattern "
            "at position 5",
        ),
        (
            '[[forms]]\nfrom = "a@b.example"\ncategory_field = "Topic"\n\n'
            '[forms.categories]\n"Noise" = "enquiry"\n"Bins" = "enquirey"\n',
            '"Bins"',
            "forms.0.categories.Bins: must be 'enquiry', 'complaint', 'foi', 'eir', 'sar' or "
            "'compliment'",
        ),
        (
            '[[forms]]\nfrom = "a@b.example"\n\n[forms.categories]\n"Noise" = "enquiry"\n',
            "[forms.categories]",
            "forms.0.categories: give category_field, the field whose answers these map to "
            "categories",
        ),
        (
            '[[forms]]\nfrom = "a@b.example"\ncategory_field = "Topic"\n',
            "category_field",
            "forms.0.category_field: needs a [forms.categories] table mapping its answers to "
            'categories, e.g. "Noise nuisance" = "enquiry"',
        ),
        (
            f'[[forms]]\nfrom = "{OFFICER}"\n',
            "from =",
            f"forms.0.from: {OFFICER} is a council mailbox or an officer; a form's messages "
            "must come from an address of the form's own",
        ),
        (
            '[[forms]]\nfrom = "a@b.example"\n\n[[forms]]\nfrom = "a@b.example"\n',
            'from = "a@b.example"\n\n[[forms]]\nfrom',
            "forms.1.from: a@b.example with the same subject is already form 1; give each a "
            "different subject pattern",
        ),
        (
            '[[forms]]\nfrom = "a@b.example"\nresident_fields = []\n',
            "resident_fields",
            "forms.0.resident_fields: needs at least 1 entry",
        ),
        (
            '[[forms]]\nfrom = "a@b.example"\nname_fields = ["Name", " : "]\n',
            "name_fields",
            "forms.0.name_fields: a field label must not be empty",
        ),
        (
            "[spam]\nscl_threshold = 11\n",
            "scl_threshold",
            "spam.scl_threshold: must be at most 9 (got 11)",
        ),
        ('[spam]\nscl_threshold = "high"\n', "scl_threshold", None),
    ],
)
def test_each_forms_mistake_names_its_key_and_line(
    tmp_path: Path, forms_toml: str, needle: str, expected: str | None
) -> None:
    message = config_error(tmp_path, forms_toml)
    line = line_in(forms_toml, needle)
    if needle == 'from = "a@b.example"\n\n[[forms]]\nfrom':
        line += 3  # the second entry's from
    assert message.startswith(f"line {line}: ")
    if expected is not None:
        assert message == f"line {line}: {expected}"
    else:
        assert message.startswith(f"line {line}: spam.scl_threshold: must be a whole number")
