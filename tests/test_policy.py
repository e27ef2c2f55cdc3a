"""The shipped policies say what the seeds say; a broken policy is a clear one-line error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbot.policy import (
    CATEGORIES,
    Duration,
    Offset,
    Policy,
    PolicyError,
    _key_lines,
    builtin_policy_dir,
    list_policies,
    load_policy,
    parse_policy,
)

SHIPPED = [
    "draft-customer-promise",
    "lgsco-code",
    "shaftesbury",
    "stafford",
    "stamford",
    "stotfold",
    "vale-of-glamorgan",
]
STAFFORD_TEXT = (builtin_policy_dir() / "stafford.toml").read_text(encoding="utf-8")


def wd(n: int) -> Duration:
    return Duration(amount=n, unit="working_days")


def line_of(text: str, needle: str) -> int:
    assert text.count(needle) == 1, needle
    return text[: text.index(needle)].count("\n") + 1


def broken(tmp_path: Path, old: str, new: str, text: str = STAFFORD_TEXT) -> tuple[Path, str]:
    """Stafford's policy with one edit, written to a file; returns the path and new text."""
    assert text.count(old) == 1, old
    changed = text.replace(old, new)
    path = tmp_path / "council.toml"
    path.write_text(changed, encoding="utf-8")
    return path, changed


def error_for(path: Path | str) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        load_policy(str(path))
    assert "\n" not in str(caught.value)  # one line, always
    return caught.value


# --- every shipped policy ----------------------------------------------------------------


def test_the_shipped_policies_are_listed() -> None:
    assert list_policies() == SHIPPED  # "_classification.toml" is a shared rule file


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_policy_loads_and_is_complete(name: str) -> None:
    policy = load_policy(name)
    assert policy.name == name
    assert sorted(policy.categories) == sorted(CATEGORIES)
    assert policy.timezone == "Europe/London"
    assert policy.welfare_alert_role == "duty-officer"
    for category in CATEGORIES:
        final = policy.final_stage(category)
        assert final == (len(policy.categories[category].stages))
        for number in range(1, final + 1):
            stage = policy.stage(category, number)
            assert stage.number == number
            assert stage.clause and stage.next_step and stage.handler
            assert stage.acknowledge.amount <= stage.respond.amount or (
                stage.acknowledge.unit != stage.respond.unit
            )
    # Statute whatever the seed says (FOIA s.10, EIR reg 5 and 7, UK GDPR art. 12(3)).
    assert policy.stage("foi").respond == wd(20)
    assert policy.stage("foi").extension == wd(20)
    assert policy.stage("eir").respond == wd(20)
    assert policy.stage("eir").extension == wd(20)
    assert str(policy.stage("sar").respond) == "1 calendar month"
    assert str(policy.stage("sar").extension) == "2 calendar months"


@pytest.mark.parametrize("name", SHIPPED)
def test_every_number_in_a_policy_cites_its_clause(name: str) -> None:
    # A timed key must carry a comment on its line or on the line(s) just above it.
    timed = re.compile(
        r"^\s*(acknowledge|respond|extension|reminders|holding_reply|opens|closes|retention)\s*="
    )
    lines = (builtin_policy_dir() / f"{name}.toml").read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if timed.match(line):
            above = lines[number - 1].lstrip() if number else ""
            assert "#" in line or above.startswith("#"), f"{name}.toml:{number + 1}: {line}"


# --- what each council promises ----------------------------------------------------------


def test_stafford() -> None:
    p = load_policy("stafford")
    assert p.council == "Stafford Borough Council"
    assert p.nation == "england"
    assert p.classification == {"doubt_is_complaint": True}  # Framework 7(c)
    assert p.stage("enquiry").respond == wd(5)  # Framework 6 "Dear Customer"
    assert p.final_stage("complaint") == 3
    s1, s2, s3 = (p.stage("complaint", n) for n in (1, 2, 3))
    assert s1.acknowledge == wd(5)  # Framework 6 "Promises, promises..."
    assert (s2.acknowledge, s2.respond, s2.role) == (wd(5), wd(20), "head-of-service")
    assert (s3.acknowledge, s3.respond, s3.role) == (wd(5), wd(15), "chief-executive")
    assert "Head of Service" in s2.name and "Chief Executive" in s3.name
    assert "Ombudsman" in s3.next_step
    assert "Chief Executive" in s2.next_step
    assert s2.extension is None  # "A maximum of twenty working days"
    assert str(s2.holding_reply) == "1 working day before"


