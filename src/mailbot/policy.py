"""A council's published customer-service standard as data: the policy model and its loader."""

from __future__ import annotations

import contextlib
import difflib
import re
import tomllib
import types
import typing
from datetime import date, time
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mailbot.categories import CATEGORIES, STATUTORY
from mailbot.resources import builtin_dir

# How many stages each category may have: complaints as the council's procedure says;
# FOI and EIR requests a second, the internal review (FOIA s.45 code, EIR reg 11).
MOST_STAGES: dict[str, int] = {"complaint": 9, "foi": 2, "eir": 2}
# Languages a council writes to residents in: English, or Welsh and English (SPEC §9).
Language = Literal["en", "cy-en"]
Nation = Literal["england", "wales", "scotland", "northern-ireland"]
DurationUnit = Literal["working_days", "calendar_days", "calendar_months"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

# Ceilings on any number in a policy: far above anything a council publishes, low enough
# that date arithmetic can never overflow on a mistyped or hostile file.
_MAX_AMOUNT: dict[str, int] = {"working_days": 260, "calendar_days": 366, "calendar_months": 72}
_MAX_FILE_BYTES = 1_000_000
_ROLE = r"^[a-z][a-z0-9-]{0,62}$"


class PolicyError(Exception):
    """A policy file that cannot be used; str() is one line naming file, line and key."""

    def __init__(
        self,
        file: str,
        line: int | None,
        key: str,
        message: str,
        others: tuple[PolicyError, ...] = (),
    ) -> None:
        self.file = file
        self.line = line
        self.key = key
        self.message = message
        self.others = others  # further problems in the same file, for `mailbot check`
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        text = f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"
        if self.others:
            text += f" (and {len(self.others)} more problem{'s' if len(self.others) > 1 else ''})"
        return text


def _show(value: Any) -> str:
    """A value for an error message, cut short so a hostile file cannot flood the log."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _rule(key: str, detail: str) -> PydanticCustomError:
    """A policy-rule failure; `key` is relative to the model that raises it."""
    return PydanticCustomError("policy_rule", "{detail}", {"detail": detail, "key": key})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- durations and offsets ------------------------------------------------------------

_DURATION_RE = re.compile(r"^\s*(\d{1,6})\s+(working|calendar)\s+(days?|months?)\s*$", re.I)
_OFFSET_RE = re.compile(r"^\s*(\d{1,6})\s+working\s+days?\s+(before|after)\s*$", re.I)
_ON_DUE = re.compile(r"^\s*on\s+the\s+due\s+date\s*$", re.I)


class Duration(_Model):
    """A time limit as the seeds write it: "5 working days", "1 calendar month"."""

    amount: int = Field(ge=0)
    unit: DurationUnit

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            m = _DURATION_RE.match(value)
            unit = None
            if m:
                unit = {
                    ("working", "day"): "working_days",
                    ("calendar", "day"): "calendar_days",
                    ("calendar", "month"): "calendar_months",
                }.get((m.group(2).lower(), m.group(3).lower().rstrip("s")))
            if m is None or unit is None:
                raise ValueError(
                    f"not a duration: {_show(value)}; write it like '5 working days',"
                    " '10 calendar days' or '1 calendar month'"
                )
            return {"amount": int(m.group(1)), "unit": unit}
        if isinstance(value, dict | Duration):
            return value
        raise ValueError(f"not a duration: {_show(value)}; write it like '5 working days'")

    @model_validator(mode="after")
    def _in_range(self) -> Duration:
        if self.amount > _MAX_AMOUNT[self.unit]:
            raise ValueError(
                f"{self} is too long (at most {_MAX_AMOUNT[self.unit]} {self._unit_words(2)})"
            )
        return self

    @classmethod
    def parse(cls, text: str) -> Duration:
        return cls.model_validate(text)

    def _unit_words(self, amount: int) -> str:
        kind, span = self.unit.split("_")
        return f"{kind} {span if amount != 1 else span.rstrip('s')}"

    def __str__(self) -> str:
        return f"{self.amount} {self._unit_words(self.amount)}"


class Offset(_Model):
    """A point counted in working days from a response date: "3 working days before"."""

    amount: int = Field(ge=0, le=_MAX_AMOUNT["working_days"])
    direction: Literal["before", "after"] = "before"

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            if _ON_DUE.match(value):
                return {"amount": 0, "direction": "before"}
            m = _OFFSET_RE.match(value)
            if m is None:
                raise ValueError(
                    f"not a reminder point: {_show(value)}; write it like"
                    " '3 working days before', '1 working day after' or 'on the due date'"
                )
            return {"amount": int(m.group(1)), "direction": m.group(2).lower()}
        if isinstance(value, dict | Offset):
            return value
        raise ValueError(f"not a reminder point: {_show(value)}")

    @classmethod
    def parse(cls, text: str) -> Offset:
        return cls.model_validate(text)

    @property
    def working_days(self) -> int:
        """Signed: negative before the response date, positive after it."""
        return -self.amount if self.direction == "before" else self.amount

    def __str__(self) -> str:
        if self.amount == 0:
            return "on the due date"
        return f"{self.amount} working day{'s' if self.amount != 1 else ''} {self.direction}"


# --- the policy ------------------------------------------------------------------------


class StagePolicy(_Model):
    """One stage of a category: who handles it, how fast, and what happens around the date."""

    number: int = Field(ge=1, le=9)
    name: str = Field(min_length=1, max_length=200)
    handler: str = Field(min_length=1, max_length=300)
    role: str = Field(pattern=_ROLE)
    acknowledge: Duration
    respond: Duration
    extension: Duration | None = None
    reminders: list[Offset] = Field(default_factory=list, max_length=10)
    holding_reply: Offset | None = None
    on_breach: str = Field(pattern=_ROLE)
    next_step: str = Field(min_length=1, max_length=2000)
    clause: str = Field(min_length=1, max_length=1000)
    # The same in Welsh, for a council with language = "cy-en" (SPEC §9).
    name_cy: str | None = Field(default=None, min_length=1, max_length=200)
    handler_cy: str | None = Field(default=None, min_length=1, max_length=300)
    next_step_cy: str | None = Field(default=None, min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _coherent(self) -> StagePolicy:
        if self.respond.amount < 1:
            raise _rule("respond", "a response limit must be at least 1 day")
        if self.acknowledge.unit == self.respond.unit and self.acknowledge.amount > (
            self.respond.amount
        ):
            raise _rule(
                "acknowledge",
                f"acknowledgement ({self.acknowledge}) is later than the response ({self.respond})",
            )
        if self.extension is not None and self.extension.amount < 1:
            raise _rule("extension", "leave extension out rather than allow 0")
        if self.holding_reply is not None and self.holding_reply.direction == "after":
            raise _rule("holding_reply", "a holding reply must go before the response date")
        return self


class CategoryPolicy(_Model):
    """A kind of correspondence and its stages: a complaint's stages, or an FOI or EIR
    request and its internal review; the rest have one."""

    statute: str = Field(default="", max_length=500)  # e.g. "FOIA 2000 s.10"
    stages: dict[int, StagePolicy]

    @model_validator(mode="before")
    @classmethod
    def _number_stages(cls, value: Any) -> Any:
        # The stage number is the table name ([categories.complaint.stages.2]); a clerk
        # need not repeat it, so fill it in here.
        if isinstance(value, dict) and isinstance(value.get("stages"), dict):
            stages = {}
            for key, stage in value["stages"].items():
                if isinstance(stage, dict) and "number" not in stage:
                    # a key that is not a number is reported by validation
                    with contextlib.suppress(TypeError, ValueError):
                        stage = {**stage, "number": int(key)}
                stages[key] = stage
            value = {**value, "stages": stages}
        return value

    @model_validator(mode="after")
    def _stages_in_order(self) -> CategoryPolicy:
        numbers = sorted(self.stages)
        if numbers != list(range(1, len(numbers) + 1)):
            raise _rule("stages", f"stages must be numbered 1, 2, 3... (found {numbers})")
        for number, stage in self.stages.items():
            if stage.number != number:
                raise _rule(
                    f"stages.{number}.number",
                    f"says {stage.number} but the table is stage {number}",
                )
        return self

    @property
    def final_stage(self) -> int:
        return max(self.stages)


class BusinessHours(_Model):
    """When the office is open, for out-of-hours and reopening wording."""

    days: list[Weekday] = Field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"], min_length=1, max_length=7
    )
    opens: time = time(9, 0)
    closes: time = time(17, 0)

    @model_validator(mode="after")
    def _sensible(self) -> BusinessHours:
        if len(set(self.days)) != len(self.days):
            raise _rule("days", "a day is listed twice")
        if self.opens >= self.closes:
            raise _rule("closes", f"closes ({self.closes:%H:%M}) is not after opens")
        return self


_RECURRING = re.compile(r"^(\d{2})-(\d{2})$")


class Policy(_Model):
    """One council's standard: its calendar, office hours and a policy per category."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    council: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=500)
    nation: Nation
    timezone: str = "Europe/London"
    closure_days: list[str] = Field(default_factory=list, max_length=400)
    business_hours: BusinessHours = Field(default_factory=BusinessHours)
    welfare_alert_role: str = Field(default="duty-officer", pattern=_ROLE)
    # When the clerk's daily digest of open cases goes out, on working days; None means
    # at opening time.
    digest_at: time | None = None
    classification: dict[str, Any] = Field(default_factory=dict)
    retention: Duration | None = None
    # "cy-en": residents' mail in Welsh is answered in Welsh, everything else to residents
    # is bilingual, Welsh first (SPEC §9, Welsh Language Standards 1, 5, 6 and 7).
    language: Language = "en"
    council_cy: str | None = Field(default=None, min_length=1, max_length=200)
    categories: dict[str, CategoryPolicy]

    @field_validator("timezone")
    @classmethod
    def _real_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {_show(value)} (use e.g. 'Europe/London')"
            ) from None
        return value

    @field_validator("closure_days", mode="before")
    @classmethod
    def _closure_days_as_text(cls, value: Any) -> Any:
        # TOML has a date type: accept 2026-12-24 unquoted as well as "2026-12-24".
        if isinstance(value, list):
            return [v.isoformat() if isinstance(v, date) else v for v in value]
        return value

    @field_validator("closure_days")
    @classmethod
    def _closure_days_valid(cls, values: list[str]) -> list[str]:
        for i, value in enumerate(values):
            m = _RECURRING.match(value)
            try:
                if m:
                    date(2024, int(m.group(1)), int(m.group(2)))  # a leap year allows 02-29
                else:
                    date.fromisoformat(value)
                    if len(value) != 10:
                        raise ValueError
            except ValueError:
                raise ValueError(
                    f"closure day {i + 1} {_show(value)} is not 'MM-DD' (every year)"
                    " or 'YYYY-MM-DD' (once)"
                ) from None
        return values

    @model_validator(mode="after")
    def _complete_and_lawful(self) -> Policy:
        for name in self.categories:
            if name not in CATEGORIES:
                raise _rule(f"categories.{name}", f"unknown category; use {', '.join(CATEGORIES)}")
        for name in CATEGORIES:
            if name not in self.categories:
                raise _rule(f"categories.{name}", "missing: every policy covers all six categories")
            category = self.categories[name]
            most = MOST_STAGES.get(name, 1)
            if len(category.stages) > most:
                raise _rule(
                    f"categories.{name}.stages",
                    "only complaints have more than one stage, and FOI and EIR requests"
                    " a second (the internal review)"
                    if most == 1
                    else f"{name} has at most {most} stages (the request and its internal review)",
                )
        # Each request before any review, so the first problem named is the first stage's.
        for number in (1, 2):
            for name in sorted(STATUTORY):
                if number in self.categories[name].stages:
                    _check_statute(name, self.categories[name].stages[number], self.nation)
        if self.language == "cy-en":
            self._check_welsh()
        return self

    def _check_welsh(self) -> None:
        """A bilingual council writes every name and next step in Welsh too."""
        if not self.council_cy:
            raise _rule("council_cy", 'language = "cy-en" needs the council\'s name in Welsh')
        for name, category in self.categories.items():
            for number, stage in category.stages.items():
                for key in ("name_cy", "handler_cy", "next_step_cy"):
                    if not getattr(stage, key):
                        raise _rule(
                            f"categories.{name}.stages.{number}.{key}",
                            'missing: language = "cy-en" needs the Welsh of'
                            f" {key.removesuffix('_cy')}",
                        )

    def stage(self, category: str, number: int = 1) -> StagePolicy:
        try:
            return self.categories[category].stages[number]
        except KeyError:
            raise KeyError(f"policy {self.name!r} has no {category} stage {number}") from None

    def final_stage(self, category: str) -> int:
        try:
            return self.categories[category].final_stage
        except KeyError:
            raise KeyError(f"policy {self.name!r} has no category {category!r}") from None


