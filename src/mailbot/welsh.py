"""Welsh: finding mail written in Welsh, and writing to residents in Welsh, in English or
in both, Welsh first (SPEC §9; the Welsh Language Standards (No. 1) Regulations 2015,
standards 1, 5, 6 and 7, which councils in Wales must meet).

Only a policy with `language = "cy-en"` uses any of this. The language identifier
(lingua, Apache-2.0, which ships its models in the package) is loaded the first time it
is needed, with the Welsh and English models only, in its low-accuracy (trigram) mode:
about 8 MB of memory rather than 50 MB, and on Welsh against English the trigrams alone
tell them apart. A council writing in English only never loads it.

Which letter a resident gets, per case (`Case.language`):
- "cy": they wrote in Welsh (or asked, #language cy): Welsh only;
- "en": they asked for English (#language en): English only;
- not known: both in one message, Welsh first.
Every letter says that correspondence in Welsh is welcome (standard 7).
"""

from __future__ import annotations

import logging
import re
import threading
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from mailbot.calendar import is_open, next_opening
from mailbot.categories import KINDS
from mailbot.templates import Rendered, case_context

if TYPE_CHECKING:
    from sqlalchemy import Row

    from mailbot.config import Config
    from mailbot.policy import Policy
    from mailbot.store import Case
    from mailbot.templates import Templates

log = logging.getLogger("mailbot.welsh")

Mode = Literal["cy", "en", "cy-en"]

WEEKDAYS = ("Llun", "Mawrth", "Mercher", "Iau", "Gwener", "Sadwrn", "Sul")
MONTHS = (
    "Ionawr", "Chwefror", "Mawrth", "Ebrill", "Mai", "Mehefin",
    "Gorffennaf", "Awst", "Medi", "Hydref", "Tachwedd", "Rhagfyr",
)  # fmt: skip
# The line above the Welsh, for a reader of English looking for their part.
ENGLISH_BELOW = "Please scroll down for English."
DIVIDER = "-" * 60
# A message is Welsh when the identifier is at least this sure (of Welsh against English).
WELSH_CONFIDENCE = 0.5
_MIN_LETTERS = 3  # "Ok" is no language


class Dyddiad(str):
    """A date written in Welsh: "dydd Gwener 18 Rhagfyr 2026"; `.meddal` is the same
    after a preposition that softens it ("ar ddydd Gwener 18 Rhagfyr 2026"), so a
    template can write `ar {{ case.received_on.meddal }}` and `erbyn {{ case.respond_by }}`."""

    meddal: str

    def __new__(cls, day: date) -> Dyddiad:
        text = f"dydd {WEEKDAYS[day.weekday()]} {day.day} {MONTHS[day.month - 1]} {day.year}"
        made = super().__new__(cls, text)
        made.meddal = "d" + text  # dydd -> ddydd, the soft mutation of d
        return made


def welsh_date(day: date) -> Dyddiad:
    return Dyddiad(day)


_ENGLISH_DATE = re.compile(r"^[A-Z][a-z]+day \d{1,2} [A-Z][a-z]+ \d{4}$")


def _from_english(text: str) -> date | None:
    """One of our own English long dates ("Friday 18 December 2026"), read back."""
    if not _ENGLISH_DATE.match(text):
        return None
    try:
        return datetime.strptime(text, "%A %d %B %Y").date()
    except ValueError:
        return None


def _clock_words(t: datetime) -> str:
    hour = t.hour % 12 or 12
    minutes = f".{t.minute:02d}" if t.minute else ""
    return f"{hour}{minutes}{'yb' if t.hour < 12 else 'yp'}"  # y bore, y prynhawn


def reopening_phrase(policy: Policy, instant: datetime) -> str | None:
    """ "ein bod ar gau tan ddydd Llun 5 Ionawr am 9yb" when closed; None when open."""
    if is_open(policy, instant):
        return None
    opens = next_opening(policy, instant)
    return f"ein bod ar gau tan {welsh_date(opens.date()).meddal} am {_clock_words(opens)}"


# --- finding Welsh -----------------------------------------------------------------------

_detector: Any = None
_detector_lock = threading.Lock()


def _build_detector() -> Any:
    from lingua import Language, LanguageDetectorBuilder  # loaded only for a Welsh council

    return (
        LanguageDetectorBuilder.from_languages(Language.WELSH, Language.ENGLISH)
        .with_low_accuracy_mode()
        .build()
    )


