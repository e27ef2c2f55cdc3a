"""The policy in the console (issue 20, point 4): in plain English per category and
stage; the clerk changes office hours and closure days, an admin the whole file.

Every change is checked as `mailbot check` checks a policy before it replaces the
working file (a mistake names its line and key, and the file is left as it was); the
edit keeps the file's comments, which cite the clauses; the daemon reads the new file
at its next check of the mailbox (daemon.py watches it).
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path

import tomlkit
from sqlalchemy.orm import Session
from tomlkit.exceptions import TOMLKitError

from mailbot.app import App
from mailbot.calendar import calendar_for
from mailbot.categories import KINDS
from mailbot.config import Config
from mailbot.letters import check_all
from mailbot.policy import STATUTORY, Offset, Policy, PolicyError, parse_policy, policy_file
from mailbot.route import holders
from mailbot.templates import long_date
from mailbot.web.audit import Action, record

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = {
    "mon": "Monday",
    "tue": "Tuesday",
    "wed": "Wednesday",
    "thu": "Thursday",
    "fri": "Friday",
    "sat": "Saturday",
    "sun": "Sunday",
}
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_RECURRING = re.compile(r"^(\d{2})-(\d{2})$")


class NotEditable(Exception):
    """The policy cannot be changed from the console; one line saying what to do."""


# --- in plain English -----------------------------------------------------------------


@dataclass(frozen=True)
class StageInWords:
    category: str
    category_name: str
    number: int
    stages: int  # how many the category has
    name: str
    handler: str
    promises: list[tuple[str, str]]  # (what, in words)
    clause: str
    statute: str


def _people(cfg: Config, role: str) -> str:
    used, officers = holders(cfg, role)
    names = ", ".join(o.name for o in officers) or "nobody"
    return names if used == role else f"nobody holds it, so the clerk role: {names}"


def _offset(offset: Offset) -> str:
    return str(offset) if offset.amount == 0 else f"{offset} the response date"


def in_words(app: App) -> list[StageInWords]:
    """Each category and stage of the policy, as a clerk would say it."""
    policy, cfg = app.policy, app.cfg
    out = []
    for category, rules in policy.categories.items():
        calendar = calendar_for(policy, category)
        for number, stage in sorted(rules.stages.items()):
            promises = [
                ("Handled by", f"{stage.handler} (role {stage.role}: {_people(cfg, stage.role)})"),
                ("Acknowledge", f"within {stage.acknowledge} of arrival"),
                ("Respond", f"within {stage.respond}"),
                (
                    "Extension",
                    f"an officer may add up to {stage.extension} (#extend)"
                    if stage.extension
                    else "none: the officer sends a holding reply instead (#holding)",
                ),
                (
                    "Reminders to the officer",
                    ", ".join(_offset(r) for r in stage.reminders) if stage.reminders else "none",
                ),
                (
                    "Holding reply to the resident",
                    f"{_offset(stage.holding_reply)}, if the case is still open"
                    if stage.holding_reply
                    else "none sent automatically",
                ),
                (
                    "If the date is missed",
                    f"tell role {stage.on_breach} ({_people(cfg, stage.on_breach)})",
                ),
                ("Working days", _calendar_words(policy, category, calendar.name)),
                ("Next step for the resident", stage.next_step),
            ]
            out.append(
                StageInWords(
                    category=category,
                    category_name=KINDS[category].name,
                    number=number,
                    stages=len(rules.stages),
                    name=stage.name,
                    handler=stage.handler,
                    promises=promises,
                    clause=stage.clause,
                    statute=rules.statute,
                )
            )
    return out


def _calendar_words(policy: Policy, category: str, calendar: str) -> str:
    nation = policy.nation.replace("-", " ").title()
    if category in ("foi", "eir"):
        if policy.nation == "scotland":
            return "weekdays except Christmas Day and Scottish bank holidays (FOISA s.73)"
        return (
            "weekdays except Christmas Day, Good Friday and bank holidays in any part of "
            "the UK (FOIA s.10(6)); closure days do not stop the clock"
        )
    if category in STATUTORY:
        return f"the same date next month, moved off weekends and {nation}'s bank holidays"
    closures = " and the council's closure days" if policy.closure_days else ""
    return f"weekdays except {nation}'s bank holidays{closures}"


def hours_in_words(policy: Policy) -> str:
    """'Monday to Friday, 9am to 5pm'."""
    hours = policy.business_hours
    days = [d for d in DAYS if d in hours.days]
    if days == list(DAYS[: len(days)]) and len(days) > 2:
        span = f"{DAY_NAMES[days[0]]} to {DAY_NAMES[days[-1]]}"
    else:
        span = ", ".join(DAY_NAMES[d] for d in days)
    return f"{span}, {_clock(hours.opens)} to {_clock(hours.closes)}"


def _clock(t: time) -> str:
    hour = t.hour % 12 or 12
    return f"{hour}{f':{t.minute:02d}' if t.minute else ''}{'am' if t.hour < 12 else 'pm'}"


def closure_day_in_words(value: str) -> str:
    """'24 December, every year' or 'Thursday 24 December 2026'."""
    found = _RECURRING.match(value)
    if found:
        day = date(2024, int(found[1]), int(found[2]))
        return f"{day.day} {day:%B}, every year"
    return long_date(date.fromisoformat(value))


# --- where the policy is, and writing it -----------------------------------------------


def policy_path(app: App) -> Path:
    return policy_file(app.cfg.council.policy)


def editable_path(app: App) -> Path:
    """The policy file the console may write, or NotEditable saying how to get one."""
    name = app.cfg.council.policy
    if not ("/" in name or "\\" in name or name.endswith(".toml")):
        raise NotEditable(
            f"the policy is mailbot's built-in '{name}', which is replaced on upgrade. To "
            f"change it here, copy {policy_file(name)} to a file of the council's own "
            "(e.g. /etc/mailbot/policy/policy.toml, writable by mailbot) and set "
            "[council] policy to that path."
        )
    path = Path(name)
    if not os.access(path.parent, os.W_OK):
        raise NotEditable(f"mailbot cannot write to {path.parent}, where the policy is")
    return path


def check_text(app: App, text: str, shown: str) -> Policy:
    """What `mailbot check` does to a policy: validate it, and render every template
    with it. PolicyError (file, line, key) if it does not check out."""
    policy = parse_policy(text, shown)
    problems = check_all(dataclasses.replace(app, policy=policy))
    if problems:
        raise PolicyError(shown, None, "", f"the templates do not render with it: {problems[0]}")
    return policy


def save_policy(
    app: App, session: Session, text: str, *, actor: str, now: datetime, action: Action
) -> Policy:
    """Check and write the whole policy; the audit entry is in the caller's transaction.
    Nothing is written when it does not check out."""
    path = editable_path(app)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    policy = check_text(app, text, str(path))
    before = path.read_text(encoding="utf-8")
    record(
        session,
        actor=actor,
        action=action,
        target=str(path),
        now=now,
        before=before,
        after=text,
    )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.chmod(temporary, path.stat().st_mode & 0o777)
    os.replace(temporary, path)
    return policy


# --- the clerk's part: hours and closure days -------------------------------------------


@dataclass(frozen=True)
class HoursForm:
    """The hours form as typed; `problems` maps each field to what is wrong with it."""

    days: list[str]
    opens: str
    closes: str
    closure_days: list[str]

    def problems(self) -> dict[str, str]:
        found = {}
        if not self.days:
            found["days"] = "Choose at least one day the office opens."
        elif any(d not in DAYS for d in self.days):
            found["days"] = "Choose days from the list."
        for field in ("opens", "closes"):
            if not _CLOCK.match(getattr(self, field)):
                found[field] = "Give a time as hours and minutes on the 24-hour clock, e.g. 09:00."
        if (
            "opens" not in found
            and "closes" not in found
            and self._time("opens") >= self._time("closes")
        ):
            found["closes"] = "The office must close after it opens."
        for index, value in enumerate(self.closure_days, 1):
            if not _valid_closure(value):
                found["closure_days"] = (
                    f"Line {index}, {value[:20]!r}: write MM-DD for every year (12-24) or "
                    "YYYY-MM-DD for one day (2026-12-29)."
                )
                break
        return found

    def _time(self, field: str) -> time:
        hours, minutes = getattr(self, field).split(":")
        return time(int(hours), int(minutes))

    @classmethod
    def read(cls, days: list[str], opens: str, closes: str, closure_days: str) -> HoursForm:
        lines = [line.strip() for line in closure_days.splitlines()]
        return cls(
            days=[d.strip().lower() for d in days],
            opens=opens.strip(),
            closes=closes.strip(),
            closure_days=[line for line in lines if line],
        )

    @classmethod
    def of(cls, policy: Policy) -> HoursForm:
        hours = policy.business_hours
        return cls(
            days=list(hours.days),
            opens=f"{hours.opens:%H:%M}",
            closes=f"{hours.closes:%H:%M}",
            closure_days=list(policy.closure_days),
        )


def _valid_closure(value: str) -> bool:
    found = _RECURRING.match(value)
    try:
        if found:
            date(2024, int(found[1]), int(found[2]))
        else:
            date.fromisoformat(value)
            if len(value) != 10:
                return False
    except ValueError:
        return False
    return True


def with_hours(text: str, form: HoursForm) -> str:
    """The policy's TOML with new hours and closure days, every comment kept."""
    try:
        document = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise PolicyError("policy", None, "", f"not valid TOML: {exc}") from None
    closures = tomlkit.array()
    closures.extend(form.closure_days)
    closures.multiline(len(form.closure_days) > 3)
    document["closure_days"] = closures
    hours = document.get("business_hours")
    if hours is None:
        hours = tomlkit.table()
        document["business_hours"] = hours
    days = tomlkit.array()
    days.extend([d for d in DAYS if d in form.days])
    hours["days"] = days
    hours["opens"] = form.opens.zfill(5)
    hours["closes"] = form.closes.zfill(5)
    return tomlkit.dumps(document)