def _check_statute(category: str, stage: StagePolicy, nation: str) -> None:
    """Statute is the ceiling: a policy may promise faster, never slower."""
    where = f"categories.{category}.stages.{stage.number}"
    if category == "sar":
        _check_sar(where, stage)
        return
    limit, extra, law, extra_law = _information_limits(category, stage.number, nation)
    respond, extension = stage.respond, stage.extension
    if respond.unit != "working_days" or respond.amount > limit:
        raise _rule(
            f"{where}.respond",
            f"{respond} is longer than statute: {law} allows {limit} working days",
        )
    if extension is None:
        return
    if extra == 0:
        raise _rule(f"{where}.extension", f"{extra_law} allows no extension of the {limit} days")
    if extension.unit != "working_days" or extension.amount > extra:
        raise _rule(
            f"{where}.extension",
            f"{extension} is longer than statute: {extra_law} allows {extra} more working days",
        )


def _information_limits(category: str, stage: int, nation: str) -> tuple[int, int, str, str]:
    """(working days, most extra working days, the law, the extension's law) for an FOI or
    EIR request (stage 1) or its internal review (stage 2)."""
    scotland = nation == "scotland"
    if category == "foi" and stage == 1:
        if scotland:
            return 20, 0, "FOISA 2002 s.10", "FOISA 2002"
        return 20, 20, "FOIA 2000 s.10(1)", "FOIA 2000 s.10(3) and ICO guidance"
    if category == "foi":  # the internal review
        if scotland:
            return 20, 0, "FOISA 2002 s.21(1)", "FOISA 2002 s.21"
        return (
            20,
            20,
            "the FOIA s.45 code of practice (para 5.4)",
            "the FOIA s.45 code of practice (para 5.5, 40 working days in all)",
        )
    if stage == 1:
        if scotland:
            return 20, 20, "EISR 2004 reg 5", "EISR 2004 reg 7(1)"
        return 20, 20, "EIR 2004 reg 5(2)", "EIR 2004 reg 7(1)"
    if scotland:  # the review of an environmental request
        return 20, 0, "EISR 2004 reg 16(4)", "EISR 2004 reg 16"
    return 40, 0, "EIR 2004 reg 11(4)", "EIR 2004 reg 11"


