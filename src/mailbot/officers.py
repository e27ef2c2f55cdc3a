"""Officers: their replies and #commands, read from their own mail, authenticated, applied."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from mailbot import lifecycle, trust
from mailbot.app import App
from mailbot.commandline import command_lines
from mailbot.commands import REGISTRY, command, help_text, registered
from mailbot.config import Config
from mailbot.deadlines import (
    ClockStop,
    fees_lapse_on,
)
from mailbot.lifecycle import (
    CommandError,
    ToResident,
    ask_resident,
    choosing,
    close,
    escalate,
    extend_response,
    hold,
    reassign,
    recategorise,
    record,
    record_outcome,
    respond,
    resume_clock,
    set_language,
)
from mailbot.outbox import Letter, notify_role, queue
from mailbot.parse import ParsedMessage, clean_text
from mailbot.planning import local_today
from mailbot.quotation import own_text
from mailbot.reasons import Reason
from mailbot.store import PREFIXES, Case, add_event
from mailbot.templates import long_date

log = logging.getLogger("mailbot.officers")

# The rule of the reasons recorded with staff mail: the intake step that sends it here.
STAFF_RULE = "staff"

OUTCOMES = ("upheld", "partly-upheld", "not-upheld")  # a complaint at any stage
# An FOI or EIR request's response (what the Cabinet Office's returns count), and what
# its internal review decided about that response.
REQUEST_OUTCOMES = ("granted", "partly-granted", "refused", "not-held")
REVIEW_OUTCOMES = ("upheld", "partly-upheld", "overturned")
# The outcomes that withhold information, and so must cite the exemptions or exceptions
# relied on (FOIA s.17(1), EIR reg 14(3)).
WITHHOLDING = ("partly-granted", "refused")
# An exemption or exception as officers cite it: s.40(2), section 43, reg 12(4)(b), s12.
_CITATION = re.compile(
    r"^(?:(?:s|sec|section)\.?\s?|(?:r|reg|regulation)\.?\s?)?\d{1,3}[a-z]?(?:\(\w{1,4}\))*$",
    re.IGNORECASE,
)
LANGUAGES = {"cy": "Welsh", "en": "English", "both": "Welsh and English"}
# A line that starts like a command but is not written as one ("#close." or "#Close,"):
# the officer hears it was not understood rather than nothing.
_LOOKS_LIKE_COMMAND = re.compile(r"^[ \t]*#[A-Za-z]")


@dataclass(frozen=True)
class Command:
    name: str
    argument: str
    line: str


@dataclass(frozen=True)
class Result:
    line: str
    ok: bool
    detail: str


def find_commands(text: str, html: str = "") -> list[Command]:
    """#command lines in the writer's own words, never in what they quoted (quotation.py).

    A line that looks like a command but is not written as one comes back with the name
    "" so the officer is told it was not understood.
    """
    found = []
    for raw in own_text(text, html).splitlines():
        parsed = command_lines(raw)
        if parsed:
            found.append(Command(parsed[0].name, parsed[0].argument, parsed[0].line))
        elif _LOOKS_LIKE_COMMAND.match(raw):
            found.append(Command("", "", raw.strip()[:200]))
    return found


# --- who is writing -------------------------------------------------------------------


def staff_sender(msg: ParsedMessage, cfg: Config) -> str | None:
    """The officer's address, or the council mailbox's, when staff wrote this message
    (by its From address; whether they really did is trust.decide's question)."""
    if msg.from_addr and (msg.from_addr in cfg.mailbox_addresses or cfg.officer(msg.from_addr)):
        return msg.from_addr
    return None


# --- what staff mail does to a case -------------------------------------------------


def handle_staff_mail(
    app: App,
    session: Session,
    msg: ParsedMessage,
    case: Case | None,
    *,
    sender: str,
    arrived: datetime,
    from_sent_folder: bool,
    confirm_key: str,
    now: datetime,
) -> tuple[str, list[Reason]]:
    """An officer's (or the mailbox's) message: a reply to the resident, commands, or both.

    Nothing changes unless trust.decide believes the sender wrote it; then the decision
    and its reason go into the case history. Returns the outcome and reasons to record
    with the message.
    """
    commands = find_commands(msg.text, msg.html)
    replied = case is not None and case.resident_email in {*msg.to_addrs, *msg.cc_addrs}
    if not commands and not replied:
        return "staff-mail", []
    decision = trust.decide(msg, sender, app.cfg.commands, from_sent_folder=from_sent_folder)
    if not decision.trusted:
        return "refused", refuse(app, session, msg, case, sender, decision, commands, replied, now)
    reasons = [Reason(STAFF_RULE, f"from {sender}: {decision.reason}")]
    if case is not None:
        asked = ", ".join(c.line[:60] for c in commands) or "a reply to the resident"
        add_event(
            session, case, now, "note", f"mail from {sender} accepted ({decision.reason}): {asked}"
        )
    if replied:
        assert case is not None
        record(app, session, case, respond(case, arrived, f"reply sent by {sender}"), arrived)
        reasons.append(Reason(STAFF_RULE, f"reply to the resident by {sender}"))
    if not commands:
        return "officer-reply", reasons
    results = [apply(app, session, case, c, sender=sender, now=now) for c in commands]
    _confirm(app, session, case, sender, results, confirm_key, now)
    done = ", ".join(r.line for r in results if r.ok) or "none"
    return "command", [*reasons, Reason(STAFF_RULE, f"commands from {sender}: {done}")]


def refuse(
    app: App,
    session: Session,
    msg: ParsedMessage,
    case: Case | None,
    sender: str,
    decision: trust.Decision,
    commands: list[Command],
    replied: bool,
    now: datetime,
) -> list[Reason]:
    """Mail that looks like an officer's but is not trusted: it changes nothing, it is
    kept as a note on the case, and the officer it names is told, at their configured
    address (never the message's), once a day per case. Returns the reasons to record."""
    asked = [c.line[:100] for c in commands]
    if replied:
        asked.append("a reply to the resident (which would mark the case responded)")
    what = "; ".join(asked)
    log.warning(
        "mail from %s not accepted: %s",
        sender,
        decision.reason,
        extra={"case": case.ref if case else None},
    )
    if case is not None:
        add_event(
            session,
            case,
            now,
            "note",
            f"mail from {sender} not accepted, nothing changed: {decision.reason}; "
            f"it asked for: {what}",
        )
    officer = app.cfg.officer(sender)
    day = local_today(app.policy, now).isoformat()
    extra = {
        "sender": sender,
        "reason": decision.reason,
        "asked": asked,
        "subject": clean_text(msg.subject, 150),
        "mode": app.cfg.commands.mode or "",
    }
    key = f"refused:{sender}:{case.ref if case else '-'}:{day}"
    subject = f"Not acted on: mail from your address about {case.ref if case else 'a case'}"
    if officer is not None:
        letter = Letter(
            kind="refused",
            template="mail-refused",
            recipient=officer.email,
            to_name=officer.name,
            subject=subject,
            audience="staff",
            extra=extra,
        )
        queue(
            session,
            [(key, letter, case.id if case else None)],
            mailbox_address=app.cfg.council.mailbox_address,
            now=now,
        )
        told = officer.email
    else:  # the mailbox's own address: whoever looks after mailbot hears of it
        notify_role(
            app,
            session,
            case,
            role="clerk",
            template="mail-refused",
            kind="refused",
            subject=subject.replace("your address", "the mailbox's address"),
            key=key,
            now=now,
            extra=extra,
            at_once=True,
        )
        told = "the clerk"
    return [Reason(STAFF_RULE, f"mail from {sender} not accepted: {decision.reason}; {told} told")]


def apply(
    app: App, session: Session, case: Case | None, command: Command, *, sender: str, now: datetime
) -> Result:
    """Carry out one command; a problem becomes a message for the officer, never a crash."""
    if not command.name:
        return Result(
            command.line,
            False,
            "not understood: write the command alone at the start of its line, e.g. #close",
        )
    known = REGISTRY.get(command.name)
    if known is None:
        return Result(command.line, False, f"unknown command; known: #{', #'.join(REGISTRY)}")
    if case is None and known.usage.needs_case:
        return Result(
            command.line,
            False,
            "no case found: reply to a mailbot message, or put the reference in the subject",
        )
    try:
        detail = known.run(app, session, case, command.argument, sender, now)
    except CommandError as exc:  # lifecycle turns a refused extension into one
        return Result(command.line, False, str(exc))
    if case is None:
        return Result(command.line, True, detail)
    log.info("%s on %s by %s", command.line, case.ref, sender, extra={"case": case.ref})
    return Result(command.line, True, detail)


_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%d %B %Y", "%d %b %Y")
HOLDING_AT_MOST = timedelta(days=366)  # a holding reply promises a date the council can keep


def parse_day(text: str) -> date | None:
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def _citation(text: str) -> str:
    """An exemption as cited ("s40(2)", "section 40(2)", "reg 12(4)(b)"), in one form."""
    if not _CITATION.match(text):
        raise CommandError(
            f"not an exemption: {text[:40]!r}; write them like s.40(2) s.43(2) or reg 12(4)(b)"
        )
    number = re.sub(r"^[a-z.\s]+", "", text.lower())
    return f"reg {number}" if text.lower().startswith("r") else f"s.{number}"


# --- letters these actions send -----------------------------------------------------


# --- the commands, in the order the help lists them (commands.py) -------------------------


@command("responded")
def _responded(app: App, session: Session, case: Case, arg: str, by: str, now: datetime) -> str:
    if case.status != "open":
        raise CommandError(f"the case is {case.status}, not open")
    return record(app, session, case, respond(case, now, f"marked responded by {by}"), now)


@command("extend")
def _extend(app: App, session: Session, case: Case, arg: str, by: str, now: datetime) -> str:
    words = arg.split(maxsplit=1)
    if not words or not words[0].isdigit() or len(words[0]) > 3:
        raise CommandError("give a number, e.g. #extend 10")
    amount, reason = int(words[0]), (words[1].strip() if len(words) > 1 else "")
    change = extend_response(app.policy, case, amount, reason, by, now)
    return record(app, session, case, change, now)


@command("holding")
def _holding(app: App, session: Session, case: Case, arg: str, by: str, now: datetime) -> str:
    words = arg.split()
    day, reason = None, ""
    for n in (3, 1):  # "15 January 2027 reason..." or "2027-01-15 reason..."
        day = parse_day(" ".join(words[:n]))
        if day:
            reason = " ".join(words[n:])
            break
    if day is None:
        raise CommandError("give the new date first, e.g. #holding 2027-01-15 waiting for a report")
    today = local_today(app.policy, now)
    if day <= today:
        raise CommandError(f"{day} is not in the future")
    if day > today + HOLDING_AT_MOST:
        raise CommandError(f"{day} is more than a year away: give the date the reply is due")
    return record(app, session, case, hold(app.policy, case, day, reason, by, now), now)


@command("clarify")
def _clarify(app: App, session: Session, case: Case, arg: str, by: str, now: datetime) -> str:
    why = f"clarification asked by {by}"
    if not arg:
        change = lifecycle.stop_clock(case, ClockStop.CLARIFICATION, now, why)
        record(app, session, case, change, now)
        return "clock stopped until the resident replies"
    letter = ToResident("clarification", "clarification", {"question": arg})
    record(app, session, case, ask_resident(case, ClockStop.CLARIFICATION, now, why, letter), now)
    return "clock stopped; your question has been sent to the resident"


@command("outcome")
def _outcome(app: App, session: Session, case: Case, arg: str, by: str, now: datetime) -> str:
    """A complaint's outcome; or an FOI or EIR response's (marking the case responded),
    with the exemptions or exceptions it relied on."""
    value, *cited = arg.strip().lower().split() or [""]
    if case.category == "complaint":
        allowed = OUTCOMES
    elif case.category in ("foi", "eir"):
        allowed = REVIEW_OUTCOMES if case.stage > 1 else REQUEST_OUTCOMES
    else:
        raise CommandError("outcomes are recorded for complaints, FOI and EIR requests only")
    if value not in allowed:
        raise CommandError(f"give one of: {', '.join(allowed)}")
    # "section 40(2), s.21" is two citations: keep each word with its number.
    joined = re.sub(r"\b(section|sec|regulation|reg)\s+(?=\d)", r"\1", " ".join(cited))
    exemptions = [_citation(c) for c in joined.replace(",", " ").split()]
    if case.category != "complaint" and value in WITHHOLDING and not exemptions:
        raise CommandError(
            f"cite the exemptions relied on, e.g. #outcome {value} s.40(2) s.43(2)"
            " (FOIA s.17(1); EIR reg 14(3))"
        )
    return record(app, session, case, record_outcome(case, value, exemptions, by, now), now)


@command("escalate")
def _escalate(app: App, session: Session, case: Case, arg: str, by: str, now: datetime) -> str:
    change = escalate(app.policy, case, choosing(app, session), now, f"by {by}")
    return record(app, session, case, change, now)


@command("identity")
def _identity(app: App, session: Session, case: Case, arg: str, by: str, now: datetime) -> str:
    """A subject access request waits for proof of identity (UK GDPR art. 12(6), 12A)."""
    if case.category != "sar":
        raise CommandError("identity checks are for subject access requests")
    letter = ToResident("identity-sar", "identity", {"needed": arg[:500] or None})
    why = f"proof of identity asked for by {by}"
    record(app, session, case, ask_resident(case, ClockStop.IDENTITY, now, why, letter), now)
    return (
        "clock stopped; the resident has been asked to prove their identity, and the month"
        " starts again when they reply"
    )


@command("fees")
def _fees(app: App, session: Session, case: Case, arg: str, by: str, now: datetime) -> str:
    """An FOI fees notice (FOIA s.9): the clock waits for payment, for three months."""
    if case.category != "foi" or case.stage != 1:
        raise CommandError("a fees notice is for a Freedom of Information request (FOIA s.9)")
    try:
        amount = Decimal(arg.strip().lstrip("£").replace(",", ""))
    except InvalidOperation:
        amount = Decimal(0)
    if not amount.is_finite() or amount <= 0 or amount > 100_000:
        raise CommandError("give the fee in pounds, e.g. #fees 25.50")
    fee = f"£{amount:,.2f}"
    lapse = fees_lapse_on(app.policy, now)
    pay_by = long_date(lapse - timedelta(days=1))
    why = f"fees notice for {fee} by {by}; unpaid, the request lapses on {lapse}"
    letter = ToResident("fees-foi", "fees", {"fee": fee, "pay_by": pay_by})
    record(app, session, case, ask_resident(case, ClockStop.FEES, now, why, letter), now)
    return (
        f"clock stopped; the resident has been sent the fees notice for {fee}, to pay by {pay_by}"
    )


@command("paid")
def _paid(app: App, session: Session, case: Case, arg: str, by: str, now: datetime) -> str:
    """The fee is paid: the working days from the notice to payment do not count."""
    if case.clock_stop != ClockStop.FEES or not case.clock_stopped:
        raise CommandError("no fees notice is waiting for payment on this case")
    at = now
    if arg.strip():
        day = parse_day(arg.strip())
        if day is None:
            raise CommandError("give the day the fee arrived, e.g. #paid 2026-11-18, or nothing")
        stopped_on = (case.clock_stopped_at or now).astimezone(ZoneInfo(app.policy.timezone))
        if not stopped_on.date() <= day <= local_today(app.policy, now):
            raise CommandError(f"{day} is not between the fees notice and today")
        at = datetime.combine(day, time(12), tzinfo=ZoneInfo(app.policy.timezone))
    change = resume_clock(app.policy, case, ClockStop.FEES, at, f"fee received, recorded by {by}")
    return record(app, session, case, change, at)


@command("category")
def _category(app: App, session: Session, case: Case, arg: str, by: str, now: datetime) -> str:
    new = arg.strip().lower()
    if new not in PREFIXES:
        raise CommandError(f"unknown category {arg!r}; one of: {', '.join(PREFIXES)}")
    change = recategorise(app.policy, case, new, choosing(app, session), by, now)
    return record(app, session, case, change, now)


@command("reassign")
def _reassign(app: App, session: Session, case: Case, arg: str, by: str, now: datetime) -> str:
    officer = app.cfg.officer(arg.strip()) if arg.strip() else None
    if officer is None:
        raise CommandError(f"not a configured officer: {arg.strip() or '(no address)'}")
    return record(app, session, case, reassign(case, officer, by, now), now)


@command("note")
def _note(app: App, session: Session, case: Case, arg: str, by: str, now: datetime) -> str:
    if not arg:
        raise CommandError("write the note after #note")
    record(app, session, case, lifecycle.note(f"{by}: {arg[:1000]}"), now)
    return "note added"


@command("language")
def _language(app: App, session: Session, case: Case, arg: str, by: str, now: datetime) -> str:
    """The resident's language for letters, where the policy writes in Welsh and English."""
    value = arg.strip().lower()
    if app.policy.language != "cy-en":
        raise CommandError('the policy writes in English only (language = "cy-en" for Welsh)')
    if value not in LANGUAGES:
        raise CommandError("give cy (Welsh), en (English) or both")
    language = None if value == "both" else value
    name = LANGUAGES[value]
    change = set_language(case, language, name, f"letters in {name}, recorded by {by}")
    return record(app, session, case, change, now)


@command("close")
def _close(app: App, session: Session, case: Case, arg: str, by: str, now: datetime) -> str:
    change = close(case, now, f"closed by {by}" + (f": {arg}" if arg else ""))
    return record(app, session, case, change, now)


@command("help")
def _help(app: App, session: Session, case: Case | None, arg: str, by: str, now: datetime) -> str:
    return "the commands, each on a line of its own after #:\n" + help_text()


def _confirm(
    app: App,
    session: Session,
    case: Case | None,
    sender: str,
    results: list[Result],
    key: str,
    now: datetime,
) -> None:
    """A short reply to the officer saying what was done, and what could not be."""
    officer = app.cfg.officer(sender)
    recipient = officer.email if officer else sender
    failed = sum(1 for r in results if not r.ok)
    subject = "Done" if not failed else f"{failed} command(s) not carried out"
    letter = Letter(
        kind="command-confirmation",
        template="command-confirmation",
        recipient=recipient,
        to_name=officer.name if officer else "",
        subject=f"{subject}: {case.subject if case else 'your commands'}",
        audience="staff",
        extra={
            "results": [{"line": r.line, "ok": r.ok, "detail": r.detail} for r in results],
        },
    )
    queue(
        session,
        [(key, letter, case.id if case else None)],
        mailbox_address=app.cfg.council.mailbox_address,
        now=now,
    )


# Every command in the table (commands.py) has its function here, and no other.
assert set(REGISTRY) == {c.name for c in registered()}, "commands.TABLE and officers.py differ"
