"""Cases: the worklist, soonest due first, and each case with its history, its messages
and the officers' actions, which run the officers' own command code (officers.apply)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from email import message_from_bytes
from email.policy import default as default_policy
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from mailbot.calendar import calendar_for
from mailbot.categories import KINDS
from mailbot.officers import Command, apply
from mailbot.store import PREFIXES, Case, InboundMessage, OutboxMessage, case_by_ref
from mailbot.templates import long_date
from mailbot.web.audit import Action, record
from mailbot.web.request import mailbot, now, person, reading, requires, transaction
from mailbot.web.roles import Can, may_read_case
from mailbot.web.wording import version_label

blueprint = Blueprint("cases", __name__)
WORKLIST_LIMIT = 500
STATUSES = ("open", "responded", "closed", "all")


def today() -> date:
    return now().astimezone(ZoneInfo(mailbot().policy.timezone)).date()


def days_left(case: Case, on: date) -> int:
    """Working days to the response date; negative once it has passed."""
    calendar = calendar_for(mailbot().policy, case.category)
    if case.respond_by < on:
        return -calendar.working_days_between(case.respond_by, on)
    return calendar.working_days_between(on, case.respond_by)


@dataclass(frozen=True)
class Filters:
    category: str = ""
    officer: str = ""
    stage: str = ""
    status: str = "open"
    overdue: bool = False
    triage: bool = False
    clock_stopped: bool = False
    q: str = ""

    @classmethod
    def read(cls, args: Any) -> Filters:
        status = args.get("status", "open")
        return cls(
            category=args.get("category", "") if args.get("category") in PREFIXES else "",
            officer=args.get("officer", "")[:254],
            stage=args.get("stage", "") if args.get("stage", "").isdigit() else "",
            status=status if status in STATUSES else "open",
            overdue=args.get("overdue") == "1",
            triage=args.get("triage") == "1",
            clock_stopped=args.get("clock_stopped") == "1",
            q=args.get("q", "").strip()[:100],
        )

    def apply(self, query: Any, on: date) -> Any:
        if self.status != "all":
            query = query.where(Case.status == self.status)
        if self.category:
            query = query.where(Case.category == self.category)
        if self.officer:
            query = query.where(Case.officer_email == self.officer)
        if self.stage:
            query = query.where(Case.stage == int(self.stage))
        if self.overdue:
            query = query.where(Case.status == "open", Case.respond_by < on)
        if self.triage:
            query = query.where(Case.triage)
        if self.clock_stopped:
            query = query.where(Case.clock_stopped)
        if self.q:
            text = self.q.lower()
            query = query.where(
                or_(
                    Case.ref == self.q.upper(),
                    func.lower(Case.ref).contains(text, autoescape=True),
                    func.lower(Case.resident_name).contains(text, autoescape=True),
                    func.lower(Case.resident_email).contains(text, autoescape=True),
                )
            )
        return query


@blueprint.get("/")
def home() -> Any:
    return redirect(url_for("cases.worklist"))


@blueprint.get("/cases")
def worklist() -> Any:
    filters = Filters.read(request.args)
    on = today()
    query = filters.apply(select(Case), on)
    me = person()
    if not me.can(Can.SEE_ALL_CASES):
        query = query.where(Case.officer_email == me.email)
    with reading() as db:
        total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
        cases = db.scalars(query.order_by(Case.respond_by, Case.id).limit(WORKLIST_LIMIT)).all()
        rows = [(case, days_left(case, on)) for case in cases]
    return render_template(
        "cases.html",
        rows=rows,
        total=total,
        limit=WORKLIST_LIMIT,
        filters=filters,
        categories={code: kind.name for code, kind in KINDS.items()},
        officers=mailbot().cfg.officers,
        statuses=STATUSES,
        long_date=long_date,
    )


def _case_or_404(db: Session, ref: str) -> Case:
    case = case_by_ref(db, ref)
    if case is None:
        abort(404, description=f"There is no case {ref[:40]}.")
    me = person()
    if not may_read_case(me.role, me.email, case.officer_email):
        abort(403, description=f"{case.ref} is not one of your cases.")
    return case


def _text_of(raw: bytes) -> str:
    if not raw:
        return ""
    message = message_from_bytes(raw, policy=default_policy)
    body = message.get_body(("plain",))  # type: ignore[attr-defined]
    return body.get_content() if body is not None else ""


def _subject_of(raw: bytes, letter: dict | None) -> str:
    if raw:
        return str(message_from_bytes(raw, policy=default_policy)["Subject"] or "")
    return str((letter or {}).get("subject", ""))


ACTIONS = ("reassign", "category", "extend", "clarify", "holding", "close", "note")


def _page(ref: str, form: dict[str, str] | None = None, error: str = "", status: int = 200):
    with reading() as db:
        case = _case_or_404(db, ref)
        events = list(case.events)
        inbound = db.scalars(
            select(InboundMessage)
            .where(InboundMessage.case_id == case.id)
            .order_by(InboundMessage.internal_date, InboundMessage.id)
        ).all()
        outbound = db.scalars(
            select(OutboxMessage).where(OutboxMessage.case_id == case.id).order_by(OutboxMessage.id)
        ).all()
        sent = [
            {
                "row": row,
                "subject": _subject_of(row.raw, row.letter),
                "text": _text_of(row.raw),
                "template": version_label(db, row.template_version),
            }
            for row in outbound
        ]
        left = days_left(case, today())
        stages = mailbot().policy.final_stage(case.category)
    return render_template(
        "case.html",
        case=case,
        events=events,
        inbound=inbound,
        sent=sent,
        days_left=left,
        stages=stages,
        long_date=long_date,
        categories={code: kind.name for code, kind in KINDS.items()},
        officers=mailbot().cfg.officers,
        form=form or {},
        error=error,
        timezone=ZoneInfo(mailbot().policy.timezone),
    ), status


@blueprint.get("/cases/<ref>")
def show(ref: str) -> Any:
    return _page(ref)


def command_from(form: Any) -> Command | str:
    """The officers' command a console form stands for, or what is wrong with the form."""
    action = form.get("action", "")
    if action not in ACTIONS:
        return "Choose an action."
    if action == "reassign":
        argument = form.get("officer", "").strip()
        if not argument:
            return "Choose the officer to give the case to."
    elif action == "category":
        argument = form.get("category", "").strip()
        if argument not in PREFIXES:
            return "Choose the right category."
    elif action == "extend":
        argument = form.get("days", "").strip()
        if not argument.isdigit() or int(argument) < 1:
            return "Give the number of days to extend by as a whole number, e.g. 10."
    elif action == "clarify":
        argument = form.get("question", "").strip()
    elif action == "holding":
        day, reason = form.get("new_date", "").strip(), form.get("reason", "").strip()
        try:
            date.fromisoformat(day)
        except ValueError:
            return "Give the new date for the response, e.g. 2027-01-15."
        argument = f"{day} {reason}".strip()
    elif action == "note":
        argument = form.get("note", "").strip()
        if not argument:
            return "Write the note."
    else:  # close
        argument = form.get("reason", "").strip()
    argument = " ".join(argument.split())[:1000]  # one line, as in a mail command
    return Command(action, argument, f"#{action} {argument}".strip())