def _check_sar(where: str, stage: StagePolicy) -> None:
    law = "UK GDPR art. 12(3)"
    respond, extension = stage.respond, stage.extension
    within_month = (respond.unit == "calendar_months" and respond.amount <= 1) or (
        respond.unit == "calendar_days" and respond.amount <= 28
    )
    if not within_month:
        raise _rule(
            f"{where}.respond",
            f"{respond} may be longer than statute: {law}"
            " allows one calendar month (write '1 calendar month')",
        )
    if extension is not None and (extension.unit != "calendar_months" or extension.amount > 2):
        raise _rule(
            f"{where}.extension",
            f"{extension} is longer than statute: {law} allows two further calendar months",
        )


# --- loading ---------------------------------------------------------------------------


def builtin_policy_dir() -> Path:
    return builtin_dir("policies")


def list_policies() -> list[str]:
    """The shipped policies by name (files starting with "_" are shared rule files)."""
    folder = builtin_policy_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.toml") if not p.name.startswith("_"))


def load_policy(name_or_path: str) -> Policy:
    """A shipped policy by name ("stafford"), or any file by path (contains / or ends .toml)."""
    path, shown = _locate(name_or_path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_FILE_BYTES + 1)  # never more: the path may be a device
    except FileNotFoundError:
        if shown.startswith("policies/"):
            names = ", ".join(list_policies()) or "none"
            raise PolicyError(
                shown, None, "", f"no such policy; built-in policies: {names}"
            ) from None
        raise PolicyError(shown, None, "", "no such file") from None
    except OSError as exc:
        raise PolicyError(shown, None, "", f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise PolicyError(shown, None, "", f"too large for a policy (over {_MAX_FILE_BYTES} bytes)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PolicyError(shown, line, "", "not UTF-8 text") from None
    return parse_policy(text, shown)


def parse_policy(text: str, file: str = "<policy>") -> Policy:
    """Validate policy TOML text; every problem is a PolicyError pointing into `file`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", message)
        line = int(m.group(1)) if m else None
        if m:
            message = f"{message[: m.start()].strip()} (column {m.group(2)})"
        raise PolicyError(file, line, "", f"not valid TOML: {message}") from None
    except RecursionError:
        raise PolicyError(file, None, "", "not valid TOML: nested too deeply") from None
    if not data:
        raise PolicyError(
            file,
            None,
            "",
            "empty: a policy needs at least name, council, source, nation and [categories]",
        )
    lines = _key_lines(text)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        # An unknown key first: a typo also makes the real key "missing", and the typo
        # is the thing to fix.
        raw = sorted(exc.errors(), key=lambda err: err["type"] != "extra_forbidden")
        errors = [_to_policy_error(err, file, lines) for err in raw]
        first = errors[0]
        raise PolicyError(
            first.file, first.line, first.key, first.message, tuple(errors[1:])
        ) from None
    _check_classification(policy, file, lines)
    return policy


def _check_classification(policy: Policy, file: str, lines: dict[str, int]) -> None:
    """The policy's [classification] rules as the classifier reads them: a bad pattern
    is this file's problem, named with its line, not a crash when mail comes."""
    from mailbot.classify import load_rules  # the classifier owns the rules' shape

    try:
        load_rules(policy.classification)
    except ValueError as exc:
        key, _, message = str(exc).partition(": ")
        raise PolicyError(file, _line_of(key, lines), key, message) from None


def policy_file(name_or_path: str) -> Path:
    """The file `load_policy(name_or_path)` reads."""
    return _locate(name_or_path)[0]


def _locate(name_or_path: str) -> tuple[Path, str]:
    if "/" in name_or_path or "\\" in name_or_path or name_or_path.endswith(".toml"):
        return Path(name_or_path), name_or_path
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", name_or_path):
        raise PolicyError(name_or_path, None, "", "not a policy name (use e.g. 'stafford')")
    return builtin_policy_dir() / f"{name_or_path}.toml", f"policies/{name_or_path}.toml"


def _to_policy_error(err: Any, file: str, lines: dict[str, int]) -> PolicyError:
    loc = [str(part) for part in err["loc"] if part != "[key]"]
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind == "policy_rule":
        key = ".".join([*loc, ctx["key"]] if ctx.get("key") else loc)
        message = ctx["detail"]
    else:
        key = ".".join(loc)
        if kind == "missing":
            message = "missing (this key is required)"
        elif kind == "extra_forbidden":
            message = "unknown key" + _did_you_mean(err["loc"])
        elif kind == "value_error":
            message = str(err["msg"]).removeprefix("Value error, ")
        elif kind == "string_pattern_mismatch":
            message = (
                f"{_show(err.get('input'))} is not a valid name: use lower-case letters,"
                " digits and hyphens, like 'head-of-service'"
            )
        elif kind.startswith("too_") or "_too_" in kind:
            message = str(err["msg"])  # pydantic already says how many there were
        else:
            message = f"{err['msg']}, not {_show(err.get('input'))}"
    return PolicyError(file, _line_of(key, lines), key, message)


def _did_you_mean(loc: tuple[Any, ...]) -> str:
    """Suggest the nearest real key for a typo, by walking the model along `loc`."""
    fields = _fields_at(loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), fields, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else " (a typo?)"


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    node: Any = Policy
    for part in loc:
        node = _unwrap(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(str(part))
            if field is None:
                return []
            node = field.annotation
        elif typing.get_origin(node) in (dict, list):
            node = typing.get_args(node)[-1]
        else:
            return []
    node = _unwrap(node)
    if isinstance(node, type) and issubclass(node, BaseModel):
        return list(node.model_fields)
    return []


def _unwrap(node: Any) -> Any:
    if typing.get_origin(node) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(node) if a is not type(None)]
        return args[0] if len(args) == 1 else node
    return node


# --- line numbers of keys in TOML text -------------------------------------------------

_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*(.+?)\s*\]\]?\s*(?:#.*)?$")
_KEY_PART = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_KEY_RE = re.compile(rf"^\s*({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=(.*)$")


def _split_key(text: str) -> list[str]:
    return [part[1:-1] if part[:1] in "\"'" else part for part in re.findall(_KEY_PART, text)]


def _bracket_balance(value: str) -> int:
    """Open minus closed brackets and braces outside strings and comments."""
    depth, quote, i = 0, "", 0
    while i < len(value):
        ch = value[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        i += 1
    return depth


def _key_lines(text: str) -> dict[str, int]:
    """Map each dotted key (and each table) to the line it is first written on.

    A best effort, not a TOML parser: it knows tables, arrays of tables, dotted and
    quoted keys, multi-line strings and multi-line arrays, which is all policies use.
    """
    found: dict[str, int] = {}
    table: list[str] = []
    arrays: dict[str, int] = {}
    open_string = ""
    depth = 0
    for number, line in enumerate(text.splitlines(), 1):
        if open_string:
            if line.count(open_string) % 2 == 1:
                open_string = ""
            continue
        if depth > 0:
            depth = max(0, depth + _bracket_balance(line))
            continue
        header = _HEADER_RE.match(line)
        if header and not _KEY_RE.match(line):
            parts = _split_key(header.group(2))
            if header.group(1) == "[[":
                joined = ".".join(parts)
                arrays[joined] = arrays.get(joined, -1) + 1
                parts = [*parts, str(arrays[joined])]
            table = parts
            for i in range(1, len(parts) + 1):
                found.setdefault(".".join(parts[:i]), number)
            continue
        key = _KEY_RE.match(line)
        if not key:
            continue
        parts = [*table, *_split_key(key.group(1))]
        for i in range(len(table) + 1, len(parts) + 1):
            found.setdefault(".".join(parts[:i]), number)
        value = key.group(2)
        for quotes in ('"""', "'''"):
            if value.count(quotes) % 2 == 1:
                open_string = quotes
                break
        else:
            depth = max(0, _bracket_balance(value))
    return found


def _line_of(key: str, lines: dict[str, int]) -> int | None:
    """The line of `key`, else of its nearest enclosing table, else of its first child."""
    parts = key.split(".") if key else []
    while parts:
        joined = ".".join(parts)
        if joined in lines:
            return lines[joined]
        children = [n for k, n in lines.items() if k.startswith(joined + ".")]
        if children:
            return min(children)
        parts.pop()
    return None
