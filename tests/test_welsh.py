"""Welsh (SPEC §9, issue 21): finding Welsh, Welsh dates, and letters in Welsh, English or
both, Welsh first. Pure parts without servers; the mail itself in test_welsh_mail.py."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from mailbot.app import App
from mailbot.cli import main
from mailbot.clock import FixedClock
from mailbot.config import load_config
from mailbot.letters import check_all, sample_case
from mailbot.policy import load_policy
from mailbot.templates import case_context
from mailbot.welsh import (
    DIVIDER,
    ENGLISH_BELOW,
    is_welsh,
    mode_for,
    render,
    reopening_phrase,
    welsh_context,
    welsh_date,
)

VALE = load_policy("vale-of-glamorgan")
STAFFORD = load_policy("stafford")

WELSH = [
    "Bore da, mae twll mawr yn y ffordd tu allan i'm tŷ ers tair wythnos. Allwch chi ei "
    "drwsio os gwelwch yn dda?",
    "Hoffwn wneud cais o dan y Ddeddf Rhyddid Gwybodaeth am faint a wariodd y cyngor ar "
    "ymgynghorwyr yn ystod y tair blynedd diwethaf.",
    "Dydw i ddim yn fodlon â'ch ymateb i'm cwyn. Hoffwn i'r gŵyn fynd i'r cam nesaf.",
    "Diolch yn fawr am eich help",
]
ENGLISH = [
    "Could you tell me when the pothole outside 4 Mill Lane will be repaired?",
    "Under the Freedom of Information Act please tell me how much the council spent on "
    "consultants in each of the last three years.",
    "I am not satisfied with your response to my complaint and want it escalated.",
    "Many thanks for your help",
]


@pytest.mark.parametrize("text", WELSH)
def test_welsh_is_found(text: str) -> None:
    assert is_welsh(text)


@pytest.mark.parametrize("text", [*ENGLISH, "", "ok", "12345 67890"])
def test_english_and_nothing_are_not_welsh(text: str) -> None:
    assert not is_welsh(text)


def test_a_council_writing_in_english_never_loads_the_language_models() -> None:
    # The daemon's whole pipeline imported and an English council's message decided:
    # lingua (and its models) stay out of memory.
    code = (
        "import sys\n"
        "import mailbot.pipeline, mailbot.daemon, mailbot.letters\n"
        "from mailbot.welsh import mode_for\n"
        "from mailbot.policy import load_policy\n"
        "assert mode_for(load_policy('stafford'), None) == 'en'\n"
        "print('lingua' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_dates_in_welsh() -> None:
    # Every weekday and month, as Welsh writes them; softened after "ar" or "tan".
    days = [welsh_date(date(2026, 12, d)) for d in range(14, 21)]
    assert days == [
        "dydd Llun 14 Rhagfyr 2026",
        "dydd Mawrth 15 Rhagfyr 2026",
        "dydd Mercher 16 Rhagfyr 2026",
        "dydd Iau 17 Rhagfyr 2026",
        "dydd Gwener 18 Rhagfyr 2026",
        "dydd Sadwrn 19 Rhagfyr 2026",
        "dydd Sul 20 Rhagfyr 2026",
    ]
    assert welsh_date(date(2026, 12, 18)).meddal == "ddydd Gwener 18 Rhagfyr 2026"
    months = [str(welsh_date(date(2027, m, 1))).split()[3] for m in range(1, 13)]
    assert months == [
        "Ionawr", "Chwefror", "Mawrth", "Ebrill", "Mai", "Mehefin",
        "Gorffennaf", "Awst", "Medi", "Hydref", "Tachwedd", "Rhagfyr",
    ]  # fmt: skip


def test_reopening_in_welsh() -> None:
    # Saturday 19 Dec 2026 at noon: closed until Monday 21 Dec at 9am.
    saturday = datetime(2026, 12, 19, 12, 0, tzinfo=UTC)
    assert reopening_phrase(VALE, saturday) == (
        "ein bod ar gau tan ddydd Llun 21 Rhagfyr 2026 am 9yb"
    )
    assert reopening_phrase(VALE, datetime(2026, 12, 21, 10, 0, tzinfo=UTC)) is None


class Case:
    """Enough of a case for mode_for."""

    def __init__(self, language: str | None) -> None:
        self.language = language


def test_which_language_a_letter_is_in() -> None:
    assert mode_for(STAFFORD, Case("cy")) == "en"  # an English council: always English
    assert mode_for(VALE, Case(None)) == "cy-en"  # not known: both, Welsh first
    assert mode_for(VALE, Case("cy")) == "cy"  # wrote in Welsh
    assert mode_for(VALE, Case("en")) == "en"  # asked for English


def config(tmp_path: Path, templates: Path | None = None) -> Path:
    path = tmp_path / "mailbot.toml"
    extra = f'templates = "{templates}"\n' if templates else ""
    path.write_text(
        f"""\
[council]
name = "Vale of Glamorgan Council"
policy = "vale-of-glamorgan"
mailbox_address = "contact@vale.example.gov.uk"
{extra}
[imap]
host = "127.0.0.1"
port = 1143
security = "none"
username = "contact"
password_env = "MAILBOT_TEST_NO_PASSWORD"

[smtp]
host = "127.0.0.1"
port = 1025
security = "none"

[database]
url = "sqlite:///{tmp_path / "m.db"}"