def test_stamford() -> None:
    p = load_policy("stamford")
    enquiry = p.stage("enquiry")
    assert (enquiry.acknowledge, enquiry.respond) == (wd(5), wd(20))  # 4.1, 4.4
    assert str(enquiry.holding_reply) == "1 working day before"  # 4.5
    assert p.final_stage("complaint") == 2
    assert p.stage("complaint", 2).role == "mayor"  # 6.3
    assert "Mayor" in p.stage("complaint", 2).handler
    assert (p.business_hours.opens.hour, p.business_hours.closes.hour) == (9, 16)


def test_stotfold_and_shaftesbury() -> None:
    stotfold = load_policy("stotfold").stage("enquiry")
    assert (stotfold.acknowledge, stotfold.respond) == (wd(3), wd(5))
    shaftesbury = load_policy("shaftesbury").stage("enquiry")
    assert (shaftesbury.acknowledge, shaftesbury.respond) == (wd(3), wd(10))
    assert shaftesbury.holding_reply is not None  # 2.10 "sending a holding response"


def test_draft_customer_promise() -> None:
    p = load_policy("draft-customer-promise")
    assert (p.stage("enquiry").acknowledge, p.stage("enquiry").respond) == (wd(1), wd(10))
    complaint = p.stage("complaint")
    assert (complaint.acknowledge, complaint.respond, complaint.extension) == (
        wd(3),
        wd(10),
        wd(10),
    )
    assert p.welfare_alert_role == "duty-officer"


def test_lgsco_code() -> None:
    p = load_policy("lgsco-code")
    s1, s2 = p.stage("complaint", 1), p.stage("complaint", 2)
    assert (s1.acknowledge, s1.respond, s1.extension) == (wd(5), wd(10), wd(10))
    assert (s2.acknowledge, s2.respond, s2.extension) == (wd(5), wd(20), wd(20))
    assert "Ombudsman" in s2.next_step
    assert "6.3" in s1.clause


def test_stage_lookup_errors() -> None:
    p = load_policy("stafford")
    with pytest.raises(KeyError):
        p.stage("complaint", 4)
    with pytest.raises(KeyError):
        p.final_stage("parking")


# --- durations and reminder points -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "amount", "unit", "shown"),
    [
        ("5 working days", 5, "working_days", "5 working days"),
        ("1 working day", 1, "working_days", "1 working day"),
        ("20 Working Days", 20, "working_days", "20 working days"),
        ("1 calendar month", 1, "calendar_months", "1 calendar month"),
        ("3 calendar months", 3, "calendar_months", "3 calendar months"),
        ("10 calendar days", 10, "calendar_days", "10 calendar days"),
    ],
)
def test_duration_text(text: str, amount: int, unit: str, shown: str) -> None:
    duration = Duration.parse(text)
    assert (duration.amount, duration.unit, str(duration)) == (amount, unit, shown)


