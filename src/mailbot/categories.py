"""Categories: the six kinds of case, in one table that every module reads.

Adding a kind of case, or renaming one, is a row here (and its templates and policy
stages); nothing else lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Category = Literal["enquiry", "complaint", "foi", "eir", "sar", "compliment"]

# Which working-day calendar a category's clock runs on (calendar.calendar_for):
# - "any-uk-nation": FOIA s.10(6), borrowed by EIR reg 2(1): weekends, Christmas Day,
#   Good Friday and a bank holiday in any part of the UK (a Scottish council: FOISA s.73).
# - "nation": UK GDPR art. 12(3) as the ICO reads it: the council's nation's bank holidays.
# - "council": the council's own: its nation's bank holidays and its closure days.
Calendar = Literal["any-uk-nation", "nation", "council"]
# How the clock starts again when a resident answers a clarification (deadlines.resume):
# - "day-one": from day one again (FOIA s.1(3), EIR reg 9(4)).
# - "pause-calendar-days": the days waiting are not counted (UK GDPR art. 12A(3)-(4)).
# - "pause-working-days": the working days waiting are added (a council's own promise).
Restart = Literal["day-one", "pause-calendar-days", "pause-working-days"]


@dataclass(frozen=True)
class Kind:
    """One kind of case, as each part of mailbot names and treats it."""

    code: Category
    prefix: str  # of the case reference, FOI-2026-00042
    name: str  # in a letter: "your Freedom of Information request"
    plural: str  # in the report, to a councillor
    welsh: str  # in a Welsh letter
    colour: str  # in the report's charts (Okabe-Ito: told apart by colour-blind readers)
    statutory: bool  # the law, not the policy, sets the longest its clock may run
    calendar: Calendar
    restart: Restart


TABLE: tuple[Kind, ...] = (
    Kind(
        "enquiry", "ENQ", "enquiry", "Enquiries", "ymholiad", "#0072B2",
        statutory=False, calendar="council", restart="pause-working-days",
    ),
    Kind(
        "complaint", "COM", "complaint", "Complaints", "cwyn", "#D55E00",
        statutory=False, calendar="council", restart="pause-working-days",
    ),
    Kind(
        "foi", "FOI", "Freedom of Information request", "Freedom of information requests",
        "cais Rhyddid Gwybodaeth", "#009E73",
        statutory=True, calendar="any-uk-nation", restart="day-one",
    ),
    Kind(
        "eir", "EIR", "Environmental Information request", "Environmental information requests",
        "cais am wybodaeth amgylcheddol", "#56B4E9",
        statutory=True, calendar="any-uk-nation", restart="day-one",
    ),
    Kind(
        "sar", "SAR", "subject access request", "Requests for personal data (subject access)",
        "cais gwrthrych am wybodaeth", "#CC79A7",
        statutory=True, calendar="nation", restart="pause-calendar-days",
    ),
    Kind(
        "compliment", "CMP", "compliment", "Compliments", "canmoliaeth", "#E69F00",
        statutory=False, calendar="council", restart="pause-working-days",
    ),
)  # fmt: skip

KINDS: dict[str, Kind] = {kind.code: kind for kind in TABLE}
CATEGORIES: tuple[Category, ...] = get_args(Category)
STATUTORY: frozenset[str] = frozenset(kind.code for kind in TABLE if kind.statutory)
PREFIXES: dict[str, str] = {kind.code: kind.prefix for kind in TABLE}
assert tuple(KINDS) == CATEGORIES, "the table and the Category type list the same kinds"


def template_category(name: str) -> tuple[str, str | None]:
    """A template's name split into its general name and category:
    "acknowledgement-foi" -> ("acknowledgement", "foi"); "digest" -> ("digest", None)."""
    for code in CATEGORIES:
        if name.endswith("-" + code):
            return name.removesuffix("-" + code), code
    return name, None