[[officers]]
name = "Rhian Evans"
email = "rhian.evans@vale.example.gov.uk"
phone = "01446 700111"
roles = ["foi-officer", "customer-services", "clerk"]
""",
        encoding="utf-8",
    )
    return path


def vale_app(tmp_path: Path, templates: Path | None = None) -> App:
    cfg = load_config(config(tmp_path, templates))
    return App.load(cfg, FixedClock(datetime(2026, 12, 21, 10, 0, tzinfo=UTC)))


def test_welsh_and_bilingual_letters_pass_templates_check(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("MAILBOT_TEST_NO_PASSWORD", "x")
    assert main(["--config", str(config(tmp_path)), "templates", "check"]) == 0
    assert "ok: every template renders" in capsys.readouterr().out


def test_a_clerks_welsh_template_is_used_and_checked(tmp_path: Path, monkeypatch, capsys):
    own = tmp_path / "templates"
    (own / "cy").mkdir(parents=True)
    (own / "cy" / "holding.txt").write_text(
        '{% extends "cy/_layout.txt" %}{% block body %}Ein gair ni: {{ new_date }}{% endblock %}',
        encoding="utf-8",
    )
    app = vale_app(tmp_path, own)
    case = sample_case("enquiry")
    context = welsh_context(app.cfg, VALE, case, app.clock.now(), new_date="Friday 15 January 2027")
    text = app.templates.render("cy/holding", context).text
    assert text.startswith("Ein gair ni: dydd Gwener 15 Ionawr 2027")  # our date, in Welsh
    assert check_all(app) == []
    # A broken Welsh override is named with its file and line, as an English one is.
    (own / "cy" / "holding.txt").write_text(
        '{% extends "cy/_layout.txt" %}\n{% block body %}{{ resident.enw }}{% endblock %}',
        encoding="utf-8",
    )
    problems = check_all(vale_app(tmp_path, own))
    assert any("cy/holding.txt:2:" in p and "enw" in p for p in problems), problems
    # And a letter to a resident without a Welsh version is a problem for a Welsh council.
    (own / "cy" / "holding.txt").unlink()
    (own / "holding-sar.txt").write_text(
        '{% extends "_layout.txt" %}{% block body %}Ours.{% endblock %}', encoding="utf-8"
    )
    problems = check_all(vale_app(tmp_path, own))
    assert "cy/holding-sar.txt: no Welsh version, so the letter went in English only" in problems


def test_a_bilingual_letter_is_welsh_first_in_one_message_with_equal_signatures(
    tmp_path: Path,
) -> None:
    app = vale_app(tmp_path)
    case = sample_case("foi")
    case.officer_email, case.officer_name = "rhian.evans@vale.example.gov.uk", "Rhian Evans"
    now = app.clock.now()
    english = case_context(app.cfg, VALE, case, now)
    cy = welsh_context(app.cfg, VALE, case, now)
    rendered, problems = render(app.templates, "acknowledgement-foi", "cy-en", english, cy)
    assert problems == []
    text = rendered.text
    welsh_part, english_part = text.split(DIVIDER)
    assert welsh_part.startswith(ENGLISH_BELOW + "\n\nAnnwyl Jane Doe,")
    assert "a ddaeth i law ar ddydd Gwener 20 Tachwedd 2026" in welsh_part
    assert "erbyn dydd Gwener 18 Rhagfyr 2026" in welsh_part
    assert "o dan Ddeddf Rhyddid Gwybodaeth 2000" in welsh_part
    assert "Dear Jane Doe," in english_part and "by Friday 18 December 2026" in english_part
    # Welsh Language Standard 6: the same signature and contact details in both.
    for part, phone, mail in ((welsh_part, "Ffôn", "E-bost"), (english_part, "Telephone", "Email")):
        assert (
            f"Rhian Evans\n{phone}: 01446 700111\n{mail}: rhian.evans@vale.example.gov.uk" in part
        )
        assert "FOI-2026-00042" in part
    assert "Cyngor Bro Morgannwg" in welsh_part and "Vale of Glamorgan Council" in english_part
    # Standard 7, in both languages.
    assert "Rydym yn croesawu gohebiaeth yn Gymraeg" in welsh_part
    assert "ni fydd gohebu yn Gymraeg yn arwain at oedi" in welsh_part
    assert "We welcome correspondence in Welsh" in english_part
    assert "will not lead to delay" in english_part
    # The HTML marks each part's language.
    assert '<html lang="cy">' in rendered.html
    assert '<div lang="cy">' in rendered.html and '<div lang="en"><hr>' in rendered.html
    assert rendered.html.index("Annwyl") < rendered.html.index("Dear Jane")


def test_letters_in_welsh_only_and_english_only(tmp_path: Path) -> None:
    app = vale_app(tmp_path)
    case = sample_case("sar")
    now = app.clock.now()
    english = case_context(app.cfg, VALE, case, now, old_date="Friday 18 December 2026",
                           reason="Mae eich cofnodion mewn tair archif.")  # fmt: skip
    cy = welsh_context(app.cfg, VALE, case, now, old_date="Friday 18 December 2026",
                       reason="Mae eich cofnodion mewn tair archif.")  # fmt: skip
    welsh_only, _ = render(app.templates, "extension-sar", "cy", english, cy)
    assert "Dear" not in welsh_only.text and DIVIDER not in welsh_only.text
    assert "yn hytrach na dydd Gwener 18 Rhagfyr 2026" in welsh_only.text
    assert "hyd at ddau fis ychwanegol" in welsh_only.text
    assert '<html lang="cy">' in welsh_only.html
    english_only, _ = render(app.templates, "extension-sar", "en", english, cy)
    assert "Annwyl" not in english_only.text
    assert "instead of Friday 18 December 2026" in english_only.text
    assert "We welcome correspondence in Welsh" in english_only.text  # standard 7 still