@pytest.mark.parametrize(
    "text", ["5 wrking days", "five working days", "5 working months", "-5 working days", "", "5"]
)
def test_bad_duration_text(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        Duration.parse(text)


def test_offsets() -> None:
    assert Offset.parse("3 working days before").working_days == -3
    assert Offset.parse("on the due date").working_days == 0
    assert Offset.parse("1 working day after").working_days == 1
    assert str(Offset.parse("1 working day before")) == "1 working day before"
    assert str(Offset.parse("on the due date")) == "on the due date"
    with pytest.raises(ValueError, match="not a reminder point"):
        Offset.parse("3 days before")


# --- broken files: file, line and key ---------------------------------------------------


def test_typo_in_a_nested_key_names_file_line_and_key(tmp_path: Path) -> None:
    # `respond` appears in every stage table: the line must be the one in stage 2.
    old = 'respond = "20 working days"\n# No extension: "a maximum'
    path, text = broken(tmp_path, old, old.replace("respond", "repsond", 1))
    err = error_for(path)
    assert err.file == str(path)
    assert err.key == "categories.complaint.stages.2.repsond"
    assert err.line == line_of(text, 'repsond = "20 working days"')
    assert "did you mean 'respond'" in err.message
    assert str(err).startswith(f"{path}:{err.line}: categories.complaint.stages.2.repsond: ")
    assert len(err.others) == 1  # the real key is now missing too
    assert err.others[0].key == "categories.complaint.stages.2.respond"


def test_typo_in_a_top_level_key(tmp_path: Path) -> None:
    path, text = broken(tmp_path, "welfare_alert_role =", "welfare_alert_rol =")
    err = error_for(path)
    assert (err.key, err.line) == ("welfare_alert_rol", line_of(text, "welfare_alert_rol ="))
    assert "welfare_alert_role" in err.message


def test_typo_in_a_table_key(tmp_path: Path) -> None:
    path, text = broken(tmp_path, 'opens = "09:00"', 'opns = "09:00"')
    err = error_for(path)
    assert (err.key, err.line) == ("business_hours.opns", line_of(text, 'opns = "09:00"'))


def test_bad_duration_in_a_file(tmp_path: Path) -> None:
    path, text = broken(tmp_path, 'respond = "15 working days"', 'respond = "15 wrking days"')
    err = error_for(path)
    assert err.key == "categories.complaint.stages.3.respond"
    assert err.line == line_of(text, "15 wrking days")
    assert "not a duration: '15 wrking days'" in str(err)


def test_bad_reminder_point(tmp_path: Path) -> None:
    old = 'reminders = ["1 working day before"]'
    path, text = broken(tmp_path, old, 'reminders = ["1 wd before"]')
    err = error_for(path)
    assert err.key == "categories.compliment.stages.1.reminders.0"
    assert err.line == line_of(text, '["1 wd before"]')


def test_missing_key_points_at_its_table(tmp_path: Path) -> None:
    path, text = broken(tmp_path, 'on_breach = "customer-services-manager"  # Framework 5\n', "")
    err = error_for(path)
    assert err.key == "categories.compliment.stages.1.on_breach"
    assert err.line == line_of(text, "[categories.compliment.stages.1]")
    assert "missing" in err.message


def test_toml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    path, text = broken(tmp_path, 'council = "Stafford Borough Council"', 'council = "Stafford')
    err = error_for(path)
    assert err.line == line_of(text, 'council = "Stafford\n')
    assert "not valid TOML" in err.message


def test_duplicate_key_is_a_toml_error(tmp_path: Path) -> None:
    path, _ = broken(tmp_path, 'name = "stafford"', 'name = "stafford"\nname = "again"')
    err = error_for(path)
    assert err.line == line_of(STAFFORD_TEXT, 'name = "stafford"') + 1


# --- statute is the ceiling -------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "key", "law"),
    [
        ('respond = "20 working days"\n# FOIA', 'respond = "25 working days"\n# FOIA',
         "categories.foi.stages.1.respond", "FOIA 2000 s.10(1)"),
        ('respond = "20 working days"     # EIR', 'respond = "1 calendar month"     # EIR',
         "categories.eir.stages.1.respond", "EIR 2004"),
        ('extension = "20 working days"   # EIR', 'extension = "30 working days"   # EIR',
         "categories.eir.stages.1.extension", "EIR 2004 reg 7(1)"),
        ('respond = "1 calendar month"', 'respond = "2 calendar months"',
         "categories.sar.stages.1.respond", "UK GDPR art. 12(3)"),
        ('respond = "1 calendar month"', 'respond = "30 working days"',
         "categories.sar.stages.1.respond", "UK GDPR art. 12(3)"),
        ('extension = "2 calendar months"', 'extension = "3 calendar months"',
         "categories.sar.stages.1.extension", "two further calendar months"),
    ],
)  # fmt: skip
def test_statutory_over_promise_is_refused(
    tmp_path: Path, old: str, new: str, key: str, law: str
) -> None:
    path, text = broken(tmp_path, old, new)
    err = error_for(path)
    assert err.key == key
    assert law in err.message
    assert err.line == line_of(text, new)


def test_scottish_foi_has_no_extension(tmp_path: Path) -> None:
    path, _ = broken(tmp_path, 'nation = "england"', 'nation = "scotland"')
    err = error_for(path)
    assert err.key == "categories.foi.stages.1.extension"
    assert "FOISA" in err.message


def test_a_faster_statutory_promise_is_allowed(tmp_path: Path) -> None:
    path, _ = broken(
        tmp_path, 'respond = "20 working days"\n# FOIA', 'respond = "15 working days"\n# FOIA'
    )
    assert load_policy(str(path)).stage("foi").respond == Duration.parse("15 working days")


