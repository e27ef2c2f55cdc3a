"""Reports: how well the council kept its promises over a period, as JSON, CSV and HTML."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from mailbot.calendar import calendar_for
from mailbot.categories import CATEGORIES, KINDS, STATUTORY
from mailbot.deadlines import compute
from mailbot.policy import Policy
from mailbot.store import Case, CaseEvent, CategoryCorrection, OutboxMessage, OutboxStatus

OUTCOMES = ("upheld", "partly-upheld", "not-upheld")
OUTCOME_NAMES = {"upheld": "Upheld", "partly-upheld": "Partly upheld", "not-upheld": "Not upheld"}
# An FOI or EIR response's outcome, and its internal review's (officers.py's #outcome).
REQUEST_OUTCOMES = ("granted", "partly-granted", "refused", "not-held")
REVIEW_OUTCOMES = ("upheld", "partly-upheld", "overturned")
REQUEST_OUTCOME_NAMES = {
    "granted": "Granted in full",
    "partly-granted": "Granted in part",
    "refused": "Refused",
    "not-held": "Information not held",
    "upheld": "Review: decision upheld",
    "partly-upheld": "Review: decision partly upheld",
    "overturned": "Review: decision overturned",
}
INFORMATION = ("foi", "eir")  # the requests whose outcomes and exemptions are counted
NO_CASES = "No cases were received in this period."

# Events written before they carried data (store.CaseEvent.data) are read by the wording
# mailbot wrote for them: a stage move, "stage 1 -> 2; acknowledge by 2026-05-01; respond
# by 2026-05-29; stage 1 was due 2026-04-30", and an outcome, "outcome upheld (stage 1) by
# ...; exemptions: s.40(2), s.43(2)". Only at the start of an event: a note saying
# "outcome: upheld" is an officer's words, not an outcome.
_STAGE_MOVE = re.compile(r"^stage\s+(\d+)\s*(?:->|→)\s*(\d+)", re.IGNORECASE)
_ACK_BY = re.compile(r"acknowledge[ _-]?by\W{0,3}(\d{4}-\d{2}-\d{2})", re.IGNORECASE)
_RESPOND_BY = re.compile(r"respond[ _-]?by\W{0,3}(\d{4}-\d{2}-\d{2})", re.IGNORECASE)
_OUTCOME = re.compile(
    r"^outcome\W{0,3}(partly-upheld|not-upheld|upheld|partly-granted|granted|refused|not-held"
    r"|overturned)\b",
    re.IGNORECASE,
)
_EXEMPTIONS = re.compile(r"\bexemptions:\s*([^;]+)", re.IGNORECASE)
_WAS_DUE = re.compile(r"stage\s+\d+\s+was\s+due\s+(\d{4}-\d{2}-\d{2})", re.IGNORECASE)


def meaning(event: EventRow) -> dict[str, Any]:
    """What an event says for the figures: its data, or for an event from before events
    carried data, what its wording says."""
    data = getattr(event, "data", None)
    if data:
        return data
    detail, found = event.detail or "", {}
    if event.kind == "stage-changed" and (move := _STAGE_MOVE.search(detail)):
        found = {"from": int(move.group(1)), "to": int(move.group(2))}
        for key, pattern in (
            ("acknowledge_by", _ACK_BY),
            ("respond_by", _RESPOND_BY),
            ("was_due", _WAS_DUE),
        ):
            if got := pattern.search(detail):
                found[key] = got.group(1)
    elif outcome := _OUTCOME.search(detail):
        cited = _EXEMPTIONS.search(detail)
        exemptions = [c.strip() for c in cited.group(1).split(",") if c.strip()] if cited else []
        found = {"outcome": outcome.group(1).lower(), "exemptions": exemptions}
    return found


# Kinds of event that carry something the figures need; the rest are not read.
EVENT_KINDS = ("stage-changed", "acknowledged", "responded", "note", "closed", "extended")


# --- what the figures are counted from ---------------------------------------------------


class CaseRow(Protocol):
    """The parts of a case the figures read (a store.Case, or a hand-built stand-in)."""

    id: int
    ref: str
    category: str
    stage: int
    status: str
    officer_name: str | None
    received_at: datetime
    acknowledged_at: datetime | None
    acknowledge_by: date
    respond_by: date
    responded_at: datetime | None
    closed_at: datetime | None
    breached_at: datetime | None
    clock_stopped: bool
    outcome: str | None


class EventRow(Protocol):
    case_id: int
    at: datetime
    kind: str
    detail: str
    # data: dict | None, what it means for the figures (store.CaseEvent.data); rows from
    # before it, or built by hand, may not have it.


class SentRow(Protocol):
    case_id: int | None
    kind: str
    status: str
    sent_at: datetime | None


@dataclass(frozen=True)
class StageRecord:
    """One stage of one case: the unit every figure is counted over.

    A case that never moved stage is one record. A complaint that moved from stage 1 to
    2 is two records: stage 1 from arrival until the "stage-changed" event, stage 2 from
    that event on.
    """

    ref: str
    category: str
    stage: int
    officer: str | None
    new_case: bool  # the first stage of a case: counts as a case received that week
    started_at: datetime
    started_on: date  # local date the stage's clock began
    ended_on: date | None  # local date the case left this stage or was closed
    acknowledged_on: date | None
    acknowledge_by: date
    respond_by: date
    responded_at: datetime | None
    responded_on: date | None
    breached_at: datetime | None
    clock_stopped: bool
    outcome: str | None
    holding_replies: int
    extended: bool = False  # an officer extended the stage's response date
    exemptions: tuple[str, ...] = ()  # cited with its outcome


@dataclass(frozen=True)
class CategoryFigures:
    """The figures for one category at one stage (category "all", stage 0: every case)."""

    category: str
    stage: int
    received: int
    acknowledged_on_time: int
    acknowledged_on_time_pct: float | None  # of acknowledgements_due; None when none due
    responded: int
    responded_on_time: int
    responded_on_time_pct: float | None  # of responses_due; None when none due
    breached: int
    median_working_days: int | None  # over responded stages only
    p90_working_days: int | None
    holding_replies: int
    outcomes: dict[str, int] = field(default_factory=dict)  # complaints only
    acknowledgements_due: int = 0
    responses_due: int = 0
    # The responses due, as the Cabinet Office counts FOI returns: answered in time with
    # no extension, in time with an extension, and late (or not answered by the date).
    in_time: int = 0
    in_time_extended: int = 0
    late: int = 0
    # FOI and EIR rows: the responses' outcomes (reviews': upheld, partly-upheld,
    # overturned), and how often each exemption was cited.
    request_outcomes: dict[str, int] = field(default_factory=dict)
    exemptions: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    council: str
    policy: str
    period_from: date
    period_to: date
    generated_at: datetime
    rows: list[CategoryFigures]
    breaches: list[dict[str, Any]]
    weekly: list[tuple[date, dict[str, int]]]
    total: CategoryFigures
    timezone: str = "Europe/London"
    # (mailbot's category, the officer's, cases): #category corrections in the period
    corrections: tuple[tuple[str, str, int], ...] = ()
    # Cases received in the period whose acknowledgement shadow mode kept, left out of
    # every figure: mailbot sent them nothing (the council answered them its usual way).
    left_out_shadow: int = 0

    @property
    def empty(self) -> bool:
        return self.total.received == 0


# --- reading the database (the only I/O) -------------------------------------------------


def build_report(
    session: Session,
    policy: Policy,
    *,
    council: str,
    period_from: date,
    period_to: date,
    now: datetime,
) -> Report:
    """The report for cases received from `period_from` to `period_to` (local dates, inclusive).

    Also read: complaints that moved to a later stage within the period, whatever their
    arrival date, since a stage counts in the period its clock started.
    """
    if period_to < period_from:
        raise ValueError(f"the period ends ({period_to}) before it starts ({period_from})")
    start, end = _period_instants(policy, period_from, period_to)
    moved = select(CaseEvent.case_id).where(
        CaseEvent.kind == "stage-changed", CaseEvent.at >= start, CaseEvent.at < end
    )
    cases = session.scalars(
        select(Case)
        .where(or_(and_(Case.received_at >= start, Case.received_at < end), Case.id.in_(moved)))
        .order_by(Case.received_at, Case.id)
    ).all()
    # A case whose acknowledgement shadow mode kept was the council's to answer its usual
    # way; mailbot's records of it would count a promise to acknowledge as broken.
    kept = set(
        session.scalars(
            select(OutboxMessage.case_id).where(
                OutboxMessage.kind == "acknowledgement",
                OutboxMessage.status == OutboxStatus.SHADOW,
            )
        )
    )
    in_trial = [case for case in cases if case.id in kept]
    cases = [case for case in cases if case.id not in kept]
    events: list[Any] = []
    sent: list[Any] = []
    ids = [case.id for case in cases]
    for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
        events += session.execute(
            select(
                CaseEvent.case_id, CaseEvent.at, CaseEvent.kind, CaseEvent.detail, CaseEvent.data
            )
            .where(CaseEvent.case_id.in_(chunk), CaseEvent.kind.in_(EVENT_KINDS))
            .order_by(CaseEvent.at, CaseEvent.id)
        ).all()
        # Columns only: an outbox row's raw message can be large and is not needed.
        sent += session.execute(
            select(
                OutboxMessage.case_id,
                OutboxMessage.kind,
                OutboxMessage.status,
                OutboxMessage.sent_at,
            ).where(
                OutboxMessage.case_id.in_(chunk),
                OutboxMessage.kind == "holding",
                OutboxMessage.status == "sent",
            )
        ).all()
    report = report_figures(
        cases,
        events,
        sent,
        policy,
        council=council,
        period_from=period_from,
        period_to=period_to,
        now=now,
    )
    return replace(
        report,
        corrections=_corrections(session, start, end),
        left_out_shadow=sum(start <= case.received_at < end for case in in_trial),
    )


def _corrections(
    session: Session, start: datetime, end: datetime
) -> tuple[tuple[str, str, int], ...]:
    """How many cases received in the period officers moved from one category to another
    (a case corrected twice counts from its first category to its last)."""
    first = (
        select(
            CategoryCorrection.case_id,
            func.min(CategoryCorrection.id).label("first"),
            func.max(CategoryCorrection.id).label("last"),
        )
        .join(Case, Case.id == CategoryCorrection.case_id)
        .where(Case.received_at >= start, Case.received_at < end)
        .group_by(CategoryCorrection.case_id)
        .subquery()
    )
    was = aliased(CategoryCorrection)
    now = aliased(CategoryCorrection)
    rows = session.execute(
        select(was.from_category, now.to_category, func.count())
        .join(first, first.c.first == was.id)
        .join(now, now.id == first.c.last)
        .where(was.from_category != now.to_category)
        .group_by(was.from_category, now.to_category)
    ).all()
    order = {name: i for i, name in enumerate(CATEGORIES)}
    return tuple(
        sorted(
            ((a, b, n) for a, b, n in rows), key=lambda r: (order.get(r[0], 9), order.get(r[1], 9))
        )
    )


def _period_instants(policy: Policy, first: date, last: date) -> tuple[datetime, datetime]:
    """Local midnight at the start of `first` and after `last`, as UTC instants."""
    tz = ZoneInfo(policy.timezone)
    start = datetime.combine(first, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return start, end


# --- the figures (pure) ------------------------------------------------------------------


def report_figures(
    cases: Iterable[CaseRow],
    events: Iterable[EventRow],
    sent: Iterable[SentRow],
    policy: Policy,
    *,
    council: str,
    period_from: date,
    period_to: date,
    now: datetime,
) -> Report:
    """Every figure of the report from plain rows; no database, no clock but `now`.

    Cases outside the period may be passed: only stages whose clock started within the
    period (local dates, inclusive) are counted.
    """
    tz = ZoneInfo(policy.timezone)
    today = now.astimezone(tz).date()
    events_of: dict[int, list[EventRow]] = {}
    for event in events:
        events_of.setdefault(event.case_id, []).append(event)
    holding_of: dict[int, list[datetime]] = {}
    for row in sent:
        if row.case_id is not None and row.kind == "holding" and row.status == "sent":
            holding_of.setdefault(row.case_id, []).append(row.sent_at or now)

    records = [
        record
        for case in cases
        for record in case_stages(
            case, events_of.get(case.id, []), holding_of.get(case.id, []), policy
        )
        if period_from <= record.started_on <= period_to
    ]

    # Every category the policy has at stage 1 (a row of noughts is news too); later
    # complaint stages only when a case reached them.
    keys = {(category, 1) for category in policy.categories}
    keys |= {(r.category, r.stage) for r in records}
    order = {name: i for i, name in enumerate(CATEGORIES)}
    rows = [
        figures_for([r for r in records if (r.category, r.stage) == key], *key, policy, today)
        for key in sorted(keys, key=lambda k: (order.get(k[0], len(order)), k[0], k[1]))
    ]
    return Report(
        council=council,
        policy=policy.name,
        period_from=period_from,
        period_to=period_to,
        generated_at=now,
        rows=rows,
        breaches=breach_list(records, policy, today),
        weekly=weekly_counts(records, period_from, period_to, policy),
        total=figures_for(records, "all", 0, policy, today),
        timezone=policy.timezone,
    )


def case_stages(
    case: CaseRow, events: Sequence[EventRow], holding_sent: Sequence[datetime], policy: Policy
) -> list[StageRecord]:
    """A case split into its stages, at each "stage-changed" event.

    The stage a case is in now takes its dates, response, breach and outcome from the case
    row itself. A stage it has left takes them from the events inside that stage: its
    acknowledge-by and respond-by dates from the "stage-changed" event that opened it
    ("... respond by YYYY-MM-DD"), else as the policy computes them from the stage's start;
    its response from the last "responded" event; its outcome from an event saying
    "outcome upheld" (or partly-upheld, not-upheld). A time on the case row (acknowledged,
    responded, breached) belongs to whichever stage it falls in, so it does not matter
    whether a stage change clears those fields or keeps them. Likewise the row's outcome
    is the current stage's only when no event records an outcome at an earlier stage.
    """
    tz = ZoneInfo(policy.timezone)
    ordered = sorted(events, key=lambda e: e.at)
    # (stage number, start, the event that opened it); the first stage is the one the
    # first move left, or the case's own stage when it never moved.
    segments: list[tuple[int, datetime, EventRow | None]] = [(case.stage, case.received_at, None)]
    said_of = {id(e): meaning(e) for e in ordered}
    for event in ordered:
        move = said_of[id(event)]
        if event.kind == "stage-changed" and "to" in move:
            if len(segments) == 1:
                segments[0] = (int(move["from"]), case.received_at, None)
            segments.append((int(move["to"]), event.at, event))

    moved = len(segments) > 1
    recorded = [e for e in ordered if "outcome" in said_of[id(e)]]

    out: list[StageRecord] = []
    for i, (number, start, opener) in enumerate(segments):
        current = i == len(segments) - 1
        end = None if current else segments[i + 1][1]
        closer = None if current else segments[i + 1][2]

        def inside(
            at: datetime | None, start: datetime = start, end: datetime | None = end
        ) -> bool:
            # Whether an instant falls within this stage: [start, end).
            return at is not None and start <= at and (end is None or at < end)

        mine = [e for e in ordered if inside(e.at)]
        said = [said_of[id(e)]["outcome"] for e in mine if "outcome" in said_of[id(e)]]
        if current:
            number = case.stage  # the row is the authority on where the case is now
            acknowledge_by, respond_by = case.acknowledge_by, case.respond_by
            responded_at = case.responded_at if inside(case.responded_at) else None
            # The row's outcome may be one an earlier stage reached, carried over: once a
            # case has moved and its events record outcomes, only this stage's events count.
            outcome = said[-1] if said and moved else case.outcome
            if moved and recorded and not said:
                outcome = None
            stopped = case.clock_stopped
            closed = case.closed_at if case.status == "closed" else None
            ended_on = closed.astimezone(tz).date() if closed else None
        else:
            acknowledge_by, respond_by = _stage_dates(case, number, start, opener, policy)
            if closer is not None and (due := said_of[id(closer)].get("was_due")):
                respond_by = date.fromisoformat(due)
            responses = [e.at for e in mine if e.kind == "responded"]
            responded_at = case.responded_at if inside(case.responded_at) else None
            responded_at = responses[-1] if responses else responded_at
            outcome = said[-1] if said else None
            stopped = False
            ended_on = end.astimezone(tz).date() if end else None
        cited = [
            tuple(said_of[id(e)]["exemptions"])
            for e in mine
            if "outcome" in said_of[id(e)] and said_of[id(e)].get("exemptions")
        ]
        acknowledged = [e.at for e in mine if e.kind == "acknowledged"]
        acknowledged_at = case.acknowledged_at if inside(case.acknowledged_at) else None
        acknowledged_at = acknowledged_at or (acknowledged[0] if acknowledged else None)
        out.append(
            StageRecord(
                ref=case.ref,
                category=case.category,
                stage=number,
                officer=case.officer_name,
                new_case=i == 0,
                started_at=start,
                started_on=start.astimezone(tz).date(),
                ended_on=ended_on,
                acknowledged_on=acknowledged_at.astimezone(tz).date() if acknowledged_at else None,
                acknowledge_by=acknowledge_by,
                respond_by=respond_by,
                responded_at=responded_at,
                responded_on=responded_at.astimezone(tz).date() if responded_at else None,
                breached_at=case.breached_at if inside(case.breached_at) else None,
                clock_stopped=stopped,
                outcome=outcome if outcome in _ALL_OUTCOMES else None,
                holding_replies=sum(1 for at in holding_sent if inside(at)),
                extended=any(e.kind == "extended" for e in mine),
                exemptions=cited[-1] if cited else (),
            )
        )
    return out


_ALL_OUTCOMES = frozenset((*OUTCOMES, *REQUEST_OUTCOMES, *REVIEW_OUTCOMES))


def _stage_dates(
    case: CaseRow, number: int, start: datetime, opener: EventRow | None, policy: Policy
) -> tuple[date, date]:
    """Acknowledge-by and respond-by of a stage the case has since left."""
    said = meaning(opener) if opener else {}
    ack, respond = said.get("acknowledge_by"), said.get("respond_by")
    try:
        dates = compute(policy, case.category, start, stage=number)
        computed = (dates.acknowledge_by, dates.respond_by)
    except (KeyError, ValueError):  # a stage or category this policy does not have
        computed = (case.acknowledge_by, case.respond_by)
    return (
        date.fromisoformat(ack) if ack else computed[0],
        date.fromisoformat(respond) if respond else computed[1],
    )


def _due_by(record: StageRecord, today: date) -> date | None:
    """The day up to which an unanswered stage is judged: when it ended, else today.

    None while the clock is stopped (waiting for the resident's clarification).
    """
    if record.ended_on is not None:
        return record.ended_on
    return None if record.clock_stopped else today


def response_missed(record: StageRecord, today: date) -> bool:
    """The response promise was broken: answered late, or not answered by the date."""
    if record.responded_on is not None:
        return record.responded_on > record.respond_by
    judged_on = _due_by(record, today)
    return judged_on is not None and judged_on > record.respond_by


def figures_for(
    records: Sequence[StageRecord], category: str, stage: int, policy: Policy, today: date
) -> CategoryFigures:
    """The figures for one row of the report.

    - received: stages whose clock started in the period.
    - acknowledged on time: acknowledged on or before the acknowledge-by date (local
      dates), out of those acknowledged or whose acknowledge-by date has passed.
    - responded on time: answered on or before the respond-by date, out of the responses
      due: those answered, plus those unanswered whose respond-by date had passed when the
      stage ended or, still open, by the report date (not while the clock is stopped).
      Open cases not yet due are left out: they can neither keep nor break the promise yet.
    - breached: a breach was recorded (breached_at), or the response promise was broken.
    - median and 90th percentile working days to respond: responded stages only, counted
      on the category's calendar from the day the stage started to the day of the answer
      (an answer the same day is 0; clock stops are not taken off).
    """
    acknowledgements_due = [
        r for r in records if r.acknowledged_on is not None or r.acknowledge_by < today
    ]
    acknowledged_on_time = sum(
        1
        for r in acknowledgements_due
        if r.acknowledged_on and r.acknowledged_on <= r.acknowledge_by
    )
    responded = [r for r in records if r.responded_on is not None]
    responses_due = [r for r in records if r.responded_on is not None or response_missed(r, today)]
    responded_on_time = sum(1 for r in responded if r.responded_on <= r.respond_by)  # type: ignore[operator]
    days = [
        calendar_for(policy, r.category).working_days_between(r.started_on, r.responded_on)  # type: ignore[arg-type]
        for r in responded
    ]
    outcomes: dict[str, int] = {}
    if category in ("complaint", "all"):
        said = Counter(r.outcome for r in records if r.outcome and r.category == "complaint")
        outcomes = {name: said[name] for name in OUTCOMES}
    request_outcomes: dict[str, int] = {}
    exemptions: dict[str, int] = {}
    if category in INFORMATION:
        said = Counter(r.outcome for r in records if r.outcome)
        names = REVIEW_OUTCOMES if stage > 1 else REQUEST_OUTCOMES
        request_outcomes = {name: said[name] for name in names}
        counted = Counter(e for r in records for e in r.exemptions)
        exemptions = dict(sorted(counted.items(), key=lambda item: (-item[1], item[0])))
    in_time = [r for r in responded if r.responded_on <= r.respond_by]  # type: ignore[operator]
    in_time_extended = sum(1 for r in in_time if r.extended)
    return CategoryFigures(
        category=category,
        stage=stage,
        received=len(records),
        acknowledged_on_time=acknowledged_on_time,
        acknowledged_on_time_pct=percent(acknowledged_on_time, len(acknowledgements_due)),
        responded=len(responded),
        responded_on_time=responded_on_time,
        responded_on_time_pct=percent(responded_on_time, len(responses_due)),
        breached=sum(1 for r in records if r.breached_at or response_missed(r, today)),
        median_working_days=nearest_rank(days, 50),
        p90_working_days=nearest_rank(days, 90),
        holding_replies=sum(r.holding_replies for r in records),
        outcomes=outcomes,
        acknowledgements_due=len(acknowledgements_due),
        responses_due=len(responses_due),
        in_time=len(in_time) - in_time_extended,
        in_time_extended=in_time_extended,
        late=len(responses_due) - len(in_time),
        request_outcomes=request_outcomes,
        exemptions=exemptions,
    )


def percent(part: int, whole: int) -> float | None:
    """`part` as a percentage of `whole`, to one decimal place rounding halves up.

    None when `whole` is 0: "no cases" is not 0% and not 100%.
    """
    if whole == 0:
        return None
    exact = Decimal(100 * part) / Decimal(whole)
    return float(exact.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def nearest_rank(values: Sequence[int], pct: int) -> int | None:
    """The nearest-rank percentile: the smallest value with `pct`% of values at or below it.

    Rank = ceil(pct/100 x n) in the sorted values, so the answer is always a time some
    case actually took. The median is the 50th percentile by the same rule, which for an
    even count is the lower of the two middle values (never a half day).
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-pct * len(ordered) // 100))  # integer ceiling, no float rounding
    return ordered[rank - 1]


def breach_list(
    records: Sequence[StageRecord], policy: Policy, today: date
) -> list[dict[str, Any]]:
    """Every stage whose response promise was broken, latest respond-by date last.

    Working days late: on the category's calendar, from the respond-by date to the day
    of the answer, or for one still unanswered to the day the stage ended or today.
    """
    out = []
    for r in records:
        if not (r.breached_at or response_missed(r, today)):
            continue
        until = r.responded_on or _due_by(r, today) or r.respond_by
        late = calendar_for(policy, r.category).working_days_between(r.respond_by, until)
        out.append(
            {
                "ref": r.ref,
                "category": r.category,
                "stage": r.stage,
                "officer": r.officer,
                "respond_by": r.respond_by,
                "responded_at": r.responded_at,
                "working_days_late": max(0, late),
            }
        )
    return sorted(out, key=lambda b: (b["respond_by"], b["ref"], b["stage"]))


def weekly_counts(
    records: Sequence[StageRecord], period_from: date, period_to: date, policy: Policy
) -> list[tuple[date, dict[str, int]]]:
    """New cases per week (weeks begin on Monday) by category, for every week of the period.

    Only new cases count: a complaint moving to stage 2 is not a new case. The first and
    last weeks may be part weeks, cut at the period's ends.
    """
    names = [c for c in CATEGORIES if c in policy.categories]
    names += sorted({r.category for r in records} - set(names))
    first = period_from - timedelta(days=period_from.weekday())
    weeks = {
        first + timedelta(weeks=i): dict.fromkeys(names, 0) for i in range(_weeks(first, period_to))
    }
    for r in records:
        if r.new_case:
            weeks[r.started_on - timedelta(days=r.started_on.weekday())][r.category] += 1
    return sorted(weeks.items())


def _weeks(first_monday: date, last: date) -> int:
    return (last - first_monday).days // 7 + 1


# --- JSON and CSV ------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_json(report: Report) -> str:
    """The report as JSON: dates as YYYY-MM-DD, times as ISO 8601, no percentage as null."""
    data = {
        "council": report.council,
        "policy": report.policy,
        "period_from": report.period_from,
        "period_to": report.period_to,
        "generated_at": report.generated_at,
        "total": asdict(report.total),
        "rows": [asdict(row) for row in report.rows],
        "breaches": report.breaches,
        "weekly": [{"week_start": week, "counts": counts} for week, counts in report.weekly],
        "corrections": [{"from": was, "to": now, "cases": n} for was, now, n in report.corrections],
        "left_out_shadow": report.left_out_shadow,
    }
    return json.dumps(_plain(data), indent=2, ensure_ascii=False) + "\n"


CSV_COLUMNS = (
    "category",
    "stage",
    "received",
    "acknowledgements_due",
    "acknowledged_on_time",
    "acknowledged_on_time_pct",
    "responses_due",
    "responded",
    "responded_on_time",
    "responded_on_time_pct",
    "breached",
    "median_working_days",
    "p90_working_days",
    "holding_replies",
    "upheld",
    "partly_upheld",
    "not_upheld",
    "in_time",
    "in_time_extended",
    "late",
    "granted",
    "partly_granted",
    "refused",
    "not_held",
    "review_upheld",
    "review_partly_upheld",
    "review_overturned",
    "exemptions",
)
BREACH_COLUMNS = (
    "ref",
    "category",
    "stage",
    "officer",
    "respond_by",
    "responded_at",
    "working_days_late",
)


def safe_cell(value: Any) -> Any:
    """A cell a spreadsheet shows as text, never runs: '=', '+', '-', '@' (and tab or
    carriage return, which some spreadsheets skip before them) get a leading quote."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([safe_cell(_plain(v)) for v in row])
    return out.getvalue()


def to_csv(report: Report) -> str:
    """One row per category and stage; a blank cell means no figure (nothing due yet)."""

    def line(f: CategoryFigures) -> list[Any]:
        outcomes = [f.outcomes.get(name) for name in OUTCOMES] if f.outcomes else [None] * 3
        said = f.request_outcomes
        request = [said.get(name) for name in REQUEST_OUTCOMES] if f.stage == 1 else [None] * 4
        review = [said.get(name) for name in REVIEW_OUTCOMES] if f.stage > 1 else [None] * 3
        cited = "; ".join(f"{name}: {n}" for name, n in f.exemptions.items())
        return [
            f.category,
            f.stage,
            f.received,
            f.acknowledgements_due,
            f.acknowledged_on_time,
            f.acknowledged_on_time_pct,
            f.responses_due,
            f.responded,
            f.responded_on_time,
            f.responded_on_time_pct,
            f.breached,
            f.median_working_days,
            f.p90_working_days,
            f.holding_replies,
            *outcomes,
            f.in_time,
            f.in_time_extended,
            f.late,
            *(request if f.category in INFORMATION else [None] * 4),
            *(review if f.category in INFORMATION else [None] * 3),
            cited or None,
        ]

    return _csv(CSV_COLUMNS, (line(f) for f in report.rows))


def breaches_to_csv(report: Report) -> str:
    """The list of broken promises, one row per case stage."""
    return _csv(BREACH_COLUMNS, ([b[c] for c in BREACH_COLUMNS] for b in report.breaches))


# --- HTML --------------------------------------------------------------------------------

_SPARE_COLOURS = ("#000000", "#999999", "#F0E442")


def _colour(category: str, index: int) -> str:
    kind = KINDS.get(category)
    return kind.colour if kind else _SPARE_COLOURS[index % len(_SPARE_COLOURS)]


def category_name(category: str) -> str:
    kind = KINDS.get(category)
    return kind.plural if kind else category.capitalize()


def stage_name(category: str, stage: int) -> str:
    """ "Enquiries"; "Complaints, stage 2"; "Freedom of information requests: internal
    reviews"."""
    name = category_name(category)
    if category == "complaint":
        return f"{name}, stage {stage}"
    if category in INFORMATION and stage > 1:
        return f"{name}: {'internal reviews' if category == 'foi' else 'reconsiderations'}"
    return name


def _row_name(f: CategoryFigures) -> str:
    return stage_name(f.category, f.stage)


def _day_month_year(d: date) -> str:
    return f"{d.day} {d:%b %Y}"


def _long_date(d: date) -> str:
    return f"{d.day} {d:%B %Y}"


def _short_date(d: date) -> str:
    return f"{d.day} {d:%b}"


def _nice_step(top: int) -> int:
    """A tick step of 1, 2 or 5 times a power of ten giving at most five ticks."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if top <= step * factor * 5:
                return step * factor
        step *= 10


def weekly_chart(report: Report) -> dict[str, Any]:
    """Geometry of the stacked bar chart of new cases per week (SVG user units)."""
    width, left, right, bottom, plot_h = 760, 52, 12, 58, 240
    names = list(report.weekly[0][1]) if report.weekly else []
    legend = _legend([(category_name(n), _colour(n, i)) for i, n in enumerate(names)], left, width)
    top = (legend[-1]["y"] if legend else 0) + 24
    height = top + plot_h + bottom
    plot_w = width - left - right
    highest = max(1, max((sum(c.values()) for _, c in report.weekly), default=0))
    step = _nice_step(highest)
    y_max = step * -(-highest // step)  # the first tick at or above the tallest bar
    scale = plot_h / y_max
    slot = plot_w / max(len(report.weekly), 1)
    bar_w = min(slot * 0.7, 48)
    label_every = -(-len(report.weekly) // 14)  # at most 14 dates under the axis
    bars, totals, x_labels = [], [], []
    for i, (week, counts) in enumerate(report.weekly):
        x = left + slot * i + (slot - bar_w) / 2
        y = float(top + plot_h)
        for j, name in enumerate(names):
            if counts[name]:
                h = counts[name] * scale
                y -= h
                bars.append(
                    {
                        "x": round(x, 1),
                        "y": round(y, 1),
                        "w": round(bar_w, 1),
                        "h": round(h, 1),
                        "colour": _colour(name, j),
                        "title": f"Week beginning {_long_date(week)}: {counts[name]} "
                        f"{category_name(name).lower()}",
                    }
                )
        # A week's total above its bar, while bars are wide enough for the figure to fit.
        if (total := sum(counts.values())) and slot >= 24:
            totals.append({"x": round(x + bar_w / 2, 1), "y": round(y - 5, 1), "value": total})
        if i % label_every == 0:
            x_labels.append({"x": round(x + bar_w / 2, 1), "text": _short_date(week)})
    ticks = [
        {"y": round(top + plot_h - v * scale, 1), "value": v} for v in range(0, y_max + 1, step)
    ]
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "top": top,
        "base": top + plot_h,
        "bars": bars,
        "totals": totals,
        "ticks": ticks,
        "x_labels": x_labels,
        "legend": legend,
        "mid_y": top + plot_h / 2,
        "mid_x": left + plot_w / 2,
    }


def _legend(entries: list[tuple[str, str]], left: float, width: float) -> list[dict[str, Any]]:
    """Legend swatches laid out in rows that fit the chart's width."""
    out: list[dict[str, Any]] = []
    x, y = left, 14
    for text, colour in entries:
        size = 28 + 6.5 * len(text)  # a swatch, a gap and roughly 6.5 units a letter at 12px
        if x + size > width and x > left:
            x, y = left, y + 20
        out.append({"x": round(x, 1), "y": y, "colour": colour, "text": text})
        x += size
    return out


def on_time_chart(report: Report) -> dict[str, Any]:
    """Geometry of the horizontal bars: share of responses due that were on time."""
    rows = [f for f in report.rows if f.received]
    width, label_w, right = 760, 300, 60
    bar_h, gap, top = 22, 12, 10
    plot_w = width - label_w - right
    height = top + len(rows) * (bar_h + gap) + 50  # room for the % scale and its title
    bars = []
    for i, f in enumerate(rows):
        y = top + i * (bar_h + gap)
        pct = f.responded_on_time_pct
        bars.append(
            {
                "y": y,
                "text_y": y + bar_h / 2 + 5,
                "name": _row_name(f),
                "w": round(plot_w * (pct or 0) / 100, 1),
                "label": f"{_pct(pct)}" if pct is not None else "none due yet",
                "label_x": round(label_w + plot_w * (pct or 0) / 100 + 6, 1),
                "colour": _colour(f.category, i),
                "title": f"{_row_name(f)}: {f.responded_on_time} of {f.responses_due} on time",
            }
        )
    ticks = [{"x": round(label_w + plot_w * p / 100, 1), "value": p} for p in (0, 25, 50, 75, 100)]
    return {
        "width": width,
        "height": height,
        "label_w": label_w,
        "plot_w": plot_w,
        "bar_h": bar_h,
        "bars": bars,
        "ticks": ticks,
        "axis_y": top + len(rows) * (bar_h + gap),
    }


def _pct(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}%".replace(".0%", "%")


def _days(value: int | None) -> str:
    return "–" if value is None else str(value)


_ENV = SandboxedEnvironment(
    autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True
)
_ENV.filters.update(
    pct=_pct,
    long_date=_long_date,
    day_month_year=_day_month_year,
    days=_days,
    row_name=_row_name,
    category=category_name,
)


def to_html(report: Report) -> str:
    """One self-contained page: no external styles, scripts, fonts or images."""
    tz = ZoneInfo(report.timezone)
    generated = report.generated_at.astimezone(tz)
    complaints = [f for f in report.rows if f.category == "complaint" and f.received]
    return _HTML.render(
        r=report,
        t=report.total,
        no_cases=NO_CASES,
        generated=f"{_long_date(generated.date())} at {generated:%H:%M}",
        w=weekly_chart(report),
        o=on_time_chart(report),
        complaints=complaints,
        information=[f for f in report.rows if f.category in STATUTORY and f.received],
        request_outcome_names=REQUEST_OUTCOME_NAMES,
        outcome_names=OUTCOME_NAMES,
        outcomes=OUTCOMES,
        breaches=[
            {
                **b,
                "name": stage_name(b["category"], b["stage"]),
                "respond_by_text": _day_month_year(b["respond_by"]),
                "responded_text": _day_month_year(b["responded_at"].astimezone(tz).date())
                if b["responded_at"]
                else "Not yet answered",
            }
            for b in report.breaches
        ],
    )


_HTML = _ENV.from_string(
    """{% macro share(part, whole, pct) %}
{% if whole %}<strong>{{ pct|pct }}</strong><span class="of">{{ part }} of {{ whole }}</span>
{% else %}<span class="of">none due yet</span>{% endif %}
{% endmacro %}
{% macro figures_row(f, id, name) %}
      <tr id="{{ id }}">
        <th scope="row">{{ name }}</th>
        <td class="n">{{ f.received }}</td>
        <td class="n">
          {{- share(f.acknowledged_on_time, f.acknowledgements_due, f.acknowledged_on_time_pct)
          }}</td>
        <td class="n">{{ f.responded }}</td>
        <td class="n">
          {{- share(f.responded_on_time, f.responses_due, f.responded_on_time_pct) }}</td>
        <td class="n">{{ f.breached }}</td>
        <td class="n">{{ f.median_working_days|days }}</td>
        <td class="n">{{ f.p90_working_days|days }}</td>
        <td class="n">{{ f.holding_replies }}</td>
      </tr>
{% endmacro %}
<!DOCTYPE html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ r.council }}: how well we kept our promises,
  {{ r.period_from|long_date }} to {{ r.period_to|long_date }}</title>
<style>
  :root { --ink: #1b1b1b; --muted: #505a5f; --rule: #b1b4b6; --pale: #f3f2f1;
          --accent: #1d70b8; --missed: #d4351c; }
  * { box-sizing: border-box; }
  body { margin: 0 auto; max-width: 62rem; padding: 2rem 1.5rem 3rem; color: var(--ink);
         background: #fff; font: 16px/1.5 Arial, "Helvetica Neue", Helvetica, sans-serif; }
  h1 { font-size: 2rem; line-height: 1.2; margin: 0 0 .25rem; }
  h2 { font-size: 1.45rem; margin: 2.5rem 0 .5rem; padding-top: .5rem;
       border-top: 3px solid var(--accent); }
  p.lede { font-size: 1.15rem; margin: .25rem 0; }
  p.meta { color: var(--muted); font-size: .9rem; margin: .25rem 0; }
  .summary { display: flex; flex-wrap: wrap; gap: 1rem; margin: 1.5rem 0; padding: 0;
             list-style: none; }
  .summary li { flex: 1 1 10rem; border-left: 5px solid var(--accent); background: var(--pale);
                padding: .75rem 1rem; }
  .summary .figure { display: block; font-size: 2rem; font-weight: bold; line-height: 1.1; }
  .summary .missed { border-left-color: var(--missed); }
  table { width: 100%; border-collapse: collapse; margin: .75rem 0 1rem; font-size: .95rem; }
  caption { text-align: left; font-weight: bold; padding-bottom: .35rem; }
  th, td { text-align: left; vertical-align: top; padding: .45rem .5rem;
           border-bottom: 1px solid var(--rule); }
  thead th { border-bottom: 2px solid var(--ink); font-size: .85rem; vertical-align: bottom; }
  td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
  td .of { display: block; color: var(--muted); font-size: .8rem; white-space: nowrap; }
  tfoot td .of { color: var(--ink); }
  .date { white-space: nowrap; }
  tbody th { font-weight: normal; }
  tfoot td, tfoot th { font-weight: bold; border-top: 2px solid var(--ink); }
  figure { margin: 1rem 0 1.5rem; }
  figcaption { font-weight: bold; margin-bottom: .35rem; }
  svg { display: block; width: 100%; height: auto; font-family: Arial, Helvetica, sans-serif; }
  svg text { fill: var(--ink); font-size: 12px; }
  svg .axis { stroke: var(--ink); stroke-width: 1; }
  svg .grid { stroke: #dcdcdc; stroke-width: 1; }
  svg .track { fill: var(--pale); }
  .empty { font-size: 1.2rem; font-weight: bold; padding: 1rem; background: var(--pale);
           border-left: 5px solid var(--accent); }
  dl.rules dt { font-weight: bold; margin-top: .6rem; }
  dl.rules dd { margin: 0 0 0 1rem; }
  dl.rules dt { break-after: avoid; page-break-after: avoid; }
  dl.rules dd { break-inside: avoid; page-break-inside: avoid; }
  @page { size: A4; margin: 15mm 12mm; }
  @media print {
    body { max-width: none; padding: 0; font-size: 10pt; }
    h1 { font-size: 18pt; }
    h2 { font-size: 14pt; margin-top: 1.2rem; break-after: avoid; page-break-after: avoid; }
    h2, svg, .summary li { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
    figure, .summary, tr, caption, table.small { break-inside: avoid; page-break-inside: avoid; }
    thead { display: table-header-group; }
    .summary li, .empty { background: #fff; border: 1px solid var(--rule);
                          border-left: 5px solid var(--accent); }
    .summary .missed { border-left-color: var(--missed); }
  }
</style>
</head>
<body>
<header>
  <p class="meta">{{ r.council }} · Performance report</p>
  <h1>How well we kept our promises</h1>
  <p class="lede">Cases received from {{ r.period_from|long_date }}
    to {{ r.period_to|long_date }}</p>
  {% if r.left_out_shadow %}<p class="meta" id="left-out-shadow">{{ r.left_out_shadow }}
    {{ "case" if r.left_out_shadow == 1 else "cases" }} read during mailbot's
    shadow trial, when it sent nothing, {{ "is" if r.left_out_shadow == 1 else "are" }}
    left out: they were answered the council's usual way.</p>{% endif %}
  <p class="meta">Produced on {{ generated }} · measured against the
    “{{ r.policy }}” customer-service policy · times are UK time</p>
</header>
<main>
{% if r.empty %}
  <p class="empty" id="no-cases">{{ no_cases }}</p>
{% else %}
  <ul class="summary" aria-label="The period at a glance">
    <li><span class="figure">{{ t.received }}</span> cases received</li>
    <li><span class="figure">{{ t.acknowledged_on_time_pct|pct }}</span>
      acknowledged on time</li>
    <li><span class="figure">{{ t.responded_on_time_pct|pct }}</span> answered on time</li>
    <li class="missed"><span class="figure">{{ t.breached }}</span>
      {{ "promise" if t.breached == 1 else "promises" }} to answer missed</li>
  </ul>

  <section id="weekly">
  <h2>Cases received each week</h2>
  <figure>
    <figcaption>New cases received each week, by type of case</figcaption>
    <svg viewBox="0 0 {{ w.width }} {{ w.height }}" role="img"
         aria-labelledby="weekly-title" xmlns="http://www.w3.org/2000/svg">
      <title id="weekly-title">Bar chart: new cases received each week, by type of case</title>
      {% for item in w.legend %}
      <rect x="{{ item.x }}" y="{{ item.y - 10 }}" width="12" height="12"
            fill="{{ item.colour }}"/>
      <text x="{{ item.x + 17 }}" y="{{ item.y }}">{{ item.text }}</text>
      {% endfor %}
      {% for tick in w.ticks %}
      <line class="grid" x1="{{ w.left }}" x2="{{ w.right }}" y1="{{ tick.y }}"
            y2="{{ tick.y }}"/>
      <text x="{{ w.left - 8 }}" y="{{ tick.y + 4 }}" text-anchor="end">{{ tick.value }}</text>
      {% endfor %}
      {% for bar in w.bars %}
      <rect x="{{ bar.x }}" y="{{ bar.y }}" width="{{ bar.w }}" height="{{ bar.h }}"
            fill="{{ bar.colour }}" stroke="#fff" stroke-width="0.5"><title>
            {{- bar.title }}</title></rect>
      {% endfor %}
      {% for total in w.totals %}
      <text x="{{ total.x }}" y="{{ total.y }}" text-anchor="middle"
            font-weight="bold">{{ total.value }}</text>
      {% endfor %}
      <line class="axis" x1="{{ w.left }}" x2="{{ w.right }}" y1="{{ w.base }}"
            y2="{{ w.base }}"/>
      <line class="axis" x1="{{ w.left }}" x2="{{ w.left }}" y1="{{ w.top }}"
            y2="{{ w.base }}"/>
      {% for label in w.x_labels %}
      <text x="{{ label.x }}" y="{{ w.base + 18 }}" text-anchor="middle">{{ label.text }}</text>
      {% endfor %}
      <text x="{{ w.mid_x }}" y="{{ w.height - 10 }}" text-anchor="middle"
            font-weight="bold">Week beginning (Monday)</text>
      <text transform="translate(14 {{ w.mid_y }}) rotate(-90)" text-anchor="middle"
            font-weight="bold">Cases received</text>
    </svg>
  </figure>
  <table class="small">
    <caption>New cases each week</caption>
    <thead><tr><th scope="col">Week beginning</th>
      {% for name in r.weekly[0][1] %}<th scope="col" class="n">{{ name|category }}</th>
      {% endfor %}<th scope="col" class="n">All</th></tr></thead>
    <tbody>
    {% for week, counts in r.weekly %}
      <tr><th scope="row" class="date">{{ week|day_month_year }}</th>
        {% for name in counts %}<td class="n">{{ counts[name] }}</td>{% endfor %}
        <td class="n">{{ counts.values()|sum }}</td></tr>
    {% endfor %}
    </tbody>
  </table>
  </section>

  <section id="how-quickly">
  <h2>How quickly we answered</h2>
  <p>Each type of case has a promised date for an acknowledgement and for a full answer,
    counted in working days, set by our customer-service policy (and by law for requests
    for information).</p>
  <table>
    <thead>
      <tr>
        <th scope="col">Type of case</th>
        <th scope="col" class="n">Received</th>
        <th scope="col" class="n">Acknowledged on time</th>
        <th scope="col" class="n">Answered</th>
        <th scope="col" class="n">Answered on time</th>
        <th scope="col" class="n">Promises to answer missed</th>
        <th scope="col" class="n">Typical working days to answer</th>
        <th scope="col" class="n">9 in 10 answered within (working days)</th>
        <th scope="col" class="n">Holding replies sent</th>
      </tr>
    </thead>
    <tbody>
    {% for f in r.rows %}
      {{ figures_row(f, "row-" ~ f.category ~ "-" ~ f.stage, f|row_name) }}
    {% endfor %}
    </tbody>
    <tfoot>
      {{ figures_row(t, "row-all", "All cases") }}
    </tfoot>
  </table>
  <figure>
    <figcaption>Share of answers given by the promised date</figcaption>
    <svg viewBox="0 0 {{ o.width }} {{ o.height }}" role="img"
         aria-labelledby="on-time-title" xmlns="http://www.w3.org/2000/svg">
      <title id="on-time-title">Bar chart: percentage of answers given on time,
        by type of case</title>
      {% for tick in o.ticks %}
      <line class="grid" x1="{{ tick.x }}" x2="{{ tick.x }}" y1="4" y2="{{ o.axis_y }}"/>
      <text x="{{ tick.x }}" y="{{ o.axis_y + 16 }}" text-anchor="middle">
        {{- tick.value }}%</text>
      {% endfor %}
      {% for bar in o.bars %}
      <text x="{{ o.label_w - 10 }}" y="{{ bar.text_y }}" text-anchor="end">{{ bar.name }}</text>
      <rect class="track" x="{{ o.label_w }}" y="{{ bar.y }}" width="{{ o.plot_w }}"
            height="{{ o.bar_h }}"/>
      <rect x="{{ o.label_w }}" y="{{ bar.y }}" width="{{ bar.w }}" height="{{ o.bar_h }}"
            fill="{{ bar.colour }}"><title>{{ bar.title }}</title></rect>
      <text x="{{ bar.label_x }}" y="{{ bar.text_y }}" font-weight="bold">{{ bar.label }}</text>
      {% endfor %}
      <line class="axis" x1="{{ o.label_w }}" x2="{{ o.label_w }}" y1="4" y2="{{ o.axis_y }}"/>
      <text x="{{ o.label_w + o.plot_w / 2 }}" y="{{ o.height - 4 }}" text-anchor="middle"
            font-weight="bold">Answered by the promised date (% of answers due)</text>
    </svg>
  </figure>
  </section>

  <section id="outcomes">
  <h2>Complaints: outcomes</h2>
  {% if complaints %}
  <table class="small">
    <thead><tr><th scope="col">Stage</th>
      {% for name in outcomes %}<th scope="col" class="n">{{ outcome_names[name] }}</th>
      {% endfor %}<th scope="col" class="n">No outcome recorded yet</th></tr></thead>
    <tbody>
    {% for f in complaints %}
      <tr id="outcomes-{{ f.stage }}"><th scope="row">Stage {{ f.stage }}</th>
        {% for name in outcomes %}<td class="n">{{ f.outcomes[name] }}</td>{% endfor %}
        <td class="n">{{ f.received - f.outcomes.values()|sum }}</td></tr>
    {% endfor %}
    </tbody>
  </table>
  {% else %}
  <p>No complaints were received in this period.</p>
  {% endif %}
  </section>

  <section id="information-requests">
  <h2>Requests for information: in time, and what we decided</h2>
  {% if information %}
  <p>Counted as central government reports them to the Cabinet Office. Of the responses
    that were due: sent within the time the law allows, sent in time after an extension
    the law allows (the public interest test, complex and voluminous environmental
    information, or two further months for personal data), and sent late or not yet.</p>
  <table class="small">
    <thead><tr><th scope="col">Type of request</th>
      <th scope="col" class="n">Responses due</th><th scope="col" class="n">In time</th>
      <th scope="col" class="n">In time, with an extension</th>
      <th scope="col" class="n">Late</th></tr></thead>
    <tbody>
    {% for f in information %}
      <tr id="timeliness-{{ f.category }}-{{ f.stage }}"><th scope="row">{{ f|row_name }}</th>
        <td class="n">{{ f.responses_due }}</td><td class="n">{{ f.in_time }}</td>
        <td class="n">{{ f.in_time_extended }}</td><td class="n">{{ f.late }}</td></tr>
    {% endfor %}
    </tbody>
  </table>
  <table class="small">
    <caption>Outcomes recorded by officers, and the exemptions relied on</caption>
    <thead><tr><th scope="col">Type of request</th><th scope="col">Outcome</th>
      <th scope="col" class="n">Requests</th></tr></thead>
    <tbody>
    {% for f in information if f.request_outcomes %}
      {% for name, n in f.request_outcomes.items() %}
      <tr id="outcome-{{ f.category }}-{{ f.stage }}-{{ name }}">
        <th scope="row">{{ f|row_name }}</th><td>{{ request_outcome_names[name] }}</td>
        <td class="n">{{ n }}</td></tr>
      {% endfor %}
      {% if f.exemptions %}
      <tr id="exemptions-{{ f.category }}-{{ f.stage }}"><th scope="row">{{ f|row_name }}</th>
        <td>Exemptions cited</td>
        <td>{% for name, n in f.exemptions.items() %}{{ name }}: {{ n }}{% if not loop.last
          %}, {% endif %}{% endfor %}</td></tr>
      {% endif %}
    {% endfor %}
    </tbody>
  </table>
  {% else %}
  <p>No requests for information or personal data were received in this period.</p>
  {% endif %}
  </section>

  <section id="missed">
  <h2>Promises we missed</h2>
  {% if breaches %}
  <p>Cases not answered by the promised date, and how many working days late the answer
    was (or, if still unanswered, has been so far).</p>
  <table>
    <thead><tr><th scope="col">Reference</th><th scope="col">Type of case</th>
      <th scope="col">Officer</th><th scope="col">Promised by</th><th scope="col">Answered</th>
      <th scope="col" class="n">Working days late</th></tr></thead>
    <tbody>
    {% for b in breaches %}
      <tr><th scope="row" class="date">{{ b.ref }}</th><td>{{ b.name }}</td>
        <td>{{ b.officer or "Not assigned" }}</td><td class="date">{{ b.respond_by_text }}</td>
        <td class="date">{{ b.responded_text }}</td>
        <td class="n">{{ b.working_days_late }}</td></tr>
    {% endfor %}
    </tbody>
  </table>
  {% else %}
  <p>We kept every promise to answer in this period.</p>
  {% endif %}
  </section>

  <section id="corrections">
  <h2>Cases whose type officers corrected</h2>
  {% if r.corrections %}
  <p>mailbot decides each case's type when it arrives; an officer who finds it wrong
    changes it (and the resident is told). These corrections also teach mailbot
    (<code>mailbot classify retrain</code>).</p>
  <table class="small">
    <thead><tr><th scope="col">mailbot said</th><th scope="col">The officer made it</th>
      <th scope="col" class="n">Cases</th></tr></thead>
    <tbody>
    {% for was, now, n in r.corrections %}
      <tr><th scope="row">{{ was|category }}</th><td>{{ now|category }}</td>
        <td class="n">{{ n }}</td></tr>
    {% endfor %}
    </tbody>
  </table>
  {% else %}
  <p>Officers corrected no case's type in this period.</p>
  {% endif %}
  </section>
{% endif %}

  <section id="rules">
  <h2>How these figures are worked out</h2>
  <dl class="rules">
    <dt>Which cases</dt>
    <dd>Cases that reached us between the first and last day of the period (UK time). A
      complaint that moved to a later stage counts at that stage in the period it moved.</dd>
    <dt>Working days</dt>
    <dd>Monday to Friday, leaving out bank holidays and the council’s closure days. Requests
      under the Freedom of Information Act and the Environmental Information Regulations
      follow the law: bank holidays anywhere in the UK are left out, closure days are
      not.</dd>
    <dt>On time</dt>
    <dd>Acknowledged or answered on or before the promised date. Percentages are of the
      cases whose date has come: cases still open and not yet due are left out until they
      are due.</dd>
    <dt>Promises to answer missed</dt>
    <dd>Answered after the promised date, or not answered by it, or recorded as missed when
      the date passed.</dd>
    <dt>Typical and “9 in 10” working days</dt>
    <dd>Counted over answered cases only, in working days from the day the case reached us
      (for a later complaint stage, the day it moved) to the day of the answer (an answer the
      same day is 0). “Typical” is the middle case
      (the median); “9 in 10” is the time within which nine in ten answers were given (the
      90th percentile). Both use the nearest-rank method, so each is the time a real case
      took.</dd>
  </dl>
  </section>
</main>
</body>
</html>
"""
)