class _Refused(Exception):
    """The command was not carried out (officers.Result.detail says why)."""


def snapshot(case: Case) -> dict[str, Any]:
    """What an action can change, for the audit log's before and after."""
    return {
        "category": case.category,
        "stage": case.stage,
        "status": case.status,
        "officer": case.officer_email,
        "respond_by": case.respond_by.isoformat(),
        "clock_stopped": case.clock_stopped,
        "holding_until": case.holding_until.isoformat() if case.holding_until else None,
        "triage": case.triage,
    }


@blueprint.post("/cases/<ref>/act")
@requires(Can.ACT_ON_CASES)
def act(ref: str) -> Any:
    command = command_from(request.form)
    form = {k: v for k, v in request.form.items() if k != "csrf_token"}
    if isinstance(command, str):
        return _page(ref, form, command, 400)
    me, at = person(), now()
    try:
        with transaction() as db:
            case = _case_or_404(db, ref)
            before = snapshot(case)
            result = apply(mailbot(), db, case, command, sender=me.email, now=at)
            if not result.ok:
                raise _Refused(result.detail)  # nothing it may have begun is kept
            record(
                db,
                actor=me.email,
                action=Action.CASE_ACTION,
                target=case.ref,
                now=at,
                before=json.dumps(before),
                after=json.dumps({"command": command.line, **snapshot(case)}),
            )
    except _Refused as refused:
        return _page(ref, form, f"{command.line}: {refused}", 400)
    flash(f"{command.line.split()[0]}: {result.detail}.", "status")
    return redirect(url_for("cases.show", ref=ref) + "#history")