# --- hostile and odd input ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "key", "words"),
    [
        ('respond = "5 working days"\n# No extension', 'respond = "999999 working days"\n#',
         "categories.enquiry.stages.1.respond", "too long"),
        ('respond = "5 working days"\n# No extension', 'respond = "-5 working days"\n#',
         "categories.enquiry.stages.1.respond", "not a duration"),
        ('respond = "5 working days"\n# No extension', 'respond = 5\n#',
         "categories.enquiry.stages.1.respond", "not a duration"),
        ('respond = "5 working days"\n# No extension', 'respond = 99999999999999999999\n#',
         "categories.enquiry.stages.1.respond", "not a duration"),
        ('respond = "5 working days"\n# No extension', 'respond = "0 working days"\n#',
         "categories.enquiry.stages.1.respond", "at least 1 day"),
        ('acknowledge = "5 working days"\n# Framework 6 "Dear Customer": "Reply',
         'acknowledge = "6 working days"\n#',
         "categories.enquiry.stages.1.acknowledge", "later than the response"),
        ('name = "stafford"', "name = 5", "name", "valid string"),
        ('name = "stafford"', 'name = "../../etc/passwd"', "name", "not a valid name"),
        ('nation = "england"', 'nation = "france"', "nation", "'england'"),
        ('timezone = "Europe/London"', 'timezone = "Mars/Olympus"', "timezone", "unknown"),
        ('timezone = "Europe/London"', 'timezone = "../../etc/passwd"', "timezone", "unknown"),
        ("closure_days = []", 'closure_days = ["13-01"]', "closure_days", "MM-DD"),
        ("closure_days = []", "closure_days = 2026-12-24", "closure_days", "valid list"),
        ('role = "chief-executive"', 'role = "Chief Executive!"',
         "categories.complaint.stages.3.role", "not a valid name"),
        ('closes = "17:00"', 'closes = "08:00"', "business_hours.closes", "not after opens"),
        ('days = ["mon", "tue", "wed", "thu", "fri"]', 'days = ["mon", "funday"]',
         "business_hours.days.1", "'mon'"),
        ('holding_reply = "3 working days before"', 'holding_reply = "3 working days after"',
         "categories.sar.stages.1.holding_reply", "before the response date"),
        ("[categories.compliment.stages.1]", "[categories.compliments.stages.1]",
         "categories.compliments", "unknown category"),
        ("[categories.complaint.stages.3]", "[categories.complaint.stages.4]",
         "categories.complaint.stages", "numbered 1, 2, 3"),
        ("[categories.complaint.stages.3]", "[categories.complaint.stages.three]",
         "categories.complaint.stages.three", "valid integer"),
        ("[categories.compliment.stages.1]", "[categories.enquiry.stages.2]",
         "categories.enquiry.stages", "only complaints"),
    ],
)  # fmt: skip
def test_hostile_values(tmp_path: Path, old: str, new: str, key: str, words: str) -> None:
    path, _ = broken(tmp_path, old, new)
    err = error_for(path)
    everything = [err, *err.others]
    assert any(e.key == key and words in e.message for e in everything), str(err)
    assert all(e.line is not None for e in everything if e.key), [str(e) for e in everything]


def test_classification_must_be_a_table(tmp_path: Path) -> None:
    text = STAFFORD_TEXT.replace('name = "stafford"', 'name = "stafford"\nclassification = 3', 1)
    path, text = broken(tmp_path, "[classification]\n", "[unused]\n", text)
    err = error_for(path)
    everything = [err, *err.others]
    found = [e for e in everything if e.key == "classification"]
    assert [e.line for e in found] == [line_of(text, "classification = 3")], str(err)
    assert "dictionary" in found[0].message


def test_missing_category(tmp_path: Path) -> None:
    start = STAFFORD_TEXT.index("# --- Compliments")
    path = tmp_path / "council.toml"
    path.write_text(STAFFORD_TEXT[:start], encoding="utf-8")
    err = error_for(path)
    assert err.key == "categories.compliment"
    assert "missing" in err.message


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("", encoding="utf-8")
    assert "empty" in error_for(path).message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b'name = "ok"\ncouncil = "\xff\xfe"\n')
    err = error_for(path)
    assert (err.line, err.message) == (2, "not UTF-8 text")