def is_welsh(text: str) -> bool:
    """Whether a resident's own words are in Welsh (against English)."""
    global _detector
    if sum(ch.isalpha() for ch in text) < _MIN_LETTERS:
        return False
    if _detector is None:
        with _detector_lock:
            if _detector is None:
                _detector = _build_detector()
    from lingua import Language

    return _detector.compute_language_confidence(text[:5000], Language.WELSH) >= WELSH_CONFIDENCE


def detector_loaded() -> bool:
    """Whether the identifier has been loaded (a council writing in English never does)."""
    return _detector is not None


# --- writing -----------------------------------------------------------------------------


def mode_for(policy: Policy, case: Case | Row[Any] | None) -> Mode:
    """Which language(s) a letter to this case's resident is written in."""
    if policy.language != "cy-en":
        return "en"
    preference = getattr(case, "language", None) if case is not None else None
    return preference if preference in ("cy", "en") else "cy-en"


def welsh_context(
    cfg: Config, policy: Policy, case: Case | Row[Any], now: datetime, **extra: Any
) -> dict[str, Any]:
    """The template context of `case_context`, in Welsh: the council's Welsh name, the
    category, the stage's Welsh wording, every date (ours in `extra` too) in Welsh."""
    context = case_context(cfg, policy, case, now, **extra)
    stage = policy.stage(case.category, case.stage)
    zone = ZoneInfo(policy.timezone)
    started = getattr(case, "stage_started_at", None) or case.received_at
    context["council"] = {**context["council"], "name": policy.council_cy or cfg.council.name}
    context["case"] = {
        **context["case"],
        "category_name": KINDS[case.category].welsh,
        "received_on": welsh_date(case.received_at.astimezone(zone).date()),
        "respond_by": welsh_date(case.respond_by),
        "acknowledge_by": welsh_date(case.acknowledge_by),
        "stage_started_on": welsh_date(started.astimezone(zone).date()),
    }
    context["stage"] = {
        "name": stage.name_cy or stage.name,
        "handler": stage.handler_cy or stage.handler,
        "next_step": stage.next_step_cy or stage.next_step,
    }
    context["reopening"] = reopening_phrase(policy, now)
    for key, value in extra.items():
        if isinstance(value, str) and (day := _from_english(value)):
            context[key] = welsh_date(day)
    return context


def english_context(context: dict[str, Any]) -> dict[str, Any]:
    """The English context for a bilingual council: it says Welsh is welcome too."""
    return {**context, "welsh_welcome": True}


def render(
    templates: Templates,
    name: str,
    mode: Mode,
    english: dict[str, Any],
    welsh: dict[str, Any],
) -> tuple[Rendered, list[str]]:
    """A letter to a resident in `mode`; the problems met (for the clerk), each one line.

    A missing or broken Welsh template never stops a letter: the English goes alone and
    the clerk is told.
    """
    problems: list[str] = []
    english = english_context(english)
    if mode == "en":
        rendered, problem = templates.render_safe(name, english)
        return rendered, [problem] if problem else []
    cy_name = f"cy/{name}"
    if cy_name not in templates.names():
        problems.append(f"{cy_name}.txt: no Welsh version, so the letter went in English only")
        rendered, problem = templates.render_safe(name, english)
        return rendered, [*problems, *([problem] if problem else [])]
    cy, problem = templates.render_safe(cy_name, welsh)
    problems += [problem] if problem else []
    if mode == "cy":
        return _in_html(templates, welsh, [("cy", cy.text)]), problems
    en, problem = templates.render_safe(name, english)
    problems += [problem] if problem else []
    text = f"{ENGLISH_BELOW}\n\n{cy.text}\n{DIVIDER}\n\n{en.text}"
    html = _in_html(templates, welsh, [("cy", cy.text), ("en", en.text)]).html
    return Rendered(text=text, html=html), problems


def _in_html(
    templates: Templates, context: dict[str, Any], parts: list[tuple[str, str]]
) -> Rendered:
    """The parts in the shared HTML layout, each marked with its language (WCAG 3.1.2)."""
    html = templates.env.get_template("_layout.html").render(
        {
            **context,
            "html_lang": parts[0][0],
            "parts": [
                {
                    "lang": lang,
                    "paragraphs": [p.splitlines() for p in text.split("\n\n") if p.strip()],
                }
                for lang, text in parts
            ],
            "paragraphs": [],
        }
    )
    return Rendered(text="\n".join(text for _, text in parts), html=html)