def test_huge_file(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    path.write_text("# padding\n" * 200_000, encoding="utf-8")
    assert "too large" in error_for(path).message


def test_no_such_policy() -> None:
    err = error_for("no-such-council")
    assert err.file == "policies/no-such-council.toml"
    assert "stafford" in err.message  # lists what there is
    assert "no such file" in error_for("/nonexistent/council.toml").message
    assert "not a policy name" in error_for("Stafford Borough").message


def test_load_by_path(tmp_path: Path) -> None:
    path = tmp_path / "ours.toml"
    path.write_text(STAFFORD_TEXT, encoding="utf-8")
    assert load_policy(str(path)).name == "stafford"
    assert isinstance(load_policy(str(builtin_policy_dir() / "stamford.toml")), Policy)


def test_builtin_errors_name_the_policies_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "stafford.toml").write_text(
        STAFFORD_TEXT.replace("opens =", "opns ="), encoding="utf-8"
    )
    monkeypatch.setattr("mailbot.policy.builtin_policy_dir", lambda: tmp_path)
    err = error_for("stafford")
    assert str(err).startswith("policies/stafford.toml:")


def test_classification_is_passed_through_untouched(tmp_path: Path) -> None:
    table = (
        '[classification]\ndoubt_is_complaint = true\nwelfare = ["food bank"]\n'
        '[classification.categories.foi]\npatterns = ["freedom of information"]\n'
    )
    block = STAFFORD_TEXT[STAFFORD_TEXT.index("[classification]") :]
    block = block[: block.index("doubt_is_complaint = true\n") + len("doubt_is_complaint = true\n")]
    path, _ = broken(tmp_path, block, table)
    assert load_policy(str(path)).classification == {
        "doubt_is_complaint": True,
        "welfare": ["food bank"],
        "categories": {"foi": {"patterns": ["freedom of information"]}},
    }


def test_error_string_format() -> None:
    err = PolicyError("policies/stafford.toml", 12, "categories.complaint.stages.1.respond",
                      "not a duration: '5 wrking days'")  # fmt: skip
    assert str(err) == (
        "policies/stafford.toml:12: categories.complaint.stages.1.respond:"
        " not a duration: '5 wrking days'"
    )
    assert str(PolicyError("x.toml", None, "", "empty")) == "x.toml: empty"


def test_key_lines_understands_the_toml_policies_use() -> None:
    text = "\n".join(
        [
            'name = "x"',  # 1
            "[a]",  # 2
            "b.c = 1  # dotted",  # 3
            '"quoted key" = 2',  # 4
            "long = [",  # 5
            '  "not = a key",',  # 6
            "]",  # 7
            'story = """',  # 8
            "fake = 1",  # 9
            '"""',  # 10
            "after = 3",  # 11
            "[[items]]",  # 12
            "n = 1",  # 13
            "[[items]]",  # 14
            "n = 2",  # 15
            "[a.d.'e']",  # 16
            "f = 4",  # 17
        ]
    )
    lines = _key_lines(text)
    assert lines["name"] == 1
    assert lines["a"] == 2
    assert lines["a.b.c"] == 3
    assert lines["a.quoted key"] == 4
    assert lines["a.long"] == 5
    assert "a.not = a key" not in lines and "a.fake" not in lines
    assert lines["a.after"] == 11
    assert (lines["items.0.n"], lines["items.1.n"]) == (13, 15)
    assert lines["a.d.e.f"] == 17


# --- whatever the file says, the answer is a Policy or a PolicyError --------------------

_LINES = STAFFORD_TEXT.splitlines(keepends=True)
_NASTY = st.sampled_from(
    ["", "=", "[", "]", '"', "'''", "\x00", "é", "99999999999999999999", "-1", "true",
     "[categories.x]", "stages.1 = 3", " = 1", "inf", "nan", "2026-02-30", "[[categories]]",
     "{", "}", "\\u0000", "#", "\n"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(_LINES) - 1), st.integers(0, 80), _NASTY, st.booleans()),
        min_size=1,
        max_size=4,
    )
)
def test_mangled_files_never_crash(edits: list[tuple[int, int, str, bool]]) -> None:
    lines = list(_LINES)
    for index, column, text, drop in edits:
        if drop:
            lines[index] = ""
        else:
            line = lines[index]
            lines[index] = line[:column] + text + line[column:]
    try:
        parse_policy("".join(lines), "mangled.toml")
    except PolicyError as err:
        assert "\n" not in str(err)
        assert str(err).startswith("mangled.toml")
        if err.line is not None:
            assert 1 <= err.line <= "".join(lines).count("\n") + 1


# --- issue 21: internal reviews ------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_policy_has_the_statutory_reviews(name: str) -> None:
    policy = load_policy(name)
    foi, eir = policy.stage("foi", 2), policy.stage("eir", 2)
    # FOIA s.45 code of practice 5.4-5.5: 20 working days, 20 more in complex cases.
    assert (foi.respond, foi.extension) == (wd(20), wd(20))
    assert "s.45 code of practice" in foi.clause
    # EIR reg 11(4): 40 working days, no extension.
    assert (eir.respond, eir.extension) == (wd(40), None)
    assert "reg 11" in eir.clause
    assert all("Information Commissioner" in s.next_step for s in (foi, eir))
    assert policy.final_stage("sar") == 1


@pytest.mark.parametrize(
    ("old", "new", "key", "words"),
    [
        ('respond = "40 working days"', 'respond = "41 working days"',
         "categories.eir.stages.2.respond", "EIR 2004 reg 11(4) allows 40 working days"),
        ('respond = "40 working days"', 'respond = "40 working days"\nextension = "5 working days"',
         "categories.eir.stages.2.extension", "EIR 2004 reg 11 allows no extension"),
        ('extension = "20 working days"\n# Reminders: as for the request itself.',
         'extension = "21 working days"\n#',
         "categories.foi.stages.2.extension", "s.45 code of practice (para 5.5"),
        ("[categories.eir.stages.2]", "[categories.eir.stages.3]",
         "categories.eir.stages", "numbered 1, 2, 3"),
    ],
)  # fmt: skip
def test_review_stages_are_held_to_statute(
    tmp_path: Path, old: str, new: str, key: str, words: str
) -> None:
    path, _ = broken(tmp_path, old, new)
    err = error_for(path)
    everything = [err, *err.others]
    assert any(e.key == key and words in e.message for e in everything), str(err)


def test_a_third_foi_stage_is_refused(tmp_path: Path) -> None:
    start = STAFFORD_TEXT.index("[categories.foi.stages.2]")
    end = STAFFORD_TEXT.index("# --- Environmental information")
    third = STAFFORD_TEXT[start:end].replace("stages.2]", "stages.3]")
    marker = "# --- Environmental information"
    path, _ = broken(tmp_path, marker, third + marker)
    err = error_for(path)
    assert err.key == "categories.foi.stages"
    assert "at most 2 stages" in err.message


def test_a_scottish_review_has_twenty_days_and_no_extension(tmp_path: Path) -> None:
    # FOISA s.21(1); the request's own extension removed first, as FOISA has none.
    text = STAFFORD_TEXT.replace('nation = "england"', 'nation = "scotland"')
    text = text.replace(
        'extension = "20 working days"\n# Reminders: the Framework', "# Reminders: the Framework"
    )
    path, _ = broken(tmp_path, 'respond = "40 working days"', 'respond = "20 working days"', text)
    err = error_for(path)
    assert err.key == "categories.foi.stages.2.extension"
    assert err.message == "FOISA 2002 s.21 allows no extension of the 20 days"


# --- issue 21: Welsh ---------------------------------------------------------------------

VALE_TEXT = (builtin_policy_dir() / "vale-of-glamorgan.toml").read_text(encoding="utf-8")


def test_vale_of_glamorgan_writes_in_welsh_and_english() -> None:
    p = load_policy("vale-of-glamorgan")
    assert (p.language, p.council_cy, p.nation) == ("cy-en", "Cyngor Bro Morgannwg", "wales")
    # Standards of Service: e-mails in five working days; complaints 10 and 20.
    assert p.stage("enquiry").respond == wd(5)
    assert [p.stage("complaint", n).respond for n in (1, 2)] == [wd(10), wd(20)]
    assert "Ombwdsmon Gwasanaethau Cyhoeddus Cymru" in (p.stage("complaint", 2).next_step_cy or "")
    assert load_policy("stafford").language == "en"  # the default


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('council_cy = "Cyngor Bro Morgannwg"\n', "", "council_cy"),
        ('name_cy = "Canmoliaeth"\n', "", "categories.compliment.stages.1.name_cy"),
        ("next_step_cy = \"Dyma ganlyniad ein hadolygiad mewnol.", "# next_step_cy = \"",
         "categories.foi.stages.2.next_step_cy"),
    ],
)  # fmt: skip
def test_a_bilingual_policy_needs_its_welsh(tmp_path: Path, old: str, new: str, key: str) -> None:
    path, _ = broken(tmp_path, old, new, VALE_TEXT)
    err = error_for(path)
    everything = [err, *err.others]
    assert any(e.key == key for e in everything), str(err)
